"""The assistant aggregator: records in the context what the bot actually said.

It sits after the output transport. Spoken replies are known word by word from `TTSWordsFrame`
timings (seconds from the start of the turn's audio); when the transport reports the end of a
turn's playback (`BotStoppedSpeakingFrame(turn=N, played_s, interrupted)`), the words whose
playback had started are appended as one assistant message. An interrupted reply keeps only the
words begun before the cut and is marked ``"interrupted": True`` (clients drop that key before
sending the context to a provider). A reply that was never played leaves no trace.

Without TTS (a text bot) the aggregator sees `LLMTextFrame`s instead and records the text at
`LLMResponseEndFrame`, or what had arrived by an interruption.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from voxframe.pipeline import (
    DOWN,
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    Direction,
    Frame,
    FrameProcessor,
    InterruptionFrame,
    LLMContext,
    LLMResponseEndFrame,
    LLMTextFrame,
    TTSWordsFrame,
    WordTiming,
)


@dataclass(slots=True)
class _Heard:
    """What is known of one reply so far."""

    words: list[WordTiming] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    playing: bool = False
    message: dict[str, Any] | None = None  # the context entry, once written


class AssistantContextAggregator(FrameProcessor):
    def __init__(self, context: LLMContext, *, name: str | None = None) -> None:
        super().__init__(name=name)
        self.context = context
        self._replies: dict[int, _Heard] = {}

    async def process(self, frame: Frame, direction: Direction) -> None:
        if direction is DOWN:
            await self._observe(frame)
        await self.push(frame, direction)

    async def _observe(self, frame: Frame) -> None:
        if isinstance(frame, TTSWordsFrame):
            self._reply(frame.turn).words.extend(frame.words)
        elif isinstance(frame, LLMTextFrame):
            self._reply(frame.turn).text.append(frame.text)
        elif isinstance(frame, BotStartedSpeakingFrame):
            self._reply(frame.turn).playing = True
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._on_playback_end(frame)
        elif isinstance(frame, LLMResponseEndFrame):
            self._on_text_end(frame.turn, interrupted=False)
        elif isinstance(frame, InterruptionFrame):
            self._on_interruption(frame.stale_upto)

    def _reply(self, turn: int) -> _Heard:
        heard = self._replies.get(turn)
        if heard is None:
            # A new reply: earlier ones that are not playing are complete; forget them.
            for old in [t for t, h in self._replies.items() if t < turn and not h.playing]:
                del self._replies[old]
            heard = self._replies[turn] = _Heard()
        return heard

    def _on_playback_end(self, frame: BotStoppedSpeakingFrame) -> None:
        heard = self._replies.get(frame.turn)
        if heard is None:
            return
        heard.playing = False
        if frame.interrupted:
            spoken = [w for w in heard.words if w.start_s < frame.played_s]
            self._write(heard, spoken, interrupted=True)
            del self._replies[frame.turn]
        else:
            # Playback may pause and resume within a reply (a slow synthesis): keep the words
            # in `heard`, extend the same message if more follow.
            self._write(heard, heard.words, interrupted=False)
            heard.words = []

    def _on_text_end(self, turn: int, *, interrupted: bool) -> None:
        heard = self._replies.get(turn)
        if heard is None or heard.words or heard.playing:
            return  # a spoken reply: playback decides
        if heard.text:
            text = "".join(heard.text).strip()
            if text:
                self._append(heard, text, interrupted=interrupted)
        if heard.message is None or interrupted:
            self._replies.pop(turn, None)
        else:
            heard.text = []

    def _on_interruption(self, stale_upto: int) -> None:
        for turn in [t for t in self._replies if t <= stale_upto]:
            heard = self._replies[turn]
            if heard.playing:
                continue  # the transport's BotStopped(interrupted) says how much was heard
            if heard.text and not heard.words:
                self._on_text_end(turn, interrupted=True)
            self._replies.pop(turn, None)

    def _write(self, heard: _Heard, words: list[WordTiming], *, interrupted: bool) -> None:
        text = " ".join(w.word.strip() for w in words if w.word.strip())
        if text:
            self._append(heard, text, interrupted=interrupted)
        elif interrupted and heard.message is not None:
            heard.message["interrupted"] = True

    def _append(self, heard: _Heard, text: str, *, interrupted: bool) -> None:
        if heard.message is None:
            heard.message = {"role": "assistant", "content": text}
            self.context.messages.append(heard.message)
        else:
            heard.message["content"] = f"{heard.message['content']} {text}"
        if interrupted:
            heard.message["interrupted"] = True


__all__ = ["AssistantContextAggregator"]
