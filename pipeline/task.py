"""`PipelineTask` runs one pipeline to completion; `PipelineRunner` adds signal handling.

Every worker and background task of a run lives in one task group: when `run` returns,
nothing of the run is left.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterable
from dataclasses import dataclass, field

import anyio
import anyio.abc

from .clock import NS_PER_S, Clock, MonotonicClock, use_clock
from .frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    CancelFrame,
    EndFrame,
    EndTaskFrame,
    ErrorFrame,
    Frame,
    InterimTranscriptionFrame,
    StartFrame,
    TranscriptionFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    UserTextFrame,
)
from .observer import Observer
from .processor import DOWN, UP, Direction, FrameProcessor, ProcessorContext
from .tracing import Tracer
from .turns import Turns

logger = logging.getLogger("voxframe")

#: Frames that count as conversation activity for the idle timeout.
ACTIVITY_FRAMES: tuple[type[Frame], ...] = (
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    InterimTranscriptionFrame,
    TranscriptionFrame,
    UserTextFrame,
)


class PipelineError(RuntimeError):
    """A fatal error ended the task; `frame` is the error frame that reported it."""

    def __init__(self, frame: ErrorFrame) -> None:
        super().__init__(f"{frame.processor}: {frame.error}" if frame.processor else frame.error)
        self.frame = frame


@dataclass(slots=True)
class PipelineParams:
    audio_in_sample_rate: int = 16_000
    audio_out_sample_rate: int = 24_000
    allow_interruptions: bool = True
    #: Cancel the task when no activity frame has reached either end for this long.
    idle_timeout_s: float | None = 300.0
    idle_frames: tuple[type[Frame], ...] = ACTIVITY_FRAMES
    cleanup_timeout_s: float = 5.0
    observers: list[Observer] = field(default_factory=list)


class PipelineTask:
    def __init__(
        self,
        pipeline: FrameProcessor,
        params: PipelineParams | None = None,
        *,
        clock: Clock | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.params = params or PipelineParams()
        self.pipeline = pipeline
        self.clock = clock or MonotonicClock()
        self.turns = Turns()
        self.tracer = tracer or Tracer()
        self.tracer.clock = self.clock
        self.error: ErrorFrame | None = None
        self.error_count = 0
        self._source = _TaskEdge(self, "source")
        self._sink = _TaskEdge(self, "sink")
        self._source.link(pipeline).link(self._sink)
        self._pending: list[tuple[Frame, Direction]] = []
        self._running = False
        self._finished = False
        self._done: anyio.Event | None = None
        self._started: anyio.Event | None = None
        self._last_activity_ns = 0

    # --- control from outside ----------------------------------------------------------------

    async def queue_frame(self, frame: Frame, direction: Direction = DOWN) -> None:
        """Inject a frame at the head (downstream) or the tail (upstream) of the pipeline."""
        if not self._running:
            self._pending.append((frame, direction))
        elif direction is DOWN:
            await self._source.push(frame, DOWN)
        else:
            await self._sink.push(frame, UP)

    async def queue_frames(self, frames: Iterable[Frame], direction: Direction = DOWN) -> None:
        for frame in frames:
            await self.queue_frame(frame, direction)

    async def stop_when_done(self) -> None:
        """End gracefully: everything already queued is processed first."""
        await self.queue_frame(EndFrame())

    async def cancel(self) -> None:
        """Stop now: processors see a cancel frame, then every worker is cancelled."""
        if self._finished:
            return
        if self._running:
            await self._source.push(CancelFrame(), DOWN)
        self._finish()

    def processors(self) -> list[FrameProcessor]:
        return list(self.pipeline.iter_processors())

    def statistics(self) -> dict[str, int]:
        procs = self.processors()
        return {
            "errors": self.error_count,
            "dropped_stale": sum(p.dropped_stale for p in procs),
            "queued": sum(p.queue_size() for p in procs),
        }

    @property
    def finished(self) -> bool:
        return self._finished

    async def wait_started(self) -> bool:
        """Wait until the start frame went through; False if the task ended without starting."""
        if not (self._running or self._finished):
            if self._started is None:
                self._started = anyio.Event()
            await self._started.wait()
        return self._running

    # --- running -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until an end frame reaches the sink, `cancel`, a fatal error or idle timeout."""
        if self._finished:
            return
        self._done = anyio.Event()
        procs = self.processors()
        with use_clock(self.clock):
            try:
                async with anyio.create_task_group() as tg:
                    start = StartFrame(
                        audio_in_sample_rate=self.params.audio_in_sample_rate,
                        audio_out_sample_rate=self.params.audio_out_sample_rate,
                        allow_interruptions=self.params.allow_interruptions,
                    )
                    observers = tuple(self.params.observers)
                    ctx = ProcessorContext(tg, self.clock, self.turns, self.tracer, observers, start)
                    for proc in (self._source, *procs, self._sink):
                        proc._install(ctx)
                    if await self._setup(procs):
                        tg.start_soon(self._drive, tg, procs, start)
                        await self._done.wait()
                    tg.cancel_scope.cancel()
            finally:
                self._running = False
                self._finished = True
                with anyio.CancelScope(shield=True), anyio.move_on_after(self.params.cleanup_timeout_s):
                    async with anyio.create_task_group() as cleanup_tg:
                        for proc in procs:
                            cleanup_tg.start_soon(self._cleanup_one, proc)
        if self.error is not None:
            raise PipelineError(self.error)

    async def _setup(self, procs: list[FrameProcessor]) -> bool:
        """Set every processor up concurrently; a failure is fatal."""
        async with anyio.create_task_group() as setup_tg:
            for proc in procs:
                setup_tg.start_soon(self._setup_one, proc)
        return self.error is None

    async def _setup_one(self, proc: FrameProcessor) -> None:
        try:
            await proc.setup()
        except Exception as exc:
            logger.exception("setup of %s failed", proc.name)
            self._on_error(ErrorFrame(error=f"setup failed: {exc!r}", fatal=True, processor=proc.name, exception=exc))

    async def _cleanup_one(self, proc: FrameProcessor) -> None:
        try:
            await proc.cleanup()
        except Exception:
            logger.exception("cleanup of %s failed", proc.name)

    async def _drive(self, tg: anyio.abc.TaskGroup, procs: list[FrameProcessor], start: StartFrame) -> None:
        """Start the workers, announce the start, then release frames queued before it."""
        for proc in procs:
            if proc.concurrent:
                await tg.start(proc._run_worker)
        if self.params.idle_timeout_s is not None:
            tg.start_soon(self._watch_idle)
        self._last_activity_ns = self.clock.now_ns()
        await self._source.push(start, DOWN)
        while self._pending:
            frame, direction = self._pending.pop(0)
            edge = self._source if direction is DOWN else self._sink
            await edge.push(frame, direction)
        # Set only once nothing is pending, with no await in between, so order is kept.
        self._running = True
        if self._started is not None:
            self._started.set()

    async def _watch_idle(self) -> None:
        assert self.params.idle_timeout_s is not None
        timeout_ns = int(self.params.idle_timeout_s * NS_PER_S)
        while not self._finished:
            deadline = self._last_activity_ns + timeout_ns
            if self.clock.now_ns() >= deadline:
                logger.info("pipeline idle for %.1f s: cancelling", self.params.idle_timeout_s)
                await self.cancel()
                return
            await self.clock.sleep_until(deadline)

    # --- what reaches the edges ----------------------------------------------------------------

    def _at_edge(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, self.params.idle_frames):
            self._last_activity_ns = self.clock.now_ns()
        if isinstance(frame, ErrorFrame) and direction is UP:
            self._on_error(frame)
        elif isinstance(frame, (EndFrame, CancelFrame)) and direction is DOWN:
            self._finish()

    def _on_error(self, frame: ErrorFrame) -> None:
        if frame.fatal:
            logger.error("fatal error from %s: %s", frame.processor, frame.error)
            if self.error is None:
                self.error = frame
            self._finish()
        else:
            logger.warning("error from %s: %s", frame.processor, frame.error)
            self.error_count += 1

    def _finish(self) -> None:
        self._finished = True
        for event in (self._done, self._started):
            if event is not None:
                event.set()


class _TaskEdge(FrameProcessor):
    """The task's own head and tail: where injected frames start and finished frames land."""

    def __init__(self, task: PipelineTask, role: str) -> None:
        super().__init__(name=f"task.{role}")
        self._task = task

    async def process(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, EndTaskFrame) and direction is UP:
            self.task_group.start_soon(self._task.stop_when_done)  # a processor ended the session
        self._task._at_edge(frame, direction)


class PipelineRunner:
    """Runs a task; SIGINT/SIGTERM cancel it cleanly instead of killing the process."""

    def __init__(self, *, handle_signals: bool = True) -> None:
        self.handle_signals = handle_signals

    async def run(self, task: PipelineTask) -> None:
        async with anyio.create_task_group() as tg:
            if self.handle_signals:
                tg.start_soon(self._cancel_on_signal, task)
            try:
                await task.run()
            finally:
                tg.cancel_scope.cancel()

    @staticmethod
    async def _cancel_on_signal(task: PipelineTask) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                logger.info("received %s: cancelling the pipeline", signal.Signals(signum).name)
                await task.cancel()
                return
