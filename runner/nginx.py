"""`voxframe nginx-config`: the nginx configuration for `--workers N` (a load balancer on `--port`).

A new offer goes to the least-loaded worker; every later request of that session (trickle PATCH,
DELETE) goes to the worker its id names (`w<i>-...`, see `supervisor.py`), because a WebRTC
session lives in one process. The output is either an `http`-level file for
`/etc/nginx/conf.d/` or, with `--standalone`, a whole configuration that runs as

    nginx -p DIR -c DIR/voxframe.conf -e DIR/error.log -g 'daemon off;'

with its pid, logs and temporary files under DIR (the tests run it so, unprivileged ports).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .options import _environment, parse_session_id_prefix, parse_workers
from .supervisor import worker_name, worker_ports

OFFER_PATH = "/api/voice/offer"
SESSIONS_PATH = "/api/voice/sessions/"


@dataclass(frozen=True, slots=True)
class NginxLayout:
    workers: int
    #: The runner's `--port`: nginx's default listen port; workers serve on the ports after it.
    base_port: int = 7860
    worker_host: str = "127.0.0.1"
    #: nginx's `listen` (a port or address:port); default: the base port.
    listen: str | None = None
    server_name: str = "_"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: The runner's largest signalling body (`ServerOptions.max_body_bytes`).
    max_body_bytes: int = 64 * 1024
    #: The runner's `--session-id-prefix` (a host's name), before each worker's `w<i>-`.
    session_prefix: str = ""

    def worker_address(self, port: int) -> str:
        host = f"[{self.worker_host}]" if ":" in self.worker_host else self.worker_host
        return f"{host}:{port}"


def _header(layout: NginxLayout) -> list[str]:
    tls = " with TLS" if layout.tls_cert is not None else ""
    return [
        f"# voxframe: nginx{tls} in front of {layout.workers} worker processes (`voxframe run BOT.py",
        f"# --workers {layout.workers} --port {layout.base_port}`); written by `voxframe nginx-config`.",
        "#",
        "# nginx carries signalling only. Media (RTP over ICE/UDP) goes straight between the caller",
        "# and the worker's own UDP ports (or through a TURN server such as coturn), never through",
        "# nginx: those ports must be reachable by callers.",
        "#",
        f"# - POST {OFFER_PATH}: a new call goes to the least-loaded worker (least_conn: the fewest",
        "#   requests in flight); a worker that is down or refuses (503: warming up, draining, at its",
        "#   session limit) hands the offer to the next one.",
        f"# - PATCH/DELETE {SESSIONS_PATH}w<i>-...: to worker i, the one that owns the session",
        "#   (its id starts with the worker's name); any other worker would answer 404.",
        "# - Everything else (the page, /api/voice/config, /healthz, /readyz): any worker.",
        "#   Orchestrators should probe each worker's own /readyz, not this one.",
        "",
    ]


def render_http(layout: NginxLayout) -> str:
    """The `http`-level blocks: upstreams, the session-id map, the server."""
    ports = worker_ports(layout.base_port, layout.workers)
    lines = _header(layout)
    lines += ["upstream voxframe_workers {", "    least_conn;"]
    lines += [f"    server {layout.worker_address(port)};" for port in ports]
    lines += ["}"]
    for i, port in enumerate(ports):
        lines += [f"upstream voxframe_{worker_name(i)} {{", f"    server {layout.worker_address(port)};", "}"]
    lines += ["", "# The worker a session's id names; an id no worker owns goes anywhere (and gets 404).",
              "map $uri $voxframe_session_worker {", "    default voxframe_workers;"]  # fmt: skip
    prefix = layout.session_prefix
    lines += [f"    ~^{SESSIONS_PATH}{prefix}{worker_name(i)}- voxframe_{worker_name(i)};" for i in range(len(ports))]
    lines += ["}", "", "server {"]
    listen = layout.listen or str(layout.base_port)
    if layout.tls_cert is not None:
        lines += [
            f"    listen {listen} ssl;",
            f"    ssl_certificate {layout.tls_cert};",
            f"    ssl_certificate_key {layout.tls_key};",
        ]
    else:
        lines += [f"    listen {listen};"]
    lines += [
        f"    server_name {layout.server_name};",
        f"    client_max_body_size {layout.max_body_bytes};",
        "    proxy_http_version 1.1;",
        "    proxy_set_header Host $host;",
        "    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "    proxy_set_header X-Forwarded-Proto $scheme;",
        "    proxy_connect_timeout 5s;",
        "",
        f"    location = {OFFER_PATH} {{",
        "        proxy_pass http://voxframe_workers;",
        "        # A refused offer admitted nothing, so trying the next worker is safe.",
        "        proxy_next_upstream error timeout http_502 http_503 non_idempotent;",
        f"        proxy_next_upstream_tries {layout.workers};",
        "    }",
        f"    location {SESSIONS_PATH} {{",
        "        proxy_pass http://$voxframe_session_worker;",
        "        proxy_next_upstream off;",
        "    }",
        "    location / {",
        "        proxy_pass http://voxframe_workers;",
        "        proxy_next_upstream error timeout http_502 http_503;",
        "    }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def render_standalone(layout: NginxLayout) -> str:
    """A whole configuration whose pid, logs and temporary files are relative to nginx's `-p` prefix."""
    site = render_http(layout)
    inner = "\n".join(f"    {line}" if line else "" for line in site.splitlines())
    temp = [f"    {kind}_temp_path {kind}_temp;" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")]
    lines = [
        "# Run: nginx -p DIR -c DIR/THIS_FILE -e DIR/error.log -g 'daemon off;'",
        "worker_processes 1;",
        "pid nginx.pid;",
        "error_log error.log notice;",
        "events {",
        "    worker_connections 1024;",
        "}",
        "http {",
        "    access_log access.log;",
        *temp,
        inner,
        "}",
    ]
    return "\n".join(lines) + "\n"


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="voxframe nginx-config", description="Write the nginx configuration for `voxframe run --workers N`."
    )
    p.add_argument("--workers", type=parse_workers, default=env.get("VOXFRAME_WORKERS", "auto"), metavar="N|auto",
                   help="as given to voxframe run [VOXFRAME_WORKERS, else auto]")  # fmt: skip
    p.add_argument("--port", type=int, default=int(env.get("VOXFRAME_PORT", "7860")),
                   help="the runner's --port: workers serve on the ports after it [VOXFRAME_PORT]")  # fmt: skip
    p.add_argument("--worker-host", default=env.get("VOXFRAME_HOST", "127.0.0.1"),
                   help="the workers' --host [VOXFRAME_HOST]")  # fmt: skip
    p.add_argument(
        "--session-id-prefix",
        type=parse_session_id_prefix,
        default=env.get("VOXFRAME_SESSION_ID_PREFIX", ""),
        help="the runner's --session-id-prefix (a host's name) [VOXFRAME_SESSION_ID_PREFIX]",
    )
    p.add_argument("--listen", help="nginx's listen address or port (default: --port)")
    p.add_argument("--server-name", default="_", help="nginx's server_name")
    p.add_argument("--tls-cert", type=Path, help="PEM certificate: nginx serves HTTPS")
    p.add_argument("--tls-key", type=Path, help="PEM key")
    p.add_argument("--standalone", action="store_true",
                   help="a whole nginx.conf (pid, logs, temp files under nginx's -p prefix)")  # fmt: skip
    p.add_argument("--out", type=Path, help="write here (default: standard output)")
    return p


def main(argv: list[str], env: Mapping[str, str] | None = None, dotenv_path: Path = Path(".env")) -> None:
    parser = build_parser(_environment(env, dotenv_path))
    args = parser.parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    layout = NginxLayout(
        workers=args.workers, base_port=args.port, worker_host=args.worker_host, listen=args.listen,
        server_name=args.server_name, tls_cert=args.tls_cert, tls_key=args.tls_key,
        session_prefix=args.session_id_prefix,
    )  # fmt: skip
    text = render_standalone(layout) if args.standalone else render_http(layout)
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text, encoding="utf-8")
        print(f"voxframe: wrote {args.out} ({layout.workers} workers, listening on {layout.listen or args.port})")
