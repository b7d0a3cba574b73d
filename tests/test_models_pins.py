"""Embedded model files load only when they hash to their pinned sha256."""

from __future__ import annotations

import hashlib
from pathlib import Path

import anyio
import numpy as np
import pytest

from voxframe.pipeline import Pipeline, PipelineError, PipelineParams, PipelineTask
from voxframe.processors.models import (
    PIPER_JOE_MEDIUM,
    SILERO_VAD,
    SMART_TURN_V3_2,
    WHISPER_TINY_EN,
    ModelError,
    ModelIntegrityError,
    ModelNotInstalledError,
    ModelSpec,
)
from voxframe.processors.stt.whisper import WhisperOptions, WhisperSTT
from voxframe.processors.tts.piper import PiperOptions, PiperTTS
from voxframe.processors.turns.smart_turn import SmartTurnModel, SmartTurnOptions
from voxframe.processors.vad import SileroVADAnalyzer, VADOptions, VADProcessor


def tampered_copy(spec: ModelSpec, tmp_path: Path, victim: str) -> Path:
    """The model's files in tmp_path (big ones linked), with one byte of `victim` changed."""
    for name in spec.sha256:
        source = spec.path(name)
        if name == victim:
            data = bytearray(source.read_bytes())
            data[len(data) // 2] ^= 0x01
            (tmp_path / name).write_bytes(bytes(data))
        else:
            (tmp_path / name).symlink_to(source)
    return tmp_path


ALL = [SILERO_VAD, WHISPER_TINY_EN, PIPER_JOE_MEDIUM, SMART_TURN_V3_2]


@pytest.mark.parametrize("spec", ALL, ids=lambda s: s.name)
def test_installed_files_match_their_pins(spec: ModelSpec) -> None:
    files = spec.read_verified()
    assert set(files) == set(spec.sha256)
    for name, data in files.items():
        assert hashlib.sha256(data).hexdigest() == spec.sha256[name]


@pytest.mark.parametrize(
    ("spec", "victim"),
    [
        (SILERO_VAD, "silero_vad_v6.onnx"),
        (WHISPER_TINY_EN, "config.json"),
        (PIPER_JOE_MEDIUM, "en_US-joe-medium.onnx.json"),
        (SMART_TURN_V3_2, "smart-turn-v3.2-cpu.onnx"),
    ],
    ids=["silero", "whisper", "piper", "smart-turn"],
)
def test_a_tampered_file_is_refused_with_its_name_and_both_hashes(spec: ModelSpec, victim: str, tmp_path: Path) -> None:
    root = tampered_copy(spec, tmp_path, victim)
    actual = hashlib.sha256((root / victim).read_bytes()).hexdigest()
    with pytest.raises(ModelIntegrityError) as caught:
        spec.at(root).read_verified()
    error = caught.value
    assert error.path == root / victim
    assert (error.expected, error.actual) == (spec.sha256[victim], actual)
    message = str(error)
    assert str(root / victim) in message and spec.sha256[victim] in message and actual in message


def test_a_missing_package_or_file_says_how_to_fix_it(tmp_path: Path) -> None:
    absent = ModelSpec(name="nothing", package="no_such_model_package", subdir="x", sha256={"m": "0" * 64}, extra="vad")
    with pytest.raises(ModelNotInstalledError, match=r"pip install 'voxframe\[vad\]'"):
        absent.read_verified()
    with pytest.raises(ModelError, match="missing"):
        SILERO_VAD.at(tmp_path).read_verified()


@pytest.mark.anyio
@pytest.mark.parametrize("which", ["vad", "stt", "tts"])
async def test_a_processor_with_a_tampered_model_fails_setup_and_never_loads_it(which: str, tmp_path: Path) -> None:
    if which == "vad":
        root = tampered_copy(SILERO_VAD, tmp_path, "silero_vad_v6.onnx")
        processor = VADProcessor(VADOptions(analyzer=SileroVADAnalyzer(SILERO_VAD.at(root))))
    elif which == "stt":
        root = tampered_copy(WHISPER_TINY_EN, tmp_path, "config.json")
        processor = WhisperSTT(WhisperOptions(model=WHISPER_TINY_EN.at(root)))
    else:
        root = tampered_copy(PIPER_JOE_MEDIUM, tmp_path, "en_US-joe-medium.onnx.json")
        processor = PiperTTS(PiperOptions(voice=PIPER_JOE_MEDIUM.at(root)))
    task = PipelineTask(Pipeline([processor]), PipelineParams(idle_timeout_s=None))
    with pytest.raises(PipelineError, match="sha256 mismatch"), anyio.fail_after(30):
        await task.run()


@pytest.mark.anyio
async def test_smart_turn_with_a_tampered_model_refuses_to_predict_and_never_loads_it(tmp_path: Path) -> None:
    root = tampered_copy(SMART_TURN_V3_2, tmp_path, "smart-turn-v3.2-cpu.onnx")
    model = SmartTurnModel(SmartTurnOptions(model=SMART_TURN_V3_2.at(root)))
    with pytest.raises(ModelIntegrityError, match="sha256 mismatch"), anyio.fail_after(30):
        await model.predict(np.zeros(16_000, np.int16))


def test_smart_turn_ships_in_voxframe_itself_with_its_licence() -> None:
    """Vendored from the pipecat-ai 1.14.0 wheel: its BSD-2-Clause notice travels with it."""
    assert SMART_TURN_V3_2.directory().parent.name == "turns"
    licence = (SMART_TURN_V3_2.directory() / "LICENSE").read_text()
    assert licence.startswith("BSD 2-Clause License") and "Copyright (c) 2024\u20132026, Daily" in licence


def test_pins_cover_every_file_the_packages_ship_for_the_models() -> None:
    """A new file in a package (an updated model) must be pinned deliberately, not ignored."""
    ignored = {"__init__.py", "__pycache__", "MODEL_CARD", "LICENSE"}
    for spec in ALL:
        shipped = {p.name for p in spec.directory().iterdir() if p.name not in ignored}
        assert shipped == set(spec.sha256), spec.name
