"""WebSocket transport: calls over a WebSocket in a pluggable wire format, on the WebRTC server.

    endpoint = WebSocketEndpoint(factory)   # factory: async (WebSocketSession) -> PipelineTask
    server = WebRTCServer(webrtc_factory, ServerOptions(route_installers=[endpoint.install]))

Formats: `RawSerializer` (16-bit PCM at a negotiated rate, JSON events; ``/ws``, with a page)
and `TwilioSerializer` (Twilio Media Streams, 8 kHz μ-law; ``/twilio/voice`` answers a call
with the TwiML that points it at ``/twilio/stream``). Inside the factory, `session.input` and
`session.output` are the pipeline's two ends, as on WebRTC.
"""

from .endpoint import WebSocketEndpoint, WebSocketOptions
from .serializer import (
    AudioIn,
    CallEnded,
    CallStarted,
    ClientMessage,
    Inbound,
    MarkPlayed,
    ProtocolError,
    RawSerializer,
    Serializer,
)
from .session import TaskFactory, WebSocketSession, WebSocketSessionOptions
from .transport import WebSocketInputTransport, WebSocketOutputTransport
from .twilio import TWILIO_RATE, TwilioSerializer, twiml, ulaw_decode, ulaw_encode

__all__ = [
    "TWILIO_RATE",
    "AudioIn",
    "CallEnded",
    "CallStarted",
    "ClientMessage",
    "Inbound",
    "MarkPlayed",
    "ProtocolError",
    "RawSerializer",
    "Serializer",
    "TaskFactory",
    "TwilioSerializer",
    "WebSocketEndpoint",
    "WebSocketInputTransport",
    "WebSocketOptions",
    "WebSocketOutputTransport",
    "WebSocketSession",
    "WebSocketSessionOptions",
    "twiml",
    "ulaw_decode",
    "ulaw_encode",
]
