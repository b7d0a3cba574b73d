"""The runner's options: command line, each also from a `VOXFRAME_*` variable, and a `.env` file.

Every option is checked here, before any model loads, and a bad one is one line on stderr
(`StartupError`): a non-loopback host without a token, a TLS key that does not load, a TURN
secret without a TURN URL, a UDP port range that is not one.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values

from voxframe.transports.webrtc import IceServer, PortRange

LOG_LEVELS = ("debug", "info", "warning", "error")


class StartupError(Exception):
    """An option or the environment makes serving impossible; the message is one line."""


@dataclass(slots=True)
class RunnerOptions:
    host: str = "127.0.0.1"
    port: int = 7860
    token: str | None = None
    ice_servers: list[IceServer] = field(default_factory=list)
    turn_secret: str | None = None
    turn_urls: list[str] = field(default_factory=list)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    log_level: str = "info"
    warm_up: bool = True
    call: Path | None = None
    reply_out: Path = Path("reply.wav")
    trace_out: Path | None = None
    #: Longest wait for the bot's reply in `--call` mode.
    reply_timeout_s: float = 60.0
    #: How long SIGTERM lets running calls go on before ending them.
    drain_deadline_s: float = 30.0
    #: Starts every session id (a load balancer routes on it).
    session_id_prefix: str = ""
    #: Announced in the host candidates instead of the local address (a server behind 1:1 NAT).
    public_ip: str | None = None
    #: Every ICE host candidate binds a UDP port of this range (a full range refuses calls with 503).
    udp_ports: PortRange | None = None
    #: Worker processes behind a load balancer (1: this process serves; see `supervisor.py`).
    workers: int = 1
    #: Refuse new calls while the event loop's median lag is above this (None: never; `admission.py`).
    max_loop_lag_s: float | None = 0.03
    #: Refuse new calls while the sessions' median read lateness is above this (None: never).
    max_read_late_s: float | None = 0.1
    #: How callers reach this server ("https://bot.example.com"): the TwiML's stream URL, Twilio's signature.
    public_url: str | None = None
    #: The Twilio account's auth token: the voice webhook checks Twilio's signature with it.
    twilio_auth_token: str | None = None

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.tls_cert is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(self.tls_cert, self.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise StartupError(f"--tls-cert/--tls-key: cannot load {self.tls_cert}: {exc}") from exc
        return context


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def parse_ice_server(text: str) -> IceServer:
    """``URL`` or ``URL,username,credential`` (e.g. ``turn:turn.example.com:3478,user,pass``)."""
    url, *rest = text.split(",")
    if not url.startswith(("stun:", "turn:", "turns:")) or len(rest) not in (0, 2):
        raise argparse.ArgumentTypeError(f"expected stun:/turn:/turns: URL[,username,credential], got {text!r}")
    return IceServer(urls=[url], username=rest[0] if rest else None, credential=rest[1] if rest else None)


def parse_port_range(text: str) -> PortRange:
    """``LOW-HIGH``, e.g. ``40000-40999``."""
    try:
        return PortRange.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_public_ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an IPv4 or IPv6 address, got {text!r}") from None


def parse_public_url(text: str) -> str:
    """``https://HOST[:PORT]`` (or http://, ws://, wss://), no path."""
    scheme, _, rest = text.strip().partition("://")
    if scheme not in ("http", "https", "ws", "wss") or not rest or "/" in rest.rstrip("/"):
        raise argparse.ArgumentTypeError(f"expected https://HOST[:PORT], got {text!r}")
    return f"{scheme}://{rest.rstrip('/')}"


