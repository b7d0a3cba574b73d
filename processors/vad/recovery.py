"""`ReplyRecovery`: the bot replies again after a false interruption instead of staying silent.

Placed right after the user aggregator, it remembers the context of the last reply it saw go
by; when a `FalseInterruptionFrame` arrives (the VAD saw speech that voided a reply but no words
followed) it begins a new turn on that same context. The assistant aggregator has by then
recorded the spoken prefix of the voided reply, so the model sees what the user already heard.
With `resume` the model is asked to carry on from there rather than to answer afresh.
"""

from __future__ import annotations

from voxframe.pipeline import (
    DOWN,
    Direction,
    FalseInterruptionFrame,
    Frame,
    FrameProcessor,
    LLMContext,
    LLMContextFrame,
)

RESUME_NOTE = (
    "Your previous reply was cut off by a noise, not by the user. Carry on from where it stopped, "
    "without repeating what was already said."
)


class ReplyRecovery(FrameProcessor):
    def __init__(self, *, resume_note: str = RESUME_NOTE, name: str | None = None) -> None:
        super().__init__(name=name)
        self.resume_note = resume_note
        self.recoveries = 0
        self._context: LLMContext | None = None

    async def process(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, LLMContextFrame) and direction is DOWN:
            self._context = frame.context
        elif isinstance(frame, FalseInterruptionFrame):
            await self._reply_again(frame)
        await self.push(frame, direction)

    async def _reply_again(self, frame: FalseInterruptionFrame) -> None:
        # A newer reply than the voided one already exists: the bot is not silent.
        if self._context is None or self.turns.current > frame.voided_turn:
            return
        context = self._context
        if frame.resume:
            context = context.copy()  # the note is for this reply only, not for the history
            context.add("system", self.resume_note)
        self.recoveries += 1
        await self.push(LLMContextFrame(context=context, turn=self.turns.begin()), DOWN)


__all__ = ["RESUME_NOTE", "ReplyRecovery"]
