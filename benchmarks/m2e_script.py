"""What the simulated cloud says in the mouth-to-ear benchmark, and how long it is told to take.

`fakes_process` serves the fakes in a process of their own (`python m2e_script.py TEXTS.json`),
as remote services are: sharing the measuring caller's event loop, they would answer late
whenever the caller is busy encoding or listening, and that lateness would pass for the bot's.

The fakes get a transcript for every utterance the caller says (in order) and answer each user
message with a reply that opens with a short sentence ("Sure."), as voice assistants prompted
for brevity do; the question used for barge-in trials gets a long answer to talk over. Latency
profiles are the fakes' defaults (LATENCY.md's p50 and p95, seeded lognormal draws), so the service time of a turn
is a known constant and the rest of mouth-to-ear is the framework's.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import m2e_utterances as speech
from m2e_bots import bot_process

from voxframe.fakes import (
    CartesiaFake,
    CartesiaFakeOptions,
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
_HERE = Path(__file__).resolve()
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
async def cloud_fakes(texts: Sequence[str], long_question: str) -> AsyncIterator[FakeProviders]:
    """Fresh fakes for one stack, scripted for the conversation the caller will hold."""
    transcripts = ["Hello.", *texts, *[long_question, speech.BARGE_IN_TEXT] * 50]
    replies = [reply_for(long_question)] * 1000
    fakes = FakeProviders(
        DeepgramFake(DeepgramFakeOptions(transcripts=transcripts)),
        OpenAIFake(OpenAIFakeOptions(replies=replies)),
        CartesiaFake(),
    )
    async with fakes:
        yield fakes


@asynccontextmanager
async def fakes_process(texts: Sequence[str], long_question: str, workdir: Path) -> AsyncIterator[dict[str, str]]:
    """`async with fakes_process(...) as env:` the scripted fakes serve, in their own process,
    at the addresses in `env` (the variables `FakeProviders.env()` gives)."""
    script = workdir / "mouth_to_ear_fakes.json"
    await anyio.Path(script).write_text(json.dumps({"texts": list(texts), "long_question": long_question}))
    command = [sys.executable, str(_HERE), str(script)]
    async with bot_process(command, None, workdir / "mouth_to_ear_fakes.log") as ready:
        yield json.loads(ready)


async def _serve(script: Path) -> None:
    """Serve the fakes until SIGINT; the line `FAKES {env}` says where."""
    plan = json.loads(await anyio.Path(script).read_text())
    async with cloud_fakes(plan["texts"], plan["long_question"]) as fakes:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            print(f"FAKES {json.dumps(fakes.env())}", flush=True)
            async for _ in signals:
                return


def settle_tokens(text: str) -> int:
    """Content tokens streamed until the first sentence is known to be over (the one after its mark)."""
    parts = tokens(text)
    for i, token in enumerate(parts):
        if token.strip() and token.strip()[-1] in _SENTENCE_MARKS:
            return min(i + 2, len(parts))
    return len(parts)


def service_time_s() -> float:
    """What the services of one turn are told to take before the reply can be heard (the
    latency profiles `cloud_fakes` leaves at their defaults)."""
    openai = OpenAIFakeOptions()
    per_reply = {settle_tokens(text) for text in SHORT_REPLIES}
    assert len(per_reply) == 1, "every short reply must settle its first sentence after as many tokens"
    return (
        DeepgramFakeOptions().final_latency.p50_s
        + openai.ttft.p50_s
        + openai.token_interval_s * per_reply.pop()
        + CartesiaFakeOptions().ttfa.p50_s
        + FAKE_AUDIO_LEAD_S
    )


__all__ = [
    "LONG_REPLY",
    "SHORT_REPLIES",
    "cloud_fakes",
    "fakes_process",
    "reply_for",
    "service_time_s",
    "settle_tokens",
]


if __name__ == "__main__":
    anyio.run(_serve, Path(sys.argv[1]))
