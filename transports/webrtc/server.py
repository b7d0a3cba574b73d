"""`WebRTCServer`: aiohttp signalling, the browser page, and the sessions it serves.

Endpoints (prefix `/api/voice`, JSON in and out, errors as ``{"error": {"code", "message"}}``):

* ``POST /offer`` ``{"sdp", "type": "offer"}`` -> ``{"sdp", "type": "answer", "session_id"}``
* ``PATCH /sessions/{id}`` ``{"candidates": [{"candidate", "sdpMid", "sdpMLineIndex"}], "end": bool}``
  (trickle ICE: the caller's candidates may arrive after the offer)
* ``DELETE /sessions/{id}``: hang up
* ``GET /config``: the ICE configuration the page should use
* ``GET /``: the browser client
* ``GET /healthz`` (alive) and ``GET /readyz`` (200 while admitting offers, else 503), unauthenticated
* ``POST /admin/drain`` (token): stop admitting offers; running calls go on

Pipecat's ``@pipecat-ai/small-webrtc-transport`` is served as its own server would serve it, at
``/api/offer`` as well as ``/api/voice/offer``: ``POST`` ``{"sdp", "type", "pc_id"?, "restart_pc"?,
"requestData"?}`` answers ``{"sdp", "type", "pc_id"}`` (`pc_id` is the session id; an offer naming
a running session replaces it, as the client's reconnect expects), and ``PATCH``
``{"pc_id", "candidates": [{"candidate", "sdp_mid", "sdp_mline_index"}]}`` trickles candidates.

Other transports mount their endpoints on the same app (`ServerOptions.route_installers`) and
count their calls among `sessions` (`admission_refusal`, `running`), so one server has one
session limit, one drain and one `end_all` for every transport.

Every signalling endpoint takes an optional bearer token. Bad input (not JSON, wrong content
type, oversized, bad SDP, unknown session) gets a 4xx with a clear error and changes nothing;
an offer aiortc would mishandle is refused before a session exists (`_validate`). The session
limit, and the smaller limit on sessions not yet connected, answer 503 with Retry-After. A
session takes at most `max_candidates_per_session` candidates. Sessions run in the server's task
group, so stopping the server ends them all.
"""

from __future__ import annotations

import hmac
import importlib.resources
import logging
import secrets
import ssl
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
from aiohttp import web
from anyio.abc import TaskGroup, TaskStatus

from voxframe.pipeline.clock import NS_PER_S, current_clock

from ._limits import OfferRate
from ._validate import InvalidInput, check_offer, parse_json_object
from .session import Session, SessionError, SessionOptions, TaskFactory

logger = logging.getLogger("voxframe.webrtc")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: Adds routes to the server's app (e.g. a metrics endpoint), called once per app built.
RouteInstaller = Callable[[web.Application, "WebRTCServer"], None]
#: Told of each session that ended, with its duration in seconds (metrics, traces, usage).
SessionEndListener = Callable[["ServedSession", float], None]
#: Extra ICE servers (as browser JSON) for one caller, e.g. TURN credentials minted per caller.
CallerIceServers = Callable[[], list[dict[str, Any]]]


class ServedSession(Protocol):
    """A call the server counts, on any transport: limits, drain and `end_all` see it."""

    end_reason: str | None
    #: Facts the app attaches to the session (e.g. its usage), printed in its end line.
    annotations: dict[str, object]

    @property
    def id(self) -> str: ...

    def hang_up(self) -> None: ...


