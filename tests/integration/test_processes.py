"""humtemp as a real process: embedded mode, SIGTERM drain, several workers."""

from __future__ import annotations

import contextlib
import re
import threading
import time
from pathlib import Path

import requests

from humtemp.layout import AGGREGATE
from humtemp.procstat import children
from tests.conftest import now, obs
from tests.support.buckets import bucket_key, mid_bucket_env
from tests.support.http import HumtempProcess
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_until


def test_embedded_mode_starts_stops_and_keeps_data(tmp_path: Path) -> None:
    env = mid_bucket_env()
    server = HumtempProcess(env, tmp_path).wait_ready()
    try:
        ready = requests.get(server.base + "/readyz", timeout=5).json()
        assert sorted(ready["shards"]) == ["embedded-0", "embedded-1"]
        ts = now() - 5
        for temp in (10.0, 20.0):
            r = requests.post(server.base + "/observation", json=obs("emb", ts, temp, 50.0),
                              timeout=5)
            assert r.status_code == 200
        log = server.log.read_text()
        assert "embedded mode" in log
    finally:
        assert server.terminate() == 0
    data_dir = tmp_path / "humtemp-data"
    assert sorted(p.name for p in data_dir.iterdir() if p.is_dir()) == ["shard-0", "shard-1"]
    # every redis-server we started is gone
    assert "redis-server" not in _children_of(server.proc.pid)
    again = HumtempProcess(env, tmp_path).wait_ready()
    try:
        body = requests.get(again.base + "/summary/lab",
                            params={"lab_id": "emb", "offset": 0}, timeout=5).json()
        assert body["count"] == 2 and body["avg_temp"] == 15.0
    finally:
        assert again.terminate() == 0


def _children_of(pid: int) -> str:
    """Command names of the live children of ``pid``, space-separated."""
    names = []
    for child in children(pid):
        with contextlib.suppress(OSError):  # it exited meanwhile
            names.append(Path(f"/proc/{child}/comm").read_text().strip())
    return " ".join(names)


def test_sigterm_under_load_stores_every_acknowledged_post(
    tmp_path: Path, clean_shards: list[RedisServer]
) -> None:
    env = {"HUMTEMP_REDIS_URLS": ",".join(s.spec for s in clean_shards), **mid_bucket_env()}
    server = HumtempProcess(env, tmp_path).wait_ready()
    acked: dict[str, int] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def sensor(n: int) -> None:
        session = requests.Session()
        lab = f"drain-{n}"
        while not stop.is_set():
            try:
                r = session.post(server.base + "/observation", json=obs(lab, temp=1.0), timeout=5)
            except requests.RequestException:
                return
            if r.status_code == 200:
                with lock:
                    acked[lab] = acked.get(lab, 0) + 1

    threads = [threading.Thread(target=sensor, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    wait_until(lambda: sum(acked.values()) > 100, what="100 acknowledged posts before SIGTERM")
    assert server.terminate() == 0
    stop.set()
    for t in threads:
        t.join(timeout=10)
    assert sum(acked.values()) > 100
    for lab, count in acked.items():
        key = bucket_key(env, now())
        stored = sum(
            int(AGGREGATE.unpack(raw)[0]) for s in clean_shards
            if (raw := s.client().hget(key, lab)) is not None
        )
        assert stored == count, lab
    assert "shutdown complete" in server.log.read_text()


def test_two_workers_share_the_port_and_aggregate_metrics(
    tmp_path: Path, clean_shards: list[RedisServer]
) -> None:
    env = {"HUMTEMP_REDIS_URLS": ",".join(s.spec for s in clean_shards)}
    server = HumtempProcess(env, tmp_path, ("--workers", "2")).wait_ready()
    try:
        workers = _children_of(server.proc.pid).split()
        assert len([w for w in workers if w.startswith("python")]) >= 2, workers
        for i in range(60):
            session = requests.Session()  # new connection each time: spread by the kernel
            r = session.post(server.base + "/observation", json=obs(f"w{i % 5}"), timeout=5)
            assert r.status_code == 200
            session.close()
        # Each worker folds its counts into the shared files once a second (humtemp.tally):
        # the total must reach exactly 60 within a few folds, and never pass it.
        seen: list[float] = []
        deadline = time.monotonic() + 5
        while not seen or (seen[-1] < 60 and time.monotonic() < deadline):
            metrics = requests.get(server.base + "/metrics", timeout=5).text
            accepted = re.search(r"^humtemp_observations_accepted_total (\S+)$", metrics, re.M)
            assert accepted, metrics
            seen.append(float(accepted.group(1)))
            time.sleep(0.2)
        assert seen[-1] == 60.0 and max(seen) == 60.0, seen
        assert "process_cpu_seconds_total" in metrics
    finally:
        assert server.terminate() == 0
