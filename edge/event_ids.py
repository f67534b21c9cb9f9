"""Event identifiers: time-ordered UUIDv7 URNs, fixed when the edge first stores an event.

Written by hand because Python 3.11's `uuid` module has no uuid7 (added in 3.14).
Time-ordered ids keep the cloud's event_id index appends-mostly.
"""

from __future__ import annotations

import random
import uuid


def _uuid7_int(unix_ms: int, rng: random.Random) -> int:
    assert 0 <= unix_ms < 1 << 48, unix_ms
    rand = rng.getrandbits(74)
    return (unix_ms << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0b10 << 62) | (rand & ((1 << 62) - 1))


def uuid7(unix_ms: int, rng: random.Random) -> uuid.UUID:
    """A UUIDv7 (RFC 9562): 48-bit Unix milliseconds, version 7, variant 10, 74 random bits."""
    return uuid.UUID(int=_uuid7_int(unix_ms, rng))


def new_event_id(unix_ms: int, rng: random.Random) -> str:
    """An event id as carried in `Event.event_id`: `urn:uuid:<uuid7>` (formatted directly: on the hot path)."""
    h = f"{_uuid7_int(unix_ms, rng):032x}"
    return f"urn:uuid:{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
