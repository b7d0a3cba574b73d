"""One call's failure stays in that call: a processor that raises (reported as that call's
error, the call going on as it can), or one that hangs, in one session neither ends nor stalls
the others on the same server."""

from __future__ import annotations

import anyio
import numpy as np
import pytest
from webrtc_helpers import client_options, serving, tone

from voxframe.pipeline import Direction, Frame, FrameProcessor, InputAudioFrame, Pipeline, PipelineParams, PipelineTask
from voxframe.processors.echo import AudioEcho
from voxframe.transports.webrtc import HeadlessClient, Session

pytestmark = pytest.mark.anyio


class Raises(FrameProcessor):
    """A bug in one bot's processor: the first audio it sees raises."""

    async def process(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, InputAudioFrame):
            raise RuntimeError("a bug in this call's processor")
        await self.push(frame, direction)


class Hangs(FrameProcessor):
    """A processor stuck forever on the first audio (a deadlocked call)."""

    concurrent = True

    async def process(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, InputAudioFrame):
            await anyio.sleep_forever()
        await self.push(frame, direction)


def factory_with(faulty: type[FrameProcessor]):  # -> TaskFactory
    """The first call gets the faulty processor before its echo; every later call a plain echo."""
    calls = 0

    async def factory(session: Session) -> PipelineTask:
        nonlocal calls
        calls += 1
        middle = [faulty(), AudioEcho()] if calls == 1 else [AudioEcho()]
        return PipelineTask(Pipeline([session.input, *middle, session.output]), PipelineParams(idle_timeout_s=None))

    return factory


async def echo_heard(client: HeadlessClient) -> None:
    """A tone comes back (the silence after it lets the echo end, so the next tone is an onset)."""
    played = await client.play(np.concatenate([tone(700.0, 0.2, 16_000), np.zeros(8_000, np.int16)]), 16_000)
    await client.wait_for_onset(played.start_ns, timeout_s=5)


@pytest.mark.parametrize("faulty", [Raises, Hangs])
async def test_a_faulty_call_does_not_end_or_stall_the_others(faulty: type[FrameProcessor]) -> None:
    async with serving(factory_with(faulty)) as (server, url):
        async with (
            HeadlessClient.connect(url, client_options()) as bad,
            HeadlessClient.connect(url, client_options()) as good,
        ):
            await bad.play(tone(500.0, 0.2, 16_000), 16_000)  # sets the fault off
            with anyio.fail_after(15):
                for _ in range(3):  # the other call goes on answering, turn after turn
                    await echo_heard(good)
            assert len(server.sessions) == 2  # and nothing ended it
        with anyio.fail_after(10):
            await server.wait_sessions(lambda sessions: not sessions)
