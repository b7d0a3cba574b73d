"""Breaking the reference cycles a closed call leaves, so it is freed the moment it ends.

A closed `RTCPeerConnection` stays tied in cycles (its transports keep the connection's bound
methods as event listeners; our receive hook points back at its receiver), so without this the
connection, its transports, tracks and codecs would wait for the cycle collector. (The codecs
and resamplers that run FFmpeg worker threads are also dropped explicitly where they live.)
"""

from __future__ import annotations

from typing import Any

from aiortc import RTCPeerConnection

from ._receive import remove_receive_path


def release_peer_connection(pc: RTCPeerConnection) -> None:
    """Drop the event listeners of a closed connection's transports (which point back at it).

    Tolerates a connection aiortc set up only half-way (a refused offer): any link may be None.
    """
    emitters: list[Any] = [pc]  # pyee emitters, some reached through untyped aiortc attributes

    def add_chain(dtls: object) -> None:
        ice = getattr(dtls, "transport", None)
        emitters.extend(e for e in (dtls, ice, getattr(ice, "iceGatherer", None)) if e is not None)

    for transceiver in pc.getTransceivers():
        if transceiver.receiver is not None:
            remove_receive_path(transceiver.receiver)
        for end in (transceiver.receiver, transceiver.sender):
            add_chain(getattr(end, "transport", None))
    if pc.sctp is not None:
        emitters.append(pc.sctp)
        add_chain(pc.sctp.transport)
    for emitter in {id(e): e for e in emitters}.values():
        emitter.remove_all_listeners()
