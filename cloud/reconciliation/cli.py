"""`tallyport-cloud reconcile` and `tallyport-cloud kpis`: run a reconciliation, print drifts and KPIs.

    tallyport-cloud reconcile --cycle-counts FILE                  # CSV of counts (see reconciliation.files)
    tallyport-cloud reconcile --snapshot FILE --source NAME [--taken-at TIME]   # CSV of an ERP/WMS on-hand
    tallyport-cloud reconcile --pull                               # from the server's [reconciliation] erp_url
    tallyport-cloud kpis [--window 24h] [--json]

Files are parsed here; every bad row is printed as `rejected FILE:LINE: reason` and the good rows
are sent to the server, which compares them with the event-derived on-hand and records the drifts.
`reconcile` prints the drifts, the tags missing or unexpected (counts that list EPCs), the run's
record and dollar accuracy, and its accuracy by location and by ABC class. `kpis` prints every KPI
table of the window: record accuracy (overall, by location, by ABC class), snapshot agreement per
source, freshness per gateway, exception handling, data quality per feed.

Exit codes: 0 done; 1 a row was rejected (the others were reconciled), the ERP/WMS source is
unavailable, or the server answered with an error; 2 bad usage or the server could not be
reached (cloud.cli translates `ServerUnreachableError` and `ConfigError`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from google.protobuf.duration_pb2 import Duration
from grpc import aio
from tallyport.v1 import reconciliation_pb2, reconciliation_pb2_grpc

from cloud import cli_output
from cloud.cli_rpc import call_server
from cloud.errors import ConfigError, ValidationError
from cloud.exceptions.cli import parse_duration
from cloud.reconciliation.files import parse_time, read_cycle_counts, read_snapshot
from cloud.reconciliation.kpis import AccuracyGroup, ComparedRow, accuracy_groups
from cloud.reconciliation.models import CycleCount, RowRejection
from cloud.timestamps import from_micros, system_clock_us

__all__ = ["COMMANDS", "add_parsers", "run"]

COMMANDS = ("reconcile", "kpis")
EXIT_OK = 0
EXIT_REJECTED_OR_ERROR = 1
PAGE_SIZE_MAX = 1000
R = reconciliation_pb2
DRIFT_HEADERS = [
    "LOCATION",
    "GTIN",
    "ABC",
    "SYSTEM",
    "COUNTED",
    "VARIANCE",
    "VALUE",
    "TOLERANCE",
    "OK",
    "SOURCE",
]
ACCURACY_HEADERS = ["COUNTS", "ACCURATE", "IRA", "SYSTEM_VALUE", "VARIANCE_VALUE", "DOLLAR_ACCURACY"]
_STATUS_WORDS = {
    R.SNAPSHOT_STATUS_FRESH: "fresh",
    R.SNAPSHOT_STATUS_STALE: "stale",
    R.SNAPSHOT_STATUS_UNAVAILABLE: "unavailable",
}


def add_parsers(commands: Any, client: argparse.ArgumentParser) -> None:
    """`reconcile` and `kpis`, on the CLI's `client` options (--server, --timeout, --json)."""
    reconcile = commands.add_parser(
        "reconcile",
        parents=[client],
        help="compare cycle counts or an ERP/WMS snapshot with the on-hand; print drifts and accuracy",
        description="Send cycle counts or an ERP/WMS on-hand snapshot (CSV, parsed here) to the server, or have\n"
        "it pull the configured ERP/WMS source; the server compares with the event-derived on-hand,\n"
        "judges each row by its ABC tolerance and records every drift. Prints the drifts and the\n"
        "accuracy; bad rows are printed as FILE:LINE: reason (exit code 1, the others are reconciled).\n"
        "Counts CSV: location,gtin,quantity,counter[,counted_at][,epcs]. Snapshot CSV: location,gtin,quantity.",
        epilog="examples:\n"
        "  tallyport-cloud reconcile --cycle-counts deploy/demo/cycle-counts.csv\n"
        "  tallyport-cloud reconcile --snapshot wms-onhand.csv --source wms-dc1 --taken-at 2026-11-29T06:00:00Z\n"
        "  tallyport-cloud reconcile --pull --server cloud.example:50051",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = reconcile.add_mutually_exclusive_group(required=True)
    what.add_argument("--cycle-counts", type=Path, metavar="FILE", help="a CSV file of cycle counts")
    what.add_argument("--snapshot", type=Path, metavar="FILE", help="a CSV file of an ERP/WMS on-hand snapshot")
    what.add_argument("--pull", action="store_true", help="pull from the server's configured ERP/WMS source")
    reconcile.add_argument("--source", default="", help="with --snapshot: the source system's name, e.g. wms-dc1")
    reconcile.add_argument("--taken-at", default="", help="with --snapshot: when it was taken (default: now)")
    kpis = commands.add_parser(
        "kpis",
        parents=[client],
        help="record accuracy, freshness, exceptions and data quality over a window",
        description="Every KPI table over the window ending now: inventory record accuracy (overall, by\n"
        "location, by ABC class; never netted), snapshot agreement per source, data freshness per\n"
        "gateway, exception resolution time and recurrence, data-quality score per feed.",
        epilog="examples:\n  tallyport-cloud kpis\n  tallyport-cloud kpis --window 7d --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    kpis.add_argument("--window", type=parse_duration, default=24 * 3600, help="e.g. 90m, 24h, 7d (default 24h)")


async def run(args: argparse.Namespace) -> int:
    """Run `reconcile` or `kpis` against the server in `args.server`; print; return the exit code."""

    async def action(channel: aio.Channel) -> int:
        stub = reconciliation_pb2_grpc.ReconciliationServiceStub(channel)
        return await (_kpis(stub, args) if args.command == "kpis" else _reconcile(stub, args))

    return await call_server(args.server, action)


# ---- reconcile -------------------------------------------------------------------------------


async def _reconcile(stub: Any, args: argparse.Namespace) -> int:
    if args.pull:
        return await _pull(stub, args)
    if args.snapshot is not None and not args.source.strip():
        raise ConfigError("--snapshot needs --source NAME: the source system the snapshot comes from")
    if args.cycle_counts is not None and (args.source or args.taken_at):
        raise ConfigError("--source and --taken-at go with --snapshot")
    path: Path = args.cycle_counts or args.snapshot
    try:
        if args.cycle_counts is not None:
            rejections, request = _counts_request(path)
            imported = await stub.ImportCycleCounts(request, timeout=args.timeout)
            subject = R.ReconcileRequest(cycle_count_batch_id=imported.batch_id)
        else:
            rejections, snapshot_request = _snapshot_request(path, args.source, args.taken_at)
            imported = await stub.ImportSnapshot(snapshot_request, timeout=args.timeout)
            subject = R.ReconcileRequest(snapshot_id=imported.snapshot_id)
    except ValidationError as exc:  # the file as a whole: unreadable, bad header
        raise ConfigError(str(exc)) from exc
    # Rows the server refused too (it checks them again) are named by their file line.
    lines = _accepted_lines(path, rejections, imported.accepted + len(imported.rejections))
    server_rejections = [RowRejection(str(path), lines[item.row - 1], item.reason) for item in imported.rejections]
    for rejection in [*rejections, *server_rejections]:
        print(f"rejected {rejection}", file=sys.stderr)
    failed = bool(rejections or server_rejections)
    if not imported.accepted:
        print("no row to reconcile", file=sys.stderr)
        return EXIT_REJECTED_OR_ERROR
    reply = await stub.Reconcile(subject, timeout=args.timeout)
    await _print_run(stub, reply, args)
    return EXIT_REJECTED_OR_ERROR if failed else EXIT_OK


def _counts_request(path: Path) -> tuple[tuple[RowRejection, ...], reconciliation_pb2.ImportCycleCountsRequest]:
    result = read_cycle_counts(path, system_clock_us())
    return result.rejections, R.ImportCycleCountsRequest(
        label=path.name, rows=[_count_row(count) for count in result.rows]
    )


def _count_row(count: CycleCount) -> reconciliation_pb2.CycleCountRow:
    return R.CycleCountRow(
        biz_location=count.biz_location,
        gtin=count.gtin,
        counted_quantity=count.counted_quantity,
        counted_at=from_micros(count.counted_at_us),
        counter_id=count.counter_id,
        epcs_counted=count.epcs is not None,
        epcs=list(count.epcs or ()),
    )


def _snapshot_request(
    path: Path, source: str, taken_at: str
) -> tuple[tuple[RowRejection, ...], reconciliation_pb2.ImportSnapshotRequest]:
    try:
        taken_at_us = parse_time(taken_at, "--taken-at") if taken_at else system_clock_us()
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    result = read_snapshot(path)
    rows = [R.SnapshotRow(biz_location=row.biz_location, gtin=row.gtin, quantity=row.quantity) for row in result.rows]
    return result.rejections, R.ImportSnapshotRequest(
        source=source.strip(), taken_at=from_micros(taken_at_us), rows=rows
    )


def _accepted_lines(path: Path, rejections: Sequence[RowRejection], accepted: int) -> list[int]:
    """The file lines of the rows sent, in order (to name a row the server refuses by its line)."""
    refused = {item.line for item in rejections}
    data_lines = [
        number
        for number, text in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1)
        if number > 1 and text.strip(", \t") and number not in refused
    ]
    # A quoted cell spanning lines makes this approximate; then rows are named by index instead.
    return data_lines if len(data_lines) == accepted else list(range(1, accepted + 1))


async def _pull(stub: Any, args: argparse.Namespace) -> int:
    reply = await stub.PullSnapshot(R.PullSnapshotRequest(reconcile=True), timeout=args.timeout)
    status = _STATUS_WORDS.get(reply.status, "unknown")
    if reply.status == R.SNAPSHOT_STATUS_UNAVAILABLE:
        print(f"source {reply.source} is unavailable: {reply.error}", file=sys.stderr)
        return EXIT_REJECTED_OR_ERROR
    taken = cli_output.format_time(reply.taken_at)
    if reply.status == R.SNAPSHOT_STATUS_STALE:
        print(
            f"source {reply.source} is failing ({reply.error}); using its last good snapshot, pulled "
            f"{reply.age_s:.0f} s ago (stale), taken {taken}",
            file=sys.stderr,
        )
    else:
        print(f"pulled {reply.rows} rows from {reply.source} ({status}), taken {taken}", file=sys.stderr)
    for item in reply.rejections:
        print(f"rejected {reply.source} row {item.row}: {item.reason}", file=sys.stderr)
    if reply.HasField("reconciliation"):
        run = reply.reconciliation
    else:  # a stale snapshot was compared when it was fresh: show that run
        run = await stub.Reconcile(R.ReconcileRequest(snapshot_id=reply.snapshot_id), timeout=args.timeout)
    await _print_run(stub, run, args)
    return EXIT_OK


async def _print_run(stub: Any, reply: reconciliation_pb2.ReconcileResponse, args: argparse.Namespace) -> None:
    drifts = list(reply.drifts)
    if reply.truncated:
        drifts = await _all_drifts(stub, reply.summary.run_id, args.timeout)
    if args.json:
        for line in cli_output.json_lines([reply.summary, *drifts, *reply.epc_drifts]):
            print(line)
        return
    summary = reply.summary
    if reply.already_reconciled:
        print(f"(already reconciled at {cli_output.format_time(summary.recorded_at)}: the recorded run)")
    for line in cli_output.table(DRIFT_HEADERS, [_drift_cells(drift) for drift in drifts]):
        print(line)
    if reply.epc_drifts:
        print()
        epc_rows = [[e.biz_location, e.gtin, _word(e.kind), e.epc, e.system_location or "-"] for e in reply.epc_drifts]
        for line in cli_output.table(["LOCATION", "GTIN", "TAG", "EPC", "SYSTEM_LOCATION"], epc_rows):
            print(line)
    print()
    record = _percent(summary.record_accuracy) if summary.HasField("record_accuracy") else "-"
    dollar = _percent(summary.dollar_accuracy) if summary.HasField("dollar_accuracy") else "-"
    print(
        f"run {summary.run_id}: {summary.accurate} of {summary.rows_compared} within tolerance; "
        f"record accuracy {record}; dollar accuracy {dollar}; "
        f"gross variance value {summary.gross_variance_value:.2f} (net {summary.net_variance_value:.2f})"
    )
    rows = [_compared(drift) for drift in drifts]
    for header, groups in (
        ("LOCATION", accuracy_groups(rows, lambda row: row.biz_location)),
        ("ABC_CLASS", accuracy_groups(rows, lambda row: row.abc_class)),
    ):
        print()
        for line in cli_output.table([header, *ACCURACY_HEADERS], _group_rows(groups)):
            print(line)


async def _all_drifts(stub: Any, run_id: str, timeout_s: float) -> list[reconciliation_pb2.Drift]:
    request = R.ListDriftsRequest(run_id=run_id, page_size=PAGE_SIZE_MAX)
    drifts: list[reconciliation_pb2.Drift] = []
    while True:
        page = await stub.ListDrifts(request, timeout=timeout_s)
        drifts.extend(page.drifts)
        if not page.next_page_token:
            return sorted(drifts, key=lambda drift: drift.row)
        request.page_token = page.next_page_token


def _compared(drift: reconciliation_pb2.Drift) -> ComparedRow:
    return ComparedRow(
        drift.source,
        drift.biz_location,
        drift.abc_class,
        drift.within_tolerance,
        drift.system_quantity * drift.unit_cost,
        abs(drift.variance_value),
    )


def _drift_cells(drift: reconciliation_pb2.Drift) -> list[str]:
    return [
        drift.biz_location,
        drift.gtin,
        drift.abc_class or "-",
        cli_output.format_quantity(drift.system_quantity),
        cli_output.format_quantity(drift.counted_quantity),
        _signed(drift.variance),
        f"{drift.variance_value:+.2f}",
        f"±{cli_output.format_quantity(drift.tolerance_pct)} %",
        "yes" if drift.within_tolerance else "NO",
        drift.source,
    ]


def _group_rows(groups: Sequence[AccuracyGroup]) -> list[list[str]]:
    return [
        [
            group.key or "-",
            str(group.counts),
            str(group.accurate),
            _percent(group.record_accuracy),
            f"{group.system_value:.2f}",
            f"{group.gross_variance_value:.2f}",
            _percent(group.dollar_accuracy),
        ]
        for group in groups
    ]


# ---- kpis ------------------------------------------------------------------------------------


async def _kpis(stub: Any, args: argparse.Namespace) -> int:
    reply = await stub.GetKpis(R.GetKpisRequest(window=Duration(seconds=args.window)), timeout=args.timeout)
    if args.json:
        for line in cli_output.json_lines([reply]):
            print(line)
        return EXIT_OK
    for line in kpi_lines(reply):
        print(line)
    return EXIT_OK


def kpi_lines(reply: reconciliation_pb2.GetKpisResponse) -> list[str]:
    """Every KPI table of a GetKpis answer, as printed by `tallyport-cloud kpis`."""
    since, until = cli_output.format_time(reply.since), cli_output.format_time(reply.until)
    lines = [f"KPIs from {since} to {until}", ""]
    overall = reply.record_accuracy
    lines.append(
        f"Inventory record accuracy (cycle counts, never netted): {_optional_percent(overall, 'record_accuracy')} "
        f"({overall.accurate} of {overall.counts} within tolerance); "
        f"dollar accuracy {_optional_percent(overall, 'dollar_accuracy')}"
    )
    for title, groups in (
        ("LOCATION", reply.record_accuracy_by_location),
        ("ABC_CLASS", reply.record_accuracy_by_abc_class),
        ("SNAPSHOT_SOURCE", reply.snapshot_agreement_by_source),
    ):
        if groups:
            lines += ["", *cli_output.table([title, *ACCURACY_HEADERS], [_accuracy_cells(g) for g in groups])]
    lines += ["", f"Data freshness (SLA {cli_output.format_quantity(reply.freshness_sla_s)} s):"]
    lines += cli_output.table(
        ["GATEWAY", "LAST_CONTACT", "AGE_S", "FRESH"],
        [
            [f.gateway_id, cli_output.format_time(f.last_contact), f"{f.age_s:.0f}", "yes" if f.fresh else "NO"]
            for f in reply.freshness
        ],
    )
    exceptions = reply.exceptions
    lines += [
        "",
        f"Exceptions: {exceptions.raised} raised, {exceptions.resolved} resolved, {exceptions.open} open; "
        f"resolution time mean {_optional_seconds(exceptions, 'resolution_time_s_mean')}, "
        f"p50 {_optional_seconds(exceptions, 'resolution_time_s_p50')}, "
        f"p90 {_optional_seconds(exceptions, 'resolution_time_s_p90')}; "
        f"recurrence rate {_optional_percent(exceptions, 'recurrence_rate')}",
    ]
    weights = ", ".join(f"{name} {weight:g}" for name, weight in sorted(reply.data_quality_weights.items()))
    lines += ["", f"Data quality per feed (timeliness SLA {reply.timeliness_sla_s:g} s; weights {weights}):"]
    lines += cli_output.table(
        ["FEED", "SCORE", "COMPLETENESS", "TIMELINESS", "CONSISTENCY", "VALIDITY", "LOST/EXPECTED", "LAG_S_MEAN"],
        [
            [
                feed.gateway_id,
                _optional_percent(feed, "score"),
                _optional_percent(feed, "completeness"),
                _optional_percent(feed, "timeliness"),
                _optional_percent(feed, "consistency"),
                _optional_percent(feed, "validity"),
                f"{feed.lost_seqs}/{feed.expected_seqs}",
                f"{feed.lag_s_mean:.1f}" if feed.HasField("lag_s_mean") else "-",
            ]
            for feed in reply.data_quality
        ],
    )
    return lines


def _accuracy_cells(group: reconciliation_pb2.RecordAccuracy) -> list[str]:
    return [
        group.key or "-",
        str(group.counts),
        str(group.accurate),
        _optional_percent(group, "record_accuracy"),
        f"{group.system_value:.2f}",
        f"{group.gross_variance_value:.2f}",
        _optional_percent(group, "dollar_accuracy"),
    ]


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f} %"


def _optional_percent(message: Any, field: str) -> str:
    return _percent(getattr(message, field)) if message.HasField(field) else "-"


def _optional_seconds(message: Any, field: str) -> str:
    return f"{getattr(message, field):.0f} s" if message.HasField(field) else "-"


def _signed(quantity: float) -> str:
    text = cli_output.format_quantity(abs(quantity))
    return f"+{text}" if quantity > 0 else (f"-{text}" if quantity < 0 else "0")


def _word(kind: int) -> str:
    return str(R.EpcDriftKind.Name(kind)).removeprefix("EPC_DRIFT_KIND_").lower()  # type: ignore[arg-type]
