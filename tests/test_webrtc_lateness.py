"""How late a session's packets are read: zero when read as they are sent, the backlog when they
wait in a queue, never a slow sender's clock drift."""

from __future__ import annotations

from voxframe.pipeline.clock import NS_PER_S
from voxframe.transports.webrtc._lateness import ReadLateness

PACKET_NS = NS_PER_S // 50  # 20 ms
RTP_PER_PACKET = 960  # 20 ms at 48 kHz
OFFSET_NS = 7 * NS_PER_S  # the sender's clock is unknown: its timestamps have any offset


def read(lateness: ReadLateness, packets: range, late_ns: int, seq_offset: int = 0, ts_offset: int = 0) -> None:
    for i in packets:
        lateness.observe(OFFSET_NS + i * PACKET_NS + late_ns, ts_offset + i * RTP_PER_PACKET, (seq_offset + i) & 0xFFFF)


def test_packets_read_as_they_are_sent_are_not_late() -> None:
    lateness = ReadLateness()
    read(lateness, range(500), 0)
    assert lateness.lateness_ns == 0


def test_packets_that_wait_in_a_queue_read_as_late_as_the_queue_holds_them() -> None:
    lateness = ReadLateness()
    read(lateness, range(100), 0)
    read(lateness, range(100, 200), 300 * 1_000_000)  # from here each packet waits 300 ms to be read
    assert 290e6 < lateness.lateness_ns <= 300e6
    read(lateness, range(200, 300), 0)  # the queue drained
    assert lateness.lateness_ns < 1e6


def test_a_backlog_that_grows_reads_later_and_later() -> None:
    lateness = ReadLateness()
    read(lateness, range(50), 0)
    seen = []
    for second in range(1, 6):  # the loop reads 45 packets a second of the 50 sent: 100 ms more a second
        read(lateness, range(50 * second, 50 * (second + 1)), second * 100 * 1_000_000)
        seen.append(lateness.lateness_ns)
    assert seen == sorted(seen) and seen[-1] > 400e6


def test_a_sender_clock_slower_than_ours_is_not_lateness() -> None:
    lateness = ReadLateness()
    for i in range(50 * 600):  # ten minutes, the sender's clock 100 ppm slow: 60 ms of drift
        arrival = OFFSET_NS + i * PACKET_NS
        lateness.observe(arrival, round(i * RTP_PER_PACKET * (1 - 100e-6)), i & 0xFFFF)
    assert lateness.lateness_ns < 2e6


def test_a_restarted_sender_starts_afresh() -> None:
    lateness = ReadLateness()
    read(lateness, range(100), 0, ts_offset=5_000_000)  # timestamps far ahead of the new stream's
    read(lateness, range(100, 200), 0, seq_offset=20_000)  # new sequence numbers and timestamps
    assert lateness.lateness_ns == 0
