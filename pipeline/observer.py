"""Observers see every frame a processor pushes, synchronously, without a queue hop."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .frames import Frame
    from .processor import Direction, FrameProcessor


class Observer:
    """Override `on_push`. It runs inline on the hot path: keep it short and never block."""

    def on_push(self, src: FrameProcessor, dst: FrameProcessor, frame: Frame, direction: Direction, t_ns: int) -> None:
        raise NotImplementedError
