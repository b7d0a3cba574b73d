"""The embedded stack on this machine: VAD cost, STT final delay, TTS first audio.

* VAD: CPU time per 32 ms window, Silero through the VAD processor (windows batched per worker
  thread hop, thread hops included) and the model call alone; webrtcvad for comparison.
* STT: utterances of about 1, 3 and 8 s (Piper's voice) played in real time into
  VAD -> Whisper; the delay from the VAD's stop to the final transcript, with the incremental
  passes (as shipped) and with the final pass only (passes while speaking switched off).
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

Prints a table, writes benchmarks/results/embedded_models.json, and ends with one line:
`vad_ms=<per window> stt_final_ms=<p50, 3 s utterance> tts_first_audio_ms=<p50> smart_turn_ms_p50=<1 thread>`.

    python3 dev.py bench embedded_models [--runs 5] [--smart-turn-only]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import numpy as np
from peer import pipecat_python  # benchmarks/ is the script's own directory, first on sys.path
from stats import p50, percentile

from voxframe.pipeline import (
    Direction,
    Frame,
    FrameProcessor,
    InputAudioFrame,
    Pipeline,
    PipelineParams,
    PipelineTask,
    TranscriptionFrame,
    TTSAudioFrame,
    TTSSpeakFrame,
    TTSStoppedFrame,
    UserStoppedSpeakingFrame,
)
from voxframe.pipeline.clock import NS_PER_S
from voxframe.processors.stt.whisper import WhisperOptions, WhisperSTT, load_whisper
from voxframe.processors.tts.piper import PiperOptions, PiperTTS, load_piper_voice, speak
from voxframe.processors.turns.features import WINDOW_SAMPLES, smart_turn_features
from voxframe.processors.turns.smart_turn import SmartTurnModel, SmartTurnOptions
from voxframe.processors.vad import SileroVADAnalyzer, VADOptions, VADProcessor, WebRTCVADAnalyzer
from voxframe.transports.memory import MemoryInputOptions, MemoryInputTransport

RATE = 16_000
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
RESULTS = Path(__file__).parent / "results" / "embedded_models.json"


def spoken_16k(text: str) -> np.ndarray:
    """Piper's voice at 16 kHz, int16 (the input rate of the pipeline)."""
    return speak(text, PiperOptions(noise_scale=0.0, noise_w_scale=0.0), sample_rate=RATE)


class Stamps(FrameProcessor):
    """Stamps when each user stop and each final transcript passes; sets `done` at `expect` finals."""

    def __init__(self, expect: int) -> None:
        super().__init__(name="stamps")
        self.stops: list[int] = []
        self.finals: list[int] = []
        self.expect = expect
        self.done = anyio.Event()

    async def process(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, UserStoppedSpeakingFrame):
            self.stops.append(self.clock.now_ns())
        elif isinstance(frame, TranscriptionFrame):
            self.finals.append(self.clock.now_ns())
            if len(self.finals) >= self.expect:
                self.done.set()
        await self.push(frame, direction)


# --- VAD ------------------------------------------------------------------------------------------


