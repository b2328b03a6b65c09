"""Bucket alignment for tests: keep "now" in the middle of a bucket.

A test that writes now and reads bucket offset 0 would fail if a bucket boundary fell
between the write and the read (with the default day-long buckets aligned to 00:00 UTC,
around midnight). Aligning buckets so that now is mid-bucket gives a test half a bucket
either way.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from humtemp.model import Buckets

DAY = 86400
SESSION_MARGIN = 3600
"""Buckets longer than twice this share one offset for the whole test session."""
_SESSION_OFFSETS: dict[int, int] = {}


def mid_bucket_offset(duration: int = DAY) -> int:
    """A bucket offset (epoch seconds) that puts now in the middle of a bucket.

    For long buckets the offset is fixed at its first use in the session, so that two
    apps a test starts a second apart (e.g. before and after adding a shard) write into
    the same bucket; the session stays far from its edges. Short buckets (tests that
    cross a boundary on purpose) get an offset of their own each time."""
    if duration // 2 <= SESSION_MARGIN:
        return int(time.time()) - duration // 2
    return _SESSION_OFFSETS.setdefault(duration, int(time.time()) - duration // 2)


def mid_bucket_iso(duration: int = DAY) -> str:
    """The same as HUMTEMP_BUCKET_OFFSET wants it (ISO-8601 with a timezone)."""
    return datetime.fromtimestamp(mid_bucket_offset(duration), UTC).isoformat()


def mid_bucket_env(duration: int = DAY) -> dict[str, str]:
    """The environment of a humtemp process with now mid-bucket."""
    return {"HUMTEMP_BUCKET_OFFSET": mid_bucket_iso(duration),
            "HUMTEMP_BUCKET_DURATION": str(duration)}


def bucket_key(env: dict[str, str], ts: int, prefix: str = "humtemp:") -> str:
    """The Redis key of the bucket holding ``ts``, for buckets set up by ``mid_bucket_env``."""
    offset = int(datetime.fromisoformat(env["HUMTEMP_BUCKET_OFFSET"]).timestamp())
    buckets = Buckets(offset, int(env["HUMTEMP_BUCKET_DURATION"]), 1)
    return f"{prefix}b:{buckets.start(ts)}"
