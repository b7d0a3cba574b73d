"""Smart Turn v3.2: has the user finished their turn, judged from the sound of its last 8 s.

The model (an int8 Whisper-tiny encoder with a classifier head, ONNX) hears intonation and
rhythm, not words: a question that trails off mid-sentence ("What is the capital of") sounds
unfinished, a completed one sounds finished. It outputs one sigmoid probability that the turn is
complete; Pipecat calls the turn complete above 0.5, and so does `SmartTurnOptions` by default.

The session is loaded once per process from the sha256-pinned file (`SMART_TURN_V3_2`), and every
inference (features included) runs in a worker thread, never on the event loop.

    model = SmartTurnModel()
    prediction = await model.predict(turn_audio)  # int16 or float32 mono at 16 kHz
    if prediction.complete: ...
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio
import numpy as np

from ..models import SMART_TURN_V3_2, ModelSpec
from .features import SAMPLE_RATE, WINDOW_SAMPLES, smart_turn_features

if TYPE_CHECKING:
    import onnxruntime


@dataclass(frozen=True, slots=True)
class TurnPrediction:
    """The model's verdict on a turn: `probability` that it is complete, and that against the threshold."""

    complete: bool
    probability: float


@dataclass(frozen=True, slots=True)
class SmartTurnOptions:
    """`threshold`: the probability above which a turn is complete (Pipecat's: 0.5).

    `threads`: onnxruntime's intra-op threads for one inference. One by default: on a 2-core machine
    a second thread gains little (benchmarks/embedded_models.py measures both) and takes the core
    the VAD, STT and TTS share.
    """

    threshold: float = 0.5
    threads: int = 1
    model: ModelSpec = field(default=SMART_TURN_V3_2)

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be between 0 and 1, got {self.threshold}")
        if self.threads < 1:
            raise ValueError(f"threads must be at least 1, got {self.threads}")


_loading = threading.Lock()


def load_smart_turn(spec: ModelSpec = SMART_TURN_V3_2, threads: int = 1) -> onnxruntime.InferenceSession:
    """The ONNX session, built from the pinned bytes (blocking: call it in a thread); one per process.

    Locked, so that sessions whose first pauses come together load the 8.7 MB model once, not each.
    """
    with _loading:
        return _load(spec, threads)


@functools.cache
def _load(spec: ModelSpec, threads: int) -> onnxruntime.InferenceSession:
    import onnxruntime

    (model_bytes,) = spec.read_verified().values()
    options = onnxruntime.SessionOptions()
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(model_bytes, sess_options=options, providers=["CPUExecutionProvider"])


class SmartTurnModel:
    """End-of-turn predictions for any number of sessions (the ONNX session is shared and thread-safe)."""

    def __init__(self, options: SmartTurnOptions | None = None) -> None:
        self.options = options or SmartTurnOptions()
        self._session: onnxruntime.InferenceSession | None = None

    async def load(self) -> None:
        """Read, check and load the model in a thread; predict() does it on first use if not done."""
        if self._session is None:
            self._session = await anyio.to_thread.run_sync(load_smart_turn, self.options.model, self.options.threads)

    async def predict(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> TurnPrediction:
        """Whether the turn whose audio this is (int16 or float32, mono, 16 kHz) is complete.

        Only the last 8 s count; shorter audio is zero-padded in front, as the model was trained.
        Those are copied before the thread hop, so the caller may reuse its buffer at once.
        Cancelling waits for an inference under way to end (tens of ms), then raises.
        """
        _check_audio(audio, sample_rate)
        await self.load()
        return await anyio.to_thread.run_sync(self.predict_sync, audio[-WINDOW_SAMPLES:].copy())

    def predict_sync(self, audio: np.ndarray) -> TurnPrediction:
        """`predict` in the calling thread (blocking: for worker threads and benchmarks)."""
        _check_audio(audio, SAMPLE_RATE)
        if self._session is None:
            self._session = load_smart_turn(self.options.model, self.options.threads)
        features = smart_turn_features(audio)[np.newaxis]
        (output,) = self._session.run(None, {"input_features": features})
        probability = float(np.asarray(output).reshape(-1)[0])
        return TurnPrediction(complete=probability > self.options.threshold, probability=probability)


def _check_audio(audio: np.ndarray, sample_rate: int) -> None:
    """A clear error for input the model would silently misjudge."""
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"Smart Turn needs {SAMPLE_RATE} Hz audio, got {sample_rate} Hz: resample it first")
    if not isinstance(audio, np.ndarray):
        raise TypeError(f"Smart Turn audio must be a numpy array, got {type(audio).__name__}")
    if audio.ndim != 1:
        raise ValueError(f"Smart Turn needs mono audio (a 1-D array), got shape {audio.shape}")
    if audio.dtype not in (np.int16, np.float32):
        raise ValueError(f"Smart Turn audio must be int16 or float32 samples, got {audio.dtype}")
    if audio.size == 0:
        raise ValueError("Smart Turn got no audio to judge")


__all__ = ["SmartTurnModel", "SmartTurnOptions", "TurnPrediction", "load_smart_turn"]
