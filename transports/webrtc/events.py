"""Client events on the data channel: RTVI (see `voxframe.transports.rtvi`), both ways.

`ClientEventsObserver` is the data channel's `RTVIEndpoint`: the session gives it the channel's
`send`, feeds it what the caller sends, and lets it deliver frames into the pipeline. The same
endpoint serves any other transport (it knows nothing of WebRTC).
"""

from __future__ import annotations

from voxframe.transports.rtvi import Deliver, Message, RTVIEndpoint, Send

__all__ = ["ClientEventsObserver", "Deliver", "Message", "Send"]


class ClientEventsObserver(RTVIEndpoint):
    """Turns conversation frames into RTVI messages for `send`, and the client's into frames."""
