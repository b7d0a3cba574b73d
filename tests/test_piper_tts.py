"""Embedded TTS: Piper speaks a streamed reply clause by clause, with word timings."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tests.embedded_helpers import normalise_words
from tests.support import Recorder, running
from voxframe.pipeline import (
    LLMResponseEndFrame,
    LLMResponseStartFrame,
    LLMTextFrame,
    TTSAudioFrame,
    TTSSpeakFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSWordsFrame,
    WordTiming,
)
from voxframe.processors.tts.piper import PiperOptions, PiperTTS, load_piper_voice

pytestmark = pytest.mark.anyio

DETERMINISTIC = PiperOptions(noise_scale=0.0, noise_w_scale=0.0)


def words_of(frames: list[TTSWordsFrame]) -> list[WordTiming]:
    return [w for f in frames for w in f.words]


async def test_a_streamed_reply_is_spoken_from_its_first_sentence_on() -> None:
    tts, below = PiperTTS(DETERMINISTIC), Recorder()
    first, rest = "Hello there. ", "I am a voice that runs on your own machine, with no network at all."
    async with running([tts, below]) as task:
        turn = task.turns.begin()
        await task.queue_frame(LLMResponseStartFrame(turn=turn))
        for token in first.split(" "):
            await task.queue_frame(LLMTextFrame(text=token + " ", turn=turn))
        # The first sentence is settled: its audio comes before the rest of the reply is written.
        await below.wait_for(lambda: below.of(TTSAudioFrame))
        for token in rest.split(" "):
            await task.queue_frame(LLMTextFrame(text=token + " ", turn=turn))
        await task.queue_frame(LLMResponseEndFrame(turn=turn))
        await below.wait_for(lambda: below.of(TTSStoppedFrame))
        assert "tts_first_audio" in task.tracer.turn(turn)

    audio = below.of(TTSAudioFrame)
    rate = load_piper_voice().config.sample_rate
    assert {(f.sample_rate, f.turn) for f in audio} == {(rate, turn)}
    assert [f.pts for f in audio] == list(np.cumsum([0] + [f.num_samples for f in audio[:-1]]))
    duration_s = sum(f.num_samples for f in audio) / rate
    assert 3.0 < duration_s < 12.0
    words = words_of(below.of(TTSWordsFrame))
    assert normalise_words(" ".join(w.word for w in words)) == normalise_words(first + rest)
    starts = [w.start_s for w in words]
    assert starts == sorted(starts) and all(w.start_s < w.end_s <= duration_s + 1e-6 for w in words)
    assert len(below.of(TTSStartedFrame)) == 1


async def test_word_timings_follow_the_pauses_heard_in_the_audio() -> None:
    """After a comma Piper pauses: the next word must not start before the silence ends."""
    tts, below = PiperTTS(DETERMINISTIC), Recorder()
    text = "Well, I think so; it is a fine idea, and we should try it tomorrow."
    async with running([tts, below]) as task:
        await task.queue_frame(TTSSpeakFrame(text=text))
        await below.wait_for(lambda: below.of(TTSStoppedFrame))
    rate = load_piper_voice().config.sample_rate
    samples = np.frombuffer(b"".join(f.audio for f in below.of(TTSAudioFrame)), np.int16).astype(np.float32)
    quiet = np.abs(samples).max() * 10 ** (-40 / 20)
    words = words_of(below.of(TTSWordsFrame))
    assert [w.word for w in words] == text.split()
    pauses = [(a, b) for a, b in itertools.pairwise(words) if a.word[-1] in ",;"]
    assert len(pauses) == 3
    for before, after in pauses:
        gap = samples[round(before.end_s * rate) : round(after.start_s * rate)]
        assert after.start_s - before.end_s >= 0.1, (before.word, after.word)
        assert np.abs(gap).max() < quiet, (before.word, after.word)
        # ... and speech resumes right where the next word is said to begin.
        assert np.abs(samples[round(after.start_s * rate) : round((after.start_s + 0.03) * rate)]).max() >= quiet


async def test_numbers_fall_back_to_shares_of_the_clause() -> None:
    tts, below = PiperTTS(DETERMINISTIC), Recorder()
    async with running([tts, below]) as task:
        await task.queue_frame(TTSSpeakFrame(text="It costs 42 dollars."))
        await below.wait_for(lambda: below.of(TTSStoppedFrame))
    words = words_of(below.of(TTSWordsFrame))
    assert [w.word for w in words] == ["It", "costs", "42", "dollars."]
    assert all(a.end_s <= b.start_s + 1e-9 for a, b in itertools.pairwise(words))
