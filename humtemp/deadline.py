"""A shard's deadline that does not count the event loop's own stalls against it.

``asyncio.timeout(t)`` expires ``t`` seconds of wall time after it started, however long
the loop itself was stuck meanwhile (a garbage collection, a big decode, a busy core). A
write then turns into "outcome unknown" and its shard is marked down although the shard
answered in time: the reply was sitting in the socket when the timer ran first
(invariant 7, issue 13). So the timer checks how late it ran: if the loop stalled past
the deadline, the shard gets that time back, once, and the reply already received is
read before the write is given up.

A plain ``with`` (not ``async with``): it runs once per flush, and the coroutine-based
enter/exit of ``asyncio.timeout`` would add two awaits to every flush for nothing.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

STALL = 0.05
"""A timer that runs this much after its due time was held up by the loop, not the shard."""


class ShardDeadline:
    """``with ShardDeadline(seconds):`` inside a task raises TimeoutError like
    ``asyncio.timeout``, after ``seconds`` of time the loop was free to notice a reply
    (at most twice ``seconds`` of wall time)."""

    __slots__ = ("_due", "_expired", "_extended", "_handle", "_loop", "_seconds", "_task")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._extended = 0.0
        self._expired = False
        self._handle: asyncio.TimerHandle | None = None

    def __enter__(self) -> ShardDeadline:
        task = asyncio.current_task()
        assert task is not None, "ShardDeadline needs a running task"
        self._task = task
        self._loop = task.get_loop()
        self._due = self._loop.time() + self._seconds
        self._handle = self._loop.call_at(self._due, self._check)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        # Our own cancellation becomes a TimeoutError; anyone else's stays a cancellation.
        if self._expired and kind is asyncio.CancelledError and self._task.uncancel() == 0:
            raise TimeoutError from exc

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
        self._expired = True
        self._task.cancel()
