"""Telephone calls through Twilio Media Streams: the serializer, the μ-law codec and the TwiML.

A Twilio number's voice webhook answers with TwiML (`twiml`) whose ``<Connect><Stream>`` makes
Twilio open a WebSocket to the bot (a bidirectional stream). Over it, in JSON text messages
(Twilio's "Media Streams - WebSocket Messages" page):

* from Twilio: ``connected``; ``start`` (``streamSid``, ``callSid``, ``mediaFormat`` of
  8 kHz mono ``audio/x-mulaw``, ``customParameters`` from the TwiML's ``<Parameter>``s);
  ``media`` (``media.payload``: base64 μ-law, 20 ms each); ``mark`` (the echo of a mark we
  sent, once the audio before it has played, or dropped by a clear); ``dtmf``; ``stop``;
* to Twilio: ``media`` ``{event, streamSid, media: {payload}}``, ``mark`` ``{event, streamSid,
  mark: {name}}`` and ``clear`` ``{event, streamSid}``, which empties Twilio's buffer of audio
  not yet played (the barge-in).

The pipeline's own rates stay as they are: the input base resamples 8 kHz to the pipeline's
input rate, the playout resamples the TTS's rate to 8 kHz, and only the wire is μ-law. The
stream has no event channel: client events are not sent. Twilio's Stream URL takes no query
string, so the server's token travels as the ``<Parameter name="token">`` of the TwiML.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from functools import cache
from xml.sax.saxutils import quoteattr

import numpy as np

from .serializer import (
    AudioIn,
    CallEnded,
    CallStarted,
    ClientMessage,
    Inbound,
    MarkPlayed,
    Message,
    ProtocolError,
    WireMessage,
)

TWILIO_RATE = 8_000
_BIAS = 0x84
_CLIP = 32_635


# --- G.711 μ-law ------------------------------------------------------------------------------------


def _encode_array(pcm: np.ndarray) -> np.ndarray:
    x = pcm.astype(np.int32)
    sign = np.where(x < 0, 0x80, 0)
    magnitude = np.minimum(np.abs(x), _CLIP) + _BIAS  # 132 .. 32767: exponent 0 .. 7
    exponent = np.floor(np.log2(magnitude)).astype(np.int32) - 7
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8)


@cache
def _encode_table() -> np.ndarray:
    """μ-law of every 16-bit sample, indexed by the sample as uint16 (64 KiB, built once)."""
    return _encode_array(np.arange(65_536, dtype=np.uint16).view(np.int16))


@cache
def _decode_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (u >> 4) & 0x07
    magnitude = (((u & 0x0F) << 3) + _BIAS) << exponent
    return np.where(u & 0x80, _BIAS - magnitude, magnitude - _BIAS).astype("<i2")


def ulaw_encode(pcm: bytes) -> bytes:
    """s16le PCM to G.711 μ-law, one byte per sample."""
    samples = np.frombuffer(pcm, dtype="<i2", count=len(pcm) // 2)
    return _encode_table()[samples.view(np.uint16)].tobytes()


def ulaw_decode(ulaw: bytes) -> bytes:
    """G.711 μ-law to s16le PCM."""
    return _decode_table()[np.frombuffer(ulaw, dtype=np.uint8)].tobytes()


# --- the serializer ---------------------------------------------------------------------------------


class TwilioSerializer:
    """Twilio Media Streams: 8 kHz μ-law in JSON, marks echoed once played, `clear` on barge-in."""

    name = "twilio"
    marks = True

    def __init__(self) -> None:
        self.stream_sid: str | None = None
        self.call_sid: str | None = None
        self.custom_parameters: dict[str, str] = {}

    @property
    def ready(self) -> bool:
        return self.stream_sid is not None

    @property
    def input_sample_rate(self) -> int:
        return TWILIO_RATE

    @property
    def output_sample_rate(self) -> int:
        return TWILIO_RATE

    def setup(self, query: Mapping[str, str]) -> None:
        """Twilio's Stream URL carries no query string; everything comes in `start`."""

    def decode(self, message: WireMessage) -> list[Inbound]:
        if isinstance(message, bytes):
            raise ProtocolError("Twilio sends JSON text messages, not binary")
        try:
            parsed = json.loads(message)
        except json.JSONDecodeError as exc:
            raise ProtocolError(f"not JSON: {exc}") from exc
        if not isinstance(parsed, dict) or not isinstance(parsed.get("event"), str):
            raise ProtocolError("a Media Streams message is a JSON object with an 'event'")
        event = parsed["event"]
        if event == "connected":
            return []
        if event == "start":
            return [self._start(parsed)]
        if event == "media":
            return self._media(parsed)
        if event == "mark":
            name = _field(parsed, "mark").get("name")
            if not isinstance(name, str):
                raise ProtocolError("a mark message needs mark.name")
            return [MarkPlayed(name)]
        if event == "stop":
            return [CallEnded("the caller hung up (stop)")]
        if event == "dtmf":
            return [ClientMessage({"type": "dtmf", "digit": _field(parsed, "dtmf").get("digit")})]
        raise ProtocolError(f"unknown event {event!r}")

    def _start(self, parsed: Message) -> CallStarted:
        start = _field(parsed, "start")
        sid = start.get("streamSid", parsed.get("streamSid"))
        if not isinstance(sid, str) or not sid:
            raise ProtocolError("start needs a streamSid")
        media_format = start.get("mediaFormat") or {}
        encoding, rate = media_format.get("encoding"), media_format.get("sampleRate")
        if (encoding, rate) != ("audio/x-mulaw", TWILIO_RATE):
            raise ProtocolError(f"expected 8000 Hz audio/x-mulaw, got {encoding!r} at {rate!r}")
        params = start.get("customParameters") or {}
        self.custom_parameters = {str(k): str(v) for k, v in params.items()} if isinstance(params, dict) else {}
        self.stream_sid = sid
        self.call_sid = start.get("callSid") if isinstance(start.get("callSid"), str) else None
        return CallStarted(self.custom_parameters.get("token"), start)

    def _media(self, parsed: Message) -> list[Inbound]:
        if self.stream_sid is None:
            raise ProtocolError("media before start")
        media = _field(parsed, "media")
        if media.get("track", "inbound") not in ("inbound", "inbound_track"):
            return []  # only the caller's side is ours to hear
        payload = media.get("payload")
        if not isinstance(payload, str):
            raise ProtocolError("a media message needs media.payload")
        try:
            ulaw = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ProtocolError(f"media.payload is not base64: {exc}") from exc
        return [AudioIn(ulaw_decode(ulaw), TWILIO_RATE)] if ulaw else []

    def encode_audio(self, audio: bytes) -> WireMessage:
        payload = base64.b64encode(ulaw_encode(audio)).decode("ascii")
        return json.dumps({"event": "media", "streamSid": self.stream_sid, "media": {"payload": payload}})

    def encode_mark(self, name: str) -> WireMessage | None:
        return json.dumps({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}})

    def encode_clear(self) -> WireMessage | None:
        return json.dumps({"event": "clear", "streamSid": self.stream_sid})

    def encode_event(self, message: Message) -> WireMessage | None:
        return None  # a phone has no screen


