"""The mouth-to-ear benchmark's measuring code.

A synthetic call through real WebRTC: a bot that answers every utterance with a tone exactly D
after the end of the speech it received. The transport adds the same to every turn, so the
measured mouth-to-ear of turns with D = 300 ms and D = 800 ms must differ by the inserted 500 ms
(within 25 ms). A busy machine can only add delay to a turn, never remove it, so each delay is
represented by its quickest turn. Plus the pure parts: barge-in reaction, joining the bot's trace.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import numpy as np
import pytest
from m2e_measure import Caller, Turn, bargein_reaction_ms, first_loud_sample, match_record, waterfall_points
from m2e_script import SHORT_REPLIES, settle_tokens

from voxframe.pipeline import (
    DOWN,
    Direction,
    Frame,
    FrameProcessor,
    InputAudioFrame,
    Pipeline,
    PipelineParams,
    PipelineTask,
    TTSAudioFrame,
    TTSStoppedFrame,
)
from voxframe.transports.webrtc import (
    ClientOptions,
    HeadlessClient,
    IceOptions,
    ServerOptions,
    Session,
    SessionOptions,
    SpeechSegment,
    WebRTCServer,
)

MS = 1_000_000
RATE = 16_000
LOOPBACK = IceOptions(host_addresses=("127.0.0.1",))


def tone(seconds: float, rate: int = RATE, hz: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (8000 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def utterance() -> np.ndarray:
    """200 ms of quiet, 600 ms of 'speech', 200 ms of quiet."""
    quiet = np.zeros(round(0.2 * RATE), np.int16)
    return np.concatenate([quiet, tone(0.6, hz=300.0), quiet])


class DelayedTone(FrameProcessor):
    """Answers each burst of loud input with a 400 ms tone, `delays[i]` after the burst ended.

    The burst's end is when its last loud 20 ms frame arrived (its `created_ns`); it counts as
    ended after 100 ms of quiet, well before the shortest delay.
    """

    def __init__(self, delays: list[float]) -> None:
        super().__init__(name="delayed_tone")
        self.delays = delays
        self.answered = 0
        self._last_loud_ns: int | None = None

    async def process(self, frame: Frame, direction: Direction) -> None:
        await self.push(frame, direction)
        if not isinstance(frame, InputAudioFrame) or direction is not DOWN:
            return
        samples = np.frombuffer(frame.audio, dtype="<i2").astype(np.float64)
        if np.sqrt(np.mean(samples * samples)) > 1000:
            self._last_loud_ns = frame.created_ns
        elif self._last_loud_ns is not None and frame.created_ns - self._last_loud_ns >= 100 * MS:
            end_ns, self._last_loud_ns = self._last_loud_ns, None
            delay_s = self.delays[self.answered % len(self.delays)]
            self.answered += 1
            self.task_group.start_soon(self._answer, end_ns + round(delay_s * 1e9), self.turns.begin())

    async def _answer(self, at_ns: int, turn: int) -> None:
        await self.clock.sleep_until(at_ns)
        await self.push(TTSAudioFrame(audio=tone(0.4, 24_000).tobytes(), sample_rate=24_000, turn=turn))
        await self.push(TTSStoppedFrame(turn=turn))


@asynccontextmanager
async def synthetic_call(delays: list[float]) -> AsyncIterator[Caller]:
    async def factory(session: Session) -> PipelineTask:
        bot = Pipeline([session.input, DelayedTone(delays), session.output])
        return PipelineTask(bot, PipelineParams(idle_timeout_s=None))

    server = WebRTCServer(factory, ServerOptions(session=SessionOptions(ice=LOOPBACK)))
    async with anyio.create_task_group() as tg:
        url = await tg.start(server.serve)
        async with HeadlessClient.connect(url, ClientOptions(ice=LOOPBACK, record=False)) as client:
            await server.sessions[client.session_id].task.wait_started()
            yield Caller(client, reply_timeout_s=5.0, quiet_s=0.4)
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_an_inserted_delay_is_measured_to_within_25_ms() -> None:
    delays = [0.3, 0.8]
    measured: dict[float, list[float]] = {0.3: [], 0.8: []}
    with anyio.fail_after(90):
        async with synthetic_call(delays) as caller:
            for i in range(8):
                turn = await caller.say(f"turn {i}", utterance(), RATE)
                await caller.wait_quiet(timeout_s=10)
                assert turn.mouth_to_ear_ms is not None, f"turn {i} got no reply"
                measured[delays[i % 2]].append(turn.mouth_to_ear_ms)

    short, long = min(measured[0.3]), min(measured[0.8])
    assert long - short == pytest.approx(500, abs=25), measured
    # The transport's own share is positive and small on loopback: the delay is not hidden.
    assert 300 < short < 300 + 150, measured


def test_first_loud_sample_finds_where_the_speech_starts() -> None:
    audio = utterance()
    assert first_loud_sample(audio, RATE) == round(0.2 * RATE)
    assert first_loud_sample(np.zeros(RATE, np.int16), RATE) is None


def test_bargein_reaction_is_from_the_user_speaking_to_the_end_of_the_bot_audio_then_playing() -> None:
    segments = [SpeechSegment(0, 1_000 * MS), SpeechSegment(2_000 * MS, 5_000 * MS)]
    assert bargein_reaction_ms(2_500 * MS, segments) == 2_500
    assert bargein_reaction_ms(800 * MS, segments) == 200
    assert bargein_reaction_ms(1_500 * MS, segments) is None  # the bot was quiet then


def test_the_bot_trace_joins_the_turn_whose_speech_it_heard_end() -> None:
    turn = Turn("hi", start_ns=0, speech_start_ns=100 * MS, speech_end_ns=1_000 * MS, reply_ns=2_000 * MS)
    earlier = {"speech_end_ns": 400 * MS, "points_ns": {}}
    ours = {"speech_end_ns": 1_020 * MS, "points_ns": {"vad_stop": 1_520 * MS, "first_audio_out": 1_980 * MS}}
    later = {"speech_end_ns": 4_000 * MS, "points_ns": {}}
    assert match_record(turn, [earlier, later, ours]) is ours
    assert match_record(turn, [earlier, later]) is None
    assert waterfall_points(turn, ours) == {
        "mic_speech_end": 0.0,
        "speech_end": 20.0,
        "vad_stop": 520.0,
        "first_audio_out": 980.0,
        "ear_first_audio": 1000.0,
    }


def test_the_simulated_llm_settles_its_first_sentence_after_the_token_that_follows_its_mark() -> None:
    # "Sure" "." " It": the first sentence is known to be over at the third token.
    assert settle_tokens("Sure. It is nine.") == 3
    assert settle_tokens("No mark at all") == 4  # the whole reply
    # The replies' first sentences differ in length, from one word to over a dozen.
    assert len({settle_tokens(reply) for reply in SHORT_REPLIES}) >= 4
    assert min(map(settle_tokens, SHORT_REPLIES)) == 3 and max(map(settle_tokens, SHORT_REPLIES)) > 12
