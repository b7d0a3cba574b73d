"""A fatal provider fault ends that call, with a clear error event to its client; other calls go on.

Two real calls over WebRTC to one server; each pipeline streams its caller's audio to the real
Deepgram client, at a fake Deepgram on 127.0.0.1 that accepts one API key. The call configured
with another key is refused (401) by the service: a fault no retry can mend.
"""

from __future__ import annotations

import anyio
import numpy as np
import pytest
from webrtc_helpers import client_options, serving, tone

from voxframe.fakes import DeepgramFake
from voxframe.pipeline import Pipeline, PipelineParams, PipelineTask
from voxframe.processors.echo import AudioEcho
from voxframe.processors.stt.deepgram import DeepgramOptions, DeepgramSTT
from voxframe.transports.webrtc import HeadlessClient, Session

pytestmark = pytest.mark.anyio


async def test_a_call_whose_provider_refuses_it_ends_with_an_error_and_the_others_go_on() -> None:
    async with DeepgramFake(api_key="the-right-key") as deepgram:
        keys = iter(["a-revoked-key", "the-right-key"])

        async def factory(session: Session) -> PipelineTask:
            stt = DeepgramSTT(DeepgramOptions(url=deepgram.url, api_key=next(keys)))
            pipeline = Pipeline([session.input, stt, AudioEcho(), session.output])
            return PipelineTask(pipeline, PipelineParams(idle_timeout_s=None))

        async with serving(factory) as (server, url):
            async with HeadlessClient.connect(url, client_options()) as refused:
                with anyio.fail_after(10):
                    error = await refused.wait_for_event("error", timeout_s=10, fatal=True)
                    await server.wait_sessions(lambda sessions: not sessions)
                assert "401" in error["data"]["message"] or "unauthor" in error["data"]["message"].lower()
            async with HeadlessClient.connect(url, client_options()) as fine:
                said = np.concatenate([tone(700.0, 0.2, 16_000), np.zeros(8_000, np.int16)])
                for _ in range(2):  # the other call streams to the service and is answered
                    played = await fine.play(said, 16_000)
                    await fine.wait_for_onset(played.start_ns, timeout_s=5)
                assert not [e for e in fine.events if e.get("type") == "error"]
                assert len(server.sessions) == 1
