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
  there, incomplete waits for more speech up to `timeout_s` of silence, unless its `TailRule`
  (the STT's final with the model's confidence, a second look) says the turn is over;
* `SttEndpointing()`: the STT's final that says the speech is over (Deepgram's `speech_final`).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import anyio
import numpy as np

from voxframe.pipeline import TranscriptionFrame
from voxframe.pipeline.clock import NS_PER_S


@dataclass(slots=True, frozen=True)
class Pause:
    """The user's speech ended at `speech_end_ns` (clock time); `stopped`: the VAD's stop (its
    full silence), not only its pause. `audio`: the turn's last seconds of 16 kHz int16 audio up
    to now (empty unless a strategy `needs_audio`). `transcript`: the turn's words so far when
    every one is final (the STT's final came before this pause), else empty."""

    speech_end_ns: int
    now_ns: int
    stopped: bool
    audio: np.ndarray
    transcript: str = ""

    @property
    def silence_s(self) -> float:
        return (self.now_ns - self.speech_end_ns) / NS_PER_S


@dataclass(slots=True, frozen=True)
class TurnDecision:
    """`end`: the turn ends now. Otherwise `wait_s`: it ends once the silence since the speech
    end reaches this (unless the user speaks again); None: this strategy sets no deadline;
    `recheck_s`: ask again at that silence (the answer then may end the turn earlier)."""

    end: bool = False
    wait_s: float | None = None
    #: Ask the strategies again (a new `Pause`, `stopped=False`) once the silence reaches this.
    recheck_s: float | None = None


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


#: Last words after which a sentence goes on ("What is the capital of"): a final ending in one
#: does not sound finished, whatever punctuation the STT gave it.
OPEN_ENDINGS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "to",
        "and",
        "or",
        "but",
        "nor",
        "in",
        "on",
        "at",
        "for",
        "with",
        "from",
        "by",
        "about",
        "into",
        "as",
        "than",
        "that",
        "which",
        "who",
        "whose",
        "whom",
        "what",
        "when",
        "where",
        "whether",
        "if",
        "because",
        "so",
        "my",
        "your",
        "our",
        "their",
        "his",
        "her",
        "its",
        "is",
        "are",
        "was",
        "were",
        "be",
        "am",
        "do",
        "does",
        "did",
        "can",
        "could",
        "would",
        "should",
        "will",
        "shall",
        "may",
        "might",
        "must",
        "have",
        "has",
        "had",
        "like",
        "um",
        "uh",
    ]
)
_TRAILING = re.compile(r"(\.\.\.|…|[,;:\-\u2013\u2014])\s*$")


def sounds_finished(text: str) -> bool:
    """Whether a transcript ends like a sentence or a question: `.`, `?` or `!` (not an ellipsis
    or a comma) after a word that does not open a phrase (see `OPEN_ENDINGS`)."""
    text = text.strip()
    if not text or text[-1] not in ".?!" or _TRAILING.search(text):
        return False
    words = re.findall(r"[\w']+", text.lower())
    return bool(words) and words[-1] not in OPEN_ENDINGS


@dataclass(slots=True, frozen=True)
class TailRule:
    """How a complete turn the model calls incomplete still ends soon after its pause.

    A turn model that helps the median and ruins the tail is no gain: Smart Turn calls about one
    complete question in seven incomplete, and a bot that then waits out the model's timeout (3 s,
    as Pipecat as shipped does) answers it seconds late. Two more facts decide instead, each cheap:

    * the STT's final: when the turn's words, all final, `sound_finished` (the `finished` test)
      and the model gave the turn at least `near_probability`, the turn ends on that final (or on
      the verdict, whichever comes second). A pause mid-sentence ("What is the capital of") fails the
      text test, and a model sure the turn goes on (below `near_probability`) vetoes it;
    * a second look: once the silence reaches `second_look_s`, the model scores the turn again,
      trailing silence included (which it reads as an ending); complete ends the turn there, and so
      does a finished final with the new verdict at least `near_probability`. None: no second look.

    Otherwise the turn ends at the model's `timeout_s`, as before.
    """

    near_probability: float = 0.1
    second_look_s: float | None = 0.6
    finished: Callable[[str], bool] = sounds_finished

    def __post_init__(self) -> None:
        if not 0.0 <= self.near_probability < 1.0:
            raise ValueError(f"near_probability must be in [0, 1), got {self.near_probability}")
        if self.second_look_s is not None and self.second_look_s <= 0:
            raise ValueError(f"second_look_s must be > 0 or None, got {self.second_look_s}")


