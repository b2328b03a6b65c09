"""What Linux says about a process in ``/proc/<pid>/stat``: parent, CPU time, memory.

The one parser of that file: /metrics sums it over the workers, and the tests,
benchmarks and load tests use it to find a server's children and measure their CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True, slots=True)
class ProcStat:
    pid: int
    parent: int
    cpu_seconds: float
    """user + system time of all the process's threads"""
    resident_bytes: int


def proc_stat(pid: int) -> ProcStat | None:
    """The process's stat line, or None once it is gone (or on a system without /proc)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ")".
    fields = raw[raw.rfind(")") + 2 :].split()
    return ProcStat(
        pid=pid,
        parent=int(fields[1]),
        cpu_seconds=(int(fields[11]) + int(fields[12])) / _CLOCK_TICKS,
        resident_bytes=int(fields[21]) * _PAGE_SIZE,
    )


def cpu_seconds(pid: int) -> float:
    """CPU seconds a process has used so far; 0 if it is gone."""
    stat = proc_stat(pid)
    return stat.cpu_seconds if stat else 0.0


def _children_by_parent() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := proc_stat(int(entry))) is not None:
            children.setdefault(stat.parent, []).append(stat.pid)
    return children


def children(parent: int) -> list[int]:
    """PIDs of the live children of ``parent``."""
    return sorted(_children_by_parent().get(parent, []))


def descendants(root: int) -> list[int]:
    """PIDs of every live descendant of ``root`` (e.g. the workers of a supervisor)."""
    children = _children_by_parent()
    found: list[int] = []
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return sorted(found)


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds of a process and all its live descendants."""
    return sum(cpu_seconds(pid) for pid in (root, *descendants(root)))
