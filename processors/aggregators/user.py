"""The user aggregator: a user turn's final transcripts become one user message and a reply.

It sits after the STT. Transcripts are gathered while the user speaks; when the user has
stopped (the VAD's `UserStoppedSpeakingFrame`) and no interim is still waiting for its final,
the text goes into the shared context as one user message, a new turn begins
(`turns.begin()`) and an `LLMContextFrame(turn=N)` starts the reply. Text the user typed
(`UserTextFrame`, a client's RTVI `send-text`) is such a turn at once. A final that arrives after
the user stopped (Deepgram's answer to Finalize, a Whisper transcript) completes the turn on
arrival; a pipeline without a VAD commits each final as it comes.

Preemptive replies (`preemptive=True`, with a VAD that sends pauses): when the user pauses with
every word final, the reply starts right away instead of at the VAD's stop, so the services'
latency overlaps the stop's wait. The output transport holds the reply's audio, and the LLM its
tool calls, until the stop confirms the turn. If the user goes on speaking, the reply is
interrupted unheard, the context is rolled back to before its user message, and those words
open the turn again, to be answered with the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anyio

from voxframe.pipeline import (
    DOWN,
    UP,
    BotStoppedSpeakingFrame,
    Direction,
    Frame,
    FrameProcessor,
    InterimTranscriptionFrame,
    LLMContext,
    LLMContextFrame,
    TranscriptionFrame,
    UserPausedSpeakingFrame,
    UserResumedSpeakingFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    UserTextFrame,
)
from voxframe.pipeline.clock import NS_PER_S


@dataclass(slots=True)
class UserAggregatorOptions:
    #: After the user stopped with an interim still open, wait this long for its final; then
    #: answer with the interim text (and ignore that final when it comes late).
    final_timeout_s: float = 1.0
    #: When the user finishes a new turn while the previous reply is still unfinished (thinking,
    #: not yet spoken), interrupt it: the model answers both messages at once.
    interrupt_unfinished_reply: bool = True
    #: Start the reply when the user pauses with every word final, before the VAD's stop. The
    #: stop still decides when the bot may speak; the price is an LLM request for each pause
    #: after which the user goes on.
    preemptive: bool = False


@dataclass(slots=True)
class _Committed:
    """A user message in the context and the reply it started."""

    turn: int
    text: str
    message: dict[str, Any]


class UserContextAggregator(FrameProcessor):
    def __init__(self, context: LLMContext, options: UserAggregatorOptions | None = None, *, name: str | None = None):
        super().__init__(name=name)
        self.context = context
        self.options = options or UserAggregatorOptions()
        self._finals: list[str] = []
        self._interim = ""  # the open interim (not yet covered by a final)
        self._speaking = False
        self._paused = False
        # Speech after a pause whose words no final has covered yet (a final that answers the
        # Finalize of a later pause or of the stop covers them).
        self._words_pending = False
        self._preempted: _Committed | None = None  # a reply started at a pause, not yet confirmed
        self._ignore_next_final = False
        self._timer: anyio.CancelScope | None = None
        self._replied_upto = 0  # highest turn whose audio finished (BotStopped seen upstream)

    async def process(self, frame: Frame, direction: Direction) -> None:
        if direction is UP:
            if isinstance(frame, BotStoppedSpeakingFrame):
                self._replied_upto = max(self._replied_upto, frame.turn)
            await self.push(frame, direction)
        elif isinstance(frame, InterimTranscriptionFrame):
            self._interim = frame.text
        elif isinstance(frame, TranscriptionFrame):
            await self._on_final(frame.text)
        elif isinstance(frame, UserTextFrame):
            await self._on_typed(frame.text)
        elif isinstance(frame, UserStartedSpeakingFrame):
            self._speaking = True
            self._paused = self._words_pending = False
            self._ignore_next_final = False
            self._stop_timer()
            await self.push(frame, direction)
        elif isinstance(frame, UserPausedSpeakingFrame):
            self._paused = True
            await self.push(frame, direction)
            await self._preempt()
        elif isinstance(frame, UserResumedSpeakingFrame):
            self._paused = False
            self._words_pending = True
            await self.push(frame, direction)
            await self._withdraw()
        elif isinstance(frame, UserStoppedSpeakingFrame):
            self._speaking = self._paused = False
            self._preempted = None  # the stop confirms the reply prepared at the pause
            await self.push(frame, direction)
            await self._on_user_stopped()
        else:
            await self.push(frame, direction)

    async def _on_final(self, text: str) -> None:
        self._interim = ""
        if self._paused or not self._speaking:
            self._words_pending = False
        if self._ignore_next_final and not self._speaking:
            self._ignore_next_final = False  # its interim was answered already
            return
        if text.strip():
            self._finals.append(text.strip())
        if not self._speaking:
            await self._commit()
        elif self._paused:
            await self._preempt()

    async def _on_typed(self, text: str) -> None:
        """Typed text is a whole turn at once: it goes now, with any words already final."""
        if text.strip():
            self._finals.append(text.strip())
            await self._commit()

    async def _on_user_stopped(self) -> None:
        if self._interim or self._words_pending:
            self._start_timer()  # the final that covers them is on its way
        elif self._finals:
            await self._commit()
        # Nothing heard yet: a final that arrives later commits on arrival.

    def _start_timer(self) -> None:
        self._stop_timer()
        self._timer = anyio.CancelScope()
        deadline = self.clock.now_ns() + int(self.options.final_timeout_s * NS_PER_S)
        self.task_group.start_soon(self._commit_at, self._timer, deadline)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _commit_at(self, scope: anyio.CancelScope, deadline_ns: int) -> None:
        with scope:
            await self.clock.sleep_until(deadline_ns)
            self._timer = None
            if self._interim:
                self._finals.append(self._interim.strip())
                self._interim = ""
                self._ignore_next_final = True
            await self._commit()

    async def _preempt(self) -> None:
        """The user paused with every word final: start the reply now (the stop confirms it)."""
        if not self.options.preemptive or not self._finals or self._interim or self._words_pending:
            return
        await self._withdraw()  # a reply prepared on fewer words: answer them all instead
        self._preempted = await self._commit()

    async def _withdraw(self) -> None:
        """The user goes on: drop the reply prepared at the pause, unheard, and reopen its words."""
        preempted, self._preempted = self._preempted, None
        if preempted is None:
            return
        if not self.turns.is_stale(preempted.turn):
            await self.interrupt("the user went on speaking")
        messages = self.context.messages
        for i in range(len(messages) - 1, -1, -1):
            if messages[i] is preempted.message:
                del messages[i:]  # and what the reply's tools added after it
                break
        self._finals.insert(0, preempted.text)

    async def _commit(self) -> _Committed | None:
        """The user's turn is complete: one user message, a new turn, a reply."""
        self._stop_timer()
        text = " ".join(t for t in self._finals if t)
        self._finals.clear()
        if not text:
            return None
        turns = self.turns
        unfinished = turns.current > max(turns.stale_upto, self._replied_upto)
        if unfinished and self.options.interrupt_unfinished_reply:
            await self.interrupt("user spoke again before the reply finished")
        self.context.add("user", text)
        committed = _Committed(turns.begin(), text, self.context.messages[-1])
        await self.push(LLMContextFrame(context=self.context, turn=committed.turn), DOWN)
        return committed


__all__ = ["UserAggregatorOptions", "UserContextAggregator"]
