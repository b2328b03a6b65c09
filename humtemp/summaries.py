"""The read path: fan out to every live shard, merge in lab-id order, encode as it goes.

``/summary`` and ``/summary/detail`` are produced as a stream of encoded JSON chunks
(:class:`~humtemp.flight.Flight`): pages of :data:`~humtemp.reader.PAGE_LABS` labs per
shard, k-way merged (:mod:`humtemp.merge`), encoded a chunk at a time, so neither memory
nor any one step of the event loop grows with the bucket. Identical reads running at the
same time, or within ``HUMTEMP_READ_CACHE_SECONDS`` of each other, share one fan-out.

Status and headers are decided once the first page of every live shard is in: no shard
readable is a 503, some shards missing a partial 200 that names them. A shard that fails
*after* the status line went out cannot turn the answer into a 503: the connection is
aborted, so the client sees a truncated body, never a complete-looking wrong one
(docs/architecture.md, "Read path").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from typing import Any

import msgspec

from humtemp import metrics
from humtemp.config import Settings
from humtemp.flight import Flight, Head
from humtemp.merge import merge_sorted
from humtemp.model import Aggregate
from humtemp.reader import PAGE_LABS, Chunk, ShardReader, is_read_error, shard_fault
from humtemp.store import ShardSet

log = logging.getLogger(__name__)
_encode = msgspec.json.Encoder().encode
Sources = list[tuple[Chunk | None, AsyncIterator[Chunk]]]


class NoShardReadable(Exception):
    """Not one shard could be read: the answer would be empty for the wrong reason."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__(f"no shard readable (missing: {', '.join(missing)})")
        self.missing = missing


class ReadAborted(Exception):
    """The fan-out stopped before the end of the body."""


class SummaryItem(msgspec.Struct):
    """One lab in the original ``/summary``: exactly these keys, in this order."""

    lab_id: str
    avg_temp: float
    avg_humidity: float


class DetailItem(msgspec.Struct):
    """One lab in ``/summary/detail``."""

    lab_id: str
    count: int
    avg_temp: float
    avg_humidity: float
    min_temp: float
    max_temp: float
    min_humidity: float
    max_humidity: float


def _detail(lab: str, agg: Aggregate) -> DetailItem:
    return DetailItem(lab, agg.count, agg.temp_sum / agg.count, agg.hum_sum / agg.count,
                      agg.temp_min, agg.temp_max, agg.hum_min, agg.hum_max)


def _items(encoded: bytes) -> bytes:
    """The items of an encoded JSON array without its brackets."""
    return encoded[1:-1]


def partial_headers(missing: list[str]) -> dict[str, str]:
    if not missing:
        return {}
    return {"X-Humtemp-Partial": "true", "X-Humtemp-Missing-Shards": ",".join(missing)}


