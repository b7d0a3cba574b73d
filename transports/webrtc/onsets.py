"""Energy-based speech onset/offset detection on audio as it arrives, on the monotonic clock.

Used by the headless client to find when the bot's audio reached the ear. Each received chunk
is split into 10 ms windows; a window is "loud" above `threshold_dbfs`. An onset is the first
loud window after at least `min_gap_s` of quiet; the offset is the end of the last loud window
before such a gap. Times are sample-accurate: a window's time is the arrival time of the chunk
that carried it, minus how much later than the window the chunk's last sample was.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NS_PER_S = 1_000_000_000


@dataclass(slots=True)
class SpeechSegment:
    onset_ns: int
    offset_ns: int | None = None


@dataclass(slots=True)
class OnsetOptions:
    threshold_dbfs: float = -40.0
    window_ms: int = 10
    #: Quiet this long ends a segment (and must precede the next onset).
    min_gap_s: float = 0.25


class OnsetDetector:
    def __init__(self, sample_rate: int, options: OnsetOptions | None = None) -> None:
        self.sample_rate = sample_rate
        self.options = options or OnsetOptions()
        self.segments: list[SpeechSegment] = []
        self._window = sample_rate * self.options.window_ms // 1000
        self._threshold = 32768.0 * 10 ** (self.options.threshold_dbfs / 20)
        self._gap_ns = int(self.options.min_gap_s * NS_PER_S)
        self._carry = np.zeros(0, dtype=np.float64)
        self._last_loud_end_ns: int | None = None

    def feed(self, samples: np.ndarray, arrival_ns: int) -> None:
        """Mono int16 samples that arrived at `arrival_ns` (their last sample is 'now')."""
        data = np.concatenate([self._carry, samples.astype(np.float64)])
        whole = len(data) - len(data) % self._window
        self._carry = data[whole:]
        if not whole:
            return
        windows = data[:whole].reshape(-1, self._window)
        rms = np.sqrt(np.mean(windows * windows, axis=1))
        end_of_data_ns = arrival_ns - len(self._carry) * NS_PER_S // self.sample_rate
        window_ns = self._window * NS_PER_S // self.sample_rate
        first_start_ns = end_of_data_ns - len(rms) * window_ns
        for i in np.flatnonzero(rms >= self._threshold):
            start = first_start_ns + int(i) * window_ns
            self._loud(start, start + window_ns)
        self.close_gaps(arrival_ns)

    def _loud(self, start_ns: int, end_ns: int) -> None:
        last = self._last_loud_end_ns
        if last is None or start_ns - last >= self._gap_ns:
            if self.segments and self.segments[-1].offset_ns is None:
                self.segments[-1].offset_ns = last
            self.segments.append(SpeechSegment(onset_ns=start_ns))
        self._last_loud_end_ns = end_ns

    def close_gaps(self, now_ns: int) -> None:
        """Close the open segment if it has been quiet for `min_gap_s` by `now_ns`."""
        last = self._last_loud_end_ns
        if self.segments and self.segments[-1].offset_ns is None and last is not None and now_ns - last >= self._gap_ns:
            self.segments[-1].offset_ns = last

    @property
    def last_loud_end_ns(self) -> int | None:
        """When the last loud window heard so far ended."""
        return self._last_loud_end_ns

    def onsets_after(self, t_ns: int) -> list[int]:
        return [s.onset_ns for s in self.segments if s.onset_ns >= t_ns]
