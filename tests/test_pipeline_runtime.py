"""The runtime's promises: ordering, overtaking, interruption, stale turns, lifecycle, errors."""

from __future__ import annotations

import asyncio

import anyio
import anyio.lowlevel
import pytest

from tests.pipeline_helpers import Gate, Queued, Worker, audio, quiet_params
from tests.support import Recorder, running
from voxframe.pipeline import (
    DOWN,
    UP,
    BotStoppedSpeakingFrame,
    Direction,
    EndFrame,
    ErrorFrame,
    Frame,
    FrameProcessor,
    FunctionCallFrame,
    InputAudioFrame,
    InterruptionFrame,
    LLMTextFrame,
    Pipeline,
    PipelineError,
    PipelineTask,
    StartFrame,
    UserStartedSpeakingFrame,
)

pytestmark = pytest.mark.anyio


async def test_order_is_kept_in_each_direction_through_direct_and_queued_hops() -> None:
    head, tail = Recorder("head"), Recorder("tail")
    task = PipelineTask(
        Pipeline([head, Queued(), FrameProcessor(), Pipeline([Queued(), Queued()]), tail]), quiet_params()
    )
    async with running(task):
        down = [audio(i) for i in range(200)]
        up = [audio(1000 + i) for i in range(200)]
        for d, u in zip(down, up, strict=True):
            await task.queue_frame(d, DOWN)
            await task.queue_frame(u, UP)
        await tail.wait_for(lambda: len(tail.of(InputAudioFrame)) == 200)
        await head.wait_for(lambda: len(head.of(InputAudioFrame, UP)) == 200)
    assert tail.of(InputAudioFrame) == down
    assert head.of(InputAudioFrame, UP) == up


async def test_system_frames_overtake_queued_data() -> None:
    gate, tail = Gate(), Recorder()
    task = PipelineTask(Pipeline([gate, tail]), quiet_params())
    async with running(task):
        await task.queue_frames(audio(i) for i in range(5))
        await gate.busy.wait()  # the worker holds frame 0; frames 1-4 wait in its queue
        await task.queue_frame(UserStartedSpeakingFrame())
        assert [type(f) for f in tail.down] == [StartFrame, UserStartedSpeakingFrame]
        gate.open.set()
        await tail.wait_for(lambda: len(tail.of(InputAudioFrame)) == 5)
    assert [f.pts for f in tail.of(InputAudioFrame)] == [i * 320 for i in range(5)]


async def test_interruption_from_the_output_end_travels_upstream_and_cancels_work_on_the_way() -> None:
    head = Recorder("head")
    workers = [Worker(f"w{i}") for i in range(3)]
    output = FrameProcessor(name="output")
    task = PipelineTask(Pipeline([head, *workers, output]), quiet_params())
    async with running(task):
        turn = task.turns.begin()
        # Each worker is busy with a reply token of `turn`, sent upstream to it from the output end.
        for below in [*workers[1:], output]:
            await below.push(LLMTextFrame(text="hi", turn=turn), UP)  # reaches the worker above it
        for w in workers:
            with anyio.fail_after(5):
                await w.working.wait()
        await output.interrupt("user spoke")
        await head.wait_for(lambda: bool(head.of(InterruptionFrame, UP)))
    assert all(len(w.cancelled) == 1 for w in workers)
    assert task.turns.stale_upto == turn


async def test_interruption_from_the_middle_goes_both_ways() -> None:
    head, tail = Recorder("head"), Recorder("tail")
    before, after = Worker("before"), Worker("after")
    middle = FrameProcessor(name="middle")
    task = PipelineTask(Pipeline([head, before, middle, after, tail]), quiet_params())
    async with running(task):
        turn = task.turns.begin()
        await middle.push(LLMTextFrame(text="a", turn=turn), UP)  # to `before`
        await middle.push(LLMTextFrame(text="b", turn=turn), DOWN)  # to `after`
        await before.working.wait()
        await after.working.wait()
        await middle.interrupt()
        await head.wait_for(lambda: bool(head.of(InterruptionFrame, UP)))
        await tail.wait_for(lambda: bool(tail.of(InterruptionFrame)))
    assert len(before.cancelled) == 1 and len(after.cancelled) == 1


async def test_queued_bot_output_of_the_interrupted_turn_is_dropped_but_user_audio_is_not() -> None:
    gate, tail = Gate(), Recorder()
    task = PipelineTask(Pipeline([gate, tail]), quiet_params())
    async with running(task):
        turn = task.turns.begin()
        await task.queue_frame(audio(0))  # held by the gate
        await gate.busy.wait()
        await task.queue_frames([LLMTextFrame(text="stale", turn=turn), audio(1), LLMTextFrame(text="x", turn=turn)])
        await gate.interrupt()
        gate.open.set()
        await tail.wait_for(lambda: len(tail.of(InputAudioFrame)) == 2)
        next_turn = task.turns.begin()
        await task.queue_frame(LLMTextFrame(text="fresh", turn=next_turn))
        await tail.wait_for(lambda: bool(tail.of(LLMTextFrame)))
    assert [f.text for f in tail.of(LLMTextFrame)] == ["fresh"]
    assert gate.dropped_stale == 2


