"""An echo bot that reports its own footprint: the server the soak benchmark and the leak test call.

    python soak_server.py [--media-timeout 2]

Prints "ready <signalling port> <control port>" once listening. On the control port:

* `GET /footprint` (`?collect=1`: after a full cycle collection) counts what this process holds:
  live asyncio tasks, OS threads (FFmpeg's codec workers included: `/proc/self/task`), open file
  descriptors, UDP sockets (descriptors whose inode is in `/proc/net/udp`/`udp6`), peer
  connections in memory, sessions, RSS, and how many sessions have started;
* `POST /end?session=ID`: the bot ends that call itself (its pipeline gets an EndFrame, as when a
  bot says goodbye and hangs up).

The server runs in a process of its own so the counts are its alone: the callers' peer
connections, codec threads and sockets live in other processes and cannot hide a leak or fake one.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
from pathlib import Path

import anyio
from aiohttp import web
from aiortc import RTCPeerConnection

from voxframe.pipeline import EndFrame, Pipeline, PipelineParams, PipelineTask
from voxframe.processors.echo import AudioEcho
from voxframe.transports.webrtc import IceOptions, ServerOptions, Session, SessionOptions, WebRTCServer


def udp_inodes() -> set[str]:
    """Inodes of every UDP socket in this network namespace."""
    inodes: set[str] = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        inodes.update(line.split()[9] for line in lines if len(line.split()) > 9)
    return inodes


def descriptors() -> tuple[int, int]:
    """Open file descriptors of this process, and how many of them are UDP sockets."""
    udp = udp_inodes()
    fds = udp_fds = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile (the listing's own descriptor)
            continue
        fds += 1
        if target.startswith("socket:[") and target[8:-1] in udp:
            udp_fds += 1
    return fds, udp_fds


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def footprint(server: WebRTCServer, collect: bool) -> dict[str, float]:
    if collect:
        gc.collect()
    fds, udp = descriptors()
    return {
        "tasks": sum(1 for task in asyncio.all_tasks() if not task.done()),
        "threads": len(os.listdir("/proc/self/task")),
        "fds": fds,
        "udp_sockets": udp,
        "peer_connections": sum(1 for o in gc.get_objects() if issubclass(type(o), RTCPeerConnection)),
        "sessions": len(server.sessions),
        "rss_mb": round(rss_mb(), 2),
        "started": server.sessions_started,
    }


async def main(args: argparse.Namespace) -> None:
    tasks: dict[str, PipelineTask] = {}

    async def echo_task(session: Session) -> PipelineTask:
        task = PipelineTask(Pipeline([session.input, AudioEcho(), session.output]), PipelineParams(idle_timeout_s=None))
        tasks[session.id] = task
        return task

    def forget(session: object, duration_s: float) -> None:
        tasks.pop(getattr(session, "id", ""), None)

    ice = IceOptions(host_addresses=("127.0.0.1",))
    options = ServerOptions(
        port=args.port, max_sessions=1000, max_pending_sessions=1000, max_offers_per_minute=None,
        session=SessionOptions(ice=ice, media_timeout_s=args.media_timeout), session_end_listeners=[forget],
    )  # fmt: skip
    server = WebRTCServer(echo_task, options)

    async def footprint_handler(request: web.Request) -> web.Response:
        return web.json_response(footprint(server, request.query.get("collect") == "1"))

    async def end_handler(request: web.Request) -> web.Response:
        task = tasks.get(request.query.get("session", ""))
        if task is None:
            return web.json_response({"ended": False}, status=404)
        await task.queue_frame(EndFrame())
        return web.json_response({"ended": True})

    async with anyio.create_task_group() as tg:
        await tg.start(server.serve)
        control = web.Application()
        control.router.add_get("/footprint", footprint_handler)
        control.router.add_post("/end", end_handler)
        runner = web.AppRunner(control, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        print(f"ready {server.port} {runner.addresses[0][1]}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--media-timeout", type=float, default=5.0, help="seconds without media: the caller is gone")
    anyio.run(main, parser.parse_args())
