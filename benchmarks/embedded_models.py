"""The embedded stack on this machine: VAD cost, STT final delay, TTS first audio.

Every part runs the way bots/example.py runs it: the VAD with the example's parameters
(`VAD_STOP_S`, and its pause `vad_pause_s()`, read from the file) and one window per thread hop
(`windows_per_hop=1`, as the example builds it); Whisper and Piper with their default options.
All audio is played in real time (MemoryInputTransport, 20 ms chunks paced on the clock).
No peer: these are voxframe's own embedded models on this machine, not a comparison.

* VAD: CPU per 32 ms window of Silero through the VAD processor, fed in real time for
  `--vad-seconds`: the process's CPU time (time.process_time, all threads: the model calls in
  the worker thread, the thread hops, the processor) over the feed, less the same pipeline's
  without the VAD, divided by the windows scored. The model call alone (1 and 2 windows per
  call) and webrtcvad are given for comparison (wall time of repeated calls).
* STT: utterances of about 1, 3 and 8 s (Piper's voice), each followed by 1.2 s of silence, played
  into VAD -> Whisper -> a stamping processor. Clock points (the injected clock): the end of speech
  is when the utterance's last audible sample (the one loudness rule, `last_loud_sample`) entered
  the microphone (`capture_ns`); the pause is when `UserPausedSpeakingFrame` reaches the stamps
  (after Whisper); the final is when the first `TranscriptionFrame` after the end of speech does.
  End of speech -> final holds the example's 0.2 s pause wait and Whisper's own final pass; pause ->
  final is Whisper alone. As shipped (passes while speaking) and with the final pass only
  (`pass_interval_s` and `quiet_s` off). A turn with no final is counted as missed.
* TTS: Piper through the TTS base: text handed over -> first audio out (`tts_first_text` ->
  `tts_first_audio`) for first clauses of a reply, and the real-time factor of synthesis.
* Smart Turn v3.2 (end of turn): one prediction on 8 s of speech, wall ms from the audio handed
  over to the verdict (log-mel features and ONNX inference, in the calling thread), p50/p95 over
  30 runs after 3 warm-ups (in 3 blocks, the variants taking turns), with 1 and 2 onnxruntime
  threads; the features alone beside it.
  Target: p50 <= 30 ms on the 2-core development machine. The peer: Pipecat's
  `LocalSmartTurnAnalyzerV3` as shipped (one CPU) on the same audio, in its own venv
  (`peer_scripts/pipecat_smart_turn.py`), its cost and the largest difference between its
  probabilities and ours over a few complete and cut questions.

A p95 is printed only over at least MIN_SAMPLES_FOR_P95 (20) samples; below that the table says
n and leaves p95 out. Prints a table, writes benchmarks/results/embedded_models.json, and ends with
one line: `vad_ms=<CPU per window> stt_final_ms=<p50, 3 s, as shipped> stt_final_pass_only_ms=<p50,
3 s> stt_whisper_ms=<pause -> final p50, 3 s, as shipped> tts_first_audio_ms=<p50>
smart_turn_ms_p50=<1 thread> stt_missed=<n> runs=<n>`.

    python3 dev.py bench embedded_models [--runs 20] [--vad-seconds 20] [--smart-turn-only]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import numpy as np
from peer import pipecat_python  # benchmarks/ is the script's own directory, first on sys.path
from stats import p50, percentile

from voxframe.pipeline import (
    Direction,
    Frame,
    FrameProcessor,
    Pipeline,
    PipelineParams,
    PipelineTask,
    TranscriptionFrame,
    TTSAudioFrame,
    TTSSpeakFrame,
    TTSStoppedFrame,
    UserPausedSpeakingFrame,
)
from voxframe.pipeline.audio import last_loud_sample
from voxframe.processors.stt.whisper import WhisperOptions, WhisperSTT, load_whisper
from voxframe.processors.tts.piper import PiperOptions, PiperTTS, load_piper_voice, speak
from voxframe.processors.turns.features import WINDOW_SAMPLES, smart_turn_features
from voxframe.processors.turns.smart_turn import SmartTurnModel, SmartTurnOptions
from voxframe.processors.vad import SileroVADAnalyzer, VADOptions, VADParams, VADProcessor, WebRTCVADAnalyzer
from voxframe.transports.memory import MemoryInputOptions, MemoryInputTransport

RATE = 16_000
EXAMPLE = Path(__file__).resolve().parent.parent / "bots" / "example.py"
UTTERANCES = {
    1: "What time is it?",
    3: "I would like to book a table for two people tomorrow evening.",
    8: "Tell me a long story about a dragon who lived high in the mountains and collected shiny stones "
    "from all the travellers who passed by his cave on their way to the sea.",
}
FIRST_CLAUSES = [
    "Hello there.",
    "Sure, I can help with that.",
    "It is a quarter past three.",
    "The weather in Paris is mild today.",
]
#: Silence after each utterance: past the example's stop (0.5 s) and Whisper's final pass.
GAP_S = 1.2
#: No p95 is printed over fewer samples than this (it would be the largest one or two).
MIN_SAMPLES_FOR_P95 = 20
RESULTS = Path(__file__).parent / "results" / "embedded_models.json"


def spoken_16k(text: str) -> np.ndarray:
    """Piper's voice at 16 kHz, int16 (the input rate of the pipeline)."""
    return speak(text, PiperOptions(noise_scale=0.0, noise_w_scale=0.0), sample_rate=RATE)