async def vad_processor_cost(seconds: float) -> float:
    """CPU ms per window for Silero through the processor, fed as fast as it goes."""
    speech = spoken_16k(UTTERANCES[8])
    audio = np.resize(np.concatenate([speech, np.zeros(RATE // 2, np.int16)]), round(seconds * RATE))
    vad = VADProcessor(VADOptions(analyzer=SileroVADAnalyzer()))
    task = PipelineTask(Pipeline([vad]), PipelineParams(idle_timeout_s=None))
    chunk = RATE // 50
    t0 = task.clock.now_ns() - len(audio) * NS_PER_S // RATE
    frames = [
        InputAudioFrame(audio=audio[i : i + chunk].tobytes(), sample_rate=RATE, created_ns=t0 + i * NS_PER_S // RATE)
        for i in range(0, len(audio) - chunk + 1, chunk)
    ]
    async with anyio.create_task_group() as tg:
        tg.start_soon(task.run)
        await task.wait_started()
        cpu0 = time.process_time()
        for frame in frames:
            await task.queue_frame(frame)
        with anyio.fail_after(120):
            await vad.wait_scored(len(frames) * chunk)
        cpu = time.process_time() - cpu0
        await task.cancel()
    return 1000 * cpu / vad.windows_scored


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


# --- STT ------------------------------------------------------------------------------------------


async def stt_final_delays(text: str, runs: int, incremental: bool) -> list[float]:
    """ms from the VAD's stop to the final transcript, per turn, audio played in real time."""
    speech = spoken_16k(text)
    options = WhisperOptions() if incremental else WhisperOptions(pass_interval_s=1e9, quiet_s=1e9)
    stamps = Stamps(expect=runs)
    mic = MemoryInputTransport(options=MemoryInputOptions(silence_when_idle=True))
    pipeline = Pipeline([mic, VADProcessor(), WhisperSTT(options), stamps])
    task = PipelineTask(pipeline, PipelineParams(idle_timeout_s=None))
    gap = np.zeros(round(1.2 * RATE), np.int16)
    async with anyio.create_task_group() as tg:
        tg.start_soon(task.run)
        await task.wait_started()
        for _ in range(runs):
            mic.feed(np.concatenate([speech, gap]))
        with anyio.fail_after(runs * (len(speech) / RATE + 10)):
            await stamps.done.wait()
        await task.cancel()
    return [(final - stop) / 1e6 for stop, final in zip(stamps.stops, stamps.finals, strict=False)]


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
        print(f"  {label:<34}{min(times):>8.1f}{p50(times):>8.1f}{p95(times):>8.1f}")
    ratio = p50(smart_turn["predict_ms_threads1"]) / p50(smart_turn["pipecat_predict_ms"])
    ours, theirs = np.array(smart_turn["probabilities"]), np.array(smart_turn["pipecat_probabilities"])
    print(f"  voxframe / Pipecat p50: {ratio:.2f}")
    print(
        f"  probabilities on {len(ours)} clips: ours {np.round(ours, 3).tolist()}; "
        f"largest difference from Pipecat's {np.abs(ours - theirs).max():.2g}"
    )


# --- report ---------------------------------------------------------------------------------------


def p95(values: list[float]) -> float:
    return percentile(values, 95)


async def measure(runs: int) -> dict[str, object]:
    smart_turn = smart_turn_cost()  # like the VAD's model calls: before other models start threads
    vad = {
        "silero_model_ms_per_window_batch1": model_cost(SileroVADAnalyzer(), 1),
        "silero_model_ms_per_window_batch2": model_cost(SileroVADAnalyzer(), 2),
        "webrtcvad_ms_per_window": model_cost(WebRTCVADAnalyzer(), 1),
        "silero_processor_cpu_ms_per_window": await vad_processor_cost(60.0),
    }
    load_whisper().transcribe(np.zeros(RATE, np.float32), WhisperOptions())  # load and warm up
    spoken_16k(FIRST_CLAUSES[0])
    results: dict[str, object] = {"vad": vad, "smart_turn": smart_turn}
    stt: dict[str, dict[str, object]] = {}
    for seconds, text in UTTERANCES.items():
        duration = len(spoken_16k(text)) / RATE
        incremental = await stt_final_delays(text, runs, incremental=True)
        final_only = await stt_final_delays(text, runs, incremental=False)
        stt[f"{seconds}s"] = {"duration_s": duration, "incremental_ms": incremental, "final_pass_only_ms": final_only}
    results["stt"] = stt
    first_audio, rtf = await tts_first_audio(runs)
    results["tts"] = {"first_audio_ms": first_audio, "rtf": rtf}
    return results


def report(results: dict) -> None:
    vad, stt, tts = results["vad"], results["stt"], results["tts"]
    print("VAD cost per 32 ms window")
    processor_ms = vad["silero_processor_cpu_ms_per_window"]
    print(f"  Silero through the processor (2 windows per thread hop, CPU): {processor_ms:.3f} ms")
    print(f"  Silero model call, 1 window per call:  {vad['silero_model_ms_per_window_batch1']:.3f} ms")
    print(f"  Silero model call, 2 windows per call: {vad['silero_model_ms_per_window_batch2']:.3f} ms")
    print(f"  webrtcvad (30 ms window):              {vad['webrtcvad_ms_per_window']:.4f} ms")
    print()
    print("STT: VAD stop -> final transcript (ms)")
    print(f"  {'utterance':<10}{'length':>8}{'p50':>8}{'p95':>8}   {'final pass only p50':>20}{'p95':>8}")
    for name, r in stt.items():
        inc, only = r["incremental_ms"], r["final_pass_only_ms"]
        row = f"  {name:<10}{r['duration_s']:>7.1f}s{p50(inc):>8.1f}{p95(inc):>8.1f}"
        print(f"{row}   {p50(only):>20.1f}{p95(only):>8.1f}")
    print()
    print("TTS (Piper, first clause of a reply)")
    print(f"  text -> first audio: p50 {p50(tts['first_audio_ms']):.0f} ms, p95 {p95(tts['first_audio_ms']):.0f} ms")
    print(f"  real-time factor:    p50 {p50(tts['rtf']):.3f}")
    print()
    report_smart_turn(results["smart_turn"])
    print(
        f"vad_ms={vad['silero_processor_cpu_ms_per_window']:.3f} "
        f"stt_final_ms={p50(stt['3s']['incremental_ms']):.1f} "
        f"tts_first_audio_ms={p50(tts['first_audio_ms']):.0f} "
        f"smart_turn_ms_p50={p50(results['smart_turn']['predict_ms_threads1']):.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="turns per utterance length, passes over the clauses")
    parser.add_argument("--smart-turn-only", action="store_true", help="only the end-of-turn model's row (seconds)")
    args = parser.parse_args()
    if args.smart_turn_only:
        smart_turn = smart_turn_cost()
        report_smart_turn(smart_turn)
        print(f"smart_turn_ms_p50={p50(smart_turn['predict_ms_threads1']):.1f}")
        return
    results = anyio.run(measure, args.runs)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    report(results)


if __name__ == "__main__":
    main()
