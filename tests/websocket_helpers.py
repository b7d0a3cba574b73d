"""WebSocket test helpers: a server with the WebSocket endpoint, a raw-format caller, a Twilio phone.

`TwilioPhone` is written from Twilio's "Media Streams - WebSocket Messages" page, not from our
serializer: it sends `connected`, `start` (streamSid, callSid, tracks, mediaFormat,
customParameters), a `media` message of 8 kHz μ-law every 20 ms (silence when the caller is
quiet, as a phone line does), and `stop` to hang up. Bot `media` is played from a buffer that
starts `playout_delay_s` after the audio arrives (the network and Twilio's buffer); a bot `mark`
is echoed once the audio queued before it has played; `clear` drops the audio not played yet
and returns the pending marks at once.
"""

from __future__ import annotations

import base64
import json
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import anyio
import numpy as np

from voxframe.pipeline import (
    DOWN,
    UP,
    BotStoppedSpeakingFrame,
    Direction,
    Frame,
    FrameProcessor,
    InputAudioFrame,
    TTSAudioFrame,
    TTSStoppedFrame,
    TTSWordsFrame,
    WordTiming,
)
from voxframe.pipeline.audio import loud
from voxframe.pipeline.clock import NS_PER_S, MonotonicClock
from voxframe.transports.webrtc import ServerOptions, WebRTCServer
from voxframe.transports.websocket import TaskFactory, WebSocketEndpoint, WebSocketOptions
from voxframe.transports.websocket.twilio import ulaw_decode, ulaw_encode

CHUNK_NS = 20_000_000
CLOCK = MonotonicClock()


@asynccontextmanager
async def serving_ws(
    factory: TaskFactory, options: WebSocketOptions | None = None, **server: Any
) -> AsyncIterator[tuple[WebRTCServer, str]]:
    """A WebRTC server on 127.0.0.1 with the WebSocket endpoint mounted, for the block."""
    endpoint = WebSocketEndpoint(factory, options)

    async def no_webrtc(session: Any) -> Any:
        raise AssertionError("this test makes no WebRTC call")

    webrtc = WebRTCServer(no_webrtc, ServerOptions(route_installers=[endpoint.install], **server))
    async with anyio.create_task_group() as tg:
        url = await tg.start(webrtc.serve)
        try:
            yield webrtc, url
        finally:
            tg.cancel_scope.cancel()


class Received:
    """What a caller got from the bot, with a wait for a condition on it."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.audio = bytearray()
        self.closed = False
        self._changed = anyio.Event()

    def changed(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, condition: Any, timeout_s: float = 15.0) -> None:
        with anyio.fail_after(timeout_s):
            while not condition():
                if self.closed:
                    raise AssertionError(f"the socket closed first; events: {[e.get('type') for e in self.events]}")
                await self._changed.wait()

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type", e.get("event")) == kind]


class RawCaller:
    """A caller in the raw format: binary s16le PCM both ways, JSON events."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, sample_rate: int) -> None:
        self.ws = ws
        self.sample_rate = sample_rate
        self.got = Received()

    async def read(self) -> None:
        async for message in self.ws:
            if message.type == aiohttp.WSMsgType.BINARY:
                self.got.audio += message.data
            elif message.type == aiohttp.WSMsgType.TEXT:
                self.got.events.append(flatten(json.loads(message.data)))
            self.got.changed()
        self.got.closed = True
        self.got.changed()

    async def say(self, pcm: np.ndarray) -> None:
        """Send int16 audio at the negotiated rate, 20 ms per message, in real time."""
        step = self.sample_rate // 50
        deadline = CLOCK.now_ns()
        for start in range(0, len(pcm), step):
            await self.ws.send_bytes(pcm[start : start + step].astype("<i2").tobytes())
            deadline += CHUNK_NS
            await CLOCK.sleep_until(deadline)


@asynccontextmanager
async def raw_call(url: str, query: str = "sample_rate=16000", **connect: Any) -> AsyncIterator[RawCaller]:
    rate = int(dict(p.split("=") for p in query.split("&") if p).get("sample_rate", 16_000))
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{url}/ws?{query}", **connect) as ws:
        caller = RawCaller(ws, rate)
        async with anyio.create_task_group() as tg:
            tg.start_soon(caller.read)
            try:
                yield caller
            finally:
                await ws.close()
                tg.cancel_scope.cancel()


