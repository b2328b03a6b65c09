"""The group-commit script and the storage layout it writes, against a real redis-server.

fakeredis's Lua has no cmsgpack, so these run on the real thing.
"""

from __future__ import annotations

import time

import msgspec
import pytest

from humtemp import layout
from humtemp.layout import AGGREGATE
from humtemp.shard import WRITE_SCRIPT
from tests.support.redis_server import RedisServer

pack = msgspec.msgpack.encode


@pytest.fixture
def r(clean_shards: list[RedisServer]):  # type: ignore[no-untyped-def]
    return clean_shards[0].client()


def call(r, groups, keyed=(), mode="agg", prefix="p:"):  # type: ignore[no-untyped-def]
    """The script's whole reply: observations stored, or with keyed parts
    [observations stored, status of each keyed part...]."""
    return r.eval(WRITE_SCRIPT, 0, prefix, pack([groups, list(keyed)]), mode)


def write(r, groups, mode="agg", prefix="p:"):  # type: ignore[no-untyped-def]
    """Observations stored by an unkeyed flush (the reply is that count alone)."""
    reply = call(r, groups, mode=mode, prefix=prefix)
    assert isinstance(reply, int)
    return reply


def read(r, bucket, prefix="p:"):  # type: ignore[no-untyped-def]
    """Flat [lab, n, st, sh, tmin, tmax, hmin, hmax, ...] of a bucket's hash, by lab."""
    rows: list = []
    for lab, raw in sorted(r.hgetall(f"{prefix}b:{bucket}").items()):
        rows += [lab.decode(), *AGGREGATE.unpack(raw)]
    return rows


def test_write_merges_into_existing_aggregates_with_expiry(r) -> None:  # type: ignore[no-untyped-def]
    expire = 4102444800
    assert write(r, [("100", expire, ["a", 2, 3.0, 50.0, 1.0, 2.0, 20.0, 30.0])]) == 2
    assert write(r, [("100", expire, ["a", 1, 0.5, 10.0, 0.5, 0.5, 10.0, 10.0,
                                      "b", 1, 7.0, 7.0, 7.0, 7.0, 7.0, 7.0])]) == 2
    assert AGGREGATE.unpack(r.hget("p:b:100", "a")) == (3, 3.5, 60.0, 0.5, 2.0, 10.0, 30.0)
    assert sorted(r.keys("*")) == [b"p:b:100", b"p:i:100"], "a hash and an index per bucket"
    assert abs(time.time() + r.ttl("p:b:100") - expire) < 5
    assert abs(time.time() + r.ttl("p:i:100") - expire) < 5
    rows = read(r, 100)
    assert [rows[i] for i in range(0, len(rows), 8)] == ["a", "b"]
    assert read(r, 999) == []


def test_many_labs_in_one_flush_cross_the_chunk_size(r) -> None:  # type: ignore[no-untyped-def]
    """More labs than one HMGET/HSET chunk (1000), and than Lua's unpack() limit (~8000)."""
    expire = 4102444800
    rows: list = []
    for i in range(9001):
        rows += [f"lab{i}", 1, 1.0, 2.0, 1.0, 1.0, 2.0, 2.0]
    assert write(r, [("7", expire, rows)]) == 9001
    rows[1::8] = [2] * 9001  # every lab again, now with n=2
    assert write(r, [("7", expire, rows)]) == 18002
    assert r.hlen("p:b:7") == 9001
    assert r.zcard("p:i:7") == 9001, "every lab indexed once, however often it is merged"
    assert AGGREGATE.unpack(r.hget("p:b:7", "lab9000"))[:3] == (3, 2.0, 4.0)
    assert AGGREGATE.unpack(r.hget("p:b:7", "lab0"))[:3] == (3, 2.0, 4.0)


def test_groups_of_several_buckets_in_one_flush(r) -> None:  # type: ignore[no-untyped-def]
    assert write(r, [("10", 4102444800, ["a", 1, 5.0, 6.0, 5.0, 5.0, 6.0, 6.0]),
                     ("20", 4102444900, ["a", 2, 8.0, 8.0, 3.0, 5.0, 3.0, 5.0])]) == 3
    assert read(r, 10) == ["a", 1, 5.0, 6.0, 5.0, 5.0, 6.0, 6.0]
    assert read(r, 20) == ["a", 2, 8.0, 8.0, 3.0, 5.0, 3.0, 5.0]
    assert r.ttl("p:b:20") - r.ttl("p:b:10") in (99, 100, 101)


def test_float_sums_round_trip_exactly(r) -> None:  # type: ignore[no-untyped-def]
    expire = 4102444800
    values = [0.1, 0.2, 1e-7, 123456.789]
    total = 0.0
    for v in values:
        write(r, [("1", expire, ["x", 1, v, v, v, v, v, v])])
        total += v
    rows = read(r, 1)
    assert rows[2] == total


