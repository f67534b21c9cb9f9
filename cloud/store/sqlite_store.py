"""The embedded store: one SQLite file in WAL mode, reached through aiosqlite.

Durability is explicit (`[store] durability`), and so is its loss window:
- "full"   (`PRAGMA synchronous=FULL`): the WAL is fsynced at every commit, so a batch the
            cloud has acked survives a process crash, an OS crash and power loss.
- "normal" (`PRAGMA synchronous=NORMAL`): the WAL is fsynced only at checkpoints. A commit
            survives a process crash (`kill -9`), but the last commits before an OS crash or
            power loss may roll back, although the edge already deleted them on the ack:
            choose it only where losing the last second of acked events is acceptable.
Either way the database is never corrupted by a crash.

Two connections: a writer, serialised by an asyncio lock so one ingest transaction runs at
a time (SQLite has one writer anyway), and a `query_only` reader, which in WAL mode sees
the last committed state without waiting for the writer. Every await on either is bounded
by `operation_timeout_ms`; sqlite3 errors become `StoreError` here and nowhere else.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Collection, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace
from itertools import chain
from operator import attrgetter
from pathlib import Path
from typing import Any, Literal

import aiosqlite

from cloud.errors import SchemaVersionError, StoreError
from cloud.store.records import (
    POSITION_COLUMNS,
    EventQuery,
    GapRecord,
    GatewayRecord,
    MeasureDelta,
    OnHandDelta,
    OnHandRecord,
    PositionRecord,
    QuarantineRecord,
    StoredEvent,
    StreamState,
    position_from_row,
    seq_ranges_from_text,
    seq_ranges_to_text,
)
from cloud.store.schema import MIGRATIONS, SCHEMA_VERSION
from cloud.store.sql import Dialect

__all__ = ["Durability", "SqliteStore"]

log = logging.getLogger(__name__)

Durability = Literal["full", "normal"]
_SYNCHRONOUS: dict[str, str] = {"full": "FULL", "normal": "NORMAL"}
_SYNCHRONOUS_NAMES: dict[int, str] = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}

# Rows per multi-row INSERT: 9 columns x 500 rows stays far below SQLite's 32766 variables (3.32+;
# RETURNING needs 3.35 anyway). A default 500-event batch takes one statement: each await on
# aiosqlite costs the event loop about 30 us, whatever the statement does.
INSERT_ROWS_PER_STATEMENT = 500
# Parameters per `IN (...)` lookup.
LOOKUP_KEYS_PER_STATEMENT = 500
# A rollback after a failed or cancelled transaction gets its own, short, bound.
ROLLBACK_TIMEOUT_S = 5.0
# Gaps returned per (gateway, outbox) by list_gateways, newest kept.
GAPS_PER_STREAM_MAX = 100
# Class quantities are doubles: treat anything this close to zero as zero.
QUANTITY_EPSILON = 1e-9

# A position as the row of POSITION_COLUMNS, read in one C call.
_POSITION_ROW = attrgetter(*(name.strip() for name in POSITION_COLUMNS.split(",")))
_EVENT_COLUMNS = "event_id, gateway_id, outbox_id, seq, event_time_us, biz_location, biz_step, received_at_us, payload"
# A stored event as the row of _EVENT_COLUMNS.
_EVENT_ROW = attrgetter(*(name.strip() for name in _EVENT_COLUMNS.split(",")))
_STREAM_COLUMNS = (
    "gateway_id, outbox_id, committed_through_seq, agent_version, first_contact_us, last_contact_us, "
    "events_stored, duplicates, rejects, batches, clock_offset_ms, committed_ranges"
)


@contextmanager
def _sqlite_errors(what: str) -> Iterator[None]:
    """The one boundary where sqlite3 errors become ours."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(f"{what}: {exc}") from exc


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _stream_from_row(row: Sequence[Any]) -> StreamState:
    # The last column is committed_ranges, kept as text.
    return replace(StreamState(*row[:-1]), committed_ranges=seq_ranges_from_text(row[-1]))


