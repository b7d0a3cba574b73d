"""What the simulated cloud says in the mouth-to-ear benchmark, and how long it is told to take.

The fakes get a transcript for every utterance the caller says (in order) and answer each user
message with a reply that opens with a short sentence ("Sure."), as voice assistants prompted
for brevity do; the question used for barge-in trials gets a long answer to talk over. Latency
profiles are the fakes' defaults (LATENCY.md's p50s, no jitter), so the service time of a turn
is a known constant and the rest of mouth-to-ear is the framework's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import m2e_utterances as speech

from voxframe.fakes import (
    CartesiaFake,
    DeepgramFake,
    DeepgramFakeOptions,
    FakeProviders,
    OpenAIFake,
    OpenAIFakeOptions,
)
from voxframe.fakes.openai import tokens

SHORT_REPLIES = (
    "Sure. It is a quarter past nine.",
    "Sure. That comes to fifty six.",
    "Sure. Today is the twenty fifth.",
    "Sure. Happy to help with that.",
    "Sure. I am doing well, thanks.",
)
LONG_REPLY = (
    "Sure. The ocean covers most of our planet, and its deepest trench goes down about eleven "
    "kilometres. Whales sing to each other across whole basins, octopuses solve puzzles, and "
    "tiny plankton make much of the oxygen we breathe, while many creatures of the deep sea "
    "make their own light to hunt and to hide."
)
#: Silence the fake Cartesia voice puts before the first word (its spans start 10 ms in).
FAKE_AUDIO_LEAD_S = 0.010
_SENTENCE_MARKS = ".!?"


def reply_for(long_question: str) -> Any:
    """The fake LLM's answer to a request, picked by the last user message."""

    def reply(body: dict[str, Any]) -> str:
        users = [m for m in body.get("messages", []) if m.get("role") == "user"]
        text = str(users[-1].get("content", "")) if users else ""
        if text.strip() == long_question:
            return LONG_REPLY
        return SHORT_REPLIES[sum(map(ord, text)) % len(SHORT_REPLIES)]

    return reply


@asynccontextmanager
async def cloud_fakes(utterances: Sequence[speech.Utterance], long_question: str) -> AsyncIterator[FakeProviders]:
    """Fresh fakes for one stack, scripted for the conversation the caller will hold."""
    transcripts = ["Hello.", *(u.text for u in utterances), *[long_question, speech.BARGE_IN_TEXT] * 50]
    replies = [reply_for(long_question)] * 1000
    fakes = FakeProviders(
        DeepgramFake(DeepgramFakeOptions(transcripts=transcripts)),
        OpenAIFake(OpenAIFakeOptions(replies=replies)),
        CartesiaFake(),
    )
    async with fakes:
        yield fakes


def settle_tokens(text: str) -> int:
    """Content tokens streamed until the first sentence is known to be over (the one after its mark)."""
    parts = tokens(text)
    for i, token in enumerate(parts):
        if token.strip() and token.strip()[-1] in _SENTENCE_MARKS:
            return min(i + 2, len(parts))
    return len(parts)


def service_time_s(fakes: FakeProviders) -> float:
    """What the services of one turn are told to take before the reply can be heard."""
    openai = fakes.openai.options
    per_reply = {settle_tokens(text) for text in SHORT_REPLIES}
    assert len(per_reply) == 1, "every short reply must settle its first sentence after as many tokens"
    return (
        fakes.deepgram.options.final_latency.p50_s
        + openai.ttft.p50_s
        + openai.token_interval_s * per_reply.pop()
        + fakes.cartesia.options.ttfa.p50_s
        + FAKE_AUDIO_LEAD_S
    )


__all__ = ["LONG_REPLY", "SHORT_REPLIES", "cloud_fakes", "reply_for", "service_time_s", "settle_tokens"]
