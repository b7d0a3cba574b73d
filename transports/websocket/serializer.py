"""Serializers: a WebSocket's wire format, as messages in and frames' worth of meaning out.

The session is the same for every wire format; a serializer decides what a message means
(`decode`: audio, the call's start, a mark played, a hang-up, a client message) and how audio,
marks, events and the barge-in "clear" are written (`encode_*`; None: the format has no such
message, and nothing is sent). Twilio Media Streams is one (`twilio.py`); Telnyx and Plivo
would each be another.

`RawSerializer` is voxframe's own format, for servers, devices and browsers:

* the caller negotiates the audio rate in the query string (``?sample_rate=16000`` and
  optionally ``&output_sample_rate=24000``) or in a first text message
  ``{"type": "start", "sample_rate": 16000, "output_sample_rate": 24000, "token": "..."}``;
* audio both ways is binary messages of 16-bit little-endian mono PCM at the negotiated rates;
* every other message is JSON text: from the bot, the RTVI events the WebRTC data channel
  carries (`ClientEventsObserver`), ``{"type": "session", ...}`` once the call starts, and
  ``{"type": "clear"}`` on barge-in (drop the bot audio queued for playback); from the caller,
  ``{"type": "stop"}`` hangs up and anything else is a client message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

Message = dict[str, Any]
#: What goes on the wire: text (JSON) or binary.
WireMessage = str | bytes

RATES = (8_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000)


class ProtocolError(Exception):
    """A message the format cannot accept; the call goes on (the message is dropped)."""


@dataclass(slots=True)
class AudioIn:
    """The caller's audio: s16le PCM."""

    audio: bytes
    sample_rate: int
    num_channels: int = 1


@dataclass(slots=True)
class CallStarted:
    """The format's handshake is done (rates known); `token` if the caller sent one in it."""

    token: str | None = None
    info: Message = field(default_factory=dict)


@dataclass(slots=True)
class MarkPlayed:
    """The caller's side has played the audio sent before the mark `name`."""

    name: str


@dataclass(slots=True)
class CallEnded:
    """The caller hung up (the socket may stay open a moment longer)."""

    reason: str


@dataclass(slots=True)
class ClientMessage:
    """Anything else the caller sent, as JSON."""

    message: Message


Inbound = AudioIn | CallStarted | MarkPlayed | CallEnded | ClientMessage


class Serializer(Protocol):
    """One wire format. One instance per call (it holds the call's negotiated state)."""

    #: A name for logs and session ids ("raw", "twilio").
    name: str
    #: The wire echoes marks once the audio before them has played (Twilio does).
    marks: bool

    @property
    def ready(self) -> bool:
        """The handshake is done: the rates below are known."""
        ...

    @property
    def input_sample_rate(self) -> int: ...

    @property
    def output_sample_rate(self) -> int: ...

    def setup(self, query: Mapping[str, str]) -> None:
        """Read what the connection's URL says (raises `ProtocolError` on a bad value)."""
        ...

    def decode(self, message: WireMessage) -> list[Inbound]:
        """What one message means (raises `ProtocolError`)."""
        ...

    def encode_audio(self, audio: bytes) -> WireMessage:
        """One chunk of bot audio: s16le mono at `output_sample_rate`."""
        ...

    def encode_mark(self, name: str) -> WireMessage | None: ...

    def encode_clear(self) -> WireMessage | None: ...

    def encode_event(self, message: Message) -> WireMessage | None: ...


class RawSerializer:
    """16-bit PCM mono at a negotiated rate, binary messages; JSON text for everything else."""

    name = "raw"
    marks = False

    def __init__(self, default_output_sample_rate: int | None = None) -> None:
        self._in_rate: int | None = None
        self._out_rate: int | None = None
        self._default_out = default_output_sample_rate
        self._start_seen = False

    @property
    def ready(self) -> bool:
        return self._in_rate is not None

    @property
    def input_sample_rate(self) -> int:
        if self._in_rate is None:
            raise ProtocolError("the audio rate is not negotiated yet")
        return self._in_rate

    @property
    def output_sample_rate(self) -> int:
        return self._out_rate or self._default_out or self.input_sample_rate

    def setup(self, query: Mapping[str, str]) -> None:
        if "sample_rate" in query:
            self._negotiate(query.get("sample_rate"), query.get("output_sample_rate"))

    def decode(self, message: WireMessage) -> list[Inbound]:
        if isinstance(message, bytes):
            if self._in_rate is None:
                raise ProtocolError("send {'type': 'start', 'sample_rate': ...} (or ?sample_rate=) before audio")
            if len(message) % 2:
                raise ProtocolError(f"audio must be whole 16-bit samples, got {len(message)} bytes")
            return [AudioIn(message, self._in_rate)] if message else []
        try:
            parsed = json.loads(message)
        except json.JSONDecodeError as exc:
            raise ProtocolError(f"a text message must be JSON: {exc}") from exc
        if not isinstance(parsed, dict) or not isinstance(parsed.get("type"), str):
            raise ProtocolError("a text message must be a JSON object with a 'type'")
        kind = parsed["type"]
        if kind == "start":
            if self._start_seen:
                raise ProtocolError("the call has started already")
            if "sample_rate" in parsed or self._in_rate is None:  # else the query string's rates hold
                self._negotiate(parsed.get("sample_rate"), parsed.get("output_sample_rate"))
            self._start_seen = True
            token = parsed.get("token")
            return [CallStarted(token if isinstance(token, str) else None, parsed)]
        if kind == "stop":
            return [CallEnded("the caller sent stop")]
        return [ClientMessage(parsed)]

    def encode_audio(self, audio: bytes) -> WireMessage:
        return audio

    def encode_mark(self, name: str) -> WireMessage | None:
        return None

    def encode_clear(self) -> WireMessage | None:
        return json.dumps({"type": "clear"})

    def encode_event(self, message: Message) -> WireMessage | None:
        return json.dumps(message)

    def _negotiate(self, rate: object, out_rate: object) -> None:
        self._in_rate = _rate(rate, "sample_rate")
        self._out_rate = None if out_rate is None else _rate(out_rate, "output_sample_rate")


def _rate(value: object, what: str) -> int:
    try:
        rate = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise ProtocolError(f"{what} must be one of {RATES}, got {value!r}") from None
    if rate not in RATES or isinstance(value, bool | float):
        raise ProtocolError(f"{what} must be one of {RATES}, got {value!r}")
    return rate
