"""bots/example.py's options for the benchmark's rows: no pause, not preemptive, a bad value refused."""

from __future__ import annotations

import importlib.util

import pytest

from tests.example_helpers import EXAMPLE
from voxframe.processors.turns import EndOfTurnModel, SilenceTimeout


def _load_example():  # bots/example.py, imported by path as the runner does (no sys.path edit)
    spec = importlib.util.spec_from_file_location("example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


example = _load_example()


def test_defaults_are_the_bot_as_shipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VOXFRAME_VAD_PAUSE_S", raising=False)
    monkeypatch.delenv("VOXFRAME_PREEMPTIVE", raising=False)
    monkeypatch.delenv("VOXFRAME_TURN", raising=False)
    assert (example.vad_pause_s(), example.preemptive()) == (example.VAD_PAUSE_S, True)
    strategy = example.turn_strategy()  # the end-of-turn model, with its tail rule
    assert isinstance(strategy, EndOfTurnModel) and strategy.tail.second_look_s is not None


def test_the_turn_can_end_at_the_vads_stop_instead(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXFRAME_TURN", "silence")
    assert isinstance(example.turn_strategy(), SilenceTimeout)


def test_the_pause_can_be_turned_off_or_moved_and_preemption_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXFRAME_VAD_PAUSE_S", "off")
    assert example.vad_pause_s() is None
    monkeypatch.setenv("VOXFRAME_VAD_PAUSE_S", "0.25")
    assert example.vad_pause_s() == 0.25
    monkeypatch.setenv("VOXFRAME_PREEMPTIVE", "0")
    assert example.preemptive() is False


@pytest.mark.parametrize(
    ("name", "value", "read"),
    [
        ("VOXFRAME_VAD_PAUSE_S", "soon", "vad_pause_s"),
        ("VOXFRAME_PREEMPTIVE", "maybe", "preemptive"),
        ("VOXFRAME_TURN", "guess", "turn_policy"),
    ],
)
def test_a_bad_value_is_refused_with_its_name(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, read: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit, match=name):
        getattr(example, read)()
