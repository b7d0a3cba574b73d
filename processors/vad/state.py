"""Turn-taking state machine: scored windows in, "user started" / "user stopped" out.

Pure and synchronous (no clock, no I/O), fed one scored window at a time, so every rule is
testable with plain numbers. Positions are sample indices of the input stream; the processor
turns them into clock times.

*Whether* the user speaks is the model's call: a window is speech when its confidence reaches
`confidence` and its level reaches `min_volume_dbfs`; once speaking (or about to), a window
stays speech down to the lower `stop_confidence` (hysteresis, so a soft syllable does not start
the stop timer) as long as one of its 4 ms blocks reaches `edge_dbfs`. Speaking starts once the
speech has lasted `start_s` (a click or a cough shorter than that never counts; gaps under
`start_gap_s` do not break it) and stops once silence has lasted `stop_s`. With `pause_s` set, a
silence of that length first *pauses* the speech (once per silence) and speech before the stop
*resumes* it: a pause is the moment to finalize the words so far and prepare a reply that the
stop may confirm.

*Where* the speech begins and ends is refined with the level of 4 ms blocks (`edge_dbfs`): the
model scores 32 ms windows and reacts a little late to quiet onsets, so the start is moved back
over the loud blocks that lead without a break into the first speech window, and the end is the
last loud block of the last speech window.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass


@dataclass(slots=True, frozen=True)
class VADParams:
    confidence: float = 0.5
    #: Confidence below which a window counts as silence while speaking (None: confidence - 0.15).
    stop_confidence: float | None = None
    start_s: float = 0.2
    stop_s: float = 0.6
    #: Silence after which the user has paused, short of the stop (None: no pause events).
    pause_s: float | None = None
    #: A gap in the speech shorter than this does not restart the `start_s` count.
    start_gap_s: float = 0.2
    #: A window quieter than this (RMS, dBFS) is not speech, whatever the model says.
    min_volume_dbfs: float = -45.0
    #: Level of the 4 ms blocks that place the speech's start and end. -40 is where the WebRTC
    #: client's ear (its onset detector) and its microphone's speech end draw the line too: the
    #: silence the stop waits for starts where a listener would say the speech ended, not at the
    #: faint tail below that (up to 30 ms of it after some words).
    edge_dbfs: float = -40.0

    def __post_init__(self) -> None:
        if not 0.0 < self.confidence <= 1.0:
            raise ValueError(f"confidence must be in (0, 1], got {self.confidence}")
        if self.start_s < 0 or self.stop_s <= 0:
            raise ValueError(f"start_s must be >= 0 and stop_s > 0, got {self.start_s}, {self.stop_s}")
        if self.pause_s is not None and not 0.0 < self.pause_s < self.stop_s:
            raise ValueError(f"pause_s must be in (0, stop_s={self.stop_s}), got {self.pause_s}")
        if self.edge_dbfs < self.min_volume_dbfs:
            # Quiet-by-level audio past the scored windows may end a silence only if it cannot hold
            # an edge either (see VADProcessor): edges must be at least as loud as speech windows.
            raise ValueError(f"edge_dbfs must be >= min_volume_dbfs, got {self.edge_dbfs} < {self.min_volume_dbfs}")

    @property
    def effective_stop_confidence(self) -> float:
        return max(0.0, self.confidence - 0.15) if self.stop_confidence is None else self.stop_confidence


@dataclass(slots=True, frozen=True)
class ScoredWindow:
    """A window of samples [start, end) with its speech confidence and loudness profile."""

    start: int
    end: int
    confidence: float
    volume_dbfs: float
    #: Start of the first loud block, and end of the last one (None: no loud block).
    first_loud: int | None = None
    last_loud: int | None = None
    #: Start of the run of loud blocks that reaches the window's end (None: the last block is quiet).
    tail_run: int | None = None


class VADState(enum.Enum):
    QUIET = "quiet"
    STARTING = "starting"
    SPEAKING = "speaking"
    STOPPING = "stopping"


@dataclass(slots=True, frozen=True)
class SpeechStarted:
    #: First sample of the speech.
    start_sample: int


@dataclass(slots=True, frozen=True)
class SpeechStopped:
    #: One past the last sample of the speech.
    end_sample: int


@dataclass(slots=True, frozen=True)
class SpeechPaused:
    #: One past the last sample of the speech so far.
    end_sample: int


@dataclass(slots=True, frozen=True)
class SpeechResumed:
    #: Where the speech that ended the pause was scored.
    start_sample: int


SpeechEvent = SpeechStarted | SpeechStopped | SpeechPaused | SpeechResumed

_LOOKBACK_WINDOWS = 8  # how far back a quiet onset may begin (~0.25 s of Silero windows)


class SpeechStateMachine:
    def __init__(self, params: VADParams, sample_rate: int) -> None:
        self.params = params
        self.state = VADState.QUIET
        self._start_samples = round(params.start_s * sample_rate)
        self._stop_samples = round(params.stop_s * sample_rate)
        self._pause_samples = None if params.pause_s is None else round(params.pause_s * sample_rate)
        self._paused = False
        self._gap_samples = round(params.start_gap_s * sample_rate)
        self._stop_confidence = params.effective_stop_confidence
        self._history: deque[ScoredWindow] = deque(maxlen=_LOOKBACK_WINDOWS)
        self._speech_start = 0
        self._speech_samples = 0  # speech seen since the candidate start (STARTING)
        self._speech_end = 0  # end of the last speech window seen

    @property
    def speaking(self) -> bool:
        return self.state in (VADState.SPEAKING, VADState.STOPPING)

    def feed(self, window: ScoredWindow) -> SpeechEvent | None:
        """Advance by one window; return the event it completes, if any."""
        event = self._step(window)
        self._history.append(window)
        return event

    def _step(self, w: ScoredWindow) -> SpeechEvent | None:
        loud = w.volume_dbfs >= self.params.min_volume_dbfs
        state = self.state
        if state is VADState.QUIET:
            if loud and w.confidence >= self.params.confidence:
                self.state = VADState.STARTING
                self._speech_start = self._onset(w)
                self._speech_samples = 0
                return self._count_start(w)
            return None
        # Speech goes on only through a window with a block at the edge level: a faint tail the
        # model still scores as speech is where the silence starts, not where the speech ends.
        is_speech = loud and w.confidence >= self._stop_confidence and w.last_loud is not None
        if state is VADState.STARTING:
            if is_speech:
                return self._count_start(w)
            if w.end - self._speech_end >= self._gap_samples:
                self.state = VADState.QUIET
            return None
        if is_speech:
            assert w.last_loud is not None  # is_speech needs a block at the edge level
            self._speech_end = w.last_loud
            self.state = VADState.SPEAKING
            if self._paused:
                self._paused = False
                return SpeechResumed(w.start)
            return None
        return self._silent_until(w.end)

    def _silent_until(self, end: int) -> SpeechEvent | None:
        """While speaking: nothing but silence from the speech's end up to sample `end`."""
        self.state = VADState.STOPPING
        silence = end - self._speech_end
        if silence >= self._stop_samples:
            self.state = VADState.QUIET
            self._paused = False
            return SpeechStopped(self._speech_end)
        if self._pause_samples is not None and silence >= self._pause_samples and not self._paused:
            self._paused = True
            return SpeechPaused(self._speech_end)
        return None

    def next_deadline(self) -> int | None:
        """The sample at which silence since the speech pauses (or stops) it; None: not speaking."""
        if not self.speaking:
            return None
        pause = self._pause_samples
        return self._speech_end + (pause if pause is not None and not self._paused else self._stop_samples)

    def pause_pending(self) -> bool:
        """Speaking, and the current silence (if any) has not paused the speech yet."""
        return self.speaking and self._pause_samples is not None and not self._paused

    def quiet_until(self, sample: int) -> SpeechEvent | None:
        """The audio up to `sample`, past the scored windows, is quiet by level (so no window of it
        could be speech): apply the silence rules at `sample` instead of at the end of its window."""
        return self._silent_until(sample) if self.speaking else None

    def _count_start(self, w: ScoredWindow) -> SpeechEvent | None:
        self._speech_samples += w.end - w.start
        self._speech_end = w.end if w.last_loud is None else w.last_loud
        if self._speech_samples < self._start_samples:
            return None
        self.state = VADState.SPEAKING
        return SpeechStarted(self._speech_start)

    def _onset(self, w: ScoredWindow) -> int:
        """Where the speech whose first scored window is `w` began, by level."""
        if w.first_loud is None:
            return w.start
        if w.first_loud > w.start:
            return w.first_loud
        start = w.start
        for previous in reversed(self._history):  # loud without a break back into earlier windows
            if previous.tail_run is None:
                break
            start = previous.tail_run
            if previous.tail_run > previous.start:
                break
        return start

    def flush(self) -> SpeechEvent | None:
        """End of stream: a user still speaking has stopped where the speech last was."""
        speaking = self.speaking
        self.state = VADState.QUIET
        self._paused = False
        return SpeechStopped(self._speech_end) if speaking else None


__all__ = [
    "ScoredWindow",
    "SpeechEvent",
    "SpeechPaused",
    "SpeechResumed",
    "SpeechStarted",
    "SpeechStateMachine",
    "SpeechStopped",
    "VADParams",
    "VADState",
]
