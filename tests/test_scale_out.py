"""Scale-out: `--workers 2` behind a real nginx written by `voxframe nginx-config`.

Calls through nginx spread over both workers and each session's trickle and hang-up requests reach
the worker that owns it; a SIGKILLed worker is restarted while calls go on via the other; SIGTERM
to the parent drains every worker (a running call finishes) and the parent exits 0.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import anyio
import anyio.abc
import pytest
from webrtc_helpers import client_options, tone

from tests.support import Console
from voxframe.runner import parse_options
from voxframe.runner.nginx import NginxLayout, render_http
from voxframe.runner.nginx import main as nginx_config
from voxframe.runner.options import StartupError
from voxframe.runner.supervisor import RestartPolicy, Supervisor, Worker, plan_workers
from voxframe.transports.webrtc import HeadlessClient, PortRange

ECHO_BOT = """
from voxframe.pipeline import Pipeline
from voxframe.processors.echo import AudioEcho
from voxframe.runner import run_bot


def create_pipeline(bot):
    return Pipeline([bot.input, AudioEcho(), bot.output])


if __name__ == "__main__":
    run_bot(create_pipeline)
"""
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


# --- the pieces --------------------------------------------------------------------------------------


def test_each_worker_gets_its_own_port_and_session_prefix_over_the_parents_options() -> None:
    workers = plan_workers(("python", "bot.py"), ["--port", "9000", "--drain-deadline", "7"], 9000, 2)
    for i, worker in enumerate(workers):
        assert worker.command[:2] == ("python", "bot.py")
        options = parse_options(list(worker.command[2:]), env={"VOXFRAME_WORKERS": "4"}, dotenv_path=Path("-"))
        assert (options.port, options.workers, options.session_id_prefix) == (9001 + i, 1, f"w{i}-")
        assert options.drain_deadline_s == 7  # the parent's own options reach every worker


def test_each_worker_binds_its_own_udp_ports_and_names_its_host_in_session_ids() -> None:
    argv = ["--port", "9000", "--udp-ports", "40000-40010"]
    workers = plan_workers(("python", "bot.py"), argv, 9000, 3, PortRange(40000, 40010))
    ranges = [parse_options(list(w.command[2:]), env={}, dotenv_path=Path("-")).udp_ports for w in workers]
    assert ranges == [PortRange(40000, 40003), PortRange(40004, 40007), PortRange(40008, 40010)]
    hosted = plan_workers(("python", "bot.py"), argv, 9000, 2, session_prefix="h1-")
    prefixes = [parse_options(list(w.command[2:]), env={}, dotenv_path=Path("-")).session_id_prefix for w in hosted]
    assert prefixes == ["h1-w0-", "h1-w1-"]  # the host's prefix, then the worker's
    with pytest.raises(StartupError, match="fewer than the 3 workers"):
        plan_workers(("python", "bot.py"), argv, 9000, 3, PortRange(40000, 40001))


def test_one_process_is_the_default_and_auto_is_one_per_core() -> None:
    assert parse_options([], env={}, dotenv_path=Path("-")).workers == 1
    assert parse_options(["--workers", "auto"], env={}, dotenv_path=Path("-")).workers == len(os.sched_getaffinity(0))
    with pytest.raises(SystemExit):
        parse_options(["--workers", "2", "--port", "0"], env={}, dotenv_path=Path("-"))


def test_restart_backoff_doubles_up_to_its_bound() -> None:
    policy = RestartPolicy(initial_backoff_s=0.5, max_backoff_s=4.0)
    assert [policy.delay_s(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_sessions_route_to_the_worker_their_id_names() -> None:
    text = render_http(NginxLayout(workers=3, base_port=8000, tls_cert=Path("/c.pem"), tls_key=Path("/k.pem")))
    routes = dict(re.findall(r"~\^/api/voice/sessions/(w\d+)- (voxframe_w\d+);", text))
    assert routes == {"w0": "voxframe_w0", "w1": "voxframe_w1", "w2": "voxframe_w2"}
    for i in range(3):
        assert re.search(rf"upstream voxframe_w{i} {{\s+server 127.0.0.1:{8001 + i};\s+}}", text)
    assert "least_conn;" in text and "listen 8000 ssl;" in text and "ssl_certificate_key /k.pem;" in text
    assert "Media" in text.split("upstream", 1)[0]  # the header says where the media goes
    # A host's prefix (several hosts behind one balancer) comes before the worker's.
    hosted = render_http(NginxLayout(workers=2, session_prefix="h1-"))
    assert re.findall(r"~\^/api/voice/sessions/(\S+)- voxframe_w\d+;", hosted) == ["h1-w0", "h1-w1"]


def test_a_busy_worker_port_is_one_line_before_any_worker_starts(tmp_path: Path) -> None:
    bot = tmp_path / "echo_bot.py"
    bot.write_text(ECHO_BOT)
    base = free_port_run(3)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", base + 2))
        busy.listen()
        command = [sys.executable, str(bot), "--workers", "2", "--port", str(base)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    busy_line = f"voxframe: cannot serve worker w1 on 127.0.0.1:{base + 2}: Address already in use"
    assert result.stderr.splitlines() == [busy_line]
    assert "started" not in result.stdout


# --- end to end ------------------------------------------------------------------------------------


def free_port_run(count: int) -> int:
    """A port with `count - 1` free ports after it (the parent's base and its workers')."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + count > 65535:
            continue
        try:
            for port in range(base, base + count):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise AssertionError("no run of free ports")


