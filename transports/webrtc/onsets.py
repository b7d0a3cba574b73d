"""Energy-based speech onset/offset detection on audio as it arrives, on the monotonic clock.

Used by the headless client to find when the bot's audio reached the ear. Each received chunk
is split into 10 ms windows; a window is "loud" above `threshold_dbfs`. An onset is the first
loud window after at least `min_gap_s` of quiet; the offset is the end of the last loud window
before such a gap.

Times are when the audio would leave the speaker of an ear with no jitter buffer: a chunk with
sound in it starts playing when it arrives, or when the previous chunk with sound has finished
playing if that is later (by at most `max_playout_lag_ms`; beyond that the ear skips ahead).
Quiet chunks play on arrival and hold nothing up: a real jitter buffer (WebRTC's NetEq) drops
low-energy audio first to catch up. A sample at offset `j` of a chunk plays at that chunk's
start plus `j / rate`: the "first audible sample at the ear" of mouth-to-ear latency.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from voxframe.pipeline.audio import amplitude, loud
from voxframe.pipeline.clock import NS_PER_S


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
    #: How far the ear's playout may fall behind arrivals before it skips ahead.
    max_playout_lag_ms: int = 60


class OnsetDetector:
    def __init__(self, sample_rate: int, options: OnsetOptions | None = None) -> None:
        self.sample_rate = sample_rate
        self.options = options or OnsetOptions()
        self.segments: list[SpeechSegment] = []
        self._window = sample_rate * self.options.window_ms // 1000
        self._threshold = amplitude(self.options.threshold_dbfs)
        self._gap_ns = int(self.options.min_gap_s * NS_PER_S)
        self._carry = np.zeros(0, dtype=np.float64)
        self._carry_start_ns = 0
        self._play_end_ns: int | None = None
        self._max_lag_ns = self.options.max_playout_lag_ms * 1_000_000
        self._last_loud_end_ns: int | None = None

    def feed(self, samples: np.ndarray, arrival_ns: int) -> None:
        """Mono int16 samples of one received chunk that arrived at `arrival_ns`."""
        quiet = not len(samples) or float(np.max(np.abs(samples))) < self._threshold
        start_ns = self._playout_start(arrival_ns, len(samples), catch_up=quiet)
        carried = len(self._carry)
        data = np.concatenate([self._carry, samples.astype(np.float64)])
        whole = len(data) - len(data) % self._window

        def time_of(index: int) -> int:
            if index < carried:
                return self._carry_start_ns + index * NS_PER_S // self.sample_rate
            return start_ns + (index - carried) * NS_PER_S // self.sample_rate

        self._carry, self._carry_start_ns = data[whole:], time_of(whole)
        if whole:
            windows = data[:whole].reshape(-1, self._window)
            window_ns = self._window * NS_PER_S // self.sample_rate
            for i in np.flatnonzero(loud(windows, self.options.threshold_dbfs)):
                begin = time_of(int(i) * self._window)
                self._loud(begin, begin + window_ns)
        self.close_gaps(arrival_ns)

    def _playout_start(self, arrival_ns: int, samples: int, *, catch_up: bool) -> int:
        """Quiet chunks play on arrival and delay nothing; loud ones queue behind loud ones."""
        if catch_up:
            return arrival_ns
        end = self._play_end_ns
        start = end if end is not None and 0 < end - arrival_ns <= self._max_lag_ns else arrival_ns
        self._play_end_ns = start + samples * NS_PER_S // self.sample_rate
        return start

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
