"""Cartesia TTS over a thin WebSocket client (see processors/README.md: why thin).

One socket per session, one Cartesia context per utterance: each clause the sentence streamer
settles goes out at once with `continue: true` (Cartesia keeps prosody across them), the end of
the reply closes the context. Word timestamps become `TTSWordsFrame`s. An interruption cancels
the context (`cancel: true`) and stops reading it, and forgives the stream's owed reply (a
cancelled context's silence is not a stall).

The socket reconnects after a drop (or after the stream's liveness watch aborts a silent one);
the utterance then resumes on a new context from its first clause whose audio had not all
arrived, placed by the word timestamps: what was heard is not said again, except the start of the
clause the cut fell in, and the caller hears the rest of the reply instead of a cut. A resume that
cannot reconnect within `2 * stream.open_timeout_s` (on the injected clock), or a drop after
`max_resumes` resumes of one utterance, ends it with an error frame. Without word timestamps a
cut after audio cannot be placed and ends the utterance with an error frame.

Every wait on the server is bounded: when text was sent and nothing at all comes back, or an
ended utterance's audio stops before its `done`, for `reply_timeout_s`, the utterance fails
instead of hanging (the SDK's per-context receive waits forever on a dropped socket).
"""

from __future__ import annotations

import base64
import json
import logging
import math
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from voxframe.pipeline import MetricsFrame, WordTiming
from voxframe.pipeline.clock import NS_PER_S, fail_at, move_on_at
from voxframe.processors.streaming import ProviderError
from voxframe.processors.streaming.websocket import Endpoint, Message, StreamOptions, WebSocketStream

from .base import TTSChunk, TTSOptions, TTSService

logger = logging.getLogger("voxframe")

DEFAULT_URL = "wss://api.cartesia.ai"
SAMPLE_RATES = (8000, 16000, 22050, 24000, 44100, 48000)
_LOST = {"type": "_lost"}  # put in every open context's inbox when the socket drops


@dataclass(slots=True)
class CartesiaOptions:
    #: Required by the real service; any value works against the fake.
    voice_id: str = "a0e99841-438c-4a64-b679-ae501e7d6091"
    #: None: $CARTESIA_API_KEY.
    api_key: str | None = None
    #: The service root (scheme and host); None: $CARTESIA_URL, else the public API.
    url: str | None = None
    version: str = "2026-03-01"
    model_id: str = "sonic-3"
    language: str = "en"
    add_timestamps: bool = True
    #: Cartesia may hold text back to build longer phrases; clauses are already whole here.
    max_buffer_delay_ms: int = 0
    reply_timeout_s: float = 5.0
    #: Drops one utterance survives (each resumes it on a new context); the next ends it.
    max_resumes: int = 3
    #: A socket owing audio that stays silent 3 s is replaced (before `reply_timeout_s` fails it).
    stream: StreamOptions = field(default_factory=lambda: StreamOptions(liveness_timeout_s=3.0))
    tts: TTSOptions = field(default_factory=TTSOptions)


@dataclass(slots=True, eq=False)
class _Context:
    """One utterance: its clauses (for a resume), how far their audio got, and its inbox.

    An utterance outlives a Cartesia context: after a drop it goes on under a new `id`, which
    speaks `sent[first:]`; `word_ends_s` and `heard_s` are on that context's timeline, and
    `offset_s` is the audio the utterance's earlier contexts delivered.
    """

    id: str
    inbox_in: MemoryObjectSendStream[dict[str, Any]]
    inbox: MemoryObjectReceiveStream[dict[str, Any]]
    sent: list[str] = field(default_factory=list)
    ended: bool = False
    done: bool = False
    lost: int = 0  # drops not resumed from yet: while any, nothing goes out (the resume sends it)
    first: int = 0
    word_ends_s: list[float] = field(default_factory=list)
    heard_s: float = 0.0
    offset_s: float = 0.0
    resumes: int = 0
    owed_since_ns: int | None = None  # Cartesia owes an answer and has been silent since (clock ns)
    lock: anyio.Lock = field(default_factory=anyio.Lock)

    def spoken(self) -> int:
        """How many of `sent[first:]` have had all their audio (their last word's end heard).

        Words are counted, not matched: Cartesia's timestamps give one entry per spoken word.
        """
        count = words = 0
        for text in self.sent[self.first :]:
            words += len(text.split())
            if words and (words > len(self.word_ends_s) or self.word_ends_s[words - 1] > self.heard_s):
                break
            count += 1
        return count

    def owes(self) -> bool:
        """Whether Cartesia surely owes more though nothing new went out: the rest of an ended
        utterance, up to its `done`. (While the LLM still streams, what was spoken may be all
        there is for now; each clause sent marks the debt again.)"""
        return self.ended and not self.done


