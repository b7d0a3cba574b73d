"""When does the user's turn end? Pluggable strategies the `TurnController` asks.

A strategy sees each end of speech (`Pause`: the VAD's pause or its stop, with the time the
speech ended and, for models, the turn's audio) and answers with a `TurnDecision`: end the turn
now, or let it end after some more silence unless the user speaks again. It may also end the
turn on a final transcript (`ends_on`: the STT's own endpointing). The controller ends the
turn at the first end any of its strategies proposes, and opens it again if the user speaks.

Three come with voxframe:

* `SilenceTimeout(stop_s)`: a fixed silence. `stop_s=None` (the default) is the VAD's own stop
  (`VADParams.stop_s`), decided on the sample the silence reaches it;
* `EndOfTurnModel(model)`: at a pause a model scores the turn's audio (Smart Turn, or any
  object with `predict(audio) -> prediction` whose `.complete` says so); complete ends the turn
  there, incomplete waits for more speech up to `timeout_s` of silence;
* `SttEndpointing()`: the STT's final that says the speech is over (Deepgram's `speech_final`).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from voxframe.pipeline import TranscriptionFrame
from voxframe.pipeline.clock import NS_PER_S


@dataclass(slots=True, frozen=True)
class Pause:
    """The user's speech ended at `speech_end_ns` (clock time); `stopped`: the VAD's stop (its
    full silence), not only its pause. `audio`: the turn's last seconds of 16 kHz int16 audio up
    to now (empty unless a strategy `needs_audio`)."""

    speech_end_ns: int
    now_ns: int
    stopped: bool
    audio: np.ndarray

    @property
    def silence_s(self) -> float:
        return (self.now_ns - self.speech_end_ns) / NS_PER_S


@dataclass(slots=True, frozen=True)
class TurnDecision:
    """`end`: the turn ends now. Otherwise `wait_s`: it ends once the silence since the speech
    end reaches this (unless the user speaks again); None: this strategy sets no deadline."""

    end: bool = False
    wait_s: float | None = None


END = TurnDecision(end=True)
UNDECIDED = TurnDecision()


@runtime_checkable
class TurnStrategy(Protocol):
    """What the `TurnController` asks at each end of speech and each final transcript."""

    #: The controller keeps the turn's audio for `Pause.audio` only if some strategy needs it.
    needs_audio: bool

    async def at_pause(self, pause: Pause) -> TurnDecision: ...

    def ends_on(self, frame: TranscriptionFrame) -> bool: ...


class SilenceTimeout:
    """The turn ends after `stop_s` of silence; None: at the VAD's stop."""

    needs_audio = False

    def __init__(self, stop_s: float | None = None) -> None:
        if stop_s is not None and stop_s <= 0:
            raise ValueError(f"stop_s must be > 0 or None, got {stop_s}")
        self.stop_s = stop_s

    async def at_pause(self, pause: Pause) -> TurnDecision:
        if self.stop_s is None:
            return END if pause.stopped else UNDECIDED
        return END if pause.silence_s >= self.stop_s else TurnDecision(wait_s=self.stop_s)

    def ends_on(self, frame: TranscriptionFrame) -> bool:
        return False

    def __repr__(self) -> str:
        return f"SilenceTimeout(stop_s={self.stop_s})"


class EndOfTurnPredictor(Protocol):
    """An end-of-turn model: `predict(audio)` (16 kHz mono int16; sync or async) returns an
    object whose `complete` says whether the turn is over (and `probability`, how sure)."""

    def predict(self, audio: np.ndarray) -> Any: ...


class EndOfTurnModel:
    """Ask a model at each pause. Complete: the turn ends there. Incomplete: the bot waits for
    more speech, up to `timeout_s` of silence, its prepared reply (if preemptive) unheard.

    One prediction per end of speech: the VAD's stop after a pause scored already reuses it.
    """

    needs_audio = True

    def __init__(self, model: EndOfTurnPredictor, *, timeout_s: float = 3.0) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.model = model
        self.timeout_s = timeout_s
        self.predictions = 0
        self._scored: tuple[int, bool] | None = None  # (speech end, complete) of the last score

    async def at_pause(self, pause: Pause) -> TurnDecision:
        if self._scored is not None and self._scored[0] == pause.speech_end_ns:
            complete = self._scored[1]
        else:
            prediction = self.model.predict(pause.audio)
            if inspect.isawaitable(prediction):
                prediction = await prediction
            self.predictions += 1
            complete = bool(prediction.complete)
            self._scored = (pause.speech_end_ns, complete)
        if complete:
            return END
        return END if pause.silence_s >= self.timeout_s else TurnDecision(wait_s=self.timeout_s)

    def ends_on(self, frame: TranscriptionFrame) -> bool:
        return False

    def __repr__(self) -> str:
        return f"EndOfTurnModel({self.model!r}, timeout_s={self.timeout_s})"


class SttEndpointing:
    """The turn ends on the STT's final that says the speech is over (`speech_final`); after
    `timeout_s` of silence without one, it ends anyway."""

    needs_audio = False

    def __init__(self, *, timeout_s: float = 2.0) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.timeout_s = timeout_s

    async def at_pause(self, pause: Pause) -> TurnDecision:
        return END if pause.silence_s >= self.timeout_s else TurnDecision(wait_s=self.timeout_s)

    def ends_on(self, frame: TranscriptionFrame) -> bool:
        return frame.speech_final

    def __repr__(self) -> str:
        return f"SttEndpointing(timeout_s={self.timeout_s})"


def combine(decisions: list[TurnDecision]) -> TurnDecision:
    """The first end any strategy proposes."""
    if any(d.end for d in decisions):
        return END
    waits = [d.wait_s for d in decisions if d.wait_s is not None]
    return TurnDecision(wait_s=min(waits)) if waits else UNDECIDED


__all__ = [
    "END",
    "UNDECIDED",
    "EndOfTurnModel",
    "EndOfTurnPredictor",
    "Pause",
    "SilenceTimeout",
    "SttEndpointing",
    "TurnDecision",
    "TurnStrategy",
    "combine",
]
