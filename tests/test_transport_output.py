"""OutputTransport: real-time pacing, speaking events, interruption, forwarding (virtual time)."""

from __future__ import annotations

import anyio
import numpy as np
import pytest
from webrtc_helpers import MS, advance, dominant_hz, tone

from tests.support import Recorder, running, yield_rounds
from voxframe.pipeline import (
    DOWN,
    UP,
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    Direction,
    EndFrame,
    Frame,
    FrameProcessor,
    InterruptionFrame,
    LLMTextFrame,
    OutputAudioFrame,
    Pipeline,
    PipelineParams,
    PipelineTask,
    TTSAudioFrame,
    TTSStoppedFrame,
    TTSWordsFrame,
    UserTurnEndedFrame,
    UserTurnStartedFrame,
    VirtualClock,
    WordTiming,
)
from voxframe.transports import MemoryOutputOptions, MemoryOutputTransport, OutputOptions

pytestmark = pytest.mark.anyio


def speech(turn: int, duration_s: float, rate: int = 24_000, freq: float = 440.0) -> TTSAudioFrame:
    return TTSAudioFrame(audio=tone(freq, duration_s, rate).tobytes(), sample_rate=rate, turn=turn)


def make_output(**kwargs: object) -> MemoryOutputTransport:
    return MemoryOutputTransport(MemoryOutputOptions(output=OutputOptions(**kwargs)))  # type: ignore[arg-type]


async def test_plays_one_chunk_per_period_and_reports_speaking_both_ways() -> None:
    clock = VirtualClock()
    up, out, down = Recorder(), make_output(), Recorder()
    async with running([up, out, down], clock) as task:
        await task.queue_frames([speech(1, 0.1), TTSStoppedFrame(turn=1)])
        await advance(clock, 300 * MS)

    assert [c.t_ns for c in out.played] == [0, 20 * MS, 40 * MS, 60 * MS, 80 * MS]
    assert all(c.turn == 1 and c.samples == 480 for c in out.played)
    for recorder, direction in ((up, UP), (down, DOWN)):
        started = recorder.seen_of(BotStartedSpeakingFrame, direction)
        stopped = recorder.seen_of(BotStoppedSpeakingFrame, direction)
        assert [(s.frame.turn, s.t_ns) for s in started] == [(1, 0)]
        assert [(s.frame.turn, s.t_ns) for s in stopped] == [(1, 100 * MS)]
        assert stopped[0].frame.played_s == pytest.approx(0.1)
        assert stopped[0].frame.interrupted is False
    assert up.of(BotStartedSpeakingFrame, UP)[0] is not down.of(BotStartedSpeakingFrame)[0]
    assert task.tracer.turn(1)["first_audio_out"] == 0


async def test_resamples_any_input_rate_to_the_output_rate() -> None:
    clock = VirtualClock()
    out = make_output(sample_rate=48_000)
    async with running([out], clock) as task:
        for rate in (16_000, 22_050):
            audio = tone(1000.0, 0.2, rate)
            for piece in np.array_split(audio, 7):  # odd sizes: chunking must be seamless
                await task.queue_frame(TTSAudioFrame(audio=piece.tobytes(), sample_rate=rate, turn=1))
        await task.queue_frame(TTSStoppedFrame(turn=1))
        await advance(clock, 1000 * MS)

    assert all(len(c.audio) == 960 * 2 for c in out.played)
    played = out.audio(1)
    assert abs(len(played) / 2 - 0.4 * 48_000) <= 48  # within 1 ms of the input's duration
    assert dominant_hz(played, 48_000) == pytest.approx(1000.0, abs=5.0)
    assert out.played_s(1) == pytest.approx(0.4, abs=0.001)


