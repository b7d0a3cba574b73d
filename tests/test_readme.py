"""The README's promises hold: its programs run as written, from any folder, and print what it says.

Each ```python block of the README is saved in a fresh folder outside the checkout and run there
as a user would run it; its quickstart commands exist in dev.py and CI.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from example_helpers import QUESTION_WAV, clean_env, output_line, words

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BIN = Path(sys.executable).parent


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, re.S)


def bot_file_block() -> str:
    (block,) = [code for code in python_blocks() if "run_bot(create_pipeline)" in code]
    return block


def shout_block() -> str:
    (block,) = [code for code in python_blocks() if "class Shout" in code]
    return block


def test_every_python_block_is_one_of_the_programs_tested_here() -> None:
    assert sorted(python_blocks()) == sorted([bot_file_block(), shout_block()])


def test_the_shout_program_prints_what_the_readme_says(tmp_path: Path) -> None:
    program = tmp_path / "shout.py"
    program.write_text(shout_block())
    result = subprocess.run(
        [sys.executable, str(program)], capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "It prints `HELLO` and `WORLD`, one per line." in README
    assert result.stdout.splitlines() == ["HELLO", "WORLD"]


def said_lines() -> tuple[str, str]:
    """The two --call output lines the README quotes for `my_bot.py`."""
    match = re.search(r"`(bot heard: +[^`]+)` and `(bot answered: [^`]+)`", README)
    assert match is not None, "the README no longer quotes what my_bot.py prints"
    return match.group(1), match.group(2)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["python", "voxframe run"])
def test_the_bot_file_answers_a_call_by_its_rules(tmp_path: Path, how: str) -> None:
    """`my_bot.py`, saved outside the checkout, hears the shipped question and answers by its rule."""
    bot = tmp_path / "my_bot.py"
    bot.write_text(bot_file_block())
    runner = [str(BIN / "python")] if how == "python" else [str(BIN / "voxframe"), "run"]
    command = [*runner, bot.name, "--call", str(QUESTION_WAV), "--reply-out", str(tmp_path / "reply.wav")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=tmp_path, env=clean_env())
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr[-3000:]}"
    heard_line, answered_line = said_lines()
    assert words(output_line(result.stdout, "bot heard")) == words(heard_line.split(":", 1)[1])
    answer = output_line(result.stdout, "bot answered")
    assert re.fullmatch(r"It is \d\d:\d\d\.", answer), answer
    assert re.fullmatch(r"It is \d\d:\d\d\.", answered_line.split(":", 1)[1].strip())


def test_ci_runs_the_readme_test_command() -> None:
    quickstart = re.search(r"## Quickstart.*?```sh\n(.*?)```", README, re.S)
    assert quickstart is not None
    commands = [line.split("#")[0].strip() for line in quickstart.group(1).splitlines() if line.strip()]
    assert commands == ["python3 dev.py example", "python3 dev.py test"]
    assert "python3 dev.py test" in (ROOT / ".ci" / "run").read_text()
