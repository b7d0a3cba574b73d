"""A caller over a WebSocket, in the raw format or as a phone on Twilio, for the mouth-to-ear benchmark.

It offers what `m2e_measure.Caller` uses of the WebRTC `HeadlessClient` (`play`,
`wait_for_onset`, `wait_for_silence`, `detector`, `options.onsets`), so the same script measures
every transport, with the same clock points:

* mouth: a 20 ms chunk goes out when its last sample has been "captured" (like the WebRTC
  client's microphone), so a sample at offset `o` of an utterance entered the microphone at
  the utterance's start + `o / rate`;
* ear: a received chunk plays from its arrival on (`OnsetDetector`, as for WebRTC: no jitter
  buffer). The phone echoes each mark as its audio arrives (it has played by this ear's rule)
  and has nothing to drop on a `clear`.

The raw caller speaks 16 kHz both ways; the phone 8 kHz μ-law, as Twilio does, with a `media`
message every 20 ms (silence when the caller is quiet).

Not wired into the audited `mouth_to_ear.py` yet (its rows pair voxframe with Pipecat over
WebRTC): the WebSocket and Twilio rows are to be added there with this caller.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
import anyio
import numpy as np

from voxframe.pipeline.audio import last_loud_sample
from voxframe.pipeline.clock import NS_PER_S
from voxframe.transports._audio import StreamResampler
from voxframe.transports.webrtc import OnsetDetector, OnsetOptions, PlayedUtterance
from voxframe.transports.webrtc._signal import Signal
from voxframe.transports.websocket.twilio import ulaw_decode, ulaw_encode


@dataclass(slots=True)
class SocketClientOptions:
    onsets: OnsetOptions = field(default_factory=OnsetOptions)


class SocketClient:
    """One call over `/ws` (`twilio=False`) or `/twilio/stream` (`twilio=True`)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, *, twilio: bool) -> None:
        self.ws = ws
        self.twilio = twilio
        self.rate = 8000 if twilio else 16_000
        self.options = SocketClientOptions()
        self.detector = OnsetDetector(self.rate, self.options.onsets)
        self.events: list[dict] = []
        self._chunk = self.rate // 50
        self._to_play: list[tuple[np.ndarray, anyio.Event, list[int]]] = []
        self._heard = Signal()
        self._sequence = 0
        self._stream_sid = "MZ00000000000000000000000000000001"

    @classmethod
    @asynccontextmanager
    async def connect(cls, base_url: str, *, twilio: bool) -> AsyncIterator[SocketClient]:
        ws_url = base_url.replace("http", "ws", 1) + ("/twilio/stream" if twilio else "/ws?sample_rate=16000")
        async with aiohttp.ClientSession() as http, http.ws_connect(ws_url) as ws:
            client = cls(ws, twilio=twilio)
            await client._start()
            async with anyio.create_task_group() as tg:
                tg.start_soon(client._run_microphone)
                tg.start_soon(client._run_speaker)
                try:
                    yield client
                finally:
                    tg.cancel_scope.cancel()

    async def _send_twilio(self, event: str, **body: object) -> None:
        self._sequence += 1
        message = {"event": event, "sequenceNumber": str(self._sequence), "streamSid": self._stream_sid, **body}
        await self.ws.send_str(json.dumps(message))

    async def _start(self) -> None:
        if not self.twilio:
            return
        await self.ws.send_str(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        media_format = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
        start = {"streamSid": self._stream_sid, "callSid": "CA0", "tracks": ["inbound"], "mediaFormat": media_format}
        await self._send_twilio("start", start=start)

    # --- the microphone ------------------------------------------------------------------------------

    async def play(self, audio: np.ndarray, sample_rate: int) -> PlayedUtterance:
        """Speak int16 `audio` in real time; returns once its last sample has been sent."""
        resampler = StreamResampler(sample_rate, 1, self.rate, 1)
        pcm = resampler.resample(np.asarray(audio, dtype="<i2").tobytes()) + resampler.flush()
        samples = np.frombuffer(pcm, dtype="<i2")
        speech_end = last_loud_sample(samples, self.rate, self.options.onsets.threshold_dbfs)
        done, times = anyio.Event(), []
        self._to_play.append((samples, done, times))
        await done.wait()
        start_ns, end_ns = times
        return PlayedUtterance(start_ns, end_ns, start_ns + speech_end * NS_PER_S // self.rate)

    async def _run_microphone(self) -> None:
        """One 20 ms chunk per period, sent when its last sample has been captured."""
        period_ns = NS_PER_S // 50
        silence = np.zeros(self._chunk, dtype="<i2")
        deadline = time.monotonic_ns()
        current: tuple[np.ndarray, anyio.Event, list[int]] | None = None
        position = 0
        while not self.ws.closed:
            deadline += period_ns
            await anyio.sleep(max(0, deadline - time.monotonic_ns()) / NS_PER_S)
            if current is None and self._to_play:
                current, position = self._to_play.pop(0), 0
                current[2].append(deadline - period_ns)
            chunk = silence
            if current is not None:
                samples, done, times = current
                chunk = samples[position : position + self._chunk]
                chunk = np.concatenate([chunk, silence[: self._chunk - len(chunk)]])
                position += self._chunk
                if position >= len(samples):
                    times.append(times[0] + len(samples) * NS_PER_S // self.rate)
                    done.set()
                    current = None
            await self._send_audio(chunk.tobytes())

    async def _send_audio(self, pcm: bytes) -> None:
        if self.twilio:
            payload = base64.b64encode(ulaw_encode(pcm)).decode("ascii")
            await self._send_twilio("media", media={"track": "inbound", "payload": payload})
        else:
            await self.ws.send_bytes(pcm)

    # --- the ear -------------------------------------------------------------------------------------

    async def _run_speaker(self) -> None:
        async for message in self.ws:
            arrival_ns = time.monotonic_ns()
            if message.type == aiohttp.WSMsgType.BINARY:
                self._hear(np.frombuffer(message.data, dtype="<i2"), arrival_ns)
            elif message.type == aiohttp.WSMsgType.TEXT:
                event = json.loads(message.data)
                self.events.append(event)
                if event.get("event") == "media":
                    ulaw = base64.b64decode(event["media"]["payload"])
                    self._hear(np.frombuffer(ulaw_decode(ulaw), dtype="<i2"), arrival_ns)
                elif event.get("event") == "mark":  # played on arrival, by this ear's rule
                    await self._send_twilio("mark", mark=event["mark"])

    def _hear(self, samples: np.ndarray, arrival_ns: int) -> None:
        self.detector.feed(samples, arrival_ns)
        self._heard.fire()

    async def wait_for_onset(self, after_ns: int, timeout_s: float) -> int:
        """The first onset of received speech at or after `after_ns`; TimeoutError if none."""
        with anyio.fail_after(timeout_s):
            while True:
                onsets = self.detector.onsets_after(after_ns)
                if onsets:
                    return onsets[0]
                await self._heard.wait()

    async def wait_for_silence(self, after_ns: int, timeout_s: float) -> int | None:
        """Wait until nothing has been heard for `min_gap_s` since `after_ns` (or the last speech)."""
        gap_ns = int(self.options.onsets.min_gap_s * NS_PER_S)
        with anyio.fail_after(timeout_s):
            while True:
                now = time.monotonic_ns()
                self.detector.close_gaps(now)
                last_loud = self.detector.last_loud_end_ns or 0
                if now - max(after_ns, last_loud) >= gap_ns:
                    return self.detector.last_loud_end_ns
                with anyio.move_on_after((max(after_ns, last_loud) + gap_ns - now) / NS_PER_S):
                    await self._heard.wait()
