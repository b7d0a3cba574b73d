"""The WebSocket transport in the raw format: a caller speaks PCM, hears the bot, gets its events."""

from __future__ import annotations

import json

import aiohttp
import anyio
import numpy as np
import pytest
from websocket_helpers import BOT_HZ, ToneBot, dominant_hz, raw_call, serving_ws, tone

from voxframe.pipeline import EndFrame, Pipeline, PipelineParams, PipelineTask
from voxframe.transports.websocket import WebSocketSession

pytestmark = pytest.mark.anyio

QUESTION = np.concatenate([tone(440.0, 0.6, 16_000), np.zeros(8_000, np.int16)])


class Bots:
    """A factory of `ToneBot` pipelines that keeps what it built."""

    def __init__(self, **bot: object) -> None:
        self.bot = bot
        self.bots: list[ToneBot] = []
        self.tasks: list[PipelineTask] = []
        self.sessions: list[WebSocketSession] = []

    async def __call__(self, session: WebSocketSession) -> PipelineTask:
        self.sessions.append(session)
        self.bots.append(ToneBot(**self.bot))  # type: ignore[arg-type]
        pipeline = Pipeline([session.input, self.bots[-1], session.output])
        task = PipelineTask(pipeline, PipelineParams(idle_timeout_s=None))
        self.tasks.append(task)
        return task


async def test_a_caller_speaks_and_hears_the_reply_with_its_events() -> None:
    bots = Bots(reply_s=2.0)
    async with serving_ws(bots) as (server, url), raw_call(url) as caller:
        await caller.got.wait_for(lambda: caller.got.of("session"))
        await caller.say(QUESTION)
        await caller.got.wait_for(lambda: caller.got.of("bot-stopped-speaking"))
        with anyio.fail_after(10):
            await server.wait_sessions(lambda sessions: len(sessions) == 1)

    session = caller.got.of("session")[0]
    assert session["sample_rate"] == 16_000 and session["output_sample_rate"] == 16_000
    kinds = [e["type"] for e in caller.got.events]
    assert kinds.index("bot-started-speaking") < kinds.index("bot-stopped-speaking")
    stopped = caller.got.of("bot-stopped-speaking")[0]
    assert stopped["interrupted"] is False and stopped["played_s"] == pytest.approx(2.0, abs=0.02)
    assert len(caller.got.audio) // 2 == pytest.approx(2.0 * 16_000, abs=320)  # the whole reply, in 20 ms chunks
    assert dominant_hz(bytes(caller.got.audio), 16_000) == pytest.approx(BOT_HZ, abs=20)
    assert bots.bots[0].replies == 1 and server.sessions_started == 1


async def test_rates_negotiated_in_the_first_message() -> None:
    bots = Bots(reply_s=1.0)
    async with serving_ws(bots) as (_, url), raw_call(url, query="") as caller:
        await caller.ws.send_str(json.dumps({"type": "start", "sample_rate": 8000, "output_sample_rate": 24000}))
        await caller.got.wait_for(lambda: caller.got.of("session"))
        caller.sample_rate = 8000
        await caller.say(np.concatenate([tone(440.0, 0.6, 8000), np.zeros(4000, np.int16)]))
        await caller.got.wait_for(lambda: caller.got.of("bot-stopped-speaking"))

    assert caller.got.of("session")[0]["output_sample_rate"] == 24_000
    assert len(caller.got.audio) // 2 == pytest.approx(24_000, abs=480)
    assert dominant_hz(bytes(caller.got.audio), 24_000) == pytest.approx(BOT_HZ, abs=20)


async def test_barge_in_clears_the_audio_queued_on_the_caller() -> None:
    bots = Bots(reply_s=4.0)
    async with serving_ws(bots) as (_, url), raw_call(url) as caller:
        await caller.got.wait_for(lambda: caller.got.of("session"))
        await caller.say(QUESTION)
        await caller.got.wait_for(lambda: len(caller.got.audio) >= 16_000)  # 0.5 s of the reply
        await caller.say(tone(440.0, 0.1, 16_000))
        await caller.got.wait_for(lambda: caller.got.of("clear") and caller.got.of("bot-stopped-speaking"))
        audio_at_clear = len(caller.got.audio)
        # Anything more would have come in order before the event that follows the clear.
        await caller.ws.send_str(json.dumps({"type": "ping"}))
        await caller.say(np.zeros(1600, np.int16))

    kinds = [e["type"] for e in caller.got.events]
    assert kinds.index("clear") < kinds.index("bot-stopped-speaking")
    stopped = caller.got.of("bot-stopped-speaking")[0]
    assert stopped["interrupted"] is True and 0.5 <= stopped["played_s"] < 4.0
    assert len(caller.got.audio) == audio_at_clear < 4.0 * 16_000 * 2


