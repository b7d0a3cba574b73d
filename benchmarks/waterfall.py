"""The per-turn latency waterfall: tracer points joined with the client's, as JSON and a PNG.

Every time is in ms from the moment the user's speech ended at the client's microphone, so a
turn reads left to right: the VAD decides the user stopped, the STT's final transcript, the
LLM's first token, the first text handed to TTS, its first audio, the first packet on the wire,
and the first audible sample at the client's ear. Processor rows (`<name>:in` -> `<name>:out`:
first frame of the reply received -> first frame of it emitted) show where the time went.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from stats import percentile

#: The stages of a reply, in the order they happen, with the label a reader sees.
POINTS: tuple[tuple[str, str], ...] = (
    ("mic_speech_end", "user stops speaking (mic)"),
    ("speech_end", "speech end reaches the bot"),
    ("vad_pause", "VAD pause (reply prepared)"),
    ("vad_stop", "VAD stop"),
    ("turn_end", "turn end (Pipecat's strategy)"),
    ("stt_final", "STT final"),
    ("llm_first_token", "LLM first token"),
    ("tts_first_text", "first text to TTS"),
    ("tts_first_audio", "TTS first audio"),
    ("first_audio_out", "paced to the transport"),
    ("first_packet_out", "first packet out"),
    ("ear_first_audio", "first audio at the ear"),
)
STAGE_COLOURS = (
    "#c6dbef",
    "#deebf7",
    "#9ecae1",
    "#6baed6",
    "#4292c6",
    "#fd8d3c",
    "#fdd0a2",
    "#74c476",
    "#bcbddc",
    "#807dba",
    "#969696",
)


def relative_points(points_ns: Mapping[str, int], origin_ns: int) -> dict[str, float]:
    """Tracer and client points in ms from `origin_ns` (the end of the user's speech)."""
    return {name: round((t - origin_ns) / 1e6, 2) for name, t in sorted(points_ns.items(), key=lambda kv: kv[1])}


def median_points(turns: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Median time of each point over the turns that have it, kept in waterfall order."""
    names = {name for turn in turns for name in turn.get("points_ms", {})}
    medians = {
        name: percentile([t["points_ms"][name] for t in turns if name in t.get("points_ms", {})], 50) for name in names
    }
    return dict(sorted(medians.items(), key=lambda kv: kv[1]))


def stage_bars(medians: Mapping[str, float]) -> list[tuple[str, float, float]]:
    """(label, start, length) of each known stage present, in the order they happened (a reply
    prepared at the pause has its final and first token before or around the VAD stop)."""
    present = sorted(((key, label) for key, label in POINTS if key in medians), key=lambda kl: medians[kl[0]])
    bars = []
    for (prev, _), (key, label) in itertools.pairwise(present):
        start = medians[prev]
        bars.append((label, start, max(0.0, medians[key] - start)))
    return bars


def processor_rows(medians: Mapping[str, float]) -> list[tuple[str, float, float]]:
    """(processor, first in, first out) of the processors on the reply's way out.

    A processor that starts the reply emits before it receives anything of it (the user
    aggregator): its row is the instant it emitted. Processors that only saw the reply's
    speaking events travel back upstream (once its first audio went out) are left out.
    """
    last = medians.get("first_audio_out", math.inf)
    rows = []
    for name in medians:
        if not name.endswith((":in", ":out")):
            continue
        proc = name.rsplit(":", 1)[0]
        if proc.startswith("task.") or any(row[0] == proc for row in rows):
            continue
        t_in, t_out = medians.get(f"{proc}:in"), medians.get(f"{proc}:out")
        if t_out is not None and (t_in is None or t_out < t_in):
            t_in = t_out  # it started the reply
        start = t_in if t_in is not None else t_out
        assert start is not None
        if start < last:
            rows.append((proc, start, t_out if t_out is not None else start))
    return sorted(rows, key=lambda row: row[1])


def write_json(path: Path, result: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))


def plot(stacks: Mapping[str, Sequence[Mapping[str, Any]]], path: Path, title: str) -> None:
    """Three panels: median stages per stack, processors of each traced stack, m2e per turn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    traced = {name: median_points(turns) for name, turns in stacks.items() if turns}
    with_processors = {name: rows for name, m in traced.items() if (rows := processor_rows(m))}
    heights = [1.6 + 0.6 * len(stacks), *(1 + 0.3 * (len(r) + len(POINTS)) for r in with_processors.values()), 2.6]
    fig, axes = plt.subplots(len(heights), 1, figsize=(12, sum(heights) + 1.2), height_ratios=heights)
    fig.suptitle(title, fontsize=12)
    _plot_stages(axes[0], traced)
    for ax, (name, rows) in zip(axes[1:-1], with_processors.items(), strict=True):
        _plot_processors(ax, name, rows, traced[name])
    _plot_distribution(axes[-1], stacks)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_stages(ax: Any, traced: Mapping[str, Mapping[str, float]]) -> None:
    labels = [label for _, label in POINTS[1:]]
    colour = dict(zip(labels, STAGE_COLOURS, strict=True))
    names = list(traced)
    for row, name in enumerate(names):
        bars = stage_bars(traced[name])
        if len(bars) == 1:  # only the client's two points: no trace from inside this stack
            bars = [("end to end (client only)", bars[0][1], bars[0][2])]
            colour.setdefault(bars[0][0], "#d9d9d9")
        for label, start, length in bars:
            ax.barh(row, length, left=start, color=colour[label], edgecolor="white", label=label)
            if length >= 35:
                ax.text(start + length / 2, row, f"{length:.0f}", ha="center", va="center", fontsize=8)
        end = traced[name].get("ear_first_audio")
        if end is not None:
            ax.text(end + 8, row, f"{end:.0f} ms", va="center", fontsize=9, fontweight="bold")
    ax.set_yticks(range(len(names)), names)
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.set_xlabel("ms after the user's speech ended at the microphone (median of each point over the turns)")
    ax.set_title("Mouth-to-ear, stage by stage")
    unique = dict(zip(*reversed(ax.get_legend_handles_labels()), strict=True))
    if unique:
        ax.legend(unique.values(), unique.keys(), loc="upper center", bbox_to_anchor=(0.5, -0.32), fontsize=8, ncols=4)
    ax.grid(axis="x", alpha=0.3)


def _plot_processors(
    ax: Any, name: str, rows: Sequence[tuple[str, float, float]], medians: Mapping[str, float]
) -> None:
    """Processors as bars and the named points as diamonds, one row each, in time order."""
    items: list[tuple[float, str, float | None]] = [(t_in, proc, t_out) for proc, t_in, t_out in rows]
    items += [(medians[key], label, None) for key, label in POINTS[1:] if key in medians]
    items.sort(key=lambda item: item[0])
    for row, (start, _label, t_out) in enumerate(items):
        if t_out is None:
            ax.scatter([start], [row], marker="D", s=30, color="#fd8d3c", zorder=3)
            ax.text(start + 6, row, f"{start:.0f}", va="center", fontsize=7)
        else:
            ax.barh(row, max(t_out - start, 1.0), left=start, color="#6baed6")
            ax.text(t_out + 6, row, f"{start:.0f} -> {t_out:.0f}", va="center", fontsize=7)
    ax.set_yticks(range(len(items)), [label for _, label, _ in items], fontsize=8)
    ax.set_ylim(len(items) - 0.5, -0.5)
    ax.set_xlim(left=0)
    ax.set_title(f"{name}: processors (first frame of the reply in -> first out) and points, median turn", fontsize=9)
    ax.grid(axis="x", alpha=0.3)


def _plot_distribution(ax: Any, stacks: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
    for row, (_name, turns) in enumerate(stacks.items()):
        values = [t["m2e_ms"] for t in turns if t.get("m2e_ms") is not None]
        if not values:
            continue
        ax.scatter(values, [row] * len(values), s=14, alpha=0.6)
        for q, mark, dy in ((50, "|", -0.3), (95, "x", 0.42)):
            v = percentile(values, q)
            ax.scatter([v], [row], marker=mark, s=220, color="black")
            ax.text(v, row + dy, f"p{q} {v:.0f}", ha="center", fontsize=8)
    ax.set_yticks(range(len(stacks)), list(stacks))
    ax.set_ylim(len(stacks) - 0.4, -0.7)
    ax.set_xlabel("mouth-to-ear per turn, ms")
    ax.set_title("Every turn")
    ax.grid(axis="x", alpha=0.3)


__all__ = ["POINTS", "median_points", "percentile", "plot", "relative_points", "stage_bars", "write_json"]
