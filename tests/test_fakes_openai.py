"""The OpenAI fake is faithful enough for the official `openai` SDK, errors included."""

from __future__ import annotations

import json

import anyio
import openai
import pytest

from voxframe.fakes import ZERO, Fault, LatencyProfile, OpenAIFake, OpenAIFakeOptions, Reply

pytestmark = pytest.mark.anyio

MESSAGES = [{"role": "user", "content": "Weather in Paris and Oslo?"}]


def fake(*replies: str | Reply, ttft: LatencyProfile = ZERO) -> OpenAIFake:
    return OpenAIFake(OpenAIFakeOptions(replies=list(replies), ttft=ttft, token_interval_s=0.0), api_key="sk-test")


def client(f: OpenAIFake, key: str = "sk-test", retries: int = 0) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f.url, api_key=key, max_retries=retries, timeout=5.0)


async def test_the_sdk_streams_a_text_reply_with_usage() -> None:
    async with fake("Hello there, how are you?") as f, client(f) as c:
        stream = await c.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "Hello there, how are you?"
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert f.requests[0]["messages"] == MESSAGES and f.requests[0]["stream"] is True


async def test_the_sdk_assembles_parallel_tool_calls_from_the_stream() -> None:
    reply = Reply.calls(("weather", {"city": "Paris"}), ("weather", {"city": "Oslo"}))
    async with fake(reply) as f, client(f) as c:
        stream = await c.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
        calls: dict[int, dict[str, str]] = {}
        finish = None
        async for chunk in stream:
            choice = chunk.choices[0]
            finish = choice.finish_reason or finish
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                call["id"] += delta.id or ""
                call["name"] += (delta.function.name or "") if delta.function else ""
                call["arguments"] += (delta.function.arguments or "") if delta.function else ""
    assert finish == "tool_calls"
    assert [(c["name"], json.loads(c["arguments"])) for c in calls.values()] == [
        ("weather", {"city": "Paris"}),
        ("weather", {"city": "Oslo"}),
    ]
    assert all(c["id"].startswith("call_") for c in calls.values()) and calls[0]["id"] != calls[1]["id"]


async def test_the_sdk_reads_a_non_streamed_completion_and_the_default_reply_echoes() -> None:
    async with fake() as f, client(f) as c:
        completion = await c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert completion.choices[0].message.content == "You said: Weather in Paris and Oslo?"
    assert completion.choices[0].finish_reason == "stop"


async def test_time_to_first_token_follows_the_latency_profile() -> None:
    async with fake("Hi.", ttft=LatencyProfile(0.15)) as f, client(f) as c:
        t0 = anyio.current_time()
        stream = await c.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                break
        elapsed = anyio.current_time() - t0
        await stream.close()
    assert elapsed >= 0.15


async def test_errors_reach_the_sdk_as_its_own_exceptions() -> None:
    async with fake("a", "b") as f:
        async with client(f, key="wrong") as c:
            with pytest.raises(openai.AuthenticationError) as auth:
                await c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        assert auth.value.code == "invalid_api_key"
        f.faults += [Fault.reject(429, retry_after_s=0.05), Fault.reject(500)]
        async with client(f) as c:
            with pytest.raises(openai.RateLimitError):
                await c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
            with pytest.raises(openai.InternalServerError):
                await c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        f.faults.append(Fault.reject(429, retry_after_s=0.05))
        async with client(f, retries=1) as c:  # one short retry gets through
            completion = await c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        assert completion.choices[0].message.content == "a"
    assert [c.status for c in f.connections] == [401, 429, 500, 429, 200]


async def test_broken_streams_raise_in_the_sdk() -> None:
    async with fake("one two three four", "one two three four") as f, client(f) as c:
        f.faults += [Fault.drop_connection(after_sent=2), Fault.close(500, "boom", after_sent=2)]
        for expected in (openai.APIConnectionError, openai.APIError):
            stream = await c.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
            with pytest.raises(expected):
                async for _ in stream:
                    pass
    assert [c.ended for c in f.connections] == ["dropped", "stream error"]


async def test_a_client_that_closes_the_stream_is_logged() -> None:
    async with fake("a b c d e f") as f, client(f) as c:
        f.faults.append(Fault.stall_after(after_sent=2))
        stream = await c.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
        async for chunk in stream:
            if chunk.choices[0].delta.content:
                break
        await stream.close()
        await f.wait_for(lambda: f.connections[0].done.is_set())
    assert f.connections[0].ended == "stalled, client closed"
