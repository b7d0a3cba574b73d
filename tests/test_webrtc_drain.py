"""Draining for load balancers: /healthz, /readyz, POST /admin/drain, a refused offer's Retry-After."""

from __future__ import annotations

import aiohttp
import anyio
import pytest
from webrtc_helpers import client_options, server_options, serving

from voxframe.transports.webrtc import HeadlessClient

pytestmark = pytest.mark.anyio
AUTH = {"Authorization": "Bearer t0ken"}


async def test_a_drained_server_keeps_its_call_and_refuses_new_ones() -> None:
    options = server_options(auth_token="t0ken", session_id_prefix="w7-")
    async with serving(options=options) as (server, url), aiohttp.ClientSession() as http:
        async with http.get(f"{url}/readyz") as ready:
            assert ready.status == 200
        async with HeadlessClient.connect(url, client_options(token="t0ken")) as client:
            assert client.session_id is not None and client.session_id.startswith("w7-")
            async with http.post(f"{url}/admin/drain") as refused:
                assert refused.status == 401  # draining needs the token
            async with http.post(f"{url}/admin/drain", headers=AUTH) as drained:
                assert drained.status == 200
            async with http.get(f"{url}/readyz") as ready, http.get(f"{url}/healthz") as alive:
                assert (ready.status, alive.status) == (503, 200)
            offer = {"sdp": "v=0\r\n", "type": "offer"}
            async with http.post(f"{url}/api/voice/offer", json=offer, headers=AUTH) as reply:
                assert reply.status == 503 and reply.headers["Retry-After"] == "5"
                assert (await reply.json())["error"]["code"] == "draining"
            assert client.session_id in server.sessions  # the running call goes on
            assert server.end_all() == 1
            with anyio.fail_after(10):
                await server.wait_sessions(lambda sessions: not sessions)
