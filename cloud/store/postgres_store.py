"""The shared store: PostgreSQL through psycopg 3 (async) and a psycopg_pool connection pool.

Several stateless aggregators behind a load balancer share one database (DESIGN.md, "Scale"),
so two of them may run the same gateway's batches at the same moment: a gateway reconnects
through the balancer while its old stream is still committing, or the edge retries a batch
on another instance. The ingest logic (`cloud.ingest.commit`) reads state, computes, and
writes it back, so correctness rests on which rows each transaction locks. Transactions run
at READ COMMITTED (stated in BEGIN, whatever the server's default) with explicit row locks:

- Stream: `stream_state` reads the (gateway, outbox) row `FOR UPDATE`, so ingest transactions
  of one stream run one after the other. The second waits for the first to commit and then
  reads the row as committed (READ COMMITTED re-reads a row it waited for), so its
  high-water mark and counters build on the first's. A row that does not exist yet cannot be
  locked: then a transaction-scoped advisory lock on the stream key serialises the creators,
  and the read is repeated under it.
- Events: `INSERT ... ON CONFLICT (event_id) DO NOTHING RETURNING event_id`. An insert that
  meets another transaction's uncommitted copy of an event_id waits for it; if that one
  commits, the event is a duplicate here. This is what makes ingest exactly-once by
  event_id across instances, streams and outboxes, with no lock of our own.
- Positions: a projection reads an object's position and writes the next one, so two
  streams moving the same object must not both start from the same old row (the old
  place would lose the item twice). `load_positions` first inserts a placeholder row for
  every object without a position (`ON CONFLICT DO NOTHING`, waiting on any other
  transaction creating the same object), then reads them all `FOR UPDATE`. Placeholders
  never commit: `save_positions` overwrites them and any left over are deleted before COMMIT.
- On-hand and measures are deltas applied in place
  (`SET serialized_count = on_hand.serialized_count + excluded.serialized_count`), so
  concurrent transactions add up instead of overwriting each other.
- Lock order: stream row, events, positions, on-hand, measures, and within each by key.
  Every transaction takes its locks in that order, so they cannot deadlock each other. If
  the database still reports a deadlock or a timeout, the batch rolls back, the stream ends
  with UNAVAILABLE, and the edge resends it, which is safe because ingest is idempotent.

SERIALIZABLE was the alternative: it would abort one of two concurrent copies of a batch
every time (40001), and the retry would have to re-run `commit_batch`, which the store
cannot do; explicit locks make the second copy wait and find duplicates instead.

Bounds: every statement has `statement_timeout = operation_timeout_ms`; a transaction and a
query are bounded by `operation_timeout_ms` on our side too, a rollback by
`ROLLBACK_TIMEOUT_S` (a connection that cannot roll back is closed, and the pool replaces
it), taking a connection from the pool by `pool_acquire_timeout_ms`. The server ends a
session left idle inside a transaction (`idle_in_transaction_session_timeout`) so an
aggregator that dies mid-batch cannot hold a gateway's lock for longer than that.

Durability: an Ack is sent after COMMIT returns. A session whose `synchronous_commit` is
`off` is turned `on`; stronger settings (`remote_apply`, synchronous standbys) are kept.

The schema lives in one PostgreSQL schema (`search_path`), migrated by `cloud.store.postgres_schema`
under an advisory lock. PostgreSQL text cannot hold U+0000 while protobuf strings can: the
store writes and looks up U+0000 in text columns as U+FFFD (the event payload keeps the
original bytes), where SQLite keeps it as is.

psycopg and psycopg_pool errors become `StoreError` here and nowhere else.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import AsyncIterator, Collection, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace
from typing import Any, LiteralString

import psycopg
import psycopg.errors
from psycopg import AsyncConnection, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import TransactionStatus
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from cloud.errors import SchemaVersionError, StoreError
from cloud.store.postgres_schema import MIGRATIONS, SCHEMA_VERSION
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
from cloud.store.sql import Dialect, to_postgres_placeholders

__all__ = ["SCHEMA_NAME_PATTERN", "PostgresStore", "describe_dsn"]

log = logging.getLogger(__name__)

Connection = AsyncConnection[TupleRow]
_Statement = LiteralString | sql.SQL | sql.Composed

# A schema name we never have to quote: lower case, PostgreSQL's 63-byte identifier limit.
SCHEMA_NAME_PATTERN = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# A rollback after a failed or cancelled transaction gets its own, short, bound.
ROLLBACK_TIMEOUT_S = 5.0
# The pool's liveness check of a connection it hands out ("" costs one round trip).
CONNECTION_CHECK_TIMEOUT_S = 2.0
# The server ends a session idle inside a transaction for this long beyond operation_timeout_ms.
IDLE_IN_TRANSACTION_MARGIN_MS = 5_000
# Migrations may rewrite big tables: their statements get this many operation timeouts.
MIGRATION_TIMEOUT_FACTOR = 10
# libpq's connect_timeout is whole seconds and treats values below 2 as 2.
LIBPQ_CONNECT_TIMEOUT_MIN_S = 2
# Gaps returned per (gateway, outbox) by list_gateways, newest kept.
GAPS_PER_STREAM_MAX = 100
# Class quantities are doubles: treat anything this close to zero as zero.
QUANTITY_EPSILON = 1e-9
# Advisory lock classes (the first int4 of the two-key form): one for migrations of a schema,
# one for creating a stream row. Arbitrary, but fixed: other applications should not use them.
MIGRATION_LOCK_CLASS = 0x7A11
STREAM_LOCK_CLASS = 0x7A12
APPLICATION_NAME = "tallyport-cloud"

_POSITION_TYPES = (
    "text[], text[], text[], text[], text[], text[], text[], integer[], integer[], "
    "boolean[], boolean[], bigint[], text[], text[], bigint[]"
)
_EVENT_COLUMNS = "event_id, gateway_id, outbox_id, seq, event_time_us, biz_location, biz_step, received_at_us, payload"
_EVENT_TYPES = "text[], text[], text[], bigint[], bigint[], text[], integer[], bigint[], bytea[]"
_STREAM_COLUMNS = (
    "gateway_id, outbox_id, committed_through_seq, agent_version, first_contact_us, last_contact_us, "
    "events_stored, duplicates, rejects, batches, clock_offset_ms, committed_ranges"
)


def _unnest(types: str) -> str:
    """`unnest(%b::t1, %b::t2, ...)`: one array parameter per column, one statement per batch.

    Binary parameters (%b): payloads travel as bytes rather than hex text, and nothing is
    quoted or parsed; in a measurement of 500-event batches ingest went from about 6,200 to
    7,600 events/s with this alone.
    """
    return "unnest(" + ", ".join(f"%b::{name.strip()}" for name in types.split(",")) + ")"


def _stream_from_row(row: Sequence[Any]) -> StreamState:
    # The last column is committed_ranges, kept as text.
    return replace(StreamState(*row[:-1]), committed_ranges=seq_ranges_from_text(row[-1]))


def _text(value: str) -> str:
    """`value` as PostgreSQL text can hold it: U+0000 becomes U+FFFD (see the module docstring)."""
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def _texts(values: Iterable[str]) -> list[str]:
    return [_text(value) for value in values]


def _one_line(exc: BaseException) -> str:
    """The server's primary message (without the statement it quotes), else libpq's, on one line."""
    text = str(exc)
    if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
        text = exc.diag.message_primary
    # libpq messages span lines ("...failed: Connection refused\n\tIs the server running"): join them.
    return " ".join(text.split()) or type(exc).__name__


def describe_dsn(dsn: str) -> str:
    """`postgresql://user@host:port/dbname` of a DSN, for messages: never its password."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "an unparsable DSN"
    user = f"{params['user']}@" if params.get("user") else ""
    port = f":{params['port']}" if params.get("port") else ""
    host = params.get("host") or params.get("hostaddr") or "localhost"
    return f"postgresql://{user}{host}{port}/{params.get('dbname') or ''}"


