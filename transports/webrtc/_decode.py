"""`DecodedAudioTrack`: the caller's audio, decoded inline as packets are released, gaps concealed.

aiortc decodes each receiver's audio in a thread of its own and hands every 20 ms frame back to
the event loop by scheduling a new coroutine task, as 48 kHz stereo. Here the Opus packet is
decoded on arrival, on the event loop (a 20 ms Opus frame decodes in tens of microseconds: less
than the thread hop costs), to 48 kHz mono (mono halves what the consumer's resampler reads).

A lost packet is concealed, not skipped, so the timeline the VAD and the STT see keeps its
length: when a packet arrives whose sequence number is `n` ahead of the expected one, the `n`
missing packets are filled in before it is decoded. The one just before it is rebuilt from the
in-band FEC copy that this packet carries (when the sender encoded one: browsers do, and so do
we once loss is reported); the others, and that one too without FEC, by libopus's packet-loss
concealment. FFmpeg's decoder can do neither (see `_opus`), so libopus is called directly. A
gap longer than `MAX_CONCEALED` packets (an outage, not loss) is left as a gap in `pts`.

The track keeps aiortc's track interface (`recv`, `stop`, an `asyncio.Queue` named `_queue`),
so consumers and the input transport's bounded-backlog logic work on it unchanged.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
from dataclasses import dataclass

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RtpPacket

from .._audio import layout_name
from ._opus import RATE, OpusDecoder, OpusError, has_fec

logger = logging.getLogger("voxframe.webrtc")

#: Frames kept when nobody reads (before the pipeline starts): about a second.
_MAX_UNREAD = 50
#: The most packets concealed for one gap (a second of 20 ms packets); a longer gap is an outage.
MAX_CONCEALED = 50
#: Concealment comes in whole 2.5 ms steps (libopus's smallest frame).
_STEP = RATE // 400
_HALF_SEQ = 1 << 15


@dataclass(slots=True)
class ConcealmentStatistics:
    #: Packets filled in by packet-loss concealment.
    concealed: int = 0
    #: Packets rebuilt from the next packet's FEC copy (also counted in `concealed`).
    recovered: int = 0
    #: Gaps too long to conceal (left as gaps in `pts`).
    outages: int = 0


class DecodedAudioTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(self, num_channels: int = 1) -> None:
        super().__init__()
        self.num_channels = num_channels
        self.sample_rate = RATE
        self.decode_errors = 0
        self.concealment = ConcealmentStatistics()
        self._queue: asyncio.Queue[av.AudioFrame | None] = asyncio.Queue()
        self._decoder: OpusDecoder | None = None
        self._first_timestamp: int | None = None
        self._next_seq: int | None = None
        #: Where the next packet's audio should start on the timeline, and the last packet's length.
        self._next_position = 0
        self._last_samples = 960
        self._time_base = fractions.Fraction(1, RATE)
        self._layout = layout_name(num_channels)

    def deliver(self, packet: RtpPacket) -> None:
        """Decode a released packet (its payload already depayloaded into `_data`), first
        concealing the packets missing before it."""
        data: bytes | None = getattr(packet, "_data", None)
        if not data or self.readyState != "live":
            return
        if self._decoder is None:
            self._decoder = OpusDecoder(self.num_channels)
        if self._first_timestamp is None:
            self._first_timestamp = packet.timestamp
        position = (packet.timestamp - self._first_timestamp) & 0xFFFFFFFF
        missing = 0 if self._next_seq is None else ((packet.sequence_number - self._next_seq) & 0xFFFF)
        self._next_seq = (packet.sequence_number + 1) & 0xFFFF
        if 0 < missing < _HALF_SEQ:
            self._conceal(missing, position, data)
        try:
            pcm = self._decoder.decode(data)
        except OpusError as exc:
            self.decode_errors += 1
            logger.debug("undecodable Opus packet: %s", exc)
            return
        self._emit(pcm, position)
        self._last_samples = len(pcm) // self.num_channels or self._last_samples
        self._next_position = position + self._last_samples

    def _conceal(self, missing: int, position: int, data: bytes) -> None:
        """Fill the `missing` packets before `data` (which starts at `position`)."""
        assert self._decoder is not None
        gap = (position - self._next_position) & 0xFFFFFFFF
        if missing > MAX_CONCEALED or gap > missing * 5_760:
            self.concealment.outages += 1
            return
        each = gap // missing if gap else self._last_samples
        each = max(_STEP, each - each % _STEP)
        start = position - missing * each
        for index in range(missing):
            last = index == missing - 1
            try:
                if last:
                    pcm = self._decoder.recover(data, each)
                    self.concealment.recovered += bool(has_fec(data))
                else:
                    pcm = self._decoder.conceal(each)
            except OpusError as exc:
                logger.debug("could not conceal a lost packet: %s", exc)
                return
            self.concealment.concealed += 1
            self._emit(pcm, start + index * each)

    def _emit(self, pcm: np.ndarray, position: int) -> None:
        if not len(pcm):
            return
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout=self._layout)
        frame.sample_rate = RATE
        frame.pts = position
        frame.time_base = self._time_base
        if self._queue.qsize() >= _MAX_UNREAD:
            self._queue.get_nowait()
        self._queue.put_nowait(frame)

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
        if self._decoder is not None:
            self._decoder.close()
        self._decoder = None
