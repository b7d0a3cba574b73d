"""Pipecat's SmallWebRTC transport with an echo pipeline, served like voxframe's endpoint.

Runs inside Pipecat's own virtual environment (see benchmarks/peer.py), never imported into
voxframe's. POST /api/voice/offer {"sdp", "type"} -> {"sdp", "type", "session_id"}, one
pipeline per call, on 127.0.0.1 only (ICE host candidates are restricted to loopback and no
STUN server is configured). Prints "ready <port> <stats port>" once listening.

    python pipecat_echo_bot.py --port 0 [--stats-port 0] [--lean]

GET /stats and /lag?since=N answer as voxframe_echo_bot.py's do, for the capacity benchmark:
per call the input received (in 20 ms frames, counted by the echo processor as Pipecat delivers
audio), the server's monotonic time, and the event loop's lateness samples (the same 20 ms timer).
Pipecat counts no pacer underruns or dropped output: the callers' echo-content check sees those.

--lean turns off what an echo does not need (RTVI, turn tracking, idle timeout) and sends 20 ms
output chunks like voxframe's, so a ratio is not won by handicapping the peer; the default is
Pipecat as its users run it. Both run at 48 kHz in and out (no resampler), like voxframe's echo.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

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

MAX_LAG_SAMPLES = 1_000_000


class LoopLag:
    """How late a 20 ms timer fires (voxframe_echo_bot.py's LoopLag, on asyncio)."""

    def __init__(self) -> None:
        self.samples: list[float] = []

    async def run(self) -> None:
        period = 0.02
        deadline = time.monotonic()
        while True:
            deadline += period
            await asyncio.sleep(max(0.0, deadline - time.monotonic()))
            late_ms = (time.monotonic() - deadline) * 1000
            if len(self.samples) < MAX_LAG_SAMPLES:
                self.samples.append(late_ms)
            if late_ms > 200:
                deadline = time.monotonic()


class Echo(FrameProcessor):
    def __init__(self, received: dict[str, int], call_id: str) -> None:
        super().__init__()
        self._received = received
        self._call_id = call_id

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            self._received[self._call_id] += len(frame.audio) // (2 * frame.num_channels)
            out = OutputAudioRawFrame(audio=frame.audio, sample_rate=frame.sample_rate, num_channels=frame.num_channels)
            await self.push_frame(out)
        else:
            await self.push_frame(frame, direction)


async def run_call(connection: SmallWebRTCConnection, lean: bool, received: dict[str, int]) -> None:
    # Lean: 20 ms output chunks like voxframe's (Pipecat's default is 4 x 10 ms).
    chunks = {"audio_out_10ms_chunks": 2} if lean else {}
    transport = SmallWebRTCTransport(
        webrtc_connection=connection,
        params=TransportParams(audio_in_enabled=True, audio_out_enabled=True, **chunks),
    )
    received.setdefault(connection.pc_id, 0)
    pipeline = Pipeline([transport.input(), Echo(received, connection.pc_id), transport.output()])
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
    parser.add_argument("--stats-port", type=int, default=0)
    parser.add_argument("--lean", action="store_true")
    args = parser.parse_args()
    calls: set[asyncio.Task] = set()
    received: dict[str, int] = {}  # samples of input audio per call, at 48 kHz
    lag = LoopLag()

    async def offer(request: web.Request) -> web.Response:
        body = await request.json()
        connection = SmallWebRTCConnection(ice_servers=[])
        await connection.initialize(sdp=body["sdp"], type=body["type"])
        call = asyncio.create_task(run_call(connection, args.lean, received))
        calls.add(call)
        call.add_done_callback(calls.discard)
        answer = connection.get_answer()
        return web.json_response({"sdp": answer["sdp"], "type": answer["type"], "session_id": answer["pc_id"]})

    async def stats(request: web.Request) -> web.Response:
        sessions = {call_id: {"received": samples // 960} for call_id, samples in list(received.items())}
        return web.json_response({"now_s": time.monotonic(), "sessions": sessions, "lag_count": len(lag.samples)})

    async def lag_samples(request: web.Request) -> web.Response:
        return web.json_response(lag.samples[int(request.query.get("since", "0")) :])

    async def serve() -> None:
        app = web.Application()
        app.router.add_post("/api/voice/offer", offer)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", args.port)
        await site.start()
        stats_app = web.Application()
        stats_app.router.add_get("/stats", stats)
        stats_app.router.add_get("/lag", lag_samples)
        stats_runner = web.AppRunner(stats_app, access_log=None)
        await stats_runner.setup()
        await web.TCPSite(stats_runner, "127.0.0.1", args.stats_port).start()
        print(f"ready {runner.addresses[0][1]} {stats_runner.addresses[0][1]}", flush=True)
        await lag.run()  # until the process ends

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
