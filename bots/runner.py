"""The shared runner: any bot file gets a server, a test call and a console with two lines.

    if __name__ == "__main__":
        from runner import run_bot
        run_bot(create_pipeline)

`create_pipeline(bot: BotSession) -> FrameProcessor` builds one caller's pipeline from
`bot.input`, `bot.output` (the WebRTC ends) and `bot.services` (STT/LLM/TTS chosen from the
environment, see `services.py`). Options:

    python bots/example.py                      serve the browser client on http://127.0.0.1:7860
    python bots/example.py --host 0.0.0.0 --port 8080
    python bots/example.py --call question.wav  call the bot once through real WebRTC and exit
        [--reply-out reply.wav]                 where to save what the bot answered
    --trace-out turns.jsonl                     append every turn's record (benchmarks read it)

Each caller gets the data channel event `{"type": "bot_ready"}` once its pipeline is running.
While serving, every reply prints one line: what the bot heard, what it said, and where the
time went (tracer points after the end of the user's speech). Ctrl-C ends every session and
stops cleanly.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import signal
import sys
import time
import wave
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import anyio
import numpy as np
from services import Services
from turn_reporter import TurnRecord, TurnReporter

from voxframe.pipeline import FrameProcessor, PipelineParams, PipelineTask, TransportMessageFrame
from voxframe.pipeline.clock import NS_PER_S
from voxframe.transports.webrtc import (
    ClientOptions,
    HeadlessClient,
    IceOptions,
    ServerOptions,
    Session,
    SessionOptions,
    WebRTCInputTransport,
    WebRTCOutputTransport,
    WebRTCServer,
)

EAR_RATE = 48_000
#: The client event that says the caller's pipeline is running.
READY_EVENT = {"type": "bot_ready"}


@dataclass(slots=True)
class BotSession:
    """What a bot definition gets for each caller."""

    session: Session
    services: Services

    @property
    def input(self) -> WebRTCInputTransport:
        return self.session.input

    @property
    def output(self) -> WebRTCOutputTransport:
        return self.session.output


PipelineFactory = Callable[[BotSession], FrameProcessor]


@dataclass(slots=True)
class RunnerOptions:
    host: str = "127.0.0.1"
    port: int = 7860
    call: Path | None = None
    reply_out: Path = Path("reply.wav")
    trace_out: Path | None = None
    #: Longest wait for the bot's reply in `--call` mode.
    reply_timeout_s: float = 60.0


def ice_for(host: str) -> IceOptions:
    """Loopback serving keeps every ICE candidate on 127.0.0.1; otherwise any interface."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    return IceOptions(host_addresses=("127.0.0.1",) if loopback else None)


class BotServer:
    """A `WebRTCServer` whose sessions run `create_pipeline`, each with a `TurnReporter`."""

    def __init__(self, create_pipeline: PipelineFactory, services: Services, options: RunnerOptions) -> None:
        self.create_pipeline = create_pipeline
        self.services = services
        self.options = options
        #: The latest turns of every session (bounded: a server runs for days).
        self.records: deque[TurnRecord] = deque(maxlen=1000)
        self._trace: TextIO | None = None
        session = SessionOptions(ice=ice_for(options.host))
        self.server = WebRTCServer(
            self._make_task, ServerOptions(host=options.host, port=options.port, session=session)
        )

    async def _make_task(self, session: Session) -> PipelineTask:
        pipeline = self.create_pipeline(BotSession(session, self.services))
        reporter = TurnReporter(self._on_turn)
        task = PipelineTask(pipeline, PipelineParams(observers=[reporter]))
        reporter.tracer = task.tracer
        # Goes out once the pipeline has started: the caller may speak now (audio sent before
        # that finds no VAD listening and is dropped).
        await task.queue_frame(TransportMessageFrame(message=READY_EVENT))
        return task

    def _on_turn(self, record: TurnRecord) -> None:
        self.records.append(record)
        print(record.line(), flush=True)
        if self._trace is not None:
            self._trace.write(json.dumps(record.to_json()) + "\n")
            self._trace.flush()

    async def serve(self, *, task_status: anyio.abc.TaskStatus[str] = anyio.TASK_STATUS_IGNORED) -> None:
        """Load the models, then serve until cancelled; `tg.start` returns the URL."""
        if self.services.stt_choice == "whisper" or self.services.tts_choice == "piper":
            print("loading embedded models ...", flush=True)
        await anyio.to_thread.run_sync(self.services.warm_up)
        trace_path = self.options.trace_out
        self._trace = trace_path.open("a", encoding="utf-8") if trace_path is not None else None
        try:
            async with anyio.create_task_group() as tg:
                url = await tg.start(self.server.serve)
                task_status.started(url)
        finally:
            if self._trace is not None:
                self._trace.close()