async def stop_all(parent: anyio.abc.Process, nginx: anyio.abc.Process | None, console: Console) -> None:
    """After a failure too: nginx stops its own workers on SIGTERM; the bot's are killed by pid."""
    if nginx is not None and nginx.returncode is None:
        nginx.terminate()
        with anyio.move_on_after(5):
            await nginx.wait()
    for process in (parent, nginx):
        if process is not None and process.returncode is None:
            process.kill()
    for match in console.matching(r"worker w\d started: pid (\d+)"):
        try:
            os.kill(int(match[1]), signal.SIGKILL)
        except ProcessLookupError:
            pass


async def call_through(nginx: str, http: aiohttp.ClientSession) -> str:
    """One call via nginx: the echo answers, a trickle PATCH and the DELETE reach its worker."""
    async with HeadlessClient.connect(nginx, client_options(record=False)) as client:
        await client.wait_for_event("bot-ready", timeout_s=10)
        played = await client.play(tone(800.0, 0.2, 16_000), 16_000)
        await client.wait_for_onset(played.start_ns, timeout_s=10)
        session = f"{nginx}/api/voice/sessions/{client.session_id}"
        async with http.patch(session, json={"candidates": [], "end": False}) as trickled:
            assert trickled.status == 200, await trickled.text()  # another worker would say 404
        async with http.delete(session) as hung_up:
            assert hung_up.status == 200 and (await hung_up.json())["ended"] is True
    assert client.session_id is not None
    return client.session_id


