"""The capacity benchmark's load search, apart from the trials it asks for (so it can be tested).

Climb from `start` by `step` until a load fails (or `maximum` holds), bisect between the
largest load that held and the smallest that failed, then re-run the answer `confirmations`
times. A re-run that fails makes that load the failing bound and the next lower load the
candidate, which must hold `confirmations` times in a row itself: a figure is never one lucky
run. With `fixed`, only that load is run (1 + `confirmations` times) and it is the answer only
if every run holds.
"""

from __future__ import annotations

import math

from stats import p50


class LoadSearch:
    def __init__(self, start: int, step: int, maximum: int, confirmations: int = 3, fixed: int | None = None) -> None:
        if start < 1 or step < 1 or maximum < 1 or confirmations < 0 or (fixed is not None and fixed < 1):
            raise ValueError("loads and step must be >= 1, confirmations >= 0")
        self.step, self.maximum, self.confirmations = step, maximum, confirmations
        #: The confirmed answer (0: no load held); final once next_load() returns None.
        self.best = 0
        #: Re-runs of `best` that held.
        self.confirmed = 0
        self.phase = "search"
        self.runs: list[tuple[int, bool]] = []
        self._rtts: dict[int, list[float]] = {}
        self._held = 0  # largest load that held while searching
        self._failed: int | None = None  # smallest load that failed
        self._next: int | None = min(start, maximum)
        self._candidate = 0
        if fixed is not None:
            self.phase, self._candidate, self._next = "check", fixed, fixed

    def next_load(self) -> int | None:
        """The load to run next; None once the search is over."""
        return self._next

    def record(self, load: int, holds: bool, probe_rtt_ms: float = math.nan) -> None:
        """The outcome of a run of `load`, the one next_load() asked for."""
        if load != self._next:
            raise ValueError(f"asked for a run of {self._next}, got {load}")
        self.runs.append((load, holds))
        if not math.isnan(probe_rtt_ms):
            self._rtts.setdefault(load, []).append(probe_rtt_ms)
        if self.phase == "check":
            self._check(holds)
        elif self.phase == "confirm":
            self._confirm(holds)
        else:
            self._search(load, holds)

    @property
    def capped(self) -> bool:
        """The answer is `maximum` found by searching: the real capacity may be higher."""
        return self.phase != "check" and self.best >= self.maximum

    def rtt_at_best(self) -> float:
        """The probe's round trip (p50 over its runs' p50s) at the answer; nan without one."""
        rtts = self._rtts.get(self.best, [])
        return p50(rtts) if self.best and rtts else math.nan

    def _search(self, load: int, holds: bool) -> None:
        if holds:
            self._held = max(self._held, load)
        else:
            self._failed = load if self._failed is None else min(self._failed, load)
        if self._failed is None:
            if load >= self.maximum:
                self._start_confirming(self._held)
            else:
                self._next = min(load + self.step, self.maximum)
        elif self._failed - self._held <= 1:
            self._start_confirming(self._held)
        else:
            self._next = (self._held + self._failed) // 2

    def _start_confirming(self, candidate: int) -> None:
        self.phase, self._candidate, self.confirmed = "confirm", candidate, 0
        self._next = candidate if candidate >= 1 else None
        if self._next is not None and self.confirmations == 0:
            self.best, self._next = candidate, None

    def _confirm(self, holds: bool) -> None:
        if not holds:
            self._start_confirming(self._candidate - 1)
            return
        self.confirmed += 1
        if self.confirmed >= self.confirmations:
            self.best, self._next = self._candidate, None

    def _check(self, holds: bool) -> None:
        if not holds:
            self._next = None
            return
        self.confirmed = len(self.runs) - 1
        if self.confirmed >= self.confirmations:
            self.best, self._next = self._candidate, None
