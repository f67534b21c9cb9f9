"""Master data files, CSV and TOML, into records: every bad row rejected with its file, line and reason.

CSV: one file per kind, UTF-8 (a byte order mark is fine), a header row first; the kind is told
by the header: a `gtin` column makes SKUs, `location_id` locations, `name` + `weight` customer
tiers. Blank lines and lines starting with `#` are skipped; an empty cell takes the default.

    skus.csv       gtin*, description*, unit_cost*, currency (EUR), abc_class (C: A|B|C),
                   lifecycle (active: active|phase_out|obsolete), customer_tier (none),
                   annual_usage_units (0), temperature_min_c, temperature_max_c,
                   humidity_min_pct, humidity_max_pct (each: not constrained when empty)
    locations.csv  location_id*, name*, level* (site|zone|door|read_point), parent_id (required
                   below a site), location_type (e.g. dock_staging, cold_storage), customer_tier
    tiers.csv      name*, weight* (> 0), description
    (* required)

TOML: the same keys, in `[[customer_tier]]`, `[[location]]` and `[[sku]]` tables, any of them in
one file; values have their TOML types (a number is a number, not a string).

A rejection names the file and the line: for CSV the line where the row starts; for TOML the
line of the row's `[[table]]` header and its index among those tables (`[[sku]] #3`). A problem
with the whole file (unreadable, not UTF-8, not TOML, an unknown or missing CSV column) is one
rejection at the line concerned, and nothing of that file loads; a CSV quote left open keeps the
rows before it. An unknown TOML table (`[[skus]]`) is one rejection; the other tables load.

`apply_loaded` then stores what was accepted (tiers, then locations parents first, then SKUs) and
maps the store's own rejections (a key given twice, an unknown parent or tier) back to file and line.
"""

from __future__ import annotations

import csv
import io
import re
import tomllib
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from cloud.masterdata.models import (
    LEVEL_RANK,
    ConditionRange,
    CustomerTier,
    Location,
    MasterDataError,
    RowRejection,
    Sku,
    record_key,
)

__all__ = [
    "COLUMNS",
    "KINDS",
    "REQUIRED_COLUMNS",
    "Kind",
    "LoadResult",
    "Origin",
    "Record",
    "Rejection",
    "SourcedRecord",
    "apply_loaded",
    "kind_of",
    "read_file",
    "read_files",
]

