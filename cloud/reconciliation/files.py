"""CSV import of cycle counts and ERP/WMS on-hand snapshots: a bad row is rejected with file, line and reason.

Both files are UTF-8 (a byte-order mark is allowed), comma-separated, with a header row naming
the columns (any order, case-insensitive). A header without a required column, or with a column
this format does not know (a typo would otherwise drop data silently), rejects the whole file;
a bad row is rejected with its line and reason and the rest loads.

Cycle counts (`read_cycle_counts`):

    location,gtin,quantity,counted_at,counter,epcs
    urn:tallyport:loc:dc1:dock-4,09501101530003,12,2026-11-29T10:00:00Z,alice,
    urn:tallyport:loc:dc1:dock-4,05901234123457,5,,bob,urn:epc:id:sgtin:5901234.012345.1 urn:epc:...

- location: the biz_location exactly as events carry it; gtin: GTIN-8/12/13/14 (zero-padded to 14);
- quantity: a number >= 0; counted_at: ISO 8601 with a zone (Z or +01:00), empty = import time;
- counter: who counted (required); epcs (optional column): the tags found, separated by spaces or
  semicolons (EPC URI, EPC hex or canonical id). An empty cell means the count was by quantity only.

Snapshots (`read_snapshot`): `location,gtin,quantity`; one row per (location, gtin), a repeated
place is rejected (its first row stands). The source name and taken_at come from the caller.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cloud.errors import ValidationError
from cloud.reconciliation.models import (
    CycleCount,
    ImportResult,
    OnHandSnapshot,
    RowRejection,
    SnapshotRow,
    check_gtin,
    check_location,
    check_quantity,
    check_text,
)

__all__ = [
    "CSV_BYTES_MAX",
    "CYCLE_COUNT_COLUMNS",
    "EPCS_PER_COUNT_MAX",
    "ROWS_MAX",
    "SNAPSHOT_COLUMNS",
    "parse_counts_csv",
    "parse_snapshot_csv",
    "parse_time",
    "read_cycle_counts",
    "read_snapshot",
    "snapshot_of",
]

CSV_BYTES_MAX = 64 * 1024 * 1024
ROWS_MAX = 500_000
EPCS_PER_COUNT_MAX = 100_000
CYCLE_COUNT_COLUMNS = ("location", "gtin", "quantity", "counted_at", "counter", "epcs")
_CYCLE_COUNT_REQUIRED = ("location", "gtin", "quantity", "counter")
SNAPSHOT_COLUMNS = ("location", "gtin", "quantity")
_EPC_SEPARATORS = re.compile(r"[\s;]+")
# The range of times the store and protobuf Timestamp both hold comfortably.
_TIME_YEAR_MIN = 2000
_TIME_YEAR_MAX = 2100
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def read_cycle_counts(path: Path, now_us: int) -> ImportResult[CycleCount]:
    """The cycle counts of a CSV file; ValidationError when the file cannot be read or its header is wrong."""
    return parse_counts_csv(_read_text(path), str(path), now_us)


def read_snapshot(path: Path) -> ImportResult[SnapshotRow]:
    """The rows of a snapshot CSV file (`snapshot_of` makes them a snapshot of a source at a time)."""
    return parse_snapshot_csv(_read_text(path), str(path))


def parse_counts_csv(text: str, where: str, now_us: int) -> ImportResult[CycleCount]:
    """Cycle counts from CSV text; `where` names the input in rejections (a file name)."""
    rows: list[CycleCount] = []
    rejections: list[RowRejection] = []
    for line, cells in _records(text, where, CYCLE_COUNT_COLUMNS, _CYCLE_COUNT_REQUIRED):
        try:
            rows.append(_cycle_count(cells, now_us))
        except ValueError as exc:
            rejections.append(RowRejection(where, line, str(exc)))
    return ImportResult(tuple(rows), tuple(rejections))


def parse_snapshot_csv(text: str, where: str) -> ImportResult[SnapshotRow]:
    """Snapshot rows from CSV text; a place listed twice is rejected on its second line."""
    rows: list[SnapshotRow] = []
    rejections: list[RowRejection] = []
    first_line: dict[tuple[str, str], int] = {}
    for line, cells in _records(text, where, SNAPSHOT_COLUMNS, SNAPSHOT_COLUMNS):
        try:
            _row_error(cells)
            row = SnapshotRow(
                check_location(cells["location"]), check_gtin(cells["gtin"]), _quantity(cells["quantity"])
            )
        except ValueError as exc:
            rejections.append(RowRejection(where, line, str(exc)))
            continue
        place = (row.biz_location, row.gtin)
        if place in first_line:
            reason = f"{row.gtin} at {row.biz_location} is already listed on line {first_line[place]}"
            rejections.append(RowRejection(where, line, reason))
            continue
        first_line[place] = line
        rows.append(row)
    return ImportResult(tuple(rows), tuple(rejections))


def snapshot_of(source: str, taken_at_us: int, rows: Sequence[SnapshotRow]) -> OnHandSnapshot:
    """The snapshot a source system reported at `taken_at_us`."""
    return OnHandSnapshot(source, taken_at_us, tuple(rows))


def parse_time(text: str, name: str = "counted_at") -> int:
    """ISO 8601 with a zone offset as microseconds since the epoch; ValueError saying what was expected."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name} {text.strip()[:64]!r}: expected ISO 8601 like 2026-11-29T10:00:00Z") from None
    if moment.tzinfo is None:
        raise ValueError(f"{name} {text.strip()[:64]!r}: needs a zone offset, e.g. Z or +01:00")
    if not _TIME_YEAR_MIN <= moment.year < _TIME_YEAR_MAX:
        raise ValueError(f"{name} {text.strip()[:64]!r}: expected a year from {_TIME_YEAR_MIN} to {_TIME_YEAR_MAX - 1}")
    return (moment - _EPOCH) // _MICROSECOND


