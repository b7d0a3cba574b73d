"""PCM helpers shared by the transports: streaming resampling and format conversion.

Resampling uses libswresample through PyAV (`av.AudioResampler`): fed 20 ms chunks it holds
back about 1 ms of audio, where soxr's default (VHQ) stream holds back ~43 ms. Latency is the
product here, so the cheap filter wins; voice is band-limited well below either's cut-off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import av

_LAYOUTS = {1: "mono", 2: "stereo"}


def layout_name(num_channels: int) -> str:
    try:
        return _LAYOUTS[num_channels]
    except KeyError:
        raise ValueError(f"unsupported channel count {num_channels} (1 or 2)") from None


def to_pcm16(audio: np.ndarray | bytes) -> bytes:
    """Interleaved s16le bytes from bytes, an int16 array, or a float array in [-1, 1]."""
    if isinstance(audio, (bytes, bytearray, memoryview)):
        return bytes(audio)
    array = np.asarray(audio)
    if array.dtype.kind == "f":
        array = np.clip(array, -1.0, 1.0) * 32767.0
        return np.round(array).astype("<i2").tobytes()
    return array.astype("<i2", copy=False).tobytes()


class StreamResampler:
    """Converts a stream of s16 PCM between rates and channel counts, chunk by chunk.

    Keeps filter state between calls so chunk boundaries are seamless; `flush` returns the
    little audio the filter still holds (call it at the end of a stream, then discard).
    """

    def __init__(self, in_rate: int, in_channels: int, out_rate: int, out_channels: int) -> None:
        self.in_rate = in_rate
        self.in_channels = in_channels
        self.out_rate = out_rate
        self.out_channels = out_channels
        self._in_layout = layout_name(in_channels)
        self._passthrough = in_rate == out_rate and in_channels == out_channels
        self._resampler: av.AudioResampler | None = None
        if not self._passthrough:
            import av  # optional dependency: only needed when formats differ

            self._av = av
            self._resampler = av.AudioResampler(format="s16", layout=layout_name(out_channels), rate=out_rate)

    def resample(self, pcm: bytes) -> bytes:
        if self._passthrough or not pcm:
            return pcm
        samples = len(pcm) // (2 * self.in_channels)
        array = np.frombuffer(pcm, dtype="<i2", count=samples * self.in_channels).reshape(1, -1)
        frame = self._av.AudioFrame.from_ndarray(array, format="s16", layout=self._in_layout)
        frame.sample_rate = self.in_rate
        return self._convert(frame)

    def flush(self) -> bytes:
        if self._passthrough:
            return b""
        return self._convert(None)

    def _convert(self, frame: av.AudioFrame | None) -> bytes:
        assert self._resampler is not None
        out = self._resampler.resample(frame)
        if not out:
            return b""
        if len(out) == 1:
            return out[0].to_ndarray().tobytes()
        return b"".join(f.to_ndarray().tobytes() for f in out)
