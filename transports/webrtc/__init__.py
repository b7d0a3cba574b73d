"""WebRTC transport on aiortc: signalling server, sessions, tracks, and a headless client.

    server = WebRTCServer(factory, ServerOptions(...))   # factory: async (Session) -> PipelineTask
    async with anyio.create_task_group() as tg:
        url = await tg.start(server.serve)

Inside the factory, `session.input` and `session.output` are the pipeline's two ends.
"""

from ..input import InputOptions
from ._ice import IceOptions, IceServer, gather_on
from ._ports import PortHookError, PortRange, check_port_hook
from ._receive import ReceiveOptions, ReceiveStatistics
from .client import ClientError, ClientOptions, HeadlessClient, PlayedUtterance
from .events import ClientEventsObserver
from .input import WebRTCInputTransport
from .onsets import OnsetDetector, OnsetOptions, SpeechSegment
from .output import WebRTCOutputTransport
from .server import ServedSession, ServerOptions, WebRTCServer
from .session import Session, SessionError, SessionOptions, TaskFactory
from .tracks import OpusOptions, PacedAudioTrack

__all__ = [
    "ClientError",
    "ClientEventsObserver",
    "ClientOptions",
    "HeadlessClient",
    "IceOptions",
    "IceServer",
    "InputOptions",
    "OnsetDetector",
    "OnsetOptions",
    "OpusOptions",
    "PacedAudioTrack",
    "PlayedUtterance",
    "PortHookError",
    "PortRange",
    "ReceiveOptions",
    "ReceiveStatistics",
    "ServedSession",
    "ServerOptions",
    "Session",
    "SessionError",
    "SessionOptions",
    "SpeechSegment",
    "TaskFactory",
    "WebRTCInputTransport",
    "WebRTCOutputTransport",
    "WebRTCServer",
    "check_port_hook",
    "gather_on",
]
