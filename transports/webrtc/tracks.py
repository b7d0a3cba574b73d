"""`PacedAudioTrack`: the bot's outgoing audio track, fed one chunk per period by a pacer.

aiortc's RTP sender calls `recv()` in a loop and sends whatever it gets at once: it does not
pace. Pacing is done by whoever feeds the track (the output transport's pacer, or a client's
microphone loop) on the clock; `recv` just hands over the next chunk as soon as there is one.
The queue is tiny and bounded: if the sender stalls, the oldest chunks are dropped (and
counted) rather than delaying everything after them.
"""

from __future__ import annotations

import asyncio
import fractions
from collections import deque
from collections.abc import Callable

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from .._audio import layout_name


class PacedAudioTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(
        self,
        sample_rate: int = 48_000,
        num_channels: int = 1,
        max_queued: int = 3,
        on_sent: Callable[[object], None] | None = None,
    ) -> None:
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

    async def recv(self) -> av.AudioFrame:
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
        self._pts += samples
        if self._on_sent is not None and tag is not None:
            self._on_sent(tag)
        return frame

    def stop(self) -> None:
        super().stop()
        self._ready.set()  # wake a pending recv so the sender sees the end
