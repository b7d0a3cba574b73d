"""OpenTelemetry traces of a bot server (the opentelemetry-sdk library; `voxframe[otel]`).

A span per session (`voxframe.session`), a child span per reply (`voxframe.turn`, from the end of
the user's speech to the reply's end) with the turn number and whether it was interrupted, and
under it a span per stage (`vad`, `stt`, `llm`, `tts`, `network`) between the tracer points the
waterfall uses. The turn spans are written when the reply ends, from points taken on the one
(monotonic) clock, shifted onto the wall clock OpenTelemetry expects.

`tracer_provider()` builds the SDK provider with an OTLP/HTTP exporter when
`OTEL_EXPORTER_OTLP_ENDPOINT` is set (and the exporter package is installed); tests hand their own
provider with the SDK's in-memory exporter.
"""

from __future__ import annotations

import os
import time
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from voxframe.pipeline.clock import current_clock
from voxframe.transports.webrtc.server import ServedSession

from .turn_reporter import TurnRecord

#: A reply's stages: (span name, from point, to point); a stage whose points are missing is skipped.
STAGE_SPANS = (
    ("vad", None, "vad_stop"),
    ("stt", "vad_stop", "stt_final"),
    ("llm", "stt_final", "llm_first_token"),
    ("tts", "tts_first_text", "tts_first_audio"),
    ("network", "tts_first_audio", "first_audio_out"),
)


def tracer_provider(service_name: str = "voxframe") -> TracerProvider | None:
    """The SDK provider for OTLP export when `OTEL_EXPORTER_OTLP_ENDPOINT` says where; else None."""
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        raise RuntimeError(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but the OTLP exporter is missing: pip install 'voxframe[otel]'"
        ) from exc
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


class SessionTraces:
    """Spans for the sessions of one server."""

    def __init__(self, provider: trace.TracerProvider) -> None:
        self.tracer = provider.get_tracer("voxframe")
        self._sessions: dict[str, trace.Span] = {}
        # The clock's ns (monotonic) to the wall clock's, fixed once: spans keep their true lengths.
        self._to_wall_ns = time.time_ns() - current_clock().now_ns()

    def session_started(self, session: ServedSession) -> None:
        span = self.tracer.start_span("voxframe.session", attributes={"voxframe.session.id": session.id})
        self._sessions[session.id] = span

    def on_turn(self, session: ServedSession, record: TurnRecord) -> None:
        parent = self._sessions.get(session.id)
        points = record.points_ns
        start = record.speech_end_ns if record.speech_end_ns is not None else min(points.values(), default=None)
        if parent is None or start is None:
            return
        attributes: dict[str, Any] = {"voxframe.turn": record.turn, "voxframe.interrupted": record.interrupted}
        context = trace.set_span_in_context(parent)
        end = max([start, *points.values()])
        turn = self.tracer.start_span("voxframe.turn", context, attributes=attributes, start_time=self._wall(start))
        in_turn = trace.set_span_in_context(turn)
        for name, begin, finish in STAGE_SPANS:
            t0 = start if begin is None else points.get(begin)
            t1 = points.get(finish)
            if t0 is not None and t1 is not None and t1 >= t0:
                stage = self.tracer.start_span(name, in_turn, attributes=attributes, start_time=self._wall(t0))
                stage.end(end_time=self._wall(t1))
        turn.end(end_time=self._wall(end))

    def session_ended(self, session: ServedSession, duration_s: float) -> None:
        span = self._sessions.pop(session.id, None)
        if span is not None:
            span.set_attribute("voxframe.session.end_reason", session.end_reason or "cancelled")
            span.set_attribute("voxframe.session.duration_s", duration_s)
            span.end()

    def _wall(self, t_ns: int) -> int:
        return t_ns + self._to_wall_ns


__all__ = ["STAGE_SPANS", "SessionTraces", "tracer_provider"]
