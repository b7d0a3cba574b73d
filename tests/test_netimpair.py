"""The impaired network's packet decisions: seeded loss models, delays, and the SDP rewrite."""

from __future__ import annotations

import anyio
import pytest
from anyio.abc import SocketAttribute

from voxframe.fakes.netimpair import GilbertElliott, ImpairedPath, Impairment, is_rtp, rtp_sequence
from voxframe.fakes.netrelay import ImpairedNetwork, relay_candidates

PACKETS = 100_000


def rtp(seq: int) -> bytes:
    return bytes([0x80, 111]) + seq.to_bytes(2, "big") + bytes(8) + b"opus"


def loss_runs(path: ImpairedPath, count: int) -> list[int]:
    """Lengths of the runs of consecutive lost packets over `count` packets."""
    runs, current = [], 0
    for seq in range(count):
        if path.delays_ms(rtp(seq & 0xFFFF)):
            if current:
                runs.append(current)
            current = 0
        else:
            current += 1
    return runs + ([current] if current else [])


def test_gilbert_elliott_gives_the_loss_rate_and_mean_burst_it_was_fitted_to() -> None:
    model = GilbertElliott.bursts(rate=0.03, mean_burst=3.0)
    assert model.loss_rate == pytest.approx(0.03)
    path = ImpairedPath(Impairment(burst=model, seed=5))
    runs = loss_runs(path, PACKETS)
    assert sum(runs) / PACKETS == pytest.approx(0.03, rel=0.1)
    assert sum(runs) / len(runs) == pytest.approx(3.0, rel=0.1)
    assert path.stats.dropped == sum(runs) == len(path.stats.dropped_rtp)


def test_random_loss_comes_singly_and_the_same_seed_loses_the_same_packets() -> None:
    first = ImpairedPath(Impairment(loss=0.05, seed=9))
    runs = loss_runs(first, PACKETS)
    assert sum(runs) / PACKETS == pytest.approx(0.05, rel=0.1)
    assert sum(runs) / len(runs) == pytest.approx(1 / 0.95, rel=0.05)  # geometric: bursts only by chance
    again = ImpairedPath(Impairment(loss=0.05, seed=9))
    loss_runs(again, PACKETS)
    assert again.stats.dropped_rtp == first.stats.dropped_rtp
    other = ImpairedPath(Impairment(loss=0.05, seed=10))
    loss_runs(other, PACKETS)
    assert other.stats.dropped_rtp != first.stats.dropped_rtp


def test_delay_jitter_reordering_and_duplication() -> None:
    path = ImpairedPath(Impairment(delay_ms=10, jitter_ms=30, reorder=0.1, reorder_ms=50, duplicate=0.02, seed=3))
    copies = [path.delays_ms(rtp(seq)) for seq in range(10_000)]
    first = [c[0] for c in copies]
    assert all(10 <= d <= 90 for d in first)
    assert sum(d > 40 for d in first) / len(first) == pytest.approx(0.1, abs=0.02)  # held back to reorder
    assert sum(len(c) == 2 for c in copies) / len(copies) == pytest.approx(0.02, abs=0.005)
    assert path.stats.dropped == 0


def test_media_only_passes_stun_and_dtls_untouched() -> None:
    path = ImpairedPath(Impairment(loss=1.0, media_only=True))
    stun = bytes([0x00, 0x01]) + bytes(18)
    dtls = bytes([22, 0xFE, 0xFD]) + bytes(20)
    assert path.delays_ms(stun) == [0.0] and path.delays_ms(dtls) == [0.0]
    assert path.delays_ms(rtp(1)) == []
    rtcp = bytes([0x80, 201]) + bytes(10)
    assert not is_rtp(rtcp) and is_rtp(rtp(7)) and rtp_sequence(rtp(7)) == 7


def test_bad_impairments_are_refused() -> None:
    with pytest.raises(ValueError, match="probability"):
        Impairment(loss=1.5)
    with pytest.raises(ValueError, match="negative"):
        Impairment(jitter_ms=-1)
    with pytest.raises(ValueError, match="r must be above 0"):
        GilbertElliott(p=0.1, r=0.0)


OFFER = "\r\n".join([
    "v=0",
    "o=- 1 1 IN IP4 0.0.0.0",
    "m=audio 40000 UDP/TLS/RTP/SAVPF 96",
    "c=IN IP4 127.0.0.1",
    "a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host",
    "a=candidate:2 1 udp 2130706431 10.0.0.5 40001 typ host",
    "a=candidate:3 1 tcp 1518280447 127.0.0.1 9 typ host tcptype passive",
    "m=application 40000 DTLS/SCTP 5000",
    "c=IN IP4 127.0.0.1",
    "a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host",
    "a=fmtp:96 minptime=10;useinbandfec=1",
]) + "\r\n"  # fmt: skip


def test_the_relay_is_the_only_candidate_the_other_side_learns() -> None:
    sdp, original = relay_candidates(OFFER, ("127.0.0.1", 5555))
    assert original == ("127.0.0.1", 40000)
    candidates = [line for line in sdp.splitlines() if line.startswith("a=candidate:")]
    assert candidates == ["a=candidate:1 1 udp 2130706431 127.0.0.1 5555 typ host"] * 2
    assert [line.split()[1] for line in sdp.splitlines() if line.startswith("m=")] == ["5555", "5555"]
    assert "a=fmtp:96 minptime=10;useinbandfec=1" in sdp.splitlines()
    assert relay_candidates("v=0\r\n", ("127.0.0.1", 1)) == ("v=0\r\n", None)


@pytest.mark.anyio
async def test_real_packets_cross_the_relay_both_ways_reordered_and_duplicated() -> None:
    with anyio.fail_after(10):
        async with (
            ImpairedNetwork("http://127.0.0.1:9") as net,  # no signalling here: the endpoints are set by hand
            await anyio.create_udp_socket(local_host="127.0.0.1") as caller,
            await anyio.create_udp_socket(local_host="127.0.0.1") as server,
        ):
            net.endpoints.client = caller.extra(SocketAttribute.local_address)
            net.endpoints.server = server.extra(SocketAttribute.local_address)
            net.impair(to_server=Impairment(reorder=0.3, reorder_ms=5, duplicate=0.1, seed=1))
            for seq in range(100):
                await caller.sendto(rtp(seq), *net.client_facing)
            stats, arrived = net.to_server.path.stats, []
            while stats.packets < 100 or len(arrived) < 100 + stats.duplicated:
                packet, source = await server.receive()
                assert source == net.server_facing  # the server sees the relay, never the caller
                arrived.append(rtp_sequence(packet))
            await server.sendto(rtp(7), *net.server_facing)
            back, source = await caller.receive()
            assert (rtp_sequence(back), source) == (7, net.client_facing)  # and back, from the relay
    assert sorted(set(arrived)) == list(range(100)) and stats.duplicated > 0
    assert arrived != sorted(arrived)  # packets held back arrive behind later ones
