"""ICE configuration: explicit servers, relay policy, and keeping candidates on chosen hosts.

aiortc contacts stun.l.google.com when a peer connection is built without ICE servers, so every
connection here is built from an explicit `RTCConfiguration` (an empty server list means "host
candidates only"). aioice gathers host candidates on every interface and offers no per-connection
choice; `host_addresses` narrows gathering for the code running inside it (a context variable
consulted by a wrapper around aioice's address lookup), which is how tests keep all traffic on
127.0.0.1. Remote candidates are filtered to the same hosts so nothing is sent elsewhere.

Behind a firewall or a 1:1 NAT, `udp_ports` keeps every host candidate's socket on a port of a
range (see `_ports.py`) and `public_ip` is announced in our description instead of the host
candidates' private address (the NAT maps it to the same ports).
"""

from __future__ import annotations

import contextvars
import ipaddress
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer, RTCIceTransport, RTCPeerConnection
from aiortc.rtcconfiguration import RTCIceTransportPolicy

from ._hooks import require_attribute, require_parameters, require_source
from ._ports import Binding, PortRange, bind_in

ICE_HOOK = "ICE host"


def check_ice_hooks(ice: Any = aioice.ice, transport: Any = RTCIceTransport) -> None:
    """Fail (HookError) unless aioice still gathers through `get_host_addresses(use_ipv4, use_ipv6)`
    and answers checks in `Connection.request_received(message, addr, ...)`, and aiortc's ICE
    transport keeps its aioice connection in `_connection` (the hooks below)."""
    require_parameters(ICE_HOOK, require_attribute(ICE_HOOK, ice, "get_host_addresses"), ["use_ipv4", "use_ipv6"])
    answer = require_attribute(ICE_HOOK, require_attribute(ICE_HOOK, ice, "Connection"), "request_received")
    require_parameters(ICE_HOOK, answer, ["self", "message", "addr"])
    require_source(ICE_HOOK, transport.__init__, "self._connection = ")


check_ice_hooks()
_original_get_host_addresses = aioice.ice.get_host_addresses
_host_addresses: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "voxframe_ice_host_addresses", default=None
)


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    chosen = _host_addresses.get()
    if chosen is None:
        return _original_get_host_addresses(use_ipv4, use_ipv6)
    return list(chosen)


aioice.ice.get_host_addresses = _get_host_addresses


@contextmanager
def gather_on(addresses: Sequence[str] | None) -> Iterator[None]:
    """Gather host candidates only on `addresses` (None: every interface) inside this block."""
    token = _host_addresses.set(tuple(addresses) if addresses is not None else None)
    try:
        yield
    finally:
        _host_addresses.reset(token)


@dataclass(slots=True)
class IceServer:
    """A STUN or TURN server, as handed to both aiortc and the browser."""

    urls: list[str]
    username: str | None = None
    credential: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"urls": list(self.urls)}
        if self.username is not None:
            data["username"] = self.username
        if self.credential is not None:
            data["credential"] = self.credential
        return data