@dataclass(slots=True)
class ServerOptions:
    host: str = "127.0.0.1"
    #: 0 picks a free port (see `WebRTCServer.url`).
    port: int = 0
    session: SessionOptions = field(default_factory=SessionOptions)
    max_sessions: int = 32
    #: Require ``Authorization: Bearer <token>`` on the API when set.
    auth_token: str | None = None
    max_body_bytes: int = 64 * 1024
    serve_page: bool = True
    #: Serve HTTPS (browsers give the microphone only on HTTPS or localhost).
    ssl_context: ssl.SSLContext | None = None
    #: Starts every session id: names the worker that owns the session (a load balancer routes on it).
    session_id_prefix: str = ""
    #: Called with the app and the server when the app is built: a place to mount more endpoints.
    route_installers: list[RouteInstaller] = field(default_factory=list)
    #: Added to the ICE servers of `GET /config` and of each offer's answer, per caller.
    caller_ice_servers: CallerIceServers | None = None
    #: The `Retry-After` seconds of a refused offer (draining, or a limit reached).
    retry_after_s: int = 5
    #: Sessions not connected yet (ICE/DTLS pending, up to the session's `connect_timeout_s`) that
    #: may exist at once: a flood of offers that never connect cannot take every session slot.
    max_pending_sessions: int = 8
    #: Remote candidates one session takes, in its offer and trickled together.
    max_candidates_per_session: int = 64
    #: Called once for every session that ends, after its end line is logged.
    session_end_listeners: list[SessionEndListener] = field(default_factory=list)
    #: Offers one remote address may make per minute (None: no limit); beyond it, 429 with Retry-After.
    max_offers_per_minute: int | None = 30
    #: Proxies whose `X-Forwarded-For` names the caller (nginx on the same host, by default).
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")


#: The server's errors are the validator's: a status, a code and a message.
ApiError = InvalidInput
#: At most one "refused an offer" warning this often (the rest are counted into the next one).
_REFUSAL_LOG_INTERVAL_NS = 10 * NS_PER_S


