"""The one /proc/<pid>/stat parser, checked against this very process."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from humtemp.procstat import children, cpu_seconds, descendants, proc_stat, tree_cpu_seconds


def test_stat_of_this_process() -> None:
    stat = proc_stat(os.getpid())
    assert stat is not None
    assert stat.parent == os.getppid()
    assert stat.resident_bytes > 1 << 20
    before = stat.cpu_seconds
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:  # burn CPU the kernel will account for
        pass
    assert cpu_seconds(os.getpid()) > before


def test_a_gone_process_has_no_stat_and_no_cpu() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert proc_stat(child.pid) is None
    assert cpu_seconds(child.pid) == 0.0


def test_children_and_descendants_find_a_grandchild() -> None:
    sleeper = "import time; time.sleep(30)"
    code = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {sleeper!r}])"
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 10
        while len(descendants(child.pid)) < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        grandchildren = descendants(child.pid)
        assert len(grandchildren) == 1
        assert child.pid in children(os.getpid())
        assert proc_stat(grandchildren[0]).parent == child.pid  # type: ignore[union-attr]
        assert tree_cpu_seconds(child.pid) >= cpu_seconds(child.pid)
    finally:
        for pid in descendants(child.pid):
            os.kill(pid, 9)
        child.kill()
        child.wait()
