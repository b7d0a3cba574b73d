"""Low-latency audio receive for aiortc: reorder only when needed, never hold in-order packets.

aiortc's audio jitter buffer (`JitterBuffer(capacity=16, prefetch=4)`) releases a frame only
once four later frames are buffered, so every packet waits 80 ms; it also releases one frame
per arriving packet, so a single lost packet stalls audio until 16 packets have piled up.
Neither helps a consumer that does not play audio out on a clock (a speech pipeline, or a client
that timestamps what it hears).

`ReorderStage` sits in front of the receiver instead: a packet that is the next in sequence
goes to the decoder at once; a packet that arrives early waits at most `reorder_window` later
packets for the gap to fill, after which the gap is declared lost and playback moves on. Late
packets (behind what was already released) are dropped and counted. The receiver's own jitter
buffer is replaced by a pass-through, so it adds nothing.

By default (`decode_inline`) the released packet also skips aiortc's decoder thread: aiortc
still does its bookkeeping (statistics, RTCP reports) but its jitter buffer swallows the packet,
and a `DecodedAudioTrack` decodes it on the spot to the consumer's rate (see `_decode`).

The window adapts to the jitter it measures (the RFC 3550 interarrival jitter, on the
session's clock): a packet delayed by d ms behind its successors arrives about d / 20 packets
late, so the window is `JITTER_SPREAD * jitter / packet time` packets (rounded), within
`[min_reorder_window, max_reorder_window]`. It grows at once when jitter rises and shrinks one
packet per `_SHRINK_HOLD` packets once the network calms (jitter decays with a 1/16 gain), so a
calm spell between bursts does not reopen the door to late drops. Waiting costs nothing while
packets come in order: the window only delays audio after a gap. `reorder_window=N` pins it.

`ReceiveOptions(aiortc_prefetch=N)` restores aiortc's buffer with prefetch N, for comparison.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiortc import RTCRtpReceiver
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket

from voxframe.pipeline.clock import NS_PER_S, Clock, current_clock

from ._decode import DecodedAudioTrack
from ._hooks import hook_error, require_attribute, require_parameters, require_source
from ._lateness import ReadLateness

_HALF_SEQ = 1 << 15
#: A jump this far (either way) means a new stream (the sender restarted), not reordering.
_RESYNC_DISTANCE = 1000
#: RTP clock of Opus (the only audio codec decoded here).
_RTP_RATE = 48_000
#: Window = this many jitter estimates, in packets: mean |delay difference| underestimates the spread.
JITTER_SPREAD = 3.0
#: Packets between two one-packet shrinks of the window.
_SHRINK_HOLD = 50


def _seq_delta(a: int, b: int) -> int:
    """a - b on the 16-bit sequence circle, in [-32768, 32767]."""
    return ((a - b + _HALF_SEQ) & 0xFFFF) - _HALF_SEQ


@dataclass(slots=True)
class ReceiveOptions:
    #: Later packets to wait for a missing one before declaring it lost (0: never wait); None:
    #: adapt to measured jitter within the bounds below.
    reorder_window: int | None = None
    #: 0: on a calm network a gap is concealed as soon as the next packet shows it (each packet
    #: held for a gap is 20 ms more that a real-time consumer downstream never gets back).
    min_reorder_window: int = 0
    max_reorder_window: int = 10
    #: Use aiortc's own jitter buffer with this prefetch instead (aiortc's default is 4).
    aiortc_prefetch: int | None = None
    #: Decode on arrival into `ReorderStage.decoded` instead of aiortc's decoder thread.
    decode_inline: bool = True


@dataclass(slots=True)
class ReceiveStatistics:
    released: int = 0
    late_dropped: int = 0
    lost: int = 0
    reordered: int = 0
    #: Interarrival jitter (RFC 3550), in ms, as last measured.
    jitter_ms: float = 0.0
    #: The largest reorder window used so far.
    max_window: int = 0


class AdaptiveWindow:
    """The reorder window as a function of measured jitter (see the module docstring)."""

    def __init__(self, low: int, high: int) -> None:
        if not 0 <= low <= high:
            raise ValueError(f"reorder window bounds must satisfy 0 <= min <= max, got {low}, {high}")
        self.low, self.high = low, high
        self.value = low
        self.jitter_ns = 0.0
        self._last_transit: int | None = None
        self._packet_ns = 20_000_000  # the packet time browsers and aiortc send
        self._since_shrink = 0

    def observe(self, arrival_ns: int, rtp_timestamp: int) -> int:
        """Take one arrival into the jitter estimate; returns the window to use now."""
        transit = arrival_ns - rtp_timestamp * NS_PER_S // _RTP_RATE
        if self._last_transit is not None:
            difference = abs(transit - self._last_transit)
            if difference < NS_PER_S:  # a timestamp jump (a new stream) is not jitter
                self.jitter_ns += (difference - self.jitter_ns) / 16
        self._last_transit = transit
        target = min(self.high, max(self.low, math.floor(JITTER_SPREAD * self.jitter_ns / self._packet_ns + 0.5)))
        self._since_shrink += 1
        if target >= self.value:
            self.value, self._since_shrink = target, 0
        elif self._since_shrink >= _SHRINK_HOLD:
            self.value, self._since_shrink = self.value - 1, 0
        return self.value


class ReorderStage:
    """Releases RTP packets to `deliver` in sequence order, holding only to repair reordering.

    With `ordered=False` it only records arrivals and passes packets straight on (used when
    aiortc's own jitter buffer does the ordering). `last_arrival_ns` (on `clock`, the
    session's) tells the session whether the caller is still sending.
    """

    def __init__(
        self,
        deliver: Callable[[RtpPacket, int], Awaitable[None]],
        reorder_window: int | None,
        *,
        ordered: bool = True,
        clock: Clock | None = None,
        bounds: tuple[int, int] = (0, 10),
    ) -> None:
        """`reorder_window=None` adapts the window to jitter within `bounds`."""
        self._deliver = deliver
        self._clock = clock or current_clock()
        self._adaptive = AdaptiveWindow(*bounds) if reorder_window is None else None
        self._window = bounds[0] if reorder_window is None else max(0, reorder_window)
        self._ordered = ordered
        self._next: int | None = None
        self._held: dict[int, tuple[RtpPacket, int]] = {}
        self.stats = ReceiveStatistics()
        self.last_arrival_ns = 0
        #: How late packets are read (receive-queue wait; see `_lateness`).
        self.read_lateness = ReadLateness()
        #: The caller's audio, when decoded inline; else read aiortc's remote track.
        self.decoded: DecodedAudioTrack | None = None

    @property
    def window(self) -> int:
        """Later packets a missing one is waited for, now."""
        return self._window

    async def add(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        self.last_arrival_ns = self._clock.now_ns()
        self.read_lateness.observe(self.last_arrival_ns, packet.timestamp, packet.sequence_number)
        if self._adaptive is not None:
            self._window = self._adaptive.observe(self.last_arrival_ns, packet.timestamp)
            self.stats.jitter_ms = self._adaptive.jitter_ns / 1e6
        self.stats.max_window = max(self.stats.max_window, self._window)
        if not self._ordered:
            self.stats.released += 1
            await self._deliver(packet, arrival_time_ms)
            return
        seq = packet.sequence_number
        if self._next is None:
            self._next = seq
        delta = _seq_delta(seq, self._next)
        if abs(delta) > _RESYNC_DISTANCE:
            self._held.clear()
            self._next, delta = seq, 0
        if delta < 0:
            self.stats.late_dropped += 1
            return
        if delta > 0:
            self.stats.reordered += 1
        self._held[seq] = (packet, arrival_time_ms)
        await self._release()

    async def _release(self) -> None:
        while self._held:
            assert self._next is not None
            item = self._held.pop(self._next, None)
            if item is None:
                if len(self._held) <= self._window:
                    return
                # Waited long enough: skip to the oldest packet we hold.
                oldest = min(self._held, key=lambda s: _seq_delta(s, self._next or 0))
                self.stats.lost += _seq_delta(oldest, self._next)
                self._next = oldest
                continue
            self._next = (self._next + 1) & 0xFFFF
            self.stats.released += 1
            await self._deliver(*item)


class _SwallowingJitterBuffer(JitterBuffer):
    """Lets aiortc account for a packet but never hands it to aiortc's decoder."""

    def __init__(self) -> None:
        super().__init__(capacity=2)

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        return False, None


class _PassThroughJitterBuffer(JitterBuffer):
    """Hands every (already ordered) audio packet to the decoder as its own frame."""

    def __init__(self) -> None:
        super().__init__(capacity=2)

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        data: bytes = packet._data  # type: ignore[attr-defined]  # set by the receiver hook
        return False, JitterFrame(data=data, timestamp=packet.timestamp)


RECEIVER_HOOK = "receiver jitter buffer"
#: `RTCRtpReceiver.__jitter_buffer`, as Python mangles it.
_JITTER_ATTR = "_RTCRtpReceiver__jitter_buffer"


def check_receiver_hook(receiver: Any = RTCRtpReceiver, buffer: Any = JitterBuffer, frame: Any = JitterFrame) -> None:
    """Fail (HookError) unless aiortc's receiver still keeps its audio jitter buffer in
    `__jitter_buffer`, feeds it from `_handle_rtp_packet(packet, arrival_time_ms)` after
    depayloading into `packet._data`, and builds buffers and frames as the stand-ins here do."""
    require_source(RECEIVER_HOOK, receiver.__init__, "self.__jitter_buffer = JitterBuffer(")
    handle = require_attribute(RECEIVER_HOOK, receiver, "_handle_rtp_packet")
    require_parameters(RECEIVER_HOOK, handle, ["self", "packet", "arrival_time_ms"])
    require_source(RECEIVER_HOOK, handle, "packet._data = ", "self.__jitter_buffer.add(packet)")
    require_parameters(RECEIVER_HOOK, buffer.__init__, ["self", "capacity", "prefetch"])
    require_parameters(RECEIVER_HOOK, buffer.add, ["self", "packet"])
    require_parameters(RECEIVER_HOOK, frame.__init__, ["self", "data", "timestamp"])


check_receiver_hook()


def install_receive_path(receiver: RTCRtpReceiver, options: ReceiveOptions, clock: Clock | None = None) -> ReorderStage:
    """Set up an audio receiver's jitter handling per `options`; call before media flows.

    Arrival times are read from `clock` (default: the current one)."""
    attr = _JITTER_ATTR
    if not hasattr(receiver, attr):
        raise hook_error(RECEIVER_HOOK, f"an {type(receiver).__name__} has no `{attr}`")
    aiortc_buffer = options.aiortc_prefetch is not None
    inline = options.decode_inline and not aiortc_buffer
    if aiortc_buffer:
        setattr(receiver, attr, JitterBuffer(capacity=16, prefetch=options.aiortc_prefetch or 0))
    elif inline:
        setattr(receiver, attr, _SwallowingJitterBuffer())
    else:
        setattr(receiver, attr, _PassThroughJitterBuffer())
    handle: Any = receiver._handle_rtp_packet
    bounds = (options.min_reorder_window, options.max_reorder_window)
    if inline:
        decoded = DecodedAudioTrack()

        async def handle_and_decode(packet: RtpPacket, arrival_time_ms: int) -> None:
            await handle(packet, arrival_time_ms)  # statistics, RTCP, depayload into packet._data
            decoded.deliver(packet)

        stage = ReorderStage(handle_and_decode, options.reorder_window, clock=clock, bounds=bounds)
        stage.decoded = decoded
    else:
        ordered = not aiortc_buffer
        stage = ReorderStage(handle, options.reorder_window, ordered=ordered, clock=clock, bounds=bounds)
    receiver._handle_rtp_packet = stage.add  # type: ignore[method-assign]
    return stage


def remove_receive_path(receiver: RTCRtpReceiver) -> None:
    """Undo `install_receive_path` once the call is over: the stage's hook points back at the
    receiver (a reference cycle that would keep the call alive until a cycle collection)."""
    vars(receiver).pop("_handle_rtp_packet", None)