async def test_frames_of_a_stale_turn_are_dropped_wherever_they_show_up_later() -> None:
    tail = Recorder()
    task = PipelineTask(Pipeline([FrameProcessor(), Queued(), tail]), quiet_params())
    async with running(task):
        stale = task.turns.begin()
        await task.queue_frame(LLMTextFrame(text="before", turn=stale))
        await tail.wait_for(lambda: len(tail.of(LLMTextFrame)) == 1)
        task.turns.interrupt()
        await task.queue_frame(LLMTextFrame(text="late token", turn=stale))
        await task.queue_frame(FunctionCallFrame(call_id="1", function_name="f", arguments={}, turn=stale))
        live = task.turns.begin()
        await task.queue_frame(LLMTextFrame(text="after", turn=live))
        await tail.wait_for(lambda: len(tail.of(LLMTextFrame)) == 2)
    assert [f.text for f in tail.of(LLMTextFrame)] == ["before", "after"]
    assert not tail.of(FunctionCallFrame)


class ToolRunner(FrameProcessor):
    """Runs the tool calls it receives, one at a time, like an LLM service does."""

    concurrent = True

    def __init__(self) -> None:
        super().__init__()
        self.ran: list[str] = []
        self.first_running = anyio.Event()
        self.release = anyio.Event()

    async def process(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, FunctionCallFrame):
            self.first_running.set()
            await self.release.wait()
            self.ran.append(frame.call_id)
        await self.push(frame, direction)


async def test_a_pending_tool_call_of_an_interrupted_turn_never_runs() -> None:
    runner, tail = ToolRunner(), Recorder()
    task = PipelineTask(Pipeline([runner, tail]), quiet_params())
    async with running(task):
        turn = task.turns.begin()
        await task.queue_frame(FunctionCallFrame(call_id="a", function_name="slow", arguments={}, turn=turn))
        await task.queue_frame(FunctionCallFrame(call_id="b", function_name="pending", arguments={}, turn=turn))
        await runner.first_running.wait()
        await runner.interrupt()
        runner.release.set()
        next_turn = task.turns.begin()
        await task.queue_frame(FunctionCallFrame(call_id="c", function_name="fresh", arguments={}, turn=next_turn))
        await tail.wait_for(lambda: bool(tail.of(FunctionCallFrame)))
    assert runner.ran == ["c"]  # "a" was cancelled mid-run, "b" never started


async def test_end_drains_everything_queued_before_stopping() -> None:
    gate, tail = Gate(), Recorder()
    task = PipelineTask(Pipeline([gate, tail]), quiet_params())
    await task.queue_frames(audio(i) for i in range(10))
    await task.stop_when_done()
    async with anyio.create_task_group() as tg:
        tg.start_soon(task.run)
        await gate.busy.wait()
        gate.open.set()
    assert [f.pts for f in tail.of(InputAudioFrame)] == [i * 320 for i in range(10)]
    assert isinstance(tail.down[-1], EndFrame)


async def test_cancel_stops_at_once_without_processing_the_queue() -> None:
    gate, tail = Gate(), Recorder()
    task = PipelineTask(Pipeline([gate, tail]), quiet_params())
    async with anyio.create_task_group() as tg:
        tg.start_soon(task.run)
        await task.wait_started()
        await task.queue_frames(audio(i) for i in range(10))
        await gate.busy.wait()
        await task.cancel()
    assert len(gate.cancelled) == 1  # the frame it was holding
    assert gate.completed == [] and not tail.of(InputAudioFrame)


class Failing(FrameProcessor):
    def __init__(self, fatal: bool) -> None:
        super().__init__()
        self.fatal = fatal

    async def process(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, InputAudioFrame):
            if self.fatal:
                await self.push_error("device lost", fatal=True)
                return
            raise ValueError("bad frame")
        await self.push(frame, direction)


async def test_non_fatal_errors_reach_the_task_and_the_session_goes_on() -> None:
    head, tail = Recorder(), Recorder()
    task = PipelineTask(Pipeline([head, Failing(fatal=False), tail]), quiet_params())
    async with running(task):
        await task.queue_frame(audio(0))
        await head.wait_for(lambda: bool(head.of(ErrorFrame, UP)))
        await task.queue_frame(BotStoppedSpeakingFrame())
        await tail.wait_for(lambda: bool(tail.of(BotStoppedSpeakingFrame)))
    (error,) = head.of(ErrorFrame, UP)
    assert "bad frame" in error.error and isinstance(error.exception, ValueError)
    assert task.error_count == 1


