"""`FrameProcessor`: the unit a pipeline is made of.

A hop is a direct `await` of the next processor: a processor that only transforms frames costs
a couple of coroutine calls. A processor that must run concurrently (network I/O, inference,
real-time pacing) sets `concurrent = True` and gets exactly one queue and one worker task.
System frames never wait in that queue: they are handled on arrival, which is how an
interruption reaches a processor that is busy with the very work it must cancel.
"""

from __future__ import annotations

import enum
import itertools
import logging
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import anyio
from anyio.abc import TaskGroup, TaskStatus

from .clock import Clock, MonotonicClock
from .frames import (
    CancelFrame,
    EndFrame,
    ErrorFrame,
    Frame,
    InterruptionFrame,
    StartFrame,
)
from .observer import Observer
from .tracing import Tracer
from .turns import Turns

logger = logging.getLogger("voxframe")


class Direction(enum.Enum):
    DOWNSTREAM = "downstream"
    UPSTREAM = "upstream"


DOWN = Direction.DOWNSTREAM
UP = Direction.UPSTREAM


@dataclass(slots=True)
class ProcessorContext:
    """What a running pipeline task shares with each of its processors."""

    task_group: TaskGroup
    clock: Clock
    turns: Turns
    tracer: Tracer | None = None
    observers: tuple[Observer, ...] = ()
    #: The start frame the task will send, known before `setup` so sample rates are too.
    start_frame: StartFrame | None = None


_processor_ids = itertools.count(1)


