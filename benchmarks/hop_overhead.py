"""Hop cost: latency and throughput added by pass-through processors, voxframe vs Pipecat.

A probe at the head of a chain of N pass-through processors stamps a frame, a sink at its tail
stamps it again: per-hop latency = (sink - probe) / (N + 1), over many single frames. Then a
stream of 20 ms audio frames is pushed as fast as it goes: frames/s through the chain. Pipecat
(pinned, its own virtual environment) runs the same measurement in the same run, with its own
`Pipeline`/`FrameProcessor`, in three configurations: its defaults, its lean worker, and direct
mode. voxframe runs in three too:

* `voxframe-session`: direct awaits, with the observers a served call installs (the runner's turn
  reporter and the WebRTC session's client-events observer, which see every frame): voxframe as
  a session runs it. The headline ratios compare this with Pipecat's defaults (RTVI and turn
  tracking on), each as its users run it.
* `voxframe-queued`: every processor `concurrent` (one queue and one task each), no observers:
  like for like with Pipecat's lean worker, which also queues every hop.
* `voxframe`: direct awaits, no observers: like for like with Pipecat's direct mode.

Clock points: `time.perf_counter_ns()` when the probe (first processor) receives the frame and
when the sink (last) receives it, in the same process; both sides' percentiles come from
benchmarks/stats.py over the raw samples.

    python3 dev.py bench hop_overhead [--samples 300] [--stream 2000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import anyio
from peer import pipecat_python  # benchmarks/ is the script's own directory, first on sys.path
from stats import p50, percentile

from voxframe.pipeline import (
    Direction,
    Frame,
    FrameProcessor,
    InputAudioFrame,
    Observer,
    Pipeline,
    PipelineParams,
    PipelineTask,
)
from voxframe.runner.turn_reporter import TurnReporter
from voxframe.transports.webrtc.events import ClientEventsObserver

CHAIN_LENGTHS = (1, 10, 50)


class Probe(FrameProcessor):
    def __init__(self) -> None:
        super().__init__(name="probe")
        self.t0 = 0

    async def process(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, InputAudioFrame):
            self.t0 = time.perf_counter_ns()
        await self.push(frame, direction)


class Sink(FrameProcessor):
    def __init__(self) -> None:
        super().__init__(name="sink")
        self.count = 0
        self.expect = 1
        self.t1 = 0
        self.done: anyio.Event | None = None

    async def process(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, InputAudioFrame):
            self.count += 1
            if self.count >= self.expect:
                self.t1 = time.perf_counter_ns()
                if self.done is not None:
                    self.done.set()
        await self.push(frame, direction)


class QueuedPass(FrameProcessor):
    """A pass-through that declares itself concurrent: one queue and one task."""

    concurrent = True


def audio() -> InputAudioFrame:
    return InputAudioFrame(audio=bytes(640), sample_rate=16_000)


def session_observers() -> list[Observer]:
    """What a served call adds to its task: the runner's turn reporter and the page's events."""
    return [TurnReporter(lambda record: None), ClientEventsObserver(lambda message: None)]


async def measure_voxframe(n: int, samples: int, stream: int, config: str) -> dict[str, float]:
    kind = QueuedPass if config == "voxframe-queued" else FrameProcessor
    observers = session_observers() if config == "voxframe-session" else []
    probe, sink = Probe(), Sink()
    params = PipelineParams(idle_timeout_s=None, observers=observers)
    task = PipelineTask(Pipeline([probe, *[kind() for _ in range(n)], sink]), params)
    async with anyio.create_task_group() as tg:
        tg.start_soon(task.run)
        await task.wait_started()
        latencies = []
        for _ in range(samples):
            sink.count, sink.expect, sink.done = 0, 1, anyio.Event()
            await task.queue_frame(audio())
            with anyio.fail_after(10):
                await sink.done.wait()
            latencies.append((sink.t1 - probe.t0) / (n + 1))
        sink.count, sink.expect, sink.done = 0, stream, anyio.Event()
        frames = [audio() for _ in range(stream)]
        t0 = time.perf_counter_ns()
        for frame in frames:
            await task.queue_frame(frame)
        with anyio.fail_after(120):
            await sink.done.wait()
        elapsed = (sink.t1 - t0) / 1e9
        await task.cancel()
    return summarize(latencies, stream / elapsed)


def summarize(latencies_ns: list[float], throughput_fps: float) -> dict[str, float]:
    return {
        "hop_p50_us": percentile(latencies_ns, 50) / 1000,
        "hop_p95_us": percentile(latencies_ns, 95) / 1000,
        "throughput_fps": throughput_fps,
    }


def measure_pipecat(samples: int, stream: int) -> dict[str, dict[str, dict[str, float]]]:
    """Pipecat's raw samples per configuration and chain length, summarized here like ours."""
    script = Path(__file__).resolve().parent / "peer_scripts" / "pipecat_hops.py"
    cmd = [str(pipecat_python()), str(script), str(samples), str(stream), *map(str, CHAIN_LENGTHS)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=900).stdout
    raw = json.loads(out.strip().splitlines()[-1])
    return {
        config: {n: summarize(r["latencies_ns"], r["throughput_fps"]) for n, r in by_n.items()}
        for config, by_n in raw.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=300, help="single frames per chain length")
    parser.add_argument("--stream", type=int, default=2000, help="audio frames in the throughput stream")
    args = parser.parse_args()

    configs = ("voxframe-session", "voxframe-queued", "voxframe")
    results: dict[str, dict[str, dict[str, float]]] = {config: {} for config in configs}
    for n in CHAIN_LENGTHS:
        for config in configs:
            results[config][str(n)] = anyio.run(measure_voxframe, n, args.samples, args.stream, config)
    for config, by_n in measure_pipecat(args.samples, args.stream).items():
        results[f"pipecat-{config}"] = by_n

    print(f"{'stack':<18}{'N':>4}{'hop p50 µs':>12}{'hop p95 µs':>12}{'frames/s':>12}")
    for stack, by_n in results.items():
        for n, r in by_n.items():
            print(f"{stack:<18}{n:>4}{r['hop_p50_us']:>12.2f}{r['hop_p95_us']:>12.2f}{r['throughput_fps']:>12.0f}")

    def ratio(ours_name: str, peer: str, key: str) -> float:
        """How many times better voxframe is: Pipecat's latency over ours, our throughput over its.
        Per-hop latency is the median over all chain lengths, throughput is at N=50."""
        if key == "hop_p50_us":
            ours = p50(results[ours_name][str(n)][key] for n in CHAIN_LENGTHS)
            theirs = p50(results[peer][str(n)][key] for n in CHAIN_LENGTHS)
            return theirs / ours
        return results[ours_name]["50"][key] / results[peer]["50"][key]

    pairs = {
        "": ("voxframe-session", "pipecat-defaults"),  # each as its users run it
        "_queued_vs_lean": ("voxframe-queued", "pipecat-lean"),  # a queue and a task per hop, both
        "_vs_direct": ("voxframe", "pipecat-direct"),  # direct calls, no observers, both
    }
    print(f"\nper-hop latency: median over N={CHAIN_LENGTHS}; throughput: N=50, 20 ms audio frames.")
    for suffix, (ours_name, peer) in pairs.items():
        print(f"  ratio{suffix or ' (headline)'}: {ours_name} against {peer}")
    print(
        " ".join(
            f"hop_latency_ratio{suffix}={ratio(ours_name, peer, 'hop_p50_us'):.1f} "
            f"throughput_ratio{suffix}={ratio(ours_name, peer, 'throughput_fps'):.1f}"
            for suffix, (ours_name, peer) in pairs.items()
        )
    )


if __name__ == "__main__":
    main()
