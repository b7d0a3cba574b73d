"""A session's timers run on the injected clock: a VirtualClock steps them to the nanosecond.

The peer connections are real (aiortc on 127.0.0.1, in this process); only the session's clock
is virtual, so the real-time bounds here (`fail_after`) guard the test, never its assertions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from test_webrtc_signalling import make_offer
from webrtc_helpers import echo_factory, loopback_ice

from tests.support import yield_rounds
from voxframe.pipeline import PipelineTask
from voxframe.pipeline.clock import NS_PER_S, VirtualClock
from voxframe.transports.webrtc import Session, SessionOptions

pytestmark = pytest.mark.anyio


@dataclass(slots=True)
class Served:
    built: anyio.Event = field(default_factory=anyio.Event)  # the factory built the pipeline
    ended: anyio.Event = field(default_factory=anyio.Event)  # the session ended and released all
    tasks: list[PipelineTask] = field(default_factory=list)


@asynccontextmanager
async def serving(session: Session) -> AsyncIterator[Served]:
    """Run `session` (an echo pipeline) for the block."""
    served = Served()

    async def factory(session: Session) -> PipelineTask:
        task = await echo_factory(session)
        served.tasks.append(task)
        served.built.set()
        return task

    async def run() -> None:
        await session.run(factory)
        served.ended.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        try:
            yield served
        finally:
            tg.cancel_scope.cancel()


async def test_an_offer_whose_caller_never_connects_ends_exactly_at_the_connect_timeout() -> None:
    clock = VirtualClock()
    session = Session(SessionOptions(ice=loopback_ice(), connect_timeout_s=15.0), clock=clock)
    caller, sdp, _ = await make_offer(trickle=True)  # its candidates never come: ICE cannot start
    try:
        await session.accept(sdp, "offer")
        async with serving(session) as served:
            await clock.advance(15 * NS_PER_S - 1)
            assert not served.ended.is_set() and session.end_reason is None
            await clock.advance(1)
            with anyio.fail_after(5):
                await served.ended.wait()
    finally:
        await caller.close()
    assert session.end_reason == "not connected within 15 s"
    assert session.pc.connectionState == "closed"


async def connected_caller(session: Session) -> RTCPeerConnection:
    """A caller whose offer `session` answers; it sends no audio (its transceiver has no track)."""
    caller, sdp, _ = await make_offer()
    answer = await session.accept(sdp, "offer")
    await caller.setRemoteDescription(RTCSessionDescription(sdp=answer.sdp, type=answer.type))
    return caller


async def test_a_connected_caller_who_sends_no_media_is_ended_exactly_at_the_media_timeout() -> None:
    clock = VirtualClock()
    # 2.7 s: not a multiple of the watchdog's backstop interval, so only the exact deadline fires then.
    session = Session(SessionOptions(ice=loopback_ice(), media_timeout_s=2.7), clock=clock)
    caller = await connected_caller(session)
    try:
        async with serving(session) as served:
            with anyio.fail_after(10):  # ICE and DTLS on 127.0.0.1, in real time
                await served.built.wait()
                await served.tasks[0].wait_started()  # it runs once connected: at virtual time 0
            await yield_rounds()
            await clock.advance(2_700_000_000 - 1)
            assert not served.ended.is_set() and session.state == "connected"
            await clock.advance(1)
            with anyio.fail_after(5):
                await served.ended.wait()
    finally:
        await caller.close()
    assert session.end_reason == "no media for 2.7 s"
    assert clock.now_ns() == 2_700_000_000
