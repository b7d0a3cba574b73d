"""`InputTransport`: what every input half shares (the caller's audio into the pipeline).

Each input transport reads its wire in one task, started when the `StartFrame` has gone by and
cancelled when an `EndFrame` or `CancelFrame` comes down (nothing may follow the end of the
stream). What it reads, it turns into `InputAudioFrame`s, mono at the pipeline's input rate
(`StartFrame.audio_in_sample_rate`), through the shared streaming resampler: `push_audio`.

A wire that calls back with audio (a WebSocket's receive loop, a test) hands it to
`receive_audio`, which queues it in a bounded backlog that the reading task drains: if the
pipeline ever takes longer than real time, the oldest audio beyond `max_backlog_ms` is dropped
(and counted in `dropped_frames`) instead of letting latency grow without end. What arrives
before the pipeline has started (a caller who speaks as the call connects, while the pipeline
is built) is kept up to `max_startup_ms` and goes in first, at once: those are words. A wire
that is read (an aiortc track, a buffer) overrides `run_input` instead.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import anyio

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

from ._audio import StreamResampler


@dataclass(slots=True)
class InputOptions:
    #: Audio older than this (received but not yet taken by the pipeline) is dropped.
    max_backlog_ms: int = 100
    #: Audio received before the pipeline started is kept up to this much.
    max_startup_ms: int = 5000


@dataclass(slots=True)
class _Received:
    audio: bytes
    sample_rate: int
    num_channels: int
    pts: int | None
    arrived_ns: int


class InputTransport(FrameProcessor):
    """Base of every input transport; subclasses override `run_input` or call `receive_audio`."""

    def __init__(self, options: InputOptions | None = None, *, name: str | None = None) -> None:
        super().__init__(name=name)
        self.input_options = options or InputOptions()
        self.received_frames = 0
        self.dropped_frames = 0
        self._reader_scope = anyio.CancelScope()
        self._resampler: StreamResampler | None = None
        self._backlog: deque[_Received] = deque()
        self._backlog_ms = 0.0
        self._arrived: anyio.Event | None = None
        self._input_ended = False
        self._reading = False

    @property
    def sample_rate(self) -> int:
        """The pipeline's input rate: every `InputAudioFrame` pushed is mono at this rate."""
        return self.start_frame.audio_in_sample_rate

    # --- for subclasses -----------------------------------------------------------------------------

    async def run_input(self) -> None:
        """Read the wire until the stream ends (default: drain what `receive_audio` queued)."""
        startup, self._backlog, self._backlog_ms = self._backlog, deque(), 0.0
        self._reading = True
        for received in startup:  # spoken while the pipeline started: all of it, at once
            await self._push_received(received)
        while True:
            while not self._backlog:
                if self._input_ended:
                    return
                self._arrived = anyio.Event()
                await self._arrived.wait()
            received = self._backlog.popleft()
            self._backlog_ms -= _duration_ms(received)
            await self._push_received(received)

    async def _push_received(self, received: _Received) -> None:
        # Stamped with its arrival: audio that waited (the startup backlog) keeps its place in time.
        r = received
        await self.push_audio(r.audio, r.sample_rate, r.num_channels, pts=r.pts, created_ns=r.arrived_ns)

    def receive_audio(self, audio: bytes, sample_rate: int, num_channels: int = 1, pts: int | None = None) -> None:
        """Queue audio that arrived on the wire (s16le); never blocks. The oldest is dropped
        beyond `max_backlog_ms`."""
        if not audio or self._input_ended:
            return
        received = _Received(audio, sample_rate, num_channels, pts, self.clock.now_ns())
        self.received_frames += 1
        self._backlog.append(received)
        self._backlog_ms += _duration_ms(received)
        limit = self.input_options.max_backlog_ms if self._reading else self.input_options.max_startup_ms
        while len(self._backlog) > 1 and self._backlog_ms > limit:
            self._backlog_ms -= _duration_ms(self._backlog.popleft())
            self.dropped_frames += 1
        self._wake()

    def end_input(self) -> None:
        """The wire closed: what is queued still goes in, then the reader returns."""
        self._input_ended = True
        self._wake()

    async def push_audio(
        self,
        audio: bytes,
        sample_rate: int,
        num_channels: int = 1,
        pts: int | None = None,
        created_ns: int | None = None,
    ) -> None:
        """Push received s16le audio as one `InputAudioFrame`, mono at the pipeline's rate.

        The resampler keeps its filter state across calls (chunk edges are seamless) and is
        rebuilt only if the wire's format changes. `pts` is at the pipeline's rate;
        `created_ns`: when the audio's last sample arrived (default: now).
        """
        rate = self.sample_rate
        resampler = self._resampler
        if resampler is None or (resampler.in_rate, resampler.in_channels) != (sample_rate, num_channels):
            # Held by the transport, not the coroutine: FFmpeg's filter graph runs worker threads
            # and must go when the call does (see `cleanup`).
            resampler = self._resampler = StreamResampler(sample_rate, num_channels, rate, 1)
        pcm = resampler.resample(audio)
        if pcm:
            frame = InputAudioFrame(audio=pcm, sample_rate=rate, num_channels=1, pts=pts)
            if created_ns is not None:
                frame.created_ns = created_ns
            await self.push(frame)

    async def cleanup(self) -> None:
        """The task is over: release the resampler (and its threads) and the backlog at once."""
        self._resampler = None
        self._backlog.clear()

    # --- frames -------------------------------------------------------------------------------------

    async def process(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, (EndFrame, CancelFrame)) and direction is DOWN:
            self._reader_scope.cancel()  # nothing may follow the end of the stream
        await self.push(frame, direction)
        if isinstance(frame, StartFrame) and direction is DOWN:
            self.task_group.start_soon(self._run_reader, name=f"{self.name}.reader")

    async def _run_reader(self) -> None:
        with self._reader_scope:
            try:
                await self.run_input()
            finally:
                self._resampler = None

    def _wake(self) -> None:
        if self._arrived is not None:
            self._arrived.set()


def _duration_ms(received: _Received) -> float:
    return len(received.audio) / (2 * received.num_channels) * 1000 / received.sample_rate
