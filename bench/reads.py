"""Reads under ingest: what whole-bucket reads cost the writers, Redis and memory.

For each lab count the shards are filled directly in humtemp's layout (bench.labs); one
``/summary`` is read alone (wall time, humtemp CPU, Redis time); the writer runs alone for
a third of ``duration`` (its baseline on this machine); then for ``duration`` seconds one
writer posts observations back to back while ``readers`` clients pull
``GET /summary?offset=0`` and a watcher polls ``/readyz``. Reported: writer p50/p99/max and
its non-200 answers, readiness failures, reads and response bytes, Redis time per read
fan-out and the slowest read command (SLOWLOG at threshold 0, client ``humtemp-read``),
the slowest command of any client, humtemp's peak RSS and its event-loop lag.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import urllib.request
from pathlib import Path

import aiohttp

from bench.labs import aggregate_of, lab_ids, spread_labs
from bench.procs import Service
from humtemp.localredis import LocalRedis as Shard
from humtemp.procstat import cpu_seconds

SLOWLOG_LEN = 200_000
READ_CLIENT = b"humtemp-read"


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _peak_rss_mib(service: Service) -> float:
    """Peak resident memory (VmHWM) of the humtemp process, in MiB."""
    for line in Path(f"/proc/{service.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name))


async def _load(url: str, readers: int, duration: float) -> dict:
    """The writer, the readers and the readiness watcher, together for ``duration`` s."""
    writes: list[float] = []
    statuses: dict[int, int] = {}
    reads: list[float] = []
    body_bytes: list[int] = []
    not_ready = 0
    stop = time.monotonic() + duration
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async def writer() -> None:
            i = 0
            while time.monotonic() < stop:
                started = time.perf_counter()
                obs = {"lab_id": f"w{i % 100:03d}", "timestamp": int(time.time()),
                       "temp": 20.0, "humidity": 50.0}
                async with session.post(url + "/observation", json=obs) as resp:
                    await resp.read()
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1
                writes.append(time.perf_counter() - started)
                i += 1
                await asyncio.sleep(0.005)

        async def reader() -> None:
            while time.monotonic() < stop:
                started = time.perf_counter()
                size = 0
                async with session.get(url + "/summary?offset=0") as resp:
                    async for chunk in resp.content.iter_any():
                        size += len(chunk)
                reads.append(time.perf_counter() - started)
                body_bytes.append(size)

        async def watcher() -> None:
            nonlocal not_ready
            while time.monotonic() < stop:
                async with session.get(url + "/readyz") as resp:
                    not_ready += resp.status != 200
                await asyncio.sleep(0.1)

        await asyncio.gather(writer(), watcher(), *(reader() for _ in range(readers)))
    return {
        "writes": len(writes),
        "write_statuses": {str(k): v for k, v in sorted(statuses.items())},
        "writes_503": statuses.get(503, 0),
        "write_p50_ms": round(1000 * _percentile(writes, 0.5), 2),
        "write_p99_ms": round(1000 * _percentile(writes, 0.99), 2),
        "write_max_ms": round(1000 * max(writes, default=0.0), 2),
        "readyz_failures": not_ready,
        "reads": len(reads),
        "read_p50_s": round(statistics.median(reads), 3) if reads else None,
        "read_max_s": round(max(reads, default=0.0), 3),
        "response_bytes": max(body_bytes, default=0),
    }


def _redis_costs(shards: list[Shard]) -> dict:
    """Summed and slowest read command time, and the slowest command of anyone."""
    read_us, read_cmds, read_max, any_max = 0, 0, 0, 0
    for shard in shards:
        for entry in shard.client().slowlog_get(SLOWLOG_LEN):
            any_max = max(any_max, entry["duration"])
            if entry.get("client_name") == READ_CLIENT:
                read_us += entry["duration"]
                read_cmds += 1
                read_max = max(read_max, entry["duration"])
    return {"read_commands": read_cmds, "read_redis_ms_total": round(read_us / 1000, 1),
            "read_command_max_ms": round(read_max / 1000, 2),
            "any_command_max_ms": round(any_max / 1000, 2)}


def _solo_read(humtemp: Service, shards: list[Shard]) -> dict:
    """One ``/summary`` with nothing else running, right after loading (nothing cached):
    its wall time, humtemp CPU and Redis time."""
    for shard in shards:
        shard.client().slowlog_reset()
    cpu = sum(cpu_seconds(pid) for pid in humtemp.pids())
    started = time.perf_counter()
    with urllib.request.urlopen(humtemp.url + "/summary?offset=0", timeout=300) as resp:
        size = len(resp.read())
    wall = time.perf_counter() - started
    cpu = sum(cpu_seconds(pid) for pid in humtemp.pids()) - cpu
    costs = _redis_costs(shards)
    return {"solo_read_s": round(wall, 2), "solo_read_humtemp_cpu_s": round(cpu, 2),
            "solo_read_redis_ms": costs["read_redis_ms_total"],
            "solo_read_pages": costs["read_commands"],
            "solo_read_slowest_page_ms": costs["read_command_max_ms"], "solo_read_bytes": size}


def reads_phase(humtemp: Service, shards: list[Shard], labs_list: list[int], readers: int,
                duration: float, bucket_duration: int) -> dict:
    """The scenario for each lab count (shards are emptied first)."""
    by_labs = {}
    for labs in labs_list:
        for shard in shards:
            shard.client().flushall()
        now = int(time.time())
        bucket = now - now % bucket_duration
        loaded = spread_labs({s.name: s.client() for s in shards}, lab_ids(labs), bucket,
                             bucket + 2 * bucket_duration, aggregate_of(20.0, 50.0))
        for shard in shards:
            shard.client().config_set("slowlog-max-len", SLOWLOG_LEN)
            shard.client().config_set("slowlog-log-slower-than", 0)
        solo = _solo_read(humtemp, shards)
        time.sleep(1.1)  # past the read cache: the load below starts with a fresh fan-out
        alone = asyncio.run(_load(humtemp.url, 0, max(1.0, duration / 3)))
        for shard in shards:
            shard.client().slowlog_reset()
        before = asyncio.run(_metrics(humtemp.url))
        load = asyncio.run(_load(humtemp.url, readers, duration))
        after = asyncio.run(_metrics(humtemp.url))
        costs = _redis_costs(shards)
        for shard in shards:
            shard.client().config_set("slowlog-log-slower-than", 10_000)
        fanouts = (_metric(after, 'humtemp_bucket_reads_total{source="shards"}')
                   - _metric(before, 'humtemp_bucket_reads_total{source="shards"}'))
        lag_count = (_metric(after, "humtemp_event_loop_lag_seconds_count")
                     - _metric(before, "humtemp_event_loop_lag_seconds_count"))
        lag_sum = (_metric(after, "humtemp_event_loop_lag_seconds_sum")
                   - _metric(before, "humtemp_event_loop_lag_seconds_sum"))
        by_labs[str(labs)] = {
            "labs": labs, "labs_per_shard": loaded, "readers": readers, "seconds": duration,
            **solo,
            "writer_alone_p50_ms": alone["write_p50_ms"],
            "writer_alone_p99_ms": alone["write_p99_ms"],
            **load, "fanouts": int(fanouts), **costs,
            "redis_ms_per_fanout": round(costs["read_redis_ms_total"] / fanouts, 1)
            if fanouts else None,
            "loop_lag_mean_ms": round(1000 * lag_sum / lag_count, 2) if lag_count else None,
            "humtemp_peak_rss_mib": _peak_rss_mib(humtemp),
        }
    return {"by_labs": by_labs}


async def _metrics(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as resp:
        return await resp.text()
