"""Hop cost: latency and throughput added by pass-through processors, voxframe vs Pipecat.

A probe at the head of a chain of N pass-through processors stamps a frame, a sink at its tail
stamps it again: per-hop latency = (sink - probe) / (N + 1), over many single frames. Then a
stream of 20 ms audio frames is pushed as fast as it goes: frames/s through the chain. Pipecat
(pinned, its own virtual environment) runs the same measurement in the same run, with its own
`Pipeline`/`FrameProcessor`, in three configurations: its defaults, its lean worker, and direct
mode. Ratios are taken against Pipecat's defaults (as its users run it) and its direct mode.

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
from stats import p50

from voxframe.pipeline import (
    Direction,
    Frame,
    FrameProcessor,
    InputAudioFrame,
    Pipeline,
    PipelineParams,
    PipelineTask,
)

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


async def measure_voxframe(n: int, samples: int, stream: int, queued: bool) -> dict[str, float]:
    kind = QueuedPass if queued else FrameProcessor
    probe, sink = Probe(), Sink()
    task = PipelineTask(Pipeline([probe, *[kind() for _ in range(n)], sink]), PipelineParams(idle_timeout_s=None))
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
    latencies.sort()
    return {
        "hop_p50_us": p50(latencies) / 1000,
        "hop_p95_us": latencies[int(len(latencies) * 0.95)] / 1000,
        "throughput_fps": stream / elapsed,
    }


def measure_pipecat(samples: int, stream: int) -> dict[str, dict[str, dict[str, float]]]:
    script = Path(__file__).resolve().parent / "peer_scripts" / "pipecat_hops.py"
    cmd = [str(pipecat_python()), str(script), str(samples), str(stream), *map(str, CHAIN_LENGTHS)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=900).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=300, help="single frames per chain length")
    parser.add_argument("--stream", type=int, default=2000, help="audio frames in the throughput stream")
    args = parser.parse_args()

    results: dict[str, dict[str, dict[str, float]]] = {"voxframe": {}, "voxframe-queued": {}}
    for n in CHAIN_LENGTHS:
        results["voxframe"][str(n)] = anyio.run(measure_voxframe, n, args.samples, args.stream, False)
        results["voxframe-queued"][str(n)] = anyio.run(measure_voxframe, n, args.samples, args.stream, True)
    for config, by_n in measure_pipecat(args.samples, args.stream).items():
        results[f"pipecat-{config}"] = by_n

    print(f"{'stack':<18}{'N':>4}{'hop p50 µs':>12}{'hop p95 µs':>12}{'frames/s':>12}")
    for stack, by_n in results.items():
        for n, r in by_n.items():
            print(f"{stack:<18}{n:>4}{r['hop_p50_us']:>12.2f}{r['hop_p95_us']:>12.2f}{r['throughput_fps']:>12.0f}")

    def ratio(peer: str, key: str, invert: bool) -> float:
        # Per-hop latency over all chain lengths (median of the three), throughput at N=50.
        if key == "hop_p50_us":
            ours = p50(results["voxframe"][str(n)][key] for n in CHAIN_LENGTHS)
            theirs = p50(results[peer][str(n)][key] for n in CHAIN_LENGTHS)
        else:
            ours, theirs = results["voxframe"]["50"][key], results[peer]["50"][key]
        return ours / theirs if invert else theirs / ours

    print(
        f"\nper-hop latency: median over N={CHAIN_LENGTHS}; throughput: N=50, 20 ms audio frames.\n"
        f"hop_latency_ratio={ratio('pipecat-defaults', 'hop_p50_us', False):.1f} "
        f"throughput_ratio={ratio('pipecat-defaults', 'throughput_fps', True):.1f} "
        f"hop_latency_ratio_vs_direct={ratio('pipecat-direct', 'hop_p50_us', False):.1f} "
        f"throughput_ratio_vs_direct={ratio('pipecat-direct', 'throughput_fps', True):.1f}"
    )


if __name__ == "__main__":
    main()
