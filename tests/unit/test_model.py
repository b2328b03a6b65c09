"""Validation rules, bucket arithmetic and aggregate merging."""

from __future__ import annotations

import functools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from humtemp.model import Aggregate, Buckets, Observation, ValidationFailure, validate

DAY = 86400
BUCKETS = Buckets(offset=0, duration=DAY, retention=2)
NOW = 1_700_000_000


def make(**kw: object) -> Observation:
    base: dict[str, object] = {"lab_id": "lab01", "timestamp": NOW, "temp": 20.0, "humidity": 50.0}
    base.update(kw)
    return Observation(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("lab_id", ["a", "A" * 50, "lab/1_x.y-z", "0"])
def test_valid_lab_ids(lab_id: str) -> None:
    assert validate(make(lab_id=lab_id), BUCKETS, NOW) == NOW


@pytest.mark.parametrize(
    ("lab_id", "fragment"),
    [("", "empty"), ("A" * 51, "at most 50"), ("lab 1", "only contain"), ("lab:1", "only contain"),
     ("läb", "only contain"), ("lab\n", "only contain")],
)
def test_invalid_lab_ids(lab_id: str, fragment: str) -> None:
    with pytest.raises(ValidationFailure) as err:
        validate(make(lab_id=lab_id), BUCKETS, NOW)
    assert err.value.field == "lab_id"
    assert fragment in err.value.detail


def test_timestamp_future_limit_is_60_seconds() -> None:
    assert validate(make(timestamp=NOW + 60), BUCKETS, NOW) == NOW + 60
    with pytest.raises(ValidationFailure) as err:
        validate(make(timestamp=NOW + 61), BUCKETS, NOW)
    assert (err.value.field, err.value.reason) == ("timestamp", "future")


@pytest.mark.parametrize("millis", [NOW * 1000, 10**11, int(NOW * 1000.5)])
def test_a_timestamp_in_milliseconds_says_so(millis: int) -> None:
    with pytest.raises(ValidationFailure) as err:
        validate(make(timestamp=millis), BUCKETS, NOW)
    assert (err.value.field, err.value.reason) == ("timestamp", "future")
    assert err.value.detail == (
        f"timestamp looks like milliseconds; send Unix seconds (got {millis})")


def test_a_timestamp_just_in_the_future_is_not_taken_for_milliseconds() -> None:
    with pytest.raises(ValidationFailure) as err:
        validate(make(timestamp=NOW + 3600), BUCKETS, NOW)
    assert "milliseconds" not in err.value.detail
    assert "from the future" in err.value.detail


def test_timestamp_older_than_retention_is_rejected() -> None:
    oldest = BUCKETS.oldest_accepted(NOW)
    assert oldest == BUCKETS.start(NOW) - DAY
    assert validate(make(timestamp=oldest), BUCKETS, NOW) == oldest
    with pytest.raises(ValidationFailure) as err:
        validate(make(timestamp=oldest - 1), BUCKETS, NOW)
    assert err.value.reason == "too_old"


def test_float_timestamp_is_floored_like_the_original() -> None:
    assert validate(make(timestamp=NOW - 0.5), BUCKETS, NOW) == NOW - 1


@pytest.mark.parametrize(
    ("field", "value"),
    [("temp", math.nan), ("temp", math.inf), ("humidity", -math.inf), ("temp", -273.16),
     ("temp", 1000.5), ("humidity", -0.1), ("humidity", 100.01), ("timestamp", math.inf)],
)
def test_non_finite_and_implausible_values(field: str, value: float) -> None:
    with pytest.raises(ValidationFailure) as err:
        validate(make(**{field: value}), BUCKETS, NOW)
    assert err.value.field == field


@given(
    ts=st.integers(min_value=-(10**12), max_value=10**12),
    offset=st.integers(min_value=-(10**10), max_value=10**10),
    duration=st.integers(min_value=1, max_value=10**7),
)
def test_bucket_contains_its_timestamp(ts: int, offset: int, duration: int) -> None:
    buckets = Buckets(offset, duration, 2)
    start = buckets.start(ts)
    assert start <= ts < start + duration
    assert (start - offset) % duration == 0
    assert buckets.expire_at(start) == start + 2 * duration


def test_relative_buckets() -> None:
    assert BUCKETS.relative(NOW, 0) == BUCKETS.start(NOW)
    assert BUCKETS.relative(NOW, -1) == BUCKETS.start(NOW) - DAY


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).map(lambda x: round(x, 2))
aggregates = st.builds(
    lambda values: _agg_of(values), st.lists(st.tuples(finite, finite), min_size=1, max_size=20)
)


def _agg_of(values: list[tuple[float, float]]) -> Aggregate:
    return functools.reduce(Aggregate.merge, (Aggregate(1, t, h, t, t, h, h) for t, h in values))


def _close(a: Aggregate, b: Aggregate) -> bool:
    return (a.count, a.temp_min, a.temp_max, a.hum_min, a.hum_max) == (
        b.count, b.temp_min, b.temp_max, b.hum_min, b.hum_max
    ) and math.isclose(a.temp_sum, b.temp_sum, rel_tol=1e-9, abs_tol=1e-6) and math.isclose(
        a.hum_sum, b.hum_sum, rel_tol=1e-9, abs_tol=1e-6
    )


@given(aggregates, aggregates)
def test_merge_is_commutative(a: Aggregate, b: Aggregate) -> None:
    assert _close(a.merge(b), b.merge(a))


@given(aggregates, aggregates, aggregates)
def test_merge_is_associative(a: Aggregate, b: Aggregate, c: Aggregate) -> None:
    assert _close(a.merge(b).merge(c), a.merge(b.merge(c)))


@given(st.lists(st.tuples(finite, finite), min_size=2, max_size=30), st.integers(1, 29))
def test_merge_of_parts_equals_the_whole(values: list[tuple[float, float]], cut: int) -> None:
    cut = min(cut, len(values) - 1)
    assert _close(_agg_of(values[:cut]).merge(_agg_of(values[cut:])), _agg_of(values))
