"""The container image: its Dockerfile installs the package as setup.py lays it out, and builds.

The build needs a container engine and its base image, which CI machines may not have: that
test runs only where `docker info` answers (and says so when it does not run).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def test_the_image_copies_every_package_root_and_installs_real_extras() -> None:
    setup = (ROOT / "setup.py").read_text()
    (roots,) = re.findall(r"ROOTS = \((.*?)\)", setup)
    copied = set(re.findall(r"^COPY (\S+) \1$", DOCKERFILE, re.M))
    assert {r.strip(' "') for r in roots.split(",") if r.strip()} <= copied
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    (wanted,) = re.findall(r'pip install "\.\[(.*?)\]"', DOCKERFILE)
    assert set(wanted.split(",")) <= extras


def test_the_image_serves_a_bot_that_exists_on_the_ports_it_exposes() -> None:
    (cmd,) = re.findall(r"^CMD \[(.*)\]$", DOCKERFILE, re.M)
    assert (ROOT / cmd.split(",")[2].strip(' "')).is_file()
    (low, high) = re.findall(r"VOXFRAME_UDP_PORTS=(\d+)-(\d+)", DOCKERFILE)[0]
    assert f"{low}-{high}/udp" in DOCKERFILE
    assert "VOXFRAME_PORT=7860" in DOCKERFILE and "7860/tcp" in DOCKERFILE


def _engine() -> str | None:
    docker = shutil.which("docker")
    if docker is None:
        return None
    done = subprocess.run([docker, "info"], capture_output=True, timeout=30, check=False)
    return docker if done.returncode == 0 else None


@pytest.mark.slow
@pytest.mark.skipif(_engine() is None, reason="no container engine answers `docker info` on this machine")
def test_the_image_builds() -> None:
    engine = _engine()
    assert engine is not None
    done = subprocess.run(
        [engine, "build", "-t", "voxframe-test", str(ROOT)], capture_output=True, text=True, timeout=1800, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
