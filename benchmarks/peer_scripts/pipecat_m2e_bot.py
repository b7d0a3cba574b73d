"""Pipecat's voice bot for the mouth-to-ear benchmark: runs in Pipecat's own venv, never imported.

The same bot as voxframe's on the simulated cloud stack, built the way a Pipecat user builds it:
SmallWebRTC transport, Silero VAD (same stop time as voxframe's), Pipecat's own Deepgram, OpenAI
and Cartesia services pointed at the same fake servers, the universal context aggregators.

Turn ending: Pipecat's default stop strategy runs the Smart Turn model, which voxframe has no
counterpart of; to compare like with like it ends the turn on the VAD stop once the transcript is
in (`SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=0)`), Pipecat's leanest setting.

Signalling matches voxframe's: `POST /api/voice/offer` with `{"sdp", "type"}` answers the same.
ICE is restricted to loopback and no STUN server is configured. Prints `READY <port>` once
serving; stops on SIGTERM/SIGINT.

    python pipecat_m2e_bot.py --port 0 --deepgram-url ws://... --openai-url http://.../v1 \
        --cartesia-url ws://... --vad-stop-s 0.6
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

import aioice.ice
from aiohttp import web

# Loopback only: the benchmark's traffic never leaves 127.0.0.1.
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]

from loguru import logger  # noqa: E402
from pipecat.audio.vad.silero import SileroVADAnalyzer  # noqa: E402
from pipecat.audio.vad.vad_analyzer import VADParams  # noqa: E402
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


def build_task(connection: SmallWebRTCConnection, args: argparse.Namespace) -> PipelineTask:
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
    llm = OpenAILLMService(api_key="fake-openai-key", base_url=args.openai_url, model="gpt-4o")
    tts = CartesiaTTSService(
        api_key="fake-cartesia-key",
        url=f"{args.cartesia_url}/tts/websocket",
        settings=CartesiaTTSService.Settings(voice="benchmark-voice"),
    )
    vad = SileroVADAnalyzer(params=VADParams(stop_secs=args.vad_stop_s))
    strategies = UserTurnStrategies(stop=[SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=0.0)])
    context = LLMContext([{"role": "system", "content": SYSTEM_PROMPT}])
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
    )

    @transport.event_handler("on_client_disconnected")
    async def on_client_disconnected(transport, client):  # type: ignore[no-untyped-def]
        await task.cancel()

    return task


async def serve(args: argparse.Namespace) -> None:
    tasks: set[asyncio.Task[None]] = set()

    async def offer(request: web.Request) -> web.Response:
        body = await request.json()
        connection = SmallWebRTCConnection(ice_servers=[])
        await connection.initialize(sdp=body["sdp"], type=body["type"])
        bot = build_task(connection, args)
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--deepgram-url", required=True)
    parser.add_argument("--openai-url", required=True)
    parser.add_argument("--cartesia-url", required=True)
    parser.add_argument("--vad-stop-s", type=float, required=True)
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level=os.environ.get("PIPECAT_LOG_LEVEL", "WARNING"))
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
