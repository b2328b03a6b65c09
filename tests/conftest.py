"""Shared fixtures: real redis-server shards and an in-process humtemp."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from humtemp.app import create_app
from humtemp.config import Settings, load_settings
from tests.support.buckets import mid_bucket_offset
from tests.support.redis_server import RedisServer

# Test tiers, in one central map keyed by module name or "module::test function" (so a new
# test file needs no edit to run in the inner loop, and files added concurrently merge
# without conflicts). What is not listed gets no marker and runs in the inner loop.
# "slow" (over a few seconds each) is left out of `python -m pytest -m "not slow"`; the
# other markers select one kind, e.g. `-m helm`. Markers are declared in pyproject.toml.
TIERS: dict[str, tuple[str, ...]] = {
    "test_container_image": ("slow", "container"),
    "test_monitoring_live": ("slow", "prometheus"),
    "test_bench_smoke": ("slow", "bench"),
    "test_loadtest_smoke": ("slow", "loadtest"),
    "test_loadtest_shapes": ("slow", "loadtest"),
    "test_loadtest_verify": ("loadtest",),
    "test_loadtest_faults": ("slow", "loadtest"),
    "test_reads_under_ingest": ("slow", "subprocess"),
    "test_embedded_lifetime": ("slow", "subprocess"),
    "test_extras": ("subprocess",),
    "test_processes": ("subprocess",),
    "test_helm_chart": ("helm",),
    "test_kustomize": ("helm",),
    "test_monitoring_static": ("prometheus",),
    "test_loadtest_verify::test_distributed_run_gathers_all_workers_and_crosses_buckets":
        ("slow",),
    "test_loadtest_verify::test_distributed_run_exits_nonzero_when_service_loses_data":
        ("slow",),
    "test_loadtest_verify::test_each_test_of_one_locust_process_gets_its_own_prefix_and_verifies":
        ("slow",),
    "test_faults::test_schemathesis_finds_no_server_error": ("slow", "subprocess"),
    "test_faults::test_kill9_one_of_three_shards_under_load_loses_nothing_acknowledged":
        ("subprocess",),
    # a few seconds each: they wait out a timeout or drain under load on purpose
    "test_processes::test_sigterm_under_load_stores_every_acknowledged_post": ("slow",),
    "test_faults::test_batch_for_a_full_shard_stores_no_part_anywhere": ("slow",),
    "test_guards::test_two_pods_see_one_wipe_once_and_both_name_it": ("slow",),
    "test_client_guards::test_stalled_header_is_closed_within_the_client_timeout": ("slow",),
    "test_client_guards::test_stalled_body_is_answered_408_and_closed": ("slow",),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = getattr(item, "module", None)
        module = module.__name__.rsplit(".", 1)[-1] if module else ""
        function = getattr(item, "originalname", item.name)
        for marker in (*TIERS.get(module, ()), *TIERS.get(f"{module}::{function}", ())):
            item.add_marker(marker)


@pytest.fixture(scope="session")
def redis_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("redis")


@pytest.fixture(scope="module")
def shards(redis_root: Path, request: pytest.FixtureRequest) -> Iterator[list[RedisServer]]:
    """Three real redis-server shards, shared by a module, emptied before each test."""
    prefix = request.module.__name__.rsplit(".", 1)[-1]
    servers = [RedisServer(redis_root, f"{prefix}-shard{i}").start() for i in range(3)]
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture
def clean_shards(shards: list[RedisServer]) -> list[RedisServer]:
    for server in shards:
        if server.proc is None or server.proc.poll() is not None:
            server.start()
        server.client().flushall()
    return shards


def settings_for(servers: list[RedisServer], **overrides: Any) -> Settings:
    """Settings for these shards, with "now" mid-bucket (tests.support.buckets).

    The summary cache is off unless a test asks for it: tests check that what was just
    acknowledged is read back, which the cache may lag by up to
    HUMTEMP_READ_CACHE_SECONDS (its own tests, in test_reads.py, turn it on)."""
    env = {"HUMTEMP_REDIS_URLS": ",".join(s.spec for s in servers)}
    base = load_settings(env)
    duration = overrides.get("bucket_duration", base.bucket_duration)
    overrides.setdefault("bucket_offset", mid_bucket_offset(duration))
    overrides.setdefault("read_cache_seconds", 0.0)
    return dataclasses.replace(base, **overrides)


ClientFactory = Callable[..., Any]


@pytest.fixture
async def make_client(clean_shards: list[RedisServer]) -> AsyncIterator[ClientFactory]:
    """Build an in-process humtemp on the clean shards: ``await make_client(**settings)``."""
    clients: list[TestClient] = []

    async def factory(servers: list[RedisServer] | None = None, **overrides: Any) -> TestClient:
        settings = settings_for(servers or clean_shards, **overrides)
        client = TestClient(TestServer(create_app(settings)))
        await client.start_server()
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.close()


@pytest.fixture
async def client(make_client: ClientFactory) -> TestClient:
    return await make_client()


def now() -> int:
    return int(time.time())


def obs(lab: str = "lab01", ts: int | None = None, temp: float = 20.0, hum: float = 50.0
        ) -> dict[str, Any]:
    return {"lab_id": lab, "timestamp": now() if ts is None else ts, "temp": temp, "humidity": hum}


def stored_labs(server: RedisServer, prefix: str = "humtemp:") -> list[str]:
    """Lab ids holding an aggregate on this shard, over all buckets (a hash per bucket)."""
    client = server.client()
    return [lab.decode() for key in client.keys(f"{prefix}b:*") for lab in client.hkeys(key)]


def holds_no_data(servers: list[RedisServer], prefix: str = "humtemp:") -> bool:
    """No bucket on any shard (each still holds its identity record: humtemp.guards)."""
    return not any(s.client().keys(f"{prefix}b:*") for s in servers)
