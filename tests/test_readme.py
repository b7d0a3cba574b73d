"""The README's promises hold: its code runs and its quickstart commands exist in dev.py and CI."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_the_write_your_own_bot_example_runs() -> None:
    (code,) = re.findall(r"```python\n(.*?)```", README, re.S)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_ci_runs_the_readme_test_command() -> None:
    quickstart = re.search(r"## Quickstart.*?```sh\n(.*?)```", README, re.S)
    assert quickstart is not None
    commands = [line.split("#")[0].strip() for line in quickstart.group(1).splitlines() if line.strip()]
    assert commands == ["python3 dev.py example", "python3 dev.py test"]
    assert "python3 dev.py test" in (ROOT / ".ci" / "run").read_text()
