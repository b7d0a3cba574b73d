"""The Cartesia fake: contexts with continue, right-sized audio, timestamps, cancel, limits."""

from __future__ import annotations

import base64
import json
from typing import Any

import anyio
import pytest
import websockets
from websockets.asyncio.client import connect

from tests.support import receive_until
from voxframe.fakes import ZERO, CartesiaFake, CartesiaFakeOptions, Fault, LatencyProfile

pytestmark = pytest.mark.anyio

HEADERS = {"X-API-Key": "key", "Cartesia-Version": "2026-03-01"}


def fake(**kwargs: Any) -> CartesiaFake:
    kwargs.setdefault("ttfa", ZERO)
    kwargs.setdefault("realtime_factor", float("inf"))
    return CartesiaFake(CartesiaFakeOptions(**kwargs), api_key="key")


def request(context_id: str, transcript: str, *, cont: bool, encoding: str = "pcm_s16le", rate: int = 24000) -> str:
    return json.dumps(
        {
            "context_id": context_id,
            "model_id": "sonic-3",
            "transcript": transcript,
            "voice": {"mode": "id", "id": "voice-1"},
            "output_format": {"container": "raw", "encoding": encoding, "sample_rate": rate},
            "language": "en",
            "add_timestamps": True,
            "continue": cont,
            "max_buffer_delay_ms": 0,
        }
    )


def audio_of(msgs: list[dict[str, Any]], context_id: str) -> bytes:
    return b"".join(base64.b64decode(m["data"]) for m in msgs if m["type"] == "chunk" and m["context_id"] == context_id)


async def test_a_context_with_continue_gets_audio_of_the_right_size_timestamps_and_done() -> None:
    async with fake(chars_per_second=10.0) as f, connect(f"{f.url}/tts/websocket", additional_headers=HEADERS) as ws:
        await ws.send(request("c1", "Hello there, ", cont=True))
        await ws.send(request("c1", "how are you?", cont=True))
        await ws.send(request("c1", "", cont=False))
        got = await receive_until(ws, lambda m: m["type"] == "done")
    audio = audio_of(got, "c1")
    spoken_chars = len("Hello there, how are you?") + 1  # each word counts its trailing space
    assert len(audio) == round(spoken_chars / 10.0 * 24000) * 2
    words = [w for m in got if m["type"] == "timestamps" for w in m["word_timestamps"]["words"]]
    assert words == ["Hello", "there,", "how", "are", "you?"]
    starts = [s for m in got if m["type"] == "timestamps" for s in m["word_timestamps"]["start"]]
    assert starts == sorted(starts) and starts[2] == pytest.approx(0.01 + len("Hello there, ") / 10.0)
    assert f.contexts["c1"] == {
        "texts": ["Hello there, ", "how are you?", ""],
        "cancelled": False,
        "done": True,
        "audio_bytes": len(audio),
    }


@pytest.mark.parametrize(("encoding", "width"), [("pcm_f32le", 4), ("pcm_mulaw", 1), ("pcm_alaw", 1)])
async def test_sample_formats_have_their_sizes(encoding: str, width: int) -> None:
    async with fake(chars_per_second=10.0) as f, connect(f"{f.url}/tts/websocket", additional_headers=HEADERS) as ws:
        await ws.send(request("c1", "Hi there", cont=False, encoding=encoding, rate=8000))
        got = await receive_until(ws, lambda m: m["type"] == "done")
    assert len(audio_of(got, "c1")) == round(len("Hi there ") / 10.0 * 8000) * width


async def test_cancel_stops_a_context_without_done() -> None:
    async with (
        fake(realtime_factor=1.0, chunk_s=0.02) as f,
        connect(f"{f.url}/tts/websocket", additional_headers=HEADERS) as ws,
    ):
        await ws.send(request("c1", "This is a long sentence that takes seconds to say. ", cont=True))
        await receive_until(ws, lambda m: m["type"] == "chunk")
        await ws.send(json.dumps({"context_id": "c1", "cancel": True}))
        await f.wait_for(lambda: f.contexts["c1"]["cancelled"])
        await ws.send(request("c2", "Next.", cont=False))
        got = await receive_until(ws, lambda m: m["type"] == "done")
    assert all(m["context_id"] == "c2" for m in got[-3:])
    assert not f.contexts["c1"]["done"]
    assert f.contexts["c1"]["audio_bytes"] < 24000 * 2  # far less than the sentence's seconds


async def test_a_drop_after_n_audio_chunks_cuts_a_reply_in_the_middle() -> None:
    async with fake(chars_per_second=10.0, chunk_s=0.02) as f:
        f.faults.append(Fault.drop_connection(after_audio=3))
        async with connect(f"{f.url}/tts/websocket", additional_headers=HEADERS) as ws:
            await ws.send(request("c1", "A reply long enough for many chunks.", cont=False))
            got: list[dict[str, Any]] = []
            with pytest.raises(websockets.ConnectionClosed), anyio.fail_after(5):
                while True:
                    got.append(json.loads(await ws.recv()))
    assert [m["type"] for m in got].count("chunk") == 3 and got[-1]["type"] == "chunk"  # no done
    assert f.contexts["c1"]["audio_bytes"] == len(audio_of(got, "c1")) == 3 * round(0.02 * 24000) * 2
    assert f.connections[0].ended == "dropped"


async def test_a_stall_after_n_audio_chunks_sends_nothing_more() -> None:
    async with fake(chars_per_second=10.0, chunk_s=0.02) as f:
        f.faults.append(Fault.stall_after(after_audio=3))
        async with connect(f"{f.url}/tts/websocket", additional_headers=HEADERS) as ws:
            await ws.send(request("c1", "A reply long enough for many chunks.", cont=False))
            # the context is generated to its end, and none of it after the third chunk goes out
            await f.wait_for(lambda: "c1" in f.contexts and f.contexts["c1"]["done"])
    assert [m["type"] for m in f.connections[0].json_sent()].count("chunk") == 3
    assert not f.connections[0].json_sent("done")
    assert f.contexts["c1"]["audio_bytes"] == 3 * round(0.02 * 24000) * 2
    assert f.connections[0].ended == "stalled"


async def test_too_many_contexts_are_refused_with_concurrency_limited() -> None:
    async with (
        fake(max_contexts=1, ttfa=LatencyProfile(0.05)) as f,
        connect(f"{f.url}/tts/websocket", additional_headers=HEADERS) as ws,
    ):
        await ws.send(request("c1", "One. ", cont=True))
        await ws.send(request("c2", "Two.", cont=False))
        got = await receive_until(ws, lambda m: m["type"] == "error")
    assert got[-1]["context_id"] == "c2" and got[-1]["status_code"] == 429
    assert got[-1]["error_code"] == "concurrency_limited"


async def test_handshake_needs_a_key_and_a_version() -> None:
    async with fake() as f:
        for headers, status in [({"Cartesia-Version": "2026-03-01"}, 401), ({"X-API-Key": "key"}, 400)]:
            with pytest.raises(websockets.InvalidStatus) as caught:
                await connect(f"{f.url}/tts/websocket", additional_headers=headers)
            assert caught.value.response.status_code == status
        async with connect(f"{f.url}/tts/websocket?api_key=key&cartesia_version=2026-03-01"):
            pass
