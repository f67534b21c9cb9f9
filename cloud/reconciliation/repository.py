"""The reconciliation tables, read and written through the store's portable `Sql` layer.

Tables (migration `_V4_RECONCILIATION` of cloud/store/schema.py and postgres_schema.py):
cycle_count_batches + cycle_counts, onhand_snapshots + onhand_snapshot_rows, and per
comparison one reconciliation_runs row with its reconciliation_drifts and
reconciliation_epc_drifts. A subject (count batch or snapshot) has at most one run
(UNIQUE (source_kind, subject_id)): comparing it again would count its counts twice in IRA.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from cloud.reconciliation.compare import Place, SystemTag
from cloud.reconciliation.models import (
    CycleCount,
    Drift,
    EpcDrift,
    OnHandSnapshot,
    ReconciliationSummary,
    SnapshotRow,
    SourceKind,
)
from cloud.store import Store

__all__ = [
    "CountBatch",
    "DriftFilter",
    "ReconciliationRepository",
    "RecordedDrift",
    "RunRecord",
    "SnapshotOrigin",
    "new_id",
]

SnapshotOrigin = Literal["import", "pull"]
# Parameters per IN (...) list: far below SQLite's 32766 and PostgreSQL's 65535.
_IN_LIST_MAX = 500
_EPC_SEPARATOR = "\n"

_DRIFT_COLUMNS = (
    "run_id, row_no, source_kind, source, biz_location, gtin, abc_class, system_quantity, counted_quantity, "
    "variance, unit_cost, variance_value, tolerance_pct, within_tolerance, counted_at_us, recorded_at_us"
)
_RUN_COLUMNS = (
    "run_id, source_kind, source, subject_id, rows_compared, accurate, gross_variance_value, net_variance_value, "
    "system_value, missing_epcs, unexpected_epcs, taken_at_us, recorded_at_us"
)
_TAG_COLUMNS = "object_id, epc_uri, epc_hex, gtin, biz_location, present, in_transit"


def new_id(prefix: str) -> str:
    """A fresh id for a batch, snapshot or run, e.g. 'count-3f2a...'."""
    return f"{prefix}-{uuid.uuid4().hex}"


@dataclass(frozen=True, slots=True)
class CountBatch:
    """A stored batch of cycle counts."""

    batch_id: str
    label: str
    imported_at_us: int
    counts: tuple[CycleCount, ...]


@dataclass(frozen=True, slots=True)
class RecordedDrift:
    """A drift as stored: which run and row, and when it was recorded."""

    run_id: str
    row_no: int
    recorded_at_us: int
    drift: Drift


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A stored run with everything it found."""

    summary: ReconciliationSummary
    drifts: tuple[Drift, ...]
    epc_drifts: tuple[EpcDrift, ...]


@dataclass(frozen=True, slots=True)
class DriftFilter:
    """Filters of ListDrifts; empty strings and None match everything."""

    run_id: str = ""
    source_kind: str = ""
    source: str = ""
    biz_location: str = ""
    gtin: str = ""
    abc_class: str = ""
    out_of_tolerance_only: bool = False
    since_us: int | None = None  # recorded_at >= since
    until_us: int | None = None  # recorded_at < until


