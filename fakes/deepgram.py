"""A fake of Deepgram's live transcription WebSocket (`/v1/listen`), for tests and local runs.

It decides utterances from the audio it receives (energy of 10 ms windows) and answers each
with the next scripted transcript: `SpeechStarted` at the onset, growing interims while speech
goes on, a final with `speech_final` after the endpointing pause, `UtteranceEnd` after
`utterance_end_ms` of quiet, a `from_finalize` final `final_latency` after `Finalize`, and
`Metadata` then close 1000 after `CloseStream`. No audio or KeepAlive for `idle_timeout_s`:
close 1011 `NET-0001`.

A Finalize answers with what was said before it. When speech resumes before that answer is
due (the client finalized at a pause within a sentence), the answer is an empty final and the
utterance's words all come with its last final: the real service would split them between the
two, but the last words arrive when they would, and the client's joined text is the same.

Audio that is loud but not speech (a hiss, a door, a burst: too few voiced windows, see
`EnergySegmenter`) is an utterance without words, as the real service hears it: no interims,
an empty final, and it takes no transcript.

Transcripts are handed out in order of utterances whose final was *delivered*, across
connections, so a client that reconnects and replays an unfinished utterance gets that
utterance's transcript again.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
from aiohttp import web

from ._audio import EnergySegmenter, SpeechEdge
from ._server import Connection, FakeServer, LatencyProfile, WebSocketSession

#: Deepgram nova-3, `Finalize` sent -> final transcript: p50 47 ms, p95 98 ms (LATENCY.md). The
#: source (pipecat-ai/stt-benchmark, 1,000 clips) reports TTFS 247 / 298 ms, timed from the real end
#: of speech; it includes the benchmark's own 200 ms VAD stop, at which `Finalize` goes out
#: (its docs/measuring-ttfs.md), so the service's part is 247 - 200 and 298 - 200. The fake's delay
#: starts at the message the real service answers, so it takes the service's part only.
FINAL_LATENCY = LatencyProfile(0.047, 0.098)


@dataclass(slots=True)
class DeepgramFakeOptions:
    #: The transcript of each utterance, in order. Past the end: "utterance N".
    transcripts: list[str] = field(default_factory=list)
    #: Finalize -> its from_finalize final.
    final_latency: LatencyProfile = field(default_factory=lambda: FINAL_LATENCY)
    #: The fake's own endpointing decided the utterance is over (after `endpointing` ms of
    #: quiet) -> its `speech_final` final. No published figure times this step apart; it is the
    #: same work as answering a Finalize (the decision is made, the transcript is flushed), so
    #: it takes the same profile. None: `final_latency` (one knob for tests that zero it).
    endpoint_latency: LatencyProfile | None = None
    #: An interim every this much speech audio; words appear at `seconds_per_word`.
    interim_every_s: float = 0.5
    seconds_per_word: float = 0.3
    #: Silence is finalized too, as an empty final, every this many seconds (as the service does).
    silence_final_every_s: float = 2.0
    idle_timeout_s: float = 10.0
    threshold_dbfs: float = -40.0
    #: An utterance has words only with at least this much voiced audio, making at least
    #: `min_voiced_share` of its loud audio: noise as loud as speech gets an empty transcript.
    min_voiced_s: float = 0.05
    min_voiced_share: float = 0.3


@dataclass(slots=True)
class _Utterance:
    index: int
    start_s: float
    end_s: float | None = None
    finalized: bool = False
    last_interim_s: float = 0.0
    #: A Finalize's answer is due: no interim may overtake it.
    finalize_pending: bool = False
    #: The segmenter's loud and voiced window counts when the utterance began.
    loud_from: int = 0
    voiced_from: int = 0


class DeepgramFake(FakeServer):
    name = "deepgram"

    def __init__(
        self, options: DeepgramFakeOptions | None = None, *, api_key: str | None = None, seed: int = 0, port: int = 0
    ) -> None:
        super().__init__(api_key=api_key, seed=seed, port=port)
        self.options = options or DeepgramFakeOptions()
        self.finalized_utterances = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/listen", self._handle)

    def transcript(self, index: int) -> str:
        scripted = self.options.transcripts
        return scripted[index] if index < len(scripted) else f"utterance {index + 1}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        request_id = str(uuid.uuid4())
        return await self.serve_websocket(
            request,
            lambda conn, ws, req: _Session(self, conn, ws, req, request_id),
            lambda conn: self._reject(conn, request_id),
            {"dg-request-id": request_id},
        )

    def _reject(self, conn: Connection, request_id: str) -> web.Response | None:
        status, code, message = None, "", ""
        fault = conn.fault
        if fault is not None and fault.status is not None:
            status = fault.status
        elif not self.authorized(conn, schemes=("Token", "Bearer")):
            status = 401
        elif conn.query.get("encoding", "linear16") != "linear16" or conn.query.get("channels", "1") != "1":
            status, code, message = 400, "UNSUPPORTED_AUDIO", "This fake accepts linear16 mono only."
        if status is None:
            return None
        code = code or {401: "INVALID_AUTH", 429: "TOO_MANY_REQUESTS"}.get(status, "INTERNAL")
        message = message or {401: "Invalid credentials.", 429: "Too many requests."}.get(status, "Error.")
        body = json.dumps({"err_code": code, "err_msg": message, "request_id": request_id})
        headers = {"dg-error": message, "dg-request-id": request_id}
        if status == 429 and fault is not None:
            headers["retry-after"] = str(max(1, round(fault.retry_after_s)))
        return web.Response(status=status, text=body, content_type="application/json", headers=headers)


class _Session(WebSocketSession):
    """One live connection: reads audio and control messages, answers through an outbox."""

    fake: DeepgramFake

    def __init__(
        self, fake: DeepgramFake, conn: Connection, ws: web.WebSocketResponse, request: web.Request, request_id: str
    ) -> None:
        super().__init__(fake, conn, ws, request)
        self.options = fake.options
        self.request_id = request_id
        q = conn.query
        self.sample_rate = int(q.get("sample_rate", "16000"))
        endpointing = q.get("endpointing", "10")
        self.endpointing_s = None if endpointing == "false" else int(endpointing) / 1000
        self.interims = q.get("interim_results", "false") == "true"
        self.vad_events = q.get("vad_events", "false") == "true"
        utterance_end = q.get("utterance_end_ms")
        self.utterance_end_s = int(utterance_end) / 1000 if utterance_end else None
        self.segmenter = EnergySegmenter(
            self.sample_rate,
            end_silence_s=self.endpointing_s or 3600.0,
            threshold_dbfs=fake.options.threshold_dbfs,
        )
        self.utterance: _Utterance | None = None
        self.segment_start_s = 0.0  # where the next result's `start` is
        self.words_since_utterance_end: float | None = None  # last word end, until UtteranceEnd
        self.outbox_in, self.outbox = anyio.create_memory_object_stream[tuple[float, Any, int | None]](1000)
        self.next_index = 0  # the transcript index of this connection's next utterance
        self._counts_before = (0, 0)  # the segmenter's loud and voiced counts before the last audio

    async def started(self, tg: anyio.abc.TaskGroup) -> None:
        tg.start_soon(self._sender)
        tg.start_soon(self._idle_watch)

    async def on_binary(self, data: bytes) -> None:
        if not data or len(data) % 2:
            self._queue_close(1008, "DATA-0000")
            return
        self._on_audio(data)
        fault, utterance = self.conn.fault, self.utterance
        speaking_s = self.segmenter.position_s - utterance.start_s if utterance and not utterance.finalized else 0.0
        if fault is not None and fault.after_speech_s is not None and speaking_s >= fault.after_speech_s:
            await self.fail(fault)  # mid-utterance: what was said so far is not final yet

    async def on_text(self, payload: Any) -> None:
        kind = payload.get("type") if isinstance(payload, dict) else None
        if kind == "Finalize":
            self._on_finalize()
        elif kind == "CloseStream":
            utterance = self.utterance
            if utterance is not None and not utterance.finalized:
                self._finalize(utterance, from_finalize=False, speech_final=True, delay=0.0)
            self._queue(self._metadata())
            self._queue_close(1000, "")
        elif kind != "KeepAlive":
            self._queue({"type": "Error", "description": f"unknown message type {kind!r}"})

    def _on_audio(self, pcm: bytes) -> None:
        self._counts_before = (self.segmenter.loud_windows, self.segmenter.voiced_windows)
        for edge in self.segmenter.feed(pcm):
            self._on_edge(edge)
        utterance = self.utterance
        pos = self.segmenter.position_s
        open_utterance = utterance is not None and (
            not utterance.finalized and utterance.end_s is None and not utterance.finalize_pending
        )
        interim_due = utterance is not None and pos - utterance.last_interim_s >= self.options.interim_every_s
        if open_utterance and utterance is not None and self.interims and interim_due and self._is_speech(utterance):
            utterance.last_interim_s = pos
            words = self._words(utterance, pos, interim=True)
            self._queue(self._result(words, is_final=False, speech_final=False, end_s=pos))
        idle = utterance is None or utterance.finalized
        if idle and not self.segmenter.speaking and pos - self.segment_start_s >= self.options.silence_final_every_s:
            self._queue(self._result([], is_final=True, speech_final=False, end_s=pos))
        last_word_end = self.words_since_utterance_end
        gap_s = self.utterance_end_s
        quiet = not self.segmenter.speaking
        if quiet and last_word_end is not None and gap_s is not None and pos - last_word_end >= gap_s:
            self.words_since_utterance_end = None
            self._queue({"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": round(last_word_end, 3)})

    def _on_edge(self, edge: SpeechEdge) -> None:
        if edge.speaking:
            if self.utterance is None or self.utterance.finalized:
                index = max(self.fake.finalized_utterances, self.next_index)
                self.next_index = index + 1
                loud_from, voiced_from = self._counts_before
                self.utterance = _Utterance(
                    index=index,
                    start_s=edge.time_s,
                    last_interim_s=edge.time_s,
                    loud_from=loud_from,
                    voiced_from=voiced_from,
                )
            if self.vad_events:
                self._queue({"type": "SpeechStarted", "channel": [0], "timestamp": round(edge.time_s, 3)})
            return
        utterance = self.utterance
        if utterance is None or utterance.finalized:
            return
        utterance.end_s = edge.time_s
        profile = self.options.endpoint_latency or self.options.final_latency
        self._finalize(utterance, from_finalize=False, speech_final=True, delay=self.fake.draw(profile, "endpoint"))

    def _on_finalize(self) -> None:
        delay = self.fake.draw(self.options.final_latency, "finalize")
        utterance, cut_s = self.utterance, self.segmenter.position_s
        if utterance is None or utterance.finalized:
            self._queue(self._result([], is_final=True, speech_final=False, end_s=cut_s, from_finalize=True), delay)
            return

        def answer() -> tuple[dict[str, Any], int | None]:
            """Decided when due: the utterance is over only if no speech came after the Finalize."""
            utterance.finalize_pending = False
            if not utterance.finalized and self.segmenter.last_loud_end_s <= cut_s:
                result = self._final_result(utterance, from_finalize=True, speech_final=False, cut_s=cut_s)
                return result, self._finalizes(utterance)
            return self._result([], is_final=True, speech_final=False, end_s=cut_s, from_finalize=True), None

        utterance.finalize_pending = True
        self._queue_later(answer, delay)

    def _finalize(self, utterance: _Utterance, *, from_finalize: bool, speech_final: bool, delay: float) -> None:
        result = self._final_result(utterance, from_finalize=from_finalize, speech_final=speech_final)
        self._queue(result, delay, finalizes=self._finalizes(utterance))

    def _is_speech(self, utterance: _Utterance) -> bool:
        """Enough of the utterance's loud audio is voiced for it to hold words."""
        seg, o = self.segmenter, self.options
        voiced = seg.voiced_windows - utterance.voiced_from
        loud = seg.loud_windows - utterance.loud_from
        return voiced * seg.window >= o.min_voiced_s * self.sample_rate and voiced >= o.min_voiced_share * loud

    def _finalizes(self, utterance: _Utterance) -> int | None:
        """The transcript index a closed utterance's final uses up: none for noise (the next
        utterance gets the same index)."""
        if self._is_speech(utterance):
            return utterance.index
        self.next_index = min(self.next_index, utterance.index)
        return None

    def _final_result(
        self, utterance: _Utterance, *, from_finalize: bool, speech_final: bool, cut_s: float | None = None
    ) -> dict[str, Any]:
        """Close the utterance: its final, covering the audio up to `cut_s` (None: all so far)."""
        utterance.finalized = True
        self.segmenter.speaking = False  # whatever is loud next is a new utterance
        position_s = self.segmenter.position_s if cut_s is None else cut_s
        end_s = utterance.end_s if utterance.end_s is not None else position_s
        words = self._words(utterance, end_s, interim=False) if self._is_speech(utterance) else []
        if words:
            self.words_since_utterance_end = end_s
        return self._result(words, True, speech_final, end_s=max(end_s, position_s), from_finalize=from_finalize)

    # --- results -----------------------------------------------------------------------------

    def _words(self, utterance: _Utterance, end_s: float, *, interim: bool) -> list[dict[str, Any]]:
        text = self.fake.transcript(utterance.index).split()
        heard_s = max(0.0, end_s - utterance.start_s)
        count = len(text)
        if interim:
            count = min(count, max(1, int(heard_s / self.options.seconds_per_word)))
        span = heard_s / max(1, count)
        return [
            {
                "word": w.strip(".,!?;:\"'").lower(),
                "start": round(utterance.start_s + i * span, 3),
                "end": round(utterance.start_s + (i + 1) * span, 3),
                "confidence": 0.99,
                "punctuated_word": w,
            }
            for i, w in enumerate(text[:count])
        ]

    def _result(
        self,
        words: list[dict[str, Any]],
        is_final: bool,
        speech_final: bool,
        *,
        end_s: float,
        from_finalize: bool = False,
    ) -> dict[str, Any]:
        start = self.segment_start_s
        if is_final:
            self.segment_start_s = end_s
        return {
            "type": "Results",
            "channel_index": [0, 1],
            "duration": round(max(0.0, end_s - start), 3),
            "start": round(start, 3),
            "is_final": is_final,
            "speech_final": speech_final,
            "from_finalize": from_finalize,
            "channel": {
                "alternatives": [
                    {
                        "transcript": " ".join(w["punctuated_word"] for w in words),
                        "confidence": 0.99 if words else 0.0,
                        "words": words,
                    }
                ]
            },
            "metadata": {"request_id": self.request_id, "model_info": {"name": "fake-nova-3"}},
        }

    def _metadata(self) -> dict[str, Any]:
        return {
            "type": "Metadata",
            "transaction_key": "deprecated",
            "request_id": self.request_id,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            "duration": round(self.segmenter.position_s, 3),
            "channels": 1,
        }

    # --- sending -----------------------------------------------------------------------------

    def _queue(self, payload: dict[str, Any], delay: float = 0.0, *, finalizes: int | None = None) -> None:
        """Send `payload` after `delay`; a final that `finalizes` an utterance counts once delivered."""
        self.outbox_in.send_nowait((time.monotonic() + delay, payload, finalizes))

    def _queue_later(self, make: Callable[[], tuple[dict[str, Any], int | None]], delay: float) -> None:
        """Send what `make()` returns when `delay` is up: a payload, and the utterance it finalizes."""
        self.outbox_in.send_nowait((time.monotonic() + delay, make, None))

    def _queue_close(self, code: int, reason: str) -> None:
        self.outbox_in.send_nowait((time.monotonic(), ("close", code, reason), None))

    async def _sender(self) -> None:
        """Send results in order, each not before its due time (latency of a Finalize answer)."""
        async for due, item, finalizes in self.outbox:
            await anyio.sleep(max(0.0, due - time.monotonic()))
            if isinstance(item, tuple):
                await self.close(item[1], item[2])
                return
            if callable(item):
                item, finalizes = item()
            delivered = not self.stalled and not self.ws.closed
            await self.send_json(item)
            if finalizes is not None and delivered:
                self.fake.finalized_utterances = max(self.fake.finalized_utterances, finalizes + 1)

    async def _idle_watch(self) -> None:
        timeout = self.options.idle_timeout_s
        while True:
            remaining = self.last_activity + timeout - time.monotonic()
            if remaining <= 0:
                await self.close(1011, "NET-0001")
                return
            await anyio.sleep(remaining)


__all__ = ["FINAL_LATENCY", "DeepgramFake", "DeepgramFakeOptions"]
