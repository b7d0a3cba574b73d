"""`STTService`: the contract every speech-to-text processor follows.

An STT sits after the VAD and before the turn controller. The base routes frames to hooks, so
each provider only says how it hears:

* audio: every `InputAudioFrame` goes on downstream first when `pass_audio` (the default: the
  turn controller keeps the turn's audio for an end-of-turn model, then drops it), and is then
  given to `take_audio`;
* the user's speech: `on_speech_started` at the VAD's start, `on_speech_resumed` when speech
  goes on after a pause, and `finalize(speech_end_ns, stopped=...)` at the VAD's pause and at
  its stop: the words so far are all there will be for now, so have them final at once (a
  preemptive reply may start on them). Each hook runs before the frame goes on, so what it
  traces belongs to the reply that frame may start;
* `on_start` (the pipeline's rates are known) and `on_end` (flush before the end goes on);
* the final: `push_final(text)` traces ``stt_final`` for the coming reply (a later final of the
  same reply replaces it), pushes the `TranscriptionFrame`, and sends the ``stt_final_s`` metric
  (end of speech to final) once per finalize; `trace_final()` is the trace and metric alone, for
  an STT whose transcript turns out complete without a new final (everything heard was final
  already).
"""

from __future__ import annotations

from voxframe.pipeline import (
    DOWN,
    Direction,
    EndFrame,
    Frame,
    FrameProcessor,
    InputAudioFrame,
    MetricsFrame,
    StartFrame,
    TranscriptionFrame,
    UserPausedSpeakingFrame,
    UserResumedSpeakingFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from voxframe.pipeline.clock import NS_PER_S


class STTService(FrameProcessor):
    def __init__(self, *, pass_audio: bool = True, name: str | None = None) -> None:
        super().__init__(name=name)
        #: The user's audio goes on downstream after the STT took it.
        self.pass_audio = pass_audio
        self._speech_end_ns: int | None = None  # the end of speech the next final answers

    # --- hooks ----------------------------------------------------------------------------------

    async def on_start(self, frame: StartFrame) -> None:
        """The pipeline's settings (its input rate) are known."""

    async def take_audio(self, frame: InputAudioFrame) -> None:
        """Hear this audio."""

    async def on_speech_started(self, frame: UserStartedSpeakingFrame) -> None:
        """The VAD heard the user start speaking."""

    async def on_speech_resumed(self, frame: UserResumedSpeakingFrame) -> None:
        """Speech again after a pause, within the same user turn."""

    async def finalize(self, speech_end_ns: int | None, *, stopped: bool) -> None:
        """The VAD's pause (`stopped=False`) or stop: have the words so far final at once."""

    async def on_end(self, frame: EndFrame) -> None:
        """End of session: flush the last words (the end frame goes on after this)."""

    # --- the final -------------------------------------------------------------------------------

    def trace_final(self) -> MetricsFrame | None:
        """The user's transcript is complete: trace it for the coming reply, and return the end of
        speech -> final metric (None if no finalize is waiting for it)."""
        now = self.clock.now_ns()
        self.trace("stt_final", t_ns=now, latest=True)
        if self._speech_end_ns is None:
            return None
        value = (now - self._speech_end_ns) / NS_PER_S
        self._speech_end_ns = None
        return MetricsFrame(processor=self.name, metric="stt_final_s", value=value)

    async def push_final(
        self, text: str, *, language: str | None = None, user_id: str = "", speech_final: bool = False
    ) -> None:
        """Trace, push the final (which may start the reply: after the trace), then its metric."""
        metric = self.trace_final()
        await self.push(TranscriptionFrame(text=text, user_id=user_id, language=language, speech_final=speech_final))
        if metric is not None:
            await self.push(metric)

    # --- routing ---------------------------------------------------------------------------------

    async def process(self, frame: Frame, direction: Direction) -> None:
        if direction is not DOWN:
            await self.push(frame, direction)
            return
        if isinstance(frame, InputAudioFrame):
            if self.pass_audio:
                await self.push(frame, direction)
            await self.take_audio(frame)
            return
        if isinstance(frame, StartFrame):
            await self.on_start(frame)
        elif isinstance(frame, UserStartedSpeakingFrame):
            await self.on_speech_started(frame)
        elif isinstance(frame, UserResumedSpeakingFrame):
            await self.on_speech_resumed(frame)
        elif isinstance(frame, UserPausedSpeakingFrame | UserStoppedSpeakingFrame):
            self._speech_end_ns = frame.speech_end_ns or self.clock.now_ns()
            await self.finalize(frame.speech_end_ns, stopped=isinstance(frame, UserStoppedSpeakingFrame))
        elif isinstance(frame, EndFrame):
            await self.on_end(frame)
        await self.push(frame, direction)


__all__ = ["STTService"]
