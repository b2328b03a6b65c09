"""Retrying a keyed write as a careful client would, and counting what the retries did.

A write sent with an ``Idempotency-Key`` may be repeated with the same key and the
same body bytes after any 5xx, connection error or timeout: the service then stores
only what is still missing.  A write without a key is never retried here, since a
blind retry may count it twice.  Pure logic, no Locust: the scenarios drive it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

STORED, REJECTED, UNKNOWN = "stored", "rejected", "unknown"
MAX_RETRY_AFTER = 10.0  # never sleep longer than this on one Retry-After


@dataclass(frozen=True)
class Attempt:
    """One HTTP attempt as the client saw it: its outcome and what the service said."""

    outcome: str  # STORED (2xx with the documented body), REJECTED (4xx) or UNKNOWN
    status: int  # 0 = connection error or timeout
    code: str = ""  # the JSON error code of a failure ("outcome_unknown", ...)
    retry_after: str | None = None

    @property
    def retryable(self) -> bool:
        """A 5xx or no answer at all: the same key and body may be sent again."""
        return self.status == 0 or self.status >= 500

    @property
    def label(self) -> str:
        """How a failed attempt is counted: ``503 storage_full``, ``connection_error``."""
        if self.status == 0:
            return "connection_error"
        return f"{self.status} {self.code}" if self.code else str(self.status)


@dataclass(frozen=True)
class RetryPolicy:
    """At most `attempts` attempts in all, none started after `seconds` from the first."""

    attempts: int = 30
    seconds: float = 60.0

    def delay(self, attempt: Attempt, made: int, elapsed: float) -> float | None:
        """Seconds to wait before the next attempt, or None: stop here."""
        if not attempt.retryable or made >= self.attempts:
            return None
        wait = _retry_after(attempt.retry_after)
        if wait is None:
            wait = min(0.1 * 2 ** (made - 1), 2.0)  # no Retry-After: back off from 0.1 s
        if elapsed + wait > self.seconds:
            return None
        return wait


NO_RETRY = RetryPolicy(attempts=1, seconds=0.0)


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the HTTP-date form is not used by humtemp), capped."""
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER) if value is not None else None
    except ValueError:
        return None


@dataclass
class Attempts:
    """The attempts of one logical write, and its final outcome for the ledger."""

    sent: int = 0
    answered: list[Attempt] = field(default_factory=list)

    def start(self) -> None:
        self.sent += 1

    def record(self, attempt: Attempt) -> None:
        self.answered.append(attempt)

    @property
    def outcome(self) -> str:
        """STORED once any attempt got its 2xx; REJECTED only if every attempt was
        answered with a certain refusal of the whole write (a 4xx); else UNKNOWN,
        since an earlier 5xx or unanswered attempt may have stored a part."""
        if any(a.outcome == STORED for a in self.answered):
            return STORED
        if self.answered and self.sent == len(self.answered) and all(
                a.outcome == REJECTED for a in self.answered):
            return REJECTED
        return UNKNOWN

    @property
    def failures(self) -> list[Attempt]:
        return [a for a in self.answered if a.outcome != STORED]


@dataclass
class RetryStats:
    """Counts over many writes, mergeable across Locust workers (a plain dict on the wire).

    ``writes`` / ``retried`` / ``recovered`` (retried, then stored) / ``given_up``
    (never acknowledged) count logical writes; ``failed_attempts`` counts every failed
    attempt and ``failed_attempts_recovered`` those of writes a retry stored later;
    ``errors`` counts failed attempts by status and error code."""

    counts: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    def add(self, write: Attempts) -> None:
        failures = write.failures
        outcome = write.outcome
        self.counts["writes"] += 1
        self.counts["failed_attempts"] += len(failures)
        if write.sent > 1:
            self.counts["retried"] += 1
        if outcome == STORED and failures:
            self.counts["recovered"] += 1
            self.counts["failed_attempts_recovered"] += len(failures)
        if outcome != STORED:
            self.counts["given_up"] += 1
        self.errors.update(a.label for a in failures)

    def merge(self, other: RetryStats) -> None:
        self.counts.update(other.counts)
        self.errors.update(other.errors)

    def to_wire(self) -> dict[str, Any]:
        names = ("writes", "retried", "recovered", "given_up", "failed_attempts",
                 "failed_attempts_recovered")
        return {**{n: self.counts[n] for n in names}, "errors": dict(sorted(self.errors.items()))}

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> RetryStats:
        stats = cls()
        stats.counts.update({k: int(v) for k, v in data.items() if k != "errors"})
        stats.errors.update({k: int(v) for k, v in data.get("errors", {}).items()})
        return stats
