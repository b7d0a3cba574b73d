"""The VAD's facts and the turn controller's decisions on them: barge-in both ways, no silent bot
after a false one, pauses and stops on the exact sample.

A level-based analyzer (`LoudIsSpeech`) stands in for the model (the rules under test are the processors'), and
a virtual clock drives the false-interruption timer, so the deadline is exact.
"""

from __future__ import annotations

import anyio
import numpy as np
import pytest

from tests.embedded_helpers import MS, NS_PER_S, RATE, LoudIsSpeech, frames_of, silence
from tests.support import Recorder, running, yield_rounds
from voxframe.pipeline import (
    DOWN,
    UP,
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    FalseInterruptionFrame,
    InterruptionFrame,
    LLMContext,
    LLMContextFrame,
    PipelineTask,
    UserMessageFrame,
    UserPausedSpeakingFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    VirtualClock,
)
from voxframe.processors.aggregators import UserContextAggregator
from voxframe.processors.turns import InterruptionPolicy, TurnController, TurnOptions
from voxframe.processors.vad import VADOptions, VADParams, VADProcessor

pytestmark = pytest.mark.anyio

PARAMS = VADParams(start_s=0.2, stop_s=0.4)


def tone(seconds: float) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return np.round(0.3 * 32767 * np.sin(2 * np.pi * 220 * t)).astype(np.int16)


