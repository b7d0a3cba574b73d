"""Shared pieces for the provider and fake tests: a scripted user's audio, and small waits."""

from __future__ import annotations

import numpy as np

RATE = 16_000
FRAME_S = 0.02
FRAME_BYTES = int(RATE * FRAME_S) * 2


def speech(seconds: float, rate: int = RATE) -> bytes:
    """Loud enough to be speech for an energy detector: a 200 Hz tone at about -12 dBFS."""
    t = np.arange(round(seconds * rate)) / rate
    return (8000 * np.sin(2 * np.pi * 200 * t)).astype("<i2").tobytes()


def silence(seconds: float, rate: int = RATE) -> bytes:
    return bytes(2 * round(seconds * rate))


def frames(pcm: bytes, frame_bytes: int = FRAME_BYTES) -> list[bytes]:
    """Cut PCM into 20 ms frames, as a transport delivers it."""
    return [pcm[i : i + frame_bytes] for i in range(0, len(pcm), frame_bytes)]


__all__ = ["FRAME_BYTES", "FRAME_S", "RATE", "frames", "silence", "speech"]
