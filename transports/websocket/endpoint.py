"""`WebSocketEndpoint`: WebSocket and Twilio calls, on the WebRTC server's app.

Mounted with `ServerOptions.route_installers` (`endpoint.install`), so one server serves every
transport with one token, one session limit, one drain and one `end_all`:

* ``GET /ws`` with a WebSocket upgrade: a call in the raw format (`RawSerializer`); without
  one: a small browser page that calls over it (``/ws.js`` its script);
* ``POST /twilio/voice`` (or GET): the TwiML a Twilio number's voice webhook answers with,
  connecting the call to ``/twilio/stream``;
* ``GET /twilio/stream``: a Twilio Media Streams WebSocket (`TwilioSerializer`).

Authentication, when the server has a token: the bearer header, or ``?token=`` (browsers
cannot set a WebSocket's headers), or the handshake's own token (the raw ``start`` message's
``token``, Twilio's ``<Parameter name="token">``, which the TwiML endpoint adds: configure the
webhook as ``https://host/twilio/voice?token=...``). With `twilio_auth_token` (the Twilio
account's), the voice webhook also takes, and without the server's token requires, Twilio's
``X-Twilio-Signature``. A call the server cannot take now gets the 503 the WebRTC offer would
(and the TwiML endpoint a busy signal).
"""

from __future__ import annotations

import hmac
import importlib.resources
from dataclasses import dataclass, field

from aiohttp import web

from ..webrtc.server import WebRTCServer
from .serializer import ProtocolError, RawSerializer, Serializer
from .session import TaskFactory, WebSocketSession, WebSocketSessionOptions
from .twilio import TwilioSerializer, twilio_signature, twiml, twiml_busy


@dataclass(slots=True)
class WebSocketOptions:
    session: WebSocketSessionOptions = field(default_factory=WebSocketSessionOptions)
    path: str = "/ws"
    twilio_voice_path: str = "/twilio/voice"
    twilio_stream_path: str = "/twilio/stream"
    serve_page: bool = True
    #: How Twilio reaches this server ("https://bot.example.com"), for the TwiML's stream URL and
    #: the webhook's signature; None: the request's host, secure unless the request came in plain
    #: (X-Forwarded-Proto counts).
    public_url: str | None = None
    #: The raw format's bot audio rate when the caller names none (None: its input rate).
    raw_output_sample_rate: int | None = None
    #: The Twilio account's auth token: the voice webhook checks Twilio's signature with it.
    twilio_auth_token: str | None = None


class WebSocketEndpoint:
    """Serves WebSocket callers; `factory` builds each one's pipeline task."""

    def __init__(self, factory: TaskFactory, options: WebSocketOptions | None = None) -> None:
        self.factory = factory
        self.options = options or WebSocketOptions()
        self._server: WebRTCServer | None = None

    def install(self, app: web.Application, server: WebRTCServer) -> None:
        """A `RouteInstaller`: add the endpoints to `app`, counting calls on `server`."""
        self._server = server
        options = self.options
        app.router.add_get(options.path, self._raw)
        app.router.add_get(options.twilio_stream_path, self._twilio_stream)
        app.router.add_post(options.twilio_voice_path, self._twiml)
        app.router.add_get(options.twilio_voice_path, self._twiml)
        if options.serve_page:
            app.router.add_get(options.path + ".js", self._page)

    @property
    def server(self) -> WebRTCServer:
        if self._server is None:
            raise RuntimeError("the endpoint is not installed on a server")
        return self._server

    # --- endpoints --------------------------------------------------------------------------------

    async def _raw(self, request: web.Request) -> web.StreamResponse:
        if self.options.serve_page and not _is_upgrade(request):
            return await self._page(request)
        return await self._serve(request, RawSerializer(self.options.raw_output_sample_rate))

    async def _twilio_stream(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, TwilioSerializer())

    async def _twiml(self, request: web.Request) -> web.Response:
        server = self.server
        if not await self._webhook_authorized(request):
            message = "add ?token=<the server's token> to the webhook URL, or sign it (X-Twilio-Signature)"
            return _error(403 if "X-Twilio-Signature" in request.headers else 401, "unauthorized", message)
        if server.admission_refusal() is not None:
            return web.Response(text=twiml_busy(), content_type="text/xml")
        token = server.options.auth_token
        params = {"token": token} if token is not None else {}
        return web.Response(text=twiml(self._stream_url(request), params), content_type="text/xml")

    async def _page(self, request: web.Request) -> web.Response:
        name = "ws.js" if request.path.endswith(".js") else "ws.html"
        text = importlib.resources.files(__package__).joinpath("static", name).read_text("utf-8")
        content_type = "text/javascript" if name.endswith(".js") else "text/html"
        return web.Response(text=text, content_type=content_type, headers={"Cache-Control": "no-store"})

    # --- a call -----------------------------------------------------------------------------------

    async def _serve(self, request: web.Request, serializer: Serializer) -> web.StreamResponse:
        server = self.server
        if not _is_upgrade(request):
            return _error(400, "not_websocket", "this endpoint takes a WebSocket upgrade")
        refusal = server.admission_refusal()
        if refusal is not None:
            return refusal
        try:
            serializer.setup(request.query)
        except ProtocolError as exc:
            return _error(400, "bad_request", str(exc))
        opts = self.options.session
        ws = web.WebSocketResponse(heartbeat=opts.heartbeat_s, max_msg_size=opts.max_message_bytes)
        await ws.prepare(request)
        session = WebSocketSession(
            ws,
            serializer,
            opts,
            session_id=server.new_session_id(),
            token=server.options.auth_token,
            authorized=self._authorized(request),
        )
        with server.running(session):
            await session.run(self.factory)
        return ws

    def _authorized(self, request: web.Request) -> bool:
        server = self.server
        query = request.query.get("token")
        return server.authorized(request) or (query is not None and server.authorized(request, query))

    async def _webhook_authorized(self, request: web.Request) -> bool:
        """The server's token, or (with `twilio_auth_token`) a valid Twilio signature."""
        auth_token = self.options.twilio_auth_token
        if auth_token is None:
            return self._authorized(request)
        given = request.headers.get("X-Twilio-Signature", "")
        params = list((await request.post()).items()) if request.method == "POST" else []
        url = self._public_base(request, websocket=False) + request.path_qs
        expected = twilio_signature(url, [(k, str(v)) for k, v in params], auth_token)
        if given and hmac.compare_digest(given.encode(), expected.encode()):
            return True
        return self.server.options.auth_token is not None and self._authorized(request)

    def _stream_url(self, request: web.Request) -> str:
        return self._public_base(request, websocket=True) + self.options.twilio_stream_path

    def _public_base(self, request: web.Request, *, websocket: bool) -> str:
        """Scheme and host as Twilio reaches this server: `public_url`, else the request's
        (secure unless it came in plain; X-Forwarded-Proto counts)."""
        secure = request.headers.get("X-Forwarded-Proto", request.scheme).split(",")[0].strip() != "http"
        if self.options.public_url is not None:
            base = self.options.public_url.rstrip("/")
            secure = base.startswith(("https:", "wss:"))
            base = base.split("://", 1)[-1]
        else:
            base = request.host
        scheme = ("wss" if secure else "ws") if websocket else ("https" if secure else "http")
        return f"{scheme}://{base}"


def _is_upgrade(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)