def example_vad_options() -> VADOptions:
    """The VAD as bots/example.py builds it: its stop and pause, one window per thread hop."""
    spec = importlib.util.spec_from_file_location("example", EXAMPLE)  # imported by path, as the runner does
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    params = VADParams(stop_s=example.VAD_STOP_S, pause_s=example.vad_pause_s())
    return VADOptions(params=params, windows_per_hop=1)


class Stamps(FrameProcessor):
    """Stamps, on the clock, each pause and each final transcript that passes."""

    def __init__(self) -> None:
        super().__init__(name="stamps")
        self.pauses: list[int] = []
        self.finals: list[int] = []
        self.final_seen = anyio.Event()

    async def process(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, UserPausedSpeakingFrame):
            self.pauses.append(self.clock.now_ns())
        elif isinstance(frame, TranscriptionFrame):
            self.finals.append(self.clock.now_ns())
            self.final_seen.set()
            self.final_seen = anyio.Event()
        await self.push(frame, direction)


def p95_or_none(values: list[float]) -> float | None:
    """The p95, or None over fewer than MIN_SAMPLES_FOR_P95 values."""
    return percentile(values, 95) if len(values) >= MIN_SAMPLES_FOR_P95 else None


def cell(value: float | None, width: int = 8) -> str:
    return f"{'-':>{width}}" if value is None or math.isnan(value) else f"{value:>{width}.1f}"


# --- VAD ------------------------------------------------------------------------------------------


async def realtime_cpu(audio: np.ndarray, vad: VADProcessor | None) -> tuple[float, int]:
    """(CPU seconds of this process, windows scored) while `audio` plays in real time through the
    microphone and, if given, the VAD."""
    mic = MemoryInputTransport(audio)
    task = PipelineTask(Pipeline([mic] if vad is None else [mic, vad]), PipelineParams(idle_timeout_s=None))
    async with anyio.create_task_group() as tg:
        tg.start_soon(task.run)
        await task.wait_started()
        cpu0 = time.process_time()
        with anyio.fail_after(len(audio) / RATE + 30):
            await mic.wait_done()
            if vad is not None:
                await vad.wait_scored(len(audio))
        cpu = time.process_time() - cpu0
        await task.cancel()
    return cpu, 0 if vad is None else vad.windows_scored