def _field(parsed: Message, name: str) -> Message:
    value = parsed.get(name)
    if not isinstance(value, dict):
        raise ProtocolError(f"a {parsed.get('event')} message needs a '{name}' object")
    return value


def twiml(stream_url: str, parameters: Mapping[str, str] | None = None) -> str:
    """The answer to a call: connect it to the bot's Media Streams WebSocket at `stream_url`."""
    params = "".join(
        f"<Parameter name={quoteattr(name)} value={quoteattr(value)}/>" for name, value in (parameters or {}).items()
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Response><Connect><Stream url={quoteattr(stream_url)}>{params}</Stream></Connect></Response>"
    )


def twilio_signature(url: str, params: Iterable[tuple[str, str]], auth_token: str) -> str:
    """What Twilio puts in a webhook's ``X-Twilio-Signature``: base64 HMAC-SHA1, keyed by the
    account's auth token, of the URL Twilio called followed by each POST parameter's name and
    value, sorted by name (Twilio's "Secure webhooks" page)."""
    signed = url + "".join(name + value for name, value in sorted(params, key=lambda item: item[0]))
    digest = hmac.new(auth_token.encode(), signed.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def twiml_busy() -> str:
    """The answer while the bot takes no call (at its limit, draining): a busy signal."""
    return '<?xml version="1.0" encoding="UTF-8"?><Response><Reject reason="busy"/></Response>'
