"""The bootstrap interval `benchmarks/scale.py` puts on its API-overhead ratio."""

from __future__ import annotations

import random

import pytest

from benchmarks.common import median_ratio_interval, percentiles


def _requests(count: int, seed: int) -> tuple[list[float], list[float]]:
    """(client latency, server time) of `count` requests on a host whose pace swings 2x from one
    request to the next, with an overhead of 20 % +- noise on top of the server's time."""
    rng = random.Random(seed)
    inside = [20.0 * rng.uniform(0.7, 1.4) for _ in range(count)]
    outside = [t * 1.2 + rng.gauss(0, 0.8) for t in inside]
    return outside, inside


def test_interval_holds_the_ratio_of_the_medians_the_benchmark_reports() -> None:
    outside, inside = _requests(100, seed=1)
    low, high = median_ratio_interval(outside, inside)
    reported = percentiles(outside)["p50_ms"] / percentiles(inside)["p50_ms"]
    assert low <= reported <= high
    assert 1.1 < low < high < 1.3


def test_pairs_are_resampled_together_so_the_hosts_pace_cancels_out() -> None:
    # Every request's latency is exactly 1.2x its server time, however fast the host was then:
    # resampled in pairs, every resample's ratio is 1.2.
    rng = random.Random(2)
    inside = [20.0 * rng.uniform(0.5, 2.0) for _ in range(100)]
    assert median_ratio_interval([t * 1.2 for t in inside], inside) == (1.2, 1.2)


def test_more_requests_narrow_the_interval() -> None:
    widths = []
    for count in (50, 800):
        low, high = median_ratio_interval(*_requests(count, seed=3))
        widths.append(high - low)
    assert widths[1] < widths[0] / 2


def test_the_same_seed_gives_the_same_interval() -> None:
    outside, inside = _requests(60, seed=4)
    assert median_ratio_interval(outside, inside, seed=7) == median_ratio_interval(outside, inside, seed=7)


@pytest.mark.parametrize(
    ("outside", "inside"),
    [([1.0], [1.0]), ([1.0, 2.0, 3.0], [1.0, 2.0]), ([], [])],
    ids=["one pair", "unequal lengths", "none"],
)
def test_too_few_or_unpaired_samples_are_refused(outside: list[float], inside: list[float]) -> None:
    with pytest.raises(ValueError):
        median_ratio_interval(outside, inside)
