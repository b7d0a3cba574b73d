"""What a bad network does to packets, decided per packet and seeded: loss, bursts, delay, jitter.

This kernel has no `netem` (and modules cannot be loaded), so impairment is done in user space
by `fakes.netrelay`, a UDP relay the call's packets really cross. This module is its pure half:
for each packet an `ImpairedPath` says how many copies go out and after what delay (none: lost),
from its own seeded `random.Random`, so two runs (two frameworks) with the same seed see the same
packets lost in the same order of arrival.

* random loss: each packet is lost with probability `loss`;
* burst loss: a two-state Gilbert-Elliott chain (good and bad states, per-packet transition
  probabilities `p` good->bad and `r` bad->good, a loss probability in each state);
  `GilbertElliott.bursts(rate, mean_burst)` fits it to a loss rate and a mean burst length;
* delay: `delay_ms` for every packet, plus `jitter_ms` drawn uniformly per packet (a spread
  wider than the packet interval reorders packets, as jitter on a real path does);
* reordering: a share `reorder` of packets is held back a further `reorder_ms`;
* duplication: a share `duplicate` of packets is sent twice (the copy `duplicate_ms` later).

It lives in `fakes/` because, like the fake providers, it is a local stand-in for something
remote (here the path between caller and server) that tests and benchmarks run against.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(slots=True)
class GilbertElliott:
    """Two-state burst loss: per packet, good->bad with `p`, bad->good with `r`."""

    p: float
    r: float
    loss_good: float = 0.0
    loss_bad: float = 1.0

    def __post_init__(self) -> None:
        for name in ("p", "r", "loss_good", "loss_bad"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"GilbertElliott.{name} must be a probability, got {value}")
        if self.r == 0.0:
            raise ValueError("GilbertElliott.r must be above 0 (a bad state that never ends is an outage)")

    @classmethod
    def bursts(cls, rate: float, mean_burst: float) -> GilbertElliott:
        """Loss `rate` in bursts of `mean_burst` packets on average (every packet lost in the bad state)."""
        if not 0.0 < rate < 1.0 or mean_burst < 1.0:
            raise ValueError(f"need 0 < rate < 1 and mean_burst >= 1, got {rate} and {mean_burst}")
        r = 1.0 / mean_burst
        return cls(p=r * rate / (1.0 - rate), r=r)

    @property
    def loss_rate(self) -> float:
        """The long-run share of packets lost."""
        bad = self.p / (self.p + self.r) if self.p + self.r else 0.0
        return bad * self.loss_bad + (1.0 - bad) * self.loss_good


@dataclass(slots=True)
class Impairment:
    """What one direction of the path does to packets (the default: nothing)."""

    loss: float = 0.0
    burst: GilbertElliott | None = None
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    reorder: float = 0.0
    reorder_ms: float = 40.0
    duplicate: float = 0.0
    duplicate_ms: float = 1.0
    seed: int = 0
    #: Impair only RTP and RTCP; STUN and DTLS (and the data channel inside it) pass untouched.
    media_only: bool = False

    def __post_init__(self) -> None:
        for name in ("loss", "reorder", "duplicate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"Impairment.{name} must be a probability, got {value}")
        for name in ("delay_ms", "jitter_ms", "reorder_ms", "duplicate_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"Impairment.{name} must not be negative")

    @property
    def clean(self) -> bool:
        return self == Impairment(seed=self.seed, media_only=self.media_only)


CLEAN = Impairment()


def is_media(packet: bytes) -> bool:
    """RTP or RTCP (first byte 128..191, RFC 7983), as opposed to STUN or DTLS."""
    return len(packet) >= 12 and 128 <= packet[0] <= 191


def is_rtp(packet: bytes) -> bool:
    """RTP rather than RTCP (RTCP's packet types 200..207 put 72..79 in the marker/PT byte)."""
    return is_media(packet) and not 72 <= (packet[1] & 0x7F) <= 79


def rtp_sequence(packet: bytes) -> int:
    """The sequence number of an RTP packet (SRTP leaves the header in the clear)."""
    return int.from_bytes(packet[2:4], "big")


@dataclass(slots=True)
class PathStatistics:
    packets: int = 0
    dropped: int = 0
    duplicated: int = 0
    delayed: int = 0
    rtp: int = 0
    #: Sequence numbers of the RTP packets dropped, in order (what the receiver should conceal).
    dropped_rtp: list[int] = field(default_factory=list)


class ImpairedPath:
    """Decides, packet by packet, what one direction does (see the module docstring)."""

    def __init__(self, impairment: Impairment = CLEAN) -> None:
        self.impairment = impairment
        self.stats = PathStatistics()
        self._rng = random.Random(impairment.seed)
        self._bad = False

    def lost(self) -> bool:
        """One packet through the loss models (both advance on every packet)."""
        imp = self.impairment
        lost = imp.loss > 0 and self._rng.random() < imp.loss
        if imp.burst is not None:
            model = imp.burst
            if self._bad:
                self._bad = self._rng.random() >= model.r
            else:
                self._bad = self._rng.random() < model.p
            chance = model.loss_bad if self._bad else model.loss_good
            lost = (chance > 0 and self._rng.random() < chance) or lost
        return lost

    def delays_ms(self, packet: bytes) -> list[float]:
        """The delay of each copy of `packet` that goes out (empty: it is lost)."""
        imp = self.impairment
        self.stats.packets += 1
        rtp = is_rtp(packet)
        self.stats.rtp += rtp
        if imp.media_only and not is_media(packet):
            return [0.0]
        if self.lost():
            self.stats.dropped += 1
            if rtp:
                self.stats.dropped_rtp.append(rtp_sequence(packet))
            return []
        delay = imp.delay_ms
        if imp.jitter_ms:
            delay += self._rng.uniform(0.0, imp.jitter_ms)
        if imp.reorder and self._rng.random() < imp.reorder:
            delay += imp.reorder_ms
        self.stats.delayed += delay > 0
        copies = [delay]
        if imp.duplicate and self._rng.random() < imp.duplicate:
            self.stats.duplicated += 1
            copies.append(delay + imp.duplicate_ms)
        return copies
