"""Pipecat's voice bot for the mouth-to-ear benchmark: runs in Pipecat's own venv, never imported.

The same bot as voxframe's on the simulated cloud stack, built the way a Pipecat user builds it:
SmallWebRTC transport, Silero VAD, Pipecat's own Deepgram, OpenAI and Cartesia services pointed
at the same fake servers, the universal context aggregators. `--config` picks how the turn ends,
each the way Pipecat's documentation configures it:

* `plain`: Silero `stop_secs=0.5` (voxframe's VAD_STOP_S) and the turn ends on the VAD stop once
  the transcript is in (`SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=0)`): no
  speculation, the STT finalizes and the LLM starts at 0.5 s, as voxframe with no pause;
* `early`: Silero `stop_secs=0.2` (the STT finalizes then) and
  `SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=0.3)` (the LLM starts at 0.5 s), as
  voxframe's 0.2 s pause without preemption;
* `shipped`: Pipecat's defaults: `VADParams()` (stop_secs=0.2) and `UserTurnStrategies()`, whose
  stop strategy in 1.14.0 is `TurnAnalyzerUserTurnStopStrategy(LocalSmartTurnAnalyzerV3())`
  (Smart Turn v3.2, the ONNX model in Pipecat's wheel, run on the CPU).

Deepgram's own endpointing is off in every configuration, as on voxframe's side: finals answer
the Finalize Pipecat sends on the VAD stop.

`--trace-out` writes the waterfall's points as JSONL, one line per point
(`{"vad_stop_ns", "point", "ns"}`, time.monotonic_ns, the caller's clock on this host) from an
observer (Pipecat's `BaseObserver`): VAD stop, turn end, final transcript, first LLM token, first
text to TTS (`TTSStartedFrame`), first TTS audio, first audio to the transport
(`BotStartedSpeakingFrame`), each the first after the turn's VAD stop.

Signalling matches voxframe's: `POST /api/voice/offer` with `{"sdp", "type"}` answers the same.
ICE is restricted to loopback and no STUN server is configured. Prints `READY <port>` once
serving; stops on SIGTERM/SIGINT.

    python pipecat_m2e_bot.py --port 0 --deepgram-url ws://... --openai-url http://.../v1 \
        --cartesia-url ws://... --config plain --trace-out points.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from typing import IO

import aioice.ice
from aiohttp import web

# Loopback only: the benchmark's traffic never leaves 127.0.0.1.
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]

from loguru import logger  # noqa: E402
from pipecat.audio.vad.silero import SileroVADAnalyzer  # noqa: E402
from pipecat.audio.vad.vad_analyzer import VADParams  # noqa: E402
from pipecat.frames.frames import (  # noqa: E402
    BotStartedSpeakingFrame,
    LLMTextFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    UserStoppedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed  # noqa: E402
from pipecat.pipeline.pipeline import Pipeline  # noqa: E402
from pipecat.pipeline.runner import PipelineRunner  # noqa: E402
from pipecat.pipeline.task import PipelineParams, PipelineTask  # noqa: E402
from pipecat.processors.aggregators.llm_context import LLMContext  # noqa: E402
from pipecat.processors.aggregators.llm_response_universal import (  # noqa: E402
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.services.cartesia.tts import CartesiaTTSService  # noqa: E402
from pipecat.services.deepgram.stt import DeepgramSTTService  # noqa: E402
from pipecat.services.openai.llm import OpenAILLMService  # noqa: E402
from pipecat.transports.base_transport import TransportParams  # noqa: E402
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection  # noqa: E402
from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport  # noqa: E402
from pipecat.turns.user_stop import SpeechTimeoutUserTurnStopStrategy  # noqa: E402
from pipecat.turns.user_turn_strategies import UserTurnStrategies  # noqa: E402

SYSTEM_PROMPT = "You are a helpful voice assistant. Answer in one or two short sentences."
CONFIGS = ("plain", "early", "shipped")
#: Two VAD stop frames closer than this are one stop (the VAD broadcasts each both ways).
DUPLICATE_NS = 50_000_000


class StagePoints(BaseObserver):
    """The waterfall's points of each turn, keyed by the turn's VAD stop, appended to a JSONL file.

    A point is the first of its kind after the VAD stop; the reply's later stages only after its
    first token, so a previous reply's tail never passes for this one's start.
    """

    def __init__(self, out: IO[str]) -> None:
        super().__init__(observe_every_push=False)
        self.out = out
        self.key: int | None = None
        self.seen: set[str] = set()

    def mark(self, point: str, ns: int) -> None:
        if self.key is None or point in self.seen:
            return
        self.seen.add(point)
        self.out.write(json.dumps({"vad_stop_ns": self.key, "point": point, "ns": ns}) + "\n")
        self.out.flush()

    async def on_push_frame(self, data: FramePushed) -> None:
        now, frame = time.monotonic_ns(), data.frame
        if isinstance(frame, VADUserStoppedSpeakingFrame):
            if self.key is not None and now - self.key < DUPLICATE_NS:
                return  # the same stop, broadcast upstream and downstream
            self.key, self.seen = now, set()
            self.mark("vad_stop", now)
            self.mark("speech_end", now - int(frame.stop_secs * 1e9))
        elif isinstance(frame, UserStoppedSpeakingFrame):
            self.mark("turn_end", now)
        elif isinstance(frame, TranscriptionFrame):
            self.mark("stt_final", now)
        elif isinstance(frame, LLMTextFrame):
            self.mark("llm_first_token", now)
        elif "llm_first_token" not in self.seen:
            return
        elif isinstance(frame, TTSStartedFrame):
            self.mark("tts_first_text", now)
        elif isinstance(frame, TTSAudioRawFrame):
            self.mark("tts_first_audio", now)
        elif isinstance(frame, BotStartedSpeakingFrame) and "tts_first_audio" in self.seen:
            self.mark("first_audio_out", now)


def turn_config(config: str) -> tuple[SileroVADAnalyzer, UserTurnStrategies]:
    """The VAD and the user turn strategies of a `--config` (see the module's docstring)."""
    if config == "plain":
        stop = [SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=0.0)]
        return SileroVADAnalyzer(params=VADParams(stop_secs=0.5)), UserTurnStrategies(stop=stop)
    if config == "early":
        stop = [SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=0.3)]
        return SileroVADAnalyzer(params=VADParams(stop_secs=0.2)), UserTurnStrategies(stop=stop)
    return SileroVADAnalyzer(), UserTurnStrategies()


