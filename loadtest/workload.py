"""Observation values and bucket arithmetic shared by the scenarios.

Temperatures and humidities are multiples of 0.25, so every partial sum is
exactly representable in a double: verification can then demand averages equal
to 1e-6 without float error ever being the excuse.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class BucketClock:
    """Maps a timestamp to its bucket start, anchored on one bucket the service reported."""

    anchor: int  # any bucket_start the service returned
    duration: int

    def bucket_of(self, ts: int) -> int:
        return self.anchor + ((ts - self.anchor) // self.duration) * self.duration

    def offset_of(self, bucket: int, current: int) -> int:
        """Offset (in buckets, <= 0) of `bucket` relative to the `current` bucket start."""
        return (bucket - current) // self.duration


def observation(lab_id: str, rng: random.Random, jitter: int, now: float | None = None) -> dict:
    """One valid observation stamped now minus up to `jitter` seconds."""
    ts = int(time.time() if now is None else now) - rng.randint(0, max(jitter, 0))
    return {
        "lab_id": lab_id,
        "timestamp": ts,
        "temp": rng.randint(-80, 160) * 0.25,  # -20 .. 40 C
        "humidity": rng.randint(0, 400) * 0.25,  # 0 .. 100 %
    }


def lab_name(prefix: str, index: int) -> str:
    return f"{prefix}{index:06d}"


def step_target(run_time: float, step_users: int, step_seconds: float,
                steps: int) -> int | None:
    """Users wanted `run_time` seconds in; None once the last step is over."""
    if step_seconds <= 0 or run_time >= steps * step_seconds:
        return None
    return (int(run_time // step_seconds) + 1) * step_users
