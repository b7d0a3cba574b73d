"""Each extra installs what its modules need, alone, at the newest and at the lowest allowed versions.

For every extra in pyproject.toml this builds a fresh venv (uv, from the package registry),
installs `voxframe[extra]` from this checkout (a real wheel, not editable), and imports the
modules that extra promises, loading the models its files pin. An extra whose code hooks into a
library's private internals (webrtc: aiortc, aioice) also runs its tests there, so both ends of
its version range really work, not merely import. Run by `.ci/run`:

    .venv/bin/python .ci/extras.py [--only vad,deepgram] [--resolutions highest,lowest-direct]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UV = Path(sys.executable).parent / "uv"

#: What each extra must make work, as Python run in the fresh venv.
CHECKS = {
    "webrtc": "import voxframe.transports.webrtc, voxframe.runner.bot; "
    "import importlib.resources as r; assert (r.files('voxframe.transports.webrtc.static') / 'index.html').is_file()",
    "deepgram": "import voxframe.processors.stt.deepgram",
    "cartesia": "import voxframe.processors.tts.cartesia; "
    "from voxframe.processors.tts.sentences import SentenceSplitter; "
    "cut = SentenceSplitter().push('The answer is no. Try again later. '); "
    "assert cut == ['The answer is no.', 'Try again later.'], cut",
    "openai": "import voxframe.processors.llm.openai",
    "fakes": "import voxframe.fakes, voxframe.fakes.deepgram, voxframe.fakes.openai, voxframe.fakes.cartesia",
    "vad": "from voxframe.processors.vad import SileroVADAnalyzer, WebRTCVADAnalyzer; "
    "SileroVADAnalyzer(); WebRTCVADAnalyzer()",
    "whisper": "from voxframe.processors.stt.whisper import load_whisper; load_whisper()",
    "otel": "from opentelemetry.sdk.trace import TracerProvider; from voxframe.runner.otel import SessionTraces; "
    "SessionTraces(TracerProvider())",
    "piper": "from voxframe.processors.tts.piper import load_piper_voice; load_piper_voice()",
    "turn": "import numpy as np; from voxframe.processors.turns.smart_turn import SmartTurnModel; "
    "assert 0 <= SmartTurnModel().predict_sync(np.zeros(16000, np.int16)).probability <= 1",
}

#: Tests run in the fresh venv (from this checkout's tests/, against the installed wheel).
TESTS = {
    "webrtc": ["tests/test_webrtc_hooks.py", "tests/test_webrtc_echo.py", "tests/test_webrtc_receive.py"],
}
TEST_TOOLS = ["pytest>=8", "pytest-timeout>=2.3", "hypothesis>=6.100"]


def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False, **kwargs)  # type: ignore[call-overload]


def check(extra: str, resolution: str, work: Path) -> str | None:
    """None if `extra` installs and works at `resolution`, else what went wrong."""
    venv = work / f"{extra}-{resolution}"
    python = venv / "bin" / "python"
    steps = [
        [str(UV), "venv", "-q", "-p", sys.executable, str(venv)],
        [str(UV), "pip", "install", "-q", "--python", str(python), "--resolution", resolution, f"{ROOT}[{extra}]"],
        [str(python), "-c", CHECKS[extra]],
    ]
    if extra in TESTS:
        steps += [
            [str(UV), "pip", "install", "-q", "--python", str(python), *TEST_TOOLS],
            [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS[extra]],
        ]
    for step in steps:
        done = run(step, cwd=ROOT if "pytest" in step else work)
        if done.returncode != 0:
            return f"{' '.join(step[:3])} ...: exit {done.returncode}\n{(done.stdout + done.stderr)[-2000:]}"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(CHECKS), help="comma-separated extras")
    parser.add_argument("--resolutions", default="highest,lowest-direct")
    args = parser.parse_args()
    if not UV.exists():
        sys.exit(f"{UV} is missing: it comes with the dev extra (pip install -e '.[dev]')")
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="voxframe-extras-") as tmp:
        for extra in args.only.split(","):
            for resolution in args.resolutions.split(","):
                started = time.monotonic()
                problem = check(extra, resolution, Path(tmp))
                status = "ok" if problem is None else "FAILED"
                print(f"{extra:<10} {resolution:<14} {status} ({time.monotonic() - started:.0f} s)", flush=True)
                if problem is not None:
                    failures.append(f"--- {extra} ({resolution})\n{problem}")
                shutil.rmtree(Path(tmp) / f"{extra}-{resolution}", ignore_errors=True)
    print("\n".join(failures))
    print(f"extras_checked={len(args.only.split(',')) * len(args.resolutions.split(','))} failed={len(failures)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
