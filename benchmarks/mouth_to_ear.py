"""Mouth-to-ear latency of the example bot, measured by a WebRTC caller, beside Pipecat's.

Each stack is a bot in its own process on 127.0.0.1, called by the headless client (this
process), which says N utterances of varied length (Piper's voice) and listens:

* voxframe embedded: `bots/example.py` with no keys (Silero VAD, Whisper, offline responder, Piper);
* voxframe simulated cloud: `bots/example.py` with its real Deepgram/OpenAI/Cartesia clients
  pointed at the fake servers (in a process of their own, like remote services), which take
  LATENCY.md's reference latencies;
* Pipecat simulated cloud: Pipecat 1.14.0 (its own venv) with its own Deepgram/OpenAI/Cartesia
  services at the same fakes, its SmallWebRTC transport, Silero with the same VAD stop time,
  the same caller and utterances (`peer_scripts/pipecat_m2e_bot.py`);
* the same voxframe bot reached over a WebSocket (the raw format, 16 kHz PCM: `ws`, `ws-cloud`)
  or as a phone on Twilio Media Streams (8 kHz mu-law: `twilio`, `twilio-cloud`), by a caller
  with the same microphone and ear rules (`m2e_socket_client.py`): the cost of each transport
  is a row beside WebRTC's.

Per turn: mouth-to-ear (user's speech ends at the mic -> first reply sample at the ear), joined
with the voxframe bot's tracer points into a waterfall (JSON + PNG in benchmarks/results/).
Then barge-in trials: a question with a long answer, interrupted 0.8 s into it; reaction = the
interruption's speech starts at the mic -> the bot's audio stops at the ear.

Framework overhead (simulated cloud) = mouth-to-ear - the configured time the reply must take:
the fakes' service time (Deepgram Finalize -> final, OpenAI time to first token plus the tokens
that settle the first sentence, Cartesia time to first audio and the fake audio's 10 ms lead-in)
after the VAD's stop, or, for voxframe's example (it prepares the reply at the VAD's pause and
speaks at its stop), the later of the stop and the pause plus the service time. A turn whose
pause was followed by more speech (a comma) is answered after the stop, and its overhead then
counts the stop-minus-pause it could not save: the figure never flatters. Deepgram's own
endpointing is off on both sides, so every final comes from a Finalize the VAD asked for.

    python3 dev.py bench mouth_to_ear [--turns 24] [--bargeins 6] [--stacks embedded,cloud,pipecat]
        (more stacks: ws, twilio, ws-cloud, twilio-cloud)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import m2e_utterances as speech
import waterfall
from m2e_bots import bot_process, example_vad_times_s, pipecat_command, voxframe_command, voxframe_env
from m2e_measure import Caller, Turn, match_record, turn_result
from m2e_script import fakes_process, service_time_s
from m2e_socket_client import SocketClient

from voxframe.transports.webrtc import ClientOptions, HeadlessClient, IceOptions

RESULTS = Path(__file__).resolve().parent / "results"
LONG_QUESTION = "Tell me something interesting about the ocean and the animals that live in it."
STACK_NAMES = {
    "embedded": "voxframe embedded",
    "cloud": "voxframe simulated cloud",
    "pipecat": "Pipecat simulated cloud",
    "ws": "voxframe embedded, WebSocket",
    "twilio": "voxframe embedded, Twilio",
    "ws-cloud": "voxframe sim. cloud, WebSocket",
    "twilio-cloud": "voxframe sim. cloud, Twilio",
}
#: The transport each stack's caller uses.
TRANSPORTS = {"ws": "ws", "twilio": "twilio", "ws-cloud": "ws", "twilio-cloud": "twilio"}


@dataclass(slots=True)
class Plan:
    turns: int = 24
    bargeins: int = 6
    vad_stop_s: float = 0.5
    #: The example bot's pause time (it prepares the reply then); None: it answers at the stop.
    vad_pause_s: float | None = 0.2
    into_reply_s: float = 0.8
    settle_s: float = 2.0


@dataclass(slots=True)
class StackResult:
    name: str
    turns: list[dict[str, Any]] = field(default_factory=list)
    bargein_ms: list[float | None] = field(default_factory=list)
    service_s: float | None = None
    vad_stop_s: float = 0.0
    vad_pause_s: float | None = None

    def m2e(self) -> list[float]:
        return [t["m2e_ms"] for t in self.turns if t["m2e_ms"] is not None]

    def configured_s(self) -> float | None:
        """How long the reply must take by configuration, from the end of the user's speech."""
        if self.service_s is None:
            return None
        if self.vad_pause_s is None:
            return self.vad_stop_s + self.service_s
        return max(self.vad_stop_s, self.vad_pause_s + self.service_s)

    def overhead(self) -> list[float]:
        configured = self.configured_s()
        return [] if configured is None else [m - configured * 1000 for m in self.m2e()]

    def bargeins(self) -> list[float]:
        return [b for b in self.bargein_ms if b is not None]

    def summary(self) -> dict[str, Any]:
        def stats(values: list[float]) -> dict[str, float] | None:
            if not values:
                return None
            return {"p50": waterfall.percentile(values, 50), "p95": waterfall.percentile(values, 95)}

        return {
            "turns": len(self.turns),
            "replies": len(self.m2e()),
            "m2e_ms": stats(self.m2e()),
            "overhead_ms": stats(self.overhead()),
            "bargein_ms": stats(self.bargeins()),
            "bargein_trials": len(self.bargein_ms),
            "configured_service_ms": None if self.service_s is None else round(self.service_s * 1000, 1),
            "configured_ms": None if self.configured_s() is None else round(self.configured_s() * 1000, 1),
            "vad_stop_ms": self.vad_stop_s * 1000,
            "vad_pause_ms": None if self.vad_pause_s is None else self.vad_pause_s * 1000,
            "prepared_at_pause": sum(bool(t.get("prepared_at_pause")) for t in self.turns),
        }


