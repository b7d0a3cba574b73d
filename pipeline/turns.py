"""Turn bookkeeping shared by every processor of one pipeline task.

A *turn* is one bot reply, numbered 1, 2, 3, ... An interruption makes every turn started so
far stale at once, for every processor, before the interruption frame itself has reached
them: whatever of a stale turn shows up later (a token, an audio chunk, a tool call) is void.
"""

from __future__ import annotations

import anyio

from .frames import Frame, UserTurnEndedFrame, UserTurnStartedFrame


class Turns:
    __slots__ = ("current", "stale_upto")

    def __init__(self) -> None:
        self.current = 0
        self.stale_upto = 0

    def begin(self) -> int:
        """Open the next bot reply and return its number."""
        self.current += 1
        return self.current

    def interrupt(self) -> int:
        """Void every turn begun so far; return the last voided turn."""
        self.stale_upto = self.current
        return self.stale_upto

    def is_stale(self, turn: int) -> bool:
        """Turn 0 (output not tied to a reply) is never stale after the fact, only flushed."""
        return 0 < turn <= self.stale_upto


class UserTurnGate:
    """Which replies wait for the user's turn to end, as the turn controller's frames say.

    A processor downstream of the controller shows it every frame it sees go downstream
    (`observe`). `UserTurnStartedFrame(held_from=N)` holds replies N and later (prepared at a
    pause, while the user may still go on): they must neither be heard nor cause side effects
    (tools) until `UserTurnEndedFrame`; if the user goes on instead, an interruption voids them.
    The decision is the controller's, made once; this only remembers it.
    """

    __slots__ = ("_confirmed", "_held_from")

    def __init__(self) -> None:
        self._held_from: int | None = None
        self._confirmed = anyio.Event()

    def observe(self, frame: Frame) -> bool:
        """Follow the user's turn; True when `frame` ends it (held replies may go on now)."""
        if isinstance(frame, UserTurnStartedFrame):
            self._held_from = frame.held_from
            self._confirmed = anyio.Event()
        elif isinstance(frame, UserTurnEndedFrame):
            self._held_from = None
            self._confirmed.set()
            return True
        return False

    def held(self, turn: int) -> bool:
        return self._held_from is not None and turn >= self._held_from

    async def wait_confirmed(self, turn: int) -> None:
        """Return once `turn` is no longer held (at once if it is not)."""
        while self.held(turn):
            await self._confirmed.wait()
