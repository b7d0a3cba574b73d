"""The one percentile every benchmark reports with, so a p50 in one table means a p50 in another.

Linear interpolation between ranks (numpy's default, and what `statistics.median` gives for p50):
with few samples a p95 lies between the two largest values rather than being the largest, so
say how many samples stand behind a figure (every table does).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def percentile(values: Iterable[float], q: float) -> float:
    """The q-th percentile (q in 0..100) of a non-empty collection of values."""
    array = np.asarray(list(values), dtype=np.float64)
    if array.size == 0:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in 0..100, got {q}")
    return float(np.percentile(array, q))


def p50(values: Iterable[float]) -> float:
    return percentile(values, 50)


__all__ = ["p50", "percentile"]
