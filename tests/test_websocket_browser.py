"""A real browser (Debian's chromium, headless, fake microphone) calls over the WebSocket page."""

from __future__ import annotations

import shutil
from pathlib import Path

import anyio
import numpy as np
import pytest
from test_webrtc_browser import CHROMIUM, chromium_args
from test_websocket_raw import Bots
from websocket_helpers import dominant_hz, serving_ws, tone

from voxframe.transports.wav import write_wav

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

MIC_HZ = 440.0


async def test_chromium_speaks_over_the_websocket_and_hears_the_reply(tmp_path: Path) -> None:
    if shutil.which("chromium") is None:
        pytest.fail("Debian's chromium is needed (`python3 dev.py test` installs it; or apt-get install chromium)")
    from playwright.async_api import async_playwright

    wav = tmp_path / "question.wav"
    question = np.concatenate([tone(MIC_HZ, 1.0, 48_000, amplitude=0.3), np.zeros(3 * 48_000, np.int16)])
    write_wav(wav, question, 48_000)
    bots = Bots(reply_s=2.0)
    async with serving_ws(bots) as (server, url), async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=chromium_args(wav), headless=True)
        try:
            page = await browser.new_page()
            await page.goto(url + "/ws")
            await page.click("#connect")
            await page.wait_for_function("window.voxframeWs.status === 'connected'", timeout=15_000)
            await page.wait_for_function(
                "window.voxframeWs.events.some(e => e.type === 'bot-stopped-speaking')", timeout=20_000
            )
            hook = await page.evaluate("() => window.voxframeWs")
            await page.click("#hangup")
            with anyio.fail_after(10):
                await server.wait_sessions(lambda sessions: not sessions)
        finally:
            await browser.close()

    kinds = [e["type"] for e in hook["events"]]
    assert kinds[0] == "session" and hook["sessionId"] == hook["events"][0]["session_id"]
    assert kinds.index("bot-started-speaking") < kinds.index("bot-stopped-speaking")
    assert hook["audibleChunks"] >= 90 and hook["peakRms"] > 0.2  # the 2 s reply, 20 ms a chunk
    assert len(bots.bots) == 1 and bots.bots[0].replies == 1
    assert dominant_hz(bytes(bots.bots[0].heard), 16_000) == pytest.approx(MIC_HZ, abs=10.0)  # the question
