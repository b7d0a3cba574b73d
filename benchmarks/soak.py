"""Soak: does a server that takes call after call, or holds calls for a long time, stay flat?

Two runs, against benchmarks/soak_server.py (an echo bot in its own process that counts its own
tasks, OS threads, file descriptors, UDP sockets, peer connections and RSS):

* `--calls N` (default 1,000): calls back to back, `--overlap` at a time; of every ten, three are
  hung up by the caller (DELETE), three left (peer connection closed, no DELETE), three ended by
  the bot (an EndFrame into its pipeline), and one vanishes (held by a process that is SIGKILLed,
  in batches of up to ten; the server notices by its 2 s media timeout).
* `--hold-s S --concurrent N`: N calls at once for S seconds (default 600 s, N = 10: 80 % of the
  capacity benchmark's figure on the machine it runs on; pass your own). Each call hears its echo,
  stays `--call-s` (30 s) and ends (hang-up, leave, bot end in turn); a new one takes its place,
  so the server holds N calls throughout while calls keep starting and ending.

The server's footprint is read every `--sample-s` (5 s) without a cycle collection, on the
monotonic clock of this process; each count's slope is a least-squares fit over every sample,
per hour. Leaks are the final counts (every call ended, the server given SETTLE_S to let go)
minus the baseline taken after a few warm-up calls. The last line:
`calls=.. leaked_tasks=.. leaked_fds=.. rss_slope_mb_per_hour=..` (then the other leaks).

    python3 dev.py bench soak [--calls 1000 | --hold-s 600 --concurrent 10] [--sample-s 5]
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Iterator

import anyio
from soak_calls import BOT_ENDS, HANG_UP, LEAVE, SoakServer, killed_callers, one_call, slope_per_hour, soak_server

from voxframe.pipeline.clock import NS_PER_S, current_clock

METRICS = ("rss_mb", "tasks", "threads", "fds", "udp_sockets", "peer_connections", "sessions")
COUNTS = ("tasks", "threads", "fds", "udp_sockets", "peer_connections")
ENDINGS = (HANG_UP, LEAVE, BOT_ENDS)
WARM_UP_CALLS = 4
KILL_BATCH = 10
#: How long the server may take to let go once the last call ended (killed callers: 2 s timeout).
SETTLE_S = 15.0

Sample = tuple[float, dict[str, float]]


def now_s() -> float:
    return current_clock().now_ns() / NS_PER_S


async def sample(server: SoakServer, every_s: float, samples: list[Sample], t0: float) -> None:
    while True:
        samples.append((now_s() - t0, await server.footprint()))
        await anyio.sleep(every_s)


def call_plan(calls: int) -> list[str | int]:
    """The endings in order, and (an int) a batch of killed callers after every 90 of them."""
    killed_left = calls // 10
    plan: list[str | int] = []
    endings = itertools.cycle(ENDINGS)
    for index in range(calls - killed_left):
        plan.append(next(endings))
        last = index == calls - calls // 10 - 1
        if killed_left and ((index + 1) % (9 * KILL_BATCH) == 0 or last):
            batch = killed_left if last else min(KILL_BATCH, killed_left)
            plan.append(batch)
            killed_left -= batch
    return plan


async def back_to_back(server: SoakServer, calls: int, overlap: int) -> int:
    """`calls` calls, `overlap` at a time (the killed ones in their batches); returns how many ran."""
    done = 0
    group: list[str] = []
    for step in [*call_plan(calls), 0]:
        if isinstance(step, str):
            group.append(step)
            if len(group) < overlap:
                continue
        async with anyio.create_task_group() as tg:
            for ending in group:
                tg.start_soon(one_call, server, ending)
        done += len(group)
        group = []
        if isinstance(step, int) and step > 0:
            for batch in range(0, step, KILL_BATCH):
                await killed_callers(server, min(KILL_BATCH, step - batch))
            done += step
    return done


async def held(server: SoakServer, concurrent: int, hold_s: float, call_s: float) -> int:
    """`concurrent` calls at once for `hold_s`, each `call_s` long and then replaced."""
    deadline = now_s() + hold_s
    done = 0

    async def slot(index: int) -> None:
        nonlocal done
        endings: Iterator[str] = itertools.cycle(ENDINGS[index % 3 :] + ENDINGS[: index % 3])
        while now_s() < deadline:
            await one_call(server, next(endings), hold_s=min(call_s, max(0.0, deadline - now_s())))
            done += 1

    async with anyio.create_task_group() as tg:
        for index in range(concurrent):
            tg.start_soon(slot, index)
    return done


def settled(found: dict[str, float], baseline: dict[str, float]) -> bool:
    return all(found[m] <= baseline[m] for m in COUNTS)


def table(samples: list[Sample], baseline: dict[str, float], final: dict[str, float]) -> dict[str, float]:
    slopes = {m: slope_per_hour([(t, f[m]) for t, f in samples]) for m in METRICS}
    print(f"{'metric':<18}{'baseline':>10}{'final':>10}{'min':>10}{'max':>10}{'slope/h':>12}")
    for m in METRICS:
        values = [f[m] for _, f in samples]
        print(f"{m:<18}{baseline[m]:>10g}{final[m]:>10g}{min(values):>10g}{max(values):>10g}{slopes[m]:>12.2f}")
    return slopes


async def main(args: argparse.Namespace) -> None:
    samples: list[Sample] = []
    async with soak_server(media_timeout_s=2.0) as server:
        for ending in ENDINGS[:2] * (WARM_UP_CALLS // 2):
            await one_call(server, ending)
        await server.wait_sessions(0, SETTLE_S)
        baseline = await server.footprint()
        t0 = now_s()
        async with anyio.create_task_group() as tg:
            tg.start_soon(sample, server, args.sample_s, samples, t0)
            if args.hold_s is not None:
                mode = f"hold {args.concurrent} calls for {args.hold_s:g} s ({args.call_s:g} s each)"
                calls = await held(server, args.concurrent, args.hold_s, args.call_s)
            else:
                mode = f"{args.calls} calls back to back, {args.overlap} at a time"
                calls = await back_to_back(server, args.calls, args.overlap)
            elapsed = now_s() - t0
            await server.wait_sessions(0, SETTLE_S)
            with anyio.move_on_after(SETTLE_S):  # threads and sockets go without an event to see
                while not settled(await server.footprint(), baseline):  # noqa: ASYNC110
                    await anyio.sleep(0.1)
            final = await server.footprint()
            samples.append((now_s() - t0, final))
            tg.cancel_scope.cancel()
    print(f"soak: {mode}; {calls} calls in {elapsed:.0f} s; {len(samples)} samples, every {args.sample_s:g} s")
    slopes = table(samples, baseline, final)
    leaked = {m: int(final[m] - baseline[m]) for m in COUNTS}
    print(
        f"calls={calls} leaked_tasks={leaked['tasks']} leaked_fds={leaked['fds']} "
        f"rss_slope_mb_per_hour={slopes['rss_mb']:.1f} leaked_threads={leaked['threads']} "
        f"leaked_udp_sockets={leaked['udp_sockets']} leaked_peer_connections={leaked['peer_connections']} "
        f"rss_growth_mb={final['rss_mb'] - baseline['rss_mb']:.1f} seconds={elapsed:.0f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000, help="calls back to back (default 1000)")
    parser.add_argument("--overlap", type=int, default=2, help="calls at a time in the back-to-back run")
    parser.add_argument("--hold-s", type=float, default=None, help="hold --concurrent calls this long instead")
    parser.add_argument("--concurrent", type=int, default=10, help="calls held at once (80%% of capacity)")
    parser.add_argument("--call-s", type=float, default=30.0, help="length of each held call")
    parser.add_argument("--sample-s", type=float, default=5.0, help="seconds between footprint samples")
    anyio.run(main, parser.parse_args())
