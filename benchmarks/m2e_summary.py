"""The mouth-to-ear benchmark's bookkeeping: rows, interleaving, misses, service time, summaries.

Pure functions over what was measured (the caller's turns, the bots' traces, the fakes' logs),
so every rule that decides a figure is unit-tested: a turn without a reply, a reply to the
wrong words, a barge-in that never stopped the audio are misses, counted beside the latency
percentiles they are excluded from, never dropped silently.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from m2e_measure import Turn
from m2e_script import reply_text, turn_service_s
from stats import percentile

from voxframe.pipeline.clock import NS_PER_S

NS_PER_MS = 1_000_000


@dataclass(frozen=True, slots=True)
class Timing:
    """When a side's configuration lets the reply go, in s from the end of the user's speech:
    the STT is finalized at `finalize_s`; the LLM starts at `start_s`, or (preemptive) at the
    final and the reply is held until `start_s`."""

    finalize_s: float
    start_s: float
    preemptive: bool = False

    def configured_s(self, final_s: float, rest_s: float) -> float:
        """The earliest the reply can be heard, given the turn's final latency and the rest of
        its service time (LLM to first sentence, TTS to first audio)."""
        if self.preemptive:
            return max(self.start_s, self.finalize_s + final_s + rest_s)
        return max(self.finalize_s + final_s, self.start_s) + rest_s


@dataclass(frozen=True, slots=True)
class Side:
    """One stack in a row: what runs and how it is configured."""

    label: str
    stack: str  # "voxframe" (simulated cloud), "pipecat", "embedded"
    timing: Timing | None  # None: a model decides (Smart Turn) or no fakes: no configured time
    env: Mapping[str, str] = field(default_factory=dict)  # the example's options
    pipecat_config: str = ""


def rows(stop_s: float, pause_s: float | None) -> dict[str, tuple[Side, ...]]:
    """The rows: voxframe's example (its options) against Pipecat configured alike."""
    # The fixed-silence rows end the turn at the VAD's stop (VOXFRAME_TURN=silence), as Pipecat's
    # peers for them do; the shipped example asks its end-of-turn model, so no time is configured.
    silence = {"VOXFRAME_TURN": "silence"}
    off = {"VOXFRAME_VAD_PAUSE_S": "off", "VOXFRAME_PREEMPTIVE": "0", **silence}
    early = {"VOXFRAME_VAD_PAUSE_S": "0.2", "VOXFRAME_PREEMPTIVE": "0", **silence}
    preempt = {"VOXFRAME_VAD_PAUSE_S": "0.2", "VOXFRAME_PREEMPTIVE": "1", **silence}
    shipped_timing = None
    pipecat_early = Side("Pipecat stop 0.2 + timeout 0.3", "pipecat", Timing(0.2, 0.5), pipecat_config="early")
    return {
        "plain": (
            Side("voxframe no pause", "voxframe", Timing(0.5, 0.5), off),
            Side("Pipecat stop 0.5 + timeout 0", "pipecat", Timing(0.5, 0.5), pipecat_config="plain"),
        ),
        "early": (Side("voxframe pause 0.2", "voxframe", Timing(0.2, 0.5), early), pipecat_early),
        "preemptive": (Side("voxframe pause 0.2 preempt", "voxframe", Timing(0.2, 0.5, True), preempt), pipecat_early),
        "shipped": (
            Side("voxframe example.py", "voxframe", shipped_timing),
            Side("Pipecat defaults (Smart Turn)", "pipecat", None, pipecat_config="shipped"),
        ),
        "embedded": (Side("voxframe embedded", "embedded", None),),
    }


@dataclass(frozen=True, slots=True)
class Block:
    """A call's worth of the conversation: some turns, then some barge-in trials."""

    index: int
    turns: range
    bargeins: int


