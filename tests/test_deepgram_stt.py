"""DeepgramSTT against the Deepgram fake: transcripts, Finalize, keepalive, faults, reconnect."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from tests.pipeline_helpers import quiet_params
from tests.providers_helpers import RATE, frames, silence, speech
from tests.support import Recorder, running
from voxframe.fakes import ZERO, DeepgramFake, DeepgramFakeOptions, Fault
from voxframe.pipeline import (
    EndFrame,
    InputAudioFrame,
    InterimTranscriptionFrame,
    MetricsFrame,
    Pipeline,
    PipelineError,
    PipelineTask,
    TranscriptionFrame,
    UserStoppedSpeakingFrame,
)
from voxframe.pipeline.clock import NS_PER_S, VirtualClock
from voxframe.processors.streaming import Backoff
from voxframe.processors.streaming.websocket import StreamOptions
from voxframe.processors.stt.deepgram import DeepgramOptions, DeepgramSTT

pytestmark = pytest.mark.anyio


def stt_for(fake: DeepgramFake, **kwargs: Any) -> DeepgramSTT:
    stream = kwargs.pop("stream", StreamOptions(keepalive_interval_s=5.0, backoff=Backoff(initial_s=0.01)))
    return DeepgramSTT(DeepgramOptions(url=fake.url, api_key="key", stream=stream, **kwargs))


@asynccontextmanager
async def transcribing(fake: DeepgramFake, **kwargs: Any) -> AsyncIterator[tuple[PipelineTask, Recorder]]:
    tail = Recorder("tail")
    task = PipelineTask(Pipeline([stt_for(fake, **kwargs), tail]), quiet_params())
    async with running(task):
        yield task, tail


async def say(task: PipelineTask, pcm: bytes) -> None:
    await task.queue_frames(InputAudioFrame(audio=f, sample_rate=RATE) for f in frames(pcm))


def finals(tail: Recorder) -> list[str]:
    return [f.text for f in tail.of(TranscriptionFrame)]


async def test_the_audio_goes_on_after_the_stt() -> None:
    async with DeepgramFake(DeepgramFakeOptions(final_latency=ZERO)) as fake, transcribing(fake) as (task, tail):
        await say(task, silence(0.1))
        await tail.wait_for(lambda: len(tail.of(InputAudioFrame)) == len(frames(silence(0.1))))


async def test_interims_then_a_final_for_each_utterance() -> None:
    options = DeepgramFakeOptions(transcripts=["Hello there, how are you?", "Fine."], final_latency=ZERO)
    async with DeepgramFake(options) as fake, transcribing(fake) as (task, tail):
        await say(task, speech(1.5) + silence(0.5) + speech(0.4) + silence(0.5))
        await tail.wait_for(lambda: len(finals(tail)) == 2)
    assert finals(tail) == ["Hello there, how are you?", "Fine."]
    # Deepgram's own endpointing ended each (the turn controller's SttEndpointing reads this).
    assert [f.speech_final for f in tail.of(TranscriptionFrame)] == [True, True]
    kinds = [type(f) for f in tail.down if isinstance(f, (InterimTranscriptionFrame, TranscriptionFrame))]
    assert kinds.index(TranscriptionFrame) > kinds.index(InterimTranscriptionFrame)
    query = fake.connections[0].query
    assert (query["encoding"], query["sample_rate"], query["interim_results"]) == ("linear16", "16000", "true")
    assert fake.connections[0].headers["authorization"] == "Token key"


async def test_finalize_on_end_of_speech_brings_the_final_and_traces_it() -> None:
    options = DeepgramFakeOptions(transcripts=["Book a table for two."], final_latency=ZERO)
    async with DeepgramFake(options) as fake, transcribing(fake, endpointing_ms=None) as (task, tail):
        await say(task, speech(1.2) + silence(0.2))
        await fake.wait_for(lambda: len(fake.connections[0].audio) == len(speech(1.2) + silence(0.2)))
        assert not finals(tail)  # no endpointing: only Finalize makes the final
        await task.queue_frame(UserStoppedSpeakingFrame())
        await tail.wait_for(lambda: bool(finals(tail)))
    assert finals(tail) == ["Book a table for two."]
    assert [f.speech_final for f in tail.of(TranscriptionFrame)] == [False]  # Finalize's answer
    assert fake.connections[0].json_received("Finalize")
    assert "stt_final" in task.tracer.turn(1)
    assert [f.metric for f in tail.of(MetricsFrame)] == ["stt_final_s"]


async def test_keepalive_holds_an_idle_stream_open() -> None:
    options = DeepgramFakeOptions(idle_timeout_s=0.3)
    stream = StreamOptions(keepalive_interval_s=0.05)
    async with DeepgramFake(options) as fake, transcribing(fake, stream=stream):
        conn = fake.connections[0]
        await fake.wait_for(lambda: len(conn.json_received("KeepAlive")) >= 10)  # 0.5 s of silence
        assert not conn.ended and len(fake.connections) == 1


async def test_the_keepalive_goes_out_after_each_interval_with_nothing_sent_on_virtual_time() -> None:
    clock = VirtualClock()
    # 30 s: far longer than the test runs in real time, so only virtual time can bring it.
    stream = StreamOptions(keepalive_interval_s=30.0)  # no liveness watch: only the keepalive sleeps
    async with DeepgramFake() as fake:
        task = PipelineTask(Pipeline([stt_for(fake, stream=stream)]), quiet_params(), clock=clock)
        async with running(task):
            conn = fake.connections[0]
            # Audio is a marker: the socket is ordered, so a KeepAlive sent before it arrives first.
            await clock.advance(30 * NS_PER_S - 1)
            await say(task, silence(0.02))
            await fake.wait_for(lambda: len(conn.received) == 1)
            await clock.advance(30 * NS_PER_S - 1)  # 60 s after connecting, but not 30 s after the audio
            await say(task, silence(0.02))
            await fake.wait_for(lambda: len(conn.received) == 2)
            assert conn.received == [640, 640]
            await clock.advance(30 * NS_PER_S)  # exactly 30 s after the last audio
            await fake.wait_for(lambda: len(conn.received) == 3)
    assert conn.received[2] == {"type": "KeepAlive"} and len(fake.connections) == 1


async def test_after_an_idle_close_it_reconnects_and_transcribes() -> None:
    options = DeepgramFakeOptions(transcripts=["Still here?"], idle_timeout_s=0.1, final_latency=ZERO)
    stream = StreamOptions(keepalive_interval_s=None, backoff=Backoff(initial_s=0.01))
    async with DeepgramFake(options) as fake, transcribing(fake, stream=stream) as (task, tail):
        await fake.wait_for(lambda: fake.connections[0].ended == "closed 1011")
        await fake.wait_for(lambda: len(fake.connections) == 2)
        await say(task, speech(0.6) + silence(0.4))
        await tail.wait_for(lambda: bool(finals(tail)))
    assert finals(tail) == ["Still here?"]


async def test_a_rejected_key_fails_setup_with_a_clear_error() -> None:
    async with DeepgramFake(api_key="right") as fake:
        task = PipelineTask(Pipeline([stt_for(fake)]), quiet_params())
        with pytest.raises(PipelineError, match="401"), anyio.fail_after(5):
            await task.run()
    assert len(fake.connections) == 1  # a bad key is not retried


async def test_a_429_at_the_handshake_is_retried() -> None:
    async with DeepgramFake(DeepgramFakeOptions(transcripts=["Hi."], final_latency=ZERO)) as fake:
        fake.faults.append(Fault.reject(429, retry_after_s=0.0))
        async with transcribing(fake) as (task, tail):
            await say(task, speech(0.5) + silence(0.4))
            await tail.wait_for(lambda: bool(finals(tail)))
    assert [c.status for c in fake.connections] == [429, 101]
    assert finals(tail) == ["Hi."]


async def test_a_mid_utterance_drop_loses_and_repeats_nothing() -> None:
    options = DeepgramFakeOptions(transcripts=["One.", "Two words.", "Three."], final_latency=ZERO)
    first, second, third = speech(0.6) + silence(0.5), speech(1.0) + silence(0.5), speech(0.6) + silence(0.5)
    async with DeepgramFake(options) as fake, transcribing(fake) as (task, tail):
        await say(task, first)
        await tail.wait_for(lambda: finals(tail) == ["One."])
        conn = fake.connections[0]
        conn.fault = Fault.drop_connection(after_received=len(conn.received) + 25)  # 0.5 s into "Two words."
        await say(task, second + third)
        await tail.wait_for(lambda: len(finals(tail)) == 3)
        await fake.wait_for(lambda: len(fake.connections[1].audio) >= len(second + third) - len(silence(0.5)))
    assert finals(tail) == ["One.", "Two words.", "Three."]
    assert [c.ended for c in fake.connections[:1]] == ["dropped"]
    (final_one,) = conn.json_sent("Results")[-1:]
    final_end = round((final_one["start"] + final_one["duration"]) * RATE) * 2
    everything = first + second + third
    replayed = bytes(fake.connections[1].audio)
    assert replayed == everything[final_end : final_end + len(replayed)]  # from the last final, in order


async def test_end_of_session_flushes_the_last_words_before_the_end_frame() -> None:
    options = DeepgramFakeOptions(transcripts=["Goodbye."], final_latency=ZERO)
    async with DeepgramFake(options) as fake:
        tail = Recorder("tail")
        task = PipelineTask(Pipeline([stt_for(fake, endpointing_ms=None), tail]), quiet_params())
        async with running(task):
            await say(task, speech(0.6))
            await task.stop_when_done()
            await tail.wait_for(lambda: bool(tail.of(EndFrame)))
        assert fake.connections[0].json_received("CloseStream")
        assert fake.connections[0].ended == "closed 1000"
    assert finals(tail) == ["Goodbye."]
    assert tail.down.index(tail.of(TranscriptionFrame)[0]) < tail.down.index(tail.of(EndFrame)[0])


async def test_the_pipeline_input_rate_is_what_deepgram_is_asked_for() -> None:
    options = DeepgramFakeOptions(transcripts=["Telephone quality."], final_latency=ZERO)
    async with DeepgramFake(options) as fake:
        tail = Recorder("tail")
        task = PipelineTask(Pipeline([stt_for(fake), tail]), quiet_params(audio_in_sample_rate=8000))
        async with running(task):
            pcm = speech(0.8, rate=8000) + silence(0.5, rate=8000)
            await task.queue_frames(InputAudioFrame(audio=f, sample_rate=8000) for f in frames(pcm, 320))
            await tail.wait_for(lambda: bool(finals(tail)))
    assert finals(tail) == ["Telephone quality."]
    assert fake.connections[-1].query["sample_rate"] == "8000"
    assert bytes(fake.connections[-1].audio) == pcm


async def test_a_stalled_stream_is_replaced_and_the_words_still_arrive() -> None:
    options = DeepgramFakeOptions(transcripts=["One.", "Two words."], final_latency=ZERO)
    stream = StreamOptions(keepalive_interval_s=5.0, liveness_timeout_s=0.5, backoff=Backoff(initial_s=0.01))
    async with DeepgramFake(options) as fake, transcribing(fake, stream=stream) as (task, tail):
        await say(task, speech(0.6) + silence(0.5))
        await tail.wait_for(lambda: finals(tail) == ["One."])
        conn = fake.connections[0]
        conn.fault = Fault.stall_after(after_received=len(conn.received) + 10)  # silent mid-utterance
        await say(task, speech(1.0) + silence(0.5))
        await tail.wait_for(lambda: len(finals(tail)) == 2)
    assert finals(tail) == ["One.", "Two words."]
    assert conn.ended == "stalled" and len(fake.connections) >= 2
