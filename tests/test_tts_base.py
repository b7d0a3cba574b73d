"""The TTS base: clause streaming, turn/pts stamping, word timings, interruption, failures."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from tests.pipeline_helpers import quiet_params
from tests.support import Recorder, running
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
    PipelineTask,
    TTSAudioFrame,
    TTSSpeakFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSWordsFrame,
    WordTiming,
)
from voxframe.processors.tts import TTSChunk, TTSOptions, TTSService

pytestmark = pytest.mark.anyio

RATE = 16_000
SAMPLES_PER_CHAR = 160  # 10 ms of audio per character


class ScriptedTTS(TTSService):
    """A provider double at the I/O boundary: 10 ms of audio per character, in 3 chunks.

    `hold` blocks each clause after its first chunk until the test releases it.
    """

    def __init__(self, *, words: bool = False, fail_on: str | None = None) -> None:
        super().__init__(TTSOptions(sample_rate=RATE))
        self.texts: list[str] = []
        self.words = words
        self.fail_on = fail_on
        self.hold: anyio.Event | None = None
        self.first_chunk = anyio.Event()
        self.closed: list[str] = []
        self.cut = anyio.Event()  # a clause was closed before all its audio was out

    async def synthesize(self, text: str, turn: int) -> AsyncIterator[TTSChunk]:
        self.texts.append(text)
        if text == self.fail_on:
            raise ConnectionError("provider went away")
        audio = bytes(2 * SAMPLES_PER_CHAR * len(text))
        third = len(audio) // 3 + 1  # odd on purpose: the base must keep samples whole
        done = False
        try:
            if self.words:
                yield [WordTiming(w, i * 0.1, i * 0.1 + 0.05) for i, w in enumerate(text.split())]
            yield audio[:third]
            self.first_chunk.set()
            if self.hold is not None:
                await self.hold.wait()
            yield audio[third:]
            done = True
        finally:
            self.closed.append(text)
            if not done:
                self.cut.set()


async def speak(tts: ScriptedTTS, frames: list[Frame], until: type[Frame] = TTSStoppedFrame) -> Recorder:
    tail = Recorder("tail")
    task = PipelineTask(Pipeline([tts, tail]), quiet_params())
    async with running(task):
        await task.queue_frames(frames)
        await tail.wait_for(lambda: bool(tail.of(until)))
    return tail


def reply(turn: int, *tokens: str) -> list[Frame]:
    return [
        LLMResponseStartFrame(turn=turn),
        *(LLMTextFrame(text=t, turn=turn) for t in tokens),
        LLMResponseEndFrame(turn=turn),
    ]


async def test_the_first_clause_is_synthesised_before_the_reply_ends() -> None:
    tts = ScriptedTTS()
    tail = Recorder("tail")
    task = PipelineTask(Pipeline([tts, tail]), quiet_params())
    async with running(task):
        await task.queue_frames(
            [
                LLMResponseStartFrame(turn=1),
                LLMTextFrame(text="Hello there.", turn=1),
                LLMTextFrame(text=" How", turn=1),
            ]
        )
        await tail.wait_for(lambda: bool(tail.of(TTSAudioFrame)))  # the reply has not ended
        assert tts.texts == ["Hello there."]
        await task.queue_frames([LLMTextFrame(text=" are you?", turn=1), LLMResponseEndFrame(turn=1)])
        await tail.wait_for(lambda: bool(tail.of(LLMResponseEndFrame)))
    assert tts.texts == ["Hello there.", "How are you?"]
    assert not tail.of(LLMTextFrame)  # text is consumed; words frames say what is spoken


async def test_audio_is_stamped_with_turn_and_contiguous_pts_and_ends_before_the_response_end() -> None:
    tts = ScriptedTTS()
    tail = await speak(tts, reply(3, "One two three. ", "Four five."), until=LLMResponseEndFrame)
    kinds = [type(f) for f in tail.down if not f.is_system]
    assert kinds[:2] == [LLMResponseStartFrame, TTSStartedFrame]
    assert kinds[-2:] == [TTSStoppedFrame, LLMResponseEndFrame]
    audio = tail.of(TTSAudioFrame)
    assert {f.turn for f in audio} == {3} and {f.sample_rate for f in audio} == {RATE}
    pts = 0
    for frame in audio:
        assert frame.pts == pts and len(frame.audio) % 2 == 0
        pts += frame.num_samples
    assert pts == SAMPLES_PER_CHAR * len("One two three.Four five.")


async def test_estimated_word_timings_cover_each_clause_from_the_turn_start() -> None:
    tts = ScriptedTTS()
    tail = await speak(tts, reply(1, "Hi there. ", "Bye now."), until=LLMResponseEndFrame)
    words = [w for f in tail.of(TTSWordsFrame) for w in f.words]
    assert [w.word for w in words] == ["Hi", "there.", "Bye", "now."]
    first_clause_s = SAMPLES_PER_CHAR * len("Hi there.") / RATE
    assert words[0].start_s == 0.0
    assert words[1].end_s == pytest.approx(first_clause_s)
    assert words[2].start_s == pytest.approx(first_clause_s)
    assert words[3].end_s == pytest.approx(first_clause_s + SAMPLES_PER_CHAR * len("Bye now.") / RATE)


async def test_provider_word_timings_are_shifted_to_the_turn_clock() -> None:
    tts = ScriptedTTS(words=True)
    tail = await speak(tts, reply(1, "Hi there. ", "Bye now."), until=LLMResponseEndFrame)
    words = [w for f in tail.of(TTSWordsFrame) for w in f.words]
    offset = SAMPLES_PER_CHAR * len("Hi there.") / RATE
    assert [(w.word, w.start_s) for w in words] == [
        ("Hi", 0.0),
        ("there.", 0.1),
        ("Bye", pytest.approx(offset)),
        ("now.", pytest.approx(offset + 0.1)),
    ]


async def test_speak_frame_is_one_utterance_and_traces_first_text_and_audio() -> None:
    tts = ScriptedTTS()
    tail = Recorder("tail")
    task = PipelineTask(Pipeline([tts, tail]), quiet_params())
    async with running(task):
        await task.queue_frame(TTSSpeakFrame(text="Hello. I am a bot, at your service.", turn=2))
        await tail.wait_for(lambda: bool(tail.of(TTSStoppedFrame)))
    assert tts.texts == ["Hello. I am a bot, at your service."]
    points = task.tracer.turn(2)
    assert points["tts_first_text"] <= points["tts_first_audio"]
    # What the TTS was sent (its usage, in characters), then its time to first audio.
    metrics = tail.of(MetricsFrame)
    assert [f.metric for f in metrics] == ["tts_characters", "ttfa"]
    assert metrics[0].value == len("Hello. I am a bot, at your service.")


async def test_interruption_cancels_synthesis_and_the_next_turn_is_spoken() -> None:
    tts = ScriptedTTS()
    tts.hold = anyio.Event()  # never set: the clause stalls after its first chunk
    tail = Recorder("tail")
    task = PipelineTask(Pipeline([tts, tail]), quiet_params())
    async with running(task):
        turn = task.turns.begin()
        await task.queue_frames(reply(turn, "A long first sentence. ", "And more text"))
        with anyio.fail_after(5):
            await tts.first_chunk.wait()
        await task.queue_frame(InterruptionFrame(stale_upto=task.turns.interrupt()))
        await tail.wait_for(lambda: bool(tail.of(InterruptionFrame)))
        with anyio.fail_after(5):
            await tts.cut.wait()
        assert tts.closed == ["A long first sentence."]
        tts.hold = None
        turn2 = task.turns.begin()
        await task.queue_frames(reply(turn2, "New reply."))
        await tail.wait_for(lambda: any(f.turn == turn2 for f in tail.of(TTSStoppedFrame)))
    assert tts.texts == ["A long first sentence.", "New reply."]  # pending text was dropped
    first_turn_audio = [f for f in tail.of(TTSAudioFrame) if f.turn == turn]
    assert sum(f.num_samples for f in first_turn_audio) < SAMPLES_PER_CHAR * len("A long first sentence.")
    assert next(f.pts for f in tail.of(TTSAudioFrame) if f.turn == turn2) == 0


async def test_a_failed_synthesis_reports_an_error_and_the_session_goes_on() -> None:
    tts = ScriptedTTS(fail_on="Broken.")
    head = Recorder("head")
    tail = Recorder("tail")
    task = PipelineTask(Pipeline([head, tts, tail]), quiet_params())
    async with running(task):
        await task.queue_frames([*reply(1, "Broken."), *reply(2, "Fine.")])
        await tail.wait_for(lambda: any(f.turn == 2 for f in tail.of(LLMResponseEndFrame)))
    errors = head.of(ErrorFrame, UP)
    assert len(errors) == 1 and not errors[0].fatal and "provider went away" in errors[0].error
    assert [f.turn for f in tail.of(TTSStoppedFrame)] == [1, 2]
    assert {f.turn for f in tail.of(TTSAudioFrame)} == {2}
    assert not task.finished or task.error is None