def test_dedup_mode_drops_repeated_timestamps(r) -> None:  # type: ignore[no-untyped-def]
    expire = 4102444800
    assert write(r, [("5", expire, ["a", [10, 1.0, 2.0, 11, 3.0, 4.0, 10, 99.0, 99.0]])],
                 mode="dedup") == 2
    assert write(r, [("5", expire, ["a", [11, 50.0, 50.0, 12, 5.0, 6.0]])], mode="dedup") == 1
    rows = read(r, 5)
    assert rows[:4] == ["a", 3, 9.0, 12.0]
    assert abs(time.time() + r.ttl("p:seen:5:a") - expire) < 5
    assert write(r, [("5", expire, ["a", [10, 7.0, 7.0, 12, 7.0, 7.0]])], mode="dedup") == 0
    assert read(r, 5)[:4] == ["a", 3, 9.0, 12.0], "a flush of repeats changes nothing"


def test_index_lists_the_labs_of_a_bucket_in_lab_id_order(r) -> None:  # type: ignore[no-untyped-def]
    """The sorted set the summaries page through: keys from humtemp.layout, lab-id order."""
    expire = 4102444800
    row = [1, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    write(r, [("3", expire, ["lab10", *row, "Lab2", *row])])
    write(r, [("3", expire, ["lab10", *row, "a/b", *row])])
    assert r.zrangebylex(layout.index_key(b"p:", 3), "-", "+") == [b"Lab2", b"a/b", b"lab10"]
    assert r.hlen(layout.bucket_key(b"p:", 3)) == 3
    assert set(r.zscore(layout.index_key(b"p:", 3), lab) for lab in ("Lab2", "a/b")) == {0.0}


ROW = [1, 1.0, 2.0, 1.0, 1.0, 2.0, 2.0]


def test_keyed_part_is_stored_once_with_its_record(r) -> None:  # type: ignore[no-untyped-def]
    """The record is written in the same call as the part: a second part under the same
    record is skipped (0), another fingerprint is refused (-1), and neither is merged."""
    expire = 4102444800
    part = ("key1", "fp-1", 60, [("9", expire, ["a", *ROW])])
    assert call(r, [], [part]) == [1, 1]
    assert call(r, [], [part]) == [0, 0]
    assert call(r, [], [("key1", "fp-2", 60, [("9", expire, ["b", *ROW])])]) == [0, -1]
    assert read(r, 9)[:2] == ["a", 1] and len(read(r, 9)) == 8
    record = layout.idempotency_key(b"p:", "key1")  # the name write.lua must use
    assert r.get(record) == b"fp-1"
    assert 50 < r.ttl(record) <= 60


def test_duplicates_in_one_flush_and_unkeyed_rows_of_the_same_lab(r) -> None:  # type: ignore[no-untyped-def]
    """Concurrent duplicates that meet in one call count once; keyed and unkeyed rows of
    one lab and bucket are merged, not overwritten."""
    expire = 4102444800
    part = ("dup", "fp", 60, [("9", expire, ["a", *ROW])])
    reply = call(r, [("9", expire, ["a", *ROW])], [part, part, ("claim", "x", 60, [])])
    assert reply == [2, 1, 0, 1]
    assert read(r, 9)[:4] == ["a", 2, 2.0, 4.0]
    assert r.get(layout.idempotency_key(b"p:", "claim")) == b"x", \
        "a part without rows records the key alone"


def test_an_error_reply_stores_nothing(r) -> None:  # type: ignore[no-untyped-def]
    """A WRONGTYPE in the second group fails in the reads, before any write."""
    expire = 4102444800
    r.set("p:b:2", "not a hash")
    with pytest.raises(Exception, match="WRONGTYPE"):
        call(r, [("1", expire, ["a", *ROW]), ("2", expire, ["a", *ROW])],
             [("k", "fp", 60, [("1", expire, ["b", *ROW])])])
    assert r.keys("p:b:1") == [] and r.get("p:k:k") is None


def test_out_of_memory_refuses_the_whole_call(r) -> None:  # type: ignore[no-untyped-def]
    """maxmemory reached under noeviction: the first write is refused, nothing stored."""
    expire = 4102444800
    r.config_set("maxmemory-policy", "noeviction")
    r.config_set("maxmemory", 1)
    try:
        with pytest.raises(Exception, match="OOM"):
            call(r, [("1", expire, ["a", *ROW])], [("k", "fp", 60, [])])
    finally:
        r.config_set("maxmemory", 0)
    assert r.keys("p:*") == []
