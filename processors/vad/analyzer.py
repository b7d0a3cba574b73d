"""What a voice-activity model must provide to the turn-taking state machine.

An analyzer scores fixed windows of 16-bit mono audio with a speech confidence in [0, 1]. It
keeps per-stream state (recurrent state, context samples), so each VAD processor owns one;
the heavy model behind it is loaded once per process and shared.
"""

from __future__ import annotations

from typing import Protocol, cast

import numpy as np

from voxframe.pipeline.audio import level_dbfs, loud

from .state import ScoredWindow


class VADAnalyzer(Protocol):
    #: Rates the model accepts, in Hz.
    sample_rates: tuple[int, ...]

    def window_samples(self, sample_rate: int) -> int:
        """Samples per scored window at `sample_rate`."""
        ...

    def load(self) -> None:
        """Load the model (blocking: called in a worker thread; cheap once loaded in the process)."""
        ...

    def reset(self, sample_rate: int) -> None:
        """Start a new stream at `sample_rate`; ValueError if the model cannot take that rate."""
        ...

    def confidences(self, windows: np.ndarray) -> np.ndarray:
        """Speech confidence per window; `windows` is int16 of shape (n, window_samples).

        Blocking (called in a worker thread); windows arrive in stream order, batched.
        """
        ...


_BLOCKS = 8  # level blocks per window (4 ms for a 512-sample window at 16 kHz)


def all_quiet(samples: np.ndarray, loud_dbfs: float, window_samples: int) -> bool:
    """Whether every level block of int16 `samples` (as `score_windows` cuts a window of
    `window_samples`; the last block may be short) is below `loud_dbfs`."""
    block = max(1, window_samples // _BLOCKS)
    whole = len(samples) - len(samples) % block
    if whole and loud(samples[:whole].reshape(-1, block), loud_dbfs).any():
        return False
    return whole == len(samples) or not bool(loud(samples[whole:], loud_dbfs))


def score_windows(
    analyzer: VADAnalyzer, windows: np.ndarray, first_sample: int, loud_dbfs: float
) -> list[ScoredWindow]:
    """Confidence and loudness profile of consecutive windows starting at `first_sample` (blocking)."""
    count, size = windows.shape
    confidences = analyzer.confidences(windows).tolist()
    volumes = level_dbfs(windows).tolist()
    block = size // _BLOCKS
    loud_blocks = loud(windows[:, : block * _BLOCKS].reshape(count, _BLOCKS, block), loud_dbfs)
    any_loud = cast(list[bool], loud_blocks.any(axis=1).tolist())
    first = np.argmax(loud_blocks, axis=1).tolist()
    last = (_BLOCKS - np.argmax(loud_blocks[:, ::-1], axis=1)).tolist()
    trailing_quiet = ~loud_blocks[:, ::-1]
    tail = np.where(trailing_quiet.any(axis=1), _BLOCKS - np.argmax(trailing_quiet, axis=1), 0).tolist()
    out = []
    for i in range(count):
        start = first_sample + i * size
        has = any_loud[i]
        out.append(
            ScoredWindow(
                start=start,
                end=start + size,
                confidence=confidences[i],
                volume_dbfs=volumes[i],
                first_loud=start + first[i] * block if has else None,
                last_loud=start + last[i] * block if has else None,
                tail_run=start + tail[i] * block if loud_blocks[i, -1] else None,
            )
        )
    return out


__all__ = ["VADAnalyzer", "all_quiet", "score_windows"]
