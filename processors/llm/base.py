"""`LLMService`: the part every LLM processor shares.

A subclass implements one streaming model call, `stream_completion(context, turn)`: an async
generator yielding text deltas (`str`) and completed tool calls (`ToolCall`). The base does the
rest of a reply for an `LLMContextFrame(turn=N)`:

* emits `LLMResponseStartFrame`, an `LLMTextFrame(turn=N)` per delta, `LLMResponseEndFrame`;
  traces `llm_first_token` and sends a `ttfb` metric;
* when the model asks for tools: unless turn N is stale by then (and, for a reply prepared at
  the user's pause, only once the end of the user's turn has confirmed it, unless every tool asked for is
  `read_only`), runs every handler at once in one task group (each bounded by
  `tool_timeout_s`), appends the assistant message holding the `tool_calls` and one `tool`
  message per result to the context, and runs the model again;
* a tool call and its result also go upstream (a twin), so the turn controller knows a tool
  runs (it may mute the user meanwhile);
* `LLMContextFrame(resume=True)` (after a false interruption): the model is asked, by
  `LLMOptions.resume_note` on a copy of the context, to carry on from where the reply was cut;
  a subclass asks `resumes(turn)`;
* an interruption that voids turn N cancels the call (the worker's cancel scope); the subclass
  closes its stream in `finally`/`async with`; no tool call of a stale turn ever starts;
* a stream that goes quiet is a failure too, on the injected clock: no first item within
  `first_token_timeout_s`, or a gap over `inter_token_timeout_s` once it began. A run that
  stalled before saying or asking anything is retried (`stall_retries` per reply);
* a failure (rate limit, server error, broken or stalled stream) becomes a short spoken
  apology and a non-fatal `ErrorFrame`; the session goes on. One that `is_fatal` (a refused
  key: every later reply would fail too) is a fatal `ErrorFrame` instead, which ends the call.
  After a partial reply the apology is a sentence of its own: the partial is closed with an
  ellipsis unless it ended a sentence,
  and the apology carries a leading space, as tokens do, so text joined per turn reads
  "You said… Sorry, …" and TTS speaks two sentences; what was said is never said again.

A subclass may yield "" to show progress that is not text (a tool call's arguments arriving),
so a long tool call is not taken for a stall.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio

from voxframe.pipeline import (
    DOWN,
    UP,
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
from voxframe.pipeline.aio import closing
from voxframe.pipeline.clock import NS_PER_S, Clock, fail_at

logger = logging.getLogger("voxframe")


@dataclass(slots=True)
class ToolCall:
    """A complete tool call from the model; `arguments` is the JSON text the model wrote."""

    id: str
    name: str
    arguments: str

    def message_entry(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


RESUME_NOTE = (
    "Your previous reply was cut off by a noise, not by the user. Carry on from where it stopped, "
    "without repeating what was already said."
)


@dataclass(slots=True)
class LLMOptions:
    #: Spoken when a reply fails; empty to stay silent.
    apology: str = "Sorry, I ran into a problem. Could you say that again?"
    #: Model runs per reply (each tool round is one more run).
    max_model_runs: int = 5
    tool_timeout_s: float = 10.0
    #: Longest wait for a model run's first item (text, tool call or progress); None: no bound.
    first_token_timeout_s: float | None = 5.0
    #: Longest gap between a run's items once it began; None: no bound.
    inter_token_timeout_s: float | None = 3.0
    #: Retries per reply of a run that stalled before it said or asked anything.
    stall_retries: int = 1
    #: Added (for that reply only) to the context of a reply resumed after a false interruption.
    resume_note: str = RESUME_NOTE


#: A partial reply ending in one of these already ends a sentence.
_SENTENCE_ENDS = frozenset(".!?\u2026")


class StreamStalled(TimeoutError):
    """A model run went quiet for longer than its bound."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        #: Nothing was said or asked in the run, so running it again repeats nothing.
        self.retryable = retryable


@dataclass(slots=True)
class _Reply:
    turn: int
    started_ns: int
    text: list[str] = field(default_factory=list)
    first_token: bool = False
    #: The last visible character pushed in this reply ("" before any text).
    said_tail: str = ""
    stall_retries: int = 0


class _Watchdog:
    """Cancels `scope` once the stream has been quiet past its deadline, which each item moves.

    One task sleeping on the injected clock for the whole run, not a scope per item: a scope
    entered around each `__anext__` would wrap the provider generator's own scopes (its HTTP
    stream) across a yield.
    """

    def __init__(self, clock: Clock, first_ns: int | None, gap_ns: int | None) -> None:
        self.clock, self.first_ns, self.gap_ns = clock, first_ns, gap_ns
        self.due_ns = None if first_ns is None else clock.now_ns() + first_ns
        self.began = False
        self.scope = anyio.CancelScope()
        self._life = anyio.CancelScope()
        self._nap: anyio.CancelScope | None = None
        self._nap_until: int | None = None

    def beat(self) -> None:
        self.began = True
        due = self.due_ns = None if self.gap_ns is None else self.clock.now_ns() + self.gap_ns
        # A deadline moved earlier (the first item's 5 s bound became a 3 s gap) wakes the sleeper.
        if self._nap is not None and due is not None and (self._nap_until is None or due < self._nap_until):
            self._nap.cancel()

    def stop(self) -> None:
        self._life.cancel()

    async def run(self) -> None:
        with self._life:
            while True:
                due = self.due_ns
                if due is not None and self.clock.now_ns() >= due:
                    self.scope.cancel()
                    return
                with anyio.CancelScope() as self._nap:
                    self._nap_until = due
                    if due is None:
                        await anyio.sleep_forever()
                    else:
                        await self.clock.sleep_until(due)

    def describe(self) -> str:
        if self.began:
            return f"the stream stalled: nothing for {(self.gap_ns or 0) / NS_PER_S:.1f} s"
        return f"no first token in {(self.first_ns or 0) / NS_PER_S:.1f} s"


