"""`--workers N`: the parent process runs N copies of the bot and keeps them up; it serves nothing.

Worker `i` is the single-process runner itself (`python BOT.py ...` or `python -m voxframe.runner
run BOT.py ...` with the parent's own options), on signalling port `--port + 1 + i` and with session
ids starting `w<i>-`, so a load balancer on the base port (`voxframe nginx-config`) can send a
session's trickle and hang-up requests to the worker that owns it. The parent loads no model.

A worker that exits unasked is restarted after a backoff that doubles up to `max_backoff_s` (back
to the first step once it has run `stable_s`); one that keeps failing fast (a bad option, a busy
port) stops the whole group instead of looping. SIGTERM/SIGINT go once to every worker (each drains
as alone: see `bot.serve_until_signal`); a second signal kills them; the parent exits when all have.
Workers run in their own process group, so a terminal's Ctrl-C reaches them only through the parent.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.abc

from voxframe.pipeline.clock import NS_PER_S, current_clock, move_on_at
from voxframe.transports.webrtc import PortRange

from .options import RunnerOptions, StartupError

logger = logging.getLogger("voxframe.runner.supervisor")

#: A worker's end of a socket pair whose other end only the supervisor holds: when the
#: supervisor dies (even by SIGKILL), the worker reads end of file and drains as on SIGTERM,
#: instead of living on as an orphan that holds its port.
LIFELINE_ENV = "VOXFRAME_SUPERVISOR_FD"


@dataclass(frozen=True, slots=True)
class Worker:
    name: str
    port: int
    command: tuple[str, ...]

    @property
    def session_id_prefix(self) -> str:
        return f"{self.name}-"


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 10.0
    #: A worker that ran this long before exiting starts its backoff afresh.
    stable_s: float = 30.0
    #: This many fast failures in a row (each before `stable_s`) stop the whole group.
    max_fast_failures: int = 5

    def delay_s(self, failures: int) -> float:
        """The wait before restart number `failures` of a run of fast failures (1, 2, ...)."""
        return min(self.initial_backoff_s * 2 ** (failures - 1), self.max_backoff_s)


def worker_name(index: int) -> str:
    return f"w{index}"


def worker_ports(base_port: int, count: int) -> list[int]:
    """The signalling ports of `count` workers behind a load balancer on `base_port`."""
    return [base_port + 1 + i for i in range(count)]


def plan_workers(
    launch: Sequence[str],
    argv: Sequence[str],
    base_port: int,
    count: int,
    udp_ports: PortRange | None = None,
    session_prefix: str = "",
) -> list[Worker]:
    """`launch` starts the bot (e.g. `python bot.py`); each worker adds the parent's options and
    its own (argparse keeps the last of a repeated option, so these win): its port, its session-id
    prefix (after the parent's `session_prefix`, which names the host when several hosts share a
    load balancer: `h1-w0-`), and its own slice of `udp_ports` (no two workers bind one UDP port)."""
    slices = split_ports(udp_ports, count) if udp_ports is not None else [None] * count
    workers = []
    for i, (port, ports) in enumerate(zip(worker_ports(base_port, count), slices, strict=True)):
        name = worker_name(i)
        prefix = f"{session_prefix}{name}-"
        own: tuple[str, ...] = ("--port", str(port), "--workers", "1", "--session-id-prefix", prefix)
        if ports is not None:
            own = (*own, "--udp-ports", str(ports))
        workers.append(Worker(name, port, (*launch, *argv, *own)))
    return workers


def split_ports(ports: PortRange, count: int) -> list[PortRange]:
    """`count` disjoint, contiguous slices of `ports`, as equal as they come; StartupError if
    the range has fewer ports than workers."""
    if len(ports) < count:
        raise StartupError(f"--udp-ports {ports} has {len(ports)} ports, fewer than the {count} workers")
    size, extra = divmod(len(ports), count)
    slices, low = [], ports.low
    for i in range(count):
        high = low + size + (i < extra) - 1
        slices.append(PortRange(low, high))
        low = high + 1
    return slices


def launch_command(bot_file: Path, run_as_script: bool) -> tuple[str, ...]:
    """The bot file's own `__main__` when it was run as a script (its `run_bot` call may add
    routes), else `voxframe run`."""
    if run_as_script:
        return (sys.executable, str(bot_file))
    return (sys.executable, "-m", "voxframe.runner", "run", str(bot_file))


def check_ports_free(host: str, workers: Sequence[Worker]) -> None:
    """A busy worker port is one line now, not a worker restarted until the group gives up."""
    for worker in workers:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, worker.port))
            except OSError as exc:
                where = f"{host}:{worker.port}"
                raise StartupError(f"cannot serve worker {worker.name} on {where}: {exc.strerror}") from exc


@dataclass
class Supervisor:
    workers: list[Worker]
    env: Mapping[str, str] | None = None
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    #: After the stop signal, how long workers may take to exit before they are killed.
    stop_timeout_s: float = 60.0
    #: Restarts so far, per worker name.
    restarts: dict[str, int] = field(default_factory=dict, init=False)
    #: The running worker processes, by name.
    processes: dict[str, anyio.abc.Process] = field(default_factory=dict, init=False)
    #: Why the group gave up (a worker that kept failing), if it did.
    failed: str | None = field(default=None, init=False)
    _stop_signal: int | None = field(default=None, init=False)
    _stopping: anyio.Event | None = field(default=None, init=False)

    async def run(self) -> int:
        """Until every worker has exited after a stop; 0 when each exited cleanly."""
        self._stopping = anyio.Event()
        ours, theirs = socket.socketpair()
        with ours, theirs:
            return await self._run(theirs)

    async def _run(self, lifeline: socket.socket) -> int:
        codes: dict[str, int] = {}
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with anyio.create_task_group() as outer:
                outer.start_soon(self._forward_signals, signals)
                outer.start_soon(self._bound_stop)
                async with anyio.create_task_group() as keepers:
                    for worker in self.workers:
                        keepers.start_soon(self._keep, worker, codes, lifeline, name=f"worker {worker.name}")
                outer.cancel_scope.cancel()
        clean = all(code in (0, -(self._stop_signal or 0)) for code in codes.values())
        logger.info("all workers stopped: %s", ", ".join(f"{n} exit {c}" for n, c in sorted(codes.items())))
        return 0 if clean and self.failed is None else 1

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Send `signum` to every worker once and restart none; a second stop kills them."""
        assert self._stopping is not None
        if self._stopping.is_set():
            logger.warning("second stop: killing %d workers", len(self.processes))
            for process in self.processes.values():
                _send(process, signal.SIGKILL)
            return
        self._stop_signal = signum
        self._stopping.set()
        logger.info("stopping: %s to %d workers", signal.Signals(signum).name, len(self.processes))
        for process in self.processes.values():
            _send(process, signum)

    async def _forward_signals(self, signals: AsyncIterator[int]) -> None:
        async for signum in signals:
            self.stop(signum)

    async def _bound_stop(self) -> None:
        """Workers get `stop_timeout_s` to drain and exit, then are killed."""
        assert self._stopping is not None
        await self._stopping.wait()
        clock = current_clock()
        async with move_on_at(clock.now_ns() + int(self.stop_timeout_s * NS_PER_S), clock):
            await anyio.sleep_forever()
        if self.processes:
            logger.error("workers still running %g s after the stop: killing them", self.stop_timeout_s)
            for process in self.processes.values():
                _send(process, signal.SIGKILL)

    async def _keep(self, worker: Worker, codes: dict[str, int], lifeline: socket.socket) -> None:
        assert self._stopping is not None
        clock = current_clock()
        env = {**(os.environ if self.env is None else self.env), LIFELINE_ENV: str(lifeline.fileno())}
        fast_failures = 0
        while not self._stopping.is_set():
            started_ns = clock.now_ns()
            process = await anyio.open_process(
                worker.command, env=env, stdin=subprocess.DEVNULL, stdout=None, stderr=None,
                start_new_session=True, pass_fds=(lifeline.fileno(),),
            )  # fmt: skip
            self.processes[worker.name] = process
            logger.info("worker %s started: pid %d, port %d", worker.name, process.pid, worker.port)
            if self._stopping.is_set() and self._stop_signal is not None:  # a stop raced the start
                _send(process, self._stop_signal)
            try:
                code = await process.wait()
            finally:
                del self.processes[worker.name]
                await process.aclose()
            if self._stopping.is_set():
                codes[worker.name] = code
                return
            ran_s = (clock.now_ns() - started_ns) / NS_PER_S
            fast_failures = fast_failures + 1 if ran_s < self.policy.stable_s else 1
            if fast_failures > self.policy.max_fast_failures:
                self.failed = f"worker {worker.name} exited {fast_failures} times in a row within {ran_s:.1f} s"
                logger.error("%s (last exit code %d): stopping all workers", self.failed, code)
                codes[worker.name] = code
                self.stop(signal.SIGTERM)
                return
            delay_s = self.policy.delay_s(fast_failures)
            self.restarts[worker.name] = self.restarts.get(worker.name, 0) + 1
            logger.warning(
                "worker %s (pid %d) exited with code %d after %.1f s: restarting in %.1f s",
                worker.name, process.pid, code, ran_s, delay_s,
            )  # fmt: skip
            async with move_on_at(clock.now_ns() + int(delay_s * NS_PER_S), clock):
                await self._stopping.wait()


