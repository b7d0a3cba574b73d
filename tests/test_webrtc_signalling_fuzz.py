"""Hostile signalling: every request gets a 4xx (or a 503 at a limit), never a 500, and no session
is left behind. One test per input a probe found answered 500, then a property over random ones."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_webrtc_signalling import OFFER, error_code, make_offer, request
from webrtc_helpers import client_options, server_options, serving

from voxframe.transports.webrtc import HeadlessClient, IceOptions, Session, SessionError, SessionOptions

pytestmark = pytest.mark.anyio

SESSIONS = "/api/voice/sessions/"
JSON = {"Content-Type": "application/json"}


def without(sdp: str, *prefixes: str) -> str:
    return "\r\n".join(line for line in sdp.splitlines() if not line.startswith(prefixes)) + "\r\n"


def without_audio_section(sdp: str) -> str:
    """The offer with its audio m-section cut out; the BUNDLE group still names it."""
    kept, in_audio = [], False
    for line in sdp.splitlines():
        if line.startswith("m="):
            in_audio = line.startswith("m=audio")
        if not in_audio:
            kept.append(line)
    return "\r\n".join(kept) + "\r\n"


async def real_offer() -> str:
    pc, sdp, _ = await make_offer()
    await pc.close()  # only the text is used: a caller that never answers ICE checks
    return sdp


async def test_json_nested_a_thousand_deep_is_a_400() -> None:
    async with serving() as (server, url):
        raw = b'{"sdp": ' + b"[" * 1000 + b"]" * 1000 + b', "type": "offer"}'
        status, payload = await request("POST", url + OFFER, raw=raw, headers=JSON)
        assert (status, error_code(payload)) == (400, "bad_json")
        assert "nested too deeply" in payload["error"]["message"]
        assert server.sessions == {}


async def test_an_integer_of_5000_digits_is_a_400() -> None:
    async with serving() as (server, url):
        raw = b'{"sdp": "v=0", "type": "offer", "n": ' + b"7" * 5000 + b"}"
        status, payload = await request("POST", url + OFFER, raw=raw, headers=JSON)
        assert (status, error_code(payload)) == (400, "bad_json")
        assert server.sessions == {}


async def test_an_offer_whose_audio_section_was_removed_is_a_400_and_leaves_nothing() -> None:
    sdp = without_audio_section(await real_offer())
    async with serving() as (server, url):
        status, payload = await request("POST", url + OFFER, body={"sdp": sdp, "type": "offer"})
        assert (status, error_code(payload)) == (400, "no_audio")
        missing = (await real_offer()).replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 7 0 1")  # no section 7
        status, payload = await request("POST", url + OFFER, body={"sdp": missing, "type": "offer"})
        assert (status, error_code(payload)) == (400, "bad_sdp") and "BUNDLE" in payload["error"]["message"]
        assert server.sessions == {} and server.sessions_started == 0


async def test_a_session_given_such_an_offer_directly_still_closes() -> None:
    session = Session(SessionOptions(ice=IceOptions(host_addresses=("127.0.0.1",))))
    with pytest.raises(SessionError, match="no audio"):
        await session.accept(without_audio_section(await real_offer()), "offer")
    await session.close()  # aiortc's own close fails half-way on this peer; the session's does not
    assert session.pc.signalingState == "closed"


async def test_an_offer_without_a_fingerprint_is_a_400_before_any_session_exists() -> None:
    sdp = await real_offer()
    async with serving() as (server, url):
        status, payload = await request(
            "POST", url + OFFER, body={"sdp": without(sdp, "a=fingerprint:"), "type": "offer"}
        )
        assert (status, error_code(payload)) == (400, "no_fingerprint")
        assert "a=fingerprint" in payload["error"]["message"]
        unknown = sdp.replace("a=fingerprint:sha-256", "a=fingerprint:md5")
        status, payload = await request("POST", url + OFFER, body={"sdp": unknown, "type": "offer"})
        assert (status, error_code(payload)) == (400, "bad_fingerprint")
        assert server.sessions == {} and server.sessions_started == 0


async def test_candidates_beyond_the_cap_are_refused_with_a_clear_400() -> None:
    pc, sdp, candidates = await make_offer(trickle=True)
    await pc.close()
    line = candidates[0]
    async with serving(options=server_options(max_candidates_per_session=4)) as (server, url):
        crowded = sdp.replace("a=setup:actpass", "\r\n".join(["a=" + line] * 5 + ["a=setup:actpass"]), 1)
        status, payload = await request("POST", url + OFFER, body={"sdp": crowded, "type": "offer"})
        assert (status, error_code(payload)) == (400, "too_many_candidates")

        status, answer = await request("POST", url + OFFER, body={"sdp": sdp, "type": "offer"})
        assert status == 200
        session_url = url + SESSIONS + answer["session_id"]
        one = {"candidate": line, "sdpMid": "0", "sdpMLineIndex": 0}
        status, payload = await request("PATCH", session_url, body={"candidates": [one] * 5})
        assert (status, error_code(payload)) == (400, "too_many_candidates")
        assert "at most 4" in payload["error"]["message"]
        status, payload = await request("PATCH", session_url, body={"candidates": [one] * 4})
        assert (status, payload) == (200, {"added": 4, "ignored": 0})
        status, payload = await request("PATCH", session_url, body=one)
        assert (status, error_code(payload)) == (400, "too_many_candidates")

        assert (await request("DELETE", session_url))[0] == 200
        with anyio.fail_after(10):
            await server.wait_sessions(lambda sessions: not sessions)


async def test_offers_that_never_connect_get_a_logged_503_beyond_the_pending_limit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    options = server_options(max_sessions=8, max_pending_sessions=2, retry_after_s=3)
    caplog.set_level(logging.WARNING, logger="voxframe.webrtc")
    async with serving(options=options) as (server, url), HeadlessClient.connect(url, client_options()) as caller:
        await server.sessions[caller.session_id].wait_connected(10)  # a connected call is not pending
        pending = []
        for _ in range(2):
            status, answer = await request("POST", url + OFFER, body={"sdp": await real_offer(), "type": "offer"})
            assert status == 200
            pending.append(answer["session_id"])
        assert server.pending_sessions == 2
        for _ in range(3):
            async with (
                aiohttp.ClientSession() as http,
                http.post(url + OFFER, json={"sdp": await real_offer(), "type": "offer"}) as reply,
            ):
                assert (reply.status, reply.headers["Retry-After"]) == (503, "3")
                assert error_code(await reply.json()) == "pending_limit"
        refusals = [r for r in caplog.records if r.levelno == logging.WARNING and "refused" in r.getMessage()]
        assert len(refusals) == 1 and "pending_limit" in refusals[0].getMessage()  # one line, not one per offer

        assert (await request("DELETE", url + SESSIONS + pending[0]))[0] == 200
        with anyio.fail_after(10):
            await server.wait_sessions(lambda sessions: pending[0] not in sessions)
        status, answer = await request("POST", url + OFFER, body={"sdp": await real_offer(), "type": "offer"})
        assert status == 200
        assert caller.session_id in server.sessions
        for session_id in (pending[1], answer["session_id"]):
            await request("DELETE", url + SESSIONS + session_id)
        with anyio.fail_after(10):
            await server.wait_sessions(lambda sessions: set(sessions) == {caller.session_id})


async def test_a_session_that_never_connects_frees_its_pending_slot_at_the_connect_deadline() -> None:
    options = server_options(max_pending_sessions=1)
    options.session.connect_timeout_s = 0.5
    async with serving(options=options) as (server, url):
        status, _ = await request("POST", url + OFFER, body={"sdp": await real_offer(), "type": "offer"})
        assert status == 200
        status, payload = await request("POST", url + OFFER, body={"sdp": await real_offer(), "type": "offer"})
        assert (status, error_code(payload)) == (503, "pending_limit")
        with anyio.fail_after(10):
            await server.wait_sessions(lambda sessions: not sessions)
        status, _ = await request("POST", url + OFFER, body={"sdp": await real_offer(), "type": "offer"})
        assert status == 200  # the slot is free again; this one too ends at its deadline
        with anyio.fail_after(10):
            await server.wait_sessions(lambda sessions: not sessions)


# --- the property ---------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
#: The lines of an offer that aiortc's assumptions rest on; an edit aims at one of them, or at any line ("").
SDP_TARGETS = ["", "m=", "a=mid:", "a=group:", "a=fingerprint:", "a=setup:", "a=sendrecv", "a=ice-", "a=candidate:",
               "a=rtpmap:", "a=ssrc:", "a=sctp-port:", "c=", "o="]  # fmt: skip
#: Edits to a real offer: (what, which target, which of its lines, argument).
sdp_edits = st.lists(
    st.tuples(
        st.sampled_from(["delete", "duplicate", "replace", "revalue", "insert", "swap", "truncate"]),
        st.sampled_from(SDP_TARGETS),
        st.integers(0, 99),
        st.one_of(st.text(max_size=40), st.integers(-1, 2**70).map(str), st.sampled_from(SDP_TARGETS)),
    ),
    max_size=4,
)
GOOD_CANDIDATE = "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host"
candidate_lines = st.one_of(
    st.just(GOOD_CANDIDATE),
    st.text(max_size=60),
    st.tuples(st.integers(0, 7), st.text(max_size=12)).map(
        lambda edit: " ".join(t if i != edit[0] else edit[1] for i, t in enumerate(GOOD_CANDIDATE.split()))
    ),
)
candidates = st.fixed_dictionaries(
    {"candidate": st.one_of(candidate_lines, json_values)},
    optional={"sdpMid": st.one_of(st.none(), st.text(max_size=4), st.integers()), "sdpMLineIndex": json_values},
)
patch_bodies = st.one_of(
    st.fixed_dictionaries({"candidates": st.lists(candidates, max_size=6)}, optional={"end": json_values}),
    candidates,
    json_values,
)
requests = st.lists(
    st.one_of(
        st.tuples(st.just("offer_json"), json_values),
        st.tuples(st.just("offer_sdp"), sdp_edits, st.sampled_from(["offer", "offer", "offer", "answer", ""])),
        st.tuples(st.just("offer_raw"), st.binary(max_size=200), st.sampled_from(["application/json", "text/plain"])),
        st.tuples(st.just("patch"), st.booleans(), patch_bodies),
        st.tuples(st.just("delete"), st.booleans()),
    ),
    min_size=1,
    max_size=5,
)


def edit_sdp(sdp: str, edits: list[tuple[str, str, int, str]]) -> str:
    lines = sdp.splitlines()
    for what, target, k, argument in edits:
        aimed = [i for i, line in enumerate(lines) if line.startswith(target)]
        if not aimed:
            continue
        i = aimed[k % len(aimed)]
        if what == "delete":
            del lines[i]
        elif what == "duplicate":
            lines.insert(i, lines[i])
        elif what == "replace":
            lines[i] = argument
        elif what == "revalue":  # the same attribute, another value
            name, sep, _ = lines[i].partition(":") if lines[i].startswith("a=") else lines[i].partition("=")
            lines[i] = name + sep + argument
        elif what == "insert":
            lines.insert(i, argument if "=" in argument else "a=" + argument)
        elif what == "swap":
            j = (i + 1 + k) % len(lines)
            lines[i], lines[j] = lines[j], lines[i]
        else:
            lines = lines[:i]
    return "\r\n".join(lines) + "\r\n"


_offers: list[str] = []


async def cached_offer() -> str:
    """One real aiortc offer, made once: a peer connection per example would only slow the search."""
    if not _offers:
        _offers.append(await real_offer())
    return _offers[0]


async def send(http: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> tuple[int, Any, str | None]:
    async with http.request(method, url, **kw) as reply:
        return reply.status, await reply.json(content_type=None), reply.headers.get("Retry-After")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=requests)
async def test_no_hostile_request_gets_a_5xx_or_leaves_a_session_behind(script: list[tuple[Any, ...]]) -> None:
    sdp = await cached_offer()
    options = server_options(max_sessions=3, max_pending_sessions=2, max_candidates_per_session=8)
    async with serving(options=options) as (server, url), aiohttp.ClientSession() as http:
        status, answer, _ = await send(http, "POST", url + OFFER, json={"sdp": sdp, "type": "offer"})
        assert status == 200  # a live session for the PATCHes and DELETEs to aim at
        accepted: list[str] = [answer["session_id"]]
        for op in script:
            target = url + SESSIONS + (accepted[-1] if accepted and op[1] is True else "no-such-session")
            if op[0] == "offer_json":
                reply = await send(http, "POST", url + OFFER, json=op[1])
            elif op[0] == "offer_sdp":
                reply = await send(http, "POST", url + OFFER, json={"sdp": edit_sdp(sdp, op[1]), "type": op[2]})
            elif op[0] == "offer_raw":
                reply = await send(http, "POST", url + OFFER, data=op[1], headers={"Content-Type": op[2]})
            elif op[0] == "patch":
                reply = await send(http, "PATCH", target, json=op[2])
            else:
                reply = await send(http, "DELETE", target)
            status, payload, retry_after = reply
            assert status < 500 or (status == 503 and retry_after is not None), (op, payload)
            if status >= 400:
                error_code(payload)
            elif op[0].startswith("offer"):
                accepted.append(payload["session_id"])
            assert set(server.sessions) <= set(accepted), op
        for session_id in accepted:
            status, _, _ = await send(http, "DELETE", url + SESSIONS + session_id)
            assert status in (200, 404)
        with anyio.fail_after(10):
            await server.wait_sessions(lambda sessions: not sessions)


async def test_one_address_may_make_only_so_many_offers_a_minute() -> None:
    """A flood from one address gets 429 with Retry-After; another address (behind the trusted
    local proxy, by X-Forwarded-For) is not held back by it."""
    offer = {"sdp": "v=0", "type": "offer"}
    limited = server_options(max_offers_per_minute=3)
    async with serving(options=limited) as (server, url), aiohttp.ClientSession() as http:
        statuses = []
        for _ in range(4):
            async with http.post(f"{url}/api/voice/offer", json=offer) as response:
                statuses.append(response.status)
                if response.status == 429:
                    assert int(response.headers["Retry-After"]) >= 1
                    assert (await response.json())["error"]["code"] == "too_many_offers"
        assert statuses == [400, 400, 400, 429]  # bad SDPs count too: each one is an offer
        other = {"X-Forwarded-For": "198.51.100.7"}
        async with http.post(f"{url}/api/voice/offer", json=offer, headers=other) as response:
            assert response.status == 400  # judged on its merits, not rate-limited
    assert server.sessions == {} and server.offer_outcomes["rate_limited"] == 1
