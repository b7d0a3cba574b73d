"""The fakes' latency profiles: seeded lognormal draws with the profile's p50 and p95."""

from __future__ import annotations

import random
import statistics

import pytest

from voxframe.fakes import LatencyProfile
from voxframe.fakes.cartesia import TTFA
from voxframe.fakes.deepgram import FINAL_LATENCY
from voxframe.fakes.openai import TTFT, OpenAIFake


def draws(profile: LatencyProfile, seed: int, n: int) -> list[float]:
    rng = random.Random(seed)
    return [profile.sample(rng) for _ in range(n)]


@pytest.mark.parametrize("profile", [FINAL_LATENCY, TTFT, TTFA], ids=["deepgram", "openai", "cartesia"])
def test_draws_have_the_profiles_p50_and_p95(profile: LatencyProfile) -> None:
    values = draws(profile, seed=7, n=20_000)
    cuts = statistics.quantiles(values, n=100)
    assert profile.p95_s is not None
    assert cuts[49] == pytest.approx(profile.p50_s, rel=0.03)
    assert cuts[94] == pytest.approx(profile.p95_s, rel=0.04)
    assert min(values) > 0


def test_the_same_seed_gives_the_same_latencies_and_another_seed_others() -> None:
    assert draws(TTFT, seed=3, n=50) == draws(TTFT, seed=3, n=50)
    assert draws(TTFT, seed=3, n=50) != draws(TTFT, seed=4, n=50)


def test_a_fake_reseeded_repeats_its_draws() -> None:
    fake = OpenAIFake(seed=11)
    first = [fake.options.ttft.sample(fake.rng) for _ in range(20)]
    fake.reseed(11)
    assert [fake.options.ttft.sample(fake.rng) for _ in range(20)] == first


def test_deepgram_finalize_profile_is_the_service_part_of_ttfs() -> None:
    # LATENCY.md: TTFS 247/298 ms includes the benchmark's 200 ms VAD stop; Finalize -> final is the rest.
    assert (FINAL_LATENCY.p50_s, FINAL_LATENCY.p95_s) == pytest.approx((0.047, 0.098))


def test_a_profile_without_p95_or_jitter_is_constant() -> None:
    rng = random.Random(0)
    assert {LatencyProfile(0.2).sample(rng) for _ in range(10)} == {0.2}
    assert {LatencyProfile(0.2, 0.4, jitter=False).sample(rng) for _ in range(10)} == {0.2}


def test_a_p95_below_the_p50_is_refused() -> None:
    with pytest.raises(ValueError, match="p50 <= p95"):
        LatencyProfile(0.3, 0.2)


def test_a_fake_logs_every_latency_it_draws_for_a_benchmark_to_read() -> None:
    fake = OpenAIFake(seed=5)
    told = [fake.draw(fake.options.ttft, "ttft") for _ in range(3)]
    assert [seconds for _, _, seconds in fake.draws] == told
    assert {kind for _, kind, _ in fake.draws} == {"ttft"}
    fake.reseed(5)
    assert fake.draw(fake.options.ttft, "ttft") == told[0]  # the log does not change the draws