def connect(url: str, transport: str) -> Any:
    """The caller's client for `transport`: WebRTC's headless client, or a WebSocket one."""
    if transport == "webrtc":
        return HeadlessClient.connect(url, ClientOptions(ice=IceOptions(host_addresses=("127.0.0.1",)), record=False))
    return SocketClient.connect(url, twilio=transport == "twilio")


async def converse(
    url: str, plan: Plan, utterances: Sequence[speech.Utterance], transport: str = "webrtc"
) -> tuple[list[Turn], list[float | None]]:
    """Call `url` and hold the scripted conversation: a warm-up turn, N turns, barge-in trials."""
    question = speech.utterance(LONG_QUESTION)
    interruption = speech.utterance(speech.BARGE_IN_TEXT)
    turns: list[Turn] = []
    reactions: list[float | None] = []
    async with connect(url, transport) as client:
        caller = Caller(client)
        await anyio.sleep(plan.settle_s)  # a person waits a moment after the call connects
        warm = speech.utterance("Hello.")
        await caller.say(warm.text, warm.pcm, speech.RATE)
        await caller.wait_quiet()
        for utterance in utterances:
            turns.append(await caller.say(utterance.text, utterance.pcm, speech.RATE))
            await caller.wait_quiet()
        for _ in range(plan.bargeins):
            _, _, reaction = await caller.barge_in(
                (question.text, question.pcm), (interruption.text, interruption.pcm), speech.RATE, plan.into_reply_s
            )
            reactions.append(reaction)
    return turns, reactions


def read_records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def run_voxframe(name: str, plan: Plan, utterances: Sequence[speech.Utterance], cloud: bool) -> StackResult:
    result = StackResult(STACK_NAMES[name], vad_stop_s=plan.vad_stop_s, vad_pause_s=plan.vad_pause_s)
    trace = RESULTS / f"mouth_to_ear_{name}_turns.jsonl"
    trace.unlink(missing_ok=True)
    log = RESULTS / f"mouth_to_ear_{name}_bot.log"
    transport = TRANSPORTS.get(name, "webrtc")
    if cloud:
        async with fakes_process([u.text for u in utterances], LONG_QUESTION, RESULTS) as fake_env:
            result.service_s = service_time_s()
            async with bot_process(voxframe_command(trace), voxframe_env(fake_env), log) as url:
                turns, result.bargein_ms = await converse(url, plan, utterances, transport)
    else:
        async with bot_process(voxframe_command(trace), voxframe_env(None), log) as url:
            turns, result.bargein_ms = await converse(url, plan, utterances, transport)
    records = read_records(trace)
    result.turns = [turn_result(t, match_record(t, records)) for t in turns]
    return result


async def run_pipecat(plan: Plan, utterances: Sequence[speech.Utterance]) -> StackResult:
    result = StackResult(STACK_NAMES["pipecat"], vad_stop_s=plan.vad_stop_s)
    log = RESULTS / "mouth_to_ear_pipecat_bot.log"
    async with fakes_process([u.text for u in utterances], LONG_QUESTION, RESULTS) as fake_env:
        result.service_s = service_time_s()
        async with bot_process(pipecat_command(fake_env, plan.vad_stop_s), None, log) as url:
            turns, result.bargein_ms = await converse(url, plan, utterances)
    result.turns = [turn_result(t, None) for t in turns]
    return result


def fmt(stats: dict[str, float] | None, key: str) -> str:
    return "-" if stats is None else f"{stats[key]:.0f}"


