"""Typed frames: everything that flows through a pipeline.

Three kinds, scheduled differently:

* system frames are urgent: they overtake queued frames and an interruption never drops them;
* data frames carry content, in order;
* control frames are ordered with data (end of stream, response boundaries, context).

Each frame says whether it is *interruptible*: pending bot output that an interruption flushes.
User audio and system frames never are. Bot output carries the `turn` (bot reply number) it
belongs to; 0 means "not tied to a reply" (a greeting queued by the app).
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar, dataclass_transform

from .clock import now_ns

if TYPE_CHECKING:
    from .context import LLMContext

_frame_ids = itertools.count(1)
_F = TypeVar("_F", bound="Frame")


@dataclass(slots=True, kw_only=True, weakref_slot=True, eq=False)
class Frame:
    """Base of every frame: an id, its creation time on the one clock, and its turn."""

    is_system: ClassVar[bool] = False
    is_control: ClassVar[bool] = False
    interruptible: ClassVar[bool] = False

    id: int = field(default_factory=_frame_ids.__next__)
    created_ns: int = field(default_factory=now_ns)
    turn: int = 0
    #: Set once observers were told of this frame (`Observer.on_frame`, at its first push); a
    #: `twin` starts set, so an event pushed both ways is told once.
    observed: bool = field(default=False, init=False, repr=False)

    @property
    def name(self) -> str:
        return f"{type(self).__name__}#{self.id}"

    def twin(self) -> Self:
        """The same event as a fresh frame (its own id) for the other direction: each side's
        processors own their frame, and observers are not told of the event a second time."""
        twin = copy.copy(self)
        twin.id = next(_frame_ids)
        twin.observed = True
        return twin


@dataclass_transform(kw_only_default=True, eq_default=False)
def frame(cls: type[_F]) -> type[_F]:
    """The dataclass form of every frame class (keyword-only fields, identity equality)."""
    return dataclass(slots=True, kw_only=True, eq=False)(cls)


@frame
class SystemFrame(Frame):
    is_system: ClassVar[bool] = True


@frame
class DataFrame(Frame):
    pass


@frame
class ControlFrame(Frame):
    is_control: ClassVar[bool] = True


# --- lifecycle -----------------------------------------------------------------------------


@frame
class StartFrame(SystemFrame):
    """First frame of a run; carries the pipeline-wide audio settings."""

    audio_in_sample_rate: int = 16_000
    audio_out_sample_rate: int = 24_000
    allow_interruptions: bool = True


@frame
class EndFrame(ControlFrame):
    """Graceful end: everything queued before it is processed, then the pipeline stops."""


@frame
class CancelFrame(SystemFrame):
    """Immediate stop: nothing queued is processed."""


@frame
class ErrorFrame(SystemFrame):
    """Travels upstream to the task. A fatal one ends the task with this error reported."""

    error: str
    fatal: bool = False
    processor: str | None = None
    exception: BaseException | None = None


@frame
class MetricsFrame(SystemFrame):
    """A measurement from a processor (`metric` e.g. "ttfb", `value` in seconds)."""

    processor: str
    metric: str
    value: float


# --- speaking state and interruption --------------------------------------------------------


@frame
class UserStartedSpeakingFrame(SystemFrame):
    """The VAD decided the user speaks; `speech_start_ns` is when the speech itself began."""

    speech_start_ns: int | None = None


@frame
class UserStoppedSpeakingFrame(SystemFrame):
    """The VAD decided the user stopped; `speech_end_ns` is when the speech itself ended."""

    speech_end_ns: int | None = None


@frame
class UserPausedSpeakingFrame(SystemFrame):
    """The user has been quiet for the VAD's `pause_s`, short of its stop: the words so far can
    be finalized and a reply prepared, but the turn may still go on (`UserResumedSpeakingFrame`)."""

    speech_end_ns: int | None = None


@frame
class UserResumedSpeakingFrame(SystemFrame):
    """Speech again after a pause, before the stop: the same user turn goes on."""


@frame
class UserTurnStartedFrame(SystemFrame):
    """The turn controller opened a user turn: replies from turn `held_from` on were prepared
    while the user holds the floor, so they are held (not heard, no tool that acts) until
    `UserTurnEndedFrame`. Consumers read this; they do not work the state out themselves."""

    held_from: int = 0


@frame
class UserTurnEndedFrame(SystemFrame):
    """The turn controller ended the user's turn: held replies may now be heard and act."""


@frame
class BotStartedSpeakingFrame(SystemFrame):
    pass


@frame
class BotStoppedSpeakingFrame(SystemFrame):
    """The bot's audio stopped; `played_s` is how much of the reply reached the wire."""

    played_s: float = 0.0
    interrupted: bool = False


@frame
class InterruptionFrame(SystemFrame):
    """Bot output of every turn up to `stale_upto` is void: drop it and cancel work on it."""

    stale_upto: int = 0
    reason: str = ""


@frame
class FalseInterruptionFrame(SystemFrame):
    """User speech voided turn `voided_turn`, then no words followed (a cough, a door).

    The VAD sends it downstream so the bot is not left silent: whoever starts replies replies
    again to the same context (`resume`: carrying on from where the bot was cut off).
    """

    voided_turn: int
    resume: bool = False


@frame
class EndTaskFrame(SystemFrame):
    """Pushed upstream by a processor that decided the session is over (a silent user): the
    task ends gracefully, as `PipelineTask.stop_when_done` would."""

    reason: str = ""


# --- audio -----------------------------------------------------------------------------------


@frame
class AudioFrame(DataFrame):
    """PCM s16le audio. `pts` is the position of the first sample, in samples at `sample_rate`."""

    audio: bytes
    sample_rate: int
    num_channels: int = 1
    pts: int | None = None

    @property
    def num_samples(self) -> int:
        return len(self.audio) // (2 * self.num_channels)

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.sample_rate


