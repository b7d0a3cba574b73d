"""16-bit PCM WAV files in and out: what the headless client plays and the runner writes back.

The standard library's `wave` does the container; this adds only the int16 array view and a
clear error for the formats the transports cannot play.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """A mono int16 array and its rate from a 16-bit PCM WAV file (stereo is averaged)."""
    try:
        with wave.open(str(path), "rb") as wav:
            if wav.getsampwidth() != 2:
                raise ValueError(f"{path}: only 16-bit PCM WAV is supported")
            frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
            channels, rate = wav.getnchannels(), wav.getframerate()
    except wave.Error as exc:
        raise ValueError(f"{path}: not a PCM WAV file ({exc})") from exc
    if channels > 1:
        frames = frames.reshape(-1, channels).mean(axis=1).astype(np.int16)
    return frames.astype(np.int16), rate


def write_wav(path: str | Path, samples: np.ndarray, rate: int) -> None:
    """Write mono int16 `samples` at `rate` as a 16-bit PCM WAV, making the folder if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(np.asarray(samples).astype("<i2").tobytes())