class CartesiaTTS(TTSService):
    def __init__(self, options: CartesiaOptions | None = None, *, name: str | None = None) -> None:
        self.options = options or CartesiaOptions()
        super().__init__(self.options.tts, name=name)
        self._stream: WebSocketStream | None = None
        self._contexts: dict[str, _Context] = {}

    # --- lifecycle -----------------------------------------------------------------------------

    async def setup(self) -> None:
        if self.sample_rate not in SAMPLE_RATES:
            raise ValueError(f"Cartesia has no {self.sample_rate} Hz output; choose one of {SAMPLE_RATES}")
        self._stream = WebSocketStream(
            self.name,
            self._endpoint,
            self.options.stream,
            on_message=self._on_message,
            on_lost=self._on_lost,
            on_failed=self._on_failed,
            on_bad_message=self._on_bad_message,
            clock=self.clock,
        )
        await self.task_group.start(self._stream.run)

    async def cleanup(self) -> None:
        await super().cleanup()
        if self._stream is not None:
            await self._stream.close()

    def _endpoint(self) -> Endpoint:
        opts = self.options
        key = opts.api_key or os.environ.get("CARTESIA_API_KEY", "")
        base = (opts.url or os.environ.get("CARTESIA_URL") or DEFAULT_URL).rstrip("/")
        return Endpoint(f"{base}/tts/websocket", {"X-API-Key": key, "Cartesia-Version": opts.version})

    # --- synthesis -----------------------------------------------------------------------------

    async def synthesize_stream(self, texts: AsyncIterator[str], turn: int) -> AsyncIterator[TTSChunk]:
        context = self._open_context()
        sender = anyio.CancelScope()
        self.task_group.start_soon(self._send_inputs, context, texts, sender)
        try:
            while not context.done:
                message = await self._next_message(context)
                if message is _LOST:
                    await self._resume(context)
                    continue
                chunk = self._take(context, message)
                self._note_owed(context)
                if chunk:
                    yield chunk
        finally:
            sender.cancel()
            self._contexts.pop(context.id, None)
            if not context.done:
                await self._cancel(context)

    def _open_context(self) -> _Context:
        inbox_in, inbox = anyio.create_memory_object_stream[dict[str, Any]](math.inf)
        context = _Context(id=uuid.uuid4().hex, inbox_in=inbox_in, inbox=inbox)
        self._contexts[context.id] = context
        return context

    def _take(self, context: _Context, message: dict[str, Any]) -> TTSChunk | None:
        """What one message of the context adds to the utterance, noting how far its audio got."""
        kind = message.get("type")
        if kind == "chunk":
            audio = base64.b64decode(message["data"])
            context.heard_s += len(audio) / 2 / self.sample_rate
            return audio
        if kind == "timestamps":
            timings = _word_timings(message.get("word_timestamps") or {})
            context.word_ends_s += [w.end_s for w in timings]
            offset = context.offset_s  # the base wants seconds from the utterance's first sample
            return [WordTiming(w.word, w.start_s + offset, w.end_s + offset) for w in timings]
        if kind == "done":
            context.done = True
        elif kind == "error":
            context.done = True
            raise ProviderError(
                f"Cartesia: {message.get('error_code') or ''} {message.get('message') or message.get('error')}",
                status=message.get("status_code"),
            )
        return None

    def _note_owed(self, context: _Context) -> None:
        """After a message: a context still owed more keeps both silence deadlines running
        (otherwise only a send since the message, which marked its own debt, does)."""
        if context.owes():
            context.owed_since_ns = self.clock.now_ns()
            assert self._stream is not None
            self._stream.owe_reply()

    async def _next_message(self, context: _Context) -> dict[str, Any]:
        """The context's next message; a server that owes an answer for too long is an error."""
        timeout = self.options.reply_timeout_s
        timeout_ns = round(timeout * NS_PER_S)
        while True:
            async with move_on_at(self.clock.now_ns() + timeout_ns, self.clock):
                message = await context.inbox.receive()
                context.owed_since_ns = None  # until `_note_owed` says more is owed
                return message
            owed = context.owed_since_ns
            if owed is not None and self.clock.now_ns() - owed >= timeout_ns:
                raise ProviderError(f"Cartesia: no answer for {timeout:.1f} s")

    async def _send_inputs(self, context: _Context, texts: AsyncIterator[str], scope: anyio.CancelScope) -> None:
        """Send each clause as it settles, then end the context (runs beside the receiver)."""
        with scope:
            try:
                async for text in texts:
                    async with context.lock:
                        context.sent.append(text + " ")  # inputs are concatenated verbatim
                        await self._send_input(context, text + " ", more=True)
                async with context.lock:
                    context.ended = True
                    await self._send_input(context, "", more=False)
            except Exception as exc:  # never let a send failure escape into the task group
                logger.warning("%s: sending text failed: %r", self.name, exc)
                context.inbox_in.send_nowait({"type": "error", "message": f"sending failed: {exc!r}"})

    async def _send_input(self, context: _Context, transcript: str, *, more: bool) -> None:
        opts = self.options
        request = {
            "context_id": context.id,
            "model_id": opts.model_id,
            "transcript": transcript,
            "voice": {"mode": "id", "id": opts.voice_id},
            "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": self.sample_rate},
            "language": opts.language,
            "add_timestamps": opts.add_timestamps,
            "continue": more,
            "max_buffer_delay_ms": opts.max_buffer_delay_ms,
        }
        if context.lost:
            return  # the socket dropped: the resume sends it, under the new context's id
        if context.owed_since_ns is None:
            context.owed_since_ns = self.clock.now_ns()
        assert self._stream is not None
        # if down, the resume after reconnecting carries it
        await self._stream.send(json.dumps(request), owes_reply=True)

    async def _resume(self, context: _Context) -> None:
        """The socket dropped: go on under a new context from the first clause not all heard."""
        if context.heard_s and not self.options.add_timestamps:
            raise ProviderError("Cartesia: connection lost mid-utterance (no word timestamps to resume from)")
        if context.resumes >= self.options.max_resumes:
            raise ProviderError(f"Cartesia: connection lost {context.resumes + 1} times in one utterance")
        context.resumes += 1
        assert self._stream is not None
        bound_s = self.options.stream.open_timeout_s * 2
        try:
            async with fail_at(self.clock.now_ns() + round(bound_s * NS_PER_S), self.clock):
                await self._stream.wait_connected()
        except TimeoutError:
            logger.warning("%s: no connection within %.1f s; the rest of the reply is lost", self.name, bound_s)
            raise ProviderError(
                f"Cartesia: connection lost mid-utterance and not back within {bound_s:.1f} s"
            ) from None
        async with context.lock:
            context.lost -= 1
            if context.lost:
                return  # the new socket dropped too: the resume from that drop goes on from here
            self._contexts.pop(context.id, None)
            context.first += context.spoken()
            context.offset_s += context.heard_s
            context.heard_s, context.word_ends_s = 0.0, []
            if context.ended and context.first == len(context.sent):
                context.done = True  # every clause was heard; only the `done` was lost
                return
            context.id = uuid.uuid4().hex
            self._contexts[context.id] = context
            if context.offset_s:
                logger.info(
                    "%s: resuming the utterance at clause %d of %d", self.name, context.first + 1, len(context.sent)
                )
            for text in context.sent[context.first :]:
                await self._send_input(context, text, more=True)
            if context.ended:
                await self._send_input(context, "", more=False)

    async def _cancel(self, context: _Context) -> None:
        """Tell Cartesia to stop the context (barge-in), and stop waiting for it to answer."""
        if self._stream is None:
            return
        if not any(other.owes() for other in self._contexts.values()):
            self._stream.forgive_reply()
        if not self._stream.connected:
            return
        # anyio's clock, not the injected one, on purpose: this bounds real network I/O under a
        # shield while the utterance is being cancelled (as the stream's close timeout does), and
        # a VirtualClock nobody advances during a teardown would let a wedged send hang it.
        with anyio.CancelScope(shield=True), anyio.move_on_after(self.options.stream.close_timeout_s):
            await self._stream.send(json.dumps({"context_id": context.id, "cancel": True}))

    # --- from the socket -----------------------------------------------------------------------

    async def _on_message(self, message: Message) -> None:
        data = json.loads(message)
        context = self._contexts.get(data.get("context_id") or "")
        if context is not None:
            context.inbox_in.send_nowait(data)
        elif data.get("type") == "error" and not data.get("context_id"):
            await self.push_error(f"{self.name}: {data.get('message') or data}")

    async def _on_lost(self, code: int | None, reason: str) -> None:
        await self.push(MetricsFrame(processor=self.name, metric="connection_lost", value=1.0))
        for context in self._contexts.values():
            context.lost += 1
            context.inbox_in.send_nowait(_LOST)

    async def _on_failed(self, error: ProviderError) -> None:
        await self.push_error(f"{self.name}: {error}", fatal=True, exception=error)

    async def _on_bad_message(self, error: Exception) -> None:
        await self.push_error(f"{self.name}: unreadable message from the service: {error!r}", exception=error)


def _word_timings(stamps: dict[str, Any]) -> list[WordTiming]:
    words, starts, ends = stamps.get("words") or [], stamps.get("start") or [], stamps.get("end") or []
    return [WordTiming(w, float(s), float(e)) for w, s, e in zip(words, starts, ends, strict=False)]


__all__ = ["CartesiaOptions", "CartesiaTTS"]
