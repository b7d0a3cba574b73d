"""Shared helpers for the transport tests: a frame recorder, test signals, a task harness."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import numpy as np

from voxframe.pipeline import (
    Direction,
    Frame,
    FrameProcessor,
    Pipeline,
    PipelineParams,
    PipelineTask,
    VirtualClock,
)
from voxframe.pipeline.clock import wait_all_tasks_blocked

MS = 1_000_000


@dataclass(slots=True)
class Seen:
    frame: Frame
    direction: Direction
    t_ns: int


class Recorder(FrameProcessor):
    """Records every frame passing through it (both directions) with the clock time."""

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name=name)
        self.seen: list[Seen] = []

    async def process(self, frame: Frame, direction: Direction) -> None:
        self.seen.append(Seen(frame, direction, self.clock.now_ns()))
        await self.push(frame, direction)

    def of(self, kind: type[Frame], direction: Direction | None = None) -> list[Seen]:
        return [s for s in self.seen if isinstance(s.frame, kind) and (direction is None or s.direction is direction)]


def tone(freq_hz: float, duration_s: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    """An int16 sine tone."""
    t = np.arange(int(duration_s * rate)) / rate
    return np.round(amplitude * 32767 * np.sin(2 * np.pi * freq_hz * t)).astype(np.int16)


def dominant_hz(pcm: bytes, rate: int) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


async def advance(clock: VirtualClock, delta_ns: int) -> None:
    """Let every runnable task block at the current time first, then move the clock.

    (`VirtualClock.advance` moves time before tasks woken by the test itself have run.)
    """
    await wait_all_tasks_blocked()
    await clock.advance(delta_ns)


@asynccontextmanager
async def running(processors: Sequence[FrameProcessor], clock: VirtualClock) -> AsyncIterator[PipelineTask]:
    """Run a pipeline on a virtual clock for the duration of the block, then cancel it."""
    task = PipelineTask(Pipeline(list(processors)), PipelineParams(idle_timeout_s=None), clock=clock)
    async with anyio.create_task_group() as tg:
        tg.start_soon(task.run)
        await wait_all_tasks_blocked()
        try:
            yield task
        finally:
            await task.cancel()
