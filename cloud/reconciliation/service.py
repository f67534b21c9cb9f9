"""`ReconciliationService`: import counts and snapshots, pull the ERP/WMS source, compare, list drifts, KPIs.

Status codes: INVALID_ARGUMENT for a bad request (no subject, page_size above 1000, malformed
page_token, a window out of range, more than `IMPORT_ROWS_MAX` rows, a bad snapshot source or
taken_at), NOT_FOUND for an unknown batch, snapshot or source, FAILED_PRECONDITION for
PullSnapshot without a configured source, UNAVAILABLE when the store fails. Bad rows are not
errors: they come back as rejections beside the rows that loaded.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf.duration_pb2 import Duration
from grpc import aio
from tallyport.v1 import reconciliation_pb2, reconciliation_pb2_grpc

from cloud.errors import StoreError, ValidationError
from cloud.query.paging import page_size
from cloud.reconciliation import messages
from cloud.reconciliation.kpis import collect_kpis
from cloud.reconciliation.paging import decode_drift_token, encode_drift_token
from cloud.reconciliation.reconciler import NoSourceError, NotFoundError, Reconciler
from cloud.reconciliation.repository import DriftFilter
from cloud.timestamps import MICROS_PER_SECOND, Clock, from_micros, system_clock_us

__all__ = ["IMPORT_ROWS_MAX", "KPI_WINDOW_S_DEFAULT", "KPI_WINDOW_S_MAX", "ReconciliationService"]

IMPORT_ROWS_MAX = 200_000
KPI_WINDOW_S_DEFAULT = 24 * 3600
KPI_WINDOW_S_MAX = 366 * 24 * 3600

Answer = TypeVar("Answer")
Context = aio.ServicerContext[Any, Any]


class ReconciliationService(reconciliation_pb2_grpc.ReconciliationServiceServicer):
    """The gRPC face of a `Reconciler`."""

    def __init__(self, reconciler: Reconciler, clock: Clock = system_clock_us) -> None:
        self._reconciler = reconciler
        self._clock = clock

    async def ImportCycleCounts(
        self, request: reconciliation_pb2.ImportCycleCountsRequest, context: Context
    ) -> reconciliation_pb2.ImportCycleCountsResponse:
        """Store the good rows as one batch; report the bad ones."""
        if len(request.rows) > IMPORT_ROWS_MAX:
            await _abort_invalid(context, f"{len(request.rows)} rows; send at most {IMPORT_ROWS_MAX} per request")
        result = messages.counts_from_request(request.rows, self._clock())
        label = request.label.strip()[:200] or "grpc"
        batch_id = await _answer(
            context, self._reconciler.import_counts(label, result.rows, rejected=len(result.rejections))
        )
        return reconciliation_pb2.ImportCycleCountsResponse(
            batch_id=batch_id, accepted=len(result.rows), rejections=messages.rejection_messages(result.rejections)
        )

    async def ImportSnapshot(
        self, request: reconciliation_pb2.ImportSnapshotRequest, context: Context
    ) -> reconciliation_pb2.ImportSnapshotResponse:
        """Store the snapshot's good rows; report the bad ones."""
        if len(request.rows) > IMPORT_ROWS_MAX:
            await _abort_invalid(context, f"{len(request.rows)} rows; send at most {IMPORT_ROWS_MAX} per request")
        try:
            snapshot, rejections = messages.snapshot_from_request(request, self._clock())
        except ValueError as exc:
            await _abort_invalid(context, str(exc))
        snapshot_id = await _answer(context, self._reconciler.import_snapshot(snapshot, rejected=len(rejections)))
        return reconciliation_pb2.ImportSnapshotResponse(
            snapshot_id=snapshot_id, accepted=len(snapshot.rows), rejections=messages.rejection_messages(rejections)
        )

    async def PullSnapshot(
        self, request: reconciliation_pb2.PullSnapshotRequest, context: Context
    ) -> reconciliation_pb2.PullSnapshotResponse:
        """Pull from the configured source now: fresh, stale (with its age) or unavailable."""
        try:
            outcome = await _answer(context, self._reconciler.pull(reconcile=request.reconcile))
        except NoSourceError as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        result = outcome.result
        response = reconciliation_pb2.PullSnapshotResponse(
            status=_STATUS[result.status],
            source=result.source,
            snapshot_id=outcome.snapshot_id,
            age_s=result.age_s,
            error=result.error,
            rejections=messages.rejection_messages(result.rejections),
        )
        if result.snapshot is not None:
            response.taken_at.CopyFrom(from_micros(result.snapshot.taken_at_us))
            response.pulled_at.CopyFrom(from_micros(result.pulled_at_us))
            response.rows = len(result.snapshot.rows)
        if outcome.report is not None:
            response.reconciliation.CopyFrom(
                messages.run_message(outcome.report.run, outcome.report.already_reconciled)
            )
        return response

    async def Reconcile(
        self, request: reconciliation_pb2.ReconcileRequest, context: Context
    ) -> reconciliation_pb2.ReconcileResponse:
        """Compare one count batch or snapshot (once) and return its drifts and summary."""
        subject = request.WhichOneof("subject")
        if subject is None:
            await _abort_invalid(context, "name a subject: cycle_count_batch_id, snapshot_id or snapshot_source")
        try:
            if subject == "cycle_count_batch_id":
                work = self._reconciler.reconcile_counts(request.cycle_count_batch_id)
            elif subject == "snapshot_id":
                work = self._reconciler.reconcile_snapshot(request.snapshot_id)
            else:
                work = self._reconciler.reconcile_latest(request.snapshot_source)
            report = await _answer(context, work)
        except NotFoundError as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except ValidationError as exc:
            await _abort_invalid(context, str(exc))
        return messages.run_message(report.run, report.already_reconciled)

    async def ListDrifts(
        self, request: reconciliation_pb2.ListDriftsRequest, context: Context
    ) -> reconciliation_pb2.ListDriftsResponse:
        """Recorded drifts newest first, filtered, paged."""
        try:
            size = page_size(request.page_size)
            before = decode_drift_token(request.page_token) if request.page_token else None
            where = DriftFilter(
                run_id=request.run_id,
                source_kind=messages.SOURCE_KIND_NAMES.get(request.source_kind, ""),
                source=request.source,
                biz_location=request.biz_location,
                gtin=request.gtin,
                abc_class=request.abc_class,
                out_of_tolerance_only=request.out_of_tolerance_only,
                since_us=messages.timestamp_micros(request.since, "since") if request.HasField("since") else None,
                until_us=messages.timestamp_micros(request.until, "until") if request.HasField("until") else None,
            )
        except (ValidationError, ValueError) as exc:
            await _abort_invalid(context, str(exc))
        rows = await _answer(context, self._reconciler.repository.list_drifts(where, size + 1, before))
        page = rows[:size]
        token = ""
        if len(rows) > size:
            last = page[-1]
            token = encode_drift_token(last.recorded_at_us, last.run_id, last.row_no)
        return reconciliation_pb2.ListDriftsResponse(
            drifts=[messages.recorded_drift_message(row) for row in page], next_page_token=token
        )

    async def GetKpis(
        self, request: reconciliation_pb2.GetKpisRequest, context: Context
    ) -> reconciliation_pb2.GetKpisResponse:
        """Record accuracy, freshness, exceptions and data quality over the window ending now."""
        window_s = _window_s(request.window) if request.HasField("window") else KPI_WINDOW_S_DEFAULT
        if window_s is None:
            await _abort_invalid(context, f"window: expected a positive duration of at most {KPI_WINDOW_S_MAX} s")
        section = self._reconciler.section
        now_us = self._clock()
        kpis = await _answer(
            context,
            collect_kpis(
                self._reconciler.repository.store,
                now_us - round(window_s * MICROS_PER_SECOND),
                now_us,
                now_us,
                section.freshness_sla_s,
                section.timeliness_sla_s,
            ),
        )
        return messages.kpis_message(kpis, section.freshness_sla_s, section.timeliness_sla_s)


_STATUS = {
    "fresh": reconciliation_pb2.SNAPSHOT_STATUS_FRESH,
    "stale": reconciliation_pb2.SNAPSHOT_STATUS_STALE,
    "unavailable": reconciliation_pb2.SNAPSHOT_STATUS_UNAVAILABLE,
}


def _window_s(window: Duration) -> float | None:
    seconds = window.seconds + window.nanos / 1e9
    return seconds if 0 < seconds <= KPI_WINDOW_S_MAX else None


async def _abort_invalid(context: Context, message: str) -> NoReturn:
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, message)
    raise AssertionError("abort returned")  # pragma: no cover - abort always raises


async def _answer(context: Context, work: Awaitable[Answer]) -> Answer:
    """Await store work, turning a StoreError into UNAVAILABLE."""
    try:
        return await work
    except StoreError as exc:
        await context.abort(grpc.StatusCode.UNAVAILABLE, f"the store failed: {exc}")
