"""Per-client limits on signalling: how many offers one address may make in a minute.

A caller makes one offer per call (and one per reconnect); a script that makes dozens a minute
is probing or flooding, and each offer costs a peer connection and ICE gathering. Counted per
remote address over a sliding minute on the injected clock; the table of addresses is bounded,
so a spread of addresses cannot grow it without end (the oldest is forgotten first).
"""

from __future__ import annotations

from collections import OrderedDict, deque

from voxframe.pipeline.clock import NS_PER_S, Clock, current_clock

WINDOW_NS = 60 * NS_PER_S
#: Addresses remembered at once (about 100 bytes each).
MAX_ADDRESSES = 10_000


class OfferRate:
    """`allow(address)` is False once `address` has made `per_minute` offers in the last minute."""

    def __init__(self, per_minute: int | None, clock: Clock | None = None) -> None:
        self.per_minute = per_minute
        self.clock = clock or current_clock()
        self._times: OrderedDict[str, deque[int]] = OrderedDict()

    def allow(self, address: str) -> bool:
        if self.per_minute is None:
            return True
        now = self.clock.now_ns()
        times = self._times.pop(address, None) or deque()
        while times and times[0] <= now - WINDOW_NS:
            times.popleft()
        allowed = len(times) < self.per_minute
        if allowed:
            times.append(now)
        self._times[address] = times  # most recent last: the oldest address is evicted first
        if len(self._times) > MAX_ADDRESSES:
            self._times.popitem(last=False)
        return allowed

    def retry_after_s(self, address: str) -> int:
        """Seconds until `address` may offer again (at least 1)."""
        times = self._times.get(address)
        if not times:
            return 1
        return max(1, -(-(times[0] + WINDOW_NS - self.clock.now_ns()) // NS_PER_S))
