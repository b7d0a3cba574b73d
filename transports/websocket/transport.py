"""The WebSocket call's two ends: the input base as is, and an output that knows what was heard.

`WebSocketOutputTransport` is the shared playout (`OutputTransport`: 20 ms chunks paced on the
clock, a stale turn's audio dropped) writing each chunk to the session's socket. The listener
plays what arrives from a small buffer of its own, so a barge-in also sends the format's
"clear" (`discard_wire_audio`), which empties that buffer.

When the wire reports playback (Twilio echoes a mark once the audio sent before it has played),
a mark follows every chunk, named ``"<generation>:<turn>:<samples of the turn sent so far>"``;
an interruption then counts as played only what the echoed marks confirm, so the assistant's
context keeps only the words the caller heard. Marks that come back after a clear (Twilio
returns the pending ones) belong to an older generation and are ignored.
"""

from __future__ import annotations

from typing import Protocol

from .._playout import AudioChunk
from ..input import InputTransport
from ..output import OutputOptions, OutputTransport


class WebSocketInputTransport(InputTransport):
    """The caller's audio: the session's receive loop hands it to `receive_audio`."""


class AudioWire(Protocol):
    """What the output needs of its session."""

    @property
    def marks(self) -> bool: ...

    def send_audio(self, audio: bytes, turn: int) -> None: ...

    def send_mark(self, name: str, turn: int) -> None: ...

    def clear_audio(self) -> None: ...


class _Detached:
    """The wire of an output whose call is over: it sends nothing (and holds no session)."""

    marks = False

    def send_audio(self, audio: bytes, turn: int) -> None:
        pass

    def send_mark(self, name: str, turn: int) -> None:
        pass

    def clear_audio(self) -> None:
        pass


def websocket_output_options(sample_rate: int | None = None) -> OutputOptions:
    # No idle silence: a WebSocket listener plays what it gets and needs no steady stream.
    return OutputOptions(sample_rate=sample_rate, num_channels=1, chunk_ms=20, emit_silence=False)


class WebSocketOutputTransport(OutputTransport):
    def __init__(self, wire: AudioWire, options: OutputOptions | None = None, *, name: str | None = None) -> None:
        super().__init__(options or websocket_output_options(), name=name)
        self._wire = wire
        self._generation = 0
        #: Per turn: samples sent, and samples the listener confirmed (this generation).
        self._sent: dict[int, int] = {}
        self._heard: dict[int, int] = {}
        self.marks_sent = 0
        self.marks_played = 0

    async def write_audio(self, audio: bytes, chunk: AudioChunk | None) -> None:
        if chunk is None:
            return
        self._wire.send_audio(audio, chunk.turn)
        if self._wire.marks:
            sent = self._sent[chunk.turn] = self._sent.get(chunk.turn, 0) + chunk.samples
            self._wire.send_mark(f"{self._generation}:{chunk.turn}:{sent}", chunk.turn)
            self.marks_sent += 1

    def detach(self) -> None:
        """The call is over: drop the session (the session and its output would be a cycle)."""
        self._wire = _Detached()

    def discard_wire_audio(self) -> None:
        self._wire.clear_audio()
        self._generation += 1
        self._sent.clear()
        self._heard.clear()

    def heard_samples(self, turn: int, samples: int) -> int:
        if not self._wire.marks:
            return samples
        unheard = self._sent.get(turn, 0) - self._heard.get(turn, 0)
        return max(0, samples - unheard)

    def mark_played(self, name: str) -> None:
        """The listener played the audio before mark `name` (ours, or ignored)."""
        try:
            generation, turn, sent = (int(part) for part in name.split(":"))
        except ValueError:
            return  # not a mark of ours
        if generation != self._generation:
            return  # cleared: its audio was dropped, not played
        self.marks_played += 1
        self._heard[turn] = max(self._heard.get(turn, 0), sent)
