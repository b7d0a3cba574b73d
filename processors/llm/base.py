"""`LLMService`: the part every LLM processor shares.

A subclass implements one streaming model call, `stream_completion(context, turn)`: an async
generator yielding text deltas (`str`) and completed tool calls (`ToolCall`). The base does the
rest of a reply for an `LLMContextFrame(turn=N)`:

* emits `LLMResponseStartFrame`, an `LLMTextFrame(turn=N)` per delta, `LLMResponseEndFrame`;
  traces `llm_first_token` and sends a `ttfb` metric;
* when the model asks for tools: unless turn N is stale by then (and, for a reply prepared at
  the user's pause, only once the user's stop has confirmed it, unless every tool asked for is
  `read_only`), runs every handler at once in one task group (each bounded by
  `tool_timeout_s`), appends the assistant message holding the `tool_calls` and one `tool`
  message per result to the context, and runs the model again;
* an interruption that voids turn N cancels the call (the worker's cancel scope); the subclass
  closes its stream in `finally`/`async with`; no tool call of a stale turn ever starts;
* a failure (auth, rate limit, server error, broken stream) becomes a short spoken apology and a
  non-fatal `ErrorFrame`; the session goes on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import anyio

from voxframe.pipeline import (
    DOWN,
    Direction,
    Frame,
    FrameProcessor,
    FunctionCallFrame,
    FunctionCallResultFrame,
    LLMContext,
    LLMContextFrame,
    LLMResponseEndFrame,
    LLMResponseStartFrame,
    LLMTextFrame,
    MetricsFrame,
    TTSSpeakFrame,
    UserTurnGate,
)
from voxframe.pipeline.clock import NS_PER_S, fail_at

logger = logging.getLogger("voxframe")


@dataclass(slots=True)
class ToolCall:
    """A complete tool call from the model; `arguments` is the JSON text the model wrote."""

    id: str
    name: str
    arguments: str

    def message_entry(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(slots=True)
class LLMOptions:
    #: Spoken when a reply fails; empty to stay silent.
    apology: str = "Sorry, I ran into a problem. Could you say that again?"
    #: Model runs per reply (each tool round is one more run).
    max_model_runs: int = 5
    tool_timeout_s: float = 10.0


@dataclass(slots=True)
class _Reply:
    turn: int
    started_ns: int
    text: list[str] = field(default_factory=list)
    first_token: bool = False


class LLMService(FrameProcessor):
    concurrent = True

    def __init__(self, options: LLMOptions | None = None, *, name: str | None = None) -> None:
        super().__init__(name=name)
        self.llm_options = options or LLMOptions()
        self._user_turn = UserTurnGate()

    async def stream_completion(self, context: LLMContext, turn: int) -> AsyncIterator[str | ToolCall]:
        """One model run on `context`: yield text deltas and completed tool calls."""
        raise NotImplementedError
        yield ""  # pragma: no cover  (makes this an async generator)

    async def process(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, LLMContextFrame) and direction is DOWN:
            await self._respond(frame.context, frame.turn)
            return
        if direction is DOWN:
            self._user_turn.observe(frame, self.turns)
        await self.push(frame, direction)

    async def _respond(self, context: LLMContext, turn: int) -> None:
        reply = _Reply(turn=turn, started_ns=self.clock.now_ns())
        await self.push(LLMResponseStartFrame(turn=turn))
        try:
            for _ in range(self.llm_options.max_model_runs):
                calls = await self._run_model(context, reply)
                if not calls:
                    break
                if not all(t is None or t.read_only for t in map(context.tool, (c.name for c in calls))):
                    await self._user_turn.wait_confirmed(turn)  # a tool may act on the world
                if self.turns.is_stale(turn):
                    return  # the worker's scope is cancelled too; never start a stale tool
                await self._run_tools(context, reply, calls)
            else:
                logger.warning(
                    "%s: reply %d still wanted tools after %d runs", self.name, turn, self.llm_options.max_model_runs
                )
        except Exception as exc:
            logger.warning("%s: reply %d failed: %r", self.name, turn, exc)
            if self.llm_options.apology:
                await self.push(TTSSpeakFrame(text=self.llm_options.apology, turn=turn))
            await self.push_error(f"{self.name}: {exc}", exception=exc)
        await self.push(LLMResponseEndFrame(turn=turn))

    async def _run_model(self, context: LLMContext, reply: _Reply) -> list[ToolCall]:
        calls: list[ToolCall] = []
        reply.text.clear()
        async with aclosing(self.stream_completion(context, reply.turn)) as items:
            async for item in items:
                if isinstance(item, ToolCall):
                    calls.append(item)
                elif item:
                    if not reply.first_token:
                        reply.first_token = True
                        now = self.clock.now_ns()
                        self.trace("llm_first_token", turn=reply.turn, t_ns=now)
                        ttfb = (now - reply.started_ns) / NS_PER_S
                        await self.push(MetricsFrame(processor=self.name, metric="ttfb", value=ttfb))
                    reply.text.append(item)
                    await self.push(LLMTextFrame(text=item, turn=reply.turn))
        return calls

    async def _run_tools(self, context: LLMContext, reply: _Reply, calls: list[ToolCall]) -> None:
        """Run every call at once; the context gets the calls and their results together."""
        results: dict[str, str] = {}
        async with anyio.create_task_group() as tg:
            for call in calls:
                await self.push(
                    FunctionCallFrame(
                        call_id=call.id, function_name=call.name, arguments=_parse_args(call), turn=reply.turn
                    )
                )
                tg.start_soon(self._run_tool, context, call, results, reply.turn)
        text = "".join(reply.text)
        context.messages.append(
            {"role": "assistant", "content": text or None, "tool_calls": [c.message_entry() for c in calls]}
        )
        for call in calls:
            context.add("tool", results[call.id], tool_call_id=call.id)

    async def _run_tool(self, context: LLMContext, call: ToolCall, results: dict[str, str], turn: int) -> None:
        tool = context.tool(call.name)
        try:
            if tool is None:
                raise LookupError(f"no tool named {call.name!r}")
            async with fail_at(self.clock.now_ns() + round(self.llm_options.tool_timeout_s * NS_PER_S), self.clock):
                value = await tool.handler(json.loads(call.arguments or "{}"))
        except Exception as exc:  # the model hears about a failing tool and can say so
            logger.warning("%s: tool %s failed: %r", self.name, call.name, exc)
            value = {"error": f"{type(exc).__name__}: {exc}"}
        results[call.id] = value if isinstance(value, str) else json.dumps(value, default=str)
        await self.push(FunctionCallResultFrame(call_id=call.id, function_name=call.name, result=value, turn=turn))


def _parse_args(call: ToolCall) -> dict[str, Any]:
    try:
        args = json.loads(call.arguments or "{}")
    except json.JSONDecodeError:
        return {}
    return args if isinstance(args, dict) else {}


__all__ = ["LLMOptions", "LLMService", "ToolCall"]
