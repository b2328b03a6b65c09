"""Labs per bucket: the ``humtemp_bucket_labs`` gauge and the optional cap on them.

Every few seconds the size of each shard's lab index for the current bucket (``ZCARD``,
O(1)) is sampled into ``humtemp_bucket_labs{shard}``: off the hot path, whatever the
settings. With ``HUMTEMP_MAX_LABS_PER_BUCKET`` on, :meth:`LabCap.admit` is called by the
write handlers. Below the cap (the sum of the shards' sampled counts) it costs a dict
lookup; at the cap, labs not yet known to exist are checked on their shard's index
(one ``ZMSCORE``), and a write that would *create* a lab is refused with 429
``lab_limit_reached`` while existing labs keep ingesting.

The cap is soft by the labs created between two samples (:data:`SAMPLE_SECONDS`, per
pod): counting exactly would put a Redis round trip on every write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from humtemp import metrics
from humtemp.errors import ApiError
from humtemp.model import Buckets
from humtemp.reader import ShardReader, is_read_error
from humtemp.store import ShardSet

log = logging.getLogger(__name__)
SAMPLE_SECONDS = 1.0


class LabCap:
    """Sampled lab counts per (bucket, shard), and the admission check built on them."""

    def __init__(self, shards: ShardSet, readers: dict[str, ShardReader], buckets: Buckets,
                 limit: int) -> None:
        self.limit = limit
        self._shards = shards
        self._readers = readers
        self._buckets = buckets
        self._counts: dict[int, dict[str, int]] = {}
        self._known: dict[int, set[str]] = {}  # labs seen to exist, per bucket, at the cap

    def labs(self, bucket: int) -> int:
        """Labs in ``bucket`` over every shard, as last sampled (a lab re-routed to a
        second shard counts twice: it holds data on both)."""
        return sum(self._counts.get(bucket, {}).values())

    async def sample(self, bucket: int) -> None:
        """Refresh one bucket's counts from the live shards (a failed shard keeps its
        last count: a sampling error is not the place to judge shards)."""
        counts = self._counts.setdefault(bucket, {})
        names = self._shards.live
        replies = await asyncio.gather(
            *(self._readers[n].bucket_labs(bucket) for n in names), return_exceptions=True)
        for name, reply in zip(names, replies, strict=True):
            if isinstance(reply, BaseException):
                if not is_read_error(reply):
                    raise reply
                continue
            counts[name] = reply

    async def sample_forever(self) -> None:
        """Keep the current bucket's counts and gauges fresh; forget expired buckets."""
        while True:
            now = int(time.time())
            current = self._buckets.start(now)
            oldest = self._buckets.oldest_accepted(now)
            for bucket in [b for b in self._counts if b < oldest]:
                self._counts.pop(bucket, None)
                self._known.pop(bucket, None)
            with contextlib.suppress(Exception):
                await self.sample(current)
                for name, count in self._counts.get(current, {}).items():
                    metrics.BUCKET_LABS.labels(shard=name).set(count)
            if self.limit:
                for bucket in [b for b in self._counts if b != current]:
                    with contextlib.suppress(Exception):
                        await self.sample(bucket)
            await asyncio.sleep(SAMPLE_SECONDS)

    async def admit(self, labs: Sequence[tuple[str, int]]) -> None:
        """Raise 429 ``lab_limit_reached`` if a (lab id, bucket) pair would create a lab
        in a bucket at the cap; existing labs always pass."""
        for bucket in {bucket for _, bucket in labs}:
            if bucket not in self._counts:
                await self.sample(bucket)
        at_cap = [(lab, b) for lab, b in labs if self.labs(b) >= self.limit]
        if not at_cap:
            return
        unknown = [(lab, b) for lab, b in dict.fromkeys(at_cap)
                   if lab not in self._known.get(b, ())]
        for (lab, bucket), exists in zip(unknown, await self._exists(unknown), strict=True):
            if not exists:
                raise self._refusal(lab, bucket)
            self._known.setdefault(bucket, set()).add(lab)

    async def _exists(self, labs: list[tuple[str, int]]) -> list[bool]:
        """Whether each lab already has data in its bucket on the shard its writes go to
        now (a lab index lookup per shard and bucket, batched)."""
        groups: dict[tuple[str, int], list[int]] = {}
        for i, (lab, bucket) in enumerate(labs):
            target = self._shards.ring.live_owner(lab) or self._shards.ring.owner(lab)
            groups.setdefault((target, bucket), []).append(i)
        found = [False] * len(labs)
        for (name, bucket), indexes in groups.items():
            try:
                present = await self._readers[name].has_labs(bucket, [labs[i][0] for i in indexes])
            except Exception as exc:
                if not is_read_error(exc):
                    raise
                # Can't tell: let the write decide (it fails on its own if the shard is down).
                present = [True] * len(indexes)
            for i, here in zip(indexes, present, strict=True):
                found[i] = here
        return found

    def _refusal(self, lab: str, bucket: int) -> ApiError:
        retry = max(1, bucket + self._buckets.duration - int(time.time()))
        return ApiError(
            429, "lab_limit_reached",
            f"lab {lab!r} would be a new lab in a bucket that already holds {self.labs(bucket)} "
            f"labs; the limit (HUMTEMP_MAX_LABS_PER_BUCKET) is {self.limit}. Labs already in "
            "the bucket keep ingesting; new labs are accepted from the next bucket.",
            "lab_id", reason="lab_limit", headers={"Retry-After": str(retry)})
