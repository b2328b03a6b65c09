"""A flush's in-memory merge equals the aggregate computed the slow way, in any order."""

from __future__ import annotations

import asyncio
import random

from humtemp.model import Aggregate
from humtemp.shard import Batch


def test_batch_merges_per_bucket_and_lab_like_the_reference() -> None:
    rng = random.Random(7)
    items = [(f"lab{rng.randrange(20)}", rng.choice([0, 3600]), 0,
              round(rng.uniform(-50, 50), 2), round(rng.uniform(0, 100), 2))
             for _ in range(3000)]
    expected: dict[tuple[int, str], Aggregate] = {}
    for lab, bucket, _ts, temp, hum in items:
        one = Aggregate(1, temp, hum, temp, temp, hum, hum)
        key = (bucket, lab)
        expected[key] = one if key not in expected else expected[key].merge(one)
    loop = asyncio.new_event_loop()
    try:
        batch = Batch(loop)
        for lab, bucket, _ts, temp, hum in items:
            batch.add(lab, bucket, temp, hum)
    finally:
        loop.close()
    assert batch.observations == 3000
    got = {(bucket, lab): Aggregate(*agg)
           for bucket, labs in batch.groups.items() for lab, agg in labs.items()}
    assert got.keys() == expected.keys()
    for key, agg in expected.items():
        assert got[key].count == agg.count
        assert (got[key].temp_min, got[key].temp_max) == (agg.temp_min, agg.temp_max)
        assert (got[key].hum_min, got[key].hum_max) == (agg.hum_min, agg.hum_max)
        assert abs(got[key].temp_sum - agg.temp_sum) < 1e-6
        assert abs(got[key].hum_sum - agg.hum_sum) < 1e-6
