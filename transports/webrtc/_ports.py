"""ICE host candidates on UDP ports from a range (a firewall that opens only those lets calls in).

aioice, the ICE agent under aiortc, binds each host candidate in
`Connection.get_component_candidates` with ``loop.create_datagram_endpoint(...,
local_addr=(address, 0))`` and offers no choice of port. This module is the smallest hook that
gives one: `bind_in(ports)` sets a context variable for the code inside it (the peer connection
gathering there, and only it), and a wrapper around the running loop's `create_datagram_endpoint`
turns a port-0 bind made under it into a bind to a free port of the range. A range with no free
port fails that bind (aioice skips the candidate) and marks the `Binding` exhausted, so the caller
can refuse the call instead of answering without candidates.

`check_port_hook()` verifies that aioice still binds that way and that the loop takes the wrapper, and
fails with a clear error naming the installed aioice/aiortc versions otherwise.
"""

from __future__ import annotations

import asyncio
import contextvars
import errno
import functools
import inspect
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import aioice.ice

from ._hooks import HookError, hook_error

#: What the hook relies on in aioice: the method that binds host candidates, and how it binds.
_BINDER = aioice.ice.Connection.get_component_candidates
_BINDER_PARAMETERS = ["self", "component", "addresses", "timeout"]
_BIND_CALL = "local_addr=(address, 0)"
_WRAPPED = "_voxframe_port_range"


class PortHookError(HookError):
    """The installed aioice (or event loop) no longer binds host candidates the way the hook expects."""


def _port_hook_error(problem: str) -> PortHookError:
    return PortHookError(str(hook_error("UDP port range", problem)))


@dataclass(frozen=True, slots=True)
class PortRange:
    """UDP ports `low`..`high`, both included."""

    low: int
    high: int

    def __post_init__(self) -> None:
        if not 1 <= self.low <= self.high <= 65535:
            raise ValueError(f"a UDP port range needs 1 <= LOW <= HIGH <= 65535, got {self.low}-{self.high}")

    @classmethod
    def parse(cls, text: str) -> PortRange:
        """``40000-40999`` (or one port, ``40000``)."""
        low, sep, high = text.strip().partition("-")
        try:
            return cls(int(low), int(high) if sep else int(low))
        except ValueError:
            raise ValueError(
                f"expected a UDP port range LOW-HIGH, 1 <= LOW <= HIGH <= 65535 (e.g. 40000-40999), got {text!r}"
            ) from None

    def __len__(self) -> int:
        return self.high - self.low + 1

    def __str__(self) -> str:
        return f"{self.low}-{self.high}"


@dataclass(slots=True)
class Binding:
    """What happened to the binds made inside one `bind_in` block."""

    ports: PortRange | None
    #: Ports bound from the range, in order.
    bound: list[int] = field(default_factory=list)
    #: Addresses whose bind found no free port in the range.
    exhausted: list[str] = field(default_factory=list)


_binding: contextvars.ContextVar[Binding | None] = contextvars.ContextVar("voxframe_udp_ports", default=None)


@functools.cache
def check_port_hook() -> None:
    """Fail (PortHookError) unless aioice still binds host candidates as ``local_addr=(address, 0)``."""
    try:
        parameters = list(inspect.signature(_BINDER).parameters)
        source = inspect.getsource(_BINDER)
    except (OSError, TypeError, ValueError) as exc:
        raise _port_hook_error("aioice's source is unreadable") from exc
    if parameters != _BINDER_PARAMETERS or "create_datagram_endpoint(" not in source or _BIND_CALL not in source:
        raise _port_hook_error(
            f"aioice.ice.Connection.get_component_candidates no longer binds host candidates with {_BIND_CALL}"
        )


def _install(loop: asyncio.AbstractEventLoop) -> None:
    """Wrap `loop.create_datagram_endpoint` once; outside `bind_in` the wrapper only passes calls on."""
    if getattr(loop.create_datagram_endpoint, _WRAPPED, False):
        return
    original = loop.create_datagram_endpoint

    @functools.wraps(original)
    async def create_datagram_endpoint(
        protocol_factory: Any, local_addr: Any = None, remote_addr: Any = None, **kwargs: Any
    ) -> Any:
        binding = _binding.get()
        if binding is None or binding.ports is None or remote_addr is not None or not _is_any_port(local_addr):
            return await original(protocol_factory, local_addr=local_addr, remote_addr=remote_addr, **kwargs)
        return await _bind_in_range(original, binding, protocol_factory, local_addr[0], kwargs)

    setattr(create_datagram_endpoint, _WRAPPED, True)
    try:
        loop.create_datagram_endpoint = create_datagram_endpoint  # type: ignore[method-assign]
    except AttributeError as exc:
        raise _port_hook_error(f"a {type(loop).__name__} event loop does not take the wrapper") from exc


def _is_any_port(local_addr: Any) -> bool:
    return isinstance(local_addr, tuple) and len(local_addr) == 2 and local_addr[1] == 0


async def _bind_in_range(original: Any, binding: Binding, factory: Any, host: str, kwargs: dict[str, Any]) -> Any:
    ports = binding.ports
    assert ports is not None
    start = random.randrange(len(ports))  # spread reuse: a just-freed port may still get stale packets
    for offset in range(len(ports)):  # bounded: each port of the range once
        port = ports.low + (start + offset) % len(ports)
        try:
            endpoint = await original(factory, local_addr=(host, port), **kwargs)
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                continue
            raise
        binding.bound.append(port)
        return endpoint
    binding.exhausted.append(host)
    raise OSError(errno.EADDRINUSE, f"no free UDP port in {ports} on {host}")


@contextmanager
def bind_in(ports: PortRange | None) -> Iterator[Binding]:
    """Bind the host candidates gathered inside this block to ports from `ports` (None: any port).

    Must be entered on the running event loop whose sockets it should place.
    """
    binding = Binding(ports)
    if ports is None:
        yield binding
        return
    check_port_hook()
    _install(asyncio.get_running_loop())
    token = _binding.set(binding)
    try:
        yield binding
    finally:
        _binding.reset(token)
