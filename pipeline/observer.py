"""Observers see the frames processors push, synchronously, without a queue hop."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .frames import Frame
    from .processor import Direction, FrameProcessor


class Observer:
    """Override `on_frame` (each event once) or `on_push` (every hop). Both run inline on the
    hot path: keep them short and never block."""

    def on_frame(self, src: FrameProcessor, frame: Frame, direction: Direction, t_ns: int) -> None:
        """A frame's first push, by the processor that made it: called once per frame, and once
        for an event pushed both ways (its `Frame.twin` is not told again)."""

    def on_push(self, src: FrameProcessor, dst: FrameProcessor, frame: Frame, direction: Direction, t_ns: int) -> None:
        """Every hop of every frame, `src` to `dst` (a frame passed on through n processors: n hops)."""
