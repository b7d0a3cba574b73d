"""`python bots/example.py` serving: the URL, one console line per turn, Ctrl-C ends every session."""

from __future__ import annotations

import signal
import subprocess
import sys

import anyio
import anyio.abc
import pytest
from example_helpers import EXAMPLE, QUESTION_WAV, ROOT, clean_env, words

from tests.support import Console
from voxframe.transports.webrtc import ClientOptions, HeadlessClient, IceOptions

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def test_serves_prints_each_turn_and_stops_cleanly_on_ctrl_c() -> None:
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
            options = ClientOptions(ice=IceOptions(host_addresses=("127.0.0.1",)), record=False)
            async with HeadlessClient.connect(url, options) as client:
                with anyio.fail_after(60):
                    await client.wait_for_event("bot-ready", timeout_s=60)
                    played = await client.play(QUESTION_WAV)
                    await client.wait_for_onset(after_ns=played.speech_end_ns, timeout_s=60)
                    line = (await console.wait_for(r"turn 1 \| heard:")).string
                # Ctrl-C while the call is still up: the session ends, the process exits 0.
                process.send_signal(signal.SIGINT)
                with anyio.fail_after(30):
                    await console.wait_for("stopping: ending 1 session")
                    assert await process.wait() == 0
            await console.wait_for(r"^stopped$")
        finally:
            if process.returncode is None:
                process.kill()
            tg.cancel_scope.cancel()

    heard = line.split("heard:", 1)[1].split("|", 1)[0]
    assert words(heard) == ["what", "time", "is", "it"]
    assert "said: It is" in line and "first_audio_out +" in line