class ReconciliationRepository:
    """Counts, snapshots and runs in the store (SQLite or PostgreSQL, the same statements)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    @property
    def store(self) -> Store:
        """The store the tables live in."""
        return self._store

    # ---- cycle counts --------------------------------------------------------------------

    async def save_counts(self, label: str, counts: Sequence[CycleCount], rejected: int, now_us: int) -> str:
        """Store a batch of counts in one transaction; return its batch_id."""
        batch_id = new_id("count")
        async with self._store.write() as sql:
            await sql.execute(
                "INSERT INTO cycle_count_batches (batch_id, label, imported_at_us, row_count, rejected_count) "
                "VALUES (?, ?, ?, ?, ?)",
                (batch_id, label, now_us, len(counts), rejected),
            )
            await sql.execute_many(
                "INSERT INTO cycle_counts (batch_id, row_no, biz_location, gtin, counted_quantity, counted_at_us, "
                "counter_id, epcs_counted, epcs) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        batch_id,
                        row_no,
                        count.biz_location,
                        count.gtin,
                        count.counted_quantity,
                        count.counted_at_us,
                        count.counter_id,
                        int(count.epcs is not None),
                        _EPC_SEPARATOR.join(count.epcs or ()),
                    )
                    for row_no, count in enumerate(counts, start=1)
                ],
            )
        return batch_id

    async def load_counts(self, batch_id: str) -> CountBatch | None:
        """A stored batch, its counts in import order; None when unknown."""
        async with self._store.read() as sql:
            head = await sql.fetch_one(
                "SELECT label, imported_at_us FROM cycle_count_batches WHERE batch_id = ?", (batch_id,)
            )
            if head is None:
                return None
            rows = await sql.fetch_all(
                "SELECT biz_location, gtin, counted_quantity, counted_at_us, counter_id, epcs_counted, epcs "
                "FROM cycle_counts WHERE batch_id = ? ORDER BY row_no",
                (batch_id,),
            )
        counts = tuple(
            CycleCount(
                biz_location=row[0],
                gtin=row[1],
                counted_quantity=float(row[2]),
                counted_at_us=int(row[3]),
                counter_id=row[4],
                epcs=tuple(epc for epc in str(row[6]).split(_EPC_SEPARATOR) if epc) if row[5] else None,
            )
            for row in rows
        )
        return CountBatch(batch_id, str(head[0]), int(head[1]), counts)

    # ---- snapshots -----------------------------------------------------------------------

    async def save_snapshot(self, snapshot: OnHandSnapshot, origin: SnapshotOrigin, rejected: int, now_us: int) -> str:
        """Store a snapshot in one transaction; return its snapshot_id."""
        snapshot_id = new_id("snapshot")
        async with self._store.write() as sql:
            await sql.execute(
                "INSERT INTO onhand_snapshots (snapshot_id, source, origin, taken_at_us, imported_at_us, row_count, "
                "rejected_count) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (snapshot_id, snapshot.source, origin, snapshot.taken_at_us, now_us, len(snapshot.rows), rejected),
            )
            await sql.execute_many(
                "INSERT INTO onhand_snapshot_rows (snapshot_id, biz_location, gtin, quantity) VALUES (?, ?, ?, ?)",
                [(snapshot_id, row.biz_location, row.gtin, row.quantity) for row in snapshot.rows],
            )
        return snapshot_id

    async def load_snapshot(self, snapshot_id: str) -> OnHandSnapshot | None:
        """A stored snapshot; None when unknown."""
        async with self._store.read() as sql:
            head = await sql.fetch_one(
                "SELECT source, taken_at_us FROM onhand_snapshots WHERE snapshot_id = ?", (snapshot_id,)
            )
            if head is None:
                return None
            rows = await sql.fetch_all(
                "SELECT biz_location, gtin, quantity FROM onhand_snapshot_rows WHERE snapshot_id = ? "
                "ORDER BY biz_location, gtin",
                (snapshot_id,),
            )
        return OnHandSnapshot(
            str(head[0]), int(head[1]), tuple(SnapshotRow(row[0], row[1], float(row[2])) for row in rows)
        )

    async def latest_snapshot_id(self, source: str) -> str | None:
        """The snapshot of `source` imported last, if any."""
        async with self._store.read() as sql:
            row = await sql.fetch_one(
                "SELECT snapshot_id FROM onhand_snapshots WHERE source = ? "
                "ORDER BY imported_at_us DESC, snapshot_id DESC LIMIT 1",
                (source,),
            )
        return None if row is None else str(row[0])

    # ---- positions of individual tags ----------------------------------------------------

    async def tags_at(self, places: Collection[Place]) -> dict[Place, list[SystemTag]]:
        """The tags the system has (in any state) at each (location, gtin)."""
        found: dict[Place, list[SystemTag]] = {place: [] for place in places}
        async with self._store.read() as sql:
            for location, gtin in sorted(places):
                rows = await sql.fetch_all(
                    f"SELECT {_TAG_COLUMNS} FROM positions WHERE biz_location = ? AND gtin = ?", (location, gtin)
                )
                found[(location, gtin)] = [_tag(row) for row in rows]
        return found

    async def tags_named(self, names: Iterable[str]) -> list[SystemTag]:
        """The tags whose canonical id, EPC URI or EPC hex is one of `names` (hex compared upper-case)."""
        unique = sorted({name.strip() for name in names if name.strip()})
        tags: dict[str, SystemTag] = {}
        async with self._store.read() as sql:
            for start in range(0, len(unique), _IN_LIST_MAX):
                chunk = unique[start : start + _IN_LIST_MAX]
                marks = ", ".join("?" * len(chunk))
                rows = await sql.fetch_all(
                    f"SELECT {_TAG_COLUMNS} FROM positions WHERE object_id IN ({marks}) OR epc_uri IN ({marks}) "
                    f"OR epc_hex IN ({marks})",
                    (*chunk, *chunk, *(name.upper() for name in chunk)),
                )
                tags.update((row[0], _tag(row)) for row in rows)
        return [tags[key] for key in sorted(tags)]

    # ---- runs ----------------------------------------------------------------------------

    async def run_of(self, source_kind: SourceKind, subject_id: str) -> str | None:
        """The run that compared this subject, if any."""
        async with self._store.read() as sql:
            row = await sql.fetch_one(
                "SELECT run_id FROM reconciliation_runs WHERE source_kind = ? AND subject_id = ?",
                (source_kind, subject_id),
            )
        return None if row is None else str(row[0])

    async def save_run(
        self, summary: ReconciliationSummary, drifts: Sequence[Drift], epc_drifts: Sequence[EpcDrift]
    ) -> bool:
        """Store a run with its drifts in one transaction; False (nothing stored) if the subject has a run."""
        async with self._store.write() as sql:
            inserted = await sql.execute(
                f"INSERT INTO reconciliation_runs ({_RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (source_kind, subject_id) DO NOTHING",
                _run_row(summary),
            )
            if inserted == 0:
                return False
            await sql.execute_many(
                f"INSERT INTO reconciliation_drifts ({_DRIFT_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    _drift_row(summary.run_id, row_no, drift, summary.recorded_at_us)
                    for row_no, drift in enumerate(drifts, start=1)
                ],
            )
            await sql.execute_many(
                "INSERT INTO reconciliation_epc_drifts (run_id, row_no, biz_location, gtin, epc, kind, "
                "system_location) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (summary.run_id, row_no, e.biz_location, e.gtin, e.epc, e.kind, e.system_location)
                    for row_no, e in enumerate(epc_drifts, start=1)
                ],
            )
        return True

    async def load_run(self, run_id: str) -> RunRecord | None:
        """A stored run with its drifts in row order; None when unknown."""
        async with self._store.read() as sql:
            head = await sql.fetch_one(f"SELECT {_RUN_COLUMNS} FROM reconciliation_runs WHERE run_id = ?", (run_id,))
            if head is None:
                return None
            drifts = await sql.fetch_all(
                f"SELECT {_DRIFT_COLUMNS} FROM reconciliation_drifts WHERE run_id = ? ORDER BY row_no", (run_id,)
            )
            epcs = await sql.fetch_all(
                "SELECT biz_location, gtin, epc, kind, system_location FROM reconciliation_epc_drifts "
                "WHERE run_id = ? ORDER BY row_no",
                (run_id,),
            )
        return RunRecord(
            summary=_summary(head),
            drifts=tuple(_recorded_drift(row).drift for row in drifts),
            epc_drifts=tuple(EpcDrift(row[0], row[1], row[2], row[3], row[4]) for row in epcs),
        )

    async def list_drifts(
        self, where: DriftFilter, limit: int, before: tuple[int, str, int] | None = None
    ) -> list[RecordedDrift]:
        """Drifts newest first by (recorded_at, run_id, row_no), after the cursor `before` if given."""
        clauses: list[str] = []
        parameters: list[object] = []
        for column, value in (
            ("run_id", where.run_id),
            ("source_kind", where.source_kind),
            ("source", where.source),
            ("biz_location", where.biz_location),
            ("gtin", where.gtin),
            ("abc_class", where.abc_class),
        ):
            if value:
                clauses.append(f"{column} = ?")
                parameters.append(value)
        if where.out_of_tolerance_only:
            clauses.append("within_tolerance = 0")
        if where.since_us is not None:
            clauses.append("recorded_at_us >= ?")
            parameters.append(where.since_us)
        if where.until_us is not None:
            clauses.append("recorded_at_us < ?")
            parameters.append(where.until_us)
        if before is not None:
            clauses.append("(recorded_at_us, run_id, row_no) < (?, ?, ?)")
            parameters.extend(before)
        condition = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        async with self._store.read() as sql:
            rows = await sql.fetch_all(
                f"SELECT {_DRIFT_COLUMNS} FROM reconciliation_drifts {condition} "
                "ORDER BY recorded_at_us DESC, run_id DESC, row_no DESC LIMIT ?",
                (*parameters, limit),
            )
        return [_recorded_drift(row) for row in rows]


def _tag(row: Sequence[Any]) -> SystemTag:
    # present / in_transit are 0/1 in SQLite and booleans in PostgreSQL: bool() reads both.
    return SystemTag(row[0], row[1], row[2], row[3], row[4], bool(row[5]), bool(row[6]))


def _run_row(summary: ReconciliationSummary) -> tuple[object, ...]:
    return (
        summary.run_id,
        summary.source_kind,
        summary.source,
        summary.subject_id,
        summary.rows_compared,
        summary.accurate,
        summary.gross_variance_value,
        summary.net_variance_value,
        summary.system_value,
        summary.missing_epcs,
        summary.unexpected_epcs,
        summary.taken_at_us,
        summary.recorded_at_us,
    )


def _summary(row: Sequence[Any]) -> ReconciliationSummary:
    return ReconciliationSummary(
        run_id=row[0],
        source_kind=row[1],
        source=row[2],
        subject_id=row[3],
        rows_compared=int(row[4]),
        accurate=int(row[5]),
        gross_variance_value=float(row[6]),
        net_variance_value=float(row[7]),
        system_value=float(row[8]),
        missing_epcs=int(row[9]),
        unexpected_epcs=int(row[10]),
        taken_at_us=int(row[11]),
        recorded_at_us=int(row[12]),
    )


def _drift_row(run_id: str, row_no: int, drift: Drift, recorded_at_us: int) -> tuple[object, ...]:
    return (
        run_id,
        row_no,
        drift.source_kind,
        drift.source,
        drift.biz_location,
        drift.gtin,
        drift.abc_class,
        drift.system_quantity,
        drift.counted_quantity,
        drift.variance,
        drift.unit_cost,
        drift.variance_value,
        drift.tolerance_pct,
        int(drift.within_tolerance),
        drift.counted_at_us,
        recorded_at_us,
    )


def _recorded_drift(row: Sequence[Any]) -> RecordedDrift:
    drift = Drift(
        source_kind=row[2],
        source=row[3],
        biz_location=row[4],
        gtin=row[5],
        abc_class=row[6],
        system_quantity=float(row[7]),
        counted_quantity=float(row[8]),
        variance=float(row[9]),
        unit_cost=float(row[10]),
        variance_value=float(row[11]),
        tolerance_pct=float(row[12]),
        within_tolerance=bool(row[13]),
        counted_at_us=int(row[14]),
    )
    return RecordedDrift(run_id=row[0], row_no=int(row[1]), recorded_at_us=int(row[15]), drift=drift)
