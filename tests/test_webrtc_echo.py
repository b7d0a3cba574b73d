"""A real call over aiortc on 127.0.0.1: the headless client and an echo bot."""

from __future__ import annotations

import numpy as np
import pytest
from webrtc_helpers import (
    client_options,
    dominant_hz,
    serving,
    tone_pattern,
)

from voxframe.pipeline import (
    DOWN,
    Direction,
    Frame,
    FrameProcessor,
    InputAudioFrame,
    LLMTextFrame,
    Pipeline,
    PipelineParams,
    PipelineTask,
    TranscriptionFrame,
    TransportMessageFrame,
)
from voxframe.pipeline.audio import loud_windows
from voxframe.processors.echo import AudioEcho
from voxframe.transports.webrtc import HeadlessClient, Session

pytestmark = pytest.mark.anyio

FREQS = (600.0, 1500.0, 900.0)


def segment_frequencies(audio: np.ndarray, rate: int, threshold_dbfs: float = -30.0) -> list[float]:
    """Dominant frequency of each loud stretch of `audio`, in order."""
    window = rate // 100
    loud = loud_windows(audio, window, threshold_dbfs).tolist()
    segments, start = [], None
    for i, is_loud in enumerate([*loud, False]):
        if is_loud and start is None:
            start = i
        elif not is_loud and start is not None:
            if i - start >= 10:  # at least 100 ms: a tone, not a click
                segments.append(dominant_hz(audio[start * window : i * window].tobytes(), rate))
            start = None
    return segments


async def test_echo_round_trip_returns_the_same_tones_in_order() -> None:
    async with serving() as (_, url), HeadlessClient.connect(url, client_options()) as client:
        assert client.pc.connectionState == "connected"
        played = await client.play(tone_pattern(FREQS, 16_000), 16_000)
        first_onset = await client.wait_for_onset(played.start_ns, timeout_s=5)
        await client.wait_for_silence(after_ns=played.end_ns, timeout_s=5)
        heard = client.heard(since_ns=played.start_ns)

    found = segment_frequencies(heard, 48_000)
    assert found == [pytest.approx(f, abs=15.0) for f in FREQS]
    # The first tone starts 150 ms into the pattern; its echo comes back well within a second.
    assert 0 < first_onset - played.start_ns - 150_000_000 < 1_000_000_000
    assert client.stage is not None and client.stage.stats.late_dropped == 0


class _Chatty(FrameProcessor):
    """On the caller's first audio, says what a real bot would show on the page."""

    def __init__(self) -> None:
        super().__init__()
        self.spoke = False

    async def process(self, frame: Frame, direction: Direction) -> None:
        await self.push(frame, direction)
        if isinstance(frame, InputAudioFrame) and direction is DOWN and not self.spoke:
            self.spoke = True
            await self.push(TranscriptionFrame(text="hello bot"))
            await self.push(LLMTextFrame(text="Hi there", turn=1))
            await self.push(TransportMessageFrame(message={"type": "custom", "n": 1}))


async def test_data_channel_carries_transcripts_bot_text_and_app_messages_in_rtvi() -> None:
    async def factory(session: Session) -> PipelineTask:
        pipeline = Pipeline([session.input, _Chatty(), AudioEcho(), session.output])
        return PipelineTask(pipeline, PipelineParams(idle_timeout_s=None))

    async with serving(factory) as (_, url), HeadlessClient.connect(url, client_options()) as client:
        ready = await client.wait_for_event("bot-ready", timeout_s=5)
        transcript = await client.wait_for_event("user-transcription", timeout_s=5)
        bot_text = await client.wait_for_event("bot-llm-text", timeout_s=5)
        custom = await client.wait_for_event("server-message", timeout_s=5, type="custom")
        await client.wait_for_event("bot-started-speaking", timeout_s=5)

    assert all(e["label"] == "rtvi-ai" for e in client.events)
    assert ready["data"]["version"] == "2.1.0" and ready["id"] == "hc1"  # the answer to client-ready
    assert transcript["data"] | {"timestamp": None} == {"text": "hello bot", "final": True, "user_id": "",
                                                        "timestamp": None}  # fmt: skip
    assert bot_text["data"] == {"turn": 1, "text": "Hi there"}
    assert custom["data"] == {"type": "custom", "n": 1}
    assert [e["type"] for e in client.events].count("user-transcription") == 1  # once, not once per hop


async def test_the_callers_messages_reach_the_pipeline_and_a_flood_harms_nothing() -> None:
    from talking_bot import AnswersPings

    async def factory(session: Session) -> PipelineTask:
        pipeline = Pipeline([session.input, AnswersPings(), AudioEcho(), session.output])
        return PipelineTask(pipeline, PipelineParams(idle_timeout_s=None))

    async with serving(factory) as (server, url), HeadlessClient.connect(url, client_options()) as client:
        await client.wait_for_event("bot-ready", timeout_s=5)
        for n in range(500):  # far more than the session's inbox holds at once
            client.send("client-message", {"t": "ping", "d": {"n": n}})
        for attempt in range(1, 6):  # a message after the flood is answered (once there is room)
            client.send("client-message", {"t": "ping", "d": {"n": f"after {attempt}"}})
            try:
                last = await client.wait_for_event("server-response", timeout_s=2, d={"pong": f"after {attempt}"})
                break
            except TimeoutError:
                continue
        else:
            pytest.fail("no message after the flood was answered")
        client.send("no-such-type", {})
        refused = await client.wait_for_event("error-response", timeout_s=5)
        played = await client.play(tone_pattern([700.0], 16_000), 16_000)
        await client.wait_for_onset(played.start_ns, timeout_s=5)  # the call goes on
        session = next(iter(server.sessions.values()))
        answered = sum(1 for e in client.events if e["type"] == "server-response")

    assert last["data"]["t"] == "ping" and "no-such-type" in refused["data"]["error"]
    assert answered + session.dropped_client_frames == 500 + attempt
