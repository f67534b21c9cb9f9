"""Pulling an ERP/WMS snapshot with httpx from a real HTTP server: fresh, stale while down, then unavailable."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from reconciliation_testkit import BASE_TIME_US, ManualClock, SnapshotHttpServer

from cloud.reconciliation.config import ReconciliationSection
from cloud.reconciliation.erp_pull import SnapshotSource
from cloud.reconciliation.models import OnHandSnapshot, RowRejection, SnapshotRow

DOCK = "urn:tallyport:loc:dc1:dock-4"
DOCUMENT = {
    "taken_at": "2025-01-31T11:00:00Z",
    "system": "sap-ewm",  # other keys are ignored
    "rows": [
        {"location": DOCK, "gtin": "09501101530003", "quantity": 12},
        {"location": DOCK, "gtin": 5901234123457, "quantity": 1},  # a number: leading zeros would be lost
        {"location": DOCK, "gtin": "05901234123457", "quantity": 2.5},
        {"location": DOCK, "gtin": "05901234123457", "quantity": 3},  # listed twice
        {"location": "", "gtin": "05901234123457", "quantity": 3},
        "not a row",
    ],
}
EXPECTED = OnHandSnapshot(
    "erp-dc1",
    BASE_TIME_US - 3_600_000_000,
    (SnapshotRow(DOCK, "09501101530003", 12.0), SnapshotRow(DOCK, "05901234123457", 2.5)),
)
TTL_S = 600


@pytest.fixture
async def http_server() -> AsyncIterator[SnapshotHttpServer]:
    server = await SnapshotHttpServer().start()
    server.answer_json(DOCUMENT)
    yield server
    await server.close()


def section(url: str, **settings: int) -> ReconciliationSection:
    return ReconciliationSection.model_validate(
        {"erp_url": url, "erp_source": "erp-dc1", "snapshot_ttl_s": TTL_S, "erp_timeout_ms": 2000, **settings}
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def source(http_server: SnapshotHttpServer, clock: ManualClock) -> AsyncIterator[SnapshotSource]:
    pulled = SnapshotSource(section(http_server.url), clock)
    yield pulled
    await pulled.aclose()


async def test_a_good_pull_is_fresh_with_its_rows_and_rejections(
    source: SnapshotSource, http_server: SnapshotHttpServer
) -> None:
    result = await source.pull()
    assert result.status == "fresh"
    assert result.snapshot == EXPECTED
    where = f"{http_server.url} rows"
    assert result.rejections == (
        RowRejection(where, 2, '"gtin" is missing or not a string (a number would lose its leading zeros)'),
        RowRejection(where, 4, f"05901234123457 at {DOCK} is already listed in row 3"),
        RowRejection(where, 5, "location is empty"),
        RowRejection(where, 6, "expected an object with location, gtin and quantity, got str"),
    )
    assert (result.pulled_at_us, result.age_s, result.error) == (BASE_TIME_US, 0.0, "")
    assert http_server.requests == 1


async def test_while_the_source_is_down_the_cached_snapshot_is_stale_then_unavailable_after_the_ttl(
    source: SnapshotSource, http_server: SnapshotHttpServer, clock: ManualClock
) -> None:
    fresh = await source.pull()
    assert fresh.status == "fresh"
    await http_server.close()  # the ERP goes down: connections are refused

    clock.advance(120)
    stale = await source.pull()
    assert stale.status == "stale"
    assert stale.snapshot is fresh.snapshot
    assert stale.rejections == fresh.rejections
    assert (stale.pulled_at_us, stale.age_s) == (BASE_TIME_US, 120.0)
    assert "ConnectError" in stale.error

    clock.advance(TTL_S - 120)  # exactly the TTL: still served
    assert (await source.pull()).status == "stale"

    clock.advance(1)
    expired = await source.pull()
    assert expired.status == "unavailable"
    assert expired.snapshot is None
    assert "past snapshot_ttl_s (600 s)" in expired.error
    assert "601 s old" in expired.error

    # An expired snapshot is dropped, never served again, even if asked right away.
    again = await source.pull()
    assert (again.status, again.snapshot, again.pulled_at_us) == ("unavailable", None, 0)


async def test_the_source_coming_back_gives_a_fresh_snapshot_again(
    source: SnapshotSource, http_server: SnapshotHttpServer, clock: ManualClock
) -> None:
    await http_server.close()
    first = await source.pull()
    assert (first.status, first.snapshot) == ("unavailable", None)  # nothing cached yet
    revived = await SnapshotHttpServer(http_server.port).start()
    try:
        revived.answer_json({"taken_at": "2025-01-31T12:00:00+01:00", "rows": []})
        clock.advance(5)
        result = await source.pull()
    finally:
        await revived.close()
    assert result.status == "fresh"
    assert result.snapshot == OnHandSnapshot("erp-dc1", BASE_TIME_US - 3_600_000_000, ())
    assert result.pulled_at_us == BASE_TIME_US + 5_000_000


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("status", "HTTP 503 Service Unavailable"),
        ("not_json", "the answer is not JSON"),
        ("no_rows", '"rows" is missing or not a list'),
        ("bad_time", "taken_at 'yesterday': expected ISO 8601"),
        ("too_large", "bytes announced; the limit is 1024"),
        ("too_large_chunked", "the answer is larger than the limit of 1024 bytes"),
        ("hang", "no complete answer within 0.2 s"),
    ],
)
async def test_a_failing_source_serves_the_cached_snapshot_as_stale_with_the_reason(
    http_server: SnapshotHttpServer, clock: ManualClock, fault: str, error: str
) -> None:
    small = {"taken_at": "2025-01-31T11:00:00Z", "rows": [{"location": DOCK, "gtin": "09501101530003", "quantity": 1}]}
    http_server.answer_json(small)
    source = SnapshotSource(section(http_server.url, erp_response_bytes_max=1024, erp_timeout_ms=200), clock)
    try:
        assert (await source.pull()).status == "fresh"
        if fault == "status":
            http_server.status = 503
        elif fault == "not_json":
            http_server.body = b"<html>maintenance</html>"
        elif fault == "no_rows":
            http_server.answer_json({"taken_at": "2025-01-31T11:00:00Z"})
        elif fault == "bad_time":
            http_server.answer_json({"taken_at": "yesterday", "rows": []})
        elif fault in ("too_large", "too_large_chunked"):
            http_server.answer_json({"taken_at": "2025-01-31T11:00:00Z", "rows": [], "padding": "x" * 2000})
            http_server.chunked = fault == "too_large_chunked"
        else:
            http_server.hang = True
        clock.advance(1)
        result = await source.pull()
    finally:
        await source.aclose()
    assert result.status == "stale"
    assert result.snapshot is not None and result.snapshot.rows == (SnapshotRow(DOCK, "09501101530003", 1.0),)
    assert result.age_s == 1.0
    assert error in result.error
    assert http_server.url in result.error
