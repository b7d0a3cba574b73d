"""Sessions: limits, callers who vanish, and nothing left behind when calls come and go."""

from __future__ import annotations

import gc
import json
import sys
import time

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream
from test_webrtc_signalling import OFFER, error_code, make_offer, request
from webrtc_helpers import aiortc_state, client_options, server_options, serving, tone

from voxframe.pipeline import EndFrame, PipelineTask
from voxframe.transports.webrtc import HeadlessClient, Session

pytestmark = pytest.mark.anyio


async def echo_once(client: HeadlessClient) -> None:
    played = await client.play(tone(700.0, 0.1, 16_000), 16_000)
    await client.wait_for_onset(played.start_ns, timeout_s=5)


async def test_session_limit_answers_503_and_frees_up_when_a_call_ends() -> None:
    async with serving(options=server_options(max_sessions=1)) as (server, url):
        async with HeadlessClient.connect(url, client_options()) as first:
            pc, sdp, _ = await make_offer()
            status, payload = await request("POST", url + OFFER, body={"sdp": sdp, "type": "offer"})
            await pc.close()
            assert (status, error_code(payload)) == (503, "session_limit")
            await echo_once(first)
        await server.wait_sessions(lambda sessions: not sessions)
        async with HeadlessClient.connect(url, client_options()) as second:
            await echo_once(second)


async def first_line(process: Process) -> str:
    """The first line a child process prints (bounded by the caller's deadline)."""
    assert process.stdout is not None
    text = ""
    async for piece in TextReceiveStream(process.stdout):
        text += piece
        if "\n" in text:
            return text.split("\n", 1)[0]
    raise AssertionError(f"the process ended without a full line: {text!r}")


async def test_a_caller_that_vanishes_is_detected_and_other_calls_carry_on() -> None:
    options = server_options(media_timeout_s=1.0)
    async with serving(options=options) as (server, url), HeadlessClient.connect(url, client_options()) as staying:
        command = [sys.executable, "-m", "voxframe.transports.webrtc.call", url, "--loopback", "--seconds", "60"]
        async with await anyio.open_process(command) as process:
            try:
                with anyio.fail_after(20):
                    connected = json.loads(await first_line(process))
                assert connected["type"] == "connected"
                gone = server.sessions[connected["session_id"]]
                await gone.wait_connected(timeout_s=5)
            finally:
                process.kill()  # no goodbye: no DTLS close, no hang-up request
                await process.wait()
        killed_at = time.monotonic()
        with anyio.fail_after(5):
            await server.wait_sessions(lambda sessions: gone.id not in sessions)
        detected_s = time.monotonic() - killed_at
        assert gone.end_reason == "no media for 1 s"
        assert detected_s < 1.0 + 1.0  # the timeout, plus the watchdog's polling and slack
        await echo_once(staying)
        assert list(server.sessions) == [staying.session_id]


async def test_the_session_ends_when_its_pipeline_ends() -> None:
    tasks: list[PipelineTask] = []

    async def factory(session: Session) -> PipelineTask:
        from webrtc_helpers import echo_factory

        task = await echo_factory(session)
        tasks.append(task)
        return task

    async with serving(factory) as (server, url), HeadlessClient.connect(url, client_options()) as client:
        await echo_once(client)
        session = server.sessions[client.session_id]
        await tasks[0].queue_frame(EndFrame())
        with anyio.fail_after(5):
            await server.wait_sessions(lambda sessions: not sessions)
        assert session.end_reason == "pipeline ended"
        assert session.pc.connectionState == "closed"


async def test_an_offer_that_never_connects_is_released_after_the_connect_timeout() -> None:
    options = server_options()
    options.session.connect_timeout_s = 0.5
    async with serving(options=options) as (server, url):
        pc, sdp, _ = await make_offer()
        status, answer = await request("POST", url + OFFER, body={"sdp": sdp, "type": "offer"})
        await pc.close()  # the caller never applies the answer
        assert status == 200
        session = server.sessions[answer["session_id"]]
        with anyio.fail_after(5):
            await server.wait_sessions(lambda sessions: not sessions)
        assert session.end_reason == "not connected within 0.5 s"


async def test_twenty_calls_come_and_go_and_leave_nothing_behind() -> None:
    async with serving() as (server, url):
        async with HeadlessClient.connect(url, client_options()) as client:  # warm up shared pools
            await echo_once(client)
        del client  # only what the server and aiortc hold should remain
        await server.wait_sessions(lambda sessions: not sessions)
        gc.collect()
        baseline = aiortc_state()

        async def call() -> None:
            async with HeadlessClient.connect(url, client_options()) as client:
                await echo_once(client)

        with anyio.fail_after(120):
            for _ in range(5):
                async with anyio.create_task_group() as tg:
                    for _ in range(4):
                        tg.start_soon(call)
            await server.wait_sessions(lambda sessions: not sessions)
        assert server.sessions_started == 21
        gc.collect()
        after = aiortc_state()
    assert after == baseline  # no task, peer connection or track more than before the 20 calls
    assert after["decoder_threads"] == 0