@contextmanager
def _pg_errors(what: str) -> Iterator[None]:
    """The one boundary where psycopg and psycopg_pool errors become ours."""
    try:
        yield
    except PoolTimeout as exc:
        raise StoreError(f"{what}: no database connection free in time: {_one_line(exc)}") from exc
    except psycopg.errors.QueryCanceled as exc:
        raise StoreError(f"{what}: {_one_line(exc)} (statement_timeout is operation_timeout_ms)") from exc
    except psycopg.Error as exc:
        state = f" (SQLSTATE {exc.sqlstate})" if exc.sqlstate else ""
        raise StoreError(f"{what}: {_one_line(exc)}{state}") from exc


class PostgresStore:
    """The PostgreSQL implementation of `cloud.store.Store`; create it with `await PostgresStore.open(...)`."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Connection],
        where: str,
        schema: str,
        operation_timeout_s: float,
        acquire_timeout_s: float,
    ) -> None:
        self.where = where  # postgresql://user@host:port/dbname, for messages
        self.schema = schema
        self._pool = pool
        self._operation_timeout_s = operation_timeout_s
        self._acquire_timeout_s = acquire_timeout_s
        self._closed = False

    @classmethod
    async def open(
        cls,
        dsn: str,
        schema: str = "tallyport",
        *,
        pool_connections_min: int = 1,
        pool_connections_max: int = 10,
        operation_timeout_ms: int = 10_000,
        pool_acquire_timeout_ms: int = 5_000,
        connect_timeout_ms: int = 10_000,
    ) -> PostgresStore:
        """Connect, create and migrate `schema` if needed, and open the pool.

        Raises StoreError naming the server (never the password) when it cannot be reached,
        and SchemaVersionError when the schema is newer than this program.
        """
        where = describe_dsn(dsn)
        if SCHEMA_NAME_PATTERN.fullmatch(schema) is None:
            raise StoreError(f"{where}: schema {schema!r} must match ^[a-z_][a-z0-9_]{{0,62}}$")
        if not 0 <= pool_connections_min <= pool_connections_max or pool_connections_max < 1:
            raise StoreError(
                f"{where}: pool sizes {pool_connections_min}..{pool_connections_max} need 0 <= min <= max, max >= 1"
            )
        try:
            params = conninfo_to_dict(dsn)
        except psycopg.Error as exc:
            raise StoreError(f"{where}: not a valid PostgreSQL DSN: {_one_line(exc)}") from exc
        connect_s = connect_timeout_ms / 1000
        # The DSN's own settings win; these only fill what it leaves out.
        params.setdefault("connect_timeout", max(LIBPQ_CONNECT_TIMEOUT_MIN_S, math.ceil(connect_s)))
        params.setdefault("application_name", APPLICATION_NAME)
        conninfo = make_conninfo("", **params)
        session = _SessionSettings(schema, operation_timeout_ms)

        connection = await _connect(conninfo, where, connect_s)
        try:
            await _migrate(connection, schema, where, operation_timeout_ms)
        finally:
            await connection.close()  # also releases the migration lock if anything went wrong

        pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            conninfo,
            kwargs={"autocommit": True},  # every transaction here is an explicit BEGIN ... COMMIT
            min_size=pool_connections_min,
            max_size=pool_connections_max,
            open=False,
            configure=session.apply,
            check=_check_connection,
            timeout=pool_acquire_timeout_ms / 1000,
            name=f"tallyport-{schema}",
        )
        try:
            async with asyncio.timeout(connect_s + CONNECTION_CHECK_TIMEOUT_S):
                await pool.open(wait=True, timeout=connect_s)
        except (PoolTimeout, TimeoutError) as exc:
            await pool.close()
            raise StoreError(
                f"{where}: could not open {pool_connections_min} pooled connections within {connect_s:g} s"
            ) from exc
        except BaseException:
            await pool.close()
            raise
        log.info(
            "store opened",
            extra={
                "backend": "postgres",
                "database": where,
                "schema": schema,
                "schema_version": SCHEMA_VERSION,
                "pool_connections_max": pool_connections_max,
            },
        )
        return cls(pool, where, schema, operation_timeout_ms / 1000, pool_acquire_timeout_ms / 1000)

    async def close(self) -> None:
        """Close the pool; idempotent. A connection still in use is closed when it is returned."""
        if self._closed:
            return
        self._closed = True
        with _pg_errors("close the store"):
            await self._pool.close(timeout=ROLLBACK_TIMEOUT_S)
        log.info("store closed", extra={"database": self.where, "schema": self.schema})

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the store is closed")

    @asynccontextmanager
    async def _connection(self, what: str) -> AsyncIterator[Connection]:
        """A pooled connection, idle again (or closed) when it goes back, whatever happened."""
        self._check_open()
        try:
            # The pool's own timeout bounds the wait; the outer one also bounds its liveness checks.
            async with asyncio.timeout(self._acquire_timeout_s + CONNECTION_CHECK_TIMEOUT_S):
                with _pg_errors(what):
                    connection = await self._pool.getconn(timeout=self._acquire_timeout_s)
        except TimeoutError as exc:
            raise StoreError(f"{what}: no database connection within {self._acquire_timeout_s:g} s") from exc
        try:
            yield connection
        except BaseException:
            await _make_idle(connection)
            raise
        finally:
            await self._pool.putconn(connection)

    @asynccontextmanager
    async def _bounded(self, what: str) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self._operation_timeout_s):
                yield
        except TimeoutError as exc:
            raise StoreError(f"{what} took longer than {self._operation_timeout_s:g} s") from exc

    # ---- writing -------------------------------------------------------------------------

    @asynccontextmanager
    async def ingest_transaction(self) -> AsyncIterator[_PostgresIngestTransaction]:
        """BEGIN ... COMMIT on a pooled connection; rolls back on any exception or cancellation.

        Unlike SQLite's, transactions of different streams run concurrently; the row locks
        described in the module docstring isolate those that touch the same rows.
        """
        async with self._connection("begin a transaction") as connection, self._bounded("ingest transaction"):
            with _pg_errors("begin a transaction"):
                await connection.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
            transaction = _PostgresIngestTransaction(connection)
            yield transaction
            await transaction.drop_placeholders()
            with _pg_errors("commit"):
                await connection.execute("COMMIT")

    @asynccontextmanager
    async def write(self) -> AsyncIterator[_PostgresSql]:
        """A `Sql` inside BEGIN ... COMMIT (READ COMMITTED) on a pooled connection; rolls back on error."""
        async with self._connection("begin a transaction") as connection, self._bounded("write transaction"):
            with _pg_errors("begin a transaction"):
                await connection.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
            yield _PostgresSql(connection)
            with _pg_errors("commit"):
                await connection.execute("COMMIT")

    @asynccontextmanager
    async def read(self) -> AsyncIterator[_PostgresSql]:
        """A `Sql` on a pooled connection in autocommit: each statement sees the last committed state."""
        async with self._connection("read") as connection, self._bounded("read"):
            yield _PostgresSql(connection)

    # ---- reading -------------------------------------------------------------------------

    async def _fetch(
        self, what: str, query: LiteralString | sql.SQL | sql.Composed, parameters: Any = ()
    ) -> list[TupleRow]:
        async with self._connection(what) as connection, self._bounded(what):
            with _pg_errors(what):
                cursor = await connection.execute(query, parameters)
                return await cursor.fetchall()

    async def get_position(self, key: str) -> PositionRecord | None:
        """A position by object id, else by EPC URI, else by EPC hex (case-insensitive): one round trip."""
        rows = await self._fetch(
            "look up a position",
            f"SELECT {POSITION_COLUMNS} FROM ("
            f"  (SELECT 1 AS rank, {POSITION_COLUMNS} FROM positions WHERE object_id = %(key)s)"
            f"  UNION ALL (SELECT 2, {POSITION_COLUMNS} FROM positions WHERE epc_uri = %(key)s"
            "    ORDER BY event_time_us DESC LIMIT 1)"
            f"  UNION ALL (SELECT 3, {POSITION_COLUMNS} FROM positions WHERE epc_hex = %(hex)s"
            "    ORDER BY event_time_us DESC LIMIT 1)"
            ") AS found ORDER BY rank LIMIT 1",
            {"key": _text(key), "hex": _text(key.upper())},
        )
        return position_from_row(rows[0]) if rows else None

    async def list_on_hand(
        self, gtin: str = "", biz_location: str = "", limit: int = 50_000, after: tuple[str, str] | None = None
    ) -> list[OnHandRecord]:
        """Rows with a non-zero count or class quantity, by GTIN then location, after `after`; at most `limit`."""
        parameters: dict[str, Any] = {
            "gtin": _text(gtin),
            "location": _text(biz_location),
            "epsilon": QUANTITY_EPSILON,
            "limit": limit,
        }
        keyset = ""
        if after is not None:
            # A row comparison in the columns' "C" collation: the same order as ORDER BY and the
            # primary key, so each page is an index range.
            keyset = "AND (gtin, biz_location) > (%(after_gtin)s, %(after_location)s) "
            parameters.update(after_gtin=_text(after[0]), after_location=_text(after[1]))
        rows = await self._fetch(
            "list on-hand",
            "SELECT gtin, biz_location, serialized_count, class_quantity FROM on_hand "
            "WHERE (%(gtin)s = '' OR gtin = %(gtin)s) AND (%(location)s = '' OR biz_location = %(location)s) "
            f"AND (serialized_count <> 0 OR abs(class_quantity) > %(epsilon)s) {keyset}"
            "ORDER BY gtin, biz_location LIMIT %(limit)s",
            parameters,
        )
        return [OnHandRecord(row[0], row[1], row[2], row[3]) for row in rows]

    async def list_events(self, query: EventQuery) -> list[StoredEvent]:
        """Events newest first by (event_time_us, event_id), filtered, after `query.before`."""
        conditions: list[sql.Composable] = []
        parameters: list[Any] = []
        for column, value in (("gateway_id", query.gateway_id), ("biz_location", query.biz_location)):
            if value:
                conditions.append(sql.SQL("e.{} = %s").format(sql.Identifier(column)))
                parameters.append(_text(value))
        if query.biz_step:
            conditions.append(sql.SQL("e.biz_step = %s"))
            parameters.append(query.biz_step)
        for column, value in (("gtin", query.gtin), ("object_id", query.object_id)):
            if value:
                conditions.append(
                    sql.SQL(
                        "EXISTS (SELECT 1 FROM event_objects o WHERE o.event_id = e.event_id AND o.{} = %s)"
                    ).format(sql.Identifier(column))
                )
                parameters.append(_text(value))
        if query.since_us is not None:
            conditions.append(sql.SQL("e.event_time_us >= %s"))
            parameters.append(query.since_us)
        if query.until_us is not None:
            conditions.append(sql.SQL("e.event_time_us < %s"))
            parameters.append(query.until_us)
        if query.before is not None:
            conditions.append(sql.SQL("(e.event_time_us, e.event_id) < (%s::bigint, %s::text)"))
            parameters.extend((query.before[0], _text(query.before[1])))
        where = sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("TRUE")
        columns = ", ".join(f"e.{name.strip()}" for name in _EVENT_COLUMNS.split(","))
        statement = sql.SQL(
            "SELECT {columns} FROM events e WHERE {where} ORDER BY e.event_time_us DESC, e.event_id DESC LIMIT %s"
        ).format(columns=sql.SQL(columns), where=where)
        rows = await self._fetch("list events", statement, (*parameters, query.limit))
        return [StoredEvent(*row) for row in rows]

    async def list_quarantine(self, limit: int, before_id: int | None = None) -> list[QuarantineRecord]:
        """Quarantined events newest first, those with quarantine_id below `before_id` if given."""
        rows = await self._fetch(
            "list quarantine",
            "SELECT gateway_id, outbox_id, seq, event_id, reason, received_at_us, payload, quarantine_id "
            "FROM quarantine WHERE (%(before)s::bigint IS NULL OR quarantine_id < %(before)s::bigint) "
            "ORDER BY quarantine_id DESC LIMIT %(limit)s",
            {"before": before_id, "limit": limit},
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
            "  FROM gaps) AS ranked WHERE newness <= %s ORDER BY gateway_id, outbox_id, gap_id",
            (GAPS_PER_STREAM_MAX,),
        )
        gaps: dict[tuple[str, str], list[GapRecord]] = {}
        for row in gap_rows:
            gaps.setdefault((row[0], row[1]), []).append(GapRecord(*row))
        return [
            GatewayRecord(state, tuple(gaps.get((state.gateway_id, state.outbox_id), ())))
            for state in map(_stream_from_row, streams)
        ]


class _PostgresSql:
    """`cloud.store.sql.Sql` on one pooled connection; `?` placeholders become psycopg's.

    String parameters go through `_text` as on the ingest path: a NUL that reached us in an
    event or a gateway's status is stored as U+FFFD instead of failing the whole transaction."""

    dialect: Dialect = "postgres"

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    @staticmethod
    def _clean(parameters: Sequence[object]) -> list[object]:
        return [_text(value) if isinstance(value, str) else value for value in parameters]

    async def execute(self, statement: str, parameters: Sequence[object] = ()) -> int:
        with _pg_errors("execute a statement"):
            cursor = await self._connection.execute(_portable(statement), self._clean(parameters))
            return max(cursor.rowcount, 0)

    async def execute_many(self, statement: str, rows: Iterable[Sequence[object]]) -> None:
        with _pg_errors("execute a statement"):
            async with self._connection.cursor() as cursor:
                await cursor.executemany(_portable(statement), [self._clean(row) for row in rows])

    async def fetch_all(self, statement: str, parameters: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with _pg_errors("run a query"):
            cursor = await self._connection.execute(_portable(statement), self._clean(parameters))
            return [tuple(row) for row in await cursor.fetchall()]

    async def fetch_one(self, statement: str, parameters: Sequence[object] = ()) -> tuple[Any, ...] | None:
        with _pg_errors("run a query"):
            cursor = await self._connection.execute(_portable(statement), self._clean(parameters))
            row = await cursor.fetchone()
        return None if row is None else tuple(row)


def _portable(statement: str) -> LiteralString:
    # The statements are our own code's constants, written with `?`; the conversion keeps them so
    # (mypy treats LiteralString as str, so nothing is cast here).
    return to_postgres_placeholders(statement)


class _PostgresIngestTransaction:
    """`cloud.store.IngestTransaction` on one connection, inside BEGIN ISOLATION LEVEL READ COMMITTED."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        # Objects this transaction inserted a placeholder position for, not yet overwritten.
        self._placeholders: set[str] = set()

    async def _rows(self, what: str, query: LiteralString, parameters: Any) -> list[TupleRow]:
        with _pg_errors(what):
            cursor = await self._connection.execute(query, parameters)
            return await cursor.fetchall()

    async def _execute(self, what: str, query: LiteralString, parameters: Any) -> int:
        """Run one statement; return the number of rows it changed."""
        with _pg_errors(what):
            cursor = await self._connection.execute(query, parameters)
            return max(cursor.rowcount, 0)

    async def _read_stream(self, gateway_id: str, outbox_id: str) -> StreamState | None:
        rows = await self._rows(
            "read the stream state",
            f"SELECT {_STREAM_COLUMNS} FROM gateway_streams WHERE gateway_id = %s AND outbox_id = %s FOR UPDATE",
            (_text(gateway_id), _text(outbox_id)),
        )
        return _stream_from_row(rows[0]) if rows else None

    async def stream_state(self, gateway_id: str, outbox_id: str) -> StreamState | None:
        """The stream's row, locked until this transaction ends (see the module docstring)."""
        state = await self._read_stream(gateway_id, outbox_id)
        if state is not None:
            return state
        # No row to lock yet: serialise the transactions that would create it, then look again
        # (one that held the lock before us may have created it meanwhile).
        await self._execute(
            "lock the new stream",
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
            (STREAM_LOCK_CLASS, _text(f"{gateway_id}\x1f{outbox_id}")),
        )
        return await self._read_stream(gateway_id, outbox_id)

    async def outbox_ids(self, gateway_id: str) -> list[str]:
        rows = await self._rows(
            "list the gateway's outboxes",
            "SELECT outbox_id FROM gateway_streams WHERE gateway_id = %s ORDER BY first_contact_us, outbox_id",
            (_text(gateway_id),),
        )
        return [row[0] for row in rows]

    async def save_stream_state(self, state: StreamState) -> None:
        await self._execute(
            "save the stream state",
            f"INSERT INTO gateway_streams ({_STREAM_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (gateway_id, outbox_id) DO UPDATE SET "
            "committed_through_seq = excluded.committed_through_seq, agent_version = excluded.agent_version, "
            "first_contact_us = excluded.first_contact_us, last_contact_us = excluded.last_contact_us, "
            "events_stored = excluded.events_stored, duplicates = excluded.duplicates, "
            "rejects = excluded.rejects, batches = excluded.batches, clock_offset_ms = excluded.clock_offset_ms, "
            "committed_ranges = excluded.committed_ranges",
            (
                _text(state.gateway_id),
                _text(state.outbox_id),
                state.committed_through_seq,
                _text(state.agent_version),
                state.first_contact_us,
                state.last_contact_us,
                state.events_stored,
                state.duplicates,
                state.rejects,
                state.batches,
                state.clock_offset_ms,
                seq_ranges_to_text(state.committed_ranges),
            ),
        )

    async def record_gap(self, gap: GapRecord) -> None:
        await self._execute(
            "record a gap",
            "INSERT INTO gaps (gateway_id, outbox_id, first_seq, last_seq, reason, recorded_at_us) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            (
                _text(gap.gateway_id),
                _text(gap.outbox_id),
                gap.first_seq,
                gap.last_seq,
                _text(gap.reason),
                gap.recorded_at_us,
            ),
        )

    async def insert_events(self, events: Sequence[StoredEvent]) -> set[str]:
        if not events:
            return set()
        # By event_id (a stable sort: the first copy of a repeated id stays first), so two
        # transactions inserting overlapping events wait on each other in one order.
        ordered = sorted(events, key=lambda event: event.event_id)
        rows = await self._rows(
            "insert events",
            f"INSERT INTO events ({_EVENT_COLUMNS}) "
            f"SELECT * FROM {_unnest(_EVENT_TYPES)} "
            "ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
            (
                _texts(event.event_id for event in ordered),
                _texts(event.gateway_id for event in ordered),
                _texts(event.outbox_id for event in ordered),
                [event.seq for event in ordered],
                [event.event_time_us for event in ordered],
                _texts(event.biz_location for event in ordered),
                [event.biz_step for event in ordered],
                [event.received_at_us for event in ordered],
                [event.payload for event in ordered],
            ),
        )
        stored_ids = {row[0] for row in rows}  # as stored: U+0000 already replaced
        inserted = {event.event_id for event in events if _text(event.event_id) in stored_ids}
        # An event_id repeated inside one batch is inserted once: index only that first copy.
        indexed: set[str] = set()
        mentions: list[tuple[str, str, str]] = []
        for event in events:
            if event.event_id in inserted and event.event_id not in indexed:
                indexed.add(event.event_id)
                mentions.extend((event.event_id, key.object_id, key.gtin) for key in event.mentions)
        if mentions:
            await self._execute(
                "index event objects",
                "INSERT INTO event_objects (event_id, object_id, gtin) "
                f"SELECT * FROM {_unnest('text[], text[], text[]')} ON CONFLICT DO NOTHING",
                (
                    _texts(mention[0] for mention in mentions),
                    _texts(mention[1] for mention in mentions),
                    _texts(mention[2] for mention in mentions),
                ),
            )
        return inserted

    async def stored_payloads(self, event_ids: Collection[str]) -> dict[str, bytes]:
        if not event_ids:
            return {}
        asked = {_text(event_id): event_id for event_id in event_ids}
        rows = await self._rows(
            "read stored events",
            "SELECT event_id, payload FROM events WHERE event_id = ANY(%s)",
            (sorted(asked),),
        )
        return {asked[row[0]]: bytes(row[1]) for row in rows}

    async def quarantine(self, records: Sequence[QuarantineRecord]) -> int:
        if not records:
            return 0
        return await self._execute(
            "quarantine events",
            "INSERT INTO quarantine (gateway_id, outbox_id, seq, event_id, reason, received_at_us, payload) "
            f"SELECT * FROM {_unnest('text[], text[], bigint[], text[], text[], bigint[], bytea[]')} "
            "ON CONFLICT (gateway_id, outbox_id, seq) DO NOTHING",
            (
                _texts(r.gateway_id for r in records),
                _texts(r.outbox_id for r in records),
                [r.seq for r in records],
                _texts(r.event_id for r in records),
                _texts(r.reason for r in records),
                [r.received_at_us for r in records],
                [r.payload for r in records],
            ),
        )

    async def load_positions(self, object_ids: Collection[str]) -> dict[str, PositionRecord]:
        """Current positions, every one of `object_ids` locked (placeholders for those without one)."""
        if not object_ids:
            return {}
        # Stored ids (U+0000 replaced) back to the caller's, so the result is keyed as asked.
        asked = {_text(object_id): object_id for object_id in object_ids}
        ordered = sorted(asked)
        created = await self._rows(
            "lock new positions",
            f"INSERT INTO positions ({POSITION_COLUMNS}) "
            "SELECT id, '', '', '', '', '', '', 0, 0, false, false, 0, '', '', 0 FROM unnest(%b::text[]) AS u (id) "
            "ON CONFLICT (object_id) DO NOTHING RETURNING object_id",
            (ordered,),
        )
        self._placeholders.update(row[0] for row in created)
        rows = await self._rows(
            "load positions",
            f"SELECT {POSITION_COLUMNS} FROM positions WHERE object_id = ANY(%b::text[]) ORDER BY object_id FOR UPDATE",
            (ordered,),
        )
        found: dict[str, PositionRecord] = {}
        for row in rows:
            if row[0] not in self._placeholders:
                position = position_from_row(row)
                found[asked.get(position.object_id, position.object_id)] = position
        return found

    async def save_positions(self, positions: Sequence[PositionRecord]) -> None:
        if not positions:
            return
        latest = {_text(p.object_id): p for p in positions}  # the last wins, as INSERT OR REPLACE would
        ordered = [latest[object_id] for object_id in sorted(latest)]
        await self._execute(
            "save positions",
            f"INSERT INTO positions ({POSITION_COLUMNS}) SELECT * FROM {_unnest(_POSITION_TYPES)} "
            "ON CONFLICT (object_id) DO UPDATE SET "
            "epc_uri = excluded.epc_uri, epc_hex = excluded.epc_hex, gtin = excluded.gtin, sscc = excluded.sscc, "
            "biz_location = excluded.biz_location, read_point_id = excluded.read_point_id, "
            "biz_step = excluded.biz_step, disposition = excluded.disposition, in_transit = excluded.in_transit, "
            "present = excluded.present, event_time_us = excluded.event_time_us, event_id = excluded.event_id, "
            "gateway_id = excluded.gateway_id, seq = excluded.seq",
            (
                _texts(p.object_id for p in ordered),
                _texts(p.epc_uri for p in ordered),
                _texts(p.epc_hex for p in ordered),
                _texts(p.gtin for p in ordered),
                _texts(p.sscc for p in ordered),
                _texts(p.biz_location for p in ordered),
                _texts(p.read_point_id for p in ordered),
                [p.biz_step for p in ordered],
                [p.disposition for p in ordered],
                [p.in_transit for p in ordered],
                [p.present for p in ordered],
                [p.event_time_us for p in ordered],
                _texts(p.event_id for p in ordered),
                _texts(p.gateway_id for p in ordered),
                [p.seq for p in ordered],
            ),
        )
        self._placeholders.difference_update(latest)

    async def apply_on_hand(self, deltas: Sequence[OnHandDelta]) -> None:
        summed: dict[tuple[str, str], tuple[int, float]] = {}
        for d in deltas:
            key = (_text(d.gtin), _text(d.biz_location))
            count, quantity = summed.get(key, (0, 0.0))
            summed[key] = (count + d.serialized_count, quantity + d.class_quantity)
        if not summed:
            return
        keys = sorted(summed)  # one lock order for every transaction
        await self._execute(
            "update on-hand",
            "INSERT INTO on_hand AS o (gtin, biz_location, serialized_count, class_quantity) "
            f"SELECT * FROM {_unnest('text[], text[], bigint[], double precision[]')} "
            "ON CONFLICT (gtin, biz_location) DO UPDATE SET "
            "serialized_count = o.serialized_count + excluded.serialized_count, "
            "class_quantity = o.class_quantity + excluded.class_quantity",
            (
                [key[0] for key in keys],
                [key[1] for key in keys],
                [summed[key][0] for key in keys],
                [float(summed[key][1]) for key in keys],
            ),
        )

    async def apply_measures(self, deltas: Sequence[MeasureDelta]) -> None:
        summed: dict[tuple[str, str, str], float] = {}
        for d in deltas:
            key = (_text(d.gtin), _text(d.biz_location), _text(d.uom))
            summed[key] = summed.get(key, 0.0) + d.quantity
        if not summed:
            return
        keys = sorted(summed)
        await self._execute(
            "update measured on-hand",
            "INSERT INTO on_hand_measures AS m (gtin, biz_location, uom, quantity) "
            f"SELECT * FROM {_unnest('text[], text[], text[], double precision[]')} "
            "ON CONFLICT (gtin, biz_location, uom) DO UPDATE SET quantity = m.quantity + excluded.quantity",
            (
                [key[0] for key in keys],
                [key[1] for key in keys],
                [key[2] for key in keys],
                [float(summed[key]) for key in keys],
            ),
        )

    async def drop_placeholders(self) -> None:
        """Delete placeholder positions nothing overwrote, so none is ever committed."""
        if self._placeholders:
            await self._execute(
                "drop unused position placeholders",
                "DELETE FROM positions WHERE object_id = ANY(%b::text[])",
                (sorted(self._placeholders),),
            )
            self._placeholders.clear()


