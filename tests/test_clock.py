"""Deadlines on the injected clock fire at exactly their virtual time."""

from __future__ import annotations

import anyio
import pytest

from voxframe.pipeline.clock import NS_PER_S, VirtualClock, fail_at, move_on_at, use_clock

pytestmark = pytest.mark.anyio


async def test_move_on_at_cancels_the_body_exactly_at_its_virtual_deadline() -> None:
    clock = VirtualClock()
    never = anyio.Event()
    done = anyio.Event()
    result: list[tuple[bool, int]] = []

    async def waiter() -> None:
        async with move_on_at(2 * NS_PER_S, clock) as scope:
            await never.wait()
        result.append((scope.cancelled_caught, clock.now_ns()))
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await clock.wait_sleepers(1)
        await clock.advance(2 * NS_PER_S - 1)
        assert not result  # one nanosecond early: still waiting
        await clock.advance(1)
        await done.wait()
    assert result == [(True, 2 * NS_PER_S)]


async def test_fail_at_raises_timeout_on_the_current_clock_and_leaves_no_sleeper() -> None:
    clock = VirtualClock()
    with use_clock(clock):
        async with anyio.create_task_group() as tg:
            errors: list[BaseException] = []

            async def waiter() -> None:
                try:
                    async with fail_at(NS_PER_S):
                        await anyio.sleep_forever()
                except TimeoutError as exc:
                    errors.append(exc)

            tg.start_soon(waiter)
            await clock.wait_sleepers(1)
            await clock.advance(NS_PER_S)
    assert len(errors) == 1 and clock.now_ns() == NS_PER_S and clock.sleepers == 0


async def test_a_body_that_finishes_in_time_is_not_cancelled() -> None:
    clock = VirtualClock()
    async with fail_at(NS_PER_S, clock) as scope:
        await anyio.lowlevel.checkpoint()
    assert not scope.cancelled_caught


async def test_an_error_in_the_body_comes_out_as_itself_not_in_an_exception_group() -> None:
    clock = VirtualClock()
    with pytest.raises(LookupError, match="no such tool"):
        async with fail_at(NS_PER_S, clock):
            raise LookupError("no such tool")
    with pytest.raises(TimeoutError, match="inner"):  # a nested timeout is still a TimeoutError
        async with move_on_at(NS_PER_S, clock):
            raise TimeoutError("inner")
