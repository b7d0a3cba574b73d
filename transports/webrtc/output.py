"""`WebRTCOutputTransport`: the shared playout, feeding the session's outgoing audio track.

The pacer hands one 20 ms chunk of 48 kHz mono per period to a `PacedAudioTrack` (silence when
the bot is quiet, so the stream is steady); aiortc's sender takes it at once and encodes it.
An interruption also clears the chunks the track still holds, so the bot stops within one
frame. The tracer gets ``first_packet_out`` when aiortc takes the first chunk of a reply.
"""

from __future__ import annotations

from .._playout import AudioChunk
from ..output import OutputOptions, OutputTransport
from .tracks import PacedAudioTrack

WIRE_RATE = 48_000


def wire_output_options() -> OutputOptions:
    # Live audio (an echo) keeps no standing backlog once a second passes without need of one:
    # the round trip comes back after loss or jitter ends (a bot's reply is never trimmed).
    return OutputOptions(sample_rate=WIRE_RATE, num_channels=1, chunk_ms=20, emit_silence=True, live_backlog_s=0.0)


class WebRTCOutputTransport(OutputTransport):
    def __init__(self, options: OutputOptions | None = None, *, name: str | None = None) -> None:
        super().__init__(options or wire_output_options(), name=name)
        self.track = PacedAudioTrack(
            sample_rate=self.output_options.sample_rate or WIRE_RATE,
            num_channels=self.output_options.num_channels,
            on_sent=self._on_sent,
        )
        self._last_sent_turn: int | None = None

    async def write_audio(self, audio: bytes, chunk: AudioChunk | None) -> None:
        self.track.put(audio, None if chunk is None else chunk.turn)

    def discard_wire_audio(self) -> None:
        self.track.clear()

    def _on_sent(self, turn: object) -> None:
        if turn != self._last_sent_turn and isinstance(turn, int):
            self._last_sent_turn = turn
            self.trace("first_packet_out", turn=turn, t_ns=self.clock.now_ns())
