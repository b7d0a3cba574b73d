"""`WebSocketSession`: one caller on a WebSocket, in any wire format, and the task serving it.

Life of a session: the socket is accepted; the serializer's handshake sets the audio rates (a
query string, a first message, Twilio's `start`); the factory builds the pipeline task from
`session.input` and `session.output`; then three loops run beside the task: receiving (audio
into the input's bounded backlog, marks to the output), sending (one outbox, drained in order;
a barge-in drops the audio not sent yet), and a watch that cancels the task when the caller is
gone. The session ends, and releases everything, when any of these happens:

* the pipeline ends by itself (an EndFrame, a fatal error, the idle timeout): the socket is
  closed, so the caller learns the bot hung up;
* the caller hangs up (a hang-up message, or closes the socket), the server ends it
  (`hang_up`), or the socket dies (no pong to the heartbeat);
* the handshake is not done within `handshake_timeout_s`, or it lacks the token.

Bad messages are dropped, logged and, where the format has events, answered with
``{"type": "error", ...}``; the call goes on.
"""

from __future__ import annotations

import hmac
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from aiohttp import WSMsgType, web

from voxframe.pipeline import PipelineTask

from ..input import InputOptions
from ..rtvi import FrameInbox
from ..webrtc.events import ClientEventsObserver, Message
from .serializer import (
    AudioIn,
    CallEnded,
    CallStarted,
    ClientMessage,
    Inbound,
    MarkPlayed,
    ProtocolError,
    Serializer,
    WireMessage,
)
from .transport import WebSocketInputTransport, WebSocketOutputTransport

logger = logging.getLogger("voxframe.websocket")

#: Messages waiting to be sent; beyond this the oldest audio goes (a caller that stopped reading).
_MAX_OUTBOX = 500
#: Bad messages answered with an error before the rest are only counted.
_MAX_ERROR_REPLIES = 10


@dataclass(slots=True)
class WebSocketSessionOptions:
    input: InputOptions = field(default_factory=InputOptions)
    #: The format's handshake (rates, token) must be done within this.
    handshake_timeout_s: float = 10.0
    #: Ping the caller this often; no pong within half of it ends the call (None: never).
    heartbeat_s: float | None = 20.0
    max_message_bytes: int = 1 << 20


TaskFactory = Callable[["WebSocketSession"], Awaitable[PipelineTask]]


@dataclass(slots=True)
class _Outgoing:
    data: WireMessage
    turn: int | None = None  # bot audio (or its mark) of this turn: a barge-in drops it unsent


