"""`python bots/example.py` serving: the URL, one console line per turn, Ctrl-C ends every session."""

from __future__ import annotations

import signal

import anyio
import pytest
from example_helpers import QUESTION_WAV, serving_example, words

from voxframe.transports.webrtc import ClientOptions, HeadlessClient, IceOptions

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def test_serves_prints_each_turn_and_stops_cleanly_on_ctrl_c() -> None:
    async with serving_example() as bot:
        options = ClientOptions(ice=IceOptions(host_addresses=("127.0.0.1",)), record=False)
        async with HeadlessClient.connect(bot.url, options) as client:
            with anyio.fail_after(60):
                await client.wait_for_event("bot-ready", timeout_s=60)
                played = await client.play(QUESTION_WAV)
                await client.wait_for_onset(after_ns=played.speech_end_ns, timeout_s=60)
                line = (await bot.console.wait_for(r"turn 1 \| heard:")).string
            # Ctrl-C while the call is still up: the session ends, the process exits 0.
            bot.process.send_signal(signal.SIGINT)
            with anyio.fail_after(30):
                await bot.console.wait_for("stopping: ending 1 session")
                assert await bot.process.wait() == 0
        await bot.console.wait_for(r"^stopped$")

    heard = line.split("heard:", 1)[1].split("|", 1)[0]
    assert words(heard) == ["what", "time", "is", "it"]
    assert "said: It is" in line and "first_audio_out +" in line
