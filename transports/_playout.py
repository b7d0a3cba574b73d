"""The playout buffer: bot audio cut into fixed-size chunks at the wire's format.

Every output (in-memory or WebRTC) plays from one of these, so resampling, chunking and
interruption behave the same everywhere. The buffer holds only audio not yet handed to the
wire; an interruption clears it, so what still plays is at most the chunk already handed over.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from voxframe.pipeline import AudioFrame

from ._audio import StreamResampler


@dataclass(slots=True)
class AudioChunk:
    """One chunk of bot audio; `audio` is always a full chunk, `samples` the real ones in it."""

    audio: bytes
    turn: int
    samples: int


class Playout:
    """Queued bot audio. `add` converts and cuts; `pop` hands out the next chunk."""

    def __init__(self, sample_rate: int, num_channels: int, chunk_samples: int) -> None:
        self.sample_rate = sample_rate
        self.num_channels = num_channels
        self.chunk_samples = chunk_samples
        self.chunk_bytes = chunk_samples * 2 * num_channels
        self.silence = bytes(self.chunk_bytes)
        self._chunks: deque[AudioChunk] = deque()
        self._partial = bytearray()
        self._partial_turn = 0
        self._resampler: StreamResampler | None = None
        self._resampler_key: tuple[int, int, int] | None = None

    # --- filling ------------------------------------------------------------------------------

    def add(self, frame: AudioFrame) -> None:
        """Queue a frame of bot audio (any rate, mono or stereo) for turn `frame.turn`."""
        key = (frame.turn, frame.sample_rate, frame.num_channels)
        if key != self._resampler_key:
            self._close_stream()
            rates = (frame.sample_rate, frame.num_channels, self.sample_rate, self.num_channels)
            self._resampler = StreamResampler(*rates)
            self._resampler_key = key
            self._partial_turn = frame.turn
        assert self._resampler is not None
        self._append(self._resampler.resample(frame.audio))

    def end_turn(self, turn: int) -> None:
        """The turn's audio is complete: release what the resampler holds and pad the tail."""
        if self._resampler_key is not None and self._resampler_key[0] == turn:
            self._close_stream()

    def end_all(self) -> None:
        """No more audio is coming: release what the resampler holds and pad the tail."""
        self._close_stream()

    def release(self) -> None:
        """The output is over: drop the resampler now (FFmpeg's filter graph runs threads)."""
        self._resampler = None
        self._resampler_key = None

    def _close_stream(self) -> None:
        if self._resampler is not None:
            self._append(self._resampler.flush())
        self._resampler = None
        self._resampler_key = None
        self._flush_partial()

    def _append(self, pcm: bytes) -> None:
        if not pcm:
            return
        partial = self._partial
        partial += pcm
        size = self.chunk_bytes
        if len(partial) < size:
            return
        whole = len(partial) - len(partial) % size
        view = memoryview(partial)
        turn = self._partial_turn
        for start in range(0, whole, size):
            self._chunks.append(AudioChunk(bytes(view[start : start + size]), turn, self.chunk_samples))
        view.release()
        del partial[:whole]

    def _flush_partial(self) -> None:
        if self._partial:
            samples = len(self._partial) // (2 * self.num_channels)
            audio = bytes(self._partial) + bytes(self.chunk_bytes - len(self._partial))
            self._chunks.append(AudioChunk(audio, self._partial_turn, samples))
            self._partial.clear()

    # --- draining -----------------------------------------------------------------------------

    def pop(self) -> AudioChunk | None:
        """The next chunk; on underrun, whatever partial chunk there is, padded with silence."""
        if not self._chunks:
            self._flush_partial()
            if not self._chunks:
                return None
        return self._chunks.popleft()

    def next_turn(self) -> int | None:
        """The turn of the next chunk `pop` would return, if any audio is queued."""
        if self._chunks:
            return self._chunks[0].turn
        return self._partial_turn if self._partial else None

    def clear(self, stale_upto: int) -> int:
        """Drop queued audio of turns up to `stale_upto` (and of turn 0); return samples dropped."""
        dropped = 0
        kept: deque[AudioChunk] = deque()
        for chunk in self._chunks:
            if chunk.turn == 0 or chunk.turn <= stale_upto:
                dropped += chunk.samples
            else:
                kept.append(chunk)
        self._chunks = kept
        if self._partial_turn == 0 or self._partial_turn <= stale_upto:
            dropped += len(self._partial) // (2 * self.num_channels)
            self._partial.clear()
            self._resampler = None
            self._resampler_key = None
        return dropped

    def drop_live(self, samples: int) -> int:
        """Drop whole chunks of live audio (turn 0), oldest first, up to `samples`; return how many."""
        dropped = 0
        chunks = self._chunks
        while chunks and chunks[0].turn == 0 and dropped + chunks[0].samples <= samples:
            dropped += chunks.popleft().samples
        return dropped

    @property
    def queued_samples(self) -> int:
        return sum(c.samples for c in self._chunks) + len(self._partial) // (2 * self.num_channels)

    def __bool__(self) -> bool:
        return bool(self._chunks) or bool(self._partial)
