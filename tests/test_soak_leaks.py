"""No leaks: 200 calls against a real echo server leave it holding what it held before.

The calls end every way a call ends in the field: the caller hangs up over signalling (DELETE),
the caller leaves (its peer connection closes, no DELETE), the bot ends the call (its pipeline
gets an EndFrame), and the caller vanishes: a process holding nine calls is SIGKILLed, so neither
a DELETE nor a DTLS close is sent and the server notices only by its media timeout. Two calls
overlap at a time so the 200 fit in about a minute on a busy two-core machine.

The server (benchmarks/soak_server.py) runs in a process of its own so its counts are its alone:
in one process the callers' own peer connections, codec threads and sockets would be counted with
the server's. The counts are read without a cycle collection (a call's resources must go when it
ends); the peer connections are counted among all objects, garbage included. After a warm-up
(what a first few calls start and keep: aiohttp's resolver executor, lazily imported codecs), the
tasks, threads, file descriptors, UDP sockets and peer connections must come back to that
baseline, and RSS stay within RSS_BOUND_MB of it.
"""

from __future__ import annotations

import anyio
import pytest
from soak_calls import BOT_ENDS, HANG_UP, LEAVE, SoakServer, killed_callers, one_call, soak_server

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

#: One round: eight calls from this process, then (every KILL_EVERY-th round) nine killed ones.
ROUND = (HANG_UP, LEAVE, BOT_ENDS, HANG_UP, LEAVE, BOT_ENDS, HANG_UP, LEAVE)
ROUNDS = 20
KILL_EVERY = 5
KILLED_PER_BATCH = 9
WARM_UP_CALLS = 4
#: A leaked call (its session, peer connection, codecs, buffers) is well over 100 kB: 200 of them
#: would pass this bound; the allocator's own growth over the run stays well inside it.
RSS_BOUND_MB = 20.0
COUNTS = ("tasks", "threads", "fds", "udp_sockets", "peer_connections", "sessions")
#: How long the server may take to let go of everything once the last call has ended (a killed
#: caller is noticed after the 2 s media timeout).
SETTLE_S = 15.0


async def calls(server: SoakServer, endings: tuple[str, ...]) -> None:
    """The calls of `endings`, two at a time."""
    for pair in range(0, len(endings), 2):
        async with anyio.create_task_group() as both:
            for ending in endings[pair : pair + 2]:
                both.start_soon(one_call, server, ending)


def within(found: dict[str, float], baseline: dict[str, float]) -> bool:
    return all(found[key] <= baseline[key] for key in COUNTS)


async def test_200_calls_ended_every_way_leave_no_task_thread_fd_socket_or_peer_connection() -> None:
    async with soak_server(media_timeout_s=2.0) as server:
        with anyio.fail_after(30):
            await calls(server, (HANG_UP, LEAVE) * (WARM_UP_CALLS // 2))
            await server.wait_sessions(0, SETTLE_S)
        baseline = await server.footprint()
        assert baseline["sessions"] == 0 and baseline["peer_connections"] == 0

        with anyio.fail_after(150):
            for round_index in range(ROUNDS):
                await calls(server, ROUND)
                if round_index % KILL_EVERY == KILL_EVERY - 1:
                    await killed_callers(server, KILLED_PER_BATCH)
            after = await server.wait_sessions(0, SETTLE_S)
            # A thread's exit and a socket's close have no event the test can see from another
            # process: poll (bounded) until the counts are back, then assert what is found.
            with anyio.move_on_after(SETTLE_S):
                while not within(after := await server.footprint(), baseline):  # noqa: ASYNC110
                    await anyio.sleep(0.1)

        total = WARM_UP_CALLS + ROUNDS * len(ROUND) + (ROUNDS // KILL_EVERY) * KILLED_PER_BATCH
        assert total == 200 and after["started"] == total
        leaked = {key: after[key] - baseline[key] for key in COUNTS if after[key] > baseline[key]}
        assert leaked == {}, f"after {total} calls: {after} (baseline {baseline})"
        assert after["rss_mb"] - baseline["rss_mb"] < RSS_BOUND_MB, f"RSS {baseline['rss_mb']} -> {after['rss_mb']} MB"
