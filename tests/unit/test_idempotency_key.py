"""The Idempotency-Key header's syntax and the body fingerprint (pure logic)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from humtemp.idempotency import MAX_LENGTH, fingerprint, parse
from humtemp.outcomes import ShardOutcomeUnknown, ShardRefused, WriteFailed, refusal

PRINTABLE = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1,
                    max_size=MAX_LENGTH)


@given(PRINTABLE)
def test_any_printable_ascii_key_up_to_255_is_kept_as_sent(key: str) -> None:
    if not (len(key) >= 2 and key[0] == key[-1] == '"'):
        assert parse(key) == key


def test_a_structured_field_string_loses_its_quotes() -> None:
    assert parse('"abc-123"') == "abc-123"
    assert parse('  "abc"  ') == "abc"


@pytest.mark.parametrize(("raw", "why"), [
    ("", "must not be empty"),
    ('""', "must not be empty"),
    ("k" * 256, "at most 255 characters, got 256"),
    ("caf\u00e9", "printable ASCII"),
    ("a\x00b", "printable ASCII"),
    ("a\udcffb", "printable ASCII"),  # a non-UTF-8 byte as aiohttp hands it over
])
def test_malformed_keys_say_what_is_wrong(raw: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse(raw)


def test_fingerprint_tells_bodies_and_routes_apart() -> None:
    body = b'{"lab_id": "a", "timestamp": 1, "temp": 1, "humidity": 1}'
    assert fingerprint("/observation", body) == fingerprint("/observation", body)
    assert fingerprint("/observation", body) != fingerprint("/observation", body + b" ")
    assert fingerprint("/observation", body) != fingerprint("/observations", body)
    assert len(fingerprint("/observation", body)) == 32


@pytest.mark.parametrize(("reply", "code", "kind"), [
    ("OOM command not allowed when used memory > 'maxmemory'.", "storage_full", "oom"),
    ("Error running script: -OOM command not allowed", "storage_full", "oom"),
    ("READONLY You can't write against a read only replica.", "storage_read_only", "readonly"),
    ("MISCONF Redis is configured to save RDB snapshots", "storage_misconfigured", "misconf"),
    ("LOADING Redis is loading the dataset in memory", "storage_loading", "loading"),
    ("BUSY Redis is busy running a script", "storage_busy", "busy"),
    ("WRONGTYPE Operation against a key holding the wrong kind of value", "storage_error",
     "script"),
])
def test_every_error_reply_is_a_certain_refusal_with_its_code(
    reply: str, code: str, kind: str
) -> None:
    error = refusal("a", reply)
    assert isinstance(error, ShardRefused) and error.certain
    assert (error.code, error.kind) == (code, kind)
    assert "nothing was stored" in error.detail


def test_only_an_unknown_outcome_is_uncertain() -> None:
    unknown = ShardOutcomeUnknown("a", "timeout")
    assert not unknown.certain and unknown.code == "outcome_unknown"
    failed = WriteFailed(unknown, stored=3, not_stored=2, unknown=1)
    assert "stored 3, not stored 2, unknown 1" in str(failed)
