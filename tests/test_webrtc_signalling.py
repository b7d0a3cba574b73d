"""Signalling: every bad input gets a clear 4xx JSON error; the server and its calls carry on."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from aiortc import RTCPeerConnection
from webrtc_helpers import LOOPBACK, client_options, server_options, serving, tone

from voxframe.transports.webrtc import ClientError, HeadlessClient, IceOptions, gather_on

pytestmark = pytest.mark.anyio

OFFER = "/api/voice/offer"


async def request(method: str, url: str, *, body: Any = None, raw: bytes | None = None, **kw: Any) -> tuple[int, Any]:
    headers = kw.pop("headers", {})
    data = raw
    if body is not None:
        data = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    async with aiohttp.ClientSession() as http, http.request(method, url, data=data, headers=headers, **kw) as reply:
        return reply.status, await reply.json(content_type=None)


async def make_offer(*, audio: bool = True, trickle: bool = False) -> tuple[RTCPeerConnection, str, list[str]]:
    """A real offer from aiortc; with `trickle`, its candidates are taken out of the SDP."""
    pc = RTCPeerConnection(IceOptions().rtc_configuration())
    if audio:
        pc.addTransceiver("audio", direction="sendrecv")
    pc.createDataChannel("events")
    with gather_on(LOOPBACK):
        await pc.setLocalDescription(await pc.createOffer())
    lines = pc.localDescription.sdp.splitlines()
    candidates = [line[2:] for line in lines if line.startswith("a=candidate:")]
    if trickle:
        lines = [line for line in lines if not line.startswith(("a=candidate:", "a=end-of-candidates"))]
    return pc, "\r\n".join(lines) + "\r\n", candidates


def error_code(payload: Any) -> str:
    assert set(payload) == {"error"} and payload["error"]["message"], payload
    return payload["error"]["code"]


async def test_bad_requests_get_json_errors_and_leave_no_session() -> None:
    async with serving() as (server, url):
        offer = url + OFFER
        cases = [
            (request("POST", offer, raw=b"{not json", headers={"Content-Type": "application/json"}), 400, "bad_json"),
            (request("POST", offer, body=["sdp"]), 400, "bad_json"),
            (request("POST", offer, raw=b'{"sdp": "x", "type": "offer"}'), 415, "unsupported_media_type"),
            (request("POST", offer, body={"sdp": "v=0", "type": "offer", "pad": "x" * 70_000}), 413, "body_too_large"),
            (request("POST", offer, body={"type": "offer"}), 400, "bad_request"),
            (request("POST", offer, body={"sdp": "v=0\r\nthis is not sdp\r\n", "type": "offer"}), 400, "bad_sdp"),
            (request("PATCH", url + "/api/voice/sessions/nope", body={"candidates": []}), 404, "unknown_session"),
            (request("DELETE", url + "/api/voice/sessions/nope"), 404, "unknown_session"),
            (request("GET", offer), 405, "method_not_allowed"),
        ]
        for call, status, code in cases:
            got_status, payload = await call
            assert (got_status, error_code(payload)) == (status, code)

        pc, sdp, _ = await make_offer()
        status, payload = await request("POST", offer, body={"sdp": sdp, "type": "answer"})
        assert (status, error_code(payload)) == (400, "bad_sdp_type")
        await pc.close()

        pc, sdp, _ = await make_offer(audio=False)
        status, payload = await request("POST", offer, body={"sdp": sdp, "type": "offer"})
        assert (status, error_code(payload)) == (400, "no_audio")
        await pc.close()

        assert server.sessions == {} and server.sessions_started == 0
        async with HeadlessClient.connect(url, client_options()) as client:  # still serving calls
            played = await client.play(tone(800.0, 0.2, 16_000), 16_000)
            await client.wait_for_onset(played.start_ns, timeout_s=5)


async def test_a_call_in_progress_survives_bad_requests_to_its_session() -> None:
    async with serving() as (server, url), HeadlessClient.connect(url, client_options()) as client:
        session_url = f"{url}/api/voice/sessions/{client.session_id}"
        good = "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host"
        for body in (
            {"candidates": "nope"},
            {"candidates": [{"candidate": 5}]},
            {"candidates": [{"candidate": "junk"}]},
            {"candidates": [{"candidate": good, "sdpMLineIndex": "zero"}]},
            {"candidates": [{"candidate": good, "sdpMid": 0}]},
        ):
            status, payload = await request("PATCH", session_url, body=body)
            assert status == 400 and error_code(payload) in ("bad_request", "bad_candidate")
        status, payload = await request(
            "PATCH", session_url, raw=b"\xff\xfe", headers={"Content-Type": "application/json"}
        )
        assert (status, error_code(payload)) == (400, "bad_json")

        played = await client.play(tone(800.0, 0.2, 16_000), 16_000)
        await client.wait_for_onset(played.start_ns, timeout_s=5)
        assert list(server.sessions) == [client.session_id]


async def test_trickled_candidates_connect_a_call_and_foreign_hosts_are_ignored() -> None:
    async with serving() as (server, url):
        pc, sdp, candidates = await make_offer(trickle=True)
        status, answer = await request("POST", url + OFFER, body={"sdp": sdp, "type": "offer"})
        assert status == 200 and answer["type"] == "answer"
        session_url = f"{url}/api/voice/sessions/{answer['session_id']}"
        foreign = candidates[0].replace("127.0.0.1", "192.0.2.7")
        trickled = [{"candidate": c, "sdpMid": "0", "sdpMLineIndex": 0} for c in [foreign, *candidates]]
        status, result = await request("PATCH", session_url, body={"candidates": trickled, "end": True})
        assert (status, result) == (200, {"added": len(candidates), "ignored": 1})

        from aiortc import RTCSessionDescription

        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
        session = server.sessions[answer["session_id"]]
        await session.wait_connected(timeout_s=5)
        assert pc.connectionState == "connected"

        status, result = await request("DELETE", session_url)
        assert (status, result) == (200, {"session_id": answer["session_id"], "ended": True})
        await server.wait_sessions(lambda sessions: not sessions)
        await pc.close()


async def test_pipecat_small_webrtc_signalling_offer_trickle_and_reconnect() -> None:
    """What @pipecat-ai/small-webrtc-transport sends: an offer at /api/offer (pc_id null), then
    snake_case candidates PATCHed to the same URL under the answer's pc_id; a reconnect offers
    again naming its pc_id and gets a new session in place of the old one."""
    from aiortc import RTCSessionDescription

    async with serving() as (server, url):
        pc, sdp, candidates = await make_offer(trickle=True)
        offer = {"sdp": sdp, "type": "offer", "pc_id": None, "restart_pc": False, "requestData": {"who": "app"}}
        status, answer = await request("POST", url + "/api/offer", body=offer)
        assert status == 200 and answer["type"] == "answer" and answer["pc_id"] == answer["session_id"]
        trickled = [{"candidate": c, "sdp_mid": "0", "sdp_mline_index": 0} for c in candidates]
        patch = {"pc_id": answer["pc_id"], "candidates": trickled}
        status, result = await request("PATCH", url + "/api/offer", body=patch)
        assert (status, result) == (200, {"added": len(candidates), "ignored": 0})
        status, payload = await request("PATCH", url + "/api/offer", body={"pc_id": "gone", "candidates": trickled})
        assert (status, error_code(payload)) == (404, "unknown_session")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
        first = server.sessions[answer["pc_id"]]
        await first.wait_connected(timeout_s=5)

        again, sdp2, _ = await make_offer()
        restart = {"sdp": sdp2, "type": "offer", "pc_id": answer["pc_id"], "restart_pc": True}
        status, second = await request("POST", url + "/api/voice/offer", body=restart)
        assert status == 200 and second["pc_id"] != answer["pc_id"]
        await server.wait_sessions(lambda sessions: answer["pc_id"] not in sessions)
        assert list(server.sessions) == [second["pc_id"]] and first.state == "closed"
        server.end_all()
        await server.wait_sessions(lambda sessions: not sessions)
        await pc.close()
        await again.close()


async def test_bearer_token_is_required_when_configured() -> None:
    async with serving(options=server_options(auth_token="s3cret")) as (server, url):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
            status, payload = await request("POST", url + OFFER, body={"sdp": "v=0", "type": "offer"}, headers=headers)
            assert (status, error_code(payload)) == (401, "unauthorized")
        with pytest.raises(ClientError, match="HTTP 401"):
            async with HeadlessClient.connect(url, client_options()):
                pass
        async with HeadlessClient.connect(url, client_options(token="s3cret")) as client:
            assert client.pc.connectionState == "connected"
            status, config = await request("GET", url + "/api/voice/config", headers={"Authorization": "Bearer s3cret"})
            assert (status, config) == (200, {"rtcConfiguration": {"iceServers": [], "iceTransportPolicy": "all"}})
        assert server.sessions_started == 1
