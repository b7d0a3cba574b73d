"""MemoryInputTransport / MemoryOutputTransport: microphone-like pacing and recording."""

from __future__ import annotations

import anyio
import numpy as np
import pytest
from webrtc_helpers import MS, advance, dominant_hz, tone

from tests.support import Recorder, running
from voxframe.pipeline import (
    DOWN,
    BotStoppedSpeakingFrame,
    Direction,
    Frame,
    FrameProcessor,
    InputAudioFrame,
    Pipeline,
    PipelineParams,
    PipelineTask,
    TTSAudioFrame,
    TTSStoppedFrame,
    VirtualClock,
)
from voxframe.transports import MemoryInputOptions, MemoryInputTransport, MemoryOutputTransport

pytestmark = pytest.mark.anyio


async def test_input_pushes_each_chunk_when_it_has_been_captured() -> None:
    clock = VirtualClock(start_ns=1_000 * MS)
    mic, rec = MemoryInputTransport(tone(300.0, 0.1, 16_000)), Recorder()
    async with running([mic, rec], clock):
        await advance(clock, 500 * MS)
        frames = rec.seen_of(InputAudioFrame)
        assert [(s.frame.pts, s.t_ns - 1_000 * MS) for s in frames] == [(i * 320, (i + 1) * 20 * MS) for i in range(5)]
        assert all(s.frame.sample_rate == 16_000 and s.frame.num_samples == 320 for s in frames)
        assert all(s.frame.created_ns == s.t_ns for s in frames)
        assert mic.capture_ns(1600) == 1_100 * MS  # the end of the buffer entered the mic at 100 ms


async def test_input_converts_the_given_rate_and_channels_to_the_pipeline_input() -> None:
    clock = VirtualClock()
    stereo = np.repeat(tone(500.0, 0.2, 48_000), 2)
    mic = MemoryInputTransport(stereo, MemoryInputOptions(sample_rate=48_000, num_channels=2))
    rec = Recorder()
    async with running([mic, rec], clock):
        await advance(clock, 300 * MS)
    audio = b"".join(f.audio for f in rec.of(InputAudioFrame))
    assert len(audio) // 2 == 3200
    assert dominant_hz(audio, 16_000) == pytest.approx(500.0, abs=5.0)


async def test_input_waits_for_more_audio_and_restarts_the_capture_clock() -> None:
    clock = VirtualClock()
    mic, rec = MemoryInputTransport(), Recorder()
    async with running([mic, rec], clock):
        await advance(clock, 100 * MS)
        assert rec.of(InputAudioFrame) == []
        mic.feed(tone(300.0, 0.04, 16_000))
        await advance(clock, 100 * MS)
        with anyio.fail_after(1):
            await mic.wait_done()
        frames = rec.seen_of(InputAudioFrame)
        assert [(s.frame.pts, s.t_ns) for s in frames] == [(0, 120 * MS), (320, 140 * MS)]
        assert mic.capture_ns(320) == 120 * MS


async def test_input_as_fast_as_possible_ends_the_pipeline_when_done() -> None:
    mic = MemoryInputTransport(tone(300.0, 1.0, 16_000), MemoryInputOptions(realtime=False, end_when_done=True))
    rec = Recorder()
    task = PipelineTask(Pipeline([mic, rec]), PipelineParams(idle_timeout_s=None))
    with anyio.fail_after(5):
        await task.run()
    assert len(rec.of(InputAudioFrame)) == 50


async def test_open_microphone_keeps_sending_silence() -> None:
    clock = VirtualClock()
    mic = MemoryInputTransport(tone(300.0, 0.02, 16_000), MemoryInputOptions(silence_when_idle=True))
    rec = Recorder()
    async with running([mic, rec], clock):
        await advance(clock, 100 * MS)
    frames = rec.of(InputAudioFrame)
    assert len(frames) == 5
    assert any(frames[0].audio) and not any(b for f in frames[1:] for b in f.audio)


class _Echo(FrameProcessor):
    """Turns each input chunk into bot audio of turn 1 (a loopback through the output)."""

    async def process(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, InputAudioFrame) and direction is DOWN:
            await self.push(TTSAudioFrame(audio=frame.audio, sample_rate=frame.sample_rate, turn=1))
            return
        await self.push(frame, direction)


async def test_memory_in_to_memory_out_round_trip_keeps_content_and_timing() -> None:
    clock = VirtualClock()
    mic = MemoryInputTransport(tone(700.0, 0.2, 16_000))
    out = MemoryOutputTransport()
    down = Recorder()
    async with running([mic, _Echo(), out, down], clock) as task:
        await advance(clock, 250 * MS)
        await task.queue_frame(TTSStoppedFrame(turn=1))
        await advance(clock, 100 * MS)
    assert out.played_s(1) == pytest.approx(0.2, abs=0.002)
    assert dominant_hz(out.audio(1), 24_000) == pytest.approx(700.0, abs=5.0)
    assert out.played[0].t_ns == 20 * MS  # played as soon as the first chunk was captured
    assert [f.played_s for f in down.of(BotStoppedSpeakingFrame)] == [pytest.approx(0.2, abs=0.002)]
