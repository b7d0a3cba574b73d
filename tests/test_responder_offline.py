"""The offline responder: honest, deterministic, streamed, and tool-calling like a real model."""

from __future__ import annotations

import datetime

import pytest

from tests.embedded_helpers import MS
from tests.support import Recorder, running, yield_rounds
from voxframe.pipeline import (
    FunctionCallFrame,
    FunctionCallResultFrame,
    InterruptionFrame,
    LLMContext,
    LLMContextFrame,
    LLMResponseEndFrame,
    LLMTextFrame,
    Tool,
    VirtualClock,
)
from voxframe.processors.llm.offline import OfflineLLM, OfflineOptions, evaluate, offline_tools, parse_arithmetic

pytestmark = pytest.mark.anyio

NOON_PAST = datetime.datetime(2025, 3, 4, 15, 7)  # a Tuesday


def context_for(question: str | None, *, tools: bool = True) -> LLMContext:
    context = LLMContext(tools=offline_tools(now=lambda: NOON_PAST) if tools else [])
    if question is not None:
        context.add("user", question)
    return context


async def reply_to(context: LLMContext, *, resume: bool = False) -> tuple[str, Recorder]:
    responder, below = OfflineLLM(), Recorder()
    async with running([responder, below]) as task:
        turn = task.turns.begin()
        await task.queue_frame(LLMContextFrame(context=context, turn=turn, resume=resume))
        await below.wait_for(lambda: below.of(LLMResponseEndFrame))
    return "".join(f.text for f in below.of(LLMTextFrame)), below


@pytest.mark.parametrize(
    ("question", "tool", "answer"),
    [
        ("What time is it?", "get_time", "It is 3:07 PM."),
        ("What is the date today?", "get_date", "Today is Tuesday, March 4, 2025."),
        ("Please add 7 and 5.", "calculate", "7 plus 5 is 12."),
        ("What is twelve times three?", "calculate", "12 times 3 is 36."),
        ("Subtract 3 from 10.", "calculate", "10 minus 3 is 7."),
    ],
)
async def test_intents_are_answered_through_the_tool_calling_path(question: str, tool: str, answer: str) -> None:
    context = context_for(question)
    text, below = await reply_to(context)
    assert text == answer
    assert [f.function_name for f in below.of(FunctionCallFrame)] == [tool]
    assert [f.function_name for f in below.of(FunctionCallResultFrame)] == [tool]
    # The context holds the call and its result, as with a real model.
    call_message, result_message = context.messages[-2:]
    assert call_message["tool_calls"][0]["function"]["name"] == tool
    assert result_message["role"] == "tool" and result_message["tool_call_id"] == call_message["tool_calls"][0]["id"]
    assert len(below.of(LLMTextFrame)) == len(answer.split())  # streamed word by word


async def test_anything_else_gets_what_was_heard_and_how_to_plug_in_a_real_model() -> None:
    text, _ = await reply_to(context_for("Tell me about the weather in Paris."))
    assert text.startswith("I heard: Tell me about the weather in Paris.")
    assert "not a language model" in text and "tell the time" in text
    assert "OPENAI_API_KEY" in text and "OPENAI_BASE_URL" in text
    again, _ = await reply_to(context_for("Tell me about the weather in Paris."))
    assert again == text  # deterministic


async def test_without_its_tools_it_claims_no_abilities_and_calls_nothing() -> None:
    text, below = await reply_to(context_for("What time is it?", tools=False))
    assert "I heard: What time is it." in text and "tell the time" not in text
    assert below.of(FunctionCallFrame) == []


async def test_an_empty_conversation_gets_a_greeting() -> None:
    text, _ = await reply_to(context_for(None))
    assert text.startswith("Hello! I am the offline responder, not a language model.")


async def test_resuming_after_a_false_interruption_says_only_what_was_not_heard() -> None:
    context = context_for("Tell me about the weather in Paris.")
    full, _ = await reply_to(context_for("Tell me about the weather in Paris."))
    heard = " ".join(full.split()[:5])
    context.add("assistant", heard, interrupted=True)
    rest, _ = await reply_to(context, resume=True)
    assert f"{heard} {rest}" == full


async def test_an_interruption_stops_the_stream_mid_reply() -> None:
    clock = VirtualClock()
    responder, below = OfflineLLM(OfflineOptions(word_delay_s=0.1)), Recorder()
    async with running([responder, below], clock) as task:
        turn = task.turns.begin()
        await task.queue_frame(LLMContextFrame(context=context_for("Tell me a story."), turn=turn))
        for _ in range(3):
            await yield_rounds()  # the responder is asleep until its next word is due
            await clock.advance(100 * MS)
        await below.wait_for(lambda: len(below.of(LLMTextFrame)) == 3)
        await task.queue_frame(InterruptionFrame(stale_upto=task.turns.interrupt()))
        for _ in range(50):
            await clock.advance(100 * MS)
        await yield_rounds()
        assert len(below.of(LLMTextFrame)) == 3 and below.of(LLMResponseEndFrame) == []
        assert clock.sleepers == 0  # nothing of the reply is left waiting


async def test_the_example_bots_capital_tool_is_used_when_registered() -> None:
    async def capital_of(args: dict) -> str:
        return {"france": "Paris"}.get(args["country"].lower(), "unknown")

    context = context_for("What is the capital of France?")
    context.tools.append(Tool("capital_of", "The capital of a country.", {"type": "object"}, capital_of))
    text, below = await reply_to(context)
    assert text == "It is Paris."
    assert [f.arguments for f in below.of(FunctionCallFrame)] == [{"country": "France"}]


def test_arithmetic_is_parsed_from_speech_and_evaluated_without_eval() -> None:
    assert parse_arithmetic("What is 21 divided by seven?") == "21 / 7"
    assert parse_arithmetic("multiply 6 by 7") == "6 * 7"
    assert parse_arithmetic("I have 2 cats and 3 dogs") is None
    assert parse_arithmetic("What time is it?") is None
    assert evaluate("3.5 + 1000") == 1003.5
    with pytest.raises(ValueError, match="not simple arithmetic"):
        evaluate("__import__('os').getcwd()")
    with pytest.raises(ZeroDivisionError):
        evaluate("1 / 0")


async def test_a_tool_that_fails_is_reported_in_words() -> None:
    text, _ = await reply_to(context_for("What is 5 divided by 0?"))
    assert text == "Sorry, I could not work that out."
