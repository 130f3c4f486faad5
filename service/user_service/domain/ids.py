"""Identifiers: UUIDv7 (RFC 9562), time-ordered so new rows land at the end of indexes."""

import os
import time
from uuid import UUID


def uuid7() -> UUID:
    """A UUIDv7: 48 bits of Unix milliseconds, version 7, variant 10, 74 random bits."""
    unix_ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    rand_a = rand >> 68 & 0xFFF
    rand_b = rand & ((1 << 62) - 1)
    value = unix_ms << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    return UUID(int=value)
