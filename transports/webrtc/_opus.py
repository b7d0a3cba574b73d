"""libopus through ctypes: the decoder calls FFmpeg does not expose (loss concealment, FEC).

FFmpeg's libopus wrapper (what PyAV offers) decodes only packets that arrived: an empty packet
means "end of stream", so it cannot ask libopus to conceal a lost packet (`opus_decode` with no
data) nor to rebuild one from the in-band FEC copy that the next packet carries (`decode_fec=1`).
Both are plain libopus calls, so this module binds the few functions needed, from the libopus
that PyAV's wheel ships (`av.libs/libopus-*.so*`, the one FFmpeg already uses here) or, failing
that, the system's `libopus.so.0`. Nothing is compiled; the library is pinned with `av`.

The encoder is bound too, because FFmpeg fixes its options when the codec opens: a loss-aware
sender must change expected loss, FEC and bitrate on a running encoder (`opus_encoder_ctl`).

Also here: Opus's SDP parameters for aiortc (`useinbandfec=1`, as browsers offer), so both our
offers and our answers tell the other side that we decode FEC.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
from functools import cache

import numpy as np
from aiortc import codecs as aiortc_codecs

RATE = 48_000
#: The longest Opus packet (120 ms at 48 kHz): the decode buffer's size.
_MAX_FRAME = 5_760

APPLICATIONS = {"voip": 2048, "audio": 2049, "lowdelay": 2051}
_SET_BITRATE = 4002
_SET_COMPLEXITY = 4010
_SET_INBAND_FEC = 4012
_SET_PACKET_LOSS_PERC = 4014
_SET_SIGNAL = 4024
_SIGNAL_VOICE = 3001


class OpusError(Exception):
    """libopus refused a call (the message has libopus's own reason)."""


@cache
def _library() -> ctypes.CDLL:
    import av  # the wheel's own libopus sits beside its FFmpeg libraries

    wheel_libs = os.path.join(os.path.dirname(os.path.dirname(av.__file__)), "av.libs")
    candidates = sorted(glob.glob(os.path.join(wheel_libs, "libopus*.so*")))
    system = ctypes.util.find_library("opus")
    for path in [*candidates, *([system] if system else [])]:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        _declare(lib)
        return lib
    raise OpusError("no libopus found (neither in PyAV's wheel nor as the system's libopus.so.0)")


def _declare(lib: ctypes.CDLL) -> None:
    handle, i16p, u8p = ctypes.c_void_p, ctypes.POINTER(ctypes.c_int16), ctypes.c_char_p
    lib.opus_decoder_create.argtypes = [ctypes.c_int32, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
    lib.opus_decoder_create.restype = handle
    lib.opus_decoder_destroy.argtypes = [handle]
    lib.opus_decode.argtypes = [handle, u8p, ctypes.c_int32, i16p, ctypes.c_int, ctypes.c_int]
    lib.opus_decode.restype = ctypes.c_int
    lib.opus_encoder_create.argtypes = [ctypes.c_int32, ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
    lib.opus_encoder_create.restype = handle
    lib.opus_encoder_destroy.argtypes = [handle]
    lib.opus_encode.argtypes = [handle, i16p, ctypes.c_int, u8p, ctypes.c_int32]
    lib.opus_encode.restype = ctypes.c_int32
    lib.opus_packet_get_nb_samples.argtypes = [u8p, ctypes.c_int32, ctypes.c_int32]
    lib.opus_packet_get_nb_samples.restype = ctypes.c_int
    if hasattr(lib, "opus_packet_has_lbrr"):  # libopus 1.5 and later
        lib.opus_packet_has_lbrr.argtypes = [u8p, ctypes.c_int32]
        lib.opus_packet_has_lbrr.restype = ctypes.c_int
    lib.opus_strerror.argtypes = [ctypes.c_int]
    lib.opus_strerror.restype = ctypes.c_char_p
    # opus_*_ctl are variadic: every argument is passed as a C int (or an int pointer).


def _check(code: int, what: str) -> int:
    if code < 0:
        raise OpusError(f"{what}: {_library().opus_strerror(code).decode()}")
    return code


def packet_samples(data: bytes) -> int:
    """Samples (at 48 kHz) that an Opus packet decodes to; OpusError if it is not one."""
    return _check(_library().opus_packet_get_nb_samples(data, len(data), RATE), "not an Opus packet")


def has_fec(data: bytes) -> bool | None:
    """Whether an Opus packet carries an in-band FEC copy of the packet before it (None: this
    libopus, older than 1.5, cannot tell)."""
    lib = _library()
    if not hasattr(lib, "opus_packet_has_lbrr"):
        return None
    return lib.opus_packet_has_lbrr(data, len(data)) > 0


class OpusDecoder:
    """48 kHz s16 decoding that can also conceal a lost packet or recover it from FEC."""

    def __init__(self, channels: int = 1) -> None:
        self.channels = channels
        error = ctypes.c_int()
        self._lib = _library()
        self._handle = self._lib.opus_decoder_create(RATE, channels, ctypes.byref(error))
        _check(error.value, "opus_decoder_create")
        self._buffer = np.zeros(_MAX_FRAME * channels, dtype=np.int16)
        self._out = self._buffer.ctypes.data_as(ctypes.POINTER(ctypes.c_int16))

    def decode(self, data: bytes) -> np.ndarray:
        """The packet's audio (interleaved int16); OpusError if it is corrupt."""
        return self._run(data, _MAX_FRAME, 0, "decode")

    def conceal(self, samples: int) -> np.ndarray:
        """`samples` (a multiple of 2.5 ms) of packet-loss concealment for audio that never came."""
        return self._run(None, samples, 0, "conceal")

    def recover(self, next_data: bytes, samples: int) -> np.ndarray:
        """The `samples` just before `next_data`, from the FEC copy it carries (PLC if it has none)."""
        return self._run(next_data, samples, 1, "decode FEC")

    def _run(self, data: bytes | None, samples: int, fec: int, what: str) -> np.ndarray:
        if self._handle is None:
            raise OpusError("the decoder is closed")
        samples = min(samples, _MAX_FRAME)
        size = 0 if data is None else len(data)
        got = _check(self._lib.opus_decode(self._handle, data, size, self._out, samples, fec), what)
        return self._buffer[: got * self.channels].copy()

    def close(self) -> None:
        if self._handle is not None:
            self._lib.opus_decoder_destroy(self._handle)
            self._handle = None

    def __del__(self) -> None:
        self.close()


class OpusEncoder:
    """s16 frames to Opus packets, with the expected loss, FEC and bitrate adjustable while running."""

    def __init__(self, sample_rate: int, channels: int, application: str, bitrate: int) -> None:
        if application not in APPLICATIONS:
            raise ValueError(f"Opus application must be one of {sorted(APPLICATIONS)}, not {application!r}")
        self.application = application
        self.channels = channels
        error = ctypes.c_int()
        self._lib = _library()
        self._handle = self._lib.opus_encoder_create(
            sample_rate, channels, APPLICATIONS[application], ctypes.byref(error)
        )
        _check(error.value, "opus_encoder_create")
        self._packet = ctypes.create_string_buffer(4_000)
        self.set(_SET_BITRATE, bitrate)
        self.set(_SET_COMPLEXITY, 10)
        if application == "voip":
            self.set(_SET_SIGNAL, _SIGNAL_VOICE)  # keeps speech in SILK/hybrid, where FEC lives

    def set(self, request: int, value: int) -> None:
        if self._handle is None:
            raise OpusError("the encoder is closed")
        handle = ctypes.c_void_p(self._handle)  # variadic: no argtypes, so the pointer is wrapped
        _check(self._lib.opus_encoder_ctl(handle, ctypes.c_int(request), ctypes.c_int(value)), "ctl")

    def configure(self, bitrate: int, fec: bool, loss_pct: int) -> None:
        self.set(_SET_BITRATE, bitrate)
        self.set(_SET_INBAND_FEC, int(fec))
        self.set(_SET_PACKET_LOSS_PERC, max(0, min(100, loss_pct)))

    def encode(self, pcm: bytes) -> bytes:
        if self._handle is None:
            raise OpusError("the encoder is closed")
        frame = len(pcm) // (2 * self.channels)
        samples = ctypes.cast(ctypes.c_char_p(pcm), ctypes.POINTER(ctypes.c_int16))
        size = _check(self._lib.opus_encode(self._handle, samples, frame, self._packet, 4_000), "encode")
        return self._packet.raw[:size]

    def close(self) -> None:
        if self._handle is not None:
            self._lib.opus_encoder_destroy(self._handle)
            self._handle = None

    def __del__(self) -> None:
        self.close()


def advertise_inband_fec() -> None:
    """Put ``useinbandfec=1`` on aiortc's Opus codec, so our SDP says we decode FEC (idempotent)."""
    for codec in aiortc_codecs.CODECS["audio"]:
        if codec.mimeType.lower() == "audio/opus":
            codec.parameters["useinbandfec"] = 1


advertise_inband_fec()
