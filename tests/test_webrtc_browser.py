"""A real browser (Debian's chromium, headless, fake microphone) calls the served page."""

from __future__ import annotations

import shutil
from pathlib import Path

import anyio
import numpy as np
import pytest
from webrtc_helpers import dominant_hz, server_options, serving, tone

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
    kinds = [e["type"] for e in hook["events"]]
    assert kinds[0] == "bot-ready" and kinds.count("bot-started-speaking") == 1
    assert len(bots) == 1 and dominant_hz(bytes(bots[0].heard), 16_000) == pytest.approx(MIC_HZ, abs=10.0)
    assert server.sessions_started == 1


async def test_the_page_as_a_person_uses_it(tmp_path: Path) -> None:
    """Speak now once ready, levels, each turn once with its words as they are spoken and one
    mouth-to-ear figure over a waterfall; mute, microphones, a typed turn; a dropped server."""
    from playwright.async_api import async_playwright
    from talking_bot import factory, microphone

    args = [arg.removesuffix("%noloop") for arg in chromium_args(microphone(tmp_path / "mic.wav"))]
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        try:
            page = await browser.new_page(viewport={"width": 900, "height": 900})
            async with serving(factory) as (server, url):
                port = server.port
                await page.goto(url + "/")
                await page.click("#connect")
                await page.wait_for_function("window.voxframe.ready", timeout=15_000)
                # Two replies heard, the first of them cut off by the barge-in.
                done = "Object.values(window.voxframe.turns).filter(t => t.m2e_ms !== null).length >= 2"
                await page.wait_for_function(done, timeout=40_000)
                await page.fill("#text", "typed, not said")
                await page.press("#text", "Enter")
                typed = "e => e.type === 'user-llm-text' && e.data.text === 'typed, not said'"
                await page.wait_for_function(f"window.voxframe.events.some({typed})", timeout=10_000)
                starts = "window.voxframe.events.filter(e => e.type === 'user-started-speaking').length"
                before = await page.evaluate(starts)
                await page.select_option("#mic", label="Fake Audio Input 1")  # the call goes on, on that one
                picked = "window.voxframe.micLabel === 'Fake Audio Input 1' && window.voxframe.micRms > 0.01"
                await page.wait_for_function(picked, timeout=10_000)
                await page.wait_for_function(f"{starts} > {before}", timeout=15_000)  # the bot hears it
                await page.click("#mute")
                await page.wait_for_function("window.voxframe.muted && window.voxframe.micRms === 0", timeout=5_000)
                await page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
                hook = await page.evaluate("() => window.voxframe")
                dom = await page.evaluate(DOM_FACTS)
                await page.click("#mute")
            # The server is gone: the page says so, offers Connect, and comes back by itself.
            await page.wait_for_function("window.voxframe.status.startsWith('disconnected')", timeout=15_000)
            assert await page.is_enabled("#connect") and not await page.is_enabled("#hangup")
            async with serving(factory, server_options(port=port)) as (_, url_again):
                assert url_again == url
                await page.wait_for_function("window.voxframe.ready", timeout=30_000)
                assert await page.text_content("#status") == "connected"
                await page.click("#hangup")
        finally:
            await browser.close()

    assert (tmp_path / "page.png").stat().st_size > 10_000
    assert hook["cues"][:2] == ["connecting…", "speak now"]  # before the user says a word
    assert hook["peakMicRms"] > 0.05 and hook["peakRms"] > 0.05 and hook["loudestHz"] == pytest.approx(880, abs=40)
    assert hook["mics"] and all(hook["mics"]) and dom["mic_options"] == len(hook["mics"])
    heard = {n: t for n, t in hook["turns"].items() if t["m2e_ms"] is not None}
    for turn in heard.values():
        # The page's figure (its own mouth and ear) and the server's first packet (from the end of
        # speech its VAD saw) have different origins: plausible together, not ordered to the ms.
        assert 0 < turn["m2e_ms"] < 5_000 and turn["points_ms"]["first_audio_out"] < turn["m2e_ms"] + 50
        assert len(turn["firstShown"].split()) == 1 < len(turn["llmText"].split())  # word by word, as heard
    assert any(t["bot_interrupted"] for t in dom["turns"])
    # Each turn once: one block, one figure, one waterfall with its stages, whatever was said twice.
    assert len(dom["turns"]) == len(hook["turns"]) == len({t["turn"] for t in dom["turns"]})
    for turn in (t for t in dom["turns"] if t["turn"] in heard):
        assert turn["m2e"].startswith("mouth-to-ear ") and turn["m2e"].endswith(" ms")
        assert {"vad", "llm", "tts", "net"} <= set(turn["segments"]) and len(turn["segments"]) <= 6
    assert dom["typed"] == ["typed, not said"] and dom["finals"] >= 2
    assert dom["finals"] == sum(1 for e in hook["events"] if e["type"] == "user-transcription" and e["data"]["final"])


DOM_FACTS = """() => ({
    mic_options: document.querySelectorAll("#mic option").length,
    typed: [...document.querySelectorAll(".user.typed")].map(e => e.textContent),
    finals: document.querySelectorAll(".user:not(.interim):not(.typed)").length,
    turns: [...document.querySelectorAll(".turn")].map(t => ({
        turn: Number(t.dataset.turn),
        m2e: t.querySelector(".m2e").textContent,
        segments: [...t.querySelectorAll(".seg")].map(s => s.classList[1]),
        bot_interrupted: t.querySelector(".bot").classList.contains("interrupted"),
    })),
})"""
