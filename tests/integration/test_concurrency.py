"""Thousands of concurrent posts over many labs: every aggregate exact."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict

from tests.conftest import ClientFactory, obs


async def test_thousands_of_concurrent_posts_are_exact(make_client: ClientFactory) -> None:
    client = await make_client()
    rng = random.Random(7)
    expected: dict[str, list[tuple[float, float]]] = defaultdict(list)
    posts = []
    for _ in range(4000):
        lab = f"lab-{rng.randrange(250):03d}"
        temp, hum = rng.uniform(-40, 60), rng.uniform(0, 100)
        expected[lab].append((temp, hum))
        posts.append(obs(lab, temp=temp, hum=hum))
    sem = asyncio.Semaphore(200)

    async def post(body: dict[str, object]) -> int:
        async with sem:
            resp = await client.post("/observation", json=body)
            await resp.read()
            return resp.status

    statuses = await asyncio.gather(*(post(p) for p in posts))
    assert statuses.count(200) == len(posts)
    detail = await (await client.get("/summary/detail", params={"offset": 0})).json()
    got = {lab["lab_id"]: lab for lab in detail["labs"]}
    assert set(got) == set(expected)
    for lab, values in expected.items():
        temps = [t for t, _ in values]
        hums = [h for _, h in values]
        assert got[lab]["count"] == len(values)
        assert abs(got[lab]["avg_temp"] - sum(temps) / len(temps)) < 1e-9
        assert abs(got[lab]["avg_humidity"] - sum(hums) / len(hums)) < 1e-9
        assert got[lab]["min_temp"] == min(temps) and got[lab]["max_temp"] == max(temps)
        assert got[lab]["min_humidity"] == min(hums) and got[lab]["max_humidity"] == max(hums)
    summary = await (await client.get("/summary", params={"offset": 0})).json()
    assert [s["lab_id"] for s in summary] == sorted(expected)
