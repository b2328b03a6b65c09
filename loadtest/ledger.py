"""What the load generator was told is stored: per (lab, bucket) counts and sums.

Every acknowledged (2xx) write is added here; writes whose outcome is unknown
(in flight when the run stopped, timeouts, 5xx) are counted as *uncertain* so
verification can bound instead of falsely failing.  A write retried with its
Idempotency-Key is settled once, with its final outcome; how the retries went is
counted in `retries`.  Ledgers are plain dicts on
the wire so Locust workers can ship them to the master and the master can merge.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from loadtest.retry import RetryStats

Key = tuple[str, int]  # (lab_id, bucket_start)


@dataclass
class Tally:
    """Acknowledged count and sums for one (lab, bucket)."""

    count: int = 0
    sum_temp: float = 0.0
    sum_humidity: float = 0.0
    uncertain: int = 0

    def merge(self, other: Tally) -> None:
        self.count += other.count
        self.sum_temp += other.sum_temp
        self.sum_humidity += other.sum_humidity
        self.uncertain += other.uncertain


@dataclass
class Ledger:
    """Per (lab, bucket) tallies plus the in-flight writes not yet answered."""

    tallies: dict[Key, Tally] = field(default_factory=dict)
    in_flight: dict[Key, int] = field(default_factory=dict)
    retries: RetryStats = field(default_factory=RetryStats)

    def _tally(self, key: Key) -> Tally:
        tally = self.tallies.get(key)
        if tally is None:
            tally = self.tallies[key] = Tally()
        return tally

    def begin(self, obs: Iterable[Mapping[str, Any]], bucket_of: Any) -> list[Key]:
        """Mark observations as sent; returns their keys for `settle`."""
        keys = [(o["lab_id"], bucket_of(o["timestamp"])) for o in obs]
        for key in keys:
            self.in_flight[key] = self.in_flight.get(key, 0) + 1
        return keys

    def settle(
        self, keys: list[Key], obs: Iterable[Mapping[str, Any]], outcome: str
    ) -> None:
        """Close writes begun with `begin`.

        outcome: "stored" (2xx), "rejected" (4xx: certainly not applied) or
        "unknown" (5xx, timeout, connection error: may have been applied).
        """
        for key, o in zip(keys, obs, strict=True):
            left = self.in_flight[key] - 1
            if left:
                self.in_flight[key] = left
            else:
                del self.in_flight[key]
            if outcome == "stored":
                tally = self._tally(key)
                tally.count += 1
                tally.sum_temp += o["temp"]
                tally.sum_humidity += o["humidity"]
            elif outcome == "unknown":
                self._tally(key).uncertain += 1

    def close(self) -> None:
        """Writes still in flight when the run stopped may or may not be stored."""
        for key, n in self.in_flight.items():
            self._tally(key).uncertain += n
        self.in_flight.clear()

    def merge(self, other: Ledger) -> None:
        for key, tally in other.tallies.items():
            self._tally(key).merge(tally)
        for key, n in other.in_flight.items():
            self.in_flight[key] = self.in_flight.get(key, 0) + n
        self.retries.merge(other.retries)

    def acknowledged(self) -> int:
        return sum(t.count for t in self.tallies.values())

    def to_wire(self) -> dict[str, Any]:
        """A msgpack/JSON-safe form (Locust custom messages use msgpack)."""
        rows = [
            [lab, bucket, t.count, t.sum_temp, t.sum_humidity, t.uncertain]
            for (lab, bucket), t in self.tallies.items()
        ]
        flight = [[lab, bucket, n] for (lab, bucket), n in self.in_flight.items()]
        return {"tallies": rows, "in_flight": flight, "retries": self.retries.to_wire()}

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Ledger:
        ledger = cls()
        for lab, bucket, count, st, sh, unc in data.get("tallies", []):
            ledger.tallies[(lab, int(bucket))] = Tally(int(count), st, sh, int(unc))
        for lab, bucket, n in data.get("in_flight", []):
            ledger.in_flight[(lab, int(bucket))] = int(n)
        ledger.retries = RetryStats.from_wire(data.get("retries", {}))
        return ledger