async def test_interruption_stops_the_audio_within_one_chunk() -> None:
    clock = VirtualClock()
    up, out, down = Recorder(), make_output(), Recorder()
    async with running([up, out, down], clock) as task:
        task.turns.begin()
        await task.queue_frame(speech(1, 1.0))
        await advance(clock, 110 * MS)  # chunks at 0..100 ms went out
        await task.queue_frame(InterruptionFrame(stale_upto=1), UP)
        await advance(clock, 500 * MS)
        played_before_turn_2 = len(out.played)
        task.turns.begin()
        await task.queue_frames([speech(2, 0.04), TTSStoppedFrame(turn=2)])
        await advance(clock, 100 * MS)

    assert played_before_turn_2 == 6
    assert [c.turn for c in out.played[6:]] == [2, 2]
    stopped = down.seen_of(BotStoppedSpeakingFrame)
    assert [(s.frame.turn, s.frame.interrupted, s.t_ns) for s in stopped] == [(1, True, 110 * MS), (2, False, 650 * MS)]
    assert stopped[0].frame.played_s == pytest.approx(0.12)
    assert [f.turn for f in up.of(BotStoppedSpeakingFrame, UP)] == [1, 2]
    assert out.playout is not None and not out.playout


async def test_audio_of_a_stale_turn_arriving_late_is_not_played() -> None:
    clock = VirtualClock()
    out = make_output()
    async with running([out], clock) as task:
        task.turns.begin()
        await task.queue_frame(InterruptionFrame(stale_upto=1), UP)
        await task.queue_frame(speech(1, 0.1))
        await advance(clock, 200 * MS)
    assert out.played == []


async def test_forwards_every_other_frame_downstream_unchanged() -> None:
    clock = VirtualClock()
    out, down = make_output(), Recorder()
    words = TTSWordsFrame(words=[WordTiming("hi", 0.0, 0.2)], turn=1)
    text = LLMTextFrame(text="hi", turn=1)
    async with running([out, down], clock) as task:
        await task.queue_frames([text, speech(1, 0.04), words, TTSStoppedFrame(turn=1)])
        await advance(clock, 100 * MS)

    forwarded = down.down
    assert text in forwarded and words in forwarded
    assert not down.of(TTSAudioFrame)
    assert forwarded.index(text) < forwarded.index(words)


async def test_end_frame_waits_until_the_queued_audio_has_played() -> None:
    clock = VirtualClock()
    out, down = make_output(), Recorder()
    task = PipelineTask(Pipeline([out, down]), PipelineParams(idle_timeout_s=None), clock=clock)
    async with anyio.create_task_group() as tg:
        tg.start_soon(task.run)
        await yield_rounds()
        await task.queue_frames([speech(1, 0.2), EndFrame()])
        await advance(clock, 150 * MS)
        assert not task.finished
        await advance(clock, 100 * MS)
        with anyio.fail_after(5):
            while not task.finished:
                await advance(clock, 20 * MS)
    kinds = [type(f) for f in down.down]
    assert kinds.index(BotStoppedSpeakingFrame) < kinds.index(EndFrame)
    assert out.played_s(1) == pytest.approx(0.2)


async def test_without_an_end_marker_the_bot_stops_after_the_idle_time() -> None:
    clock = VirtualClock()
    out, down = make_output(stop_after_idle_s=0.1), Recorder()
    async with running([out, down], clock) as task:
        await task.queue_frame(speech(1, 0.04))
        await advance(clock, 300 * MS)
    stopped = down.seen_of(BotStoppedSpeakingFrame)
    assert [(s.frame.turn, s.t_ns) for s in stopped] == [(1, 120 * MS)]  # last audio at 20 ms
    assert stopped[0].frame.played_s == pytest.approx(0.04)


async def test_back_to_back_replies_stop_one_and_start_the_next() -> None:
    clock = VirtualClock()
    out, down = make_output(), Recorder()
    async with running([out, down], clock) as task:
        await task.queue_frames([speech(1, 0.04), speech(2, 0.04), TTSStoppedFrame(turn=2)])
        await advance(clock, 200 * MS)
    events = [(type(s.frame).__name__, s.frame.turn, s.t_ns) for s in down.seen if "Bot" in type(s.frame).__name__]
    assert events == [
        ("BotStartedSpeakingFrame", 1, 0),
        ("BotStoppedSpeakingFrame", 1, 40 * MS),
        ("BotStartedSpeakingFrame", 2, 40 * MS),
        ("BotStoppedSpeakingFrame", 2, 80 * MS),
    ]


