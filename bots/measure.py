"""Mouth-to-ear measurement at the client: where speech starts and stops, on the monotonic clock.

A call leaves two audio logs at the client: what went into its microphone and what came out of
its jitter buffer (the ear). Each log keeps its audio and, per chunk, the `time.monotonic_ns()`
at which the chunk's first sample passed that point. The bot process reads the same clock (Linux
monotonic time is system-wide), so its tracer points line up with these.

* mouth-to-ear of a turn: the last speech sample the user said (mic) -> the first audible sample
  of the reply (ear);
* barge-in reaction: the first speech sample of the user talking over the bot (mic) -> the last
  audible sample of the bot's cut-off reply (ear).

Speech is found by level: 5 ms windows above `SPEECH_DBFS` (decoded Opus silence is far below
it, speech far above), with short dips bridged so a word's closure does not split it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NS_PER_S = 1_000_000_000
SPEECH_DBFS = -45.0
WINDOW_MS = 5


def window_levels(pcm: np.ndarray, rate: int) -> np.ndarray:
    """RMS level (dBFS) of consecutive `WINDOW_MS` windows; a partial tail window counts too."""
    size = rate * WINDOW_MS // 1000
    count = -(-len(pcm) // size)
    padded = np.zeros(count * size, dtype=np.float32)
    padded[: len(pcm)] = pcm.astype(np.float32) / 32768.0
    windows = padded.reshape(count, size)
    return 20.0 * np.log10(np.sqrt(np.mean(windows * windows, axis=1)) + 1e-6)


def speech_spans(
    pcm: np.ndarray, rate: int, *, threshold_dbfs: float = SPEECH_DBFS, bridge_ms: int = 250
) -> list[tuple[int, int]]:
    """(first, end) sample of each stretch of speech; gaps shorter than `bridge_ms` are bridged."""
    size = rate * WINDOW_MS // 1000
    loud = np.flatnonzero(window_levels(pcm, rate) > threshold_dbfs)
    if loud.size == 0:
        return []
    bridge = max(1, bridge_ms // WINDOW_MS)
    breaks = np.flatnonzero(np.diff(loud) > bridge)
    firsts = np.concatenate(([loud[0]], loud[breaks + 1]))
    lasts = np.concatenate((loud[breaks], [loud[-1]]))
    return [(int(a) * size, min(len(pcm), (int(b) + 1) * size)) for a, b in zip(firsts, lasts, strict=True)]


def speech_bounds(pcm: np.ndarray, rate: int) -> tuple[int, int] | None:
    """First and end sample of all the speech in `pcm` (None: no speech at all)."""
    spans = speech_spans(pcm, rate)
    return (spans[0][0], spans[-1][1]) if spans else None


@dataclass(slots=True)
class AudioLog:
    """Audio that passed one point of a call (mic or ear), with when each chunk passed it."""

    rate: int
    _chunks: list[np.ndarray] = field(default_factory=list)
    _starts: list[int] = field(default_factory=list)
    _times: list[int] = field(default_factory=list)
    _samples: int = 0
    _joined: np.ndarray | None = None

    def append(self, pcm: np.ndarray, t_ns: int) -> None:
        """Log a chunk (int16 mono at `rate`) whose first sample passed at `t_ns`."""
        self._chunks.append(np.asarray(pcm, dtype=np.int16))
        self._starts.append(self._samples)
        self._times.append(t_ns)
        self._samples += len(pcm)
        self._joined = None

    @property
    def num_samples(self) -> int:
        return self._samples

    @property
    def pcm(self) -> np.ndarray:
        if self._joined is None:
            self._joined = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return self._joined

    def sample_ns(self, sample: int) -> int:
        """When sample number `sample` passed (its chunk's time plus its offset at `rate`)."""
        if not self._starts:
            raise ValueError("the log is empty")
        k = max(0, int(np.searchsorted(self._starts, sample, side="right")) - 1)
        return self._times[k] + (sample - self._starts[k]) * NS_PER_S // self.rate

    def sample_at(self, t_ns: int) -> int:
        """The first sample that passed at or after `t_ns` (`num_samples` if none did yet)."""
        k = int(np.searchsorted(self._times, t_ns, side="right")) - 1
        if k < 0:
            return 0
        offset = -(-(t_ns - self._times[k]) * self.rate // NS_PER_S)
        return min(self._starts[k] + offset, self._starts[k + 1] if k + 1 < len(self._starts) else self._samples)

    def spans_ns(self, start_ns: int, end_ns: int | None = None, *, bridge_ms: int = 250) -> list[tuple[int, int]]:
        """Speech heard between two instants, as (first sample ns, end ns) pairs."""
        a = self.sample_at(start_ns)
        b = self.num_samples if end_ns is None else self.sample_at(end_ns)
        spans = speech_spans(self.pcm[a:b], self.rate, bridge_ms=bridge_ms)
        return [(self.sample_ns(a + s), self.sample_ns(a + e)) for s, e in spans]


def first_speech_ns(log: AudioLog, after_ns: int, before_ns: int | None = None) -> int | None:
    """When the first audible sample after `after_ns` passed (None: silence until `before_ns`)."""
    spans = log.spans_ns(after_ns, before_ns)
    return spans[0][0] if spans else None


def speech_stop_ns(log: AudioLog, after_ns: int, *, gap_ms: int = 150) -> int | None:
    """End of the speech going on at `after_ns`: its last audible sample before a `gap_ms` gap.

    None when nothing was audible at `after_ns` (within one gap before it).
    """
    spans = log.spans_ns(after_ns - gap_ms * 1_000_000, bridge_ms=gap_ms)
    if not spans or spans[0][0] > after_ns:
        return None
    return spans[0][1]


@dataclass(frozen=True, slots=True)
class TurnTiming:
    """One user turn as the client saw it, in monotonic ns (None: never happened)."""

    speech_end_ns: int  # the user's last speech sample entered the microphone
    reply_ns: int | None  # the reply's first audible sample left the jitter buffer

    @property
    def mouth_to_ear_ms(self) -> float | None:
        return None if self.reply_ns is None else (self.reply_ns - self.speech_end_ns) / 1e6


def turn_timing(mic: AudioLog, ear: AudioLog, spoken_from: int, spoken_to: int, until_ns: int | None) -> TurnTiming:
    """Timing of the turn whose utterance went into the mic as samples [spoken_from, spoken_to).

    The reply is the first audible audio at the ear after the utterance's speech ended (and
    before `until_ns`, the next utterance's start).
    """
    bounds = speech_bounds(mic.pcm[spoken_from:spoken_to], mic.rate)
    if bounds is None:
        raise ValueError("the utterance holds no speech")
    end_ns = mic.sample_ns(spoken_from + bounds[1])
    return TurnTiming(end_ns, first_speech_ns(ear, end_ns, until_ns))


__all__ = [
    "SPEECH_DBFS",
    "AudioLog",
    "TurnTiming",
    "first_speech_ns",
    "speech_bounds",
    "speech_spans",
    "speech_stop_ns",
    "turn_timing",
    "window_levels",
]
