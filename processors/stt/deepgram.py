"""Deepgram live speech-to-text over a thin WebSocket client (see processors/README.md: why thin).

Streams the pipeline's PCM as it arrives (an `STTService`: the audio also goes on); interim
results become `InterimTranscriptionFrame`, finals `TranscriptionFrame` (`speech_final` when
Deepgram's own endpointing ended the speech). When the VAD says the user stopped (or paused:
the reply may be prepared while the turn's end is awaited), `Finalize` makes Deepgram flush at
once instead of waiting for its endpointing; "stt_final" is traced when the user's transcript
is complete. While no audio flows, KeepAlive holds the stream open.

No word lost, none twice: every chunk sent is kept until a final covers it (Deepgram's
`start + duration` of each final, in the connection's own audio time). After a drop the stream
reconnects and replays, from the end of the last final, everything the old connection had not
finalized, including what the user said while it was down.
"""

from __future__ import annotations

import json
import logging
import os
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from voxframe.pipeline import (
    EndFrame,
    InputAudioFrame,
    InterimTranscriptionFrame,
    MetricsFrame,
    StartFrame,
    TranscriptionFrame,
    UserStartedSpeakingFrame,
)
from voxframe.processors.streaming import ProviderError
from voxframe.processors.streaming.websocket import Endpoint, Message, StreamOptions, WebSocketStream

from .base import STTService

logger = logging.getLogger("voxframe")

DEFAULT_URL = "wss://api.deepgram.com"
_REPLAY_PIECE_BYTES = 8192  # replayed audio goes out in pieces of this size


@dataclass(slots=True)
class DeepgramOptions:
    #: None: $DEEPGRAM_API_KEY.
    api_key: str | None = None
    #: The service root (scheme and host); None: $DEEPGRAM_URL, else the public API.
    url: str | None = None
    model: str = "nova-3"
    language: str = "en"
    #: None: the pipeline's input rate.
    sample_rate: int | None = None
    interim_results: bool = True
    #: Deepgram's own end-of-speech pause in ms; None disables it (the VAD's Finalize decides).
    endpointing_ms: int | None = 300
    utterance_end_ms: int | None = 1000
    smart_format: bool = True
    punctuate: bool = True
    #: Extra query parameters (keyterms, diarize, ...), passed as given.
    extra_query: dict[str, str] = field(default_factory=dict)
    #: Audio kept for replay after a drop is bounded to this much.
    replay_limit_s: float = 30.0
    #: Deepgram answers audio at least every couple of seconds (empty finals in silence), so
    #: 5 s without a message while audio flows is a stalled stream: it is replaced and replayed.
    stream: StreamOptions = field(
        default_factory=lambda: StreamOptions(keepalive_interval_s=5.0, liveness_timeout_s=5.0)
    )


