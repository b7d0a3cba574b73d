"""Mouth-to-ear latency of the example bot against Pipecat's, each configured as its docs say.

Both stacks run on the simulated cloud: `bots/example.py` with its real Deepgram/OpenAI/Cartesia
clients, and Pipecat 1.14.0 (its own venv, `peer_scripts/pipecat_m2e_bot.py`) with its own
services, each pointed at fakes of its own (a process per stack, like remote services) that
draw every latency from LATENCY.md's p50/p95 with jitter on. One WebRTC caller (this process)
says the same utterances (Piper's voice) to both and listens. Rows (see `m2e_summary.rows`):

* plain: no speculation (voxframe `VOXFRAME_VAD_PAUSE_S=off VOXFRAME_PREEMPTIVE=0`; Pipecat
  Silero stop_secs=0.5, `SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=0)`);
* early: both finalize the STT at 0.2 s and start the LLM at 0.5 s (voxframe pause 0.2 without
  preemption; Pipecat stop_secs=0.2 + `user_speech_timeout=0.3`);
* preemptive: voxframe pause 0.2 starting the reply at it, against the same Pipecat as early;
* shipped: `bots/example.py` with no options against Pipecat's defaults (Silero stop_secs=0.2,
  `UserTurnStrategies()`: Smart Turn v3.2 from its wheel);
* embedded (optional): voxframe on its embedded models; no Pipecat counterpart, no ratio.

Both bots of a row stay up; the caller alternates calls between them in blocks (A B A B ...),
each block a call of `--block` turns and its share of the barge-in trials, so the machine's
drift hits both. Before each utterance both stacks' fakes are reseeded with the same seed.

Per turn: mouth-to-ear (mouth: the utterance's last sample above -40 dBFS enters the caller's
microphone track; ear: the reply's first 10 ms window above -40 dBFS leaves the caller's jitter
buffer), joined with each bot's stage points (voxframe's `--trace-out`, Pipecat's observer) into
a waterfall; the turn's service time from what its fakes drew, and the overhead beyond what the
side's configuration allows. Misses (no reply, a reply to other words than the turn's, a
barge-in that never stopped the bot) are counted beside the percentiles they are left out of.

    python benchmarks/mouth_to_ear.py [--turns 100] [--bargeins 30] [--block 10] [--rows plain,early,...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import signal
from collections.abc import Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import m2e_utterances as speech
import waterfall
from m2e_bots import bot_process, example_vad_times_s, pipecat_command, voxframe_command, voxframe_env
from m2e_measure import Caller, Turn, match_record, waterfall_points
from m2e_script import FakesControl, budget_service_s, fakes_process, reply_text
from m2e_summary import (
    Block,
    Side,
    StackResult,
    answering_request,
    blocks,
    drawn_service_s,
    figures_line,
    final_drawn_s,
    interleave,
    miss_of,
    next_start_ns,
    overhead_ms,
    pipecat_records,
    ratio,
    requests_between,
    rows,
    utterance_seed,
)

from voxframe.transports.webrtc import ClientOptions, HeadlessClient, IceOptions

RESULTS = Path(__file__).resolve().parent / "results"
LONG_QUESTION = "Tell me something interesting about the ocean and the animals that live in it."
MOUTH = "the utterance's last sample above -40 dBFS enters the caller's microphone track"
EAR = "the reply's first 10 ms window above -40 dBFS leaves the caller's jitter buffer"
REPLY_TIMEOUT_S = 20.0


@dataclasses.dataclass(slots=True)
class Plan:
    turns: int = 100
    bargeins: int = 30
    block: int = 10
    seed: int = 1
    into_reply_s: float = 0.8
    settle_s: float = 2.0


@dataclasses.dataclass(slots=True)
class Live:
    """One side of a row while it runs: its bot's URL, its fakes, what the caller measured."""

    side: Side
    url: str
    trace: Path
    control: FakesControl | None
    turns: list[Turn] = dataclasses.field(default_factory=list)
    reactions: list[float | None] = dataclasses.field(default_factory=list)
    starts: list[int] = dataclasses.field(default_factory=list)  # every utterance said, ns
    log: dict[str, Any] | None = None  # the fakes' log, read before they stop
    unavailable: bool = False  # the bot could not start (the row says so instead of a ratio)