class FrameProcessor:
    """Receives frames with `process`, sends them on with `push`.

    Subclasses override `process` and forward what they do not consume. Long-lived resources
    are opened in `setup` and released in `cleanup`; both run once per task.
    """

    #: Declare True to get one queue and one worker task (data and control frames wait in it).
    concurrent: ClassVar[bool] = False

    def __init__(self, *, name: str | None = None) -> None:
        self.name = name or f"{type(self).__name__}#{next(_processor_ids)}"
        self.clock: Clock = MonotonicClock()
        self.start_frame = StartFrame()
        self.dropped_stale = 0
        self._next: FrameProcessor | None = None
        self._prev: FrameProcessor | None = None
        self._turns = Turns()
        self._tracer: Tracer | None = None
        self._observers: tuple[Observer, ...] = ()
        self._task_group: TaskGroup | None = None
        self._queue: deque[tuple[Frame, Direction]] | None = deque() if self.concurrent else None
        self._wakeup: anyio.Event | None = None
        self._scopes: list[tuple[int, anyio.CancelScope]] = []
        self._in_turn = 0
        self._out_turn = 0

    # --- hooks for subclasses ----------------------------------------------------------------

    async def setup(self) -> None:
        """Open sockets, load models. Runs concurrently with the other processors' setup.

        `self.start_frame` already holds the run's settings (sample rates) here.
        """

    async def cleanup(self) -> None:
        """Release what `setup` opened. Runs once when the task ends, however it ends."""

    async def process(self, frame: Frame, direction: Direction) -> None:
        await self.push(frame, direction)

    async def handle_interruption(self, frame: InterruptionFrame, direction: Direction) -> None:
        """Drop pending bot output held outside the queue (buffers, provider contexts)."""

    # --- sending -----------------------------------------------------------------------------

    async def push(self, frame: Frame, direction: Direction = DOWN) -> None:
        if frame.turn > self._out_turn and self._tracer is not None:
            self._out_turn = frame.turn
            self._tracer.mark(frame.turn, f"{self.name}:out")
        dst = self._next if direction is DOWN else self._prev
        if dst is None:
            return
        if self._observers:
            t_ns = self.clock.now_ns()
            if not frame.observed:
                frame.observed = True
                for observer in self._observers:
                    observer.on_frame(self, frame, direction, t_ns)
            for observer in self._observers:
                observer.on_push(self, dst, frame, direction, t_ns)
        await dst._receive(frame, direction)

    async def push_error(self, error: str, *, fatal: bool = False, exception: BaseException | None = None) -> None:
        frame = ErrorFrame(error=error, fatal=fatal, processor=self.name, exception=exception)
        await self.push(frame, UP)

    async def interrupt(self, reason: str = "") -> int:
        """Start an interruption here: void every turn so far and tell both neighbours."""
        stale_upto = self._turns.interrupt()
        down = InterruptionFrame(stale_upto=stale_upto, reason=reason)
        # Shielded: the caller may itself be work of the turn this interruption cancels, and the
        # interruption must still reach every processor.
        with anyio.CancelScope(shield=True):
            self._cancel_stale(stale_upto)
            await self.handle_interruption(down, DOWN)
            await self.push(down, DOWN)
            await self.push(down.twin(), UP)  # one event: observers are told of it once
        return stale_upto

    # --- turns and interruptible work --------------------------------------------------------

    @property
    def turns(self) -> Turns:
        return self._turns

    @property
    def task_group(self) -> TaskGroup:
        if self._task_group is None:
            raise RuntimeError(f"{self.name} is not running in a pipeline task")
        return self._task_group

    def trace(self, point: str, turn: int | None = None, t_ns: int | None = None, *, latest: bool = False) -> None:
        """Record a named latency point; without a turn it belongs to the reply being prepared.
        `latest`: a later mark of the point replaces it (a pause the user spoke through)."""
        if self._tracer is not None:
            self._tracer.mark(self._turns.current + 1 if turn is None else turn, point, t_ns, latest=latest)

    @contextmanager
    def interruptible(self, turn: int) -> Iterator[anyio.CancelScope]:
        """A cancel scope for work on `turn`, cancelled by an interruption that voids it."""
        scope = anyio.CancelScope()
        if self._turns.is_stale(turn):
            scope.cancel()
        entry = (turn, scope)
        self._scopes.append(entry)
        try:
            with scope:
                yield scope
        finally:
            self._scopes.remove(entry)

    def _cancel_stale(self, stale_upto: int) -> None:
        if stale_upto > self._turns.stale_upto:
            self._turns.stale_upto = stale_upto
        queue = self._queue
        if queue:
            kept = [item for item in queue if not (item[0].interruptible and item[0].turn <= stale_upto)]
            self.dropped_stale += len(queue) - len(kept)
            queue.clear()
            queue.extend(kept)
        for turn, scope in self._scopes:
            if turn <= stale_upto:
                scope.cancel()

    # --- receiving ---------------------------------------------------------------------------

    async def _receive(self, frame: Frame, direction: Direction) -> None:
        turn = frame.turn
        if turn:
            if frame.interruptible and turn <= self._turns.stale_upto:
                self.dropped_stale += 1
                return
            if turn > self._in_turn and self._tracer is not None:
                self._in_turn = turn
                self._tracer.mark(turn, f"{self.name}:in")
        if frame.is_system:
            await self._receive_system(frame, direction)
        elif self._queue is not None:
            self._queue.append((frame, direction))
            if self._wakeup is not None:
                self._wakeup.set()
                self._wakeup = None
        else:
            try:
                await self.process(frame, direction)
            except Exception as exc:
                await self._report(exc)

    async def _receive_system(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, InterruptionFrame):
            self._cancel_stale(frame.stale_upto)
            await self.handle_interruption(frame, direction)
        elif isinstance(frame, StartFrame):
            self.start_frame = frame
        elif isinstance(frame, CancelFrame) and self._queue is not None:
            self._queue.clear()
        try:
            await self.process(frame, direction)
        except Exception as exc:
            await self._report(exc)

    async def _report(self, exc: Exception) -> None:
        logger.error("%s failed: %r", self.name, exc, exc_info=exc)
        await self.push_error(f"{self.name}: {exc!r}", exception=exc)

    # --- running inside a task ---------------------------------------------------------------

    def _install(self, ctx: ProcessorContext) -> None:
        self._task_group = ctx.task_group
        self.clock = ctx.clock
        self._turns = ctx.turns
        self._tracer = ctx.tracer
        self._observers = ctx.observers
        if ctx.start_frame is not None:
            self.start_frame = ctx.start_frame

    async def _run_worker(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Process queued frames in order until the end frame has gone through."""
        queue = self._queue
        assert queue is not None
        task_status.started()
        while True:
            while not queue:
                self._wakeup = anyio.Event()
                await self._wakeup.wait()
            frame, direction = queue.popleft()
            if frame.interruptible:
                if self._turns.is_stale(frame.turn):
                    self.dropped_stale += 1
                    continue
                with self.interruptible(frame.turn):
                    await self._process_guarded(frame, direction)
            else:
                await self._process_guarded(frame, direction)
            if isinstance(frame, EndFrame):
                return

    async def _process_guarded(self, frame: Frame, direction: Direction) -> None:
        try:
            await self.process(frame, direction)
        except Exception as exc:
            await self._report(exc)

    def queue_size(self) -> int:
        return len(self._queue) if self._queue is not None else 0

    # --- composition -------------------------------------------------------------------------

    def link(self, other: FrameProcessor) -> FrameProcessor:
        """Make `other` the next processor downstream; returns `other` for chaining."""
        self._set_next(other._entry(DOWN))
        other._set_prev(self._entry(UP))
        return other

    def _entry(self, direction: Direction) -> FrameProcessor:
        """The processor a frame travelling `direction` enters first (composites flatten here)."""
        return self

    def _set_next(self, processor: FrameProcessor) -> None:
        self._next = processor

    def _set_prev(self, processor: FrameProcessor) -> None:
        self._prev = processor

    def iter_processors(self) -> Iterator[FrameProcessor]:
        """Every processor that does work, composites expanded."""
        yield self

    def __repr__(self) -> str:
        return f"<{self.name}>"
