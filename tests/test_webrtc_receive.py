"""The receive path: reordering without added latency, bounded backlog, and the paced track."""

from __future__ import annotations

import asyncio
import fractions

import anyio
import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RtpPacket
from webrtc_helpers import dominant_hz, tone

from tests.support import Recorder
from voxframe.pipeline import InputAudioFrame, Pipeline, PipelineParams, PipelineTask
from voxframe.transports.webrtc import InputOptions, PacedAudioTrack, WebRTCInputTransport
from voxframe.transports.webrtc._decode import DecodedAudioTrack
from voxframe.transports.webrtc._receive import ReorderStage

pytestmark = pytest.mark.anyio


def packet(seq: int) -> RtpPacket:
    return RtpPacket(payload_type=111, sequence_number=seq & 0xFFFF, timestamp=(seq * 960) & 0xFFFFFFFF)


async def released(window: int, seqs: list[int]) -> tuple[list[list[int]], ReorderStage]:
    """What each arriving packet releases, in order."""
    out: list[int] = []

    async def deliver(p: RtpPacket, arrival_ms: int) -> None:
        out.append(p.sequence_number)

    stage = ReorderStage(deliver, window)
    steps = []
    for seq in seqs:
        before = len(out)
        await stage.add(packet(seq), 0)
        steps.append(out[before:])
    return steps, stage


async def test_in_order_packets_are_released_the_moment_they_arrive() -> None:
    steps, stage = await released(4, [10, 11, 12, 13])
    assert steps == [[10], [11], [12], [13]]
    assert stage.stats.lost == stage.stats.late_dropped == 0


async def test_a_swapped_pair_is_put_back_in_order() -> None:
    steps, stage = await released(2, [1, 3, 2, 4])
    assert steps == [[1], [], [2, 3], [4]]
    assert stage.stats.reordered == 1 and stage.stats.lost == 0


async def test_a_lost_packet_is_skipped_after_the_window_and_a_late_one_dropped() -> None:
    steps, stage = await released(2, [1, 3, 4, 5, 2, 6])
    assert steps == [[1], [], [], [3, 4, 5], [], [6]]
    assert (stage.stats.lost, stage.stats.late_dropped) == (1, 1)


async def test_window_zero_never_waits() -> None:
    steps, stage = await released(0, [1, 3, 2, 4])
    assert steps == [[1], [3], [], [4]]
    assert (stage.stats.lost, stage.stats.late_dropped) == (1, 1)


async def test_sequence_numbers_wrap_around() -> None:
    steps, _ = await released(2, [65534, 65535, 0, 1])
    assert steps == [[65534], [65535], [0], [1]]


async def test_a_restarted_stream_resynchronises_instead_of_dropping_everything() -> None:
    steps, stage = await released(2, [100, 101, 30_000, 30_001])
    assert steps == [[100], [101], [30_000], [30_001]]
    assert stage.stats.late_dropped == 0


async def test_paced_track_stamps_continuous_pts_and_drops_the_oldest_when_full() -> None:
    track = PacedAudioTrack(sample_rate=48_000, num_channels=1, max_queued=2, opus=None)
    for value in (1, 2, 3):
        track.put(np.full(960, value, dtype=np.int16).tobytes())
    assert track.dropped == 1
    frames = [await track.recv() for _ in range(2)]
    assert [f.pts for f in frames] == [0, 960]
    assert [int(f.to_ndarray()[0, 0]) for f in frames] == [2, 3]
    assert frames[0].time_base == fractions.Fraction(1, 48_000) and frames[0].sample_rate == 48_000
    track.stop()
    with pytest.raises(MediaStreamError):
        await track.recv()


