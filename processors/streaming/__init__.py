"""Machinery shared by the streaming provider clients: reconnect policy and the WebSocket stream.

`websocket.py` needs the `websockets` package; import it by its full path
(`voxframe.processors.streaming.websocket`). This package itself re-exports only what has no
optional dependency.
"""

from .reconnect import Backoff, ProviderError

__all__ = ["Backoff", "ProviderError"]
