"""OpenAI chat completions (and any compatible server: vLLM, llama.cpp, Ollama) via the official SDK.

Streaming with parallel tool calls; the base `LLMService` runs the tools and the second model
run. The request goes through the SDK's `post` (its auth, errors, timeouts, SSE decoding and typed
chunks) with a body already in wire form: `chat.completions.create` first walks every message
against the SDK's typed parameters, which costs about 0.15 ms per message, 7 ms on the path to
the first token of a 50-message conversation.

Retries and timeouts are set on purpose: the SDK's default (two retries honouring `retry-after`,
ten-minute timeout) can leave a caller waiting far longer than a conversation allows. Here the
SDK never retries; a rate limit gets one short retry of our own, anything else fails at once
into the base's spoken apology. Idle connections are kept for `keepalive_s` (the SDK's 5 s is
shorter than the gap between a conversation's turns, so each reply would pay a new connection:
a TCP and TLS handshake to a real service).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import openai
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from voxframe.pipeline import LLMContext, MetricsFrame
from voxframe.pipeline.clock import NS_PER_S

from .base import LLMOptions, LLMService, ToolCall

logger = logging.getLogger("voxframe")

#: The keys a chat message may carry on the wire; the context may hold more (e.g. "interrupted").
_WIRE_KEYS = ("role", "content", "name", "tool_calls", "tool_call_id")


@dataclass(slots=True)
class OpenAIOptions:
    model: str = "gpt-4o"
    #: None: $OPENAI_API_KEY.
    api_key: str | None = None
    #: None: $OPENAI_BASE_URL, else the public API. Any OpenAI-compatible server works.
    base_url: str | None = None
    connect_timeout_s: float = 5.0
    #: Longest wait for the next chunk before the HTTP read fails: a backstop; the base's
    #: `LLMOptions.first_token_timeout_s` and `inter_token_timeout_s` bound a quiet stream first.
    read_timeout_s: float = 15.0
    #: A 429 is retried once after min(retry-after, this); 0 disables the retry.
    rate_limit_retry_max_s: float = 1.0
    #: How long an idle connection is kept for the next turn's request.
    keepalive_s: float = 120.0
    temperature: float | None = None
    max_completion_tokens: int | None = None
    #: Passed as is to the request body (server-specific options).
    extra_body: dict[str, Any] = field(default_factory=dict)
    llm: LLMOptions = field(default_factory=LLMOptions)


class OpenAILLM(LLMService):
    def __init__(self, options: OpenAIOptions | None = None, *, name: str | None = None) -> None:
        self.options = options or OpenAIOptions()
        super().__init__(self.options.llm, name=name)
        self._client: openai.AsyncOpenAI | None = None

    async def setup(self) -> None:
        opts = self.options
        self._client = openai.AsyncOpenAI(
            api_key=opts.api_key or os.environ.get("OPENAI_API_KEY") or "none",
            base_url=opts.base_url or os.environ.get("OPENAI_BASE_URL") or None,
            max_retries=0,
            timeout=openai.Timeout(opts.read_timeout_s, connect=opts.connect_timeout_s),
            http_client=openai.DefaultAsyncHttpxClient(limits=_limits(opts.keepalive_s)),
        )

    async def cleanup(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    def is_fatal(self, error: Exception) -> bool:
        """A refused key (401) or a forbidden model (403) refuses every later request too."""
        return isinstance(error, openai.AuthenticationError | openai.PermissionDeniedError)

    async def stream_completion(self, context: LLMContext, turn: int) -> AsyncIterator[str | ToolCall]:
        stream = await self._create(context)
        calls: dict[int, dict[str, str]] = {}
        async with stream:  # leaving (end, failure, interruption) closes the HTTP response
            async for chunk in stream:
                if chunk.usage is not None:
                    await self._report_usage(chunk.usage)
                if not chunk.choices:
                    continue
                delta = chunk.choices[0].delta
                if delta.content:
                    yield delta.content
                for part in delta.tool_calls or []:
                    call = calls.setdefault(part.index, {"id": "", "name": "", "arguments": ""})
                    call["id"] = part.id or call["id"]
                    if part.function is not None:
                        call["name"] += part.function.name or ""
                        call["arguments"] += part.function.arguments or ""
                if delta.tool_calls:
                    yield ""  # progress: a long tool call is not a stall to the base's bound
        for index in sorted(calls):
            call = calls[index]
            yield ToolCall(id=call["id"], name=call["name"], arguments=call["arguments"])

    async def _create(self, context: LLMContext) -> openai.AsyncStream[ChatCompletionChunk]:
        """Open the stream; one short retry on a rate limit, none for anything else."""
        request = self._request(context)
        try:
            return await self._post(request)
        except openai.RateLimitError as exc:
            wait_s = min(_retry_after_s(exc), self.options.rate_limit_retry_max_s)
            if self.options.rate_limit_retry_max_s <= 0:
                raise
            logger.info("%s: rate limited; one retry in %.2f s", self.name, wait_s)
            await self.clock.sleep_until(self.clock.now_ns() + round(wait_s * NS_PER_S))
            return await self._post(request)

    async def _post(self, request: dict[str, Any]) -> openai.AsyncStream[ChatCompletionChunk]:
        assert self._client is not None, "setup() has not run"
        return await self._client.post(
            "/chat/completions",
            body=request,
            cast_to=ChatCompletion,
            stream=True,
            stream_cls=openai.AsyncStream[ChatCompletionChunk],
        )

    def _request(self, context: LLMContext) -> dict[str, Any]:
        """The request body as it goes on the wire."""
        opts = self.options
        request: dict[str, Any] = {
            "model": opts.model,
            "messages": [{k: m[k] for k in _WIRE_KEYS if k in m} for m in context.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if context.tools:
            request["tools"] = [tool.schema() for tool in context.tools]
            request["parallel_tool_calls"] = True
        if opts.temperature is not None:
            request["temperature"] = opts.temperature
        if opts.max_completion_tokens is not None:
            request["max_completion_tokens"] = opts.max_completion_tokens
        return request | opts.extra_body

    async def _report_usage(self, usage: Any) -> None:
        for metric in ("prompt_tokens", "completion_tokens"):
            value = getattr(usage, metric, None)
            if value is not None:
                await self.push(MetricsFrame(processor=self.name, metric=metric, value=float(value)))


def _limits(keepalive_s: float) -> Any:
    """The SDK's connection limits with our keep-alive (built from its own HTTP library's type,
    which differs between SDK versions)."""
    default = openai.DEFAULT_CONNECTION_LIMITS
    return type(default)(
        max_connections=default.max_connections,
        max_keepalive_connections=default.max_keepalive_connections,
        keepalive_expiry=keepalive_s,
    )


def _retry_after_s(exc: openai.RateLimitError) -> float:
    headers = exc.response.headers
    try:
        if "retry-after-ms" in headers:
            return float(headers["retry-after-ms"]) / 1000
        return float(headers.get("retry-after", "1"))
    except ValueError:
        return 1.0


__all__ = ["OpenAILLM", "OpenAIOptions"]
