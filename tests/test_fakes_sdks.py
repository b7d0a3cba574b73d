"""Faithfulness: the providers' own SDKs (deepgram-sdk, cartesia) work against the fakes.

(The `openai` SDK is exercised in test_fakes_openai.py.)
"""

from __future__ import annotations

import anyio
import pytest
from cartesia import AsyncCartesia
from deepgram import AsyncDeepgramClient, DeepgramClientEnvironment

from tests.providers_helpers import frames, speech
from voxframe.fakes import ZERO, CartesiaFake, CartesiaFakeOptions, DeepgramFake, DeepgramFakeOptions

pytestmark = [
    pytest.mark.anyio,
    # deepgram-sdk 7.17 still imports websockets' legacy client; that is its business, not ours.
    pytest.mark.filterwarnings("ignore:websockets.legacy is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:websockets.exceptions.InvalidStatusCode is deprecated:DeprecationWarning"),
]

NOWHERE = "http://127.0.0.1:9"  # REST hosts the SDKs want configured but these tests never call


async def test_deepgram_sdk_streams_and_finalizes_against_the_fake() -> None:
    async with DeepgramFake(DeepgramFakeOptions(transcripts=["Hello SDK."], final_latency=ZERO)) as fake:
        env = DeepgramClientEnvironment(base=NOWHERE, production=fake.url, agent=fake.url, agent_rest=NOWHERE)
        client = AsyncDeepgramClient(api_key="key", environment=env)
        options = {"encoding": "linear16", "sample_rate": 16000, "interim_results": True, "endpointing": False}
        async with client.listen.v1.connect(model="nova-3", vad_events=True, **options) as socket:
            for frame in frames(speech(0.8)):
                await socket.send_media(frame)
            await socket.send_finalize()
            received = []
            with anyio.fail_after(5):
                while not getattr(received[-1] if received else None, "from_finalize", False):
                    received.append(await socket.recv())
            await socket.send_close_stream()
    assert type(received[0]).__name__ == "ListenV1SpeechStarted"
    final = received[-1]
    assert type(final).__name__ == "ListenV1Results" and final.is_final
    assert final.channel.alternatives[0].transcript == "Hello SDK."
    assert fake.connections[0].headers["authorization"] == "Token key"


async def test_cartesia_sdk_context_gets_audio_timestamps_and_done_from_the_fake() -> None:
    options = CartesiaFakeOptions(ttfa=ZERO, realtime_factor=float("inf"), chars_per_second=20.0)
    async with CartesiaFake(options, api_key="key") as fake:
        client = AsyncCartesia(api_key="key", base_url=NOWHERE, websocket_base_url=fake.url)
        voice = {"mode": "id", "id": "voice-1"}
        output_format = {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 24000}
        async with client.tts.websocket_connect() as connection:
            context = connection.context(
                model_id="sonic-3", voice=voice, output_format=output_format, add_timestamps=True, timeout=5
            )
            await context.send(transcript="Hello there, ", voice=voice, continue_=True)
            await context.send(transcript="friend.", voice=voice, continue_=False)
            events = [event async for event in context.receive()]
        await client.close()
    kinds = {type(e).__name__ for e in events}
    assert kinds == {"Chunk", "Timestamps", "Done"} and type(events[-1]).__name__ == "Done"
    words = [w for e in events if type(e).__name__ == "Timestamps" for w in e.word_timestamps.words]
    assert words == ["Hello", "there,", "friend."]
    assert fake.contexts[events[-1].context_id]["audio_bytes"] == round(len("Hello there, friend. ") / 20.0 * 24000) * 2
