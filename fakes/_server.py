"""What every fake provider shares: a loopback HTTP/WebSocket server, faults, latency, a log.

A fake is an async context manager: entering it binds 127.0.0.1 on an ephemeral port, leaving
it closes every connection it accepted and waits for their handlers, so nothing outlives it.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

import anyio
import anyio.abc
from aiohttp import WSCloseCode, WSMsgType, web

logger = logging.getLogger("voxframe.fakes")


#: The standard normal's 95th percentile: a lognormal's p95 is exp(mu + Z95 * sigma).
Z95 = 1.6448536269514722


@dataclass(slots=True)
class LatencyProfile:
    """A service latency: lognormal with median `p50_s` and 95th percentile `p95_s`.

    A lognormal is fitted to the two figures a source publishes (mu = ln p50, sigma =
    ln(p95 / p50) / Z95): always positive, with the long right tail service latencies have.
    Draws come from the fake's seeded `random.Random`, so two runs (two frameworks) with the
    same seed are told the same latencies in the same order. Without a `p95_s` (or with
    `jitter=False`) every draw is `p50_s`: the constant tests rely on.
    """

    p50_s: float
    p95_s: float | None = None
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.p50_s < 0 or (self.p95_s is not None and self.p95_s < self.p50_s):
            raise ValueError(f"a latency profile needs 0 <= p50 <= p95, got {self.p50_s} and {self.p95_s}")

    @property
    def sigma(self) -> float:
        """The fitted lognormal's sigma (0: a constant)."""
        if not self.jitter or not self.p95_s or self.p50_s <= 0:
            return 0.0
        return math.log(self.p95_s / self.p50_s) / Z95

    def sample(self, rng: random.Random) -> float:
        sigma = self.sigma
        if sigma == 0.0:
            return self.p50_s
        return rng.lognormvariate(math.log(self.p50_s), sigma)


ZERO = LatencyProfile(0.0)


@dataclass(slots=True)
class Fault:
    """One injected failure, applied to the next connection (or HTTP request) a fake accepts.

    Either a handshake `status` (401, 429, 400, 500), or an action once the connection has
    sent `after_sent` or received `after_received` messages, or sent `after_audio` audio
    messages (a TTS fake's chunks: a cut in the middle of a reply): close with `close_code`,
    `drop` the TCP connection without a close frame, or `stall` (stay open, answer nothing).
    """

    status: int | None = None
    after_sent: int | None = None
    after_received: int | None = None
    after_audio: int | None = None
    close_code: int | None = None
    reason: str = ""
    drop: bool = False
    stall: bool = False
    retry_after_s: float = 1.0
    #: A speech fake's mid-utterance point: due once this much of an utterance's speech was
    #: heard (the Deepgram fake: the user is still talking when the connection fails).
    after_speech_s: float | None = None

    @classmethod
    def reject(cls, status: int, *, retry_after_s: float = 1.0) -> Fault:
        return cls(status=status, retry_after_s=retry_after_s)

    @classmethod
    def close(
        cls,
        code: int,
        reason: str = "",
        *,
        after_sent: int | None = None,
        after_received: int | None = None,
        after_audio: int | None = None,
    ) -> Fault:
        return cls(
            close_code=code,
            reason=reason,
            after_sent=after_sent,
            after_received=after_received,
            after_audio=after_audio,
        )

    @classmethod
    def drop_connection(
        cls, *, after_sent: int | None = None, after_received: int | None = None, after_audio: int | None = None
    ) -> Fault:
        return cls(drop=True, after_sent=after_sent, after_received=after_received, after_audio=after_audio)

    @classmethod
    def stall_after(
        cls, *, after_sent: int | None = None, after_received: int | None = None, after_audio: int | None = None
    ) -> Fault:
        return cls(stall=True, after_sent=after_sent, after_received=after_received, after_audio=after_audio)

    @classmethod
    def mid_utterance(
        cls, after_speech_s: float, *, drop: bool = False, stall: bool = False, close_code: int | None = None
    ) -> Fault:
        """Fail a speech fake's connection `after_speech_s` into an utterance: `drop`, `stall`, or
        close with `close_code` (1011 `NET-0000`, Deepgram's internal error, by default)."""
        code = None if drop or stall else (close_code or 1011)
        return cls(after_speech_s=after_speech_s, drop=drop, stall=stall, close_code=code, reason="NET-0000")

    def due(self, sent: int, received: int, audio: int = 0) -> bool:
        return (
            (self.after_sent is not None and sent >= self.after_sent)
            or (self.after_received is not None and received >= self.after_received)
            or (self.after_audio is not None and audio >= self.after_audio)
        )


