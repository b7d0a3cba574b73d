"""Pipecat's SmallWebRTC transport with an echo pipeline, served like voxframe's endpoint.

Runs inside Pipecat's own virtual environment (see benchmarks/peer.py), never imported into
voxframe's. POST /api/voice/offer {"sdp", "type"} -> {"sdp", "type", "session_id"}, one
pipeline per call, on 127.0.0.1 only (ICE host candidates are restricted to loopback and no
STUN server is configured). Prints "ready <port>" once listening.

    python pipecat_echo_bot.py --port 0 [--lean]

--lean turns off what an echo does not need (RTVI, turn tracking, idle timeout) and sends 20 ms
output chunks like voxframe's, so a ratio is not won by handicapping the peer; the default is
Pipecat as its users run it. Both run at 48 kHz in and out (no resampler), like voxframe's echo.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import aioice.ice

aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]  # loopback only

from aiohttp import web  # noqa: E402
from pipecat.frames.frames import Frame, InputAudioRawFrame, OutputAudioRawFrame  # noqa: E402
from pipecat.pipeline.pipeline import Pipeline  # noqa: E402
from pipecat.pipeline.runner import PipelineRunner  # noqa: E402
from pipecat.pipeline.task import PipelineParams, PipelineTask  # noqa: E402
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor  # noqa: E402
from pipecat.transports.base_transport import TransportParams  # noqa: E402
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection  # noqa: E402
from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport  # noqa: E402


class Echo(FrameProcessor):
    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            out = OutputAudioRawFrame(audio=frame.audio, sample_rate=frame.sample_rate, num_channels=frame.num_channels)
            await self.push_frame(out)
        else:
            await self.push_frame(frame, direction)


async def run_call(connection: SmallWebRTCConnection, lean: bool) -> None:
    # Lean: 20 ms output chunks like voxframe's (Pipecat's default is 4 x 10 ms).
    chunks = {"audio_out_10ms_chunks": 2} if lean else {}
    transport = SmallWebRTCTransport(
        webrtc_connection=connection,
        params=TransportParams(audio_in_enabled=True, audio_out_enabled=True, **chunks),
    )
    pipeline = Pipeline([transport.input(), Echo(), transport.output()])
    # 48 kHz in and out, the Opus track's rate, as on voxframe's side: no resampler on the path.
    params = PipelineParams(audio_in_sample_rate=48_000, audio_out_sample_rate=48_000)
    if lean:
        task = PipelineTask(
            pipeline, params=params, enable_rtvi=False, enable_turn_tracking=False, idle_timeout_secs=None
        )
    else:
        task = PipelineTask(pipeline, params=params)

    @transport.event_handler("on_client_disconnected")
    async def on_client_disconnected(transport, client) -> None:
        await task.cancel()

    await PipelineRunner(handle_sigint=False).run(task)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--lean", action="store_true")
    args = parser.parse_args()
    calls: set[asyncio.Task] = set()

    async def offer(request: web.Request) -> web.Response:
        body = await request.json()
        connection = SmallWebRTCConnection(ice_servers=[])
        await connection.initialize(sdp=body["sdp"], type=body["type"])
        call = asyncio.create_task(run_call(connection, args.lean))
        calls.add(call)
        call.add_done_callback(calls.discard)
        answer = connection.get_answer()
        return web.json_response({"sdp": answer["sdp"], "type": answer["type"], "session_id": answer["pc_id"]})

    async def serve() -> None:
        app = web.Application()
        app.router.add_post("/api/voice/offer", offer)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", args.port)
        await site.start()
        print(f"ready {runner.addresses[0][1]}", flush=True)
        await asyncio.Event().wait()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
