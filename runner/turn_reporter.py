"""`TurnReporter`: one record per bot reply — what the bot heard, what it said, where time went.

An observer (no hop, no task): told of each frame once, at its first push, so it catches the
user message a reply answers (the context's latest, as the user aggregator committed it) and the
reply's text as the LLM streams it.
When the output transport reports the reply over (`BotStoppedSpeakingFrame`), the
turn's tracer points are read and the record is handed to `on_turn` (the runner prints one
console line and, for benchmarks, appends a JSON line).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from voxframe.pipeline import (
    BotStoppedSpeakingFrame,
    Direction,
    Frame,
    FrameProcessor,
    LLMContextFrame,
    LLMTextFrame,
    Observer,
    Tracer,
    TTSSpeakFrame,
    UserPausedSpeakingFrame,
    UserStoppedSpeakingFrame,
)

#: The named points of the waterfall, in the order they happen.
STAGES = (
    "vad_pause",
    "vad_stop",
    "stt_final",
    "llm_first_token",
    "tts_first_text",
    "tts_first_audio",
    "first_audio_out",
)


@dataclass(slots=True)
class TurnRecord:
    """One reply. Times are monotonic ns (the client's clock too, on the same host)."""

    turn: int
    heard: str
    said: str
    interrupted: bool
    played_s: float
    #: When the user's speech ended, as the VAD saw it (None: no speech started this turn).
    speech_end_ns: int | None
    #: The tracer's points of the turn, including per-processor `<name>:in` / `<name>:out`.
    points_ns: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def breakdown(self) -> str:
        """`vad_stop +612 ms, stt_final +701, ...` from the end of the user's speech."""
        origin = self.speech_end_ns
        if origin is None:
            return "no speech end to measure from"
        points = sorted((self.points_ns[name], name) for name in STAGES if name in self.points_ns)
        parts = [f"{name} +{(t_ns - origin) / 1e6:.0f}" for t_ns, name in points]
        return ", ".join(parts) + " ms after the end of speech" if parts else "no trace points"

    def line(self) -> str:
        said = self.said + (" [interrupted]" if self.interrupted else "")
        return f"turn {self.turn} | heard: {self.heard or '-'} | said: {said or '-'} | {self.breakdown()}"


class TurnReporter(Observer):
    def __init__(self, on_turn: Callable[[TurnRecord], None], tracer: Tracer | None = None) -> None:
        self.on_turn = on_turn
        self.tracer = tracer
        self.records: list[TurnRecord] = []
        self._speech_end_ns: int | None = None
        self._turn_heard: dict[int, tuple[str, int | None]] = {}
        self._said: dict[int, list[str]] = {}
        self._reported: set[int] = set()

    def on_frame(self, src: FrameProcessor, frame: Frame, direction: Direction, t_ns: int) -> None:
        match frame:
            # A pause ends the speech where the stop that may follow it does.
            case UserStoppedSpeakingFrame() | UserPausedSpeakingFrame():
                self._speech_end_ns = frame.speech_end_ns or t_ns
            case LLMContextFrame() if frame.turn not in self._turn_heard:
                users = [m for m in frame.context.messages if m.get("role") == "user"]
                heard = str(users[-1].get("content") or "") if users else ""
                self._turn_heard[frame.turn] = (heard, self._speech_end_ns)
            case LLMTextFrame() | TTSSpeakFrame():
                self._said.setdefault(frame.turn, []).append(frame.text)
            case BotStoppedSpeakingFrame() if frame.turn not in self._reported:
                self._report(frame)

    def _report(self, frame: BotStoppedSpeakingFrame) -> None:
        self._reported.add(frame.turn)
        heard, speech_end_ns = self._turn_heard.pop(frame.turn, ("", None))
        record = TurnRecord(
            turn=frame.turn,
            heard=heard,
            said="".join(self._said.pop(frame.turn, [])).strip(),
            interrupted=frame.interrupted,
            played_s=round(frame.played_s, 3),
            speech_end_ns=speech_end_ns,
            points_ns=self.tracer.turn(frame.turn) if self.tracer is not None else {},
        )
        # Replies voided before a sound was played never report: forget them with this one.
        for stale in [t for t in self._said if t < frame.turn]:
            del self._said[stale]
        for stale in [t for t in self._turn_heard if t < frame.turn]:
            del self._turn_heard[stale]
        self.records.append(record)
        self.on_turn(record)


__all__ = ["STAGES", "TurnRecord", "TurnReporter"]
