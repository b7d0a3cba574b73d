"""How late a session's packets are read: the receive-queue wait the event loop's lag misses.

When a process cannot keep up, callers' packets wait in the kernel's UDP receive buffers (megabytes:
seconds of audio) before the loop reads them; a timer on the loop still fires nearly on time
between two reads, so the loop lag stays small while every caller hears replies seconds late.

A packet's *transit* is when it was read (the session's clock) less when it was captured (its
RTP timestamp, in ns). The sender's clock is unknown, so transit has an unknown offset; the
smallest transit seen stands for "read at once", and a packet's read lateness is its transit
over that baseline. It covers the network's queueing too (a caller's own bufferbloat), which is
why admission takes the median over sessions, not the worst one.

The baseline creeps up by `DRIFT_ALLOWANCE` (1 ms per second of arrivals), so a sender clock that
runs slow against ours (tens of ppm) never reads as growing lateness, while a backlog that grows
faster than that does. A sequence jump (a restarted sender) starts afresh. `lateness_ns` is
smoothed (gain 1/16, as RFC 3550's jitter) so one delayed packet does not move admission.
"""

from __future__ import annotations

from voxframe.pipeline.clock import NS_PER_S

_RTP_RATE = 48_000
#: A jump of this many sequence numbers (either way) is a new stream, not reordering.
_RESYNC_DISTANCE = 1000
#: How fast the baseline may rise (ns per ns of arrival time): absorbs clock drift up to 1000 ppm.
DRIFT_ALLOWANCE = 0.001


class ReadLateness:
    """Feed it every packet as it is read (`observe`); `lateness_ns` is how late they are read."""

    def __init__(self) -> None:
        self.lateness_ns = 0.0
        self._base: float | None = None
        self._last_arrival_ns = 0
        self._last_seq = 0

    def observe(self, arrival_ns: int, rtp_timestamp: int, sequence_number: int) -> None:
        transit = arrival_ns - rtp_timestamp * NS_PER_S // _RTP_RATE
        jump = abs(((sequence_number - self._last_seq + 0x8000) & 0xFFFF) - 0x8000) > _RESYNC_DISTANCE
        if self._base is None or jump:
            self._base, self.lateness_ns = transit, 0.0
        else:
            self._base = min(transit, self._base + DRIFT_ALLOWANCE * max(0, arrival_ns - self._last_arrival_ns))
            self.lateness_ns += (transit - self._base - self.lateness_ns) / 16
        self._last_arrival_ns, self._last_seq = arrival_ns, sequence_number
