"""Reading one sample out of a /metrics answer.

The in-process test apps share prometheus-client's process-wide registry, so a counter
holds the sum over every test run so far: assert on the change across an action
(``after - before``), never on the value itself.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def metric_value(exposition: str, sample: str, **labels: str) -> float:
    """The value of ``sample`` (e.g. ``humtemp_shard_reroutes_total``) with exactly these
    labels; 0 if the series does not exist yet (a counter no one has touched)."""
    for family in text_string_to_metric_families(exposition):
        for found in family.samples:
            if found.name == sample and found.labels == labels:
                return found.value
    return 0.0
