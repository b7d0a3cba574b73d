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

`ReceiveOptions(aiortc_prefetch=N)` restores aiortc's buffer with prefetch N, for comparison.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiortc import RTCRtpReceiver
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket

from voxframe.pipeline.clock import Clock, current_clock

from ._decode import DecodedAudioTrack

_HALF_SEQ = 1 << 15
#: A jump this far (either way) means a new stream (the sender restarted), not reordering.
_RESYNC_DISTANCE = 1000


def _seq_delta(a: int, b: int) -> int:
    """a - b on the 16-bit sequence circle, in [-32768, 32767]."""
    return ((a - b + _HALF_SEQ) & 0xFFFF) - _HALF_SEQ


@dataclass(slots=True)
class ReceiveOptions:
    #: Later packets to wait for a missing one before declaring it lost (0: never wait).
    reorder_window: int = 2
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


class ReorderStage:
    """Releases RTP packets to `deliver` in sequence order, holding only to repair reordering.

    With `ordered=False` it only records arrivals and passes packets straight on (used when
    aiortc's own jitter buffer does the ordering). `last_arrival_ns` (on `clock`, the
    session's) tells the session whether the caller is still sending.
    """

    def __init__(
        self,
        deliver: Callable[[RtpPacket, int], Awaitable[None]],
        reorder_window: int,
        *,
        ordered: bool = True,
        clock: Clock | None = None,
    ) -> None:
        self._deliver = deliver
        self._clock = clock or current_clock()
        self._window = max(0, reorder_window)
        self._ordered = ordered
        self._next: int | None = None
        self._held: dict[int, tuple[RtpPacket, int]] = {}
        self.stats = ReceiveStatistics()
        self.last_arrival_ns = 0
        #: The caller's audio, when decoded inline; else read aiortc's remote track.
        self.decoded: DecodedAudioTrack | None = None

    async def add(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        self.last_arrival_ns = self._clock.now_ns()
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


def install_receive_path(
    receiver: RTCRtpReceiver, options: ReceiveOptions, clock: Clock | None = None
) -> ReorderStage:
    """Set up an audio receiver's jitter handling per `options`; call before media flows.

    Arrival times are read from `clock` (default: the current one)."""
    attr = "_RTCRtpReceiver__jitter_buffer"
    if not hasattr(receiver, attr):
        raise RuntimeError("this aiortc version has no audio jitter buffer where expected")
    aiortc_buffer = options.aiortc_prefetch is not None
    inline = options.decode_inline and not aiortc_buffer
    if aiortc_buffer:
        setattr(receiver, attr, JitterBuffer(capacity=16, prefetch=options.aiortc_prefetch or 0))
    elif inline:
        setattr(receiver, attr, _SwallowingJitterBuffer())
    else:
        setattr(receiver, attr, _PassThroughJitterBuffer())
    handle: Any = receiver._handle_rtp_packet
    if inline:
        decoded = DecodedAudioTrack()

        async def handle_and_decode(packet: RtpPacket, arrival_time_ms: int) -> None:
            await handle(packet, arrival_time_ms)  # statistics, RTCP, depayload into packet._data
            decoded.deliver(packet)

        stage = ReorderStage(handle_and_decode, options.reorder_window, clock=clock)
        stage.decoded = decoded
    else:
        stage = ReorderStage(handle, options.reorder_window, ordered=not aiortc_buffer, clock=clock)
    receiver._handle_rtp_packet = stage.add  # type: ignore[method-assign]
    return stage


def remove_receive_path(receiver: RTCRtpReceiver) -> None:
    """Undo `install_receive_path` once the call is over: the stage's hook points back at the
    receiver (a reference cycle that would keep the call alive until a cycle collection)."""
    vars(receiver).pop("_handle_rtp_packet", None)
