"""Per-turn latency points, recorded cheaply for the waterfall benchmark.

Processors record the first time they receive and emit a frame of each turn automatically;
stages with a meaning of their own (VAD stop, STT final, LLM first token, TTS first audio,
first packet out) call `mark`. Only the first occurrence of a point in a turn is kept (or, for
points of the user's speech that a later pause or stop supersedes, the latest), and only the
latest `max_turns` turns, so a long session's trace stays bounded.
"""

from __future__ import annotations

from collections import OrderedDict

from .clock import Clock, current_clock


class Tracer:
    def __init__(self, max_turns: int = 1000, clock: Clock | None = None) -> None:
        #: The task sets its own clock here; points are read from it, whoever's task records them.
        self.clock = clock or current_clock()
        self._turns: OrderedDict[int, dict[str, int]] = OrderedDict()
        self._max_turns = max_turns

    def mark(self, turn: int, point: str, t_ns: int | None = None, *, latest: bool = False) -> None:
        points = self._turns.get(turn)
        if points is None:
            points = self._turns[turn] = {}
            if len(self._turns) > self._max_turns:
                self._turns.popitem(last=False)
        if latest or point not in points:
            points[point] = self.clock.now_ns() if t_ns is None else t_ns

    def turn(self, turn: int) -> dict[str, int]:
        """The points of one turn, name -> monotonic ns, in the order they happened."""
        return dict(sorted(self._turns.get(turn, {}).items(), key=lambda kv: kv[1]))

    def turns(self) -> dict[int, dict[str, int]]:
        return {t: self.turn(t) for t in self._turns}