@dataclass(slots=True)
class IceOptions:
    #: STUN/TURN servers. Empty (the default) means host candidates only: no server is contacted.
    servers: list[IceServer] = field(default_factory=list)
    #: Use only relayed (TURN) candidates.
    relay_only: bool = False
    #: Gather and accept candidates only on these hosts (e.g. ("127.0.0.1",)); None: any.
    host_addresses: tuple[str, ...] | None = None
    #: Bind every host candidate's socket to a port of this range (None: any free port).
    udp_ports: PortRange | None = None
    #: Announce this address in our host candidates instead of the local one (a 1:1 NAT's public IP).
    public_ip: str | None = None

    @contextmanager
    def gathering(self) -> Iterator[Binding]:
        """Gather candidates inside this block as these options say (hosts, port range)."""
        with gather_on(self.host_addresses), bind_in(self.udp_ports) as binding:
            yield binding

    def announce(self, sdp: str) -> str:
        """Our description as the other end should see it: host candidates carry `public_ip`."""
        return sdp if self.public_ip is None else announce_address(sdp, self.public_ip)

    def rtc_configuration(self) -> RTCConfiguration:
        servers = [RTCIceServer(urls=s.urls, username=s.username, credential=s.credential) for s in self.servers]
        policy = RTCIceTransportPolicy.RELAY if self.relay_only else RTCIceTransportPolicy.ALL
        return RTCConfiguration(iceServers=servers, iceTransportPolicy=policy)

    def browser_configuration(self) -> dict[str, Any]:
        """The `RTCPeerConnection` configuration the page should use."""
        return {
            "iceServers": [s.to_json() for s in self.servers],
            "iceTransportPolicy": "relay" if self.relay_only else "all",
        }

    def accepts_candidate(self, candidate_sdp: str) -> bool:
        """Whether a remote candidate (``candidate:...`` line) may be used under these options."""
        if self.host_addresses is None:
            return True
        host = candidate_host(candidate_sdp)
        return host is not None and host in self.host_addresses

    def filter_sdp(self, sdp: str) -> str:
        """Drop remote candidates this configuration may not use from an SDP description."""
        if self.host_addresses is None:
            return sdp
        lines = sdp.splitlines()
        kept = [line for line in lines if not line.startswith("a=candidate:") or self.accepts_candidate(line[2:])]
        return "\r\n".join(kept) + "\r\n"


def ignore_checks_from_other_hosts(pc: RTCPeerConnection, hosts: Sequence[str]) -> None:
    """Answer ICE checks only from `hosts`.

    A peer with several interfaces (a browser) also sends checks from its other addresses;
    answering one would make it a peer-reflexive candidate and send media there. Unanswered,
    that pair simply fails and the allowed one is used.
    """
    allowed = frozenset(hosts)
    seen: set[int] = set()
    transports = [t.receiver.transport for t in pc.getTransceivers()]
    if pc.sctp is not None:
        transports.append(pc.sctp.transport)
    for dtls in transports:
        connection = dtls.transport._connection
        if id(connection) in seen:
            continue
        seen.add(id(connection))
        original = connection.request_received

        def request_received(message: Any, addr: tuple[str, int], *rest: Any, _original: Any = original) -> None:
            if addr[0] in allowed:  # `rest`: the protocol, and the raw bytes before aioice 0.13
                _original(message, addr, *rest)

        connection.request_received = request_received  # type: ignore[method-assign,assignment]  # the hook


def announce_address(sdp: str, public_ip: str) -> str:
    """Put `public_ip` in place of the address of every host candidate of its IP version (ports
    unchanged), and in the `c=` lines that named one of those addresses."""
    public = ipaddress.ip_address(public_ip)
    replaced: set[str] = set()
    lines = sdp.splitlines()
    for i, line in enumerate(lines):
        bits = line.split()
        host = candidate_host(line) if line.startswith("a=candidate:") else None
        if host is not None and bits[6:8] == ["typ", "host"] and ipaddress.ip_address(host).version == public.version:
            replaced.add(bits[4])
            bits[4] = str(public)
            lines[i] = " ".join(bits)
    for i, line in enumerate(lines):
        bits = line.split()
        if line.startswith("c=") and len(bits) == 3 and bits[2] in replaced:
            lines[i] = f"{bits[0]} {bits[1]} {public}"
    return "\r\n".join(lines) + "\r\n"


def candidate_host(candidate_sdp: str) -> str | None:
    """The connection address of a candidate line, normalised; None if it is not an IP."""
    text = candidate_sdp.removeprefix("a=").removeprefix("candidate:")
    bits = text.split()
    if len(bits) < 8:
        return None
    try:
        return str(ipaddress.ip_address(bits[4]))
    except ValueError:
        return None  # an mDNS name (xxxx.local) or garbage
