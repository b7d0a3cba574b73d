"""`python bots/example.py` answers a phone call and a WebSocket call: one bot file, every transport.

The example bot runs as a user runs it (embedded models, no keys); a phone speaking Twilio's
Media Streams asks the shipped question as 8 kHz μ-law, then a raw-format caller asks it at
16 kHz. Each is heard and answered.
"""

from __future__ import annotations

import anyio
import numpy as np
import pytest
from example_helpers import QUESTION_WAV, loud_seconds, serving_example, words
from websocket_helpers import raw_call, twilio_call

from voxframe.transports._audio import StreamResampler
from voxframe.transports.wav import read_wav

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def question_at(rate: int) -> np.ndarray:
    samples, wav_rate = read_wav(QUESTION_WAV)
    resampler = StreamResampler(wav_rate, 1, rate, 1)
    pcm = resampler.resample(samples.astype("<i2").tobytes()) + resampler.flush()
    return np.concatenate([np.frombuffer(pcm, "<i2"), np.zeros(rate, np.int16)])  # then a second of quiet


async def test_the_example_bot_answers_a_phone_call_and_a_websocket_call() -> None:
    async with serving_example() as bot:
        async with twilio_call(bot.url) as phone:
            phone.say(question_at(8000))
            with anyio.fail_after(60):
                await bot.console.wait_for(r"turn 1 \| heard:")
            await phone.got.wait_for(lambda: phone.played_s >= 1.0, timeout_s=30)
            await phone.hang_up()
        async with raw_call(bot.url) as caller:
            await caller.got.wait_for(lambda: caller.got.of("bot-ready"), timeout_s=30)
            await caller.say(question_at(16_000))
            await caller.got.wait_for(lambda: caller.got.of("bot-stopped-speaking"), timeout_s=60)
        with anyio.fail_after(30):
            await bot.console.wait_for(f"session {caller.got.of('session')[0]['session_id']} ended")
        phone_turn, ws_turn = [line for line in bot.console.lines if "turn 1 | heard:" in line]  # a call each

    for line in (phone_turn, ws_turn):
        assert words(line.split("heard:", 1)[1].split("|", 1)[0]) == ["what", "time", "is", "it"]
        assert "said: It is" in line
    assert loud_seconds(np.frombuffer(bytes(phone.played), "<i2"), 8000) >= 0.5
    assert loud_seconds(np.frombuffer(bytes(caller.got.audio), "<i2"), 16_000) >= 0.5
    assert [e["type"] for e in caller.got.events][:2] == ["session", "bot-ready"]
