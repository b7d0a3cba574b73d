"""Shared pieces for the example-bot and mouth-to-ear tests: paths, a clean environment, audio checks."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from voxframe.pipeline.audio import loud_windows

ROOT = Path(__file__).resolve().parent.parent
BOTS = ROOT / "bots"
BENCHMARKS = ROOT / "benchmarks"
EXAMPLE = BOTS / "example.py"
QUESTION_WAV = BOTS / "assets" / "what_time_is_it.wav"
_PROVIDER_PREFIXES = ("DEEPGRAM_", "OPENAI_", "CARTESIA_")


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any provider variable, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_PROVIDER_PREFIXES)}
    env.update(extra)
    return env


def words(text: str) -> list[str]:
    """Lower-case words without punctuation, to compare transcripts."""
    return re.findall(r"[a-z0-9']+", text.lower())


def output_line(stdout: str, label: str) -> str:
    """The value of a `label: value` line of the runner's --call output."""
    for line in stdout.splitlines():
        if line.startswith(f"{label}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {label!r} line in:\n{stdout}")


def loud_seconds(samples: np.ndarray, rate: int, threshold_dbfs: float = -40.0) -> float:
    """How much of `samples` (10 ms windows) is above the threshold: audible audio."""
    return float(np.count_nonzero(loud_windows(samples, rate // 100, threshold_dbfs)) * 0.01)
