"""What the simulated cloud says in the mouth-to-ear benchmark, and what each turn drew.

`fakes_process` serves the fakes in a process of their own (`python m2e_script.py WORKDIR`), as
remote services are: sharing the measuring caller's event loop, they would answer late whenever
the caller is busy encoding or listening, and that lateness would pass for the bot's. Each stack
gets fakes of its own (one process each), so two bots can stay up side by side.

Before every utterance the caller tells its stack's fakes, through a small control endpoint on
127.0.0.1 (`POST /turn {"seed", "text"}`), what it is about to say and which seed the turn's
latencies are drawn from: the Deepgram fake transcribes the next utterance as that text, and
the three fakes restart their draws from the seed (one per fake, derived from it). Both stacks
get the same seed for the same turn, so with jitter on they are told the same latencies.

Latency profiles are the fakes' defaults: LATENCY.md's p50 and p95, drawn from a seeded
lognormal. So a turn's service time is no constant: `GET /log` returns every latency each fake
drew (with when) and every LLM request (with its last user message), and `turn_service_s` adds
up what the turn that was answered actually drew.

The fake LLM answers each user message with one of `SHORT_REPLIES` (first sentences from one
word to a dozen, as voice assistants prompted for brevity answer), picked by the message's text
so both stacks hear the same reply; the barge-in question gets a long answer to talk over.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
from aiohttp import web
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
from voxframe.pipeline.clock import NS_PER_S

SHORT_REPLIES = (
    "Sure. It is a quarter past nine.",
    "It is a quarter past nine in the morning right now. Anything else?",
    "That comes to fifty six. Happy to help.",
    "Today is Tuesday, the twenty fifth of November, and the weather looks fine. Shall I go on?",
    "Happy to help with that. What would you like to know first?",
    "I am doing well, thanks for asking. How about you?",
    "Yes. Paris is the capital.",
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


def last_user_text(body: dict[str, Any]) -> str:
    """The last user message of an LLM request (its content parts joined)."""
    users = [m for m in body.get("messages", []) if m.get("role") == "user"]
    if not users:
        return ""
    content = users[-1].get("content", "")
    if isinstance(content, list):
        content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content)


def reply_text(user_text: str, long_question: str) -> str:
    """What the fake LLM answers to `user_text` (the same on both stacks)."""
    if user_text.strip() == long_question:
        return LONG_REPLY
    return SHORT_REPLIES[sum(map(ord, user_text.strip())) % len(SHORT_REPLIES)]


def reply_for(long_question: str) -> Any:
    """The fake LLM's answer to a request, picked by the last user message."""
    return lambda body: reply_text(last_user_text(body), long_question)


class ScriptedDeepgram(DeepgramFake):
    """Transcribes the next utterance as the text the caller said it would say.

    An utterance the fake split in two (a Finalize in a pause, then more speech) gets the text
    once and an empty transcript after: the reply then answers those words, as it would have.
    """

    def __init__(self) -> None:
        super().__init__(DeepgramFakeOptions())
        self.expected = ""
        self._given = True
        self._assigned: dict[int, str] = {}

    def expect(self, text: str) -> None:
        self.expected, self._given = text, False

    def transcript(self, index: int) -> str:
        if index not in self._assigned:
            self._assigned[index] = "" if self._given else self.expected
            self._given = True
        return self._assigned[index]


def fakes_log(fakes: FakeProviders) -> dict[str, Any]:
    """Every LLM request (arrival ns, last user message) and every latency drawn (ns, kind, s)."""
    requests = [
        {"at_ns": int(c.started * NS_PER_S), "user": last_user_text(c.received[0])}
        for c in fakes.openai.connections
        if c.received and isinstance(c.received[0], dict)
    ]
    draws = {
        name: [[int(at * NS_PER_S), kind, seconds] for at, kind, seconds in fake.draws]
        for name, fake in (("deepgram", fakes.deepgram), ("openai", fakes.openai), ("cartesia", fakes.cartesia))
    }
    return {"llm": requests, "draws": draws}


