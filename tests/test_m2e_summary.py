"""The mouth-to-ear benchmark's bookkeeping: what counts as a miss, what a row's figures are.

A benchmark that drops a turn it could not measure reads better than the bot is: these pin that
every miss is counted and printed, that the percentiles leave misses out, that the stacks are
interleaved block by block with the same seeds, and what the last line says.
"""

from __future__ import annotations

from m2e_measure import Turn
from m2e_script import FAKE_AUDIO_LEAD_S, ScriptedDeepgram, reply_text, settle_tokens
from m2e_summary import (
    Block,
    StackResult,
    Timing,
    answering_request,
    blocks,
    drawn_service_s,
    figures_line,
    interleave,
    miss_of,
    next_start_ns,
    overhead_ms,
    pipecat_records,
    ratio,
    requests_between,
    rows,
    utterance_seed,
)

MS = 1_000_000
LONG = "Tell me a long story."


def turn(text: str = "What time is it?", start_ms: int = 0, reply_ms: int | None = 2_000) -> Turn:
    return Turn(
        text,
        start_ns=start_ms * MS,
        speech_start_ns=(start_ms + 100) * MS,
        speech_end_ns=(start_ms + 1_000) * MS,
        reply_ns=None if reply_ms is None else (start_ms + reply_ms) * MS,
    )


def outcome(m2e_ms: float | None, miss: str | None = None, overhead: float | None = None) -> dict[str, object]:
    return {"text": "x", "m2e_ms": m2e_ms, "miss": miss, "overhead_ms": overhead, "points_ms": {}}


def test_a_turn_is_missed_without_a_reply_without_a_request_or_answering_other_words() -> None:
    assert miss_of(turn(reply_ms=None), None) == "no reply"
    assert miss_of(turn(), None) == "no request"
    assert miss_of(turn(), {"at_ns": 0, "user": "Hello."}) == "wrong words"
    assert miss_of(turn(), {"at_ns": 0, "user": " What  time is it? "}) is None


def test_the_reply_heard_answers_the_last_request_made_before_it() -> None:
    t = turn(start_ms=10_000)
    before, pause, stop, after = ({"at_ns": ms * MS, "user": "u"} for ms in (9_000, 11_200, 11_500, 12_100))
    assert answering_request(t, [before, pause, stop, after], until_ns=0) is stop
    assert answering_request(t, [before, after], until_ns=0) is None
    # Without a reply: the last request until the deadline given.
    assert answering_request(turn(start_ms=10_000, reply_ms=None), [pause, after], until_ns=13_000 * MS) is after


def test_misses_are_counted_and_left_out_of_the_percentiles_not_dropped() -> None:
    side = rows(0.5, 0.2)["plain"][0]
    result = StackResult(side, bargein_ms=[300.0, None, 280.0], llm_requests=9, utterances=6)
    result.turns = [outcome(900.0, overhead=10.0), outcome(None, "no reply"), outcome(700.0, "wrong words")]
    result.turns.append(outcome(1_100.0, overhead=30.0))
    assert result.m2e() == [900.0, 1_100.0]
    assert result.misses() == {"no reply": 1, "wrong words": 1, "barge-in not stopped": 1}
    summary = result.summary()
    assert (summary["turns"], summary["replies"], summary["missed"]) == (4, 2, 3)
    assert summary["m2e_ms"]["p50"] == 1_000.0 and summary["m2e_ms"]["n"] == 2
    assert summary["bargein_ms"]["n"] == 2 and summary["bargein_trials"] == 3
    assert summary["llm_requests_per_turn"] == 1.5
    embedded = StackResult(rows(0.5, 0.2)["embedded"][0], utterances=6)
    assert embedded.summary()["llm_requests_per_turn"] is None  # no request log, not "no requests"


def test_blocks_cover_every_turn_and_spread_the_bargeins() -> None:
    plan = blocks(turns=25, bargeins=7, size=10)
    assert [list(b.turns) for b in plan] == [list(range(10)), list(range(10, 20)), list(range(20, 25))]
    assert [b.bargeins for b in plan] == [3, 2, 2]
    assert sum(b.bargeins for b in blocks(100, 30, 10)) == 30
    assert blocks(0, 2, 10) == [Block(0, range(0), 2)]


def test_the_stacks_alternate_block_by_block_with_the_same_seeds() -> None:
    plan = blocks(turns=4, bargeins=0, size=2)
    order = interleave(plan, ["voxframe", "pipecat"])
    assert [(b.index, s) for b, s in order] == [(0, "voxframe"), (0, "pipecat"), (1, "voxframe"), (1, "pipecat")]
    # A turn's seed depends on where it is in the conversation, not on the stack.
    seeds = {(b.index, p): utterance_seed(1, b, p) for b, _ in order for p in range(3)}
    assert len(set(seeds.values())) == len(seeds)


