"""Property: under any interleaving of user audio, bot output, system frames and interruptions,
user audio and system frames arrive complete and in order, and no bot output of an interrupted
turn arrives after the interruption did."""

from __future__ import annotations

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.pipeline_helpers import Queued, audio, quiet_params
from tests.support import Recorder
from voxframe.pipeline import (
    FrameProcessor,
    InputAudioFrame,
    InterruptionFrame,
    LLMTextFrame,
    Pipeline,
    PipelineTask,
    UserStartedSpeakingFrame,
)

ops = st.lists(
    st.one_of(
        st.just(("audio",)),
        st.just(("bot",)),
        st.just(("system",)),
        st.just(("begin",)),
        st.tuples(st.just("interrupt"), st.integers(0, 4)),
        st.tuples(st.just("run"), st.integers(1, 6)),
    ),
    max_size=60,
)


async def _play(script: list[tuple]) -> None:
    head, tail = Recorder("head"), Recorder("tail")
    procs = [head, Queued(), FrameProcessor(), Queued(), tail]
    task = PipelineTask(Pipeline(procs), quiet_params())
    sent_audio: list[InputAudioFrame] = []
    sent_system: list[UserStartedSpeakingFrame] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(task.run)
        await task.wait_started()
        for op in script:
            if op[0] == "audio":
                frame = audio(len(sent_audio))
                sent_audio.append(frame)
                await task.queue_frame(frame)
            elif op[0] == "bot":
                await task.queue_frame(LLMTextFrame(text="w", turn=task.turns.current))
            elif op[0] == "system":
                frame = UserStartedSpeakingFrame()
                sent_system.append(frame)
                await task.queue_frame(frame)
            elif op[0] == "begin":
                task.turns.begin()
            elif op[0] == "interrupt":
                await procs[op[1]].interrupt()
            else:
                for _ in range(op[1]):
                    await anyio.lowlevel.checkpoint()
        await task.stop_when_done()
    assert tail.of(InputAudioFrame) == sent_audio
    assert tail.of(UserStartedSpeakingFrame) == sent_system
    cut = 0
    for frame in tail.down:  # the order in which bot text and interruptions reached the tail
        if isinstance(frame, InterruptionFrame):
            cut = max(cut, frame.stale_upto)
        elif isinstance(frame, LLMTextFrame):
            assert not (0 < frame.turn <= cut), f"turn {frame.turn} arrived after turn {cut} was interrupted"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=ops)
def test_user_audio_and_system_frames_survive_any_interleaving(script: list[tuple]) -> None:
    anyio.run(_play, script)
