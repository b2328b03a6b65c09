"""Tallies fold into exactly what direct prometheus-client updates would have produced."""

from __future__ import annotations

import asyncio
import random

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from humtemp.tally import Tallies

BUCKETS = (0.001, 0.01, 0.1, 1.0)


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in registry.collect() for sample in family.samples}


def _assert_same(folded: CollectorRegistry, direct: CollectorRegistry) -> None:
    """Counts and buckets exactly; the sum up to float rounding (added in another order)."""
    got, want = _samples(folded), _samples(direct)
    assert got.keys() == want.keys()
    for key, value in want.items():
        if key[0].endswith("_sum"):
            assert got[key] == pytest.approx(value, rel=1e-12)
        else:
            assert got[key] == value, key


def _pair(name: str) -> tuple[CollectorRegistry, Histogram, Counter]:
    registry = CollectorRegistry()
    histogram = Histogram(f"{name}_seconds", "h", buckets=BUCKETS, registry=registry)
    counter = Counter(f"{name}_requests", "c", registry=registry)
    return registry, histogram, counter


def test_folded_histogram_and_counter_equal_direct_updates() -> None:
    values = [random.choice([0.0, 0.001, 0.0010001, 0.5, 1.0, 7.0, random.random()])
              for _ in range(2000)]
    direct, direct_hist, direct_count = _pair("x")
    for value in values:
        direct_hist.observe(value)
        direct_count.inc()
    folded, hist, count = _pair("x")
    tallies = Tallies()
    tally = tallies.histogram(hist, counter=count)
    for i, value in enumerate(values):
        tally.observe(value)
        if i % 700 == 0:
            tallies.fold()  # folding mid-way must not lose or double anything
    assert folded.get_sample_value("x_requests_total") < len(values)  # tail not folded yet
    tallies.fold()
    tallies.fold()  # a fold with nothing new changes nothing
    _assert_same(folded, direct)


def test_counter_tally_and_gauge_sampler() -> None:
    registry = CollectorRegistry()
    counter = Counter("accepted", "c", registry=registry)
    gauge = Gauge("pending", "g", registry=registry)
    tallies = Tallies()
    accepted = tallies.counter(counter)
    queue = [1, 2, 3]
    tallies.sample(lambda: gauge.set(len(queue)))
    accepted.inc()
    accepted.inc(41)
    assert registry.get_sample_value("accepted_total") == 0
    tallies.fold()
    assert registry.get_sample_value("accepted_total") == 42
    assert registry.get_sample_value("pending") == 3


async def test_the_fold_task_runs_and_stop_folds_the_rest() -> None:
    registry = CollectorRegistry()
    counter = Counter("accepted", "c", registry=registry)
    tallies = Tallies()
    accepted = tallies.counter(counter)
    tallies.start(interval=0.01)
    accepted.inc(5)
    for _ in range(100):
        if registry.get_sample_value("accepted_total") == 5:
            break
        await asyncio.sleep(0.01)
    assert registry.get_sample_value("accepted_total") == 5
    accepted.inc(2)
    await tallies.stop()
    assert registry.get_sample_value("accepted_total") == 7


def test_prometheus_client_internals_the_histogram_tally_uses() -> None:
    """HistogramTally reads and writes these; an upgrade that changes them must fail here."""
    registry = CollectorRegistry()
    child = Histogram("h", "h", ["route"], buckets=BUCKETS, registry=registry).labels("r")
    assert list(child._upper_bounds) == [*BUCKETS, float("inf")]
    assert len(child._buckets) == len(child._upper_bounds)
    child._buckets[1].inc(2)  # non-cumulative: the exposition adds them up
    child._sum.inc(0.01)
    assert registry.get_sample_value("h_bucket", {"route": "r", "le": "0.01"}) == 2
    assert registry.get_sample_value("h_bucket", {"route": "r", "le": "+Inf"}) == 2
    assert registry.get_sample_value("h_count", {"route": "r"}) == 2
    assert registry.get_sample_value("h_sum", {"route": "r"}) == 0.01


def test_the_tally_takes_the_histograms_own_bounds() -> None:
    folded, hist, _ = _pair("own")
    direct, direct_hist, _ = _pair("own")
    tally = Tallies().histogram(hist)
    for value in (0.001, 0.002, 0.5, 3.0):  # on a bound, between bounds, above the last
        tally.observe(value)
        direct_hist.observe(value)
    tally.fold()
    _assert_same(folded, direct)
