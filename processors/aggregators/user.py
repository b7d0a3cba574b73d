"""The user aggregator: the user's messages into the context, and a reply for each.

It sits after the turn controller (`processors/turns`), which decides when the user's words
make a message. On `UserMessageFrame(text, turn=N)` it appends the user message to the shared
context and sends `LLMContextFrame(turn=N)`. On `UserMessageWithdrawnFrame(turn=N)` (the user
went on speaking after a pause at which that reply was prepared) it removes that message and
whatever its reply added after it (tool calls and results). On `FalseInterruptionFrame` (the
bot was cut off by a noise) it asks for a reply again on the same context, `resume` carrying on
from where the bot stopped, unless a newer reply already exists.
"""

from __future__ import annotations

from typing import Any

from voxframe.pipeline import (
    DOWN,
    Direction,
    FalseInterruptionFrame,
    Frame,
    FrameProcessor,
    LLMContext,
    LLMContextFrame,
    UserMessageFrame,
    UserMessageWithdrawnFrame,
)


class UserContextAggregator(FrameProcessor):
    def __init__(self, context: LLMContext, *, name: str | None = None) -> None:
        super().__init__(name=name)
        self.context = context
        self.recoveries = 0  # replies asked for again after a false interruption
        self._last: tuple[int, dict[str, Any]] | None = None  # the latest reply and its message
        self._replied = False

    async def process(self, frame: Frame, direction: Direction) -> None:
        if direction is not DOWN:
            await self.push(frame, direction)
        elif isinstance(frame, UserMessageFrame):
            await self._add(frame)
        elif isinstance(frame, UserMessageWithdrawnFrame):
            self._withdraw(frame.turn)
        elif isinstance(frame, FalseInterruptionFrame):
            await self.push(frame, direction)
            await self._reply_again(frame)
        else:
            await self.push(frame, direction)

    async def _add(self, frame: UserMessageFrame) -> None:
        self.context.add("user", frame.text)
        self._last = (frame.turn, self.context.messages[-1])  # only a reply prepared last is withdrawn
        self._replied = True
        await self.push(LLMContextFrame(context=self.context, turn=frame.turn))

    def _withdraw(self, turn: int) -> None:
        if self._last is None or self._last[0] != turn:
            return
        message, self._last = self._last[1], None
        messages = self.context.messages
        for i in range(len(messages) - 1, -1, -1):
            if messages[i] is message:
                del messages[i:]  # and what the reply's tools added after it
                return

    async def _reply_again(self, frame: FalseInterruptionFrame) -> None:
        # A newer reply than the voided one already exists: the bot is not silent.
        if not self._replied or self.turns.current > frame.voided_turn:
            return
        self.recoveries += 1
        await self.push(LLMContextFrame(context=self.context, turn=self.turns.begin(), resume=frame.resume))


__all__ = ["UserContextAggregator"]