#: The model alone, as Pipecat ships it: incomplete waits out the timeout.
NO_TAIL_RULE = TailRule(near_probability=1.0 - 1e-9, second_look_s=None, finished=lambda text: False)


class EndOfTurnModel:
    """Ask a model at each pause. Complete: the turn ends there. Incomplete: the bot waits for
    more speech, up to `timeout_s` of silence, its prepared reply (if preemptive) unheard, unless
    the `tail` rule ends it sooner (see `TailRule`; `NO_TAIL_RULE` turns it off).

    One prediction per end of speech (the VAD's stop after a pause scored already reuses it), and
    one more at the tail rule's second look if the turn is still open then.
    """

    needs_audio = True
    #: The controller asks again at each final after the pause (`Pause.transcript` grown).
    needs_transcript = True

    def __init__(self, model: EndOfTurnPredictor, tail: TailRule | None = None, *, timeout_s: float = 3.0) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.model = model
        self.tail = tail or TailRule()
        self.timeout_s = timeout_s
        self.predictions = 0
        self.ended_by: dict[str, int] = {"model": 0, "final": 0, "second_look": 0}  # why turns ended early
        self._speech_end_ns: int | None = None  # the end of speech the verdict is about
        self._verdict: tuple[bool, float] | None = None  # (complete, probability) of the last score
        self._second_looked = False
        self._lock = anyio.Lock()  # one question at a time: a final's re-ask reuses the pause's score

    async def at_pause(self, pause: Pause) -> TurnDecision:
        async with self._lock:
            return await self._decide(pause)

    async def _decide(self, pause: Pause) -> TurnDecision:
        tail = self.tail
        if pause.speech_end_ns != self._speech_end_ns:
            self._speech_end_ns, self._verdict, self._second_looked = pause.speech_end_ns, None, False
        second_look = tail.second_look_s is not None and pause.silence_s >= tail.second_look_s - 1e-9
        if self._verdict is None or (second_look and not self._second_looked and not self._verdict[0]):
            self._verdict = await self._score(pause.audio)
            self._second_looked = second_look  # a first score this late heard the silence already
        complete, probability = self._verdict
        if complete:
            self._count("second_look" if self._second_looked else "model")
            return END
        if pause.transcript and tail.finished(pause.transcript) and probability >= tail.near_probability:
            self._count("final")
            return END
        if pause.silence_s >= self.timeout_s:
            return END
        recheck = None if self._second_looked or tail.second_look_s is None else tail.second_look_s
        return TurnDecision(wait_s=self.timeout_s, recheck_s=recheck)

    async def _score(self, audio: np.ndarray) -> tuple[bool, float]:
        prediction = self.model.predict(audio)
        if inspect.isawaitable(prediction):
            prediction = await prediction
        self.predictions += 1
        complete = bool(prediction.complete)
        return complete, float(getattr(prediction, "probability", 1.0 if complete else 0.0))

    def ends_on(self, frame: TranscriptionFrame) -> bool:
        return False  # a final is weighed in at_pause, asked again with it (`needs_transcript`)

    def _count(self, reason: str) -> None:
        self.ended_by[reason] += 1

    def __repr__(self) -> str:
        return f"EndOfTurnModel({self.model!r}, {self.tail!r}, timeout_s={self.timeout_s})"


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
    rechecks = [d.recheck_s for d in decisions if d.recheck_s is not None]
    return TurnDecision(wait_s=min(waits) if waits else None, recheck_s=min(rechecks) if rechecks else None)


__all__ = [
    "END",
    "NO_TAIL_RULE",
    "OPEN_ENDINGS",
    "UNDECIDED",
    "EndOfTurnModel",
    "EndOfTurnPredictor",
    "Pause",
    "SilenceTimeout",
    "SttEndpointing",
    "TailRule",
    "TurnDecision",
    "TurnStrategy",
    "combine",
    "sounds_finished",
]
