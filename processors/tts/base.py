"""`TTSService`: the part every text-to-speech processor shares.

What the base does, so a provider module only talks to its provider:

* consumes `TextFrame`/`LLMTextFrame` of a turn and cuts them into clauses with
  `SentenceSplitter`; the first clause goes to synthesis as soon as its punctuation is settled;
  `LLMResponseEndFrame` (and `EndFrame`) flush the rest and wait for its audio;
* `TTSSpeakFrame` is spoken as one utterance of its own (greetings, apologies);
* emits `TTSStartedFrame`, `TTSAudioFrame(turn=N, pts=samples since the turn's first sample)`,
  `TTSWordsFrame` (seconds since the turn's first sample), `TTSStoppedFrame`; text frames are
  consumed (the words frames say what is being spoken, with timing);
* traces `tts_first_text` (first text handed to the provider) and `tts_first_audio`, and sends a
  `ttfa` metric per utterance;
* an interruption cancels synthesis of the stale turn (its cancel scope) and drops pending text.

The subclass contract. Implement ONE of:

``synthesize(text, turn)``
    An async generator for one clause. Yield ``bytes`` (s16le mono PCM at ``self.sample_rate``,
    any chunk size) and optionally ``list[WordTiming]`` (seconds from the first sample *this
    call* yields). Clauses of an utterance are synthesised one after another. When a clause
    yields no timings the base estimates them from the clause's audio duration.

``synthesize_stream(texts, turn)``
    For providers that take streamed input (a Cartesia context): ``texts`` yields the clauses
    of one utterance as they settle and ends when the utterance does; yield audio and timings
    as above, timings in seconds from the first sample of the whole stream.

Either generator may be cancelled at any ``await`` (interruption); release provider state in
``finally`` (shield a short cancel message if the provider needs one). Exceptions become a
non-fatal `ErrorFrame` and end the utterance; the session goes on.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from voxframe.pipeline import (
    DOWN,
    Direction,
    EndFrame,
    Frame,
    FrameProcessor,
    InterruptionFrame,
    LLMResponseEndFrame,
    MetricsFrame,
    TextFrame,
    TTSAudioFrame,
    TTSSpeakFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSWordsFrame,
    WordTiming,
)
from voxframe.pipeline.aio import closing
from voxframe.pipeline.clock import NS_PER_S

from .sentences import SentenceOptions, SentenceSplitter

#: What a synthesis generator yields: audio bytes, or word timings.
TTSChunk = bytes | list[WordTiming]


@dataclass(slots=True)
class TTSOptions:
    #: Output sample rate; None takes the pipeline's `audio_out_sample_rate`.
    sample_rate: int | None = None
    sentences: SentenceOptions = field(default_factory=SentenceOptions)
    #: Estimate word timings from audio duration when the provider gives none.
    estimate_word_timings: bool = True


@dataclass(slots=True, eq=False)
class _Utterance:
    """One synthesis stream: the clauses of one reply (or one spoken text) and its task."""

    turn: int
    texts: MemoryObjectSendStream[str]
    done: anyio.Event = field(default_factory=anyio.Event)
    start_samples: int = 0
    first_text_ns: int | None = None
    carry: bytes = b""


class TTSService(FrameProcessor):
    concurrent = True

    def __init__(self, options: TTSOptions | None = None, *, name: str | None = None) -> None:
        super().__init__(name=name)
        self.tts_options = options or TTSOptions()
        self._splitter = SentenceSplitter(self.tts_options.sentences)
        self._utterance: _Utterance | None = None
        self._text_turn: int | None = None  # the turn of the text being gathered
        self._samples_turn = -1  # the turn `_samples` counts for
        self._samples = 0

    @property
    def sample_rate(self) -> int:
        return self.tts_options.sample_rate or self.start_frame.audio_out_sample_rate

    # --- the subclass contract ---------------------------------------------------------------

    async def synthesize(self, text: str, turn: int) -> AsyncIterator[TTSChunk]:
        """Audio (and optionally word timings) for one clause. See the module docstring."""
        raise NotImplementedError(f"{type(self).__name__} implements neither synthesize nor synthesize_stream")
        yield b""  # pragma: no cover  (makes this an async generator)

    async def synthesize_stream(self, texts: AsyncIterator[str], turn: int) -> AsyncIterator[TTSChunk]:
        """Audio for a stream of clauses; by default one `synthesize` call per clause."""
        offset_s = 0.0
        async for text in texts:
            nbytes, has_words = 0, False
            async with closing(self.synthesize(text, turn)) as chunks:
                async for chunk in chunks:
                    if isinstance(chunk, bytes):
                        nbytes += len(chunk)
                        yield chunk
                    else:
                        has_words = True
                        yield [WordTiming(w.word, w.start_s + offset_s, w.end_s + offset_s) for w in chunk]
            duration_s = nbytes // 2 / self.sample_rate
            if not has_words and self.tts_options.estimate_word_timings and nbytes:
                yield estimate_word_timings(text, offset_s, duration_s)
            offset_s += duration_s

    # --- frames ------------------------------------------------------------------------------

    async def process(self, frame: Frame, direction: Direction) -> None:
        if direction is not DOWN or frame.is_system:
            await self.push(frame, direction)
        elif isinstance(frame, TTSSpeakFrame):
            await self._add_text(frame.turn, frame.text, whole=True)
            await self._finish_utterance()
        elif isinstance(frame, TextFrame):
            await self._add_text(frame.turn, frame.text)
        elif isinstance(frame, (LLMResponseEndFrame, EndFrame)):
            await self._finish_utterance()
            await self.push(frame, direction)
        else:
            await self.push(frame, direction)

    async def handle_interruption(self, frame: InterruptionFrame, direction: Direction) -> None:
        # The synthesis task sits in the stale turn's cancel scope and is cancelled by the base;
        # here only the text not yet handed over is dropped.
        if self._text_turn is not None and self._text_turn <= frame.stale_upto:
            self._splitter.reset()
            self._text_turn = None
            if self._utterance is not None:
                self._utterance.texts.close()
                self._utterance = None

    async def cleanup(self) -> None:
        if self._utterance is not None:
            self._utterance.texts.close()
            self._utterance = None

    # --- utterances --------------------------------------------------------------------------

    async def _add_text(self, turn: int, text: str, *, whole: bool = False) -> None:
        if self._text_turn is not None and self._text_turn != turn:
            await self._finish_utterance()
        self._text_turn = turn
        segments = [self._splitter.flush(), text.strip()] if whole else self._splitter.push(text)
        for segment in segments:
            if segment:
                self._open_utterance(turn).texts.send_nowait(segment)

    async def _finish_utterance(self) -> None:
        """Hand over what is left of the text, then wait until its audio has been pushed."""
        rest = self._splitter.flush()
        if rest and self._text_turn is not None:
            self._open_utterance(self._text_turn).texts.send_nowait(rest)
        self._splitter.reset()
        self._text_turn = None
        utterance, self._utterance = self._utterance, None
        if utterance is not None:
            utterance.texts.close()
            await utterance.done.wait()

    def _open_utterance(self, turn: int) -> _Utterance:
        if self._utterance is None:
            send, receive = anyio.create_memory_object_stream[str](math.inf)
            if turn != self._samples_turn:
                self._samples_turn, self._samples = turn, 0
            self._utterance = _Utterance(turn=turn, texts=send, start_samples=self._samples)
            self.task_group.start_soon(self._speak, self._utterance, receive)
        return self._utterance

    async def _speak(self, utterance: _Utterance, texts: MemoryObjectReceiveStream[str]) -> None:
        """Run one utterance's synthesis and push its frames; cancelled with its turn."""
        turn = utterance.turn
        try:
            with self.interruptible(turn), texts:
                await self.push(TTSStartedFrame(turn=turn))
                try:
                    stream = self.synthesize_stream(self._traced(utterance, texts), turn)
                    async with closing(stream) as chunks:
                        async for chunk in chunks:
                            if isinstance(chunk, bytes):
                                await self._push_audio(utterance, chunk)
                            elif chunk:
                                await self._push_words(utterance, chunk)
                except Exception as exc:
                    await self.push_error(f"{self.name}: synthesis failed: {exc!r}", exception=exc)
                await self.push(TTSStoppedFrame(turn=turn))
        finally:
            utterance.done.set()

    async def _traced(self, utterance: _Utterance, texts: MemoryObjectReceiveStream[str]) -> AsyncIterator[str]:
        async for text in texts:
            if utterance.first_text_ns is None:
                utterance.first_text_ns = self.clock.now_ns()
                self.trace("tts_first_text", turn=utterance.turn, t_ns=utterance.first_text_ns)
            # What a TTS bills: the characters sent to it (usage, metrics).
            await self.push(MetricsFrame(processor=self.name, metric="tts_characters", value=float(len(text))))
            yield text

    async def _push_audio(self, utterance: _Utterance, chunk: bytes) -> None:
        data = utterance.carry + chunk if utterance.carry else chunk
        whole = len(data) - len(data) % 2
        utterance.carry = data[whole:]
        if not whole:
            return
        if self._samples == utterance.start_samples and utterance.first_text_ns is not None:
            now = self.clock.now_ns()
            self.trace("tts_first_audio", turn=utterance.turn, t_ns=now)
            ttfa = (now - utterance.first_text_ns) / NS_PER_S
            await self.push(MetricsFrame(processor=self.name, metric="ttfa", value=ttfa))
        frame = TTSAudioFrame(audio=data[:whole], sample_rate=self.sample_rate, pts=self._samples, turn=utterance.turn)
        self._samples += whole // 2
        await self.push(frame)

    async def _push_words(self, utterance: _Utterance, words: list[WordTiming]) -> None:
        offset = utterance.start_samples / self.sample_rate
        shifted = [WordTiming(w.word, w.start_s + offset, w.end_s + offset) for w in words]
        await self.push(TTSWordsFrame(words=shifted, turn=utterance.turn))


def estimate_word_timings(text: str, start_s: float, duration_s: float) -> list[WordTiming]:
    """Spread the words of `text` over `duration_s`, each in proportion to its length."""
    words = text.split()
    if not words:
        return []
    total = sum(len(w) + 1 for w in words)
    timings, t = [], start_s
    for word in words:
        span = duration_s * (len(word) + 1) / total
        timings.append(WordTiming(word, t, t + span))
        t += span
    return timings


__all__ = ["TTSChunk", "TTSOptions", "TTSService", "estimate_word_timings"]
