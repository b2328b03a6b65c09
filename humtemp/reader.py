"""One shard's read side: its own connections, bounded commands, local queueing.

Reads never share the flusher's connection (:mod:`humtemp.shard`), so a long read can
not delay a write behind it on one socket. Each shard gets a small pool of read
connections behind a semaphore of the same size: extra readers *wait* for a slot
(a local limit) instead of hitting redis-py's ``MaxConnectionsError``, and nothing local
is ever reported as a shard failure (:func:`shard_fault`).

A bucket is read in pages of :data:`PAGE_LABS` labs in lab-id order: one script call
(``lua/read_page.lua``) per page runs one ``ZRANGEBYLEX … LIMIT`` on the bucket's lab
index and one ``HMGET`` of those labs, so no command's work grows with the bucket
(measured in docs/benchmarks.md: well under 20 ms at a million labs).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError, RedisError

from humtemp import layout
from humtemp.config import Settings, ShardSpec
from humtemp.deadline import ShardDeadline
from humtemp.model import Aggregate

PAGE_SCRIPT = resources.files("humtemp").joinpath("lua/read_page.lua").read_text()
PAGE_LABS = 500
"""Labs per page: one page costs Redis well under a millisecond per 1000 labs, and the
event loop ~1-2 ms to decode and encode (docs/benchmarks.md)."""
LEGACY_SCAN_COUNT = 1000

Chunk = list[tuple[str, Aggregate]]
"""Labs in ascending lab-id order with their aggregates."""


def shard_fault(exc: BaseException) -> bool:
    """True if the *shard* failed (refused or reset the connection), so the shard may
    be marked down. A full local pool, a cancelled wait or a slow event loop is not the
    shard's fault: such reads are answered partial at worst, never mark a shard down."""
    if isinstance(exc, MaxConnectionsError):
        return False
    return isinstance(exc, RedisConnectionError | ConnectionError)


def is_read_error(exc: BaseException) -> bool:
    """Errors a shard read may end in (anything else is a bug and propagates)."""
    return isinstance(exc, RedisError | OSError | TimeoutError)


class ShardReader:
    """A shard's read connections and the bounded commands the summaries use."""

    def __init__(self, spec: ShardSpec, settings: Settings) -> None:
        self.name = spec.name
        self._prefix = settings.key_prefix.encode()
        self._deadline = settings.shard_deadline
        slots = settings.read_connections
        self._redis = Redis.from_url(
            spec.url,
            socket_timeout=settings.redis_timeout,
            socket_connect_timeout=settings.redis_connect_timeout,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
            client_name="humtemp-read",
            max_connections=slots,
        )
        self._slots = asyncio.Semaphore(slots)
        self._page = self._redis.register_script(PAGE_SCRIPT)

    async def close(self) -> None:
        await self._redis.aclose()

    async def _run(self, command: Any) -> Any:
        """Wait for a free read connection (queueing here is local, not a failure), then
        give the shard its deadline for the command itself.

        A read that finds its pooled connection closed is tried once more on a new one:
        after a shard restarted, every idle read connection is stale, and a read is safe
        to repeat. Only a second failure is the shard's."""
        async with self._slots:
            with ShardDeadline(self._deadline):
                try:
                    return await command()
                except RedisConnectionError as exc:
                    if isinstance(exc, MaxConnectionsError):
                        raise
                    return await command()

    async def read_lab(self, bucket: int, lab_id: str) -> Aggregate | None:
        """One lab's aggregate in a bucket (one ``HGET``), or None."""
        key = layout.bucket_key(self._prefix, bucket)
        raw = await self._run(lambda: self._redis.hget(key, lab_id))
        return None if raw is None else layout.unpack(raw)

    async def bucket_labs(self, bucket: int) -> int:
        """How many labs the bucket's index holds here (``ZCARD``, O(1))."""
        key = layout.index_key(self._prefix, bucket)
        return int(await self._run(lambda: self._redis.zcard(key)))

    async def has_labs(self, bucket: int, lab_ids: list[str]) -> list[bool]:
        """Whether each lab is in the bucket's lab index here (one ``ZMSCORE``)."""
        key = layout.index_key(self._prefix, bucket)
        scores = await self._run(lambda: self._redis.zmscore(key, lab_ids))
        return [score is not None for score in scores]

    async def pages(
        self, bucket: int, after: str | None = None, page: int = PAGE_LABS
    ) -> AsyncIterator[Chunk]:
        """The bucket's labs after ``after`` in ascending lab-id order, a page at a time."""
        index = layout.index_key(self._prefix, bucket)
        key = layout.bucket_key(self._prefix, bucket)
        start = b"-" if after is None else b"(" + after.encode()
        first = True
        while True:
            labs, values, indexed, stored = await self._run(
                lambda start=start: self._page(keys=[index, key], args=[start, page]))
            if first and int(stored) > int(indexed):
                # Written before the lab index existed: see _legacy_pages.
                async for chunk in self._legacy_pages(key, after, page):
                    yield chunk
                return
            first = False
            chunk = [(lab.decode(), agg)
                     for lab, agg in zip(labs, _unpack_present(values), strict=True)
                     if agg is not None]
            if chunk:
                yield chunk
            if len(labs) < page:
                return
            start = b"(" + labs[-1]

    async def _legacy_pages(self, key: bytes, after: str | None, page: int) -> AsyncIterator[Chunk]:
        """A bucket written by a humtemp without the lab index: ``HSCAN … COUNT`` (each
        call bounded), then sorted here. Memory grows with that bucket, but such buckets
        exist only until they expire, one retention window after the upgrade
        (docs/operations.md, "Upgrading")."""
        labs: dict[str, bytes] = {}
        cursor = 0
        while True:
            cursor, found = await self._run(
                lambda cursor=cursor: self._redis.hscan(key, cursor, count=LEGACY_SCAN_COUNT))
            for lab, raw in found.items():
                name = lab.decode()
                if after is None or name > after:
                    labs[name] = raw
            if cursor == 0:
                break
        ordered = sorted(labs)
        for first in range(0, len(ordered), page):
            names = ordered[first:first + page]
            yield list(zip(names, layout.unpack_many(labs[n] for n in names), strict=True))
            await asyncio.sleep(0)


def _unpack_present(values: list[bytes | None]) -> list[Aggregate | None]:
    """Aggregates of a page's values, None where the lab vanished (bucket expired)."""
    present = layout.unpack_many(v for v in values if v is not None)
    return [None if v is None else next(present) for v in values]