Kind = Literal["customer_tier", "location", "sku"]
Record = Sku | Location | CustomerTier
# The order records are stored in: a location may name a tier, a SKU may name a tier.
KINDS: Final[tuple[Kind, ...]] = ("customer_tier", "location", "sku")
_CONDITION_COLUMNS = ("temperature_min_c", "temperature_max_c", "humidity_min_pct", "humidity_max_pct")
COLUMNS: Final[Mapping[Kind, tuple[str, ...]]] = {
    "sku": (
        "gtin",
        "description",
        "unit_cost",
        "currency",
        "abc_class",
        "lifecycle",
        "customer_tier",
        "annual_usage_units",
        *_CONDITION_COLUMNS,
    ),
    "location": ("location_id", "name", "level", "parent_id", "location_type", "customer_tier"),
    "customer_tier": ("name", "weight", "description"),
}
REQUIRED_COLUMNS: Final[Mapping[Kind, tuple[str, ...]]] = {
    "sku": ("gtin", "description", "unit_cost"),
    "location": ("location_id", "name", "level"),
    "customer_tier": ("name", "weight"),
}
# Files larger than this are refused: master data of a site is far smaller, a mistake is not.
FILE_BYTES_MAX = 64 * 1024 * 1024
QUOTED_LENGTH_MAX = 64


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a row came from: file, line (1-based; 0 when unknown) and, for TOML, the table index."""

    file: str
    line: int
    kind: Kind | None = None
    table_index: int | None = None  # TOML: 1-based index among the file's [[kind]] tables

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        if self.table_index is not None:
            where += f": [[{self.kind}]] #{self.table_index}"
        return where


@dataclass(frozen=True, slots=True)
class Rejection:
    """A row (or a whole file) not loaded, where it was, and why, in one line."""

    origin: Origin
    reason: str

    def __str__(self) -> str:
        return f"{self.origin}: {self.reason}"


@dataclass(frozen=True, slots=True)
class SourcedRecord:
    """An accepted record and where it came from, so a later rejection can still name file and line."""

    record: Record
    origin: Origin

    @property
    def kind(self) -> Kind:
        return kind_of(self.record)


@dataclass
class LoadResult:
    """What files held: records that parsed and validated, and rejections."""

    accepted: list[SourcedRecord] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)

    def of_kind(self, kind: Kind) -> list[SourcedRecord]:
        """The accepted records of one kind, in file order."""
        return [sourced for sourced in self.accepted if sourced.kind == kind]

    def extend(self, other: LoadResult) -> None:
        self.accepted.extend(other.accepted)
        self.rejected.extend(other.rejected)


def kind_of(record: Record) -> Kind:
    """ "sku", "location" or "customer_tier"."""
    if isinstance(record, Sku):
        return "sku"
    if isinstance(record, Location):
        return "location"
    return "customer_tier"


def read_files(paths: Iterable[Path]) -> LoadResult:
    """Every file in turn, see `read_file`."""
    result = LoadResult()
    for path in paths:
        result.extend(read_file(path))
    return result


def read_file(path: Path) -> LoadResult:
    """Parse one `.csv` or `.toml` file; never raises for bad content, returns it as rejections."""
    name = str(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".toml"):
        return _file_rejected(name, 0, f"unknown file type {suffix or '(none)'!r}; expected .csv or .toml")
    try:
        if path.stat().st_size > FILE_BYTES_MAX:
            return _file_rejected(name, 0, f"larger than {FILE_BYTES_MAX // (1024 * 1024)} MiB; split it")
        data = path.read_bytes()
    except OSError as exc:
        return _file_rejected(name, 0, f"cannot read the file: {exc.strerror or exc}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return _file_rejected(name, line, f"not UTF-8 text (byte {data[exc.start]:#04x})")
    return parse_csv(name, text) if suffix == ".csv" else parse_toml(name, text)


def _file_rejected(name: str, line: int, reason: str) -> LoadResult:
    return LoadResult(rejected=[Rejection(Origin(name, line), reason)])


# ---- CSV -------------------------------------------------------------------------------------


def parse_csv(name: str, text: str) -> LoadResult:
    """Rows of one CSV file of one kind, told by its header."""
    result = LoadResult()
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    kind: Kind | None = None
    next_line = 1  # the line the next record starts on: a quoted cell may span lines
    while True:
        start = next_line
        try:
            cells = next(reader, None)
        except csv.Error as exc:
            result.rejected.append(Rejection(Origin(name, start, kind), f"not valid CSV: {exc}"))
            return result  # the reader cannot resynchronise after a broken quote
        if cells is None:
            break
        next_line = reader.line_num + 1
        cells = [cell.strip() for cell in cells]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if header is None:
            kind, problem = _csv_header(cells)
            if problem is not None:
                result.rejected.append(Rejection(Origin(name, start), problem))
                return result
            header = cells
            continue
        assert kind is not None
        origin = Origin(name, start, kind)
        if len(cells) != len(header):
            reason = f"expected {len(header)} cells as in the header, got {len(cells)}"
            result.rejected.append(Rejection(origin, reason))
            continue
        _add_row(result, kind, dict(zip(header, cells, strict=True)), origin, from_text=True)
    if header is None:
        result.rejected.append(Rejection(Origin(name, 1), "empty: expected a header row, e.g. " + _example_header()))
    return result


def _csv_header(cells: Sequence[str]) -> tuple[Kind | None, str | None]:
    kind: Kind | None = None
    if "gtin" in cells:
        kind = "sku"
    elif "location_id" in cells:
        kind = "location"
    elif "weight" in cells:
        kind = "customer_tier"
    if kind is None:
        return None, "cannot tell the kind from the header row; expected " + _example_header()
    known = COLUMNS[kind]
    for cell in cells:
        if cell not in known:
            return kind, f"unknown column {_quote(cell)} for {kind} rows; expected some of {', '.join(known)}"
    repeated = sorted({cell for cell in cells if cells.count(cell) > 1})
    if repeated:
        return kind, f"column {_quote(repeated[0])} appears twice"
    missing = [column for column in REQUIRED_COLUMNS[kind] if column not in cells]
    if missing:
        return kind, f"missing column {', '.join(missing)} for {kind} rows"
    return kind, None


def _example_header() -> str:
    return "a 'gtin' column (SKUs), a 'location_id' column (locations) or 'name' and 'weight' (customer tiers)"


# ---- TOML ------------------------------------------------------------------------------------

_TOML_ERROR_LINE = re.compile(r"\(at line (\d+)")


def parse_toml(name: str, text: str) -> LoadResult:
    """Rows of `[[customer_tier]]`, `[[location]]` and `[[sku]]` tables."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = _TOML_ERROR_LINE.search(str(exc))
        return _file_rejected(name, int(match[1]) if match else 0, f"not valid TOML: {exc}")
    result = LoadResult()
    header_lines = _table_header_lines(text)
    for key, value in document.items():
        if key not in COLUMNS:
            lines = header_lines.get(key, [0])
            tables = ", ".join(f"[[{kind}]]" for kind in KINDS)
            result.rejected.append(Rejection(Origin(name, lines[0]), f"unknown table {key!r}; expected {tables}"))
            continue
        kind: Kind = key  # type: ignore[assignment]  # checked just above
        lines = header_lines.get(kind, [])
        if not isinstance(value, list):
            line = lines[0] if lines else 0
            result.rejected.append(Rejection(Origin(name, line, kind), f"{kind}: expected [[{kind}]] tables"))
            continue
        # Header lines are found by scanning the text; trust them only when they match the tables.
        known_lines = len(lines) == len(value)
        for number, table in enumerate(value, start=1):
            origin = Origin(name, lines[number - 1] if known_lines else 0, kind, number)
            if not isinstance(table, dict):
                result.rejected.append(Rejection(origin, f"expected a table, got {_quote(table)}"))
                continue
            unknown = [column for column in table if column not in COLUMNS[kind]]
            if unknown:
                reason = f"unknown key {_quote(unknown[0])}; expected some of {', '.join(COLUMNS[kind])}"
                result.rejected.append(Rejection(origin, reason))
                continue
            _add_row(result, kind, table, origin, from_text=False)
    return result


