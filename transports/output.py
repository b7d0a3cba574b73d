"""`OutputTransport`: plays bot audio in real time and reports when the bot speaks.

Bot audio (`OutputAudioFrame`, including `TTSAudioFrame`) arrives at any rate, usually faster
than real time. It is converted and cut into fixed chunks (20 ms) in a `Playout` buffer, and a
pacer in the task's task group hands one chunk per period to the wire (`write_audio`), on the
injected clock. Because only the pacer's current chunk is ever "on the wire", an interruption
that clears the buffer silences the bot within one chunk.

The first chunk of a reply that arrives while the wire idles is played at once and the pacer
re-anchors on it, instead of waiting up to a period for the next tick: a reply's start costs no
pacing delay. Within a reply the cadence is strict.

Speaking state is derived from what was actually handed to the wire:

* `BotStartedSpeakingFrame(turn=N)` when the first chunk of a reply goes out (and the tracer
  point ``first_audio_out`` for turn N);
* `BotStoppedSpeakingFrame(turn=N, played_s, interrupted)` when the reply's audio ran out and its
  `TTSStoppedFrame` was seen, or no audio came for `stop_after_idle_s`, or the next reply began,
  or an interruption voided it.

A reply begun while the user holds the floor (from the turn controller's `UserTurnStartedFrame`
to its `UserTurnEndedFrame`: one prepared at a pause) is held, queued but silent, until the end
of the user's turn confirms it; an interruption drops it like any queued audio. Replies begun
before the user's turn play on as before.

Both are pushed upstream (the VAD needs them for barge-in) and downstream (the assistant
aggregator needs `played_s`). Every frame other than bot audio is forwarded downstream as is.

Live audio (turn 0: no bot reply, such as an echo of the caller) comes in real time and leaves in
real time, so once late input has made the pacer play silence (an underrun) and the late audio
then queued behind it, that backlog would stay for the rest of the stream: each lost or late
packet can add a chunk of round trip that never goes. With `live_backlog_s` set, the pacer
watches the least live audio queued after its ticks over each second (the standing backlog, not
a passing burst: a second in which the buffer was needed drains it to nothing at some tick) and
drops the oldest whole chunks beyond the bound. So the buffer that loss or jitter built lasts
while it is used and goes within about a second once the network calms. A reply (turn ≥ 1) is
made faster than real time and queued on purpose: it is never trimmed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import anyio

from voxframe.pipeline import (
    DOWN,
    UP,
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    CancelFrame,
    Direction,
    EndFrame,
    Frame,
    FrameProcessor,
    InterruptionFrame,
    OutputAudioFrame,
    StartFrame,
    TTSStoppedFrame,
    UserTurnGate,
)
from voxframe.pipeline.clock import NS_PER_S

from ._playout import AudioChunk, Playout

#: If the pacer falls this many chunks behind (a stalled event loop), it re-anchors instead
#: of bursting the backlog onto the wire.
_MAX_LAG_CHUNKS = 5
#: The span over which the standing backlog of live audio is the least queued (see the docstring).
_LIVE_WINDOW_NS = NS_PER_S


@dataclass(slots=True)
class OutputOptions:
    #: Rate of the audio handed to the wire; None: the StartFrame's `audio_out_sample_rate`.
    sample_rate: int | None = None
    num_channels: int = 1
    chunk_ms: int = 20
    #: Keep ticking with silence while the bot is quiet (a real-time wire needs a steady stream).
    emit_silence: bool = False
    #: Declare the bot stopped after this long without audio when the reply's end was not seen.
    stop_after_idle_s: float = 0.35
    #: Live audio (turn 0) standing queued beyond this is dropped, oldest first; None: kept.
    live_backlog_s: float | None = None


@dataclass(slots=True)
class _Speaking:
    turn: int
    samples: int = 0
    last_audio_ns: int = 0


class OutputTransport(FrameProcessor):
    """Base of every output transport; subclasses implement `write_audio`."""

    def __init__(self, options: OutputOptions | None = None, *, name: str | None = None) -> None:
        super().__init__(name=name)
        self.output_options = options or OutputOptions()
        self.playout: Playout | None = None
        self.underruns = 0
        #: Samples of live audio dropped as a standing backlog (`OutputOptions.live_backlog_s`).
        self.trimmed_samples = 0
        self._live_floor: int | None = None
        self._live_window_end_ns = 0
        self._speaking: _Speaking | None = None
        self._user_turn = UserTurnGate()  # replies prepared at a pause wait for the user's turn to end
        self._ended_turn: int | None = None
        self._ending = False
        self._pacer_started = False
        self._sleep_scope: anyio.CancelScope | None = None
        self._waiting_for_audio: anyio.Event | None = None
        self._end_frame: EndFrame | None = None
        self._outbox: deque[Callable[[], Frame]] = deque()
        self._sending = False

    # --- for subclasses -------------------------------------------------------------------------

    async def write_audio(self, audio: bytes, chunk: AudioChunk | None) -> None:
        """Hand one chunk to the wire. `chunk` is None for idle silence. Must not block long."""

    def discard_wire_audio(self) -> None:
        """An interruption: drop bot audio handed to the wire but not yet sent, if any is held."""

    def heard_samples(self, turn: int, samples: int) -> int:
        """Of the `samples` of `turn` handed to the wire, how many the listener has heard.

        Asked when an interruption cuts a reply (before `discard_wire_audio`), so that
        `played_s` counts only what was heard. Default: all of them (a wire that plays at once,
        like WebRTC's); a wire that reports playback (Twilio's marks) knows better.
        """
        return samples

    @property
    def sample_rate(self) -> int:
        return self.output_options.sample_rate or self.start_frame.audio_out_sample_rate

    @property
    def speaking_turn(self) -> int | None:
        return self._speaking.turn if self._speaking is not None else None

    async def cleanup(self) -> None:
        """The task is over: release the playout's resampler (and its threads) at once."""
        if self.playout is not None:
            self.playout.release()

    # --- frames in --------------------------------------------------------------------------------

    async def process(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, OutputAudioFrame) and direction is DOWN:
            self._queue_audio(frame)
            return
        if isinstance(frame, StartFrame):
            self._start_pacer()
        elif isinstance(frame, TTSStoppedFrame) and self.playout is not None:
            self.playout.end_turn(frame.turn)
            self._ended_turn = frame.turn
        elif isinstance(frame, EndFrame) and self._pacer_started:
            self._end_after_playout(frame)
            return
        elif isinstance(frame, CancelFrame):
            self._ending = True
        elif direction is DOWN and self._user_turn.observe(frame) and self.playout:
            self._wake_for_reply()  # the end of the user's turn releases a held reply
        await self.push(frame, direction)

    def _held(self) -> bool:
        """The next queued audio belongs to a reply the user's stop has not confirmed yet."""
        turn = self.playout.next_turn() if self.playout is not None else None
        return turn is not None and self._user_turn.held(turn)

    def _queue_audio(self, frame: OutputAudioFrame) -> None:
        if self.playout is None:
            return  # no StartFrame yet: nothing can play
        self.playout.add(frame)
        if not self._held():
            self._wake_for_reply()

    def _wake_for_reply(self) -> None:
        waiting = self._waiting_for_audio
        if waiting is not None:
            waiting.set()
        elif self._speaking is None and self._sleep_scope is not None:
            # A reply starts while the wire idles: play it now rather than at the next tick.
            # (Mid-reply the cadence is kept: an early chunk would put the stream ahead of real
            # time and pile up in the listener's jitter buffer.)
            self._sleep_scope.cancel()

    async def handle_interruption(self, frame: InterruptionFrame, direction: Direction) -> None:
        if self.playout is None:
            return
        self.playout.clear(frame.stale_upto)
        speaking = self._speaking
        stopped = None
        if speaking is not None and (speaking.turn == 0 or speaking.turn <= frame.stale_upto):
            self._speaking = None
            stopped = self._stopped(speaking, interrupted=True)  # what was heard, before the wire clears
        self.discard_wire_audio()
        if stopped is not None:
            await self._announce(stopped)

    def _end_after_playout(self, frame: EndFrame) -> None:
        """Hold the EndFrame back: the pacer sends it on once the queued audio has played."""
        self._ending = True
        self._end_frame = frame
        if self.playout is not None:
            self.playout.end_all()
        if self._waiting_for_audio is not None:
            self._waiting_for_audio.set()

    # --- the pacer --------------------------------------------------------------------------------

    def _start_pacer(self) -> None:
        if self._pacer_started:
            return
        self._pacer_started = True
        rate = self.sample_rate
        self.playout = Playout(rate, self.output_options.num_channels, rate * self.output_options.chunk_ms // 1000)
        self.task_group.start_soon(self._run_pacer, name=f"{self.name}.pacer")

    async def _run_pacer(self) -> None:
        """Hand one chunk per period to the wire, on the clock, until the task ends."""
        period_ns = self.output_options.chunk_ms * 1_000_000
        clock = self.clock
        deadline = clock.now_ns()
        while True:
            idle = (not self.playout or self._held()) and self._speaking is None
            if idle and self._end_frame is not None:
                await self.push(self._end_frame)
                return
            if idle and not self.output_options.emit_silence:
                await self._wait_for_audio()
                deadline = clock.now_ns()
            with anyio.CancelScope() as scope:
                self._sleep_scope = scope
                await clock.sleep_until(deadline)
            self._sleep_scope = None
            now = clock.now_ns()
            if scope.cancelled_caught or now - deadline > _MAX_LAG_CHUNKS * period_ns:
                deadline = now  # woken for a new reply, or fell far behind: re-anchor
            await self._tick(now)
            deadline += period_ns

    async def _wait_for_audio(self) -> None:
        self._waiting_for_audio = event = anyio.Event()
        try:
            await event.wait()
        finally:
            self._waiting_for_audio = None

    async def _tick(self, now: int) -> None:
        assert self.playout is not None
        chunk = None if self._held() else self.playout.pop()
        if self.output_options.live_backlog_s is not None:
            self._bound_live_backlog(now)
        speaking = self._speaking
        if chunk is None:
            if self.output_options.emit_silence:
                await self.write_audio(self.playout.silence, None)
            if speaking is not None and self._reply_over(speaking, now):
                self._speaking = None
                await self._announce(self._stopped(speaking, interrupted=False))
            elif speaking is not None:
                self.underruns += 1
            return
        await self.write_audio(chunk.audio, chunk)
        events: list[Callable[[], Frame]] = []
        if speaking is not None and speaking.turn != chunk.turn:
            events.append(self._stopped(speaking, interrupted=False))
            speaking = None
        if speaking is None:
            speaking = self._speaking = _Speaking(chunk.turn)
            self.trace("first_audio_out", turn=chunk.turn, t_ns=now)
            turn = chunk.turn
            events.append(lambda: BotStartedSpeakingFrame(turn=turn))
        speaking.samples += chunk.samples
        speaking.last_audio_ns = now
        if events:
            await self._announce(*events)

    def _bound_live_backlog(self, now: int) -> None:
        """Drop the standing backlog of live audio beyond `live_backlog_s` (see the docstring)."""
        playout, bound_s = self.playout, self.output_options.live_backlog_s
        assert playout is not None and bound_s is not None
        if playout.next_turn() not in (None, 0):
            self._live_floor = None  # a reply is queued: nothing is trimmed, the watch starts again
            return
        queued = playout.queued_samples
        if self._live_floor is None:
            self._live_floor, self._live_window_end_ns = queued, now + _LIVE_WINDOW_NS
            return
        self._live_floor = min(self._live_floor, queued)
        if now < self._live_window_end_ns:
            return
        excess = self._live_floor - round(bound_s * self.sample_rate)
        self._live_floor = None
        if excess >= playout.chunk_samples:
            self.trimmed_samples += playout.drop_live(excess)

    def _reply_over(self, speaking: _Speaking, now: int) -> bool:
        if self._ending or self._ended_turn == speaking.turn:
            return True
        return now - speaking.last_audio_ns >= self.output_options.stop_after_idle_s * NS_PER_S

    def _stopped(self, speaking: _Speaking, *, interrupted: bool) -> Callable[[], Frame]:
        samples = self.heard_samples(speaking.turn, speaking.samples) if interrupted else speaking.samples
        turn, played_s = speaking.turn, samples / self.sample_rate
        return lambda: BotStoppedSpeakingFrame(turn=turn, played_s=played_s, interrupted=interrupted)

    # --- events out --------------------------------------------------------------------------------

    async def _announce(self, *events: Callable[[], Frame]) -> None:
        """Push speaking events both ways (a frame and its twin: one event to observers), in the
        order their state changes happened.

        Pushing can re-enter this processor (an upstream processor that interrupts on hearing
        the bot starts an interruption that comes back down here), so events go through one
        outbox drained by whoever got there first: order holds and nothing deadlocks.
        """
        self._outbox.extend(events)
        if self._sending:
            return
        self._sending = True
        try:
            while self._outbox:
                frame = self._outbox.popleft()()
                await self.push(frame, UP)
                await self.push(frame.twin(), DOWN)
        finally:
            self._sending = False
