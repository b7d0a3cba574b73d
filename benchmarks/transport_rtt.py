"""Echo round trip through the WebRTC transport: voxframe vs Pipecat's SmallWebRTC, same client.

Each server runs an echo pipeline in its own process on 127.0.0.1 (voxframe from this venv,
Pipecat 1.14.0 from its pinned venv). The same headless aiortc client calls each, plays a
100 ms tone burst into its microphone every 0.5 s, and times, on the monotonic clock, from the
burst entering the microphone to its echo's onset at the ear. Blocks alternate between servers
so drift on a shared machine hits both alike. Pipecat runs as its users run it (defaults) and
lean (RTVI, turn tracking and idle timeout off); the ratio is against the defaults.

A second part measures what low receive latency costs under jitter: the client delays each of
its outgoing packets by a random amount (so some arrive out of order), and an in-process
voxframe server receives with different settings (reorder window 0/2/4, aiortc's own buffer
with prefetch 4). Reported: round trip, and the share of packets lost to lateness.

    python3 dev.py bench transport_rtt [--bursts 40] [--skip-pipecat] [--skip-jitter]
"""

from __future__ import annotations

import argparse
import heapq
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from anyio.streams.text import TextReceiveStream
from peer import pipecat_python  # benchmarks/ is the script's own directory, first on sys.path
from peer_scripts.voxframe_echo_bot import echo_task
from stats import p50, percentile

from voxframe.transports.webrtc import (
    ClientOptions,
    HeadlessClient,
    IceOptions,
    ReceiveOptions,
    ServerOptions,
    SessionOptions,
    WebRTCServer,
)

HERE = Path(__file__).resolve().parent
NS_PER_MS = 1_000_000
LOOPBACK = IceOptions(host_addresses=("127.0.0.1",))
BURST_HZ = 1000.0


def burst(rate: int = 48_000, tone_s: float = 0.1, total_s: float = 0.5) -> np.ndarray:
    t = np.arange(int(tone_s * rate)) / rate
    tone = np.round(0.5 * 32767 * np.sin(2 * np.pi * BURST_HZ * t)).astype(np.int16)
    return np.concatenate([tone, np.zeros(int((total_s - tone_s) * rate), dtype=np.int16)])


# --- servers in their own processes ----------------------------------------------------------------


@asynccontextmanager
async def server_process(command: list[str]) -> AsyncIterator[str]:
    """Start a peer script that prints "ready <port> ..."; yield its base URL."""
    async with await anyio.open_process(command, stderr=subprocess.DEVNULL) as process:
        try:
            assert process.stdout is not None
            text = ""
            with anyio.fail_after(300):  # Pipecat's venv is installed on first use
                async for piece in TextReceiveStream(process.stdout):
                    text += piece
                    if "\n" in text:
                        break
            if not text.startswith("ready "):
                raise RuntimeError(f"{command[1]} did not start: {text!r}")
            yield f"http://127.0.0.1:{text.split()[1]}"
        finally:
            process.terminate()
            with anyio.move_on_after(10):
                await process.wait()
            if process.returncode is None:
                process.kill()


def voxframe_command() -> list[str]:
    return [sys.executable, str(HERE / "peer_scripts" / "voxframe_echo_bot.py")]


def pipecat_command(python: Path, lean: bool) -> list[str]:
    command = [str(python), str(HERE / "peer_scripts" / "pipecat_echo_bot.py")]
    return [*command, "--lean"] if lean else command


# --- measuring ---------------------------------------------------------------------------------------


async def measure_rtts(url: str, bursts: int, options: ClientOptions | None = None) -> list[float]:
    """Round trips in ms for `bursts` tone bursts (misses are left out and reported)."""
    pattern = burst()
    rtts: list[float] = []
    async with HeadlessClient.connect(url, options or ClientOptions(ice=LOOPBACK)) as client:
        await client.play(np.zeros(24_000, dtype=np.int16), 48_000)  # settle: 0.5 s of silence
        for _ in range(bursts):
            played = await client.play(pattern, 48_000)
            try:
                onset = await client.wait_for_onset(played.start_ns, timeout_s=2.0)
            except TimeoutError:
                continue
            rtts.append((onset - played.start_ns) / NS_PER_MS)
    return rtts


