"""Small processors and helpers for the runtime tests (the recorder and harness are in `tests.support`)."""

from __future__ import annotations

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
)


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


def quiet_params(**kwargs: object) -> PipelineParams:
    return PipelineParams(idle_timeout_s=None, **kwargs)  # type: ignore[arg-type]


__all__ = ["DOWN", "UP", "Gate", "Queued", "Worker", "audio", "quiet_params"]
