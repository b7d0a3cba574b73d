"""The Deepgram fake speaks the live API's protocol, decided by the audio it receives."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
import websockets
from websockets.asyncio.client import ClientConnection, connect

from tests.providers_helpers import frames, noise_burst, pink_noise, silence, speech
from tests.support import receive_until
from voxframe.fakes import ZERO, DeepgramFake, DeepgramFakeOptions, Fault, LatencyProfile

pytestmark = pytest.mark.anyio

QUERY = (
    "model=nova-3&encoding=linear16&sample_rate=16000&channels=1"
    "&interim_results=true&endpointing=300&vad_events=true&utterance_end_ms=1000"
)


def options(**kwargs: Any) -> DeepgramFakeOptions:
    kwargs.setdefault("final_latency", ZERO)
    return DeepgramFakeOptions(**kwargs)


async def open_listen(fake: DeepgramFake, key: str = "k", query: str = QUERY) -> ClientConnection:
    return await connect(f"{fake.url}/v1/listen?{query}", additional_headers={"Authorization": f"Token {key}"})


async def send_audio(ws: ClientConnection, pcm: bytes) -> None:
    for frame in frames(pcm):
        await ws.send(frame)


def transcript(msg: dict[str, Any]) -> str:
    return msg["channel"]["alternatives"][0]["transcript"]


async def test_an_utterance_gets_speech_started_growing_interims_a_speech_final_and_utterance_end() -> None:
    async with DeepgramFake(options(transcripts=["Tell me a joke about ducks."])) as fake:
        ws = await open_listen(fake)
        assert ws.response.headers["dg-request-id"]
        await send_audio(ws, silence(0.5) + speech(1.6) + silence(1.2))
        got = await receive_until(ws, lambda m: m["type"] == "UtteranceEnd")
        await ws.close()
    kinds = [m["type"] for m in got]
    assert kinds[0] == "SpeechStarted" and got[0]["timestamp"] == pytest.approx(0.5, abs=0.011)
    interims = [m for m in got if m["type"] == "Results" and not m["is_final"]]
    assert len(interims) >= 2
    assert [len(transcript(m).split()) for m in interims] == sorted(len(transcript(m).split()) for m in interims)
    assert all("Tell me a joke about ducks.".startswith(transcript(m)) for m in interims)
    assert {m["start"] for m in interims} == {0.0}  # cumulative: one segment, growing duration
    (final,) = [m for m in got if m["type"] == "Results" and m["is_final"]]
    assert transcript(final) == "Tell me a joke about ducks." and final["speech_final"] and not final["from_finalize"]
    words = final["channel"]["alternatives"][0]["words"]
    assert words[0]["word"] == "tell" and words[0]["punctuated_word"] == "Tell"
    assert words[-1]["end"] == pytest.approx(2.1, abs=0.011)
    assert got[-1]["last_word_end"] == pytest.approx(2.1, abs=0.011)


async def test_finalize_answers_with_a_from_finalize_final_after_the_final_latency() -> None:
    latency = LatencyProfile(0.2)
    async with DeepgramFake(options(transcripts=["Hello there."], final_latency=latency)) as fake:
        ws = await open_listen(fake, query=QUERY.replace("endpointing=300", "endpointing=false"))
        await send_audio(ws, speech(0.8) + silence(0.1))
        t0 = anyio.current_time()
        await ws.send(json.dumps({"type": "Finalize"}))
        got = await receive_until(ws, lambda m: m.get("from_finalize"))
        elapsed = anyio.current_time() - t0
        await ws.send(json.dumps({"type": "Finalize"}))  # nothing left: an empty from_finalize final
        empty = await receive_until(ws, lambda m: m.get("from_finalize"))
        await ws.close()
    assert transcript(got[-1]) == "Hello there." and got[-1]["is_final"]
    assert elapsed >= 0.2
    assert transcript(empty[-1]) == ""


async def test_speech_resuming_before_a_finalize_answer_is_due_continues_the_utterance() -> None:
    latency = LatencyProfile(0.2)
    async with DeepgramFake(options(transcripts=["Okay, that sounds good.", "Next."], final_latency=latency)) as fake:
        ws = await open_listen(fake, query=QUERY.replace("endpointing=300", "endpointing=false"))
        await send_audio(ws, speech(0.4) + silence(0.2))
        await ws.send(json.dumps({"type": "Finalize"}))  # the client's VAD saw a pause
        await send_audio(ws, speech(0.6) + silence(0.3))  # sent at once: the user went on
        first = await receive_until(ws, lambda m: m.get("from_finalize"))
        await ws.send(json.dumps({"type": "Finalize"}))  # the stop
        last = await receive_until(ws, lambda m: m.get("from_finalize"))
        await ws.close()
    assert transcript(first[-1]) == "" and first[-1]["is_final"]
    assert transcript(last[-1]) == "Okay, that sounds good."
    assert not [m for m in first + last if m["type"] == "Results" and "Next" in transcript(m)]


async def test_close_stream_flushes_sends_metadata_and_closes_normally() -> None:
    async with DeepgramFake(options(transcripts=["Bye."])) as fake:
        ws = await open_listen(fake, query=QUERY.replace("endpointing=300", "endpointing=false"))
        await send_audio(ws, speech(0.5))
        await ws.send(json.dumps({"type": "CloseStream"}))
        got = await receive_until(ws, lambda m: m["type"] == "Metadata")
        with pytest.raises(websockets.ConnectionClosedOK), anyio.fail_after(5):
            await ws.recv()
    assert transcript([m for m in got if m["type"] == "Results"][-1]) == "Bye."
    assert got[-1]["duration"] == pytest.approx(0.5, abs=0.011)
    assert ws.close_code == 1000


async def test_an_idle_stream_is_closed_with_net_0001() -> None:
    async with DeepgramFake(options(idle_timeout_s=0.2)) as fake:
        ws = await open_listen(fake)
        with pytest.raises(websockets.ConnectionClosedError), anyio.fail_after(5):
            await ws.recv()
    assert (ws.close_code, ws.close_reason) == (1011, "NET-0001")


async def test_utterances_take_transcripts_in_order_and_are_logged() -> None:
    async with DeepgramFake(options(transcripts=["One.", "Two."])) as fake:
        ws = await open_listen(fake)
        await send_audio(ws, speech(0.4) + silence(0.4) + speech(0.4) + silence(0.4))
        got = await receive_until(ws, lambda m: m.get("is_final") and transcript(m) == "Two.")
        await ws.close()
        await fake.wait_for(lambda: fake.connections[0].done.is_set())
    assert [transcript(m) for m in got if m.get("is_final")] == ["One.", "Two."]
    assert len(fake.connections[0].audio) == len(speech(0.4) + silence(0.4)) * 2


@pytest.mark.parametrize("status", [401, 429])
async def test_handshake_faults(status: int) -> None:
    async with DeepgramFake(options(), api_key="right") as fake:
        if status == 429:
            fake.faults.append(Fault.reject(429))
        with pytest.raises(websockets.InvalidStatus) as caught:
            await open_listen(fake, key="right" if status == 429 else "wrong")
        assert caught.value.response.status_code == status
        assert caught.value.response.headers["dg-error"]
        ws = await open_listen(fake, key="right")  # the fault was for one connection
        await ws.close()


async def test_close_and_drop_after_n_messages() -> None:
    async with DeepgramFake(options()) as fake:
        fake.faults += [Fault.close(1011, "internal", after_received=3), Fault.drop_connection(after_received=3)]
        ws = await open_listen(fake)
        await send_audio(ws, silence(0.1))
        with pytest.raises(websockets.ConnectionClosedError), anyio.fail_after(5):
            await ws.recv()
        assert ws.close_code == 1011
        ws = await open_listen(fake)
        await send_audio(ws, silence(0.1))
        with pytest.raises(websockets.ConnectionClosedError), anyio.fail_after(5):
            await ws.recv()
        assert ws.close_code == 1006  # no close frame: the TCP connection just ended
        await fake.wait_for(lambda: all(c.done.is_set() for c in fake.connections))
    assert [c.ended for c in fake.connections] == ["closed 1011", "dropped"]


async def test_silence_is_finalized_with_empty_finals() -> None:
    async with DeepgramFake(options(silence_final_every_s=1.0)) as fake:
        ws = await open_listen(fake)
        await send_audio(ws, silence(2.5))
        got = await receive_until(ws, lambda m: m.get("is_final") and m["start"] >= 1.0)
        await ws.close()
    assert [(m["start"], transcript(m)) for m in got] == [(0.0, ""), (1.0, "")]


@pytest.mark.parametrize("noise", ["pink noise", "a 150 ms burst"])
async def test_noise_as_loud_as_speech_gets_an_empty_final_and_takes_no_transcript(noise: str) -> None:
    sound = pink_noise(1.4) if noise == "pink noise" else noise_burst(0.15)
    async with DeepgramFake(options(transcripts=["One.", "Two."])) as fake:
        ws = await open_listen(fake)
        await send_audio(ws, sound + silence(0.4) + speech(0.6) + silence(0.4))
        got = await receive_until(ws, lambda m: m.get("is_final") and transcript(m) == "One.")
        await ws.close()
    results = [m for m in got if m["type"] == "Results"]
    noise_final, speech_final = [m for m in results if m["is_final"] and m["speech_final"]]
    assert transcript(noise_final) == "" and noise_final["channel"]["alternatives"][0]["words"] == []
    assert transcript(speech_final) == "One."  # the noise did not use up the first transcript
    before_speech = [m for m in results if m["start"] + m["duration"] <= noise_final["start"] + noise_final["duration"]]
    assert all(transcript(m) == "" for m in before_speech)  # not an interim with words either
