"""A provider that fails in the middle of a call, as the caller over WebRTC experiences it.

A real server runs the cloud pipeline (Silero VAD, the Deepgram, OpenAI and Cartesia clients)
against the fakes on 127.0.0.1; a headless caller speaks a real recorded question. The fault
comes mid-utterance: the user is still talking when the STT connection fails.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest
from webrtc_helpers import client_options, serving

from tests.example_helpers import QUESTION_WAV, words
from voxframe.fakes import (
    ZERO,
    CartesiaFake,
    CartesiaFakeOptions,
    DeepgramFake,
    DeepgramFakeOptions,
    FakeProviders,
    Fault,
    OpenAIFake,
    OpenAIFakeOptions,
)
from voxframe.pipeline import LLMContext, Pipeline, PipelineParams, PipelineTask
from voxframe.processors.aggregators import context_aggregators
from voxframe.processors.llm import LLMOptions
from voxframe.processors.llm.openai import OpenAILLM, OpenAIOptions
from voxframe.processors.streaming.websocket import StreamOptions
from voxframe.processors.stt.deepgram import DeepgramOptions, DeepgramSTT
from voxframe.processors.tts.cartesia import CartesiaOptions, CartesiaTTS
from voxframe.processors.turns import TurnController, TurnOptions
from voxframe.processors.vad import VADOptions, VADParams, VADProcessor
from voxframe.transports.webrtc import HeadlessClient, Session

pytestmark = pytest.mark.anyio

QUESTION = "What time is it?"


def cloud_factory(fakes: FakeProviders) -> Callable[[Session], Any]:
    async def factory(session: Session) -> PipelineTask:
        context = LLMContext(messages=[{"role": "system", "content": "You are a voice assistant."}])
        user, assistant = context_aggregators(context)
        # A stalled stream is replaced after 1 s of silence owed an answer (5 s as shipped).
        stream = StreamOptions(keepalive_interval_s=5.0, liveness_timeout_s=1.0)
        pipeline = Pipeline(
            [
                session.input,
                VADProcessor(VADOptions(params=VADParams(stop_s=0.5))),
                DeepgramSTT(DeepgramOptions(url=fakes.deepgram.url, api_key="k", stream=stream)),
                TurnController(TurnOptions()),
                user,
                OpenAILLM(OpenAIOptions(base_url=fakes.openai.url, api_key="k")),
                CartesiaTTS(CartesiaOptions(url=fakes.cartesia.url, api_key="k")),
                session.output,
                assistant,
            ]
        )
        return PipelineTask(pipeline, PipelineParams(idle_timeout_s=None))

    return factory


def said(client: HeadlessClient) -> str:
    """What the bot said to the caller (the LLM's text and any spoken apology), joined."""
    return "".join(e["data"]["text"] for e in client.events if e.get("type") == "bot-llm-text")


@pytest.mark.parametrize(
    "fault",
    [
        Fault.mid_utterance(0.5, drop=True),
        Fault.mid_utterance(0.5, close_code=1011),
        Fault.mid_utterance(0.5, stall=True),
    ],
    ids=["drop", "close-1011", "stall"],
)
async def test_the_users_words_survive_an_stt_fault_mid_utterance(fault: Fault) -> None:
    fakes = FakeProviders(
        DeepgramFake(DeepgramFakeOptions(transcripts=[QUESTION], final_latency=ZERO)),
        OpenAIFake(OpenAIFakeOptions(ttft=ZERO, token_interval_s=0.0)),
        CartesiaFake(CartesiaFakeOptions(ttfa=ZERO, realtime_factor=float("inf"))),
    )
    async with fakes:
        fakes.deepgram.faults.append(fault)
        server = serving(cloud_factory(fakes))
        async with server as (_server, url), HeadlessClient.connect(url, client_options()) as caller:
            with anyio.fail_after(30):
                await caller.wait_for_event("bot-ready", timeout_s=10)
                await caller.play(QUESTION_WAV)
                final = await caller.wait_for_event("user-transcription", timeout_s=15, final=True)
                await caller.wait_for_event("bot-llm-stopped", timeout_s=10)
                await caller.wait_for_event("bot-stopped-speaking", timeout_s=10)
        first = fakes.deepgram.connections[0]
    assert first.ended in ("dropped", "closed 1011", "stalled")
    assert len(fakes.deepgram.connections) >= 2  # reconnected, and the utterance replayed
    assert words(final["data"]["text"]) == words(QUESTION)
    assert words(said(caller)) == words(f"You said: {QUESTION}")
    assert not [e for e in caller.events if e.get("type") == "error" and e["data"].get("fatal")]


async def call(fakes: FakeProviders) -> tuple[HeadlessClient, dict[str, Any]]:
    """One call: the caller asks the question and hears the bot's turn out; its last event."""
    server = serving(cloud_factory(fakes))
    async with server as (_server, url), HeadlessClient.connect(url, client_options()) as caller:
        with anyio.fail_after(30):
            await caller.wait_for_event("bot-ready", timeout_s=10)
            await caller.play(QUESTION_WAV)
            stopped = await caller.wait_for_event("bot-stopped-speaking", timeout_s=20)
    return caller, stopped


def cloud_fakes() -> FakeProviders:
    return FakeProviders(
        DeepgramFake(DeepgramFakeOptions(transcripts=[QUESTION, QUESTION], final_latency=ZERO)),
        OpenAIFake(OpenAIFakeOptions(ttft=ZERO, token_interval_s=0.01)),
        CartesiaFake(CartesiaFakeOptions(ttfa=ZERO, realtime_factor=float("inf"))),
    )


@pytest.mark.parametrize(
    ("fault", "heard"),
    [
        (Fault.reject(429, retry_after_s=0.2), f"You said: {QUESTION}"),  # one short retry
        (Fault.reject(500), LLMOptions().apology),
        (Fault.drop_connection(after_sent=3), f"You said… {LLMOptions().apology}"),
        (Fault(after_sent=3, reason="overloaded"), f"You said… {LLMOptions().apology}"),  # in-stream error
        (Fault.stall_after(after_sent=3), f"You said… {LLMOptions().apology}"),
    ],
    ids=["429", "500", "drop-mid-reply", "error-mid-reply", "stall-mid-reply"],
)
async def test_an_llm_fault_is_retried_or_apologised_for_aloud(fault: Fault, heard: str) -> None:
    async with cloud_fakes() as fakes:
        fakes.openai.faults.append(fault)
        caller, stopped = await call(fakes)
    assert words(said(caller)) == words(heard)
    assert not stopped["data"]["interrupted"] and stopped["data"]["played_s"] > 0.5  # heard, not cut
    assert not [e for e in caller.events if e.get("type") == "error" and e["data"].get("fatal")]


@pytest.mark.parametrize(
    ("provider", "faults"),
    [
        ("deepgram", [Fault.mid_utterance(0.5, drop=True), Fault.reject(401)]),  # the key revoked mid-call
        ("openai", [Fault.reject(401)]),
        ("cartesia", [Fault.drop_connection(after_audio=3), Fault.reject(401)]),  # revoked mid-reply
    ],
)
async def test_a_401_ends_that_call_with_a_fatal_error_and_the_next_call_goes_on(
    provider: str, faults: list[Fault]
) -> None:
    async with cloud_fakes() as fakes:
        getattr(fakes, provider).faults.extend(faults)
        server = serving(cloud_factory(fakes))
        async with server as (server_, url):
            async with HeadlessClient.connect(url, client_options()) as refused:
                with anyio.fail_after(30):
                    await refused.wait_for_event("bot-ready", timeout_s=10)
                    async with anyio.create_task_group() as tg:
                        # The call may end mid-question (its STT is refused): the mic does not finish.
                        tg.start_soon(refused.play, QUESTION_WAV)
                        error = await refused.wait_for_event("error", timeout_s=20, fatal=True)
                        tg.cancel_scope.cancel()
                    await server_.wait_sessions(lambda sessions: not sessions)
            assert "401" in error["data"]["message"]
            async with HeadlessClient.connect(url, client_options()) as fine:
                with anyio.fail_after(30):
                    await fine.wait_for_event("bot-ready", timeout_s=10)
                    await fine.play(QUESTION_WAV)
                    await fine.wait_for_event("bot-stopped-speaking", timeout_s=20)
            assert words(said(fine)) == words(f"You said: {QUESTION}")
            assert not [e for e in fine.events if e.get("type") == "error"]
