"""Calls over a lossy, jittery network: lost packets are concealed, the reorder window adapts,
and the sender turns to FEC when loss is reported."""

from __future__ import annotations

import itertools
import random

import anyio
import av
import numpy as np
import pytest
from aiortc.rtp import RtpPacket
from webrtc_helpers import client_options, serving, tone_pattern

from voxframe.fakes.netimpair import Impairment
from voxframe.fakes.netrelay import ImpairedNetwork
from voxframe.pipeline import (
    DOWN,
    Direction,
    Frame,
    FrameProcessor,
    InputAudioFrame,
    Pipeline,
    PipelineParams,
    PipelineTask,
    VirtualClock,
)
from voxframe.processors.echo import AudioEcho
from voxframe.transports.webrtc import HeadlessClient, Session
from voxframe.transports.webrtc._decode import DecodedAudioTrack
from voxframe.transports.webrtc._opus import OpusDecoder, has_fec
from voxframe.transports.webrtc._receive import ReorderStage
from voxframe.transports.webrtc.tracks import OpusChunkEncoder, OpusOptions

pytestmark = pytest.mark.anyio

MS = 1_000_000


class Heard(FrameProcessor):
    """Keeps the position and length of every audio frame the server's pipeline receives."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[tuple[int, int]] = []
        self._more = anyio.Event()

    async def process(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, InputAudioFrame) and direction is DOWN and frame.pts is not None:
            self.frames.append((frame.pts, len(frame.audio) // 2))
            self._more.set()
        await self.push(frame, direction)

    async def wait_frames(self, count: int) -> None:
        while len(self.frames) < count:
            self._more = anyio.Event()
            await self._more.wait()


async def test_loss_both_ways_is_concealed_and_the_timeline_keeps_its_length() -> None:
    heard = Heard()
    sessions: list[Session] = []

    async def factory(session: Session) -> PipelineTask:
        sessions.append(session)
        pipeline = Pipeline([session.input, heard, AudioEcho(), session.output])
        return PipelineTask(pipeline, PipelineParams(idle_timeout_s=None))

    with anyio.fail_after(30):
        async with (
            serving(factory) as (_, url),
            ImpairedNetwork(url) as net,
            HeadlessClient.connect(net.url, client_options()) as client,
        ):
            await heard.wait_frames(5)  # media flows: impair from here on
            net.impair(to_server=Impairment(loss=0.05, seed=11), to_client=Impairment(loss=0.05, seed=12))
            impaired = net.to_server.path.stats, net.to_client.path.stats
            await client.play(tone_pattern((500.0, 800.0, 1200.0, 700.0), 16_000, tone_s=0.5, gap_s=0.2), 16_000)
            net.clear()
            await heard.wait_frames(len(heard.frames) + 10)  # a packet after the last loss, both ways
            client_concealed = client.stage.decoded.concealment if client.stage and client.stage.decoded else None
            server_track = sessions[0]._stages[0].decoded  # the session keeps no public handle on it
            assert server_track is not None
            server_concealed = server_track.concealment.concealed
            dropped_to_server, dropped_to_client = (len(stats.dropped_rtp) for stats in impaired)

    assert dropped_to_server > 0 and dropped_to_client > 0  # the relay lost packets both ways
    assert server_concealed == dropped_to_server
    assert client_concealed is not None and client_concealed.concealed == dropped_to_client
    # What the pipeline received has no hole: one 20 ms frame (320 samples at 16 kHz) per packet
    # sent, at consecutive positions, so samples in == samples sent, within one packet (the
    # resampler holds back a few samples of filter delay).
    positions = [pts for pts, _ in heard.frames]
    assert [b - a for a, b in itertools.pairwise(positions)] == [320] * (len(positions) - 1)
    sent = positions[-1] + 320 - positions[0]
    assert sent - 320 <= sum(n for _, n in heard.frames) <= sent


async def test_reported_loss_turns_fec_on_both_ways_and_lost_packets_are_rebuilt_from_it() -> None:
    sessions: list[Session] = []

    async def factory(session: Session) -> PipelineTask:
        sessions.append(session)
        return PipelineTask(Pipeline([session.input, AudioEcho(), session.output]), PipelineParams(idle_timeout_s=None))

    with anyio.fail_after(40):
        async with (
            serving(factory) as (_, url),
            ImpairedNetwork(url) as net,
            HeadlessClient.connect(net.url, client_options()) as client,
        ):
            net.impair(to_server=Impairment(loss=0.05, seed=21), to_client=Impairment(loss=0.05, seed=22))
            assert client.stage is not None and client.stage.decoded is not None
            heard_by_client = client.stage.decoded.concealment
            speech = voiced(1.0)
            for _ in range(20):  # RTCP reports come every second or so: speak until both sides used FEC
                await client.play(speech, 48_000)
                track = sessions[0]._stages[0].decoded  # the session keeps no public handle on it
                if track is not None and track.concealment.recovered and heard_by_client.recovered:
                    break
            assert track is not None
            heard_by_server = track.concealment
    assert heard_by_server.recovered > 0 and heard_by_client.recovered > 0
    assert heard_by_server.recovered <= heard_by_server.concealed


def packet(seq: int) -> RtpPacket:
    return RtpPacket(payload_type=111, sequence_number=seq & 0xFFFF, timestamp=(seq * 960) & 0xFFFFFFFF)


async def test_the_reorder_window_grows_under_jitter_and_shrinks_back_when_calm() -> None:
    clock = VirtualClock()
    stage = ReorderStage(lambda p, t: anyio.lowlevel.checkpoint(), None, clock=clock, bounds=(1, 8))
    rng = random.Random(4)

    async def send(first: int, count: int, jitter_ms: float) -> None:
        arrivals = sorted(
            (seq * 20 * MS + round(rng.uniform(0, jitter_ms) * MS), seq) for seq in range(first, first + count)
        )
        for at, seq in arrivals:
            await clock.advance(max(0, at - clock.now_ns()))
            await stage.add(packet(seq), 0)

    await send(0, 50, 0.0)
    assert stage.window == 1
    await send(50, 300, 60.0)  # 60 ms of jitter: packets overtake each other by up to 3
    grown = stage.window
    assert grown >= 3
    assert stage.stats.late_dropped <= 3  # the window kept up: almost nothing arrived too late
    await send(350, 400, 0.0)
    assert stage.window == 1  # calm again: back to the floor
    assert stage.stats.max_window >= grown


async def test_pinned_reorder_window_does_not_move() -> None:
    clock = VirtualClock()
    stage = ReorderStage(lambda p, t: anyio.lowlevel.checkpoint(), 2, clock=clock)
    for seq in range(100):
        await clock.advance(20 * MS + (seq % 3) * 15 * MS)
        await stage.add(packet(seq), 0)
    assert stage.window == 2


def voiced(seconds: float, rate: int = 48_000) -> np.ndarray:
    """A vowel-like sound (a gliding pitch with harmonics): what SILK and its FEC are made for."""
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * np.cumsum(140 + 20 * np.sin(2 * np.pi * 1.3 * t)) / rate
    wave = sum(np.sin(k * phase) / k for k in range(1, 20)) * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t))
    return (wave / np.abs(wave).max() * 12_000).astype(np.int16)


def encode_all(encoder: OpusChunkEncoder, audio: np.ndarray) -> list[bytes]:
    out = []
    for index in range(len(audio) // 960):
        chunk = audio[index * 960 : (index + 1) * 960].reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="mono")
        frame.sample_rate = 48_000
        coded = encoder.encode(frame, index * 960)
        assert coded is not None
        out.append(bytes(coded))
    return out


def conceal_every_tenth(packets: list[bytes]) -> tuple[np.ndarray, DecodedAudioTrack]:
    """Decode `packets` with every tenth one lost; what a reader of the track gets."""
    track = DecodedAudioTrack()
    frames = []
    for seq, data in enumerate(packets):
        if seq % 10 == 5:
            continue
        rtp = packet(seq)
        rtp._data = data  # type: ignore[attr-defined]
        track.deliver(rtp)
        while not track._queue.empty():  # read as a consumer would (the track keeps a second)
            frame = track._queue.get_nowait()
            assert frame is not None
            frames.append(frame.to_ndarray().reshape(-1))
    return np.concatenate(frames), track


def lost_snr_db(packets: list[bytes]) -> tuple[float, DecodedAudioTrack]:
    """How close the concealed packets come to what a loss-free decode gives."""
    reference = OpusDecoder()
    clean = np.concatenate([reference.decode(p) for p in packets]).astype(float)
    concealed, track = conceal_every_tenth(packets)
    assert len(concealed) == len(clean)  # concealed, not skipped
    lost = [slice(i * 960, (i + 1) * 960) for i in range(len(packets)) if i % 10 == 5]
    error = sum(((concealed[s] - clean[s]) ** 2).sum() for s in lost)
    return 10 * np.log10(sum((clean[s] ** 2).sum() for s in lost) / error), track


async def test_a_packet_lost_under_fec_is_rebuilt_better_than_concealment_guesses_it() -> None:
    audio = voiced(2.0)
    with_fec = OpusChunkEncoder(48_000, 1, OpusOptions(application="voip", expected_loss_pct=10))
    without = OpusChunkEncoder(48_000, 1, OpusOptions(application="voip", fec=False))
    fec_packets, plain_packets = encode_all(with_fec, audio), encode_all(without, audio)
    # libopus adds the FEC copy where the packet before was active speech: most of them here
    assert sum(map(has_fec, fec_packets)) > len(fec_packets) / 2 and not any(map(has_fec, plain_packets))
    fec_snr, fec_track = lost_snr_db(fec_packets)
    plc_snr, plc_track = lost_snr_db(plain_packets)
    assert fec_track.concealment.concealed == plc_track.concealment.concealed == 10
    carried = sum(has_fec(fec_packets[i + 1]) for i in range(5, len(fec_packets), 10))
    assert fec_track.concealment.recovered == carried > 0 and plc_track.concealment.recovered == 0
    assert fec_snr > plc_snr + 3


async def test_the_sender_turns_to_fec_and_a_higher_bitrate_when_loss_is_reported_and_back() -> None:
    encoder = OpusChunkEncoder(48_000, 1)
    assert (encoder.application, encoder.fec, encoder.bitrate) == ("lowdelay", False, 48_000)
    encoder.report_loss(0.05)
    assert (encoder.application, encoder.fec) == ("voip", True)
    assert encoder.bitrate > 48_000
    packets = encode_all(encoder, voiced(0.4))
    assert any(map(has_fec, packets))
    for _ in range(10):
        encoder.report_loss(0.0)
    assert (encoder.application, encoder.fec, encoder.bitrate) == ("lowdelay", False, 48_000)
    expecting = OpusChunkEncoder(48_000, 1, OpusOptions(application="voip", expected_loss_pct=5))
    expecting.report_loss(0.0)
    assert expecting.fec  # the expected loss is a floor: a clean report does not turn FEC off
    pinned = OpusChunkEncoder(48_000, 1, OpusOptions(loss_aware=False))
    pinned.report_loss(0.2)
    assert pinned.application == "lowdelay"


def test_a_chunk_opus_cannot_hold_is_refused_clearly() -> None:
    encoder = OpusChunkEncoder(48_000, 1)
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 1_440), dtype=np.int16), format="s16", layout="mono")
    frame.sample_rate = 48_000
    with pytest.raises(ValueError, match="not 30 ms"):
        encoder.encode(frame, 0)
