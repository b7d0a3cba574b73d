"""The embedded-models benchmark's pure parts: matching finals to turns, and when a p95 is printed."""

from __future__ import annotations

from embedded_models import MIN_SAMPLES_FOR_P95, example_vad_options, match_turns, p95_or_none

MS = 1_000_000


def test_each_turn_takes_the_first_final_after_its_end_of_speech() -> None:
    # Turn 1 ends at 1000 ms, turn 2 starts at 2000 ms and ends at 3000 ms. A final during turn 1's
    # speech (a pause mid-sentence) is not its final; the one after its end is.
    turns = match_turns(
        ends_ns=[1000 * MS, 3000 * MS],
        next_starts_ns=[2000 * MS],
        pauses_ns=[700 * MS, 1200 * MS, 3200 * MS],
        finals_ns=[800 * MS, 1300 * MS, 1400 * MS, 3350 * MS],
    )
    assert turns.end_to_final_ms == [300.0, 350.0]
    assert turns.pause_to_final_ms == [100.0, 150.0]
    assert turns.missed == 0


def test_a_turn_without_a_final_before_the_next_one_is_missed_not_dropped() -> None:
    # Turn 1's final never came: the one at 2.5 s is in turn 2's speech, before its end.
    finals = [2500 * MS, 3400 * MS]
    turns = match_turns(ends_ns=[1000 * MS, 3000 * MS], next_starts_ns=[2000 * MS], pauses_ns=[], finals_ns=finals)
    assert turns.missed == 1
    assert turns.end_to_final_ms == [400.0]
    assert turns.pause_to_final_ms == []


def test_no_p95_over_fewer_than_twenty_samples() -> None:
    assert MIN_SAMPLES_FOR_P95 == 20
    assert p95_or_none([1.0] * 19) is None
    assert p95_or_none([float(i) for i in range(1, 21)]) == 19.05


def test_the_vad_is_the_examples() -> None:
    options = example_vad_options()
    assert (options.params.stop_s, options.params.pause_s, options.windows_per_hop) == (0.5, 0.2, 1)