# --- serving -------------------------------------------------------------------------------------


async def serve_until_signal(bot: BotServer) -> None:
    async with anyio.create_task_group() as tg:
        url = await tg.start(bot.serve)
        print(f"voxframe bot ready: open {url} in a browser (Ctrl-C stops)", flush=True)
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                break
        count = len(bot.server.sessions)
        print(f"stopping: ending {count} session{'s' * (count != 1)}", flush=True)
        tg.cancel_scope.cancel()
    print("stopped", flush=True)


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
        client_options = ClientOptions(ice=ice_for(bot.options.host))
        async with HeadlessClient.connect(url, client_options) as client:
            await client.wait_for_event(READY_EVENT["type"], timeout_s=timeout_s)
            played = await client.play(wav)
            with anyio.fail_after(timeout_s):
                onset = await client.wait_for_onset(after_ns=played.speech_end_ns, timeout_s=timeout_s)
                await client.wait_for_event("bot_stopped_speaking", timeout_s=timeout_s)
                # What was sent before the bot stopped is still on its way to the ear.
                await client.wait_for_silence(after_ns=time.monotonic_ns(), timeout_s=timeout_s)
            reply = client.heard(since_ns=onset - NS_PER_S // 10)
        with anyio.fail_after(10):
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


def write_wav(path: Path, pcm: np.ndarray, rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.asarray(pcm, dtype=np.int16).tobytes())


async def call_and_report(bot: BotServer) -> int:
    wav = bot.options.call
    assert wav is not None
    try:
        result = await call_once(bot, wav, bot.options.reply_timeout_s)
    except TimeoutError:
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


def parse_options(argv: list[str] | None = None) -> RunnerOptions:
    parser = argparse.ArgumentParser(description="Run a voxframe bot: serve it, or call it once.")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="port to serve on (default 7860; 0: any free)")
    parser.add_argument("--call", type=Path, metavar="FILE.wav", help="call the bot once, speak this file, exit")
    parser.add_argument("--reply-out", type=Path, default=Path("reply.wav"), help="where --call saves the reply")
    parser.add_argument("--trace-out", type=Path, help="append each turn's record as a JSON line to this file")
    args = parser.parse_args(argv)
    if args.call is not None and not args.call.is_file():
        parser.error(f"--call: no such file: {args.call}")
    return RunnerOptions(
        host=args.host, port=args.port, call=args.call, reply_out=args.reply_out, trace_out=args.trace_out
    )


def run_bot(create_pipeline: PipelineFactory, argv: list[str] | None = None) -> None:
    """The bot file's entry point: parse the options, serve or call, exit."""
    options = parse_options(argv)
    services = Services.from_env()
    print(services.describe(), flush=True)
    if options.call is not None:
        options.port = 0 if options.port == 7860 else options.port
        bot = BotServer(create_pipeline, services, options)
        sys.exit(anyio.run(call_and_report, bot))
    anyio.run(serve_until_signal, BotServer(create_pipeline, services, options))


__all__ = [
    "READY_EVENT",
    "BotServer",
    "BotSession",
    "CallResult",
    "PipelineFactory",
    "RunnerOptions",
    "call_once",
    "run_bot",
]
