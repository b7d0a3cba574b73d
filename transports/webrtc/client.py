"""`HeadlessClient`: a Python caller for tests, benchmarks and `bots/example.py`.

It does what a person with a browser does, measurably: plays audio (a WAV file or an array)
into its microphone track in real time, records what it hears, and reports on its clock (the
injected one, `voxframe.pipeline.clock`: monotonic in a real run, so shared with the server on
one host) when each utterance it played ended and when speech it heard started and stopped.
Its timeouts run on that clock too. It speaks RTVI on the data channel as Pipecat's clients do
(says ``client-ready`` when the channel opens); the server's messages are kept in `events`.

    async with HeadlessClient.connect(url) as client:
        played = await client.play(audio, 16_000)
        onset = await client.wait_for_onset(after_ns=played.speech_end_ns, timeout_s=5)
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import av
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from voxframe.pipeline.audio import last_loud_sample
from voxframe.pipeline.clock import NS_PER_S, Clock, current_clock, fail_at, move_on_at

from .._audio import StreamResampler, to_pcm16
from ..rtvi import PROTOCOL_VERSION, envelope
from ..wav import read_wav
from ._ice import IceOptions
from ._receive import ReceiveOptions, ReorderStage, install_receive_path
from ._release import release_peer_connection
from ._signal import Signal
from .onsets import OnsetDetector, OnsetOptions
from .tracks import PacedAudioTrack

MIC_RATE = 48_000
CHUNK = MIC_RATE // 50  # 20 ms
#: How long the microphone and speaker loops get to end by themselves at hang-up.
_LOOPS_END_S = 1.0


class ClientError(Exception):
    """Signalling or connection failed; the message says which and why."""


@dataclass(slots=True)
class ClientOptions:
    ice: IceOptions = field(default_factory=IceOptions)
    receive: ReceiveOptions = field(default_factory=ReceiveOptions)
    onsets: OnsetOptions = field(default_factory=OnsetOptions)
    token: str | None = None
    connect_timeout_s: float = 10.0
    #: Path of the offer endpoint on the server.
    offer_path: str = "/api/voice/offer"
    #: Keep every received sample (for content checks); onsets are tracked either way.
    record: bool = True
    #: Seconds of received audio kept when recording (oldest dropped first).
    max_record_s: float = 600.0


@dataclass(slots=True)
class PlayedUtterance:
    """When an utterance went into the microphone: its first and last sample, and speech end."""

    start_ns: int
    end_ns: int
    #: The last non-silent sample (the file may end with silence).
    speech_end_ns: int


class HeadlessClient:
    def __init__(self, options: ClientOptions | None = None, clock: Clock | None = None) -> None:
        self.options = options or ClientOptions()
        #: Every time the client reports (played, heard, onsets) and every timeout it keeps.
        self.clock = clock or current_clock()
        self.pc = RTCPeerConnection(self.options.ice.rtc_configuration())
        self.mic = PacedAudioTrack(sample_rate=MIC_RATE, num_channels=1)
        self.events: list[dict[str, Any]] = []
        self.session_id: str | None = None
        self.detector = OnsetDetector(MIC_RATE, self.options.onsets)
        self.received_samples = 0
        self.stage: ReorderStage | None = None
        self._recorded: list[tuple[int, np.ndarray]] = []
        self._recorded_samples = 0
        self._to_play: list[tuple[np.ndarray, anyio.Event, list[int]]] = []
        self._heard = Signal()
        self._event_arrived = Signal()
        self._remote: MediaStreamTrack | None = None
        self._track_arrived = anyio.Event()
        self._channel = self.pc.createDataChannel("events")
        self._channel.on("message", self._on_message)
        self._channel.on("open", self._say_ready)
        self._sent_ids = 0
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._heard.fire)

    # --- connecting -------------------------------------------------------------------------------

    @classmethod
    @asynccontextmanager
    async def connect(
        cls, base_url: str, options: ClientOptions | None = None, clock: Clock | None = None
    ) -> AsyncIterator[HeadlessClient]:
        """Call `base_url`; inside the block the call is up (microphone sending silence)."""
        client = cls(options, clock)
        try:
            await client._call(base_url)
            async with anyio.create_task_group() as tg:
                tg.start_soon(client._run_microphone)
                tg.start_soon(client._run_speaker)
                try:
                    yield client
                finally:
                    # Stopped tracks end both loops on their own: a task that ends cancelled
                    # would leave its frames (and this client) in a cycle with its exception.
                    client._stop_tracks()
                    # A teardown guard, on real time (no test steps a clock during teardown).
                    tg.cancel_scope.deadline = anyio.current_time() + _LOOPS_END_S  # teardown guard
        finally:
            with anyio.CancelScope(shield=True):
                await client.close()

    async def _call(self, base_url: str) -> None:
        transceiver = self.pc.addTransceiver(self.mic, direction="sendrecv")
        self.stage = install_receive_path(transceiver.receiver, self.options.receive, self.clock)
        if self.stage.decoded is not None:  # decoded inline: aiortc's own track stays silent
            self._remote = self.stage.decoded
            self._track_arrived.set()
        with self.options.ice.gathering():
            await self.pc.setLocalDescription(await self.pc.createOffer())
        if not any(line.startswith("a=candidate:") for line in self.pc.localDescription.sdp.splitlines()):
            raise ClientError("no ICE candidate could be gathered (check the TURN server and its credentials)")
        offer = {"sdp": self.options.ice.announce(self.pc.localDescription.sdp), "type": "offer"}
        headers = {"Authorization": f"Bearer {self.options.token}"} if self.options.token else {}
        answer = await self._post(base_url.rstrip("/") + self.options.offer_path, offer, headers)
        self.session_id = answer.get("session_id")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        async with move_on_at(self.clock.now_ns() + round(self.options.connect_timeout_s * NS_PER_S), self.clock):
            while self.pc.connectionState not in ("connected", "failed", "closed"):
                await self._heard.wait()
        if self.pc.connectionState != "connected":
            raise ClientError(f"the call did not connect (state {self.pc.connectionState!r})")

    async def _post(self, url: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        timeout = aiohttp.ClientTimeout(total=self.options.connect_timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as http, http.post(url, json=body, headers=headers) as reply:
            data = await reply.json(content_type=None)
            if reply.status != 200:
                raise ClientError(f"the server refused the call: HTTP {reply.status} {data}")
            return data

    async def close(self) -> None:
        """Hang up: stop the tracks and release the peer connection."""
        self._stop_tracks()
        await self.pc.close()
        release_peer_connection(self.pc)
        self._channel.remove_all_listeners()

    def _stop_tracks(self) -> None:
        self.mic.stop()
        if self._remote is not None:
            self._remote.stop()
        self._track_arrived.set()  # a speaker still waiting for the track ends too

    # --- talking -------------------------------------------------------------------------------------

    async def play(self, audio: np.ndarray | bytes | str | Path, sample_rate: int | None = None) -> PlayedUtterance:
        """Speak `audio` (a WAV path, or samples at `sample_rate`) into the microphone, in real
        time; returns once its last sample has been sent."""
        if isinstance(audio, (str, Path)):
            samples, sample_rate = read_wav(audio)
        else:
            if sample_rate is None:
                raise ValueError("sample_rate is required for raw audio")
            samples = np.frombuffer(to_pcm16(audio), dtype="<i2")
        resampler = StreamResampler(sample_rate, 1, MIC_RATE, 1)
        pcm = resampler.resample(samples.tobytes()) + resampler.flush()
        mic_samples = np.frombuffer(pcm, dtype="<i2")
        speech_end = last_loud_sample(mic_samples, MIC_RATE, self.options.onsets.threshold_dbfs)
        done, times = anyio.Event(), list[int]()
        self._to_play.append((mic_samples, done, times))
        await done.wait()
        start_ns, end_ns = times
        return PlayedUtterance(start_ns, end_ns, start_ns + speech_end * NS_PER_S // MIC_RATE)

    async def _run_microphone(self) -> None:
        """Hand the mic track one 20 ms chunk per period: the utterance being played, or silence.

        A chunk is handed over when its last sample has been 'captured', like a real microphone;
        a sample at offset `o` in chunk `k` of an utterance entered the mic at
        start + (k * CHUNK + o) / rate, where start is the handover of chunk 0 minus 20 ms.
        """
        silence = bytes(CHUNK * 2)
        period_ns = NS_PER_S // 50
        deadline = self.clock.now_ns()
        current: tuple[np.ndarray, anyio.Event, list[int]] | None = None
        position = 0
        while self.mic.readyState == "live":
            deadline += period_ns
            await self.clock.sleep_until(deadline)
            if current is None and self._to_play:
                current, position = self._to_play.pop(0), 0
                current[2].append(deadline - period_ns)  # chunk 0 began being captured then
            if current is None:
                self.mic.put(silence)
                continue
            samples, done, times = current
            chunk = samples[position : position + CHUNK]
            self.mic.put(chunk.tobytes() + bytes(2 * (CHUNK - len(chunk))))
            position += CHUNK
            if position >= len(samples):
                times.append(times[0] + len(samples) * NS_PER_S // MIC_RATE)
                done.set()
                current = None

    # --- listening -------------------------------------------------------------------------------------

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio" and self._remote is None:
            self._remote = track
            self._track_arrived.set()

    async def _run_speaker(self) -> None:
        await self._track_arrived.wait()
        track = self._remote
        if track is None:  # hung up before the server's track arrived
            return
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            arrival_ns = self.clock.now_ns()
            assert isinstance(frame, av.AudioFrame)  # an audio track's recv
            stereo = frame.to_ndarray().reshape(-1, len(frame.layout.channels))
            mono = stereo[:, 0].copy()
            self.received_samples += len(mono)
            self.detector.feed(mono, arrival_ns)
            if self.options.record:
                self._record(arrival_ns, mono)
            self._heard.fire()

    def _record(self, arrival_ns: int, mono: np.ndarray) -> None:
        self._recorded.append((arrival_ns, mono))
        self._recorded_samples += len(mono)
        limit = int(self.options.max_record_s * MIC_RATE)
        while self._recorded_samples > limit and len(self._recorded) > 1:
            self._recorded_samples -= len(self._recorded.pop(0)[1])

    def heard(self, since_ns: int = 0) -> np.ndarray:
        """Received audio (48 kHz mono int16) from chunks that arrived at or after `since_ns`."""
        parts = [mono for t, mono in self._recorded if t >= since_ns]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)

    async def wait_for_onset(self, after_ns: int, timeout_s: float) -> int:
        """The first onset of received speech at or after `after_ns`; TimeoutError if none."""
        async with self._fail_after(timeout_s):
            while True:
                onsets = self.detector.onsets_after(after_ns)
                if onsets:
                    return onsets[0]
                await self._heard.wait()

    async def wait_for_silence(self, after_ns: int, timeout_s: float) -> int | None:
        """Wait until nothing has been heard for `min_gap_s` since `after_ns` (or since the last
        speech after it); returns when the last speech heard ended (None: none was heard)."""
        gap_ns = int(self.options.onsets.min_gap_s * NS_PER_S)
        async with self._fail_after(timeout_s):
            while True:
                now = self.clock.now_ns()
                self.detector.close_gaps(now)
                last_loud = self.detector.last_loud_end_ns or 0
                if now - max(after_ns, last_loud) >= gap_ns:
                    return self.detector.last_loud_end_ns
                async with move_on_at(max(after_ns, last_loud) + gap_ns, self.clock):
                    await self._heard.wait()

    # --- events -------------------------------------------------------------------------------------

    def _on_message(self, message: str | bytes) -> None:
        try:
            event = json.loads(message)
        except (TypeError, ValueError):
            return
        if isinstance(event, dict):
            self.events.append(event)
            self._event_arrived.fire()

    def send(self, kind: str, data: Any = None) -> str:
        """Send one RTVI message to the bot; returns its id (a response carries it)."""
        self._sent_ids += 1
        message_id = f"hc{self._sent_ids}"
        self._channel.send(json.dumps(envelope(kind, data, message_id)))
        return message_id

    def send_text(self, text: str) -> None:
        """Type `text` to the bot: a user turn of its own."""
        self.send("send-text", {"content": text, "options": {"run_immediately": True, "audio_response": True}})

    def _say_ready(self) -> None:
        self.send("client-ready", {"version": PROTOCOL_VERSION, "about": {"library": "voxframe.headless"}})

    async def wait_for_event(self, kind: str, timeout_s: float, **match: Any) -> dict[str, Any]:
        """The first RTVI message of type `kind` whose data has the fields `match`; TimeoutError if none."""
        async with self._fail_after(timeout_s):
            while True:
                for event in self.events:
                    data = event.get("data")
                    fields = data if isinstance(data, dict) else {}
                    if event.get("type") == kind and all(fields.get(k) == v for k, v in match.items()):
                        return event
                await self._event_arrived.wait()

    def _fail_after(self, timeout_s: float) -> AbstractAsyncContextManager[anyio.CancelScope]:
        """`fail_at` `timeout_s` from now, on the client's clock."""
        return fail_at(self.clock.now_ns() + round(timeout_s * NS_PER_S), self.clock)
