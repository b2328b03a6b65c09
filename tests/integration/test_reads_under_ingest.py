"""Invariant 7 (issue 13's reproductions): reads at scale never disturb ingestion.

A real humtemp process on three real shards; labs are loaded straight into Redis in
the real layout. While readers pull whole buckets, a writer posts at ~100/s. Every
write must answer 200 and be counted exactly, /readyz must never fail, and no command
humtemp sends may take 20 ms or more (SLOWLOG with a 20 ms threshold stays empty).

SLOWLOG times commands by the wall clock. In production Redis has its own cores; here
the shards share two cores with humtemp, the test's clients and other jobs, so they run
at a higher CPU priority: the log then measures a command's work, not how long the
kernel left Redis waiting behind the test's own threads.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import requests

from bench.labs import aggregate_of, lab_ids, spread_labs
from humtemp.config import load_settings
from humtemp.model import Buckets
from tests.conftest import now, obs
from tests.support.buckets import mid_bucket_iso
from tests.support.http import HumtempProcess
from tests.support.redis_server import RedisServer

SLOW_MICROSECONDS = 20_000
WRITER_LABS = [f"writer-{i:02d}" for i in range(20)]


@dataclass
class Outcome:
    writes: Counter[int] = field(default_factory=Counter)
    acked: Counter[str] = field(default_factory=Counter)
    write_seconds: list[float] = field(default_factory=list)
    ready: Counter[int] = field(default_factory=Counter)
    reads: Counter[int] = field(default_factory=Counter)
    checked: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _start(tmp_path: Path, shards: list[RedisServer], labs: int) -> tuple[HumtempProcess, int]:
    """humtemp on the shards, with ``labs`` labs already in the current bucket."""
    offset = mid_bucket_iso()
    env = {"HUMTEMP_REDIS_URLS": ",".join(s.spec for s in shards),
           "HUMTEMP_BUCKET_OFFSET": offset}
    settings = load_settings(env)
    buckets = Buckets(settings.bucket_offset, settings.bucket_duration, settings.bucket_retention)
    bucket = buckets.start(now())
    spread_labs({s.name: s.client() for s in shards}, lab_ids(labs), bucket,
                buckets.expire_at(bucket), aggregate_of(21.0, 45.0))
    for shard in shards:
        assert shard.proc is not None
        os.setpriority(os.PRIO_PROCESS, shard.proc.pid, -10)
        client = shard.client()
        client.config_set("slowlog-log-slower-than", SLOW_MICROSECONDS)
        client.slowlog_reset()
    return HumtempProcess(env, tmp_path).wait_ready(), bucket


def _run(server: HumtempProcess, seconds: float, readers: list[threading.Thread],
         out: Outcome, stop: threading.Event) -> None:
    """The writer and the readiness watcher, alongside ``readers``, for ``seconds``."""
    def writer() -> None:
        session = requests.Session()
        i = 0
        while not stop.is_set():
            lab = WRITER_LABS[i % len(WRITER_LABS)]
            started = time.perf_counter()
            resp = session.post(server.base + "/observation", json=obs(lab), timeout=30)
            out.write_seconds.append(time.perf_counter() - started)
            out.writes[resp.status_code] += 1
            if resp.status_code == 200:
                out.acked[lab] += 1
            i += 1
            time.sleep(0.01)

    def watcher() -> None:
        session = requests.Session()
        while not stop.is_set():
            out.ready[session.get(server.base + "/readyz", timeout=30).status_code] += 1
            time.sleep(0.05)

    threads = [threading.Thread(target=writer), threading.Thread(target=watcher), *readers]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(timeout=120)


def _assert_ingestion_undisturbed(server: HumtempProcess, shards: list[RedisServer],
                                  out: Outcome) -> None:
    assert out.errors == []
    assert set(out.writes) == {200}, out.writes
    assert sum(out.writes.values()) >= 100
    assert set(out.ready) == {200}, out.ready
    for lab, acked in out.acked.items():
        one = requests.get(server.base + "/summary/lab",
                           params={"lab_id": lab, "offset": 0}, timeout=30).json()
        assert one["count"] == acked, (lab, one["count"], acked)
    for shard in shards:
        slow = shard.client().slowlog_get(128)
        assert slow == [], [(e["command"][:60], e["duration"]) for e in slow]
    assert "marked down" not in server.log.read_text()
    # Server side, where the test's own threads can't blur it: the loop was never held
    # long (measured here: at most 10-25 ms; the bound leaves room for a machine shared
    # with other jobs), far below the 1.5 s shard timeout that makes a write "unknown".
    metrics = requests.get(server.base + "/metrics", timeout=30).text
    assert _all_within(metrics, "humtemp_event_loop_lag_seconds", "0.5")
    assert _all_within(metrics, "humtemp_http_request_duration_seconds",
                       "0.5", 'route="/observation"')


def _all_within(metrics: str, name: str, le: str, labels: str = "") -> bool:
    """Every observation of histogram ``name`` (lines matching ``labels``) <= ``le``."""
    lines = [line for line in metrics.splitlines()
             if line.startswith(name + "_bucket") and labels in line]
    within = sum(float(x.rsplit(" ", 1)[1]) for x in lines if f'le="{le}"' in x)
    total = sum(float(x.rsplit(" ", 1)[1]) for x in lines if 'le="+Inf"' in x)
    return total > 0 and within == total


def test_twenty_concurrent_detail_reads_leave_writes_and_readiness_alone(
    tmp_path: Path, clean_shards: list[RedisServer]
) -> None:
    server, _ = _start(tmp_path, clean_shards, 6_000)
    out, stop = Outcome(), threading.Event()

    def burst() -> None:
        """Bursts of 20 concurrent reads every 0.5 s, distinct pages so none are shared."""
        n = 0
        while not stop.is_set():
            def one(limit: int) -> None:
                resp = requests.get(server.base + "/summary/detail",
                                    params={"offset": 0, "limit": limit}, timeout=60)
                out.reads[resp.status_code] += 1
                labs = resp.content.count(b'"lab_id"')  # cheap: the client's CPU is shared
                if b'"partial":false' not in resp.content or labs != limit:
                    out.errors.append(f"detail limit={limit}: {labs} labs")
            group = [threading.Thread(target=one, args=(4_000 + n * 20 + k,)) for k in range(20)]
            for thread in group:
                thread.start()
            for thread in group:
                thread.join()
            n += 1
            time.sleep(0.5)

    try:
        _run(server, 6.0, [threading.Thread(target=burst)], out, stop)
        assert out.reads[200] >= 40 and set(out.reads) == {200}, out.reads
        _assert_ingestion_undisturbed(server, clean_shards, out)
    finally:
        assert server.terminate() == 0


def test_150k_labs_pulled_by_16_readers_leave_writes_and_readiness_alone(
    tmp_path: Path, clean_shards: list[RedisServer]
) -> None:
    labs = 150_000
    server, _ = _start(tmp_path, clean_shards, labs)
    out, stop = Outcome(), threading.Event()

    def puller() -> None:
        session = requests.Session()
        while not stop.is_set():
            resp = session.get(server.base + "/summary", params={"offset": 0}, timeout=60)
            out.reads[resp.status_code] += 1
            if "X-Humtemp-Partial" in resp.headers:
                out.errors.append("partial summary")

    def checker() -> None:
        """Parses every answer: all preloaded labs plus the writer's, sorted, once each."""
        session = requests.Session()
        while not stop.is_set():
            resp = session.get(server.base + "/summary", params={"offset": 0}, timeout=60)
            body = msgspec.json.decode(resp.content)  # json.loads would hold the GIL longer
            ids = [item["lab_id"] for item in body]
            out.checked.append(len(ids))
            if ids != sorted(set(ids)) or len(ids) < labs:
                out.errors.append(f"summary of {len(ids)} labs, sorted={ids == sorted(ids)}")

    readers = [threading.Thread(target=puller) for _ in range(16)]
    try:
        _run(server, 8.0, [*readers, threading.Thread(target=checker)], out, stop)
        assert set(out.reads) == {200}, out.reads
        assert out.checked and all(labs <= n <= labs + len(WRITER_LABS) for n in out.checked)
        _assert_ingestion_undisturbed(server, clean_shards, out)
        peak = _peak_rss_mib(server)
        assert peak < 200, f"humtemp peaked at {peak:.0f} MiB"
    finally:
        assert server.terminate() == 0


def _peak_rss_mib(server: HumtempProcess) -> float:
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")
