"""The STT contract: audio passes on (or not), finalize at the VAD's pause and stop before the
frame goes on, and the final's trace point and metric."""

from __future__ import annotations

import pytest

from tests.support import Recorder, running
from voxframe.pipeline import (
    InputAudioFrame,
    MetricsFrame,
    TranscriptionFrame,
    UserPausedSpeakingFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    VirtualClock,
)
from voxframe.processors.stt.base import STTService

pytestmark = pytest.mark.anyio

MS = 1_000_000


class EchoSTT(STTService):
    """Hears audio as its byte count; finalizes with what it heard, 40 ms later on the clock."""

    def __init__(self, below: Recorder, *, pass_audio: bool = True) -> None:
        super().__init__(pass_audio=pass_audio)
        self.below = below
        self.heard = 0
        self.calls: list[tuple[str, bool, int]] = []  # (hook, stopped, frames already below)

    async def take_audio(self, frame: InputAudioFrame) -> None:
        self.heard += len(frame.audio)

    async def finalize(self, speech_end_ns: int | None, *, stopped: bool) -> None:
        self.calls.append(("finalize", stopped, len(self.below.down)))
        await self.push_final(f"{self.heard} bytes", speech_final=stopped)


@pytest.mark.parametrize("pass_audio", [True, False])
async def test_audio_goes_on_only_when_asked_and_the_stt_hears_it_either_way(pass_audio: bool) -> None:
    below = Recorder()
    stt = EchoSTT(below, pass_audio=pass_audio)
    async with running([stt, below]) as task:
        await task.queue_frames([InputAudioFrame(audio=bytes(640), sample_rate=16_000) for _ in range(3)])
        await task.queue_frame(UserStartedSpeakingFrame())
        await below.wait_for(lambda: below.of(UserStartedSpeakingFrame))
    assert stt.heard == 3 * 640
    assert len(below.of(InputAudioFrame)) == (3 if pass_audio else 0)


async def test_finalize_runs_at_the_pause_and_the_stop_before_they_go_on_with_the_trace_and_metric() -> None:
    clock, below = VirtualClock(), Recorder()
    stt = EchoSTT(below, pass_audio=False)
    async with running([stt, below], clock) as task:
        await task.queue_frame(InputAudioFrame(audio=bytes(320), sample_rate=16_000))
        await clock.advance(700 * MS)
        await task.queue_frame(UserPausedSpeakingFrame(speech_end_ns=500 * MS))
        await clock.advance(300 * MS)
        await task.queue_frame(UserStoppedSpeakingFrame(speech_end_ns=500 * MS))
        await below.wait_for(lambda: below.of(UserStoppedSpeakingFrame))
    assert [(hook, stopped) for hook, stopped, _ in stt.calls] == [("finalize", False), ("finalize", True)]
    told = (TranscriptionFrame, MetricsFrame, UserPausedSpeakingFrame, UserStoppedSpeakingFrame)
    kinds = [type(f).__name__ for f in below.down if isinstance(f, told)]
    # Each final (and its metric) is below before the pause or stop that asked for it.
    assert kinds == [
        "TranscriptionFrame",
        "MetricsFrame",
        "UserPausedSpeakingFrame",
        "TranscriptionFrame",
        "MetricsFrame",
        "UserStoppedSpeakingFrame",
    ]
    assert [f.speech_final for f in below.of(TranscriptionFrame)] == [False, True]
    assert [(m.metric, m.value) for m in below.of(MetricsFrame)] == [("stt_final_s", 0.2), ("stt_final_s", 0.5)]
    assert task.tracer.turn(1)["stt_final"] == 1000 * MS  # the later final of the same reply replaces it
