"""Compare a Ledger (what was acknowledged) with what the service reports.

Per (lab, bucket) it asks `GET /summary/lab?lab_id=X&offset=K` (K computed from
the bucket the observation fell into, so a run crossing a bucket boundary is
checked bucket by bucket) and demands: count exact, averages within 1e-6.  It
also reads `GET /summary?offset=K` (the original API) and demands the same
averages there and no labs of this run that were never written.  Writes with an
unknown outcome turn the exact check into a bound for that lab.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from loadtest.ledger import Key, Ledger, Tally
from loadtest.workload import BucketClock

TOLERANCE = 1e-6


class SummaryClient(Protocol):
    def lab(self, lab_id: str, offset: int) -> dict[str, Any]: ...
    def summary(self, offset: int) -> list[dict[str, Any]]: ...


@dataclass
class Verification:
    ok: bool = True
    labs_checked: int = 0
    buckets: list[int] = field(default_factory=list)
    acknowledged: int = 0
    stored: int = 0
    uncertain: int = 0
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def fail(self, **item: Any) -> None:
        self.ok = False
        self.mismatches.append(item)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self, limit: int = 20) -> list[str]:
        """Human summary: one line per lab that is off (first `limit`)."""
        head = (
            f"verification {'PASSED' if self.ok else 'FAILED'}: {self.labs_checked} lab-buckets,"
            f" {self.acknowledged} acknowledged, {self.stored} stored,"
            f" {self.uncertain} uncertain, {len(self.mismatches)} mismatches"
        )
        out = [head] + [f"  off: {m}" for m in self.mismatches[:limit]]
        if len(self.mismatches) > limit:
            out.append(f"  ... and {len(self.mismatches) - limit} more")
        return out + [f"  error: {e}" for e in self.errors]


def _close(a: float | None, b: float) -> bool:
    return a is not None and abs(a - b) <= TOLERANCE


class _Offsets:
    """Converts bucket starts into summary offsets, refreshing when time rolls over."""

    def __init__(self, client: SummaryClient, probe_lab: str) -> None:
        self.client, self.probe_lab = client, probe_lab
        self.lock = threading.Lock()
        self.refresh()

    def refresh(self) -> None:
        cur = self.client.lab(self.probe_lab, 0)
        start, end = int(cur["bucket_start"]), int(cur["bucket_end"])
        with self.lock:
            self.current, self.clock = start, BucketClock(start, end - start)

    def offset(self, bucket: int) -> int:
        with self.lock:
            return self.clock.offset_of(bucket, self.current)


def _check_lab(
    key: Key, tally: Tally, client: SummaryClient, offsets: _Offsets, result: Verification
) -> int:
    lab, bucket = key
    for _attempt in range(2):
        off = offsets.offset(bucket)
        got = client.lab(lab, off)
        if int(got["bucket_start"]) == bucket:
            break
        offsets.refresh()  # the current bucket moved while we were verifying
    else:
        result.fail(lab=lab, bucket=bucket, problem="service reports a different bucket",
                    got_bucket=got["bucket_start"])
        return 0
    count = int(got["count"])
    base = {"lab": lab, "bucket": bucket, "offset": off, "acknowledged": tally.count,
            "stored": count, "uncertain": tally.uncertain}
    if tally.uncertain:
        if not tally.count <= count <= tally.count + tally.uncertain:
            result.fail(**base, problem="count outside [acknowledged, acknowledged+uncertain]")
        return count
    if count != tally.count:
        result.fail(**base, problem="count differs")
        return count
    if tally.count and not (
        _close(got["avg_temp"], tally.sum_temp / tally.count)
        and _close(got["avg_humidity"], tally.sum_humidity / tally.count)
    ):
        result.fail(**base, problem="averages differ",
                    avg_temp=[got["avg_temp"], tally.sum_temp / tally.count],
                    avg_humidity=[got["avg_humidity"], tally.sum_humidity / tally.count])
    return count


def _check_summary(
    bucket: int, tallies: dict[str, Tally], prefix: str, client: SummaryClient,
    offsets: _Offsets, result: Verification,
) -> None:
    """The original `GET /summary` must agree for this run's labs (and show no others)."""
    off = offsets.offset(bucket)
    items = {i["lab_id"]: i for i in client.summary(off) if i["lab_id"].startswith(prefix)}
    if offsets.offset(bucket) != off:
        return  # bucket rolled over mid-check; per-lab checks already cover it
    for lab in sorted(set(items) - set(tallies)):
        result.fail(lab=lab, bucket=bucket, problem="in /summary but never written by this run")
    for lab, tally in tallies.items():
        item = items.get(lab)
        if tally.uncertain or tally.count == 0:
            continue
        if item is None:
            result.fail(lab=lab, bucket=bucket, problem="missing from /summary")
        elif set(item) != {"lab_id", "avg_temp", "avg_humidity"} or not (
            _close(item["avg_temp"], tally.sum_temp / tally.count)
            and _close(item["avg_humidity"], tally.sum_humidity / tally.count)
        ):
            result.fail(lab=lab, bucket=bucket, problem="/summary item differs", item=item)


def verify(ledger: Ledger, client: SummaryClient, prefix: str, parallel: int = 16) -> Verification:
    """Check every (lab, bucket) of `ledger` against the service; never raises."""
    ledger.close()
    result = Verification(acknowledged=ledger.acknowledged())
    result.uncertain = sum(t.uncertain for t in ledger.tallies.values())
    if not ledger.tallies:
        result.ok = False
        result.errors.append("nothing was acknowledged: there is nothing to verify")
        return result
    try:
        offsets = _Offsets(client, prefix + "probe")
        by_bucket: dict[int, dict[str, Tally]] = defaultdict(dict)
        for (lab, bucket), tally in ledger.tallies.items():
            by_bucket[bucket][lab] = tally
        result.buckets = sorted(by_bucket)
        items = sorted(ledger.tallies.items())
        check: Callable[[tuple[Key, Tally]], int] = lambda kt: _check_lab(  # noqa: E731
            kt[0], kt[1], client, offsets, result)
        with ThreadPoolExecutor(parallel) as pool:
            result.stored = sum(pool.map(check, items))
        result.labs_checked = len(items)
        for bucket, tallies in by_bucket.items():
            _check_summary(bucket, tallies, prefix, client, offsets, result)
    except Exception as exc:  # network or protocol error: verification did not pass
        result.ok = False
        result.errors.append(f"{type(exc).__name__}: {exc}")
    return result


class HttpSummaryClient:
    """Reads summaries over HTTP with one keep-alive session per thread."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        import requests  # a Locust dependency

        self.base = base_url.rstrip("/")
        self.timeout = timeout
        self._local = threading.local()
        self._requests = requests

    def _get(self, path: str, params: dict[str, Any]) -> Any:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = self._requests.Session()
        resp = session.get(self.base + path, params=params, timeout=self.timeout)
        resp.raise_for_status()
        return resp.json()

    def lab(self, lab_id: str, offset: int) -> dict[str, Any]:
        return self._get("/summary/lab", {"lab_id": lab_id, "offset": offset})

    def summary(self, offset: int) -> list[dict[str, Any]]:
        return self._get("/summary", {"offset": offset})