async def test_idle_wire_ticks_silence_and_a_reply_starts_without_waiting_for_a_tick() -> None:
    clock = VirtualClock()
    out = MemoryOutputTransport(MemoryOutputOptions(output=OutputOptions(emit_silence=True), record_silence=True))
    async with running([out], clock) as task:
        await advance(clock, 45 * MS)
        await task.queue_frames([speech(1, 0.04), TTSStoppedFrame(turn=1)])
        await advance(clock, 10 * MS)
    assert [(c.t_ns, c.turn) for c in out.played] == [(0, -1), (20 * MS, -1), (40 * MS, -1), (45 * MS, 1)]
    assert all(c.audio == bytes(960) for c in out.played[:3])


class _InterruptsOnBotSpeech(FrameProcessor):
    """Barges in the moment it hears the bot start: re-enters the output transport."""

    async def process(self, frame: Frame, direction: Direction) -> None:
        await self.push(frame, direction)
        if isinstance(frame, BotStartedSpeakingFrame) and direction is UP:
            await self.interrupt("test barge-in")


async def test_an_interruption_triggered_by_bot_started_keeps_event_order() -> None:
    clock = VirtualClock()
    down = Recorder()
    out = make_output()
    async with running([_InterruptsOnBotSpeech(), out, down], clock) as task:
        task.turns.begin()
        await task.queue_frame(speech(1, 0.2))
        with anyio.fail_after(5):
            await advance(clock, 100 * MS)
    events = [
        (type(s.frame).__name__, s.frame.interrupted if hasattr(s.frame, "interrupted") else None)
        for s in down.seen_of(BotStartedSpeakingFrame) + down.seen_of(BotStoppedSpeakingFrame)
    ]
    assert events == [("BotStartedSpeakingFrame", None), ("BotStoppedSpeakingFrame", True)]
    order = [type(f) for f in down.down]
    assert order.index(BotStartedSpeakingFrame) < order.index(BotStoppedSpeakingFrame)
    assert len(out.played) == 1


@pytest.mark.parametrize("emit_silence", [False, True])
async def test_a_reply_begun_while_the_user_speaks_is_held_until_the_users_turn_ends(emit_silence: bool) -> None:
    clock = VirtualClock()
    out, down = make_output(emit_silence=emit_silence), Recorder()
    async with running([out, down], clock) as task:
        await task.queue_frame(UserTurnStartedFrame(held_from=task.turns.current + 1))
        task.turns.begin()  # prepared at the user's pause
        await task.queue_frames([speech(1, 0.04), TTSStoppedFrame(turn=1)])
        await advance(clock, 300 * MS)
        assert [c for c in out.played if c.turn == 1] == [] and not down.of(BotStartedSpeakingFrame)
        await task.queue_frame(UserTurnEndedFrame())
        await advance(clock, 100 * MS)
    assert [(c.t_ns, c.turn) for c in out.played if c.turn == 1] == [(300 * MS, 1), (320 * MS, 1)]
    assert down.times(BotStartedSpeakingFrame) == [300 * MS]


async def test_a_held_reply_that_is_interrupted_is_never_played() -> None:
    clock = VirtualClock()
    out = make_output()
    async with running([out], clock) as task:
        await task.queue_frame(UserTurnStartedFrame(held_from=task.turns.current + 1))
        task.turns.begin()
        await task.queue_frames([speech(1, 0.1), TTSStoppedFrame(turn=1)])
        await advance(clock, 50 * MS)
        task.turns.interrupt()  # the user went on speaking
        await task.queue_frame(InterruptionFrame(stale_upto=1), UP)
        await task.queue_frame(UserTurnEndedFrame())
        await advance(clock, 300 * MS)
    assert out.played == []
    assert out.playout is not None and not out.playout


