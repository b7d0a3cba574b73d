"""A call's resources go when it ends, not at the next cycle collection.

With the cycle collector off, five calls end in turn (the caller leaves, hangs up over
signalling, the server hangs up, the pipeline ends), and each leaves nothing: its `Session`
and both peer connections are freed by reference counting alone, and the threads (FFmpeg's
Opus encoder and resampler workers, which `threading` does not see) and asyncio tasks are
back to what they were before.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import anyio
import pytest
from aiortc import RTCPeerConnection
from test_webrtc_signalling import OFFER, error_code, make_offer, request
from webrtc_helpers import client_options, echo_factory, serving, tone

from voxframe.pipeline import EndFrame, PipelineTask
from voxframe.transports.webrtc import HeadlessClient, Session, WebRTCServer
from voxframe.transports.webrtc._release import release_peer_connection

pytestmark = pytest.mark.anyio

#: How the calls end, in order.
ENDINGS = ("caller leaves", "caller hangs up", "server hangs up", "pipeline ends", "caller leaves")
#: Upper bound on a call's resources going once it has ended (they normally go at once).
RELEASE_TIMEOUT_S = 5.0


@contextmanager
def cycle_collector_off() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def os_threads() -> int:
    """Threads of this process, native ones included (FFmpeg's workers are not in `threading`)."""
    return len(os.listdir("/proc/self/task"))


def live_tasks() -> int:
    return sum(1 for task in asyncio.all_tasks() if not task.done())


def footprint() -> dict[str, int]:
    return {"os_threads": os_threads(), "python_threads": threading.active_count(), "tasks": live_tasks()}


def no_more_than(baseline: dict[str, int]) -> bool:
    """Nothing more is running than at `baseline` (fewer: something older ended meanwhile)."""
    return all(count <= baseline[key] for key, count in footprint().items())


def peer_connections() -> int:
    """Peer connections in memory, freed or not (the collector is off, so garbage counts too).

    `type(o)`, not `isinstance`: a dead `weakref.proxy` among the objects raises on `isinstance`."""
    return sum(1 for o in gc.get_objects() if issubclass(type(o), RTCPeerConnection))


async def settle(done: Callable[[], bool]) -> None:
    """Wait (bounded) until `done()`. A thread's exit and a session task's return have no
    event to wait on, so this polls; the caller asserts what it still finds afterwards."""
    with anyio.move_on_after(RELEASE_TIMEOUT_S):
        while not done():  # noqa: ASYNC110 (no event exists for "a thread exited")
            await anyio.sleep(0.01)


async def one_call(server: WebRTCServer, url: str, tasks: dict[str, PipelineTask], ending: str) -> list[weakref.ref]:
    """A call that echoes once and ends as `ending` says; weak references to what it used."""
    async with HeadlessClient.connect(url, client_options()) as client:
        played = await client.play(tone(700.0, 0.1, 16_000), 16_000)
        await client.wait_for_onset(played.start_ns, timeout_s=5)
        session_id = client.session_id
        assert session_id is not None
        session = server.sessions[session_id]
        refs = [weakref.ref(session), weakref.ref(session.pc), weakref.ref(client), weakref.ref(client.pc)]
        del session  # the test must hold nothing itself
        if ending == "caller hangs up":
            status, _ = await request("DELETE", f"{url}/api/voice/sessions/{session_id}")
            assert status == 200
        elif ending == "server hangs up":
            assert server.end_all("test") == 1
        elif ending == "pipeline ends":
            await tasks[session_id].queue_frame(EndFrame())
        if ending != "caller leaves":
            with anyio.fail_after(5):
                await server.wait_sessions(lambda sessions: session_id not in sessions)
    del client
    with anyio.fail_after(5):
        await server.wait_sessions(lambda sessions: not sessions)
    return refs


async def test_ended_calls_free_their_session_peer_connection_threads_and_tasks_without_the_gc() -> None:
    tasks: dict[str, PipelineTask] = {}

    async def factory(session: Session) -> PipelineTask:
        tasks[session.id] = task = await echo_factory(session)
        return task

    with cycle_collector_off():
        async with serving(factory) as (server, url):
            # A first call starts what is shared and kept between calls (the loop's default
            # executor, used by aiohttp's resolver), so the baseline is taken after it.
            warm_up = await one_call(server, url, tasks, "caller leaves")
            tasks.clear()
            await settle(lambda: all(r() is None for r in warm_up))
            baseline = footprint()
            for ending in ENDINGS:
                refs = await one_call(server, url, tasks, ending)
                tasks.clear()  # the test's own reference to the pipeline
                await settle(lambda refs=refs: all(r() is None for r in refs) and no_more_than(baseline))
                names = ["session", "session's peer connection", "client", "client's peer connection"]
                alive = [name for name, ref in zip(names, refs, strict=True) if ref() is not None]
                assert alive == [], f"after '{ending}' still alive: {alive}"
                assert no_more_than(baseline), f"after '{ending}': {footprint()} (before: {baseline})"
            assert server.sessions_started == 1 + len(ENDINGS)


async def test_a_refused_offer_leaves_no_peer_connection_without_the_gc() -> None:
    with cycle_collector_off():
        async with serving() as (server, url):
            before = peer_connections()
            pc, sdp, _ = await make_offer(audio=False)
            status, payload = await request("POST", url + OFFER, body={"sdp": sdp, "type": "offer"})
            assert (status, error_code(payload)) == (400, "no_audio")
            await pc.close()
            release_peer_connection(pc)  # the test's own offering side goes the same way
            del pc
            assert server.sessions == {}
            assert peer_connections() == before
