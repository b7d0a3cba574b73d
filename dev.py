#!/usr/bin/env python3
"""One entry point that sets a fresh machine up and runs voxframe's commands.

    python3 dev.py example [ARGS]   run bots/example.py (ARGS are passed on)
    python3 dev.py test [ARGS]      run the whole test suite (ARGS go to pytest)
    python3 dev.py bench NAME [ARGS]  run benchmarks/NAME.py
    python3 dev.py lint             ruff check, ruff format --check
    python3 dev.py typecheck        mypy over the voxframe package (pipeline, processors, ...)
    python3 dev.py fakes            start the fake Deepgram/OpenAI/Cartesia servers

Every command first makes sure `.venv` exists and holds the project with all its extras,
reinstalling only when `pyproject.toml` changed. `test` also installs the Debian packages the
tests drive (chromium, coturn). Only python3 is needed to start.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / "bin" / "python"
STAMP = VENV / ".voxframe-installed"
#: The binary each Debian package the tests drive provides (the browser, TURN, the load balancer,
#: and node/npm to bundle Pipecat's client SDK).
DEBIAN_TEST_PACKAGES = {
    "chromium": "chromium",
    "turnserver": "coturn",
    "nginx": "nginx",
    "node": "nodejs",
    "npm": "npm",
}
#: Where Debian puts daemons (nginx) that a non-root PATH may lack.
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def run(cmd: list[str], **kwargs: object) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT, **kwargs)  # type: ignore[call-overload]


def apt_install(packages: list[str]) -> None:
    if os.geteuid() != 0:
        sys.exit(f"please install these Debian packages (needs root): {' '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-q"], env=env)
    run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages], env=env)


def ensure_venv() -> None:
    if not PY.exists():
        try:
            run([sys.executable, "-m", "venv", str(VENV)])
        except subprocess.CalledProcessError:
            # Debian's python3 ships venv without ensurepip until python3-venv is installed.
            shutil.rmtree(VENV, ignore_errors=True)
            apt_install(["python3-venv"])
            run([sys.executable, "-m", "venv", str(VENV)])
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    run([str(PY), "-m", "pip", "install", "-q", "--upgrade", "pip"])
    run([str(PY), "-m", "pip", "install", "-q", "-e", ".[dev]"])
    STAMP.write_text(wanted)


def ensure_test_tools() -> None:
    missing = [pkg for binary, pkg in DEBIAN_TEST_PACKAGES.items() if shutil.which(binary, path=SBIN_PATH) is None]
    if missing:
        apt_install(missing)


def package_view() -> Path:
    """A folder where `voxframe/<part>` links to each top-level part of the checkout, so mypy sees
    the package as it is installed (the editable install maps it with an import hook mypy cannot follow)."""
    view = VENV / "typecheck-view"
    (view / "voxframe").mkdir(parents=True, exist_ok=True)
    for part in ("pipeline", "processors", "transports", "fakes", "runner"):
        link = view / "voxframe" / part
        if not link.is_symlink():
            link.symlink_to(ROOT / part)
    return view


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"example", "test", "bench", "lint", "typecheck", "fakes"}:
        print(__doc__)
        return 2
    command, args = argv[0], argv[1:]
    ensure_venv()
    os.chdir(ROOT)
    if command == "example":
        cmd = [str(PY), "bots/example.py", *args]
    elif command == "test":
        ensure_test_tools()
        cmd = [str(PY), "-m", "pytest", *args]
    elif command == "bench":
        if not args:
            sys.exit("usage: python3 dev.py bench NAME [ARGS]")
        cmd = [str(PY), f"benchmarks/{args[0]}.py", *args[1:]]
    elif command == "fakes":
        cmd = [str(PY), "-m", "voxframe.fakes", *args]
    elif command == "typecheck":
        cmd = [str(PY), "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "-p", "voxframe", *args]
        os.environ["MYPYPATH"] = str(package_view())
    else:  # lint: the rules, then the layout
        run([str(PY), "-m", "ruff", "check", "."])
        cmd = [str(PY), "-m", "ruff", "format", "--check", "."]
    sys.stdout.flush()
    # Become the command: Ctrl-C and its exit status then belong to it alone.
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