def _read_text(path: Path) -> str:
    try:
        size = path.stat().st_size
        if size > CSV_BYTES_MAX:
            raise ValidationError(f"{path}: {size} bytes; the limit is {CSV_BYTES_MAX}")
        data = path.read_bytes()
    except OSError as exc:
        raise ValidationError(f"{path}: cannot read the file: {exc.strerror or exc}") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ValidationError(f"{path}:{line}: not UTF-8 text (byte {exc.start})") from exc


def _records(
    text: str, where: str, columns: Sequence[str], required: Sequence[str]
) -> Iterator[tuple[int, dict[str, str]]]:
    """(line, {column: cell}) per non-blank data row; ValidationError for a bad header or too many rows."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""), strict=True)
    header = _header(reader, where, columns, required)
    count = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # e.g. an unterminated quote: nothing after it can be trusted
            raise ValidationError(f"{where}:{reader.line_num}: not valid CSV: {exc}") from exc
        if not any(cell.strip() for cell in cells):
            continue
        count += 1
        if count > ROWS_MAX:
            raise ValidationError(f"{where}:{reader.line_num}: more than {ROWS_MAX} rows; split the file")
        if len(cells) != len(header):
            yield reader.line_num, {"": f"expected {len(header)} cells as in the header, got {len(cells)}"}
            continue
        yield reader.line_num, dict(zip(header, cells, strict=True))


def _header(reader: Iterator[list[str]], where: str, columns: Sequence[str], required: Sequence[str]) -> list[str]:
    try:
        first = next(reader)
    except StopIteration:
        raise ValidationError(f"{where}: empty file; expected a header line: {','.join(columns)}") from None
    except csv.Error as exc:
        raise ValidationError(f"{where}:1: not valid CSV: {exc}") from exc
    header = [cell.strip().lower() for cell in first]
    unknown = [name for name in header if name not in columns]
    if unknown:
        raise ValidationError(
            f"{where}:1: unknown column {unknown[0]!r} in the header; expected columns: {', '.join(columns)}"
        )
    missing = [name for name in required if name not in header]
    if missing:
        raise ValidationError(f"{where}:1: the header has no {missing[0]!r} column; required: {', '.join(required)}")
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise ValidationError(f"{where}:1: column {repeated[0]!r} appears twice in the header")
    return header


def _row_error(cells: dict[str, str]) -> None:
    if "" in cells:
        raise ValueError(cells[""])


def _cycle_count(cells: dict[str, str], now_us: int) -> CycleCount:
    _row_error(cells)
    counted_at = cells.get("counted_at", "").strip()
    epcs_cell = cells.get("epcs", "").strip()
    epcs: tuple[str, ...] | None = None
    if epcs_cell:
        epcs = tuple(check_text(epc, "epc") for epc in _EPC_SEPARATORS.split(epcs_cell) if epc)
        if len(epcs) > EPCS_PER_COUNT_MAX:
            raise ValueError(f"epcs: {len(epcs)} tags; the limit per count is {EPCS_PER_COUNT_MAX}")
    return CycleCount(
        biz_location=check_location(cells["location"]),
        gtin=check_gtin(cells["gtin"]),
        counted_quantity=_quantity(cells["quantity"]),
        counted_at_us=parse_time(counted_at) if counted_at else now_us,
        counter_id=check_text(cells["counter"], "counter"),
        epcs=epcs,
    )


def _quantity(text: str) -> float:
    cell = text.strip()
    if not cell:
        raise ValueError("quantity is empty")
    try:
        value = float(cell)
    except ValueError:
        raise ValueError(f"quantity {cell[:64]!r}: expected a number >= 0") from None
    if not math.isfinite(value):
        raise ValueError(f"quantity {cell[:64]!r}: expected a finite number")
    return check_quantity(value)
