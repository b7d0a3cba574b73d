"""The one loudness rule, and where input samples sit on the clock.

"Audible" is one rule everywhere: a block of int16 samples is loud when its RMS reaches
`threshold_dbfs` (default -40 dBFS, in 10 ms windows). The VAD's speech edges, the client's
ear, the fake STT's endpointing and the benchmark's mouth point all ask these functions, so
they cannot drift apart. Pure numpy, no state.
"""

from __future__ import annotations

import bisect
from collections import deque

import numpy as np

from .clock import NS_PER_S

FULL_SCALE = 32768.0
#: Below this a sound is not heard: the ear, the mouth point and the VAD's edges.
AUDIBLE_DBFS = -40.0
AUDIBLE_WINDOW_MS = 10


def amplitude(dbfs: float) -> float:
    """The int16 amplitude (RMS or peak) `dbfs` below full scale."""
    return FULL_SCALE * 10 ** (dbfs / 20)


def rms(samples: np.ndarray, axis: int = -1) -> np.ndarray:
    """RMS of int16 `samples` along `axis`, in int16 units (float64)."""
    x = samples.astype(np.float64)
    return np.sqrt(np.mean(x * x, axis=axis))


def level_dbfs(samples: np.ndarray, axis: int = -1) -> np.ndarray:
    """RMS level along `axis` in dB relative to full scale (digital silence reads -100)."""
    return 20.0 * np.log10(rms(samples, axis) / FULL_SCALE + 1e-5)


def loud(samples: np.ndarray, threshold_dbfs: float = AUDIBLE_DBFS, axis: int = -1) -> np.ndarray:
    """Whether the RMS along `axis` reaches `threshold_dbfs` (the rule itself)."""
    return rms(samples, axis) >= amplitude(threshold_dbfs)


def loud_windows(samples: np.ndarray, window: int, threshold_dbfs: float = AUDIBLE_DBFS) -> np.ndarray:
    """Loudness of each whole `window`-sample window of 1-D `samples` (a short tail is not judged)."""
    whole = len(samples) - len(samples) % window
    if not whole:
        return np.zeros(0, dtype=bool)
    return loud(samples[:whole].reshape(-1, window), threshold_dbfs)


def _audible_window(rate: int) -> int:
    return rate * AUDIBLE_WINDOW_MS // 1000


def first_loud_sample(samples: np.ndarray, rate: int, threshold_dbfs: float = AUDIBLE_DBFS) -> int | None:
    """First sample of the first loud 10 ms window (None: all quiet)."""
    window = _audible_window(rate)
    hits = np.flatnonzero(loud_windows(samples, window, threshold_dbfs))
    return int(hits[0]) * window if len(hits) else None


def last_loud_sample(samples: np.ndarray, rate: int, threshold_dbfs: float = AUDIBLE_DBFS) -> int:
    """Index just past the last loud 10 ms window (0: all quiet)."""
    window = _audible_window(rate)
    hits = np.flatnonzero(loud_windows(samples, window, threshold_dbfs))
    return int(hits[-1] + 1) * window if len(hits) else 0


class AudioTimeline:
    """Maps positions in an input audio stream to times on the one clock, and back.

    An input frame is created when its last sample has arrived, so the sample at position `p`
    inside a frame that ends at `end` arrived `(end - p) / rate` before the frame's `created_ns`.
    Only recent frames are remembered (speech ends are decided within seconds of happening).
    """

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


__all__ = [
    "AUDIBLE_DBFS",
    "FULL_SCALE",
    "AudioTimeline",
    "amplitude",
    "first_loud_sample",
    "last_loud_sample",
    "level_dbfs",
    "loud",
    "loud_windows",
    "rms",
]
