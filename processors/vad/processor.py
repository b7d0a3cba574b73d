"""`VADProcessor`: voice activity, and nothing else.

Input audio passes straight through (the STT after it never waits for the VAD); a copy is cut
into windows that a background loop scores in a worker thread, several windows per thread hop (a
hop costs more than scoring a Silero window). The state machine turns scores into
`UserStartedSpeakingFrame` / `UserStoppedSpeakingFrame(speech_end_ns=...)`, sent both ways;
`speech_end_ns` is the clock time the last speech sample arrived, not the time of the decision.
A stop (or pause) is decided on the sample where the silence reaches its length, as soon as the
audio up to it has arrived and is quiet by level, not at the end of the window holding it; a
pause may be decided on the clock when that sample is due, up to a frame before it arrives. With
`VADParams.pause_s` set, a shorter silence first sends `UserPausedSpeakingFrame` (the STT
finalizes, a preemptive user aggregator prepares the reply) and speech before the stop sends
`UserResumedSpeakingFrame`, both downstream.

What these facts mean for the conversation (is the turn over? does the bot stop?) is the turn
controller's decision (`processors/turns`), not the VAD's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio
import numpy as np

from voxframe.pipeline import (
    DOWN,
    UP,
    Direction,
    Frame,
    FrameProcessor,
    InputAudioFrame,
    StartFrame,
    UserPausedSpeakingFrame,
    UserResumedSpeakingFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from voxframe.pipeline.audio import AudioTimeline

from .analyzer import VADAnalyzer, all_quiet, score_windows
from .silero import SileroVADAnalyzer
from .state import (
    ScoredWindow,
    SpeechEvent,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    SpeechStateMachine,
    SpeechStopped,
    VADParams,
)


@dataclass(slots=True)
class VADOptions:
    #: The model scoring windows; None: Silero VAD.
    analyzer: VADAnalyzer | None = None
    params: VADParams = field(default_factory=VADParams)
    #: Windows scored per worker-thread hop (2 Silero windows = 64 ms of audio per hop).
    windows_per_hop: int = 2
    #: A pause may be decided on the clock, when the sample that completes its silence is due,
    #: if that sample is at most this far past the audio received and all of the audio since the
    #: speech is quiet: otherwise the frame holding it arrives up to a frame later. A pause is a
    #: guess the stop confirms, so one the user speaks on through costs only a reply nobody hears.
    #: 0: wait for the audio.
    pause_lead_s: float = 0.02

    def __post_init__(self) -> None:
        if self.pause_lead_s < 0:
            raise ValueError(f"pause_lead_s must be >= 0, got {self.pause_lead_s}")
        if self.windows_per_hop < 1:
            raise ValueError(f"windows_per_hop must be >= 1, got {self.windows_per_hop}")


class VADProcessor(FrameProcessor):
    """Put it right after the input transport. Reads `user_speaking` for state."""

    def __init__(self, options: VADOptions | None = None, *, name: str | None = None) -> None:
        super().__init__(name=name)
        self.options = options or VADOptions()
        self.analyzer: VADAnalyzer = self.options.analyzer or SileroVADAnalyzer()
        self.user_speaking = False
        self.windows_scored = 0
        self._rate = 0
        self._window = 0
        self._machine: SpeechStateMachine | None = None
        self._timeline = AudioTimeline(16_000)
        self._unscored = bytearray()
        self._position = 0  # stream position of the first unscored sample
        self._ready = anyio.Event()
        self._scored = anyio.Event()  # set after each scored batch
        self._acted_upto = 0  # stream position up to which windows were scored and acted upon
        self._turn_at_start = 0  # the latest turn when the user's speech started (for the trace)
        self._bad_input_reported = False

    async def setup(self) -> None:
        await anyio.to_thread.run_sync(self.analyzer.load)
        self.task_group.start_soon(self._score_loop)

    async def process(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, InputAudioFrame):
            await self.push(frame, direction)  # first: the STT must hold the audio before any stop
            await self._take_audio(frame)
            return
        if isinstance(frame, StartFrame):
            await self.push(frame, direction)
            await self._start(frame)
            return
        await self.push(frame, direction)

    async def _start(self, frame: StartFrame) -> None:
        rate = frame.audio_in_sample_rate
        try:
            self.analyzer.reset(rate)
        except ValueError as exc:  # a bot that cannot hear turns is misconfigured: stop this session
            await self.push_error(f"{self.name}: {exc}", fatal=True, exception=exc)
            return
        self._rate = rate
        self._window = self.analyzer.window_samples(rate)
        self._machine = SpeechStateMachine(self.options.params, rate)
        self._timeline = AudioTimeline(rate)
        self._unscored.clear()
        self._position = self._acted_upto = 0

    async def _take_audio(self, frame: InputAudioFrame) -> None:
        if self._machine is None or frame.sample_rate != self._rate or frame.num_channels != 1:
            if not self._bad_input_reported:
                self._bad_input_reported = True
                await self.push_error(
                    f"{self.name}: cannot score {frame.num_channels}-channel {frame.sample_rate} Hz audio; "
                    f"the VAD takes mono audio at the pipeline's input rate ({self._rate or 'not started'} Hz)"
                )
            return
        self._timeline.append(frame.num_samples, frame.created_ns)
        self._unscored += frame.audio
        if (
            len(self._unscored) >= 2 * self._window * self.options.windows_per_hop
            or self._deadline_arrived()
            or self._pause_due_ns() is not None  # the loop sets its timer for the pause
        ):
            self._ready.set()

    def _deadline_arrived(self) -> bool:
        """The audio that decides a pause or stop has arrived, short of a whole window."""
        deadline = self._machine.next_deadline() if self._machine is not None else None
        return deadline is not None and self._position <= deadline <= self._position + len(self._unscored) // 2

    def _pause_due_ns(self) -> int | None:
        """When the sample completing a pause's silence is due, if the clock may decide the pause:
        that sample is at most `pause_lead_s` past the audio received, and the audio received
        since the scored windows is quiet by level (loud audio waits for the model)."""
        machine = self._machine
        if machine is None or not machine.pause_pending():
            return None
        deadline = machine.next_deadline()
        assert deadline is not None
        unseen = deadline - self._timeline.samples
        if not 0 < unseen <= round(self.options.pause_lead_s * self._rate) or not self._quiet_before(deadline):
            return None
        return self._timeline.time_of(deadline)

    def _quiet_before(self, sample: int) -> bool:
        """The unscored audio before stream position `sample` is quiet by level: no window of it
        could be speech, so the model need not see it."""
        part = np.frombuffer(bytes(self._unscored[: 2 * (sample - self._position)]), np.int16)
        return all_quiet(part, self.options.params.min_volume_dbfs, self._window)

    async def _silent_until(self, deadline: int) -> None:
        """Apply the silence rules at `deadline`, the audio before it being quiet."""
        assert self._machine is not None
        event = self._machine.quiet_until(deadline)
        if event is not None:
            await self._on_speech_event(event)

    async def wait_scored(self, samples: int) -> None:
        """Wait until the first `samples` of the input have been scored and acted upon."""
        while not self._window or self._acted_upto < samples - samples % self._window:
            await self._scored.wait()

    # --- scoring, off the event loop ----------------------------------------------------------

    async def _score_loop(self) -> None:
        while True:
            await self._wait_for_work()
            self._ready = anyio.Event()  # audio arriving while we score sets the new event
            if self._machine is None:
                continue
            await self._decide_at_deadline()  # before the model: it need not see quiet audio
            await self._pause_on_clock()
            count = len(self._unscored) // (2 * self._window)
            if not count:
                continue
            take = 2 * self._window * count
            windows = np.frombuffer(bytes(self._unscored[:take]), np.int16).reshape(count, self._window)
            del self._unscored[:take]
            scored = await anyio.to_thread.run_sync(self._score, windows, self._position)
            self._position += take // 2
            for window in scored:
                event = self._machine.feed(window)
                if event is not None:
                    await self._on_speech_event(event)
            self.windows_scored += count
            await self._decide_at_deadline()
            self._acted_upto = self._position
            self._scored.set()
            self._scored = anyio.Event()

    async def _wait_for_work(self) -> None:
        """Until audio is ready to score or act on, or a pause is due on the clock."""
        due_ns = self._pause_due_ns()
        if due_ns is None:
            await self._ready.wait()
            return
        async with anyio.create_task_group() as race:

            async def until_ready() -> None:
                await self._ready.wait()
                race.cancel_scope.cancel()

            race.start_soon(until_ready)
            await self.clock.sleep_until(due_ns)
            race.cancel_scope.cancel()

    async def _pause_on_clock(self) -> None:
        """Pause when the silence's last sample is due, short of the frame that holds it."""
        due_ns = self._pause_due_ns()
        if due_ns is not None and self.clock.now_ns() >= due_ns:
            assert self._machine is not None
            deadline = self._machine.next_deadline()
            assert deadline is not None
            await self._silent_until(deadline)

    async def _decide_at_deadline(self) -> None:
        """Pause or stop on the very sample the silence reaches its length, not at the end of the
        window holding it (up to 32 ms later), if the audio up to it is quiet by level."""
        if self._machine is None or not self._deadline_arrived():
            return
        deadline = self._machine.next_deadline()
        assert deadline is not None
        if self._quiet_before(deadline):
            await self._silent_until(deadline)

    def _score(self, windows: np.ndarray, first_sample: int) -> list[ScoredWindow]:
        return score_windows(self.analyzer, windows, first_sample, self.options.params.edge_dbfs)

    # --- speech events ------------------------------------------------------------------------

    async def _on_speech_event(self, event: SpeechEvent) -> None:
        now = self.clock.now_ns()
        if isinstance(event, SpeechStarted):
            await self._user_started(self._clock_time(event.start_sample, now))
        elif isinstance(event, SpeechStopped):
            await self._user_stopped(self._clock_time(event.end_sample, now))
        elif isinstance(event, SpeechPaused):
            speech_end_ns, turn = self._clock_time(event.end_sample, now), self._reply_turn()
            self.trace("speech_end", turn, t_ns=speech_end_ns, latest=True)
            self.trace("vad_pause", turn, latest=True)
            await self.push(UserPausedSpeakingFrame(speech_end_ns=speech_end_ns), DOWN)
        elif isinstance(event, SpeechResumed):
            await self.push(UserResumedSpeakingFrame(), DOWN)

    def _reply_turn(self) -> int:
        """The turn that answers the user's current speech: one begun during it (prepared at a
        pause) if it still stands, else the next."""
        current = self.turns.current
        if current > self._turn_at_start and not self.turns.is_stale(current):
            return current
        return current + 1

    def _clock_time(self, sample: int, now: int) -> int:
        t_ns = self._timeline.time_of(sample)
        return now if t_ns is None else min(t_ns, now)

    async def _user_started(self, speech_start_ns: int) -> None:
        self.user_speaking = True
        frame = UserStartedSpeakingFrame(speech_start_ns=speech_start_ns)
        await self.push(frame, DOWN)  # the turn controller may interrupt the bot on it
        self._turn_at_start = self.turns.current
        await self.push(frame.twin(), UP)

    async def _user_stopped(self, speech_end_ns: int) -> None:
        self.user_speaking = False
        turn = self._reply_turn()
        self.trace("speech_end", turn, t_ns=speech_end_ns, latest=True)
        self.trace("vad_stop", turn)
        frame = UserStoppedSpeakingFrame(speech_end_ns=speech_end_ns)
        await self.push(frame, DOWN)
        await self.push(frame.twin(), UP)


__all__ = ["VADOptions", "VADProcessor"]
