"""Telephone calls through Twilio Media Streams, with a phone written from Twilio's documentation."""

from __future__ import annotations

import base64
import json
import xml.etree.ElementTree as ET

import aiohttp
import anyio
import numpy as np
import pytest
from websocket_helpers import BOT_HZ, WORD_S, WORDS, ToneBot, dominant_hz, serving_ws, tone, twilio_call

from voxframe.pipeline import EndFrame, LLMContext, Pipeline, PipelineParams, PipelineTask
from voxframe.processors.aggregators.assistant import AssistantContextAggregator
from voxframe.transports.websocket import WebSocketOptions, WebSocketSession
from voxframe.transports.websocket.twilio import twilio_signature, ulaw_decode, ulaw_encode

pytestmark = pytest.mark.anyio

QUESTION_8K = np.concatenate([tone(440.0, 0.6, 8000), np.zeros(2400, np.int16)])


class Calls:
    """Each call: input, a `ToneBot`, output, and the assistant aggregator keeping the context."""

    def __init__(self, **bot: object) -> None:
        self.bot = bot
        self.bots: list[ToneBot] = []
        self.contexts: list[LLMContext] = []
        self.tasks: list[PipelineTask] = []
        self.sessions: list[WebSocketSession] = []
        self._built = anyio.Event()

    async def wait_built(self) -> None:
        """Until the first call's task is built (its session is running by then)."""
        with anyio.fail_after(10):
            await self._built.wait()

    async def __call__(self, session: WebSocketSession) -> PipelineTask:
        self.sessions.append(session)
        self.bots.append(ToneBot(**self.bot))  # type: ignore[arg-type]
        self.contexts.append(LLMContext(messages=[]))
        assistant = AssistantContextAggregator(self.contexts[-1])
        pipeline = Pipeline([session.input, self.bots[-1], session.output, assistant])
        self.tasks.append(PipelineTask(pipeline, PipelineParams(idle_timeout_s=None)))
        self._built.set()
        return self.tasks[-1]


def test_ulaw_is_g711() -> None:
    samples = np.array([0, -1, 32767, -32768, 1000, -1000], np.int16)
    assert ulaw_encode(samples.tobytes()) == bytes([0xFF, 0x7F, 0x80, 0x00, 0xCE, 0x4E])
    assert ulaw_decode(bytes([0xFF, 0x80, 0x00])) == np.array([0, 32124, -32124], "<i2").tobytes()
    speech = tone(300.0, 0.1, 8000, amplitude=0.3)
    back = np.frombuffer(ulaw_decode(ulaw_encode(speech.tobytes())), "<i2")
    assert np.max(np.abs(back.astype(int) - speech)) <= 0.04 * np.max(np.abs(speech))  # ~2% steps at this level


async def test_the_voice_webhook_answers_with_twiml_that_streams_the_call() -> None:
    async with serving_ws(Calls(), auth_token="s3cret") as (server, url), aiohttp.ClientSession() as http:
        async with http.post(f"{url}/twilio/voice", data={"CallSid": "CA1"}) as refused:
            assert refused.status == 401
        async with http.post(f"{url}/twilio/voice?token=s3cret", data={"CallSid": "CA1"}) as answer:
            assert answer.status == 200 and answer.content_type == "text/xml"
            root = ET.fromstring(await answer.text())
        server.hold("draining")
        async with http.post(f"{url}/twilio/voice?token=s3cret") as busy:
            assert ET.fromstring(await busy.text()).find("Reject").get("reason") == "busy"
    stream = root.find("Connect/Stream")
    assert root.tag == "Response" and stream is not None
    assert stream.get("url") == url.replace("http", "ws", 1) + "/twilio/stream"
    assert [(p.get("name"), p.get("value")) for p in stream.findall("Parameter")] == [("token", "s3cret")]


def test_the_webhook_signature_is_twilios() -> None:
    # The example of Twilio's "Secure webhooks" page.
    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030", "Digits": "1234", "From": "+12349013030"}
    params["To"] = "+18005551212"
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert twilio_signature(url, params.items(), "12345") == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


async def test_with_the_account_token_the_webhook_takes_twilios_signature() -> None:
    options = WebSocketOptions(twilio_auth_token="twilio-secret", public_url="https://bot.example.com")
    form = {"CallSid": "CA1", "From": "+15550100", "To": "+15550101"}
    signed = twilio_signature("https://bot.example.com/twilio/voice", form.items(), "twilio-secret")
    async with serving_ws(Calls(), options) as (_, url), aiohttp.ClientSession() as http:
        async with http.post(f"{url}/twilio/voice", data=form, headers={"X-Twilio-Signature": signed}) as answer:
            assert answer.status == 200
            stream = ET.fromstring(await answer.text()).find("Connect/Stream")
        forged = {**form, "From": "+15550199"}
        async with http.post(f"{url}/twilio/voice", data=forged, headers={"X-Twilio-Signature": signed}) as refused:
            assert refused.status == 403
        async with http.post(f"{url}/twilio/voice", data=form) as unsigned:
            assert unsigned.status == 401
    assert stream is not None and stream.get("url") == "wss://bot.example.com/twilio/stream"


