"""`WebSocketStream`: one provider WebSocket that keeps itself alive and comes back after a drop.

Used by the Deepgram and Cartesia clients, which only speak their protocol on top of it:

* `run` lives in the owning processor's task group. It connects first (a refused first
  connection raises `ProviderError`, so `task_group.start(stream.run)` fails the processor's
  setup with a clear message), then reads every message into `on_message`;
* a message `on_message` fails on goes to `on_bad_message`; reading goes on;
* after a drop (any close the client did not ask for, or a dead TCP connection) it calls
  `on_lost`, reconnects with backoff, then calls `on_reconnected`, where the client replays what
  the provider missed. A failure that will not heal (a revoked key) or too many failed attempts
  go to `on_failed` and the stream ends; it never raises into the task group;
* with `keepalive_interval_s`, `keepalive_message()` is sent whenever nothing else was sent for
  that long (Deepgram closes a silent stream after about 10 s);
* with `liveness_timeout_s`, a connection that owes an answer (something was sent with
  `owes_reply=True`, or the client called `owe_reply()`; `forgive_reply()` takes it back) and
  receives nothing at all for that long is taken for dead even though
  TCP still holds: it is aborted, logged, and handled as a drop (reconnect, `on_reconnected`
  replays). A stalled provider would otherwise leave the bot deaf or mute for the rest of the call.

Every timestamp and timer here (connect timing, the reconnect backoff, the keepalive, the
liveness deadline) is on the injected clock (`voxframe.pipeline.clock`), so a VirtualClock can
step them. Two bounds stay real network time: websockets' own open/close handshake timeouts,
and the close guard (see `_closing_guard`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import anyio
from anyio.abc import TaskStatus
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from voxframe.pipeline.clock import NS_PER_S, Clock, current_clock

from .reconnect import Backoff, ProviderError, is_permanent_status

logger = logging.getLogger("voxframe")

Message = str | bytes


@dataclass(slots=True)
class Endpoint:
    url: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class StreamOptions:
    open_timeout_s: float = 5.0
    close_timeout_s: float = 2.0
    #: Send `keepalive_message()` after this long without sending anything; None: never.
    keepalive_interval_s: float | None = None
    backoff: Backoff = field(default_factory=Backoff)
    #: Give up reconnecting after this many failed attempts in a row.
    max_reconnect_attempts: int = 20
    #: A connection owing an answer that receives nothing for this long is replaced; None: never.
    liveness_timeout_s: float | None = None


class WebSocketStream:
    def __init__(
        self,
        name: str,
        endpoint: Callable[[], Endpoint],
        options: StreamOptions,
        *,
        on_message: Callable[[Message], Awaitable[None]],
        on_lost: Callable[[int | None, str], Awaitable[None]] | None = None,
        on_reconnected: Callable[[], Awaitable[None]] | None = None,
        on_failed: Callable[[ProviderError], Awaitable[None]] | None = None,
        on_bad_message: Callable[[Exception], Awaitable[None]] | None = None,
        keepalive_message: Callable[[], Message] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.name = name
        self.clock = clock or current_clock()
        self.options = options
        self._endpoint = endpoint
        self._on_message = on_message
        self._on_lost = on_lost
        self._on_reconnected = on_reconnected
        self._on_failed = on_failed
        self._on_bad_message = on_bad_message
        self._keepalive_message = keepalive_message
        self._ws: ClientConnection | None = None
        self._connected = anyio.Event()
        self._closing = False
        self._last_send_ns = 0  # clock time of the last send (the keepalive counts from it)
        self._owed_since_ns: int | None = None  # clock time of the oldest unanswered owing send
        self._owed = anyio.Event()  # set when an answer becomes owed
        #: How many times it connected, how many connections were lost, how many of them went silent.
        self.connects = 0
        self.drops = 0
        self.stalls = 0
        self.last_connect_s = 0.0

    @property
    def connected(self) -> bool:
        return self._ws is not None

    async def wait_connected(self) -> None:
        await self._connected.wait()

    # --- running -----------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        await self._connect(first=True)
        task_status.started()
        try:
            async with anyio.create_task_group() as tg:
                if self.options.keepalive_interval_s and self._keepalive_message is not None:
                    tg.start_soon(self._keepalive, round(self.options.keepalive_interval_s * NS_PER_S))
                if self.options.liveness_timeout_s:
                    tg.start_soon(self._watch_liveness, round(self.options.liveness_timeout_s * NS_PER_S))
                await self._read_and_reconnect()
                tg.cancel_scope.cancel()
        except ProviderError as exc:
            logger.error("%s: giving up: %s", self.name, exc)
            if self._on_failed is not None:
                await self._on_failed(exc)

    async def _read_and_reconnect(self) -> None:
        while True:
            ws = self._ws
            assert ws is not None
            try:
                async for message in ws:
                    self._owed_since_ns = None  # any message shows the provider is alive
                    await self._handle(message)
            except ConnectionClosed:
                pass
            if self._closing:
                return
            self.drops += 1
            self._ws = None
            self._connected = anyio.Event()
            code, reason = ws.close_code, ws.close_reason or ""
            logger.warning("%s: connection lost (%s %s); reconnecting", self.name, code, reason)
            if self._on_lost is not None:
                await self._on_lost(code, reason)
            await self._connect(first=False)
            if self._on_reconnected is not None:
                await self._on_reconnected()

    async def _handle(self, message: Message) -> None:
        """One message; a message the client cannot read is reported, and reading goes on."""
        try:
            await self._on_message(message)
        except Exception as exc:
            logger.exception("%s: could not handle a message", self.name)
            if self._on_bad_message is not None:
                await self._on_bad_message(exc)

    async def _connect(self, *, first: bool) -> None:
        """Connect, retrying transient failures with backoff; raise ProviderError when hopeless."""
        limit = self.options.backoff.attempts if first else self.options.max_reconnect_attempts
        for failures, delay in enumerate(self.options.backoff.delays(), start=1):
            endpoint = self._endpoint()
            started = self.clock.now_ns()
            try:
                ws = await connect(
                    endpoint.url,
                    additional_headers=endpoint.headers,
                    open_timeout=self.options.open_timeout_s,
                    close_timeout=self.options.close_timeout_s,
                    proxy=None,  # providers are reached directly; never through an environment proxy
                    max_size=None,
                )
            except InvalidStatus as exc:
                status = exc.response.status_code
                body = exc.response.body.decode(errors="replace")[:200] if exc.response.body else ""
                error = ProviderError(
                    f"{self.name} refused the connection: HTTP {status} {body}".strip(),
                    status=status,
                    permanent=is_permanent_status(status),
                )
                delay = max(delay, _retry_after_s(exc))
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
                error = ProviderError(f"{self.name}: cannot connect to {endpoint.url}: {exc!r}")
            else:
                self._ws = ws
                self.connects += 1
                self._last_send_ns = self.clock.now_ns()
                self.last_connect_s = (self._last_send_ns - started) / NS_PER_S
                self._owed_since_ns = None  # a new connection owes nothing until asked
                self._connected.set()
                return
            if error.permanent or failures >= limit:
                raise error
            logger.info("%s: %s; retrying in %.2f s", self.name, error, delay)
            await self.clock.sleep_until(self.clock.now_ns() + round(min(delay, self.options.backoff.max_s) * NS_PER_S))

    async def _keepalive(self, interval_ns: int) -> None:
        assert self._keepalive_message is not None
        while True:
            due = self._last_send_ns + interval_ns
            now = self.clock.now_ns()
            if now < due:
                await self.clock.sleep_until(due)
                continue
            self._last_send_ns = now
            await self.send(self._keepalive_message())

    async def _watch_liveness(self, timeout_ns: int) -> None:
        """Abort a connection that owes an answer and has been silent for `timeout_ns`."""
        while True:
            owed_since, ws = self._owed_since_ns, self._ws
            if owed_since is None or ws is None:
                self._owed = anyio.Event()
                await self._owed.wait()
                continue
            due = owed_since + timeout_ns
            if self.clock.now_ns() < due:
                await self.clock.sleep_until(due)
                continue
            if self._owed_since_ns != owed_since or self._ws is not ws:
                continue  # answered (or replaced) while this slept
            self.stalls += 1
            self._owed_since_ns = None
            logger.warning(
                "%s: no message for %.1f s while an answer is owed; replacing the connection",
                self.name,
                timeout_ns / NS_PER_S,
            )
            ws.transport.abort()  # no close handshake: a stalled peer would not answer it

    # --- sending and closing -----------------------------------------------------------------

    async def send(self, message: Message, *, owes_reply: bool = False) -> bool:
        """Send if connected; False if the message could not go out (the caller may replay it).

        `owes_reply`: the provider must answer this (audio to transcribe, text to speak), so
        its silence from now on counts against the liveness deadline.
        """
        ws = self._ws
        if ws is None:
            return False
        try:
            await ws.send(message)
        except ConnectionClosed:
            return False
        self._last_send_ns = self.clock.now_ns()
        if owes_reply and self._owed_since_ns is None:
            self._owed_since_ns = self.clock.now_ns()
            self._owed.set()
        return True

    def owe_reply(self) -> None:
        """The provider owes more from now on, though nothing new was sent (audio of text it
        was given and has only partly spoken), so its silence counts against the deadline."""
        if self._owed_since_ns is None:
            self._owed_since_ns = self.clock.now_ns()
            self._owed.set()

    def forgive_reply(self) -> None:
        """Nothing is owed any more (the client cancelled what it asked for): silence is fine."""
        self._owed_since_ns = None

    async def restart(self) -> None:
        """Close the connection so that `run` opens a fresh one (new parameters), as after a drop."""
        ws = self._ws
        if ws is not None:
            with self._closing_guard():
                await ws.close()

    async def close(self, final_message: Message | None = None) -> None:
        """Close on purpose: send `final_message`, give the server a moment to close, then close."""
        self._closing = True
        ws = self._ws
        if ws is None:
            return
        with self._closing_guard():
            if final_message is not None:
                try:
                    await ws.send(final_message)
                    await ws.wait_closed()
                except ConnectionClosed:
                    pass
            await ws.close()
        self._ws = None

    @contextmanager
    def _closing_guard(self) -> Iterator[None]:
        """Shielded, and bounded by `close_timeout_s` of real time, not of the injected clock.

        A close runs under shield while the pipeline is being cancelled (cleanup, teardown),
        when nobody steps a VirtualClock: a deadline on it would never fire, and a peer that
        never answers the close would hang teardown. It bounds real network I/O, like the
        `close_timeout` websockets itself applies to the handshake.
        """
        with anyio.CancelScope(shield=True), anyio.move_on_after(self.options.close_timeout_s):
            yield


def _retry_after_s(exc: InvalidStatus) -> float:
    try:
        return float(exc.response.headers.get("retry-after", "0"))
    except ValueError:
        return 0.0


__all__ = ["Endpoint", "Message", "StreamOptions", "WebSocketStream"]
