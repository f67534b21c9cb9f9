"""The reconciliation work the API, the CLI and the periodic pull share: import, pull, compare, record.

`Reconciler` ties the pure parts (files/rows checks, `compare`) to the store (`repository`), the
master data (ABC class and unit cost per GTIN) and the ERP/WMS source (`erp_pull`):

- `import_counts` / `import_snapshot` check rows one by one and store the good ones;
- `reconcile_counts` / `reconcile_snapshot` compare a stored subject with the event-derived
  on-hand as it is now and record one run with every drift; a subject already compared returns
  its recorded run instead (comparing it twice would count its counts twice in IRA);
- `pull` fetches from the configured source; a fresh snapshot is stored (and compared when
  asked), a stale one is reported with its age and not compared again, an unavailable source
  yields nothing;
- `run_polling` pulls and compares every `poll_interval_s` until cancelled (the server owns it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from cloud.errors import CloudError, ValidationError
from cloud.masterdata.models import MasterData
from cloud.reconciliation.compare import (
    Place,
    SystemTag,
    compare_counts,
    compare_epcs,
    compare_snapshot,
    summarize,
    tag_key,
)
from cloud.reconciliation.config import ReconciliationSection
from cloud.reconciliation.erp_pull import PullResult, SnapshotSource
from cloud.reconciliation.models import CycleCount, EpcDrift, OnHandSnapshot, SourceKind
from cloud.reconciliation.repository import ReconciliationRepository, RunRecord, new_id
from cloud.store import Store
from cloud.timestamps import Clock, system_clock_us

__all__ = ["NoSourceError", "NotFoundError", "PullOutcome", "Reconciler", "RunReport"]

log = logging.getLogger(__name__)

# On-hand rows read per location; a location holding more distinct GTINs is refused, not truncated.
ON_HAND_ROWS_PER_LOCATION_MAX = 200_000


class NotFoundError(ValidationError):
    """The batch, snapshot or source asked for is not stored."""


class NoSourceError(CloudError):
    """A pull was asked for but no ERP/WMS source is configured."""


@dataclass(frozen=True, slots=True)
class RunReport:
    """A recorded run, and whether it was recorded by an earlier call."""

    run: RunRecord
    already_reconciled: bool


@dataclass(frozen=True, slots=True)
class PullOutcome:
    """What a pull served, where it is stored, and its comparison when one was made."""

    result: PullResult
    snapshot_id: str  # "" when unavailable
    report: RunReport | None


MasterDataSource = Callable[[], Awaitable[MasterData]]


async def _no_masterdata() -> MasterData:
    return MasterData.empty()


class Reconciler:
    """Imports, pulls and comparisons over one store."""

    def __init__(
        self,
        store: Store,
        section: ReconciliationSection,
        *,
        masterdata: MasterDataSource = _no_masterdata,
        source: SnapshotSource | None = None,
        clock: Clock = system_clock_us,
    ) -> None:
        self._store = store
        self._section = section
        self._masterdata = masterdata
        self._source = source
        self._clock = clock
        self.repository = ReconciliationRepository(store)
        # A stale snapshot served by the source is the one stored when it was fresh: remember its id.
        self._last_pulled: tuple[OnHandSnapshot, str] | None = None

    @property
    def section(self) -> ReconciliationSection:
        """The `[reconciliation]` settings in use."""
        return self._section

    @property
    def source(self) -> SnapshotSource | None:
        """The configured ERP/WMS source, if any."""
        return self._source

    # ---- imports -------------------------------------------------------------------------

    async def import_counts(self, label: str, counts: Sequence[CycleCount], rejected: int) -> str:
        """Store checked counts as one batch; "" when there is none to store."""
        if not counts:
            return ""
        return await self.repository.save_counts(label, counts, rejected, self._clock())

    async def import_snapshot(self, snapshot: OnHandSnapshot, rejected: int) -> str:
        """Store a checked snapshot; "" when it has no row."""
        if not snapshot.rows:
            return ""
        return await self.repository.save_snapshot(snapshot, "import", rejected, self._clock())

    # ---- comparisons ---------------------------------------------------------------------

    async def reconcile_counts(self, batch_id: str) -> RunReport:
        """Compare a stored batch of cycle counts (once) and record the drifts."""
        existing = await self._existing("cycle_count", batch_id)
        if existing is not None:
            return existing
        batch = await self.repository.load_counts(batch_id)
        if batch is None:
            raise NotFoundError(f"no cycle-count batch {batch_id[:80]!r}")
        masterdata = await self._masterdata()
        on_hand = await self._on_hand({count.biz_location for count in batch.counts})
        drifts = compare_counts(batch.counts, on_hand, masterdata, self._section.tolerance_pct)
        epc_drifts = await self._epc_drifts(batch.counts)
        counters = sorted({count.counter_id for count in batch.counts})
        source = counters[0] if len(counters) == 1 else f"{len(counters)} counters"
        taken_at_us = max((count.counted_at_us for count in batch.counts), default=batch.imported_at_us)
        summary = summarize(
            new_id("run"), "cycle_count", source, batch_id, drifts, epc_drifts, taken_at_us, self._clock()
        )
        return await self._record(RunRecord(summary, tuple(drifts), tuple(epc_drifts)))

    async def reconcile_snapshot(self, snapshot_id: str) -> RunReport:
        """Compare a stored snapshot (once) and record the drifts."""
        existing = await self._existing("snapshot", snapshot_id)
        if existing is not None:
            return existing
        snapshot = await self.repository.load_snapshot(snapshot_id)
        if snapshot is None:
            raise NotFoundError(f"no snapshot {snapshot_id[:80]!r}")
        masterdata = await self._masterdata()
        on_hand = await self._on_hand({row.biz_location for row in snapshot.rows})
        drifts = compare_snapshot(snapshot, on_hand, masterdata, self._section.tolerance_pct)
        summary = summarize(
            new_id("run"), "snapshot", snapshot.source, snapshot_id, drifts, (), snapshot.taken_at_us, self._clock()
        )
        return await self._record(RunRecord(summary, tuple(drifts), ()))

    async def reconcile_latest(self, source: str) -> RunReport:
        """Compare the snapshot of `source` imported or pulled last."""
        snapshot_id = await self.repository.latest_snapshot_id(source)
        if snapshot_id is None:
            raise NotFoundError(f"no snapshot from source {source[:80]!r}")
        return await self.reconcile_snapshot(snapshot_id)

    async def _existing(self, kind: SourceKind, subject_id: str) -> RunReport | None:
        run_id = await self.repository.run_of(kind, subject_id)
        if run_id is None:
            return None
        run = await self.repository.load_run(run_id)
        return None if run is None else RunReport(run, already_reconciled=True)

    async def _record(self, run: RunRecord) -> RunReport:
        summary = run.summary
        if await self.repository.save_run(summary, run.drifts, run.epc_drifts):
            log.info(
                "reconciliation recorded",
                extra={
                    "run_id": summary.run_id,
                    "source_kind": summary.source_kind,
                    "source": summary.source,
                    "rows": summary.rows_compared,
                    "accurate": summary.accurate,
                    "gross_variance_value": round(summary.gross_variance_value, 2),
                },
            )
            return RunReport(run, already_reconciled=False)
        # Another caller compared the same subject in between: theirs is the record.
        existing = await self._existing(summary.source_kind, summary.subject_id)
        assert existing is not None, "a run that refused to insert must exist"
        return existing

    async def _on_hand(self, locations: set[str]) -> dict[Place, float]:
        on_hand: dict[Place, float] = {}
        for location in sorted(locations):
            rows = await self._store.list_on_hand(biz_location=location, limit=ON_HAND_ROWS_PER_LOCATION_MAX + 1)
            if len(rows) > ON_HAND_ROWS_PER_LOCATION_MAX:
                raise ValidationError(
                    f"{location} holds more than {ON_HAND_ROWS_PER_LOCATION_MAX} GTINs; refusing a partial comparison"
                )
            on_hand.update(((row.biz_location, row.gtin), row.quantity) for row in rows)
        return on_hand

    async def _epc_drifts(self, counts: Sequence[CycleCount]) -> list[EpcDrift]:
        by_epc = [count for count in counts if count.epcs is not None]
        if not by_epc:
            return []
        at_places = await self.repository.tags_at({(count.biz_location, count.gtin) for count in by_epc})
        known = await self.repository.tags_named(epc for count in by_epc for epc in count.epcs or ())
        named: dict[str, SystemTag] = {}
        for tag in known:
            named.update((name, tag) for name in tag.names())
        drifts: list[EpcDrift] = []
        for count in by_epc:
            counted = {tag_key(epc): named[tag_key(epc)] for epc in count.epcs or () if tag_key(epc) in named}
            drifts.extend(compare_epcs(count, at_places[(count.biz_location, count.gtin)], counted))
        return drifts

    # ---- the ERP/WMS source --------------------------------------------------------------

    async def pull(self, *, reconcile: bool) -> PullOutcome:
        """Pull from the configured source; store a fresh snapshot and compare it when asked."""
        if self._source is None:
            raise NoSourceError("no ERP/WMS source configured ([reconciliation] erp_url is empty)")
        result = await self._source.pull()
        if result.snapshot is None:
            return PullOutcome(result, "", None)
        if result.status == "fresh":
            rejected = len(result.rejections)
            snapshot_id = await self.repository.save_snapshot(result.snapshot, "pull", rejected, self._clock())
            self._last_pulled = (result.snapshot, snapshot_id)
        else:
            pulled = self._last_pulled
            snapshot_id = pulled[1] if pulled is not None and pulled[0] is result.snapshot else ""
        report = None
        if reconcile and result.status == "fresh":
            report = await self.reconcile_snapshot(snapshot_id)
        return PullOutcome(result, snapshot_id, report)

    async def run_polling(self) -> None:
        """Pull and compare every `poll_interval_s` until cancelled; a failure is logged, never fatal."""
        interval_s = self._section.poll_interval_s
        assert interval_s > 0 and self._source is not None, "polling needs an interval and a source"
        while True:
            try:
                outcome = await self.pull(reconcile=True)
            except CloudError as exc:  # the store failed; try again next time
                log.warning("periodic snapshot pull failed", extra={"error": str(exc)})
            except Exception:
                # A bug or an unforeseen failure must not end polling unseen until the server stops.
                log.exception("periodic snapshot pull failed unexpectedly; polling goes on")
            else:
                if outcome.result.status != "fresh":
                    log.debug("periodic pull served no fresh snapshot", extra={"status": outcome.result.status})
            await asyncio.sleep(interval_s)
