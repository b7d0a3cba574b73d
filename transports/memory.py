"""In-memory transports: run a pipeline on audio buffers, with no network and no devices.

`MemoryInputTransport` plays a buffer into the pipeline as a microphone would (fixed chunks,
each pushed when its last sample has been "captured", on the task's clock, so a `VirtualClock`
gives exact timings). `MemoryOutputTransport` is a real `OutputTransport` that records each
chunk it plays with the clock time it went out.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field

import anyio
import numpy as np

from voxframe.pipeline import EndFrame, InputAudioFrame
from voxframe.pipeline.clock import NS_PER_S

from ._audio import StreamResampler, to_pcm16
from ._playout import AudioChunk
from .input import InputTransport
from .output import OutputOptions, OutputTransport


@dataclass(slots=True)
class MemoryInputOptions:
    #: Rate of the audio given to `feed` (and the constructor); None: the pipeline's input rate.
    sample_rate: int | None = None
    num_channels: int = 1
    chunk_ms: int = 20
    #: Push each chunk when it would have been captured (on the clock); False: as fast as taken.
    realtime: bool = True
    #: Keep sending silence when the buffer runs dry, like an open microphone.
    silence_when_idle: bool = False
    #: Push an EndFrame once everything fed so far has been sent.
    end_when_done: bool = False


class MemoryInputTransport(InputTransport):
    """Feeds `InputAudioFrame`s (mono, the pipeline's input rate) from buffers given to `feed`.

    Put it first in the pipeline. Frames carry `pts` (samples since the first chunk) and
    `created_ns` = the clock time the chunk was pushed. `capture_ns(pts)` says when a sample
    "entered the microphone" (chunk push time minus its age), which is what latency math needs.
    """

    def __init__(
        self,
        audio: np.ndarray | bytes | None = None,
        options: MemoryInputOptions | None = None,
        *,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self.options = options or MemoryInputOptions()
        self.sent_samples = 0
        self._pending: deque[tuple[bytes, int]] = deque()
        self._buffer = bytearray()
        # (first sample, clock time it was captured) each time the stream (re)started.
        self._anchors: list[tuple[int, int]] = []
        self._idle = False
        self._wakeup: anyio.Event | None = None
        self._done: anyio.Event | None = None
        if audio is not None:
            self.feed(audio)

    def feed(self, audio: np.ndarray | bytes, sample_rate: int | None = None) -> None:
        """Queue more audio (s16 bytes, int16 or float array) to be played into the pipeline."""
        rate = sample_rate or self.options.sample_rate or 0
        self._pending.append((to_pcm16(audio), rate))
        self._idle = False
        if self._wakeup is not None:
            self._wakeup.set()

    async def wait_done(self) -> None:
        """Wait until everything fed so far has been pushed into the pipeline."""
        while not self._idle:
            self._done = anyio.Event()
            await self._done.wait()

    def capture_ns(self, sample: int) -> int:
        """When sample number `sample` (at the pipeline's input rate) entered the microphone."""
        index = bisect.bisect_right(self._anchors, (sample, 1 << 62)) - 1
        if index < 0:
            raise ValueError(f"sample {sample} has not been sent")
        first, start_ns = self._anchors[index]
        return start_ns + (sample - first) * NS_PER_S // self.sample_rate

    def _take_pending(self) -> None:
        """Convert queued buffers to the pipeline's format and append them to the byte buffer."""
        while self._pending:
            pcm, rate = self._pending.popleft()
            resampler = StreamResampler(rate or self.sample_rate, self.options.num_channels, self.sample_rate, 1)
            self._buffer += resampler.resample(pcm)
            self._buffer += resampler.flush()

    async def run_input(self) -> None:
        """The microphone: one chunk per period (on the clock) from what was fed."""
        chunk_samples = self.sample_rate * self.options.chunk_ms // 1000
        chunk_bytes = chunk_samples * 2
        period_ns = self.options.chunk_ms * 1_000_000
        clock = self.clock
        deadline = clock.now_ns()
        self._anchors.append((0, deadline))
        while True:
            self._take_pending()
            if not self._buffer and not self.options.silence_when_idle:
                if await self._wait_for_more():
                    return
                deadline = clock.now_ns()  # the microphone reopens now
                self._anchors.append((self.sent_samples, deadline))
                continue
            if len(self._buffer) >= chunk_bytes:
                audio = bytes(self._buffer[:chunk_bytes])
                del self._buffer[:chunk_bytes]
            else:  # the tail of a buffer, or an open microphone with nothing to say
                audio = bytes(self._buffer) + bytes(chunk_bytes - len(self._buffer))
                self._buffer.clear()
            deadline += period_ns
            if self.options.realtime:
                await clock.sleep_until(deadline)
            frame = InputAudioFrame(audio=audio, sample_rate=self.sample_rate, num_channels=1, pts=self.sent_samples)
            self.sent_samples += chunk_samples
            await self.push(frame)
            if not self.options.realtime:
                await anyio.lowlevel.checkpoint()
            if not self._buffer and not self._pending:
                self._set_idle()

    def _set_idle(self) -> None:
        self._idle = True
        if self._done is not None:
            self._done.set()

    async def _wait_for_more(self) -> bool:
        """Everything fed is sent: end the stream, or wait for more audio. True: stop."""
        self._set_idle()
        if self.options.end_when_done:
            await self.push(EndFrame())
            return True
        while not self._pending:
            self._wakeup = anyio.Event()
            await self._wakeup.wait()
        self._wakeup = None
        return False


@dataclass(slots=True)
class PlayedChunk:
    """One chunk the output handed to the wire, `t_ns` on the clock."""

    t_ns: int
    turn: int
    audio: bytes
    samples: int


@dataclass(slots=True)
class MemoryOutputOptions:
    output: OutputOptions = field(default_factory=OutputOptions)
    #: Also record idle silence ticks (only with `output.emit_silence`).
    record_silence: bool = False


class MemoryOutputTransport(OutputTransport):
    """An `OutputTransport` whose wire is a list: `played` holds every chunk and when it went."""

    def __init__(self, options: MemoryOutputOptions | None = None, *, name: str | None = None) -> None:
        self.options = options or MemoryOutputOptions()
        super().__init__(self.options.output, name=name)
        self.played: list[PlayedChunk] = []

    async def write_audio(self, audio: bytes, chunk: AudioChunk | None) -> None:
        if chunk is not None:
            self.played.append(PlayedChunk(self.clock.now_ns(), chunk.turn, audio, chunk.samples))
        elif self.options.record_silence:
            self.played.append(PlayedChunk(self.clock.now_ns(), -1, audio, 0))

    def audio(self, turn: int | None = None) -> bytes:
        """Everything played (of one turn, if given), padding at the end of chunks removed."""
        bpf = 2 * self.output_options.num_channels
        return b"".join(c.audio[: c.samples * bpf] for c in self.played if turn is None or c.turn == turn)

    def played_s(self, turn: int | None = None) -> float:
        samples = sum(c.samples for c in self.played if turn is None or c.turn == turn)
        return samples / self.sample_rate