async def vad_processor_cost(seconds: float) -> float:
    """CPU ms per window for Silero through the processor as the example runs it, in real time,
    less the cost of the same pipeline without the VAD."""
    speech = spoken_16k(UTTERANCES[8])
    audio = np.resize(np.concatenate([speech, np.zeros(RATE // 2, np.int16)]), round(seconds * RATE))
    baseline, _ = await realtime_cpu(audio, None)
    cpu, windows = await realtime_cpu(audio, VADProcessor(example_vad_options()))
    return 1000 * (cpu - baseline) / windows


def model_cost(analyzer: SileroVADAnalyzer | WebRTCVADAnalyzer, batch: int, repeats: int = 2000) -> float:
    """Wall ms per window for the model call alone, `batch` windows per call."""
    analyzer.load()
    analyzer.reset(RATE)
    size = analyzer.window_samples(RATE)
    windows = (np.random.default_rng(0).standard_normal((batch, size)) * 3000).astype(np.int16)
    analyzer.confidences(windows)
    t0 = time.perf_counter()
    for _ in range(repeats):
        analyzer.confidences(windows)
    return 1000 * (time.perf_counter() - t0) / (repeats * batch)


#: The model calls timed alone, one row each: (result key, table label, () -> ms). A new embedded
#: model's cost is one more row here.
MODEL_CALLS: list[tuple[str, str, Callable[[], float]]] = [
    (
        "silero_model_ms_per_window_batch1",
        "Silero VAD model call, 1 window per call (per window)",
        lambda: model_cost(SileroVADAnalyzer(), 1),
    ),
    (
        "silero_model_ms_per_window_batch2",
        "Silero VAD model call, 2 windows per call (per window)",
        lambda: model_cost(SileroVADAnalyzer(), 2),
    ),
    ("webrtcvad_ms_per_window", "webrtcvad, 30 ms window (per window)", lambda: model_cost(WebRTCVADAnalyzer(), 1)),
]


# --- STT ------------------------------------------------------------------------------------------


@dataclass(slots=True)
class STTTurns:
    """Per turn that got a final: end of speech -> final, and pause -> final (None: no pause)."""

    end_to_final_ms: list[float]
    pause_to_final_ms: list[float]
    missed: int


async def stt_turns(text: str, runs: int, incremental: bool) -> STTTurns:
    """`runs` turns of `text` played in real time through the example's VAD into Whisper."""
    speech = spoken_16k(text)
    turn = np.concatenate([speech, np.zeros(round(GAP_S * RATE), np.int16)])
    lead = RATE // 2  # half a second of silence first: the VAD starts in quiet
    options = WhisperOptions() if incremental else WhisperOptions(pass_interval_s=1e9, quiet_s=1e9)
    stamps = Stamps()
    mic = MemoryInputTransport(np.concatenate([np.zeros(lead, np.int16), *([turn] * runs)]), MemoryInputOptions())
    pipeline = Pipeline([mic, VADProcessor(example_vad_options()), WhisperSTT(options), stamps])
    task = PipelineTask(pipeline, PipelineParams(idle_timeout_s=None))
    async with anyio.create_task_group() as tg:
        tg.start_soon(task.run)
        await task.wait_started()
        with anyio.fail_after(runs * (len(turn) / RATE + 10)):
            await mic.wait_done()
        with anyio.move_on_after(5):  # the last turn's final, if it is still on its way
            last_end_ns = mic.capture_ns(lead + (runs - 1) * len(turn) + last_loud_sample(speech, RATE))
            while not stamps.finals or stamps.finals[-1] <= last_end_ns:
                await stamps.final_seen.wait()
        await task.cancel()
    end_of_speech = last_loud_sample(speech, RATE)
    ends = [mic.capture_ns(lead + i * len(turn) + end_of_speech) for i in range(runs)]
    starts = [mic.capture_ns(lead + i * len(turn)) for i in range(1, runs)]
    return match_turns(ends, starts, stamps.pauses, stamps.finals)


def match_turns(ends_ns: list[int], next_starts_ns: list[int], pauses_ns: list[int], finals_ns: list[int]) -> STTTurns:
    """Per turn (its end of speech, and the next turn's start), the first final after the end and
    before the next start (none: missed), and the first pause between the end and that final."""
    result = STTTurns([], [], 0)
    for end_ns, next_ns in zip(ends_ns, [*next_starts_ns, 1 << 62], strict=False):
        final = next((t for t in finals_ns if end_ns < t < next_ns), None)
        if final is None:
            result.missed += 1
            continue
        result.end_to_final_ms.append((final - end_ns) / 1e6)
        pause = next((t for t in pauses_ns if end_ns < t <= final), None)
        if pause is not None:
            result.pause_to_final_ms.append((final - pause) / 1e6)
    return result


# --- TTS ------------------------------------------------------------------------------------------


async def tts_first_audio(runs: int) -> tuple[list[float], list[float]]:
    """(ms from text to first audio per clause, real-time factor per clause)."""
    done = _StopCounter()
    task = PipelineTask(Pipeline([PiperTTS(), done]), PipelineParams(idle_timeout_s=None))
    first_audio: list[float] = []
    rtf: list[float] = []
    rate = load_piper_voice().config.sample_rate
    async with anyio.create_task_group() as tg:
        tg.start_soon(task.run)
        await task.wait_started()
        for _ in range(runs):
            for text in FIRST_CLAUSES:
                turn = task.turns.begin()
                t0 = time.perf_counter()
                await task.queue_frame(TTSSpeakFrame(text=text, turn=turn))
                with anyio.fail_after(30):
                    await done.wait_for(turn)
                elapsed = time.perf_counter() - t0
                points = task.tracer.turn(turn)
                first_audio.append((points["tts_first_audio"] - points["tts_first_text"]) / 1e6)
                rtf.append(elapsed / (done.samples[turn] / rate))
        await task.cancel()
    return first_audio, rtf


class _StopCounter(FrameProcessor):
    """Counts each turn's audio samples and signals its TTSStoppedFrame."""

    def __init__(self) -> None:
        super().__init__(name="stop-counter")
        self.samples: dict[int, int] = {}
        self._stopped: dict[int, anyio.Event] = {}

    async def process(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, TTSAudioFrame):
            self.samples[frame.turn] = self.samples.get(frame.turn, 0) + len(frame.audio) // 2
        if isinstance(frame, TTSStoppedFrame):
            self._event(frame.turn).set()
        await self.push(frame, direction)

    def _event(self, turn: int) -> anyio.Event:
        return self._stopped.setdefault(turn, anyio.Event())

    async def wait_for(self, turn: int) -> None:
        await self._event(turn).wait()


# --- end of turn ----------------------------------------------------------------------------------

SMART_TURN_RUNS = 30
#: Turns the peer and we both judge: complete questions and questions cut off, each at a 0.2 s pause.
SMART_TURN_CLIPS = [
    "What is the capital of France?",
    "Where is the nearest train station?",
    "What is the capital of, uh",
    "I was wondering if you could",
]


def _timed_ms(call: Callable[[np.ndarray], object], audio: np.ndarray, runs: int) -> list[float]:
    for _ in range(3):
        call(audio)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        call(audio)
        times.append(1000 * (time.perf_counter() - t0))
    return times


def smart_turn_cost(runs: int = SMART_TURN_RUNS, rounds: int = 3) -> dict[str, list[float]]:
    """Wall ms per prediction on 8 s of speech: features + inference, 1 and 2 threads; features alone.

    Wall time on a shared machine follows its load, so the variants (Pipecat's too) take turns in
    `rounds` blocks of runs / rounds each, and the 1-minute load average is kept beside them.
    """
    audio = np.resize(spoken_16k(UTTERANCES[8]), WINDOW_SAMPLES)
    clips = [audio] + [np.concatenate([spoken_16k(text), np.zeros(RATE // 5, np.int16)]) for text in SMART_TURN_CLIPS]
    models = {threads: SmartTurnModel(SmartTurnOptions(threads=threads)) for threads in (1, 2)}
    keys = ["features_ms", "predict_ms_threads1", "predict_ms_threads2", "pipecat_predict_ms"]
    results: dict[str, list[float]] = {"load_average_1min": [os.getloadavg()[0]], **{key: [] for key in keys}}
    block = -(-runs // rounds)
    for _ in range(rounds):
        results["features_ms"] += _timed_ms(smart_turn_features, audio, block)
        for threads, model in models.items():
            results[f"predict_ms_threads{threads}"] += _timed_ms(model.predict_sync, audio, block)
        peer = pipecat_smart_turn(clips, block)
        results["pipecat_predict_ms"] += peer["predict_ms"]
    results["load_average_1min"].append(os.getloadavg()[0])
    results["probabilities"] = [models[1].predict_sync(clip).probability for clip in clips]
    results["pipecat_probabilities"] = peer["probabilities"]
    return results


def pipecat_smart_turn(clips: list[np.ndarray], runs: int) -> dict[str, list[float]]:
    """Pipecat's analyzer on the same clips (the first one timed), in Pipecat's venv."""
    script = Path(__file__).resolve().parent / "peer_scripts" / "pipecat_smart_turn.py"
    with tempfile.TemporaryDirectory(prefix="smart-turn-") as tmp:
        paths = [str(Path(tmp) / f"clip{i}.npy") for i in range(len(clips))]
        for path, clip in zip(paths, clips, strict=True):
            np.save(path, clip)
        done = subprocess.run(
            [str(pipecat_python()), str(script), str(runs), *paths], capture_output=True, text=True, timeout=300
        )
    if done.returncode != 0:
        raise RuntimeError(f"Pipecat's Smart Turn failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report_smart_turn(smart_turn: dict[str, list[float]]) -> None:
    before, after = smart_turn["load_average_1min"]
    print(
        f"Smart Turn v3.2: one prediction on 8 s of audio ({len(smart_turn['features_ms'])} runs, ms; "
        f"load average {before:.1f} -> {after:.1f} on {os.cpu_count()} cores)"
    )
    print(f"  {'':<34}{'min':>8}{'p50':>8}{'p95':>8}")
    rows = [
        ("features + inference, 1 thread", "predict_ms_threads1"),
        ("features + inference, 2 threads", "predict_ms_threads2"),
        ("log-mel features alone", "features_ms"),
        ("Pipecat 1.14.0, as shipped", "pipecat_predict_ms"),
    ]
    for label, key in rows:
        times = smart_turn[key]
        print(f"  {label:<34}{min(times):>8.1f}{p50(times):>8.1f}{percentile(times, 95):>8.1f}")
    ratio = p50(smart_turn["predict_ms_threads1"]) / p50(smart_turn["pipecat_predict_ms"])
    ours, theirs = np.array(smart_turn["probabilities"]), np.array(smart_turn["pipecat_probabilities"])
    print(f"  voxframe / Pipecat p50: {ratio:.2f}")
    print(
        f"  probabilities on {len(ours)} clips: ours {np.round(ours, 3).tolist()}; "
        f"largest difference from Pipecat's {np.abs(ours - theirs).max():.2g}"
    )


# --- report ---------------------------------------------------------------------------------------


async def measure(runs: int, vad_seconds: float) -> dict[str, object]:
    # The model calls first, before any other model has started threads.
    smart_turn = smart_turn_cost()
    vad: dict[str, float] = {key: measure_call() for key, _, measure_call in MODEL_CALLS}
    vad["silero_processor_cpu_ms_per_window"] = await vad_processor_cost(vad_seconds)
    vad["realtime_seconds"] = vad_seconds
    load_whisper().transcribe(np.zeros(RATE, np.float32), WhisperOptions())  # load and warm up
    spoken_16k(FIRST_CLAUSES[0])
    results: dict[str, object] = {"vad": vad, "smart_turn": smart_turn}
    stt: dict[str, dict[str, object]] = {}
    for seconds, text in UTTERANCES.items():
        duration = len(spoken_16k(text)) / RATE
        shipped = await stt_turns(text, runs, incremental=True)
        final_only = await stt_turns(text, runs, incremental=False)
        stt[f"{seconds}s"] = {
            "duration_s": duration,
            "end_to_final_ms": shipped.end_to_final_ms,
            "pause_to_final_ms": shipped.pause_to_final_ms,
            "missed": shipped.missed,
            "final_pass_only_end_to_final_ms": final_only.end_to_final_ms,
            "final_pass_only_pause_to_final_ms": final_only.pause_to_final_ms,
            "final_pass_only_missed": final_only.missed,
        }
    results["stt"] = stt
    first_audio, rtf = await tts_first_audio(runs)
    results["tts"] = {"first_audio_ms": first_audio, "rtf": rtf}
    return results


def summary(values: list[float]) -> str:
    """n, p50 and (over enough samples) p95 of `values`, as table cells."""
    middle = p50(values) if values else None
    return f"{len(values):>4}{cell(middle)}{cell(p95_or_none(values))}"


def report(results: dict) -> None:
    vad, stt, tts = results["vad"], results["stt"], results["tts"]
    processor_ms = vad["silero_processor_cpu_ms_per_window"]
    print(
        f"Model cost (ms; the VAD processor with the example's options, fed {vad['realtime_seconds']:g} s in real time)"
    )
    print(f"  {'Silero VAD through the processor, 1 window per hop (CPU per window)':<64}{processor_ms:>9.3f}")
    for key, label, _ in MODEL_CALLS:
        print(f"  {label:<64}{vad[key]:>9.4f}")
    print()
    print(f"STT after the example's VAD (ms; pause -> final: Whisper alone; p95 if n >= {MIN_SAMPLES_FOR_P95})")
    print(f"  {'':<22}  {'end of speech -> final':^20}   {'pause -> final':^20}  {'missed':>6}")
    print(f"  {'utterance':<16}{'length':>6}  {'n':>4}{'p50':>8}{'p95':>8}   {'n':>4}{'p50':>8}{'p95':>8}")
    for name, r in stt.items():
        for label, prefix, missed in (("as shipped", "", r["missed"]), ("final only", "final_pass_only_", None)):
            missed = r["final_pass_only_missed"] if missed is None else missed
            first = f"{name} {label}"
            print(
                f"  {first:<16}{r['duration_s']:>5.1f}s  {summary(r[prefix + 'end_to_final_ms'])}"
                f"   {summary(r[prefix + 'pause_to_final_ms'])}  {missed:>6}"
            )
    print()
    print("TTS (Piper, first clause of a reply; ms)")
    first_audio = tts["first_audio_ms"]
    tail = p95_or_none(first_audio)
    print(
        f"  text -> first audio: n={len(first_audio)} p50 {p50(first_audio):.0f} ms, "
        + (f"p95 {tail:.0f} ms" if tail is not None else f"no p95 (n < {MIN_SAMPLES_FOR_P95})")
    )
    print(f"  real-time factor:    p50 {p50(tts['rtf']):.3f}")
    print()
    report_smart_turn(results["smart_turn"])
    three = stt["3s"]
    missed = sum(r["missed"] + r["final_pass_only_missed"] for r in stt.values())

    def median(values: list[float]) -> str:
        return f"{p50(values):.1f}" if values else "nan"

    print(
        f"vad_ms={processor_ms:.3f} "
        f"stt_final_ms={median(three['end_to_final_ms'])} "
        f"stt_final_pass_only_ms={median(three['final_pass_only_end_to_final_ms'])} "
        f"stt_whisper_ms={median(three['pause_to_final_ms'])} "
        f"tts_first_audio_ms={p50(tts['first_audio_ms']):.0f} "
        f"smart_turn_ms_p50={p50(results['smart_turn']['predict_ms_threads1']):.1f} "
        f"stt_missed={missed} runs={len(three['end_to_final_ms']) + three['missed']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="turns per utterance length, passes over the clauses")
    parser.add_argument("--vad-seconds", type=float, default=20.0, help="real-time audio for the VAD's cost")
    parser.add_argument("--smart-turn-only", action="store_true", help="only the end-of-turn model's row (seconds)")
    args = parser.parse_args()
    if args.smart_turn_only:
        smart_turn = smart_turn_cost()
        report_smart_turn(smart_turn)
        print(f"smart_turn_ms_p50={p50(smart_turn['predict_ms_threads1']):.1f}")
        return
    results = anyio.run(measure, args.runs, args.vad_seconds)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    report(results)


if __name__ == "__main__":
    main()
