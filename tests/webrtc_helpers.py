"""Shared helpers for the transport tests: test signals, a virtual-clock step, WebRTC servers and clients."""

from __future__ import annotations

import asyncio
import gc
import random
import shutil
import socket
import subprocess
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamTrack
from anyio.streams.text import TextReceiveStream

from tests.support import yield_rounds
from voxframe.pipeline import (
    Pipeline,
    PipelineParams,
    PipelineTask,
    VirtualClock,
)
from voxframe.processors.echo import AudioEcho
from voxframe.transports.webrtc import (
    ClientOptions,
    IceOptions,
    PortRange,
    ServerOptions,
    Session,
    SessionOptions,
    TaskFactory,
    WebRTCServer,
)

MS = 1_000_000


def tone(freq_hz: float, duration_s: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    """An int16 sine tone."""
    t = np.arange(int(duration_s * rate)) / rate
    return np.round(amplitude * 32767 * np.sin(2 * np.pi * freq_hz * t)).astype(np.int16)


def dominant_hz(pcm: bytes, rate: int) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


async def advance(clock: VirtualClock, delta_ns: int) -> None:
    """Let every runnable task block at the current time first, then move the clock.

    (`VirtualClock.advance` moves time before tasks woken by the test itself have run.)
    """
    await yield_rounds()
    await clock.advance(delta_ns)


# --- WebRTC ---------------------------------------------------------------------------------------

LOOPBACK = ("127.0.0.1",)


async def echo_factory(session: Session) -> PipelineTask:
    return PipelineTask(Pipeline([session.input, AudioEcho(), session.output]), PipelineParams(idle_timeout_s=None))


def loopback_ice() -> IceOptions:
    return IceOptions(host_addresses=LOOPBACK)


def server_options(**kwargs: Any) -> ServerOptions:
    session = SessionOptions(ice=loopback_ice(), media_timeout_s=kwargs.pop("media_timeout_s", 5.0))
    return ServerOptions(session=session, **kwargs)


def client_options(**kwargs: Any) -> ClientOptions:
    return ClientOptions(ice=kwargs.pop("ice", loopback_ice()), **kwargs)


@asynccontextmanager
async def serving(
    factory: TaskFactory = echo_factory, options: ServerOptions | None = None
) -> AsyncIterator[tuple[WebRTCServer, str]]:
    """A signalling server on 127.0.0.1 for the duration of the block."""
    server = WebRTCServer(factory, options or server_options())
    async with anyio.create_task_group() as tg:
        url = await tg.start(server.serve)
        try:
            yield server, url
        finally:
            tg.cancel_scope.cancel()


def tone_pattern(freqs: Sequence[float], rate: int, tone_s: float = 0.2, gap_s: float = 0.15) -> np.ndarray:
    """Tones separated by silence: content a round trip must preserve, in order."""
    gap = np.zeros(int(gap_s * rate), dtype=np.int16)
    parts = [gap]
    for freq in freqs:
        parts += [tone(freq, tone_s, rate), gap]
    return np.concatenate(parts)


def aiortc_state() -> dict[str, int]:
    """What aiortc leaves behind if a call is not released: tasks, decoder threads, peers."""
    tasks = [t for t in asyncio.all_tasks() if not t.done()]
    return {
        "tasks": len(tasks),
        "decoder_threads": sum(1 for t in threading.enumerate() if t.name.endswith("-decoder")),
        "peer_connections": sum(1 for o in gc.get_objects() if issubclass(type(o), RTCPeerConnection)),
        "tracks": sum(1 for o in gc.get_objects() if issubclass(type(o), MediaStreamTrack)),
    }


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_udp_range(size: int) -> PortRange:
    """`size` consecutive UDP ports free on 127.0.0.1, below the kernel's ephemeral range (where
    port-0 binds of other tests land)."""
    rng = random.Random()
    for _ in range(50):
        low = rng.randrange(20_000, 32_000 - size)
        with ExitStack() as held:
            try:
                for port in range(low, low + size):
                    held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM)).bind(("127.0.0.1", port))
            except OSError:
                continue
        return PortRange(low, low + size - 1)
    raise AssertionError(f"no {size} consecutive free UDP ports found on 127.0.0.1")


@asynccontextmanager
async def coturn(
    tmp_dir: Path, user: str = "", password: str = "", *, auth_secret: str | None = None
) -> AsyncIterator[str]:
    """A real coturn on 127.0.0.1 with one long-term credential, or (`auth_secret`) checking
    time-limited REST credentials (`use-auth-secret`); yields its `turn:` URL."""
    if shutil.which("turnserver") is None:
        raise AssertionError("coturn is needed (`python3 dev.py test` installs it; or apt-get install coturn)")
    port = free_udp_port()
    relay_low = 50_000 + (port % 500) * 20
    command = [
        "turnserver", "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", f"--listening-port={port}",
        f"--min-port={relay_low}", f"--max-port={relay_low + 19}",
        *(["--use-auth-secret", f"--static-auth-secret={auth_secret}"] if auth_secret is not None
          else ["--lt-cred-mech", f"--user={user}:{password}"]),
        "--realm=voxframe.test", "--no-tls", "--no-dtls", "--no-tcp-relay", "--no-cli", "--allow-loopback-peers",
        "--log-file=stdout", "--simple-log", f"--pidfile={tmp_dir / 'turnserver.pid'}",
        f"--userdb={tmp_dir / 'turndb'}",
    ]  # fmt: skip
    ready = anyio.Event()
    log: list[str] = []

    async def read_log(stream: TextReceiveStream) -> None:
        async for piece in stream:  # keep draining so coturn never blocks on a full pipe
            log.append(piece)
            if "Total General servers" in "".join(log[-3:]):
                ready.set()

    async with await anyio.open_process(command, stderr=subprocess.STDOUT) as process, anyio.create_task_group() as tg:
        assert process.stdout is not None
        tg.start_soon(read_log, TextReceiveStream(process.stdout))
        try:
            with anyio.fail_after(10):
                await ready.wait()
            yield f"turn:127.0.0.1:{port}?transport=udp"
        finally:
            process.terminate()
            with anyio.move_on_after(5):
                await process.wait()
            if process.returncode is None:
                process.kill()
            tg.cancel_scope.cancel()
