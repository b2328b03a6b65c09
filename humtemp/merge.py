"""K-way merge of per-shard lab pages into one ascending stream, a chunk at a time.

Every shard yields its labs in ascending lab-id order (:mod:`humtemp.reader`); a lab's
data may sit on several shards (after a re-route), so equal lab ids are merged
(invariant 2). Memory is one page per shard, whatever the bucket holds: a chunk is
emitted as soon as every shard that may still hold smaller lab ids has been read past it.
"""

from __future__ import annotations

import asyncio
import heapq
from bisect import bisect_right
from collections.abc import AsyncIterator
from operator import itemgetter

from humtemp.reader import Chunk

_lab = itemgetter(0)


class _Source:
    __slots__ = ("buffer", "pages", "pos")

    def __init__(self, first: Chunk | None, pages: AsyncIterator[Chunk] | None) -> None:
        self.buffer: Chunk = first or []
        self.pos = 0
        # A source whose first page was None has nothing more to give.
        self.pages = pages if first is not None else None

    @property
    def drained(self) -> bool:
        return self.pos >= len(self.buffer)

    async def refill(self) -> None:
        assert self.pages is not None
        chunk = await anext(self.pages, None)
        if chunk is None:
            self.pages = None
            self.buffer, self.pos = [], 0
        else:
            self.buffer, self.pos = chunk, 0

    def take_through(self, bound: str | None) -> Chunk:
        """Buffered labs up to and including ``bound`` (all of them when None)."""
        end = len(self.buffer) if bound is None else bisect_right(
            self.buffer, bound, lo=self.pos, key=_lab)
        part = self.buffer[self.pos:end]
        self.pos = end
        return part


def fold(parts: list[Chunk]) -> Chunk:
    """Merge ascending chunks of different shards into one, merging equal lab ids."""
    nonempty = [p for p in parts if p]
    if len(nonempty) == 1:
        return nonempty[0]  # one shard never holds a lab twice
    out: Chunk = []
    for lab, agg in heapq.merge(*nonempty, key=_lab):
        if out and out[-1][0] == lab:
            out[-1] = (lab, out[-1][1].merge(agg))
        else:
            out.append((lab, agg))
    return out


async def merge_sorted(
    sources: list[tuple[Chunk | None, AsyncIterator[Chunk]]],
) -> AsyncIterator[Chunk]:
    """One ascending stream of chunks from ``(first page, remaining pages)`` per shard.
    Pages are fetched from every shard concurrently; a shard's error propagates."""
    live = [_Source(first, pages) for first, pages in sources]
    while True:
        empty = [s for s in live if s.drained and s.pages is not None]
        if empty:
            await asyncio.gather(*(s.refill() for s in empty))
        live = [s for s in live if not (s.drained and s.pages is None)]
        if not live:
            return
        # Safe to emit every lab no shard with pages left can still undercut.
        open_ends = [s.buffer[-1][0] for s in live if s.pages is not None]
        bound = min(open_ends) if open_ends else None
        chunk = fold([s.take_through(bound) for s in live])
        if chunk:
            yield chunk