def _error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes a JSON error; nothing a caller sends can take the server down."""
    try:
        return await handler(request)
    except ApiError as exc:
        return _error_response(exc.status, exc.code, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = exc.reason.lower().replace(" ", "_")
        return _error_response(exc.status, code, exc.text or exc.reason)
    except Exception:
        logger.exception("signalling request %s %s failed", request.method, request.path)
        return _error_response(500, "internal_error", "the server failed to handle this request")


class WebRTCServer:
    """Serves callers: one `Session` (and one pipeline task from `factory`) per connection."""

    def __init__(self, factory: TaskFactory, options: ServerOptions | None = None) -> None:
        self.factory = factory
        self.options = options or ServerOptions()
        self.sessions: dict[str, ServedSession] = {}
        self.sessions_started = 0
        self.port: int | None = None
        self._tg: TaskGroup | None = None
        self._session_ended: anyio.Event | None = None
        #: Why new offers are refused, oldest first (empty: admitting); see `hold`.
        self._holds: list[str] = []
        #: Remote candidates each session has taken (offer and trickle), against the cap.
        self._candidates: dict[str, int] = {}
        self._refusals_unlogged = 0
        #: Offers by outcome: "admitted", or the refusal's code ("session_limit", "draining", ...).
        self.offer_outcomes: Counter[str] = Counter()
        self._offer_rate = OfferRate(self.options.max_offers_per_minute)
        self._refusal_logged_ns: int | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the server is not running")
        scheme = "https" if self.options.ssl_context is not None else "http"
        return f"{scheme}://{self.options.host}:{self.port}"

    @property
    def pending_sessions(self) -> int:
        """Sessions whose peer connection has not connected yet."""
        connecting = ("new", "connecting")  # only a WebRTC call connects after it is admitted
        return sum(1 for s in self.sessions.values() if isinstance(s, Session) and s.state in connecting)

    @property
    def admitting(self) -> bool:
        return self._tg is not None and not self._holds

    @property
    def held_reason(self) -> str | None:
        """Why new offers are refused (the oldest hold still on), or None while admitting."""
        return self._holds[0] if self._holds else None

    def hold(self, reason: str) -> None:
        """Refuse new offers (503 with Retry-After) for `reason` (warming up, draining, overloaded)
        until `admit(reason)`; holds for different reasons stack, so lifting one leaves the others."""
        if reason not in self._holds:
            self._holds.append(reason)

    def admit(self, reason: str) -> None:
        """Lift the hold for `reason` (no effect if there is none)."""
        if reason in self._holds:
            self._holds.remove(reason)

    def end_all(self, reason: str = "server_draining") -> int:
        """Hang up every running session (they end cleanly); returns how many."""
        sessions = list(self.sessions.values())
        for session in sessions:
            session.end_reason = session.end_reason or reason
            session.hang_up()
        return len(sessions)

    # --- running ------------------------------------------------------------------------------------

    async def serve(self, *, task_status: TaskStatus[str] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled; `await tg.start(server.serve)` returns the URL once listening."""
        app = self.build_app()
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.options.host, self.options.port, ssl_context=self.options.ssl_context)
            await site.start()
            self.port = runner.addresses[0][1]
            async with anyio.create_task_group() as tg:
                self._tg = tg
                task_status.started(self.url)
                await anyio.sleep_forever()
        finally:
            self._tg = None
            with anyio.CancelScope(shield=True):
                await runner.cleanup()

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[_json_errors], client_max_size=self.options.max_body_bytes)
        api = "/api/voice"
        app.router.add_post(f"{api}/offer", self._offer)
        # Where Pipecat's small-webrtc client posts and trickles (its server's paths, and ours).
        app.router.add_post("/api/offer", self._offer)
        app.router.add_patch("/api/offer", self._trickle_by_pc_id)
        app.router.add_patch(f"{api}/offer", self._trickle_by_pc_id)
        app.router.add_patch(f"{api}/sessions/{{session_id}}", self._trickle)
        app.router.add_delete(f"{api}/sessions/{{session_id}}", self._hang_up)
        app.router.add_get(f"{api}/config", self._config)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_post("/admin/drain", self._drain)
        for install in self.options.route_installers:
            install(app, self)
        if self.options.serve_page:
            app.router.add_get("/", self._page)
            app.router.add_get("/client.js", self._page)
        return app

    # --- endpoints ------------------------------------------------------------------------------------

    async def _offer(self, request: web.Request) -> web.Response:
        self._authorize(request)
        address = self._caller_address(request)
        if not self._offer_rate.allow(address):
            self.offer_outcomes["rate_limited"] += 1
            limited = _error_response(
                429, "too_many_offers", f"at most {self.options.max_offers_per_minute} offers a minute from one address"
            )
            limited.headers["Retry-After"] = str(self._offer_rate.retry_after_s(address))
            return limited
        body = await self._json_body(request)
        sdp, kind = body.get("sdp"), body.get("type")
        if not isinstance(sdp, str) or not isinstance(kind, str):
            raise ApiError(400, "bad_request", "expected {'sdp': string, 'type': 'offer'}")
        refusal = self.admission_refusal()
        if refusal is not None:
            return refusal
        if kind != "offer":
            raise ApiError(400, "bad_sdp_type", f"expected an SDP of type 'offer', got {kind[:40]!r}")
        offered_candidates = check_offer(sdp, self.options.max_candidates_per_session)
        replaced = self.sessions.get(body["pc_id"]) if isinstance(body.get("pc_id"), str) else None
        if replaced is not None:  # the caller reconnects: its old connection is gone or going
            replaced.end_reason = replaced.end_reason or "replaced by the caller's new offer"
            replaced.hang_up()
        session = Session(self.options.session, session_id=self.new_session_id())
        self.sessions[session.id] = session
        self._candidates[session.id] = offered_candidates
        try:
            answer = await session.accept(sdp, kind)
        except SessionError as exc:
            await self._discard(session)
            raise ApiError(exc.status, exc.code, str(exc)) from exc
        except Exception as exc:  # aiortc failing on an offer `check_offer` let through
            await self._discard(session)
            logger.warning("session %s: the offer could not be answered", session.id, exc_info=True)
            raise ApiError(400, "bad_sdp", f"the offer could not be answered ({type(exc).__name__})") from exc
        except BaseException:
            await self._discard(session)
            raise
        if self._tg is None:  # the server stopped while the offer was being answered
            await self._discard(session)
            raise ApiError(503, "shutting_down", "the server is not accepting sessions")
        self.sessions_started += 1
        self.offer_outcomes["admitted"] += 1
        self._tg.start_soon(self._run_session, session, name=f"session {session.id}")
        return web.json_response(
            {
                "sdp": answer.sdp,
                "type": answer.type,
                "session_id": session.id,
                "pc_id": session.id,
                "iceServers": self._ice_servers(),
            }
        )

    async def _trickle(self, request: web.Request) -> web.Response:
        self._authorize(request)
        session = self._session(request)
        return await self._add_candidates(session, await self._json_body(request))

    async def _trickle_by_pc_id(self, request: web.Request) -> web.Response:
        """small-webrtc's trickle: the session is named in the body, the candidates in snake_case."""
        self._authorize(request)
        body = await self._json_body(request)
        pc_id = body.get("pc_id")
        session = self.sessions.get(pc_id) if isinstance(pc_id, str) else None
        if not isinstance(session, Session):  # unknown, or a call on another transport (a WebSocket)
            raise ApiError(404, "unknown_session", "no session has this 'pc_id' (it may have ended)")
        return await self._add_candidates(session, body)

    async def _add_candidates(self, session: Session, body: dict[str, Any]) -> web.Response:
        candidates = body.get("candidates", [])
        if "candidate" in body:
            candidates = [body]
        if not isinstance(candidates, list) or not all(isinstance(c, dict) for c in candidates):
            raise ApiError(400, "bad_request", "expected {'candidates': [{'candidate': ...}, ...]}")
        # Counted before any await, so concurrent requests cannot pass the cap together.
        taken, limit = self._candidates.get(session.id, 0), self.options.max_candidates_per_session
        if taken + len(candidates) > limit:
            message = f"a session takes at most {limit} candidates; it has {taken}, this request adds {len(candidates)}"
            raise ApiError(400, "too_many_candidates", message)
        self._candidates[session.id] = taken + len(candidates)
        added = 0
        try:
            for candidate in candidates:
                added += await session.add_candidate(candidate)
            if body.get("end") is True:
                await session.add_candidate(None)
        except SessionError as exc:
            raise ApiError(400, exc.code, str(exc)) from exc
        return web.json_response({"added": added, "ignored": len(candidates) - added})

    async def _hang_up(self, request: web.Request) -> web.Response:
        self._authorize(request)
        session = self._session(request)
        session.hang_up()
        return web.json_response({"session_id": session.id, "ended": True})

    async def _config(self, request: web.Request) -> web.Response:
        self._authorize(request)
        configuration = self.options.session.ice.browser_configuration()
        configuration["iceServers"] = self._ice_servers()
        return web.json_response({"rtcConfiguration": configuration})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"alive": True, "sessions": len(self.sessions)})

    async def _readyz(self, request: web.Request) -> web.Response:
        body = {"admitting": self.admitting, "reason": self.held_reason, "sessions": len(self.sessions)}
        return web.json_response(body, status=200 if self.admitting else 503)

    async def _drain(self, request: web.Request) -> web.Response:
        self._authorize(request)
        self.hold("draining")
        logger.info("draining: admitting no new calls, %d running", len(self.sessions))
        return web.json_response({"draining": True, "sessions": len(self.sessions)})

    # --- for other transports' endpoints -------------------------------------------------------------

    def admission_refusal(self) -> web.Response | None:
        """The 503 to answer a new call with (stopping, held, at a limit), or None: admit it.
        Every transport asks this, so one server has one session limit and one drain."""
        if self._tg is None:
            return _error_response(503, "shutting_down", "the server is not accepting sessions")
        if self.held_reason is not None:
            return self._refuse(self.held_reason, "the server is not admitting new calls; retry")
        if len(self.sessions) >= self.options.max_sessions:
            return self._refuse("session_limit", f"the server is at its limit of {self.options.max_sessions} sessions")
        if self.pending_sessions >= self.options.max_pending_sessions:
            limit = self.options.max_pending_sessions
            return self._refuse("pending_limit", f"the server is at its limit of {limit} calls still connecting")
        return None

    def new_session_id(self) -> str:
        return self.options.session_id_prefix + secrets.token_urlsafe(12)

    def authorized(self, request: web.Request, given: str | None = None) -> bool:
        """Whether the request carries the token (the bearer header, or `given` from elsewhere)."""
        token = self.options.auth_token
        if token is None:
            return True
        if given is None:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer":
                return False
        return hmac.compare_digest(given.strip().encode(), token.encode())

    @contextmanager
    def running(self, session: ServedSession) -> Iterator[None]:
        """Count `session` among the running calls while the block runs (it serves the call)."""
        clock = current_clock()
        started = clock.now_ns()
        self.sessions[session.id] = session
        self.sessions_started += 1
        self.offer_outcomes["admitted"] += 1
        logger.info("session %s started (%d running)", session.id, len(self.sessions))
        try:
            yield
        finally:
            self._forget(session)
            self._ended(session, (clock.now_ns() - started) / NS_PER_S)

    def _ice_servers(self) -> list[dict[str, Any]]:
        servers = [s.to_json() for s in self.options.session.ice.servers]
        if self.options.caller_ice_servers is not None:
            servers += self.options.caller_ice_servers()
        return servers

    async def _page(self, request: web.Request) -> web.Response:
        name = "client.js" if request.path.endswith(".js") else "index.html"
        text = importlib.resources.files(__package__).joinpath("static", name).read_text("utf-8")
        content_type = "text/javascript" if name.endswith(".js") else "text/html"
        return web.Response(text=text, content_type=content_type, headers={"Cache-Control": "no-store"})

    # --- helpers ------------------------------------------------------------------------------------

    def _caller_address(self, request: web.Request) -> str:
        """The caller's address: the peer's, or behind a trusted proxy the one it appended last to
        `X-Forwarded-For` (what nginx's `$proxy_add_x_forwarded_for` saw connect)."""
        peer = request.remote or "unknown"
        forwarded = request.headers.get("X-Forwarded-For")
        if forwarded and peer in self.options.trusted_proxies:
            return forwarded.rsplit(",", 1)[-1].strip() or peer
        return peer

    def _authorize(self, request: web.Request) -> None:
        if not self.authorized(request):
            raise ApiError(401, "unauthorized", "a valid 'Authorization: Bearer <token>' header is required")

    async def _json_body(self, request: web.Request) -> dict[str, Any]:
        if request.content_type != "application/json":
            raise ApiError(415, "unsupported_media_type", "send the body as application/json")
        too_large = ApiError(413, "body_too_large", f"the body may be at most {self.options.max_body_bytes} bytes")
        if request.content_length is not None and request.content_length > self.options.max_body_bytes:
            raise too_large
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge as exc:
            raise too_large from exc
        return parse_json_object(raw)

    def _refuse(self, code: str, message: str) -> web.Response:
        """A 503 with Retry-After for an offer the server cannot take now; logged, rate-limited."""
        refusal = _error_response(503, code, message)
        self.offer_outcomes[code] += 1
        refusal.headers["Retry-After"] = str(self.options.retry_after_s)
        self._refusals_unlogged += 1
        now = current_clock().now_ns()
        if self._refusal_logged_ns is None or now - self._refusal_logged_ns >= _REFUSAL_LOG_INTERVAL_NS:
            logger.warning(
                "refused %d offer(s) since the last warning: %s (%s); %d sessions, %d connecting",
                self._refusals_unlogged, code, message, len(self.sessions), self.pending_sessions,
            )  # fmt: skip
            self._refusals_unlogged, self._refusal_logged_ns = 0, now
        return refusal

    def _session(self, request: web.Request) -> Session:
        session = self.sessions.get(request.match_info["session_id"])
        if not isinstance(session, Session):  # unknown, or a call on another transport
            raise ApiError(404, "unknown_session", "no such session (it may have ended)")
        return session

    async def _discard(self, session: Session) -> None:
        self._forget(session)
        with anyio.CancelScope(shield=True):
            await session.close()

    async def _run_session(self, session: Session) -> None:
        started = session.clock.now_ns()
        logger.info("session %s started (%d running)", session.id, len(self.sessions))
        try:
            await session.run(self.factory)
        finally:
            self._forget(session)
            self._ended(session, (session.clock.now_ns() - started) / NS_PER_S)

    def _ended(self, session: ServedSession, duration_s: float) -> None:
        """The one end line of a session (any transport), then the listeners (metrics, traces)."""
        facts = "".join(f" {key}={value}" for key, value in session.annotations.items())
        reason = session.end_reason or "cancelled"
        logger.info("session %s ended after %.1f s: %s%s", session.id, duration_s, reason, facts)
        for listener in self.options.session_end_listeners:
            try:
                listener(session, duration_s)
            except Exception:  # a metrics or tracing hook must never take the server down
                logger.exception("session %s: a session-end listener failed", session.id)

    def _forget(self, session: ServedSession) -> None:
        self.sessions.pop(session.id, None)
        self._candidates.pop(session.id, None)
        if self._session_ended is not None:
            self._session_ended.set()

    async def wait_sessions(self, predicate: Callable[[dict[str, ServedSession]], bool]) -> None:
        """Wait until `predicate(self.sessions)` holds (checked whenever a session ends)."""
        while not predicate(self.sessions):
            self._session_ended = anyio.Event()
            await self._session_ended.wait()
