"""`DecodedAudioTrack`: the caller's audio, decoded inline as packets are released.

aiortc decodes each receiver's audio in a thread of its own and hands every 20 ms frame back to
the event loop by scheduling a new coroutine task, as 48 kHz stereo. Here the Opus packet is
decoded on arrival, on the event loop (a 20 ms Opus frame decodes in tens of microseconds: less
than the thread hop costs), to 48 kHz mono (FFmpeg's libopus wrapper always outputs 48 kHz;
mono halves what the consumer's resampler has to read).

The track keeps aiortc's track interface (`recv`, `stop`, an `asyncio.Queue` named `_queue`),
so consumers and the input transport's bounded-backlog logic work on it unchanged.
"""

from __future__ import annotations

import asyncio
import fractions
import logging

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RtpPacket

from .._audio import layout_name

logger = logging.getLogger("voxframe.webrtc")

RATE = 48_000
#: Frames kept when nobody reads (before the pipeline starts): about a second.
_MAX_UNREAD = 50


class DecodedAudioTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(self, num_channels: int = 1) -> None:
        super().__init__()
        self.num_channels = num_channels
        self.sample_rate = RATE
        self.decode_errors = 0
        self._queue: asyncio.Queue[av.AudioFrame | None] = asyncio.Queue()
        self._decoder: av.AudioCodecContext | None = None
        self._first_timestamp: int | None = None
        self._time_base = fractions.Fraction(1, RATE)

    def deliver(self, packet: RtpPacket) -> None:
        """Decode a released packet (its payload already depayloaded into `_data`)."""
        data: bytes | None = getattr(packet, "_data", None)
        if not data or self.readyState != "live":
            return
        if self._decoder is None:
            self._decoder = self._open()
        if self._first_timestamp is None:
            self._first_timestamp = packet.timestamp
        position = (packet.timestamp - self._first_timestamp) & 0xFFFFFFFF
        coded = av.Packet(data)
        try:
            frames = self._decoder.decode(coded)
        except av.FFmpegError as exc:
            self.decode_errors += 1
            logger.debug("undecodable Opus packet: %s", exc)
            return
        for frame in frames:
            frame.pts = position
            frame.time_base = self._time_base
            if self._queue.qsize() >= _MAX_UNREAD:
                self._queue.get_nowait()
            self._queue.put_nowait(frame)

    def _open(self) -> av.AudioCodecContext:
        decoder = av.AudioCodecContext.create("libopus", "r")
        decoder.sample_rate = RATE
        decoder.layout = layout_name(self.num_channels)
        decoder.format = "s16"
        return decoder

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        frame = await self._queue.get()
        if frame is None:
            raise MediaStreamError
        return frame

    def stop(self) -> None:
        if self.readyState == "live":
            while not self._queue.empty():  # unread audio is of no use once the call is over
                self._queue.get_nowait()
            self._queue.put_nowait(None)  # wake a pending recv
        super().stop()
        self._decoder = None
