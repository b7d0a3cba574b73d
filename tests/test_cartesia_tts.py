"""CartesiaTTS against the Cartesia fake: contexts, words, cancel, reconnect, errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from tests.pipeline_helpers import quiet_params
from tests.support import Recorder, running, yield_rounds
from voxframe.fakes import ZERO, CartesiaFake, CartesiaFakeOptions, Fault, LatencyProfile
from voxframe.pipeline import (
    UP,
    ErrorFrame,
    Frame,
    InterruptionFrame,
    LLMResponseEndFrame,
    LLMResponseStartFrame,
    LLMTextFrame,
    MetricsFrame,
    Pipeline,
    PipelineError,
    PipelineTask,
    TTSAudioFrame,
    TTSStoppedFrame,
    TTSWordsFrame,
)
from voxframe.pipeline.clock import NS_PER_S, VirtualClock
from voxframe.processors.streaming import Backoff
from voxframe.processors.streaming.websocket import StreamOptions
from voxframe.processors.tts.cartesia import CartesiaOptions, CartesiaTTS

pytestmark = pytest.mark.anyio

CPS = 20.0  # the fake speaks 20 characters per second


def fake(**kwargs: Any) -> CartesiaFake:
    kwargs.setdefault("ttfa", ZERO)
    kwargs.setdefault("realtime_factor", float("inf"))
    return CartesiaFake(CartesiaFakeOptions(chars_per_second=CPS, **kwargs), api_key="key")


@asynccontextmanager
async def speaking(f: CartesiaFake) -> AsyncIterator[tuple[PipelineTask, Recorder, Recorder]]:
    options = CartesiaOptions(url=f.url, api_key="key", stream=StreamOptions(backoff=Backoff(initial_s=0.01)))
    head, tail = Recorder("head"), Recorder("tail")
    task = PipelineTask(Pipeline([head, CartesiaTTS(options), tail]), quiet_params())
    async with running(task):
        yield task, head, tail


def reply(turn: int, *tokens: str) -> list[Frame]:
    texts = [LLMTextFrame(text=t, turn=turn) for t in tokens]
    return [LLMResponseStartFrame(turn=turn), *texts, LLMResponseEndFrame(turn=turn)]


def audio_bytes(tail: Recorder, turn: int) -> int:
    return sum(len(f.audio) for f in tail.of(TTSAudioFrame) if f.turn == turn)


def words(tail: Recorder, turn: int) -> list[str]:
    return [w.word for f in tail.of(TTSWordsFrame) if f.turn == turn for w in f.words]


def stopped(tail: Recorder, turn: int) -> bool:
    return any(f.turn == turn for f in tail.of(TTSStoppedFrame))


async def test_a_reply_streams_clause_by_clause_into_one_context() -> None:
    async with fake(ttfa=LatencyProfile(0.05)) as f, speaking(f) as (task, _, tail):
        await task.queue_frames(reply(1, "Hello", " there.", " How are", " you today?"))
        await tail.wait_for(lambda: stopped(tail, 1))
    (context,) = f.contexts.values()
    assert context["texts"] == ["Hello there. ", "How are you today? ", ""] and context["done"]
    assert (
        audio_bytes(tail, 1)
        == context["audio_bytes"]
        == round(len("Hello there. How are you today? ") / CPS * 24000) * 2
    )
    assert words(tail, 1) == ["Hello", "there.", "How", "are", "you", "today?"]
    starts = [w.start_s for f in tail.of(TTSWordsFrame) for w in f.words]
    assert starts == sorted(starts)
    request = f.connections[0].json_received()[0]
    assert request["output_format"] == {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 24000}
    assert request["continue"] is True and f.connections[0].headers["cartesia-version"]
    (ttfa,) = [m.value for m in tail.of(MetricsFrame) if m.metric == "ttfa"]
    assert ttfa >= 0.05
    points = task.tracer.turn(1)
    assert points["tts_first_audio"] - points["tts_first_text"] >= 50_000_000


async def test_an_interruption_cancels_the_context_and_the_next_turn_speaks() -> None:
    async with fake(realtime_factor=1.0, chunk_s=0.02) as f, speaking(f) as (task, _, tail):
        turn = task.turns.begin()
        await task.queue_frames(reply(turn, "This sentence takes the fake a few seconds to say out loud."))
        await tail.wait_for(lambda: audio_bytes(tail, turn) > 0)
        await task.queue_frame(InterruptionFrame(stale_upto=task.turns.interrupt()))
        await f.wait_for(lambda: any(c["cancelled"] for c in f.contexts.values()))
        turn2 = task.turns.begin()
        await task.queue_frames(reply(turn2, "Okay."))
        await tail.wait_for(lambda: stopped(tail, turn2))
    first, second = f.contexts.values()
    assert first["cancelled"] and not first["done"] and second["done"]
    assert audio_bytes(tail, turn) < round(3.0 * 24000) * 2
    assert words(tail, turn2) == ["Okay."]


async def test_a_drop_before_any_audio_is_survived_by_resending_on_a_new_socket() -> None:
    async with fake() as f:
        f.faults.append(Fault.drop_connection(after_received=1))
        async with speaking(f) as (task, head, tail):
            await task.queue_frames(reply(1, "Are you still there?"))
            await tail.wait_for(lambda: stopped(tail, 1))
    assert [c.ended for c in f.connections][:1] == ["dropped"] and len(f.connections) == 2
    assert words(tail, 1) == ["Are", "you", "still", "there?"]  # once, not twice
    assert audio_bytes(tail, 1) == round(len("Are you still there? ") / CPS * 24000) * 2
    assert not head.of(ErrorFrame, UP)


S1 = "The first sentence is short. "  # 1.45 s of the fake's audio: 37 chunks of 40 ms
S2 = "The second one is cut in the middle. "  # 1.85 s, chunks 38 to 84
S3 = "And the third ends it. "
CUT_AFTER_CHUNKS = 60  # well inside S2
CUT_BYTES = round(len(S1) / CPS * 24000) * 2 + (CUT_AFTER_CHUNKS - 37) * 1920


def pcm_bytes(text: str) -> int:
    return round(len(text) / CPS * 24000) * 2


@pytest.mark.parametrize(
    "fault", [Fault.drop_connection(after_audio=CUT_AFTER_CHUNKS), Fault.stall_after(after_audio=CUT_AFTER_CHUNKS)]
)
async def test_a_cut_mid_reply_resumes_the_unspoken_rest_on_a_new_context(fault: Fault) -> None:
    async with fake() as f:
        f.faults.append(fault)
        # a stall is caught by the liveness watch: the socket owes the rest of S2's audio
        stream = StreamOptions(liveness_timeout_s=0.3, backoff=Backoff(initial_s=0.01))
        options = CartesiaOptions(url=f.url, api_key="key", stream=stream)
        head, tail = Recorder("head"), Recorder("tail")
        task = PipelineTask(Pipeline([head, CartesiaTTS(options), tail]), quiet_params())
        async with running(task):
            await task.queue_frames(reply(1, S1.strip(), " " + S2.strip(), " " + S3.strip()))
            await tail.wait_for(lambda: stopped(tail, 1))
    assert f.connections[0].ended in ("dropped", "stalled") and len(f.connections) == 2
    cut, resumed = f.contexts.values()
    assert cut["audio_bytes"] == CUT_BYTES and not f.connections[0].json_sent("done")
    # the new context speaks what was not heard: S2 from its start, and S3; never S1 again
    assert resumed["texts"] == [S2, S3, ""] and resumed["done"]
    assert resumed["audio_bytes"] == pcm_bytes(S2 + S3)
    # the caller hears all of the reply, and of it twice only the start of S2 the cut fell in
    heard = audio_bytes(tail, 1)
    assert heard == cut["audio_bytes"] + resumed["audio_bytes"]
    assert pcm_bytes(S1 + S2 + S3) <= heard < pcm_bytes(S1 + S2 + S3) + pcm_bytes(S2)
    said, s1, s2, s3 = words(tail, 1), S1.split(), S2.split(), S3.split()
    assert said[: len(s1)] == s1 and said[-len(s2 + s3) :] == s2 + s3
    assert said[len(s1) : -len(s2 + s3)] == s2[: len(said) - len(s1 + s2 + s3)]  # the cut part of S2
    starts = [w.start_s for f in tail.of(TTSWordsFrame) for w in f.words]
    assert starts == sorted(starts)  # the resumed words are timed after the audio heard before
    assert not head.of(ErrorFrame, UP)


async def test_a_resume_that_cannot_reconnect_in_time_reports_the_lost_rest_at_its_virtual_deadline() -> None:
    clock = VirtualClock()
    async with fake() as f:
        f.faults += [Fault.drop_connection(after_audio=CUT_AFTER_CHUNKS)] + [Fault.reject(503)] * 200
        stream = StreamOptions(open_timeout_s=5.0, backoff=Backoff(initial_s=0.05, max_s=0.05))
        stream.max_reconnect_attempts = 1000  # the stream keeps trying; the resume gives up first
        options = CartesiaOptions(url=f.url, api_key="key", stream=stream)
        head, tail = Recorder("head"), Recorder("tail")
        task = PipelineTask(Pipeline([head, CartesiaTTS(options), tail]), quiet_params(), clock=clock)
        async with running(task):
            await task.queue_frames(reply(1, S1.strip(), " " + S2.strip(), " " + S3.strip()))
            await f.wait_for(lambda: len(f.connections) >= 2)  # the drop was seen: reconnecting
            await yield_rounds()
            await clock.advance(10 * NS_PER_S - 1)  # the resume waits 2 * open_timeout_s
            assert not head.of(ErrorFrame, UP)
            await clock.advance(1)
            await tail.wait_for(lambda: stopped(tail, 1), timeout_s=5)  # not 10 s of real time
    (error,) = head.of(ErrorFrame, UP)
    assert "not back within 10.0 s" in error.error and not error.fatal
    assert audio_bytes(tail, 1) == CUT_BYTES  # what came before the cut, then the error


async def test_a_socket_that_keeps_dropping_ends_the_utterance_after_max_resumes() -> None:
    async with fake() as f:
        f.faults += [Fault.drop_connection(after_audio=5)] * 3  # each cut inside S1: no progress
        stream = StreamOptions(backoff=Backoff(initial_s=0.01))
        options = CartesiaOptions(url=f.url, api_key="key", max_resumes=2, stream=stream)
        head, tail = Recorder("head"), Recorder("tail")
        task = PipelineTask(Pipeline([head, CartesiaTTS(options), tail]), quiet_params())
        async with running(task):
            await task.queue_frames(reply(1, S1.strip(), " " + S2.strip()))
            await tail.wait_for(lambda: stopped(tail, 1))
    (error,) = head.of(ErrorFrame, UP)
    assert "lost 3 times in one utterance" in error.error and not error.fatal
    assert [c["texts"][0] for c in f.contexts.values()] == [S1, S1, S1]  # two resumes, then the error
    assert audio_bytes(tail, 1) == 3 * 5 * 1920


async def test_a_cut_mid_utterance_without_timestamps_is_reported_and_the_next_utterance_works() -> None:
    async with fake() as f:
        f.faults.append(Fault.drop_connection(after_audio=3))
        options = CartesiaOptions(
            url=f.url, api_key="key", add_timestamps=False, stream=StreamOptions(backoff=Backoff(initial_s=0.01))
        )
        head, tail = Recorder("head"), Recorder("tail")
        task = PipelineTask(Pipeline([head, CartesiaTTS(options), tail]), quiet_params())
        async with running(task):
            await task.queue_frames(reply(1, "First answer, which gets cut off."))
            await tail.wait_for(lambda: stopped(tail, 1))
            await f.wait_for(lambda: len(f.connections) == 2)
            await task.queue_frames(reply(2, "Second answer."))
            await tail.wait_for(lambda: stopped(tail, 2))
    (error,) = head.of(ErrorFrame, UP)
    assert not error.fatal and "no word timestamps" in error.error
    assert audio_bytes(tail, 2) == pcm_bytes("Second answer. ")


async def test_a_cancelled_context_does_not_trip_the_liveness_watch() -> None:
    clock = VirtualClock()
    async with fake(ttfa=LatencyProfile(60.0)) as f:  # the first context hears nothing back
        stream = StreamOptions(liveness_timeout_s=3.0, backoff=Backoff(initial_s=0.01))
        options = CartesiaOptions(url=f.url, api_key="key", stream=stream)
        head, tail = Recorder("head"), Recorder("tail")
        task = PipelineTask(Pipeline([head, CartesiaTTS(options), tail]), quiet_params(), clock=clock)
        async with running(task):
            turn = task.turns.begin()
            await task.queue_frames(reply(turn, "Are you there?"))
            await f.wait_for(lambda: any(c["texts"] for c in f.contexts.values()))  # an answer is owed
            await task.queue_frame(InterruptionFrame(stale_upto=task.turns.interrupt()))
            await f.wait_for(lambda: any(c["cancelled"] for c in f.contexts.values()))
            await clock.advance(10 * NS_PER_S)  # far past the liveness deadline of the cancelled text
            f.options.ttfa = ZERO  # the next context answers at once
            turn2 = task.turns.begin()
            await task.queue_frames(reply(turn2, "Okay."))
            await tail.wait_for(lambda: stopped(tail, turn2))
    assert len(f.connections) == 1  # the socket was kept: no liveness reconnect
    assert words(tail, turn2) == ["Okay."]
    assert not head.of(ErrorFrame, UP)


async def test_concurrency_limit_errors_are_reported() -> None:
    async with fake(max_contexts=0) as f, speaking(f) as (task, head, tail):
        await task.queue_frames(reply(1, "Hello."))
        await tail.wait_for(lambda: stopped(tail, 1))
    (error,) = head.of(ErrorFrame, UP)
    assert "concurrency_limited" in error.error and not error.fatal


async def test_a_rejected_key_fails_setup() -> None:
    async with CartesiaFake(api_key="right") as f:
        tts = CartesiaTTS(CartesiaOptions(url=f.url, api_key="wrong"))
        task = PipelineTask(Pipeline([tts]), quiet_params())
        with pytest.raises(PipelineError, match="401"), anyio.fail_after(5):
            await task.run()


async def test_a_stalled_server_fails_the_utterance_instead_of_hanging() -> None:
    async with fake() as f:
        f.faults.append(Fault.stall_after(after_received=1))
        options = CartesiaOptions(url=f.url, api_key="key", reply_timeout_s=0.3)
        head, tail = Recorder("head"), Recorder("tail")
        task = PipelineTask(Pipeline([head, CartesiaTTS(options), tail]), quiet_params())
        async with running(task):
            await task.queue_frames(reply(1, "Anyone there?"))
            await tail.wait_for(lambda: stopped(tail, 1))
    (error,) = head.of(ErrorFrame, UP)
    assert "no answer for 0.3 s" in error.error and not error.fatal
    assert audio_bytes(tail, 1) == 0


async def test_a_reply_whose_audio_stops_before_its_end_fails_instead_of_hanging() -> None:
    async with fake() as f:
        f.faults.append(Fault.stall_after(after_audio=5))
        # no liveness watch: the reply timeout is all that notices
        options = CartesiaOptions(url=f.url, api_key="key", reply_timeout_s=0.3, stream=StreamOptions())
        head, tail = Recorder("head"), Recorder("tail")
        task = PipelineTask(Pipeline([head, CartesiaTTS(options), tail]), quiet_params())
        async with running(task):
            await task.queue_frames(reply(1, S1.strip()))
            await tail.wait_for(lambda: stopped(tail, 1))
    (error,) = head.of(ErrorFrame, UP)
    assert "no answer for 0.3 s" in error.error and not error.fatal
    assert audio_bytes(tail, 1) == 5 * 1920


async def test_the_reply_timeout_fires_at_exactly_its_virtual_time() -> None:
    clock = VirtualClock()
    async with fake() as f:
        f.faults.append(Fault.stall_after(after_received=1))
        # The liveness watch is off so that the reply timeout is what fires.
        options = CartesiaOptions(url=f.url, api_key="key", reply_timeout_s=30.0, stream=StreamOptions())
        head, tail = Recorder("head"), Recorder("tail")
        task = PipelineTask(Pipeline([head, CartesiaTTS(options), tail]), quiet_params(), clock=clock)
        async with running(task):
            await task.queue_frames(reply(1, "Anyone there?"))
            with anyio.fail_after(5):
                await clock.wait_sleepers(1)  # the text went out; its reply deadline is on the injected clock
            await clock.advance(30 * NS_PER_S - 1)
            assert not head.of(ErrorFrame, UP)
            await clock.advance(1)
            await tail.wait_for(lambda: stopped(tail, 1))
    (error,) = head.of(ErrorFrame, UP)
    assert "no answer for 30.0 s" in error.error


async def test_a_socket_silent_before_any_audio_is_replaced_and_the_reply_spoken() -> None:
    async with fake() as f:
        f.faults.append(Fault.stall_after(after_received=1))
        stream = StreamOptions(liveness_timeout_s=0.3, backoff=Backoff(initial_s=0.01))
        options = CartesiaOptions(url=f.url, api_key="key", stream=stream)
        head, tail = Recorder("head"), Recorder("tail")
        task = PipelineTask(Pipeline([head, CartesiaTTS(options), tail]), quiet_params())
        async with running(task):
            await task.queue_frames(reply(1, "Anyone there?"))
            await tail.wait_for(lambda: stopped(tail, 1))
    assert f.connections[0].ended == "stalled" and len(f.connections) == 2
    assert words(tail, 1) == ["Anyone", "there?"]
    assert not head.of(ErrorFrame, UP)
