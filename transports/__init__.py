"""The edges of a pipeline: WebRTC and in-memory transports.

`OutputTransport` is the shared real-time playout every output builds on; the WebRTC transport
lives in `voxframe.transports.webrtc` (it needs the `webrtc` extra). `RTVIEndpoint` speaks the
client protocol (RTVI) for any transport.
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
from .rtvi import RTVIEndpoint
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
    "RTVIEndpoint",
    "read_wav",
    "write_wav",
]
