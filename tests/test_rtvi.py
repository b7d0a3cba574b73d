"""RTVI both ways, without a transport: what a client is told, and what its messages become."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from tests.support import Recorder, running
from voxframe.pipeline import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    ClientMessageFrame,
    ClientResponseFrame,
    EndFrame,
    Frame,
    FrameProcessor,
    LLMContext,
    LLMContextFrame,
    StartFrame,
    Tracer,
    TransportMessageFrame,
    TTSWordsFrame,
    UserTextFrame,
    VirtualClock,
    WordTiming,
)
from voxframe.pipeline.clock import NS_PER_S
from voxframe.processors.aggregators.user import UserContextAggregator
from voxframe.processors.turns import TurnController
from voxframe.transports.rtvi import MAX_MESSAGE_CHARS, PROTOCOL_VERSION, RTVIEndpoint

pytestmark = pytest.mark.anyio

SRC = FrameProcessor(name="src")


class Client:
    """The client's side of one endpoint: what it was sent, and a way to send."""

    def __init__(self, clock: VirtualClock | None = None) -> None:
        self.sent: list[dict[str, Any]] = []
        self.delivered: list[Frame] = []
        self.endpoint = RTVIEndpoint(self.sent.append, Tracer(clock=clock or VirtualClock()), self.delivered.append)

    def say(self, kind: str, data: Any = None, message_id: str = "c1") -> None:
        self.endpoint.receive(json.dumps({"label": "rtvi-ai", "type": kind, "id": message_id, "data": data}))

    def tell(self, *frames: Frame, t_ns: int = 0) -> None:
        for frame in frames:
            self.endpoint.on_frame(SRC, frame, "down", t_ns)  # type: ignore[arg-type]

    def types(self) -> list[str]:
        return [m["type"] for m in self.sent]


def test_bot_ready_answers_client_ready_once_the_pipeline_runs() -> None:
    client = Client()
    client.say("client-ready", {"version": "2.1.0", "about": {"library": "@pipecat-ai/client-js"}}, "r1")
    assert client.sent == []  # no VAD listens yet: "ready" would lose the first words
    client.tell(StartFrame())
    client.tell(StartFrame())
    assert client.types() == ["bot-ready"]
    ready = client.sent[0]
    assert ready["label"] == "rtvi-ai" and ready["id"] == "r1" and ready["data"]["version"] == PROTOCOL_VERSION


def test_a_legacy_client_is_answered_in_its_version_and_an_unknown_one_warned() -> None:
    legacy, odd = Client(), Client()
    for client, version in ((legacy, "1.4.0"), (odd, "9.0")):
        client.tell(StartFrame())
        client.say("client-ready", {"version": version}, "r")
    assert legacy.sent[0]["data"]["version"] == "1.4.0"
    assert odd.types() == ["error-response", "bot-ready"] and "9.0" in odd.sent[0]["data"]["error"]


def test_text_and_client_messages_become_frames_and_bad_ones_get_errors() -> None:
    client = Client()
    client.say("send-text", {"content": "hello there", "options": {"run_immediately": True}})
    client.say("client-message", {"t": "ping", "d": {"n": 1}}, "m7")
    client.say("disconnect-bot", {})
    assert [type(f) for f in client.delivered] == [UserTextFrame, ClientMessageFrame, EndFrame]
    text, message = client.delivered[0], client.delivered[1]
    assert isinstance(text, UserTextFrame) and text.text == "hello there"
    assert isinstance(message, ClientMessageFrame)
    assert (message.msg_id, message.message_type, message.data) == ("m7", "ping", {"n": 1})

    client.say("send-text", {"content": "  "}, "e1")
    client.say("client-message", {"d": 1}, "e2")
    client.say("fly-to-the-moon", None, "e3")
    client.endpoint.receive("ping: 1733150000")  # small-webrtc's keep-alive: not RTVI, ignored
    client.endpoint.receive(json.dumps({"type": "signalling", "message": {"type": "trackStatus"}}))
    client.endpoint.receive("x" * (MAX_MESSAGE_CHARS + 1))
    assert len(client.delivered) == 3
    assert [(m["type"], m["id"]) for m in client.sent[:3]] == [("error-response", f"e{i}") for i in (1, 2, 3)]
    assert client.sent[3]["type"] == "error" and len(client.sent) == 4


def test_responses_and_app_messages_go_to_the_client() -> None:
    client = Client()
    client.tell(
        ClientResponseFrame(msg_id="m7", message_type="ping", data={"pong": 1}),
        ClientResponseFrame(msg_id="m8", message_type="ping", error="no such thing"),
        TransportMessageFrame(message={"kind": "score", "value": 3}),
    )
    assert [(m["type"], m["id"], m["data"]) for m in client.sent[:2]] == [
        ("server-response", "m7", {"t": "ping", "d": {"pong": 1}}),
        ("error-response", "m8", {"error": "no such thing"}),
    ]
    assert client.sent[2]["type"] == "server-message" and client.sent[2]["data"] == {"kind": "score", "value": 3}


async def test_reply_words_are_sent_when_their_audio_plays() -> None:
    clock = VirtualClock()
    client = Client(clock)
    words = [WordTiming("Paris", 0.0, 0.4), WordTiming("is", 0.5, 0.6), WordTiming("lovely", 0.8, 1.2)]

    def said() -> list[str]:
        return [m["data"]["text"] for m in client.sent if m["type"] == "bot-tts-text"]

    async with anyio.create_task_group() as tg:
        tg.start_soon(client.endpoint.run)
        await anyio.lowlevel.checkpoint()
        client.tell(TTSWordsFrame(words=words, turn=1))  # synthesized before a sample was heard
        await clock.advance(NS_PER_S)
        assert said() == []
        client.tell(BotStartedSpeakingFrame(turn=1), t_ns=clock.now_ns())
        await clock.advance(NS_PER_S // 10)
        assert said() == ["Paris"]
        await clock.advance(NS_PER_S // 2)
        assert said() == ["Paris", "is"]
        client.tell(BotStoppedSpeakingFrame(turn=1, interrupted=True, played_s=0.6), t_ns=clock.now_ns())
        await clock.advance(NS_PER_S)
        assert said() == ["Paris", "is"]  # the cut-off word was never heard
        client.endpoint.close()
    outputs = [m["data"] for m in client.sent if m["type"] == "bot-output"]
    assert outputs[0] == {"text": "Paris", "aggregated_by": "word", "turn": 1, "will_be_spoken": True,
                          "spoken_status": "completed"}  # fmt: skip
    assert len(outputs) == 2


async def test_typed_text_is_a_user_turn() -> None:
    context = LLMContext()
    tail = Recorder("tail")
    async with running([TurnController(), UserContextAggregator(context), tail]) as task:
        await task.queue_frame(UserTextFrame(text=" what time is it "))
        await tail.wait_for(lambda: tail.of(LLMContextFrame), timeout_s=5)
    assert context.messages[-1] == {"role": "user", "content": "what time is it"}
    assert [f.turn for f in tail.of(LLMContextFrame)] == [1]
