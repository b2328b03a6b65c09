"""Prometheus metrics: definitions, the /metrics payload, and a per-process CPU/RSS view.

With ``--workers N`` the master sets ``PROMETHEUS_MULTIPROC_DIR`` before the workers
import this module, so every worker writes to shared files and any worker's
/metrics answers for all of them together (prometheus-client multiprocess mode).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from humtemp import __version__

# *_created series double the exposition and no dashboard uses them.
disable_created_metrics()

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)
SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)

HTTP_REQUESTS = Counter(
    "humtemp_http_requests", "HTTP requests answered.", ["route", "method", "status"]
)
HTTP_DURATION = Histogram(
    "humtemp_http_request_duration_seconds",
    "Time from request start to response, by route.",
    ["route", "method", "status"],
    buckets=LATENCY_BUCKETS,
)
OBSERVATIONS_ACCEPTED = Counter(
    "humtemp_observations_accepted", "Observations acknowledged (stored in Redis)."
)
OBSERVATIONS_REJECTED = Counter(
    "humtemp_observations_rejected", "Observations refused, by reason.", ["reason"]
)
BATCH_SIZE = Histogram(
    "humtemp_batch_size", "Observations per POST /observations request.", buckets=SIZE_BUCKETS
)
SHARD_UP = Gauge(
    "humtemp_shard_up", "1 if the shard answers, 0 while it is marked down.", ["shard"],
    multiprocess_mode="livemin",
)
SHARD_FLUSH_DURATION = Histogram(
    "humtemp_shard_flush_duration_seconds",
    "Time of one group-commit script call to a shard.",
    ["shard"],
    buckets=LATENCY_BUCKETS,
)
SHARD_FLUSH_KEYS = Histogram(
    "humtemp_shard_flush_keys", "(lab, bucket) aggregates written per flush.", ["shard"],
    buckets=SIZE_BUCKETS,
)
SHARD_FLUSH_OBSERVATIONS = Histogram(
    "humtemp_shard_flush_observations", "Observations carried per flush.", ["shard"],
    buckets=SIZE_BUCKETS,
)
SHARD_PENDING = Gauge(
    "humtemp_shard_pending_observations",
    "Observations queued or in flight for a shard, not yet acknowledged.",
    ["shard"],
    multiprocess_mode="livesum",
)
SHARD_ERRORS = Counter(
    "humtemp_shard_errors", "Failed shard operations, by kind.", ["shard", "kind"]
)
SHARD_REROUTES = Counter(
    "humtemp_shard_reroutes",
    "Observations written to another shard because their owner was down.",
    ["shard"],
)
SUMMARY_FANOUT = Histogram(
    "humtemp_read_fanout_duration_seconds",
    "Time to read one bucket from every shard and merge.",
    buckets=LATENCY_BUCKETS,
)
BUCKET_READS = Counter(
    "humtemp_bucket_reads",
    "Whole-bucket reads (/summary, /summary/detail) by where the answer came from: "
    "a fan-out to the shards, shared with an identical read in flight, or the cache.",
    ["source"],
)
EVENT_LOOP_LAG = Histogram(
    "humtemp_event_loop_lag_seconds",
    "How late the event loop woke a task that slept a fixed interval: time the loop was "
    "busy with something else (a long step delays every request and flush).",
    buckets=LATENCY_BUCKETS,
)
BUCKET_LABS = Gauge(
    "humtemp_bucket_labs",
    "Labs in the current bucket on a shard (its lab index, sampled every few seconds).",
    ["shard"],
    multiprocess_mode="max",
)
BUILD_INFO = Gauge(
    "humtemp_build_info", "Always 1; labels carry the version.", ["version"],
    multiprocess_mode="max",
)
BUILD_INFO.labels(version=__version__).set(1)

_DB_FILE = re.compile(r"_(\d+)\.db$")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _proc_usage(pid: int) -> tuple[float, int] | None:
    """(cpu seconds, resident bytes) of one live process, from /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    rss = int(fields[21]) * _PAGE_SIZE
    return cpu, rss


class WorkerProcessCollector(Collector):
    """process_cpu_seconds_total and process_resident_memory_bytes over all workers.

    The stock process collector only sees the process that serves the scrape,
    which with several workers is a random one of them.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def _pids(self) -> set[int]:
        pids = {os.getpid()}
        master = os.environ.get("HUMTEMP_MASTER_PID")
        if master and master.isdigit():
            pids.add(int(master))
        for name in os.listdir(self.directory):
            match = _DB_FILE.search(name)
            if match:
                pids.add(int(match.group(1)))
        return pids

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        cpu_total, rss_total = 0.0, 0
        for pid in self._pids():
            usage = _proc_usage(pid)
            if usage:
                cpu_total += usage[0]
                rss_total += usage[1]
        yield CounterMetricFamily(
            "process_cpu_seconds", "User and system CPU seconds of all humtemp processes.",
            value=cpu_total,
        )
        yield GaugeMetricFamily(
            "process_resident_memory_bytes", "Resident memory of all humtemp processes.",
            value=rss_total,
        )


def _multiprocess_registry(directory: str) -> CollectorRegistry:
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    registry.register(WorkerProcessCollector(directory))
    return registry


def exposition() -> tuple[bytes, str]:
    """The /metrics body and its content type (all workers together)."""
    directory = os.environ.get(MULTIPROC_ENV)
    registry = _multiprocess_registry(directory) if directory else REGISTRY
    return generate_latest(registry), CONTENT_TYPE_LATEST


def mark_worker_dead(pid: int) -> None:
    """Drop a finished worker's live gauges (pending queue) from the shared files."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