async def converse(live: Live, plan: Plan, block: Block, utterances: Sequence[speech.Utterance]) -> None:
    """One call: a warm-up turn, the block's turns, its barge-in trials."""
    options = ClientOptions(ice=IceOptions(host_addresses=("127.0.0.1",)), record=False)
    question, interruption = speech.utterance(LONG_QUESTION), speech.utterance(speech.BARGE_IN_TEXT)
    position = 0

    async def before_say(text: str) -> None:
        nonlocal position
        if live.control is not None:
            await live.control.turn(utterance_seed(plan.seed, block, position), text)
        position += 1

    async with HeadlessClient.connect(live.url, options) as client:
        caller = Caller(client, reply_timeout_s=REPLY_TIMEOUT_S, before_say=before_say)
        await anyio.sleep(plan.settle_s)  # a person waits a moment after the call connects
        warm = speech.utterance("Hello.")
        await caller.say(warm.text, warm.pcm, speech.RATE)
        await caller.wait_quiet()
        for i in block.turns:
            utterance = utterances[i]
            live.turns.append(await caller.say(utterance.text, utterance.pcm, speech.RATE))
            await caller.wait_quiet()
        for _ in range(block.bargeins):
            _, _, reaction = await caller.barge_in(
                (question.text, question.pcm), (interruption.text, interruption.pcm), speech.RATE, plan.into_reply_s
            )
            live.reactions.append(reaction)
        live.starts.extend(caller.starts)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def start_side(stack: AsyncExitStack, row: str, index: int, side: Side) -> Live:
    """The side's fakes (simulated cloud) and bot, up until `stack` closes."""
    tag = f"{row}_{index}_{side.stack}"
    trace = RESULTS / f"mouth_to_ear_{tag}_trace.jsonl"
    trace.unlink(missing_ok=True)
    log = RESULTS / f"mouth_to_ear_{tag}_bot.log"
    control = None
    if side.stack == "embedded":
        command, env = voxframe_command(trace), voxframe_env(None, side.env)
    else:
        control = await stack.enter_async_context(fakes_process(tag, LONG_QUESTION, RESULTS))
        if side.stack == "pipecat":
            command, env = pipecat_command(control.env, side.pipecat_config, trace), None
        else:
            command, env = voxframe_command(trace), voxframe_env(control.env, side.env)
    try:
        url = await stack.enter_async_context(bot_process(command, env, log))
    except RuntimeError:  # it exited before serving (Pipecat's bot: a model that cannot run here)
        reason = next((line for line in log.read_text().splitlines() if line.startswith("CANNOT RUN")), "")
        print(f"  {side.label} cannot run: {reason or 'see ' + str(log)}", flush=True)
        return Live(dataclasses.replace(side, label=f"{side.label}: CANNOT RUN"), "", trace, control, unavailable=True)
    return Live(side, url, trace, control)


