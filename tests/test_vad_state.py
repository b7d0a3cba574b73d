"""The turn-taking state machine on plain numbers: start/stop delays, hysteresis, volume, bounds."""

from __future__ import annotations

import pytest

from voxframe.processors.vad import (
    ScoredWindow,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    SpeechStateMachine,
    SpeechStopped,
    VADParams,
    VADState,
)

W = 512  # samples per window (32 ms at 16 kHz)
RATE = 16_000


def window(i: int, confidence: float, dbfs: float = -20.0, loud: tuple[int, int] | None = (0, W)) -> ScoredWindow:
    """Window i with `loud` = (first loud offset, end of last loud offset) inside it, or None."""
    start = i * W
    if loud is None:
        return ScoredWindow(start, start + W, confidence, dbfs)
    first, last = loud
    return ScoredWindow(
        start, start + W, confidence, dbfs, start + first, start + last, start + first if last == W else None
    )


def run(machine: SpeechStateMachine, windows: list[ScoredWindow]) -> list[tuple[int, object]]:
    """(window index, event) for every event the windows complete."""
    return [(i, e) for i, w in enumerate(windows) if (e := machine.feed(w)) is not None]


def test_speech_starts_only_after_start_s_and_is_dated_at_its_first_window() -> None:
    machine = SpeechStateMachine(VADParams(start_s=0.2), RATE)  # 3200 samples: the 7th window
    events = run(machine, [window(i, 0.0, -90, None) for i in range(3)] + [window(i, 0.9) for i in range(3, 12)])
    assert events == [(9, SpeechStarted(3 * W))]
    assert machine.state is VADState.SPEAKING


def test_a_burst_shorter_than_start_s_never_starts() -> None:
    machine = SpeechStateMachine(VADParams(start_s=0.2), RATE)
    windows = [window(i, 0.9) for i in range(5)] + [window(i, 0.0, -90, None) for i in range(5, 30)]
    assert run(machine, windows) == []
    assert machine.state is VADState.QUIET


def test_short_gaps_do_not_restart_the_start_count_but_long_ones_do() -> None:
    params = VADParams(start_s=0.2, start_gap_s=0.1)  # gap budget 1600 samples: 3 windows = 1536
    quiet = [window(i, 0.0, -90, None) for i in range(4, 7)]
    events = run(
        SpeechStateMachine(params, RATE),
        [*[window(i, 0.9) for i in range(4)], *quiet, *[window(i, 0.9) for i in range(7, 12)]],
    )
    assert events == [(9, SpeechStarted(0))]
    long_quiet = [window(i, 0.0, -90, None) for i in range(4, 8)]
    events = run(
        SpeechStateMachine(params, RATE),
        [*[window(i, 0.9) for i in range(4)], *long_quiet, *[window(i, 0.9) for i in range(8, 16)]],
    )
    assert events == [(14, SpeechStarted(8 * W))]


def test_speech_stops_after_stop_s_of_silence_dated_at_the_end_of_the_last_loud_block() -> None:
    machine = SpeechStateMachine(VADParams(start_s=0.0, stop_s=0.5), RATE)  # 8000 samples
    windows = [window(i, 0.9) for i in range(10)]
    windows.append(window(10, 0.9, loud=(0, 200)))  # the speech fades out 200 samples in
    windows += [window(i, 0.0, -90, None) for i in range(11, 40)]
    events = run(machine, windows)
    end = 10 * W + 200
    stop_index = next(i for i in range(11, 40) if (i + 1) * W - end >= 8000)
    assert events == [(0, SpeechStarted(0)), (stop_index, SpeechStopped(end))]


def test_a_faint_tail_the_model_still_calls_speech_is_where_the_silence_starts() -> None:
    machine = SpeechStateMachine(VADParams(start_s=0.0, stop_s=0.5, min_volume_dbfs=-45, edge_dbfs=-40), RATE)
    speech = [window(i, 0.9) for i in range(10)]
    tail = [window(i, 0.9, dbfs=-43, loud=None) for i in range(10, 13)]  # no 4 ms block reaches -40
    quiet = [window(i, 0.0, -90, None) for i in range(13, 40)]
    events = run(machine, [*speech, *tail, *quiet])
    stop_index = next(i for i in range(10, 40) if (i + 1) * W - 10 * W >= 8000)
    assert events == [(0, SpeechStarted(0)), (stop_index, SpeechStopped(10 * W))]


