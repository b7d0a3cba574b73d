"""The turn controller's options: how a turn ends, when the user may cut the bot off, and what
happens around it (muting, a silent user, a false interruption)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .strategies import SilenceTimeout, TurnStrategy


@dataclass(slots=True)
class InterruptionPolicy:
    """When user speech over the bot's reply (playing, or being prepared) interrupts it.

    Like LiveKit's `min_interruption_duration` / `min_interruption_words`: the VAD's speech must
    have lasted `min_duration_s` (0: at its start) and, with `min_words`, its transcript must
    hold that many words. A transcript with no VAD speech behind it (noise the STT heard, a
    pipeline without a VAD) interrupts only when `min_words` is set and reached; otherwise
    words that arrive over a playing reply without that are dropped as noise.

    The VAD knows that speech ended only at its pause (or stop), `pause_s` after the fact: speech
    still "going on" when it reaches `min_duration_s` interrupts, so keep `min_duration_s` above
    the shortest sound to ignore plus `pause_s`.
    """

    enabled: bool = True
    min_duration_s: float = 0.0
    min_words: int = 0

    def __post_init__(self) -> None:
        if self.min_duration_s < 0 or self.min_words < 0:
            raise ValueError("min_duration_s and min_words must be >= 0")


@dataclass(slots=True)
class IdlePolicy:
    """A silent user: after `prompt_s` without a turn the bot says `prompt` once; after
    `end_s` more (counted from the prompt's end) the call ends. None: never."""

    prompt_s: float | None = None
    prompt: str = "Are you still there?"
    end_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("prompt_s", "end_s"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0 or None, got {value}")


@dataclass(slots=True)
class TurnOptions:
    #: Asked at each end of speech; the turn ends at the first end any proposes.
    strategies: list[TurnStrategy] = field(default_factory=lambda: [SilenceTimeout()])
    interruptions: InterruptionPolicy = field(default_factory=InterruptionPolicy)
    #: Start the reply when the user pauses with every word final, before the turn ends. The
    #: turn's end still decides when the bot may speak; the price is an LLM request for each
    #: pause after which the user goes on.
    preemptive: bool = False
    #: After the turn ended with an interim still open, wait this long for its final; then
    #: answer with the interim text (and ignore that final when it comes late).
    final_timeout_s: float = 1.0
    #: When the user finishes a new turn while the previous reply is still unfinished
    #: (thinking, not yet spoken), interrupt it: the model answers both messages at once.
    interrupt_unfinished_reply: bool = True
    #: What a false interruption (speech that cut the bot off, then no words) leads to.
    false_interruption: Literal["reanswer", "resume", "ignore"] = "reanswer"
    #: How long after the speech ends words must have come for it to count as a real interruption.
    false_interruption_s: float = 1.0
    #: Ignore the user (no turn, no barge-in, words dropped) while the bot says its first
    #: utterance, or while a tool runs.
    mute_during_first_utterance: bool = False
    mute_during_tools: bool = False
    idle: IdlePolicy = field(default_factory=IdlePolicy)
    #: Seconds of the turn's audio kept for strategies that score it (Smart Turn reads 8 s).
    audio_s: float = 8.0

    def __post_init__(self) -> None:
        if not self.strategies:
            raise ValueError("a turn needs at least one strategy to end it")
        if self.false_interruption not in ("reanswer", "resume", "ignore"):
            raise ValueError(f"false_interruption must be reanswer, resume or ignore, got {self.false_interruption!r}")


__all__ = ["IdlePolicy", "InterruptionPolicy", "TurnOptions"]
