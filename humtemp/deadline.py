"""A shard's deadline that does not count the event loop's own stalls against it.

``asyncio.timeout(t)`` expires ``t`` seconds of wall time after it started, however long
the loop itself was stuck meanwhile (a garbage collection, a big decode, a busy core). A
write then turns into "outcome unknown" and its shard is marked down although the shard
answered in time: the reply was sitting in the socket when the timer ran first
(invariant 7, issue 13). So the timer checks how late it ran: if the loop stalled past
the deadline, the shard gets that time back, once, and the reply already received is
read before the write is given up.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

STALL = 0.05
"""A timer that runs this much after its due time was held up by the loop, not the shard."""


class ShardDeadline:
    """``async with ShardDeadline(seconds):`` raises TimeoutError like ``asyncio.timeout``,
    after ``seconds`` of time the loop was free to notice a reply (at most twice
    ``seconds`` of wall time)."""

    __slots__ = ("_due", "_extended", "_handle", "_loop", "_seconds", "_timeout")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._timeout = asyncio.timeout(None)
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0
        self._extended = 0.0

    async def __aenter__(self) -> ShardDeadline:
        await self._timeout.__aenter__()
        self._loop = asyncio.get_running_loop()
        self._due = self._loop.time() + self._seconds
        self._handle = self._loop.call_at(self._due, self._check)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        if self._handle is not None:
            self._handle.cancel()
        return await self._timeout.__aexit__(kind, exc, tb)

    def _check(self) -> None:
        now = self._loop.time()
        late = now - self._due
        if late > STALL and self._extended < self._seconds:
            # The loop was stuck: first let it read what arrived meanwhile.
            grace = min(late, self._seconds - self._extended)
            self._extended += grace
            self._due = now + grace
            self._handle = self._loop.call_at(self._due, self._check)
            return
        self._handle = None
        self._timeout.reschedule(now)  # expires: asyncio cancels and raises TimeoutError
