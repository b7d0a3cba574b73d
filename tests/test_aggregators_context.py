"""The assistant aggregator: only what the bot really said joins the context.

(The user side, one message per user turn, is tested with the turn controller: test_turn_controller.py.)
"""

from __future__ import annotations

import pytest

from tests.pipeline_helpers import quiet_params
from tests.support import Recorder, running
from voxframe.pipeline import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    InterruptionFrame,
    LLMContext,
    LLMResponseEndFrame,
    LLMTextFrame,
    Pipeline,
    PipelineTask,
    TTSWordsFrame,
    WordTiming,
)
from voxframe.processors.aggregators import context_aggregators

pytestmark = pytest.mark.anyio


def words(*spec: tuple[str, float]) -> list[WordTiming]:
    return [WordTiming(w, start, start + 0.3) for w, start in spec]


async def run_assistant(frames: list, context: LLMContext) -> None:
    _, assistant = context_aggregators(context)
    tail = Recorder("tail")
    task = PipelineTask(Pipeline([assistant, tail]), quiet_params())
    async with running(task):
        await task.queue_frames(frames)
        await tail.wait_for(lambda: len(tail.down) >= len(frames) + 1)


async def test_a_reply_played_to_the_end_is_recorded_whole() -> None:
    context = LLMContext(messages=[{"role": "user", "content": "hi"}])
    await run_assistant(
        [
            TTSWordsFrame(words=words(("Hello", 0.0), ("there.", 0.4)), turn=1),
            BotStartedSpeakingFrame(turn=1),
            TTSWordsFrame(words=words(("How", 0.8), ("are", 1.1), ("you?", 1.3)), turn=1),
            LLMResponseEndFrame(turn=1),
            BotStoppedSpeakingFrame(turn=1, played_s=1.6),
        ],
        context,
    )
    assert context.messages[1:] == [{"role": "assistant", "content": "Hello there. How are you?"}]


async def test_an_interrupted_reply_keeps_only_the_words_begun_before_the_cut() -> None:
    context = LLMContext(messages=[{"role": "user", "content": "hi"}])
    await run_assistant(
        [
            TTSWordsFrame(words=words(("Hello", 0.0), ("there.", 0.4), ("How", 0.8), ("are", 1.1)), turn=1),
            BotStartedSpeakingFrame(turn=1),
            BotStoppedSpeakingFrame(turn=1, played_s=0.9, interrupted=True),
            InterruptionFrame(stale_upto=1),
        ],
        context,
    )
    assert context.messages[1:] == [{"role": "assistant", "content": "Hello there. How", "interrupted": True}]


async def test_a_reply_interrupted_before_it_played_leaves_no_trace() -> None:
    context = LLMContext(messages=[{"role": "user", "content": "hi"}])
    await run_assistant([TTSWordsFrame(words=words(("Hello", 0.0)), turn=1), InterruptionFrame(stale_upto=1)], context)
    assert context.messages == [{"role": "user", "content": "hi"}]


async def test_a_text_bot_records_the_streamed_text() -> None:
    context = LLMContext()
    await run_assistant(
        [
            LLMTextFrame(text="Four", turn=1),
            LLMTextFrame(text=".", turn=1),
            LLMResponseEndFrame(turn=1),
            LLMTextFrame(text="Half a rep", turn=2),
            InterruptionFrame(stale_upto=2),
        ],
        context,
    )
    assert context.messages == [
        {"role": "assistant", "content": "Four."},
        {"role": "assistant", "content": "Half a rep", "interrupted": True},
    ]
