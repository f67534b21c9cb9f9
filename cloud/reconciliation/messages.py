"""Conversions between `tallyport.v1.reconciliation` messages and the reconciliation models.

Incoming rows are checked here, one by one, with the same checks as the CSV import; a bad row
becomes an `ImportRowRejection` (1-based row index and reason) and the others load.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from google.protobuf.timestamp_pb2 import Timestamp
from tallyport.v1 import reconciliation_pb2

from cloud.reconciliation.files import EPCS_PER_COUNT_MAX
from cloud.reconciliation.kpis import DATA_QUALITY_WEIGHTS, AccuracyGroup, Kpis
from cloud.reconciliation.models import (
    CycleCount,
    Drift,
    EpcDrift,
    ImportResult,
    OnHandSnapshot,
    ReconciliationSummary,
    RowRejection,
    SnapshotRow,
    check_gtin,
    check_location,
    check_quantity,
    check_text,
)
from cloud.reconciliation.repository import RecordedDrift, RunRecord
from cloud.timestamps import from_micros, to_micros

__all__ = [
    "DRIFTS_IN_RESPONSE_MAX",
    "counts_from_request",
    "drift_message",
    "kpis_message",
    "rejection_messages",
    "run_message",
    "snapshot_from_request",
]

DRIFTS_IN_RESPONSE_MAX = 1000
# The range google.protobuf.Timestamp allows, and the store's years.
_TIME_SECONDS_MIN = 946_684_800  # 2000-01-01
_TIME_SECONDS_END = 4_102_444_800  # 2100-01-01
_ROWS = "rows"

_SOURCE_KIND = {
    "cycle_count": reconciliation_pb2.SOURCE_KIND_CYCLE_COUNT,
    "snapshot": reconciliation_pb2.SOURCE_KIND_SNAPSHOT,
}
SOURCE_KIND_NAMES = {number: name for name, number in _SOURCE_KIND.items()}
_EPC_KIND = {
    "missing": reconciliation_pb2.EPC_DRIFT_KIND_MISSING,
    "unexpected": reconciliation_pb2.EPC_DRIFT_KIND_UNEXPECTED,
}


def timestamp_micros(timestamp: Timestamp, name: str) -> int:
    """A request Timestamp as microseconds; ValueError outside 2000..2099 or with bad nanos."""
    if not (_TIME_SECONDS_MIN <= timestamp.seconds < _TIME_SECONDS_END and 0 <= timestamp.nanos < 10**9):
        raise ValueError(f"{name} is not a time from 2000 to 2099")
    return to_micros(timestamp)


def counts_from_request(rows: Sequence[reconciliation_pb2.CycleCountRow], now_us: int) -> ImportResult[CycleCount]:
    """The checked counts of an ImportCycleCounts request."""
    counts: list[CycleCount] = []
    rejections: list[RowRejection] = []
    for index, row in enumerate(rows, start=1):
        try:
            counts.append(_count(row, now_us))
        except ValueError as exc:
            rejections.append(RowRejection(_ROWS, index, str(exc)))
    return ImportResult(tuple(counts), tuple(rejections))


def _count(row: reconciliation_pb2.CycleCountRow, now_us: int) -> CycleCount:
    if row.epcs and not row.epcs_counted:
        raise ValueError("epcs given without epcs_counted: say whether the list is every tag found")
    if len(row.epcs) > EPCS_PER_COUNT_MAX:
        raise ValueError(f"epcs: {len(row.epcs)} tags; the limit per count is {EPCS_PER_COUNT_MAX}")
    return CycleCount(
        biz_location=check_location(row.biz_location, "biz_location"),
        gtin=check_gtin(row.gtin),
        counted_quantity=check_quantity(row.counted_quantity, "counted_quantity"),
        counted_at_us=timestamp_micros(row.counted_at, "counted_at") if row.HasField("counted_at") else now_us,
        counter_id=check_text(row.counter_id, "counter_id"),
        epcs=tuple(check_text(epc, f"epcs[{i}]") for i, epc in enumerate(row.epcs)) if row.epcs_counted else None,
    )


def snapshot_from_request(
    request: reconciliation_pb2.ImportSnapshotRequest, now_us: int
) -> tuple[OnHandSnapshot, tuple[RowRejection, ...]]:
    """The checked snapshot of an ImportSnapshot request; ValueError when source or taken_at is bad."""
    source = check_text(request.source, "source")
    taken_at_us = timestamp_micros(request.taken_at, "taken_at") if request.HasField("taken_at") else now_us
    rows: list[SnapshotRow] = []
    rejections: list[RowRejection] = []
    first: dict[tuple[str, str], int] = {}
    for index, row in enumerate(request.rows, start=1):
        try:
            checked = SnapshotRow(
                check_location(row.biz_location, "biz_location"),
                check_gtin(row.gtin),
                check_quantity(row.quantity),
            )
        except ValueError as exc:
            rejections.append(RowRejection(_ROWS, index, str(exc)))
            continue
        place = (checked.biz_location, checked.gtin)
        if place in first:
            reason = f"{checked.gtin} at {checked.biz_location} is already listed in row {first[place]}"
            rejections.append(RowRejection(_ROWS, index, reason))
            continue
        first[place] = index
        rows.append(checked)
    return OnHandSnapshot(source, taken_at_us, tuple(rows)), tuple(rejections)


def rejection_messages(rejections: Iterable[RowRejection]) -> list[reconciliation_pb2.ImportRowRejection]:
    """Rejections as the API reports them (row = 1-based index, or the file line for CSV)."""
    return [reconciliation_pb2.ImportRowRejection(row=item.line, reason=item.reason) for item in rejections]


def drift_message(drift: Drift, run_id: str, row: int, recorded_at_us: int) -> reconciliation_pb2.Drift:
    """One drift as the API reports it."""
    return reconciliation_pb2.Drift(
        run_id=run_id,
        row=row,
        source_kind=_SOURCE_KIND[drift.source_kind],
        source=drift.source,
        biz_location=drift.biz_location,
        gtin=drift.gtin,
        abc_class=drift.abc_class,
        system_quantity=drift.system_quantity,
        counted_quantity=drift.counted_quantity,
        variance=drift.variance,
        unit_cost=drift.unit_cost,
        variance_value=drift.variance_value,
        tolerance_pct=drift.tolerance_pct,
        within_tolerance=drift.within_tolerance,
        counted_at=from_micros(drift.counted_at_us),
        recorded_at=from_micros(recorded_at_us),
    )


def recorded_drift_message(recorded: RecordedDrift) -> reconciliation_pb2.Drift:
    """A stored drift as ListDrifts reports it."""
    return drift_message(recorded.drift, recorded.run_id, recorded.row_no, recorded.recorded_at_us)


def summary_message(summary: ReconciliationSummary) -> reconciliation_pb2.ReconcileSummary:
    """The totals of a run."""
    message = reconciliation_pb2.ReconcileSummary(
        run_id=summary.run_id,
        source_kind=_SOURCE_KIND[summary.source_kind],
        source=summary.source,
        subject_id=summary.subject_id,
        rows_compared=summary.rows_compared,
        accurate=summary.accurate,
        gross_variance_value=summary.gross_variance_value,
        net_variance_value=summary.net_variance_value,
        system_value=summary.system_value,
        missing_epcs=summary.missing_epcs,
        unexpected_epcs=summary.unexpected_epcs,
        taken_at=from_micros(summary.taken_at_us),
        recorded_at=from_micros(summary.recorded_at_us),
    )
    if summary.record_accuracy is not None:
        message.record_accuracy = summary.record_accuracy
    if summary.dollar_accuracy is not None:
        message.dollar_accuracy = summary.dollar_accuracy
    return message


def run_message(run: RunRecord, already_reconciled: bool) -> reconciliation_pb2.ReconcileResponse:
    """A run with its drifts: out-of-tolerance ones first when there are too many to send them all."""
    summary = run.summary
    rows = list(enumerate(run.drifts, start=1))
    truncated = len(rows) > DRIFTS_IN_RESPONSE_MAX or len(run.epc_drifts) > DRIFTS_IN_RESPONSE_MAX
    if len(rows) > DRIFTS_IN_RESPONSE_MAX:
        rows = sorted(rows, key=lambda item: (item[1].within_tolerance, item[0]))[:DRIFTS_IN_RESPONSE_MAX]
        rows.sort(key=lambda item: item[0])
    return reconciliation_pb2.ReconcileResponse(
        summary=summary_message(summary),
        drifts=[drift_message(drift, summary.run_id, row, summary.recorded_at_us) for row, drift in rows],
        epc_drifts=[_epc_drift_message(drift) for drift in run.epc_drifts[:DRIFTS_IN_RESPONSE_MAX]],
        already_reconciled=already_reconciled,
        truncated=truncated,
    )


def _epc_drift_message(drift: EpcDrift) -> reconciliation_pb2.EpcDrift:
    return reconciliation_pb2.EpcDrift(
        biz_location=drift.biz_location,
        gtin=drift.gtin,
        epc=drift.epc,
        kind=_EPC_KIND[drift.kind],
        system_location=drift.system_location,
    )


def _accuracy_message(group: AccuracyGroup) -> reconciliation_pb2.RecordAccuracy:
    message = reconciliation_pb2.RecordAccuracy(
        key=group.key,
        counts=group.counts,
        accurate=group.accurate,
        system_value=group.system_value,
        gross_variance_value=group.gross_variance_value,
    )
    if group.record_accuracy is not None:
        message.record_accuracy = group.record_accuracy
    if group.dollar_accuracy is not None:
        message.dollar_accuracy = group.dollar_accuracy
    return message


def _optional(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _exceptions_message(kpis: Kpis) -> reconciliation_pb2.ExceptionKpis:
    stats = kpis.exceptions
    message = reconciliation_pb2.ExceptionKpis(
        raised=stats.raised,
        resolved=stats.resolved,
        open=stats.open,
        raised_by_rule=dict(stats.by_rule),
    )
    for name in ("resolution_time_s_mean", "resolution_time_s_p50", "resolution_time_s_p90", "recurrence_rate"):
        value = _optional(getattr(stats, name))
        if value is not None:
            setattr(message, name, value)
    return message


def kpis_message(kpis: Kpis, freshness_sla_s: float, timeliness_sla_s: float) -> reconciliation_pb2.GetKpisResponse:
    """Every KPI group as GetKpis answers."""
    response = reconciliation_pb2.GetKpisResponse(
        since=from_micros(kpis.since_us),
        until=from_micros(kpis.until_us),
        record_accuracy=_accuracy_message(kpis.overall),
        record_accuracy_by_location=[_accuracy_message(group) for group in kpis.by_location],
        record_accuracy_by_abc_class=[_accuracy_message(group) for group in kpis.by_abc_class],
        snapshot_agreement_by_source=[_accuracy_message(group) for group in kpis.by_snapshot_source],
        freshness=[
            reconciliation_pb2.GatewayFreshness(
                gateway_id=item.gateway_id,
                last_contact=from_micros(item.last_contact_us),
                age_s=item.age_s,
                sla_s=item.sla_s,
                fresh=item.fresh,
            )
            for item in kpis.freshness
        ],
        exceptions=_exceptions_message(kpis),
        freshness_sla_s=freshness_sla_s,
        timeliness_sla_s=timeliness_sla_s,
        data_quality_weights=dict(DATA_QUALITY_WEIGHTS),
    )
    for feed in kpis.data_quality:
        message = response.data_quality.add(
            gateway_id=feed.gateway_id,
            expected_seqs=feed.expected_seqs,
            lost_seqs=feed.lost_seqs,
            events_in_window=feed.events_in_window,
            on_time_events=feed.on_time_events,
            events_stored=feed.events_stored,
            duplicates=feed.duplicates,
            rejects=feed.rejects,
        )
        for name in ("score", "completeness", "timeliness", "consistency", "validity", "lag_s_mean"):
            value = getattr(feed, name)
            if value is not None:
                setattr(message, name, value)
    return response
