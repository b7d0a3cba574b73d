"""The LLM base: streaming a reply, parallel tools and the second run, stale turns, failures."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import pytest

from tests.pipeline_helpers import quiet_params
from tests.support import Recorder, running, yield_rounds
from voxframe.pipeline import (
    UP,
    ErrorFrame,
    FunctionCallFrame,
    InterruptionFrame,
    LLMContext,
    LLMContextFrame,
    LLMResponseEndFrame,
    LLMResponseStartFrame,
    LLMTextFrame,
    Pipeline,
    PipelineTask,
    Tool,
    TTSSpeakFrame,
    UserTurnEndedFrame,
    UserTurnStartedFrame,
)
from voxframe.pipeline.clock import NS_PER_S, VirtualClock
from voxframe.processors.llm import LLMOptions, LLMService, ToolCall
from voxframe.processors.llm.base import RESUME_NOTE

pytestmark = pytest.mark.anyio


class Stall:
    """A script item: the stream goes quiet here, until the run is cancelled."""


STALL = Stall()


@dataclass(slots=True)
class Pause:
    """A script item: the stream is quiet for `s` seconds of the pipeline's clock."""

    s: float


Script = list[str | ToolCall | Exception | Stall | Pause]


class ScriptedLLM(LLMService):
    """A model double at the I/O boundary: each run plays the next script of items.

    An Exception item is raised (a broken stream), STALL never returns (a stalled stream);
    `stall` blocks a run at its end until set.
    """

    def __init__(self, *runs: Script, options: LLMOptions | None = None) -> None:
        super().__init__(options)
        self.runs = list(runs)
        self.seen: list[list[dict[str, Any]]] = []
        self.stall: anyio.Event | None = None
        self.stalled = anyio.Event()
        self.closed = 0

    async def stream_completion(self, context: LLMContext, turn: int) -> AsyncIterator[str | ToolCall]:
        self.seen.append([dict(m) for m in context.messages])
        script = self.runs.pop(0)
        try:
            for item in script:
                if isinstance(item, Exception):
                    raise item
                if isinstance(item, Stall):
                    await anyio.sleep_forever()
                if isinstance(item, Pause):
                    await self.clock.sleep_until(self.clock.now_ns() + round(item.s * NS_PER_S))
                    continue
                yield item
            if self.stall is not None:
                self.stalled.set()
                await self.stall.wait()
        finally:
            self.closed += 1


def weather_tools(started: list[str], both_running: anyio.Event) -> list[Tool]:
    async def lookup(args: dict[str, Any]) -> dict[str, Any]:
        started.append(args["city"])
        if len(started) == 2:
            both_running.set()
        with anyio.fail_after(5):
            await both_running.wait()  # returns only if the other call runs at the same time
        return {"city": args["city"], "temp_c": 21 if args["city"] == "Paris" else 9}

    return [Tool("weather", "Weather in a city", {"type": "object"}, lookup)]


async def run_reply(llm: ScriptedLLM, context: LLMContext, turn: int = 1) -> tuple[Recorder, Recorder, PipelineTask]:
    head, tail = Recorder("head"), Recorder("tail")
    task = PipelineTask(Pipeline([head, llm, tail]), quiet_params())
    async with running(task):
        await task.queue_frame(LLMContextFrame(context=context, turn=turn))
        await tail.wait_for(lambda: bool(tail.of(LLMResponseEndFrame)))
    return head, tail, task


async def test_a_reply_streams_as_text_frames_between_start_and_end() -> None:
    llm = ScriptedLLM(["Hello", " there", "!"])
    _, tail, task = await run_reply(llm, LLMContext(messages=[{"role": "user", "content": "hi"}]), turn=4)
    frames = [f for f in tail.down if isinstance(f, (LLMResponseStartFrame, LLMTextFrame, LLMResponseEndFrame))]
    assert [type(f) for f in frames] == [
        LLMResponseStartFrame,
        LLMTextFrame,
        LLMTextFrame,
        LLMTextFrame,
        LLMResponseEndFrame,
    ]
    assert "".join(f.text for f in tail.of(LLMTextFrame)) == "Hello there!"
    assert {f.turn for f in frames} == {4}
    assert "llm_first_token" in task.tracer.turn(4)
    assert llm.closed == 1