class _SessionSettings:
    """What every pooled session is set to: the schema, the time bounds, durable commits."""

    def __init__(self, schema: str, operation_timeout_ms: int) -> None:
        self.schema = schema
        self.statement_timeout_ms = operation_timeout_ms
        self.idle_in_transaction_ms = operation_timeout_ms + IDLE_IN_TRANSACTION_MARGIN_MS

    async def apply(self, connection: Connection) -> None:
        """The pool's `configure` callback: one round trip per new connection."""
        async with asyncio.timeout(self.statement_timeout_ms / 1000):
            await connection.execute(
                "SELECT set_config('search_path', %s, false), set_config('statement_timeout', %s, false), "
                "set_config('idle_in_transaction_session_timeout', %s, false), "
                "CASE WHEN current_setting('synchronous_commit') = 'off' "
                "THEN set_config('synchronous_commit', 'on', false) END",
                (self.schema, f"{self.statement_timeout_ms}ms", f"{self.idle_in_transaction_ms}ms"),
            )


async def _check_connection(connection: Connection) -> None:
    """The pool's `check` callback: a connection handed out has answered just now."""
    async with asyncio.timeout(CONNECTION_CHECK_TIMEOUT_S):
        await connection.execute("")


async def _make_idle(connection: Connection) -> None:
    """After a failure or cancellation: roll back, or close a connection that cannot (the pool replaces it)."""
    status = connection.info.transaction_status
    if status == TransactionStatus.IDLE or connection.closed:
        return
    if status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
        try:
            async with asyncio.timeout(ROLLBACK_TIMEOUT_S):
                await connection.execute("ROLLBACK")
            return
        except (psycopg.Error, TimeoutError) as exc:
            log.warning("rollback failed; closing the connection", extra={"error": _one_line(exc)})
    await connection.close()


