"""Admission by headroom: while the event loop runs late, new calls get 503 and running ones go on."""

from __future__ import annotations

import logging

import aiohttp
import pytest
from webrtc_helpers import serving

from voxframe.pipeline.clock import NS_PER_S, VirtualClock
from voxframe.runner.admission import Admission, AdmissionOptions
from voxframe.runner.options import parse_options
from voxframe.transports.webrtc import WebRTCServer

pytestmark = pytest.mark.anyio

PERIOD_NS = NS_PER_S // 10  # the metrics' loop-lag probe samples every 100 ms


async def feed(admission: Admission, clock: VirtualClock, lag_s: float, count: int) -> None:
    for _ in range(count):
        await clock.advance(PERIOD_NS)
        admission.observe(lag_s)


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