def test_the_configured_time_is_what_each_side_must_wait_by_its_settings() -> None:
    final, rest = 0.05, 0.8
    # No speculation: finalize at the stop, then everything.
    assert Timing(0.5, 0.5).configured_s(final, rest) == 0.5 + final + rest
    # Finalize early, start at the stop: the final is hidden in the wait.
    assert Timing(0.2, 0.5).configured_s(final, rest) == 0.5 + rest
    # Preemptive: the reply is ready at the pause plus everything, heard not before the stop.
    assert Timing(0.2, 0.5, preemptive=True).configured_s(final, rest) == 0.2 + final + rest
    assert Timing(0.2, 0.5, preemptive=True).configured_s(0.01, 0.1) == 0.5
    assert overhead_ms(1_400.0, Timing(0.5, 0.5), final + rest, final) == 1_400.0 - 1_350.0
    assert overhead_ms(1_400.0, None, final + rest, final) is None  # Smart Turn decides: no configured time


def test_the_rows_pair_voxframe_options_with_pipecat_configured_alike() -> None:
    table = rows(0.5, 0.2)
    assert table["plain"][0].env == {
        "VOXFRAME_VAD_PAUSE_S": "off",
        "VOXFRAME_PREEMPTIVE": "0",
        "VOXFRAME_TURN": "silence",
    }
    assert table["plain"][1].pipecat_config == "plain"
    assert table["early"][1] == table["preemptive"][1]
    assert table["early"][0].env["VOXFRAME_PREEMPTIVE"] == "0"
    assert table["preemptive"][0].env["VOXFRAME_PREEMPTIVE"] == "1"
    assert table["shipped"][0].env == {} and table["shipped"][1].pipecat_config == "shipped"
    assert table["shipped"][0].timing is None and table["shipped"][1].timing is None  # the models decide
    assert len(table["embedded"]) == 1


def test_the_service_time_adds_up_what_the_turns_fakes_drew() -> None:
    t = turn()
    request = {"at_ns": 1_550 * MS, "user": t.text}
    draws = {
        "deepgram": [[50 * MS, "finalize", 9.0], [1_520 * MS, "finalize", 0.06]],  # the first is an earlier turn's
        "openai": [[1_551 * MS, "ttft", 0.7]],
        "cartesia": [[1_900 * MS, "ttfa", 0.18], [1_990 * MS, "ttfa", 5.0]],
    }
    reply = reply_text(t.text, LONG)
    expected = 0.06 + 0.7 + 0.015 * settle_tokens(reply) + 0.18 + FAKE_AUDIO_LEAD_S
    assert drawn_service_s(t, request, draws, LONG) == expected
    assert drawn_service_s(t, request, {**draws, "cartesia": []}, LONG) is None


def test_the_pipecat_points_group_into_one_record_per_vad_stop() -> None:
    lines = [
        {"vad_stop_ns": 5, "point": "vad_stop", "ns": 5},
        {"vad_stop_ns": 5, "point": "speech_end", "ns": 3},
        {"vad_stop_ns": 9, "point": "vad_stop", "ns": 9},
        {"vad_stop_ns": 5, "point": "stt_final", "ns": 6},
    ]
    assert pipecat_records(lines) == [
        {"speech_end_ns": 3, "points_ns": {"vad_stop": 5, "stt_final": 6}},
        {"speech_end_ns": None, "points_ns": {"vad_stop": 9}},
    ]


def test_the_scripted_stt_gives_the_words_once_per_utterance_said() -> None:
    fake = ScriptedDeepgram()
    fake.expect("What time is it?")
    assert fake.transcript(3) == "What time is it?"
    assert fake.transcript(3) == "What time is it?"  # interims and the final agree
    assert fake.transcript(4) == ""  # the same utterance, split by a pause: no words twice
    fake.expect("Thanks.")
    assert fake.transcript(5) == "Thanks."


def test_the_last_line_has_a_ratio_per_row_and_every_miss() -> None:
    table = rows(0.5, 0.2)
    ours, peer = StackResult(table["plain"][0]), StackResult(table["plain"][1])
    ours.turns, ours.llm_requests, ours.utterances = [outcome(800.0, overhead=20.0), outcome(None, "no reply")], 3, 3
    peer.turns, peer.llm_requests, peer.utterances = [outcome(1_200.0), outcome(1_000.0)], 3, 3
    peer.bargein_ms = [None]
    assert ratio([ours, peer]) == 1_100.0 / 800.0
    line = figures_line({"plain": [ours, peer]})
    fields = dict(item.split("=") for item in line.split())
    assert fields["ratio_plain"] == "1.38"
    assert (fields["replies"], fields["turns"], fields["missed"]) == ("3", "4", "2")
    assert fields["voxframe_llm_requests_per_turn"] == "1.00" and fields["pipecat_bargein_p50_ms"] == "nan"
    # A row where one side never answered has no ratio, not a flattering one.
    assert ratio([StackResult(table["plain"][0]), peer]) is None


def test_a_turns_llm_requests_are_those_until_the_next_utterance() -> None:
    t = turn(start_ms=10_000)
    starts = [0, 10_000 * MS, 14_000 * MS, 20_000 * MS]
    until = next_start_ns(t, starts, timeout_s=20)
    assert until == 14_000 * MS
    assert next_start_ns(turn(start_ms=30_000), starts, timeout_s=20) == 50_000 * MS
    requests = [{"at_ns": ms * MS, "user": "u"} for ms in (9_000, 11_200, 11_500, 14_000)]
    assert requests_between(requests, t.start_ns, until) == 2  # a preemptive reply and the one heard
