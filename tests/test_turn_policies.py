"""Each turn policy on the virtual clock, with exact timings: when a turn ends (a silence, an
end-of-turn model, the STT's endpointing), when the user may cut the bot off, what may not be
cut, muting, and a silent user.

The VAD's and the STT's frames are queued by hand at stated clock times (the VAD decides a pause
0.2 s and a stop 0.5 s after the speech ends), so each test states the exact order of events.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from tests.support import Recorder, running, yield_rounds
from voxframe.pipeline import (
    DOWN,
    UP,
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    EndFrame,
    ErrorFrame,
    FunctionCallFrame,
    FunctionCallResultFrame,
    InputAudioFrame,
    InterimTranscriptionFrame,
    InterruptionFrame,
    LLMContext,
    LLMContextFrame,
    PipelineTask,
    TranscriptionFrame,
    TTSSpeakFrame,
    UserPausedSpeakingFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    UserTurnEndedFrame,
    UserTurnStartedFrame,
    VirtualClock,
)
from voxframe.processors.aggregators import UserContextAggregator
from voxframe.processors.turns import (
    NO_TAIL_RULE,
    EndOfTurnModel,
    IdlePolicy,
    InterruptionPolicy,
    SilenceTimeout,
    SttEndpointing,
    TailRule,
    TurnController,
    TurnOptions,
    sounds_finished,
)

pytestmark = pytest.mark.anyio

MS = 1_000_000
RATE = 16_000


@dataclass(slots=True)
class Verdict:
    complete: bool
    probability: float


class ScriptedModel:
    """An end-of-turn model that says what it is told (complete or not, or a probability, complete
    above 0.5), and remembers how much audio it heard."""

    def __init__(self, *verdicts: bool | float) -> None:
        self.verdicts = list(verdicts)
        self.heard: list[int] = []

    async def predict(self, audio: np.ndarray) -> Verdict:
        self.heard.append(len(audio))
        verdict = self.verdicts.pop(0)
        probability = (0.9 if verdict else 0.0) if isinstance(verdict, bool) else verdict
        return Verdict(probability > 0.5, probability)


class Call:
    """The turn controller and the user aggregator, on a virtual clock, with `llm` after them."""

    def __init__(self, options: TurnOptions | None = None) -> None:
        self.clock = VirtualClock()
        self.context = LLMContext()
        self.controller = TurnController(options)
        self.llm = Recorder("llm")
        self.processors = [self.controller, UserContextAggregator(self.context), self.llm]

    async def at(self, task: PipelineTask, ms: float, *frames: object, up: bool = False) -> None:
        """Move the clock to `ms`, then queue `frames` (upstream: from the bot's side)."""
        await self.clock.advance(round(ms * MS) - self.clock.now_ns())
        for frame in frames:
            await task.queue_frame(frame, UP if up else DOWN)  # type: ignore[arg-type]
        await yield_rounds()

    async def audio(self, task: PipelineTask, from_ms: int, to_ms: int) -> None:
        """The user's audio between the two times, in 20 ms frames, each queued as it ends."""
        for end in range(from_ms + 20, to_ms + 1, 20):
            await self.at(task, end, InputAudioFrame(audio=bytes(2 * RATE // 50), sample_rate=RATE))

    def ended_at(self) -> list[int]:
        return [t // MS for t in self.llm.times(UserTurnEndedFrame)]

    def replies(self) -> list[int]:
        return [f.turn for f in self.llm.of(LLMContextFrame)]

    def said(self) -> list[str]:
        return [m["content"] for m in self.context.messages if m["role"] == "user"]


def started(ms: int) -> UserStartedSpeakingFrame:
    return UserStartedSpeakingFrame(speech_start_ns=ms * MS)


def paused(ms: int) -> UserPausedSpeakingFrame:
    return UserPausedSpeakingFrame(speech_end_ns=ms * MS)


def stopped(ms: int) -> UserStoppedSpeakingFrame:
    return UserStoppedSpeakingFrame(speech_end_ns=ms * MS)


# --- when a turn ends ---------------------------------------------------------------------------


async def test_a_silence_timeout_ends_the_turn_that_long_after_the_speech_unless_it_resumes() -> None:
    call = Call(TurnOptions(strategies=[SilenceTimeout(stop_s=0.8)]))
    async with running(call.processors, call.clock) as task:
        await call.at(task, 200, started(0), TranscriptionFrame(text="Book a table"))
        await call.at(task, 700, paused(500))
        await call.at(task, 1200, started(1200))  # on again at 1.2 s, before 0.5 + 0.8
        await call.at(task, 1700, paused(1500))
        await call.at(task, 1750, TranscriptionFrame(text="for two."))  # the pause's Finalize answered
        await call.at(task, 2299)
        assert call.ended_at() == [] and call.replies() == []
        await call.at(task, 2300)
        await call.llm.wait_for(call.replies)
    assert call.ended_at() == [2300] and call.replies() == [1]
    assert call.said() == ["Book a table for two."]
    assert len(call.llm.of(UserTurnStartedFrame)) == 1  # one turn, resumed once


async def test_the_default_ends_the_turn_at_the_vads_stop_not_at_its_pause() -> None:
    call = Call()
    async with running(call.processors, call.clock) as task:
        await call.at(task, 200, started(0), TranscriptionFrame(text="Hi."))
        await call.at(task, 700, paused(500))
        assert call.ended_at() == []
        await call.at(task, 1000, stopped(500))
        await call.llm.wait_for(call.replies)
    assert call.ended_at() == [1000] and call.said() == ["Hi."]


async def test_a_mid_sentence_pause_the_model_calls_incomplete_does_not_end_the_turn() -> None:
    model = ScriptedModel(0.3, 0.2, True)  # incomplete at the pause and at the second look
    call = Call(TurnOptions(strategies=[EndOfTurnModel(model, timeout_s=3.0)]))
    async with running(call.processors, call.clock) as task:
        await call.at(task, 200, started(0))
        await call.audio(task, 200, 1200)
        await call.at(task, 1200, paused(1000), TranscriptionFrame(text="What is the capital of"))
        await call.audio(task, 1200, 1500)
        await call.at(task, 1500, stopped(1000))  # the VAD's stop: a fact, not the turn's end
        await call.audio(task, 1500, 1900)  # the second look at 1.6 s: still incomplete
        await call.at(task, 1900, started(1900))  # "... Japan?" after 0.9 s
        await call.audio(task, 1900, 2800)
        await call.at(task, 2799)
        assert call.ended_at() == [] and call.replies() == []
        await call.at(task, 2800, paused(2600), TranscriptionFrame(text="Japan?"))  # Finalize's answer
        await call.llm.wait_for(call.replies)
    assert call.ended_at() == [2800]  # at the second pause, the model said complete
    assert call.said() == ["What is the capital of Japan?"] and call.replies() == [1]
    # A score per pause (the stop reused the first) and the second look, each on all of the
    # turn's audio so far: the look hears the silence after the words.
    assert len(model.heard) == 3 and model.heard[0] == RATE and model.heard[1] > RATE * 1300 // 1000
    assert model.heard[2] == RATE * 2600 // 1000
    assert len(call.llm.of(UserTurnStartedFrame)) == 1


async def test_a_complete_question_ends_at_the_pause() -> None:
    model = ScriptedModel(True)
    call = Call(TurnOptions(strategies=[EndOfTurnModel(model)]))
    async with running(call.processors, call.clock) as task:
        await call.at(task, 200, started(0))
        await call.audio(task, 200, 1200)
        await call.at(task, 1200, TranscriptionFrame(text="What time is it?"), paused(1000))
        await call.llm.wait_for(call.replies)
    assert call.ended_at() == [1200] and call.said() == ["What time is it?"]


async def test_an_incomplete_turn_ends_after_the_models_timeout_if_the_user_says_no_more() -> None:
    call = Call(TurnOptions(strategies=[EndOfTurnModel(ScriptedModel(False, False), timeout_s=3.0)]))
    async with running(call.processors, call.clock) as task:
        await call.at(task, 200, started(0), TranscriptionFrame(text="I think that"))
        await call.at(task, 1200, paused(1000))
        await call.at(task, 3999)
        assert call.ended_at() == []
        await call.at(task, 4000)
        await call.llm.wait_for(call.replies)
    assert call.ended_at() == [4000] and call.said() == ["I think that"]


# The tail rule: a complete turn the model calls incomplete still ends soon after its pause.


async def test_a_complete_question_the_model_doubts_ends_on_its_finished_final() -> None:
    model = ScriptedModel(0.3)  # incomplete, but not sure of it
    call = Call(TurnOptions(strategies=[EndOfTurnModel(model)]))
    async with running(call.processors, call.clock) as task:
        await call.at(task, 200, started(0))
        await call.audio(task, 200, 1200)
        await call.at(task, 1200, paused(1000))
        await call.at(task, 1349)
        assert call.ended_at() == []
        await call.at(task, 1350, TranscriptionFrame(text="What time is it?"))  # the pause's final
        await call.llm.wait_for(call.replies)
    assert call.ended_at() == [1350] and call.said() == ["What time is it?"]
    assert model.heard == [RATE]  # ended before the second look


async def test_a_finished_final_before_the_pause_and_a_doubtful_verdict_end_the_turn_at_the_pause() -> None:
    call = Call(TurnOptions(strategies=[EndOfTurnModel(ScriptedModel(0.3))]))
    async with running(call.processors, call.clock) as task:
        await call.at(task, 200, started(0))
        await call.audio(task, 200, 1100)
        await call.at(task, 1100, TranscriptionFrame(text="Could you tell me the capital of Japan?"))
        await call.at(task, 1200, paused(1000))
        await call.llm.wait_for(call.replies)
    assert call.ended_at() == [1200]


async def test_a_model_sure_the_turn_goes_on_vetoes_the_final_and_the_second_look_ends_it() -> None:
    model = ScriptedModel(0.02, 0.8)  # sure it is incomplete at the pause; complete after 0.6 s
    call = Call(TurnOptions(strategies=[EndOfTurnModel(model)]))
    async with running(call.processors, call.clock) as task:
        await call.at(task, 200, started(0))
        await call.audio(task, 200, 1200)
        await call.at(task, 1200, paused(1000))
        await call.at(task, 1300, TranscriptionFrame(text="I went to the store."))
        await call.audio(task, 1300, 1580)
        await call.at(task, 1599)
        assert call.ended_at() == []
        await call.at(task, 1600)  # 0.6 s of silence: the second look
        await call.llm.wait_for(call.replies)
    assert call.ended_at() == [1600] and len(model.heard) == 2


async def test_a_doubtful_verdict_at_the_second_look_with_a_finished_final_ends_the_turn() -> None:
    model = ScriptedModel(0.02, 0.2)
    call = Call(TurnOptions(strategies=[EndOfTurnModel(model, TailRule(near_probability=0.1))]))
    async with running(call.processors, call.clock) as task:
        await call.at(task, 200, started(0))
        await call.at(task, 1200, paused(1000), TranscriptionFrame(text="Is it raining?"))
        await call.at(task, 1599)
        assert call.ended_at() == []
        await call.at(task, 1600)
        await call.llm.wait_for(call.replies)
    assert call.ended_at() == [1600]


async def test_without_the_tail_rule_a_doubted_complete_question_waits_out_the_timeout() -> None:
    model = ScriptedModel(0.3)  # Pipecat as shipped: one score, then the 3 s timeout
    call = Call(TurnOptions(strategies=[EndOfTurnModel(model, NO_TAIL_RULE, timeout_s=3.0)]))
    async with running(call.processors, call.clock) as task:
        await call.at(task, 200, started(0))
        await call.at(task, 1200, paused(1000), TranscriptionFrame(text="What time is it?"))
        await call.at(task, 3999)
        assert call.ended_at() == []
        await call.at(task, 4000)
        await call.llm.wait_for(call.replies)
    assert call.ended_at() == [4000] and len(model.heard) == 1


@pytest.mark.parametrize(
    ("text", "finished"),
    [
        ("What time is it?", True),
        ("Tell me the time.", True),
        ("Thanks!", True),
        ("What is the capital of", False),
        ("What is the capital of?", False),  # punctuated by the STT, still open
        ("Could you please tell me the...", False),
        ("I would like to know,", False),
        ("And the", False),
        ("", False),
    ],
)
def test_a_transcript_sounds_finished_only_when_it_ends_a_sentence(text: str, finished: bool) -> None:
    assert sounds_finished(text) is finished


async def test_with_preemption_the_reply_prepared_at_an_incomplete_pause_stays_unheard_and_is_withdrawn() -> None:
    call = Call(TurnOptions(strategies=[EndOfTurnModel(ScriptedModel(False, False, True))], preemptive=True))
    async with running(call.processors, call.clock) as task:
        await call.at(task, 200, started(0), TranscriptionFrame(text="What is the capital of"))
        await call.at(task, 1200, paused(1000))
        await call.llm.wait_for(call.replies)  # prepared at once, on the words so far
        (held,) = call.llm.of(UserTurnStartedFrame)
        assert call.replies() == [1] and held.held_from == 1 and call.ended_at() == []
        await call.at(task, 1900, started(1900))
        assert [f.stale_upto for f in call.llm.of(InterruptionFrame)] == [1] and call.said() == []
        await call.at(task, 2800, paused(2600), TranscriptionFrame(text="Japan?"))  # Finalize's answer
        await call.llm.wait_for(lambda: call.ended_at())
    assert call.replies() == [1, 2] and call.ended_at() == [2800]
    assert call.said() == ["What is the capital of Japan?"]


async def test_the_stts_endpointing_final_ends_the_turn() -> None:
    call = Call(TurnOptions(strategies=[SttEndpointing(timeout_s=2.0)]))
    async with running(call.processors, call.clock) as task:
        await call.at(task, 200, started(0), TranscriptionFrame(text="Hello"))
        await call.at(task, 700, paused(500))
        await call.at(task, 800, TranscriptionFrame(text="there.", speech_final=True))
        await call.llm.wait_for(call.replies)
    assert call.ended_at() == [800] and call.said() == ["Hello there."]


# --- barge-in -----------------------------------------------------------------------------------


async def bot_speaks(call: Call, task: PipelineTask, ms: int) -> int:
    turn = task.turns.begin()
    await call.at(task, ms, BotStartedSpeakingFrame(turn=turn), up=True)
    return turn


async def test_speech_over_the_bot_interrupts_only_once_it_lasted_the_minimum_duration() -> None:
    call = Call(TurnOptions(interruptions=InterruptionPolicy(min_duration_s=0.5)))
    async with running(call.processors, call.clock) as task:
        await bot_speaks(call, task, 0)
        await call.at(task, 1200, started(1000))
        await call.at(task, 1499)
        assert call.llm.of(InterruptionFrame) == []
        await call.at(task, 1500)
        await call.llm.wait_for(lambda: call.llm.of(InterruptionFrame))
    assert call.llm.times(InterruptionFrame) == [1500 * MS] and task.turns.is_stale(1)


async def test_speech_shorter_than_the_minimum_neither_interrupts_nor_is_answered() -> None:
    call = Call(TurnOptions(interruptions=InterruptionPolicy(min_duration_s=0.6)))
    async with running(call.processors, call.clock) as task:
        await bot_speaks(call, task, 0)
        await call.at(task, 1200, started(1000))
        await call.at(task, 1500, paused(1300))  # 0.3 s of speech ("uh"), known at the VAD's pause
        await call.at(task, 1800, stopped(1300))
        await call.at(task, 1850, TranscriptionFrame(text="Uh."))
        await call.at(task, 3000)
    assert call.llm.of(InterruptionFrame) == [] and not task.turns.is_stale(1)
    assert call.replies() == [] and call.said() == [] and task.turns.current == 1


async def test_speech_over_the_bot_interrupts_only_once_it_has_the_minimum_words() -> None:
    call = Call(TurnOptions(interruptions=InterruptionPolicy(min_words=2)))
    async with running(call.processors, call.clock) as task:
        await bot_speaks(call, task, 0)
        await call.at(task, 1200, started(1000))
        await call.at(task, 1500, InterimTranscriptionFrame(text="stop"))
        assert call.llm.of(InterruptionFrame) == []
        await call.at(task, 1800, InterimTranscriptionFrame(text="stop please"))
        await call.llm.wait_for(lambda: call.llm.of(InterruptionFrame))
    assert call.llm.times(InterruptionFrame) == [1800 * MS]


@pytest.mark.parametrize("min_words", [0, 2])
async def test_a_transcript_with_no_vad_speech_interrupts_only_with_enough_words(min_words: int) -> None:
    call = Call(TurnOptions(interruptions=InterruptionPolicy(min_words=min_words)))
    async with running(call.processors, call.clock) as task:
        await bot_speaks(call, task, 0)
        await call.at(task, 1500, TranscriptionFrame(text="Utterance one."))  # noise the STT heard as words
        if min_words:
            await call.llm.wait_for(call.replies)
    if min_words:
        assert [f.stale_upto for f in call.llm.of(InterruptionFrame)] == [1] and call.said() == ["Utterance one."]
    else:
        assert call.llm.of(InterruptionFrame) == [] and call.said() == [] and not task.turns.is_stale(1)


async def test_an_utterance_that_allows_no_interruption_plays_on_and_the_user_is_answered_after() -> None:
    call = Call()
    async with running(call.processors, call.clock) as task:
        await call.at(task, 0, TTSSpeakFrame(text="This call is recorded.", allow_interruptions=False))
        await call.at(task, 100, BotStartedSpeakingFrame(turn=0), up=True)
        await call.at(task, 1200, started(1000), TranscriptionFrame(text="Hello?"))
        await call.at(task, 2000, stopped(1500))
        await call.llm.wait_for(call.replies)
        assert call.llm.of(InterruptionFrame) == [] and call.said() == ["Hello?"]
        # Once it has been said, user speech over the bot cuts it as usual.
        await call.at(task, 3000, BotStoppedSpeakingFrame(turn=0, played_s=2.9), up=True)
        await call.at(task, 3100, BotStartedSpeakingFrame(turn=1), up=True)
        await call.at(task, 3400, started(3200))
        await call.llm.wait_for(lambda: call.llm.of(InterruptionFrame))
    assert call.llm.times(InterruptionFrame) == [3400 * MS]


# --- muting --------------------------------------------------------------------------------------


async def test_the_user_is_muted_during_the_bots_first_utterance_when_asked() -> None:
    call = Call(TurnOptions(mute_during_first_utterance=True))
    async with running(call.processors, call.clock) as task:
        await call.at(task, 0, BotStartedSpeakingFrame(turn=0), up=True)
        await call.at(task, 1200, started(1000), TranscriptionFrame(text="Hello?"))
        await call.at(task, 2000, stopped(1500))
        assert call.llm.of(UserTurnStartedFrame) == [] and call.said() == [] and call.llm.of(InterruptionFrame) == []
        await call.at(task, 2500, BotStoppedSpeakingFrame(turn=0, played_s=2.5), up=True)
        await call.at(task, 3200, started(3000), TranscriptionFrame(text="Hi."))
        await call.at(task, 4000, stopped(3500))
        await call.llm.wait_for(call.replies)
    assert call.said() == ["Hi."]


async def test_the_user_is_muted_while_a_tool_runs_when_asked() -> None:
    call = Call(TurnOptions(mute_during_tools=True))
    async with running(call.processors, call.clock) as task:
        turn = task.turns.begin()
        call_frame = FunctionCallFrame(call_id="c1", function_name="book", arguments={}, turn=turn)
        await call.at(task, 0, call_frame, up=True)
        await call.at(task, 1200, started(1000), TranscriptionFrame(text="Hello?"))
        await call.at(task, 2000, stopped(1500))
        assert call.said() == [] and call.llm.of(InterruptionFrame) == [] and not task.turns.is_stale(turn)
        result = FunctionCallResultFrame(call_id="c1", function_name="book", result="ok", turn=turn)
        await call.at(task, 2500, result, up=True)
        await call.at(task, 3200, started(3000))
        await call.llm.wait_for(lambda: call.llm.of(InterruptionFrame))  # the reply is still being prepared
    assert call.llm.times(InterruptionFrame) == [3200 * MS]


# --- a silent user --------------------------------------------------------------------------------


async def test_a_silent_user_is_prompted_once_then_the_call_ends() -> None:
    call = Call(TurnOptions(idle=IdlePolicy(prompt_s=5.0, end_s=8.0)))
    async with running(call.processors, call.clock) as task:
        await call.at(task, 4999)
        assert call.llm.of(TTSSpeakFrame) == []
        await call.at(task, 5000)
        await call.llm.wait_for(lambda: call.llm.of(TTSSpeakFrame))
        (prompt,) = call.llm.of(TTSSpeakFrame)
        assert prompt.text == "Are you still there?" and call.llm.times(TTSSpeakFrame) == [5000 * MS]
        await call.at(task, 5100, BotStartedSpeakingFrame(turn=0), up=True)
        await call.at(task, 6500, BotStoppedSpeakingFrame(turn=0, played_s=1.4), up=True)
        await call.at(task, 14499)
        assert not task.finished
        await call.at(task, 14500)  # 8 s after the prompt was said
        await call.llm.wait_for(lambda: call.llm.of(EndFrame))
    assert task.finished and task.error is None
    assert len(call.llm.of(TTSSpeakFrame)) == 1 and call.llm.times(EndFrame) == [14500 * MS]


async def test_a_user_who_speaks_is_not_prompted() -> None:
    call = Call(TurnOptions(idle=IdlePolicy(prompt_s=5.0, end_s=8.0)))
    async with running(call.processors, call.clock) as task:
        await call.at(task, 3200, started(3000), TranscriptionFrame(text="Hi."))
        await call.at(task, 4000, stopped(3500))
        await call.at(task, 9000)
        assert call.llm.of(TTSSpeakFrame) == []  # a reply is on its way: nobody is idle
        await call.at(task, 9100, BotStartedSpeakingFrame(turn=1), up=True)
        await call.at(task, 10000, BotStoppedSpeakingFrame(turn=1, played_s=0.9), up=True)
        await call.at(task, 14999)
        assert call.llm.of(TTSSpeakFrame) == []
        await call.at(task, 15000)
        await call.llm.wait_for(lambda: call.llm.of(TTSSpeakFrame))
    assert call.llm.times(TTSSpeakFrame) == [15000 * MS] and not call.llm.of(EndFrame)


class BrokenModel:
    async def predict(self, audio: np.ndarray) -> Verdict:
        raise RuntimeError("model file unreadable")


async def test_a_failing_model_is_reported_and_the_turn_ends_at_the_vads_stop() -> None:
    call = Call(TurnOptions(strategies=[EndOfTurnModel(BrokenModel())]))
    head = Recorder("head")
    async with running([head, *call.processors], call.clock) as task:
        await call.at(task, 200, started(0), TranscriptionFrame(text="Hello."))
        await call.at(task, 700, paused(500))
        await head.wait_for(lambda: head.of(ErrorFrame, UP))
        assert call.ended_at() == []
        await call.at(task, 1000, stopped(500))
        await call.llm.wait_for(call.replies)
        assert not task.finished  # the session goes on
    assert call.ended_at() == [1000] and call.said() == ["Hello."]
    errors = head.of(ErrorFrame, UP)  # one per end of speech it was asked about: the pause, the stop
    assert len(errors) == 2 and all("model file unreadable" in e.error and not e.fatal for e in errors)
