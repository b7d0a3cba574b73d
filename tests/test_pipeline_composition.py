"""Nesting, parallel branches, observers, the clock, the tracer and the idle timeout."""

from __future__ import annotations

import gc

import anyio
import pytest

from tests.pipeline_helpers import audio, quiet_params
from tests.support import Recorder, running
from voxframe.pipeline import (
    DOWN,
    UP,
    Direction,
    EndFrame,
    Frame,
    FrameProcessor,
    InputAudioFrame,
    LLMTextFrame,
    Observer,
    ParallelPipeline,
    Pipeline,
    PipelineParams,
    PipelineTask,
    TextFrame,
    UserStartedSpeakingFrame,
    VirtualClock,
)

pytestmark = pytest.mark.anyio


async def test_nesting_adds_no_hop() -> None:
    a, b, c = FrameProcessor(name="a"), FrameProcessor(name="b"), FrameProcessor(name="c")
    hops = await hops_of_one_frame(Pipeline([a, Pipeline([Pipeline([b])]), c]))
    assert hops == [("task.source", "a"), ("a", "b"), ("b", "c"), ("c", "task.sink")]


class Upper(FrameProcessor):
    async def process(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, TextFrame):
            frame = TextFrame(text=frame.text.upper(), turn=frame.turn)
        await self.push(frame, direction)


class DropText(FrameProcessor):
    async def process(self, frame: Frame, direction: Direction) -> None:
        if not isinstance(frame, TextFrame):
            await self.push(frame, direction)


async def test_parallel_branches_see_every_frame_and_pass_each_on_once() -> None:
    left, right, tail = Recorder("left"), Recorder("right"), Recorder("tail")
    parallel = ParallelPipeline([left, Upper()], [right, DropText()])
    task = PipelineTask(Pipeline([parallel, tail]), quiet_params())
    await task.queue_frames([audio(0), TextFrame(text="hi"), audio(1)])
    await task.stop_when_done()
    with anyio.fail_after(5):
        await task.run()
    assert len(left.of(InputAudioFrame)) == len(right.of(InputAudioFrame)) == 2
    assert [f.pts for f in tail.of(InputAudioFrame)] == [0, 320]  # passed by both, emitted once
    assert [f.text for f in tail.of(TextFrame)] == ["HI"]  # only the left branch emits text
    assert len(tail.of(EndFrame)) == 1


async def test_parallel_bookkeeping_does_not_grow_with_the_stream() -> None:
    parallel = ParallelPipeline([FrameProcessor()], [FrameProcessor()], [FrameProcessor()])
    task = PipelineTask(Pipeline([parallel, FrameProcessor()]), quiet_params())  # keeps no frame alive
    async with running(task):
        for i in range(2000):
            await task.queue_frame(audio(i))
    gc.collect()
    assert len(parallel._emitted) <= 1 and not parallel._barrier


class Counting(Observer):
    def __init__(self) -> None:
        self.pushes: list[tuple[str, str, Frame]] = []

    def on_push(self, src: FrameProcessor, dst: FrameProcessor, frame: Frame, direction: Direction, t_ns: int) -> None:
        self.pushes.append((src.name, dst.name, frame))


async def hops_of_one_frame(pipeline: Pipeline) -> list[tuple[str, str]]:
    """Run one audio frame through `pipeline`: the (from, to) names of each hop it took."""
    observer = Counting()
    task = PipelineTask(pipeline, quiet_params(observers=[observer]))
    frame = audio(0)
    await task.queue_frame(frame)
    await task.stop_when_done()
    with anyio.fail_after(5):
        await task.run()
    return [(s, d) for s, d, f in observer.pushes if f is frame]


async def test_observers_see_every_hop_of_every_frame() -> None:
    hops = await hops_of_one_frame(Pipeline([FrameProcessor(name=f"p{i}") for i in range(3)]))
    assert hops == [("task.source", "p0"), ("p0", "p1"), ("p1", "p2"), ("p2", "task.sink")]