class LLMService(FrameProcessor):
    concurrent = True

    def __init__(self, options: LLMOptions | None = None, *, name: str | None = None) -> None:
        super().__init__(name=name)
        self.llm_options = options or LLMOptions()
        self._user_turn = UserTurnGate()
        self._resumed: set[int] = set()

    async def stream_completion(self, context: LLMContext, turn: int) -> AsyncIterator[str | ToolCall]:
        """One model run on `context`: yield text deltas and completed tool calls."""
        raise NotImplementedError
        yield ""  # pragma: no cover  (makes this an async generator)

    async def process(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, LLMContextFrame) and direction is DOWN:
            context = frame.context
            if frame.resume:
                context = context.copy()  # the note is for this reply only, not for the history
                context.add("system", self.llm_options.resume_note)
                self._resumed = {frame.turn}
            await self._respond(context, frame.turn)
            return
        if direction is DOWN:
            self._user_turn.observe(frame)
        await self.push(frame, direction)

    def is_fatal(self, error: Exception) -> bool:
        """Whether `error` fails every reply from now on (a revoked key): the call ends with a fatal
        error instead of an apology. A subclass names its provider's permanent errors."""
        return False

    def resumes(self, turn: int) -> bool:
        """Reply `turn` carries on a reply a false interruption cut off (`LLMContextFrame.resume`)."""
        return turn in self._resumed

    async def _respond(self, context: LLMContext, turn: int) -> None:
        reply = _Reply(turn=turn, started_ns=self.clock.now_ns())
        await self.push(LLMResponseStartFrame(turn=turn))
        try:
            for _ in range(self.llm_options.max_model_runs):
                calls = await self._run_model_retrying(context, reply)
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
            if self.is_fatal(exc):  # no later reply can succeed: end the call with the reason
                await self.push_error(f"{self.name}: {exc}", fatal=True, exception=exc)
                return
            await self._apologize(reply)
            await self.push_error(f"{self.name}: {exc}", exception=exc)
        await self.push(LLMResponseEndFrame(turn=turn))

    async def _apologize(self, reply: _Reply) -> None:
        """Say the apology as a sentence of its own after whatever of the reply was pushed."""
        apology = self.llm_options.apology
        if not apology:
            return
        if reply.said_tail:
            if reply.said_tail not in _SENTENCE_ENDS:
                await self.push(LLMTextFrame(text="\u2026", turn=reply.turn))  # the reply trails off
            apology = " " + apology
        await self.push(TTSSpeakFrame(text=apology, turn=reply.turn))

    async def _run_model_retrying(self, context: LLMContext, reply: _Reply) -> list[ToolCall]:
        while True:
            try:
                return await self._run_model(context, reply)
            except StreamStalled as exc:
                if not exc.retryable or reply.stall_retries >= self.llm_options.stall_retries:
                    raise
                reply.stall_retries += 1
                logger.warning("%s: reply %d: %s; running the model again", self.name, reply.turn, exc)

    async def _run_model(self, context: LLMContext, reply: _Reply) -> list[ToolCall]:
        calls: list[ToolCall] = []
        reply.text.clear()
        opts = self.llm_options
        watch = _Watchdog(self.clock, _ns(opts.first_token_timeout_s), _ns(opts.inter_token_timeout_s))
        if watch.first_ns is not None or watch.gap_ns is not None:
            self.task_group.start_soon(watch.run)
        try:
            with watch.scope:
                async with closing(self.stream_completion(context, reply.turn)) as items:
                    async for item in items:
                        watch.beat()
                        if isinstance(item, ToolCall):
                            calls.append(item)
                        elif item:
                            await self._push_text(reply, item)
        finally:
            watch.stop()
        if watch.scope.cancelled_caught:
            raise StreamStalled(watch.describe(), retryable=not reply.text and not calls)
        return calls

    async def _push_text(self, reply: _Reply, text: str) -> None:
        if not reply.first_token:
            reply.first_token = True
            now = self.clock.now_ns()
            self.trace("llm_first_token", turn=reply.turn, t_ns=now)
            ttfb = (now - reply.started_ns) / NS_PER_S
            await self.push(MetricsFrame(processor=self.name, metric="ttfb", value=ttfb))
        reply.text.append(text)
        reply.said_tail = text.rstrip()[-1:] or reply.said_tail
        await self.push(LLMTextFrame(text=text, turn=reply.turn))

    async def _run_tools(self, context: LLMContext, reply: _Reply, calls: list[ToolCall]) -> None:
        """Run every call at once; the context gets the calls and their results together."""
        results: dict[str, str] = {}
        async with anyio.create_task_group() as tg:
            for call in calls:
                frame = FunctionCallFrame(
                    call_id=call.id, function_name=call.name, arguments=_parse_args(call), turn=reply.turn
                )
                await self.push(frame)
                await self.push(frame.twin(), UP)
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
        result = FunctionCallResultFrame(call_id=call.id, function_name=call.name, result=value, turn=turn)
        await self.push(result)
        await self.push(result.twin(), UP)


def _ns(seconds: float | None) -> int | None:
    return None if seconds is None or seconds <= 0 else round(seconds * NS_PER_S)


def _parse_args(call: ToolCall) -> dict[str, Any]:
    try:
        args = json.loads(call.arguments or "{}")
    except json.JSONDecodeError:
        return {}
    return args if isinstance(args, dict) else {}


__all__ = ["RESUME_NOTE", "LLMOptions", "LLMService", "StreamStalled", "ToolCall"]