class Harness:
    """A VAD and the turn controller between two recorders on a virtual clock; audio is fed as
    already captured."""

    def __init__(self, turns: TurnOptions | None = None, **options: object) -> None:
        self.clock = VirtualClock()
        self.above, self.below = Recorder("above"), Recorder("below")
        options = {"analyzer": LoudIsSpeech(), "params": PARAMS, **options}
        self.vad = VADProcessor(VADOptions(**options))  # type: ignore[arg-type]
        self.controller = TurnController(turns)
        self.position_ns = 0  # clock time up to which audio has been fed

    async def feed(self, task: PipelineTask, samples: np.ndarray) -> None:
        duration_ns = len(samples) * NS_PER_S // RATE
        await self.clock.advance(self.position_ns + duration_ns - self.clock.now_ns())
        for frame in frames_of(samples, self.position_ns):
            await task.queue_frame(frame)
        self.position_ns += duration_ns
        with anyio.fail_after(10):
            await self.vad.wait_scored(self.position_ns * RATE // NS_PER_S)

    def processors(self) -> list:
        return [self.above, self.vad, self.controller, self.below]


def speaking_kinds(recorder: Recorder) -> list[str]:
    """The names of the user-speaking frames that went downstream, in order."""
    names = [type(s.frame).__name__ for s in recorder.seen if s.direction is DOWN]
    return [n for n in names if n.startswith("User") and n.endswith("SpeakingFrame")]


async def bot_speaks(task: PipelineTask, h: Harness) -> None:
    await task.queue_frame(BotStartedSpeakingFrame(turn=task.turns.begin()), UP)
    await h.above.wait_for(lambda: h.above.of(BotStartedSpeakingFrame, UP))


async def test_user_speech_over_the_bot_interrupts_both_ways_before_announcing_the_user() -> None:
    h = Harness()
    async with running(h.processors(), h.clock) as task:
        await bot_speaks(task, h)
        await h.feed(task, np.concatenate([silence(0.3), tone(0.5), silence(0.6)]))
        await h.below.wait_for(lambda: h.below.of(UserStoppedSpeakingFrame))
        down = h.below.of(InterruptionFrame, DOWN)
        up = h.above.of(InterruptionFrame, UP)
        assert len(down) == len(up) == 1 and down[0].stale_upto == up[0].stale_upto == 1
        assert task.turns.is_stale(1)
        kinds = [type(s.frame) for s in h.below.seen if s.direction is DOWN]
        assert kinds.index(InterruptionFrame) < kinds.index(UserStartedSpeakingFrame)
        assert h.above.of(UserStartedSpeakingFrame, UP) and h.above.of(UserStoppedSpeakingFrame, UP)


async def test_user_speech_while_a_reply_is_being_prepared_interrupts_it() -> None:
    h = Harness()
    async with running(h.processors(), h.clock) as task:
        task.turns.begin()  # the user aggregator started reply 1; nothing is playing yet
        await h.feed(task, np.concatenate([tone(0.5), silence(0.6)]))
        await h.below.wait_for(lambda: h.below.of(UserStoppedSpeakingFrame))
        assert [f.stale_upto for f in h.below.of(InterruptionFrame)] == [1]


@pytest.mark.parametrize("how", ["bot idle", "reply finished", "interruptions off", "short noise"])
async def test_speech_that_must_not_interrupt_does_not(how: str) -> None:
    h = Harness(TurnOptions(interruptions=InterruptionPolicy(enabled=how != "interruptions off")))
    async with running(h.processors(), h.clock) as task:
        if how != "bot idle":
            await bot_speaks(task, h)
        if how == "reply finished":
            await task.queue_frame(BotStoppedSpeakingFrame(turn=1, played_s=2.0), UP)
        speech = tone(0.1) if how == "short noise" else tone(0.5)  # 0.1 s < start_s
        await h.feed(task, np.concatenate([speech, silence(0.6)]))
        if how != "short noise":
            await h.below.wait_for(lambda: h.below.of(UserStoppedSpeakingFrame))
        else:
            assert h.below.of(UserStartedSpeakingFrame) == []
        assert h.below.of(InterruptionFrame) == [] and h.above.of(InterruptionFrame, UP) == []


async def test_no_words_after_an_interruption_asks_for_the_reply_again_at_the_deadline() -> None:
    h = Harness(TurnOptions(false_interruption_s=1.0))
    async with running(h.processors(), h.clock) as task:
        await bot_speaks(task, h)
        await h.feed(task, np.concatenate([tone(0.3), silence(0.5)]))  # a cough the VAD took for speech
        await h.below.wait_for(lambda: h.below.of(UserStoppedSpeakingFrame))
        stop_ns = h.below.times(UserStoppedSpeakingFrame)[0]
        await h.clock.advance(stop_ns + NS_PER_S - 1 - h.clock.now_ns())
        await yield_rounds()
        assert h.below.of(FalseInterruptionFrame) == []
        await h.clock.advance(1)
        await h.below.wait_for(lambda: h.below.of(FalseInterruptionFrame))
        (frame,) = h.below.of(FalseInterruptionFrame)
        assert (frame.voided_turn, frame.resume) == (1, False)
        assert h.below.times(FalseInterruptionFrame)[0] == stop_ns + NS_PER_S


async def test_words_after_an_interruption_are_a_real_one() -> None:
    h = Harness(TurnOptions(false_interruption_s=1.0))
    async with running(h.processors(), h.clock) as task:
        await bot_speaks(task, h)
        await h.feed(task, np.concatenate([tone(0.5), silence(0.5)]))
        await h.below.wait_for(lambda: h.below.of(UserStoppedSpeakingFrame))
        task.turns.begin()  # the transcript arrived: the user aggregator began the next reply
        await h.clock.advance(2 * NS_PER_S)
        await yield_rounds()
        assert h.below.of(FalseInterruptionFrame) == []


async def test_speaking_again_before_the_deadline_moves_the_check_to_the_next_stop() -> None:
    h = Harness(TurnOptions(false_interruption_s=1.0, false_interruption="resume"))
    async with running(h.processors(), h.clock) as task:
        await bot_speaks(task, h)
        await h.feed(task, np.concatenate([tone(0.3), silence(0.5)]))
        await h.below.wait_for(lambda: len(h.below.of(UserStoppedSpeakingFrame)) == 1)
        await h.feed(task, np.concatenate([silence(0.2), tone(0.3)]))  # within the second
        await h.below.wait_for(lambda: len(h.below.of(UserStartedSpeakingFrame)) == 2)
        await h.feed(task, silence(0.5))
        await h.below.wait_for(lambda: len(h.below.of(UserStoppedSpeakingFrame)) == 2)
        first_stop, second_stop = h.below.times(UserStoppedSpeakingFrame)
        await h.clock.advance(first_stop + NS_PER_S + 100 * MS - h.clock.now_ns())
        await yield_rounds()
        assert h.below.of(FalseInterruptionFrame) == []
        await h.clock.advance(second_stop + NS_PER_S - h.clock.now_ns())
        await h.below.wait_for(lambda: h.below.of(FalseInterruptionFrame))
        assert [f.resume for f in h.below.of(FalseInterruptionFrame)] == [True]
        assert len(h.below.of(InterruptionFrame)) == 1  # the bot was silent the second time


async def test_a_false_interruption_asks_for_a_new_reply_on_the_same_context() -> None:
    context = LLMContext()
    recovery, below = UserContextAggregator(context), Recorder()
    async with running([recovery, below]) as task:
        await task.queue_frame(UserMessageFrame(text="What is the weather like?", turn=task.turns.begin()))
        context.add("assistant", "It is sunny and", interrupted=True)
        task.turns.interrupt()
        await task.queue_frame(FalseInterruptionFrame(voided_turn=1))
        await below.wait_for(lambda: len(below.of(LLMContextFrame)) == 2)
        again = below.of(LLMContextFrame)[1]
        assert again.turn == 2 == task.turns.current and again.context is context

        task.turns.interrupt()
        await task.queue_frame(FalseInterruptionFrame(voided_turn=2, resume=True))
        await below.wait_for(lambda: len(below.of(LLMContextFrame)) == 3)
        resumed = below.of(LLMContextFrame)[2]
        assert resumed.turn == 3 and resumed.resume and not again.resume and resumed.context is context
        assert context.messages[-1]["role"] == "assistant"  # nothing is added to the history

        await task.queue_frame(FalseInterruptionFrame(voided_turn=2))  # reply 3 exists: nothing to do
        await below.wait_for(lambda: len(below.of(FalseInterruptionFrame)) == 3)
        assert len(below.of(LLMContextFrame)) == 3 and recovery.recoveries == 2


async def test_the_stop_is_decided_on_the_sample_stop_s_after_the_speech_not_at_its_window_end() -> None:
    h = Harness()
    async with running(h.processors(), h.clock) as task:
        # The tone ends at sample 8000; the stop (0.4 s = 6400 samples later) is due at sample
        # 14400, inside the window [14336, 14848) that the audio fed here never completes.
        await h.feed(task, np.concatenate([tone(0.5), silence(0.4)]))
        with anyio.fail_after(5):
            await h.below.wait_for(lambda: h.below.of(UserStoppedSpeakingFrame))
    (stopped,) = h.below.of(UserStoppedSpeakingFrame)
    assert abs(stopped.speech_end_ns - 500 * MS) <= 20 * MS
    assert h.vad.windows_scored == 14336 // 512


async def test_a_pause_is_announced_and_speech_after_it_resumes_the_same_user_turn() -> None:
    h = Harness(params=VADParams(start_s=0.2, stop_s=0.4, pause_s=0.2))
    async with running(h.processors(), h.clock) as task:
        await h.feed(task, np.concatenate([tone(0.5), silence(0.25), tone(0.5), silence(0.45)]))
        with anyio.fail_after(5):
            await h.below.wait_for(lambda: h.below.of(UserStoppedSpeakingFrame))
    kinds = speaking_kinds(h.below)
    assert kinds == [
        "UserStartedSpeakingFrame",
        "UserPausedSpeakingFrame",
        "UserResumedSpeakingFrame",
        "UserPausedSpeakingFrame",
        "UserStoppedSpeakingFrame",
    ]
    first, second = h.below.of(UserPausedSpeakingFrame)
    (stopped,) = h.below.of(UserStoppedSpeakingFrame)
    assert abs(first.speech_end_ns - 500 * MS) <= 20 * MS
    assert second.speech_end_ns == stopped.speech_end_ns  # the pause and the stop end the same speech
    assert abs(stopped.speech_end_ns - 1250 * MS) <= 20 * MS
    assert h.below.of(InterruptionFrame) == []  # a pause is no barge-in
    # The turn's trace keeps the pause that ended the speech, not the one the user spoke through.
    points = task.tracer.turn(1)
    assert points["speech_end"] == stopped.speech_end_ns < points["vad_pause"] <= points["vad_stop"]


PAUSING = VADParams(start_s=0.2, stop_s=0.4, pause_s=0.2)


async def test_a_pause_is_decided_on_the_clock_when_its_last_sample_is_due_not_when_its_frame_arrives() -> None:
    h = Harness(params=PAUSING)  # pause_lead_s: one 20 ms frame
    async with running(h.processors(), h.clock) as task:
        # The speech ends at 500 ms, so the pause is due at 700 ms; the audio stops 20 ms short.
        await h.feed(task, np.concatenate([tone(0.5), silence(0.18)]))
        await h.clock.advance(20 * MS - 1)
        await yield_rounds()
        assert h.below.of(UserPausedSpeakingFrame) == []
        await h.clock.advance(1)
        await h.below.wait_for(lambda: h.below.of(UserPausedSpeakingFrame))
        assert h.below.times(UserPausedSpeakingFrame) == [700 * MS]
        # The frame that completes the silence holds speech: the pause was a guess, and it resumes.
        await h.feed(task, np.concatenate([tone(0.3), silence(0.45)]))
        await h.below.wait_for(lambda: h.below.of(UserStoppedSpeakingFrame))
    kinds = speaking_kinds(h.below)
    paused, resumed, stopped = "UserPausedSpeakingFrame", "UserResumedSpeakingFrame", "UserStoppedSpeakingFrame"
    assert kinds[1:] == [paused, resumed, paused, stopped]
    (stopped,) = h.below.of(UserStoppedSpeakingFrame)
    assert abs(stopped.speech_end_ns - 1000 * MS) <= 20 * MS


@pytest.mark.parametrize("why", ["pause_lead_s is 0", "the audio is too far short", "audio since the speech is loud"])
async def test_a_pause_waits_for_its_audio_when_the_clock_may_not_decide_it(why: str) -> None:
    lead_s = 0.0 if why == "pause_lead_s is 0" else 0.02
    h = Harness(params=PAUSING, pause_lead_s=lead_s, windows_per_hop=1)  # so every window fed is scored
    # Murmur: loud for the window gate (-45 dBFS) but not speech for the analyzer (-30 dBFS).
    murmur = np.round(10 ** (-38 / 20) * 32767 * np.sqrt(2) * np.sin(np.arange(320) / 5)).astype(np.int16)
    gap = silence(0.16) if why == "the audio is too far short" else silence(0.18)
    tail = np.concatenate([silence(0.16), murmur]) if why == "audio since the speech is loud" else gap
    async with running(h.processors(), h.clock) as task:
        await h.feed(task, np.concatenate([tone(0.5), tail]))
        await h.clock.advance(100 * MS)  # long past the pause's due time (700 ms)
        await yield_rounds()
        assert h.below.of(UserPausedSpeakingFrame) == []
        for frame in frames_of(silence(0.04), h.clock.now_ns() - 40 * MS):  # the missing audio, late
            await task.queue_frame(frame)
        await h.below.wait_for(lambda: h.below.of(UserPausedSpeakingFrame))
    (paused,) = h.below.of(UserPausedSpeakingFrame)
    assert abs(paused.speech_end_ns - 500 * MS) <= 20 * MS
