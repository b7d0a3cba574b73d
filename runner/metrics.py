"""Prometheus metrics of a bot server at `/metrics` (the prometheus-client library).

What a person running the bot watches: live and pending sessions, offers admitted and refused
(by reason), each turn's stage latencies as the server sees them (from the end of the user's
speech: VAD stop, STT final, LLM first token, TTS first audio, first packet out, which is the
server's mouth-to-ear), interruptions, false interruptions, provider errors and lost provider
connections, usage (tokens, characters, audio seconds) and the event loop's lag.

Every series carries a `worker` label (the session-id prefix that names a worker process, or
"main"), so a Prometheus scraping each worker can show them apart and `sum without (worker)`
gives the machine. Counts that live in the server (sessions, offers) are read at scrape time
rather than mirrored, so they cannot drift.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from voxframe.pipeline import (
    Direction,
    ErrorFrame,
    FalseInterruptionFrame,
    Frame,
    FrameProcessor,
    InterruptionFrame,
    MetricsFrame,
    Observer,
)
from voxframe.pipeline.clock import NS_PER_S, current_clock
from voxframe.transports.webrtc import WebRTCServer
from voxframe.transports.webrtc.server import ServedSession

from .turn_reporter import STAGES, TurnRecord
from .usage import Usage

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Seconds: a voice turn's stages live between 10 ms and a few seconds.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
#: How often the loop-lag probe wakes.
LAG_PERIOD_S = 0.1


class BotMetrics:
    """One server's metrics. `observer()` goes into each session's task; `install` mounts `/metrics`."""

    def __init__(self, server: WebRTCServer, worker: str = "main") -> None:
        self.server = server
        self.worker = worker
        self.registry = CollectorRegistry(auto_describe=True)
        r, w = self.registry, ["worker"]
        self.stage_seconds = Histogram(
            "voxframe_turn_stage_seconds", "Time from the end of the user's speech to each stage of the reply",
            [*w, "stage"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.interruptions = Counter("voxframe_interruptions", "Bot replies interrupted", w, registry=r)
        self.false_interruptions = Counter(
            "voxframe_false_interruptions", "Interruptions with no words after them (a cough)", w, registry=r
        )
        self.provider_errors = Counter(
            "voxframe_provider_errors", "Errors reported by a processor", [*w, "processor", "fatal"], registry=r
        )
        self.connections_lost = Counter(
            "voxframe_provider_connections_lost", "Provider connections lost (then reconnected)",
            [*w, "processor"], registry=r,
        )  # fmt: skip
        self.session_seconds = Histogram(
            "voxframe_session_duration_seconds", "How long ended sessions lasted", w,
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600), registry=r,
        )  # fmt: skip
        self.usage = {
            name: Counter(f"voxframe_usage_{name}", help_text, w, registry=r)
            for name, help_text in (
                ("llm_prompt_tokens", "LLM prompt tokens"),
                ("llm_completion_tokens", "LLM completion tokens"),
                ("tts_characters", "Characters sent to the TTS"),
                ("stt_audio_seconds", "Seconds of caller audio received"),
            )
        }
        self.loop_lag = Histogram(
            "voxframe_event_loop_lag_seconds", f"How late a {LAG_PERIOD_S:g} s timer fires on the event loop",
            w, buckets=LAG_BUCKETS, registry=r,
        )  # fmt: skip
        self.registry.register(_ServerCollector(server, worker))
        #: Told of every loop-lag sample, in seconds (admission control listens).
        self.lag_listeners: list[Callable[[float], None]] = []

    # --- feeding -------------------------------------------------------------------------------

    def observer(self) -> Observer:
        return _MetricsObserver(self)

    def on_turn(self, record: TurnRecord) -> None:
        origin = record.speech_end_ns
        if origin is None:
            return
        for stage in STAGES:
            t_ns = record.points_ns.get(stage)
            if t_ns is not None and t_ns >= origin:
                self.stage_seconds.labels(self.worker, stage).observe((t_ns - origin) / NS_PER_S)

    def on_session_end(self, session: ServedSession, duration_s: float) -> None:
        self.session_seconds.labels(self.worker).observe(duration_s)
        usage = session.annotations.get("usage")
        if isinstance(usage, Usage):
            self.usage["llm_prompt_tokens"].labels(self.worker).inc(usage.llm_prompt_tokens)
            self.usage["llm_completion_tokens"].labels(self.worker).inc(usage.llm_completion_tokens)
            self.usage["tts_characters"].labels(self.worker).inc(usage.tts_characters)
            self.usage["stt_audio_seconds"].labels(self.worker).inc(usage.stt_audio_s)

    async def watch_loop_lag(self) -> None:
        """Forever: how late a short timer fires is how long every other task waits to run."""
        clock = current_clock()
        period_ns = round(LAG_PERIOD_S * NS_PER_S)
        while True:
            due = clock.now_ns() + period_ns
            await clock.sleep_until(due)
            lag_s = max(0, clock.now_ns() - due) / NS_PER_S
            self.loop_lag.labels(self.worker).observe(lag_s)
            for listener in self.lag_listeners:
                listener(lag_s)

    # --- serving -------------------------------------------------------------------------------

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def install(self, app: web.Application, server: WebRTCServer) -> None:
        """A route installer: `GET /metrics` (unauthenticated, like `/healthz`: scraped inside the network)."""

        async def metrics(request: web.Request) -> web.Response:
            return web.Response(body=self.render(), headers={"Content-Type": CONTENT_TYPE})

        app.router.add_get("/metrics", metrics)


class _MetricsObserver(Observer):
    def __init__(self, metrics: BotMetrics) -> None:
        self.metrics = metrics

    def on_frame(self, src: FrameProcessor, frame: Frame, direction: Direction, t_ns: int) -> None:
        m, w = self.metrics, self.metrics.worker
        match frame:
            case InterruptionFrame():
                m.interruptions.labels(w).inc()
            case FalseInterruptionFrame():
                m.false_interruptions.labels(w).inc()
            case ErrorFrame():
                m.provider_errors.labels(w, frame.processor or src.name, str(frame.fatal).lower()).inc()
            case MetricsFrame(metric="connection_lost"):
                m.connections_lost.labels(w, frame.processor).inc()


class _ServerCollector(Collector):
    """Read at scrape time from the server itself: sessions now, offers so far."""

    def __init__(self, server: WebRTCServer, worker: str) -> None:
        self.server = server
        self.worker = worker

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        live = GaugeMetricFamily("voxframe_sessions", "Sessions running now", labels=["worker", "state"])
        pending = self.server.pending_sessions
        live.add_metric([self.worker, "connecting"], pending)
        live.add_metric([self.worker, "connected"], len(self.server.sessions) - pending)
        yield live
        admitting = GaugeMetricFamily("voxframe_admitting", "1 while new offers are admitted", labels=["worker"])
        admitting.add_metric([self.worker], 1.0 if self.server.admitting else 0.0)
        yield admitting
        offers = CounterMetricFamily("voxframe_offers", "Offers by outcome", labels=["worker", "outcome"])
        for outcome, count in sorted(self.server.offer_outcomes.items()):
            offers.add_metric([self.worker, outcome], count)
        yield offers


__all__ = ["BotMetrics"]
