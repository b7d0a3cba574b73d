"""A bot that talks, cheaply, for the browser tests: the real VAD, user aggregator, LLM and TTS
bases, with a scripted STT (it always hears `QUESTION`) and a voice that is an 880 Hz tone.

`microphone` writes the fake microphone the browser plays, looping: a question, silence while
the bot answers, then words over the answer (a barge-in), whenever the call comes up.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
from webrtc_helpers import tone

from tests.embedded_helpers import LoudIsSpeech
from voxframe.pipeline import (
    DOWN,
    UP,
    ClientMessageFrame,
    ClientResponseFrame,
    Direction,
    Frame,
    FrameProcessor,
    InterimTranscriptionFrame,
    LLMContext,
    Pipeline,
    PipelineParams,
    PipelineTask,
    TranscriptionFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from voxframe.processors.aggregators.user import UserContextAggregator
from voxframe.processors.llm.offline import OfflineLLM
from voxframe.processors.tts import TTSChunk, TTSOptions, TTSService
from voxframe.processors.turns import TurnController
from voxframe.processors.vad import VADOptions, VADProcessor
from voxframe.transports.wav import write_wav
from voxframe.transports.webrtc import Session

QUESTION = "what is the capital of france"
BOT_HZ = 880.0
WORD_S = 0.25


class ScriptedSTT(FrameProcessor):
    """Hears the question in whatever the user says: an interim as they start, the final as they stop."""

    async def process(self, frame: Frame, direction: Direction) -> None:
        await self.push(frame, direction)
        if direction is DOWN and isinstance(frame, UserStartedSpeakingFrame):
            await self.push(InterimTranscriptionFrame(text=QUESTION.rsplit(" ", 3)[0]))
        elif direction is DOWN and isinstance(frame, UserStoppedSpeakingFrame):
            await self.push(TranscriptionFrame(text=QUESTION))


class ToneTTS(TTSService):
    """A voice that says every word as `WORD_S` of an 880 Hz tone."""

    async def synthesize(self, text: str, turn: int) -> AsyncIterator[TTSChunk]:
        yield tone(BOT_HZ, WORD_S * len(text.split()), self.sample_rate, amplitude=0.4).tobytes()


class AnswersPings(FrameProcessor):
    """The app's end of `client.sendClientRequest("ping", {n})`: answers ``{"pong": n}``."""

    async def process(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, ClientMessageFrame) and frame.message_type == "ping":
            pong = {"pong": frame.data.get("n") if isinstance(frame.data, dict) else None}
            await self.push(ClientResponseFrame(msg_id=frame.msg_id, message_type=frame.message_type, data=pong), UP)
            return
        await self.push(frame, direction)


async def factory(session: Session) -> PipelineTask:
    vad = VADProcessor(VADOptions(analyzer=LoudIsSpeech()))
    processors = [session.input, AnswersPings(), vad, ScriptedSTT(), TurnController(),
                  UserContextAggregator(LLMContext()), OfflineLLM(), ToneTTS(TTSOptions(sample_rate=24_000)),
                  session.output]  # fmt: skip
    return PipelineTask(Pipeline(processors), PipelineParams(idle_timeout_s=None))


def microphone(path: Path) -> Path:
    """A looping fake microphone: a question, silence while the bot answers, then words over it."""
    rate = 48_000

    def syllables(count: int) -> np.ndarray:
        parts = []
        for i in range(count):
            parts += [tone(300.0 + 40 * (i % 3), 0.2, rate, amplitude=0.3), np.zeros(rate * 6 // 100, np.int16)]
        return np.concatenate(parts)

    quiet = np.zeros(rate * 3, np.int16)
    write_wav(path, np.concatenate([syllables(5), quiet, syllables(3), quiet]), rate)
    return path
