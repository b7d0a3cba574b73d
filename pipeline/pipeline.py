"""Composition: a `Pipeline` is a chain, a `ParallelPipeline` runs branches side by side.

Linking flattens nesting: the processors around a nested pipeline point straight at its first
and last processors, so nesting adds no hop.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence
from itertools import pairwise

from .frames import CancelFrame, EndFrame, Frame, StartFrame
from .processor import DOWN, UP, Direction, FrameProcessor


class Pipeline(FrameProcessor):
    def __init__(self, processors: Sequence[FrameProcessor], *, name: str | None = None) -> None:
        super().__init__(name=name)
        self.processors: list[FrameProcessor] = list(processors) or [FrameProcessor(name=f"{self.name}.empty")]
        for a, b in pairwise(self.processors):
            a.link(b)

    def _entry(self, direction: Direction) -> FrameProcessor:
        edge = self.processors[0] if direction is DOWN else self.processors[-1]
        return edge._entry(direction)

    def _set_next(self, processor: FrameProcessor) -> None:
        self.processors[-1]._set_next(processor)

    def _set_prev(self, processor: FrameProcessor) -> None:
        self.processors[0]._set_prev(processor)

    async def _receive(self, frame: Frame, direction: Direction) -> None:
        await self._entry(direction)._receive(frame, direction)

    def iter_processors(self) -> Iterator[FrameProcessor]:
        for processor in self.processors:
            yield from processor.iter_processors()


# Frames that leave a parallel pipeline only once every branch has passed them on.
_BARRIER_FRAMES = (StartFrame, EndFrame, CancelFrame)


class ParallelPipeline(FrameProcessor):
    """Every branch receives every frame; what the branches emit is merged.

    A frame that several branches pass through leaves once, when the first branch emits it
    (lifecycle frames: when the last does). Already-emitted frames are remembered in a weak
    set, so the bookkeeping lives only as long as the frames themselves.
    """

    def __init__(self, *branches: Sequence[FrameProcessor], name: str | None = None) -> None:
        super().__init__(name=name)
        if not branches:
            raise ValueError("ParallelPipeline needs at least one branch")
        self.branches = [Pipeline(branch, name=f"{self.name}.branch{i}") for i, branch in enumerate(branches)]
        self._emitted: weakref.WeakSet[Frame] = weakref.WeakSet()
        self._barrier: dict[int, int] = {}
        for branch in self.branches:
            branch._set_next(_BranchExit(self, DOWN))
            branch._set_prev(_BranchExit(self, UP))

    async def process(self, frame: Frame, direction: Direction) -> None:
        for branch in self.branches:
            await branch._entry(direction)._receive(frame, direction)

    async def _merge(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, _BARRIER_FRAMES):
            left = self._barrier.get(frame.id, len(self.branches)) - 1
            if left:
                self._barrier[frame.id] = left
                return
            self._barrier.pop(frame.id, None)
        elif frame in self._emitted:
            return
        else:
            self._emitted.add(frame)
        await self.push(frame, direction)

    def iter_processors(self) -> Iterator[FrameProcessor]:
        yield self
        for branch in self.branches:
            yield from branch.iter_processors()


class _BranchExit(FrameProcessor):
    """Where a branch's frames come out; hands them to the parallel pipeline's merge."""

    def __init__(self, parallel: ParallelPipeline, direction: Direction) -> None:
        super().__init__(name=f"{parallel.name}.exit.{direction.value}")
        self._parallel = parallel
        self._direction = direction

    async def _receive(self, frame: Frame, direction: Direction) -> None:
        await self._parallel._merge(frame, direction)


__all__ = ["ParallelPipeline", "Pipeline"]