def test_edges_cannot_be_quieter_than_speech() -> None:
    with pytest.raises(ValueError, match="edge_dbfs"):
        VADParams(min_volume_dbfs=-40, edge_dbfs=-45)


def test_hysteresis_keeps_a_soft_syllable_in_the_speech() -> None:
    params = VADParams(confidence=0.5, start_s=0.0, stop_s=0.1)  # stop_confidence 0.35
    machine = SpeechStateMachine(params, RATE)
    soft = [window(i, 0.4) for i in range(1, 20)]  # below confidence, above stop_confidence
    assert run(machine, [window(0, 0.9), *soft]) == [(0, SpeechStarted(0))]
    assert machine.speaking
    quieter = [window(i, 0.3) for i in range(20, 30)]
    assert run(machine, quieter)[0][1] == SpeechStopped(20 * W)


def test_confident_but_too_quiet_windows_are_not_speech() -> None:
    machine = SpeechStateMachine(VADParams(start_s=0.0, min_volume_dbfs=-45), RATE)
    assert run(machine, [window(i, 0.99, dbfs=-60) for i in range(20)]) == []


def test_a_quiet_onset_moves_the_start_back_over_the_loud_blocks_that_lead_into_the_speech() -> None:
    machine = SpeechStateMachine(VADParams(start_s=0.0), RATE)
    windows = [
        window(0, 0.0, -90, None),
        window(1, 0.1, -40, loud=(384, W)),  # the onset: loud from 384 on, the model not yet sure
        window(2, 0.3, -30),  # loud throughout, still unsure
        window(3, 0.9),  # the model is sure now
    ]
    assert run(machine, windows) == [(3, SpeechStarted(W + 384))]
    # A quiet block in between ends the look-back.
    machine = SpeechStateMachine(VADParams(start_s=0.0), RATE)
    windows = [window(1, 0.1, -40), window(2, 0.3, -40, loud=(128, W)), window(3, 0.9)]
    assert run(machine, windows) == [(2, SpeechStarted(2 * W + 128))]


def test_flush_stops_a_user_still_speaking() -> None:
    machine = SpeechStateMachine(VADParams(start_s=0.0), RATE)
    run(machine, [window(i, 0.9) for i in range(3)])
    assert machine.flush() == SpeechStopped(3 * W)
    assert machine.flush() is None


def test_a_pause_short_of_the_stop_pauses_once_and_speech_resumes_it() -> None:
    machine = SpeechStateMachine(VADParams(start_s=0.0, stop_s=0.5, pause_s=0.2), RATE)  # 3200 / 8000 samples
    quiet = [window(i, 0.0, -90, None) for i in range(10, 20)]  # 5120 samples: a pause, not a stop
    speech_again = [window(i, 0.9) for i in range(20, 25)]
    tail = [window(i, 0.0, -90, None) for i in range(25, 42)]
    events = run(machine, [*[window(i, 0.9) for i in range(10)], *quiet, *speech_again, *tail])
    assert events == [
        (0, SpeechStarted(0)),
        (16, SpeechPaused(10 * W)),  # 7 quiet windows = 3584 samples >= 3200, once
        (20, SpeechResumed(20 * W)),
        (31, SpeechPaused(25 * W)),
        (40, SpeechStopped(25 * W)),  # 16 quiet windows = 8192 >= 8000
    ]


def test_pause_must_be_shorter_than_the_stop() -> None:
    with pytest.raises(ValueError, match="pause_s"):
        VADParams(stop_s=0.5, pause_s=0.5)


def test_quiet_audio_past_the_windows_decides_on_the_deadline_sample() -> None:
    machine = SpeechStateMachine(VADParams(start_s=0.0, stop_s=0.5, pause_s=0.2), RATE)
    run(machine, [window(i, 0.9) for i in range(10)] + [window(10, 0.9, loud=(0, 200))])
    speech_end = 10 * W + 200
    assert machine.next_deadline() == speech_end + 3200
    assert machine.quiet_until(speech_end + 3199) is None  # one sample short
    assert machine.quiet_until(speech_end + 3200) == SpeechPaused(speech_end)
    assert machine.next_deadline() == speech_end + 8000
    assert machine.quiet_until(speech_end + 8000) == SpeechStopped(speech_end)
    assert machine.next_deadline() is None and machine.state is VADState.QUIET
