"""Silero VAD v6 run by onnxruntime (never torch), 512-sample windows at 16 kHz.

The model is an encoder per window followed by an LSTM over the window sequence, so a batch of
consecutive windows scored in one `run` gives exactly the probabilities of scoring them one by
one with the state carried: batching only saves calls (and thread hops), never accuracy.
"""

from __future__ import annotations

import functools

import numpy as np

from ..models import SILERO_VAD, ModelSpec

_WINDOW = 512
_CONTEXT = 64  # samples of the previous window the model sees in front of each window
_STATE_SHAPE = (1, 1, 128)


@functools.cache
def _session(spec: ModelSpec):  # -> onnxruntime.InferenceSession (import kept lazy)
    import onnxruntime

    (model_bytes,) = spec.read_verified().values()
    options = onnxruntime.SessionOptions()
    # One thread: a window costs ~0.05 ms, a thread pool would cost more than it saves.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = False
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(model_bytes, sess_options=options, providers=["CPUExecutionProvider"])


class SileroVADAnalyzer:
    """Silero speech probabilities for one audio stream (the ONNX session is shared)."""

    sample_rates: tuple[int, ...] = (16_000,)

    def __init__(self, spec: ModelSpec = SILERO_VAD) -> None:
        self.spec = spec
        self._session = None
        self._reset()

    def window_samples(self, sample_rate: int) -> int:
        return _WINDOW

    def load(self) -> None:
        self._session = _session(self.spec)

    def reset(self, sample_rate: int) -> None:
        if sample_rate not in self.sample_rates:
            raise ValueError(f"Silero VAD needs 16000 Hz input audio, got {sample_rate} Hz")
        self._reset()

    def _reset(self) -> None:
        self._h = np.zeros(_STATE_SHAPE, np.float32)
        self._c = np.zeros(_STATE_SHAPE, np.float32)
        self._context = np.zeros(_CONTEXT, np.float32)

    def confidences(self, windows: np.ndarray) -> np.ndarray:
        if self._session is None:
            raise RuntimeError("SileroVADAnalyzer.load() was not called")
        audio = windows.astype(np.float32) / 32768.0
        # Each row: the last 64 samples before the window, then the window.
        previous = np.vstack([self._context[None, :], audio[:-1, -_CONTEXT:]])
        batch = np.ascontiguousarray(np.concatenate([previous, audio], axis=1))
        probs, self._h, self._c = self._session.run(None, {"input": batch, "h": self._h, "c": self._c})
        self._context = audio[-1, -_CONTEXT:].copy()
        return np.asarray(probs, np.float32).reshape(-1)


__all__ = ["SileroVADAnalyzer"]
