"""Event ids: RFC 9562 UUIDv7, time-ordered, formatted as urn:uuid."""

from __future__ import annotations

import random
import uuid

from hypothesis import given
from hypothesis import strategies as st

from edge.event_ids import new_event_id, uuid7


@given(unix_ms=st.integers(min_value=0, max_value=2**48 - 1), seed=st.integers(min_value=0, max_value=2**32))
def test_event_id_is_a_version_7_uuid_carrying_its_millisecond(unix_ms: int, seed: int) -> None:
    event_id = new_event_id(unix_ms, random.Random(seed))
    assert event_id.startswith("urn:uuid:")
    parsed = uuid.UUID(event_id.removeprefix("urn:uuid:"))
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert parsed.int >> 80 == unix_ms
    assert parsed == uuid7(unix_ms, random.Random(seed))


def test_ids_sort_by_time() -> None:
    rng = random.Random(1)
    ids = [new_event_id(ms, rng) for ms in range(1_700_000_000_000, 1_700_000_000_100)]
    assert ids == sorted(ids) and len(set(ids)) == 100
