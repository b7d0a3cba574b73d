"""The edges of a pipeline: WebRTC, WebSocket (and telephone) and in-memory transports.

`InputTransport` is what every input half shares (start/end handling, resampling to the
pipeline's input rate, a bounded backlog); `OutputTransport` is the shared real-time playout
every output builds on. The WebRTC transport lives in `voxframe.transports.webrtc` (it needs the
`webrtc` extra), the WebSocket one (raw PCM, Twilio Media Streams) in
`voxframe.transports.websocket`. `RTVIEndpoint` speaks the
client protocol (RTVI) for any transport.
"""

from ._playout import AudioChunk
from .input import InputOptions, InputTransport
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
    "InputOptions",
    "InputTransport",
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
