"""Audio for the fakes: spoken-like tone bursts, sample encodings, energy-based speech detection."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from voxframe.pipeline.audio import loud_windows

#: Bytes per sample of each Cartesia raw encoding.
SAMPLE_BYTES = {"pcm_s16le": 2, "pcm_f32le": 4, "pcm_mulaw": 1, "pcm_alaw": 1}


def speech_like(
    words: list[tuple[float, float]], total_s: float, sample_rate: int, *, level: float = 0.25
) -> np.ndarray:
    """A float signal in [-1, 1]: a vowel-like tone during each (start, end) word, silence between.

    Audible and easy to detect (for a client measuring first audio), cheap to make.
    """
    n = round(total_s * sample_rate)
    out = np.zeros(n, dtype=np.float32)
    for start, end in words:
        a, b = round(start * sample_rate), min(n, round(end * sample_rate))
        if b <= a:
            continue
        t = np.arange(b - a, dtype=np.float32) / sample_rate
        ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)  # 10 ms fades: no clicks
        out[a:b] = level * ramp * (np.sin(2 * np.pi * 220 * t) + 0.5 * np.sin(2 * np.pi * 660 * t)) / 1.5
    return out


def encode(signal: np.ndarray, encoding: str) -> bytes:
    """Encode a float signal as one of Cartesia's raw encodings."""
    clipped = np.clip(signal, -1.0, 1.0)
    if encoding == "pcm_s16le":
        return (clipped * 32767).astype("<i2").tobytes()
    if encoding == "pcm_f32le":
        return clipped.astype("<f4").tobytes()
    if encoding == "pcm_mulaw":
        return _mulaw(clipped).tobytes()
    if encoding == "pcm_alaw":
        return _alaw(clipped).tobytes()
    raise ValueError(f"unsupported encoding {encoding!r}")


def _mulaw(x: np.ndarray) -> np.ndarray:
    """G.711 mu-law (bit-inverted, as on the wire)."""
    pcm = (x * 32767).astype(np.int32)
    sign = np.where(pcm < 0, 0x80, 0)
    mag = np.minimum(np.abs(pcm), 32635) + 0x84
    exponent = np.floor(np.log2(mag)).astype(np.int32) - 7
    mantissa = (mag >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8)


def _alaw(x: np.ndarray) -> np.ndarray:
    """G.711 A-law (even bits inverted, as on the wire)."""
    pcm = (x * 32767).astype(np.int32) >> 3
    sign = np.where(pcm >= 0, 0x80, 0)
    mag = np.minimum(np.abs(pcm), 0xFFF)
    exponent = np.where(mag >= 32, np.floor(np.log2(np.maximum(mag, 1))).astype(np.int32) - 4, 0)
    mantissa = np.where(exponent > 0, (mag >> np.maximum(exponent, 1)) & 0x0F, (mag >> 1) & 0x0F)
    return ((sign | (exponent << 4) | mantissa) ^ 0x55).astype(np.uint8)


#: A loud 10 ms window is voiced (a speech sound, not a hiss or a bang) when its spectral flatness
#: (geometric over arithmetic mean of the power spectrum) is below this: voiced speech and tones
#: read ~0.01 or less, pink noise ~0.2, white noise ~0.57.
VOICED_FLATNESS = 0.03


def spectral_flatness(windows: np.ndarray) -> np.ndarray:
    """Spectral flatness of each row of int16 `windows` (Hann-windowed), in [0, 1]."""
    x = windows.astype(np.float64) * np.hanning(windows.shape[-1])
    power = np.abs(np.fft.rfft(x, axis=-1)) ** 2 + 1e-12
    return np.exp(np.mean(np.log(power), axis=-1)) / np.mean(power, axis=-1)


@dataclass(slots=True)
class SpeechEdge:
    """Speech started, or ended (a pause of `end_silence_s` followed), at `time_s` (stream time)."""

    speaking: bool
    time_s: float


class EnergySegmenter:
    """Finds speech in streamed s16le PCM by the energy of 10 ms windows.

    Speech starts at the first loud window; it ends at the end of the last loud window once
    `end_silence_s` of quiet has followed (Deepgram's endpointing). Works on any chunking.
    Loud windows are also counted as voiced or not (`voiced_windows`), so a caller can tell
    speech from noise that is just as loud (a hiss, a door): the real service gives no words
    for those.
    """

    def __init__(
        self, sample_rate: int, *, end_silence_s: float = 0.3, threshold_dbfs: float = -40.0, window_s: float = 0.01
    ) -> None:
        self.sample_rate = sample_rate
        self.end_silence_s = end_silence_s
        self.window = max(1, round(sample_rate * window_s))
        self.threshold_dbfs = threshold_dbfs
        self.samples_seen = 0
        self.speaking = False
        self.last_loud_end_s = 0.0
        self.loud_windows = 0  # loud windows seen so far
        self.voiced_windows = 0  # of which voiced
        self._pending = np.zeros(0, dtype=np.int16)

    @property
    def position_s(self) -> float:
        return self.samples_seen / self.sample_rate

    def feed(self, pcm: bytes) -> list[SpeechEdge]:
        """Consume audio; return the speech starts and ends it completes, in order."""
        samples = np.concatenate([self._pending, np.frombuffer(pcm, dtype="<i2")])
        whole = len(samples) - len(samples) % self.window
        self._pending = samples[whole:]
        loud = loud_windows(samples[:whole], self.window, self.threshold_dbfs)
        if loud.any():
            windows = samples[:whole].reshape(-1, self.window)[loud]
            self.loud_windows += len(windows)
            self.voiced_windows += int(np.count_nonzero(spectral_flatness(windows) < VOICED_FLATNESS))
        edges: list[SpeechEdge] = []
        window_s = self.window / self.sample_rate
        base_s = self.position_s
        for i, is_loud in enumerate(loud.tolist()):
            t0 = base_s + i * window_s
            if is_loud:
                if not self.speaking:
                    self.speaking = True
                    edges.append(SpeechEdge(True, t0))
                self.last_loud_end_s = t0 + window_s
            elif self.speaking and t0 + window_s - self.last_loud_end_s >= self.end_silence_s - 1e-9:
                self.speaking = False
                edges.append(SpeechEdge(False, self.last_loud_end_s))
        self.samples_seen += whole
        return edges

    def quiet_for_s(self) -> float:
        """How long it has been quiet since the last loud window."""
        return max(0.0, self.position_s - self.last_loud_end_s)


__all__ = [
    "SAMPLE_BYTES",
    "VOICED_FLATNESS",
    "EnergySegmenter",
    "SpeechEdge",
    "encode",
    "spectral_flatness",
    "speech_like",
]
