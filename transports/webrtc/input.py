"""`WebRTCInputTransport`: the caller's microphone track as `InputAudioFrame`s.

aiortc's Opus decoder yields 48 kHz s16 frames of 20 ms (laid out as stereo); a streaming
`av.AudioResampler` downmixes each to one mono frame at the pipeline's input rate (16 kHz by
default; a frame already mono at that rate passes through) (~1 ms of
filter delay). `pts` keeps the RTP position (samples at the input rate since the stream began),
so gaps from lost packets show up as gaps in `pts`.

The receive path is bounded: aiortc's decoder fills an unbounded queue, so if the pipeline ever
takes longer than real time to accept frames, the oldest frames beyond `max_backlog_ms` are
dropped (and counted in `dropped_frames`) instead of letting latency grow without end.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import anyio
import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from voxframe.pipeline import (
    DOWN,
    CancelFrame,
    Direction,
    EndFrame,
    Frame,
    FrameProcessor,
    InputAudioFrame,
    StartFrame,
)


@dataclass(slots=True)
class InputOptions:
    #: Audio older than this (waiting in aiortc's decoded-frame queue) is dropped.
    max_backlog_ms: int = 100


class WebRTCInputTransport(FrameProcessor):
    """Reads the remote audio track (given by the session via `attach`) into the pipeline."""

    def __init__(self, options: InputOptions | None = None, *, name: str | None = None) -> None:
        super().__init__(name=name)
        self.options = options or InputOptions()
        self.received_frames = 0
        self.dropped_frames = 0
        self._track: MediaStreamTrack | None = None
        self._track_attached: anyio.Event | None = None
        self._reader_scope = anyio.CancelScope()
        self._resampler: av.AudioResampler | None = None

    def attach(self, track: MediaStreamTrack) -> None:
        """Hand over the caller's audio track (the session does this when it arrives)."""
        self._track = track
        if self._track_attached is not None:
            self._track_attached.set()

    async def process(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, (EndFrame, CancelFrame)) and direction is DOWN:
            self._reader_scope.cancel()  # nothing may follow the end of the stream
        await self.push(frame, direction)
        if isinstance(frame, StartFrame) and direction is DOWN:
            self.task_group.start_soon(self._run_reader, name=f"{self.name}.reader")

    async def _run_reader(self) -> None:
        with self._reader_scope:
            await self._read()

    async def _read(self) -> None:
        if self._track is None:
            self._track_attached = anyio.Event()
            await self._track_attached.wait()
        track = self._track
        assert track is not None
        rate = self.start_frame.audio_in_sample_rate
        # Held by the transport, not the coroutine: a cancelled reader's frame can outlive the
        # call (its exception keeps it), and FFmpeg's filter graph runs worker threads.
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        # aiortc frames are 20 ms; keep at most this many waiting.
        max_backlog = max(1, self.options.max_backlog_ms // 20)
        try:
            await self._read_frames(track, rate, max_backlog)
        finally:
            self._resampler = None

    async def _read_frames(self, track: MediaStreamTrack, rate: int, max_backlog: int) -> None:
        while True:
            try:
                decoded = await track.recv()
            except MediaStreamError:
                return  # the caller's track ended: the session notices and ends the task
            self.received_frames += 1
            self._drop_backlog(track, max_backlog)
            pts = None if decoded.pts is None else decoded.pts * rate // decoded.sample_rate
            if decoded.sample_rate == rate and decoded.layout.nb_channels == 1:
                pcm = decoded.to_ndarray().tobytes()
            else:
                decoded.pts = None  # positions are kept here; the resampler must not "fix" gaps
                assert self._resampler is not None
                pcm = b"".join(f.to_ndarray().tobytes() for f in self._resampler.resample(decoded))
            if pcm:
                await self.push(InputAudioFrame(audio=pcm, sample_rate=rate, num_channels=1, pts=pts))

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