def _environment(env: Mapping[str, str] | None, dotenv_path: Path) -> dict[str, str]:
    """The `.env` file's values (when present) under the real environment's (which win)."""
    values = {k: v for k, v in dotenv_values(dotenv_path).items() if v is not None} if dotenv_path.is_file() else {}
    values.update(os.environ if env is None else env)
    return values


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    def default(name: str, fallback: str | None = None) -> str | None:
        return env.get(f"VOXFRAME_{name}", fallback)

    def default_or(name: str, fallback: str) -> str:
        return env.get(f"VOXFRAME_{name}", fallback)

    p = argparse.ArgumentParser(description="Run a voxframe bot: serve it, or call it once.")
    p.add_argument("--host", default=default("HOST", "127.0.0.1"), help="address to serve on [VOXFRAME_HOST]")
    p.add_argument("--port", type=int, default=int(default_or("PORT", "7860")), help="0: any free [VOXFRAME_PORT]")
    p.add_argument("--token", default=default("TOKEN"), help="bearer token the API requires [VOXFRAME_TOKEN]")
    p.add_argument(
        "--insecure-no-token", action="store_true", default=default("INSECURE_NO_TOKEN") == "1",
        help="serve a non-loopback host without a token [VOXFRAME_INSECURE_NO_TOKEN=1]",
    )  # fmt: skip
    p.add_argument(
        "--ice-server", type=parse_ice_server, action="append", metavar="URL[,USER,CREDENTIAL]",
        default=[parse_ice_server(s) for s in (default("ICE_SERVERS") or "").split() if s],
        help="a STUN/TURN server for both ends; repeatable [VOXFRAME_ICE_SERVERS, space separated]",
    )  # fmt: skip
    p.add_argument(
        "--turn-secret", default=default("TURN_SECRET"), help="coturn static-auth-secret [VOXFRAME_TURN_SECRET]"
    )
    p.add_argument(
        "--turn-url", action="append", default=(default("TURN_URLS") or "").split(),
        help="TURN URL for minted per-caller credentials; repeatable [VOXFRAME_TURN_URLS]",
    )  # fmt: skip
    p.add_argument(
        "--public-ip", type=parse_public_ip, default=default("PUBLIC_IP"),
        help="announce this address in the ICE host candidates (behind 1:1 NAT) [VOXFRAME_PUBLIC_IP]",
    )  # fmt: skip
    p.add_argument(
        "--udp-ports", type=parse_port_range, default=default("UDP_PORTS"), metavar="LOW-HIGH",
        help="bind every ICE host candidate to a UDP port of this range [VOXFRAME_UDP_PORTS]",
    )  # fmt: skip
    p.add_argument(
        "--public-url", type=parse_public_url, default=default("PUBLIC_URL"), metavar="https://HOST",
        help="how callers reach this server (behind a proxy): Twilio's stream URL and signature [VOXFRAME_PUBLIC_URL]",
    )  # fmt: skip
    p.add_argument(
        "--twilio-auth-token", default=default("TWILIO_AUTH_TOKEN"),
        help="the Twilio account's auth token: check the voice webhook's signature [VOXFRAME_TWILIO_AUTH_TOKEN]",
    )  # fmt: skip
    p.add_argument("--tls-cert", type=Path, default=default("TLS_CERT"), help="PEM certificate [VOXFRAME_TLS_CERT]")
    p.add_argument("--tls-key", type=Path, default=default("TLS_KEY"), help="PEM key [VOXFRAME_TLS_KEY]")
    p.add_argument("--log-level", choices=LOG_LEVELS, default=default("LOG_LEVEL", "info"), help="[VOXFRAME_LOG_LEVEL]")
    p.add_argument(
        "--no-warm-up", action="store_true", default=default("NO_WARM_UP") == "1",
        help="do not load the embedded models at start (a bot that uses none) [VOXFRAME_NO_WARM_UP=1]",
    )  # fmt: skip
    p.add_argument("--drain-deadline", type=float, default=float(default_or("DRAIN_DEADLINE", "30")), metavar="S",
                   help="on SIGTERM, how long running calls may go on [VOXFRAME_DRAIN_DEADLINE]")  # fmt: skip
    p.add_argument("--call", type=Path, metavar="FILE.wav", help="call the bot once, speak this file, exit")
    p.add_argument("--reply-out", type=Path, default=Path("reply.wav"), help="where --call saves the reply")
    p.add_argument("--reply-timeout", type=float, default=60.0, metavar="S",
                   help="how long --call waits for the reply")  # fmt: skip
    p.add_argument("--trace-out", type=Path, help="append each turn's record as a JSON line to this file")
    p.add_argument(
        "--max-loop-lag-ms", type=float, default=float(default_or("MAX_LOOP_LAG_MS", "30")), metavar="MS",
        help="refuse new calls (503) while the event loop's median lag is above this; 0: never "
        "[VOXFRAME_MAX_LOOP_LAG_MS]",
    )  # fmt: skip
    p.add_argument(
        "--max-read-late-ms", type=float, default=float(default_or("MAX_READ_LATE_MS", "100")), metavar="MS",
        help="refuse new calls (503) while callers' packets are read this late (median over calls, against "
        "their RTP timestamps: the wait in the kernel's receive queue); 0: never [VOXFRAME_MAX_READ_LATE_MS]",
    )  # fmt: skip
    p.add_argument(
        "--workers", type=parse_workers, default=default("WORKERS", "1"), metavar="N|auto",
        help="worker processes on ports PORT+1.. behind a load balancer on PORT (`voxframe nginx-config`); "
        "auto: one per core; 1: this process serves on PORT [VOXFRAME_WORKERS]",
    )  # fmt: skip
    p.add_argument(
        "--session-id-prefix", type=parse_session_id_prefix, default=default("SESSION_ID_PREFIX", ""),
        help="starts every session id, for a load balancer to route on (workers get w0-, w1-, ...) "
        "[VOXFRAME_SESSION_ID_PREFIX]",
    )  # fmt: skip
    return p


