"""The headless client's ear: onsets and offsets on the playout timeline, sample-accurate."""

from __future__ import annotations

import numpy as np
from webrtc_helpers import MS, tone

from voxframe.transports.webrtc import OnsetDetector, OnsetOptions

RATE = 48_000
CHUNK = 960  # 20 ms


def chunks(audio: np.ndarray) -> list[np.ndarray]:
    return [audio[i : i + CHUNK] for i in range(0, len(audio), CHUNK)]


def speech_at(start_s: float, length_s: float, total_s: float) -> np.ndarray:
    audio = np.zeros(int(total_s * RATE), dtype=np.int16)
    begin = int(start_s * RATE)
    audio[begin : begin + int(length_s * RATE)] = tone(440.0, length_s, RATE)
    return audio


def test_onset_is_when_the_first_loud_sample_plays_not_when_its_chunk_was_captured() -> None:
    detector = OnsetDetector(RATE)
    # Speech starts 10 ms into the 6th chunk; chunks arrive on time, every 20 ms from t=1 s.
    for i, chunk in enumerate(chunks(speech_at(0.11, 0.3, 1.0))):
        detector.feed(chunk, 1_000 * MS + i * 20 * MS)
    assert detector.segments[0].onset_ns == 1_000 * MS + 5 * 20 * MS + 10 * MS
    assert detector.segments[0].offset_ns == 1_000 * MS + 410 * MS


def test_a_burst_of_chunks_plays_one_after_another() -> None:
    detector = OnsetDetector(RATE)
    audio = chunks(speech_at(0.02, 0.1, 0.2))
    detector.feed(audio[0], 0)
    detector.feed(audio[1], 50 * MS)  # late...
    detector.feed(audio[2], 50 * MS)  # ...and the next one came with it: it plays after it
    assert detector.segments[0].onset_ns == 50 * MS
    assert detector.last_loud_end_ns == 90 * MS


def test_the_ear_catches_up_on_quiet_audio_and_never_lags_without_end() -> None:
    detector = OnsetDetector(RATE, OnsetOptions(max_playout_lag_ms=60))
    loud = tone(440.0, 0.02, RATE)
    for _ in range(4):  # 80 ms of speech arriving at once: queued behind each other
        detector.feed(loud, 0)
    assert detector.last_loud_end_ns == 80 * MS
    detector.feed(loud, 0)  # would start 80 ms late: beyond the limit, so it plays on arrival
    assert detector.last_loud_end_ns == 20 * MS

    quiet_ear = OnsetDetector(RATE)
    for _ in range(3):
        quiet_ear.feed(np.zeros(CHUNK, dtype=np.int16), 100 * MS)  # silence in a burst: dropped
    quiet_ear.feed(loud, 100 * MS)
    assert quiet_ear.segments[0].onset_ns == 100 * MS


def test_quiet_gaps_separate_segments_and_close_them() -> None:
    detector = OnsetDetector(RATE, OnsetOptions(min_gap_s=0.2))
    audio = np.concatenate([speech_at(0.0, 0.1, 0.4), speech_at(0.0, 0.1, 0.2)])
    for i, chunk in enumerate(chunks(audio)):
        detector.feed(chunk, i * 20 * MS)
    assert [(s.onset_ns, s.offset_ns) for s in detector.segments] == [(0, 100 * MS), (400 * MS, None)]
    detector.close_gaps(700 * MS)
    assert detector.segments[1].offset_ns == 500 * MS
