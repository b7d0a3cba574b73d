"""Embedded STT: Piper's voice comes back from Whisper as the same words, turn by turn."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.embedded_helpers import (
    NS_PER_S,
    RATE,
    frames_of,
    noise_burst,
    normalise_words,
    silence,
    speak,
    speech_bounds,
)
from tests.support import Recorder, running
from voxframe.pipeline import (
    InterimTranscriptionFrame,
    TranscriptionFrame,
    UserPausedSpeakingFrame,
    UserResumedSpeakingFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from voxframe.processors.stt.whisper import Transcript, WhisperEngine, WhisperOptions, WhisperSTT, load_whisper
from voxframe.processors.vad import VADOptions, VADParams, VADProcessor
from voxframe.transports.memory import MemoryInputOptions, MemoryInputTransport

SENTENCES = [
    "Hello there, how are you today?",
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "I would like to book a table for two people tomorrow evening.",
    "Could you tell me the date?",
    "Good morning. Please remind me to call my mother after lunch. Thank you very much.",
]


@pytest.fixture(scope="module")
def engine() -> WhisperEngine:
    return load_whisper()


def as_float(samples: np.ndarray) -> np.ndarray:
    return samples.astype(np.float32) / 32768.0


@pytest.mark.parametrize("text", SENTENCES)
def test_piper_speech_comes_back_as_the_same_words(engine: WhisperEngine, text: str) -> None:
    audio = np.concatenate([silence(0.3), speak(text), silence(0.3)])
    assert normalise_words(engine.transcribe(as_float(audio), WhisperOptions())) == normalise_words(text)


@pytest.mark.parametrize("sound", ["silence", "cough"])
def test_silence_and_noise_give_no_words(engine: WhisperEngine, sound: str) -> None:
    audio = silence(1.0) if sound == "silence" else np.concatenate([silence(0.2), noise_burst(0.4), silence(0.5)])
    assert engine.transcribe(as_float(audio), WhisperOptions()) == ""


@pytest.mark.anyio
async def test_a_live_turn_is_transcribed_while_spoken_and_final_when_the_vad_stops() -> None:
    """Real-time input: interim passes run during the turn; the final is the pass that already
    covered the end of the speech while the VAD was still waiting out its stop delay."""
    text = SENTENCES[4]
    source = MemoryInputTransport(np.concatenate([silence(0.3), speak(text), silence(1.0)]), MemoryInputOptions())
    stt, below = WhisperSTT(), Recorder()
    async with running([source, VADProcessor(), stt, below]) as task:
        await below.wait_for(lambda: below.of(TranscriptionFrame))
        kinds = [type(s.frame) for s in below.seen]
        assert kinds.index(InterimTranscriptionFrame) < kinds.index(UserStoppedSpeakingFrame)
        (final,) = below.of(TranscriptionFrame)
        assert normalise_words(final.text) == normalise_words(text)
        points = task.tracer.turn(1)
        assert points["vad_stop"] <= points["stt_final"]
        assert stt.reused_finals == 1


@pytest.mark.anyio
async def test_two_turns_give_two_finals_each_with_only_its_own_words() -> None:
    first, second = "What time is it?", "Could you tell me the date?"
    audio = np.concatenate([silence(0.3), speak(first), silence(1.0), speak(second), silence(1.0)])
    t0 = time.monotonic_ns() - len(audio) * NS_PER_S // RATE  # captured just now, delivered at once
    below = Recorder()
    async with running([VADProcessor(), WhisperSTT(), below]) as task:
        for frame in frames_of(audio, t0):
            await task.queue_frame(frame)
        await below.wait_for(lambda: len(below.of(TranscriptionFrame)) == 2)
    assert len(below.of(UserStartedSpeakingFrame)) == 2
    assert [normalise_words(f.text) for f in below.of(TranscriptionFrame)] == [
        normalise_words(first),
        normalise_words(second),
    ]


@pytest.mark.anyio
async def test_a_pause_finalizes_the_words_so_far_and_the_words_after_it_come_as_the_next_final() -> None:
    first, second, third = "What time is it?", "Could you tell me the date?", "Thanks."
    (a, b), spoken = speech_bounds(speak(first)), speak(first)
    first_words = spoken[a:b]  # without Piper's own silence around it: the pause is exactly 0.3 s
    audio = np.concatenate(
        [silence(0.3), first_words, silence(0.3), speak(second), silence(1.0), speak(third), silence(1.0)]
    )
    t0 = time.monotonic_ns() - len(audio) * NS_PER_S // RATE  # captured just now, delivered at once
    below = Recorder()
    vad = VADProcessor(VADOptions(params=VADParams(stop_s=0.5, pause_s=0.2)))
    async with running([vad, WhisperSTT(), below]) as task:
        for frame in frames_of(audio, t0):
            await task.queue_frame(frame)
        # Finals come in order: once the third turn's is here, the first turn's are all in.
        await below.wait_for(
            lambda: len(below.of(UserStoppedSpeakingFrame)) == 2 and len(below.of(TranscriptionFrame)) >= 3
        )
    assert len(below.of(UserStartedSpeakingFrame)) == 2  # the first turn paused in the middle
    assert len(below.of(UserResumedSpeakingFrame)) == 1 and len(below.of(UserPausedSpeakingFrame)) == 3
    # One final per segment; the stops right after the pauses add none.
    assert [normalise_words(f.text) for f in below.of(TranscriptionFrame)] == [
        normalise_words(first),
        normalise_words(second),
        normalise_words(third),
    ]


class PassRecordingWhisper(WhisperSTT):
    """Whisper that notes the stream range of every pass it runs."""

    def __init__(self) -> None:
        super().__init__()
        self.ranges: list[tuple[int, int]] = []

    async def _run_pass(self, start: int, end: int) -> Transcript:
        transcript = await super()._run_pass(start, end)
        self.ranges.append((transcript.start, transcript.end))
        return transcript


@pytest.mark.anyio
async def test_no_pass_runs_over_the_silence_of_a_pause() -> None:
    # A long pause (1.3 s between the pause and the stop) is longer than the pass interval and
    # the quiet rule: passes then would be over silence only, where Whisper invents words.
    (a, b), spoken = speech_bounds(speak("What time is it?")), speak("What time is it?")
    audio = np.concatenate([silence(0.3), spoken[a:b], silence(2.0), speak("Thanks."), silence(2.0)])
    t0 = time.monotonic_ns() - len(audio) * NS_PER_S // RATE
    frames = frames_of(audio, t0)
    paused_by = (round(0.3 * RATE) + (b - a) + round(0.3 * RATE)) // frames[0].num_samples
    below, stt = Recorder(), PassRecordingWhisper()
    vad = VADProcessor(VADOptions(params=VADParams(stop_s=1.5, pause_s=0.2)))
    async with running([vad, stt, below]) as task:
        for frame in frames[:paused_by]:
            await task.queue_frame(frame)
        await below.wait_for(lambda: below.of(TranscriptionFrame))  # the pause's final: paused now
        for frame in frames[paused_by:]:  # the rest of the pause's silence reaches a paused STT
            await task.queue_frame(frame)
        await below.wait_for(
            lambda: len(below.of(UserStoppedSpeakingFrame)) == 2 and len(below.of(TranscriptionFrame)) == 2
        )
    assert len(below.of(UserPausedSpeakingFrame)) == 2 and not below.of(UserResumedSpeakingFrame)
    assert [normalise_words(f.text) for f in below.of(TranscriptionFrame)] == [["what", "time", "is", "it"], ["thanks"]]
    assert stt.ranges
    for start, end in stt.ranges:  # every pass hears speech (peaks above -40 dBFS); the silence is zeros
        assert np.abs(audio[start:end]).max(initial=0) > 328, f"a pass over silence only: samples {start}..{end}"