async def test_a_phone_call_hears_the_reply_and_confirms_it_with_marks() -> None:
    calls = Calls(reply_s=1.0)
    async with serving_ws(calls) as (server, url), twilio_call(url) as phone:
        phone.say(QUESTION_8K)
        await phone.got.wait_for(lambda: phone.played_s >= 1.0 and calls.bots[0].stopped)
        await phone.got.wait_for(lambda: len(phone.marks_echoed) == len(phone.got.of("mark")))

    media = phone.got.of("media")
    assert {len(base64.b64decode(m["media"]["payload"])) for m in media} == {160}  # 20 ms of 8 kHz μ-law each
    assert len(media) == 50 and len(phone.got.of("mark")) == 50  # a mark after every chunk
    assert calls.sessions[0].output.marks_played == 50  # each echo arrived before the phone hung up
    assert dominant_hz(bytes(phone.played), 8000) == pytest.approx(BOT_HZ, abs=20)
    assert not phone.got.of("clear") and calls.bots[0].stopped[0].interrupted is False
    assert calls.contexts[0].messages == [{"role": "assistant", "content": "one two"}]
    assert server.sessions_started == 1


async def test_barge_in_clears_twilios_buffer_and_the_context_keeps_only_the_heard_words() -> None:
    calls = Calls(reply_s=4.0)
    # Twilio plays what it gets 0.4 s later (network, its buffer): the wire is ahead of the ear.
    async with serving_ws(calls) as (_, url), twilio_call(url, playout_delay_s=0.4) as phone:
        phone.say(QUESTION_8K)
        await phone.got.wait_for(lambda: phone.played_s >= 1.2)  # "three" has begun, "four" has not
        phone.say(tone(440.0, 0.2, 8000))
        await phone.got.wait_for(lambda: phone.got.of("clear") and calls.bots[0].stopped)
        await phone.got.wait_for(lambda: calls.contexts[0].messages)

    stopped = calls.bots[0].stopped[0]
    heard_s = phone.played_at_clear[0]
    assert stopped.interrupted is True
    # What the marks confirmed, never more than the phone had played when it was told to clear;
    # the audio sent (0.4 s ahead) would have counted "four" as said.
    assert stopped.played_s <= heard_s + 1e-9
    heard_words = [w for i, w in enumerate(WORDS) if i * WORD_S < stopped.played_s]
    assert heard_words == ["one", "two", "three"]
    assert calls.contexts[0].messages == [{"role": "assistant", "content": "one two three", "interrupted": True}]
    assert phone.played_s == heard_s  # nothing played after the clear


async def test_the_caller_hanging_up_ends_the_call() -> None:
    calls = Calls()
    async with serving_ws(calls) as (server, url), twilio_call(url) as phone:
        await calls.wait_built()
        await phone.hang_up()
        with anyio.fail_after(5):
            await server.wait_sessions(lambda sessions: not sessions)
    assert calls.tasks[0].finished and "stop" in (calls.sessions[0].end_reason or "")


async def test_the_bot_ending_closes_the_stream() -> None:
    calls = Calls()
    async with serving_ws(calls) as (server, url), twilio_call(url) as phone:
        await calls.wait_built()
        await calls.tasks[0].queue_frame(EndFrame())
        await phone.got.wait_for(lambda: phone.got.closed)
        with anyio.fail_after(5):
            await server.wait_sessions(lambda sessions: not sessions)
    assert calls.sessions[0].end_reason == "pipeline ended"


async def test_a_stream_needs_the_token_of_the_twiml() -> None:
    calls = Calls()
    async with serving_ws(calls, auth_token="s3cret") as (server, url):
        async with twilio_call(url, token="wrong") as stranger:
            await stranger.got.wait_for(lambda: stranger.got.closed)
        assert stranger.ws.close_code == 1008 and not calls.tasks
        async with twilio_call(url, token="s3cret"):
            await calls.wait_built()
            assert len(server.sessions) == 1
    assert len(calls.tasks) == 1


async def test_bad_messages_are_dropped_and_the_call_goes_on() -> None:
    calls = Calls(reply_s=0.5)
    async with serving_ws(calls) as (_, url), twilio_call(url) as phone:
        await phone.ws.send_bytes(b"\x00\x01")
        await phone.ws.send_str("{")
        await phone.send("media", media={"track": "inbound", "payload": "%%% not base64"})
        await phone.send("something_new")
        phone.say(QUESTION_8K)
        await phone.got.wait_for(lambda: phone.played_s >= 0.5)
        assert calls.sessions[0].protocol_errors == 4  # each answered in order, before the question
    assert not [e for e in phone.got.events if e["event"] not in ("media", "mark")]  # no event channel on a phone
    assert json.loads(json.dumps(phone.got.of("media")[0]))["streamSid"] == phone.stream_sid