_TABLE_HEADER = re.compile(r"^\s*\[\[\s*([A-Za-z0-9_-]+)\s*\]\]")


def _table_header_lines(text: str) -> dict[str, list[int]]:
    lines: dict[str, list[int]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        match = _TABLE_HEADER.match(line)
        if match is not None:
            lines.setdefault(match[1], []).append(number)
    return lines


# ---- rows into records -----------------------------------------------------------------------


def _add_row(result: LoadResult, kind: Kind, fields: Mapping[str, Any], origin: Origin, *, from_text: bool) -> None:
    try:
        record = _BUILDERS[kind](_Fields(fields, from_text))
    except MasterDataError as exc:
        result.rejected.append(Rejection(origin, str(exc)))
        return
    result.accepted.append(SourcedRecord(record, origin))


class _Fields:
    """One row's values by column; CSV cells are text and get converted, TOML values keep their type."""

    def __init__(self, values: Mapping[str, Any], from_text: bool) -> None:
        self._values = values
        self._from_text = from_text

    def _raw(self, key: str) -> Any:
        value = self._values.get(key)
        return None if self._from_text and value == "" else value

    def text(self, key: str, default: str | None = None) -> str:
        value = self._raw(key)
        if value is None:
            if default is None:
                raise MasterDataError(f"{key}: required")
            return default
        if not isinstance(value, str):
            raise MasterDataError(f"{key}: expected text in quotes, got {_quote(value)}")
        return value

    def number(self, key: str, default: float | None = None) -> float:
        value = self.optional_number(key)
        if value is None:
            if default is None:
                raise MasterDataError(f"{key}: required")
            return default
        return value

    def optional_number(self, key: str) -> float | None:
        value = self._raw(key)
        if value is None:
            return None
        if self._from_text and isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise MasterDataError(f"{key}: expected a number like 2.5, got {_quote(value)}") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise MasterDataError(f"{key}: expected a number, got {_quote(value)}")
        return float(value)


def _sku(fields: _Fields) -> Sku:
    bounds = [fields.optional_number(column) for column in _CONDITION_COLUMNS]
    condition = None if all(bound is None for bound in bounds) else ConditionRange(*bounds)
    return Sku(
        gtin=fields.text("gtin"),
        description=fields.text("description"),
        unit_cost=fields.number("unit_cost"),
        currency=fields.text("currency", "EUR"),
        condition=condition,
        abc_class=fields.text("abc_class", "C"),  # type: ignore[arg-type]  # Sku checks the choice
        lifecycle=fields.text("lifecycle", "active"),  # type: ignore[arg-type]
        customer_tier=fields.text("customer_tier", ""),
        annual_usage_units=fields.number("annual_usage_units", 0.0),
    )


def _location(fields: _Fields) -> Location:
    return Location(
        location_id=fields.text("location_id"),
        name=fields.text("name"),
        level=fields.text("level"),  # type: ignore[arg-type]  # Location checks the choice
        parent_id=fields.text("parent_id", ""),
        location_type=fields.text("location_type", ""),
        customer_tier=fields.text("customer_tier", ""),
    )


def _customer_tier(fields: _Fields) -> CustomerTier:
    return CustomerTier(
        name=fields.text("name"), weight=fields.number("weight"), description=fields.text("description", "")
    )


_BUILDERS: Final[Mapping[Kind, Callable[[_Fields], Record]]] = {
    "sku": _sku,
    "location": _location,
    "customer_tier": _customer_tier,
}


def _quote(value: object) -> str:
    text = repr(value)
    return text if len(text) <= QUOTED_LENGTH_MAX else text[: QUOTED_LENGTH_MAX - 3] + "..."


# ---- storing what was loaded -----------------------------------------------------------------

# Stores one batch of one kind; answers the rows it refused, by index in the batch.
Upsert = Callable[[Kind, Sequence[Record]], Awaitable[Sequence[RowRejection]]]


async def apply_loaded(loaded: LoadResult, upsert: Upsert, batch_rows_max: int = 1000) -> tuple[int, list[Rejection]]:
    """Store the accepted records through `upsert`; return (rows stored, rejections by file and line).

    Tiers go first, then locations with parents before children (a child in a later batch finds
    its parent stored), then SKUs. Batches hold at most `batch_rows_max` rows.
    """
    assert batch_rows_max > 0
    stored = 0
    rejections: list[Rejection] = []
    for kind in KINDS:
        rows, duplicates = _first_of_each_key(loaded.of_kind(kind))
        rejections.extend(duplicates)
        if kind == "location":
            rows.sort(key=lambda sourced: LEVEL_RANK[sourced.record.level])  # type: ignore[union-attr]
        for start in range(0, len(rows), batch_rows_max):
            batch = rows[start : start + batch_rows_max]
            refused = await upsert(kind, [sourced.record for sourced in batch])
            stored += len(batch) - len({row.index for row in refused})
            rejections.extend(
                Rejection(batch[row.index].origin if 0 <= row.index < len(batch) else Origin("?", 0), row.reason)
                for row in refused
            )
    return stored, rejections


def _first_of_each_key(rows: Sequence[SourcedRecord]) -> tuple[list[SourcedRecord], list[Rejection]]:
    """The rows whose key no earlier row (of any file) has; the later ones as rejections."""
    first: dict[str, Origin] = {}
    kept: list[SourcedRecord] = []
    duplicates: list[Rejection] = []
    for sourced in rows:
        key = record_key(sourced.record)
        if key in first:
            duplicates.append(Rejection(sourced.origin, f"{_quote(key)} is already given at {first[key]}"))
        else:
            first[key] = sourced.origin
            kept.append(sourced)
    return kept, duplicates
