"""`python bots/example.py --call question.wav`, end to end, as a user runs it.

The bot is served, called through real WebRTC on 127.0.0.1 by the headless client, hears the
shipped question and answers; the command prints what it heard and said and saves the reply.
Once on the embedded models (no key), once with the three cloud clients pointed at the fakes.
"""

from __future__ import annotations

import datetime
import sys
import wave
from pathlib import Path

import anyio
import numpy as np
import pytest
from example_helpers import (
    EXAMPLE,
    QUESTION_WAV,
    ROOT,
    clean_env,
    loud_seconds,
    output_line,
    words,
)

from tests.embedded_helpers import RATE, silence, speak
from voxframe.fakes import (
    CartesiaFake,
    DeepgramFake,
    DeepgramFakeOptions,
    FakeProviders,
    OpenAIFake,
    OpenAIFakeOptions,
)
from voxframe.transports.wav import read_wav, write_wav

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def call_example(reply: Path, env: dict[str, str], question: Path = QUESTION_WAV) -> str:
    """Run the --call command; returns its output, asserting it exited 0."""
    command = [sys.executable, str(EXAMPLE), "--call", str(question), "--reply-out", str(reply)]
    with anyio.fail_after(120):
        done = await anyio.run_process(command, env=env, cwd=ROOT, check=False)
    out = done.stdout.decode()
    assert done.returncode == 0, f"exit {done.returncode}\n{out}\n{done.stderr.decode()[-3000:]}"
    return out


def assert_reply_audio(reply: Path) -> None:
    with wave.open(str(reply), "rb") as wav:
        assert wav.getnchannels() == 1, "the saved reply is not mono"
    samples, rate = read_wav(reply)
    assert loud_seconds(samples, rate) >= 0.5, "the saved reply holds no audible speech"


async def test_call_on_the_embedded_models_hears_the_question_and_answers(tmp_path: Path) -> None:
    reply = tmp_path / "reply.wav"
    out = await call_example(reply, clean_env())

    assert "Whisper" in out and "offline responder" in out and "Piper" in out  # it says what it chose
    assert words(output_line(out, "bot heard")) == ["what", "time", "is", "it"]
    answered = output_line(out, "bot answered")
    assert words(answered)[:2] == ["it", "is"], answered  # the time, via the get_time tool
    assert 0 < float(output_line(out, "mouth-to-ear").split()[0]) < 5000
    assert_reply_audio(reply)


@pytest.mark.parametrize(
    ("question", "answer_words"),
    [
        ("What is seven times eight?", ["56"]),  # the calculate tool
        ("What is the date today?", [datetime.date.today().strftime("%B").lower()]),  # get_date: the month
    ],
)
async def test_the_embedded_example_answers_the_date_and_arithmetic(
    tmp_path: Path, question: str, answer_words: list[str]
) -> None:
    """What the README promises the offline responder answers, asked as a user would."""
    wav = tmp_path / "question.wav"
    write_wav(wav, np.concatenate([speak(question), silence(0.3)]), RATE)
    out = await call_example(tmp_path / "reply.wav", clean_env(), question=wav)

    answered = words(output_line(out, "bot answered"))
    assert all(word in answered for word in answer_words), out


async def test_call_with_the_cloud_clients_against_the_fakes(tmp_path: Path) -> None:
    fakes = FakeProviders(
        DeepgramFake(DeepgramFakeOptions(transcripts=["What time is it?"])),
        OpenAIFake(OpenAIFakeOptions(replies=["It is half past ten in the morning."])),
        CartesiaFake(),
    )
    reply = tmp_path / "reply.wav"
    async with fakes:
        out = await call_example(reply, clean_env(**fakes.env()))

    assert "Deepgram at ws://127.0.0.1" in out and "OpenAI-compatible at http://127.0.0.1" in out
    assert "Cartesia at ws://127.0.0.1" in out
    assert output_line(out, "bot heard") == "What time is it?"
    assert output_line(out, "bot answered") == "It is half past ten in the morning."
    assert_reply_audio(reply)
    # The real clients did the work: audio to Deepgram, the question to OpenAI, the answer to Cartesia.
    assert any(len(conn.audio) > 16_000 for conn in fakes.deepgram.connections)
    request = fakes.openai.requests[0]
    assert (request["messages"][-1]["role"], request["messages"][-1]["content"]) == ("user", "What time is it?")
    assert {t["function"]["name"] for t in request["tools"]} == {"get_time", "capital_of", "get_date", "calculate"}
    spoken = " ".join(text for ctx in fakes.cartesia.contexts.values() for text in ctx["texts"])
    assert words(spoken) == words("It is half past ten in the morning.")
