"""What reconciliation works on and what it finds, as frozen dataclasses, plus the row checks they share.

- `CycleCount`: someone counted one GTIN at one location (optionally listing every EPC found);
- `OnHandSnapshot`: an ERP/WMS says "this is the whole on-hand" of its locations at `taken_at`
  (a *set* of on-hand per source system, never a delta);
- `Drift`: one comparison of a counted or snapshot quantity with the event-derived on-hand,
  recorded whether or not it is within tolerance (IRA needs every count, not only the bad ones);
- `EpcDrift`: one tag counted where the system does not have it (unexpected), or placed there by
  the system but not counted (missing);
- `RowRejection`: a row that was not loaded, with where it was and why; the other rows load.

Times are integer microseconds since the epoch (UTC), as in the store. Variance = counted −
system (drift = snapshot − event-derived position): positive means more on the shelf than in
the records.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

__all__ = [
    "QUANTITY_MAX",
    "TEXT_LENGTH_MAX",
    "CycleCount",
    "Drift",
    "EpcDrift",
    "ImportResult",
    "OnHandSnapshot",
    "ReconciliationSummary",
    "RowRejection",
    "SnapshotRow",
    "SourceKind",
    "check_gtin",
    "check_location",
    "check_quantity",
    "check_text",
]

SourceKind = Literal["cycle_count", "snapshot"]
EpcDriftKind = Literal["missing", "unexpected"]

# A count or snapshot quantity above this is a typo (or a unit mix-up), not stock.
QUANTITY_MAX = 1e12
# Locations, GTINs, counter ids and EPCs are short; a longer value is garbage, cut before it is quoted.
TEXT_LENGTH_MAX = 512
QUOTED_LENGTH_MAX = 64
_DIGITS = re.compile(r"[0-9]+")  # not \d: it also matches non-ASCII digits
_GTIN_LENGTHS = (8, 12, 13, 14)
Row = TypeVar("Row")


@dataclass(frozen=True, slots=True)
class CycleCount:
    """One physical count of `gtin` at `biz_location`."""

    biz_location: str
    gtin: str  # GTIN-14
    counted_quantity: float
    counted_at_us: int
    counter_id: str  # who or what counted: a person, a handheld, a drone run
    # None: counted by quantity only. A tuple (possibly empty): every tag found, compared one by one.
    epcs: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class SnapshotRow:
    """The quantity one source system holds for (biz_location, gtin)."""

    biz_location: str
    gtin: str
    quantity: float


@dataclass(frozen=True, slots=True)
class OnHandSnapshot:
    """The whole on-hand of a source system at `taken_at_us`: a location it lists and a GTIN it omits means 0."""

    source: str  # the source system's name, e.g. "erp" or "wms-dc1"
    taken_at_us: int
    rows: tuple[SnapshotRow, ...]


@dataclass(frozen=True, slots=True)
class RowRejection:
    """A row that was not loaded: `where` is a file name (line = file line) or "rows" (line = 1-based index)."""

    where: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.where}:{self.line}: {self.reason}"


@dataclass(frozen=True, slots=True)
class ImportResult(Generic[Row]):
    """The rows that loaded and the rows that did not."""

    rows: tuple[Row, ...]
    rejections: tuple[RowRejection, ...]


@dataclass(frozen=True, slots=True)
class Drift:
    """One comparison of a counted (or snapshot) quantity with the event-derived on-hand."""

    source_kind: SourceKind
    source: str  # counter id for a cycle count, source system for a snapshot
    biz_location: str
    gtin: str
    abc_class: str  # "A", "B", "C", or "" when the SKU is not in the master data
    system_quantity: float
    counted_quantity: float
    variance: float  # counted − system
    unit_cost: float  # 0 when the SKU is not in the master data
    variance_value: float  # variance × unit cost
    tolerance_pct: float
    within_tolerance: bool
    counted_at_us: int  # the count's time, or the snapshot's taken_at

    @property
    def system_value(self) -> float:
        """The event-derived on-hand valued at unit cost."""
        return self.system_quantity * self.unit_cost


@dataclass(frozen=True, slots=True)
class EpcDrift:
    """A tag that disagrees with the system: counted but placed elsewhere, or placed here but not counted."""

    biz_location: str  # where it was counted (or should have been)
    gtin: str  # the count's GTIN
    epc: str  # as counted (unexpected) or as the system knows it (missing: EPC URI, else the object id)
    kind: EpcDriftKind
    system_location: str  # where the system has it; "" when unknown, gone (DELETE) or in transit


@dataclass(frozen=True, slots=True)
class ReconciliationSummary:
    """The totals of one reconciliation run."""

    run_id: str
    source_kind: SourceKind
    source: str
    subject_id: str  # the cycle-count batch or the snapshot that was compared
    rows_compared: int
    accurate: int
    gross_variance_value: float  # Σ |variance value|: never netted
    net_variance_value: float  # Σ variance value, shown beside the gross, never instead of it
    system_value: float  # Σ system quantity × unit cost
    missing_epcs: int
    unexpected_epcs: int
    taken_at_us: int  # newest count time, or the snapshot's taken_at
    recorded_at_us: int

    @property
    def record_accuracy(self) -> float | None:
        """Accurate rows / rows compared; None when nothing was compared."""
        return self.accurate / self.rows_compared if self.rows_compared else None

    @property
    def dollar_accuracy(self) -> float | None:
        """1 − gross variance value / system value, floored at 0; None when the system value is 0."""
        if self.system_value <= 0:
            return None
        return max(0.0, 1.0 - self.gross_variance_value / self.system_value)


def _quote(value: str) -> str:
    return repr(value if len(value) <= QUOTED_LENGTH_MAX else value[: QUOTED_LENGTH_MAX - 3] + "...")


def _check_digit(data_digits: str) -> int:
    """The GS1 mod-10 check digit (weights 3,1,3,1... from the rightmost data digit)."""
    digits = [ord(char) - 48 for char in data_digits]
    total = 3 * sum(digits[-1::-2]) + sum(digits[-2::-2])
    return (10 - total % 10) % 10


def check_gtin(value: str, name: str = "gtin") -> str:
    """The GTIN-14 of a GTIN-8/12/13/14 (zero-padded on the left, as GS1 does), or ValueError saying why."""
    text = value.strip()
    if not text:
        raise ValueError(f"{name} is empty")
    if _DIGITS.fullmatch(text) is None or len(text) not in _GTIN_LENGTHS:
        raise ValueError(f"{name} {_quote(text)}: expected 8, 12, 13 or 14 digits")
    padded = text.rjust(14, "0")
    expected = _check_digit(padded[:13])
    if int(padded[13]) != expected:
        raise ValueError(f"{name} {_quote(text)}: check digit should be {expected}")
    return padded


def check_text(value: str, name: str, *, required: bool = True) -> str:
    """`value` stripped, or ValueError when it is empty (and required) or too long."""
    text = value.strip()
    if required and not text:
        raise ValueError(f"{name} is empty")
    if len(text) > TEXT_LENGTH_MAX:
        raise ValueError(f"{name} is longer than {TEXT_LENGTH_MAX} characters")
    return text


def check_location(value: str, name: str = "location") -> str:
    """A biz_location exactly as events carry it (e.g. urn:tallyport:loc:dc1:dock-4)."""
    text = check_text(value, name)
    if any(char.isspace() for char in text):
        raise ValueError(f"{name} {_quote(text)} contains white space")
    return text


def check_quantity(value: float, name: str = "quantity") -> float:
    """A finite quantity from 0 to QUANTITY_MAX, or ValueError."""
    if not math.isfinite(value) or value < 0 or value > QUANTITY_MAX:
        raise ValueError(f"{name} {value!r}: expected a number from 0 to {QUANTITY_MAX:g}")
    return float(value)