def judge(live: Live, log: dict[str, Any] | None) -> StackResult:
    """The side's turns joined with its trace and its fakes' log: misses, service time, overhead."""
    lines = read_jsonl(live.trace)
    records = pipecat_records(lines) if live.side.stack == "pipecat" else lines
    requests = log["llm"] if log else []
    draws = log["draws"] if log else {}
    said = len(live.starts)
    result = StackResult(live.side, bargein_ms=live.reactions, llm_requests=len(requests), utterances=said)
    for turn in live.turns:
        record = match_record(turn, records)
        until = next_start_ns(turn, live.starts, REPLY_TIMEOUT_S)
        request = answering_request(turn, requests, until)
        # embedded: no request log to check the words against, only whether it answered
        miss = miss_of(turn, request) if log is not None else ("no reply" if turn.reply_ns is None else None)
        service = drawn_service_s(turn, request, draws, LONG_QUESTION) if request and miss is None else None
        # A draw not found in the fakes' log: the p50 budget stands in, and the turn says so.
        budget = service is None and miss is None and live.side.stack != "embedded"
        if budget:
            service = budget_service_s(reply_text(turn.text, LONG_QUESTION))
        final = final_drawn_s(turn, request, draws) if request else 0.0
        m2e = None if turn.mouth_to_ear_ms is None else round(turn.mouth_to_ear_ms, 2)
        result.turns.append(
            {
                "text": turn.text,
                "m2e_ms": m2e,
                "miss": miss,
                "heard": request["user"] if request else (record.get("heard") if record else None),
                "service_ms": None if service is None else round(service * 1000, 1),
                "service_from": "p50 budget" if budget else "drawn",
                "overhead_ms": overhead_ms(m2e, live.side.timing, service, final),
                "llm_requests": requests_between(requests, turn.start_ns, until),
                "points_ms": waterfall_points(turn, record),
            }
        )
    return result


async def run_row(row: str, sides: Sequence[Side], plan: Plan, utterances: Sequence[speech.Utterance]) -> list[Live]:
    async with AsyncExitStack() as stack:
        lives = [await start_side(stack, row, i, side) for i, side in enumerate(sides)]
        for block, index in interleave(blocks(plan.turns, plan.bargeins, plan.block), range(len(lives))):
            live = lives[index]
            if live.unavailable:
                continue
            print(f"  {row}: block {block.index} on {live.side.label}", flush=True)
            await converse(live, plan, block, utterances)
        for live in lives:
            live.log = None if live.control is None else await live.control.log()
    return lives  # the bots have stopped: their traces are complete


def fmt(stats: dict[str, float] | None, key: str = "p50") -> str:
    return "-" if stats is None else f"{stats[key]:.0f}"


STAGES = ("vad_stop", "turn_end", "stt_final", "llm_first_token", "tts_first_audio", "first_audio_out")


def print_table(results: dict[str, list[StackResult]]) -> None:
    head = f"{'row':<11}{'side':<31}{'replies':>9}{'miss':>5}{'m2e p50':>8}{'p95':>6}{'ovh p50':>8}{'p95':>6}"
    print(head + f"{'VAD stop':>9}{'barge p50':>10}{'p95':>6}{'llm/utt':>8}")
    for row, sides in results.items():
        for r in sides:
            s = r.summary()
            per = s["llm_requests_per_turn"]
            print(
                f"{row:<11}{r.side.label:<31}{s['replies']:>4}/{s['turns']:<4}{s['missed']:>5}"
                f"{fmt(s['m2e_ms']):>8}{fmt(s['m2e_ms'], 'p95'):>6}{fmt(s['overhead_ms']):>8}"
                f"{fmt(s['overhead_ms'], 'p95'):>6}{fmt(s['vad_stop_ms']):>9}{fmt(s['bargein_ms']):>10}"
                f"{fmt(s['bargein_ms'], 'p95'):>6}{'-' if per is None else f'{per:.2f}':>8}"
            )
        for r in sides:
            if r.summary()["overhead_from_budget"]:
                n = r.summary()["overhead_from_budget"]
                print(f"{'':<11}{r.side.label}: {n} turns' overhead against the p50 budget (their draws not found)")
            if r.misses():
                print(f"{'':<11}{r.side.label} missed: {', '.join(f'{k} {v}' for k, v in r.misses().items())}")
        value = ratio(sides)
        if len(sides) == 2:
            print(f"{'':<11}ratio (Pipecat m2e p50 / voxframe m2e p50): {'nan' if value is None else f'{value:.2f}'}")
    print("\nstages, median ms after the mouth point (answered turns):")
    print(f"{'row':<11}{'side':<31}" + "".join(f"{name:>16}" for name in STAGES) + f"{'ear':>8}")
    for row, sides in results.items():
        for r in sides:
            cells = "".join(f"{fmt(stats_of(r.point(name))):>16}" for name in STAGES)
            print(f"{row:<11}{r.side.label:<31}{cells}{fmt(stats_of(r.m2e())):>8}")
    print(
        f"\nmouth: {MOUTH}\near: {EAR}\n"
        "m2e percentiles are over answered turns; misses are counted beside them, never dropped silently.\n"
        "ovh = m2e minus what the side's configuration allows with the service time the turn's fakes drew "
        "(Deepgram final + OpenAI first token and first-sentence tokens + Cartesia first audio); "
        "'-' for Pipecat's Smart Turn row (a model decides when the turn ends).\n"
        "VAD stop = when the side's VAD declared the stop, from the mouth point. llm/utt = LLM requests per user "
        "utterance (the fake OpenAI's log; speculation costs requests). barge = barge-in reaction (voice "
        "starts over the bot at the mic -> the bot's audio stops at the ear)."
    )