def blocks(turns: int, bargeins: int, size: int) -> list[Block]:
    """`turns` split into blocks of `size`; the barge-ins spread over them (earlier ones first)."""
    if size < 1:
        raise ValueError(f"a block needs at least one turn, got {size}")
    count = max(1, -(-turns // size))
    per, extra = divmod(bargeins, count)
    return [Block(i, range(i * size, min(turns, (i + 1) * size)), per + (1 if i < extra else 0)) for i in range(count)]


def interleave(plan: Sequence[Block], stacks: Sequence[str]) -> list[tuple[Block, str]]:
    """A B A B ...: every block on every stack before the next block, so drift hits all alike."""
    return [(block, stack) for block in plan for stack in stacks]


def utterance_seed(base: int, block: Block, position: int) -> int:
    """The seed of the latencies drawn for one utterance, the same on every stack."""
    return base + block.index * 1000 + position


# --- joining the fakes' log --------------------------------------------------------------------------


def answering_request(turn: Turn, requests: Sequence[Mapping[str, Any]], until_ns: int) -> Mapping[str, Any] | None:
    """The LLM request whose reply was heard: the last one made between the turn's start and its
    reply (or `until_ns` when there was none)."""
    end = turn.reply_ns if turn.reply_ns is not None else until_ns
    made = [r for r in requests if turn.start_ns <= r["at_ns"] <= end]
    return made[-1] if made else None


def miss_of(turn: Turn, request: Mapping[str, Any] | None) -> str | None:
    """Why a turn counts as missed (None: answered, to its own words)."""
    if turn.reply_ns is None:
        return "no reply"
    if request is None:
        return "no request"
    if " ".join(str(request["user"]).split()) != " ".join(turn.text.split()):
        return "wrong words"
    return None


def drawn_service_s(
    turn: Turn, request: Mapping[str, Any], draws: Mapping[str, Sequence[Sequence[Any]]], long_question: str
) -> float | None:
    """The service time the turn's answered reply was told to take by the fakes' draws (None:
    a draw is missing): the last Deepgram final drawn before the request, the request's first
    token, the first Cartesia audio drawn after it."""
    end = turn.reply_ns if turn.reply_ns is not None else request["at_ns"]
    finals = [d for d in draws.get("deepgram", []) if turn.speech_start_ns <= d[0] <= request["at_ns"]]
    ttfts = [d for d in draws.get("openai", []) if request["at_ns"] <= d[0] <= end]
    ttfas = [d for d in draws.get("cartesia", []) if request["at_ns"] <= d[0] <= end]
    if not (finals and ttfts and ttfas):
        return None
    reply = reply_text(turn.text, long_question)
    return turn_service_s(finals[-1][2], ttfts[0][2], reply, ttfas[0][2])


def final_drawn_s(turn: Turn, request: Mapping[str, Any], draws: Mapping[str, Sequence[Sequence[Any]]]) -> float:
    finals = [d for d in draws.get("deepgram", []) if turn.speech_start_ns <= d[0] <= request["at_ns"]]
    return float(finals[-1][2]) if finals else 0.0


def next_start_ns(turn: Turn, starts: Sequence[int], timeout_s: float) -> int:
    """Where a turn's window ends: the next utterance's start on the same side (else its timeout)."""
    later = [s for s in starts if s > turn.start_ns]
    return min(later) if later else turn.start_ns + int(timeout_s * NS_PER_S)


def requests_between(requests: Sequence[Mapping[str, Any]], start_ns: int, end_ns: int) -> int:
    return sum(start_ns <= r["at_ns"] < end_ns for r in requests)


def pipecat_records(lines: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The Pipecat observer's point lines grouped into one record per VAD stop (voxframe's form)."""
    grouped: dict[int, dict[str, int]] = {}
    for line in lines:
        grouped.setdefault(int(line["vad_stop_ns"]), {})[str(line["point"])] = int(line["ns"])
    return [
        {"speech_end_ns": points.get("speech_end"), "points_ns": {k: v for k, v in points.items() if k != "speech_end"}}
        for _, points in sorted(grouped.items())
    ]


# --- a stack's results ----------------------------------------------------------------------------


def stats(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"n": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95)}


@dataclass(slots=True)
class StackResult:
    side: Side
    turns: list[dict[str, Any]] = field(default_factory=list)
    bargein_ms: list[float | None] = field(default_factory=list)
    llm_requests: int = 0
    utterances: int = 0  # every user utterance said to this side (warm-ups and barge-ins too)

    def answered(self) -> list[dict[str, Any]]:
        return [t for t in self.turns if t["miss"] is None]

    def m2e(self) -> list[float]:
        return [t["m2e_ms"] for t in self.answered()]

    def overhead(self) -> list[float]:
        return [t["overhead_ms"] for t in self.answered() if t.get("overhead_ms") is not None]

    def point(self, name: str) -> list[float]:
        return [t["points_ms"][name] for t in self.answered() if name in t.get("points_ms", {})]

    def misses(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in self.turns:
            if t["miss"] is not None:
                counts[t["miss"]] = counts.get(t["miss"], 0) + 1
        failed = sum(b is None for b in self.bargein_ms)
        if failed:
            counts["barge-in not stopped"] = failed
        return counts

    def missed(self) -> int:
        return sum(self.misses().values())

    def requests_per_turn(self) -> float | None:
        if self.side.stack == "embedded":  # the offline responder: no request log
            return None
        return self.llm_requests / self.utterances if self.utterances else None

    def summary(self) -> dict[str, Any]:
        return {
            "side": self.side.label,
            "turns": len(self.turns),
            "replies": len(self.answered()),
            "misses": self.misses(),
            "missed": self.missed(),
            "m2e_ms": stats(self.m2e()),
            "overhead_ms": stats(self.overhead()),
            # turns whose overhead is against the p50 budget (a draw missing from the fakes' log)
            "overhead_from_budget": sum(t.get("service_from") == "p50 budget" for t in self.answered()),
            "vad_stop_ms": stats(self.point("vad_stop")),
            "bargein_ms": stats([b for b in self.bargein_ms if b is not None]),
            "bargein_trials": len(self.bargein_ms),
            "llm_requests": self.llm_requests,
            "utterances": self.utterances,
            "llm_requests_per_turn": self.requests_per_turn(),
        }


def overhead_ms(m2e_ms: float | None, timing: Timing | None, service_s: float | None, final_s: float) -> float | None:
    """mouth-to-ear minus the time the turn's configuration and its drawn service time allow."""
    if m2e_ms is None or timing is None or service_s is None:
        return None
    return m2e_ms - timing.configured_s(final_s, service_s - final_s) * 1000


def p50(values: Sequence[float]) -> float | None:
    return percentile(values, 50) if values else None


def ratio(row: Sequence[StackResult]) -> float | None:
    """Pipecat's m2e p50 over voxframe's (above 1: voxframe is quicker); None without both."""
    if len(row) != 2:
        return None
    ours, peer = p50(row[0].m2e()), p50(row[1].m2e())
    return peer / ours if ours and peer else None


def figures_line(results: Mapping[str, Sequence[StackResult]]) -> str:
    """The last line: ratios per row, the shipped p50s, replies, misses, speculation's cost."""
    figures: dict[str, float | int | None] = {}
    for name in ("plain", "early", "preemptive", "shipped"):
        if name in results:
            figures[f"ratio_{name}"] = ratio(results[name])
    shipped = results.get("shipped", ())
    for result, key in zip(shipped, ("voxframe", "pipecat"), strict=False):
        figures[f"{key}_shipped_m2e_p50_ms"] = p50(result.m2e())
    if "embedded" in results:
        figures["local_m2e_p50_ms"] = p50(results["embedded"][0].m2e())
    every = [r for row in results.values() for r in row]
    voxframe = [r for r in every if r.side.stack == "voxframe"]
    figures["voxframe_overhead_p50_ms"] = p50([o for r in voxframe for o in r.overhead()])
    for key, side in (("voxframe", "voxframe"), ("pipecat", "pipecat")):
        figures[f"{key}_bargein_p50_ms"] = p50([b for r in every if r.side.stack == side for b in r.bargein_ms if b])
    figures["replies"] = sum(len(r.answered()) for r in every)
    figures["turns"] = sum(len(r.turns) for r in every)
    figures["missed"] = sum(r.missed() for r in every)
    for key, side in (("voxframe", "voxframe"), ("pipecat", "pipecat")):
        said = sum(r.utterances for r in every if r.side.stack == side)
        asked = sum(r.llm_requests for r in every if r.side.stack == side)
        figures[f"{key}_llm_requests_per_turn"] = asked / said if said else None
    return " ".join(f"{k}={_fmt(k, v)}" for k, v in figures.items())


def _fmt(key: str, value: float | int | None) -> str:
    if value is None:
        return "nan"
    if isinstance(value, int):
        return str(value)
    return f"{value:.2f}" if key.startswith("ratio") or key.endswith("per_turn") else f"{value:.0f}"


__all__ = [
    "Block",
    "Side",
    "StackResult",
    "Timing",
    "answering_request",
    "blocks",
    "drawn_service_s",
    "figures_line",
    "final_drawn_s",
    "interleave",
    "miss_of",
    "next_start_ns",
    "overhead_ms",
    "pipecat_records",
    "ratio",
    "requests_between",
    "rows",
    "utterance_seed",
]
