"""Hot-path metric updates as plain arithmetic, folded into prometheus-client each second.

Every prometheus-client update takes a lock, and with ``--workers N`` writes to a
shared mmap'd file. Per request and per flush that was ~3 % of the server's CPU.
A tally counts in plain ints and floats on the event loop (one thread, no lock) and
is folded into the real metric once a second and before every ``/metrics`` answer,
so a scrape of this process is exact and other workers are at most a second behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from bisect import bisect_left
from collections.abc import Callable

from prometheus_client import Counter, Histogram

log = logging.getLogger(__name__)

FOLD_INTERVAL = 1.0


class CounterTally:
    """Increments of one counter child, pending until the next fold."""

    __slots__ = ("_child", "value")

    def __init__(self, child: Counter) -> None:
        self._child = child
        self.value = 0

    def inc(self, amount: int = 1) -> None:
        self.value += amount

    def fold(self) -> None:
        if self.value:
            amount, self.value = self.value, 0
            self._child.inc(amount)


class HistogramTally:
    """Observations of one histogram child, bucketed as prometheus-client does
    (``value <= bound``, with the child's own bounds), and optionally counted into a
    counter child as well.

    prometheus-client has no public call to add many observations at once, so this
    reads and writes its internals: ``_upper_bounds`` (ending in +Inf), ``_buckets``
    (one non-cumulative value per bound) and ``_sum``. pyproject.toml pins its version
    below the next minor, and tests/unit/test_tally.py fails if they change.
    """

    __slots__ = ("_bounds", "_child", "_counter", "counts", "total")

    def __init__(self, child: Histogram, counter: Counter | None = None) -> None:
        self._child = child
        self._counter = counter
        self._bounds: tuple[float, ...] = tuple(child._upper_bounds)
        self.counts = [0] * len(self._bounds)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self._bounds, value)] += 1
        self.total += value

    def fold(self) -> None:
        counts = self.counts
        observed = sum(counts)
        if not observed:
            return
        total, self.counts, self.total = self.total, [0] * len(counts), 0.0
        child = self._child
        child._sum.inc(total)
        for value, count in zip(child._buckets, counts, strict=True):
            if count:
                value.inc(count)
        if self._counter is not None:
            self._counter.inc(observed)


class Tallies:
    """The tallies (and gauge samplers) of one app, and the task that folds them."""

    def __init__(self) -> None:
        self._tallies: list[CounterTally | HistogramTally] = []
        self._samplers: list[Callable[[], None]] = []
        self._task: asyncio.Task[None] | None = None

    def counter(self, child: Counter) -> CounterTally:
        tally = CounterTally(child)
        self._tallies.append(tally)
        return tally

    def histogram(self, child: Histogram, *, counter: Counter | None = None
                  ) -> HistogramTally:
        """A tally of ``child`` (a labelled Histogram), with its bucket bounds."""
        tally = HistogramTally(child, counter)
        self._tallies.append(tally)
        return tally

    def sample(self, sampler: Callable[[], None]) -> None:
        """Run ``sampler`` (e.g. a gauge ``set``) at each fold instead of on every change."""
        self._samplers.append(sampler)

    def fold(self) -> None:
        for tally in self._tallies:
            tally.fold()
        for sampler in self._samplers:
            sampler()

    async def _fold_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                self.fold()
            except Exception:  # a metric bug must not stop the folding for good
                log.exception("folding metric tallies failed")

    def start(self, interval: float = FOLD_INTERVAL) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._fold_forever(interval), name="fold-metric-tallies"
        )

    async def stop(self) -> None:
        """Stop the task and fold what is left, so nothing counted is lost at shutdown."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.fold()