def stats_of(values: list[float]) -> dict[str, float] | None:
    return {"p50": waterfall.percentile(values, 50)} if values else None


async def main(args: argparse.Namespace) -> None:
    """Run the rows; Ctrl-C (or SIGTERM) stops them cleanly, bots included."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(cancel_on_signal, tg.cancel_scope)
        await run_benchmark(args)
        tg.cancel_scope.cancel()


async def cancel_on_signal(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            print("interrupted: stopping the bots", flush=True)
            scope.cancel()
            return


async def run_benchmark(args: argparse.Namespace) -> None:
    plan = Plan(turns=args.turns, bargeins=args.bargeins, block=args.block, seed=args.seed)
    RESULTS.mkdir(parents=True, exist_ok=True)
    utterances = speech.utterances(plan.turns)
    table = rows(*example_vad_times_s())
    results: dict[str, list[StackResult]] = {}
    for row in args.rows.split(","):
        sides = table[row]
        print(f"--- {row}: {' vs '.join(s.label for s in sides)}; {plan.turns} turns, {plan.bargeins} barge-ins")
        lives = await run_row(row, sides, plan, utterances)
        results[row] = [judge(live, live.log) for live in lives]
    payload = {
        "what": "mouth-to-ear per turn, measured at a WebRTC caller on 127.0.0.1 (monotonic clock)",
        "notes": {"mouth": MOUTH, "ear": EAR, "points_ms": "ms from the mouth point", "rows": args.rows},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "plan": dataclasses.asdict(plan),
        "rows": {
            row: [{"summary": r.summary(), "turns": r.turns, "bargein_ms": r.bargein_ms} for r in sides]
            for row, sides in results.items()
        },
    }
    waterfall.write_json(RESULTS / "mouth_to_ear.json", payload)
    waterfall.plot(
        {f"{row}: {r.side.label}": r.answered() for row, sides in results.items() for r in sides},
        RESULTS / "mouth_to_ear.png",
        f"Mouth-to-ear at the caller's ear, {plan.turns} turns per side",
    )
    print_table(results)
    print(f"waterfall: {RESULTS / 'mouth_to_ear.json'} and {RESULTS / 'mouth_to_ear.png'}")
    print(figures_line(results))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=100, help="user turns per side of a row (100 for the report)")
    parser.add_argument("--bargeins", type=int, default=30, help="barge-in trials per side (30 for the report)")
    parser.add_argument("--block", type=int, default=10, help="turns per call; the sides alternate calls")
    parser.add_argument("--seed", type=int, default=1, help="base seed of the fakes' latency draws")
    parser.add_argument("--rows", default="plain,early,preemptive,shipped", help="comma-separated; also: embedded")
    args = parser.parse_args(argv)
    unknown = set(args.rows.split(",")) - set(rows(0.5, 0.2))
    if unknown:
        parser.error(f"unknown rows: {', '.join(sorted(unknown))}")
    return args


if __name__ == "__main__":
    anyio.run(main, parse_args())
