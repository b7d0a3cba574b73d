"""Shared pieces for the example-bot and mouth-to-ear tests: paths, a clean environment, the example
serving as a user starts it, audio checks."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.abc
import numpy as np

from tests.support import Console
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


@dataclass
class ServedExample:
    """`python bots/example.py --port 0` while it serves: its page's URL and its console."""

    url: str
    console: Console
    process: anyio.abc.Process


@asynccontextmanager
async def serving_example(*args: str) -> AsyncIterator[ServedExample]:
    """Start the example bot as a user does (embedded models, no keys) and wait for its ready line.

    On exit a still-running bot gets Ctrl-C (SIGINT) and, after 30 s, SIGKILL; a test that stops
    it itself (to check the shutdown) finds it already gone.
    """
    command = [sys.executable, str(EXAMPLE), "--port", "0", *args]
    process = await anyio.open_process(
        command, env=clean_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    async with process, anyio.create_task_group() as tg:
        console = Console(process)
        tg.start_soon(console.read)
        try:
            with anyio.fail_after(60):
                ready = (await console.wait_for(r"voxframe bot ready: open http://127\.0\.0\.1:")).string
            yield ServedExample(ready.split("open ", 1)[1].split()[0], console, process)
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGINT)
                with anyio.move_on_after(30):
                    await process.wait()
            if process.returncode is None:
                process.kill()
            tg.cancel_scope.cancel()


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