# --- a phone on Twilio ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Queued:
    mark: str | None = None
    pcm: bytes = b""
    due_ns: int = 0


@dataclass(slots=True)
class TwilioPhone:
    ws: aiohttp.ClientWebSocketResponse
    token: str | None = None
    playout_delay_s: float = 0.4
    stream_sid: str = "MZ18ad3ab5a668481ce02b83e7395059f0"
    call_sid: str = "CA362f4a4a8bea5a0e6b48c1ea07eb4aa7"
    got: Received = field(default_factory=Received)
    #: The bot's audio as the caller heard it (s16le, 8 kHz), and how much had played at each clear.
    played: bytearray = field(default_factory=bytearray)
    played_at_clear: list[float] = field(default_factory=list)
    marks_echoed: list[str] = field(default_factory=list)
    _sequence: int = 0
    _chunk: int = 0
    _mic: deque[bytes] = field(default_factory=deque)
    _speaker: deque[_Queued] = field(default_factory=deque)
    _speaker_changed: anyio.Event = field(default_factory=anyio.Event)
    _sleep: anyio.CancelScope | None = None
    _last_end_ns: int = 0
    _started_ns: int = 0

    @property
    def played_s(self) -> float:
        return len(self.played) / 2 / 8000

    async def send(self, event: str, **body: Any) -> None:
        self._sequence += 1
        message: dict[str, Any] = {"event": event, "sequenceNumber": str(self._sequence), **body}
        if event != "connected":
            message["streamSid"] = self.stream_sid
        await self.ws.send_str(json.dumps(message))

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        await self.ws.send_str(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        start = {
            "accountSid": "AC0000000000000000000000000000000a",
            "streamSid": self.stream_sid,
            "callSid": self.call_sid,
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": {"token": self.token} if self.token else {},
        }
        await self.send("start", start=start)
        self._started_ns = CLOCK.now_ns()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._microphone)
            tg.start_soon(self._play)
            task_status.started()
            await self._receive()
            tg.cancel_scope.cancel()

    def say(self, pcm8k: np.ndarray) -> None:
        """Speak int16 8 kHz audio (it goes out in the next media messages)."""
        data = pcm8k.astype("<i2").tobytes()
        self._mic.extend(data[i : i + 320] for i in range(0, len(data), 320))

    async def hang_up(self) -> None:
        await self.send("stop", stop={"accountSid": "AC0000000000000000000000000000000a", "callSid": self.call_sid})
        await self.ws.close()

    async def _microphone(self) -> None:
        deadline = CLOCK.now_ns()
        silence = bytes(320)
        while not self.ws.closed:
            pcm = self._mic.popleft() if self._mic else silence
            self._chunk += 1
            media = {
                "track": "inbound",
                "chunk": str(self._chunk),
                "timestamp": str((deadline - self._started_ns) // 1_000_000),
                "payload": base64.b64encode(ulaw_encode(pcm.ljust(320, b"\0"))).decode(),
            }
            try:
                await self.send("media", media=media)
            except (ConnectionError, RuntimeError):
                return
            deadline += CHUNK_NS
            await CLOCK.sleep_until(deadline)

    async def _receive(self) -> None:
        async for message in self.ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                raise AssertionError(f"Twilio accepts only JSON text, got {message.type}")
            parsed = json.loads(message.data)
            assert parsed.get("streamSid") == self.stream_sid, parsed
            self.got.events.append(parsed)
            if parsed["event"] == "media":
                self._queue_media(base64.b64decode(parsed["media"]["payload"]))
            elif parsed["event"] == "mark":
                self._speaker.append(_Queued(mark=parsed["mark"]["name"]))
            elif parsed["event"] == "clear":
                await self._clear()
            else:
                raise AssertionError(f"not a message Twilio accepts: {parsed}")
            self._speaker_changed.set()
            self.got.changed()
        self.got.closed = True
        self.got.changed()

    def _queue_media(self, ulaw: bytes) -> None:
        pcm = ulaw_decode(ulaw)
        due = max(CLOCK.now_ns() + int(self.playout_delay_s * NS_PER_S), self._last_end_ns)
        self._last_end_ns = due + len(pcm) // 2 * NS_PER_S // 8000
        self._speaker.append(_Queued(pcm=pcm, due_ns=due))

    async def _clear(self) -> None:
        self.played_at_clear.append(self.played_s)
        pending, self._speaker = self._speaker, deque()
        self._last_end_ns = 0
        if self._sleep is not None:
            self._sleep.cancel()
        for item in pending:
            if item.mark is not None:  # Twilio returns the marks of the audio it dropped
                await self._echo(item.mark)

    async def _echo(self, name: str) -> None:
        self.marks_echoed.append(name)
        await self.send("mark", mark={"name": name})
        self.got.changed()

    async def _play(self) -> None:
        while True:
            while not self._speaker:
                self._speaker_changed = anyio.Event()
                await self._speaker_changed.wait()
            head = self._speaker[0]
            if head.mark is not None:
                self._speaker.popleft()
                await self._echo(head.mark)
                continue
            with anyio.CancelScope() as self._sleep:
                await CLOCK.sleep_until(head.due_ns + len(head.pcm) // 2 * NS_PER_S // 8000)
            self._sleep = None
            if self._speaker and self._speaker[0] is head:  # not cleared meanwhile
                self._speaker.popleft()
                self.played += head.pcm
                self.got.changed()


@asynccontextmanager
async def twilio_call(url: str, **phone: Any) -> AsyncIterator[TwilioPhone]:
    ws_url = url.replace("http", "ws", 1) + "/twilio/stream"
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url) as ws:
        caller = TwilioPhone(ws, **phone)
        async with anyio.create_task_group() as tg:
            await tg.start(caller.run)
            try:
                yield caller
            finally:
                await ws.close()
                tg.cancel_scope.cancel()


# --- a bot that answers with a tone ------------------------------------------------------------------

BOT_HZ = 1250.0
WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight")
WORD_S = 0.5


def tone(freq_hz: float, duration_s: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(duration_s * rate)) / rate
    return np.round(amplitude * 32767 * np.sin(2 * np.pi * freq_hz * t)).astype(np.int16)


class ToneBot(FrameProcessor):
    """Answers once the caller has spoken and been quiet for 0.3 s: a tone of `reply_s` "saying"
    `WORDS` (one per 0.5 s, with their timings). Loud audio while it answers interrupts it."""

    def __init__(self, reply_s: float = 2.0, max_replies: int = 1) -> None:
        super().__init__()
        self.reply_s = reply_s
        self.max_replies = max_replies
        self.replies = 0
        self.heard_loud = False
        self.quiet_s = 0.0
        self.playing: int | None = None
        self.stopped: list[BotStoppedSpeakingFrame] = []
        self.heard = bytearray()  # the caller's audio, as the pipeline got it

    async def process(self, frame: Frame, direction: Direction) -> None:
        await self.push(frame, direction)
        if isinstance(frame, BotStoppedSpeakingFrame) and direction is UP:
            self.stopped.append(frame)
            self.playing = None
        if not isinstance(frame, InputAudioFrame) or direction is not DOWN:
            return
        self.heard += frame.audio
        is_loud = bool(loud(np.frombuffer(frame.audio, "<i2")))
        if is_loud and self.playing is not None:
            self.playing = None
            await self.interrupt("barge-in")
        elif is_loud:
            self.heard_loud, self.quiet_s = True, 0.0
        elif self.heard_loud:
            self.quiet_s += len(frame.audio) / 2 / frame.sample_rate
            if self.quiet_s >= 0.3 and self.replies < self.max_replies:
                self.heard_loud = False
                await self._reply()

    async def _reply(self) -> None:
        self.replies += 1
        turn = self.playing = self.turns.begin()
        count = min(len(WORDS), int(self.reply_s / WORD_S))
        words = [WordTiming(w, i * WORD_S, i * WORD_S + 0.4) for i, w in enumerate(WORDS[:count])]
        await self.push(TTSWordsFrame(words=words, turn=turn))
        audio = tone(BOT_HZ, self.reply_s, 24_000).tobytes()
        await self.push(TTSAudioFrame(audio=audio, sample_rate=24_000, turn=turn))
        await self.push(TTSStoppedFrame(turn=turn))


def dominant_hz(pcm: bytes, rate: int) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def flatten(message: dict[str, Any]) -> dict[str, Any]:
    """An RTVI event (``{"label": "rtvi-ai", "type", "data"}``) as one dict: its type beside its data
    fields; the raw format's own messages (session, clear, error) are flat already."""
    if message.get("label") == "rtvi-ai" and isinstance(message.get("data"), dict):
        return {**message["data"], "type": message["type"]}
    return message
