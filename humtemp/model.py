"""Observations, bucket math and mergeable aggregates: pure logic, no I/O."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import msgspec

LAB_ID_PATTERN = re.compile(r"[A-Za-z0-9/_.\-]{1,50}")
MAX_FUTURE_SECONDS = 60
MILLISECONDS_FROM = 10**11
"""A timestamp this large (year 5138 in seconds) is taken for milliseconds (2001 onwards)."""
TEMP_RANGE = (-273.15, 1000.0)
HUMIDITY_RANGE = (0.0, 100.0)


class Observation(msgspec.Struct, frozen=True, gc=False):
    """One sensor reading. Unknown fields are ignored, as the original service did.

    ``gc=False``: only str/int/float fields, so no cycles; untracked instances keep a
    batch of thousands from triggering garbage collections."""

    lab_id: str
    timestamp: int | float
    temp: float
    humidity: float


class ValidationFailure(ValueError):
    """A value decoded fine but breaks a rule; becomes a 422 naming ``field``."""

    def __init__(self, field: str | None, detail: str, reason: str = "invalid") -> None:
        super().__init__(detail)
        self.field = field
        self.detail = detail
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Buckets:
    """Bucket arithmetic of the original service: fixed windows aligned to ``offset``."""

    offset: int
    duration: int
    retention: int

    def start(self, ts: int) -> int:
        return self.offset + ((ts - self.offset) // self.duration) * self.duration

    def expire_at(self, bucket_start: int) -> int:
        """Keys of a bucket live until ``retention`` buckets have started after it."""
        return bucket_start + self.retention * self.duration

    def relative(self, now: int, offset: int) -> int:
        """Start of the bucket ``offset`` buckets from the one holding ``now``."""
        return self.start(now) + offset * self.duration

    def oldest_accepted(self, now: int) -> int:
        """Earliest timestamp whose bucket has not expired yet."""
        return self.start(now) - (self.retention - 1) * self.duration


def _check_range(field: str, value: float, bounds: tuple[float, float]) -> None:
    if not math.isfinite(value):
        raise ValidationFailure(field, f"{field} must be a finite number, got {value!r}")
    low, high = bounds
    if not low <= value <= high:
        raise ValidationFailure(
            field, f"{field} must be between {low:g} and {high:g}, got {value!r}"
        )


def validate(obs: Observation, buckets: Buckets, now: int) -> int:
    """Check every rule of one decoded observation; return its integer timestamp."""
    lab_id = obs.lab_id
    if not LAB_ID_PATTERN.fullmatch(lab_id):
        if not lab_id:
            detail = "lab_id must not be empty"
        elif len(lab_id) > 50:
            detail = f"lab_id must be at most 50 characters, got {len(lab_id)}"
        else:
            detail = "lab_id may only contain letters, digits and / _ . -"
        raise ValidationFailure("lab_id", detail)
    ts = obs.timestamp
    if type(ts) is float:
        if not math.isfinite(ts):
            raise ValidationFailure("timestamp", "timestamp must be a finite number")
        ts = math.floor(ts)
    if ts > now + MAX_FUTURE_SECONDS:
        if ts >= MILLISECONDS_FROM:
            detail = f"timestamp looks like milliseconds; send Unix seconds (got {ts})"
        else:
            detail = (f"observations from the future are not allowed: timestamp {ts} is more "
                      f"than {MAX_FUTURE_SECONDS} s after the server time {now}")
        raise ValidationFailure("timestamp", detail, reason="future")
    oldest = buckets.oldest_accepted(now)
    if ts < oldest:
        raise ValidationFailure(
            "timestamp",
            f"timestamp {ts} is older than the retention window (oldest accepted: {oldest})",
            reason="too_old",
        )
    _check_range("temp", obs.temp, TEMP_RANGE)
    _check_range("humidity", obs.humidity, HUMIDITY_RANGE)
    return int(ts)


class Aggregate:
    """(count, sum, min, max) of temp and humidity as read back from the shards;
    merging is order-free. (The write path merges into plain lists: shard.Batch.)

    A plain slotted class (not a dataclass) because a summary creates one per lab
    and shard, up to millions: construction and attribute access must stay cheap.
    """

    __slots__ = ("count", "hum_max", "hum_min", "hum_sum", "temp_max", "temp_min", "temp_sum")

    def __init__(
        self,
        count: int,
        temp_sum: float,
        hum_sum: float,
        temp_min: float,
        temp_max: float,
        hum_min: float,
        hum_max: float,
    ) -> None:
        self.count = count
        self.temp_sum = temp_sum
        self.hum_sum = hum_sum
        self.temp_min = temp_min
        self.temp_max = temp_max
        self.hum_min = hum_min
        self.hum_max = hum_max

    def merge(self, other: Aggregate) -> Aggregate:
        """A new aggregate of both; associative and commutative (sums up to rounding)."""
        return Aggregate(
            self.count + other.count,
            self.temp_sum + other.temp_sum,
            self.hum_sum + other.hum_sum,
            min(self.temp_min, other.temp_min),
            max(self.temp_max, other.temp_max),
            min(self.hum_min, other.hum_min),
            max(self.hum_max, other.hum_max),
        )

    def as_tuple(self) -> tuple[int, float, float, float, float, float, float]:
        return (
            self.count,
            self.temp_sum,
            self.hum_sum,
            self.temp_min,
            self.temp_max,
            self.hum_min,
            self.hum_max,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Aggregate) and self.as_tuple() == other.as_tuple()

    def __repr__(self) -> str:
        return f"Aggregate{self.as_tuple()!r}"

    @property
    def avg_temp(self) -> float:
        return self.temp_sum / self.count

    @property
    def avg_humidity(self) -> float:
        return self.hum_sum / self.count
