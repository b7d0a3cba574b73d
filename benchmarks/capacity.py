"""Session capacity: concurrent real-time echo calls one voxframe server process sustains.

The server (benchmarks/peer_scripts/voxframe_echo_bot.py: WebRTC in, echo, WebRTC out, with the
full Opus decode/resample/pace/encode path) runs pinned to one core. Load comes from light
callers in other processes, pinned to the other cores: they send pre-encoded Opus packets and
only count what comes back (no codec work), so they cost less than the server they load.

A load level "holds" when, over the measuring window (30 s by default), every session's input
received >= 97% of real time (50 frames/s), no frame was dropped from a backlog, the callers
got >= 97% of the echo packets back, and the server's event loop stayed responsive (p99 timer
lateness < 40 ms). The benchmark searches for the largest load that holds with one process;
then, if the machine has cores to spare for callers, runs one server process per core at that
load each and checks the total holds too.

    python3 dev.py bench capacity [--seconds 30] [--start 12] [--max 64] [--per-process N]
    (python3 benchmarks/capacity.py --caller URL N SECONDS runs one caller process)
"""

from __future__ import annotations

import argparse
import fractions
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import av
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from anyio.streams.text import TextReceiveStream

from voxframe.transports.webrtc import IceOptions, ReceiveOptions, gather_on
from voxframe.transports.webrtc._receive import ReorderStage, install_receive_path

HERE = Path(__file__).resolve().parent
LOOPBACK = ("127.0.0.1",)
FRAMES_PER_S = 50
HOLD_SHARE = 0.97
MAX_LOOP_LAG_MS = 40.0
#: A light caller process handles this many calls before another one (on another core) is used.
CALLS_PER_CALLER = 24


# --- the light caller ----------------------------------------------------------------------------------


