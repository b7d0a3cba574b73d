"""The shared runner: any bot file gets a server, a test call and a console with two lines.

    if __name__ == "__main__":
        from voxframe.runner import run_bot
        run_bot(create_pipeline)

(or `voxframe run bots/example.py [options]`; `voxframe run --help` lists the options).

`create_pipeline(bot: BotSession) -> FrameProcessor` builds one caller's pipeline from
`bot.input`, `bot.output` (the transport's two ends: WebRTC, WebSocket or a Twilio call, the
same bot file serves them all) and `bot.services` (STT/LLM/TTS chosen from the environment, see
`services.py`). Some options:

    python bots/example.py                      serve the browser client on http://127.0.0.1:7860
    python bots/example.py --host 0.0.0.0 --port 8080
    python bots/example.py --call question.wav  call the bot once through real WebRTC and exit
        [--reply-out reply.wav]                 where to save what the bot answered
    --trace-out turns.jsonl                     append every turn's record (benchmarks read it)
    --workers 2                                 two worker processes on ports 7861, 7862 behind a load
                                                balancer on 7860 (`voxframe nginx-config`, supervisor.py)

The data channel speaks RTVI (`voxframe.transports.rtvi`): each caller that says `client-ready`
gets `bot-ready` once its pipeline is running.
While serving, every reply prints one line: what the bot heard, what it said, and where the
time went (tracer points after the end of the user's speech). Ctrl-C ends every session and
stops cleanly.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import signal
import sys
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TextIO

import anyio
import numpy as np

from voxframe.pipeline import FrameProcessor, PipelineParams, PipelineTask
from voxframe.pipeline.aio import first_error
from voxframe.pipeline.clock import NS_PER_S, current_clock, fail_at, move_on_at
from voxframe.transports import InputTransport, OutputTransport
from voxframe.transports.wav import write_wav
from voxframe.transports.webrtc import (
    ClientOptions,
    HeadlessClient,
    IceOptions,
    PortHookError,
    ServerOptions,
    SessionOptions,
    WebRTCServer,
    check_port_hook,
)
from voxframe.transports.webrtc.server import RouteInstaller, ServedSession
from voxframe.transports.websocket import WebSocketEndpoint, WebSocketOptions

from .admission import Admission, AdmissionOptions
from .metrics import BotMetrics
from .options import RunnerOptions, StartupError, configure_logging, is_loopback, parse_options
from .services import Services
from .turn_credentials import TurnMinter
from .turn_reporter import TurnRecord, TurnReporter
from .usage import UsageObserver

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from .otel import SessionTraces

logger = logging.getLogger("voxframe.runner")

EAR_RATE = 48_000
#: The client event (RTVI) that says the caller's pipeline is running.
READY_EVENT = {"type": "bot-ready"}


class TransportSession(Protocol):
    """One caller on any transport: a WebRTC `Session`, a `WebSocketSession` (raw or Twilio)."""

    end_reason: str | None
    #: Facts printed in the session's end line (the runner puts its usage there).
    annotations: dict[str, object]

    def hang_up(self) -> None: ...

    @property
    def id(self) -> str: ...

    @property
    def input(self) -> InputTransport: ...

    @property
    def output(self) -> OutputTransport: ...


@dataclass(slots=True)
class BotSession:
    """What a bot definition gets for each caller, whatever the transport."""

    session: TransportSession
    services: Services

    @property
    def input(self) -> InputTransport:
        """The caller's audio, as `InputAudioFrame`s at the pipeline's input rate."""
        return self.session.input

    @property
    def output(self) -> OutputTransport:
        """The caller's speaker: plays bot audio in real time, reports what was played."""
        return self.session.output


PipelineFactory = Callable[[BotSession], FrameProcessor]


def ice_for(host: str, servers: list | None = None) -> IceOptions:
    """Loopback serving keeps every ICE candidate on 127.0.0.1; otherwise any interface."""
    return IceOptions(servers=list(servers or []), host_addresses=("127.0.0.1",) if is_loopback(host) else None)


