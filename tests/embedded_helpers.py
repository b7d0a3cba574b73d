"""Helpers for the embedded-stack tests: Piper-generated speech, signals, the whole bot in memory.

Speech for the VAD and STT tests is synthesised by the Piper voice in the fixtures (no WAV
files in the repository): the text is known, so the words Whisper must return are known, and
the sample where the speech begins and ends is measured on the clean signal.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass

import numpy as np

from tests.support import Recorder
from voxframe.pipeline import (
    FrameProcessor,
    InputAudioFrame,
    LLMContext,
)
from voxframe.pipeline.audio import loud, loud_windows
from voxframe.pipeline.clock import NS_PER_S
from voxframe.processors.aggregators import context_aggregators
from voxframe.processors.llm import ToolCall
from voxframe.processors.llm.offline import OfflineLLM, OfflineOptions, offline_tools
from voxframe.processors.stt.whisper import WhisperSTT
from voxframe.processors.tts import TTSChunk
from voxframe.processors.tts.piper import PiperOptions, PiperTTS
from voxframe.processors.tts.piper import speak as piper_speak
from voxframe.processors.turns import TurnController, TurnOptions
from voxframe.processors.vad import VADOptions, VADProcessor
from voxframe.transports.memory import MemoryInputOptions, MemoryInputTransport, MemoryOutputTransport

RATE = 16_000
MS = 1_000_000


# --- audio ------------------------------------------------------------------------------------


def speak(text: str, rate: int = RATE) -> np.ndarray:
    """`text` in the Piper joe voice, int16 mono at `rate` (deterministic, cached per process)."""
    return _spoken(text, rate).copy()


@functools.cache
def _spoken(text: str, rate: int) -> np.ndarray:
    return piper_speak(text, PiperOptions(noise_scale=0.0, noise_w_scale=0.0), sample_rate=rate)


def silence(seconds: float, rate: int = RATE) -> np.ndarray:
    return np.zeros(round(seconds * rate), np.int16)


def noise_burst(seconds: float, rate: int = RATE, level: float = 0.3, seed: int = 7) -> np.ndarray:
    """A cough-like burst: white noise under a fast attack / exponential decay envelope."""
    n = round(seconds * rate)
    envelope = np.minimum(1.0, np.linspace(0, 20, n)) * np.exp(-np.linspace(0, 4, n))
    noise = np.random.default_rng(seed).standard_normal(n) * envelope * level
    return np.round(np.clip(noise, -1, 1) * 32767).astype(np.int16)


def speech_bounds(samples: np.ndarray, rate: int = RATE, threshold_dbfs: float = -40.0) -> tuple[int, int]:
    """First and one-past-last sample of the 5 ms blocks louder than `threshold_dbfs`."""
    block = rate // 200
    hits = np.flatnonzero(loud_windows(samples, block, threshold_dbfs))
    return int(hits[0]) * block, (int(hits[-1]) + 1) * block


def frames_of(samples: np.ndarray, start_ns: int, rate: int = RATE, chunk_ms: int = 20) -> list[InputAudioFrame]:
    """20 ms input frames, each created when its last sample would have arrived after `start_ns`."""
    chunk = rate * chunk_ms // 1000
    padded = np.concatenate([samples, np.zeros(-len(samples) % chunk, np.int16)])
    return [
        InputAudioFrame(
            audio=padded[i : i + chunk].tobytes(),
            sample_rate=rate,
            pts=i,
            created_ns=start_ns + (i + chunk) * NS_PER_S // rate,
        )
        for i in range(0, len(padded), chunk)
    ]


def normalise_words(text: str) -> list[str]:
    return "".join(c.lower() if c.isalnum() or c in " '" else " " for c in text).split()


class LoudIsSpeech:
    """A VAD analyzer that takes any sound above -30 dBFS for speech: no model, no surprises
    (tests of turn-taking rules, and a cough that does interrupt the bot)."""

    sample_rates = (16_000,)

    def window_samples(self, sample_rate: int) -> int:
        return 512

    def load(self) -> None:
        pass

    def reset(self, sample_rate: int) -> None:
        pass

    def confidences(self, windows: np.ndarray) -> np.ndarray:
        return loud(windows, -30.0).astype(np.float32)


# --- the whole embedded bot, in memory ------------------------------------------------------------


class WatchedResponder(OfflineLLM):
    """The offline responder, noting which replies ran to their end and which were cut off."""

    def __init__(self, options: OfflineOptions | None = None) -> None:
        super().__init__(options)
        self.finished: list[int] = []
        self.cut: list[int] = []

    async def stream_completion(self, context: LLMContext, turn: int) -> AsyncIterator[str | ToolCall]:
        finished = False
        try:
            async with aclosing(super().stream_completion(context, turn)) as items:
                async for item in items:
                    yield item
            finished = True
        finally:
            (self.finished if finished else self.cut).append(turn)


class WatchedPiper(PiperTTS):
    """Piper, noting which utterances were synthesised to their end and which were cut off."""

    def __init__(self, options: PiperOptions | None = None) -> None:
        super().__init__(options)
        self.finished: list[int] = []
        self.cut: list[int] = []

    async def synthesize_stream(self, texts: AsyncIterator[str], turn: int) -> AsyncIterator[TTSChunk]:
        finished = False
        try:
            async with aclosing(super().synthesize_stream(texts, turn)) as chunks:
                async for chunk in chunks:
                    yield chunk
            finished = True
        finally:
            (self.finished if finished else self.cut).append(turn)


@dataclass(slots=True)
class EmbeddedBot:
    """The offline voice bot: memory mic -> VAD -> Whisper -> context -> responder -> Piper -> memory speaker."""

    mic: MemoryInputTransport
    vad: VADProcessor
    stt: WhisperSTT
    responder: WatchedResponder
    tts: WatchedPiper
    speaker: MemoryOutputTransport
    heard: Recorder  # what leaves the speaker (bot speaking state, words), before the assistant aggregator
    context: LLMContext
    processors: list[FrameProcessor]


def embedded_bot(
    vad: VADOptions | None = None, word_delay_s: float = 0.1, turns: TurnOptions | None = None
) -> EmbeddedBot:
    mic = MemoryInputTransport(options=MemoryInputOptions(silence_when_idle=True))
    vad_processor, stt = VADProcessor(vad), WhisperSTT()
    responder = WatchedResponder(OfflineOptions(word_delay_s=word_delay_s))
    tts = WatchedPiper(PiperOptions(noise_scale=0.0, noise_w_scale=0.0))
    speaker, heard = MemoryOutputTransport(), Recorder("heard")
    context = LLMContext(tools=offline_tools())
    user, assistant = context_aggregators(context)
    controller = TurnController(turns)
    processors = [mic, vad_processor, stt, controller, user, responder, tts, speaker, heard, assistant]
    return EmbeddedBot(mic, vad_processor, stt, responder, tts, speaker, heard, context, processors)


__all__ = [
    "MS",
    "NS_PER_S",
    "RATE",
    "EmbeddedBot",
    "LoudIsSpeech",
    "WatchedPiper",
    "WatchedResponder",
    "embedded_bot",
    "frames_of",
    "noise_burst",
    "normalise_words",
    "silence",
    "speak",
    "speech_bounds",
]
