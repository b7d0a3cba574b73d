"""`python -m voxframe.fakes`: one command starts all three fakes and says where they are."""

from __future__ import annotations

import signal
import sys

import anyio
import openai
import pytest

pytestmark = pytest.mark.anyio


async def test_the_command_prints_the_environment_serves_and_stops_on_ctrl_c() -> None:
    command = [sys.executable, "-m", "voxframe.fakes", "--no-latency"]
    process = await anyio.open_process(command)
    try:
        assert process.stdout is not None
        env: dict[str, str] = {}
        buffer = ""
        with anyio.fail_after(20):
            async for data in process.stdout:
                buffer += data.decode()
                if "Ctrl-C" in buffer:
                    break
        for line in buffer.splitlines():
            if line.startswith("export "):
                name, value = line.removeprefix("export ").split("=", 1)
                env[name] = value
        assert set(env) == {
            "DEEPGRAM_URL",
            "DEEPGRAM_API_KEY",
            "OPENAI_BASE_URL",
            "OPENAI_API_KEY",
            "CARTESIA_URL",
            "CARTESIA_API_KEY",
        }
        assert all(env[k].startswith(("ws://127.0.0.1:", "http://127.0.0.1:")) for k in env if k.endswith("URL"))
        async with openai.AsyncOpenAI(base_url=env["OPENAI_BASE_URL"], api_key="any", max_retries=0) as client:
            reply = await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "ping"}])
        assert reply.choices[0].message.content == "You said: ping"
        process.send_signal(signal.SIGINT)
        with anyio.fail_after(10):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
        await process.aclose()
