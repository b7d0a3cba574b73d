"""Admission by measured headroom: refuse new calls while the event loop runs late.

Every call shares one event loop per process; when it cannot keep up, every call's audio waits
(the callers hear replies late, the server's own figures look fine). How late a short timer fires
(the loop lag, which `BotMetrics` samples every 100 ms) is the one signal that covers them all:
decoding, VAD hops, pacing, signalling. While the median lag over the last `window_s` is above
`max_lag_s`, the server holds new offers (503 "overloaded" with Retry-After, logged) and running
calls go on; it admits again once the median is back under half of it (hysteresis, so a load at
the edge does not flap).
"""

from __future__ import annotations

import logging
import statistics
from collections import deque
from dataclasses import dataclass

from voxframe.pipeline.clock import NS_PER_S, Clock, current_clock
from voxframe.transports.webrtc import WebRTCServer

logger = logging.getLogger("voxframe")
HOLD = "overloaded"


@dataclass(slots=True)
class AdmissionOptions:
    #: The median loop lag above which new calls are refused (None: never refuse on lag).
    max_lag_s: float | None = 0.03
    #: How much recent lag the median is taken over.
    window_s: float = 2.0


class Admission:
    """Feed it loop-lag samples (`observe`); it holds and admits `server` as the median moves."""

    def __init__(self, server: WebRTCServer, options: AdmissionOptions | None = None, clock: Clock | None = None):
        self.server = server
        self.options = options or AdmissionOptions()
        self.clock = clock or current_clock()
        self._samples: deque[tuple[int, float]] = deque()
        self._held = False

    @property
    def holding(self) -> bool:
        return self._held

    def observe(self, lag_s: float) -> None:
        limit = self.options.max_lag_s
        if limit is None:
            return
        now = self.clock.now_ns()
        self._samples.append((now, lag_s))
        horizon = now - round(self.options.window_s * NS_PER_S)
        while self._samples and self._samples[0][0] < horizon:
            self._samples.popleft()
        median = statistics.median(lag for _, lag in self._samples)
        if not self._held and median > limit:
            self._held = True
            self.server.hold(HOLD)
            logger.warning(
                "overloaded: event-loop lag median %.0f ms over %g s (limit %.0f ms); refusing new calls, "
                "%d running", median * 1000, self.options.window_s, limit * 1000, len(self.server.sessions),
            )  # fmt: skip
        elif self._held and median < limit / 2:
            self._held = False
            self.server.admit(HOLD)
            logger.info("admitting again: event-loop lag median %.0f ms", median * 1000)


__all__ = ["Admission", "AdmissionOptions"]
