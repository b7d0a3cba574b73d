"""Echo round trip through the WebRTC transport: voxframe vs Pipecat's SmallWebRTC, same client.

Each server runs an echo pipeline in its own process on 127.0.0.1 (voxframe from this venv,
Pipecat 1.14.0 from its pinned venv). The same headless aiortc client calls each, plays a
100 ms tone burst into its microphone every 0.5 s, and times, on the monotonic clock, from the
burst entering the microphone to its echo's onset at the ear. Blocks alternate between servers
so drift on a shared machine hits both alike. Both echo pipelines run at 48 kHz in and out, the
rate of the Opus track, so no resampler sits on either path. Pipecat runs as its users run it
(defaults: RTVI and turn tracking on, 40 ms output chunks) and lean (those off, 20 ms output
chunks like voxframe's); the headline ratio is against the defaults.

A second part measures what low receive latency costs under jitter: each call crosses
`fakes.netrelay.ImpairedNetwork` (the UDP relay of the network benchmark), which delays each of
the caller's media packets by a seeded uniform random amount (so some arrive out of order), and
servers receive with different settings (voxframe in process with its adaptive reorder window,
the window pinned at 0/2/4, or aiortc's own buffer with prefetch 4; Pipecat's SmallWebRTC with
its defaults), under the same seeded delays.
Reported for every row, from the client: round trip, and the share of each burst's tone that
came back audible (what lateness and loss cost, whatever the receiver did about them); for
voxframe also the packets its receive path counted lost or late.

Clock points: the burst's first sample entering the client's microphone track, and the onset of
its echo in the audio leaving the client's jitter buffer (both time.monotonic_ns, one host).

    python3 dev.py bench transport_rtt [--bursts 40] [--skip-pipecat] [--skip-jitter]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import numpy as np
from anyio.streams.text import TextReceiveStream
from peer import pipecat_python  # benchmarks/ is the script's own directory, first on sys.path
from peer_scripts.voxframe_echo_bot import echo_task
from stats import p50, percentile

from voxframe.fakes.netimpair import Impairment
from voxframe.fakes.netrelay import ImpairedNetwork
from voxframe.pipeline.audio import loud_windows
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


@dataclass(slots=True)
class Echoes:
    """What came back of `sent` bursts: a round trip per heard one, and how much of each tone."""

    sent: int = 0
    rtts: list[float] = field(default_factory=list)
    #: Per heard burst, the share of its 100 ms tone that came back audible (capped at 1).
    tone_shares: list[float] = field(default_factory=list)

    def add(self, other: Echoes) -> None:
        self.sent += other.sent
        self.rtts += other.rtts
        self.tone_shares += other.tone_shares

    @property
    def tone_lost(self) -> float:
        """Share of the tone sent that never came back audible (a missed burst counts whole)."""
        return 1.0 - sum(self.tone_shares) / self.sent if self.sent else float("nan")


async def echo_bursts(client: HeadlessClient, bursts: int) -> Echoes:
    """Play `bursts` tone bursts into the call and time each echo."""
    pattern = burst()
    echoes = Echoes(sent=bursts)
    await client.play(np.zeros(24_000, dtype=np.int16), 48_000)  # settle: 0.5 s of silence
    onsets = []
    for _ in range(bursts):
        played = await client.play(pattern, 48_000)
        try:
            onset = await client.wait_for_onset(played.start_ns, timeout_s=2.0)
        except TimeoutError:
            continue
        onsets.append(onset)
        echoes.rtts.append((onset - played.start_ns) / NS_PER_MS)
    window = 480  # 10 ms at 48 kHz
    for onset in onsets:
        echo = client.heard(since_ns=onset - 20 * NS_PER_MS)[: 48_000 * 2 // 10]  # 200 ms from the onset
        loud_ms = 10 * int(np.count_nonzero(loud_windows(echo, window)))
        echoes.tone_shares.append(min(1.0, loud_ms / 100))
    return echoes


async def measure_rtts(url: str, bursts: int, options: ClientOptions | None = None) -> Echoes:
    async with HeadlessClient.connect(url, options or ClientOptions(ice=LOOPBACK)) as client:
        return await echo_bursts(client, bursts)


@dataclass(slots=True)
class Result:
    name: str
    echoes: Echoes = field(default_factory=Echoes)

    @property
    def p50(self) -> float:
        return p50(self.echoes.rtts) if self.echoes.rtts else float("nan")

    @property
    def p95(self) -> float:
        return percentile(self.echoes.rtts, 95) if self.echoes.rtts else float("nan")

    def row(self) -> str:
        heard = f"{len(self.echoes.rtts)}/{self.echoes.sent}"
        return f"{self.name:<34} {self.p50:>8.1f} {self.p95:>8.1f} {heard:>11}"


async def compare(bursts: int, rounds: int, pipecat: Path | None) -> list[Result]:
    servers: list[tuple[str, list[str]]] = [("voxframe", voxframe_command())]
    if pipecat is not None:
        servers += [
            ("pipecat (defaults)", pipecat_command(pipecat, lean=False)),
            ("pipecat (lean)", pipecat_command(pipecat, lean=True)),
        ]
    results = {name: Result(name) for name, _ in servers}
    async with _all_servers(servers) as urls:
        for _ in range(rounds):
            for name, _ in servers:
                results[name].echoes.add(await measure_rtts(urls[name], bursts // rounds))
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


@dataclass(slots=True)
class JitterResult:
    name: str
    echoes: Echoes
    #: The voxframe receive path's own count of packets lost or dropped late (None: Pipecat's).
    receiver_lost: float | None = None

    def row(self) -> str:
        rtts = self.echoes.rtts
        median = p50(rtts) if rtts else float("nan")
        p95 = percentile(rtts, 95) if rtts else float("nan")
        counted = "-" if self.receiver_lost is None else f"{100 * self.receiver_lost:.2f}%"
        heard = f"{len(rtts)}/{self.echoes.sent}"
        return (
            f"{self.name:<34} {median:>8.1f} {p95:>8.1f} {heard:>7} {100 * self.echoes.tone_lost:>9.1f}% {counted:>9}"
        )


def jitter(jitter_ms: float) -> Impairment:
    """The client's media packets delayed by a seeded uniform 0..jitter_ms (the same every run)."""
    return Impairment(jitter_ms=jitter_ms, seed=7, media_only=True)


