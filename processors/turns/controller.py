"""`TurnController`: every decision about who speaks when, in one place.

It sits after the STT, before the user aggregator. It reads the VAD's facts (the user started,
paused, resumed, stopped speaking, with sample-accurate times), the transcripts, and the bot's
speaking state (`Bot*SpeakingFrame` coming upstream), and decides:

* the user's turn: opened at the first speech (`UserTurnStartedFrame(held_from=N)`: replies
  from N on are held by the LLM and the output), ended when a strategy says so
  (`UserTurnEndedFrame`; see `strategies`), opened again by speech before that;
* the user's message: the turn's finals become one `UserMessageFrame(turn=N)` for the user
  aggregator (which writes the context and asks for reply N), once the turn ended and no
  interim waits for its final (`final_timeout_s` at most); without a VAD each final is one;
* preemption: with `preemptive`, the message goes out at a pause with every word final, so the
  reply is prepared while the turn's end is awaited; if the user goes on, the reply is
  interrupted unheard and `UserMessageWithdrawnFrame` rolls its message back;
* barge-in (`InterruptionPolicy`): user speech over a reply that plays or is being prepared
  interrupts it, once it lasted `min_duration_s` and has `min_words`; never an utterance that
  does not allow interruptions, never while the user is muted; words over a playing reply that
  the policy does not take for speech are dropped (noise the STT transcribed);
* false interruptions: speech that cut the bot off, then no words within
  `false_interruption_s` of the turn's end, sends `FalseInterruptionFrame` (the aggregator
  asks for the reply again, `resume` to carry on where it stopped);
* a silent user (`IdlePolicy`): one prompt, then the end of the call (`EndTaskFrame`).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable

import anyio
import numpy as np

from voxframe.pipeline import (
    UP,
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    Direction,
    EndTaskFrame,
    FalseInterruptionFrame,
    Frame,
    FrameProcessor,
    FunctionCallFrame,
    FunctionCallResultFrame,
    InputAudioFrame,
    InterimTranscriptionFrame,
    InterruptionFrame,
    StartFrame,
    TranscriptionFrame,
    TTSSpeakFrame,
    UserMessageFrame,
    UserMessageWithdrawnFrame,
    UserPausedSpeakingFrame,
    UserResumedSpeakingFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    UserTextFrame,
    UserTurnEndedFrame,
    UserTurnStartedFrame,
)
from voxframe.pipeline.clock import NS_PER_S

from .policy import TurnOptions
from .strategies import Pause, TurnDecision, TurnStrategy, combine

logger = logging.getLogger("voxframe")

MODEL_RATE = 16_000


class _Timer:
    """One pending deadline on the clock, cancelled or replaced as a whole."""

    def __init__(self) -> None:
        self.scope: anyio.CancelScope | None = None

    def cancel(self) -> None:
        if self.scope is not None:
            self.scope.cancel()
            self.scope = None

    def start(self, owner: FrameProcessor, deadline_ns: int, action: Callable[[], Awaitable[None]]) -> None:
        self.cancel()
        self.scope = scope = anyio.CancelScope()

        async def run() -> None:
            with scope:
                await owner.clock.sleep_until(deadline_ns)
                if self.scope is scope:
                    self.scope = None
                await action()

        owner.task_group.start_soon(run)


class TurnController(FrameProcessor):
    def __init__(self, options: TurnOptions | None = None, *, name: str | None = None) -> None:
        super().__init__(name=name)
        self.options = options or TurnOptions()
        self.needs_audio = any(s.needs_audio for s in self.options.strategies)
        # Strategies that weigh the words are asked again at each final after a pause.
        self.needs_transcript = any(getattr(s, "needs_transcript", False) for s in self.options.strategies)
        self._last_end: tuple[int | None, bool] = (None, False)  # the last end of speech, and stopped
        self.recoveries = 0  # false interruptions sent
        # The bot.
        self.bot_speaking = False
        self._finished_turn = 0  # last reply whose audio played to the end
        self._replied_upto = 0  # last reply whose audio stopped, however
        self._first_utterance_done = False
        self._tools_running = 0
        self._protected: set[int] = set()  # turns of utterances that allow no interruption
        self._speaking_turn: int | None = None
        # The user's turn.
        self.turn_open = False
        self._held_from = 0
        self._vad_speaking = False
        self._vad_heard = False  # VAD speech behind the words not yet committed
        self._speech_ns = 0  # speech in this turn before the current segment
        self._segment_start_ns = 0
        self._speech_gen = 0  # bumped whenever speech starts again: stale decisions are dropped
        self._barged_in = False
        self._voided_turn = 0
        # The user's words.
        self._finals: list[str] = []
        self._interim = ""
        self._paused = False
        self._words_pending = False  # speech after a pause that no final has covered yet
        self._preempted: tuple[int, str] | None = None  # (turn, text) of a reply begun at a pause
        self._ignore_next_final = False
        self._audio: deque[np.ndarray] = deque()
        self._audio_samples = 0
        # Deadlines.
        self._end_timer, self._final_timer, self._barge_timer = _Timer(), _Timer(), _Timer()
        self._recheck_timer, self._idle_timer, self._look_timer = _Timer(), _Timer(), _Timer()
        self._prompted = False

    # --- frames -----------------------------------------------------------------------------

    async def process(self, frame: Frame, direction: Direction) -> None:
        if direction is UP:
            self._observe_bot(frame)
            await self.push(frame, direction)
            return
        match frame:
            case InputAudioFrame():
                self._take_audio(frame)  # consumed: nothing after the turn needs the user's audio
            case StartFrame():
                await self.push(frame, direction)
                self._arm_idle()
            case UserStartedSpeakingFrame():
                await self._on_speech_start(frame)
            case UserResumedSpeakingFrame():
                await self._on_speech_start(frame)
            case UserPausedSpeakingFrame() | UserStoppedSpeakingFrame():
                await self._on_speech_end(frame)
            case InterimTranscriptionFrame():
                if not self._muted():
                    self._interim = frame.text
                    await self._check_barge_in()
            case TranscriptionFrame():
                if not self._muted():
                    await self._on_final(frame)
            case UserTextFrame():
                await self._on_typed(frame)
            case TTSSpeakFrame():
                if not frame.allow_interruptions:
                    self._protected.add(frame.turn)
                await self.push(frame, direction)
            case _:
                await self.push(frame, direction)

    def _observe_bot(self, frame: Frame) -> None:
        if isinstance(frame, BotStartedSpeakingFrame):
            self.bot_speaking, self._speaking_turn = True, frame.turn
            self._idle_timer.cancel()
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self.bot_speaking, self._speaking_turn = False, None
            self._replied_upto = max(self._replied_upto, frame.turn)
            if not frame.interrupted:
                self._finished_turn = max(self._finished_turn, frame.turn)
            self._first_utterance_done = True
            self._protected.discard(frame.turn)
            if not self.turn_open:
                self._arm_idle()
        elif isinstance(frame, FunctionCallFrame) and not self._held(frame.turn):
            self._tools_running += 1
        elif isinstance(frame, FunctionCallResultFrame) and not self._held(frame.turn):
            self._tools_running = max(0, self._tools_running - 1)

    async def handle_interruption(self, frame: InterruptionFrame, direction: Direction) -> None:
        self._tools_running = 0  # the tools of every voided reply are cancelled

    def _held(self, turn: int) -> bool:
        return self.turn_open and turn >= self._held_from

    def _muted(self) -> bool:
        o = self.options
        first = o.mute_during_first_utterance and self.bot_speaking and not self._first_utterance_done
        return first or (o.mute_during_tools and self._tools_running > 0)

    # --- speech -----------------------------------------------------------------------------

    async def _on_speech_start(self, frame: UserStartedSpeakingFrame | UserResumedSpeakingFrame) -> None:
        if self._muted():
            await self.push(frame)
            return
        now = self.clock.now_ns()
        start_ns = frame.speech_start_ns if isinstance(frame, UserStartedSpeakingFrame) else None
        self._vad_speaking = self._vad_heard = True
        self._segment_start_ns = min(start_ns or now, now)
        self._speech_gen += 1
        self._end_timer.cancel()
        self._look_timer.cancel()
        self._recheck_timer.cancel()
        self._idle_timer.cancel()
        self._prompted = False
        if not self.turn_open:
            self.turn_open = True
            self._speech_ns = 0
            self._barged_in = False
            self._paused = self._words_pending = self._ignore_next_final = False
            self._final_timer.cancel()
            self._held_from = self.turns.current + 1  # replies begun from now on wait for the end
            await self._check_barge_in()  # before the start goes on: the bot stops first
            await self.push(frame)
            await self.push(UserTurnStartedFrame(held_from=self._held_from))
        else:  # speech again within the open turn: after a pause, or after the VAD's stop
            self._paused = False
            self._words_pending = True
            await self.push(frame)
            await self._withdraw()
        self._arm_barge_in()

    async def _on_speech_end(self, frame: UserPausedSpeakingFrame | UserStoppedSpeakingFrame) -> None:
        await self.push(frame)
        if self._muted() or not self.turn_open or not self._vad_speaking:
            if self.turn_open and not self._muted() and isinstance(frame, UserStoppedSpeakingFrame):
                await self._decide(frame.speech_end_ns, stopped=True)  # the stop after a pause
            return
        now = self.clock.now_ns()
        self._vad_speaking = False
        self._speech_ns += max(0, min(frame.speech_end_ns or now, now) - self._segment_start_ns)
        self._barge_timer.cancel()
        self._paused = True
        await self._preempt()
        await self._decide(frame.speech_end_ns, stopped=isinstance(frame, UserStoppedSpeakingFrame))

    async def _decide(self, speech_end_ns: int | None, *, stopped: bool) -> None:
        """Ask the strategies about this end of speech (in a task if a model scores audio)."""
        self._last_end = (speech_end_ns, stopped)
        now = self.clock.now_ns()
        audio = self._turn_audio() if self.needs_audio else np.zeros(0, np.int16)
        pause = Pause(
            speech_end_ns=min(speech_end_ns or now, now),
            now_ns=now,
            stopped=stopped,
            audio=audio,
            transcript=self._final_text(),
        )
        if self.needs_audio:
            self.task_group.start_soon(self._apply, pause, self._speech_gen)
        else:
            await self._apply(pause, self._speech_gen)

    async def _apply(self, pause: Pause, gen: int) -> None:
        decisions = [await self._ask(strategy, pause) for strategy in self.options.strategies]
        if gen != self._speech_gen or not self.turn_open:
            return  # the user spoke again meanwhile
        decision = combine(decisions)
        if decision.end:
            await self._end_turn()
            return
        if decision.wait_s is not None:
            deadline = pause.speech_end_ns + round(decision.wait_s * NS_PER_S)
            self._end_timer.start(self, deadline, self._end_turn)
        if decision.recheck_s is not None:
            at_ns = pause.speech_end_ns + round(decision.recheck_s * NS_PER_S)
            self._look_timer.start(self, at_ns, lambda: self._look_again(pause.speech_end_ns, gen))

    async def _look_again(self, speech_end_ns: int, gen: int) -> None:
        """A strategy asked to decide again after more silence (a second look at the turn)."""
        if gen == self._speech_gen and self.turn_open:
            await self._decide(speech_end_ns, stopped=False)

    async def _ask(self, strategy: TurnStrategy, pause: Pause) -> TurnDecision:
        """A strategy that fails (a model that raises) is reported and falls back to the VAD's stop."""
        try:
            return await strategy.at_pause(pause)
        except Exception as exc:
            logger.warning("%s: %r failed: %r", self.name, strategy, exc)
            await self.push_error(f"{self.name}: turn strategy {strategy!r} failed: {exc!r}", exception=exc)
            return TurnDecision(end=pause.stopped)

    async def _end_turn(self) -> None:
        self._end_timer.cancel()
        self._look_timer.cancel()
        if not self.turn_open:
            return
        self.turn_open = False
        self._vad_speaking = False
        self._preempted = None  # the end confirms the reply prepared at the pause
        await self.push(UserTurnEndedFrame())
        if self._interim or self._words_pending:
            deadline = self.clock.now_ns() + round(self.options.final_timeout_s * NS_PER_S)
            self._final_timer.start(self, deadline, self._commit_interim)  # its final is on its way
        elif self._finals:
            await self._commit()
        # Nothing heard yet: a final that arrives later commits on arrival.
        if self._voided_turn and self.options.false_interruption != "ignore":
            deadline = self.clock.now_ns() + round(self.options.false_interruption_s * NS_PER_S)
            voided = self._voided_turn
            self._recheck_timer.start(self, deadline, lambda: self._recheck(voided))
        if not self.bot_speaking and not self._reply_pending(self.turns.current):
            self._arm_idle()  # noise, and no reply: the user is still silent

    # --- words ------------------------------------------------------------------------------

    async def _on_final(self, frame: TranscriptionFrame) -> None:
        self._interim = ""
        if self._paused or not self.turn_open:
            self._words_pending = False
        if self._ignore_next_final and not self.turn_open:
            self._ignore_next_final = False  # its interim was answered already
            return
        if frame.text.strip():
            self._finals.append(frame.text.strip())
            await self._check_barge_in()
        if not self.turn_open:
            await self._commit()
        elif self._paused:
            if any(s.ends_on(frame) for s in self.options.strategies):
                await self._end_turn()
                return
            await self._preempt()
            if self.needs_transcript and self.turn_open and self._paused:
                speech_end_ns, stopped = self._last_end
                await self._decide(speech_end_ns, stopped=stopped)  # with the words now final

    def _final_text(self) -> str:
        """The turn's words so far, if every one is final (a reply prepared on some included)."""
        if self._interim or self._words_pending:
            return ""
        prepared = [self._preempted[1]] if self._preempted else []
        return " ".join(t for t in (*prepared, *self._finals) if t)

    async def _commit_interim(self) -> None:
        if self._interim:
            self._finals.append(self._interim.strip())
            self._interim = ""
            self._ignore_next_final = True
        await self._commit()

    async def _preempt(self) -> None:
        """The user paused with every word final: start the reply now (the turn's end confirms it)."""
        if not self.options.preemptive or not self._finals or self._interim or self._words_pending:
            return
        await self._withdraw()  # a reply prepared on fewer words: answer them all instead
        self._preempted = await self._commit()

    async def _withdraw(self) -> None:
        """The user goes on: drop the reply prepared at the pause, unheard, and reopen its words."""
        preempted, self._preempted = self._preempted, None
        if preempted is None:
            return
        turn, text = preempted
        if not self.turns.is_stale(turn):
            await self.interrupt("the user went on speaking")
        await self.push(UserMessageWithdrawnFrame(turn=turn))
        self._finals.insert(0, text)

    async def _on_typed(self, frame: UserTextFrame) -> None:
        """Typed text (RTVI `send-text`) is a whole turn at once, with any words already final. The
        user meant it, so no speech policy filters it; over an unfinished reply it interrupts as
        words would."""
        text = frame.text.strip()
        if text:
            self._finals.append(text)
            await self._commit(typed=True)

    async def _commit(self, *, typed: bool = False) -> tuple[int, str] | None:
        """The user's words are one message: a new turn, and the aggregator asks for its reply."""
        self._final_timer.cancel()
        text = " ".join(t for t in self._finals if t)
        self._finals.clear()
        if not text:
            return None
        turns = self.turns
        unfinished = turns.current > max(turns.stale_upto, self._replied_upto)
        if unfinished and not self._protected_playing():
            if not typed and not self._speech_confirmed(text):
                self._vad_heard = False
                return None  # no speech the policy believes in, over the bot: noise
            if self.options.interrupt_unfinished_reply:
                await self.interrupt("user spoke again before the reply finished")
        self._vad_heard = False
        if not self.turn_open:
            self._barged_in = False
        self._idle_timer.cancel()
        turn = turns.begin()
        await self.push(UserMessageFrame(text=text, turn=turn))
        return turn, text

    # --- barge-in ---------------------------------------------------------------------------

    def _words(self) -> int:
        return sum(len(t.split()) for t in (*self._finals, self._interim))

    def _speech_s(self) -> float:
        ongoing = self.clock.now_ns() - self._segment_start_ns if self._vad_speaking else 0
        return (self._speech_ns + max(0, ongoing)) / NS_PER_S

    def _speech_confirmed(self, text: str | None = None) -> bool:
        """The policy takes what was heard for speech: the VAD's, long enough and with enough
        words; or, without it, enough words."""
        policy = self.options.interruptions
        words = len(text.split()) if text is not None else self._words()
        if self._vad_heard:
            return self._speech_s() >= policy.min_duration_s - 1e-9 and words >= policy.min_words
        return policy.min_words > 0 and words >= policy.min_words

    def _protected_playing(self) -> bool:
        return self.bot_speaking and self._speaking_turn in self._protected

    def _reply_to_cut(self) -> bool:
        """A reply plays or is being prepared, and user speech may cut it."""
        if not (self.options.interruptions.enabled and self.start_frame.allow_interruptions):
            return False
        if self._muted() or self._protected_playing():
            return False
        # Replies prepared in this turn are not cut by it: they wait for its end, or are withdrawn.
        latest = min(self.turns.current, self._held_from - 1) if self.turn_open else self.turns.current
        return self.bot_speaking or self._reply_pending(latest)

    def _reply_pending(self, latest: int) -> bool:
        """A reply up to turn `latest` stands and has not played to its end."""
        return latest > max(self.turns.stale_upto, self._finished_turn)

    async def _check_barge_in(self) -> None:
        if self._barged_in or not self._reply_to_cut() or not self._speech_confirmed():
            return
        self._barged_in = True
        self._barge_timer.cancel()
        self._voided_turn = await self.interrupt("user started speaking")
        self.bot_speaking = False  # its output is void; the transport's BotStopped follows

    def _arm_barge_in(self) -> None:
        """Speech too short to interrupt yet: check again when it has lasted `min_duration_s`."""
        remaining = self.options.interruptions.min_duration_s - self._speech_s()
        if self._barged_in or remaining <= 0 or not self._reply_to_cut():
            return
        self._barge_timer.start(self, self.clock.now_ns() + round(remaining * NS_PER_S), self._check_barge_in)

    # --- after the turn ---------------------------------------------------------------------

    async def _recheck(self, voided_turn: int) -> None:
        """After the speech that voided `voided_turn`: no new reply by now means no words."""
        if self._voided_turn != voided_turn:
            return
        self._voided_turn = 0
        if self.turns.current > voided_turn:
            return  # words followed: a new reply began
        self.recoveries += 1
        resume = self.options.false_interruption == "resume"
        await self.push(FalseInterruptionFrame(voided_turn=voided_turn, resume=resume))

    def _arm_idle(self) -> None:
        idle = self.options.idle
        delay = idle.end_s if self._prompted or idle.prompt_s is None else idle.prompt_s
        if delay is None or self.turn_open:
            return
        self._idle_timer.start(self, self.clock.now_ns() + round(delay * NS_PER_S), self._on_idle)

    async def _on_idle(self) -> None:
        idle = self.options.idle
        if self._prompted or idle.prompt_s is None:
            await self.push(EndTaskFrame(reason="the user stayed silent"), UP)
            return
        self._prompted = True
        await self.push(TTSSpeakFrame(text=idle.prompt))

    # --- audio for the strategies -----------------------------------------------------------

    def _take_audio(self, frame: InputAudioFrame) -> None:
        if not self.needs_audio or frame.num_channels != 1:
            return
        samples = np.frombuffer(frame.audio, np.int16)
        if frame.sample_rate != MODEL_RATE:
            n = len(samples) * MODEL_RATE // frame.sample_rate
            samples = np.interp(np.linspace(0, len(samples) - 1, n), np.arange(len(samples)), samples).astype(np.int16)
        self._audio.append(samples)
        self._audio_samples += len(samples)
        keep = round(self.options.audio_s * MODEL_RATE)
        while self._audio and self._audio_samples - len(self._audio[0]) >= keep:
            self._audio_samples -= len(self._audio.popleft())

    def _turn_audio(self) -> np.ndarray:
        audio = np.concatenate(list(self._audio)) if self._audio else np.zeros(0, np.int16)
        return audio[-round(self.options.audio_s * MODEL_RATE) :]


__all__ = ["TurnController"]
