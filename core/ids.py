"""Opaque, time-sortable ids: a prefix, 48 bits of milliseconds and 80 random bits in Crockford
base32 (the ULID layout), so ids sort by creation time and cursors can page on them."""

from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"

JOB = "job"
BATCH = "bat"
API_KEY = "key"
FILE = "file"
DELIVERY = "msg"  # doubles as the Standard Webhooks `webhook-id`


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, index = divmod(value, 32)
        chars.append(_ALPHABET[index])
    return "".join(reversed(chars))


def new_id(prefix: str, *, at_ms: int | None = None) -> str:
    millis = int(time.time() * 1000) if at_ms is None else at_ms
    return f"{prefix}_{_encode(millis, 10)}{_encode(secrets.randbits(80), 16)}"


def new_ids(prefix: str, count: int) -> list[str]:
    """Many ids at once, strictly increasing, for bulk inserts that keep submission order."""
    millis = int(time.time() * 1000)
    head = f"{prefix}_{_encode(millis, 10)}"
    start = secrets.randbits(79)
    return [head + _encode(start + n, 16) for n in range(count)]