class _ReplayBuffer:
    """The audio sent since the last final, by stream position (samples), for replay after a drop."""

    def __init__(self, limit_samples: int) -> None:
        self.limit = limit_samples
        self.chunks: deque[tuple[int, bytes]] = deque()
        self.end = 0  # stream position after the last chunk added
        self.lost_samples = 0  # dropped by the bound: words there cannot be recovered

    def add(self, pcm: bytes) -> None:
        self.chunks.append((self.end, pcm))
        self.end += len(pcm) // 2
        while self.chunks and self.end - self.chunks[0][0] > self.limit:
            _, chunk = self.chunks.popleft()
            self.lost_samples += len(chunk) // 2

    def release_before(self, position: int) -> None:
        """A final covers everything before `position`: forget it."""
        while self.chunks:
            start, chunk = self.chunks[0]
            if start + len(chunk) // 2 > position:
                if start < position:
                    self.chunks[0] = (position, chunk[(position - start) * 2 :])
                return
            self.chunks.popleft()

    def start(self) -> int:
        return self.chunks[0][0] if self.chunks else self.end

    def since(self, position: int) -> bytes:
        """The audio from `position` to the end."""
        return b"".join(c[max(0, position - s) * 2 :] for s, c in self.chunks if s + len(c) // 2 > position)


class DeepgramSTT(STTService):
    def __init__(self, options: DeepgramOptions | None = None, *, name: str | None = None) -> None:
        super().__init__(name=name)
        self.options = options or DeepgramOptions()
        self._stream: WebSocketStream | None = None
        self._replay = _ReplayBuffer(0)
        self._conn_base = 0  # stream position (samples) where the current connection's audio starts
        self._replaying = False
        self._awaiting_final = False  # the user stopped; their transcript is not complete yet
        self._open_interim = False  # an interim not yet covered by a final
        self._heard = False  # any words since the user started speaking
        self._closed = False
        self._rate_warned = False
        self._stream_rate = 0  # the sample rate the open connection was asked for

    @property
    def sample_rate(self) -> int:
        return self.options.sample_rate or self.start_frame.audio_in_sample_rate

    # --- lifecycle -----------------------------------------------------------------------------

    async def setup(self) -> None:
        self._replay = _ReplayBuffer(int(self.options.replay_limit_s * self.sample_rate))
        self._stream = WebSocketStream(
            self.name,
            self._endpoint,
            self.options.stream,
            on_message=self._on_message,
            on_lost=self._on_lost,
            on_reconnected=self._on_reconnected,
            on_failed=self._on_failed,
            on_bad_message=self._on_bad_message,
            keepalive_message=lambda: json.dumps({"type": "KeepAlive"}),
            clock=self.clock,
        )
        await self.task_group.start(self._stream.run)

    async def cleanup(self) -> None:
        if self._stream is not None:
            await self._stream.close()

    def _endpoint(self) -> Endpoint:
        opts = self.options
        key = opts.api_key or os.environ.get("DEEPGRAM_API_KEY", "")
        base = (opts.url or os.environ.get("DEEPGRAM_URL") or DEFAULT_URL).rstrip("/")
        query: dict[str, Any] = {
            "model": opts.model,
            "language": opts.language,
            "encoding": "linear16",
            "sample_rate": self.sample_rate,
            "channels": 1,
            "interim_results": opts.interim_results,
            "endpointing": opts.endpointing_ms if opts.endpointing_ms is not None else False,
            "smart_format": opts.smart_format,
            "punctuate": opts.punctuate,
        }
        if opts.utterance_end_ms is not None and opts.interim_results:
            query["utterance_end_ms"] = opts.utterance_end_ms
        query = {k: str(v).lower() if isinstance(v, bool) else v for k, v in query.items()}
        query.update(opts.extra_query)
        self._stream_rate = self.sample_rate
        scheme = "Bearer" if key.count(".") == 2 else "Token"  # a JWT is a temporary token
        return Endpoint(f"{base}/v1/listen?{urlencode(query)}", {"Authorization": f"{scheme} {key}"})

    # --- frames (the STTService hooks) -----------------------------------------------------------

    async def on_speech_started(self, frame: UserStartedSpeakingFrame) -> None:
        self._awaiting_final = False
        self._heard = False

    async def on_end(self, frame: EndFrame) -> None:
        await self._close_stream()

    async def on_start(self, frame: StartFrame) -> None:
        """Setup connected before the pipeline's rates were known: reconnect if they differ."""
        self._replay.limit = int(self.options.replay_limit_s * self.sample_rate)
        if self._stream is not None and self._stream_rate != self.sample_rate:
            await self._stream.restart()

    async def take_audio(self, frame: InputAudioFrame) -> None:
        if frame.sample_rate != self.sample_rate or frame.num_channels != 1:
            if not self._rate_warned:
                self._rate_warned = True
                await self.push_error(
                    f"{self.name}: expects mono {self.sample_rate} Hz audio, got {frame.num_channels} ch "
                    f"{frame.sample_rate} Hz; those frames are not transcribed"
                )
            return
        if not frame.audio or self._closed:
            return
        self._replay.add(frame.audio)
        if self._replaying or self._stream is None:
            return  # the replay in progress sends it, in order
        await self._stream.send(frame.audio, owes_reply=True)

    async def finalize(self, speech_end_ns: int | None, *, stopped: bool) -> None:
        """The words so far are all there will be for now: have them final at once."""
        if self._heard and not self._open_interim:
            metric = self._complete()  # everything heard is already final
            if metric is not None:
                await self.push(metric)
        else:
            self._awaiting_final = True
        if self._stream is not None:
            await self._stream.send(json.dumps({"type": "Finalize"}), owes_reply=True)

    async def _close_stream(self) -> None:
        """End of session: CloseStream flushes the last words, then the server closes."""
        if self._stream is not None and not self._closed:
            self._closed = True
            await self._stream.close(json.dumps({"type": "CloseStream"}))

    # --- results -------------------------------------------------------------------------------

    async def _on_message(self, message: Message) -> None:
        if isinstance(message, bytes):
            return
        data = json.loads(message)
        kind = data.get("type")
        if kind == "Results":
            await self._on_results(data)
        elif kind == "Error":
            await self.push_error(f"{self.name}: {data.get('description') or data}")

    async def _on_results(self, data: dict[str, Any]) -> None:
        alternatives = data.get("channel", {}).get("alternatives") or [{}]
        text = (alternatives[0].get("transcript") or "").strip()
        language = data.get("channel", {}).get("detected_language") or self.options.language
        if not data.get("is_final"):
            if text:
                self._open_interim = self._heard = True
                await self.push(InterimTranscriptionFrame(text=text, language=language))
            return
        end_s = float(data.get("start", 0.0)) + float(data.get("duration", 0.0))
        self._replay.release_before(self._conn_base + round(end_s * self.sample_rate))
        self._open_interim = False
        self._heard = self._heard or bool(text)
        complete = self._awaiting_final and bool(text or data.get("from_finalize"))
        if complete:
            # An empty answer to Finalize with nothing heard was noise: no turn, no trace.
            self._awaiting_final = False
            metric = self._complete() if self._heard else None
        if text:  # after the trace: this frame may start the reply (a new turn)
            speech_final = bool(data.get("speech_final"))
            await self.push(TranscriptionFrame(text=text, language=language, speech_final=speech_final))
        if complete and metric is not None:
            await self.push(metric)

    def _complete(self) -> MetricsFrame | None:
        """The user's transcript is complete: trace it (and what it took) for the coming reply."""
        self._heard = False
        return self.trace_final()

    # --- drops ---------------------------------------------------------------------------------

    async def _on_lost(self, code: int | None, reason: str) -> None:
        self._open_interim = False  # the interim's audio will be replayed and heard again
        await self.push(MetricsFrame(processor=self.name, metric="connection_lost", value=1.0))

    async def _on_reconnected(self) -> None:
        """Replay everything not finalized on the old connection, then carry on live."""
        stream = self._stream
        assert stream is not None
        self._conn_base = self._replay.start()
        if self._replay.lost_samples:
            logger.warning(
                "%s: %.1f s of audio could not be replayed", self.name, self._replay.lost_samples / self.sample_rate
            )
            self._replay.lost_samples = 0
        self._replaying = True
        try:
            position = self._conn_base
            # Live audio keeps arriving while this sends: loop until caught up.
            while position < self._replay.end:
                pending = self._replay.since(position)
                position = self._replay.end
                for i in range(0, len(pending), _REPLAY_PIECE_BYTES):
                    if not await stream.send(pending[i : i + _REPLAY_PIECE_BYTES], owes_reply=True):
                        return  # lost again: the next reconnection replays from the same point
        finally:
            self._replaying = False
        if self._awaiting_final:
            await stream.send(json.dumps({"type": "Finalize"}), owes_reply=True)

    async def _on_failed(self, error: ProviderError) -> None:
        await self.push_error(f"{self.name}: {error}", fatal=True, exception=error)

    async def _on_bad_message(self, error: Exception) -> None:
        await self.push_error(f"{self.name}: unreadable message from the service: {error!r}", exception=error)


__all__ = ["DeepgramOptions", "DeepgramSTT"]