def build_task(connection: SmallWebRTCConnection, args: argparse.Namespace, trace: IO[str] | None) -> PipelineTask:
    transport = SmallWebRTCTransport(
        webrtc_connection=connection,
        params=TransportParams(audio_in_enabled=True, audio_out_enabled=True),
    )
    # Deepgram's own endpointing off, as on voxframe's side: the final answers the Finalize sent on
    # the VAD stop, so both sides wait for the same configured Finalize -> final latency.
    stt = DeepgramSTTService(
        api_key="fake-deepgram-key",
        base_url=args.deepgram_url,
        settings=DeepgramSTTService.Settings(endpointing=False),
    )
    # The model and the system prompt in the service's settings, as Pipecat 1.14 documents (a
    # system message in the context is deprecated there).
    llm = OpenAILLMService(
        api_key="fake-openai-key",
        base_url=args.openai_url,
        settings=OpenAILLMService.Settings(model="gpt-4o", system_instruction=SYSTEM_PROMPT),
    )
    tts = CartesiaTTSService(
        api_key="fake-cartesia-key",
        url=f"{args.cartesia_url}/tts/websocket",
        settings=CartesiaTTSService.Settings(voice="benchmark-voice"),
    )
    vad, strategies = turn_config(args.config)
    context = LLMContext()
    aggregators = LLMContextAggregatorPair(
        context, user_params=LLMUserAggregatorParams(vad_analyzer=vad, user_turn_strategies=strategies)
    )
    pipeline = Pipeline(
        [transport.input(), stt, aggregators.user(), llm, tts, transport.output(), aggregators.assistant()]
    )
    task = PipelineTask(
        pipeline,
        params=PipelineParams(audio_in_sample_rate=16_000, audio_out_sample_rate=24_000),
        idle_timeout_secs=None,
        observers=[StagePoints(trace)] if trace is not None else [],
    )

    @transport.event_handler("on_client_disconnected")
    async def on_client_disconnected(transport, client):  # type: ignore[no-untyped-def]
        await task.cancel()

    return task


async def serve(args: argparse.Namespace) -> None:
    tasks: set[asyncio.Task[None]] = set()
    # Opened once, before serving; the observer appends a line per point (flushed).
    trace = open(args.trace_out, "a", encoding="utf-8") if args.trace_out else None  # noqa: SIM115, ASYNC230

    async def offer(request: web.Request) -> web.Response:
        body = await request.json()
        connection = SmallWebRTCConnection(ice_servers=[])
        await connection.initialize(sdp=body["sdp"], type=body["type"])
        bot = build_task(connection, args, trace)
        runner = PipelineRunner(handle_sigint=False)
        job = asyncio.create_task(runner.run(bot))
        tasks.add(job)
        job.add_done_callback(tasks.discard)
        answer = connection.get_answer()
        return web.json_response({"sdp": answer["sdp"], "type": answer["type"]})

    app = web.Application()
    app.router.add_post("/api/voice/offer", offer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"READY {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for job in list(tasks):
        job.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await runner.cleanup()
    if trace is not None:
        trace.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--deepgram-url", required=True)
    parser.add_argument("--openai-url", required=True)
    parser.add_argument("--cartesia-url", required=True)
    parser.add_argument("--config", choices=CONFIGS, default="plain", help="how the user turn ends")
    parser.add_argument("--trace-out", default=None, help="JSONL of the waterfall's points per turn")
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level=os.environ.get("PIPECAT_LOG_LEVEL", "WARNING"))
    try:  # load the models once (Smart Turn for `shipped`): one that cannot run here says so and exits
        turn_config(args.config)
    except Exception as exc:
        print(f"CANNOT RUN --config {args.config}: {type(exc).__name__}: {exc}", flush=True)
        sys.exit(3)
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
