"""`ImpairedNetwork`: a call's real UDP packets cross a relay that loses, delays and reorders them.

Where it sits: in signalling. The caller posts its offer to the relay's HTTP address instead of
the server's; the relay rewrites the caller's one host candidate to its own server-facing
socket, forwards the offer, rewrites the server's candidate in the answer to its caller-facing
socket, and drops every other candidate. So the relay's address is the only one each side
learns, ICE connects through it, and every packet (STUN, DTLS, SRTP, SCTP) crosses two real UDP
sockets on 127.0.0.1, impaired per direction by `fakes.netimpair`. Neither end is modified, so
the same relay serves voxframe's server and Pipecat's alike, with the same seeds.

    async with ImpairedNetwork(server_url) as net:
        async with HeadlessClient.connect(net.url, options) as client:
            net.impair(to_server=Impairment(loss=0.05, seed=1), to_client=Impairment(loss=0.05, seed=2))

Impairment can be changed at any time (`impair`, `clear`): a call usually connects clean and is
impaired once media flows. One call at a time: a new offer re-targets the relay. Time is the
real clock (like every fake, the relay stands for something remote with its own time). Each
direction holds at most `max_queued` delayed packets (more are dropped and counted), and
forwards at most `max_packets`, so no loop runs unbounded.
"""

from __future__ import annotations

import heapq
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Self

import aiohttp
import anyio
import anyio.abc
from aiohttp import web

from .netimpair import CLEAN, ImpairedPath, Impairment

logger = logging.getLogger("voxframe.fakes")

HOST = "127.0.0.1"
#: 5.5 hours of one 50 packet/s stream, both directions together, and then some.
_MAX_PACKETS = 2_000_000


@dataclass(slots=True)
class Endpoints:
    """The real addresses the relay forwards to, learnt from the offer and the answer."""

    client: tuple[str, int] | None = None
    server: tuple[str, int] | None = None


class _Direction:
    """One way through the relay: receive on `inbound`, send from `outbound` to `target()`."""

    def __init__(self, name: str, max_queued: int) -> None:
        self.name = name
        self.path = ImpairedPath()
        self.overflow = 0
        self._max_queued = max_queued
        self._heap: list[tuple[float, int, bytes]] = []
        self._order = 0
        self._wake = anyio.Event()

    def schedule(self, packet: bytes, now: float) -> list[bytes]:
        """Queue the delayed copies of `packet`; returns the copies due at once."""
        due_now = []
        for delay_ms in self.path.delays_ms(packet):
            if delay_ms <= 0:
                due_now.append(packet)
            elif len(self._heap) >= self._max_queued:
                self.overflow += 1
            else:
                heapq.heappush(self._heap, (now + delay_ms / 1000, self._order, packet))
                self._order += 1
                self._wake.set()
        return due_now

    async def run_delayed(self, send: Any) -> None:
        """Send queued copies when they are due (until the relay closes)."""
        while True:
            if not self._heap:
                self._wake = anyio.Event()
                await self._wake.wait()
                continue
            due, _, packet = self._heap[0]
            wait = due - time.monotonic()
            if wait > 0:
                self._wake = anyio.Event()
                with anyio.move_on_after(wait):
                    await self._wake.wait()
                continue
            heapq.heappop(self._heap)
            await send(packet)


