"""Embedded shards end with humtemp however it ends, and never two run on one data dir."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import redis
import requests

from humtemp import embedded
from humtemp.embedded import redis_server_binary, stop_leftovers
from tests.conftest import now, obs
from tests.support.buckets import mid_bucket_env
from tests.support.http import HumtempProcess
from tests.support.waiting import wait_until

SHARDS = 2  # the embedded default


def _redis_servers_on(data_dir: Path) -> list[int]:
    """Counted with psutil, not with humtemp's own /proc scan: the test must not trust
    the code it checks."""
    pids = []
    for proc in psutil.process_iter(["name", "cwd"]):
        cwd = proc.info["cwd"]
        if proc.info["name"] == "redis-server" and cwd and Path(cwd).parent == data_dir:
            pids.append(proc.pid)
    return pids


def _post(server: HumtempProcess, lab: str, count: int) -> None:
    for i in range(count):
        r = requests.post(server.base + "/observation", json=obs(lab, now() - 5, 10.0 + i, 50.0),
                          timeout=5)
        assert r.status_code == 200, r.text


def _count(server: HumtempProcess, lab: str) -> int:
    body = requests.get(server.base + "/summary/lab", params={"lab_id": lab, "offset": 0},
                        timeout=5).json()
    return int(body["count"])


@pytest.mark.parametrize(
    ("sig", "workers"),
    [(signal.SIGKILL, "1"), (signal.SIGHUP, "1"), (signal.SIGKILL, "2")],
    ids=["sigkill", "sighup", "sigkill-2-workers"],
)
def test_shards_die_with_humtemp_and_a_restart_runs_exactly_its_own_on_intact_data(
    tmp_path: Path, sig: signal.Signals, workers: str
) -> None:
    env = mid_bucket_env()
    data_dir = (tmp_path / "humtemp-data").resolve()
    server = HumtempProcess(env, tmp_path, ("--workers", workers)).wait_ready()
    try:
        assert len(_redis_servers_on(data_dir)) == SHARDS
        children = psutil.Process(server.proc.pid).children()
        _post(server, "crash", 3)
        server.proc.send_signal(sig)
        assert server.proc.wait(timeout=10) == -sig  # died without running any cleanup
    finally:
        server.kill()
    wait_until(lambda: not _redis_servers_on(data_dir), what="no redis-server on the data dir")
    # workers too: none is left holding the port
    wait_until(lambda: not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE
                               for c in children), what="no worker left")
    again = HumtempProcess(env, tmp_path, ("--workers", workers)).wait_ready()
    try:
        assert len(_redis_servers_on(data_dir)) == SHARDS
        assert _count(again, "crash") == 3
        assert "leftover" not in again.log.read_text()
    finally:
        assert again.terminate() == 0
    wait_until(lambda: not _redis_servers_on(data_dir), what="no redis-server on the data dir")


def test_a_start_stops_leftover_shards_and_says_which(tmp_path: Path) -> None:
    """A redis-server still running on the data dir (as an older humtemp could leave
    behind) is stopped with SIGTERM before the shards start, and named in the log."""
    env = mid_bucket_env()
    data_dir = (tmp_path / "humtemp-data").resolve()
    first = HumtempProcess(env, tmp_path).wait_ready()
    try:
        _post(first, "left", 2)
    finally:
        assert first.terminate() == 0
    leftover = subprocess.Popen(
        [redis_server_binary(), str(data_dir / "shard-0" / "redis.conf")],
        start_new_session=True, stdin=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(unix_socket_path=_socket_of(data_dir / "shard-0"))
        wait_until(lambda: _answers(client), what="the leftover redis-server answers")
        server = HumtempProcess(env, tmp_path).wait_ready()
        try:
            assert leftover.wait(timeout=15) == 0  # SIGTERM: a clean shutdown
            assert len(_redis_servers_on(data_dir)) == SHARDS
            assert leftover.pid not in _redis_servers_on(data_dir)
            assert _count(server, "left") == 2
            log = server.log.read_text()
            assert f"stopping leftover redis-server pid {leftover.pid}" in log
        finally:
            assert server.terminate() == 0
    finally:
        if leftover.poll() is None:
            leftover.kill()
        leftover.wait()


def _socket_of(shard_dir: Path) -> str:
    conf = (shard_dir / "redis.conf").read_text()
    return next(line.split()[1] for line in conf.splitlines() if line.startswith("unixsocket "))


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def test_a_leftover_that_ignores_sigterm_is_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SIGKILL fallback, with a stand-in that looks like a redis-server to /proc
    (its name and working directory) but ignores SIGTERM."""
    shard_dir = tmp_path / "shard-0"
    shard_dir.mkdir()
    fake = tmp_path / "bin" / "redis-server"
    fake.parent.mkdir()
    fake.symlink_to(sys.executable)
    stubborn = subprocess.Popen(
        [str(fake), "-c", "import signal, time\n"
         "signal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\n"
         "time.sleep(60)"],
        cwd=shard_dir, stdout=subprocess.PIPE,
    )
    try:
        assert stubborn.stdout is not None and stubborn.stdout.readline() == b"ready\n"
        monkeypatch.setattr(embedded, "LEFTOVER_TERM_TIMEOUT", 0.3)
        assert stop_leftovers(tmp_path) == [stubborn.pid]
        assert stubborn.wait(timeout=5) == -signal.SIGKILL
    finally:
        if stubborn.poll() is None:
            os.kill(stubborn.pid, signal.SIGKILL)
        stubborn.wait()