def parse_workers(text: str) -> int:
    """A count of worker processes, or `auto`: one per core this process may run on."""
    if text.strip().lower() == "auto":
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"expected a number of workers >= 1 or 'auto', got {text!r}")
    return count


def parse_session_id_prefix(text: str) -> str:
    """Letters, digits, `-` and `_` only: a load balancer matches it in URLs."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{0,32}", text):
        raise argparse.ArgumentTypeError(f"expected up to 32 of A-Z a-z 0-9 - _, got {text!r}")
    return text


def parse_options(
    argv: list[str] | None = None, env: Mapping[str, str] | None = None, dotenv_path: Path = Path(".env")
) -> RunnerOptions:
    """Parse and check; argparse's usage errors exit 2 with one line, like a `StartupError`."""
    values = _environment(env, dotenv_path)
    parser = build_parser(values)
    args = parser.parse_args(argv)
    if args.call is not None and not args.call.is_file():
        parser.error(f"--call: no such file: {args.call}")
    options = RunnerOptions(
        host=args.host, port=args.port, token=args.token or None, ice_servers=args.ice_server,
        turn_secret=args.turn_secret or None, turn_urls=args.turn_url, tls_cert=args.tls_cert, tls_key=args.tls_key,
        log_level=args.log_level, warm_up=not args.no_warm_up, call=args.call, reply_out=args.reply_out,
        trace_out=args.trace_out, drain_deadline_s=args.drain_deadline, public_ip=args.public_ip,
        udp_ports=args.udp_ports, reply_timeout_s=args.reply_timeout, public_url=args.public_url,
        twilio_auth_token=args.twilio_auth_token or None,
    )  # fmt: skip
    options.workers, options.session_id_prefix = args.workers, args.session_id_prefix
    if args.max_loop_lag_ms < 0:
        parser.error(f"--max-loop-lag-ms must be >= 0, got {args.max_loop_lag_ms:g}")
    options.max_loop_lag_s = args.max_loop_lag_ms / 1000 or None
    if args.max_read_late_ms < 0:
        parser.error(f"--max-read-late-ms must be >= 0, got {args.max_read_late_ms:g}")
    options.max_read_late_s = args.max_read_late_ms / 1000 or None
    if options.workers > 1 and options.port == 0:
        parser.error("--workers needs a fixed --port (the workers serve on the ports after it)")
    if not options.loopback and options.token is None and not args.insecure_no_token and options.call is None:
        parser.error(f"--host {options.host} is reachable from other machines: set --token (or --insecure-no-token)")
    if options.turn_secret is not None and not options.turn_urls:
        parser.error("--turn-secret needs --turn-url (the TURN server the minted credentials are for)")
    if (options.tls_cert is None) != (options.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    return options


def configure_logging(level: str) -> None:
    """One format for the runner's and the library's lines (session start/end, errors)."""
    logging.basicConfig(
        level=getattr(logging, level.upper()), format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    # aiortc and aioice narrate every ICE check at INFO: a line per packet pair is noise in a bot's
    # log, so they speak only at DEBUG (where they help) or when something goes wrong.
    quiet = logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING
    for name in ("aioice", "aiortc"):
        logging.getLogger(name).setLevel(quiet)
