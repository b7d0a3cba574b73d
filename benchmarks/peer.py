"""The peer framework the benchmarks compare against, in its own virtual environment.

Pipecat is installed from the registry, pinned, into `.peer-venvs/pipecat-<version>` with the
extras every benchmark needs, so its dependencies never mix with voxframe's. Move the pin on
deliberately: ratios are only comparable between runs of the same peer version.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PIPECAT_VERSION = "1.14.0"
PIPECAT_EXTRAS = ("webrtc", "deepgram", "openai", "cartesia", "silero")
ROOT = Path(__file__).resolve().parent.parent


def pipecat_python() -> Path:
    """The interpreter of the Pipecat environment, created on first use."""
    venv = ROOT / ".peer-venvs" / f"pipecat-{PIPECAT_VERSION}"
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    wanted = f"pipecat-ai[{','.join(PIPECAT_EXTRAS)}]=={PIPECAT_VERSION}"
    if stamp.exists() and stamp.read_text() == wanted:
        return python
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    print(f"installing {wanted} into {venv} (first run only)", file=sys.stderr, flush=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", wanted, "numpy"], check=True)
    stamp.write_text(wanted)
    return python


if __name__ == "__main__":
    print(pipecat_python())
