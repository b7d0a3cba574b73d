"""A fake of Cartesia's TTS WebSocket (`/tts/websocket`), for tests and local runs.

Per context: inputs are concatenated verbatim (a word split across inputs waits for its end),
each input is "spoken" at `chars_per_second` as audible tone bursts in the asked encoding and
sample rate, cut into `chunk_s` chunks paced by an audio clock `realtime_factor` times faster
than playback, `ttfa` after the context's first text arrived (the fake's own work of making the
audio is inside that time, not added to it, as a service's is). Word timestamps (seconds from the
context's start) come just before the audio they describe. `continue: false` ends a context
with `done`; `cancel` stops it at once; more than `max_contexts` generating at once is refused
with a 429 `concurrency_limited` error, as the service does.
"""

from __future__ import annotations

import base64
import math
import time
from dataclasses import dataclass, field
from typing import Any

import anyio
from aiohttp import web

from ._audio import SAMPLE_BYTES, encode, speech_like
from ._server import Connection, FakeServer, LatencyProfile, WebSocketSession

#: Cartesia sonic, text -> first audio in a real pipeline: p50 ~170 ms (LATENCY.md, from Pipecat's
#: metrics docs; Cartesia states 90 ms model latency). No p95 is published: 205 ms is an assumption,
#: the p95/p50 spread (1.21) of the one streaming-service pair LATENCY.md has (Deepgram's TTFS,
#: 298 / 247 ms), so the TTS is jittered too instead of a constant.
TTFA = LatencyProfile(0.17, 0.205)
SAMPLE_RATES = (8000, 16000, 22050, 24000, 44100, 48000)


@dataclass(slots=True)
class CartesiaFakeOptions:
    ttfa: LatencyProfile = field(default_factory=lambda: TTFA)
    chars_per_second: float = 14.0
    #: Generation speed against playback; math.inf sends all audio at once.
    realtime_factor: float = 4.0
    chunk_s: float = 0.04
    max_contexts: int = 8


@dataclass(slots=True, eq=False)
class _Context:
    id: str
    encoding: str
    sample_rate: int
    timestamps: bool
    inputs_in: Any
    inputs_out: Any
    carry: str = ""
    last_input: bool = False  # `continue: false` came: no more inputs
    position_s: float = 0.0
    done: bool = False
    cancel_scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)


@dataclass(slots=True)
class _Speech:
    """One input's audio, made before it is due."""

    words: list[str]
    spans: list[tuple[float, float]]
    duration_s: float
    data: bytes


class CartesiaFake(FakeServer):
    name = "cartesia"

    def __init__(
        self, options: CartesiaFakeOptions | None = None, *, api_key: str | None = None, seed: int = 0, port: int = 0
    ) -> None:
        super().__init__(api_key=api_key, seed=seed, port=port)
        self.options = options or CartesiaFakeOptions()
        #: Every context ever opened, by id: texts received, whether cancelled, whether done.
        self.contexts: dict[str, dict[str, Any]] = {}

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/tts/websocket", self._handle)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        return await self.serve_websocket(
            request, lambda conn, ws, req: _Session(self, conn, ws, req), self._reject, {}
        )

    def _reject(self, conn: Connection) -> web.Response | None:
        fault = conn.fault
        if fault is not None and fault.status is not None:
            status, message = fault.status, "Injected failure."
        elif not self.authorized(conn, schemes=("Bearer",), extra_keys=("x-api-key", "api_key")):
            status, message = 401, "Invalid API key."
        elif not (conn.headers.get("cartesia-version") or conn.query.get("cartesia_version")):
            status, message = 400, "Missing Cartesia-Version."
        else:
            return None
        return web.json_response({"error": message}, status=status)


