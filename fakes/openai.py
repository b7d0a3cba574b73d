"""A fake of OpenAI's chat completions API (`POST /v1/chat/completions`), streaming or not.

Each request takes the next scripted reply: text, tool calls (several at once: parallel calls),
or a function of the request body. Streams follow the real chunk sequence (role chunk, content
deltas, tool-call deltas with `id`/`name` first and arguments in pieces, `finish_reason`,
optional usage chunk, `[DONE]`), after a time-to-first-token latency and paced per token.
Errors as the API sends them: 401 `invalid_api_key`, 429 `rate_limit_exceeded` with
`retry-after-ms`, 500, an in-stream error event, a truncated body, a stall.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from aiohttp import web

from ._server import Connection, FakeServer, Fault, LatencyProfile

#: gpt-4o, request -> first token on a voice-agent workload: p50 625 ms, p95 1,222 ms
#: (LATENCY.md, from kwindla/aiewf-eval). Timed from the request, as the fake's delay is.
TTFT = LatencyProfile(0.625, 1.222)


@dataclass(slots=True)
class ToolCallSpec:
    name: str
    arguments: dict[str, Any]


@dataclass(slots=True)
class Reply:
    """One scripted model answer: text, then tool calls (if any)."""

    text: str = ""
    tool_calls: list[ToolCallSpec] = field(default_factory=list)

    @classmethod
    def calls(cls, *calls: tuple[str, dict[str, Any]], text: str = "") -> Reply:
        return cls(text=text, tool_calls=[ToolCallSpec(name, args) for name, args in calls])


ReplyScript = str | Reply | Callable[[dict[str, Any]], "str | Reply"]


@dataclass(slots=True)
class OpenAIFakeOptions:
    replies: list[ReplyScript] = field(default_factory=list)
    ttft: LatencyProfile = field(default_factory=lambda: TTFT)
    #: Time between streamed tokens (about 65 tokens/s; an assumption: no source in LATENCY.md).
    token_interval_s: float = 0.015
    #: A stalled stream gives up after this long.
    max_stall_s: float = 300.0


def default_reply(body: dict[str, Any]) -> Reply:
    """Without a script: acknowledge tool results, otherwise repeat what the user said."""
    messages = body.get("messages") or [{}]
    last = messages[-1]
    if last.get("role") == "tool":
        return Reply(text="Done.")
    content = last.get("content")
    if isinstance(content, list):
        content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return Reply(text=f"You said: {content}" if content else "Hello! How can I help?")


_TOKEN = re.compile(r"\s*[\w']+|\s*[^\w\s]+|\s+$")


def tokens(text: str) -> list[str]:
    """Model-like tokens: words with their leading space, punctuation apart."""
    return _TOKEN.findall(text)


class OpenAIFake(FakeServer):
    name = "openai"

    def __init__(
        self, options: OpenAIFakeOptions | None = None, *, api_key: str | None = None, seed: int = 0, port: int = 0
    ) -> None:
        super().__init__(api_key=api_key, seed=seed, port=port)
        self.options = options or OpenAIFakeOptions()

    @property
    def url(self) -> str:
        """The `base_url` for clients (ends in /v1)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._handle)

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The JSON body of every request, in order."""
        return [c.received[0] for c in self.connections if c.received]

    def _next_reply(self, body: dict[str, Any]) -> Reply:
        script = self.options.replies.pop(0) if self.options.replies else default_reply
        if callable(script):
            script = script(body)
        return Reply(text=script) if isinstance(script, str) else script

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        conn = self.open_connection(request)
        try:
            body = await request.json()
        except ValueError:
            invalid = _error(400, "invalid_request_error", "invalid_json", "We could not parse the JSON body.")
            return self._finish(conn, invalid)
        conn.received.append(body)
        rejection = self._reject(conn)
        if rejection is not None:
            return self._finish(conn, rejection)
        reply = self._next_reply(body)
        chunks = _Chunks(body.get("model", "gpt-4o"), reply)
        if not body.get("stream"):
            await anyio.sleep(self.draw(self.options.ttft, "ttft"))
            return self._finish(conn, web.json_response(chunks.completion()), ended="completed")
        return await self._stream(request, conn, body, chunks)

    def _finish(self, conn: Connection, response: web.Response, ended: str = "") -> web.Response:
        conn.status = response.status
        conn.ended = ended or f"status {response.status}"
        conn.done.set()
        self.notify()
        return response

    def _reject(self, conn: Connection) -> web.Response | None:
        fault = conn.fault
        status = fault.status if fault is not None else None
        if status is None and not self.authorized(conn, schemes=("Bearer",)):
            status = 401
        if status is None:
            return None
        if status == 401:
            return _error(401, "invalid_request_error", "invalid_api_key", "Incorrect API key provided.")
        if status == 429:
            retry_s = fault.retry_after_s if fault is not None else 1.0
            response = _error(429, "requests", "rate_limit_exceeded", "Rate limit reached for requests.")
            response.headers["retry-after"] = str(max(1, round(retry_s)))
            response.headers["retry-after-ms"] = str(round(retry_s * 1000))
            return response
        return _error(status, "server_error", None, "The server had an error while processing your request.")

    async def _stream(
        self, request: web.Request, conn: Connection, body: dict[str, Any], chunks: _Chunks
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache"})
        response.headers["x-request-id"] = f"req_{uuid.uuid4().hex[:16]}"
        await response.prepare(request)
        conn.status = 200
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        # Times count from the request's arrival, as the service's do: the fake's own work
        # (parsing, sending) must not add to the latency it was told to have.
        due = conn.started + self.draw(self.options.ttft, "ttft")
        try:
            for i, chunk in enumerate(chunks.stream(include_usage)):
                if i and chunk["choices"] and chunk["choices"][0]["delta"]:
                    due += self.options.token_interval_s
                await anyio.sleep(max(0.0, due - time.monotonic()))
                if await self._fault_due(request, conn, response):
                    return response
                await self._send(response, conn, chunk)
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
            conn.ended = "completed"
        except (ConnectionError, anyio.get_cancelled_exc_class()) as exc:
            conn.ended = f"{conn.ended}, client closed" if conn.ended else "client closed"
            # A client gone mid-stream (an interrupted reply) is no server error; cancellation goes on.
            if not isinstance(exc, ConnectionError):
                raise
        finally:
            conn.done.set()
            self.notify()
        return response

    async def _send(self, response: web.StreamResponse, conn: Connection, chunk: dict[str, Any]) -> None:
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        conn.sent.append(chunk)
        self.notify()

    async def _fault_due(self, request: web.Request, conn: Connection, response: web.StreamResponse) -> bool:
        fault: Fault | None = conn.fault
        if fault is None or not fault.due(len(conn.sent), 1):
            return False
        conn.fault = None
        if fault.drop:
            conn.ended = "dropped"
            self.drop(request)  # a truncated body: no final chunk, no [DONE]
        elif fault.stall:
            conn.ended = "stalled"
            self.notify()
            await anyio.sleep(self.options.max_stall_s)
        else:
            error = {"message": fault.reason or "The server had an error.", "type": "server_error", "code": None}
            await self._send(response, conn, {"error": error})
            await response.write_eof()
            conn.ended = "stream error"
        return True


class _Chunks:
    """The chunk sequence of one reply, as the API streams it (or as one completion)."""

    def __init__(self, model: str, reply: Reply) -> None:
        self.model = model
        self.reply = reply
        self.id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        self.call_ids = [f"call_{uuid.uuid4().hex[:24]}" for _ in reply.tool_calls]

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.reply.tool_calls else "stop"

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_fake",
            "choices": [choice],
        }

    def stream(self, include_usage: bool) -> list[dict[str, Any]]:
        out = [self._chunk({"role": "assistant", "content": "", "refusal": None})]
        out += [self._chunk({"content": t}) for t in tokens(self.reply.text)]
        for index, (call, call_id) in enumerate(zip(self.reply.tool_calls, self.call_ids, strict=True)):
            head = {"index": index, "id": call_id, "type": "function", "function": {"name": call.name, "arguments": ""}}
            out.append(self._chunk({"tool_calls": [head]}))
            args = json.dumps(call.arguments)
            pieces = [args[i : i + 8] for i in range(0, len(args), 8)]
            out += [self._chunk({"tool_calls": [{"index": index, "function": {"arguments": p}}]}) for p in pieces]
        out.append(self._chunk({}, self.finish_reason))
        if include_usage:
            for chunk in out:
                chunk["usage"] = None
            usage = self._usage()
            out.append({**self._chunk({}), "choices": [], "usage": usage})
        return out

    def _usage(self) -> dict[str, int]:
        completion = len(tokens(self.reply.text)) + 10 * len(self.reply.tool_calls)
        return {"prompt_tokens": 50, "completion_tokens": completion, "total_tokens": 50 + completion}

    def completion(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.reply.text or None, "refusal": None}
        if self.reply.tool_calls:
            message["tool_calls"] = [
                {"id": cid, "type": "function", "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
                for c, cid in zip(self.reply.tool_calls, self.call_ids, strict=True)
            ]
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": self.finish_reason}],
            "usage": self._usage(),
        }


def _error(status: int, type_: str, code: str | None, message: str) -> web.Response:
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return web.json_response(body, status=status)


__all__ = ["TTFT", "OpenAIFake", "OpenAIFakeOptions", "Reply", "ToolCallSpec", "default_reply", "tokens"]
