"""Shard faults that `python -m loadtest.run` injects mid-run: a hung shard, a full shard.

``--fault-stop START:SECONDS`` stops a shard's redis-server with SIGSTOP START seconds
after Locust started, and continues it (SIGCONT) SECONDS later: writes in flight to it
time out (503 ``outcome_unknown``), then humtemp marks it down (503
``shard_unavailable`` for keyed writes, which never re-route) until its probe answers.
``--fault-oom START:SECONDS`` sets ``maxmemory 1`` under ``noeviction``: Redis refuses
every write (503 ``storage_full``) until ``maxmemory`` is back to 0.  Every fault is
undone when its time is up or the run ends, whichever comes first.
"""

from __future__ import annotations

import argparse
import itertools
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from humtemp.localredis import LocalRedis as Shard


@dataclass(frozen=True)
class Fault:
    kind: str  # "stop" (SIGSTOP/SIGCONT) or "oom" (maxmemory 1, then 0)
    start: float  # seconds after Locust started
    seconds: float
    shard: int

    @property
    def end(self) -> float:
        return self.start + self.seconds


def window(text: str) -> tuple[float, float]:
    """``START:SECONDS`` (an argparse type): when a fault begins and how long it lasts."""
    start, sep, seconds = text.partition(":")
    try:
        parsed = float(start), float(seconds)
    except ValueError:
        parsed = (-1.0, -1.0)
    if not sep or parsed[0] < 0 or parsed[1] <= 0:
        raise argparse.ArgumentTypeError(
            f"expected START:SECONDS with START >= 0 and SECONDS > 0, got {text!r}")
    return parsed


def plan(stop: tuple[float, float] | None, oom: tuple[float, float] | None,
         shard: int) -> list[Fault]:
    """The faults in time order; overlapping ones are refused (a stopped shard cannot
    be told to run out of memory)."""
    faults = sorted((Fault(kind, *win, shard) for kind, win in (("stop", stop), ("oom", oom))
                     if win is not None), key=lambda f: f.start)
    for first, second in itertools.pairwise(faults):
        if second.start < first.end:
            raise ValueError(f"the {first.kind} fault ({first.start:g}-{first.end:g} s) "
                             f"overlaps the {second.kind} fault ({second.start:g} s)")
    return faults


def _begin(fault: Fault, shard: Shard) -> str:
    if fault.kind == "stop":
        shard.proc.send_signal(signal.SIGSTOP)
        return "stopped (SIGSTOP)"
    client = shard.client()
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", 1)
    return "out of memory (maxmemory-policy noeviction, maxmemory 1)"


def _undo(fault: Fault, shard: Shard) -> str:
    if fault.kind == "stop":
        shard.proc.send_signal(signal.SIGCONT)
        return "continued (SIGCONT)"
    shard.client().config_set("maxmemory", 0)
    return "has memory again (maxmemory 0)"


def inject(faults: list[Fault], shards: list[Shard], t0: float, done: threading.Event,
           say: Callable[[str], None], timeline: list[dict[str, Any]]) -> None:
    """Run `faults` against `shards`, timed from `t0` (monotonic); stop early once `done`
    is set. Appends what happened to `timeline`, times in seconds after `t0`; a fault
    that could not be injected says why there and does not stop the others."""
    for fault in faults:
        shard = shards[fault.shard]
        entry: dict[str, Any] = {"kind": fault.kind, "shard": fault.shard, "port": shard.port,
                                 "planned_start_s": fault.start, "planned_s": fault.seconds}
        timeline.append(entry)
        if done.wait(max(0.0, t0 + fault.start - time.monotonic())):
            entry["skipped"] = "the run ended before the fault was due"
            say(f"fault: {fault.kind} on shard {fault.shard} skipped: the run had ended")
            continue
        entry["started_s"] = round(time.monotonic() - t0, 3)
        try:
            say(f"fault: shard {fault.shard} (port {shard.port}) {_begin(fault, shard)} "
                f"for {fault.seconds:g} s")
            done.wait(fault.seconds)
        except (OSError, redis.RedisError) as exc:
            entry["error"] = f"{type(exc).__name__}: {exc}"
            say(f"fault: {fault.kind} on shard {fault.shard} failed: {entry['error']}")
        finally:
            what = _undo(fault, shard)
            entry["ended_s"] = round(time.monotonic() - t0, 3)
            say(f"fault: shard {fault.shard} {what} after "
                f"{entry['ended_s'] - entry['started_s']:.1f} s")
