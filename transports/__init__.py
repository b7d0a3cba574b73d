"""The edges of a pipeline: WebRTC and in-memory transports.

`OutputTransport` is the shared real-time playout every output builds on; the WebRTC transport
lives in `voxframe.transports.webrtc` (it needs the `webrtc` extra).
"""

from ._playout import AudioChunk
from .memory import (
    MemoryInputOptions,
    MemoryInputTransport,
    MemoryOutputOptions,
    MemoryOutputTransport,
    PlayedChunk,
)
from .output import OutputOptions, OutputTransport
from .wav import read_wav, write_wav

__all__ = [
    "AudioChunk",
    "MemoryInputOptions",
    "MemoryInputTransport",
    "MemoryOutputOptions",
    "MemoryOutputTransport",
    "OutputOptions",
    "OutputTransport",
    "PlayedChunk",
    "read_wav",
    "write_wav",
]