async def test_a_burst_of_late_audio_is_heard_whole() -> None:
    bots = Bots(reply_s=0.5)
    async with serving_ws(bots) as (_, url), raw_call(url) as caller:
        await caller.got.wait_for(lambda: caller.got.of("session"))
        burst = QUESTION.astype("<i2").tobytes()
        for start in range(0, len(burst), 640):  # 1.1 s in 20 ms messages, all at once (TCP after a stall)
            await caller.ws.send_bytes(burst[start : start + 640])
        await caller.got.wait_for(lambda: caller.got.of("bot-stopped-speaking"))
    assert bots.sessions[0].input.dropped_frames == 0
    assert len(bots.bots[0].heard) >= len(burst) - 64  # the resampler holds back nothing at the same rate


async def test_bad_messages_get_an_error_and_the_call_goes_on() -> None:
    bots = Bots(reply_s=0.5)
    async with serving_ws(bots) as (_, url), raw_call(url) as caller:
        await caller.got.wait_for(lambda: caller.got.of("session"))
        await caller.ws.send_str("not json")
        await caller.ws.send_str(json.dumps(["no", "type"]))
        await caller.ws.send_bytes(b"\x01\x02\x03")  # not whole samples
        for _ in range(2):  # the second start is one too many
            await caller.ws.send_str(json.dumps({"type": "start", "sample_rate": 16000}))
        await caller.got.wait_for(lambda: len(caller.got.of("error")) == 4)
        await caller.say(QUESTION)
        await caller.got.wait_for(lambda: caller.got.of("bot-stopped-speaking"))

    errors = [e["message"] for e in caller.got.of("error")]
    assert "JSON" in errors[0] and "'type'" in errors[1] and "16-bit" in errors[2] and "already" in errors[3]


@pytest.mark.parametrize("query", ["sample_rate=12345", "sample_rate=loud", "sample_rate=16000&output_sample_rate=0"])
async def test_a_bad_rate_is_refused_before_the_upgrade(query: str) -> None:
    async with serving_ws(Bots()) as (server, url), aiohttp.ClientSession() as http:
        async with http.get(f"{url}/ws?{query}", headers={"Upgrade": "websocket", "Connection": "Upgrade"}) as r:
            assert r.status == 400 and "sample_rate" in (await r.json())["error"]["message"]
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await http.ws_connect(f"{url}/ws?{query}")
    assert server.sessions_started == 0


async def test_the_token_in_the_query_or_the_start_message() -> None:
    bots = Bots()
    async with serving_ws(bots, auth_token="s3cret") as (_, url):
        async with raw_call(url) as refused:
            await refused.ws.send_str(json.dumps({"type": "start", "sample_rate": 16000, "token": "wrong"}))
            await refused.got.wait_for(lambda: refused.got.closed, timeout_s=5)
        assert refused.ws.close_code == 1008 and "unauthorized" in refused.got.of("error")[0]["message"]
        async with raw_call(url, query="sample_rate=16000&token=s3cret") as by_query:
            await by_query.got.wait_for(lambda: by_query.got.of("session"))
        async with raw_call(url, query="") as by_message:
            await by_message.ws.send_str(json.dumps({"type": "start", "sample_rate": 16000, "token": "s3cret"}))
            await by_message.got.wait_for(lambda: by_message.got.of("session"))
        async with raw_call(url, headers={"Authorization": "Bearer s3cret"}) as by_header:
            await by_header.got.wait_for(lambda: by_header.got.of("session"))
    assert len(bots.tasks) == 3


async def test_session_limit_drain_and_end_all_count_websocket_calls() -> None:
    async with serving_ws(Bots(), max_sessions=1) as (server, url), raw_call(url) as first:
        await first.got.wait_for(lambda: first.got.of("session"))
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.WSServerHandshakeError) as full:
                await http.ws_connect(f"{url}/ws?sample_rate=16000")
            assert full.value.status == 503
            assert len(server.sessions) == 1
            assert server.end_all("server_stopping") == 1
            await first.got.wait_for(lambda: first.got.closed)
            with anyio.fail_after(5):
                await server.wait_sessions(lambda sessions: not sessions)
            server.hold("draining")
            with pytest.raises(aiohttp.WSServerHandshakeError) as draining:
                await http.ws_connect(f"{url}/ws?sample_rate=16000")
            assert draining.value.status == 503 and draining.value.headers["Retry-After"] == "5"


async def test_the_bot_ending_closes_the_socket_and_the_caller_closing_ends_the_call() -> None:
    bots = Bots()
    async with serving_ws(bots) as (server, url):
        async with raw_call(url) as caller:
            await caller.got.wait_for(lambda: caller.got.of("session"))
            await bots.tasks[0].queue_frame(EndFrame())
            await caller.got.wait_for(lambda: caller.got.closed)
        async with raw_call(url) as leaving:
            await leaving.got.wait_for(lambda: leaving.got.of("session"))
            await leaving.ws.close()
            with anyio.fail_after(5):
                await server.wait_sessions(lambda sessions: not sessions)
    assert server.sessions_started == 2 and all(task.finished for task in bots.tasks)


async def test_the_page_is_served_beside_the_socket() -> None:
    async with serving_ws(Bots()) as (_, url), aiohttp.ClientSession() as http:
        async with http.get(f"{url}/ws") as page:
            assert page.status == 200 and "ws.js" in await page.text()
        async with http.get(f"{url}/ws.js") as script:
            assert script.status == 200 and "WebSocket" in await script.text()
