"""Admission by headroom: while the event loop runs late or callers' packets are read late, new
calls get 503 and running ones go on."""

from __future__ import annotations

import logging

import aiohttp
import anyio
import pytest
from webrtc_helpers import client_options, echo_factory, serving, tone

from voxframe.fakes.netimpair import Impairment
from voxframe.fakes.netrelay import ImpairedNetwork
from voxframe.pipeline.clock import NS_PER_S, VirtualClock
from voxframe.runner.admission import Admission, AdmissionOptions
from voxframe.runner.options import parse_options
from voxframe.transports.webrtc import HeadlessClient, Session, WebRTCServer

pytestmark = pytest.mark.anyio

PERIOD_NS = NS_PER_S // 10  # the metrics' loop-lag probe samples every 100 ms


async def feed(
    admission: Admission, clock: VirtualClock, lag_s: float, count: int, read_late_s: float | None = 0.0
) -> None:
    """`count` samples, 100 ms apart; `read_late_s` None reads the server's sessions."""
    for _ in range(count):
        await clock.advance(PERIOD_NS)
        admission.observe(lag_s, read_late_s)


async def test_new_calls_are_held_while_the_median_lag_is_high_and_admitted_once_it_falls() -> None:
    clock = VirtualClock()
    server = WebRTCServer(lambda session: None)  # type: ignore[arg-type, return-value]
    admission = Admission(server, AdmissionOptions(max_lag_s=0.03, window_s=2.0), clock)
    await feed(admission, clock, 0.005, 20)  # 2 s of a healthy loop
    assert server.held_reason is None
    await feed(admission, clock, 0.2, 10)  # a spike, but under half the window: the median holds
    assert server.held_reason is None
    await feed(admission, clock, 0.2, 1)  # most of the window is late now
    assert server.held_reason == "overloaded"
    server.hold("draining")  # holds stack: recovering from overload must not end a drain
    await feed(admission, clock, 0.02, 20)  # below the limit, above half of it: still held (hysteresis)
    assert server.held_reason == "overloaded"
    await feed(admission, clock, 0.005, 11)
    assert server.held_reason == "draining"
    server.admit("draining")
    assert server.held_reason is None


async def test_an_overloaded_server_refuses_offers_with_retry_after_and_logs_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = VirtualClock()
    caplog.set_level(logging.WARNING, logger="voxframe")
    async with serving() as (server, url):
        admission = Admission(server, AdmissionOptions(max_lag_s=0.03, window_s=1.0), clock)
        await feed(admission, clock, 0.5, 10)
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{url}/api/voice/offer", json={"sdp": "v=0", "type": "offer"}) as response:
                assert response.status == 503
                assert response.headers["Retry-After"]
                assert (await response.json())["error"]["code"] == "overloaded"
            async with http.get(f"{url}/readyz") as response:
                assert response.status == 503
        assert any("overloaded: event-loop lag median" in r.getMessage() for r in caplog.records)
        assert server.sessions == {}


def test_the_lag_limit_is_an_option_and_zero_turns_it_off(tmp_path) -> None:  # type: ignore[no-untyped-def]
    none = tmp_path / "none"
    assert parse_options([], env={}, dotenv_path=none).max_loop_lag_s == 0.03
    assert parse_options(["--max-loop-lag-ms", "50"], env={}, dotenv_path=none).max_loop_lag_s == 0.05
    assert parse_options([], env={"VOXFRAME_MAX_LOOP_LAG_MS": "0"}, dotenv_path=none).max_loop_lag_s is None


async def test_packets_read_late_hold_new_calls_though_the_loop_is_on_time() -> None:
    clock = VirtualClock()
    server = WebRTCServer(lambda session: None)  # type: ignore[arg-type, return-value]
    admission = Admission(server, AdmissionOptions(max_lag_s=0.03, max_read_late_s=0.1, window_s=2.0), clock)
    await feed(admission, clock, 0.001, 20, read_late_s=0.01)
    assert server.held_reason is None
    await feed(admission, clock, 0.001, 11, read_late_s=0.8)  # callers' audio waits in the kernel's buffers
    assert server.held_reason == "overloaded"
    await feed(admission, clock, 0.001, 20, read_late_s=0.07)  # under the limit, over half of it: still held
    assert server.held_reason == "overloaded"
    await feed(admission, clock, 0.001, 11, read_late_s=0.01)
    assert server.held_reason is None


async def test_a_call_whose_packets_arrive_late_holds_new_offers_and_goes_on_itself() -> None:
    """Real packets over real UDP, held 300 ms in a relay (standing for a receive queue the loop
    reads late): the session's read lateness shows it, admission holds new offers (503 with
    Retry-After) while the call keeps its echo, and admits again once packets are on time."""
    clock = VirtualClock()
    with anyio.fail_after(40):
        async with (
            serving(echo_factory) as (server, url),
            ImpairedNetwork(url) as net,
            HeadlessClient.connect(net.url, client_options()) as client,
        ):
            admission = Admission(server, AdmissionOptions(max_lag_s=None, max_read_late_s=0.1, window_s=1.0), clock)
            await client.play(tone(440.0, 0.5, 48_000), 48_000)  # media flows on time
            (session,) = server.sessions.values()
            assert isinstance(session, Session)
            await feed(admission, clock, 0.0, 10, read_late_s=None)
            assert server.held_reason is None and session.read_lateness_s < 0.05
            net.impair(to_server=Impairment(delay_ms=300.0, media_only=True))
            late_from_ns = client.clock.now_ns()
            await client.play(tone(440.0, 1.5, 48_000), 48_000)  # over a second of packets read 300 ms late
            assert session.read_lateness_s > 0.1
            await feed(admission, clock, 0.0, 10, read_late_s=None)
            assert server.held_reason == "overloaded"
            offer = {"sdp": "v=0", "type": "offer"}
            async with aiohttp.ClientSession() as http, http.post(f"{url}/api/voice/offer", json=offer) as response:
                assert response.status == 503
                assert response.headers["Retry-After"]
            assert await client.wait_for_onset(after_ns=late_from_ns, timeout_s=5.0)  # the call goes on
            net.clear()
            await client.play(tone(440.0, 1.5, 48_000), 48_000)  # on time again
            assert session.read_lateness_s < 0.05
            await feed(admission, clock, 0.0, 10, read_late_s=None)
            assert server.held_reason is None
            assert list(server.sessions) == [session.id]