def _peer(request: web.Request) -> str:
    peername = request.transport.get_extra_info("peername") if request.transport is not None else None
    return f"{peername[0]}:{peername[1]}" if peername else ""


@dataclass(slots=True, eq=False)
class Connection:
    """The log of one connection or request: what came in, what went out, how it ended."""

    index: int
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    #: The client's "host:port": requests with the same one came over one kept-alive connection.
    peer: str = ""
    started: float = field(default_factory=time.monotonic)
    status: int = 101
    received: list[Any] = field(default_factory=list)
    sent: list[Any] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    fault: Fault | None = None
    ended: str = ""  # "closed <code>", "dropped", "client closed", "completed"
    done: anyio.Event = field(default_factory=anyio.Event)

    def json_received(self, type_: str | None = None) -> list[dict[str, Any]]:
        msgs = [m for m in self.received if isinstance(m, dict)]
        return [m for m in msgs if type_ is None or m.get("type") == type_]

    def json_sent(self, type_: str | None = None) -> list[dict[str, Any]]:
        msgs = [m for m in self.sent if isinstance(m, dict)]
        return [m for m in msgs if type_ is None or m.get("type") == type_]


class FakeServer:
    """Base of the three fakes: routes, lifecycle, faults queue, request log with waiting."""

    name = "fake"

    def __init__(self, *, api_key: str | None = None, seed: int = 0, port: int = 0) -> None:
        #: When set, clients must present this key; None accepts any key (or none).
        self.api_key = api_key
        self.faults: list[Fault] = []
        self.connections: list[Connection] = []
        self.seed = seed
        self.rng = random.Random(seed)
        self.port = port  # 0: an ephemeral port, known once started
        self._runner: web.AppRunner | None = None
        self._sockets: dict[web.WebSocketResponse, Connection] = {}
        self._changed = anyio.Event()
        #: Every latency drawn, in order: (time.monotonic() when drawn, what for, seconds). Read
        #: only: a benchmark reads what a request was told to take (jitter on, it varies).
        self.draws: list[tuple[float, str, float]] = []

    def draw(self, profile: LatencyProfile, kind: str) -> float:
        """The next latency from `profile` (the seeded draws), logged in `draws`."""
        seconds = profile.sample(self.rng)
        self.draws.append((time.monotonic(), kind, seconds))
        return seconds

    def reseed(self, seed: int) -> None:
        """Restart the latency draws from `seed` (a benchmark does so before each stack's block,
        so both frameworks are told the same latencies turn by turn)."""
        self.seed = seed
        self.rng.seed(seed)

    # --- lifecycle ---------------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]  # asyncio's Server
        logger.info("%s listening on %s", self.name, self.url)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for ws, conn in list(self._sockets.items()):
            if not ws.closed and not conn.ended:
                conn.ended = "server shut down"
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        """The base URL clients point at (scheme per fake)."""
        raise NotImplementedError

    # --- the log -----------------------------------------------------------------------------

    def open_connection(self, request: web.Request) -> Connection:
        conn = Connection(
            index=len(self.connections),
            path=request.path,
            query=dict(request.query),
            headers={k.lower(): v for k, v in request.headers.items()},
            peer=_peer(request),
        )
        conn.fault = self.faults.pop(0) if self.faults else None
        self.connections.append(conn)
        self.notify()
        return conn

    def notify(self) -> None:
        """Something was logged: wake whoever waits on the log."""
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, cond: Callable[[], bool], within_s: float = 10.0) -> None:
        """Wait until `cond()` holds, re-checked whenever the log changes (at most `within_s`)."""
        with anyio.fail_after(within_s):
            while not cond():
                await self._changed.wait()

    def authorized(self, conn: Connection, *, schemes: tuple[str, ...], extra_keys: tuple[str, ...] = ()) -> bool:
        if self.api_key is None:
            return True
        auth = conn.headers.get("authorization", "")
        offered = [auth.split(" ", 1)[1] for s in schemes if auth.startswith(s + " ")]
        offered += [conn.headers.get(k, "") for k in extra_keys] + [conn.query.get(k, "") for k in extra_keys]
        return self.api_key in offered

    # --- websockets ----------------------------------------------------------------------------

    async def serve_websocket(
        self,
        request: web.Request,
        make_session: Callable[[Connection, web.WebSocketResponse, web.Request], WebSocketSession],
        reject: Callable[[Connection], web.Response | None],
        headers: dict[str, str],
    ) -> web.StreamResponse:
        """Log the connection, refuse it (fault, auth, bad query) or run a session on it."""
        conn = self.open_connection(request)
        rejection = reject(conn)
        if rejection is not None:
            conn.status = rejection.status
            conn.ended = f"rejected {rejection.status}"
            conn.done.set()
            self.notify()
            return rejection
        ws = web.WebSocketResponse(autoping=True, heartbeat=None, max_msg_size=16 * 1024 * 1024)
        ws.headers.update(headers)
        await ws.prepare(request)
        self._sockets[ws] = conn
        try:
            await make_session(conn, ws, request).run()
        finally:
            self._sockets.pop(ws, None)
            conn.ended = conn.ended or "client closed"
            conn.done.set()
            self.notify()
        return ws

    @staticmethod
    def drop(request: web.Request) -> None:
        """Cut the TCP connection: no close frame, no FIN handshake from the application."""
        transport = request.transport
        if transport is not None:
            transport.abort()