@frame
class InputAudioFrame(AudioFrame):
    """The user's audio from a transport. Never dropped by an interruption."""


@frame
class OutputAudioFrame(AudioFrame):
    """Bot audio on its way to a transport."""

    interruptible: ClassVar[bool] = True


@frame
class TTSAudioFrame(OutputAudioFrame):
    """Audio synthesised by a TTS processor."""


# --- text ------------------------------------------------------------------------------------


@frame
class InterimTranscriptionFrame(DataFrame):
    text: str
    user_id: str = ""
    language: str | None = None


@frame
class TranscriptionFrame(DataFrame):
    """A final transcript segment of the user's speech. `speech_final`: the STT's own
    endpointing says the user's speech ended here (Deepgram's `speech_final`)."""

    text: str
    user_id: str = ""
    language: str | None = None
    speech_final: bool = False


@frame
class TextFrame(DataFrame):
    """Bot text to be spoken."""

    interruptible: ClassVar[bool] = True

    text: str


@frame
class LLMTextFrame(TextFrame):
    """A streamed token (or chunk) of an LLM reply."""


@frame
class TTSSpeakFrame(TextFrame):
    """Speak this text as one utterance, outside of any LLM reply (greetings, apologies).
    `allow_interruptions=False`: user speech does not cut it (a legal notice); the turn controller
    learns so as the frame passes it, so queue it from the head of the pipeline."""

    allow_interruptions: bool = True


@dataclass(slots=True)
class WordTiming:
    word: str
    start_s: float
    end_s: float


@frame
class TTSWordsFrame(DataFrame):
    """Word timings of synthesised audio, in seconds from the start of the turn's audio."""

    interruptible: ClassVar[bool] = True

    words: list[WordTiming]


# --- response boundaries and context --------------------------------------------------------


@frame
class LLMContextFrame(ControlFrame):
    """Run the LLM on this context; the reply will be turn `turn`. `resume`: the previous reply
    was cut off by a false interruption; carry on from where it stopped."""

    interruptible: ClassVar[bool] = True

    context: LLMContext
    resume: bool = False


@frame
class UserMessageFrame(ControlFrame):
    """The turn controller's decision: the user's words `text` are one message of the context,
    answered by reply `turn` (the user aggregator writes it and asks for the reply)."""

    text: str


@frame
class UserMessageWithdrawnFrame(ControlFrame):
    """The user went on speaking: the message answered by reply `turn` (prepared at a pause)
    leaves the context, with whatever its reply added after it."""


@frame
class LLMResponseStartFrame(ControlFrame):
    interruptible: ClassVar[bool] = True


@frame
class LLMResponseEndFrame(ControlFrame):
    interruptible: ClassVar[bool] = True


@frame
class TTSStartedFrame(ControlFrame):
    interruptible: ClassVar[bool] = True


@frame
class TTSStoppedFrame(ControlFrame):
    interruptible: ClassVar[bool] = True


@frame
class FunctionCallFrame(ControlFrame):
    """A tool call the LLM asked for; it must never run once its turn is stale."""

    interruptible: ClassVar[bool] = True

    call_id: str
    function_name: str
    arguments: dict[str, Any]


@frame
class FunctionCallResultFrame(ControlFrame):
    interruptible: ClassVar[bool] = True

    call_id: str
    function_name: str
    result: Any


@frame
class TransportMessageFrame(SystemFrame):
    """A message of the app's for the client (RTVI's `server-message`: `message` is its data)."""

    message: dict[str, Any]


# --- from the client -------------------------------------------------------------------------


@frame
class UserTextFrame(DataFrame):
    """Text the user typed (RTVI `send-text`): a user turn of its own, as if it had been said."""

    text: str


@frame
class ClientMessageFrame(SystemFrame):
    """An app-defined message from the client (RTVI `client-message` ``{"t", "d"}``).

    Answer it with a `ClientResponseFrame` carrying the same `msg_id` (pushed either way).
    """

    msg_id: str
    message_type: str
    data: Any = None


@frame
class ClientResponseFrame(SystemFrame):
    """The answer to the client message `msg_id`: its `data`, or `error` (a refusal)."""

    msg_id: str
    message_type: str
    data: Any = None
    error: str | None = None


__all__ = [
    "AudioFrame",
    "BotStartedSpeakingFrame",
    "BotStoppedSpeakingFrame",
    "CancelFrame",
    "ClientMessageFrame",
    "ClientResponseFrame",
    "ControlFrame",
    "DataFrame",
    "EndFrame",
    "EndTaskFrame",
    "ErrorFrame",
    "FalseInterruptionFrame",
    "Frame",
    "FunctionCallFrame",
    "FunctionCallResultFrame",
    "InputAudioFrame",
    "InterimTranscriptionFrame",
    "InterruptionFrame",
    "LLMContextFrame",
    "LLMResponseEndFrame",
    "LLMResponseStartFrame",
    "LLMTextFrame",
    "MetricsFrame",
    "OutputAudioFrame",
    "StartFrame",
    "SystemFrame",
    "TTSAudioFrame",
    "TTSSpeakFrame",
    "TTSStartedFrame",
    "TTSStoppedFrame",
    "TTSWordsFrame",
    "TextFrame",
    "TranscriptionFrame",
    "TransportMessageFrame",
    "UserMessageFrame",
    "UserMessageWithdrawnFrame",
    "UserPausedSpeakingFrame",
    "UserResumedSpeakingFrame",
    "UserStartedSpeakingFrame",
    "UserStoppedSpeakingFrame",
    "UserTextFrame",
    "UserTurnEndedFrame",
    "UserTurnStartedFrame",
    "WordTiming",
]