@asynccontextmanager
async def cloud_fakes(long_question: str) -> AsyncIterator[FakeProviders]:
    """Fresh fakes for one stack, answering as the conversation needs."""
    fakes = FakeProviders(
        ScriptedDeepgram(), OpenAIFake(OpenAIFakeOptions(replies=[reply_for(long_question)] * 100_000)), CartesiaFake()
    )
    async with fakes:
        yield fakes


class FakesControl:
    """The benchmark's handle on one stack's fakes process."""

    def __init__(self, env: dict[str, str]) -> None:
        self.url = env.pop("M2E_CONTROL_URL")
        self.env = env

    async def turn(self, seed: int, text: str) -> None:
        async with httpx.AsyncClient(timeout=5.0) as client:
            (await client.post(f"{self.url}/turn", json={"seed": seed, "text": text})).raise_for_status()

    async def log(self) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=30.0) as client:
            response = await client.get(f"{self.url}/log")
            response.raise_for_status()
            return response.json()


@asynccontextmanager
async def fakes_process(name: str, long_question: str, workdir: Path) -> AsyncIterator[FakesControl]:
    """`async with fakes_process(...) as control:` one stack's fakes serve, in their own process,
    at the addresses in `control.env` (the variables `FakeProviders.env()` gives)."""
    command = [sys.executable, str(_HERE), long_question]
    async with bot_process(command, None, workdir / f"mouth_to_ear_fakes_{name}.log") as ready:
        yield FakesControl(json.loads(ready))


async def _serve(long_question: str) -> None:
    """Serve the fakes and their control endpoint until SIGINT; the line `FAKES {env}` says where."""
    async with cloud_fakes(long_question) as fakes:
        deepgram = fakes.deepgram
        assert isinstance(deepgram, ScriptedDeepgram)

        async def turn(request: web.Request) -> web.Response:
            body = await request.json()
            seed = int(body["seed"])
            for k, fake in enumerate((fakes.deepgram, fakes.openai, fakes.cartesia)):
                fake.reseed(seed * 3 + k)  # three streams of draws, not one stream three times
            deepgram.expect(str(body["text"]))
            return web.json_response({"ok": True})

        async def log(request: web.Request) -> web.Response:
            return web.json_response(fakes_log(fakes))

        app = web.Application()
        app.router.add_post("/turn", turn)
        app.router.add_get("/log", log)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                env = {**fakes.env(), "M2E_CONTROL_URL": f"http://127.0.0.1:{port}"}
                print(f"FAKES {json.dumps(env)}", flush=True)
                async for _ in signals:
                    return
        finally:
            await runner.cleanup()


def settle_tokens(text: str) -> int:
    """Content tokens streamed until the first sentence is known to be over (the one after its mark)."""
    parts = tokens(text)
    for i, token in enumerate(parts):
        if token.strip() and token.strip()[-1] in _SENTENCE_MARKS:
            return min(i + 2, len(parts))
    return len(parts)


def turn_service_s(final_s: float, ttft_s: float, reply: str, ttfa_s: float) -> float:
    """What the services of one turn took before its reply could be heard: Deepgram's final,
    the LLM's first token and the tokens that settle the first sentence, Cartesia's first audio
    and the fake voice's lead-in."""
    return final_s + ttft_s + OpenAIFakeOptions().token_interval_s * settle_tokens(reply) + ttfa_s + FAKE_AUDIO_LEAD_S


def budget_service_s(reply: str) -> float:
    """`turn_service_s` with every latency at its profile's p50 (the budget of a typical turn)."""
    final, ttft = DeepgramFakeOptions().final_latency.p50_s, OpenAIFakeOptions().ttft.p50_s
    return turn_service_s(final, ttft, reply, CartesiaFakeOptions().ttfa.p50_s)


__all__ = [
    "LONG_REPLY",
    "SHORT_REPLIES",
    "FakesControl",
    "ScriptedDeepgram",
    "budget_service_s",
    "cloud_fakes",
    "fakes_log",
    "fakes_process",
    "last_user_text",
    "reply_for",
    "reply_text",
    "settle_tokens",
    "turn_service_s",
]


if __name__ == "__main__":
    anyio.run(_serve, sys.argv[1])
