"""The ``Idempotency-Key`` request header (IETF httpapi draft): syntax and fingerprint.

A key names one logical write. The store records it with the body's fingerprint on
every shard that holds a part of the write, in the same script call as the part
(see :mod:`humtemp.store`), so a retry stores only what is missing and a reused key
with another body is refused.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

HEADER = "Idempotency-Key"
MAX_LENGTH = 255


class IdempotencyKey(NamedTuple):
    """A validated key and the fingerprint of the request it came with."""

    key: str
    fingerprint: str


def parse(raw: str) -> str:
    """The key of a header value, or ``ValueError`` saying what is wrong with it.

    1-255 printable ASCII characters. The draft defines the value as a structured-field
    string (``"abc"``); the quotes are accepted and dropped, a bare token is kept."""
    value = raw.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    if not value:
        raise ValueError(f"{HEADER} must not be empty")
    if len(value) > MAX_LENGTH:
        raise ValueError(f"{HEADER} must be at most {MAX_LENGTH} characters, got {len(value)}")
    if not (value.isascii() and value.isprintable()):
        raise ValueError(f"{HEADER} may only contain printable ASCII characters")
    return value


def fingerprint(route: str, body: bytes) -> str:
    """What tells two requests apart: a 128-bit hash of the route and the exact body
    bytes, as hex (Redis's Lua msgpack decoder knows no binary type)."""
    return hashlib.blake2b(route.encode() + b"\n" + body, digest_size=16).hexdigest()