@pytest.mark.slow
@pytest.mark.anyio
async def test_two_workers_behind_nginx_share_calls_survive_a_crash_and_drain(tmp_path: Path) -> None:
    nginx_binary = shutil.which("nginx", path=SBIN_PATH)
    assert nginx_binary, "nginx is needed (`python3 dev.py test` installs it; or apt-get install nginx)"
    bot = tmp_path / "echo_bot.py"
    bot.write_text(ECHO_BOT)
    base = free_port_run(3)
    nginx_config(["--workers", "2", "--port", str(base), "--standalone", "--out", str(tmp_path / "voxframe.conf")])
    parent_command = [sys.executable, str(bot), "--workers", "2", "--port", str(base), "--no-warm-up",
                      "--drain-deadline", "30"]  # fmt: skip
    nginx_command = [nginx_binary, "-p", str(tmp_path), "-c", str(tmp_path / "voxframe.conf"),
                     "-e", "stderr", "-g", "daemon off; error_log stderr notice;"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOXFRAME_")}
    nginx_url = f"http://127.0.0.1:{base}"

    parent = await anyio.open_process(parent_command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    nginx = await anyio.open_process(nginx_command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    # The task group innermost: cancelling it must not cancel the HTTP session's close (that
    # would swallow the test's own failure).
    async with parent, nginx, aiohttp.ClientSession() as http, anyio.create_task_group() as tg:
        console, nginx_log = Console(parent), Console(nginx)
        tg.start_soon(console.read)
        tg.start_soon(nginx_log.read)
        try:
            with anyio.fail_after(60):
                await console.wait_for(r"voxframe bot ready", count=2)
                await nginx_log.wait_for(r"start worker process")
            started = {m[1]: int(m[2]) for m in console.matching(r"worker (w\d) started: pid (\d+)")}
            assert sorted(started) == ["w0", "w1"]

            # Calls through nginx spread over both workers; each one's requests reach its worker.
            with anyio.fail_after(90):
                session_ids = [await call_through(nginx_url, http) for _ in range(6)]
            assert {sid[:3] for sid in session_ids} == {"w0-", "w1-"}

            # A SIGKILLed worker is restarted; meanwhile new calls go on through the other.
            os.kill(started["w0"], signal.SIGKILL)
            with anyio.fail_after(60):
                crashed = rf"worker w0 \(pid {started['w0']}\) exited with code -9 after [\d.]+ s: restarting"
                await console.wait_for(crashed)
                for _ in range(2):
                    await call_through(nginx_url, http)
                await console.wait_for(r"worker w0 started: pid (\d+)", count=2)
                await console.wait_for(r"voxframe bot ready", count=3)
            async with http.get(f"http://127.0.0.1:{base + 1}/readyz") as ready:
                assert ready.status == 200  # the new w0 admits calls again

            # SIGTERM to the parent: every worker drains (the idle one exits at once); the running call
            # goes on until it hangs up, then all have exited 0.
            async with HeadlessClient.connect(nginx_url, client_options(record=False)) as client:
                with anyio.fail_after(30):
                    await client.wait_for_event("bot-ready", timeout_s=10)
                    parent.send_signal(signal.SIGTERM)
                    await console.wait_for(r"draining: 1 running calls")
                    assert client.session_id is not None
                    owner = base + 1 + int(client.session_id[1])  # w<i>- serves on base + 1 + i
                    async with http.get(f"http://127.0.0.1:{owner}/readyz") as ready:
                        assert ready.status == 503 and (await ready.json())["reason"] == "draining"
                    played = await client.play(tone(600.0, 0.2, 16_000), 16_000)
                    await client.wait_for_onset(played.start_ns, timeout_s=10)  # the call goes on
                    async with http.delete(f"{nginx_url}/api/voice/sessions/{client.session_id}") as hung_up:
                        assert hung_up.status == 200
            with anyio.fail_after(30):
                assert await parent.wait() == 0
            assert len(console.matching(r"^stopped$")) == 2
            assert console.matching(r"all workers stopped: w0 exit 0, w1 exit 0")
        finally:
            await stop_all(parent, nginx, console)
            tg.cancel_scope.cancel()


@pytest.mark.slow
@pytest.mark.anyio
async def test_workers_stop_when_their_supervisor_is_killed(tmp_path: Path) -> None:
    bot = tmp_path / "echo_bot.py"
    bot.write_text(ECHO_BOT)
    command = [sys.executable, str(bot), "--workers", "2", "--port", str(free_port_run(3)), "--no-warm-up"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOXFRAME_")}
    parent = await anyio.open_process(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    async with parent, anyio.create_task_group() as tg:
        console = Console(parent)
        try:
            with anyio.fail_after(60):
                tg.start_soon(console.read)
                await console.wait_for(r"voxframe bot ready", count=2)
                parent.kill()
                # The workers share the parent's output pipe: it ends when both have exited.
                await console.read_to_end()
            assert len(console.matching(r"the supervisor is gone: stopping as on SIGTERM")) == 2
            assert len(console.matching(r"^stopped$")) == 2
        finally:
            await stop_all(parent, None, console)
            tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_a_worker_that_keeps_failing_at_start_stops_the_group_instead_of_looping() -> None:
    failing = Worker("w0", 0, (sys.executable, "-c", "raise SystemExit(3)"))
    supervisor = Supervisor([failing], policy=RestartPolicy(initial_backoff_s=0.01, max_fast_failures=2))
    with anyio.fail_after(30):
        assert await supervisor.run() == 1
    assert supervisor.restarts == {"w0": 2}
    assert supervisor.failed is not None and "w0 exited 3 times in a row" in supervisor.failed