async def test_paced_track_hands_aiortc_opus_packets_that_decode_to_the_same_audio() -> None:
    track = PacedAudioTrack(sample_rate=48_000, num_channels=1, max_queued=10)
    audio = tone(1000.0, 0.2, 48_000)
    for start in range(0, len(audio), 960):
        track.put(audio[start : start + 960].tobytes())
    packets = [await track.recv() for _ in range(10)]
    assert all(isinstance(p, av.Packet) for p in packets)
    assert [p.pts for p in packets] == [i * 960 for i in range(10)]  # RTP timestamps follow
    decoder = av.CodecContext.create("libopus", "r")
    decoder.sample_rate, decoder.layout, decoder.format = 48_000, "mono", "s16"
    decoded = b"".join(f.to_ndarray().tobytes() for p in packets for f in decoder.decode(av.Packet(bytes(p))))
    assert dominant_hz(decoded, 48_000) == pytest.approx(1000.0, abs=10.0)
    track.stop()


class _QueuedTrack(MediaStreamTrack):
    """Stands in for aiortc's remote track: decoded frames waiting in an asyncio queue."""

    kind = "audio"

    def __init__(self, frames: list[av.AudioFrame]) -> None:
        super().__init__()
        self._queue: asyncio.Queue[av.AudioFrame | None] = asyncio.Queue()
        for frame in frames:
            self._queue.put_nowait(frame)

    async def recv(self) -> av.AudioFrame:
        frame = await self._queue.get()
        if frame is None:
            raise MediaStreamError
        return frame


def decoded_frame(index: int) -> av.AudioFrame:
    """20 ms of 48 kHz stereo s16 as aiortc's Opus decoder produces, at position `index`."""
    samples = np.full((1, 960 * 2), index * 100, dtype=np.int16)
    frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="stereo")
    frame.sample_rate = 48_000
    frame.pts = index * 960
    frame.time_base = fractions.Fraction(1, 48_000)
    return frame


async def test_input_drops_old_audio_when_the_pipeline_falls_behind_and_keeps_positions() -> None:
    track = _QueuedTrack([decoded_frame(i) for i in range(12)])
    track._queue.put_nowait(None)
    webrtc_in = WebRTCInputTransport(InputOptions(max_backlog_ms=100))
    webrtc_in.attach(track)
    rec = Recorder()
    task = PipelineTask(Pipeline([webrtc_in, rec]), PipelineParams(idle_timeout_s=None))
    async with anyio.create_task_group() as tg:
        tg.start_soon(task.run)
        with anyio.fail_after(5):
            while webrtc_in.received_frames + webrtc_in.dropped_frames < 12:
                await anyio.lowlevel.checkpoint()
        await task.cancel()
    frames = rec.of(InputAudioFrame)
    # After the first frame, 11 frames and the end marker waited: the 7 oldest frames were
    # dropped so that at most 5 items (100 ms) wait; positions still say where audio was lost.
    assert webrtc_in.dropped_frames == 7
    assert [f.pts for f in frames] == [0, *(i * 320 for i in range(8, 12))]
    assert all(f.sample_rate == 16_000 and f.num_channels == 1 for f in frames)


async def test_inline_decoding_gives_mono_audio_and_conceals_a_lost_packet_in_place() -> None:
    encoder = PacedAudioTrack(sample_rate=48_000, num_channels=1, max_queued=10)
    audio = tone(500.0, 0.2, 48_000)
    for start in range(0, len(audio), 960):
        encoder.put(audio[start : start + 960].tobytes())
    decoded = DecodedAudioTrack(num_channels=1)
    for index in range(10):
        coded = await encoder.recv()
        if index == 4:
            continue  # a lost packet: concealed, so the timeline keeps its length
        rtp = RtpPacket(payload_type=111, sequence_number=index, timestamp=1_000 + index * 960)
        rtp._data = bytes(coded)  # type: ignore[attr-defined]
        decoded.deliver(rtp)
    encoder.stop()
    frames = [await decoded.recv() for _ in range(10)]
    assert all(f.sample_rate == 48_000 and f.layout.nb_channels == 1 and f.samples == 960 for f in frames)
    assert [f.pts for f in frames] == [i * 960 for i in range(10)]
    assert decoded.concealment.concealed == 1
    pcm = b"".join(f.to_ndarray().tobytes() for f in frames[5:])
    assert dominant_hz(pcm, 48_000) == pytest.approx(500.0, abs=10.0)
    decoded.stop()
    with pytest.raises(MediaStreamError):
        await decoded.recv()
