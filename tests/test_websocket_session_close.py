"""A WebSocket call's session goes when it ends, not at the next cycle collection.

As for WebRTC's sessions (`test_webrtc_session_close.py`): with the cycle collector off, calls
ending every way free their `WebSocketSession` (and so its socket and serializer) by reference
counting alone, and the asyncio tasks and threads are back to what they were. (The pipeline's
own workers are cancelled at its end, and anyio keeps a cancelled task's exception in a cycle
with its frame; the session must not hang on them: its output lets go of it.)
"""

from __future__ import annotations

import json
import weakref

import anyio
import pytest
from test_webrtc_session_close import cycle_collector_off, footprint, no_more_than, settle
from websocket_helpers import raw_call, serving_ws, twilio_call

from voxframe.pipeline import EndFrame, Pipeline, PipelineParams, PipelineTask
from voxframe.processors.echo import AudioEcho
from voxframe.transports.webrtc import WebRTCServer
from voxframe.transports.websocket import WebSocketSession

pytestmark = pytest.mark.anyio

ENDINGS = ("caller leaves", "caller says stop", "server hangs up", "pipeline ends", "phone hangs up", "caller leaves")


class Factory:
    """Echo pipelines; keeps only weak references to what it built, and the running task."""

    def __init__(self) -> None:
        self.refs: list[weakref.ref] = []
        self.task: PipelineTask | None = None
        self._built = anyio.Event()

    async def __call__(self, session: WebSocketSession) -> PipelineTask:
        task = PipelineTask(Pipeline([session.input, AudioEcho(), session.output]), PipelineParams(idle_timeout_s=None))
        self.refs = [weakref.ref(session)]
        self.task = task
        self._built.set()
        return task

    async def wait_built(self) -> None:
        with anyio.fail_after(5):
            await self._built.wait()
        self._built = anyio.Event()


async def one_call(server: WebRTCServer, url: str, factory: Factory, ending: str) -> list[weakref.ref]:
    if ending == "phone hangs up":
        async with twilio_call(url) as phone:
            await factory.wait_built()
            await phone.hang_up()
            with anyio.fail_after(5):
                await server.wait_sessions(lambda sessions: not sessions)
    else:
        async with raw_call(url) as caller:
            await caller.got.wait_for(lambda: caller.got.of("session"), timeout_s=5)
            await factory.wait_built()
            if ending == "caller says stop":
                await caller.ws.send_str(json.dumps({"type": "stop"}))
            elif ending == "server hangs up":
                assert server.end_all("test") == 1
            elif ending == "pipeline ends":
                assert factory.task is not None
                await factory.task.queue_frame(EndFrame())
            if ending != "caller leaves":
                await caller.got.wait_for(lambda: caller.got.closed, timeout_s=5)
    with anyio.fail_after(5):
        await server.wait_sessions(lambda sessions: not sessions)
    factory.task = None  # the test's own reference
    return factory.refs


async def test_ended_websocket_calls_free_their_session_and_pipeline_without_the_gc() -> None:
    factory = Factory()
    with cycle_collector_off():
        async with serving_ws(factory) as (server, url):
            warm_up = await one_call(server, url, factory, "caller leaves")
            await settle(lambda: all(r() is None for r in warm_up))
            baseline = footprint()
            for ending in ENDINGS:
                refs = await one_call(server, url, factory, ending)
                factory.refs = []
                await settle(lambda refs=refs: all(r() is None for r in refs) and no_more_than(baseline))
                assert refs[0]() is None, f"after '{ending}' the session is still alive"
                assert no_more_than(baseline), f"after '{ending}': {footprint()} (before: {baseline})"
    assert server.sessions_started == 1 + len(ENDINGS)
