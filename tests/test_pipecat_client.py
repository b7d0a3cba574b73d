"""An app built on Pipecat's client SDK talks to a voxframe bot: RTVI and small-webrtc signalling.

The page (`tests/pipecat_page/`) is bundled with esbuild from the npm packages a Pipecat app uses
(`@pipecat-ai/client-js` 1.13.1, `@pipecat-ai/small-webrtc-transport` 1.10.8), installed from
the npm registry into `.npm-cache/` on first use, and opened in Debian's headless Chromium with
a fake microphone that asks a question and, while the bot answers, speaks over it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web
from talking_bot import BOT_HZ, QUESTION, factory, microphone
from test_webrtc_browser import CHROMIUM, chromium_args
from webrtc_helpers import server_options, serving

from voxframe.transports.webrtc import WebRTCServer

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".npm-cache"
PAGE = Path(__file__).parent / "pipecat_page"
PACKAGES = {"@pipecat-ai/client-js": "1.13.1", "@pipecat-ai/small-webrtc-transport": "1.10.8", "esbuild": "0.28.2"}


def npm_modules() -> Path:
    """`.npm-cache/node_modules` with `PACKAGES` in it, installed from the registry if missing."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed (`python3 dev.py test` installs Debian's; or apt-get install nodejs npm)")
    modules = CACHE / "node_modules"
    CACHE.mkdir(exist_ok=True)
    with (CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one installer at a time (parallel test workers)
        if not all(_version(modules / name) == version for name, version in PACKAGES.items()):
            specs = [f"{name}@{version}" for name, version in PACKAGES.items()]
            # --ignore-scripts: esbuild's binary comes as an optional dependency; nothing need run.
            command = ["npm", "install", "--prefix", str(CACHE), "--no-audit", "--no-fund", "--ignore-scripts", *specs]
            subprocess.run(command, check=True, capture_output=True, timeout=240)
    return modules


def _version(package: Path) -> str | None:
    try:
        return json.loads((package / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def bundle(modules: Path, out: Path) -> Path:
    """The page's script, with the npm packages in it (esbuild resolves them through NODE_PATH)."""
    target = out / "app.js"
    command = [str(modules / ".bin" / "esbuild"), str(PAGE / "app.js"), "--bundle", "--format=iife",
               f"--outfile={target}", "--log-level=error"]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, timeout=120, env={**os.environ, "NODE_PATH": str(modules)})
    shutil.copy(PAGE / "index.html", out / "index.html")
    return out


def only_from(url: str) -> Callable[[Any], Awaitable[None]]:
    """A page route handler that lets through requests to `url` only (no CDN, no telemetry)."""

    async def route(route: Any) -> None:
        await (route.continue_() if route.request.url.startswith(url + "/") else route.abort())

    return route


def serve_page(folder: Path) -> Callable[[web.Application, WebRTCServer], None]:
    """A route installer: the bundled page beside the bot's signalling, as an app would host it."""

    async def page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(folder / request.match_info.get("name", "index.html"))

    def install(app: web.Application, server: WebRTCServer) -> None:
        app.router.add_get("/pipecat/", page)
        app.router.add_get("/pipecat/{name:app\\.js}", page)

    return install


async def test_a_pipecat_client_js_app_talks_to_a_voxframe_bot(tmp_path: Path) -> None:
    if shutil.which("chromium") is None:
        pytest.fail("Debian's chromium is needed (`python3 dev.py test` installs it; or apt-get install chromium)")
    from playwright.async_api import async_playwright

    folder = bundle(npm_modules(), tmp_path)
    options = server_options(route_installers=[serve_page(folder)])
    # The microphone loops: whenever the call comes up, a question and a barge-in follow.
    args = [arg.removesuffix("%noloop") for arg in chromium_args(microphone(tmp_path / "mic.wav"))]
    async with serving(factory, options) as (server, url), async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        try:
            page = await browser.new_page()
            signalling: list[tuple[str, int]] = []  # what the transport asked of /api/offer, and the answers

            def on_response(response: Any) -> None:
                if response.url.endswith("/api/offer"):
                    signalling.append((response.request.method, response.status))

            page.on("response", on_response)
            # Nothing but the bot's server: the page must need no CDN.
            await page.route("**/*", only_from(url))
            await page.goto(url + "/pipecat/")
            await page.wait_for_function("window.seen.connected && window.seen.response", timeout=20_000)
            # Barge-in: the bot's reply stops, reported as interrupted, and the user is speaking.
            interrupted = "window.seen.raw.some(m => m.type === 'bot-stopped-speaking' && m.data.interrupted)"
            await page.wait_for_function(interrupted, timeout=40_000)
            await page.wait_for_function("window.seen.audibleFrames >= 10 && window.seen.ttsText.length > 0")
            await page.evaluate("window.pipecat.sendText('typed, not said')")
            await page.wait_for_function("window.seen.userLlmText.includes('typed, not said')", timeout=10_000)
            server.end_all("the bot hangs up")
            with anyio.fail_after(10):
                await server.wait_sessions(lambda sessions: not sessions)
            await page.wait_for_function("window.seen.order.includes('bot-disconnected')", timeout=10_000)
            seen = await page.evaluate("() => window.seen")
        finally:
            await browser.close()

    assert seen["errors"] == []
    assert signalling[0] == ("POST", 200) and ("PATCH", 200) in signalling and all(s == 200 for _, s in signalling)
    assert seen["ready"]["version"] == "2.1.0" and seen["order"][0] == "bot-ready"
    assert {"text": QUESTION, "final": True} in [{"text": t["text"], "final": t["final"]} for t in seen["transcripts"]]
    assert any(not t["final"] for t in seen["transcripts"])
    assert QUESTION in "".join(seen["llmText"]).lower()  # the offline responder says what it heard
    assert seen["ttsText"][:3] == "".join(seen["llmText"]).split()[:3]  # its words, one by one as spoken
    assert seen["output"][:3] == seen["ttsText"][:3]
    assert seen["loudestHz"] == pytest.approx(BOT_HZ, abs=30.0) and seen["peakRms"] > 0.05
    assert seen["response"] == {"pong": 7}
    raw_types = [m["type"] for m in seen["raw"]]
    cut = raw_types.index("bot-interrupted")
    # The user starts speaking, the turn controller interrupts the bot, the bot stops (Pipecat's order).
    assert raw_types[cut - 1] == "user-started-speaking" and raw_types[cut + 1] == "bot-stopped-speaking"
    order = seen["order"]
    assert "bot-started-speaking user-started-speaking bot-stopped-speaking" in " ".join(order)  # as the app saw it
    told = " ".join(raw_types)  # each barge-in told once
    assert "bot-interrupted bot-interrupted" not in told
    assert "bot-interrupted bot-stopped-speaking bot-interrupted" not in told
    assert any(m["type"] == "bot-stopped-speaking" and m["data"]["interrupted"] for m in seen["raw"])
    assert {"bot-llm-started", "bot-llm-stopped", "bot-tts-started", "bot-tts-stopped"} <= set(raw_types)
