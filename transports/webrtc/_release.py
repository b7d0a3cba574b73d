"""Breaking the reference cycles a closed call leaves, so it is freed the moment it ends.

A closed `RTCPeerConnection` stays tied in cycles (its transports keep the connection's bound
methods as event listeners; our receive hook points back at its receiver), so without this the
connection, its transports, tracks and codecs would wait for the cycle collector. (The codecs
and resamplers that run FFmpeg worker threads are also dropped explicitly where they live.)
"""

from __future__ import annotations

from aiortc import RTCPeerConnection
from pyee.asyncio import AsyncIOEventEmitter

from ._receive import remove_receive_path


def release_peer_connection(pc: RTCPeerConnection) -> None:
    """Drop the event listeners of a closed connection's transports (which point back at it)."""
    emitters: list[AsyncIOEventEmitter] = [pc]
    for transceiver in pc.getTransceivers():
        remove_receive_path(transceiver.receiver)
        for dtls in {transceiver.receiver.transport, transceiver.sender.transport}:
            if dtls is not None:
                emitters += [dtls, dtls.transport, dtls.transport.iceGatherer]
    if pc.sctp is not None:
        dtls = pc.sctp.transport
        emitters += [pc.sctp, dtls, dtls.transport, dtls.transport.iceGatherer]
    for emitter in emitters:
        emitter.remove_all_listeners()
