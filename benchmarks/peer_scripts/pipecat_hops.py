"""Pipecat side of `hop_overhead.py`; runs in Pipecat's own virtual environment.

Same measurement as the voxframe side: a probe at the head of a chain of N pass-through
processors, a sink at its tail. Prints one JSON object:
{config: {n: {"latencies_ns": [...], "throughput_fps": ...}}}.
Usage: python pipecat_hops.py SAMPLES STREAM_FRAMES N [N ...]
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from pipecat.frames.frames import Frame, InputAudioRawFrame, StartFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner


class Probe(FrameProcessor):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.t0 = 0

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            self.t0 = time.perf_counter_ns()
        await self.push_frame(frame, direction)


class Pass(FrameProcessor):
    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)


class Sink(FrameProcessor):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.started = asyncio.Event()
        self.count = 0
        self.expect = 1
        self.done = asyncio.Event()
        self.t1 = 0

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame):
            self.started.set()
        elif isinstance(frame, InputAudioRawFrame):
            self.count += 1
            if self.count >= self.expect:
                self.t1 = time.perf_counter_ns()
                self.done.set()
        await self.push_frame(frame, direction)


def audio() -> InputAudioRawFrame:
    return InputAudioRawFrame(audio=bytes(640), sample_rate=16000, num_channels=1)


CONFIGS = {
    # As Pipecat's users run it: PipelineWorker defaults.
    "defaults": ({}, False),
    # Its leanest worker: RTVI, turn tracking and idle timeout off.
    "lean": ({"enable_rtvi": False, "enable_turn_tracking": False, "idle_timeout_secs": None}, False),
    # Lean worker and every processor in direct mode (no queue, no task per processor).
    "direct": ({"enable_rtvi": False, "enable_turn_tracking": False, "idle_timeout_secs": None}, True),
}


async def measure(config: str, n: int, samples: int, stream: int) -> dict[str, object]:
    worker_kwargs, direct = CONFIGS[config]
    kw = {"enable_direct_mode": True} if direct else {}
    probe, sink = Probe(**kw), Sink(**kw)
    pipeline = Pipeline([probe, *[Pass(**kw) for _ in range(n)], sink])
    worker = PipelineWorker(pipeline, params=PipelineParams(), **worker_kwargs)
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    run = asyncio.create_task(runner.run())
    await asyncio.wait_for(sink.started.wait(), 30)

    latencies = []
    for _ in range(samples):
        sink.count, sink.expect = 0, 1
        sink.done.clear()
        await worker.queue_frame(audio())
        await asyncio.wait_for(sink.done.wait(), 10)
        latencies.append((sink.t1 - probe.t0) / (n + 1))

    sink.count, sink.expect = 0, stream
    sink.done.clear()
    frames = [audio() for _ in range(stream)]
    t0 = time.perf_counter_ns()
    for frame in frames:
        await worker.queue_frame(frame)
    await asyncio.wait_for(sink.done.wait(), 120)
    elapsed = (sink.t1 - t0) / 1e9

    await worker.cancel()
    await asyncio.wait_for(run, 30)
    # Raw samples: the voxframe side takes every percentile with one function (benchmarks/stats.py).
    return {"latencies_ns": latencies, "throughput_fps": stream / elapsed}


async def main() -> None:
    samples, stream, *ns = (int(a) for a in sys.argv[1:])
    results = {config: {str(n): await measure(config, n, samples, stream) for n in ns} for config in CONFIGS}
    print(json.dumps(results))


if __name__ == "__main__":
    from loguru import logger

    logger.remove()  # Pipecat logs every start/stop at DEBUG to stderr by default
    asyncio.run(main())