def server_ice(options: RunnerOptions) -> IceOptions:
    """The sessions' ICE: `ice_for` plus the announced public IP and the UDP port range."""
    ice = ice_for(options.host, options.ice_servers)
    ice.public_ip, ice.udp_ports = options.public_ip, options.udp_ports
    if options.udp_ports is not None:
        try:
            check_port_hook()
        except PortHookError as exc:
            raise StartupError(f"--udp-ports: {exc}") from exc
    return ice


class BotServer:
    """A `WebRTCServer` whose sessions run `create_pipeline`, each with a `TurnReporter`.

    The same server takes WebSocket and Twilio calls (`WebSocketEndpoint`: ``/ws``,
    ``/twilio/voice``), with the same token, session limit and drain.
    """

    def __init__(
        self,
        create_pipeline: PipelineFactory,
        services: Services,
        options: RunnerOptions,
        route_installers: tuple[RouteInstaller, ...] = (),
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        """`tracer_provider`: OpenTelemetry spans go there (None: to OTLP when
        `OTEL_EXPORTER_OTLP_ENDPOINT` is set, else nowhere)."""
        self.create_pipeline = create_pipeline
        self.services = services
        self.options = options
        #: The latest turns of every session (bounded: a server runs for days).
        self.records: deque[TurnRecord] = deque(maxlen=1000)
        self._trace: TextIO | None = None
        session = SessionOptions(ice=server_ice(options))
        minter = TurnMinter(options.turn_secret, tuple(options.turn_urls)) if options.turn_secret else None
        websocket = WebSocketOptions(public_url=options.public_url, twilio_auth_token=options.twilio_auth_token)
        self.websocket = WebSocketEndpoint(self._make_task, websocket)
        server_options = ServerOptions(
            host=options.host, port=options.port, session=session, auth_token=options.token,
            ssl_context=options.ssl_context(), session_id_prefix=options.session_id_prefix,
            caller_ice_servers=minter, route_installers=[self.websocket.install, *route_installers],
        )  # fmt: skip
        self.server = WebRTCServer(self._make_task, server_options)
        self.metrics = BotMetrics(self.server, worker=options.session_id_prefix.rstrip("-") or "main")
        server_options.route_installers.append(self.metrics.install)
        server_options.session_end_listeners.append(self._on_session_end)
        self.traces = _session_traces(tracer_provider)
        self.admission = Admission(
            self.server, AdmissionOptions(max_lag_s=options.max_loop_lag_s, max_read_late_s=options.max_read_late_s)
        )
        self.metrics.lag_listeners.append(self.admission.observe)

    async def _make_task(self, session: TransportSession) -> PipelineTask:
        pipeline = self.create_pipeline(BotSession(session, self.services))
        reporter = TurnReporter(lambda record: self._on_turn(session, record))
        usage = UsageObserver()
        session.annotations["usage"] = usage.usage  # printed in the session's end line
        task = PipelineTask(pipeline, PipelineParams(observers=[reporter, usage, self.metrics.observer()]))
        reporter.tracer = task.tracer
        if self.traces is not None:
            self.traces.session_started(session)
        # The session's RTVI endpoint says `bot-ready` once the pipeline has started: the caller
        # may speak then (audio sent before that finds no VAD listening and is dropped).
        return task

    def _on_turn(self, session: TransportSession, record: TurnRecord) -> None:
        self.records.append(record)
        print(record.line(), flush=True)
        if self._trace is not None:
            self._trace.write(json.dumps(record.to_json()) + "\n")
            self._trace.flush()
        self.metrics.on_turn(record)
        if self.traces is not None:
            self.traces.on_turn(session, record)

    def _on_session_end(self, session: ServedSession, duration_s: float) -> None:
        self.metrics.on_session_end(session, duration_s)
        if self.traces is not None:
            self.traces.session_ended(session, duration_s)

    async def serve(self, *, task_status: anyio.abc.TaskStatus[str] = anyio.TASK_STATUS_IGNORED) -> None:
        """Listen (a busy port fails here, before any model loads), load the models, admit callers.

        `tg.start` returns the URL once admitting; `/readyz` says 503 while the models load.
        """
        trace_path = self.options.trace_out
        self._trace = trace_path.open("a", encoding="utf-8") if trace_path is not None else None
        try:
            async with anyio.create_task_group() as tg:
                self.server.hold("warming_up")
                url = await tg.start(self.server.serve)
                tg.start_soon(self.metrics.watch_loop_lag)
                if self.options.warm_up and (
                    self.services.stt_choice == "whisper" or self.services.tts_choice == "piper"
                ):
                    print("loading embedded models ...", flush=True)
                    await anyio.to_thread.run_sync(self.services.warm_up)
                self.server.admit("warming_up")
                task_status.started(url)
        finally:
            if self._trace is not None:
                self._trace.close()


def _session_traces(provider: TracerProvider | None) -> SessionTraces | None:
    """OpenTelemetry spans when a provider is given or OTLP export is configured; else none
    (and opentelemetry is never imported: it is an optional extra)."""
    if provider is None and not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return None
    from .otel import SessionTraces, tracer_provider

    provider = provider or tracer_provider()
    return SessionTraces(provider) if provider is not None else None


# --- serving -------------------------------------------------------------------------------------


async def serve_until_signal(bot: BotServer) -> int:
    async with anyio.create_task_group() as tg:
        url = await tg.start(bot.serve)
        print(f"voxframe bot ready: open {url} in a browser (Ctrl-C stops)", flush=True)
        ws_url = url.replace("http", "ws", 1)
        print(f"  WebSocket: {ws_url}/ws?sample_rate=16000   Twilio voice webhook: {url}/twilio/voice", flush=True)
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            signum = await _stop_requested(signals)
        if signum == signal.SIGTERM:
            await drain(bot, bot.options.drain_deadline_s)
        count = bot.server.end_all("server_stopping")
        print(f"stopping: ending {count} session{'s' * (count != 1)}", flush=True)
        async with move_on_at(current_clock().now_ns() + 10 * NS_PER_S):
            await bot.server.wait_sessions(lambda sessions: not sessions)
        tg.cancel_scope.cancel()
    print("stopped", flush=True)
    return 0


async def _stop_requested(signals: AsyncIterator[int]) -> int:
    """The first SIGINT/SIGTERM; for a worker of `--workers`, its supervisor's death is a SIGTERM."""
    from .supervisor import wait_supervisor_gone

    signum: int = signal.SIGTERM
    async with anyio.create_task_group() as tg:

        async def on_signal() -> None:
            nonlocal signum
            signum = await signals.__anext__()
            tg.cancel_scope.cancel()

        async def on_orphaned() -> None:
            await wait_supervisor_gone()
            logger.warning("the supervisor is gone: stopping as on SIGTERM")
            tg.cancel_scope.cancel()

        tg.start_soon(on_signal)
        tg.start_soon(on_orphaned)
    return signum


async def drain(bot: BotServer, deadline_s: float) -> None:
    """Admit no new call; let the running ones finish for up to `deadline_s`."""
    bot.server.hold("draining")
    logger.info("draining: %d running calls, up to %g s", len(bot.server.sessions), deadline_s)
    async with move_on_at(current_clock().now_ns() + round(deadline_s * NS_PER_S)):
        await bot.server.wait_sessions(lambda sessions: not sessions)


# --- one test call -------------------------------------------------------------------------------


@dataclass(slots=True)
class CallResult:
    heard: str
    said: str
    mouth_to_ear_ms: float
    reply: np.ndarray  # 48 kHz mono int16, from just before the reply's first audible sample
    record: TurnRecord | None


async def call_once(bot: BotServer, wav: Path, timeout_s: float) -> CallResult:
    """Serve, call through real WebRTC with the headless client, speak `wav`, hear the reply."""
    async with anyio.create_task_group() as tg:
        url = await tg.start(bot.serve)
        client_options = ClientOptions(ice=ice_for(bot.options.host), token=bot.options.token)
        async with HeadlessClient.connect(url, client_options) as client:
            await client.wait_for_event(READY_EVENT["type"], timeout_s=timeout_s)
            played = await client.play(wav)
            async with fail_at(client.clock.now_ns() + round(timeout_s * NS_PER_S), client.clock):
                onset = await client.wait_for_onset(after_ns=played.speech_end_ns, timeout_s=timeout_s)
                await client.wait_for_event("bot-stopped-speaking", timeout_s=timeout_s)
                # What was sent before the bot stopped is still on its way to the ear.
                await client.wait_for_silence(after_ns=client.clock.now_ns(), timeout_s=timeout_s)
            reply = client.heard(since_ns=onset - NS_PER_S // 10)
        async with fail_at(current_clock().now_ns() + 10 * NS_PER_S):
            await bot.server.wait_sessions(lambda sessions: not sessions)
        tg.cancel_scope.cancel()
    record = bot.records[0] if bot.records else None
    return CallResult(
        heard=record.heard if record else "",
        said=record.said if record else "",
        mouth_to_ear_ms=(onset - played.speech_end_ns) / 1e6,
        reply=reply,
        record=record,
    )


async def call_and_report(bot: BotServer) -> int:
    wav = bot.options.call
    assert wav is not None
    timed_out = False
    try:
        result = await call_once(bot, wav, bot.options.reply_timeout_s)
    except* TimeoutError:  # raised inside the call's task group, so it comes in a group
        timed_out = True
    if timed_out:
        print(f"no reply from the bot within {bot.options.reply_timeout_s:g} s", file=sys.stderr)
        return 1
    write_wav(bot.options.reply_out, result.reply, EAR_RATE)
    print(f"bot heard:    {result.heard or '(nothing)'}")
    print(f"bot answered: {result.said or '(no text)'}")
    print(f"mouth-to-ear: {result.mouth_to_ear_ms:.0f} ms (end of the spoken question -> first audible reply)")
    if result.record is not None:
        print(f"server side:  {result.record.breakdown()}")
    print(f"reply saved:  {bot.options.reply_out} ({len(result.reply) / EAR_RATE:.1f} s)", flush=True)
    return 0


# --- command line --------------------------------------------------------------------------------


def _bot_file(create_pipeline: PipelineFactory) -> tuple[Path, bool]:
    """The file that defines `create_pipeline` (what workers run), and whether it is `__main__`."""
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    try:
        source = inspect.getsourcefile(create_pipeline)
    except TypeError:  # a partial or a callable object: the script that called run_bot
        source = None
    path = Path(source or main_file or "")
    if not path.is_file():
        raise StartupError("--workers: cannot tell which bot file defines create_pipeline")
    return path, main_file is not None and Path(main_file).resolve() == path.resolve()


def run_bot(
    create_pipeline: PipelineFactory, argv: list[str] | None = None, route_installers: tuple[RouteInstaller, ...] = ()
) -> None:
    """The bot file's entry point: parse the options, serve or call, exit.

    `route_installers` mount more endpoints on the server's app (e.g. metrics).
    """
    options = parse_options(argv)
    configure_logging(options.log_level)
    if options.workers > 1 and options.call is None:
        from .supervisor import serve_workers

        try:
            sys.exit(serve_workers(*_bot_file(create_pipeline), sys.argv[1:] if argv is None else argv, options))
        except StartupError as exc:
            sys.exit(f"voxframe: {exc}")
    services = Services.from_env()
    print(services.describe(), flush=True)
    if options.call is not None:
        options.port = 0 if options.port == 7860 else options.port
    try:
        bot = BotServer(create_pipeline, services, options, route_installers)
    except StartupError as exc:
        sys.exit(f"voxframe: {exc}")
    try:
        code = anyio.run(call_and_report if options.call is not None else serve_until_signal, bot)
    except* OSError as group:
        # A busy or forbidden port: one line, not the task groups' nested tracebacks.
        first = first_error(group)
        if isinstance(first, TimeoutError):  # an OSError too, but not a port problem
            raise
        sys.exit(
            f"voxframe: cannot serve on {options.host}:{options.port}: {getattr(first, 'strerror', None) or first}"
        )
    sys.exit(code or 0)


__all__ = [
    "READY_EVENT",
    "BotServer",
    "BotSession",
    "CallResult",
    "PipelineFactory",
    "call_once",
    "run_bot",
]
