"""Client events: what the caller's page shows, sent as JSON over the data channel.

An `Observer` rather than a processor: it sees every frame wherever it is pushed in the
pipeline (transcripts are consumed by the user aggregator long before the output), adds no
hop, and sends synchronously (aiortc's `RTCDataChannel.send` only queues). It listens on
`on_frame`, told once per event (an event pushed both ways is a frame and its twin), so each is
reported once.

Messages (all have "type"):

* ``{"type": "transcript", "final": bool, "text": ...}`` (interim and final user transcripts)
* ``{"type": "bot_text", "turn": n, "text": ...}`` (the reply's text as the LLM streams it)
* ``{"type": "user_started_speaking"}``, ``{"type": "user_stopped_speaking"}``
* ``{"type": "bot_started_speaking", "turn": n}``,
  ``{"type": "bot_stopped_speaking", "turn": n, "played_s": s, "interrupted": bool}``
* ``{"type": "turn_latency", "turn": n, "latency_ms": ms, "points_ms": {point: ms}}``: from the
  end of the user's speech (as the VAD saw it) to the reply's first audio out, and the tracer's
  points of the turn relative to that same origin
* ``{"type": "metrics", ...}`` and whatever the app sends in a `TransportMessageFrame`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from voxframe.pipeline import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    Direction,
    Frame,
    FrameProcessor,
    InterimTranscriptionFrame,
    LLMTextFrame,
    MetricsFrame,
    Observer,
    TextFrame,
    Tracer,
    TranscriptionFrame,
    TransportMessageFrame,
    TTSSpeakFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)

NS_PER_MS = 1_000_000
_REPORTED = (
    InterimTranscriptionFrame,
    TranscriptionFrame,
    TextFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    MetricsFrame,
    TransportMessageFrame,
)

Message = dict[str, Any]


class ClientEventsObserver(Observer):
    """Turns conversation frames into client messages and hands them to `send`."""

    def __init__(self, send: Callable[[Message], None], tracer: Tracer | None = None) -> None:
        self._send = send
        self._tracer = tracer
        self._speech_end_ns: int | None = None

    def close(self) -> None:
        """Send nothing more; drops `send` (which would keep its session alive)."""
        self._send = _discard

    def on_frame(self, src: FrameProcessor, frame: Frame, direction: Direction, t_ns: int) -> None:
        if not isinstance(frame, _REPORTED):
            return
        message = self.message_for(frame, t_ns)
        if message is not None:
            self._send(message)

    def message_for(self, frame: Frame, t_ns: int) -> Message | None:
        match frame:
            case TransportMessageFrame():
                return frame.message
            case InterimTranscriptionFrame() | TranscriptionFrame():
                final = isinstance(frame, TranscriptionFrame)
                return {"type": "transcript", "final": final, "text": frame.text}
            case LLMTextFrame() | TTSSpeakFrame():
                return {"type": "bot_text", "turn": frame.turn, "text": frame.text}
            case UserStartedSpeakingFrame():
                return {"type": "user_started_speaking"}
            case UserStoppedSpeakingFrame():
                self._speech_end_ns = frame.speech_end_ns or t_ns
                return {"type": "user_stopped_speaking"}
            case BotStartedSpeakingFrame():
                self._send({"type": "bot_started_speaking", "turn": frame.turn})
                return self._latency(frame.turn, t_ns)
            case BotStoppedSpeakingFrame():
                return {
                    "type": "bot_stopped_speaking",
                    "turn": frame.turn,
                    "played_s": round(frame.played_s, 3),
                    "interrupted": frame.interrupted,
                }
            case MetricsFrame():
                return {"type": "metrics", "processor": frame.processor, "metric": frame.metric, "value": frame.value}
        return None

    def _latency(self, turn: int, t_ns: int) -> Message | None:
        origin = self._speech_end_ns
        if origin is None or turn == 0:
            return None
        points = self._tracer.turn(turn) if self._tracer is not None else {}
        first_out = points.get("first_audio_out", t_ns)
        return {
            "type": "turn_latency",
            "turn": turn,
            "latency_ms": round((first_out - origin) / NS_PER_MS, 1),
            "points_ms": {name: round((at - origin) / NS_PER_MS, 1) for name, at in points.items() if ":" not in name},
        }


def _discard(message: Message) -> None:
    """The `send` of a closed observer."""