class SqliteStore:
    """The SQLite implementation of `cloud.store.Store`; create it with `await SqliteStore.open(...)`."""

    def __init__(
        self,
        path: Path,
        durability: Durability,
        writer: aiosqlite.Connection,
        reader: aiosqlite.Connection,
        operation_timeout_s: float,
    ) -> None:
        self.path = path
        self.durability = durability  # applied and read back on both connections
        self._writer = writer
        self._reader = reader
        self._operation_timeout_s = operation_timeout_s
        self._write_lock = asyncio.Lock()
        self._closed = False
        self._broken: str | None = None  # why the writer can no longer be trusted, if it cannot

    @classmethod
    async def open(
        cls, path: Path, durability: Durability = "full", *, operation_timeout_ms: int = 10_000
    ) -> SqliteStore:
        """Open (creating if needed) and migrate the database at `path`."""
        timeout_s = operation_timeout_ms / 1000
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{path}: cannot create the store's directory: {exc}") from exc
        writer = await _connect(path, durability, timeout_s, query_only=False)
        try:
            async with asyncio.timeout(timeout_s * 10):  # migrations may rewrite tables: allow more
                await _migrate(writer, path)
            reader = await _connect(path, durability, timeout_s, query_only=True)
        except BaseException:
            await writer.close()
            raise
        log.info(
            "store opened",
            extra={"path": str(path), "durability": durability, "schema_version": SCHEMA_VERSION},
        )
        return cls(path, durability, writer, reader, timeout_s)

    async def close(self) -> None:
        """Close both connections; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            # Let a running transaction finish or roll back first; both are bounded.
            async with asyncio.timeout(self._operation_timeout_s + ROLLBACK_TIMEOUT_S):
                await self._write_lock.acquire()
        except TimeoutError:
            log.error("closing the store while a transaction is still running")
        else:
            self._write_lock.release()
        for connection in (self._reader, self._writer):
            with _sqlite_errors("close the store"):
                await connection.close()
        log.info("store closed", extra={"path": str(self.path)})

    def _check_usable(self) -> None:
        if self._closed:
            raise StoreError("the store is closed")
        if self._broken is not None:
            raise StoreError(f"the store's writer is unusable ({self._broken}); restart the server")

    # ---- writing -------------------------------------------------------------------------

    @asynccontextmanager
    async def _write_transaction(self, what: str) -> AsyncIterator[aiosqlite.Connection]:
        """BEGIN IMMEDIATE ... COMMIT on the writer; rolls back on any exception or cancellation."""
        self._check_usable()
        try:
            async with asyncio.timeout(self._operation_timeout_s):
                await self._write_lock.acquire()
        except TimeoutError as exc:
            raise StoreError(
                f"waited {self._operation_timeout_s:g} s for the store's write lock; another batch is stuck"
            ) from exc
        try:
            self._check_usable()
            async with self._bounded(what):
                try:
                    # BEGIN inside the try: a stream cancelled while BEGIN waits in aiosqlite's thread
                    # (its gateway vanished) still opens the transaction there, and it must be rolled back.
                    with _sqlite_errors("begin a transaction"):
                        await self._writer.execute("BEGIN IMMEDIATE")
                    yield self._writer
                    with _sqlite_errors("commit"):
                        await self._writer.execute("COMMIT")
                except BaseException as exc:
                    await self._rollback(interrupt=isinstance(exc, asyncio.CancelledError))
                    raise
        finally:
            self._write_lock.release()

    @asynccontextmanager
    async def ingest_transaction(self) -> AsyncIterator[_SqliteIngestTransaction]:
        """BEGIN IMMEDIATE ... COMMIT on the writer; rolls back on any exception or cancellation."""
        async with self._write_transaction("ingest transaction") as writer:
            yield _SqliteIngestTransaction(writer)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[_SqliteSql]:
        """A `Sql` inside one write transaction, serialised with ingest; commits on clean exit."""
        async with self._write_transaction("write transaction") as writer:
            yield _SqliteSql(writer)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[_SqliteSql]:
        """A `Sql` on the query-only reader: each statement sees the last committed state."""
        self._check_usable()
        async with self._bounded("read"):
            yield _SqliteSql(self._reader)

    async def _rollback(self, *, interrupt: bool) -> None:
        if interrupt:
            # A timeout or a cancelled stream left a statement running in aiosqlite's
            # thread: stop it, so the ROLLBACK queued behind it runs promptly.
            await self._writer.interrupt()
        try:
            async with asyncio.timeout(ROLLBACK_TIMEOUT_S):
                # A cancelled await leaves its statement (BEGIN, COMMIT...) queued or running in
                # aiosqlite's thread: wait for it, so that `in_transaction` tells the state it left.
                await self._writer.execute("SELECT 1")
                if self._writer.in_transaction:
                    await self._writer.execute("ROLLBACK")
        except (sqlite3.Error, TimeoutError) as exc:
            self._broken = f"rollback failed: {exc!r}"
            log.error("store rollback failed; refusing further writes", extra={"error": repr(exc)})

    @asynccontextmanager
    async def _bounded(self, what: str) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self._operation_timeout_s):
                yield
        except TimeoutError as exc:
            raise StoreError(f"{what} took longer than {self._operation_timeout_s:g} s") from exc

    # ---- reading -------------------------------------------------------------------------

    async def _fetch(self, what: str, sql: str, parameters: Sequence[Any] = ()) -> list[Any]:
        self._check_usable()
        async with self._bounded(what):
            with _sqlite_errors(what):
                return list(await self._reader.execute_fetchall(sql, parameters))

    async def get_position(self, key: str) -> PositionRecord | None:
        """A position by object id, else by EPC URI, else by EPC hex (case-insensitive)."""
        lookups = (
            ("object_id = ?", key),
            ("epc_uri = ?", key),
            ("epc_hex = ?", key.upper()),
        )
        for condition, value in lookups:
            rows = await self._fetch(
                "look up a position",
                f"SELECT {POSITION_COLUMNS} FROM positions WHERE {condition} ORDER BY event_time_us DESC LIMIT 1",
                (value,),
            )
            if rows:
                return position_from_row(rows[0])
        return None

    async def list_on_hand(
        self, gtin: str = "", biz_location: str = "", limit: int = 50_000, after: tuple[str, str] | None = None
    ) -> list[OnHandRecord]:
        """Rows with a non-zero count or class quantity, by GTIN then location, after `after`; at most `limit`."""
        # The row value seeks in the primary key (gtin, biz_location): each page costs its own rows.
        keyset = "AND (gtin, biz_location) > (?5, ?6) " if after is not None else ""
        rows = await self._fetch(
            "list on-hand",
            "SELECT gtin, biz_location, serialized_count, class_quantity FROM on_hand "
            "WHERE (?1 = '' OR gtin = ?1) AND (?2 = '' OR biz_location = ?2) "
            f"AND (serialized_count <> 0 OR abs(class_quantity) > ?3) {keyset}"
            "ORDER BY gtin, biz_location LIMIT ?4",
            (gtin, biz_location, QUANTITY_EPSILON, limit, *(after or ())),
        )
        return [OnHandRecord(row[0], row[1], row[2], row[3]) for row in rows]

    async def list_events(self, query: EventQuery) -> list[StoredEvent]:
        """Events newest first by (event_time_us, event_id), filtered, after `query.before`."""
        conditions: list[str] = []
        parameters: list[Any] = []
        for column, value in (
            ("e.gateway_id", query.gateway_id),
            ("e.biz_location", query.biz_location),
        ):
            if value:
                conditions.append(f"{column} = ?")
                parameters.append(value)
        if query.biz_step:
            conditions.append("e.biz_step = ?")
            parameters.append(query.biz_step)
        for column, value in (("o.gtin", query.gtin), ("o.object_id", query.object_id)):
            if value:
                conditions.append(
                    f"EXISTS (SELECT 1 FROM event_objects o WHERE o.event_id = e.event_id AND {column} = ?)"
                )
                parameters.append(value)
        if query.since_us is not None:
            conditions.append("e.event_time_us >= ?")
            parameters.append(query.since_us)
        if query.until_us is not None:
            conditions.append("e.event_time_us < ?")
            parameters.append(query.until_us)
        if query.before is not None:
            conditions.append("(e.event_time_us, e.event_id) < (?, ?)")
            parameters.extend(query.before)
        where = " AND ".join(conditions) or "1"
        columns = ", ".join(f"e.{name.strip()}" for name in _EVENT_COLUMNS.split(","))
        rows = await self._fetch(
            "list events",
            f"SELECT {columns} FROM events e WHERE {where} ORDER BY e.event_time_us DESC, e.event_id DESC LIMIT ?",
            (*parameters, query.limit),
        )
        return [StoredEvent(*row) for row in rows]

    async def list_quarantine(self, limit: int, before_id: int | None = None) -> list[QuarantineRecord]:
        """Quarantined events newest first, those with quarantine_id below `before_id` if given."""
        rows = await self._fetch(
            "list quarantine",
            "SELECT gateway_id, outbox_id, seq, event_id, reason, received_at_us, payload, quarantine_id "
            "FROM quarantine WHERE (?1 IS NULL OR quarantine_id < ?1) ORDER BY quarantine_id DESC LIMIT ?2",
            (before_id, limit),
        )
        return [QuarantineRecord(*row) for row in rows]

    async def list_gateways(self) -> list[GatewayRecord]:
        """Every (gateway, outbox) by gateway then outbox, with its newest gaps (oldest first)."""
        streams = await self._fetch(
            "list gateways",
            f"SELECT {_STREAM_COLUMNS} FROM gateway_streams ORDER BY gateway_id, outbox_id",
        )
        gap_rows = await self._fetch(
            "list gaps",
            "SELECT gateway_id, outbox_id, first_seq, last_seq, reason, recorded_at_us FROM ("
            "  SELECT *, row_number() OVER ("
            "    PARTITION BY gateway_id, outbox_id ORDER BY gap_id DESC) AS newness"
            "  FROM gaps) WHERE newness <= ? ORDER BY gateway_id, outbox_id, gap_id",
            (GAPS_PER_STREAM_MAX,),
        )
        gaps: dict[tuple[str, str], list[GapRecord]] = {}
        for row in gap_rows:
            gaps.setdefault((row[0], row[1]), []).append(GapRecord(*row))
        return [
            GatewayRecord(state, tuple(gaps.get((state.gateway_id, state.outbox_id), ())))
            for state in map(_stream_from_row, streams)
        ]


class _SqliteSql:
    """`cloud.store.sql.Sql` on one aiosqlite connection; the caller owns the transaction."""

    dialect: Dialect = "sqlite"

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._connection = connection

    async def execute(self, statement: str, parameters: Sequence[object] = ()) -> int:
        with _sqlite_errors("execute a statement"):
            cursor = await self._connection.execute(statement, parameters)
            return max(cursor.rowcount, 0)

    async def execute_many(self, statement: str, rows: Iterable[Sequence[object]]) -> None:
        with _sqlite_errors("execute a statement"):
            await self._connection.executemany(statement, rows)

    async def fetch_all(self, statement: str, parameters: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with _sqlite_errors("run a query"):
            return [tuple(row) for row in await self._connection.execute_fetchall(statement, parameters)]

    async def fetch_one(self, statement: str, parameters: Sequence[object] = ()) -> tuple[Any, ...] | None:
        with _sqlite_errors("run a query"):
            async with self._connection.execute(statement, parameters) as cursor:
                row = await cursor.fetchone()
        return None if row is None else tuple(row)


class _SqliteIngestTransaction:
    """`cloud.store.IngestTransaction` on the writer connection, inside BEGIN IMMEDIATE."""

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._connection = connection

    async def _fetch(self, what: str, sql: str, parameters: Sequence[Any]) -> list[Any]:
        with _sqlite_errors(what):
            return list(await self._connection.execute_fetchall(sql, parameters))

    async def _execute_many(self, what: str, sql: str, rows: Iterable[Sequence[Any]]) -> int:
        """Run `sql` once per row; return the number of rows changed."""
        with _sqlite_errors(what):
            cursor = await self._connection.executemany(sql, rows)
            return max(cursor.rowcount, 0)

    async def stream_state(self, gateway_id: str, outbox_id: str) -> StreamState | None:
        rows = await self._fetch(
            "read the stream state",
            f"SELECT {_STREAM_COLUMNS} FROM gateway_streams WHERE gateway_id = ? AND outbox_id = ?",
            (gateway_id, outbox_id),
        )
        return _stream_from_row(rows[0]) if rows else None

    async def outbox_ids(self, gateway_id: str) -> list[str]:
        rows = await self._fetch(
            "list the gateway's outboxes",
            "SELECT outbox_id FROM gateway_streams WHERE gateway_id = ? ORDER BY first_contact_us, outbox_id",
            (gateway_id,),
        )
        return [row[0] for row in rows]

    async def save_stream_state(self, state: StreamState) -> None:
        await self._execute_many(
            "save the stream state",
            f"INSERT OR REPLACE INTO gateway_streams ({_STREAM_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    state.gateway_id,
                    state.outbox_id,
                    state.committed_through_seq,
                    state.agent_version,
                    state.first_contact_us,
                    state.last_contact_us,
                    state.events_stored,
                    state.duplicates,
                    state.rejects,
                    state.batches,
                    state.clock_offset_ms,
                    seq_ranges_to_text(state.committed_ranges),
                )
            ],
        )

    async def record_gap(self, gap: GapRecord) -> None:
        await self._execute_many(
            "record a gap",
            "INSERT INTO gaps (gateway_id, outbox_id, first_seq, last_seq, reason, recorded_at_us) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(gap.gateway_id, gap.outbox_id, gap.first_seq, gap.last_seq, gap.reason, gap.recorded_at_us)],
        )

    async def insert_events(self, events: Sequence[StoredEvent]) -> set[str]:
        inserted: set[str] = set()
        for chunk in _chunks(events, INSERT_ROWS_PER_STATEMENT):
            placeholders = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(chunk))
            parameters = list(chain.from_iterable(map(_EVENT_ROW, chunk)))
            rows = await self._fetch(
                "insert events",
                f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES {placeholders} "
                "ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
                parameters,
            )
            inserted.update(row[0] for row in rows)
        # An event_id repeated inside one batch is inserted once: index only that first copy.
        indexed: set[str] = set()
        mentions: list[tuple[str, str, str]] = []
        for event in events:
            if event.event_id in inserted and event.event_id not in indexed:
                indexed.add(event.event_id)
                mentions.extend((event.event_id, key.object_id, key.gtin) for key in event.mentions)
        # Multi-row VALUES: one statement per chunk costs less than executemany's step per row.
        for mentions_chunk in _chunks(mentions, INSERT_ROWS_PER_STATEMENT):
            placeholders = ", ".join(["(?, ?, ?)"] * len(mentions_chunk))
            with _sqlite_errors("index event objects"):
                await self._connection.execute(
                    f"INSERT INTO event_objects (event_id, object_id, gtin) VALUES {placeholders} "
                    "ON CONFLICT DO NOTHING",
                    list(chain.from_iterable(mentions_chunk)),
                )
        return inserted

    async def stored_payloads(self, event_ids: Collection[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        for chunk in _chunks(sorted(event_ids), LOOKUP_KEYS_PER_STATEMENT):
            placeholders = ", ".join(["?"] * len(chunk))
            rows = await self._fetch(
                "read stored events",
                f"SELECT event_id, payload FROM events WHERE event_id IN ({placeholders})",
                chunk,
            )
            found.update((row[0], bytes(row[1])) for row in rows)
        return found

    async def quarantine(self, records: Sequence[QuarantineRecord]) -> int:
        if not records:  # the usual case: no round trip to aiosqlite's thread for nothing
            return 0
        return await self._execute_many(
            "quarantine events",
            "INSERT INTO quarantine (gateway_id, outbox_id, seq, event_id, reason, received_at_us, payload) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (gateway_id, outbox_id, seq) DO NOTHING",
            [(r.gateway_id, r.outbox_id, r.seq, r.event_id, r.reason, r.received_at_us, r.payload) for r in records],
        )

    async def load_positions(self, object_ids: Collection[str]) -> dict[str, PositionRecord]:
        found: dict[str, PositionRecord] = {}
        for chunk in _chunks(sorted(object_ids), LOOKUP_KEYS_PER_STATEMENT):
            placeholders = ", ".join(["?"] * len(chunk))
            rows = await self._fetch(
                "load positions",
                f"SELECT {POSITION_COLUMNS} FROM positions WHERE object_id IN ({placeholders})",
                chunk,
            )
            for row in rows:
                position = position_from_row(row)
                found[position.object_id] = position
        return found

    async def save_positions(self, positions: Sequence[PositionRecord]) -> None:
        if not positions:
            return
        await self._execute_many(
            "save positions",
            f"INSERT OR REPLACE INTO positions ({POSITION_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            # sqlite3 binds the bools in_transit and present as the integers 1 and 0.
            map(_POSITION_ROW, positions),
        )

    async def apply_on_hand(self, deltas: Sequence[OnHandDelta]) -> None:
        if not deltas:
            return
        await self._execute_many(
            "update on-hand",
            "INSERT INTO on_hand (gtin, biz_location, serialized_count, class_quantity) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (gtin, biz_location) DO UPDATE SET "
            "serialized_count = serialized_count + excluded.serialized_count, "
            "class_quantity = class_quantity + excluded.class_quantity",
            [(d.gtin, d.biz_location, d.serialized_count, d.class_quantity) for d in deltas],
        )

    async def apply_measures(self, deltas: Sequence[MeasureDelta]) -> None:
        if not deltas:  # the usual case: measured quantities are rare
            return
        await self._execute_many(
            "update measured on-hand",
            "INSERT INTO on_hand_measures (gtin, biz_location, uom, quantity) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (gtin, biz_location, uom) DO UPDATE SET quantity = quantity + excluded.quantity",
            [(d.gtin, d.biz_location, d.uom, d.quantity) for d in deltas],
        )


async def _connect(path: Path, durability: Durability, timeout_s: float, *, query_only: bool) -> aiosqlite.Connection:
    try:
        # isolation_level=None: no implicit BEGINs; every transaction here is explicit.
        # timeout: how long SQLite waits on a lock held by another connection (busy timeout).
        connection = await aiosqlite.connect(path, isolation_level=None, timeout=timeout_s)
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot open the store: {exc}") from exc
    try:
        with _sqlite_errors(f"{path}: cannot configure the store"):
            async with asyncio.timeout(timeout_s):
                rows = list(await connection.execute_fetchall("PRAGMA journal_mode = WAL"))
                if not rows or str(rows[0][0]).lower() != "wal":
                    raise StoreError(f"{path}: SQLite refused WAL mode (got {rows!r}); is it on a network filesystem?")
                await connection.execute(f"PRAGMA synchronous = {_SYNCHRONOUS[durability]}")
                # Read it back: a silently ignored PRAGMA would void the documented loss window.
                rows = list(await connection.execute_fetchall("PRAGMA synchronous"))
                if _SYNCHRONOUS_NAMES.get(rows[0][0]) != _SYNCHRONOUS[durability]:
                    raise StoreError(f"{path}: SQLite did not apply synchronous={_SYNCHRONOUS[durability]}")
                await connection.execute("PRAGMA foreign_keys = ON")
                if query_only:
                    await connection.execute("PRAGMA query_only = ON")
    except BaseException:
        await connection.close()
        raise
    return connection


async def _migrate(connection: aiosqlite.Connection, path: Path) -> None:
    with _sqlite_errors(f"{path}: cannot read the schema version"):
        rows = list(await connection.execute_fetchall("PRAGMA user_version"))
    version = int(rows[0][0])
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{path}: schema version {version} is newer than this program's {SCHEMA_VERSION}; "
            "run a newer tallyport-cloud or restore a matching backup"
        )
    for index in range(version, SCHEMA_VERSION):
        script = f"BEGIN IMMEDIATE;\n{MIGRATIONS[index]}\nPRAGMA user_version = {index + 1};\nCOMMIT;\n"
        try:
            with _sqlite_errors(f"{path}: migration to schema version {index + 1} failed"):
                await connection.executescript(script)
        except BaseException:
            if connection.in_transaction:
                await connection.execute("ROLLBACK")
            raise
        log.info("store migrated", extra={"path": str(path), "schema_version": index + 1})
