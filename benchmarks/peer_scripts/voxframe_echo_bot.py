"""voxframe's WebRTC transport with an echo pipeline: the counterpart of pipecat_echo_bot.py.

    python voxframe_echo_bot.py --port 0 [--aiortc-prefetch N] [--reorder-window N]

Prints "ready <port> <stats port>" once listening. GET /stats returns, per session, what the
receive path and the playout counted (frames received and dropped, pacer underruns, output
chunks the track dropped), the server's own monotonic time (`now_s`: the capacity benchmark
divides by the server's elapsed time, not its callers'), and how many loop-lag samples exist;
GET /lag?since=N returns the samples from the N-th on, so a measuring window's p99 covers every
sample in it.
"""

from __future__ import annotations

import argparse
import time

import anyio
from aiohttp import web

from voxframe.pipeline import (
    Pipeline,
    PipelineParams,
    PipelineTask,
)
from voxframe.processors.echo import AudioEcho
from voxframe.transports.webrtc import IceOptions, ReceiveOptions, ServerOptions, Session, SessionOptions, WebRTCServer


async def echo_task(session: Session) -> PipelineTask:
    # 48 kHz in and out, the Opus track's rate: no resampler on the echo's path (Pipecat's alike).
    params = PipelineParams(idle_timeout_s=None, audio_in_sample_rate=48_000, audio_out_sample_rate=48_000)
    return PipelineTask(Pipeline([session.input, AudioEcho(), session.output]), params)


#: Loop-lag samples kept (50 a second: over five hours); a benchmark's server lives one trial.
MAX_LAG_SAMPLES = 1_000_000


class LoopLag:
    """How late a 20 ms timer fires: the event loop's backlog, seen from inside. Every sample is
    kept (up to MAX_LAG_SAMPLES), so a window's percentile is over the whole window."""

    def __init__(self) -> None:
        self.max_ms = 0.0
        self.samples: list[float] = []

    async def run(self) -> None:
        period = 0.02
        deadline = time.monotonic()
        while True:
            deadline += period
            await anyio.sleep(max(0.0, deadline - time.monotonic()))
            late_ms = (time.monotonic() - deadline) * 1000
            if len(self.samples) < MAX_LAG_SAMPLES:
                self.samples.append(late_ms)
            self.max_ms = max(self.max_ms, late_ms)
            if late_ms > 200:
                deadline = time.monotonic()


def stats(server: WebRTCServer, lag: LoopLag) -> dict:
    sessions = {}
    for sid, session in list(server.sessions.items()):
        sessions[sid] = {
            "state": session.state,
            "received": session.input.received_frames,
            "dropped": session.input.dropped_frames,
            "underruns": session.output.underruns,
            "track_dropped": session.output.track.dropped,
        }
    now_s = time.monotonic()
    return {"now_s": now_s, "sessions": sessions, "loop_lag_max_ms": lag.max_ms, "lag_count": len(lag.samples)}


async def main(args: argparse.Namespace) -> None:
    receive = ReceiveOptions(reorder_window=args.reorder_window, aiortc_prefetch=args.aiortc_prefetch)
    ice = IceOptions(host_addresses=("127.0.0.1",))
    # The load starts its calls at once, all from 127.0.0.1: all of them connect.
    options = ServerOptions(
        port=args.port, max_sessions=1000, max_pending_sessions=1000, max_offers_per_minute=None,
        session=SessionOptions(ice=ice, receive=receive),
    )  # fmt: skip
    server = WebRTCServer(echo_task, options)
    lag = LoopLag()

    async def stats_handler(request: web.Request) -> web.Response:
        return web.json_response(stats(server, lag))

    async def lag_handler(request: web.Request) -> web.Response:
        return web.json_response(lag.samples[int(request.query.get("since", "0")) :])

    app_runner = None
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve)
        stats_app = web.Application()
        stats_app.router.add_get("/stats", stats_handler)
        stats_app.router.add_get("/lag", lag_handler)
        app_runner = web.AppRunner(stats_app, access_log=None)
        await app_runner.setup()
        await web.TCPSite(app_runner, "127.0.0.1", args.stats_port).start()
        tg.start_soon(lag.run)
        print(f"ready {server.port} {app_runner.addresses[0][1]}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--stats-port", type=int, default=0)
    parser.add_argument("--reorder-window", type=int, default=None, help="pin the window (default: adaptive)")
    parser.add_argument("--aiortc-prefetch", type=int, default=None)
    anyio.run(main, parser.parse_args())
