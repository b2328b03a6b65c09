"""Single-flight for streamed reads: one producer, any number of identical readers.

A :class:`Flight` holds the encoded chunks of one read as its producer makes them.
Readers that ask for the same thing while it runs (or within the short cache window
after it finished) replay its chunks instead of fanning out again. Memory is bounded:
the flight keeps at most ``max_bytes`` of chunks. Past that it stops taking new readers
(and is not cached), drops chunks every reader has sent, and makes the producer wait
for the slowest reader, so a large read costs a window of bytes, not the whole body.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Head:
    """What is known before the first body byte: status line and headers."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


class Flight:
    """The chunks of one read, shared by every reader that joined it in time."""

    def __init__(self, max_bytes: int) -> None:
        loop = asyncio.get_running_loop()
        self.head: asyncio.Future[Head] = loop.create_future()
        self.finished_at: float | None = None
        self._max_bytes = max_bytes
        self._chunks: list[bytes] = []
        self._base = 0  # sequence number of _chunks[0]
        self._held = 0  # bytes in _chunks
        self._complete = True  # every chunk since the start is still held
        self._done = False
        self._error: BaseException | None = None
        self._positions: dict[int, int] = {}
        self._ids = itertools.count()
        self._changed = asyncio.Event()
        self.producer: asyncio.Task[None] | None = None

    @property
    def joinable(self) -> bool:
        """A new reader can still get the whole body (nothing dropped, no error)."""
        return self._complete and self._error is None

    @property
    def readers(self) -> int:
        return len(self._positions)

    def _bump(self) -> None:
        """Wake everyone waiting for a change (new chunk, reader progress, end)."""
        self._changed.set()
        self._changed = asyncio.Event()

    # -- producer side -------------------------------------------------------------

    def start(self, head: Head) -> None:
        self.head.set_result(head)

    async def put(self, chunk: bytes) -> None:
        """Append a chunk; waits while the bytes held are past the bound and a reader
        still needs them (a slow client slows its flight, it does not grow memory).
        Raises CancelledError once nobody is left to read a flight past its bound."""
        self._chunks.append(chunk)
        self._held += len(chunk)
        self._bump()
        while self._held > self._max_bytes:
            self._complete = False
            self._trim()
            if not self._positions:
                raise asyncio.CancelledError
            if self._held <= self._max_bytes:
                break
            await self._changed.wait()

    def _trim(self) -> None:
        """Drop the chunks every reader has already taken."""
        upto = min(self._positions.values(), default=self._base + len(self._chunks))
        drop = upto - self._base
        if drop > 0:
            self._held -= sum(len(c) for c in self._chunks[:drop])
            del self._chunks[:drop]
            self._base = upto

    def finish(self, error: BaseException | None = None) -> None:
        """End of the body (or the error that cut it short)."""
        self._done = True
        self._error = error
        self.finished_at = asyncio.get_running_loop().time()
        if not self.head.done():
            if error is None:
                self.head.set_result(Head())
            else:
                self.head.set_exception(error)
                self.head.exception()  # retrieved: no "never retrieved" warning
        self._bump()

    # -- reader side ------------------------------------------------------------------

    @contextlib.contextmanager
    def join(self) -> Iterator[AsyncIterator[bytes]]:
        """Register a reader now (so no chunk it needs is dropped), yield its chunks."""
        me = next(self._ids)
        self._positions[me] = self._base
        try:
            yield self._iterate(me)
        finally:
            del self._positions[me]
            self._bump()

    async def _iterate(self, me: int) -> AsyncIterator[bytes]:
        while True:
            pos = self._positions[me]
            if pos < self._base + len(self._chunks):
                self._positions[me] = pos + 1
                self._bump()
                yield self._chunks[pos - self._base]
            elif self._done:
                if self._error is not None:
                    raise self._error
                return
            else:
                await self._changed.wait()