@dataclass(slots=True)
class Result:
    name: str
    rtts: list[float]
    bursts: int

    @property
    def p50(self) -> float:
        return p50(self.rtts) if self.rtts else float("nan")

    @property
    def p95(self) -> float:
        return percentile(self.rtts, 95) if self.rtts else float("nan")

    def row(self) -> str:
        return f"{self.name:<34} {self.p50:>8.1f} {self.p95:>8.1f} {len(self.rtts):>5}/{self.bursts}"


async def compare(bursts: int, rounds: int, pipecat: Path | None) -> list[Result]:
    servers: list[tuple[str, list[str]]] = [("voxframe", voxframe_command())]
    if pipecat is not None:
        servers += [
            ("pipecat (defaults)", pipecat_command(pipecat, lean=False)),
            ("pipecat (lean)", pipecat_command(pipecat, lean=True)),
        ]
    results = {name: Result(name, [], 0) for name, _ in servers}
    async with _all_servers(servers) as urls:
        for _ in range(rounds):
            for name, _ in servers:
                results[name].rtts += await measure_rtts(urls[name], bursts // rounds)
                results[name].bursts += bursts // rounds
    return list(results.values())


@asynccontextmanager
async def _all_servers(servers: list[tuple[str, list[str]]]) -> AsyncIterator[dict[str, str]]:
    urls: dict[str, str] = {}
    async with _nested(servers, urls):
        yield urls


@asynccontextmanager
async def _nested(servers: list[tuple[str, list[str]]], urls: dict[str, str]) -> AsyncIterator[None]:
    if not servers:
        yield
        return
    (name, command), rest = servers[0], servers[1:]
    async with server_process(command) as url:
        urls[name] = url
        async with _nested(rest, urls):
            yield


# --- jitter ----------------------------------------------------------------------------------------------


class JitterInjector:
    """Delays each packet the client sends by a random amount (independently: reordering)."""

    def __init__(self, delay_ms: Callable[[], float]) -> None:
        self._delay_ms = delay_ms
        self._heap: list[tuple[float, int, bytes]] = []
        self._seq = 0
        self._wake = anyio.Event()
        self._send: Callable[[bytes], Any] | None = None

    def install(self, client: HeadlessClient) -> None:
        dtls = client.pc.getTransceivers()[0].sender.transport
        self._send = dtls._send_rtp
        dtls._send_rtp = self._delayed

    async def _delayed(self, data: bytes) -> None:
        due = time.monotonic() + self._delay_ms() / 1000
        heapq.heappush(self._heap, (due, self._seq, data))
        self._seq += 1
        self._wake.set()

    async def run(self) -> None:
        assert self._send is not None
        while True:
            if not self._heap:
                self._wake = anyio.Event()
                await self._wake.wait()
                continue
            due, _, data = self._heap[0]
            wait = due - time.monotonic()
            if wait > 0:
                self._wake = anyio.Event()
                with anyio.move_on_after(wait):
                    await self._wake.wait()
                continue
            heapq.heappop(self._heap)
            try:
                await self._send(data)
            except ConnectionError:
                return


@dataclass(slots=True)
class JitterResult:
    name: str
    rtts: list[float]
    released: int
    lost: int
    late: int

    def row(self) -> str:
        total = max(1, self.released + self.lost + self.late)
        median = p50(self.rtts) if self.rtts else float("nan")
        p95 = percentile(self.rtts, 95) if self.rtts else float("nan")
        return f"{self.name:<34} {median:>8.1f} {p95:>8.1f} {100 * (self.lost + self.late) / total:>8.2f}%"


async def jitter_run(name: str, receive: ReceiveOptions, bursts: int, jitter_ms: float) -> JitterResult:
    session = SessionOptions(ice=LOOPBACK, receive=receive)
    server = WebRTCServer(echo_task, ServerOptions(session=session))
    rng = random.Random(7)
    injector = JitterInjector(lambda: rng.uniform(0, jitter_ms))
    rtts: list[float] = []
    pattern = burst()
    async with anyio.create_task_group() as tg:
        url = await tg.start(server.serve)
        async with HeadlessClient.connect(url, ClientOptions(ice=LOOPBACK)) as client:
            injector.install(client)
            tg.start_soon(injector.run)
            stage = next(iter(server.sessions.values()))._stages[0]
            await client.play(np.zeros(24_000, dtype=np.int16), 48_000)
            for _ in range(bursts):
                played = await client.play(pattern, 48_000)
                try:
                    onset = await client.wait_for_onset(played.start_ns, timeout_s=2.0)
                except TimeoutError:
                    continue
                rtts.append((onset - played.start_ns) / NS_PER_MS)
        tg.cancel_scope.cancel()
    stats = stage.stats
    return JitterResult(name, rtts, stats.released, stats.lost, stats.late_dropped)


async def jitter_study(bursts: int, jitter_ms: float) -> list[JitterResult]:
    configs = [
        ("no reordering wait (window 0)", ReceiveOptions(reorder_window=0)),
        ("voxframe default (window 2)", ReceiveOptions(reorder_window=2)),
        ("window 4", ReceiveOptions(reorder_window=4)),
        ("aiortc buffer, prefetch 4", ReceiveOptions(aiortc_prefetch=4)),
    ]
    return [await jitter_run(name, receive, bursts, jitter_ms) for name, receive in configs]


# --- main ------------------------------------------------------------------------------------------------


async def main(args: argparse.Namespace, pipecat: Path | None) -> None:
    results = await compare(args.bursts, args.rounds, pipecat)
    print(f"\necho round trip, {args.bursts} bursts each, 127.0.0.1, same headless aiortc client")
    print(f"{'server':<34} {'p50 ms':>8} {'p95 ms':>8} {'heard':>11}")
    for result in results:
        print(result.row())
    if not args.skip_jitter:
        jitter = await jitter_study(args.jitter_bursts, args.jitter_ms)
        print(f"\nreceive settings under jitter (client packets delayed uniformly 0-{args.jitter_ms:g} ms)")
        print(f"{'voxframe server receiving with':<34} {'p50 ms':>8} {'p95 ms':>8} {'lost':>9}")
        for row in jitter:
            print(row.row())
    voxframe = results[0]
    line = f"voxframe_rtt_ms={voxframe.p50:.1f} voxframe_rtt_p95_ms={voxframe.p95:.1f}"
    if not args.skip_pipecat:
        pipecat, lean = results[1], results[2]
        line = (
            f"rtt_ratio={voxframe.p50 / pipecat.p50:.3f} voxframe_rtt_ms={voxframe.p50:.1f} "
            f"pipecat_rtt_ms={pipecat.p50:.1f} pipecat_lean_rtt_ms={lean.p50:.1f} "
            f"voxframe_rtt_p95_ms={voxframe.p95:.1f} pipecat_rtt_p95_ms={pipecat.p95:.1f}"
        )
    print()
    print(line)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bursts", type=int, default=40, help="bursts per server (split over the rounds)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating blocks per server")
    parser.add_argument("--skip-pipecat", action="store_true")
    parser.add_argument("--skip-jitter", action="store_true")
    parser.add_argument("--jitter-bursts", type=int, default=20)
    parser.add_argument("--jitter-ms", type=float, default=40.0)
    arguments = parser.parse_args()
    anyio.run(main, arguments, None if arguments.skip_pipecat else pipecat_python())
