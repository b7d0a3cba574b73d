"""The events a real call delivers to the client: each speaking and latency event once per turn."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from webrtc_helpers import client_options, serving, tone

from tests.embedded_helpers import LoudIsSpeech
from voxframe.pipeline import (
    DOWN,
    Direction,
    Frame,
    FrameProcessor,
    Pipeline,
    PipelineParams,
    PipelineTask,
    TTSAudioFrame,
    TTSStoppedFrame,
    UserStoppedSpeakingFrame,
)
from voxframe.processors.vad import VADOptions, VADProcessor
from voxframe.transports.webrtc import HeadlessClient, Session

pytestmark = pytest.mark.anyio


class _RepliesWithATone(FrameProcessor):
    """Answers each end of the user's speech with 0.3 s of tone, as a new turn."""

    async def process(self, frame: Frame, direction: Direction) -> None:
        await self.push(frame, direction)
        if isinstance(frame, UserStoppedSpeakingFrame) and direction is DOWN:
            turn = self.turns.begin()
            await self.push(TTSAudioFrame(audio=tone(600.0, 0.3, 24_000).tobytes(), sample_rate=24_000, turn=turn))
            await self.push(TTSStoppedFrame(turn=turn))


async def factory(session: Session) -> PipelineTask:
    vad = VADProcessor(VADOptions(analyzer=LoudIsSpeech()))
    pipeline = Pipeline([session.input, vad, _RepliesWithATone(), session.output])
    return PipelineTask(pipeline, PipelineParams(idle_timeout_s=None))


async def test_a_call_delivers_each_speaking_and_latency_event_once_per_turn() -> None:
    said = np.concatenate([tone(300.0, 0.6, 16_000, amplitude=0.3), np.zeros(16_000, np.int16)])
    async with serving(factory) as (server, url):
        async with HeadlessClient.connect(url, client_options()) as client:
            for turn in (1, 2):
                await client.play(said, 16_000)
                await client.wait_for_event("bot-stopped-speaking", timeout_s=10, turn=turn)
            events = list(client.events)
        await server.wait_sessions(lambda sessions: not sessions)

    def turn_of(event: dict) -> int | None:
        return (event.get("data") or {}).get("turn")

    def kind_of(event: dict) -> str:
        return event["data"]["type"] if event["type"] == "server-message" else event["type"]

    per_turn = Counter((kind_of(e), turn_of(e)) for e in events if e["type"] != "bot-stopped-speaking")
    stopped = Counter(turn_of(e) for e in events if e["type"] == "bot-stopped-speaking")
    assert stopped == {1: 1, 2: 1}
    assert per_turn[("bot-started-speaking", 1)] == per_turn[("bot-started-speaking", 2)] == 1
    assert per_turn[("turn_latency", 1)] == per_turn[("turn_latency", 2)] == 1
    # The user's events carry no turn: two turns, two of each.
    assert per_turn[("user-started-speaking", None)] == per_turn[("user-stopped-speaking", None)] == 2
    assert all(e["data"]["latency_ms"] > 0 for e in events if kind_of(e) == "turn_latency")
