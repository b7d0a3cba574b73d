"""A whole conversation in-process: scripted user -> Deepgram -> OpenAI -> Cartesia -> output.

Every provider is the real client against its fake on 127.0.0.1; the output is the real
playout (`MemoryOutputTransport`). Afterwards the context holds exactly the turns that happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import pytest

from tests.pipeline_helpers import quiet_params
from tests.providers_helpers import ScriptedUser, noise_burst, pink_noise, silence, speech
from tests.support import Recorder, running
from voxframe.fakes import (
    ZERO,
    CartesiaFake,
    CartesiaFakeOptions,
    DeepgramFake,
    DeepgramFakeOptions,
    FakeProviders,
    OpenAIFake,
    OpenAIFakeOptions,
    Reply,
)
from voxframe.pipeline import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    InterruptionFrame,
    LLMContext,
    Pipeline,
    PipelineTask,
    Tool,
    TTSStoppedFrame,
    UserStoppedSpeakingFrame,
)
from voxframe.processors.aggregators import context_aggregators
from voxframe.processors.llm.openai import OpenAILLM, OpenAIOptions
from voxframe.processors.stt.deepgram import DeepgramOptions, DeepgramSTT
from voxframe.processors.tts.cartesia import CartesiaOptions, CartesiaTTS
from voxframe.processors.turns import TurnController, TurnOptions
from voxframe.transports import MemoryOutputTransport

pytestmark = pytest.mark.anyio

SYSTEM = {"role": "system", "content": "You are a helpful voice assistant."}


@dataclass
class Bot:
    task: PipelineTask
    user: ScriptedUser
    output: MemoryOutputTransport
    tail: Recorder
    context: LLMContext
    fakes: FakeProviders

    def stopped(self, turn: int) -> list[BotStoppedSpeakingFrame]:
        return [f for f in self.tail.of(BotStoppedSpeakingFrame) if f.turn == turn]

    async def wait_stopped(self, turn: int) -> BotStoppedSpeakingFrame:
        await self.tail.wait_for(lambda: bool(self.stopped(turn)))
        return self.stopped(turn)[0]


@asynccontextmanager
async def conversation(
    transcripts: list[str],
    replies: list[Any],
    tools: list[Tool],
    *,
    realtime_factor: float = float("inf"),
    preemptive: bool = False,
) -> AsyncIterator[Bot]:
    fakes = FakeProviders(
        DeepgramFake(DeepgramFakeOptions(transcripts=transcripts, final_latency=ZERO)),
        OpenAIFake(OpenAIFakeOptions(replies=replies, ttft=ZERO, token_interval_s=0.0)),
        CartesiaFake(CartesiaFakeOptions(ttfa=ZERO, realtime_factor=realtime_factor, chars_per_second=25.0)),
    )
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(fakes)
        context = LLMContext(messages=[dict(SYSTEM)], tools=tools)
        user_agg, assistant_agg = context_aggregators(context)
        user, output, tail = ScriptedUser(), MemoryOutputTransport(), Recorder("tail")
        processors = [
            user,
            DeepgramSTT(DeepgramOptions(url=fakes.deepgram.url, api_key="k", endpointing_ms=None)),
            TurnController(TurnOptions(preemptive=preemptive)),
            user_agg,
            OpenAILLM(OpenAIOptions(base_url=fakes.openai.url, api_key="k")),
            CartesiaTTS(CartesiaOptions(url=fakes.cartesia.url, api_key="k")),
            output,
            assistant_agg,
            tail,
        ]
        task = PipelineTask(Pipeline(processors), quiet_params())
        await stack.enter_async_context(running(task))
        yield Bot(task, user, output, tail, context, fakes)


async def test_two_turns_with_a_tool_call_leave_exactly_those_turns_in_the_context() -> None:
    calls: list[dict[str, Any]] = []

    async def weather(args: dict[str, Any]) -> dict[str, Any]:
        calls.append(args)
        return {"city": args["city"], "sky": "sunny"}

    tools = [Tool("weather", "Current weather in a city", {"type": "object", "properties": {}}, weather)]
    replies = [Reply.calls(("weather", {"city": "Paris"})), "It is sunny in Paris.", "Goodbye!"]
    async with conversation(["What's the weather in Paris?", "Thanks, bye."], replies, tools) as bot:
        await bot.user.say(speech(1.0))
        first = await bot.wait_stopped(1)
        await bot.user.say(speech(0.6))
        second = await bot.wait_stopped(2)
        finalizes = bot.fakes.deepgram.connections[0].json_received("Finalize")
    assert not first.interrupted and not second.interrupted
    assert calls == [{"city": "Paris"}]
    messages = bot.context.messages
    call_id = messages[2]["tool_calls"][0]["id"]
    assert messages == [
        SYSTEM,
        {"role": "user", "content": "What's the weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": call_id, "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": '{"city": "Paris", "sky": "sunny"}'},
        {"role": "assistant", "content": "It is sunny in Paris."},
        {"role": "user", "content": "Thanks, bye."},
        {"role": "assistant", "content": "Goodbye!"},
    ]
    assert len(finalizes) == 2  # one per end of speech
    played_s = len(bot.output.audio(1)) / 2 / 24000
    assert played_s == pytest.approx(len("It is sunny in Paris. ") / 25.0, abs=0.021)
    for turn in (1, 2):  # every stage of each reply is on its waterfall, in order
        points = bot.task.tracer.turn(turn)
        stages = ("stt_final", "llm_first_token", "tts_first_text", "tts_first_audio", "first_audio_out")
        assert [points[p] for p in stages] == sorted(points[p] for p in stages)


async def test_a_barge_in_keeps_only_what_was_heard_and_cancels_synthesis() -> None:
    long_reply = "Let me tell you a very long story about a duck who wanted to fly across the whole ocean."
    replies = [long_reply, "Sure, what is it?"]
    async with conversation(["Tell me a story.", "Wait, a question."], replies, [], realtime_factor=2.0) as bot:
        await bot.user.say(speech(0.8))
        await bot.tail.wait_for(lambda: bool(bot.tail.of(BotStartedSpeakingFrame)))
        await anyio.sleep(1.0)  # the user listens to a second of the story, then speaks over it
        await bot.user.say(speech(0.6))
        cut = await bot.wait_stopped(1)
        await bot.wait_stopped(2)
        await bot.fakes.cartesia.wait_for(lambda: any(c["cancelled"] for c in bot.fakes.cartesia.contexts.values()))
    assert cut.interrupted and 0.5 <= cut.played_s < len(long_reply) / 25.0 - 0.5  # cut mid-story
    assert bot.fakes.openai.connections[0].ended == "completed"
    story = bot.context.messages[2]
    assert story["interrupted"] is True
    assert long_reply.startswith(story["content"]) and len(story["content"]) < len(long_reply)
    heard_chars = len(story["content"]) + 1
    assert heard_chars / 25.0 == pytest.approx(cut.played_s, abs=0.5)  # words begun before the cut
    assert [m["content"] for m in bot.context.messages[3:]] == ["Wait, a question.", "Sure, what is it?"]
    assert bot.task.turns.stale_upto == 1


@pytest.mark.parametrize("noise", ["pink noise", "a 150 ms burst"])
async def test_noise_over_the_answer_does_not_stop_the_bot(noise: str) -> None:
    """No VAD speech, and the STT hears no words in it: nothing interrupts the reply."""
    story = "Let me tell you a story about a duck who wanted to fly."
    async with conversation(["Tell me a story."], [story], [], realtime_factor=2.0) as bot:
        await bot.user.say(speech(0.8))
        await bot.tail.wait_for(lambda: bool(bot.tail.of(BotStartedSpeakingFrame)))
        await anyio.sleep(0.5)  # half a second into the story, a sound in the room
        await bot.user.audio(pink_noise(1.4) if noise == "pink noise" else noise_burst(0.15))
        await bot.user.audio(silence(0.6))
        end = await bot.wait_stopped(1)
    assert not end.interrupted and bot.tail.of(InterruptionFrame) == []
    assert [m["content"] for m in bot.context.messages[1:]] == ["Tell me a story.", story]
    assert bot.task.turns.current == 1


async def test_a_reply_prepared_at_a_pause_plays_at_the_stop_or_is_dropped_unheard_when_the_user_goes_on() -> None:
    replies = ["Great, glad to hear it.", "Great, glad to hear it.", "It is nine."]
    # The fake answers each Finalize at once: "Okay," at the pause, the rest at the stop.
    transcripts = ["Okay,", "that sounds good.", "What time is it?"]
    async with conversation(transcripts, replies, [], preemptive=True) as bot:
        await bot.user.start()
        await bot.user.pause(speech(0.4))
        # The reply to "Okay," is synthesized in full, and held: the user has not stopped.
        await bot.tail.wait_for(lambda: any(f.turn == 1 for f in bot.tail.of(TTSStoppedFrame)))
        assert bot.tail.of(BotStartedSpeakingFrame) == []
        await bot.user.resume(speech(0.4))
        await bot.wait_stopped(2)
        await bot.user.start()
        await bot.user.pause(speech(0.5))
        await bot.tail.wait_for(lambda: any(f.turn == 3 for f in bot.tail.of(TTSStoppedFrame)))
        await bot.user.audio(silence(0.3))
        await bot.user.push(UserStoppedSpeakingFrame(speech_end_ns=bot.user.clock.now_ns()))
        third = await bot.wait_stopped(3)
        requests = [c.received[0]["messages"][-1]["content"] for c in bot.fakes.openai.connections]
    assert [f.turn for f in bot.tail.of(BotStartedSpeakingFrame)] == [2, 3]  # turn 1 was never heard
    assert bot.output.audio(1) == b"" and not third.interrupted
    assert requests == ["Okay,", "Okay, that sounds good.", "What time is it?"]
    assert bot.context.messages == [
        SYSTEM,
        {"role": "user", "content": "Okay, that sounds good."},
        {"role": "assistant", "content": "Great, glad to hear it."},
        {"role": "user", "content": "What time is it?"},
        {"role": "assistant", "content": "It is nine."},
    ]


def open_sockets() -> int:
    fds = os.listdir("/proc/self/fd")
    count = 0
    for fd in fds:
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count


@pytest.mark.parametrize("ending", ["end", "cancel"])
async def test_nothing_is_left_after_the_session(ending: str) -> None:
    tasks_before, sockets_before = asyncio.all_tasks(), open_sockets()
    async with conversation(["Hello."], ["Hi there!"], []) as bot:
        await bot.user.say(speech(0.5))
        await bot.wait_stopped(1)
        if ending == "end":
            await bot.task.stop_when_done()
        else:
            await bot.task.cancel()
    assert bot.task.finished and bot.task.error is None
    deepgram, openai, cartesia = (f.connections for f in (bot.fakes.deepgram, bot.fakes.openai, bot.fakes.cartesia))
    assert [c.ended for c in deepgram] == ["closed 1000" if ending == "end" else "client closed"]
    assert [c.ended for c in openai] == ["completed"] and [c.ended for c in cartesia] == ["client closed"]
    assert asyncio.all_tasks() == tasks_before
    assert open_sockets() == sockets_before
