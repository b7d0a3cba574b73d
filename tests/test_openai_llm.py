"""OpenAILLM against the OpenAI fake: streaming, parallel tools, errors, interruption."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from tests.pipeline_helpers import quiet_params
from tests.support import Recorder, running
from voxframe.fakes import ZERO, Fault, OpenAIFake, OpenAIFakeOptions, Reply
from voxframe.pipeline import (
    UP,
    ErrorFrame,
    FunctionCallFrame,
    InterruptionFrame,
    LLMContext,
    LLMContextFrame,
    LLMResponseEndFrame,
    LLMTextFrame,
    MetricsFrame,
    Pipeline,
    PipelineError,
    PipelineTask,
    Tool,
    TTSSpeakFrame,
)
from voxframe.processors.llm import LLMOptions
from voxframe.processors.llm.openai import OpenAILLM, OpenAIOptions

pytestmark = pytest.mark.anyio


def fake(*replies: str | Reply, token_interval_s: float = 0.0) -> OpenAIFake:
    options = OpenAIFakeOptions(replies=list(replies), ttft=ZERO, token_interval_s=token_interval_s)
    return OpenAIFake(options, api_key="sk-test")


@asynccontextmanager
async def llm_pipeline(f: OpenAIFake, **kwargs: Any) -> AsyncIterator[tuple[PipelineTask, Recorder, Recorder]]:
    options = OpenAIOptions(base_url=f.url, api_key="sk-test", model="gpt-4o-mini", **kwargs)
    head, tail = Recorder("head"), Recorder("tail")
    task = PipelineTask(Pipeline([head, OpenAILLM(options), tail]), quiet_params())
    async with running(task):
        yield task, head, tail


def text_of(tail: Recorder, turn: int) -> str:
    return "".join(f.text for f in tail.of(LLMTextFrame) if f.turn == turn)


def ends(tail: Recorder) -> list[int]:
    return [f.turn for f in tail.of(LLMResponseEndFrame)]


def user(text: str) -> LLMContext:
    return LLMContext(messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}])


async def test_a_streamed_reply_and_the_request_it_came_from() -> None:
    context = user("Hi")
    context.messages.insert(1, {"role": "assistant", "content": "Hello, I", "interrupted": True})
    options = {"temperature": 0.3, "max_completion_tokens": 60, "extra_body": {"top_k": 5}}
    async with fake("Hello! How can I help today?") as f, llm_pipeline(f, **options) as (task, _, tail):
        await task.queue_frame(LLMContextFrame(context=context, turn=1))
        await tail.wait_for(lambda: ends(tail) == [1])
    assert text_of(tail, 1) == "Hello! How can I help today?"
    (body,) = f.requests
    assert body["model"] == "gpt-4o-mini" and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"][1] == {"role": "assistant", "content": "Hello, I"}  # our own keys stay home
    assert (body["temperature"], body["max_completion_tokens"], body["top_k"]) == (0.3, 60, 5)
    assert "tools" not in body and "extra_body" not in body
    assert {"ttfb", "prompt_tokens", "completion_tokens"} <= {m.metric for m in tail.of(MetricsFrame)}


@pytest.mark.parametrize("keepalive_s", [0.05, 120.0])
async def test_the_next_turn_reuses_the_connection_while_it_is_kept_alive(keepalive_s: float) -> None:
    async with fake("One.", "Two.") as f, llm_pipeline(f, keepalive_s=keepalive_s) as (task, _, tail):
        await task.queue_frame(LLMContextFrame(context=user("Hi"), turn=1))
        await tail.wait_for(lambda: ends(tail) == [1])
        await anyio.sleep(0.3)  # the user's turn: the connection idles
        await task.queue_frame(LLMContextFrame(context=user("Again"), turn=2))
        await tail.wait_for(lambda: ends(tail) == [1, 2])
    first, second = (c.peer for c in f.connections)
    assert first and second
    assert (first == second) is (keepalive_s > 0.3)


async def test_parallel_tool_calls_run_together_then_the_model_answers_with_their_results() -> None:
    both_running = anyio.Event()
    cities: list[str] = []

    async def weather(args: dict[str, Any]) -> dict[str, Any]:
        cities.append(args["city"])
        if len(cities) == 2:
            both_running.set()
        with anyio.fail_after(5):
            await both_running.wait()
        return {"temp_c": {"Paris": 21, "Oslo": 9}[args["city"]]}

    context = user("Weather in Paris and Oslo?")
    context.tools = [Tool("weather", "Current weather", {"type": "object", "properties": {}}, weather)]
    replies = [Reply.calls(("weather", {"city": "Paris"}), ("weather", {"city": "Oslo"})), "21 in Paris, 9 in Oslo."]
    async with fake(*replies) as f, llm_pipeline(f) as (task, _, tail):
        await task.queue_frame(LLMContextFrame(context=context, turn=1))
        await tail.wait_for(lambda: ends(tail) == [1])
    assert sorted(cities) == ["Oslo", "Paris"]
    first, second = f.requests
    assert [t["function"]["name"] for t in first["tools"]] == ["weather"] and first["parallel_tool_calls"] is True
    choices = [c for chunk in f.connections[0].sent for c in chunk["choices"]]
    deltas = [d for c in choices for d in c["delta"].get("tool_calls", [])]
    call_ids = [d["id"] for d in deltas if "id" in d]
    assistant, *tool_results = second["messages"][2:]
    assert [c["id"] for c in assistant["tool_calls"]] == call_ids
    assert [(m["role"], m["tool_call_id"]) for m in tool_results] == [("tool", call_ids[0]), ("tool", call_ids[1])]
    assert [m["content"] for m in tool_results] == ['{"temp_c": 21}', '{"temp_c": 9}']
    assert text_of(tail, 1) == "21 in Paris, 9 in Oslo."


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault.reject(500), "500"),
        (Fault.drop_connection(after_sent=3), "Connection"),
        (Fault.close(500, "overloaded", after_sent=3), "overloaded"),
    ],
)
async def test_a_failure_is_apologised_for_reported_and_the_session_goes_on(fault: Fault, reason: str) -> None:
    async with fake() as f, llm_pipeline(f) as (task, head, tail):  # unscripted: it echoes
        f.faults.append(fault)
        await task.queue_frame(LLMContextFrame(context=user("one two three four"), turn=1))
        await tail.wait_for(lambda: ends(tail) == [1])
        await task.queue_frame(LLMContextFrame(context=user("again"), turn=2))
        await tail.wait_for(lambda: ends(tail) == [1, 2])
        assert not task.finished
    (apology,) = tail.of(TTSSpeakFrame)
    assert apology.turn == 1 and apology.text.strip() == LLMOptions().apology
    (error,) = head.of(ErrorFrame, UP)
    assert not error.fatal and reason in error.error
    assert text_of(tail, 2) == "You said: again"


async def test_a_refused_key_is_a_fatal_error_without_an_apology() -> None:
    """A 401 fails every later reply too: the call ends with the reason instead of apologising."""
    async with fake() as f:
        with pytest.raises(ExceptionGroup) as ended:  # the task ends with the reason
            async with llm_pipeline(f) as (task, head, tail):
                f.faults.append(Fault.reject(401))
                await task.queue_frame(LLMContextFrame(context=user("one"), turn=1))
                await head.wait_for(lambda: bool(head.of(ErrorFrame, UP)))
    assert ended.group_contains(PipelineError, match="401")
    (error,) = head.of(ErrorFrame, UP)
    assert error.fatal and "401" in error.error
    assert tail.of(TTSSpeakFrame) == []


async def test_a_rate_limit_gets_one_short_retry() -> None:
    async with fake("After the wait.", "Never.") as f, llm_pipeline(f) as (task, head, tail):
        f.faults.append(Fault.reject(429, retry_after_s=0.05))
        await task.queue_frame(LLMContextFrame(context=user("one"), turn=1))
        await tail.wait_for(lambda: ends(tail) == [1])
        assert text_of(tail, 1) == "After the wait." and not head.of(ErrorFrame, UP)
        f.faults += [Fault.reject(429, retry_after_s=30.0), Fault.reject(429, retry_after_s=30.0)]
        with anyio.fail_after(3):  # the 30 s retry-after is not honoured: the retry waits at most 1 s
            await task.queue_frame(LLMContextFrame(context=user("two"), turn=2))
            await tail.wait_for(lambda: ends(tail) == [1, 2])
    assert [c.status for c in f.connections] == [429, 200, 429, 429]
    (error,) = head.of(ErrorFrame, UP)
    assert "429" in error.error and tail.of(TTSSpeakFrame)[0].turn == 2


async def test_an_interruption_closes_the_stream() -> None:
    long_reply = " ".join(["word"] * 200)
    async with fake(long_reply, token_interval_s=0.01) as f, llm_pipeline(f) as (task, _, tail):
        turn = task.turns.begin()
        await task.queue_frame(LLMContextFrame(context=user("talk"), turn=turn))
        await tail.wait_for(lambda: bool(tail.of(LLMTextFrame)))
        await task.queue_frame(InterruptionFrame(stale_upto=task.turns.interrupt()))
        await f.wait_for(lambda: f.connections[0].done.is_set())
    assert f.connections[0].ended == "client closed"
    assert len(f.connections[0].sent) < 100
    assert not ends(tail)


async def test_tool_calls_of_an_interrupted_turn_never_run() -> None:
    ran: list[dict[str, Any]] = []

    async def book(args: dict[str, Any]) -> str:
        ran.append(args)
        return "booked"

    context = user("Book it")
    context.tools = [Tool("book", "Book a table", {"type": "object", "properties": {}}, book)]
    async with fake(Reply.calls(("book", {"city": "Paris"}))) as f, llm_pipeline(f) as (task, _, tail):
        f.faults.append(Fault.stall_after(after_sent=5))  # the call is out, the stream not finished
        turn = task.turns.begin()
        await task.queue_frame(LLMContextFrame(context=context, turn=turn))
        await f.wait_for(lambda: bool(f.connections) and f.connections[0].ended == "stalled")
        await task.queue_frame(InterruptionFrame(stale_upto=task.turns.interrupt()))
        await f.wait_for(lambda: f.connections[0].done.is_set())
    assert f.connections[0].ended == "stalled, client closed"
    assert ran == [] and len(f.requests) == 1 and not tail.of(FunctionCallFrame)
    assert [m["role"] for m in context.messages] == ["system", "user"]


def said(tail: Recorder, turn: int) -> str:
    """A turn's text joined as the turn reporter and the client's bot_text join it."""
    return "".join(f.text for f in tail.of((LLMTextFrame, TTSSpeakFrame)) if f.turn == turn)


async def test_a_stream_stalled_mid_reply_is_cut_and_apologised_for_and_the_next_turn_works() -> None:
    bounds = LLMOptions(inter_token_timeout_s=0.3)
    async with fake() as f, llm_pipeline(f, llm=bounds, read_timeout_s=60.0) as (task, head, tail):
        f.faults.append(Fault.stall_after(after_sent=3))  # the role chunk, "You", " said"; then nothing
        await task.queue_frame(LLMContextFrame(context=user("one two"), turn=1))
        await tail.wait_for(lambda: ends(tail) == [1])
        await f.wait_for(lambda: f.connections[0].done.is_set())
        await task.queue_frame(LLMContextFrame(context=user("again"), turn=2))
        await tail.wait_for(lambda: ends(tail) == [1, 2])
    assert said(tail, 1) == "You said\u2026 " + LLMOptions().apology
    assert f.connections[0].ended == "stalled, client closed"
    (error,) = head.of(ErrorFrame, UP)
    assert not error.fatal and "stalled" in error.error
    assert len(f.requests) == 2  # what was said is not asked for again
    assert text_of(tail, 2) == "You said: again"


async def test_a_stream_silent_from_the_start_is_requested_again() -> None:
    bounds = LLMOptions(first_token_timeout_s=0.3)
    async with fake() as f, llm_pipeline(f, llm=bounds, read_timeout_s=60.0) as (task, head, tail):
        f.faults.append(Fault.stall_after(after_sent=0))  # headers, then not a chunk
        await task.queue_frame(LLMContextFrame(context=user("hi"), turn=1))
        await tail.wait_for(lambda: ends(tail) == [1])
    assert said(tail, 1) == "You said: hi" and not head.of(ErrorFrame, UP)
    assert [c.ended for c in f.connections] == ["stalled, client closed", "completed"]
    assert f.requests[0] == f.requests[1]


async def test_a_long_tool_call_is_progress_not_a_stall() -> None:
    booked: list[dict[str, Any]] = []

    async def book(args: dict[str, Any]) -> str:
        booked.append(args)
        return "booked"

    context = user("Book a table")
    context.tools = [Tool("book", "Book a table", {"type": "object", "properties": {}}, book)]
    args = {"city": "Paris", "note": "a window table for two, by the garden if you can"}  # 10 argument chunks
    call = Reply.calls(("book", args))
    bounds = LLMOptions(first_token_timeout_s=0.3, inter_token_timeout_s=0.3)
    # 0.05 s a chunk: the call takes about 0.6 s to stream, twice the bound, with no text at all.
    async with fake(call, "Booked.", token_interval_s=0.05) as f, llm_pipeline(f, llm=bounds) as (task, head, tail):
        await task.queue_frame(LLMContextFrame(context=context, turn=1))
        await tail.wait_for(lambda: ends(tail) == [1])
    assert booked == [args] and text_of(tail, 1) == "Booked."
    assert not head.of(ErrorFrame, UP) and len(f.requests) == 2
