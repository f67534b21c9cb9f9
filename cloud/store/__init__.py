"""What the services need from a store, as Protocols; `SqliteStore` is the embedded default.

The ingest logic (dedupe, gaps, high-water mark, projections) lives once in
`cloud.ingest.commit` and talks to an `IngestTransaction`; a store only provides atomic
primitives. `PostgresStore` (`cloud.store.postgres_store`, shared by several aggregators)
implements the same two Protocols and nothing in the services changes;
`cloud.store.factory.open_store` opens the one `[store] backend` names.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from cloud.store.records import (
    EventObjectKey,
    EventQuery,
    GapRecord,
    GatewayRecord,
    MeasureDelta,
    OnHandDelta,
    OnHandRecord,
    PositionRecord,
    QuarantineRecord,
    SeqRanges,
    StoredEvent,
    StreamState,
)
from cloud.store.sql import Sql

__all__ = [
    "EventObjectKey",
    "EventQuery",
    "GapRecord",
    "GatewayRecord",
    "IngestTransaction",
    "MeasureDelta",
    "OnHandDelta",
    "OnHandRecord",
    "PositionRecord",
    "QuarantineRecord",
    "SeqRanges",
    "Sql",
    "Store",
    "StoredEvent",
    "StreamState",
]


class IngestTransaction(Protocol):
    """One atomic unit of ingest work: everything commits together or nothing does."""

    async def stream_state(self, gateway_id: str, outbox_id: str) -> StreamState | None:
        """The delivery state of (gateway, outbox), read inside this transaction."""
        ...

    async def outbox_ids(self, gateway_id: str) -> list[str]:
        """Every outbox the gateway has used, oldest contact first."""
        ...

    async def save_stream_state(self, state: StreamState) -> None:
        """Insert or replace the delivery state of (state.gateway_id, state.outbox_id)."""
        ...

    async def record_gap(self, gap: GapRecord) -> None:
        """Remember seqs that will never arrive."""
        ...

    async def insert_events(self, events: Sequence[StoredEvent]) -> set[str]:
        """Insert events whose event_id is new; return the event_ids actually inserted."""
        ...

    async def stored_payloads(self, event_ids: Collection[str]) -> dict[str, bytes]:
        """The stored payload of each of `event_ids` that is in the store, keyed by the id asked for."""
        ...

    async def quarantine(self, records: Sequence[QuarantineRecord]) -> int:
        """Keep rejected events, once per (gateway, outbox, seq) however often sent; return rows added."""
        ...

    async def load_positions(self, object_ids: Collection[str]) -> dict[str, PositionRecord]:
        """Current positions of the objects that have one."""
        ...

    async def save_positions(self, positions: Sequence[PositionRecord]) -> None:
        """Insert or replace positions."""
        ...

    async def apply_on_hand(self, deltas: Sequence[OnHandDelta]) -> None:
        """Add deltas to on-hand rows, creating them at zero when absent."""
        ...

    async def apply_measures(self, deltas: Sequence[MeasureDelta]) -> None:
        """Add deltas to measured quantities, creating them at zero when absent."""
        ...


class Store(Protocol):
    """The operations the ingest and query services use."""

    def ingest_transaction(self) -> AbstractAsyncContextManager[IngestTransaction]:
        """A write transaction, bounded in time, that commits on clean exit.

        It is serialised with every other that reads the same stream state or positions
        (SQLite: with every other). Call `stream_state` before `save_stream_state`: that read
        is what locks the stream.
        """
        ...

    def write(self) -> AbstractAsyncContextManager[Sql]:
        """Plain SQL inside one write transaction (see `cloud.store.sql`); commits on clean exit."""
        ...

    def read(self) -> AbstractAsyncContextManager[Sql]:
        """Plain SQL reading the last committed state (see `cloud.store.sql`)."""
        ...

    async def get_position(self, key: str) -> PositionRecord | None:
        """A position by object id, else by EPC URI, else by EPC hex."""
        ...

    async def list_on_hand(
        self, gtin: str = "", biz_location: str = "", limit: int = 50_000, after: tuple[str, str] | None = None
    ) -> list[OnHandRecord]:
        """On-hand rows with a non-zero count or class quantity, by (gtin, biz_location), at most `limit`.

        Empty filters match all; `after` is the (gtin, biz_location) of the last row already
        read, for keyset paging. A caller that must see every row pages, or asks for one more
        than it accepts and refuses the answer when that many come back: `limit` truncates
        silently.
        """
        ...

    async def list_events(self, query: EventQuery) -> list[StoredEvent]:
        """Events matching `query`, newest first by (event_time, event_id); `mentions` left empty."""
        ...

    async def list_quarantine(self, limit: int, before_id: int | None = None) -> list[QuarantineRecord]:
        """Quarantined events, newest first by quarantine_id, those below `before_id` if given."""
        ...

    async def list_gateways(self) -> list[GatewayRecord]:
        """Every (gateway, outbox) delivery state with its gaps."""
        ...

    async def close(self) -> None:
        """Release connections; idempotent."""
        ...
