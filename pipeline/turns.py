"""Turn bookkeeping shared by every processor of one pipeline task.

A *turn* is one bot reply, numbered 1, 2, 3, ... An interruption makes every turn started so
far stale at once, for every processor, before the interruption frame itself has reached
them: whatever of a stale turn shows up later (a token, an audio chunk, a tool call) is void.
"""

from __future__ import annotations


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