def encoded_tone() -> list[av.Packet]:
    """One second of a 440 Hz tone as 50 Opus packets, encoded once and replayed."""
    codec = av.CodecContext.create("libopus", "w")
    codec.bit_rate = 32_000
    codec.format = "s16"
    codec.layout = "stereo"
    codec.sample_rate = 48_000
    codec.time_base = fractions.Fraction(1, 48_000)
    t = np.arange(48_000) / 48_000
    stereo = np.repeat(np.round(0.3 * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16), 2).reshape(1, -1)
    packets: list[av.Packet] = []
    for i in range(FRAMES_PER_S):
        frame = av.AudioFrame.from_ndarray(stereo[:, i * 1920 : (i + 1) * 1920].copy(), format="s16", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = 48_000, i * 960, fractions.Fraction(1, 48_000)
        packets += codec.encode(frame)
    return packets


class EncodedMic(MediaStreamTrack):
    """A microphone that sends pre-encoded packets, one per 20 ms, paced on the monotonic clock."""

    kind = "audio"

    def __init__(self, packets: list[av.Packet]) -> None:
        super().__init__()
        self._packets = packets
        self._count = 0
        self._start = time.monotonic()

    async def recv(self) -> av.Packet:
        due = self._start + self._count / FRAMES_PER_S
        await anyio.sleep(max(0.0, due - time.monotonic()))
        source = self._packets[self._count % len(self._packets)]
        packet = av.Packet(bytes(source))
        packet.pts, packet.time_base = self._count * 960, fractions.Fraction(1, 48_000)
        self._count += 1
        return packet


@dataclass(slots=True)
class Call:
    pc: RTCPeerConnection
    stage: ReorderStage


async def start_call(url: str, packets: list[av.Packet], http: aiohttp.ClientSession) -> Call:
    pc = RTCPeerConnection(IceOptions().rtc_configuration())
    transceiver = pc.addTransceiver(EncodedMic(packets), direction="sendrecv")
    stage = install_receive_path(transceiver.receiver, ReceiveOptions())
    transceiver.receiver._enabled = False  # count what arrives, never decode it
    with gather_on(LOOPBACK):
        await pc.setLocalDescription(await pc.createOffer())
    async with http.post(url + "/api/voice/offer", json={"sdp": pc.localDescription.sdp, "type": "offer"}) as reply:
        answer = await reply.json()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
    return Call(pc, stage)


async def run_caller(url: str, calls: int, seconds: float) -> None:
    """Start `calls` calls, report packets received over `seconds` (after a line on stdin),
    hang up after another line."""
    packets = encoded_tone()
    async with aiohttp.ClientSession() as http:
        started = [await start_call(url, packets, http) for _ in range(calls)]
        print(json.dumps({"type": "ready"}), flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)  # wait for the window to open
        before = [c.stage.stats.released for c in started]
        t0 = time.monotonic()
        await anyio.sleep(seconds)
        elapsed = time.monotonic() - t0
        received = [c.stage.stats.released - b for c, b in zip(started, before, strict=True)]
        print(json.dumps({"type": "result", "received": received, "elapsed": elapsed}), flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)  # hang up only once the server was read
        for call in started:
            await call.pc.close()


# --- the orchestration ------------------------------------------------------------------------------------


def pinned(command: list[str], cores: list[int]) -> list[str]:
    if shutil.which("taskset") and cores:
        return ["taskset", "-c", ",".join(map(str, cores)), *command]
    return command


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def first_line(process: anyio.abc.Process) -> str:
    assert process.stdout is not None
    text = ""
    async for piece in TextReceiveStream(process.stdout):
        text += piece
        if "\n" in text:
            return text.split("\n", 1)[0]
    raise RuntimeError(f"process ended before printing a line: {text!r}")


@asynccontextmanager
async def servers(cores: list[int]) -> AsyncIterator[list[tuple[anyio.abc.Process, str, str]]]:
    """One echo server process pinned to each core; yields (process, url, stats url)."""
    async with AsyncExitStack() as stack:
        started = []
        for core in cores:
            command = pinned([sys.executable, str(HERE / "peer_scripts" / "voxframe_echo_bot.py")], [core])
            process = await stack.enter_async_context(await anyio.open_process(command, stderr=subprocess.DEVNULL))
            stack.push_async_callback(_stop, process)
            with anyio.fail_after(60):
                _, port, stats_port = (await first_line(process)).split()
            started.append((process, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{stats_port}/stats"))
        yield started


async def _stop(process: anyio.abc.Process) -> None:
    process.terminate()
    with anyio.move_on_after(10):
        await process.wait()
    if process.returncode is None:
        process.kill()


@dataclass(slots=True)
class Outcome:
    processes: int
    sessions: int
    holds: bool
    input_share: float
    echo_share: float
    dropped: int
    loop_lag_p99_ms: float
    cpu_per_session_pct: float
    caller_cpu_pct: float
    why: str

    def row(self) -> str:
        verdict = "holds" if self.holds else f"fails ({self.why})"
        return (
            f"{self.processes:>5} {self.sessions:>9} {100 * self.input_share:>8.1f}% {100 * self.echo_share:>8.1f}% "
            f"{self.dropped:>8} {self.loop_lag_p99_ms:>9.1f} {self.cpu_per_session_pct:>8.2f}% "
            f"{self.caller_cpu_pct:>9.1f}%  {verdict}"
        )


def caller_plan(
    started: list[tuple[anyio.abc.Process, str, str]], per_process: int, caller_cores: list[int]
) -> list[tuple[str, int, int]]:
    """(server url, core, calls) per caller process: each server's calls spread over its share
    of the caller cores, at most `CALLS_PER_CALLER` calls per caller process."""
    share = max(1, len(caller_cores) // len(started))
    plan = []
    for index, (_, url, _) in enumerate(started):
        cores = [caller_cores[(index * share + i) % len(caller_cores)] for i in range(share)]
        processes = min(len(cores), max(1, -(-per_process // CALLS_PER_CALLER)))
        for i in range(processes):
            calls = per_process // processes + (1 if i < per_process % processes else 0)
            plan.append((url, cores[i], calls))
    return plan


async def trial(per_process: int, server_cores: list[int], caller_cores: list[int], seconds: float) -> Outcome:
    total = per_process * len(server_cores)
    async with servers(server_cores) as started, AsyncExitStack() as stack:
        callers = []
        for url, core, calls in caller_plan(started, per_process, caller_cores):
            command = pinned([sys.executable, __file__, "--caller", url, str(calls), str(seconds)], [core])
            process = await stack.enter_async_context(await anyio.open_process(command, stderr=subprocess.DEVNULL))
            stack.push_async_callback(_stop, process)
            callers.append(process)
        with anyio.fail_after(60 + 2 * total):
            for process in callers:
                assert json.loads(await first_line(process))["type"] == "ready"
        await anyio.sleep(3.0)  # settle: every call connected and streaming
        async with aiohttp.ClientSession() as http:
            before = [await _stats(http, stats) for _, _, stats in started]
            cpu_before = [cpu_seconds(p.pid) for p, _, _ in started]
            callers_before = sum(cpu_seconds(p.pid) for p in callers)
            for process in callers:
                assert process.stdin is not None
                await process.stdin.send(b"go\n")
            results = []
            with anyio.fail_after(seconds + 60):
                for process in callers:
                    results.append(json.loads(await first_line(process)))
            after = [await _stats(http, stats) for _, _, stats in started]
            cpu_after = [cpu_seconds(p.pid) for p, _, _ in started]
            callers_cpu = (sum(cpu_seconds(p.pid) for p in callers) - callers_before) / seconds
            for process in callers:
                assert process.stdin is not None
                await process.stdin.send(b"bye\n")
    outcome = judge(len(server_cores), total, before, after, results, seconds, cpu_before, cpu_after)
    outcome.caller_cpu_pct = 100 * callers_cpu / max(1, len(callers))
    return outcome


async def _stats(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with http.get(url) as reply:
        return await reply.json()


def judge(
    processes: int,
    total: int,
    before: list[dict[str, Any]],
    after: list[dict[str, Any]],
    results: list[dict[str, Any]],
    seconds: float,
    cpu_before: list[float],
    cpu_after: list[float],
) -> Outcome:
    expected = FRAMES_PER_S * seconds
    input_shares, dropped = [], 0
    for b, a in zip(before, after, strict=True):
        for sid, s in a["sessions"].items():
            prior = b["sessions"].get(sid, {"received": 0, "dropped": 0})
            input_shares.append((s["received"] - prior["received"]) / expected)
            dropped += s["dropped"] - prior["dropped"]
    echo_shares = [n / (FRAMES_PER_S * r["elapsed"]) for r in results for n in r["received"]]
    lag = max(a["loop_lag_p99_ms"] for a in after)
    cpu = sum(a - b for a, b in zip(cpu_after, cpu_before, strict=True)) / seconds
    input_share = min(input_shares, default=0.0)
    echo_share = min(echo_shares, default=0.0)
    why = []
    if len(input_shares) < total:
        why.append(f"{total - len(input_shares)} sessions missing")
    if input_share < HOLD_SHARE:
        why.append("input behind real time")
    if dropped:
        why.append("backlog dropped")
    if echo_share < HOLD_SHARE:
        why.append("echo short")
    if lag > MAX_LOOP_LAG_MS:
        why.append("event loop late")
    cpu_per_session = 100 * cpu / max(1, total)
    return Outcome(
        processes, total, not why, input_share, echo_share, dropped, lag, cpu_per_session, 0.0, ", ".join(why)
    )


async def main(args: argparse.Namespace) -> None:
    cores = sorted(os.sched_getaffinity(0))
    server_core, caller_cores = cores[0], cores[1:] or cores
    print(f"{len(cores)} cores; server on core {server_core}, callers on {caller_cores}; {args.seconds:g} s windows")
    header = ("procs", "sessions", "input", "echo", "dropped", "lag p99", "cpu/sess", "caller cpu")
    print("{:>5} {:>9} {:>9} {:>9} {:>8} {:>9} {:>9} {:>10}".format(*header))
    best = args.per_process or await search_one_process(args, server_core, caller_cores)
    multi_total, spare = None, len(cores) // 2
    if best and spare >= 2:
        # One process per core on half the cores (callers need the other half), at the
        # single-process figure, then a little lower if the slowest of them falls behind.
        for load in (best, int(best * 0.9), int(best * 0.8)):
            outcome = await trial(load, cores[:spare], cores[spare:], args.seconds)
            print(outcome.row(), flush=True)
            if outcome.holds:
                multi_total = outcome.sessions
                break
    print()
    multi = f" multi_process_sessions={multi_total} processes={spare}" if multi_total else ""
    print(f"sessions_per_core={best}{multi} window_s={args.seconds:g}")


async def search_one_process(args: argparse.Namespace, server_core: int, caller_cores: list[int]) -> int:
    """The largest load one process holds: climb by `step` until one fails, then bisect."""
    best, failed_at, load = 0, None, args.start
    while 1 <= load <= args.max:
        outcome = await trial(load, [server_core], caller_cores, args.seconds)
        print(outcome.row(), flush=True)
        if outcome.holds:
            best = load
        else:
            failed_at = load
        if failed_at is None:
            load += args.step
        elif failed_at - best <= 1:
            break
        else:
            load = (best + failed_at) // 2
    return best


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--caller":
        anyio.run(run_caller, sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--start", type=int, default=12)
    parser.add_argument("--step", type=int, default=6)
    parser.add_argument("--max", type=int, default=64)
    parser.add_argument("--per-process", type=int, help="skip the search: check this load per process")
    anyio.run(main, parser.parse_args())
