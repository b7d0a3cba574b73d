"""The bots under test, each in a process of its own, started and stopped cleanly.

voxframe's is `bots/example.py` exactly as a user runs it (the runner's serve mode, port 0,
`--trace-out` for the waterfall); Pipecat's is `peer_scripts/pipecat_m2e_bot.py` in Pipecat's
own venv. `bot_process` waits for the line that says the bot is listening, keeps the bot's
output in a log file, and on exit sends SIGINT (both bots stop cleanly on it).
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO

import anyio
import anyio.abc
from anyio.streams.text import TextReceiveStream
from peer import pipecat_python

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "bots" / "example.py"
PIPECAT_BOT = Path(__file__).resolve().parent / "peer_scripts" / "pipecat_m2e_bot.py"
_PROVIDER_PREFIXES = ("DEEPGRAM_", "OPENAI_", "CARTESIA_")
_READY = re.compile(r"open (http://\S+) in a browser|^READY (\d+)$|^FAKES (\{.*\})$")


def example_vad_times_s() -> tuple[float, float | None]:
    """The example bot's VAD stop time and pause time, as shipped."""
    spec = importlib.util.spec_from_file_location("example", EXAMPLE)  # bots/example.py, imported by path
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)

    pause = getattr(example, "VAD_PAUSE_S", None)
    return float(example.VAD_STOP_S), None if pause is None else float(pause)


def voxframe_command(trace: Path) -> list[str]:
    return [sys.executable, str(EXAMPLE), "--port", "0", "--trace-out", str(trace)]


def voxframe_env(fake_env: Mapping[str, str] | None, options: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment without any provider key or example option, plus the fakes' (None:
    embedded models) and the example's options for the row (`VOXFRAME_VAD_PAUSE_S`, ...)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith((*_PROVIDER_PREFIXES, "VOXFRAME_"))}
    env.update(options or {})
    if fake_env is not None:
        env.update(fake_env)
        # Like Pipecat's side: Deepgram's final comes from Finalize, sent on the VAD stop.
        env["DEEPGRAM_ENDPOINTING_MS"] = "false"
    return env


def pipecat_command(fake_env: Mapping[str, str], config: str, trace: Path) -> list[str]:
    return [
        str(pipecat_python()),
        str(PIPECAT_BOT),
        "--port",
        "0",
        "--deepgram-url",
        fake_env["DEEPGRAM_URL"],
        "--openai-url",
        fake_env["OPENAI_BASE_URL"],
        "--cartesia-url",
        fake_env["CARTESIA_URL"],
        "--config",
        config,
        "--trace-out",
        str(trace),
    ]


@asynccontextmanager
async def bot_process(
    command: list[str], env: dict[str, str] | None, log: Path, *, start_timeout_s: float = 120.0
) -> AsyncIterator[str]:
    """`async with bot_process(cmd, env, log) as url:` the bot serves at `url` inside the block
    (for the fakes' process: the JSON of their environment). `env` None: this process's."""
    log.parent.mkdir(parents=True, exist_ok=True)
    ready = anyio.Event()
    found: list[str] = []
    with log.open("w", encoding="utf-8") as out:
        process = await anyio.open_process(
            command,
            env=env if env is not None else dict(os.environ),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        async with process, anyio.create_task_group() as tg:
            tg.start_soon(_read_output, process, out, found, ready)
            try:
                with anyio.fail_after(start_timeout_s):
                    await ready.wait()
                if not found:
                    raise RuntimeError(f"the bot exited before serving; see {log}")
                yield found[0]
            finally:
                with anyio.CancelScope(shield=True):
                    await _stop(process)
                tg.cancel_scope.cancel()


async def _read_output(process: anyio.abc.Process, out: IO[str], found: list[str], ready: anyio.Event) -> None:
    """Copy the bot's output to the log; note the URL from its ready line."""
    assert process.stdout is not None
    buffer = ""
    async for text in TextReceiveStream(process.stdout):
        out.write(text)
        out.flush()
        buffer += text
        *lines, buffer = buffer.split("\n")
        for line in lines:
            match = _READY.search(line.strip())
            if match and not found:
                port = match.group(2)
                found.append(match.group(1) or match.group(3) or f"http://127.0.0.1:{port}")
                ready.set()
    ready.set()  # the process ended


async def _stop(process: anyio.abc.Process) -> None:
    """SIGINT (both bots end every session and exit on it); kill after 20 s."""
    if process.returncode is None:
        process.send_signal(signal.SIGINT)
        with anyio.move_on_after(20):
            await process.wait()
    if process.returncode is None:
        process.kill()
        await process.wait()


__all__ = ["bot_process", "example_vad_times_s", "pipecat_command", "voxframe_command", "voxframe_env"]