async def test_parallel_tool_calls_run_together_and_the_model_runs_again_with_results() -> None:
    started: list[str] = []
    both = anyio.Event()
    context = LLMContext(messages=[{"role": "user", "content": "Weather in Paris and Oslo?"}])
    context.tools = weather_tools(started, both)
    llm = ScriptedLLM(
        [
            "Let me check. ",
            ToolCall("call_1", "weather", '{"city": "Paris"}'),
            ToolCall("call_2", "weather", '{"city": "Oslo"}'),
        ],
        ["Paris is 21 and Oslo 9 degrees."],
    )
    _, tail, _ = await run_reply(llm, context)
    assert sorted(started) == ["Oslo", "Paris"]
    second_run = llm.seen[1]
    assert second_run[1] == {
        "role": "assistant",
        "content": "Let me check. ",
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}},
        ],
    }
    assert second_run[2] == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": json.dumps({"city": "Paris", "temp_c": 21}),
    }
    assert second_run[3]["tool_call_id"] == "call_2"
    assert "".join(f.text for f in tail.of(LLMTextFrame)) == "Let me check. Paris is 21 and Oslo 9 degrees."
    assert [f.function_name for f in tail.of(FunctionCallFrame)] == ["weather", "weather"]


async def test_a_failing_or_unknown_tool_becomes_an_error_result_for_the_model() -> None:
    async def broken(args: dict[str, Any]) -> str:
        raise RuntimeError("backend down")

    context = LLMContext(messages=[{"role": "user", "content": "x"}], tools=[Tool("broken", "", {}, broken)])
    llm = ScriptedLLM([ToolCall("a", "broken", "{}"), ToolCall("b", "missing", "{}")], ["Sorry, that failed."])
    await run_reply(llm, context)
    results = {m["tool_call_id"]: json.loads(m["content"]) for m in llm.seen[1] if m["role"] == "tool"}
    assert "backend down" in results["a"]["error"]
    assert "missing" in results["b"]["error"]


async def test_no_tool_of_a_stale_turn_runs_and_the_stream_is_closed() -> None:
    started: list[str] = []
    context = LLMContext(messages=[{"role": "user", "content": "Weather?"}])
    context.tools = weather_tools(started, anyio.Event())
    llm = ScriptedLLM([ToolCall("call_1", "weather", '{"city": "Paris"}')])
    llm.stall = anyio.Event()  # the stream has produced the call but not ended
    tail = Recorder("tail")
    task = PipelineTask(Pipeline([llm, tail]), quiet_params())
    async with running(task):
        turn = task.turns.begin()
        await task.queue_frame(LLMContextFrame(context=context, turn=turn))
        with anyio.fail_after(5):
            await llm.stalled.wait()
        await task.queue_frame(InterruptionFrame(stale_upto=task.turns.interrupt()))
        await tail.wait_for(lambda: bool(tail.of(InterruptionFrame)))
        llm.stall.set()
        # The next reply proves the worker moved on; the stale call still never ran.
        llm.runs.append(["Okay."])
        turn2 = task.turns.begin()
        await task.queue_frame(LLMContextFrame(context=context, turn=turn2))
        await tail.wait_for(lambda: bool(tail.of(LLMResponseEndFrame)))
    assert started == []
    assert llm.closed == 2
    assert [m["role"] for m in context.messages] == ["user"]  # no half-done tool exchange
    assert {f.turn for f in tail.of(LLMTextFrame)} == {turn2}


async def test_a_read_only_tool_of_a_reply_begun_while_the_user_speaks_runs_at_once() -> None:
    async def clock(args: dict[str, Any]) -> str:
        return "9:15"

    context = LLMContext(messages=[{"role": "user", "content": "What time is it?"}])
    context.tools = [Tool("get_time", "The time", {"type": "object"}, clock, read_only=True)]
    llm = ScriptedLLM([ToolCall("call_1", "get_time", "{}")], ["It is 9:15."])
    tail = Recorder("tail")
    task = PipelineTask(Pipeline([llm, tail]), quiet_params())
    async with running(task):
        await task.queue_frame(UserTurnStartedFrame(held_from=task.turns.current + 1))
        turn = task.turns.begin()  # prepared at the user's pause; the user has not stopped
        await task.queue_frame(LLMContextFrame(context=context, turn=turn))
        await tail.wait_for(lambda: bool(tail.of(LLMResponseEndFrame)))
    assert [f.text for f in tail.of(LLMTextFrame)] == ["It is 9:15."]


