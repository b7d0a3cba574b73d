"""A served call seen from outside: Prometheus metrics, OpenTelemetry spans and the usage line.

A real call over WebRTC on 127.0.0.1 to the runner's `BotServer`, whose pipeline answers each end
of the user's speech with a tone and reports usage as a provider would (tokens, characters).
"""

from __future__ import annotations

import logging
from pathlib import Path

import aiohttp
import anyio
import numpy as np
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families
from webrtc_helpers import client_options, tone

from tests.embedded_helpers import LoudIsSpeech
from voxframe.pipeline import (
    DOWN,
    Direction,
    ErrorFrame,
    Frame,
    FrameProcessor,
    LLMContext,
    LLMContextFrame,
    MetricsFrame,
    Pipeline,
    TTSAudioFrame,
    TTSStoppedFrame,
    UserStoppedSpeakingFrame,
)
from voxframe.processors.vad import VADOptions, VADProcessor
from voxframe.runner import READY_EVENT, BotServer, BotSession, parse_options
from voxframe.runner.services import Services
from voxframe.transports.webrtc import HeadlessClient

pytestmark = pytest.mark.anyio


class _AnswersLikeAProvider(FrameProcessor):
    """Each end of speech: usage as an LLM and a TTS report it, then 0.3 s of tone as the reply."""

    async def process(self, frame: Frame, direction: Direction) -> None:
        await self.push(frame, direction)
        if isinstance(frame, UserStoppedSpeakingFrame) and direction is DOWN:
            turn = self.turns.begin()
            # What the user aggregator sends an LLM: the reporter ties the reply to this speech's end.
            context = LLMContext(messages=[{"role": "user", "content": f"question {turn}"}])
            await self.push(LLMContextFrame(context=context, turn=turn))
            for metric, value in (("prompt_tokens", 12), ("completion_tokens", 3), ("tts_characters", 40)):
                await self.push(MetricsFrame(processor="provider", metric=metric, value=value))
            if turn == 1:
                await self.push(ErrorFrame(error="a hiccup", processor="provider"), direction=DOWN)
            await self.push(TTSAudioFrame(audio=tone(600.0, 0.3, 24_000).tobytes(), sample_rate=24_000, turn=turn))
            await self.push(TTSStoppedFrame(turn=turn))


def create_pipeline(bot: BotSession) -> Pipeline:
    vad = VADProcessor(VADOptions(analyzer=LoudIsSpeech()))
    return Pipeline([bot.input, vad, _AnswersLikeAProvider(), bot.output])


def samples(text: str, name: str, **labels: str) -> list[float]:
    return [
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]


async def test_a_served_call_shows_in_metrics_traces_and_its_end_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    options = parse_options(["--port", "0", "--no-warm-up"], env={}, dotenv_path=tmp_path / "none")
    bot = BotServer(create_pipeline, Services.from_env({}), options, tracer_provider=provider)
    said = np.concatenate([tone(300.0, 0.6, 16_000, amplitude=0.3), np.zeros(16_000, np.int16)])
    caplog.set_level(logging.INFO, logger="voxframe.webrtc")
    async with anyio.create_task_group() as tg:
        url = await tg.start(bot.serve)
        async with HeadlessClient.connect(url, client_options()) as client:
            await client.wait_for_event(READY_EVENT["type"], timeout_s=10)
            for turn in (1, 2):
                await client.play(said, 16_000)
                await client.wait_for_event("bot-stopped-speaking", timeout_s=10, turn=turn)
        with anyio.fail_after(10):
            await bot.server.wait_sessions(lambda sessions: not sessions)
        async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as response:
            assert response.status == 200
            text = await response.text()
        tg.cancel_scope.cancel()

    assert samples(text, "voxframe_offers_total", outcome="admitted") == [1.0]
    assert samples(text, "voxframe_sessions", state="connected") == [0.0]
    # Both replies' stages, measured from the end of the user's speech.
    assert samples(text, "voxframe_turn_stage_seconds_count", stage="first_audio_out") == [2.0]
    (first_audio_s,) = samples(text, "voxframe_turn_stage_seconds_sum", stage="first_audio_out")
    assert 0 < first_audio_s < 10
    assert samples(text, "voxframe_provider_errors_total", processor="provider", fatal="false") == [1.0]
    assert samples(text, "voxframe_usage_llm_prompt_tokens_total") == [24.0]
    assert samples(text, "voxframe_usage_tts_characters_total") == [80.0]
    (audio_s,) = samples(text, "voxframe_usage_stt_audio_seconds_total")
    assert 3.0 <= audio_s <= 4.0  # the caller spoke 2 x 1.6 s (the call lasted ~3.3 s)
    assert samples(text, "voxframe_session_duration_seconds_count") == [1.0]
    assert samples(text, "voxframe_event_loop_lag_seconds_count")[0] >= 1

    spans = {span.name: [] for span in exporter.get_finished_spans()}
    for span in exporter.get_finished_spans():
        spans[span.name].append(span)
    (session,) = spans["voxframe.session"]
    turns = sorted(spans["voxframe.turn"], key=lambda span: span.attributes["voxframe.turn"])
    assert [t.attributes["voxframe.turn"] for t in turns] == [1, 2]
    assert all(t.parent.span_id == session.context.span_id for t in turns)
    assert all(t.attributes["voxframe.interrupted"] is False for t in turns)
    # This pipeline has a VAD and no STT, LLM or TTS of its own: its one stage span is the VAD's.
    (vad,) = [s for s in spans["vad"] if s.parent.span_id == turns[0].context.span_id]
    assert turns[0].start_time <= vad.start_time <= vad.end_time <= turns[0].end_time
    assert not spans.get("llm")
    assert session.attributes["voxframe.session.end_reason"]

    (end_line,) = [r.getMessage() for r in caplog.records if " ended after " in r.getMessage()]
    assert "llm_tokens=24+6 tts_chars=80 stt_audio_s=" in end_line