async def test_a_reply_begun_before_the_user_started_plays_on() -> None:
    clock = VirtualClock()
    out = make_output()
    async with running([out], clock) as task:
        task.turns.begin()
        await task.queue_frames([speech(1, 0.1), TTSStoppedFrame(turn=1)])
        await advance(clock, 30 * MS)
        await task.queue_frame(UserTurnStartedFrame(held_from=task.turns.current + 1))  # no barge-in: the bot talks on
        await advance(clock, 200 * MS)
    assert [c.t_ns for c in out.played] == [0, 20 * MS, 40 * MS, 60 * MS, 80 * MS]


def live(index: int, rate: int = 24_000) -> OutputAudioFrame:
    """20 ms of live audio (turn 0, as an echo sends) whose every sample is `index`."""
    return OutputAudioFrame(audio=np.full(rate // 50, index, dtype=np.int16).tobytes(), sample_rate=rate)


async def play_live(clock: VirtualClock, task: PipelineTask, frames: int, stall_at: int) -> dict[int, int]:
    """Send one live frame per 20 ms (real time in), but hold 5 of them from `stall_at` and send
    them at once 100 ms late, as a stalled network delivers; returns each frame's queued time."""
    queued: dict[int, int] = {}
    index = 0
    while index < frames:
        burst = 6 if index == stall_at + 5 else 1
        if stall_at <= index < stall_at + 5:
            await advance(clock, 20 * MS)
            index += 1
            continue
        for late in range(index - burst + 1, index + 1):
            queued[late] = clock.now_ns()
            await task.queue_frame(live(late))
        await advance(clock, 20 * MS)
        index += 1
    return queued


def latencies(out: MemoryOutputTransport, queued: dict[int, int]) -> dict[int, int]:
    """Frame index → ms from queued to played, for every live frame played."""
    played = {int(np.frombuffer(c.audio, dtype=np.int16)[0]): c.t_ns for c in out.played if c.turn == 0}
    return {i: (t - queued[i]) // MS for i, t in played.items() if i in queued}


async def test_a_live_streams_backlog_left_by_a_stall_goes_once_the_stream_calms() -> None:
    clock = VirtualClock()
    out = make_output(emit_silence=True, live_backlog_s=0.0)
    async with running([out], clock) as task:
        queued = await play_live(clock, task, frames=200, stall_at=50)
        await advance(clock, 200 * MS)

    delays = latencies(out, queued)
    assert max(delays[i] for i in range(40, 50)) <= 20  # before the stall: played at the next tick
    assert max(delays[i] for i in range(50, 56)) >= 100  # the late audio waited behind the silence
    # The second after the stall's own second passed with the backlog standing: it went, and
    # the stream is back to the next tick (within 2 s of the stall, well inside a call's 5 s).
    assert max(delay for i, delay in delays.items() if i >= 150) <= 20
    assert out.trimmed_samples == 5 * 480  # what went is the standing backlog: 5 chunks, no more
    assert len(delays) == 200 - 5


async def test_without_the_bound_a_live_streams_backlog_stays() -> None:
    clock = VirtualClock()
    out = make_output(emit_silence=True)
    async with running([out], clock) as task:
        queued = await play_live(clock, task, frames=200, stall_at=50)
        await advance(clock, 200 * MS)
    assert min(latencies(out, queued)[i] for i in range(150, 200)) >= 100
    assert out.trimmed_samples == 0


async def test_a_reply_queued_ahead_of_real_time_is_never_trimmed() -> None:
    clock = VirtualClock()
    out = make_output(emit_silence=True, live_backlog_s=0.0)
    async with running([out], clock) as task:
        await task.queue_frames([speech(1, 3.0), TTSStoppedFrame(turn=1)])
        await advance(clock, 3500 * MS)
    assert out.played_s(1) == pytest.approx(3.0)
    assert out.trimmed_samples == 0
