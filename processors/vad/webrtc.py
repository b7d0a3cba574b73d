"""webrtcvad: the light alternative (a GMM, microseconds per window, binary decisions)."""

from __future__ import annotations

import numpy as np

_WINDOW_MS = 30


class WebRTCVADAnalyzer:
    """webrtcvad decisions as confidences 0.0/1.0 on 30 ms windows.

    `aggressiveness` 0-3: higher rejects more non-speech (and more quiet speech).
    """

    sample_rates: tuple[int, ...] = (8_000, 16_000, 32_000, 48_000)

    def __init__(self, aggressiveness: int = 2) -> None:
        if aggressiveness not in range(4):
            raise ValueError(f"webrtcvad aggressiveness must be 0-3, got {aggressiveness}")
        self.aggressiveness = aggressiveness
        self._vad = None
        self._sample_rate = 16_000

    def window_samples(self, sample_rate: int) -> int:
        return sample_rate * _WINDOW_MS // 1000

    def load(self) -> None:
        import webrtcvad

        self._vad = webrtcvad.Vad(self.aggressiveness)

    def reset(self, sample_rate: int) -> None:
        if sample_rate not in self.sample_rates:
            raise ValueError(f"webrtcvad needs 8, 16, 32 or 48 kHz input audio, got {sample_rate} Hz")
        self._sample_rate = sample_rate
        if self._vad is not None:
            self.load()  # a fresh instance: webrtcvad keeps adaptive state per stream

    def confidences(self, windows: np.ndarray) -> np.ndarray:
        if self._vad is None:
            raise RuntimeError("WebRTCVADAnalyzer.load() was not called")
        rate = self._sample_rate
        return np.array([float(self._vad.is_speech(w.tobytes(), rate)) for w in windows], np.float32)


__all__ = ["WebRTCVADAnalyzer"]
