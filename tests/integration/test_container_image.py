"""The container image: hadolint clean, builds offline with buildah, serves against real Redis.

No registry is reachable: the base image is a local Debian bookworm made by mmdebstrap
(cached in ~/.cache/humtemp, or $HUMTEMP_CACHE_DIR; CI starts cold), the wheels are built
on the host, the build runs with --network none --pull-never, and podman runs the image on
the host network against a redis-server this test starts on a free port.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.integration import container_build as cb
from tests.support.buckets import mid_bucket_iso
from tests.support.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "helm" / "humtemp" / "files" / "smoke_test.py"
IMAGE = "localhost/humtemp:ci"

pytestmark = pytest.mark.timeout(600)


def http(url: str, body: dict | None = None, timeout: float = 5) -> tuple[int, object]:
    """GET or POST JSON; (status, decoded body)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[cb.Podman]:
    """Private podman/buildah storage and config; removed afterwards."""
    engine = cb.Podman(tmp_path_factory.mktemp("containers"))
    yield engine
    engine.cleanup()


@pytest.fixture(scope="module")
def image(podman: cb.Podman, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Build the image from the repository offline; returns `podman image inspect` data."""
    started = time.monotonic()
    base = cb.import_base_image(podman, tmp_path_factory.mktemp("base"))
    t_base = time.monotonic() - started
    ctx = cb.build_context(ROOT, tmp_path_factory.mktemp("context"))
    cb.build_wheels(ROOT, ctx / "wheels", podman, base)
    t_wheels = time.monotonic() - started - t_base
    podman.build(ctx, IMAGE, base)
    t_total = time.monotonic() - started
    print(f"\nimage timings: base {t_base:.1f}s, wheels {t_wheels:.1f}s, total {t_total:.1f}s")
    return podman.inspect(IMAGE)


@pytest.fixture(scope="module")
def redis_shard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real redis-server (AOF everysec, like the chart's shards) on a free port."""
    server = RedisServer(tmp_path_factory.mktemp("redis"), "image-shard").start()
    yield server.port
    server.stop()


@pytest.fixture(scope="module")
def container(podman: cb.Podman, image: dict, redis_shard: int) -> Iterator[tuple[str, str]]:
    """The image running as it would in the chart: read-only root, /tmp tmpfs, no caps."""
    port = free_port()
    name = f"humtemp-ci-{os.getpid()}"
    podman.run(
        "run", "-d", "--name", name, "--network", "host", "--pull", "never",
        "--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp:rw,size=64m",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "-e", f"HUMTEMP_REDIS_URLS=shard-a=redis://127.0.0.1:{redis_shard}/0",
        "-e", "HUMTEMP_SHUTDOWN_TIMEOUT=5",
        # "now" mid-bucket: the post (now-10) and the read (offset 0) share a bucket.
        "-e", f"HUMTEMP_BUCKET_OFFSET={mid_bucket_iso()}",
        IMAGE, "serve", "--host", "127.0.0.1", "--port", str(port),
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if http(base + "/healthz", timeout=1)[0] == 200:
                break
        except OSError:
            pass
        state = podman.inspect(name)["State"]
        assert state["Running"], podman.logs(name)
        assert time.monotonic() < deadline, podman.logs(name)
        time.sleep(0.2)
    yield name, base
    podman.run("rm", "-f", "-t", "0", name, check=False)


def test_dockerfile_is_hadolint_clean() -> None:
    res = subprocess.run(
        ["hadolint", "--failure-threshold", "info", str(ROOT / "Dockerfile")],
        capture_output=True, text=True,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    text = (ROOT / "Dockerfile").read_text()
    assert "ARG BASE=python:3.12-slim" in text and "FROM ${BASE}" in text
    assert text.count("FROM ") >= 2, "multi-stage build expected"


def test_image_metadata(image: dict) -> None:
    config = image["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["humtemp"]
    assert config["Cmd"] == ["serve", "--host", "0.0.0.0", "--port", "8000"]
    assert "8000/tcp" in config["ExposedPorts"]
    print(f"\nimage size: {image['Size'] / 1e6:.0f} MB")


def test_image_has_sleep_for_the_prestop_hook(podman: cb.Podman, image: dict) -> None:
    out = podman.run("run", "--rm", "--network", "none", "--pull", "never",
                     "--entrypoint", "sleep", IMAGE, "0")
    assert out.returncode == 0


def test_serves_and_round_trips(container: tuple[str, str], redis_shard: int) -> None:
    _, base = container
    status, body = http(base + "/healthz")
    assert (status, body) == (200, {"status": "ok"})
    status, ready = http(base + "/readyz")
    assert status == 200 and ready["live_shards"] == 1, ready
    lab = f"img.{time.time_ns()}"
    obs = {"lab_id": lab, "timestamp": int(time.time()) - 10, "temp": 22.25, "humidity": 41.5}
    assert http(base + "/observation", obs) == (200, None)
    status, summary = http(f"{base}/summary/lab?lab_id={lab}&offset=0")
    assert status == 200 and summary["count"] == 1, summary
    assert summary["avg_temp"] == 22.25 and summary["avg_humidity"] == 41.5
    # It really is in the shard the container was pointed at.
    shard = redis.Redis(port=redis_shard)
    assert [key for key in shard.keys("humtemp:b:*") if shard.hexists(key, lab)]


def test_helm_test_script_passes_inside_the_image(
    podman: cb.Podman, container: tuple[str, str]
) -> None:
    """The chart's `helm test` Pod runs this script with the image's python3."""
    name, base = container
    res = podman.run("exec", "-e", f"HUMTEMP_URL={base}", name,
                     "python3", "-c", SMOKE.read_text(), check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "stored and read back" in res.stdout


def test_sigterm_drains_and_exits_cleanly(podman: cb.Podman, container: tuple[str, str]) -> None:
    """Last: `podman stop` is what the kubelet does after the preStop sleep."""
    name, _ = container
    started = time.monotonic()
    podman.run("stop", "-t", "20", name)
    assert time.monotonic() - started < 15
    state = podman.inspect(name)["State"]
    assert state["ExitCode"] == 0, podman.logs(name)


def test_no_stray_wheels_in_the_runtime_image(podman: cb.Podman, image: dict) -> None:
    res = podman.run("run", "--rm", "--network", "none", "--pull", "never", "--entrypoint",
                     "python3", IMAGE, "-c",
                     "import os, humtemp; print(os.path.exists('/src'), humtemp.__file__)")
    exists, path = res.stdout.split()
    assert exists == "False" and path.startswith("/opt/venv/")


def test_tooling_present() -> None:
    for tool in ("podman", "buildah", "mmdebstrap", "hadolint"):
        assert shutil.which(tool), f"{tool} missing (scripts/test installs it)"
