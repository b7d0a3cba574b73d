"""The calls that load the capacity benchmark's server, each process apart from the server.

* Light callers (`--caller URL FIRST CALLS SECONDS`): each call sends a pre-encoded Opus tone of
  its own frequency (`tone_hz(index)`: 50 Hz apart, a whole number of cycles per 20 ms), one
  packet per 20 ms on the monotonic clock. No codec work while the window is open: the packets
  that come back are only counted and kept; once the window closes, each call's echo is decoded
  and judged frame by frame (`echo_frames_right`): a 20 ms frame is right when it is audible by
  the one loudness rule and holds most of its energy at the call's own frequency. Silence filler
  (a pacer that had nothing to send), another call's audio, or noise count as wrong.
* The probe (`--probe URL SECONDS`): one HeadlessClient call (full codec path) playing a 100 ms
  burst every 0.5 s through the window (transport_rtt.py's `echo_bursts`), timing each echo from
  the burst entering its microphone to its onset at its ear (time.monotonic_ns, one host).

Both print `{"type": "ready"}` once connected, open their window on a line on stdin, print one
JSON result line, and hang up on another line.
"""

from __future__ import annotations

import fractions
import json
import sys
import time
from dataclasses import dataclass, field

import anyio
import av
import numpy as np
from aiohttp import ClientSession
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtp import RtpPacket

from voxframe.pipeline.audio import loud
from voxframe.transports.webrtc import IceOptions, gather_on

RATE = 48_000
FRAME = 960  # 20 ms at 48 kHz
FRAMES_PER_S = 50
LOOPBACK = ("127.0.0.1",)
#: Share of a frame's energy that must lie at the call's own frequency for the frame to be its echo.
TONE_ENERGY_SHARE = 0.5
#: Distinct frequencies (250 Hz .. 4.7 kHz, inside Opus's wideband at any bitrate); calls beyond
#: this many reuse them, so misrouting is caught only between calls of distinct frequencies.
DISTINCT_TONES = 90


def tone_hz(index: int) -> float:
    """Call `index`'s tone: 250 Hz + 50 Hz steps, so each has a whole number of cycles per 20 ms
    frame and the tones are orthogonal over any 20 ms frame."""
    return 250.0 + 50.0 * (index % DISTINCT_TONES)


def tone_share(frame: np.ndarray, hz: float, rate: int = RATE) -> float:
    """Share of `frame`'s energy (1-D, any dtype) at `hz` (0 for digital silence)."""
    x = frame.astype(np.float64)
    energy = float(np.dot(x, x))
    if energy == 0.0:
        return 0.0
    phase = 2 * np.pi * hz * np.arange(len(x)) / rate
    at = np.dot(x, np.cos(phase)) ** 2 + np.dot(x, np.sin(phase)) ** 2
    return float(2 * at / (len(x) * energy))


def echo_frames_right(audio: np.ndarray, hz: float, rate: int = RATE) -> int:
    """How many whole 20 ms frames of mono int16 `audio` carry the tone at `hz`: audible and with
    at least TONE_ENERGY_SHARE of their energy at that frequency."""
    frame = rate // FRAMES_PER_S
    whole = len(audio) - len(audio) % frame
    return sum(
        1 for f in audio[:whole].reshape(-1, frame) if bool(loud(f)) and tone_share(f, hz, rate) >= TONE_ENERGY_SHARE
    )


# --- the light caller ----------------------------------------------------------------------------------


def encoded_tone(hz: float) -> list[av.Packet]:
    """One second of a tone at `hz` as 50 Opus packets, encoded once and replayed."""
    codec = av.CodecContext.create("libopus", "w")
    codec.bit_rate = 32_000
    codec.format = "s16"
    codec.layout = "stereo"
    codec.sample_rate = RATE
    codec.time_base = fractions.Fraction(1, RATE)
    t = np.arange(RATE) / RATE
    stereo = np.repeat(np.round(0.3 * 32767 * np.sin(2 * np.pi * hz * t)).astype(np.int16), 2).reshape(1, -1)
    packets: list[av.Packet] = []
    for i in range(FRAMES_PER_S):
        chunk = stereo[:, i * 2 * FRAME : (i + 1) * 2 * FRAME].copy()
        frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = RATE, i * FRAME, fractions.Fraction(1, RATE)
        packets += codec.encode(frame)
    return packets