class FirstPushes(Observer):
    def __init__(self) -> None:
        self.frames: list[tuple[str, Frame, Direction]] = []

    def on_frame(self, src: FrameProcessor, frame: Frame, direction: Direction, t_ns: int) -> None:
        self.frames.append((src.name, frame, direction))


class SaysBothWays(FrameProcessor):
    """Announces each text frame both ways, as a frame and its twin."""

    async def process(self, frame: Frame, direction: Direction) -> None:
        await self.push(frame, direction)
        if isinstance(frame, TextFrame):
            event = UserStartedSpeakingFrame()
            await self.push(event, DOWN)
            await self.push(event.twin(), UP)


async def test_on_frame_is_told_once_per_frame_and_once_per_event_pushed_both_ways() -> None:
    observer = FirstPushes()
    head, tail = Recorder("head"), Recorder("tail")
    procs = [head, FrameProcessor(name="p0"), SaysBothWays(name="says"), FrameProcessor(name="p1"), tail]
    task = PipelineTask(Pipeline(procs), PipelineParams(idle_timeout_s=None, observers=[observer]))
    text = TextFrame(text="hi")
    await task.queue_frame(text)
    await task.stop_when_done()
    with anyio.fail_after(5):
        await task.run()
    assert [(src, d) for src, f, d in observer.frames if f is text] == [("task.source", DOWN)]
    events = [(src, d) for src, f, d in observer.frames if isinstance(f, UserStartedSpeakingFrame)]
    assert events == [("says", DOWN)]  # its twin went up through p0 and head unannounced
    (up,) = head.of(UserStartedSpeakingFrame, UP)
    (down,) = tail.of(UserStartedSpeakingFrame)
    assert up is not down and up.id != down.id and up.created_ns == down.created_ns


class Thinker(FrameProcessor):
    """Takes exactly `delay_ns` of (virtual) time per reply token, like a slow service."""

    concurrent = True

    def __init__(self, delay_ns: int) -> None:
        super().__init__(name="thinker")
        self.delay_ns = delay_ns

    async def process(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, LLMTextFrame):
            await self.clock.sleep_until(self.clock.now_ns() + self.delay_ns)
        await self.push(frame, direction)


async def test_tracer_measures_exact_latency_on_virtual_time() -> None:
    clock = VirtualClock(start_ns=1_000)
    tail = Recorder("tail")
    task = PipelineTask(Pipeline([FrameProcessor(name="in"), Thinker(50_000_000), tail]), quiet_params(), clock=clock)
    async with running(task):
        turn = task.turns.begin()
        await task.queue_frame(LLMTextFrame(text="hello", turn=turn))
        with anyio.fail_after(5):
            await clock.wait_sleepers(1)  # the thinker is on it
        await clock.advance(20_000_000)
        assert not tail.of(LLMTextFrame)
        await clock.advance(30_000_000)
        await tail.wait_for(lambda: bool(tail.of(LLMTextFrame)))
    points = task.tracer.turn(turn)
    assert points["thinker:in"] == 1_000
    assert points["thinker:out"] - points["thinker:in"] == 50_000_000
    assert points["tail:in"] == points["thinker:out"]


async def test_idle_timeout_cancels_a_silent_pipeline_on_virtual_time() -> None:
    clock = VirtualClock()
    task = PipelineTask(Pipeline([FrameProcessor()]), PipelineParams(idle_timeout_s=10), clock=clock)
    async with anyio.create_task_group() as tg:
        tg.start_soon(task.run)
        await task.wait_started()
        await clock.advance(6_000_000_000)
        await task.queue_frame(UserStartedSpeakingFrame())  # activity: the timer restarts
        await clock.advance(6_000_000_000)
        assert not task.finished
        await clock.advance(4_000_000_001)
    assert task.finished


async def test_frames_carry_the_pipeline_clock_time() -> None:
    clock = VirtualClock(start_ns=42)
    tail = Recorder()
    task = PipelineTask(Pipeline([FrameProcessor(), tail]), quiet_params(), clock=clock)
    async with running(task):
        await task.queue_frame(TextFrame(text="x"))
    assert tail.down[0].created_ns == 42  # the start frame was made on the task's clock
