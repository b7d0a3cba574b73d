"""Silero (and webrtcvad) find the speech in Piper utterances; the VAD processor reports it."""

from __future__ import annotations

import threading
import time

import anyio
import numpy as np
import pytest

from tests.embedded_helpers import MS, NS_PER_S, RATE, frames_of, silence, speak, speech_bounds
from tests.support import Recorder, running
from voxframe.pipeline import (
    UP,
    InputAudioFrame,
    Pipeline,
    PipelineError,
    PipelineParams,
    PipelineTask,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from voxframe.processors.vad import (
    SileroVADAnalyzer,
    SpeechStarted,
    SpeechStateMachine,
    SpeechStopped,
    VADAnalyzer,
    VADOptions,
    VADParams,
    VADProcessor,
    WebRTCVADAnalyzer,
    score_windows,
)

WINDOW = 512
UTTERANCES = [
    "Hello there, how are you today?",
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "What time is it?",
    "I would like to book a table for two people tomorrow evening.",
    "Could you tell me the date?",
]


def in_a_quiet_room(speech: np.ndarray, before_s: float = 0.5, after_s: float = 1.2) -> tuple[np.ndarray, int, int]:
    """The speech between silences over a -70 dBFS noise floor, with its true bounds."""
    lead = round(before_s * RATE)
    signal = np.concatenate([silence(before_s), speech, silence(after_s)]).astype(np.float64)
    signal += np.random.default_rng(0).standard_normal(len(signal)) * 32768 * 10 ** (-70 / 20)
    start, end = speech_bounds(speech)
    return np.round(signal).astype(np.int16), lead + start, lead + end


def detect(analyzer: VADAnalyzer, signal: np.ndarray, params: VADParams) -> list[object]:
    analyzer.reset(RATE)
    size = analyzer.window_samples(RATE)
    count = len(signal) // size
    windows = score_windows(analyzer, signal[: count * size].reshape(count, size), 0, params.edge_dbfs)
    machine = SpeechStateMachine(params, RATE)
    return [event for w in windows if (event := machine.feed(w)) is not None]


@pytest.fixture(scope="module")
def silero() -> SileroVADAnalyzer:
    analyzer = SileroVADAnalyzer()
    analyzer.load()
    return analyzer


@pytest.mark.parametrize("text", UTTERANCES)
def test_silero_finds_the_speech_within_one_window_of_its_true_bounds(silero: SileroVADAnalyzer, text: str) -> None:
    signal, start, end = in_a_quiet_room(speak(text))
    events = detect(silero, signal, VADParams())
    assert [type(e) for e in events] == [SpeechStarted, SpeechStopped]
    started, stopped = events
    assert abs(started.start_sample - start) <= WINDOW, (started.start_sample - start) / 16
    assert abs(stopped.end_sample - end) <= WINDOW, (stopped.end_sample - end) / 16


def test_webrtcvad_finds_the_same_speech(silero: SileroVADAnalyzer) -> None:
    analyzer = WebRTCVADAnalyzer()
    analyzer.load()
    signal, start, end = in_a_quiet_room(speak(UTTERANCES[1]))
    started, stopped = detect(analyzer, signal, VADParams())
    window = analyzer.window_samples(RATE)
    assert abs(started.start_sample - start) <= window
    assert abs(stopped.end_sample - end) <= window


def test_scoring_a_batch_of_windows_equals_scoring_them_one_by_one(silero: SileroVADAnalyzer) -> None:
    signal, _, _ = in_a_quiet_room(speak(UTTERANCES[2]), before_s=0.1, after_s=0.1)
    windows = signal[: len(signal) // WINDOW * WINDOW].reshape(-1, WINDOW)
    silero.reset(RATE)
    batched = silero.confidences(windows)
    silero.reset(RATE)
    single = np.concatenate([silero.confidences(windows[i : i + 1]) for i in range(len(windows))])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    assert batched.max() > 0.9 and batched[:2].max() < 0.1


class ThreadRecordingSilero(SileroVADAnalyzer):
    """Silero that notes which thread scored each batch, and its size."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, int]] = []

    def confidences(self, windows: np.ndarray) -> np.ndarray:
        self.calls.append((threading.get_ident(), len(windows)))
        return super().confidences(windows)


@pytest.mark.anyio
async def test_the_processor_reports_start_and_end_times_both_ways_off_the_event_loop() -> None:
    signal, start, end = in_a_quiet_room(speak(UTTERANCES[0]))
    analyzer = ThreadRecordingSilero()
    above, below = Recorder("above"), Recorder("below")
    vad = VADProcessor(VADOptions(analyzer=analyzer, windows_per_hop=2))
    t0 = time.monotonic_ns() - len(signal) * NS_PER_S // RATE  # the audio was captured just now
    async with running([above, vad, below]) as task:
        frames = frames_of(signal, t0)
        for frame in frames:
            await task.queue_frame(frame)
        await below.wait_for(lambda: below.of(UserStoppedSpeakingFrame) and above.of(UserStoppedSpeakingFrame, UP))

        # Audio passes through untouched and in order.
        assert [f.id for f in below.of(InputAudioFrame)] == [f.id for f in frames]
        for seen in (below.of(UserStartedSpeakingFrame), above.of(UserStartedSpeakingFrame, UP)):
            (frame,) = seen
            assert abs(frame.speech_start_ns - (t0 + start * NS_PER_S // RATE)) <= 32 * MS
        for seen in (below.of(UserStoppedSpeakingFrame), above.of(UserStoppedSpeakingFrame, UP)):
            (frame,) = seen
            assert abs(frame.speech_end_ns - (t0 + end * NS_PER_S // RATE)) <= 32 * MS
        stopped = below.of(UserStoppedSpeakingFrame)[0]
        points = task.tracer.turn(1)
        assert points["speech_end"] == stopped.speech_end_ns and "vad_stop" in points

    loop_thread = threading.get_ident()
    assert analyzer.calls and all(thread != loop_thread for thread, _ in analyzer.calls)
    scored = sum(n for _, n in analyzer.calls)
    assert scored == sum(f.num_samples for f in frames) // WINDOW == vad.windows_scored
    assert len(analyzer.calls) <= scored // 2  # at least two windows per thread hop


@pytest.mark.anyio
async def test_input_at_a_rate_silero_cannot_take_ends_the_session_with_a_clear_error() -> None:
    task = PipelineTask(Pipeline([VADProcessor()]), PipelineParams(idle_timeout_s=None, audio_in_sample_rate=8000))
    with pytest.raises(PipelineError, match="Silero VAD needs 16000 Hz input audio, got 8000 Hz"), anyio.fail_after(30):
        await task.run()