class WebSocketSession:
    """A caller on a WebSocket. The factory builds the pipeline from `input` and `output`."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        serializer: Serializer,
        options: WebSocketSessionOptions | None = None,
        *,
        session_id: str,
        token: str | None = None,
        authorized: bool = True,
    ) -> None:
        self.id = session_id
        self.ws = ws
        self.serializer = serializer
        self.options = options or WebSocketSessionOptions()
        self.input = WebSocketInputTransport(self.options.input, name=f"ws.in.{self.id}")
        self.output = WebSocketOutputTransport(self, name=f"ws.out.{self.id}")
        self.task: PipelineTask | None = None
        self.end_reason: str | None = None
        #: Facts the app attaches to the session (e.g. its usage), printed in its end line.
        self.annotations: dict[str, object] = {}
        self.started: CallStarted | None = None
        self.protocol_errors = 0
        self._token = token
        self._authorized = authorized
        self._outbox: deque[_Outgoing] = deque()
        self._outbox_changed = anyio.Event()
        self._gone = anyio.Event()
        self._closing = False
        self._sender_done = anyio.Event()
        self._receiver_done = anyio.Event()
        self._handshake_scope: anyio.CancelScope | None = None
        self._last_sent_turn: int | None = None
        self._observer: ClientEventsObserver | None = None
        #: The caller's RTVI messages as frames (send-text, client-message), for the pipeline's head.
        self._inbox = FrameInbox(f"websocket session {self.id}")

    @property
    def dropped_client_frames(self) -> int:
        """Frames from the caller's messages that found the inbox full (or the pipeline over)."""
        return self._inbox.dropped

    # --- what the output and the events observer call ---------------------------------------------

    @property
    def marks(self) -> bool:
        return self.serializer.marks

    def send_audio(self, audio: bytes, turn: int) -> None:
        self._queue(_Outgoing(self.serializer.encode_audio(audio), turn))

    def send_mark(self, name: str, turn: int) -> None:
        message = self.serializer.encode_mark(name)
        if message is not None:
            self._queue(_Outgoing(message, turn))

    def clear_audio(self) -> None:
        """Barge-in: drop our unsent audio (and its marks), and tell the caller to drop what it queued."""
        self._outbox = deque(item for item in self._outbox if item.turn is None)
        message = self.serializer.encode_clear()
        if message is not None:
            self._queue(_Outgoing(message))

    def send_event(self, message: Message) -> None:
        encoded = self.serializer.encode_event(message)
        if encoded is not None:
            self._queue(_Outgoing(encoded))

    def hang_up(self) -> None:
        """End the session (the caller said goodbye, or the server ends every call)."""
        self.end_reason = self.end_reason or "hung up"
        self._gone.set()
        if self._handshake_scope is not None:
            self._handshake_scope.cancel()

    # --- life ---------------------------------------------------------------------------------------

    async def run(self, factory: TaskFactory) -> None:
        """Serve the caller until the session ends; always closes the socket."""
        try:
            early = await self._handshake()
            if early is None:
                return
            self.output.output_options.sample_rate = self.serializer.output_sample_rate
            self.task = task = await factory(self)
            # The format's start is the caller saying it is ready: RTVI's `bot-ready` follows once
            # the pipeline runs (a socket caller that speaks before it would be unheard).
            self._observer = observer = ClientEventsObserver(
                self.send_event, task.tracer, self._inbox.deliver, ready_on_start=True
            )
            task.params.observers.append(observer)
            self.send_event(self._session_event())
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._send_loop)
                tg.start_soon(self._receive_loop, early)
                tg.start_soon(self._watch, task)
                tg.start_soon(self._inbox.forward, task)
                tg.start_soon(observer.run)  # each reply word when it is heard
                await task.run()
                self.end_reason = self.end_reason or "pipeline ended"
                self._inbox.close()  # the forwarder and the word pacer return by themselves
                observer.close()
                if not await self._wind_down():
                    tg.cancel_scope.cancel()  # a loop is stuck (bounded above): the last resort
        except Exception as exc:
            self.end_reason = f"error: {exc!r}"
            logger.exception("websocket session %s failed", self.id)
        finally:
            self.end_reason = self.end_reason or "server stopped"
            with anyio.CancelScope(shield=True):
                await self.close()

    async def _wind_down(self) -> bool:
        """The pipeline is over: send what is queued, close the socket, let every loop return
        by itself (a cancelled task's exception would keep its frame, and this session, alive
        until a collection). False if they did not within the bounds."""
        self._closing = True
        self._gone.set()  # the watch returns
        self._outbox_changed.set()  # the sender sends what is left, then returns
        with anyio.move_on_after(2):
            await self._sender_done.wait()
        with anyio.move_on_after(2):
            await self.ws.close()  # the receiver sees the close and returns
        with anyio.move_on_after(2):
            await self._receiver_done.wait()
        return self._sender_done.is_set() and self._receiver_done.is_set()

    async def close(self) -> None:
        """Close the socket and cut what would keep this session alive (idempotent)."""
        self.output.detach()
        if self._observer is not None:
            self._observer.close()
        self._inbox.discard()
        self._outbox.clear()
        self.input.end_input()
        with anyio.move_on_after(2):
            await self.ws.close()

    async def _handshake(self) -> list[Inbound] | None:
        """Read until the format is ready; returns what came with it (None: the call is off)."""
        early: list[Inbound] = []
        with anyio.move_on_after(self.options.handshake_timeout_s) as scope:
            self._handshake_scope = scope
            while not self.serializer.ready or (self.started is None and not self._authorized):
                items = await self._receive_once()
                if items is None:
                    self.end_reason = self.end_reason or "closed before the call started"
                    return None
                for item in items:
                    if isinstance(item, CallStarted):
                        self.started = item
                        if not self._authorized and not self._token_matches(item.token):
                            await self._refuse("unauthorized: a valid token is required")
                            return None
                        self._authorized = True
                    elif isinstance(item, CallEnded):
                        self.end_reason = item.reason
                        return None
                    elif isinstance(item, AudioIn):
                        early.append(item)
        self._handshake_scope = None
        if scope.cancelled_caught:
            self.end_reason = self.end_reason or f"no handshake within {self.options.handshake_timeout_s:g} s"
            return None
        return early

    def _token_matches(self, given: str | None) -> bool:
        return self._token is None or (given is not None and hmac.compare_digest(given.encode(), self._token.encode()))

    async def _refuse(self, reason: str) -> None:
        """Say why (where the format has events) and close with 1008 (policy violation)."""
        self.end_reason = reason
        message = self.serializer.encode_event({"type": "error", "message": reason})
        if message is not None:
            await self._send(_Outgoing(message))
        await self.ws.close(code=1008, message=reason[:120].encode())

    def _session_event(self) -> dict[str, Any]:
        return {
            "type": "session",
            "session_id": self.id,
            "sample_rate": self.serializer.input_sample_rate,
            "output_sample_rate": self.serializer.output_sample_rate,
        }

    async def _receive_once(self) -> list[Inbound] | None:
        """One message from the caller, decoded (None: the socket closed). Bad ones yield []."""
        message = await self.ws.receive()
        if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            return None
        if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            return []
        try:
            return self.serializer.decode(message.data)
        except ProtocolError as exc:
            self.protocol_errors += 1
            if self.protocol_errors <= _MAX_ERROR_REPLIES:
                logger.info("session %s: bad message: %s", self.id, exc)
                self.send_event({"type": "error", "message": str(exc)})
            return []

    async def _receive_loop(self, early: list[Inbound]) -> None:
        try:
            self._dispatch(early)
            while True:
                items = await self._receive_once()
                if items is None:
                    self.end_reason = self.end_reason or "the caller closed the socket"
                    break
                if not self._dispatch(items):
                    break
                # A burst (TCP delivers late audio at once) goes in message by message: the
                # input's reader runs between them instead of finding them all as a backlog.
                await anyio.lowlevel.checkpoint()
            self.input.end_input()
            self._gone.set()
        finally:
            self._receiver_done.set()

    def _dispatch(self, items: list[Inbound]) -> bool:
        """Hand decoded messages on; False once the caller hung up."""
        for item in items:
            if isinstance(item, AudioIn):
                self.input.receive_audio(item.audio, item.sample_rate, item.num_channels)
            elif isinstance(item, MarkPlayed):
                self.output.mark_played(item.name)
            elif isinstance(item, CallEnded):
                self.end_reason = self.end_reason or item.reason
                return False
            elif isinstance(item, ClientMessage) and self._observer is not None:
                # RTVI (send-text, client-message, ...) as on the data channel; other JSON is ignored.
                self._observer.receive_message(item.message)
        return True

    async def _watch(self, task: PipelineTask) -> None:
        await self._gone.wait()
        await task.cancel()

    # --- sending ------------------------------------------------------------------------------------

    def _queue(self, item: _Outgoing) -> None:
        outbox = self._outbox
        outbox.append(item)
        if len(outbox) > _MAX_OUTBOX:
            # The caller stopped reading: let its oldest bot audio go, never an event.
            for index, queued in enumerate(outbox):
                if queued.turn is not None:
                    del outbox[index]
                    break
            else:
                outbox.popleft()
        self._outbox_changed.set()

    async def _send_loop(self) -> None:
        try:
            while True:
                while not self._outbox:
                    if self._closing:
                        return
                    self._outbox_changed = anyio.Event()
                    await self._outbox_changed.wait()
                await self._send(self._outbox.popleft())
        finally:
            self._sender_done.set()

    async def _send(self, item: _Outgoing) -> None:
        if self.ws.closed:
            return
        try:
            if isinstance(item.data, bytes):
                await self.ws.send_bytes(item.data)
            else:
                await self.ws.send_str(item.data)
        except (ConnectionError, RuntimeError):
            self._gone.set()  # the socket went away under us: the watch ends the call
            return
        if item.turn is not None and item.turn != self._last_sent_turn:
            self._last_sent_turn = item.turn
            self.output.trace("first_packet_out", turn=item.turn, t_ns=self.output.clock.now_ns())