async def test_a_fatal_error_ends_the_task_and_is_reported() -> None:
    task = PipelineTask(Pipeline([Queued(), Failing(fatal=True)]), quiet_params())
    await task.queue_frame(audio(0))
    with anyio.fail_after(5), pytest.raises(PipelineError, match="device lost"):
        await task.run()


async def test_a_failed_setup_is_fatal() -> None:
    class BrokenSetup(FrameProcessor):
        async def setup(self) -> None:
            raise OSError("no such model")

    with anyio.fail_after(5), pytest.raises(PipelineError, match="no such model"):
        await PipelineTask(Pipeline([BrokenSetup()]), quiet_params()).run()


async def test_setup_of_processors_runs_concurrently() -> None:
    started = {"a": anyio.Event(), "b": anyio.Event()}

    class NeedsPeer(FrameProcessor):
        def __init__(self, me: str, peer: str) -> None:
            super().__init__(name=me)
            self.me, self.peer = me, peer

        async def setup(self) -> None:
            started[self.me].set()
            await started[self.peer].wait()  # deadlocks if setups ran one after the other

    task = PipelineTask(Pipeline([NeedsPeer("a", "b"), NeedsPeer("b", "a")]), quiet_params())
    await task.stop_when_done()
    with anyio.fail_after(5):
        await task.run()


@pytest.mark.parametrize("ending", ["end", "cancel", "fatal"])
async def test_no_task_is_left_after_the_run(ending: str) -> None:
    class Background(FrameProcessor):
        async def setup(self) -> None:
            self.task_group.start_soon(anyio.sleep_forever)

    before = asyncio.all_tasks()
    gate = Gate()
    task = PipelineTask(Pipeline([Background(), Queued(), gate, Queued()]), quiet_params())
    async with anyio.create_task_group() as tg:
        tg.start_soon(_run_expecting_error if ending == "fatal" else _run, task)
        await task.wait_started()
        await task.queue_frames(audio(i) for i in range(3))
        await gate.busy.wait()
        if ending == "end":
            await task.stop_when_done()
            gate.open.set()
        elif ending == "cancel":
            await task.cancel()
        else:
            await task.queue_frame(ErrorFrame(error="boom", fatal=True), UP)
    assert task.finished
    assert asyncio.all_tasks() == before


async def _run(task: PipelineTask) -> None:
    with anyio.fail_after(5):
        await task.run()


async def _run_expecting_error(task: PipelineTask) -> None:
    with pytest.raises(PipelineError):
        await task.run()


async def test_an_interruption_reaches_every_processor_once_per_direction() -> None:
    seen: dict[str, list[Direction]] = {}

    class Spy(FrameProcessor):
        async def handle_interruption(self, frame: InterruptionFrame, direction: Direction) -> None:
            seen.setdefault(self.name, []).append(direction)

    spies = [Spy(name=f"s{i}") for i in range(5)]
    task = PipelineTask(Pipeline(spies), quiet_params())
    async with running(task):
        await spies[2].interrupt()
    assert seen == {"s0": [UP], "s1": [UP], "s2": [DOWN], "s3": [DOWN], "s4": [DOWN]}


async def test_work_that_interrupts_its_own_turn_still_delivers_the_interruption() -> None:
    class SelfInterrupting(FrameProcessor):
        """Decides, mid-reply, that the reply must stop (as an output transport might)."""

        concurrent = True

        async def process(self, frame: Frame, direction: Direction) -> None:
            if isinstance(frame, LLMTextFrame):
                await self.interrupt("changed my mind")
                await anyio.lowlevel.checkpoint()  # the reply's own scope is cancelled from here on
                raise AssertionError("work of a stale turn went on")
            await self.push(frame, direction)

    class SlowHop(FrameProcessor):
        async def process(self, frame: Frame, direction: Direction) -> None:
            await anyio.lowlevel.checkpoint()  # a real suspension on the interruption's way
            await self.push(frame, direction)

    head, tail = Recorder("head"), Recorder("tail")
    task = PipelineTask(Pipeline([head, SlowHop(), SelfInterrupting(), SlowHop(), tail]), quiet_params())
    async with running(task):
        await task.queue_frame(LLMTextFrame(text="x", turn=task.turns.begin()))
        await head.wait_for(lambda: bool(head.of(InterruptionFrame, UP)))
        await tail.wait_for(lambda: bool(tail.of(InterruptionFrame)))


async def test_setup_already_knows_the_runs_sample_rates() -> None:
    class NeedsRate(FrameProcessor):
        async def setup(self) -> None:
            self.rate_at_setup = self.start_frame.audio_in_sample_rate

    proc = NeedsRate()
    task = PipelineTask(Pipeline([proc]), quiet_params(audio_in_sample_rate=8_000))
    await task.stop_when_done()
    with anyio.fail_after(5):
        await task.run()
    assert proc.rate_at_setup == 8_000
