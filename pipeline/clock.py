"""The one clock every timestamp in voxframe is read from.

All latency math uses `time.monotonic_ns()`: it is system-wide on Linux, so a client process
and the bot process on one host share it. Tests swap in a `VirtualClock` to assert exact
latencies without sleeping. A timeout that a test must step through uses `move_on_at` /
`fail_at` on this clock, not anyio's `move_on_after` (which runs on anyio's own clock).
"""

from __future__ import annotations

import contextvars
import heapq
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Protocol

import anyio

NS_PER_S = 1_000_000_000


class Clock(Protocol):
    def now_ns(self) -> int: ...

    async def sleep_until(self, deadline_ns: int) -> None: ...


class MonotonicClock:
    """The real clock: `time.monotonic_ns`, sleeping on the event loop."""

    now_ns = staticmethod(time.monotonic_ns)

    async def sleep_until(self, deadline_ns: int) -> None:
        delay = deadline_ns - time.monotonic_ns()
        await anyio.sleep(max(0, delay) / NS_PER_S)


class VirtualClock:
    """A clock that only moves when a test calls `advance`.

    Sleepers wake in deadline order as time passes them, so a test can step a pipeline through
    exact instants and assert latencies to the nanosecond.
    """

    def __init__(self, start_ns: int = 0) -> None:
        self._now = start_ns
        self._sleepers: list[tuple[int, int, anyio.Event]] = []
        self._seq = itertools.count()
        self._sleeper_added: anyio.Event | None = None

    def now_ns(self) -> int:
        return self._now

    async def sleep_until(self, deadline_ns: int) -> None:
        if deadline_ns <= self._now:
            await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        heapq.heappush(self._sleepers, (deadline_ns, next(self._seq), event))
        if self._sleeper_added is not None:
            self._sleeper_added.set()
        await event.wait()

    async def wait_sleepers(self, count: int = 1) -> None:
        """Wait until at least `count` tasks sleep on this clock (so `advance` will wake them)."""
        while len(self._sleepers) < count:
            self._sleeper_added = anyio.Event()
            await self._sleeper_added.wait()

    async def advance(self, delta_ns: int) -> None:
        """Move time forward, waking each sleeper at its own deadline, in order.

        Tasks made runnable before the call get to run (and go to sleep) first, so a sleep they
        are about to start is not skipped over.
        """
        await _yield_rounds()
        target = self._now + delta_ns
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, event = heapq.heappop(self._sleepers)
            self._now = max(self._now, deadline)
            event.set()
            await _yield_rounds()
        self._now = target
        await _yield_rounds()

    @property
    def sleepers(self) -> int:
        return len(self._sleepers)


async def _yield_rounds(rounds: int = 50) -> None:
    """Pass through the event loop `rounds` times, so tasks made runnable get to run.

    Not trio's `wait_all_tasks_blocked`: asyncio cannot tell when every task is blocked, so this
    is a bounded number of scheduler passes, enough for the short chains a virtual-time step
    wakes. Tests use it through `tests/support.py`'s `yield_rounds`.
    """
    for _ in range(rounds):
        await anyio.lowlevel.checkpoint()


_MONOTONIC = MonotonicClock()
_current: contextvars.ContextVar[Clock] = contextvars.ContextVar("voxframe_clock", default=_MONOTONIC)


def current_clock() -> Clock:
    return _current.get()


def now_ns() -> int:
    """Now, on the clock of the running pipeline (monotonic unless a test injected one)."""
    return _current.get().now_ns()


@asynccontextmanager
async def move_on_at(deadline_ns: int, clock: Clock | None = None) -> AsyncIterator[anyio.CancelScope]:
    """Cancel the body when `clock` reaches `deadline_ns` (anyio's `move_on_after` runs on
    anyio's own clock, which a `VirtualClock` cannot move). `scope.cancelled_caught` tells.

    An error the body raises comes out as itself, as from `move_on_after`, not wrapped in the
    ExceptionGroup of the task group the alarm runs in (so `except TimeoutError:` still works).
    """
    clock = clock or current_clock()
    scope = anyio.CancelScope()
    error: Exception | None = None

    async def alarm() -> None:
        await clock.sleep_until(deadline_ns)
        scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(alarm)
        try:
            with scope:
                yield scope
        except Exception as exc:  # re-raised below, once the alarm is gone; cancellation passes
            error = exc
        finally:
            tg.cancel_scope.cancel()
    if error is not None:
        raise error


@asynccontextmanager
async def fail_at(deadline_ns: int, clock: Clock | None = None) -> AsyncIterator[anyio.CancelScope]:
    """Like `move_on_at`, but raise TimeoutError when the deadline cancels the body."""
    async with move_on_at(deadline_ns, clock) as scope:
        yield scope
    if scope.cancelled_caught:
        raise TimeoutError


@contextmanager
def use_clock(clock: Clock) -> Iterator[Clock]:
    """Make `clock` the current clock for this task and every task it starts."""
    token = _current.set(clock)
    try:
        yield clock
    finally:
        _current.reset(token)
