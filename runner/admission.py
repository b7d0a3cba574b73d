"""Admission by measured headroom: refuse new calls while the loop runs late or packets wait.

Every call shares one event loop per process; when it cannot keep up, every call's audio waits.
Two signals see it, sampled together every 100 ms (with `BotMetrics`' loop-lag probe):

* the loop lag, how late a short timer fires: decoding, VAD hops, pacing, signalling;
* the read lateness, how late the callers' packets are read against their RTP timestamps
  (`Session.read_lateness_s`), the median over the live sessions. Under overload the callers'
  audio waits in the kernel's UDP receive buffers, seconds of it, while the loop still fires a
  timer nearly on time between two reads: the loop lag alone said 2.3 s where callers heard
  replies after 9-10 s. The median over sessions, so one caller's own bad network does not close
  the door on everyone.

While the median of either over the last `window_s` is above its limit, the server holds new
offers (503 "overloaded" with Retry-After, logged) and running calls go on; it admits again once
both medians are under half their limits (hysteresis, so a load at the edge does not flap).
"""

from __future__ import annotations

import logging
import statistics
from collections import deque
from dataclasses import dataclass

from voxframe.pipeline.clock import NS_PER_S, Clock, current_clock
from voxframe.transports.webrtc import Session, WebRTCServer

logger = logging.getLogger("voxframe")
HOLD = "overloaded"


@dataclass(slots=True)
class AdmissionOptions:
    #: The median loop lag above which new calls are refused (None: never refuse on lag).
    max_lag_s: float | None = 0.03
    #: The median read lateness (over sessions, then over the window) above which new calls are
    #: refused (None: never refuse on it). Above any jitter buffer's worth: packets this late
    #: have waited in a queue, not on the network's jitter.
    max_read_late_s: float | None = 0.1
    #: How much recent history the medians are taken over.
    window_s: float = 2.0


def read_lateness_s(server: WebRTCServer) -> float:
    """The median over the server's WebRTC sessions of how late their packets are read (0: none)."""
    late = [s.read_lateness_s for s in list(server.sessions.values()) if isinstance(s, Session)]
    return statistics.median(late) if late else 0.0


class Admission:
    """Feed it loop-lag samples (`observe`, which reads the sessions' read lateness beside each);
    it holds and admits `server` as the medians move."""

    def __init__(self, server: WebRTCServer, options: AdmissionOptions | None = None, clock: Clock | None = None):
        self.server = server
        self.options = options or AdmissionOptions()
        self.clock = clock or current_clock()
        self._samples: deque[tuple[int, float, float]] = deque()
        self._held = False

    @property
    def holding(self) -> bool:
        return self._held

    def observe(self, lag_s: float, read_late_s: float | None = None) -> None:
        """One loop-lag sample; `read_late_s` None reads the sessions' median read lateness now."""
        lag_limit, late_limit = self.options.max_lag_s, self.options.max_read_late_s
        if lag_limit is None and late_limit is None:
            return
        late = read_lateness_s(self.server) if read_late_s is None else read_late_s
        now = self.clock.now_ns()
        self._samples.append((now, lag_s, late))
        horizon = now - round(self.options.window_s * NS_PER_S)
        while self._samples and self._samples[0][0] < horizon:
            self._samples.popleft()
        lag = statistics.median(s[1] for s in self._samples)
        late = statistics.median(s[2] for s in self._samples)
        lag_over = lag_limit is not None and lag > lag_limit
        late_over = late_limit is not None and late > late_limit
        calm = (lag_limit is None or lag < lag_limit / 2) and (late_limit is None or late < late_limit / 2)
        if not self._held and (lag_over or late_over):
            self._held = True
            self.server.hold(HOLD)
            logger.warning(
                "overloaded: event-loop lag median %.0f ms, packets read %.0f ms late over %g s (limits %s, %s); "
                "refusing new calls, %d running", lag * 1000, late * 1000, self.options.window_s,
                _ms(lag_limit), _ms(late_limit), len(self.server.sessions),
            )  # fmt: skip
        elif self._held and calm:
            self._held = False
            self.server.admit(HOLD)
            logger.info("admitting again: loop lag median %.0f ms, packets read %.0f ms late", lag * 1000, late * 1000)


def _ms(limit_s: float | None) -> str:
    return "off" if limit_s is None else f"{limit_s * 1000:.0f} ms"


__all__ = ["Admission", "AdmissionOptions", "read_lateness_s"]
