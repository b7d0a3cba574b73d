"""The turn controller and the user aggregator: one user message per user turn, prepared replies.

The VAD's and the STT's frames are queued by hand, so each test states the exact order of events.
"""

from __future__ import annotations

import anyio
import pytest

from tests.pipeline_helpers import quiet_params
from tests.support import Recorder, running
from voxframe.pipeline import (
    UP,
    BotStoppedSpeakingFrame,
    InterimTranscriptionFrame,
    InterruptionFrame,
    LLMContext,
    LLMContextFrame,
    Pipeline,
    PipelineTask,
    TranscriptionFrame,
    UserPausedSpeakingFrame,
    UserResumedSpeakingFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    VirtualClock,
)
from voxframe.processors.aggregators import UserContextAggregator
from voxframe.processors.turns import TurnController, TurnOptions

pytestmark = pytest.mark.anyio


def user_pipeline(
    context: LLMContext, clock: VirtualClock | None = None, *, preemptive: bool = False
) -> tuple[PipelineTask, Recorder]:
    controller = TurnController(TurnOptions(final_timeout_s=1.0, preemptive=preemptive))
    tail = Recorder("llm")
    return PipelineTask(Pipeline([controller, UserContextAggregator(context), tail]), quiet_params(), clock=clock), tail


async def test_finals_of_one_user_turn_become_one_message_and_one_reply() -> None:
    context = LLMContext()
    task, llm = user_pipeline(context)
    async with running(task):
        await task.queue_frames(
            [
                UserStartedSpeakingFrame(),
                InterimTranscriptionFrame(text="what is"),
                TranscriptionFrame(text="What is the weather"),
                InterimTranscriptionFrame(text="in"),
                TranscriptionFrame(text="in Paris?"),
                UserStoppedSpeakingFrame(),
            ]
        )
        await llm.wait_for(lambda: bool(llm.of(LLMContextFrame)))
    assert context.messages == [{"role": "user", "content": "What is the weather in Paris?"}]
    (frame,) = llm.of(LLMContextFrame)
    assert frame.turn == 1 and frame.context is context
    assert task.turns.current == 1


async def test_an_open_interim_waits_for_its_final() -> None:
    context = LLMContext()
    task, llm = user_pipeline(context)
    async with running(task):
        await task.queue_frames(
            [UserStartedSpeakingFrame(), InterimTranscriptionFrame(text="tell me"), UserStoppedSpeakingFrame()]
        )
        assert not llm.of(LLMContextFrame)
        await task.queue_frame(TranscriptionFrame(text="Tell me a joke."))  # Deepgram's Finalize answer
        await llm.wait_for(lambda: bool(llm.of(LLMContextFrame)))
    assert context.messages == [{"role": "user", "content": "Tell me a joke."}]


async def test_a_final_after_the_user_stopped_completes_the_turn() -> None:
    context = LLMContext()
    task, llm = user_pipeline(context)
    async with running(task):
        await task.queue_frames([UserStartedSpeakingFrame(), UserStoppedSpeakingFrame()])
        await task.queue_frame(TranscriptionFrame(text="Hello."))  # a segment STT (Whisper)
        await llm.wait_for(lambda: bool(llm.of(LLMContextFrame)))
    assert context.messages == [{"role": "user", "content": "Hello."}]


async def test_a_missing_final_times_out_to_the_interim_and_the_late_final_is_ignored() -> None:
    clock = VirtualClock()
    context = LLMContext()
    task, llm = user_pipeline(context, clock)
    async with running(task):
        await task.queue_frames(
            [UserStartedSpeakingFrame(), InterimTranscriptionFrame(text="book a table"), UserStoppedSpeakingFrame()]
        )
        with anyio.fail_after(5):
            await clock.wait_sleepers(1)
        await clock.advance(999_000_000)
        assert not llm.of(LLMContextFrame)
        await clock.advance(1_000_000)
        await llm.wait_for(lambda: bool(llm.of(LLMContextFrame)))
        await task.queue_frame(TranscriptionFrame(text="Book a table."))
        await task.queue_frames(
            [UserStartedSpeakingFrame(), TranscriptionFrame(text="For two."), UserStoppedSpeakingFrame()]
        )
        await llm.wait_for(lambda: len(llm.of(LLMContextFrame)) == 2)
    assert [m["content"] for m in context.messages] == ["book a table", "For two."]


