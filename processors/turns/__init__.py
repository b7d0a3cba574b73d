"""Turn-taking: who speaks when. The `TurnController` owns every decision (the user's turn,
preemption, barge-in, false interruptions, a silent user); strategies say when a turn ends
(the end-of-turn model lives here too, in `smart_turn`)."""

from .controller import TurnController
from .policy import IdlePolicy, InterruptionPolicy, TurnOptions
from .strategies import (
    NO_TAIL_RULE,
    EndOfTurnModel,
    EndOfTurnPredictor,
    Pause,
    SilenceTimeout,
    SttEndpointing,
    TailRule,
    TurnDecision,
    TurnStrategy,
    sounds_finished,
)

__all__ = [
    "NO_TAIL_RULE",
    "EndOfTurnModel",
    "EndOfTurnPredictor",
    "IdlePolicy",
    "InterruptionPolicy",
    "Pause",
    "SilenceTimeout",
    "SttEndpointing",
    "TailRule",
    "TurnController",
    "TurnDecision",
    "TurnOptions",
    "TurnStrategy",
    "sounds_finished",
]
