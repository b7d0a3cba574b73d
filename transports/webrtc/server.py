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

Other transports mount their endpoints on the same app (`ServerOptions.route_installers`) and
count their calls among `sessions` (`admission_refusal`, `running`), so one server has one
session limit, one drain and one `end_all` for every transport.

Every signalling endpoint takes an optional bearer token. Bad input (not JSON, wrong content
type, oversized, bad SDP, unknown session) gets a 4xx with a clear error and changes nothing;
the session limit answers 503. Sessions run in the server's task group, so stopping the server
ends them all.
"""

from __future__ import annotations

import hmac
import importlib.resources
import json
import logging
import secrets
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
from aiohttp import web
from anyio.abc import TaskGroup, TaskStatus

from .session import Session, SessionError, SessionOptions, TaskFactory

logger = logging.getLogger("voxframe.webrtc")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: Adds routes to the server's app (e.g. a metrics endpoint), called once per app built.
RouteInstaller = Callable[[web.Application, "WebRTCServer"], None]
#: Extra ICE servers (as browser JSON) for one caller, e.g. TURN credentials minted per caller.
CallerIceServers = Callable[[], list[dict[str, Any]]]


class ServedSession(Protocol):
    """A call the server counts, on any transport: limits, drain and `end_all` see it."""

    end_reason: str | None

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
    #: The `Retry-After` seconds of a refused offer while draining.
    retry_after_s: int = 5


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


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
        #: Why new offers are refused (None: admitting); see `hold`.
        self.held_reason: str | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the server is not running")
        scheme = "https" if self.options.ssl_context is not None else "http"
        return f"{scheme}://{self.options.host}:{self.port}"

    @property
    def admitting(self) -> bool:
        return self._tg is not None and self.held_reason is None

    def hold(self, reason: str) -> None:
        """Refuse new offers (503 with Retry-After) with `reason`: warming up, draining ..."""
        self.held_reason = reason

    def admit(self) -> None:
        self.held_reason = None

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
        body = await self._json_body(request)
        sdp, kind = body.get("sdp"), body.get("type")
        if not isinstance(sdp, str) or not isinstance(kind, str):
            raise ApiError(400, "bad_request", "expected {'sdp': string, 'type': 'offer'}")
        refusal = self.admission_refusal()
        if refusal is not None:
            return refusal
        session = Session(self.options.session, session_id=self.new_session_id())
        self.sessions[session.id] = session
        try:
            answer = await session.accept(sdp, kind)
        except SessionError as exc:
            await self._discard(session)
            raise ApiError(exc.status, exc.code, str(exc)) from exc
        except BaseException:
            await self._discard(session)
            raise
        if self._tg is None:  # the server stopped while the offer was being answered
            await self._discard(session)
            raise ApiError(503, "shutting_down", "the server is not accepting sessions")
        self.sessions_started += 1
        self._tg.start_soon(self._run_session, session, name=f"session {session.id}")
        return web.json_response(
            {"sdp": answer.sdp, "type": answer.type, "session_id": session.id, "iceServers": self._ice_servers()}
        )

    async def _trickle(self, request: web.Request) -> web.Response:
        self._authorize(request)
        session = self._session(request)
        body = await self._json_body(request)
        candidates = body.get("candidates", [])
        if "candidate" in body:
            candidates = [body]
        if not isinstance(candidates, list) or not all(isinstance(c, dict) for c in candidates):
            raise ApiError(400, "bad_request", "expected {'candidates': [{'candidate': ...}, ...]}")
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
        """The 503 to answer a new call with (at the limit, stopping, held), or None: admit it."""
        if len(self.sessions) >= self.options.max_sessions:
            message = f"the server is at its limit of {self.options.max_sessions} sessions"
            return _error_response(503, "session_limit", message)
        if self._tg is None:
            return _error_response(503, "shutting_down", "the server is not accepting sessions")
        if self.held_reason is not None:
            refusal = _error_response(503, self.held_reason, "the server is not admitting new calls; retry")
            refusal.headers["Retry-After"] = str(self.options.retry_after_s)
            return refusal
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
        started = time.monotonic()
        self.sessions[session.id] = session
        self.sessions_started += 1
        logger.info("session %s started (%d running)", session.id, len(self.sessions))
        try:
            yield
        finally:
            self._forget(session)
            duration = time.monotonic() - started
            logger.info("session %s ended after %.1f s: %s", session.id, duration, session.end_reason or "cancelled")

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
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ApiError(400, "bad_json", f"the body is not valid JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise ApiError(400, "bad_json", "the body must be a JSON object")
        return body

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
        started = time.monotonic()
        logger.info("session %s started (%d running)", session.id, len(self.sessions))
        try:
            await session.run(self.factory)
        finally:
            self._forget(session)
            duration = time.monotonic() - started
            logger.info("session %s ended after %.1f s: %s", session.id, duration, session.end_reason or "cancelled")

    def _forget(self, session: ServedSession) -> None:
        self.sessions.pop(session.id, None)
        if self._session_ended is not None:
            self._session_ended.set()

    async def wait_sessions(self, predicate: Callable[[dict[str, ServedSession]], bool]) -> None:
        """Wait until `predicate(self.sessions)` holds (checked whenever a session ends)."""
        while not predicate(self.sessions):
            self._session_ended = anyio.Event()
            await self._session_ended.wait()