@pytest.mark.parametrize("user", ["stops", "goes on"])
async def test_tools_of_a_reply_begun_while_the_user_speaks_wait_for_the_end_of_the_users_turn(user: str) -> None:
    ran: list[str] = []

    async def clock(args: dict[str, Any]) -> str:
        ran.append("get_time")
        return "9:15"

    context = LLMContext(messages=[{"role": "user", "content": "What time is it?"}])
    context.tools = [Tool("get_time", "The time", {"type": "object"}, clock)]
    llm = ScriptedLLM([ToolCall("call_1", "get_time", "{}")], ["It is 9:15."])
    llm.stall = anyio.Event()
    tail = Recorder("tail")
    task = PipelineTask(Pipeline([llm, tail]), quiet_params())
    async with running(task):
        await task.queue_frame(UserTurnStartedFrame(held_from=task.turns.current + 1))
        turn = task.turns.begin()  # prepared at the user's pause
        await task.queue_frame(LLMContextFrame(context=context, turn=turn))
        with anyio.fail_after(5):
            await llm.stalled.wait()  # the model asked for the tool
        llm.stall.set()
        await yield_rounds()
        assert ran == [] and tail.of(FunctionCallFrame) == []
        if user == "stops":
            await task.queue_frame(UserTurnEndedFrame())
            await tail.wait_for(lambda: bool(tail.of(LLMResponseEndFrame)))
        else:
            await task.queue_frame(InterruptionFrame(stale_upto=task.turns.interrupt()))
            await tail.wait_for(lambda: bool(tail.of(InterruptionFrame)))
            await task.queue_frame(UserTurnEndedFrame())
            await tail.wait_for(lambda: bool(tail.of(UserTurnEndedFrame)))
    assert ran == (["get_time"] if user == "stops" else [])


async def test_a_broken_stream_is_apologised_for_reported_and_the_session_goes_on() -> None:
    llm = ScriptedLLM(["Partial", ConnectionError("stream broke")], ["Fine now."])
    head, tail = Recorder("head"), Recorder("tail")
    task = PipelineTask(Pipeline([head, llm, tail]), quiet_params())
    context = LLMContext(messages=[{"role": "user", "content": "hi"}])
    async with running(task):
        await task.queue_frame(LLMContextFrame(context=context, turn=1))
        await task.queue_frame(LLMContextFrame(context=context, turn=2))
        await tail.wait_for(lambda: len(tail.of(LLMResponseEndFrame)) == 2)
    apology = tail.of(TTSSpeakFrame)
    assert len(apology) == 1 and apology[0].turn == 1
    assert said(tail, 1) == "Partial\u2026 Sorry, I ran into a problem. Could you say that again?"
    errors = head.of(ErrorFrame, UP)
    assert len(errors) == 1 and not errors[0].fatal and "stream broke" in errors[0].error
    assert [f.text for f in tail.of(LLMTextFrame) if f.turn == 2] == ["Fine now."]
    assert not task.finished or task.error is None


def said(tail: Recorder, turn: int) -> str:
    """A turn's text joined as a transcript joins it (the turn reporter, the client's bot_text)."""
    return "".join(f.text for f in tail.of((LLMTextFrame, TTSSpeakFrame)) if f.turn == turn)


APOLOGY = LLMOptions().apology


@pytest.mark.parametrize(
    ("tokens", "transcript"),
    [
        (["You", " said"], f"You said\u2026 {APOLOGY}"),  # cut mid-sentence: it trails off
        (["Hello", " there", "."], f"Hello there. {APOLOGY}"),
    ],
)
async def test_a_stream_stalled_mid_reply_ends_at_the_bound_with_the_apology_as_its_own_sentence(
    tokens: list[str], transcript: str
) -> None:
    clock = VirtualClock()
    bounds = LLMOptions(first_token_timeout_s=5.0, inter_token_timeout_s=3.0)
    llm = ScriptedLLM([Pause(1.1), *tokens, STALL], ["Next."], options=bounds)  # the first token at 1.1 s
    head, tail = Recorder("head"), Recorder("tail")
    context = LLMContext(messages=[{"role": "user", "content": "hi"}])
    async with running([head, llm, tail], clock=clock) as task:
        await task.queue_frame(LLMContextFrame(context=context, turn=1))
        await yield_rounds()
        await clock.advance(1_100_000_000)
        await tail.wait_for(lambda: len(tail.of(LLMTextFrame)) == len(tokens))
        await clock.advance(3 * NS_PER_S - 1)
        assert not tail.of(TTSSpeakFrame) and not tail.of(LLMResponseEndFrame)
        await clock.advance(1)
        await tail.wait_for(lambda: bool(tail.of(LLMResponseEndFrame)))
        await task.queue_frame(LLMContextFrame(context=context, turn=2))
        await tail.wait_for(lambda: len(tail.of(LLMResponseEndFrame)) == 2)
    assert tail.times(TTSSpeakFrame) == tail.times(LLMResponseEndFrame)[:1] == [4_100_000_000]
    assert said(tail, 1) == transcript
    (error,) = head.of(ErrorFrame, UP)
    assert not error.fatal and "stalled" in error.error
    assert said(tail, 2) == "Next."  # the stalled run was not run again: nothing is said twice
    assert llm.closed == 2


