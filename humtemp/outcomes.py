"""What a write to the shards can end in, and what is known about its data.

The split that matters to a client is *certain non-delivery* (nothing of the write is
stored: safe to retry, safe to re-route) against *unknown outcome* (sent, not
confirmed: Redis may still apply it, so a blind retry may count it twice; only a
retry with the same ``Idempotency-Key`` is safe). Every error says which it is.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base of every write failure; ``certain`` means nothing of it was stored."""

    certain = True
    code = "shard_unavailable"
    kind = "unavailable"

    def __init__(self, shard: str, detail: str) -> None:
        super().__init__(f"shard {shard}: {detail}")
        self.shard = shard
        self.detail = detail


class ShardUnavailable(StoreError):
    """The shard certainly did not receive the write (marked down, or connect failed)."""


class ShardOverloaded(StoreError):
    """Too many observations queued here for this shard: local back-pressure."""

    code = "overloaded"
    kind = "overloaded"


class ShardOutcomeUnknown(StoreError):
    """The write was sent but not confirmed in time: it may or may not be applied."""

    certain = False
    code = "outcome_unknown"
    kind = "unknown"


class ShardRefused(StoreError):
    """Redis answered the write with an error: the script stored nothing.

    write.lua reads everything it needs before its first write, and Redis checks
    ``maxmemory`` only before a script's first write, so an error reply (OOM,
    READONLY, MISCONF, a script error) always means none of the call was applied."""

    def __init__(self, shard: str, detail: str, kind: str, code: str) -> None:
        super().__init__(shard, detail)
        self.kind = kind
        self.code = code


REFUSALS: tuple[tuple[str, str, str, str], ...] = (
    # (reply marker, metric kind, API error code, what the client is told)
    ("OOM", "oom", "storage_full", "storage shard is out of memory; nothing was stored"),
    ("READONLY", "readonly", "storage_read_only",
     "storage shard is a read-only replica; nothing was stored"),
    ("MISCONF", "misconf", "storage_misconfigured",
     "storage shard cannot persist (MISCONF); nothing was stored"),
    ("LOADING", "loading", "storage_loading",
     "storage shard is still loading its data; nothing was stored"),
    ("BUSY", "busy", "storage_busy", "storage shard is busy; nothing was stored"),
)


def refusal(shard: str, reply: str) -> ShardRefused:
    """The certain refusal an error reply of Redis stands for."""
    for marker, kind, code, detail in REFUSALS:
        if marker in reply:
            return ShardRefused(shard, detail, kind, code)
    return ShardRefused(shard, "storage shard refused the write; nothing was stored",
                        "script", "storage_error")


class KeyReused(Exception):
    """An ``Idempotency-Key`` seen before with another request body."""


class WriteFailed(Exception):
    """A batch that was not wholly stored: how many observations are certainly stored,
    certainly not stored, and of unknown outcome, and the error that decides the answer
    (an unknown one if any part is unknown)."""

    def __init__(self, cause: StoreError, stored: int, not_stored: int, unknown: int) -> None:
        super().__init__(cause.detail)
        self.cause = cause
        self.stored = stored
        self.not_stored = not_stored
        self.unknown = unknown

    def __str__(self) -> str:
        return (f"{self.cause}: stored {self.stored}, not stored {self.not_stored}, "
                f"unknown {self.unknown}")
