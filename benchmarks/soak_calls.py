"""The soak's pieces, shared by benchmarks/soak.py and tests/test_soak_leaks.py.

* `soak_server()`: benchmarks/soak_server.py in its own process (an echo bot that counts its tasks,
  threads, descriptors, UDP sockets, peer connections and RSS);
* `one_call()`: a HeadlessClient call that hears its echo once and ends one of three ways: the
  caller hangs up over signalling (DELETE), the caller leaves (its peer connection closes, no
  DELETE), or the bot ends it (its pipeline gets an EndFrame);
* `killed_callers()`: calls held by another process, then SIGKILLed: callers that vanish without a
  word (no DELETE, no DTLS close); the server notices them by its media timeout;
* `slope_per_hour()`: a least-squares slope of a sampled count.

Run as a script (`python soak_calls.py --hold URL N`), it is that other process: it connects N
calls, prints "ready N" once each has heard its echo, and holds them until killed (bounded).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import anyio
import anyio.abc
import numpy as np
from capacity import first_line

from voxframe.pipeline.clock import NS_PER_S
from voxframe.transports.webrtc import ClientOptions, HeadlessClient, IceOptions

SELF = Path(__file__).resolve()
HERE = SELF.parent
RATE = 16_000
#: How the calls end.
HANG_UP, LEAVE, BOT_ENDS, KILLED = "caller hangs up", "caller leaves", "bot ends", "caller killed"
#: Bound on each step of a call (connect, the echo, the end).
STEP_TIMEOUT_S = 15.0
#: The longest a holding process keeps its calls if nobody kills it.
MAX_HOLD_S = 3600.0


def tone(freq_hz: float = 700.0, duration_s: float = 0.1) -> np.ndarray:
    t = np.arange(int(duration_s * RATE)) / RATE
    return np.round(0.5 * 32767 * np.sin(2 * np.pi * freq_hz * t)).astype(np.int16)


def client_options() -> ClientOptions:
    return ClientOptions(ice=IceOptions(host_addresses=("127.0.0.1",)), record=False)


@dataclass(slots=True)
class SoakServer:
    url: str
    control: str
    pid: int
    http: aiohttp.ClientSession

    async def footprint(self, *, collect: bool = False) -> dict[str, float]:
        async with self.http.get(f"{self.control}/footprint", params={"collect": "1" if collect else "0"}) as reply:
            data: dict[str, float] = await reply.json()
            return data

    async def end(self, session_id: str) -> None:
        async with self.http.post(f"{self.control}/end", params={"session": session_id}) as reply:
            if reply.status != 200:
                raise AssertionError(f"the bot could not end session {session_id}: HTTP {reply.status}")

    async def wait_sessions(self, count: int, timeout_s: float) -> dict[str, float]:
        """Poll (bounded) until the server holds at most `count` sessions: the server is another
        process, so there is no event to wait on. Returns the last footprint."""
        with anyio.move_on_after(timeout_s):
            while (found := await self.footprint())["sessions"] > count:  # noqa: ASYNC110 (another process)
                await anyio.sleep(0.1)
            return found
        return await self.footprint()


async def _first_line_within(process: anyio.abc.Process, timeout_s: float) -> str:
    with anyio.fail_after(timeout_s):
        return await first_line(process)


async def _stop(process: anyio.abc.Process) -> None:
    if process.returncode is None:
        process.terminate()
        with anyio.move_on_after(5):
            await process.wait()
    if process.returncode is None:
        process.kill()
        with anyio.move_on_after(5):
            await process.wait()


@asynccontextmanager
async def soak_server(media_timeout_s: float = 2.0, nice: int = 0) -> AsyncIterator[SoakServer]:
    command = [sys.executable, str(HERE / "soak_server.py"), "--media-timeout", str(media_timeout_s)]
    if nice:
        command = ["nice", "-n", str(nice), *command]
    process = await anyio.open_process(command, stderr=subprocess.DEVNULL)
    try:
        line = await _first_line_within(process, 60)
        _, port, control = line.split()
        # One connection per endpoint: a second idle keep-alive connection to the control port
        # (a sample overlapping a request) would count as a task and a descriptor of the server's.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit_per_host=1)) as http:
            yield SoakServer(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{control}", process.pid, http)
    finally:
        with anyio.CancelScope(shield=True):
            await _stop(process)


async def one_call(server: SoakServer, ending: str, hold_s: float = 0.0) -> None:
    """A call that hears its echo once, stays `hold_s` more, and ends as `ending` says."""
    async with HeadlessClient.connect(server.url, client_options()) as client:
        with anyio.fail_after(STEP_TIMEOUT_S):
            played = await client.play(tone(), RATE)
            await client.wait_for_onset(played.start_ns, timeout_s=STEP_TIMEOUT_S)
        if hold_s > 0:
            await client.clock.sleep_until(client.clock.now_ns() + round(hold_s * NS_PER_S))
        session_id = client.session_id
        assert session_id is not None
        if ending == HANG_UP:
            async with server.http.delete(f"{server.url}/api/voice/sessions/{session_id}") as reply:
                if reply.status != 200:
                    raise AssertionError(f"hang-up refused: HTTP {reply.status}")
        elif ending == BOT_ENDS:
            await server.end(session_id)
            await client.wait_for_event("signalling", timeout_s=STEP_TIMEOUT_S)  # the bot's peerLeft
        elif ending != LEAVE:
            raise ValueError(f"not an ending one call can do itself: {ending!r}")


async def killed_callers(server: SoakServer, calls: int, nice: int = 0) -> None:
    """`calls` calls from another process, SIGKILLed once each has heard its echo."""
    command = [sys.executable, str(SELF), "--hold", server.url, str(calls)]
    if nice:
        command = ["nice", "-n", str(nice), *command]
    process = await anyio.open_process(command, stderr=subprocess.DEVNULL)
    try:
        line = await _first_line_within(process, STEP_TIMEOUT_S + 20 + calls)
        if line != f"ready {calls}":
            raise AssertionError(f"the holding process said {line!r}")
    finally:
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                os.kill(process.pid, signal.SIGKILL)
            with anyio.move_on_after(5):
                await process.wait()


def slope_per_hour(samples: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) samples, per hour (0 with fewer than two times)."""
    if len({t for t, _ in samples}) < 2:
        return 0.0
    t = np.array([s[0] for s in samples]) / 3600.0
    y = np.array([s[1] for s in samples])
    return float(np.polyfit(t, y, 1)[0])


async def _hold(url: str, calls: int) -> None:
    ready = 0
    all_ready = anyio.Event()

    async def held() -> None:
        nonlocal ready
        async with HeadlessClient.connect(url, client_options()) as client:
            played = await client.play(tone(), RATE)
            await client.wait_for_onset(played.start_ns, timeout_s=STEP_TIMEOUT_S)
            ready += 1
            if ready == calls:
                all_ready.set()
            await anyio.sleep(MAX_HOLD_S)

    async with anyio.create_task_group() as tg:
        for _ in range(calls):
            tg.start_soon(held)
        await all_ready.wait()
        print(f"ready {calls}", flush=True)


def main(argv: list[str]) -> None:
    if len(argv) != 3 or argv[0] != "--hold":
        sys.exit("usage: soak_calls.py --hold URL CALLS")
    anyio.run(_hold, argv[1], int(argv[2]))


if __name__ == "__main__":
    main(sys.argv[1:])