def _send(process: anyio.abc.Process, signum: int) -> None:
    try:
        process.send_signal(signal.Signals(signum))
    except ProcessLookupError:  # it exited just now; its keeper sees that
        pass


async def wait_supervisor_gone() -> None:
    """In a worker: return when its supervisor has died; never, in a process without one."""
    fd = os.environ.get(LIFELINE_ENV)
    if fd is None:
        await anyio.sleep_forever()
        return
    with socket.socket(fileno=int(fd)) as lifeline:
        lifeline.setblocking(False)
        while True:
            await anyio.wait_readable(lifeline)
            try:
                if not lifeline.recv(1):
                    return
            except BlockingIOError:
                continue


def serve_workers(bot_file: Path, run_as_script: bool, argv: Sequence[str], options: RunnerOptions) -> int:
    """`--workers N` (N > 1): check the ports, start and keep the workers, return the exit code."""
    if options.tls_cert is not None:
        raise StartupError("--workers: TLS goes on the load balancer (voxframe nginx-config --tls-cert/--tls-key)")
    workers = plan_workers(
        launch_command(bot_file, run_as_script), argv, options.port, options.workers, options.udp_ports,
        options.session_id_prefix,
    )  # fmt: skip
    check_ports_free(options.host, workers)
    ports = ", ".join(str(w.port) for w in workers)
    print(
        f"voxframe: {len(workers)} workers on {options.host} ports {ports}; put a load balancer on port "
        f"{options.port} (voxframe nginx-config --workers {len(workers)} --port {options.port})",
        flush=True,
    )
    env = {**os.environ, "VOXFRAME_WORKERS": "1"}
    supervisor = Supervisor(workers, env=env, stop_timeout_s=options.drain_deadline_s + 30)
    return anyio.run(supervisor.run)
