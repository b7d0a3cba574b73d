"""Measuring a voice bot from the caller's side: mouth-to-ear, barge-in reaction, the waterfall.

A `Caller` drives the headless WebRTC client like a person: it says an utterance, waits for the
reply, waits until the bot has been quiet for a moment, says the next. Everything is on the
client's clock, the monotonic clock the bot's process shares:

* mouth-to-ear: the last speech sample of the utterance entered the microphone
  (`PlayedUtterance.speech_end_ns`) -> the first audible sample of the reply at the ear (the
  client's first onset after it);
* barge-in reaction: the first speech sample of an utterance said over the bot's reply entered
  the microphone -> the last audible sample of that reply at the ear (the end of the ear's
  speech segment that was playing then).

The bot's own trace (`TurnRecord`s from the runner's `--trace-out`) is joined turn by turn by
the speech end its VAD saw, which follows the microphone's by the uplink delay.

When a sample is "at the ear" is the client's detector's business: a received frame plays from
its arrival on (LATENCY.md: the first audible sample leaving the client's jitter buffer).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from voxframe.pipeline.audio import first_loud_sample
from voxframe.pipeline.clock import NS_PER_S, fail_at
from voxframe.transports.webrtc import HeadlessClient, SpeechSegment

NS_PER_MS = 1_000_000
#: A record's VAD speech end may precede the microphone's by rounding, and follows it by the uplink.
_MATCH_BEFORE_NS = 100 * NS_PER_MS
_MATCH_AFTER_NS = 1_500 * NS_PER_MS


@dataclass(slots=True)
class Turn:
    """One utterance said into the microphone, and what the ear heard after it (monotonic ns)."""

    text: str
    start_ns: int
    speech_start_ns: int
    speech_end_ns: int
    reply_ns: int | None  # the first audible sample of the reply at the ear

    @property
    def mouth_to_ear_ms(self) -> float | None:
        return None if self.reply_ns is None else (self.reply_ns - self.speech_end_ns) / NS_PER_MS


def bargein_reaction_ms(speech_start_ns: int, ear_segments: Sequence[SpeechSegment]) -> float | None:
    """From user speech starting over the bot to the last bot sample heard (None: bot was quiet)."""
    for segment in ear_segments:
        ended = segment.offset_ns
        if segment.onset_ns <= speech_start_ns and ended is not None and ended >= speech_start_ns:
            return (ended - speech_start_ns) / NS_PER_MS
    return None


class Caller:
    """A person on a call, scripted: says utterances, listens, barges in."""

    def __init__(
        self,
        client: HeadlessClient,
        *,
        reply_timeout_s: float = 20.0,
        quiet_s: float = 1.0,
        before_say: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.client = client
        self.reply_timeout_s = reply_timeout_s
        self.quiet_s = quiet_s
        #: Called with the text before every utterance (the benchmark tells its fakes what comes).
        self.before_say = before_say
        #: When each utterance said on this call started (monotonic ns), in order.
        self.starts: list[int] = []

    async def say(self, text: str, pcm: np.ndarray, rate: int) -> Turn:
        """Say `pcm` and wait for the first sound of the reply (None after `reply_timeout_s`)."""
        if self.before_say is not None:
            await self.before_say(text)
        played = await self.client.play(pcm, rate)
        self.starts.append(played.start_ns)
        first = first_loud_sample(pcm, rate)
        speech_start_ns = played.start_ns + (first or 0) * NS_PER_S // rate
        try:
            reply_ns: int | None = await self.client.wait_for_onset(
                after_ns=played.speech_end_ns, timeout_s=self.reply_timeout_s
            )
        except TimeoutError:
            reply_ns = None
        return Turn(text, played.start_ns, speech_start_ns, played.speech_end_ns, reply_ns)

    async def wait_quiet(self, timeout_s: float = 120.0) -> None:
        """Wait until the bot has said nothing for `quiet_s` (it finished its reply)."""
        gap_ns = int(self.client.options.onsets.min_gap_s * NS_PER_S)
        clock = self.client.clock
        async with fail_at(clock.now_ns() + round(timeout_s * NS_PER_S), clock):
            while True:
                await self.client.wait_for_silence(after_ns=clock.now_ns(), timeout_s=timeout_s)
                try:
                    await self.client.wait_for_onset(after_ns=clock.now_ns() - gap_ns, timeout_s=self.quiet_s)
                except TimeoutError:
                    return

    async def barge_in(
        self, question: tuple[str, np.ndarray], interruption: tuple[str, np.ndarray], rate: int, into_reply_s: float
    ) -> tuple[Turn, Turn, float | None]:
        """Ask `question`, then say `interruption` `into_reply_s` after its reply started.

        Returns both turns and the barge-in reaction (None when the reply had already ended).
        """
        asked = await self.say(*question, rate)
        if asked.reply_ns is not None:
            await self.client.clock.sleep_until(asked.reply_ns + int(into_reply_s * NS_PER_S))
        cut_in = await self.say(*interruption, rate)
        await self.wait_quiet()
        reaction = None if asked.reply_ns is None else bargein_reaction_ms(cut_in.speech_start_ns, self.segments())
        return asked, cut_in, reaction

    def segments(self) -> list[SpeechSegment]:
        self.client.detector.close_gaps(self.client.clock.now_ns())
        return list(self.client.detector.segments)


# --- joining the bot's trace -------------------------------------------------------------------------


def match_record(turn: Turn, records: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The bot's record of the reply to `turn`: the first whose VAD speech end follows the mic's."""
    lo, hi = turn.speech_end_ns - _MATCH_BEFORE_NS, turn.speech_end_ns + _MATCH_AFTER_NS
    candidates = [r for r in records if r.get("speech_end_ns") is not None and lo <= r["speech_end_ns"] <= hi]
    return min(candidates, key=lambda r: r["speech_end_ns"]) if candidates else None


def waterfall_points(turn: Turn, record: Mapping[str, Any] | None) -> dict[str, float]:
    """The turn's points in ms from the end of the user's speech at the microphone."""
    points_ns: dict[str, int] = {"mic_speech_end": turn.speech_end_ns}
    if record is not None:
        points_ns["speech_end"] = record["speech_end_ns"]  # the VAD's (also traced by it)
        points_ns.update(record.get("points_ns", {}))
    if turn.reply_ns is not None:
        points_ns["ear_first_audio"] = turn.reply_ns
    ordered = sorted(points_ns.items(), key=lambda kv: kv[1])
    return {name: round((t - turn.speech_end_ns) / NS_PER_MS, 2) for name, t in ordered}


def turn_result(turn: Turn, record: Mapping[str, Any] | None) -> dict[str, Any]:
    points = waterfall_points(turn, record)
    return {
        "text": turn.text,
        "m2e_ms": None if turn.mouth_to_ear_ms is None else round(turn.mouth_to_ear_ms, 2),
        "heard": record.get("heard") if record else None,
        "said": record.get("said") if record else None,
        # The reply was prepared at the user's pause: its transcript was final before the stop.
        "prepared_at_pause": points.get("stt_final", math.inf) < points.get("vad_stop", -math.inf),
        "points_ms": points,
    }


__all__ = [
    "Caller",
    "Turn",
    "bargein_reaction_ms",
    "first_loud_sample",
    "match_record",
    "turn_result",
    "waterfall_points",
]