class EncodedMic(MediaStreamTrack):
    """A microphone that sends pre-encoded packets, one per 20 ms, paced on the monotonic clock."""

    kind = "audio"

    def __init__(self, packets: list[av.Packet]) -> None:
        super().__init__()
        self._packets = packets
        self._count = 0
        self._start = time.monotonic()

    async def recv(self) -> av.Packet:
        due = self._start + self._count / FRAMES_PER_S
        await anyio.sleep(max(0.0, due - time.monotonic()))
        source = self._packets[self._count % len(self._packets)]
        packet = av.Packet(bytes(source))
        packet.pts, packet.time_base = self._count * FRAME, fractions.Fraction(1, RATE)
        self._count += 1
        return packet


@dataclass(slots=True)
class Ear:
    """Takes the place of aiortc's receive handler: counts packets, keeps payloads while recording."""

    received: int = 0
    recording: bool = False
    payloads: list[bytes] = field(default_factory=list)

    async def add(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        self.received += 1
        if self.recording:
            self.payloads.append(bytes(packet.payload))

    def decoded(self) -> np.ndarray:
        """The recorded payloads decoded to mono int16 at 48 kHz (after the window: no load then)."""
        codec = av.CodecContext.create("libopus", "r")
        pieces = []
        for payload in self.payloads:
            for frame in codec.decode(av.Packet(payload)):
                samples = frame.to_ndarray()
                if samples.dtype.kind == "f":
                    samples = np.round(samples * 32767)
                if frame.format.is_planar:
                    mono = samples.mean(axis=0)
                else:
                    mono = samples.reshape(-1, frame.layout.nb_channels).mean(axis=1)
                pieces.append(np.clip(mono, -32768, 32767).astype(np.int16))
        return np.concatenate(pieces) if pieces else np.zeros(0, np.int16)


@dataclass(slots=True)
class LightCall:
    pc: RTCPeerConnection
    ear: Ear
    hz: float


async def start_call(url: str, index: int, http: ClientSession) -> LightCall:
    hz = tone_hz(index)
    pc = RTCPeerConnection(IceOptions().rtc_configuration())
    transceiver = pc.addTransceiver(EncodedMic(encoded_tone(hz)), direction="sendrecv")
    ear = Ear()
    transceiver.receiver._enabled = False  # aiortc does nothing with what arrives: the ear has it
    transceiver.receiver._handle_rtp_packet = ear.add  # type: ignore[method-assign]
    with gather_on(LOOPBACK):
        await pc.setLocalDescription(await pc.createOffer())
    async with http.post(url + "/api/voice/offer", json={"sdp": pc.localDescription.sdp, "type": "offer"}) as reply:
        answer = await reply.json()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
    return LightCall(pc, ear, hz)


async def run_caller(url: str, first: int, calls: int, seconds: float) -> None:
    """Calls `first` .. `first + calls - 1`: per call, packets back and 20 ms frames of right echo
    over `seconds` (after a line on stdin); hang up after another line."""
    async with ClientSession() as http:
        started = [await start_call(url, first + i, http) for i in range(calls)]
        print(json.dumps({"type": "ready"}), flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)  # wait for the window to open
        before = [c.ear.received for c in started]
        for call in started:
            call.ear.recording = True
        t0 = time.monotonic()
        await anyio.sleep(seconds)
        elapsed = time.monotonic() - t0
        for call in started:
            call.ear.recording = False
        received = [c.ear.received - b for c, b in zip(started, before, strict=True)]
        right = [echo_frames_right(c.ear.decoded(), c.hz) for c in started]
        result = {"type": "result", "received": received, "right": right, "elapsed": elapsed}
        print(json.dumps(result), flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)  # hang up only once the server was read
        for call in started:
            await call.pc.close()


# --- the probe -----------------------------------------------------------------------------------------


async def run_probe(url: str, seconds: float) -> None:
    """One full call timing tone bursts' echoes through the window."""
    from transport_rtt import echo_bursts  # the same burst and onset rule as the RTT benchmark

    from voxframe.transports.webrtc import ClientOptions, HeadlessClient

    options = ClientOptions(ice=IceOptions(host_addresses=LOOPBACK))
    async with HeadlessClient.connect(url, options) as client:
        print(json.dumps({"type": "ready"}), flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)
        bursts = max(1, int(seconds / 0.5) - 1)  # 0.5 s each, after 0.5 s of silence
        echoes = await echo_bursts(client, bursts)
        result = {"type": "result", "sent": echoes.sent, "rtts_ms": echoes.rtts, "tone_shares": echoes.tone_shares}
        print(json.dumps(result), flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)


if __name__ == "__main__":
    if sys.argv[1] == "--caller":
        anyio.run(run_caller, sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
    elif sys.argv[1] == "--probe":
        anyio.run(run_probe, sys.argv[2], float(sys.argv[3]))
    else:
        sys.exit("usage: capacity_calls.py --caller URL FIRST CALLS SECONDS | --probe URL SECONDS")
