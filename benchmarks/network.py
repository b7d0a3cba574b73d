"""Calls over a network that loses, delays and reorders packets: voxframe's echo vs Pipecat's.

Each call goes through `fakes.netrelay.ImpairedNetwork`, a UDP relay on 127.0.0.1 that the
call's real packets cross (the relay's address is the only candidate each side learns), so
both servers and the same headless aiortc client see the very same impairment: per condition,
seeded the same for both servers. A call connects clean, settles, then is impaired ("up": only
the caller's packets to the server; "both": both ways) for:

* tone bursts (0.1 s of 1 kHz every 0.5 s): the echo round trip, from a burst's first sample
  entering the client's microphone track to its echo's onset at the client's ear (both
  time.monotonic_ns on one host), p50/p95; a burst not heard back within 2 s is a miss;
* spoken sentences (the embedded Piper voice, cached as in the mouth-to-ear benchmark), each
  followed by 1.5 s of silence: what comes back from the sentence's start to the end of that
  silence is transcribed afterwards by the embedded Whisper (tiny.en), and the words it
  gets right (matched in order) are reported as a share of that server's clean run;
* the share of packets concealed: at the client (downlink, both servers: the client is
  voxframe's) and in voxframe's server (uplink), over the impaired spell.

Then the impairment ends and bursts every 0.5 s for 5 s measure recovery: the time after it
ended from which every round trip is within 10 ms of the clean p95 (the clean band's top).

voxframe's echo server runs in this process (its receive statistics are read directly; the
relay and the client share its event loop), Pipecat's SmallWebRTC echo in its own venv and
process, both at 48 kHz in and out. Jitter is a uniform 0..J ms delay per packet (J = 30, 60),
which also reorders packets. Not measured here yet: mouth-to-ear on the example bot, and the
round trip over a 3-minute call.

    python3 dev.py bench network [--bursts 20] [--sentences 4] [--conditions clean,loss5,...]
        [--directions up,both] [--skip-pipecat] [--skip-words] [--pipecat-python PATH]
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import numpy as np
from m2e_utterances import utterances
from peer import pipecat_python  # benchmarks/ is the script's own directory, first on sys.path
from peer_scripts.voxframe_echo_bot import echo_task
from stats import p50, percentile
from transport_rtt import burst, pipecat_command, server_process

from voxframe.fakes.netimpair import GilbertElliott, Impairment
from voxframe.fakes.netrelay import ImpairedNetwork
from voxframe.transports.webrtc import (
    ClientOptions,
    HeadlessClient,
    IceOptions,
    ServerOptions,
    SessionOptions,
    WebRTCServer,
)

NS_PER_MS = 1_000_000
LOOPBACK = IceOptions(host_addresses=("127.0.0.1",))
IMPAIRMENTS: dict[str, Impairment] = {
    "clean": Impairment(),
    "loss1": Impairment(loss=0.01),
    "loss3": Impairment(loss=0.03),
    "loss5": Impairment(loss=0.05),
    "burst3": Impairment(burst=GilbertElliott.bursts(0.03, 3.0)),
    "jitter30": Impairment(jitter_ms=30),
    "jitter60": Impairment(jitter_ms=60),
}
RECOVERY_S = 5.0
RECOVERY_MARGIN_MS = 10.0


def impairments(name: str, direction: str) -> tuple[Impairment, Impairment]:
    """(to server, to client) for a condition, seeded by its name: the same for every server."""
    seed = zlib.crc32(f"{name}/{direction}".encode())
    base = IMPAIRMENTS[name]
    up = _seeded(base, seed + 1)
    down = _seeded(base, seed + 2) if direction == "both" else Impairment()
    return up, down


def _seeded(impairment: Impairment, seed: int) -> Impairment:
    return dataclasses.replace(impairment, seed=seed)


@dataclass(slots=True)
class Row:
    server: str
    condition: str
    direction: str
    rtts: list[float] = field(default_factory=list)
    sent: int = 0
    #: Per sentence: (reference text, the audio that came back at 48 kHz).
    heard: list[tuple[str, np.ndarray]] = field(default_factory=list)
    words_right: float = math.nan
    concealed_down: float = math.nan
    concealed_up: float = math.nan
    #: (seconds after the impairment ended, round trip ms or None) per recovery burst.
    recovery: list[tuple[float, float | None]] = field(default_factory=list)
    recovery_s: float = math.nan
    #: Echo audio queued in voxframe's output playout at the end of the call (ms): the standing
    #: backlog that late input leaves behind (see the docstring).
    backlog_ms: float = math.nan

    @property
    def name(self) -> str:
        return self.condition if self.condition == "clean" else f"{self.condition}/{self.direction}"

    @property
    def p50(self) -> float:
        return p50(self.rtts) if self.rtts else math.nan

    @property
    def p95(self) -> float:
        return percentile(self.rtts, 95) if self.rtts else math.nan


async def echo_rtts(client: HeadlessClient, count: int, period_s: float = 0.5) -> list[tuple[int, float | None]]:
    """Play `count` bursts; (start ns, round trip ms or None for a miss) per burst."""
    pattern = burst(total_s=period_s)
    out: list[tuple[int, float | None]] = []
    for _ in range(count):
        played = await client.play(pattern, 48_000)
        try:
            onset = await client.wait_for_onset(played.start_ns, timeout_s=2.0)
        except TimeoutError:
            out.append((played.start_ns, None))
            continue
        out.append((played.start_ns, (onset - played.start_ns) / NS_PER_MS))
    return out


class Concealment:
    """Packets released and concealed so far, read from a receive stage (ours)."""

    def __init__(self, stage: object | None) -> None:
        self.stage = stage
        self.start = self.read()

    def read(self) -> tuple[int, int]:
        stage = self.stage
        decoded = getattr(stage, "decoded", None)
        if stage is None or decoded is None:
            return (0, 0)
        return stage.stats.released, decoded.concealment.concealed  # type: ignore[attr-defined]

    def share(self) -> float:
        released, concealed = (now - before for now, before in zip(self.read(), self.start, strict=True))
        return concealed / (released + concealed) if released + concealed else math.nan


async def run_call(url: str, row: Row, args: argparse.Namespace, clean_p95: float | None, server: object) -> None:
    up, down = impairments(row.condition, row.direction)
    sentences = [] if args.skip_words else utterances(args.sentences)
    async with ImpairedNetwork(url) as net, HeadlessClient.connect(net.url, ClientOptions(ice=LOOPBACK)) as client:
        await client.play(np.zeros(24_000, dtype=np.int16), 48_000)  # settle: 0.5 s of silence
        server_stage, session = None, None
        if isinstance(server, WebRTCServer) and server.sessions:
            session = list(server.sessions.values())[-1]
            server_stage = session._stages[0]  # the session keeps no public handle on it
        down_count, up_count = Concealment(client.stage), Concealment(server_stage)
        net.impair(to_server=up, to_client=down)
        results = await echo_rtts(client, args.bursts)
        row.sent = len(results)
        row.rtts = [rtt for _, rtt in results if rtt is not None]
        for sentence in sentences:
            played = await client.play(sentence.pcm, 16_000)
            # 1.5 s of silence after it: the whole echo is back even through a receiver that
            # stalls on loss (a pause in the echo must not end the sentence early).
            await client.play(np.zeros(24_000, dtype=np.int16), 16_000)
            row.heard.append((sentence.text, client.heard(since_ns=played.start_ns)))
        row.concealed_down = down_count.share()
        if server_stage is not None:
            row.concealed_up = up_count.share()
        net.clear()
        cleared_ns = client.clock.now_ns()
        if clean_p95 is not None and row.condition != "clean":
            probes = await echo_rtts(client, int(RECOVERY_S / 0.5))
            row.recovery = [((start - cleared_ns) / 1e9, rtt) for start, rtt in probes]
            row.recovery_s = recovery_time(row.recovery, clean_p95 + RECOVERY_MARGIN_MS)
        if session is not None and session.output.playout is not None:
            row.backlog_ms = session.output.playout.queued_samples / 48
        for side, stage in (("server", server_stage), ("client", client.stage)):
            if stage is not None and args.verbose:
                print(f"{row.server} {row.name} {side}: window {stage.window} (max {stage.stats.max_window}), "
                      f"jitter {stage.stats.jitter_ms:.2f} ms, late {stage.stats.late_dropped}")  # fmt: skip


def recovery_time(probes: list[tuple[float, float | None]], bound_ms: float) -> float:
    """When (s after the impairment ended) the round trip came back within `bound_ms` to stay;
    inf if the last probe was still outside it."""
    for index, (at_s, _) in enumerate(probes):
        if all(rtt is not None and rtt <= bound_ms for _, rtt in probes[index:]):
            return max(0.0, at_s)
    return math.inf


def words_right(reference: str, spoken: str) -> tuple[int, int]:
    """(reference words the transcript got right, in order; reference words)."""
    ref, hyp = _words(reference), _words(spoken)
    matched = sum(block.size for block in difflib.SequenceMatcher(None, ref, hyp).get_matching_blocks())
    return matched, len(ref)


def _words(text: str) -> list[str]:
    return "".join(c.lower() if c.isalnum() or c in " '" else " " for c in text).split()


def score_words(rows: list[Row]) -> None:
    """Transcribe what came back (blocking Whisper, after every call) and score it."""
    if not any(row.heard for row in rows):
        return
    import soxr

    from voxframe.processors.stt.whisper import WhisperOptions, load_whisper

    engine, options = load_whisper(), WhisperOptions()
    for row in rows:
        right = total = 0
        for text, audio in row.heard:
            pcm = soxr.resample(audio.astype(np.float32) / 32768, 48_000, 16_000)
            got, count = words_right(text, engine.transcribe(pcm, options))
            right, total = right + got, total + count
        row.words_right = right / total if total else math.nan


async def measure(server_name: str, url: str, args: argparse.Namespace, server: object) -> list[Row]:
    rows = [Row(server_name, "clean", "both")]
    await run_call(url, rows[0], args, None, server)
    clean_p95 = rows[0].p95
    for condition in args.conditions:
        if condition == "clean":
            continue
        for direction in args.directions:
            row = Row(server_name, condition, direction)
            await run_call(url, row, args, clean_p95, server)
            rows.append(row)
    return rows


async def voxframe_rows(args: argparse.Namespace) -> list[Row]:
    server = WebRTCServer(echo_task, ServerOptions(session=SessionOptions(ice=LOOPBACK)))
    async with anyio.create_task_group() as tg:
        url = await tg.start(server.serve)
        rows = await measure("voxframe", url, args, server)
        tg.cancel_scope.cancel()
    return rows


async def pipecat_rows(args: argparse.Namespace, python: Path) -> list[Row]:
    async with server_process(pipecat_command(python, lean=False)) as url:
        return await measure("pipecat", url, args, None)


def _fmt(value: float, scale: float = 1.0, digits: int = 1) -> str:
    return "-" if math.isnan(value) else f"{value * scale:.{digits}f}"


def print_table(rows: list[Row]) -> None:
    clean = {row.server: row.words_right for row in rows if row.condition == "clean"}
    print(f"\n{'server':<9} {'condition':<14} {'p50 ms':>7} {'p95 ms':>7} {'heard':>6} {'conc.dn':>8} "
          f"{'conc.up':>8} {'words':>6} {'vs clean':>8} {'recov s':>8} {'backlog':>8}")  # fmt: skip
    for row in rows:
        relative = row.words_right / clean[row.server] if clean.get(row.server) else math.nan
        print(
            f"{row.server:<9} {row.name:<14} {_fmt(row.p50):>7} {_fmt(row.p95):>7} "
            f"{len(row.rtts):>3}/{row.sent:<2} {_fmt(row.concealed_down, 100):>7}% {_fmt(row.concealed_up, 100):>7}% "
            f"{_fmt(row.words_right, 100, 0):>5}% {_fmt(relative, 1, 2):>8} {_fmt(row.recovery_s, 1, 2):>8} "
            f"{_fmt(row.backlog_ms, 1, 0):>8}"
        )
    for row in rows:
        if row.recovery:
            probes = " ".join(f"{at:.1f}s:{'miss' if rtt is None else f'{rtt:.0f}'}" for at, rtt in row.recovery)
            print(f"recovery {row.server} {row.name}: {probes}")
    print("(conc.dn/up: share of packets concealed at the client / in voxframe's server over the impaired")
    print(" spell; words: reference words Whisper got right in what came back; recov: see the docstring)")


def summary(rows: list[Row]) -> str:
    def find(server: str, name: str) -> Row | None:
        return next((r for r in rows if r.server == server and r.name == name), None)

    clean, loss5, jitter30 = (
        find("voxframe", "clean"),
        find("voxframe", "loss5/both"),
        find("voxframe", "jitter30/both"),
    )
    pipecat_jitter = find("pipecat", "jitter30/both")
    recoveries = [r.recovery_s for r in rows if r.server == "voxframe" and not math.isnan(r.recovery_s)]
    fields = {
        "words_right_loss5": loss5.words_right / clean.words_right
        if loss5 and clean and clean.words_right
        else math.nan,
        "rtt_p95_clean_ms": clean.p95 if clean else math.nan,
        "rtt_p95_jitter30_ms": jitter30.p95 if jitter30 else math.nan,
        "recovery_s": max(recoveries) if recoveries else math.nan,
        "concealed_loss5": loss5.concealed_down if loss5 else math.nan,
        "pipecat_rtt_p95_jitter30_ms": pipecat_jitter.p95 if pipecat_jitter else math.nan,
    }
    return " ".join(f"{k}={v:.3f}" for k, v in fields.items())


async def main(args: argparse.Namespace) -> None:
    rows = await voxframe_rows(args)
    if not args.skip_pipecat:
        python = Path(args.pipecat_python) if args.pipecat_python else pipecat_python()
        rows += await pipecat_rows(args, python)
    await anyio.to_thread.run_sync(score_words, rows)
    print_table(rows)
    print()
    print(summary(rows))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bursts", type=int, default=20, help="tone bursts per condition")
    parser.add_argument("--sentences", type=int, default=4, help="spoken sentences per condition")
    parser.add_argument("--conditions", default=",".join(IMPAIRMENTS), help=f"some of {','.join(IMPAIRMENTS)}")
    parser.add_argument("--directions", default="up,both", help="up (caller to server only), both")
    parser.add_argument("--skip-pipecat", action="store_true")
    parser.add_argument("--skip-words", action="store_true", help="no sentences, no Whisper")
    parser.add_argument("--verbose", action="store_true", help="receive windows and jitter per call")
    parser.add_argument("--pipecat-python", help="the interpreter of an installed Pipecat venv")
    arguments = parser.parse_args()
    arguments.conditions = [c for c in arguments.conditions.split(",") if c]
    arguments.directions = [d for d in arguments.directions.split(",") if d]
    unknown = set(arguments.conditions) - set(IMPAIRMENTS) or set(arguments.directions) - {"up", "both"}
    if unknown:
        parser.error(f"unknown condition or direction: {sorted(unknown)}")
    anyio.run(main, arguments)