async def test_a_new_user_turn_interrupts_a_reply_that_has_not_been_spoken() -> None:
    context = LLMContext()
    task, llm = user_pipeline(context)
    async with running(task):
        await task.queue_frames(
            [UserStartedSpeakingFrame(), TranscriptionFrame(text="Hi."), UserStoppedSpeakingFrame()]
        )
        await task.queue_frames(
            [UserStartedSpeakingFrame(), TranscriptionFrame(text="Are you there?"), UserStoppedSpeakingFrame()]
        )
        await llm.wait_for(lambda: len(llm.of(LLMContextFrame)) == 2)
        # Turn 2 was played to its end: a third user turn does not interrupt anything.
        await task.queue_frame(BotStoppedSpeakingFrame(turn=2, played_s=1.0), UP)
        await task.queue_frames(
            [UserStartedSpeakingFrame(), TranscriptionFrame(text="Thanks."), UserStoppedSpeakingFrame()]
        )
        await llm.wait_for(lambda: len(llm.of(LLMContextFrame)) == 3)
    assert [f.stale_upto for f in llm.of(InterruptionFrame)] == [1]
    assert [f.turn for f in llm.of(LLMContextFrame)] == [1, 2, 3]
    assert [m["content"] for m in context.messages] == ["Hi.", "Are you there?", "Thanks."]


async def test_a_preemptive_reply_starts_at_the_pause_and_the_end_of_the_turn_confirms_it() -> None:
    context = LLMContext()
    task, llm = user_pipeline(context, preemptive=True)
    async with running(task):
        await task.queue_frames(
            [UserStartedSpeakingFrame(), TranscriptionFrame(text="What time is it?"), UserPausedSpeakingFrame()]
        )
        await llm.wait_for(lambda: bool(llm.of(LLMContextFrame)))  # before any stop
        assert not llm.of(UserStoppedSpeakingFrame)
        await task.queue_frames([UserStoppedSpeakingFrame(), TranscriptionFrame(text="")])  # Finalize's empty answer
        await llm.wait_for(lambda: bool(llm.of(UserStoppedSpeakingFrame)))
    assert [f.turn for f in llm.of(LLMContextFrame)] == [1]
    assert llm.of(InterruptionFrame) == []
    assert context.messages == [{"role": "user", "content": "What time is it?"}]


async def test_speech_after_the_pause_drops_the_prepared_reply_and_answers_all_the_words() -> None:
    context = LLMContext(messages=[{"role": "system", "content": "Be brief."}])
    task, llm = user_pipeline(context, preemptive=True)
    async with running(task):
        await task.queue_frames(
            [UserStartedSpeakingFrame(), TranscriptionFrame(text="Okay,"), UserPausedSpeakingFrame()]
        )
        await llm.wait_for(lambda: bool(llm.of(LLMContextFrame)))
        # The prepared reply's tools already wrote to the context.
        context.messages.append({"role": "assistant", "content": None, "tool_calls": [{"id": "c1"}]})
        context.add("tool", "9:15", tool_call_id="c1")
        await task.queue_frame(UserResumedSpeakingFrame())
        await llm.wait_for(lambda: bool(llm.of(InterruptionFrame)))
        assert task.turns.is_stale(1)
        assert context.messages == [{"role": "system", "content": "Be brief."}]
        await task.queue_frames([TranscriptionFrame(text="that sounds good."), UserStoppedSpeakingFrame()])
        await llm.wait_for(lambda: len(llm.of(LLMContextFrame)) == 2)
    assert [f.turn for f in llm.of(LLMContextFrame)] == [1, 2]
    assert [f.stale_upto for f in llm.of(InterruptionFrame)] == [1]
    assert context.messages[1:] == [{"role": "user", "content": "Okay, that sounds good."}]


async def test_a_final_that_arrives_during_the_pause_starts_the_reply_and_more_finals_restart_it() -> None:
    context = LLMContext()
    task, llm = user_pipeline(context, preemptive=True)
    async with running(task):
        await task.queue_frames(
            [UserStartedSpeakingFrame(), InterimTranscriptionFrame(text="book a"), UserPausedSpeakingFrame()]
        )
        await task.queue_frame(TranscriptionFrame(text="Book a table"))  # the answer to the pause's Finalize
        await llm.wait_for(lambda: bool(llm.of(LLMContextFrame)))
        await task.queue_frame(TranscriptionFrame(text="for two."))  # still quiet: answer all the words
        await llm.wait_for(lambda: len(llm.of(LLMContextFrame)) == 2)
        await task.queue_frame(UserStoppedSpeakingFrame())
        await llm.wait_for(lambda: bool(llm.of(UserStoppedSpeakingFrame)))
    assert [f.stale_upto for f in llm.of(InterruptionFrame)] == [1]
    assert context.messages == [{"role": "user", "content": "Book a table for two."}]


async def test_without_preemption_a_pause_starts_nothing() -> None:
    context = LLMContext()
    task, llm = user_pipeline(context)
    async with running(task):
        await task.queue_frames([UserStartedSpeakingFrame(), TranscriptionFrame(text="Hi."), UserPausedSpeakingFrame()])
        await llm.wait_for(lambda: bool(llm.of(UserPausedSpeakingFrame)))
        assert not llm.of(LLMContextFrame) and context.messages == []
        await task.queue_frame(UserStoppedSpeakingFrame())
        await llm.wait_for(lambda: bool(llm.of(LLMContextFrame)))
    assert context.messages == [{"role": "user", "content": "Hi."}]
