"""`WebRTCInputTransport`: the caller's microphone track as `InputAudioFrame`s.

aiortc's Opus decoder yields 48 kHz s16 frames of 20 ms (laid out as stereo); the input base's
streaming resampler downmixes each to one mono frame at the pipeline's input rate (16 kHz by
default; a frame already mono at that rate passes through) (~1 ms of filter delay). `pts` keeps
the RTP position (samples at the input rate since the stream began), so gaps from lost packets
show up as gaps in `pts`.

The receive path is bounded: aiortc's decoder fills an unbounded queue, so if the pipeline ever
takes longer than real time to accept frames, the oldest frames beyond `max_backlog_ms` are
dropped (and counted in `dropped_frames`) instead of letting latency grow without end.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpreceiver import RemoteStreamTrack

from ..input import InputOptions, InputTransport
from ._hooks import require_source

INPUT_HOOK = "input backlog"


def check_input_hook(track: Any = RemoteStreamTrack) -> None:
    """Fail (HookError) unless aiortc's remote track still queues decoded frames in `_queue`
    (read by `_drop_backlog` when aiortc's own decoder is used)."""
    require_source(INPUT_HOOK, track.__init__, "self._queue")


check_input_hook()


class WebRTCInputTransport(InputTransport):
    """Reads the remote audio track (given by the session via `attach`) into the pipeline."""

    def __init__(self, options: InputOptions | None = None, *, name: str | None = None) -> None:
        super().__init__(options, name=name)
        self.options = self.input_options
        self._track: MediaStreamTrack | None = None
        self._track_attached: anyio.Event | None = None

    def attach(self, track: MediaStreamTrack) -> None:
        """Hand over the caller's audio track (the session does this when it arrives)."""
        self._track = track
        if self._track_attached is not None:
            self._track_attached.set()

    async def run_input(self) -> None:
        if self._track is None:
            self._track_attached = anyio.Event()
            await self._track_attached.wait()
        track = self._track
        assert track is not None
        # aiortc frames are 20 ms; keep at most this many waiting.
        max_backlog = max(1, self.options.max_backlog_ms // 20)
        rate = self.sample_rate
        while True:
            try:
                decoded = await track.recv()
            except MediaStreamError:
                return  # the caller's track ended: the session notices and ends the task
            assert isinstance(decoded, av.AudioFrame)  # an audio track's recv
            self.received_frames += 1
            self._drop_backlog(track, max_backlog)
            pts = None if decoded.pts is None else decoded.pts * rate // decoded.sample_rate
            pcm = decoded.to_ndarray().tobytes()
            await self.push_audio(pcm, decoded.sample_rate, decoded.layout.nb_channels, pts=pts)

    def _drop_backlog(self, track: MediaStreamTrack, max_backlog: int) -> None:
        queue: asyncio.Queue | None = getattr(track, "_queue", None)
        if queue is None:
            return
        while queue.qsize() > max_backlog:
            frame = queue.get_nowait()
            if frame is None:  # end of stream marker: keep it for the next recv
                queue.put_nowait(None)
                return
            self.dropped_frames += 1
