"""Reading one sample out of a /metrics answer, for tests that assert deltas."""

from __future__ import annotations

from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families


def sample(text: str, name: str, **labels: str) -> float:
    """The value of the sample ``name`` whose labels include ``labels`` (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and all(found.labels.get(k) == v for k, v in labels.items()):
                return float(found.value)
    return 0.0


async def scrape(client: TestClient, name: str, **labels: str) -> float:
    """One sample from an in-process humtemp's /metrics."""
    return sample(await (await client.get("/metrics")).text(), name, **labels)
