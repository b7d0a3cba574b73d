"""The capacity benchmark's pure parts: the echo-content judge and the load search."""

from __future__ import annotations

import numpy as np
import pytest
from capacity import Window, judge
from capacity_calls import RATE, echo_frames_right, tone_hz, tone_share
from capacity_search import LoadSearch


def tone(hz: float, seconds: float, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return np.round(amplitude * 32767 * np.sin(2 * np.pi * hz * t + 0.7)).astype(np.int16)


def test_a_calls_own_tone_is_right_echo_frame_by_frame() -> None:
    assert echo_frames_right(tone(tone_hz(3), 1.0), tone_hz(3)) == 50


def test_silence_filler_and_a_quiet_tone_are_not_echo() -> None:
    assert echo_frames_right(np.zeros(RATE, np.int16), tone_hz(0)) == 0
    assert echo_frames_right(tone(tone_hz(0), 1.0, amplitude=0.001), tone_hz(0)) == 0


def test_the_neighbouring_calls_tone_is_not_this_calls_echo() -> None:
    assert echo_frames_right(tone(tone_hz(4), 1.0), tone_hz(5)) == 0
    assert tone_share(tone(tone_hz(4), 0.02), tone_hz(5)) < 0.01


def test_noise_is_not_echo_but_a_noisy_tone_is() -> None:
    noise = np.random.default_rng(1).normal(0, 3000, RATE).astype(np.int16)
    assert echo_frames_right(noise, tone_hz(2)) == 0
    assert echo_frames_right((tone(tone_hz(2), 1.0) + noise // 4).astype(np.int16), tone_hz(2)) == 50


def test_a_gap_in_the_echo_costs_its_frames() -> None:
    audio = tone(tone_hz(1), 1.0)
    audio[RATE // 2 : RATE // 2 + 10 * 960] = 0  # 200 ms of silence filler, frame-aligned
    assert echo_frames_right(audio, tone_hz(1)) == 40


def run(search: LoadSearch, capacity: int, flaky: set[tuple[int, int]] = frozenset()) -> list[int]:
    """Drive `search` against a server that holds loads <= capacity, except the (load, nth run)
    pairs in `flaky`; return the loads it ran."""
    loads: list[int] = []
    while (load := search.next_load()) is not None:
        assert len(loads) < 100
        nth = loads.count(load)
        loads.append(load)
        search.record(load, load <= capacity and (load, nth) not in flaky, probe_rtt_ms=float(load))
    return loads


def test_the_search_climbs_bisects_and_confirms_three_times() -> None:
    search = LoadSearch(start=12, step=6, maximum=64, confirmations=3)
    loads = run(search, capacity=20)
    assert loads == [12, 18, 24, 21, 19, 20, 20, 20, 20]
    assert (search.best, search.confirmed, search.capped) == (20, 3, False)
    assert search.rtt_at_best() == 20.0


def test_a_failed_re_run_moves_the_answer_one_lower_and_confirms_that() -> None:
    search = LoadSearch(start=12, step=6, maximum=64, confirmations=3)
    loads = run(search, capacity=20, flaky={(20, 2)})
    assert loads[-5:] == [20, 20, 19, 19, 19]
    assert search.best == 19


def test_the_search_stops_at_the_maximum_and_at_nothing() -> None:
    top = LoadSearch(start=4, step=4, maximum=10, confirmations=1)
    assert run(top, capacity=99) == [4, 8, 10, 10]
    assert top.best == 10 and top.capped
    none = LoadSearch(start=2, step=2, maximum=10, confirmations=3)
    assert run(none, capacity=0) == [2, 1]
    assert none.best == 0 and np.isnan(none.rtt_at_best())


def test_a_fixed_load_is_the_answer_only_if_every_run_holds() -> None:
    good = LoadSearch(start=1, step=1, maximum=9, confirmations=2, fixed=3)
    assert run(good, capacity=3) == [3, 3, 3]
    assert good.best == 3
    bad = LoadSearch(start=1, step=1, maximum=9, confirmations=2, fixed=3)
    assert run(bad, capacity=3, flaky={(3, 1)}) == [3, 3]
    assert bad.best == 0


def test_a_run_of_another_load_than_asked_is_refused() -> None:
    search = LoadSearch(start=5, step=1, maximum=9)
    with pytest.raises(ValueError, match="asked for a run of 5"):
        search.record(6, True)


def window(server_s: float = 10.0, received: int = 500, right: int = 500, **session: int) -> Window:
    """Two sessions (the probe's and one light call's) over a `server_s` server window."""
    start = {"received": 100, "dropped": 0, "underruns": 0, "track_dropped": 0}
    end = {"received": 100 + received, "dropped": 0, "underruns": 0, "track_dropped": 0} | session
    return Window(
        before={"now_s": 100.0, "sessions": {"a": start, "b": start}},
        after={"now_s": 100.0 + server_s, "sessions": {"a": end, "b": end}},
        lag_ms=[1.0] * 99 + [50.0],
        server_cpu_s=1.0,
        callers=[{"received": [500], "right": [right], "elapsed": 10.0}],
        probe={"sent": 19, "rtts_ms": [40.0] * 19},
    )


def test_a_load_holds_when_input_echo_probe_and_loop_all_keep_up() -> None:
    outcome = judge(2, window())
    assert outcome.holds, outcome.why
    assert outcome.cpu_per_session_pct == 5.0  # 1 s of CPU over 10 s of server time, 2 sessions
    assert outcome.probe_rtt_p50_ms == 40.0


def test_input_is_judged_on_the_servers_own_elapsed_time() -> None:
    # The callers' 10 s window held 500 frames each, but the server's own window was 11 s long.
    outcome = judge(2, window(server_s=11.0))
    assert not outcome.holds and "input behind real time" in outcome.why


def test_silence_filler_fails_the_load_though_every_packet_came_back() -> None:
    outcome = judge(2, window(right=400))
    assert not outcome.holds and outcome.why == "echo short or wrong"


def test_underruns_and_dropped_output_count_against_each_session() -> None:
    assert judge(2, window(underruns=10, track_dropped=5)).holds  # 15 of 500 frames: within 3 %
    outcome = judge(2, window(underruns=10, track_dropped=6))
    assert not outcome.holds and outcome.why == "2 sessions' output short"
    assert outcome.output_misses == 32


def test_a_missing_session_an_unheard_burst_and_a_late_loop_each_fail() -> None:
    assert "1 sessions missing" in judge(3, window()).why
    late = window()
    late.lag_ms = [1.0] * 98 + [50.0] * 2
    assert judge(2, late).why == "event loop late"
    unheard = window()
    unheard.probe = {"sent": 19, "rtts_ms": [40.0] * 18}
    assert judge(2, unheard).why == "probe bursts unheard"
