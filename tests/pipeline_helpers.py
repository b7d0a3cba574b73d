"""Small processors and helpers for the runtime tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio

from voxframe.pipeline import (
    DOWN,
    UP,
    Direction,
    Frame,
    FrameProcessor,
    InputAudioFrame,
    LLMTextFrame,
    PipelineParams,
    PipelineTask,
)


class Recorder(FrameProcessor):
    """Records every frame it sees, per direction, and passes it on."""

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name=name)
        self.down: list[Frame] = []
        self.up: list[Frame] = []
        self._waiters: list[tuple[Callable[[], bool], anyio.Event]] = []

    async def process(self, frame: Frame, direction: Direction) -> None:
        (self.down if direction is DOWN else self.up).append(frame)
        for cond, event in self._waiters:
            if cond():
                event.set()
        await self.push(frame, direction)

    def of(self, kind: type[Frame], direction: Direction = DOWN) -> list[Frame]:
        return [f for f in (self.down if direction is DOWN else self.up) if isinstance(f, kind)]

    async def wait_for(self, cond: Callable[[], bool]) -> None:
        """Wait (at most 5 s) until `cond()` holds, re-checked on every frame this recorder sees."""
        if cond():
            return
        event = anyio.Event()
        entry = (cond, event)
        self._waiters.append(entry)
        try:
            with anyio.fail_after(5):
                await event.wait()
        finally:
            self._waiters.remove(entry)


class Queued(FrameProcessor):
    """A pass-through that declares itself concurrent: frames go through its queue and worker."""

    concurrent = True


class Gate(FrameProcessor):
    """A concurrent processor that holds each data frame until the test opens the gate.

    `busy` is set while it holds a frame, so a test knows the worker is mid-work.
    """

    concurrent = True

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name=name)
        self.busy = anyio.Event()
        self.open = anyio.Event()
        self.cancelled: list[Frame] = []
        self.completed: list[Frame] = []

    async def process(self, frame: Frame, direction: Direction) -> None:
        if frame.is_system:
            await self.push(frame, direction)
            return
        self.busy.set()
        try:
            await self.open.wait()
        except anyio.get_cancelled_exc_class():
            self.cancelled.append(frame)
            raise
        self.completed.append(frame)
        await self.push(frame, direction)


class Worker(FrameProcessor):
    """A concurrent processor that works on each bot-output frame until cancelled."""

    concurrent = True

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name=name)
        self.working = anyio.Event()
        self.cancelled: list[Frame] = []

    async def process(self, frame: Frame, direction: Direction) -> None:
        if not isinstance(frame, LLMTextFrame):
            await self.push(frame, direction)
            return
        self.working.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            self.cancelled.append(frame)
            raise


def audio(i: int) -> InputAudioFrame:
    """A 20 ms user audio frame whose position identifies it."""
    return InputAudioFrame(audio=bytes(640), sample_rate=16_000, pts=i * 320)


@asynccontextmanager
async def running(task: PipelineTask) -> AsyncIterator[PipelineTask]:
    """Run `task` in the background for the body; cancel it if the body did not end it."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(task.run)
        with anyio.fail_after(5):
            await task.wait_started()
        try:
            yield task
        finally:
            if not task.finished:
                await task.cancel()


def quiet_params(**kwargs: object) -> PipelineParams:
    return PipelineParams(idle_timeout_s=None, **kwargs)  # type: ignore[arg-type]


__all__ = ["DOWN", "UP", "Gate", "Queued", "Recorder", "Worker", "audio", "quiet_params", "running"]
