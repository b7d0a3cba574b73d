"""`InputTransport`: received audio becomes mono frames at the pipeline's rate, through a bounded backlog."""

from __future__ import annotations

import numpy as np
import pytest
from webrtc_helpers import dominant_hz, tone

from tests.support import Recorder, running, yield_rounds
from voxframe.pipeline import EndFrame, InputAudioFrame, VirtualClock
from voxframe.transports import InputOptions, InputTransport

pytestmark = pytest.mark.anyio


def chunks(pcm: np.ndarray, rate: int, channels: int = 1) -> list[bytes]:
    step = rate // 50 * channels  # 20 ms
    return [pcm[i : i + step].astype("<i2").tobytes() for i in range(0, len(pcm), step)]


async def test_audio_is_resampled_to_the_pipeline_rate_and_downmixed() -> None:
    source, sink = InputTransport(), Recorder()
    stereo = np.repeat(tone(500.0, 0.4, 48_000), 2)  # interleaved L R
    async with running([source, sink]):
        for pcm in chunks(stereo, 48_000, channels=2):
            source.receive_audio(pcm, 48_000, 2)
            await yield_rounds(5)  # a real wire: the pipeline keeps up
        await sink.wait_for(lambda: len(sink.of(InputAudioFrame)) == 20)
    frames = sink.of(InputAudioFrame)
    assert {(f.sample_rate, f.num_channels) for f in frames} == {(16_000, 1)}
    audio = b"".join(f.audio for f in frames)
    assert len(audio) // 2 == pytest.approx(0.4 * 16_000, abs=32)  # the resampler holds back ~1 ms
    assert dominant_hz(audio, 16_000) == pytest.approx(500.0, abs=5)
    assert source.dropped_frames == 0 and source.received_frames == 20


async def test_a_backlog_beyond_the_bound_drops_the_oldest_audio() -> None:
    source, sink = InputTransport(InputOptions(max_backlog_ms=100)), Recorder()
    numbered = [np.full(160, i + 1, np.int16).tobytes() for i in range(12)]  # 12 chunks of 20 ms at 8 kHz
    async with running([source, sink]):
        for pcm in numbered:  # faster than the pipeline takes them: nothing runs in between
            source.receive_audio(pcm, 8000)
        await sink.wait_for(lambda: len(sink.of(InputAudioFrame)) >= 5)
        await yield_rounds()
    assert source.dropped_frames == 7 and source.received_frames == 12
    values = {int(np.median(np.frombuffer(f.audio, "<i2"))) for f in sink.of(InputAudioFrame)}
    assert values <= {8, 9, 10, 11, 12}  # the newest 100 ms


async def test_audio_before_the_start_is_kept_and_stamped_with_its_arrival() -> None:
    clock = VirtualClock()
    source, sink = InputTransport(InputOptions(max_backlog_ms=100, max_startup_ms=1000)), Recorder()
    source.clock = clock  # the task installs its clock only when it runs
    speech = chunks(tone(300.0, 1.2, 16_000), 16_000)  # 60 chunks, spoken while the pipeline starts
    for index, pcm in enumerate(speech):
        await clock.advance(20_000_000)
        source.receive_audio(pcm, 16_000)
        assert index < 50 or source.dropped_frames == index - 49  # at most 1 s kept
    async with running([source, sink], clock=clock):
        await sink.wait_for(lambda: len(sink.of(InputAudioFrame)) == 50)
    frames = sink.of(InputAudioFrame)
    assert source.dropped_frames == 10
    assert [f.created_ns for f in frames] == [(i + 11) * 20_000_000 for i in range(50)]  # when each arrived


async def test_nothing_follows_the_end_of_the_stream() -> None:
    source, sink = InputTransport(), Recorder()
    async with running([source, sink]) as task:
        source.receive_audio(bytes(640), 16_000)
        await sink.wait_for(lambda: sink.of(InputAudioFrame))
        await task.queue_frame(EndFrame())
        await sink.wait_for(lambda: sink.of(EndFrame))
        source.receive_audio(bytes(640), 16_000)
        await yield_rounds()
    kinds = [type(f).__name__ for f in sink.down]
    assert kinds[-1] == "EndFrame" and kinds.count("InputAudioFrame") == 1
