"""`python bots/example.py` answers a phone call and a WebSocket call: one bot file, every transport.

The example bot runs as a user runs it (embedded models, no keys); a phone speaking Twilio's
Media Streams asks the shipped question as 8 kHz μ-law, then a raw-format caller asks it at
16 kHz. Each is heard and answered.
"""

from __future__ import annotations

import subprocess
import sys

import anyio
import numpy as np
import pytest
from example_helpers import EXAMPLE, QUESTION_WAV, ROOT, clean_env, loud_seconds, words
from websocket_helpers import raw_call, twilio_call

from tests.support import Console
from voxframe.transports._audio import StreamResampler
from voxframe.transports.wav import read_wav

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def question_at(rate: int) -> np.ndarray:
    samples, wav_rate = read_wav(QUESTION_WAV)
    resampler = StreamResampler(wav_rate, 1, rate, 1)
    pcm = resampler.resample(samples.astype("<i2").tobytes()) + resampler.flush()
    return np.concatenate([np.frombuffer(pcm, "<i2"), np.zeros(rate, np.int16)])  # then a second of quiet


async def test_the_example_bot_answers_a_phone_call_and_a_websocket_call() -> None:
    command = [sys.executable, str(EXAMPLE), "--port", "0"]
    process = await anyio.open_process(
        command, env=clean_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    async with process, anyio.create_task_group() as tg:
        console = Console(process)
        tg.start_soon(console.read)
        try:
            with anyio.fail_after(60):
                ready = (await console.wait_for(r"voxframe bot ready: open http://127\.0\.0\.1:")).string
            url = ready.split("open ", 1)[1].split()[0]
            async with twilio_call(url) as phone:
                phone.say(question_at(8000))
                with anyio.fail_after(60):
                    await console.wait_for(r"turn 1 \| heard:")
                await phone.got.wait_for(lambda: phone.played_s >= 1.0, timeout_s=30)
                await phone.hang_up()
            async with raw_call(url) as caller:
                await caller.got.wait_for(lambda: caller.got.of("bot-ready"), timeout_s=30)
                await caller.say(question_at(16_000))
                await caller.got.wait_for(lambda: caller.got.of("bot-stopped-speaking"), timeout_s=60)
            with anyio.fail_after(30):
                await console.wait_for(f"session {caller.got.of('session')[0]['session_id']} ended")
            phone_turn, ws_turn = [line for line in console.lines if "turn 1 | heard:" in line]  # a call each
        finally:
            process.send_signal(2)
            with anyio.move_on_after(30):
                await process.wait()
            if process.returncode is None:
                process.kill()
            tg.cancel_scope.cancel()

    for line in (phone_turn, ws_turn):
        assert words(line.split("heard:", 1)[1].split("|", 1)[0]) == ["what", "time", "is", "it"]
        assert "said: It is" in line
    assert loud_seconds(np.frombuffer(bytes(phone.played), "<i2"), 8000) >= 0.5
    assert loud_seconds(np.frombuffer(bytes(caller.got.audio), "<i2"), 16_000) >= 0.5
    assert [e["type"] for e in caller.got.events][:2] == ["session", "bot-ready"]