class _Session(WebSocketSession):
    def __init__(self, fake: CartesiaFake, conn: Connection, ws: web.WebSocketResponse, request: web.Request):
        super().__init__(fake, conn, ws, request)
        self.cartesia = fake
        self.options = fake.options
        self.contexts: dict[str, _Context] = {}

    async def on_text(self, payload: Any) -> None:
        if not isinstance(payload, dict):
            await self._error(None, 400, "invalid_request", "messages must be JSON objects")
            return
        context_id = payload.get("context_id")
        if payload.get("cancel"):
            self._cancel(context_id)
            return
        context = self.contexts.get(context_id) if context_id else None
        if context is None:
            context = await self._open(payload)
            if context is None:
                return
        elif context.done:
            await self._error(context_id, 400, "context_closed", "this context has ended")
            return
        context.inputs_in.send_nowait((payload.get("transcript", ""), time.monotonic()))
        self.cartesia.contexts[context.id]["texts"].append(payload.get("transcript", ""))
        if not payload.get("continue", False):
            context.last_input = True
            context.inputs_in.close()

    async def _open(self, payload: dict[str, Any]) -> _Context | None:
        context_id = payload.get("context_id") or f"ctx_{len(self.cartesia.contexts)}"
        fmt = payload.get("output_format") or {}
        problem = _invalid_request(payload, fmt)
        if problem:
            await self._error(context_id, 400, "invalid_request", problem)
            return None
        active = sum(1 for c in self.contexts.values() if not c.done)
        if active >= self.options.max_contexts:
            await self._error(context_id, 429, "concurrency_limited", "Too many concurrent generations.")
            return None
        send, receive = anyio.create_memory_object_stream[tuple[str, float]](math.inf)
        context = _Context(
            id=context_id,
            encoding=fmt["encoding"],
            sample_rate=int(fmt["sample_rate"]),
            timestamps=bool(payload.get("add_timestamps")),
            inputs_in=send,
            inputs_out=receive,
        )
        self.contexts[context_id] = context
        self.cartesia.contexts[context_id] = {"texts": [], "cancelled": False, "done": False, "audio_bytes": 0}
        assert self._tg is not None
        self._tg.start_soon(self._generate, context)
        return context

    def _cancel(self, context_id: str | None) -> None:
        context = self.contexts.get(context_id or "")
        if context is None:
            return
        context.cancel_scope.cancel()
        context.done = True
        self.cartesia.contexts[context.id]["cancelled"] = True
        self.cartesia.notify()

    async def _generate(self, context: _Context) -> None:
        """Speak each input of the context as it comes, paced; `done` once the inputs end."""
        with context.cancel_scope, context.inputs_out:
            first = True
            clock_start = 0.0
            async for text, arrived in context.inputs_out:
                spoken = context.carry + text
                context.carry = ""
                if not context.last_input and not spoken.endswith((" ", "\n")) and " " in spoken:
                    spoken, context.carry = spoken.rsplit(" ", 1)
                    spoken += " "
                if not spoken.strip():
                    continue
                audio = self._render(context, spoken)
                if first:
                    first = False
                    clock_start = arrived + self.cartesia.draw(self.options.ttfa, "ttfa")
                    await anyio.sleep(max(0.0, clock_start - time.monotonic()))
                await self._speak(context, audio, clock_start)
            if context.carry.strip():
                await self._speak(context, self._render(context, context.carry), clock_start or time.monotonic())
            context.done = True
            self.cartesia.contexts[context.id]["done"] = True
            self.cartesia.notify()
            await self.send_json({"type": "done", "done": True, "status_code": 200, "context_id": context.id})

    def _render(self, context: _Context, text: str) -> _Speech:
        words, spans, t = text.split(), [], 0.0
        for word in words:
            length = (len(word) + 1) / self.options.chars_per_second
            spans.append((t + 0.01, t + length - 0.02))
            t += length
        data = encode(speech_like(spans, t, context.sample_rate), context.encoding)
        return _Speech(words, spans, t, data)

    async def _speak(self, context: _Context, speech: _Speech, clock_start: float) -> None:
        words, spans, t, data = speech.words, speech.spans, speech.duration_s, speech.data
        rate = context.sample_rate
        width = SAMPLE_BYTES[context.encoding]
        chunk_bytes = max(width, round(self.options.chunk_s * rate) * width)
        pending_words = list(zip(words, spans, strict=True))
        for offset in range(0, len(data), chunk_bytes):
            chunk = data[offset : offset + chunk_bytes]
            chunk_start_s = offset / width / rate
            chunk_end_s = chunk_start_s + len(chunk) / width / rate
            due = clock_start + (context.position_s + chunk_start_s) / self.options.realtime_factor
            await anyio.sleep(max(0.0, due - time.monotonic()))
            starting = [pw for pw in pending_words if pw[1][0] < chunk_end_s]
            if starting and context.timestamps:
                pending_words = pending_words[len(starting) :]
                await self._send_timestamps(context, starting)
            message = {
                "type": "chunk",
                "data": base64.b64encode(chunk).decode(),
                "done": False,
                "status_code": 206,
                "step_time": round(self.options.chunk_s * 1000 / 4, 2),
                "context_id": context.id,
            }
            if await self.send_json(message, audio=True):  # a stalled session sends nothing
                self.cartesia.contexts[context.id]["audio_bytes"] += len(chunk)
        context.position_s += t

    async def _send_timestamps(self, context: _Context, words: list[tuple[str, tuple[float, float]]]) -> None:
        base = context.position_s
        await self.send_json(
            {
                "type": "timestamps",
                "done": False,
                "status_code": 206,
                "context_id": context.id,
                "word_timestamps": {
                    "words": [w for w, _ in words],
                    "start": [round(base + s, 3) for _, (s, _e) in words],
                    "end": [round(base + e, 3) for _, (_s, e) in words],
                },
            }
        )

    async def _error(self, context_id: str | None, status: int, code: str, message: str) -> None:
        await self.send_json(
            {
                "type": "error",
                "done": True,
                "status_code": status,
                "error_code": code,
                "title": code.replace("_", " ").title(),
                "message": message,
                "context_id": context_id,
            }
        )


def _invalid_request(payload: dict[str, Any], fmt: dict[str, Any]) -> str:
    if not payload.get("model_id"):
        return "model_id is required"
    voice = payload.get("voice") or {}
    if not voice.get("id") and voice.get("mode", "id") == "id":
        return "voice.id is required"
    if fmt.get("container", "raw") != "raw":
        return "this fake streams the raw container only"
    if fmt.get("encoding") not in SAMPLE_BYTES:
        return f"unsupported encoding {fmt.get('encoding')!r}"
    if fmt.get("sample_rate") not in SAMPLE_RATES:
        return f"unsupported sample_rate {fmt.get('sample_rate')!r}"
    return ""


__all__ = ["SAMPLE_RATES", "TTFA", "CartesiaFake", "CartesiaFakeOptions"]
