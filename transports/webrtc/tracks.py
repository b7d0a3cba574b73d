"""`PacedAudioTrack`: the bot's outgoing audio track, fed one chunk per period by a pacer.

aiortc's RTP sender calls `recv()` in a loop and sends whatever it gets at once: it does not
pace. Pacing is done by whoever feeds the track (the output transport's pacer, or a client's
microphone loop) on the clock; `recv` just hands over the next chunk as soon as there is one.
The queue is tiny and bounded: if the sender stalls, the oldest chunks are dropped (and
counted) rather than delaying everything after them.

By default the track encodes Opus itself and hands aiortc finished packets. aiortc would
otherwise, per 20 ms frame, compute an audio level in Python, up-mix to stereo, resample, and
hop to a worker thread to encode at 96 kbps; encoding a mono chunk inline costs less than the
thread hop alone. The `lowdelay` Opus application also looks ahead 2.5 ms instead of 6.5 ms.

Loss-aware sending: the encoder follows the loss the other side reports (RTCP receiver reports,
read by a hook on aiortc's sender). `lowdelay` is CELT-only, and CELT has no in-band FEC, so on a
clean network we send lowdelay; once reported loss reaches `fec_loss_threshold`, the encoder is
rebuilt as `voip` (SILK/hybrid for speech, 4 ms more lookahead) with FEC on, its expected loss
set to what is reported and its bitrate raised to pay for the redundant copy; it returns to the
configured application when the loss is gone. The encoder is libopus itself (`_opus`): FFmpeg's
wrapper fixes its options when it opens, so it could not follow the network.
"""

from __future__ import annotations

import asyncio
import fractions
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av
import numpy as np
from aiortc import RTCRtpSender
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RtcpRrPacket, RtcpSrPacket

from .._audio import layout_name
from ._hooks import require_attribute, require_parameters, require_source
from ._opus import OpusEncoder


@dataclass(slots=True)
class OpusOptions:
    bitrate: int = 48_000
    #: "lowdelay" (2.5 ms lookahead, no FEC), "voip" (speech tuned, 6.5 ms) or "audio".
    application: str = "lowdelay"
    #: Send in-band FEC once loss is expected (reported, or `expected_loss_pct` from the start).
    fec: bool = True
    #: Loss to expect before any report (percent); with "voip" and `fec`, FEC is on from the start.
    expected_loss_pct: int = 0
    #: Follow the loss the receiver reports (switch to FEC, raise the bitrate).
    loss_aware: bool = True
    #: Reported loss (a fraction) from which FEC is sent; below a fifth of it, it stops.
    fec_loss_threshold: float = 0.01
    #: The most the bitrate is raised under loss (a factor of `bitrate`).
    max_bitrate_factor: float = 1.5


#: Frame lengths Opus can encode (ms, 2.5 rounded down).
_OPUS_MS = frozenset({2, 5, 10, 20, 40, 60})


class OpusChunkEncoder:
    """Encodes fixed-size s16 chunks to one Opus packet each, stamped with the caller's pts."""

    def __init__(self, sample_rate: int, num_channels: int, options: OpusOptions | None = None) -> None:
        self.options = options or OpusOptions()
        self.num_channels = num_channels
        self.sample_rate = sample_rate
        self._time_base = fractions.Fraction(1, sample_rate)
        #: Smoothed reported loss (a fraction): rises at once, halves its distance per report.
        self.loss = self.options.expected_loss_pct / 100
        self._encoder = self._build(self.options.application)
        self._apply()

    @property
    def application(self) -> str:
        return self._encoder.application

    @property
    def fec(self) -> bool:
        """Whether packets now carry an FEC copy of the one before (when the codec mode has it)."""
        return self.options.fec and self.application != "lowdelay" and self.loss > 0

    @property
    def bitrate(self) -> int:
        factor = 1 + min(self.loss, self.options.max_bitrate_factor - 1) if self.fec else 1
        return round(self.options.bitrate * factor)

    def _build(self, application: str) -> OpusEncoder:
        return OpusEncoder(self.sample_rate, self.num_channels, application, self.options.bitrate)

    def _apply(self) -> None:
        self._encoder.configure(self.bitrate, self.fec, math.ceil(100 * self.loss))

    def report_loss(self, fraction: float) -> None:
        """The share of our packets the other side says it lost since its last report."""
        if not self.options.loss_aware:
            return
        fraction = max(0.0, min(1.0, fraction))
        self.loss = fraction if fraction > self.loss else (self.loss + fraction) / 2
        if self.loss < self.options.fec_loss_threshold / 5:
            self.loss = fraction  # nearly gone: take the report as it is
        self.loss = max(self.loss, self.options.expected_loss_pct / 100)
        wanted = self.options.application
        if self.options.fec and wanted == "lowdelay" and self.loss >= self.options.fec_loss_threshold:
            wanted = "voip"
        elif self.application != wanted and self.loss >= self.options.fec_loss_threshold / 5:
            wanted = self.application  # hysteresis: keep FEC until the loss is nearly gone
        if wanted != self.application:
            self._encoder.close()
            self._encoder = self._build(wanted)
        self._apply()

    def encode(self, frame: av.AudioFrame, pts: int) -> av.Packet | None:
        if frame.samples * 400 % self.sample_rate or frame.samples * 1000 // self.sample_rate not in _OPUS_MS:
            ms = 1000 * frame.samples / self.sample_rate
            raise ValueError(f"an Opus packet holds 2.5, 5, 10, 20, 40 or 60 ms of audio, not {ms:g} ms")
        packet = av.Packet(self._encoder.encode(frame.to_ndarray().tobytes()))
        packet.pts = pts
        packet.time_base = self._time_base
        return packet

    def close(self) -> None:
        self._encoder.close()


