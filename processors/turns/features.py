"""The input Smart Turn v3 was trained on: a Whisper log-mel spectrogram of the turn's last 8 s.

Written with numpy alone (no transformers, no torch), following the preprocessing Pipecat 1.14.0
runs before its model (`LocalSmartTurnAnalyzerV3._predict_endpoint`):

1. int16 audio becomes float32 in [-1, 1) (divided by 32768);
2. the last 8 s at 16 kHz are kept; a shorter turn is zero-padded at the *start*, so the
   turn's end is always the spectrogram's last frame (the end is what the model judges);
3. the 8 s window is normalized to zero mean and unit variance (eps 1e-7), padding included;
4. Whisper's log-mel: 400-point periodic-Hann STFT, hop 160, centered with reflect padding, power
   spectrum, 80 Slaney mel filters (0-8 kHz, Slaney area-normalized), log10 floored at 1e-10, the
   last frame dropped, clamped to 8 (log10 units) below the maximum, then (x + 4) / 4.

The result is (80, 800) float32: the model's `input_features` once a batch axis is added.
"""

from __future__ import annotations

import functools

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

SAMPLE_RATE = 16_000
WINDOW_S = 8
WINDOW_SAMPLES = SAMPLE_RATE * WINDOW_S
N_FFT = 400
HOP = 160
N_MELS = 80
N_FRAMES = WINDOW_SAMPLES // HOP  # 800
_LOG_FLOOR = 1e-10
_NORMALIZE_EPS = 1e-7


def last_window(audio: np.ndarray) -> np.ndarray:
    """The last 8 s of 16 kHz mono audio as float32 in [-1, 1], zero-padded at the start."""
    if audio.ndim != 1:
        raise ValueError(f"Smart Turn needs mono audio (a 1-D array), got shape {audio.shape}")
    if audio.dtype == np.int16:
        samples = audio[-WINDOW_SAMPLES:].astype(np.float32) / 32768.0
    elif audio.dtype == np.float32:
        samples = audio[-WINDOW_SAMPLES:]
        if not np.isfinite(samples).all():
            raise ValueError("Smart Turn audio has NaN or infinite samples")
    else:
        raise ValueError(f"Smart Turn audio must be int16 or float32 samples, got {audio.dtype}")
    window = np.zeros(WINDOW_SAMPLES, np.float32)
    window[WINDOW_SAMPLES - len(samples) :] = samples
    return window


def normalize(samples: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance, in float32 (the precision the model's training features had)."""
    samples = samples.astype(np.float32, copy=False)
    return (samples - samples.mean()) / np.sqrt(samples.var() + _NORMALIZE_EPS)


def log_mel(samples: np.ndarray) -> np.ndarray:
    """Whisper's 80-band log-mel spectrogram of `samples` (already 16 kHz), one frame per 160 samples.

    `len(samples) // 160` frames come out: the centered STFT gives one more, which Whisper drops.
    """
    padded = np.pad(samples.astype(np.float64), N_FFT // 2, mode="reflect")
    frames = sliding_window_view(padded, N_FFT)[::HOP]
    power = np.abs(np.fft.rfft(frames * _hann(), axis=-1)) ** 2  # (frames, 201)
    # float32 for the filterbank product: exact enough (log10 error < 1e-6), and small enough that
    # OpenBLAS runs it on one thread; in float64 it fans out and, on a busy 2-core machine, costs 20x.
    mel = np.maximum(power.astype(np.float32) @ _mel_filters(), _LOG_FLOOR)  # (frames, 80)
    spectrum = np.log10(mel)[:-1].T
    spectrum = np.maximum(spectrum, spectrum.max() - 8.0)
    return ((spectrum + 4.0) / 4.0).astype(np.float32)


def smart_turn_features(audio: np.ndarray) -> np.ndarray:
    """The model's input for a turn's audio (int16 or float32 at 16 kHz): (80, 800) float32."""
    return log_mel(normalize(last_window(audio)))


@functools.cache
def _hann() -> np.ndarray:
    # Periodic, as torch.hann_window and Whisper use: the symmetric window one sample longer, cut.
    window = np.hanning(N_FFT + 1)[:-1]
    window.setflags(write=False)
    return window


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """Slaney's mel scale: linear (3 mel per 200 Hz) below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, np.float64)
    linear = 3.0 * hz / 200.0
    logarithmic = 15.0 + np.log(np.maximum(hz, 1e-12) / 1000.0) * (27.0 / np.log(6.4))
    return np.where(hz >= 1000.0, logarithmic, linear)


def _mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    mel = np.asarray(mel, np.float64)
    linear = 200.0 * mel / 3.0
    logarithmic = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0))
    return np.where(mel >= 15.0, logarithmic, linear)


@functools.cache
def _mel_filters() -> np.ndarray:
    """(201 FFT bins, 80 bands) triangular filters, each scaled to unit area (Slaney norm)."""
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(SAMPLE_RATE / 2), N_MELS + 2))
    bins = np.linspace(0.0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    rising = (bins[:, None] - edges[None, :-2]) / np.diff(edges)[None, :-1]
    falling = (edges[None, 2:] - bins[:, None]) / np.diff(edges)[None, 1:]
    filters = np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (edges[2:] - edges[:-2]))[None, :]
    filters = filters.astype(np.float32)
    filters.setflags(write=False)
    return filters


__all__ = [
    "N_FRAMES",
    "N_MELS",
    "SAMPLE_RATE",
    "WINDOW_S",
    "WINDOW_SAMPLES",
    "last_window",
    "log_mel",
    "normalize",
    "smart_turn_features",
]
