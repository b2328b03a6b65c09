"""Compare a Ledger (what was acknowledged) with what the service reports.

Offsets K are computed from the bucket each observation fell into, so a run that
crosses a bucket boundary is checked bucket by bucket.  Every (lab, bucket) is
checked through `GET /summary/detail?offset=K` (count exact, averages within 1e-6,
no shard missing) and `GET /summary?offset=K` (the original API: same averages);
neither may list a lab of this run's prefix that was never written.  Up to
`lab_sample` of them (all, in small runs) are also read one by one through
`GET /summary/lab?lab_id=X&offset=K`.  Writes with an unknown outcome turn the
exact check into a bound for that lab; `exactly_once` says there were none, so every
acknowledged observation was counted exactly once (what a run with keyed, retried
writes must show even when shards failed under it).
"""

from __future__ import annotations

import random
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
    def detail(self, offset: int) -> dict[str, Any]: ...
    def summary(self, offset: int) -> list[dict[str, Any]]: ...


@dataclass
class Verification:
    ok: bool = True
    labs_checked: int = 0
    lab_endpoint_checked: int = 0
    buckets: list[int] = field(default_factory=list)
    acknowledged: int = 0
    stored: int = 0
    uncertain: int = 0
    exactly_once: bool = False
    retries: dict[str, Any] = field(default_factory=dict)
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
            f" {self.uncertain} uncertain, {len(self.mismatches)} mismatches,"
            f" exactly once: {'yes' if self.exactly_once else 'no'}"
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


def _compare(lab: str, bucket: int, tally: Tally, got: dict[str, Any] | None, source: str,
             result: Verification) -> int:
    """One (lab, bucket) against one service answer; returns the stored count."""
    count = int(got["count"]) if got else 0
    base = {"lab": lab, "bucket": bucket, "source": source, "acknowledged": tally.count,
            "stored": count, "uncertain": tally.uncertain}
    if tally.uncertain:
        if not tally.count <= count <= tally.count + tally.uncertain:
            result.fail(**base, problem="count outside [acknowledged, acknowledged+uncertain]")
    elif count != tally.count:
        result.fail(**base, problem="count differs")
    elif count and got and not (
        _close(got["avg_temp"], tally.sum_temp / count)
        and _close(got["avg_humidity"], tally.sum_humidity / count)
    ):
        result.fail(**base, problem="averages differ",
                    avg_temp=[got["avg_temp"], tally.sum_temp / count],
                    avg_humidity=[got["avg_humidity"], tally.sum_humidity / count])
    return count


def _fetch_bucket(fetch: Callable[[int], Any], bucket: int, offsets: _Offsets) -> Any:
    """Call fetch(offset) for `bucket`, retrying once if the current bucket moved meanwhile."""
    for _attempt in range(3):
        off = offsets.offset(bucket)
        got = fetch(off)
        if isinstance(got, dict):
            if got.get("bucket_start") == bucket:
                return got
            offsets.refresh()
            continue
        offsets.refresh()  # a plain list does not say its bucket: check time did not move
        if offsets.offset(bucket) == off:
            return got
    raise RuntimeError(f"could not read bucket {bucket}: the service reports another bucket")


def _check_detail(bucket: int, tallies: dict[str, Tally], prefix: str, client: SummaryClient,
                  offsets: _Offsets, result: Verification) -> int:
    """Every lab of the bucket at once, from GET /summary/detail (count exact, averages)."""
    detail = _fetch_bucket(client.detail, bucket, offsets)
    if detail["partial"]:
        result.errors.append(f"bucket {bucket}: shards missing {detail['missing_shards']}")
        result.ok = False
    items = {i["lab_id"]: i for i in detail["labs"] if i["lab_id"].startswith(prefix)}
    for lab in sorted(set(items) - set(tallies)):
        result.fail(lab=lab, bucket=bucket, source="/summary/detail",
                    problem="stored but never written by this run")
    return sum(_compare(lab, bucket, t, items.get(lab), "/summary/detail", result)
               for lab, t in tallies.items())


