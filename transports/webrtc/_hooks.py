"""Where voxframe reaches into aiortc's and aioice's private internals, and how each reach is checked.

aiortc and aioice offer no public seam for what the transport needs, so a few private names are
used (each module says why):

- receiver (`_receive.py`): `RTCRtpReceiver`'s name-mangled `__jitter_buffer`, replaced; its
  `_handle_rtp_packet(packet, arrival_time_ms)`, wrapped; the `packet._data` it depayloads into;
  `JitterBuffer(capacity, prefetch)` and `JitterFrame(data, timestamp)`;
- sender (`tracks.py`): `RTCRtpSender._handle_rtcp_packet(packet)`, wrapped to read loss reports,
  and the sender's `_ssrc`;
- ICE (`_ice.py`): `aioice.ice.get_host_addresses(use_ipv4, use_ipv6)`, wrapped; the ICE
  transport's `_connection` and its `request_received(message, addr, ...)`, wrapped;
- input (`input.py`): a remote track's `_queue`, to drop a backlog;
- UDP ports (`_ports.py`): how aioice binds host candidates (checked where it is used).

Each is checked when its module is imported (the ports hook when a range is given), so a release
that moved one fails at start-up with one line naming the installed versions (`hook_error`),
instead of a call that silently never connects. The range in pyproject.toml is what the tests ran.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

#: The versions the hooks were tested with (pyproject.toml's range; .ci/extras.py runs both ends).
TESTED = "aiortc 1.16.0 / aioice 0.12.0 up to the newest release"


class HookError(RuntimeError):
    """The installed aiortc or aioice no longer has a private internal a voxframe hook relies on."""


def installed_versions() -> str:
    found = []
    for name in ("aioice", "aiortc"):
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} not installed")
    return ", ".join(found)


def hook_error(hook: str, problem: str) -> HookError:
    """The one message for a hook that cannot be applied: what, why, and the installed versions."""
    return HookError(
        f"voxframe's {hook} hook cannot be applied: {problem} (installed: {installed_versions()}; tested with {TESTED})"
    )


def source_of(hook: str, obj: Any) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError) as exc:
        raise hook_error(hook, f"the source of {_name(obj)} is unreadable") from exc


def require_parameters(hook: str, func: Callable[..., Any], leading: Sequence[str]) -> None:
    """`func`'s parameters start with `leading` (more after them are allowed: the hook passes them on)."""
    try:
        parameters = list(inspect.signature(func).parameters)
    except (TypeError, ValueError) as exc:
        raise hook_error(hook, f"{_name(func)} has no readable signature") from exc
    if parameters[: len(leading)] != list(leading):
        wanted = ", ".join(leading)
        raise hook_error(hook, f"{_name(func)} takes ({', '.join(parameters)}), expected ({wanted}, ...)")


def require_source(hook: str, obj: Any, *fragments: str) -> None:
    """`obj`'s source contains every fragment (how it sets or uses a private attribute)."""
    text = source_of(hook, obj)
    for fragment in fragments:
        if fragment not in text:
            raise hook_error(hook, f"{_name(obj)} no longer contains `{fragment}`")


def require_attribute(hook: str, owner: Any, name: str) -> Any:
    found = getattr(owner, name, None)
    if found is None:
        raise hook_error(hook, f"{_name(owner)} has no `{name}`")
    return found


def _name(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
