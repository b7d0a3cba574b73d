"""The one test toolkit: a frame recorder, a pipeline harness, a bounded JSON receive, a
process's console.

Every test that watches frames go by uses `Recorder`, every test that runs a pipeline for the
length of a block uses `running`; the transport, provider and embedded helpers keep only what is
specific to them.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import anyio.abc
from anyio.streams.text import TextReceiveStream

from voxframe.pipeline import (
    DOWN,
    Clock,
    Direction,
    Frame,
    FrameProcessor,
    Pipeline,
    PipelineParams,
    PipelineTask,
)
from voxframe.pipeline.clock import _yield_rounds

FrameKind = type[Frame] | tuple[type[Frame], ...]


@dataclass(slots=True)
class Seen:
    """One frame as a recorder saw it: which way it went and when, on the pipeline's clock."""

    frame: Frame
    direction: Direction
    t_ns: int


class Recorder(FrameProcessor):
    """Records every frame passing through it (both ways) with the clock time, and passes it on.

    `direction=None` in the queries means both ways; the default is downstream, where most
    tests look.
    """

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name=name)
        self.seen: list[Seen] = []
        self._changed = anyio.Event()

    async def process(self, frame: Frame, direction: Direction) -> None:
        self.seen.append(Seen(frame, direction, self.clock.now_ns()))
        self._changed.set()
        self._changed = anyio.Event()
        await self.push(frame, direction)

    @property
    def down(self) -> list[Frame]:
        """Every frame seen going downstream, in order."""
        return [s.frame for s in self.seen if s.direction is DOWN]

    @property
    def up(self) -> list[Frame]:
        """Every frame seen going upstream, in order."""
        return [s.frame for s in self.seen if s.direction is not DOWN]

    def seen_of(self, kind: FrameKind, direction: Direction | None = DOWN) -> list[Seen]:
        """The records (frame, direction, time) of the frames of `kind`."""
        return [s for s in self.seen if isinstance(s.frame, kind) and direction in (None, s.direction)]

    def of(self, kind: FrameKind, direction: Direction | None = DOWN) -> list[Frame]:
        """The frames of `kind`, in the order they passed."""
        return [s.frame for s in self.seen_of(kind, direction)]

    def times(self, kind: FrameKind, direction: Direction | None = DOWN) -> list[int]:
        """When each frame of `kind` passed, on the pipeline's clock."""
        return [s.t_ns for s in self.seen_of(kind, direction)]

    async def wait_for(self, condition: Callable[[], object], timeout_s: float = 30.0) -> None:
        """Wait until `condition()` is true, re-checked whenever a frame passes (bounded)."""
        with anyio.fail_after(timeout_s):
            while not condition():
                await self._changed.wait()


@asynccontextmanager
async def running(
    pipeline: PipelineTask | Sequence[FrameProcessor], clock: Clock | None = None, **params: object
) -> AsyncIterator[PipelineTask]:
    """Run a pipeline for the duration of the block, then cancel it (if the body did not end it).

    `pipeline` is a task, or the processors of one built here with no idle timeout, `clock` and
    `params`. The body starts once the start frame went through and every task has blocked, so a
    virtual clock can be moved at once.
    """
    if isinstance(pipeline, PipelineTask):
        if clock is not None or params:
            raise TypeError("clock and params go to the PipelineTask, not to running()")
        task = pipeline
    else:
        quiet = PipelineParams(idle_timeout_s=None, **params)  # type: ignore[arg-type]
        task = PipelineTask(Pipeline(list(pipeline)), quiet, clock=clock)
    async with anyio.create_task_group() as tg:
        tg.start_soon(task.run)
        with anyio.fail_after(30):  # the embedded models load in the start frame
            await task.wait_started()
        await yield_rounds()
        try:
            yield task
        finally:
            await task.cancel()


class JSONSocket(Protocol):
    async def recv(self) -> str | bytes: ...


async def receive_until(
    ws: JSONSocket, predicate: Callable[[dict[str, Any]], bool], within_s: float = 5.0
) -> list[dict[str, Any]]:
    """The JSON messages `ws` receives, up to and including the first that `predicate` accepts."""
    got: list[dict[str, Any]] = []
    with anyio.fail_after(within_s):
        while True:
            msg = json.loads(await ws.recv())
            got.append(msg)
            if predicate(msg):
                return got


__all__ = ["Recorder", "Seen", "receive_until", "running"]


async def yield_rounds(rounds: int = 50) -> None:
    """Let tasks made runnable run: `rounds` passes through the event loop (no stronger promise).

    asyncio cannot report that every task is blocked (trio's `wait_all_tasks_blocked`), so a
    test that needs a fact settled waits for an event; this is for letting a just-woken chain
    of tasks reach its next await on a virtual clock.
    """
    await _yield_rounds(rounds)


class Console:
    """A process's merged output, line by line, with a wait for the n-th line that matches."""

    def __init__(self, process: anyio.abc.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._changed = anyio.Event()
        self.ended = anyio.Event()

    async def read(self) -> None:
        """Run in a task group for the process's life: collects its lines as they come."""
        assert self.process.stdout is not None
        buffer = ""
        async for text in TextReceiveStream(self.process.stdout):
            buffer += text
            *complete, buffer = buffer.split("\n")
            self.lines += complete
            self._changed.set()
            self._changed = anyio.Event()
        if buffer:
            self.lines.append(buffer)
        self.ended.set()
        self._changed.set()

    async def read_to_end(self) -> None:
        await self.ended.wait()

    def matching(self, pattern: str) -> list[re.Match[str]]:
        return [m for m in (re.search(pattern, line) for line in self.lines) if m]

    async def wait_for(self, pattern: str, count: int = 1) -> re.Match[str]:
        """The `count`-th line matching the regular expression; AssertionError if the process
        ends first (bound the wait with `anyio.fail_after`)."""
        while len(found := self.matching(pattern)) < count:
            if self.ended.is_set():
                raise AssertionError(f"exited before printing {pattern!r} x{count}:\n" + "\n".join(self.lines))
            await self._changed.wait()
        return found[count - 1]