_DEFAULT_OPUS = OpusOptions()


class PacedAudioTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(
        self,
        sample_rate: int = 48_000,
        num_channels: int = 1,
        max_queued: int = 3,
        on_sent: Callable[[object], None] | None = None,
        opus: OpusOptions | None = _DEFAULT_OPUS,
    ) -> None:
        """`opus=None` hands aiortc raw frames to encode itself (its stereo 96 kbps path)."""
        super().__init__()
        self.sample_rate = sample_rate
        self.num_channels = num_channels
        self.dropped = 0
        self._layout = layout_name(num_channels)
        self._time_base = fractions.Fraction(1, sample_rate)
        self._queue: deque[tuple[bytes, object]] = deque(maxlen=max_queued)
        self._ready = asyncio.Event()
        self._pts = 0
        self._on_sent = on_sent
        self._encoder: OpusChunkEncoder | None = None
        if opus is not None:
            self._encoder = OpusChunkEncoder(sample_rate, num_channels, opus)

    def put(self, pcm: bytes, tag: object = None) -> None:
        """Queue one chunk (s16, this track's rate and channels); `tag` comes back in `on_sent`."""
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
        self._queue.append((pcm, tag))
        self._ready.set()

    def clear(self) -> int:
        """Drop chunks not yet taken by the sender (an interruption). Returns how many."""
        count = len(self._queue)
        self._queue.clear()
        return count

    async def recv(self) -> av.AudioFrame | av.Packet:
        while True:
            while not self._queue:
                if self.readyState != "live":
                    raise MediaStreamError
                self._ready.clear()
                await self._ready.wait()
            pcm, tag = self._queue.popleft()
            samples = len(pcm) // (2 * self.num_channels)
            frame = av.AudioFrame.from_ndarray(
                np.frombuffer(pcm, dtype="<i2").reshape(1, -1), format="s16", layout=self._layout
            )
            frame.sample_rate = self.sample_rate
            frame.pts = self._pts
            frame.time_base = self._time_base
            pts, self._pts = self._pts, self._pts + samples
            if self._on_sent is not None and tag is not None:
                self._on_sent(tag)
            if self._encoder is None:
                return frame
            packet = self._encoder.encode(frame, pts)
            if packet is not None:
                return packet

    def report_loss(self, fraction: float) -> None:
        """What the receiver reports lost of this track's packets (see the module docstring)."""
        if self._encoder is not None:
            self._encoder.report_loss(fraction)

    def stop(self) -> None:
        super().stop()
        self._queue.clear()  # so `recv` ends now rather than encode what nobody will send
        self._ready.set()  # wake a pending recv so the sender sees the end
        if self._encoder is not None:  # the codec's memory goes now, not when the track is freed
            self._encoder.close()
        self._encoder = None


SENDER_HOOK = "sender loss report"


def check_sender_hook(sender: Any = RTCRtpSender) -> None:
    """Fail (HookError) unless aiortc's sender still takes RTCP in `_handle_rtcp_packet(packet)`
    and keeps its SSRC in `_ssrc` (what the loss hook below wraps and reads)."""
    handle = require_attribute(SENDER_HOOK, sender, "_handle_rtcp_packet")
    require_parameters(SENDER_HOOK, handle, ["self", "packet"])
    require_source(SENDER_HOOK, sender.__init__, "self._ssrc = ")


check_sender_hook()
_original_handle_rtcp = RTCRtpSender._handle_rtcp_packet


async def _handle_rtcp_packet(self: RTCRtpSender, packet: Any) -> None:
    """aiortc's handler, then the receiver's loss report goes to a `PacedAudioTrack`'s encoder."""
    await _original_handle_rtcp(self, packet)
    track = self.track
    if isinstance(track, PacedAudioTrack) and isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
        for report in packet.reports:
            if report.ssrc == self._ssrc:
                track.report_loss(report.fraction_lost / 256)


RTCRtpSender._handle_rtcp_packet = _handle_rtcp_packet  # type: ignore[method-assign]  # the loss hook
