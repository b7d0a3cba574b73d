"""Relay-only calls through a real coturn on 127.0.0.1: long-term credentials, and the
time-limited ones the runner mints per caller (coturn's `use-auth-secret`)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from webrtc_helpers import client_options, coturn, serving, tone

from voxframe.runner.turn_credentials import TurnMinter, turn_rest_credentials
from voxframe.transports.webrtc import ClientError, HeadlessClient, IceOptions, IceServer

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def relay_only(url: str, password: str) -> IceOptions:
    return IceOptions(servers=[IceServer(urls=[url], username="alice", credential=password)], relay_only=True)


async def test_a_relay_only_call_goes_through_the_turn_server(tmp_path: Path) -> None:
    async with coturn(tmp_path, "alice", "s3cret") as turn_url, serving() as (server, url):
        async with HeadlessClient.connect(url, client_options(ice=relay_only(turn_url, "s3cret"))) as client:
            offered = [line for line in client.pc.localDescription.sdp.splitlines() if line.startswith("a=candidate:")]
            # Only relay candidates were offered, so the call that carries the tone below can only
            # run through the TURN server (aiortc has no public "selected pair" to read instead).
            assert offered and all(" typ relay " in line for line in offered)
            played = await client.play(tone(700.0, 0.2, 16_000), 16_000)
            await client.wait_for_onset(played.start_ns, timeout_s=5)
        await server.wait_sessions(lambda sessions: not sessions)


async def test_wrong_turn_credentials_fail_quickly_with_a_clear_error(tmp_path: Path) -> None:
    async with coturn(tmp_path, "alice", "s3cret") as turn_url, serving() as (server, url):
        started = time.monotonic()
        with pytest.raises(ClientError, match="TURN"):
            async with HeadlessClient.connect(url, client_options(ice=relay_only(turn_url, "wrong"))):
                pass
        assert time.monotonic() - started < 5.0
        assert server.sessions_started == 0  # it failed before bothering the server
        async with HeadlessClient.connect(url, client_options(ice=relay_only(turn_url, "s3cret"))) as client:
            assert client.pc.connectionState == "connected"  # the TURN server and bot are fine


async def test_minted_turn_credentials_work_until_they_expire(tmp_path: Path) -> None:
    secret = "shared-with-coturn"
    async with coturn(tmp_path, auth_secret=secret) as turn_url, serving() as (server, url):
        (minted,) = TurnMinter(secret, (turn_url,), ttl_s=600)()
        fresh = IceServer(urls=minted["urls"], username=minted["username"], credential=minted["credential"])
        async with HeadlessClient.connect(url, client_options(ice=IceOptions(servers=[fresh], relay_only=True))):
            pass  # connected through the relay with the page's credential
        # The same scheme, an expiry a minute ago: coturn refuses the allocation.
        username, credential = turn_rest_credentials(secret, "caller", int(time.time()) - 60)
        expired = IceServer(urls=[turn_url], username=username, credential=credential)
        with pytest.raises(ClientError, match="TURN"):
            async with HeadlessClient.connect(url, client_options(ice=IceOptions(servers=[expired], relay_only=True))):
                pass
        # A credential signed with another secret is refused too.
        username, credential = turn_rest_credentials("not-the-secret", "caller", int(time.time()) + 600)
        forged = IceServer(urls=[turn_url], username=username, credential=credential)
        with pytest.raises(ClientError, match="TURN"):
            async with HeadlessClient.connect(url, client_options(ice=IceOptions(servers=[forged], relay_only=True))):
                pass
        assert server.sessions_started == 1  # the refused ones never reached the bot
