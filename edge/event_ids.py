"""Event identifiers: time-ordered UUIDv7 URNs, fixed when the edge first stores an event.

Written by hand because Python 3.11's `uuid` module has no uuid7 (added in 3.14).
Time-ordered ids keep the cloud's event_id index appends-mostly.
"""

from __future__ import annotations

import random
import uuid


def uuid7(unix_ms: int, rng: random.Random) -> uuid.UUID:
    """A UUIDv7 (RFC 9562): 48-bit Unix milliseconds, version 7, 74 random bits."""
    assert 0 <= unix_ms < 1 << 48, unix_ms
    rand_a = rng.getrandbits(12)
    rand_b = rng.getrandbits(62)
    value = (unix_ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    return uuid.UUID(int=value)


def new_event_id(unix_ms: int, rng: random.Random) -> str:
    """An event id as carried in `Event.event_id`: `urn:uuid:<uuid7>`."""
    return f"urn:uuid:{uuid7(unix_ms, rng)}"