class Summaries:
    """Every shard's reader, and the flights of the reads in progress or cached."""

    def __init__(self, shards: ShardSet, settings: Settings) -> None:
        self.shards = shards
        self.readers = {name: ShardReader(s.spec, settings) for name, s in shards.shards.items()}
        self._cache_seconds = settings.read_cache_seconds
        self._cache_bytes = settings.read_cache_bytes
        self._flights: dict[Hashable, Flight] = {}

    async def close(self) -> None:
        for flight in list(self._flights.values()):
            if flight.producer is not None:
                flight.producer.cancel()
        await asyncio.gather(*(r.close() for r in self.readers.values()))

    # -- failures -------------------------------------------------------------------

    def _failed(self, name: str, exc: BaseException) -> None:
        """Count a failed shard read; mark the shard down only if the shard caused it."""
        if not is_read_error(exc):
            raise exc
        kind = "timeout" if isinstance(exc, TimeoutError) else "read"
        metrics.SHARD_ERRORS.labels(shard=name, kind=kind).inc()
        log.warning("shard %s: read failed (%s: %s)", name, type(exc).__name__, exc)
        if shard_fault(exc):
            self.shards.shards[name].report_failure(f"read failed: {exc}")

    async def _pages(self, name: str, bucket: int, after: str | None, page: int
                     ) -> AsyncIterator[Chunk]:
        """One shard's pages; a failure is counted (and judged) once, then re-raised."""
        try:
            async for chunk in self.readers[name].pages(bucket, after, page):
                yield chunk
        except Exception as exc:  # not GeneratorExit/CancelledError: closing is no failure
            self._failed(name, exc)
            raise

    def _missing_now(self) -> tuple[list[str], list[str]]:
        live = self.shards.live
        return live, [n for n in self.shards.shards if n not in live]

    # -- one lab --------------------------------------------------------------------

    async def read_lab(self, bucket: int, lab_id: str) -> tuple[Aggregate | None, list[str]]:
        """One lab's aggregate, merged over every live shard (data may sit on several)."""
        names, missing = self._missing_now()
        replies = await asyncio.gather(
            *(self.readers[n].read_lab(bucket, lab_id) for n in names), return_exceptions=True)
        total: Aggregate | None = None
        for name, reply in zip(names, replies, strict=True):
            if isinstance(reply, BaseException):
                self._failed(name, reply)
                missing.append(name)
            elif reply is not None:
                total = reply if total is None else total.merge(reply)
        if not names or len(missing) == len(self.shards.shards):
            raise NoShardReadable(missing)
        return total, missing

    # -- whole buckets --------------------------------------------------------------

    async def _open(self, bucket: int, after: str | None, page: int) -> tuple[Sources, list[str]]:
        """Every live shard's first page: who answered decides the status line."""
        names, missing = self._missing_now()
        pages = [self._pages(n, bucket, after, page) for n in names]
        firsts = await asyncio.gather(*(anext(p, None) for p in pages), return_exceptions=True)
        sources: Sources = []
        for name, first, rest in zip(names, firsts, pages, strict=True):
            if isinstance(first, BaseException):
                if not is_read_error(first):
                    raise first
                missing.append(name)  # _pages counted it
            else:
                sources.append((first, rest))
        if not sources:
            raise NoShardReadable(missing)
        return sources, missing

    def summary(self, bucket: int, fresh: bool = False) -> Flight:
        """The original ``/summary`` body: a JSON array sorted by lab_id."""
        async def produce(flight: Flight) -> None:
            sources, missing = await self._open(bucket, None, PAGE_LABS)
            flight.start(Head(headers=partial_headers(missing), missing=missing))
            await flight.put(b"[")
            sep = b""
            async for chunk in merge_sorted(sources):
                items = [SummaryItem(lab, a.temp_sum / a.count, a.hum_sum / a.count)
                         for lab, a in chunk]
                await flight.put(sep + _items(_encode(items)))
                sep = b","
            await flight.put(b"]")

        return self._flight(("summary", bucket), produce, fresh)

    def detail(self, bucket: int, duration: int, after: str | None, limit: int | None,
               fresh: bool = False) -> Flight:
        """``/summary/detail``: count/min/max per lab, which shards are missing, and a
        cursor (``next_after``) when ``limit`` cut the page short."""
        async def produce(flight: Flight) -> None:
            page = PAGE_LABS if limit is None else min(PAGE_LABS, limit + 1)
            sources, missing = await self._open(bucket, after, page)
            flight.start(Head(headers=partial_headers(missing), missing=missing))
            head: dict[str, Any] = {"bucket_start": bucket, "bucket_end": bucket + duration,
                                    "partial": bool(missing), "missing_shards": missing,
                                    "reset_shards": self.shards.resets_since(bucket)}
            await flight.put(_encode(head)[:-1] + b',"labs":[')
            left = limit  # labs still to send (None: all)
            sent: str | None = None  # the last lab sent
            next_after: str | None = None
            sep = b""
            async with contextlib.aclosing(merge_sorted(sources)) as merged:
                async for chunk in merged:
                    if left is not None:
                        if left == 0 or len(chunk) > left:
                            # A lab exists past the page: hand out a cursor.
                            next_after = chunk[left - 1][0] if left else sent
                        chunk = chunk[:left]
                        left -= len(chunk)
                    if chunk:
                        await flight.put(
                            sep + _items(_encode([_detail(k, a) for k, a in chunk])))
                        sep, sent = b",", chunk[-1][0]
                    if next_after is not None:
                        break
            await flight.put(b'],"next_after":' + _encode(next_after) + b"}")

        return self._flight(("detail", bucket, after, limit), produce, fresh)

    # -- single flight ----------------------------------------------------------------

    def _flight(self, key: Hashable, produce: Callable[[Flight], Awaitable[None]],
                fresh: bool) -> Flight:
        """The running or freshly cached flight for ``key``, or a new one. A shared or
        cached answer may miss writes acknowledged after it started (at most
        ``HUMTEMP_READ_CACHE_SECONDS`` plus one read); ``fresh`` starts a new fan-out,
        which later identical reads may join."""
        flight = self._flights.get(key)
        now = asyncio.get_running_loop().time()
        if not fresh and flight is not None and flight.joinable and (
                flight.finished_at is None or now - flight.finished_at < self._cache_seconds):
            metrics.BUCKET_READS.labels(source="cache" if flight.finished_at else "shared").inc()
            return flight
        metrics.BUCKET_READS.labels(source="shards").inc()
        flight = self._flights[key] = Flight(self._cache_bytes)
        flight.producer = asyncio.get_running_loop().create_task(
            self._run(key, flight, produce), name=f"read-{key[0]}")
        return flight

    async def _run(self, key: Hashable, flight: Flight,
                   produce: Callable[[Flight], Awaitable[None]]) -> None:
        """Produce a flight apart from any one request, so a reader that goes away
        does not cut off the others; a finished flight stays cached for a moment."""
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            await produce(flight)
        except asyncio.CancelledError:
            error = ReadAborted("read stopped (shutdown, or no reader left)")
        except Exception as exc:
            error = exc
            if not isinstance(exc, NoShardReadable):
                log.warning("read %s cut short: %s: %s", key, type(exc).__name__, exc)
        flight.finish(error)
        metrics.SUMMARY_FANOUT.observe(time.perf_counter() - started)
        if error is None and flight.joinable and self._cache_seconds > 0:
            await asyncio.sleep(self._cache_seconds)
        if self._flights.get(key) is flight:
            del self._flights[key]
