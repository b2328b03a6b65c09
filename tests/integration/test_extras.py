"""The tools without their optional packages: one line naming what is missing and the
command that installs it, a non-zero exit, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def _blocked(tmp_path: Path, *modules: str) -> Path:
    """A directory that, first on PYTHONPATH, makes these modules fail to import as if
    they were not installed (also in the subprocesses the tools start)."""
    blocker = tmp_path / "blocked"
    for module in modules:
        package = blocker / module
        package.mkdir(parents=True)
        (package / "__init__.py").write_text(
            f'raise ModuleNotFoundError("No module named {module!r}", name={module!r})\n')
    return blocker


def _run(args: list[str], tmp_path: Path, blocked: tuple[str, ...] = (),
         path: str | None = None) -> subprocess.CompletedProcess[str]:
    pythonpath = os.pathsep.join([str(_blocked(tmp_path, *blocked)), str(REPO_ROOT)])
    env = {**os.environ, "PYTHONPATH": pythonpath}
    if path is not None:
        env["PATH"] = path
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          cwd=REPO_ROOT, env=env, timeout=60, stdin=subprocess.DEVNULL)


def _assert_one_line(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    output = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 1, output
    assert len(output.splitlines()) == 1, output
    assert "Traceback" not in output
    for needle in needles:
        assert needle in output, output


@pytest.mark.parametrize(
    ("args", "missing", "install"),
    [
        (["loadtest.run", "--run-time", "1s"], "locust", "pip install '.[loadtest]'"),
        (["loadtest.run", "--run-time", "1s"], "matplotlib", "pip install '.[loadtest]'"),
        (["loadtest.capacity", "--kinds", "locust-sensor"], "locust",
         "pip install '.[loadtest]'"),
        (["bench", "--quick"], "matplotlib", "pip install '.[bench]'"),
    ],
    ids=["loadtest-locust", "loadtest-matplotlib", "capacity-locust", "bench-matplotlib"],
)
def test_a_missing_package_ends_the_tool_with_one_line(
    tmp_path: Path, args: list[str], missing: str, install: str
) -> None:
    proc = _run([*args, "--out", str(tmp_path / "out")], tmp_path, blocked=(missing,))
    _assert_one_line(proc, f"'{missing}' is not installed", install)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_bench_help_works_without_its_extra_and_names_it(tmp_path: Path) -> None:
    proc = _run(["bench", "--help"], tmp_path, blocked=("matplotlib",))
    assert proc.returncode == 0, proc.stderr
    assert "pip install '.[bench]'" in proc.stdout


def test_a_missing_program_ends_the_profiler_with_one_line(tmp_path: Path) -> None:
    """PATH with nothing but Python on it: no py-spy (the bench extra), no wrk."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    proc = _run(["bench.profile", "--duration", "1"], tmp_path, path=str(bin_dir))
    _assert_one_line(proc, "'py-spy' is not installed", "pip install '.[bench]'")
