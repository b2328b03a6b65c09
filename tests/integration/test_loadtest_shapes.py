"""The step load shape: its arithmetic, and a distributed run that it ends by itself.

A shape-ended run stops the workers *before* the master's test_stop (unlike --run-time,
where the master quits first), so this also covers the other ledger-gathering path.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from loadtest.fake_service import FakeService, serve
from loadtest.workload import step_target  # not loadtest.shapes: importing locust

# here would gevent-monkey-patch the whole pytest process

ROOT = Path(__file__).resolve().parents[2]


def test_step_target_adds_users_per_step_then_ends() -> None:
    assert [step_target(t, 10, 2.0, 3) for t in (0, 1.9, 2.0, 4.5, 5.99, 6.0)] == [
        10, 10, 20, 30, 30, None]
    assert step_target(0, 10, 0, 3) is None


def test_shape_ended_distributed_run_is_verified(tmp_path: Path) -> None:
    fake = FakeService()
    with serve(fake) as url:
        proc = subprocess.run(
            [sys.executable, "-m", "locust", "-f",
             f"{ROOT}/loadtest/locustfile.py,{ROOT}/loadtest/shapes.py", "--headless",
             "--processes", "2", "--host", url, "--stop-timeout", "5", "--only-summary",
             "--ht-sensor-pacing", "0.2", "--ht-step-users", "4", "--ht-step-seconds", "1.5",
             "--ht-steps", "2", "--ht-verify-file", str(tmp_path / "v.json"), "SensorUser"],
            capture_output=True, text=True, timeout=90, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Shape test updating to 8 users" in proc.stderr
    result = json.loads((tmp_path / "v.json").read_text())
    assert result["ok"] and result["acknowledged"] == fake.seen > 20


def test_locustfile_loads_from_a_configmap_style_symlinked_mount(tmp_path: Path) -> None:
    """k8s/loadtest mounts loadtest/ from a ConfigMap: each file a symlink into ..data/."""
    mount = tmp_path / "opt" / "loadtest"
    data = mount / "..2026_01_01_00_00_00.000000001"
    data.mkdir(parents=True)
    (mount / "..data").symlink_to(data.name)
    for src in (ROOT / "loadtest").glob("*.py"):
        (data / src.name).write_bytes(src.read_bytes())
        (mount / src.name).symlink_to(f"..data/{src.name}")
    proc = subprocess.run([sys.executable, "-m", "locust", "-f", str(mount / "locustfile.py"),
                           "--list"], capture_output=True, text=True, timeout=60, check=False,
                          cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {"SensorUser", "GatewayUser", "DashboardUser"} <= set(proc.stdout.split())
