"""Maps positions in an input audio stream to times on the one clock, and back.

An input frame is created when its last sample has arrived, so the sample at position `p`
inside a frame that ends at `end` arrived `(end - p) / rate` before the frame's `created_ns`.
Only recent frames are remembered (speech ends are decided within seconds of happening).
"""

from __future__ import annotations

import bisect
from collections import deque

from voxframe.pipeline.clock import NS_PER_S


class AudioTimeline:
    def __init__(self, sample_rate: int, max_frames: int = 1024) -> None:
        self.sample_rate = sample_rate
        self.samples = 0  # stream position: samples received so far
        self._ends: deque[int] = deque(maxlen=max_frames)
        self._times: deque[int] = deque(maxlen=max_frames)

    def append(self, num_samples: int, created_ns: int) -> None:
        """Record a frame of `num_samples` that was created (fully arrived) at `created_ns`."""
        self.samples += num_samples
        self._ends.append(self.samples)
        self._times.append(created_ns)

    def time_of(self, sample: int) -> int | None:
        """Clock time (ns) at which stream position `sample` arrived; None if forgotten/unknown."""
        if not self._ends:
            return None
        i = bisect.bisect_left(self._ends, sample)
        if i == len(self._ends):
            i -= 1
        return self._times[i] - (self._ends[i] - sample) * NS_PER_S // self.sample_rate

    def position_at(self, t_ns: int) -> int:
        """Stream position that arrived at clock time `t_ns` (clipped to what was received)."""
        if not self._times:
            return 0
        i = bisect.bisect_left(self._times, t_ns)
        if i == len(self._times):
            return self.samples
        position = self._ends[i] - (self._times[i] - t_ns) * self.sample_rate // NS_PER_S
        return max(0, min(position, self.samples))


__all__ = ["AudioTimeline"]