def print_table(results: Sequence[StackResult]) -> None:
    header = f"{'stack':<32}{'replies':>9}{'m2e p50':>9}{'m2e p95':>9}{'ovh p50':>9}{'ovh p95':>9}"
    print(header + f"{'barge p50':>11}{'barge p95':>11}")
    for r in results:
        s = r.summary()
        print(
            f"{r.name:<32}{s['replies']:>4}/{s['turns']:<4}{fmt(s['m2e_ms'], 'p50'):>9}{fmt(s['m2e_ms'], 'p95'):>9}"
            f"{fmt(s['overhead_ms'], 'p50'):>9}{fmt(s['overhead_ms'], 'p95'):>9}"
            f"{fmt(s['bargein_ms'], 'p50'):>11}{fmt(s['bargein_ms'], 'p95'):>11}"
        )
    print(
        "(ms; ovh = framework overhead: m2e minus the configured time, service time after the VAD stop, "
        "or for voxframe the later of its stop and its pause plus the service time)"
    )
    for r in results:
        s = r.summary()
        if s["vad_pause_ms"] is not None:
            print(f"{r.name}: {s['prepared_at_pause']}/{s['turns']} replies prepared at the user's pause")


def figures_line(results: dict[str, StackResult]) -> str:
    def p50(values: list[float]) -> float | None:
        return waterfall.percentile(values, 50) if values else None

    cloud, local, peer = results.get("cloud"), results.get("embedded"), results.get("pipecat")
    cloud_p50 = p50(cloud.m2e()) if cloud else None
    peer_p50 = p50(peer.m2e()) if peer else None
    bargeins = [b for key in ("embedded", "cloud") if key in results for b in results[key].bargeins()]
    figures = {
        "m2e_ratio": None if not (cloud_p50 and peer_p50) else peer_p50 / cloud_p50,
        "cloud_m2e_p50_ms": cloud_p50,
        "local_m2e_p50_ms": p50(local.m2e()) if local else None,
        "overhead_p50_ms": p50(cloud.overhead()) if cloud else None,
        "bargein_p50_ms": p50(bargeins),
    }
    return " ".join(
        f"{k}={'nan' if v is None else f'{v:.2f}' if k == 'm2e_ratio' else f'{v:.0f}'}" for k, v in figures.items()
    )


async def main(args: argparse.Namespace) -> None:
    """Run the stacks; Ctrl-C (or SIGTERM) stops them cleanly, bots included."""
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
    stop_s, pause_s = example_vad_times_s()
    plan = Plan(turns=args.turns, bargeins=args.bargeins, vad_stop_s=stop_s, vad_pause_s=pause_s)
    RESULTS.mkdir(parents=True, exist_ok=True)
    utterances = speech.utterances(plan.turns)
    results: dict[str, StackResult] = {}
    for stack in args.stacks.split(","):
        print(f"--- {STACK_NAMES[stack]}: {plan.turns} turns, {plan.bargeins} barge-ins", flush=True)
        if stack == "pipecat":
            results[stack] = await run_pipecat(plan, utterances)
        else:
            results[stack] = await run_voxframe(stack, plan, utterances, cloud=stack.endswith("cloud"))
    ordered = list(results.values())
    payload = {
        "what": "mouth-to-ear per turn, measured at a caller on 127.0.0.1 (WebRTC; WebSocket or Twilio where "
        "the stack says so) on the monotonic clock",
        "notes": {
            "mouth": "the utterance's last sample above -40 dBFS entered the caller's microphone track",
            "ear": "the reply's first 10 ms window above -40 dBFS left the caller's jitter buffer",
            "points_ms": "ms from the mouth point; tracer points of the voxframe bot joined by its VAD speech end",
            "overhead": "m2e - configured_ms: vad_stop_ms + configured_service_ms, or for a stack with "
            "vad_pause_ms (it prepares the reply at the pause) max(vad_stop_ms, vad_pause_ms + configured_service_ms)",
            "pipecat": "pipecat-ai 1.14.0 defaults except turn end on VAD stop + transcript "
            "(SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=0)) and Deepgram endpointing off, as voxframe's",
        },
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "plan": dataclasses.asdict(plan),
        "stacks": {r.name: {"summary": r.summary(), "turns": r.turns, "bargein_ms": r.bargein_ms} for r in ordered},
    }
    waterfall.write_json(RESULTS / "mouth_to_ear.json", payload)
    waterfall.plot(
        {r.name: r.turns for r in ordered},
        RESULTS / "mouth_to_ear.png",
        f"Mouth-to-ear at the caller's ear, {plan.turns} turns per stack (VAD stop {plan.vad_stop_s * 1000:.0f} ms)",
    )
    print_table(ordered)
    print(f"waterfall: {RESULTS / 'mouth_to_ear.json'} and {RESULTS / 'mouth_to_ear.png'}")
    print(figures_line(results))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=24, help="user turns per stack (at least 20 for the report)")
    parser.add_argument("--bargeins", type=int, default=6, help="barge-in trials per stack")
    parser.add_argument(
        "--stacks", default="embedded,cloud,pipecat", help=f"comma-separated, of: {','.join(STACK_NAMES)}"
    )
    args = parser.parse_args(argv)
    unknown = set(args.stacks.split(",")) - set(STACK_NAMES)
    if unknown:
        parser.error(f"unknown stacks: {', '.join(sorted(unknown))}")
    return args


if __name__ == "__main__":
    anyio.run(main, parse_args())