class WebSocketSession:
    """One accepted WebSocket: logs every message both ways and applies the connection's fault.

    Subclasses handle `on_binary`/`on_text` and may start background tasks in `started`;
    everything runs in one task group that ends with the connection.
    """

    def __init__(self, fake: FakeServer, conn: Connection, ws: web.WebSocketResponse, request: web.Request) -> None:
        self.fake, self.conn, self.ws, self.request = fake, conn, ws, request
        self.received = 0
        self.sent = 0
        self.audio_sent = 0
        self.stalled = False
        self.last_activity = time.monotonic()
        self._lock = anyio.Lock()
        self._tg: anyio.abc.TaskGroup | None = None

    async def started(self, tg: anyio.abc.TaskGroup) -> None:
        """Start background tasks of the session here."""

    async def on_binary(self, data: bytes) -> None:
        await self.close(1003, "binary messages are not accepted")

    async def on_text(self, payload: Any) -> None:
        raise NotImplementedError

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            await self.started(tg)
            async for msg in self.ws:
                self.received += 1
                self.last_activity = time.monotonic()
                if msg.type is WSMsgType.BINARY:
                    self.conn.received.append(len(msg.data))
                    self.conn.audio.extend(msg.data)
                    self.fake.notify()
                    await self.on_binary(msg.data)
                elif msg.type is WSMsgType.TEXT:
                    try:
                        payload = json.loads(msg.data)
                    except ValueError:
                        payload = msg.data
                    self.conn.received.append(payload)
                    self.fake.notify()
                    await self.on_text(payload)
                await self.apply_fault()
            tg.cancel_scope.cancel()
        if not self.conn.ended:
            self.conn.ended = "client closed"

    async def send_json(self, payload: dict[str, Any], *, audio: bool = False) -> bool:
        """Send one message (`audio`: it carries audio, for `Fault.after_audio`); False if it did
        not go out (stalled or closed)."""
        if self.stalled or self.ws.closed:
            return False
        try:
            async with self._lock:
                await self.ws.send_str(json.dumps(payload))
        except ConnectionError:  # the client went away mid-send: the session is over
            self.conn.ended = self.conn.ended or "client closed"
            self._end()
            return False
        self.sent += 1
        self.audio_sent += audio
        self.conn.sent.append(payload)
        self.fake.notify()
        await self.apply_fault()
        return True

    async def apply_fault(self) -> None:
        fault = self.conn.fault
        if fault is None or fault.status is not None or not fault.due(self.sent, self.received, self.audio_sent):
            return
        await self.fail(fault)

    async def fail(self, fault: Fault) -> None:
        """Apply `fault` now (a subclass calls it at a point of its own, e.g. mid-utterance)."""
        self.conn.fault = None
        if fault.stall:
            self.stalled = True
            self.conn.ended = "stalled"
        elif fault.drop:
            self.conn.ended = "dropped"
            self.fake.drop(self.request)
            self._end()
        else:
            await self.close(fault.close_code or 1011, fault.reason)

    async def close(self, code: int, reason: str = "") -> None:
        self.conn.ended = f"closed {code}"
        await self.ws.close(code=code, message=reason.encode())
        self._end()

    def _end(self) -> None:
        if self._tg is not None:
            self._tg.cancel_scope.cancel()


__all__ = ["ZERO", "Connection", "FakeServer", "Fault", "LatencyProfile", "WebSocketSession"]
