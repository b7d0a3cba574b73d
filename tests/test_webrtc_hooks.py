"""The private aiortc/aioice internals the transport hooks into: each one missing is a clear error.

A release that moved one must fail at import with one line that names the hook and the installed
versions, never a call that silently does not connect or a jitter buffer that is not replaced.
"""

from __future__ import annotations

import types
from typing import Any

import pytest

from voxframe.transports.webrtc import PortHookError, ReceiveOptions
from voxframe.transports.webrtc._hooks import HookError
from voxframe.transports.webrtc._ice import check_ice_hooks
from voxframe.transports.webrtc._receive import check_receiver_hook, install_receive_path
from voxframe.transports.webrtc.input import check_input_hook
from voxframe.transports.webrtc.tracks import check_sender_hook

VERSIONS = r"\(installed: aioice \d+\.\d+\.\d+, aiortc \d+\.\d+\.\d+; tested with aiortc 1\.16\.0"


class _Receiver:
    """An aiortc receiver as a later release might write it: the jitter buffer under a new name."""

    def __init__(self) -> None:
        self.audio_buffer = None

    async def _handle_rtp_packet(self, packet: Any, arrival_time_ms: int) -> None:
        pass


class _Sender:
    def __init__(self) -> None:
        self._ssrc = 1

    async def handle_rtcp(self, packet: Any) -> None:  # renamed from _handle_rtcp_packet
        pass


class _Track:
    def __init__(self) -> None:
        self.frames: list[object] = []


class _IceTransport:
    def __init__(self) -> None:
        self._connection = None


def test_the_installed_aiortc_and_aioice_have_every_hook() -> None:
    check_receiver_hook()
    check_sender_hook()
    check_ice_hooks()
    check_input_hook()


def test_a_receiver_without_its_jitter_buffer_is_a_clear_error_naming_the_versions() -> None:
    with pytest.raises(HookError, match=rf"^voxframe's receiver jitter buffer hook .*__jitter_buffer.* {VERSIONS}"):
        check_receiver_hook(_Receiver)
    with pytest.raises(HookError, match=rf"_Receiver has no `_RTCRtpReceiver__jitter_buffer`.*{VERSIONS}"):
        install_receive_path(_Receiver(), ReceiveOptions())  # type: ignore[arg-type]


def test_a_sender_without_its_rtcp_handler_is_a_clear_error() -> None:
    with pytest.raises(HookError, match=rf"^voxframe.s sender loss report hook .*`_handle_rtcp_packet`.*{VERSIONS}"):
        check_sender_hook(_Sender)


def test_an_aioice_that_answers_checks_differently_is_a_clear_error() -> None:
    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return []

    class Connection:
        def request_received(self, addr: tuple[str, int], message: object) -> None:  # arguments swapped
            pass

    ice = types.SimpleNamespace(get_host_addresses=get_host_addresses, Connection=Connection)
    with pytest.raises(HookError, match=rf"^voxframe's ICE host hook .*takes \(self, addr, message\).*{VERSIONS}"):
        check_ice_hooks(ice, _IceTransport)
    with pytest.raises(HookError, match=r"has no `get_host_addresses`"):
        check_ice_hooks(types.SimpleNamespace(Connection=Connection), _IceTransport)


def test_a_remote_track_without_its_queue_is_a_clear_error() -> None:
    with pytest.raises(HookError, match=rf"^voxframe's input backlog hook .*_Track.*`self._queue`.*{VERSIONS}"):
        check_input_hook(_Track)


def test_the_port_hook_says_it_the_same_way() -> None:
    assert issubclass(PortHookError, HookError)
