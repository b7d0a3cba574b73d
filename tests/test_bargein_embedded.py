"""Barge-in end to end, in process, with the embedded stack and real time.

Silero, Whisper, the offline responder and Piper run as a user would run them; the user's voice
(Piper, spoken into the memory microphone) and the bot's speaker are in memory. The responder
streams its words slowly (0.1 s each), so an answer is still being written when it is cut off.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.embedded_helpers import MS, EmbeddedBot, LoudIsSpeech, embedded_bot, noise_burst, silence, speak
from tests.support import running
from voxframe.pipeline import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    FalseInterruptionFrame,
    FunctionCallFrame,
    InterruptionFrame,
    LLMContext,
    TTSWordsFrame,
)
from voxframe.processors.llm.base import RESUME_NOTE
from voxframe.processors.llm.offline import OfflineLLM, offline_tools
from voxframe.processors.turns import TurnOptions
from voxframe.processors.vad import VADOptions

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

LONG_QUESTION = "Tell me about the weather in Paris."
SHORT_QUESTION = "Could you tell me the date?"
NEW_QUESTION = "What is twelve times three?"


def stopped(bot: EmbeddedBot, turn: int) -> list[BotStoppedSpeakingFrame]:
    return [f for f in bot.heard.of(BotStoppedSpeakingFrame) if f.turn == turn]


def started(bot: EmbeddedBot, turn: int) -> bool:
    return any(f.turn == turn for f in bot.heard.of(BotStartedSpeakingFrame))


def assistant_messages(context: LLMContext) -> list[dict]:
    return [m for m in context.messages if m["role"] == "assistant" and m.get("content")]


async def full_answer(question: str) -> str:
    """What the responder says to `question` when nobody interrupts (it is deterministic)."""
    context = LLMContext(tools=offline_tools())
    context.add("user", question)
    return "".join([item async for item in OfflineLLM().stream_completion(context, 1) if isinstance(item, str)])


async def test_speaking_over_a_long_answer_cuts_it_and_the_next_reply_answers_the_new_question() -> None:
    bot = embedded_bot()
    async with running(bot.processors) as task:
        bot.mic.feed(speak(LONG_QUESTION))
        await bot.heard.wait_for(lambda: started(bot, 1))
        # 1.5 s into the answer, the user asks something else.
        bot.mic.feed(np.concatenate([silence(1.5), speak(NEW_QUESTION)]))
        await bot.heard.wait_for(lambda: stopped(bot, 1))
        await bot.heard.wait_for(lambda: stopped(bot, 2), timeout_s=60)

        # The bot stopped talking within a chunk of the interruption.
        (interruption,) = [s for s in bot.heard.seen if isinstance(s.frame, InterruptionFrame)]
        turn1_chunks = [c.t_ns for c in bot.speaker.played if c.turn == 1]
        assert max(turn1_chunks) <= interruption.t_ns + 20 * MS
        (cut,) = stopped(bot, 1)
        assert cut.interrupted and 1.0 < cut.played_s < 5.0
        # The answer was still being written and spoken: both were cancelled, not finished.
        assert 1 in bot.responder.cut and 1 not in bot.responder.finished
        assert 1 in bot.tts.cut and 1 not in bot.tts.finished

        # The context holds only what the user heard of the first answer ...
        answer = await full_answer(LONG_QUESTION)
        first, second = assistant_messages(bot.context)
        heard_words = first["content"].split()
        assert first["interrupted"] and 0 < len(heard_words) < len(answer.split())
        assert heard_words == answer.split()[: len(heard_words)]
        # ... and the next reply answers the new question, through the calculator tool.
        assert [m["content"] for m in bot.context.messages if m["role"] == "user"] == [
            "Tell me about the weather in Paris.",
            "What is 12 times 3?",
        ]
        assert second["content"] == "12 times 3 is 36." and not second.get("interrupted")
        assert [f.function_name for f in bot.heard.of(FunctionCallFrame)] == ["calculate"]
        (end,) = stopped(bot, 2)
        assert not end.interrupted and end.played_s > 1.0
        assert task.turns.current == 2


async def test_a_short_noise_during_the_answer_does_not_stop_the_bot() -> None:
    bot = embedded_bot()
    async with running(bot.processors):
        bot.mic.feed(speak(SHORT_QUESTION))
        await bot.heard.wait_for(lambda: started(bot, 1))
        bot.mic.feed(np.concatenate([silence(0.3), noise_burst(0.15)]))  # a click, a short cough
        await bot.heard.wait_for(lambda: stopped(bot, 1))
        (end,) = stopped(bot, 1)
        assert not end.interrupted
        assert bot.heard.of(InterruptionFrame) == []
        assert end.played_s == pytest.approx(bot.speaker.played_s(turn=1), abs=0.03)
        (message,) = assistant_messages(bot.context)
        assert message["content"].startswith("Today is") and not message.get("interrupted")


async def test_a_cough_that_stops_the_bot_does_not_leave_it_silent() -> None:
    """The cough interrupts the answer; no words follow; the bot carries on where it stopped."""
    bot = embedded_bot(
        VADOptions(analyzer=LoudIsSpeech()), turns=TurnOptions(false_interruption="resume", false_interruption_s=1.0)
    )
    async with running(bot.processors) as task:
        bot.mic.feed(speak(LONG_QUESTION))
        await bot.heard.wait_for(lambda: started(bot, 1))
        bot.mic.feed(np.concatenate([silence(1.5), noise_burst(0.4)]))
        await bot.heard.wait_for(lambda: stopped(bot, 1))
        assert stopped(bot, 1)[0].interrupted
        await bot.heard.wait_for(lambda: started(bot, 2), timeout_s=10)  # not silent

        (recovery,) = bot.heard.of(FalseInterruptionFrame)
        assert (recovery.voided_turn, recovery.resume) == (1, True)
        await bot.heard.wait_for(lambda: 2 in bot.tts.finished, timeout_s=30)
        heard = assistant_messages(bot.context)[0]
        answer = (await full_answer(LONG_QUESTION)).split()
        spoken = heard["content"].split()
        assert heard["interrupted"] and 0 < len(spoken) < len(answer) and spoken == answer[: len(spoken)]
        # The second reply is the rest of the same answer: together the user hears all of it.
        resumed = [w.word for f in bot.heard.of(TTSWordsFrame) if f.turn == 2 for w in f.words]
        assert resumed == answer[len(spoken) :]
        assert RESUME_NOTE not in [m["content"] for m in bot.context.messages]
        assert task.turns.current == 2
