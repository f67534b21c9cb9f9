"""Pull an on-hand snapshot from an ERP/WMS over HTTP, keeping the last good one under a time-to-live.

The source answers `GET [reconciliation] erp_url` with status 200 and a JSON document:

    {
      "taken_at": "2026-11-29T10:00:00Z",          # when the source took it: ISO 8601 with a zone
      "rows": [                                     # the whole on-hand of the locations it lists
        {"location": "urn:tallyport:loc:dc1:dock-4", "gtin": "09501101530003", "quantity": 12},
        ...
      ]
    }

Other top-level keys are ignored (sources add metadata). `gtin` is a string (a number would lose
its leading zeros); `quantity` a number >= 0. A bad row is rejected with its index and reason and
the other rows load; a place listed twice keeps its first row.

Limits: `erp_timeout_ms` bounds connect, each read and the whole exchange; an answer larger than
`erp_response_bytes_max` (by Content-Length, or while streaming) is refused; redirects are not
followed; any status but 200 is a failure.

Caching: each good pull replaces the cached snapshot. When a pull fails (unreachable, timeout,
bad status, not JSON, wrong shape), the cached snapshot is served with status "stale" and its age
(now − when it was pulled) while that age is at most `snapshot_ttl_s`; after that the source is
"unavailable" and no snapshot is served: an expired snapshot is never used. A change of
availability is logged once, not on every failed pull.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from cloud.reconciliation.config import ReconciliationSection
from cloud.reconciliation.files import parse_time
from cloud.reconciliation.models import (
    OnHandSnapshot,
    RowRejection,
    SnapshotRow,
    check_gtin,
    check_location,
    check_quantity,
)
from cloud.timestamps import MICROS_PER_SECOND, Clock, system_clock_us

__all__ = ["PullResult", "PullStatus", "SnapshotSource", "parse_snapshot_document"]

log = logging.getLogger(__name__)

PullStatus = Literal["fresh", "stale", "unavailable"]
ROWS_MAX = 500_000
_READ_CHUNK_BYTES = 64 * 1024


class SourceFailure(Exception):
    """A pull did not give a usable snapshot; the message says why (never leaves this module)."""


@dataclass(frozen=True, slots=True)
class PullResult:
    """What a pull gave: a fresh snapshot, the cached one marked stale, or nothing (unavailable)."""

    status: PullStatus
    source: str
    snapshot: OnHandSnapshot | None  # None exactly when unavailable
    rejections: tuple[RowRejection, ...]  # rows of the served snapshot that were not loaded
    pulled_at_us: int  # when the served snapshot was fetched; 0 when none
    age_s: float  # now − pulled_at; 0 when fresh or unavailable
    error: str  # why the latest pull failed; "" when fresh


@dataclass(frozen=True, slots=True)
class _Cached:
    snapshot: OnHandSnapshot
    rejections: tuple[RowRejection, ...]
    pulled_at_us: int


class SnapshotSource:
    """The configured ERP/WMS source: `await source.pull()`, then `await source.aclose()`."""

    def __init__(
        self,
        section: ReconciliationSection,
        clock: Clock = system_clock_us,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        assert section.erp_url, "no [reconciliation] erp_url configured"
        self._section = section
        self._clock = clock
        timeout_s = section.erp_timeout_ms / 1000
        self._timeout_s = timeout_s
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s), follow_redirects=False, transport=transport)
        self._cached: _Cached | None = None
        self._available: bool | None = None
        self._lock = asyncio.Lock()  # the poller and an RPC pulling at once fetch once each, in turn

    @property
    def name(self) -> str:
        """The source name pulled snapshots are recorded under."""
        return self._section.erp_source

    async def pull(self) -> PullResult:
        """Fetch a snapshot now; on failure serve the cached one while it is within its TTL."""
        async with self._lock:
            try:
                snapshot, rejections = await self._fetch()
            except SourceFailure as exc:
                return self._fallback(str(exc))
            now_us = self._clock()
            self._cached = _Cached(snapshot, rejections, now_us)
            self._note_availability(True, "")
            return PullResult("fresh", self.name, snapshot, rejections, now_us, 0.0, "")

    async def aclose(self) -> None:
        """Close the HTTP client; idempotent."""
        await self._client.aclose()

    def _fallback(self, error: str) -> PullResult:
        now_us = self._clock()
        cached = self._cached
        if cached is not None:
            age_s = max(0, now_us - cached.pulled_at_us) / MICROS_PER_SECOND
            if age_s <= self._section.snapshot_ttl_s:
                self._note_availability(False, error)
                return PullResult(
                    "stale", self.name, cached.snapshot, cached.rejections, cached.pulled_at_us, age_s, error
                )
            ttl_s = self._section.snapshot_ttl_s
            error = f"{error}; the last good snapshot is {age_s:.0f} s old, past snapshot_ttl_s ({ttl_s} s)"
            self._cached = None  # expired: never served again
        self._note_availability(False, error)
        return PullResult("unavailable", self.name, None, (), 0, 0.0, error)

    def _note_availability(self, available: bool, error: str) -> None:
        if available == self._available:
            return
        self._available = available
        url = self._section.erp_url
        if available:
            log.info("ERP/WMS source available", extra={"source": self.name, "url": url})
        else:
            log.warning("ERP/WMS source failing", extra={"source": self.name, "url": url, "error": error})

    async def _fetch(self) -> tuple[OnHandSnapshot, tuple[RowRejection, ...]]:
        url = self._section.erp_url
        try:
            async with asyncio.timeout(self._timeout_s):
                body = await self._get(url)
        except TimeoutError:
            raise SourceFailure(f"GET {url}: no complete answer within {self._timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise SourceFailure(f"GET {url}: {type(exc).__name__}: {exc}") from exc
        try:
            document = json.loads(body)
        except ValueError as exc:  # JSON and UTF-8 errors
            raise SourceFailure(f"GET {url}: the answer is not JSON: {exc}") from exc
        try:
            return parse_snapshot_document(document, self.name, url)
        except ValueError as exc:
            raise SourceFailure(f"GET {url}: {exc}") from exc

    async def _get(self, url: str) -> bytes:
        limit = self._section.erp_response_bytes_max
        async with self._client.stream("GET", url, headers={"Accept": "application/json"}) as response:
            if response.status_code != httpx.codes.OK:
                raise SourceFailure(f"GET {url}: HTTP {response.status_code} {response.reason_phrase}")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise SourceFailure(f"GET {url}: {declared} bytes announced; the limit is {limit}")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes(_READ_CHUNK_BYTES):
                size += len(chunk)
                if size > limit:
                    raise SourceFailure(f"GET {url}: the answer is larger than the limit of {limit} bytes")
                chunks.append(chunk)
        return b"".join(chunks)


def parse_snapshot_document(document: Any, source: str, where: str) -> tuple[OnHandSnapshot, tuple[RowRejection, ...]]:
    """The snapshot in a pulled JSON document, and its rejected rows; ValueError when its shape is wrong."""
    if not isinstance(document, dict):
        raise ValueError(f"expected a JSON object with taken_at and rows, got {type(document).__name__}")
    taken_at = document.get("taken_at")
    if not isinstance(taken_at, str):
        raise ValueError('"taken_at" is missing or not a string (expected ISO 8601 like 2026-11-29T10:00:00Z)')
    taken_at_us = parse_time(taken_at, "taken_at")
    rows = document.get("rows")
    if not isinstance(rows, list):
        raise ValueError('"rows" is missing or not a list')
    if len(rows) > ROWS_MAX:
        raise ValueError(f"{len(rows)} rows; the limit is {ROWS_MAX}")
    loaded: list[SnapshotRow] = []
    rejections: list[RowRejection] = []
    seen: dict[tuple[str, str], int] = {}
    for index, raw in enumerate(rows, start=1):
        try:
            row = _row(raw)
        except ValueError as exc:
            rejections.append(RowRejection(f"{where} rows", index, str(exc)))
            continue
        place = (row.biz_location, row.gtin)
        if place in seen:
            reason = f"{row.gtin} at {row.biz_location} is already listed in row {seen[place]}"
            rejections.append(RowRejection(f"{where} rows", index, reason))
            continue
        seen[place] = index
        loaded.append(row)
    return OnHandSnapshot(source, taken_at_us, tuple(loaded)), tuple(rejections)


def _row(raw: Any) -> SnapshotRow:
    if not isinstance(raw, dict):
        raise ValueError(f"expected an object with location, gtin and quantity, got {type(raw).__name__}")
    location, gtin, quantity = raw.get("location"), raw.get("gtin"), raw.get("quantity")
    if not isinstance(location, str):
        raise ValueError('"location" is missing or not a string')
    if not isinstance(gtin, str):
        raise ValueError('"gtin" is missing or not a string (a number would lose its leading zeros)')
    if isinstance(quantity, bool) or not isinstance(quantity, int | float):
        raise ValueError('"quantity" is missing or not a number')
    try:
        value = float(quantity)
    except OverflowError:  # a JSON integer too large for a float
        raise ValueError('"quantity" is out of range') from None
    if not math.isfinite(value):
        raise ValueError('"quantity" is not finite')
    return SnapshotRow(check_location(location), check_gtin(gtin), check_quantity(value))