class ImpairedNetwork:
    """A signalling proxy plus a UDP relay for one call at a time (see the module docstring)."""

    def __init__(
        self,
        upstream_url: str,
        *,
        offer_path: str = "/api/voice/offer",
        max_queued: int = 2_000,
        max_packets: int = _MAX_PACKETS,
    ) -> None:
        self.upstream_url = upstream_url.rstrip("/")
        self.offer_path = offer_path
        self.endpoints = Endpoints()
        self.to_server = _Direction("to_server", max_queued)
        self.to_client = _Direction("to_client", max_queued)
        self.url = ""
        self.forwarded = 0
        self._max_packets = max_packets
        self._client_side: anyio.abc.UDPSocket | None = None
        self._server_side: anyio.abc.UDPSocket | None = None
        # The pump (packets due at once) and the delayed sender share each socket: anyio lets
        # one task at a time send on it.
        self._to_server_lock = anyio.Lock()
        self._to_client_lock = anyio.Lock()
        self._tg: anyio.abc.TaskGroup | None = None
        self._runner: web.AppRunner | None = None

    # --- impairment -------------------------------------------------------------------------------

    def impair(self, to_server: Impairment | None = None, to_client: Impairment | None = None) -> None:
        """Impair each direction from now on (None: leave it as it is). A new impairment starts
        its seeded sequence afresh and its own statistics."""
        if to_server is not None:
            self.to_server.path = ImpairedPath(to_server)
        if to_client is not None:
            self.to_client.path = ImpairedPath(to_client)

    def clear(self) -> None:
        """A clean network both ways (packets already delayed still go out when due)."""
        self.impair(CLEAN, CLEAN)

    # --- running ----------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._client_side = await anyio.create_udp_socket(local_host=HOST)
        self._server_side = await anyio.create_udp_socket(local_host=HOST)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._proxy)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, 0)
        await site.start()
        self.url = f"http://{HOST}:{self._runner.addresses[0][1]}"
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._pump, self._client_side, self.to_server)
        self._tg.start_soon(self._pump, self._server_side, self.to_client)
        self._tg.start_soon(self.to_server.run_delayed, self._send_to_server)
        self._tg.start_soon(self.to_client.run_delayed, self._send_to_client)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._tg is not None:  # its scope must be the current one when it exits: not shielded
            self._tg.cancel_scope.cancel()
            await self._tg.__aexit__(None, None, None)
        with anyio.CancelScope(shield=True):
            if self._runner is not None:
                await self._runner.cleanup()
            for sock in (self._client_side, self._server_side):
                if sock is not None:
                    await sock.aclose()

    @property
    def client_facing(self) -> tuple[str, int]:
        """Where the client sends (the server's address as the client sees it)."""
        assert self._client_side is not None
        return _address(self._client_side.extra(anyio.abc.SocketAttribute.local_address))

    @property
    def server_facing(self) -> tuple[str, int]:
        """Where the server sends (the client's address as the server sees it)."""
        assert self._server_side is not None
        return _address(self._server_side.extra(anyio.abc.SocketAttribute.local_address))

    async def _pump(self, sock: anyio.abc.UDPSocket, direction: _Direction) -> None:
        send = self._send_to_server if direction is self.to_server else self._send_to_client
        while self.forwarded < self._max_packets:
            packet, _ = await sock.receive()
            self.forwarded += 1
            for copy in direction.schedule(packet, time.monotonic()):
                await send(copy)
        logger.warning("the impaired network forwarded %d packets: it stops here", self.forwarded)

    async def _send_to_server(self, packet: bytes) -> None:
        if self._server_side is not None and self.endpoints.server is not None:
            async with self._to_server_lock:
                await _send(self._server_side, packet, self.endpoints.server)

    async def _send_to_client(self, packet: bytes) -> None:
        if self._client_side is not None and self.endpoints.client is not None:
            async with self._to_client_lock:
                await _send(self._client_side, packet, self.endpoints.client)

    # --- signalling -------------------------------------------------------------------------------

    async def _proxy(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")}
        is_offer = request.method == "POST" and request.path == self.offer_path
        if is_offer:
            offer = await request.json()
            sdp, self.endpoints.client = relay_candidates(offer["sdp"], self.server_facing)
            body = _json_bytes({**offer, "sdp": sdp})
            headers["Content-Type"] = "application/json"
        timeout = aiohttp.ClientTimeout(total=30)
        url = self.upstream_url + request.path_qs
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.request(request.method, url, data=body, headers=headers) as reply,
        ):
            data = await reply.read()
            if is_offer and reply.status == 200:
                answer = await reply.json(content_type=None)
                sdp, self.endpoints.server = relay_candidates(answer["sdp"], self.client_facing)
                data = _json_bytes({**answer, "sdp": sdp})
            return web.Response(body=data, status=reply.status, content_type="application/json")


async def _send(sock: anyio.abc.UDPSocket, packet: bytes, address: tuple[str, int]) -> None:
    try:
        await sock.sendto(packet, *address)
    except OSError:  # the far end went away (ICMP unreachable): like a real path, drop it
        pass


def _json_bytes(data: Any) -> bytes:
    return json.dumps(data).encode()


def relay_candidates(sdp: str, relay: tuple[str, int]) -> tuple[str, tuple[str, int] | None]:
    """Put the relay's address in place of the first UDP candidate of every media section (under
    BUNDLE the first section's is the one used) and drop every other candidate. Returns the new
    SDP and the first section's address replaced (None: no UDP candidate, the SDP unchanged)."""
    lines = sdp.splitlines()
    original: tuple[str, int] | None = None
    for line in lines:
        bits = line.split()
        if line.startswith("a=candidate:") and len(bits) >= 8 and bits[2].lower() == "udp":
            original = (bits[4], int(bits[5]))
            break
    if original is None:
        return sdp, None
    out = []
    section_has_one = False
    for line in lines:
        bits = line.split()
        if line.startswith("a=candidate:"):
            if section_has_one or len(bits) < 8 or bits[2].lower() != "udp":
                continue  # the relay must be the only way in
            bits[4], bits[5] = relay[0], str(relay[1])
            line = " ".join(bits)
            section_has_one = True
        elif line.startswith("m=") and len(bits) > 1:
            section_has_one = False
            line = " ".join([bits[0], str(relay[1]), *bits[2:]])
        elif line.startswith("c=IN IP4"):
            line = f"c=IN IP4 {relay[0]}"
        elif line.startswith("a=rtcp:"):
            line = f"a=rtcp:{relay[1]} IN IP4 {relay[0]}"
        out.append(line)
    return "\r\n".join(out) + "\r\n", original


def _address(address: tuple[str, int] | str) -> tuple[str, int]:
    """A UDP socket's address (anyio types it as possibly a UNIX path, which a UDP one is not)."""
    assert isinstance(address, tuple), address
    return address[0], address[1]