@pytest.mark.parametrize("second_run", ["answers", "stalls too"])
async def test_a_stream_silent_from_the_start_is_run_again_once_then_apologised_for(second_run: str) -> None:
    clock = VirtualClock()
    retry: Script = ["Hello."] if second_run == "answers" else [STALL]
    llm = ScriptedLLM([STALL], retry, options=LLMOptions(first_token_timeout_s=5.0, stall_retries=1))
    head, tail = Recorder("head"), Recorder("tail")
    context = LLMContext(messages=[{"role": "user", "content": "hi"}])
    async with running([head, llm, tail], clock=clock) as task:
        await task.queue_frame(LLMContextFrame(context=context, turn=1))
        await yield_rounds()
        await clock.advance(5 * NS_PER_S)
        if second_run == "answers":
            await tail.wait_for(lambda: bool(tail.of(LLMResponseEndFrame)))
        else:
            await clock.advance(5 * NS_PER_S)
            await tail.wait_for(lambda: bool(tail.of(LLMResponseEndFrame)))
    assert llm.seen[0] == llm.seen[1] and llm.closed == 2
    if second_run == "answers":
        assert said(tail, 1) == "Hello." and tail.times(LLMTextFrame) == [5 * NS_PER_S]
        assert not head.of(ErrorFrame, UP)
    else:
        assert said(tail, 1) == APOLOGY and tail.times(TTSSpeakFrame) == [10 * NS_PER_S]
        (error,) = head.of(ErrorFrame, UP)
        assert "no first token in 5.0 s" in error.error


async def test_a_stream_stalled_after_asking_for_a_tool_is_not_run_again_and_the_tool_never_runs() -> None:
    ran: list[str] = []

    async def book(args: dict[str, Any]) -> str:
        ran.append("book")
        return "booked"

    clock = VirtualClock()
    context = LLMContext(messages=[{"role": "user", "content": "Book it"}], tools=[Tool("book", "", {}, book)])
    llm = ScriptedLLM([ToolCall("call_1", "book", "{}"), STALL], ["Booked."], options=LLMOptions(stall_retries=1))
    tail = Recorder("tail")
    async with running([llm, tail], clock=clock) as task:
        await task.queue_frame(LLMContextFrame(context=context, turn=1))
        await yield_rounds()
        await clock.advance(3 * NS_PER_S)  # the gap bound after the call
        await tail.wait_for(lambda: bool(tail.of(LLMResponseEndFrame)))
    assert ran == [] and not tail.of(FunctionCallFrame) and len(llm.seen) == 1
    assert said(tail, 1) == APOLOGY and [m["role"] for m in context.messages] == ["user"]


async def test_a_resumed_reply_asks_the_model_to_carry_on_without_keeping_the_note() -> None:
    context = LLMContext(messages=[{"role": "user", "content": "Tell me a story."}])
    context.add("assistant", "Once upon", interrupted=True)
    llm = ScriptedLLM(["a time."])
    head, tail = Recorder("head"), Recorder("tail")
    task = PipelineTask(Pipeline([head, llm, tail]), quiet_params())
    async with running(task):
        await task.queue_frame(LLMContextFrame(context=context, turn=task.turns.begin(), resume=True))
        await tail.wait_for(lambda: bool(tail.of(LLMResponseEndFrame)))
    assert llm.seen[0][-1] == {"role": "system", "content": RESUME_NOTE}
    assert llm.resumes(1) and context.messages[-1]["role"] == "assistant"  # the note is for that reply only
