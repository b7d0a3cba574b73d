"""A real browser (Debian's chromium, headless, fake microphone) calls the served page."""

from __future__ import annotations

import shutil
from pathlib import Path

import anyio
import numpy as np
import pytest
from webrtc_helpers import dominant_hz, serving, tone

from voxframe.pipeline import (
    DOWN,
    Direction,
    Frame,
    FrameProcessor,
    InputAudioFrame,
    Pipeline,
    PipelineParams,
    PipelineTask,
    TTSAudioFrame,
    TTSStoppedFrame,
)
from voxframe.transports.wav import write_wav
from voxframe.transports.webrtc import Session

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
MIC_HZ = 440.0
BOT_HZ = 1250.0


def chromium_args(wav: Path) -> list[str]:
    return [
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}%noloop",
        "--allow-loopback-in-peer-connection",
        "--autoplay-policy=no-user-gesture-required",
        "--disable-features=WebRtcHideLocalIpsWithMdns",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
    ]


class _AnswersWithATone(FrameProcessor):
    """Records what the caller says; once it has heard 0.5 s of it, replies with a tone."""

    def __init__(self) -> None:
        super().__init__()
        self.heard = bytearray()
        self.replied = False

    async def process(self, frame: Frame, direction: Direction) -> None:
        await self.push(frame, direction)
        if isinstance(frame, InputAudioFrame) and direction is DOWN:
            self.heard += frame.audio
            if not self.replied and len(self.heard) >= frame.sample_rate:  # 0.5 s of s16
                self.replied = True
                reply = tone(BOT_HZ, 2.0, 24_000).tobytes()
                await self.push(TTSAudioFrame(audio=reply, sample_rate=24_000, turn=1))
                await self.push(TTSStoppedFrame(turn=1))


async def test_chromium_hears_the_bot_and_the_bot_hears_chromium(tmp_path: Path) -> None:
    if shutil.which("chromium") is None:
        pytest.fail("Debian's chromium is needed (`python3 dev.py test` installs it; or apt-get install chromium)")
    from playwright.async_api import async_playwright

    wav = tmp_path / "mic.wav"
    write_wav(wav, np.concatenate([tone(MIC_HZ, 4.0, 48_000, amplitude=0.3), np.zeros(48_000, np.int16)]), 48_000)
    bots: list[_AnswersWithATone] = []

    async def factory(session: Session) -> PipelineTask:
        bots.append(_AnswersWithATone())
        pipeline = Pipeline([session.input, bots[-1], session.output])
        return PipelineTask(pipeline, PipelineParams(idle_timeout_s=None))

    async with serving(factory) as (server, url), async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=chromium_args(wav), headless=True)
        try:
            page = await browser.new_page()
            await page.goto(url + "/")
            await page.click("#connect")
            await page.wait_for_function("window.voxframe.status === 'connected'", timeout=15_000)
            await page.wait_for_function("window.voxframe.audibleFrames >= 10", timeout=15_000)
            hook = await page.evaluate("() => window.voxframe")
            await page.click("#hangup")
            with anyio.fail_after(10):
                await server.wait_sessions(lambda sessions: not sessions)
        finally:
            await browser.close()

    assert hook["sessionId"] and hook["peakRms"] > 0.05
    assert hook["loudestHz"] == pytest.approx(BOT_HZ, abs=60.0)  # the bot's tone, not the mic's
    assert [e["type"] for e in hook["events"]][:1] == ["bot_started_speaking"]
    assert len(bots) == 1 and dominant_hz(bytes(bots[0].heard), 16_000) == pytest.approx(MIC_HZ, abs=10.0)
    assert server.sessions_started == 1
