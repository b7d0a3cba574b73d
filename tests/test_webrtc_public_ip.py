"""Serving behind a firewall or a 1:1 NAT: ICE sockets on a UDP port range, a public IP announced."""

from __future__ import annotations

import socket
from contextlib import ExitStack
from pathlib import Path

import anyio
import pytest
from test_webrtc_signalling import OFFER, error_code, make_offer, request
from webrtc_helpers import LOOPBACK, client_options, free_udp_range, server_options, serving, tone

from voxframe.pipeline import FrameProcessor, Pipeline
from voxframe.processors.echo import AudioEcho
from voxframe.runner import BotServer, BotSession, StartupError, parse_options
from voxframe.runner.services import Services
from voxframe.transports.webrtc import (
    HeadlessClient,
    IceOptions,
    PortHookError,
    PortRange,
    ServerOptions,
    Session,
    _ports,
)
from voxframe.transports.webrtc._ice import announce_address

pytestmark = pytest.mark.anyio


def answer_candidates(sdp: str) -> list[tuple[str, int, str]]:
    """(address, port, type) of every candidate line of a description."""
    found = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            bits = line.split()
            found.append((bits[4], int(bits[5]), bits[7]))
    return found


def bound_ports(session: Session) -> set[int]:
    """The ports of the sockets the server's side of a call gathered on."""
    ice_transports = [t.receiver.transport.transport for t in session.pc.getTransceivers()]
    if session.pc.sctp is not None:
        ice_transports.append(session.pc.sctp.transport.transport)
    return {candidate.port for ice in ice_transports for candidate in ice.iceGatherer.getLocalCandidates()}


def in_range(ports: PortRange) -> set[int]:
    return set(range(ports.low, ports.high + 1))


def ranged_options(ports: PortRange) -> ServerOptions:
    options = server_options()
    options.session.ice = IceOptions(host_addresses=LOOPBACK, udp_ports=ports)
    return options


def echo_bot(bot: BotSession) -> FrameProcessor:
    return Pipeline([bot.input, AudioEcho(), bot.output])


async def echo_once(client: HeadlessClient) -> None:
    played = await client.play(tone(700.0, 0.1, 16_000), 16_000)
    await client.wait_for_onset(played.start_ns, timeout_s=5)


async def test_every_host_candidate_of_a_call_binds_a_port_of_the_range_and_the_call_connects() -> None:
    ports = free_udp_range(4)
    server_and_url = serving(options=ranged_options(ports))
    async with server_and_url as (server, url), HeadlessClient.connect(url, client_options()) as client:
        candidates = answer_candidates(client.pc.remoteDescription.sdp)
        assert candidates and all(host == "127.0.0.1" and kind == "host" for host, _, kind in candidates)
        assert {port for _, port, _ in candidates} <= in_range(ports)
        assert bound_ports(server.sessions[client.session_id]) <= in_range(ports)
        await echo_once(client)


async def test_a_full_range_refuses_the_offer_with_503_and_frees_up_when_the_call_ends() -> None:
    ports = free_udp_range(1)  # one bundled call takes the whole range
    async with serving(options=ranged_options(ports)) as (server, url):
        async with HeadlessClient.connect(url, client_options()) as first:
            pc, sdp, _ = await make_offer()
            status, payload = await request("POST", url + OFFER, body={"sdp": sdp, "type": "offer"})
            await pc.close()
            assert (status, error_code(payload)) == (503, "udp_ports_exhausted")
            assert str(ports) in payload["error"]["message"]
            assert list(server.sessions) == [first.session_id]  # the refused offer left nothing behind
            await echo_once(first)
        await server.wait_sessions(lambda sessions: not sessions)
        async with HeadlessClient.connect(url, client_options()) as second:
            await echo_once(second)