async def _connect(conninfo: str, where: str, timeout_s: float) -> Connection:
    """One autocommit connection, or a StoreError that says where and why (no traceback needed)."""
    try:
        async with asyncio.timeout(timeout_s):
            return await AsyncConnection.connect(conninfo, autocommit=True)
    except TimeoutError as exc:
        raise StoreError(f"{where}: cannot connect to PostgreSQL: no answer within {timeout_s:g} s") from exc
    except psycopg.Error as exc:
        raise StoreError(f"{where}: cannot connect to PostgreSQL: {_one_line(exc)}") from exc


async def _migrate(connection: Connection, schema: str, where: str, operation_timeout_ms: int) -> None:
    """Create `schema` if missing and apply the missing migrations, once however many instances start."""
    timeout_ms = operation_timeout_ms * MIGRATION_TIMEOUT_FACTOR
    session = _SessionSettings(schema, timeout_ms)
    try:
        async with asyncio.timeout(timeout_ms / 1000):
            await session.apply(connection)
            # Session-level: held across the migrations' own transactions, released on close.
            await connection.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (MIGRATION_LOCK_CLASS, schema))
            cursor = await connection.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
            if await cursor.fetchone() is None:
                # Only when missing: CREATE SCHEMA IF NOT EXISTS would need CREATE on the database
                # even when a DBA has already made the schema for a less privileged user.
                await connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
                await session.apply(connection)  # the search_path now resolves to it
            await connection.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, description text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cursor = await connection.execute("SELECT coalesce(max(version), 0) FROM schema_migrations")
            row = await cursor.fetchone()
            version = int(row[0]) if row is not None else 0
            if version > SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"{where} schema {schema}: schema version {version} is newer than this program's "
                    f"{SCHEMA_VERSION}; run a newer tallyport-cloud or restore a matching backup"
                )
            for index in range(version, SCHEMA_VERSION):
                description, script = MIGRATIONS[index]
                async with connection.transaction():
                    if script.strip():  # a subsystem's slot may be empty while it is being built
                        await connection.execute(script)
                    await connection.execute(
                        "INSERT INTO schema_migrations (version, description) VALUES (%s, %s)",
                        (index + 1, description),
                    )
                log.info("store migrated", extra={"database": where, "schema": schema, "schema_version": index + 1})
    except TimeoutError as exc:
        raise StoreError(
            f"{where} schema {schema}: migration took longer than {timeout_ms / 1000:g} s "
            "(another instance holding the migration lock?)"
        ) from exc
    except psycopg.Error as exc:
        raise StoreError(f"{where} schema {schema}: cannot migrate: {_one_line(exc)}") from exc
