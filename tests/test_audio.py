"""The one loudness rule (-40 dBFS RMS in short windows) and the audio timeline."""

from __future__ import annotations

import numpy as np
import pytest

from voxframe.pipeline.audio import (
    AudioTimeline,
    amplitude,
    first_loud_sample,
    last_loud_sample,
    level_dbfs,
    loud,
    loud_windows,
)
from voxframe.pipeline.clock import NS_PER_S

RATE = 16_000
WINDOW = RATE // 100  # the 10 ms windows the ear and the mouth point use


def tone(dbfs: float, samples: int) -> np.ndarray:
    """A sine whose RMS is `dbfs` (peak = RMS * sqrt 2), with whole periods in each 10 ms window."""
    t = np.arange(samples)
    return np.round(amplitude(dbfs) * np.sqrt(2) * np.sin(2 * np.pi * 400 * t / RATE)).astype(np.int16)


def test_digital_silence_is_quiet_and_reads_minus_100_dbfs() -> None:
    silence = np.zeros(RATE, np.int16)
    assert not loud_windows(silence, WINDOW).any()
    assert first_loud_sample(silence, RATE) is None
    assert last_loud_sample(silence, RATE) == 0
    assert level_dbfs(silence) == pytest.approx(-100.0)


def test_a_tone_at_minus_39_dbfs_is_audible_and_one_at_minus_41_is_not() -> None:
    assert loud_windows(tone(-39, RATE), WINDOW).all()
    assert not loud_windows(tone(-41, RATE), WINDOW).any()
    assert float(level_dbfs(tone(-39, RATE))) == pytest.approx(-39, abs=0.05)


def test_the_threshold_itself_counts_as_loud() -> None:
    square = np.full(WINDOW, 328, np.int16)  # RMS 328 >= 32768 * 10**-2 = 327.68
    assert loud(square)
    assert not loud(np.full(WINDOW, 327, np.int16))


def test_full_scale_reads_zero_dbfs() -> None:
    assert float(level_dbfs(np.full(WINDOW, -32768, np.int16))) == pytest.approx(0.0, abs=1e-3)


def test_loud_windows_judges_whole_windows_only() -> None:
    audio = np.concatenate([np.zeros(2 * WINDOW, np.int16), tone(-20, WINDOW), tone(-20, WINDOW - 1)])
    assert loud_windows(audio, WINDOW).tolist() == [False, False, True]  # the short tail is not judged
    assert loud_windows(audio[: WINDOW - 1], WINDOW).size == 0


def test_first_and_last_loud_sample_fall_on_window_boundaries() -> None:
    # Sound from sample 250 to 1050: windows 1..6 (160-sample windows) hold some of it.
    audio = np.zeros(RATE // 10, np.int16)
    audio[250:1050] = tone(-10, 800)
    assert first_loud_sample(audio, RATE) == 1 * WINDOW
    assert last_loud_sample(audio, RATE) == 7 * WINDOW


def test_a_window_loud_only_in_part_is_judged_by_its_whole_rms() -> None:
    # 10 of 160 samples at -10 dBFS: RMS is 10*log10(10/160) = 12 dB lower, still above -40.
    audio = np.zeros(WINDOW, np.int16)
    audio[:10] = tone(-10, 10)
    assert loud(audio)
    audio[:10] = tone(-30, 10)  # 12 dB lower: -42 dBFS over the window
    assert not loud(audio)


def test_a_custom_threshold_moves_the_edge() -> None:
    assert loud_windows(tone(-35, WINDOW), WINDOW, threshold_dbfs=-34).tolist() == [False]
    assert loud_windows(tone(-35, WINDOW), WINDOW, threshold_dbfs=-36).tolist() == [True]


def test_the_timeline_maps_samples_to_arrival_times_and_back() -> None:
    timeline = AudioTimeline(RATE)
    assert timeline.time_of(0) is None and timeline.position_at(5) == 0
    frame = RATE // 50  # 20 ms frames, each created when its last sample arrived
    for i in range(3):
        timeline.append(frame, (i + 1) * NS_PER_S // 50)
    assert timeline.time_of(frame) == NS_PER_S // 50
    assert timeline.time_of(frame + RATE // 100) == NS_PER_S // 50 + NS_PER_S // 100
    assert timeline.position_at(NS_PER_S // 100 * 3) == frame + RATE // 100
    assert timeline.position_at(NS_PER_S) == 3 * frame  # clipped to what was received