def _check_summary(bucket: int, tallies: dict[str, Tally], prefix: str, client: SummaryClient,
                   offsets: _Offsets, result: Verification) -> None:
    """The original GET /summary must agree for this run's labs (and show no others)."""
    listed = _fetch_bucket(client.summary, bucket, offsets)
    items = {i["lab_id"]: i for i in listed if i["lab_id"].startswith(prefix)}
    for lab in sorted(set(items) - set(tallies)):
        result.fail(lab=lab, bucket=bucket, source="/summary",
                    problem="listed but never written by this run")
    for lab, tally in tallies.items():
        if tally.uncertain or tally.count == 0:
            continue
        item = items.get(lab)
        if item is None or set(item) != {"lab_id", "avg_temp", "avg_humidity"}:
            result.fail(lab=lab, bucket=bucket, source="/summary",
                        problem="missing or malformed item", item=item)
        else:
            _compare(lab, bucket, tally, {**item, "count": tally.count}, "/summary", result)


def _check_lab(key: Key, tally: Tally, client: SummaryClient, offsets: _Offsets,
               result: Verification) -> None:
    lab, bucket = key
    got = _fetch_bucket(lambda off: client.lab(lab, off), bucket, offsets)
    _compare(lab, bucket, tally, got, "/summary/lab", result)


def verify(ledger: Ledger, client: SummaryClient, prefix: str, lab_sample: int = 1000,
           parallel: int = 8) -> Verification:
    """Check every (lab, bucket) of `ledger` against the service; never raises.

    All labs are checked through /summary/detail and /summary (one request per bucket);
    `lab_sample` lab-buckets (all of them when fewer; 0 = all) also through /summary/lab.
    """
    ledger.close()
    result = Verification(acknowledged=ledger.acknowledged())
    result.uncertain = sum(t.uncertain for t in ledger.tallies.values())
    result.retries = ledger.retries.to_wire()
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
        result.labs_checked = len(ledger.tallies)
        for bucket, tallies in sorted(by_bucket.items()):
            result.stored += _check_detail(bucket, tallies, prefix, client, offsets, result)
            _check_summary(bucket, tallies, prefix, client, offsets, result)
        items = sorted(ledger.tallies.items())
        if 0 < lab_sample < len(items):
            items = random.Random(prefix).sample(items, lab_sample)
        result.lab_endpoint_checked = len(items)
        with ThreadPoolExecutor(parallel) as pool:
            list(pool.map(lambda kt: _check_lab(kt[0], kt[1], client, offsets, result), items))
    except Exception as exc:  # network or protocol error: verification did not pass
        result.ok = False
        result.errors.append(f"{type(exc).__name__}: {exc}")
    result.exactly_once = (result.ok and result.uncertain == 0
                           and result.stored == result.acknowledged)
    return result


class HttpSummaryClient:
    """Reads summaries over HTTP with one keep-alive session per thread."""

    def __init__(self, base_url: str, timeout: float = 10.0, token: str = "") -> None:
        import requests  # a Locust dependency

        self.base = base_url.rstrip("/")
        # no-cache: a fresh read, not humtemp's short read cache or a read already in
        # flight, so every acknowledged write is in the answer.
        self.headers = {"Cache-Control": "no-cache"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.timeout = timeout
        self._local = threading.local()
        self._requests = requests

    def _get(self, path: str, params: dict[str, Any]) -> Any:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = self._requests.Session()
        resp = session.get(self.base + path, params=params, headers=self.headers,
                           timeout=self.timeout)
        resp.raise_for_status()
        return resp.json()

    def lab(self, lab_id: str, offset: int) -> dict[str, Any]:
        return self._get("/summary/lab", {"lab_id": lab_id, "offset": offset})

    def detail(self, offset: int) -> dict[str, Any]:
        return self._get("/summary/detail", {"offset": offset})

    def summary(self, offset: int) -> list[dict[str, Any]]:
        return self._get("/summary", {"offset": offset})
