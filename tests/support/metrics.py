"""Reading one sample out of a /metrics answer.

The in-process test apps share prometheus-client's process-wide registry, so a counter
holds the sum over every test run so far: assert on the change across an action
(``after - before``), never on the value itself.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families


def _find(exposition: str, name: str, match: Callable[[dict[str, str]], bool]) -> float:
    for family in text_string_to_metric_families(exposition):
        for found in family.samples:
            if found.name == name and match(found.labels):
                return float(found.value)
    return 0.0


def metric_value(exposition: str, sample: str, **labels: str) -> float:
    """The value of ``sample`` (e.g. ``humtemp_shard_reroutes_total``) with exactly these
    labels; 0 if the series does not exist yet (a counter no one has touched)."""
    return _find(exposition, sample, lambda found: found == labels)


def sample(text: str, name: str, **labels: str) -> float:
    """The value of the sample ``name`` whose labels include ``labels`` (0 when absent)."""
    return _find(text, name, lambda found: all(found.get(k) == v for k, v in labels.items()))


async def scrape(client: TestClient, name: str, **labels: str) -> float:
    """One sample from an in-process humtemp's /metrics."""
    return sample(await (await client.get("/metrics")).text(), name, **labels)
