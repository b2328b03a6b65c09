"""Prometheus metrics: definitions, the /metrics payload, and a per-process CPU/RSS view.

With ``--workers N`` every worker writes to files in one shared directory and any
worker's /metrics answers for all of them together (prometheus-client multiprocess
mode; the supervisor passes each worker the directory, see humtemp.server).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

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
from humtemp.procstat import proc_stat

# *_created series double the exposition and no dashboard uses them.
disable_created_metrics()

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
SHARD_RESETS = Counter(
    "humtemp_shard_resets",
    "Times a shard was found reset (its identity record vanished): its data was lost.",
    ["shard"],
)
SHARD_MEMORY_RATIO = Gauge(
    "humtemp_shard_memory_used_ratio",
    "used_memory / maxmemory of a shard (0 while it has no maxmemory).",
    ["shard"],
    multiprocess_mode="livemax",
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
class WorkerProcessCollector(Collector):
    """process_cpu_seconds_total and process_resident_memory_bytes over all workers.

    The stock process collector only sees the process that serves the scrape,
    which with several workers is a random one of them.
    """

    def __init__(self, directory: str, supervisor_pid: int | None) -> None:
        self.directory = directory
        self.supervisor_pid = supervisor_pid

    def _pids(self) -> set[int]:
        pids = {os.getpid()}
        if self.supervisor_pid is not None:
            pids.add(self.supervisor_pid)
        for name in os.listdir(self.directory):
            match = _DB_FILE.search(name)
            if match:
                pids.add(int(match.group(1)))
        return pids

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        cpu_total, rss_total = 0.0, 0
        for pid in self._pids():
            usage = proc_stat(pid)
            if usage:
                cpu_total += usage.cpu_seconds
                rss_total += usage.resident_bytes
        yield CounterMetricFamily(
            "process_cpu_seconds", "User and system CPU seconds of all humtemp processes.",
            value=cpu_total,
        )
        yield GaugeMetricFamily(
            "process_resident_memory_bytes", "Resident memory of all humtemp processes.",
            value=rss_total,
        )


class Exposition:
    """The /metrics answer: this process's own metrics, or, given the directory that the
    workers of one supervisor share, all of theirs together (plus the CPU and memory of
    the supervisor and every worker)."""

    def __init__(self, directory: str | None = None, supervisor_pid: int | None = None
                 ) -> None:
        self.registry = REGISTRY
        if directory is not None:
            from prometheus_client import multiprocess

            self.registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(self.registry, path=directory)
            self.registry.register(WorkerProcessCollector(directory, supervisor_pid))

    def render(self) -> tuple[bytes, str]:
        """The body and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def mark_worker_dead(pid: int, directory: str) -> None:
    """Drop a finished worker's live gauges (pending queue) from the shared files."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, directory)
