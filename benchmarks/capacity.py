"""Session capacity: concurrent real-time echo calls one server process sustains, on one core.

The servers: voxframe's benchmarks/peer_scripts/voxframe_echo_bot.py (WebRTC in, echo, WebRTC
out: Opus decode, pace, encode; 48 kHz in and out, no resampler) and, measured the same way,
Pipecat's SmallWebRTC echo (benchmarks/peer_scripts/pipecat_echo_bot.py, Pipecat 1.14.0 in its
own venv from benchmarks/peer.py; as its users run it by default, `--pipecat lean` for RTVI and
turn tracking off and 20 ms output chunks). Each server process is pinned with `taskset` to the
first core this process may use; when that is impossible (no taskset, one core) the figures are
named per process, not per core.

The load: light callers (benchmarks/capacity_calls.py) in other processes, pinned to the other
cores, at most CALLS_PER_CALLER calls each: pre-encoded Opus tones, a distinct frequency per
call, no codec work during the window. One more call, the probe, is a full HeadlessClient in its
own process timing tone bursts' round trips. A load of N sessions is N - 1 light calls + the probe.

Clock points:
* the window: callers and probe open it on a line from this process and time it themselves
  (time.monotonic, in their process); the server's window is from its /stats read just before
  the callers start to the one just after their results (`now_s`, its own time.monotonic): every
  server-side rate (input frames, CPU) is divided by that server elapsed time;
* CPU: the server process's utime + stime (/proc/PID/stat), read next to each /stats read;
* loop lag: the server's own 20 ms timer's lateness, every sample between the two /stats reads
  (GET /lag), p99 with benchmarks/stats.py's percentile;
* probe round trip: the burst's first sample into the probe's microphone -> its echo's onset at
  the probe's ear (time.monotonic_ns, one host), as in transport_rtt.py.

A load holds when, over the window: every session is there; each session's input is >= 97% of
real time (50 frames/s of server time); the server dropped no input backlog; for voxframe, pacer
underruns + output chunks dropped stay within each session's 3% (Pipecat counts neither: the
echo check below sees what they would cost); each light call got >= 97% of its 20 ms frames back
as the right echo (its own tone, audible: silence filler or another call's tone do not count);
the probe heard every burst; and the server's loop-lag p99 is < 40 ms. The search climbs by
`--step` from `--start` until a load fails, bisects to the largest that holds, and re-runs that
load `--confirmations` times (3): one failed re-run moves the answer one lower.

    python3 dev.py bench capacity [--seconds 30] [--start 12] [--step 6] [--max 64]
                                  [--sessions N] [--confirmations 3] [--pipecat default|lean|none]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import anyio.abc
from anyio.streams.text import TextReceiveStream
from capacity_calls import FRAMES_PER_S
from capacity_search import LoadSearch
from stats import p50, percentile

HERE = Path(__file__).resolve().parent
HOLD_SHARE = 0.97
MAX_LOOP_LAG_MS = 40.0
#: A light caller process handles this many calls before another one (on another core) is used.
CALLS_PER_CALLER = 24
CALLS = str(HERE / "capacity_calls.py")


# --- processes ------------------------------------------------------------------------------------------


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


async def _stop(process: anyio.abc.Process) -> None:
    process.terminate()
    with anyio.move_on_after(10):
        await process.wait()
    if process.returncode is None:
        process.kill()


@dataclass(slots=True)
class Server:
    process: anyio.abc.Process
    url: str
    stats_url: str


@asynccontextmanager
async def server(command: list[str], core: int) -> AsyncIterator[Server]:
    """One echo server process pinned to `core`, until the block ends."""
    async with AsyncExitStack() as stack:
        process = await stack.enter_async_context(
            await anyio.open_process(pinned(command, [core]), stderr=subprocess.DEVNULL)
        )
        stack.push_async_callback(_stop, process)
        with anyio.fail_after(300):  # Pipecat's venv is installed on first use
            _, port, stats_port = (await first_line(process)).split()
        yield Server(process, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{stats_port}")


def caller_plan(calls: int, caller_cores: list[int]) -> list[tuple[int, int, int]]:
    """(core, first call index, calls) per light caller process: at most CALLS_PER_CALLER calls
    each, spread round-robin over the caller cores. Index 0 is the probe's."""
    processes = -(-calls // CALLS_PER_CALLER)
    plan, first = [], 1
    for i in range(processes):
        n = calls // processes + (1 if i < calls % processes else 0)
        plan.append((caller_cores[i % len(caller_cores)], first, n))
        first += n
    return plan


# --- one trial ------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Window:
    """What one trial saw: the server's /stats before and after, its loop-lag samples in between,
    its CPU seconds, and the callers' and probe's results."""

    before: dict[str, Any]
    after: dict[str, Any]
    lag_ms: list[float]
    server_cpu_s: float
    callers: list[dict[str, Any]]
    probe: dict[str, Any]
    caller_cpu_s: float = 0.0


async def trial(command: list[str], sessions: int, server_core: int, caller_cores: list[int], seconds: float) -> Window:
    """Run `sessions` calls (the probe and sessions - 1 light calls) against a fresh server."""
    async with server(command, server_core) as srv, AsyncExitStack() as stack, aiohttp.ClientSession() as http:
        if shutil.which("taskset") and os.sched_getaffinity(srv.process.pid) != {server_core}:
            raise RuntimeError(f"the server is not pinned to core {server_core}")  # else "per core" is untrue

        async def spawn(args: list[str], core: int) -> anyio.abc.Process:
            command = pinned([sys.executable, CALLS, *args], [core])
            process = await stack.enter_async_context(await anyio.open_process(command, stderr=subprocess.DEVNULL))
            stack.push_async_callback(_stop, process)
            return process

        probe = await spawn(["--probe", srv.url, str(seconds)], caller_cores[0])
        with anyio.fail_after(60):
            assert json.loads(await first_line(probe))["type"] == "ready"
        callers = [
            await spawn(["--caller", srv.url, str(first), str(n), str(seconds)], core)
            for core, first, n in caller_plan(sessions - 1, caller_cores)
        ]
        everyone = [probe, *callers]
        with anyio.fail_after(60 + 2 * sessions):
            for process in callers:
                assert json.loads(await first_line(process))["type"] == "ready"
            await _settled(http, srv.stats_url, sessions)
        before = await _stats(http, srv.stats_url)
        cpu_before = cpu_seconds(srv.process.pid)
        callers_before = sum(cpu_seconds(p.pid) for p in callers)
        for process in everyone:
            assert process.stdin is not None
            await process.stdin.send(b"go\n")
        with anyio.fail_after(seconds + 60):
            results = [json.loads(await first_line(p)) for p in everyone]
        after = await _stats(http, srv.stats_url)
        server_cpu = cpu_seconds(srv.process.pid) - cpu_before
        caller_cpu = sum(cpu_seconds(p.pid) for p in callers) - callers_before
        async with http.get(f"{srv.stats_url}/lag", params={"since": str(before["lag_count"])}) as reply:
            lag = (await reply.json())[: after["lag_count"] - before["lag_count"]]
        for process in everyone:
            assert process.stdin is not None
            await process.stdin.send(b"bye\n")
    return Window(before, after, lag, server_cpu, results[1:], results[0], caller_cpu)


async def _stats(http: aiohttp.ClientSession, stats_url: str) -> dict[str, Any]:
    async with http.get(f"{stats_url}/stats") as reply:
        return await reply.json()


async def _settled(http: aiohttp.ClientSession, stats_url: str, sessions: int) -> None:
    """Until every call is connected and streaming (bounded by the caller's fail_after), plus 1 s."""
    while True:
        seen = (await _stats(http, stats_url))["sessions"]
        if len(seen) >= sessions and all(s["received"] > 0 for s in seen.values()):
            break
        await anyio.sleep(0.5)
    await anyio.sleep(1.0)


# --- judging --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Outcome:
    sessions: int
    holds: bool
    input_share: float
    echo_share: float
    dropped_in: int
    #: voxframe only: pacer underruns + output chunks dropped (None: the server does not count them).
    output_misses: int | None
    loop_lag_p99_ms: float
    cpu_per_session_pct: float
    caller_cpu_pct: float
    probe_rtt_p50_ms: float
    probe_heard: int
    probe_sent: int
    why: str

    HEADER = "sessions   input    echo  in drop out miss  lag p99  cpu/sess  caller cpu  probe rtt  heard"

    def row(self) -> str:
        verdict = "holds" if self.holds else f"fails ({self.why})"
        misses = "-" if self.output_misses is None else str(self.output_misses)
        return (
            f"{self.sessions:>8} {100 * self.input_share:>6.1f}% {100 * self.echo_share:>6.1f}% {self.dropped_in:>8}"
            f" {misses:>8} {self.loop_lag_p99_ms:>8.1f} {self.cpu_per_session_pct:>8.2f}% {self.caller_cpu_pct:>10.1f}%"
            f" {self.probe_rtt_p50_ms:>8.1f}ms {self.probe_heard:>3}/{self.probe_sent:<3} {verdict}"
        )


def judge(sessions: int, window: Window) -> Outcome:
    """Whether the load held over `window` (the rules in the module docstring)."""
    server_s = window.after["now_s"] - window.before["now_s"]
    expected = FRAMES_PER_S * server_s
    input_shares, dropped_in, misses, over_budget = [], 0, None, 0
    for sid, s in window.after["sessions"].items():
        prior = window.before["sessions"].get(sid, {})
        input_shares.append((s["received"] - prior.get("received", 0)) / expected)
        dropped_in += s.get("dropped", 0) - prior.get("dropped", 0)
        if "underruns" in s:
            missed = s["underruns"] + s["track_dropped"] - prior.get("underruns", 0) - prior.get("track_dropped", 0)
            misses = (misses or 0) + missed
            over_budget += missed > (1 - HOLD_SHARE) * expected
    echo_shares = [n / (FRAMES_PER_S * r["elapsed"]) for r in window.callers for n in r["right"]]
    probe = window.probe
    lag = percentile(window.lag_ms, 99) if window.lag_ms else float("nan")
    input_share = min(input_shares, default=0.0)
    echo_share = min(echo_shares, default=1.0)  # a load of 1 is the probe alone
    why = []
    if len(input_shares) < sessions:
        why.append(f"{sessions - len(input_shares)} sessions missing")
    if input_share < HOLD_SHARE:
        why.append("input behind real time")
    if dropped_in:
        why.append("input backlog dropped")
    if over_budget:
        why.append(f"{over_budget} sessions' output short")
    if echo_share < HOLD_SHARE:
        why.append("echo short or wrong")
    if len(probe["rtts_ms"]) < probe["sent"]:
        why.append("probe bursts unheard")
    if not lag < MAX_LOOP_LAG_MS:
        why.append("event loop late")
    callers = len(window.callers)
    return Outcome(
        sessions=sessions,
        holds=not why,
        input_share=input_share,
        echo_share=echo_share,
        dropped_in=dropped_in,
        output_misses=misses,
        loop_lag_p99_ms=lag,
        cpu_per_session_pct=100 * window.server_cpu_s / server_s / max(1, sessions),
        caller_cpu_pct=100 * window.caller_cpu_s / server_s / max(1, callers),
        probe_rtt_p50_ms=p50(probe["rtts_ms"]) if probe["rtts_ms"] else float("nan"),
        probe_heard=len(probe["rtts_ms"]),
        probe_sent=probe["sent"],
        why=", ".join(why),
    )


# --- the search and the report ---------------------------------------------------------------------------


@dataclass(slots=True)
class Stack:
    name: str
    command: list[str]


def stacks(pipecat: str) -> list[Stack]:
    found = [Stack("voxframe", [sys.executable, str(HERE / "peer_scripts" / "voxframe_echo_bot.py")])]
    if pipecat != "none":
        from peer import pipecat_python

        command = [str(pipecat_python()), str(HERE / "peer_scripts" / "pipecat_echo_bot.py")]
        found.append(Stack(f"pipecat ({pipecat})", [*command, "--lean"] if pipecat == "lean" else command))
    return found


async def capacity(stack: Stack, args: argparse.Namespace, server_core: int, caller_cores: list[int]) -> LoadSearch:
    """The largest load `stack` holds, found and then confirmed (see LoadSearch)."""
    search = LoadSearch(args.start, args.step, args.max, args.confirmations, fixed=args.sessions)
    while (load := search.next_load()) is not None:
        phase = search.phase
        outcome = judge(load, await trial(stack.command, load, server_core, caller_cores, args.seconds))
        search.record(load, outcome.holds, outcome.probe_rtt_p50_ms)
        print(f"{stack.name:<18} {phase:<8} {outcome.row()}", flush=True)
    return search


async def main(args: argparse.Namespace) -> None:
    cores = sorted(os.sched_getaffinity(0))
    server_core, caller_cores = cores[0], cores[1:] or cores
    per_core = bool(shutil.which("taskset")) and server_core not in caller_cores
    print(
        f"{len(cores)} cores; server on core {server_core}, callers on {caller_cores}; {args.seconds:g} s windows"
        + ("" if per_core else "; the server shares its core (or is not pinned): figures are per process")
    )
    print(f"{'stack':<18} {'phase':<8} {Outcome.HEADER}")
    found = {stack.name: await capacity(stack, args, server_core, caller_cores) for stack in stacks(args.pipecat)}
    print()
    print(f"{'stack':<18} {'sessions':>8} {'confirmed':>10} {'probe rtt p50 at it':>20}")
    for name, search in found.items():
        rtt = search.rtt_at_best()
        capped = "  (held at --max: a floor, not a capacity)" if search.capped else ""
        print(f"{name:<18} {search.best:>8} {search.confirmed:>10} {rtt:>18.1f}ms{capped}")
    key = "sessions_per_core" if per_core else "sessions_per_process"
    vox = found["voxframe"]
    line = f"{key}={vox.best} probe_rtt_p50_ms={vox.rtt_at_best():.1f}"
    peers = [s for n, s in found.items() if n != "voxframe"]
    if peers:
        peer = peers[0]
        # A ratio only of two capacities: not of a fixed --sessions check, a floor (a side that held
        # at --max) or nothing (a side that held no load).
        comparable = all(s.phase != "check" and s.best and not s.capped for s in (vox, peer))
        ratio = f"{vox.best / peer.best:.2f}" if comparable else "n/a"
        line += f" pipecat_{key}={peer.best} pipecat_probe_rtt_p50_ms={peer.rtt_at_best():.1f} capacity_ratio={ratio}"
    else:
        line += " pipecat=not_measured"
    print(f"{line} confirmations={args.confirmations} window_s={args.seconds:g}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--start", type=int, default=12)
    parser.add_argument("--step", type=int, default=6)
    parser.add_argument("--max", type=int, default=64)
    parser.add_argument("--confirmations", type=int, default=3, help="re-runs of the best load that must hold")
    parser.add_argument("--sessions", "--per-process", type=int, help="skip the search: check this load")
    parser.add_argument("--pipecat", choices=("default", "lean", "none"), default="default")
    anyio.run(main, parser.parse_args())