async def jittered_echoes(url: str, bursts: int, jitter_ms: float) -> Echoes:
    """Call `url` through the relay, jitter the caller's packets once connected, echo bursts."""
    async with ImpairedNetwork(url) as net, HeadlessClient.connect(net.url, ClientOptions(ice=LOOPBACK)) as client:
        net.impair(to_server=jitter(jitter_ms))
        return await echo_bursts(client, bursts)


async def jitter_run(name: str, receive: ReceiveOptions, bursts: int, jitter_ms: float) -> JitterResult:
    session = SessionOptions(ice=LOOPBACK, receive=receive)
    server = WebRTCServer(echo_task, ServerOptions(session=session))
    async with anyio.create_task_group() as tg:
        url = await tg.start(server.serve)
        async with ImpairedNetwork(url) as net, HeadlessClient.connect(net.url, ClientOptions(ice=LOOPBACK)) as client:
            net.impair(to_server=jitter(jitter_ms))
            stage = next(iter(server.sessions.values()))._stages[0]  # the session keeps no public handle
            echoes = await echo_bursts(client, bursts)
        tg.cancel_scope.cancel()
    stats = stage.stats
    total = max(1, stats.released + stats.lost + stats.late_dropped)
    return JitterResult(name, echoes, (stats.lost + stats.late_dropped) / total)


async def pipecat_jitter_run(python: Path, bursts: int, jitter_ms: float) -> JitterResult:
    async with server_process(pipecat_command(python, lean=False)) as url:
        echoes = await jittered_echoes(url, bursts, jitter_ms)
    return JitterResult("pipecat (defaults)", echoes)


async def jitter_study(bursts: int, jitter_ms: float, pipecat: Path | None) -> list[JitterResult]:
    configs = [
        ("no reordering wait (window 0)", ReceiveOptions(reorder_window=0)),
        ("window 2", ReceiveOptions(reorder_window=2)),
        ("window 4", ReceiveOptions(reorder_window=4)),
        ("voxframe default (adaptive window)", ReceiveOptions()),
        ("aiortc buffer, prefetch 4", ReceiveOptions(aiortc_prefetch=4)),
    ]
    rows = [await jitter_run(name, receive, bursts, jitter_ms) for name, receive in configs]
    if pipecat is not None:
        rows.append(await pipecat_jitter_run(pipecat, bursts, jitter_ms))
    return rows


# --- main ------------------------------------------------------------------------------------------------


async def main(args: argparse.Namespace, pipecat: Path | None) -> None:
    results = await compare(args.bursts, args.rounds, pipecat)
    print(f"\necho round trip, {args.bursts} bursts each, 127.0.0.1, same headless aiortc client")
    print(f"{'server':<34} {'p50 ms':>8} {'p95 ms':>8} {'heard':>11}")
    for result in results:
        print(result.row())
    jitter: list[JitterResult] = []
    if not args.skip_jitter:
        jitter = await jitter_study(args.jitter_bursts, args.jitter_ms, pipecat)
        print(f"\nreceive settings under jitter (client packets delayed uniformly 0-{args.jitter_ms:g} ms, seeded)")
        header = f"{'server receiving with':<34} {'p50 ms':>8} {'p95 ms':>8} {'heard':>7}"
        print(f"{header} {'tone lost':>10} {'counted':>9}")
        for row in jitter:
            print(row.row())
        print("(tone lost: the share of the bursts' tone that did not come back audible, at the client; counted:")
        print(" packets voxframe's receive path counted lost or too late)")
    voxframe = results[0]
    fields = {"voxframe_rtt_ms": voxframe.p50, "voxframe_rtt_p95_ms": voxframe.p95}
    if pipecat is not None:
        defaults, lean = results[1], results[2]
        fields = {
            "rtt_ratio": defaults.p50 / voxframe.p50,
            **fields,
            "pipecat_rtt_ms": defaults.p50,
            "pipecat_lean_rtt_ms": lean.p50,
            "pipecat_rtt_p95_ms": defaults.p95,
        }
    fields["bursts_heard"] = sum(len(r.echoes.rtts) for r in results)
    fields["bursts_sent"] = sum(r.echoes.sent for r in results)
    for row in jitter:
        if row.name.startswith(("voxframe default", "pipecat")):
            fields[f"{row.name.split()[0]}_jitter_tone_lost"] = row.echoes.tone_lost
    print()
    print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items()))


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