async def test_ports_held_by_another_program_are_skipped_or_refuse_the_call() -> None:
    ports = free_udp_range(3)
    with ExitStack() as held:
        for port in (ports.low, ports.high):
            held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM)).bind(("127.0.0.1", port))
        server_and_url = serving(options=ranged_options(ports))
        async with server_and_url as (_, url), HeadlessClient.connect(url, client_options()) as client:
            assert {port for _, port, _ in answer_candidates(client.pc.remoteDescription.sdp)} == {ports.low + 1}
            await echo_once(client)
    with ExitStack() as held:
        for port in in_range(ports):
            held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM)).bind(("127.0.0.1", port))
        async with serving(options=ranged_options(ports)) as (server, url):
            pc, sdp, _ = await make_offer()
            status, payload = await request("POST", url + OFFER, body={"sdp": sdp, "type": "offer"})
            await pc.close()
            assert (status, error_code(payload)) == (503, "udp_ports_exhausted")
            assert server.sessions == {}


async def test_the_runner_announces_its_public_ip_with_the_real_ports(tmp_path: Path) -> None:
    ports = free_udp_range(4)
    argv = ["--public-ip", "203.0.113.7", "--udp-ports", str(ports), "--port", "0", "--no-warm-up"]
    options = parse_options(argv, env={}, dotenv_path=tmp_path / "none")
    bot = BotServer(echo_bot, Services.from_env({}), options)
    async with anyio.create_task_group() as tg:
        url = await tg.start(bot.serve)
        pc, sdp, _ = await make_offer()
        status, answer = await request("POST", url + OFFER, body={"sdp": sdp, "type": "offer"})
        await pc.close()  # the answer is never applied: nothing is sent to the announced address
        assert status == 200
        candidates = answer_candidates(answer["sdp"])
        assert candidates and {(host, kind) for host, _, kind in candidates} == {("203.0.113.7", "host")}
        session = bot.server.sessions[answer["session_id"]]
        assert {port for _, port, _ in candidates} == bound_ports(session) and bound_ports(session) <= in_range(ports)
        connection_lines = [line for line in answer["sdp"].splitlines() if line.startswith("c=")]
        assert connection_lines and all(line == "c=IN IP4 203.0.113.7" for line in connection_lines)
        status, _ = await request("DELETE", f"{url}/api/voice/sessions/{answer['session_id']}")
        assert status == 200
        with anyio.fail_after(10):
            await bot.server.wait_sessions(lambda sessions: not sessions)
        tg.cancel_scope.cancel()


def test_only_host_candidates_of_the_public_ips_version_are_rewritten() -> None:
    sdp = (
        "v=0\r\nm=audio 40001 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 10.0.0.5\r\n"
        "a=candidate:1 1 udp 2130706431 10.0.0.5 40001 typ host\r\n"
        "a=candidate:2 1 udp 2130706431 fd00::5 40002 typ host\r\n"
        "a=candidate:3 1 udp 1694498815 198.51.100.9 5000 typ srflx raddr 10.0.0.5 rport 40001\r\n"
    )
    assert announce_address(sdp, "203.0.113.7").splitlines() == [
        "v=0",
        "m=audio 40001 UDP/TLS/RTP/SAVPF 96",
        "c=IN IP4 203.0.113.7",
        "a=candidate:1 1 udp 2130706431 203.0.113.7 40001 typ host",
        "a=candidate:2 1 udp 2130706431 fd00::5 40002 typ host",
        "a=candidate:3 1 udp 1694498815 198.51.100.9 5000 typ srflx raddr 10.0.0.5 rport 40001",
    ]


def test_an_aioice_that_binds_differently_is_a_clear_error_naming_the_versions(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    async def get_component_candidates(self: object, component: int, addresses: list[str]) -> list[object]:
        return []

    options = parse_options(["--udp-ports", "40000-40009", "--no-warm-up"], env={}, dotenv_path=tmp_path / "none")
    with monkeypatch.context() as patched:
        patched.setattr(_ports, "_BINDER", get_component_candidates)
        _ports.check_port_hook.cache_clear()
        with pytest.raises(PortHookError, match=r"aioice \d+\.\d+.*aiortc \d+\.\d+"):
            _ports.check_port_hook()
        with pytest.raises(StartupError, match=r"^--udp-ports: .*get_component_candidates"):  # at start, one line
            BotServer(echo_bot, Services.from_env({}), options)
    _ports.check_port_hook.cache_clear()
    _ports.check_port_hook()  # the installed aioice is the one the hook was written for
