"""Master data records, their validation, and `MasterData`, the immutable snapshot the rules read.

A record is valid by construction: `Sku`, `Location`, `CustomerTier` and `ConditionRange` check
themselves in `__post_init__` and raise `MasterDataError` with a one-line reason that names the
field, e.g. `gtin '09501101530004': check digit should be 3`. What one record cannot check on
its own (a location's parent exists and sits at a higher level, no two rows with one key, a
named customer tier exists) is checked against the rest by `check_locations`, `check_duplicates`
and `check_tier_references`, which return per-row rejections instead of raising, so that a bad
row never blocks the good ones.

The location hierarchy: site > zone > door > read_point. A location's parent is at a strictly
higher level (a read point may hang under a door or straight under a zone, a door under a zone or
the site), which makes a cycle impossible; `check_locations` also walks every chain to be sure.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal, TypeVar, get_args

from cloud.errors import ValidationError
from cloud.ingest.validation import gs1_check_digit

__all__ = [
    "ABC_CLASSES",
    "LEVELS",
    "LIFECYCLES",
    "LOCATION_TYPES",
    "AbcClass",
    "ConditionRange",
    "CustomerTier",
    "Level",
    "Lifecycle",
    "Location",
    "MasterData",
    "MasterDataError",
    "RowRejection",
    "Sku",
    "check_duplicates",
    "check_locations",
    "check_tier_references",
]

AbcClass = Literal["A", "B", "C"]
Lifecycle = Literal["active", "phase_out", "obsolete"]
Level = Literal["site", "zone", "door", "read_point"]
ABC_CLASSES: Final[tuple[AbcClass, ...]] = get_args(AbcClass)
LIFECYCLES: Final[tuple[Lifecycle, ...]] = get_args(Lifecycle)
LEVELS: Final[tuple[Level, ...]] = get_args(Level)
# Rank in the hierarchy: a parent's rank is strictly lower than its child's.
LEVEL_RANK: Final[Mapping[str, int]] = MappingProxyType({level: rank for rank, level in enumerate(LEVELS)})
# The location types the demo and the rules use. Others are allowed (any snake_case word): a site
# names its areas in its own words, and a rule matches the types it knows.
LOCATION_TYPES: Final[frozenset[str]] = frozenset(
    {
        "distribution_center",
        "receiving",
        "shipping",
        "dock_staging",
        "cross_dock",
        "forward_pick",
        "reserve",
        "returns",
        "cold_storage",
        "freezer",
        "dock_door",
        "portal",
        "sensor",
    }
)

GTIN_LENGTH = 14
DESCRIPTION_LENGTH_MAX = 200
LOCATION_ID_LENGTH_MAX = 256
NAME_LENGTH_MAX = 200
TIER_NAME_LENGTH_MAX = 64
# A service exposure multiplier above this is a typo (300 for 3.00), not a tier.
TIER_WEIGHT_MAX = 1000.0
# Beyond these a temperature is a unit mistake (Fahrenheit, Kelvin), not a storage condition.
TEMPERATURE_C_MIN = -100.0
TEMPERATURE_C_MAX = 100.0
# Values quoted in a reason are cut so a hostile row cannot bloat a response.
QUOTED_LENGTH_MAX = 64

_GTIN_PATTERN = re.compile(r"[0-9]{14}")  # [0-9], not \d: \d also matches non-ASCII digits
_CURRENCY_PATTERN = re.compile(r"[A-Z]{3}")  # ISO 4217 alphabetic code
_WORD_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,63}")  # location types: snake_case
_TIER_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_NO_SPACE_PATTERN = re.compile(r"\S+")
_CONTROL_PATTERN = re.compile(r"[\x00-\x1f\x7f]")  # a NUL cannot even be stored in PostgreSQL text


class MasterDataError(ValidationError):
    """A master data record is invalid; the message is one line naming the field and what was expected."""


@dataclass(frozen=True, slots=True)
class RowRejection:
    """A row of a batch that was not stored: its 0-based index in the batch and why."""

    index: int
    reason: str


def _quote(value: object) -> str:
    text = repr(value)
    return text if len(text) <= QUOTED_LENGTH_MAX else text[: QUOTED_LENGTH_MAX - 3] + "..."


def _require_text(name: str, value: object, length_max: int, *, empty: bool = False) -> None:
    if not isinstance(value, str):
        raise MasterDataError(f"{name}: expected text, got {_quote(value)}")
    if not value and not empty:
        raise MasterDataError(f"{name}: required, got ''")
    if len(value) > length_max:
        raise MasterDataError(f"{name}: at most {length_max} characters, got {len(value)}")
    if value != value.strip():
        raise MasterDataError(f"{name}: leading or trailing spaces in {_quote(value)}")
    if _CONTROL_PATTERN.search(value) is not None:
        raise MasterDataError(f"{name}: control character in {_quote(value)}")


def _require_number(name: str, value: object, *, low: float | None = None, high: float | None = None) -> None:
    # bool is an int in Python; True as a cost is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MasterDataError(f"{name}: expected a finite number, got {_quote(value)}")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"from {low:g} to {high:g}" if low is not None and high is not None else ""
        bounds = bounds or (f">= {low:g}" if low is not None else f"<= {high:g}")
        raise MasterDataError(f"{name}: expected a number {bounds}, got {value:g}")


def _require_choice(name: str, value: object, choices: Sequence[str]) -> None:
    if value not in choices:
        raise MasterDataError(f"{name}: expected one of {', '.join(choices)}, got {_quote(value)}")


def _require_tier_name(name: str, value: object, *, empty: bool) -> None:
    _require_text(name, value, TIER_NAME_LENGTH_MAX, empty=empty)
    assert isinstance(value, str)
    if value and _TIER_PATTERN.fullmatch(value) is None:
        raise MasterDataError(f"{name}: expected a lower-case word like 'strategic', got {_quote(value)}")


def gtin_problem(gtin: object) -> str | None:
    """Why `gtin` is not a GTIN-14 with a valid check digit, or None."""
    if not isinstance(gtin, str) or _GTIN_PATTERN.fullmatch(gtin) is None:
        return f"gtin {_quote(gtin)}: expected 14 digits (a GTIN-14; pad a GTIN-8/12/13 with leading zeros)"
    expected = gs1_check_digit(gtin[:-1])
    if int(gtin[-1]) != expected:
        return f"gtin {_quote(gtin)}: check digit should be {expected}"
    return None


@dataclass(frozen=True, slots=True)
class ConditionRange:
    """Storage conditions a SKU needs, e.g. 2..8 °C; a bound left None is not constrained.

    At least one bound is set (no condition at all is `Sku.condition = None`), and min <= max.
    """

    temperature_min_c: float | None = None
    temperature_max_c: float | None = None
    humidity_min_pct: float | None = None
    humidity_max_pct: float | None = None

    def __post_init__(self) -> None:
        bounds = (
            ("temperature_min_c", self.temperature_min_c, TEMPERATURE_C_MIN, TEMPERATURE_C_MAX),
            ("temperature_max_c", self.temperature_max_c, TEMPERATURE_C_MIN, TEMPERATURE_C_MAX),
            ("humidity_min_pct", self.humidity_min_pct, 0.0, 100.0),
            ("humidity_max_pct", self.humidity_max_pct, 0.0, 100.0),
        )
        for name, value, low, high in bounds:
            if value is not None:
                _require_number(name, value, low=low, high=high)
        if all(value is None for _, value, _, _ in bounds):
            raise MasterDataError("condition: no bound set; leave the condition out instead")
        for what, low_value, high_value in (
            ("temperature", self.temperature_min_c, self.temperature_max_c),
            ("humidity", self.humidity_min_pct, self.humidity_max_pct),
        ):
            if low_value is not None and high_value is not None and low_value > high_value:
                raise MasterDataError(f"condition: {what} min {low_value:g} is above max {high_value:g}")

    def temperature_ok(self, celsius: float) -> bool:
        """Whether a temperature is inside the range (bounds included); True when unconstrained."""
        return (self.temperature_min_c is None or celsius >= self.temperature_min_c) and (
            self.temperature_max_c is None or celsius <= self.temperature_max_c
        )

    def humidity_ok(self, percent: float) -> bool:
        """Whether a relative humidity is inside the range (bounds included); True when unconstrained."""
        return (self.humidity_min_pct is None or percent >= self.humidity_min_pct) and (
            self.humidity_max_pct is None or percent <= self.humidity_max_pct
        )

    def describe(self) -> str:
        """Short text for people, e.g. '2..8 °C' or '2..8 °C, 30..60 %RH'."""
        parts = []
        for low, high, unit in (
            (self.temperature_min_c, self.temperature_max_c, "°C"),
            (self.humidity_min_pct, self.humidity_max_pct, "%RH"),
        ):
            if low is not None or high is not None:
                low_text = "" if low is None else f"{low:g}"
                high_text = "" if high is None else f"{high:g}"
                parts.append(f"{low_text}..{high_text} {unit}")
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class Sku:
    """A stock keeping unit, keyed by its GTIN-14."""

    gtin: str  # GTIN-14, check digit valid
    description: str
    unit_cost: float  # per unit, in `currency`; >= 0
    currency: str = "EUR"  # ISO 4217 code
    condition: ConditionRange | None = None
    abc_class: AbcClass = "C"
    lifecycle: Lifecycle = "active"
    customer_tier: str = ""  # the most demanding customer tier this SKU serves; "" when none
    annual_usage_units: float = 0.0  # trailing 12-month demand in units, for ABC value (usage x cost)

    def __post_init__(self) -> None:
        problem = gtin_problem(self.gtin)
        if problem is not None:
            raise MasterDataError(problem)
        _require_text("description", self.description, DESCRIPTION_LENGTH_MAX)
        _require_number("unit_cost", self.unit_cost, low=0.0)
        if not isinstance(self.currency, str) or _CURRENCY_PATTERN.fullmatch(self.currency) is None:
            raise MasterDataError(f"currency: expected an ISO 4217 code like 'EUR', got {_quote(self.currency)}")
        if self.condition is not None and not isinstance(self.condition, ConditionRange):
            raise MasterDataError(f"condition: expected a ConditionRange or None, got {_quote(self.condition)}")
        _require_choice("abc_class", self.abc_class, ABC_CLASSES)
        _require_choice("lifecycle", self.lifecycle, LIFECYCLES)
        _require_tier_name("customer_tier", self.customer_tier, empty=True)
        _require_number("annual_usage_units", self.annual_usage_units, low=0.0)

    @property
    def annual_value(self) -> float:
        """Annual usage times unit cost: what ABC classification ranks by."""
        return self.annual_usage_units * self.unit_cost


@dataclass(frozen=True, slots=True)
class Location:
    """A place in the hierarchy, keyed by the id events carry in biz_location or read_point."""

    location_id: str  # e.g. "urn:tallyport:loc:dc1:dock-4"
    name: str
    level: Level
    parent_id: str = ""  # "" for a site
    location_type: str = ""  # snake_case, e.g. "dock_staging", "cold_storage" (see LOCATION_TYPES); "" if none
    customer_tier: str = ""  # "" when none

    def __post_init__(self) -> None:
        _require_text("location_id", self.location_id, LOCATION_ID_LENGTH_MAX)
        if _NO_SPACE_PATTERN.fullmatch(self.location_id) is None:
            raise MasterDataError(f"location_id: no spaces allowed, got {_quote(self.location_id)}")
        _require_text("name", self.name, NAME_LENGTH_MAX)
        _require_choice("level", self.level, LEVELS)
        _require_text("parent_id", self.parent_id, LOCATION_ID_LENGTH_MAX, empty=True)
        if self.level == "site" and self.parent_id:
            raise MasterDataError(f"parent_id: a site has no parent, got {_quote(self.parent_id)}")
        if self.level != "site" and not self.parent_id:
            raise MasterDataError(f"parent_id: required for a {self.level} (only a site has none)")
        if self.parent_id == self.location_id:
            raise MasterDataError("parent_id: a location cannot be its own parent")
        _require_text("location_type", self.location_type, 64, empty=True)
        if self.location_type and _WORD_PATTERN.fullmatch(self.location_type) is None:
            raise MasterDataError(
                f"location_type: expected a snake_case word like 'cold_storage', got {_quote(self.location_type)}"
            )
        _require_tier_name("customer_tier", self.customer_tier, empty=True)


@dataclass(frozen=True, slots=True)
class CustomerTier:
    """A customer tier and its service exposure multiplier (weight > 0)."""

    name: str  # a lower-case word, e.g. "strategic"
    weight: float
    description: str = ""

    def __post_init__(self) -> None:
        _require_tier_name("name", self.name, empty=False)
        _require_number("weight", self.weight, high=TIER_WEIGHT_MAX)
        if self.weight <= 0:
            raise MasterDataError(f"weight: expected a number > 0, got {self.weight:g}")
        _require_text("description", self.description, DESCRIPTION_LENGTH_MAX, empty=True)


@dataclass(frozen=True, slots=True)
class MasterData:
    """An immutable snapshot of all master data, as the rules and reconciliation read it."""

    skus: Mapping[str, Sku] = field(default_factory=dict)
    locations: Mapping[str, Location] = field(default_factory=dict)
    tiers: Mapping[str, CustomerTier] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Copies behind read-only views: a snapshot never changes under a reader.
        object.__setattr__(self, "skus", MappingProxyType(dict(self.skus)))
        object.__setattr__(self, "locations", MappingProxyType(dict(self.locations)))
        object.__setattr__(self, "tiers", MappingProxyType(dict(self.tiers)))

    @staticmethod
    def empty() -> MasterData:
        """No SKUs, locations or tiers: every lookup misses, every weight is 1.0."""
        return MasterData()

    @staticmethod
    def of(
        skus: Iterable[Sku] = (), locations: Iterable[Location] = (), tiers: Iterable[CustomerTier] = ()
    ) -> MasterData:
        """A snapshot of these records, keyed by gtin, location_id and name (a later duplicate wins)."""
        return MasterData(
            {sku.gtin: sku for sku in skus},
            {location.location_id: location for location in locations},
            {tier.name: tier for tier in tiers},
        )

    def sku(self, gtin: str) -> Sku | None:
        """The SKU of a GTIN-14, or None."""
        return self.skus.get(gtin)

    def location(self, location_id: str) -> Location | None:
        """The location with this id, or None."""
        return self.locations.get(location_id)

    def ancestors(self, location_id: str) -> list[Location]:
        """The location itself first, then its parents up to the site; [] if unknown."""
        chain: list[Location] = []
        current = self.locations.get(location_id)
        # Bounded by the number of levels: a snapshot built by hand may break the hierarchy.
        while current is not None and len(chain) < len(LEVELS):
            chain.append(current)
            current = self.locations.get(current.parent_id) if current.parent_id else None
        return chain

    def children(self, location_id: str) -> list[Location]:
        """The locations whose parent is `location_id`, by id."""
        return sorted(
            (location for location in self.locations.values() if location.parent_id == location_id),
            key=lambda location: location.location_id,
        )

    def within(self, location_id: str, location_type: str) -> Location | None:
        """The location itself or its nearest ancestor of `location_type` (e.g. "dock_staging"), or None."""
        for location in self.ancestors(location_id):
            if location.location_type == location_type:
                return location
        return None

    def tier_weight(self, tier: str) -> float:
        """The weight of a customer tier; 1.0 for "" or an unknown tier."""
        known = self.tiers.get(tier) if tier else None
        return known.weight if known is not None else 1.0

    def service_weight(self, gtin: str, location_id: str) -> float:
        """The largest tier weight of the SKU and of the location or its ancestors; 1.0 when none names a tier."""
        tiers: list[str] = []
        sku = self.skus.get(gtin)
        if sku is not None and sku.customer_tier:
            tiers.append(sku.customer_tier)
        tiers.extend(location.customer_tier for location in self.ancestors(location_id) if location.customer_tier)
        return max((self.tier_weight(tier) for tier in tiers), default=1.0)


Keyed = TypeVar("Keyed", Sku, Location, CustomerTier)


def record_key(record: Sku | Location | CustomerTier) -> str:
    """The key of a record: gtin, location_id or tier name."""
    if isinstance(record, Sku):
        return record.gtin
    if isinstance(record, Location):
        return record.location_id
    return record.name


def check_duplicates(records: Sequence[Keyed]) -> list[RowRejection]:
    """Rows whose key an earlier row of the same batch already has: the first one is kept."""
    first_index: dict[str, int] = {}
    rejections: list[RowRejection] = []
    for index, record in enumerate(records):
        key = record_key(record)
        if key in first_index:
            rejections.append(RowRejection(index, f"{_quote(key)} is already given by row {first_index[key]}"))
        else:
            first_index[key] = index
    return rejections


def check_tier_references(
    records: Sequence[Sku | Location], tiers: Mapping[str, CustomerTier], skip: Iterable[int] = ()
) -> list[RowRejection]:
    """Rows naming a customer tier that `tiers` does not hold (rows in `skip` are not looked at)."""
    skipped = set(skip)
    rejections = []
    for index, record in enumerate(records):
        if index in skipped or not record.customer_tier or record.customer_tier in tiers:
            continue
        known = ", ".join(sorted(tiers)) or "none yet: load the customer tiers first"
        rejections.append(
            RowRejection(index, f"customer_tier {_quote(record.customer_tier)} is not a known tier (known: {known})")
        )
    return rejections


def check_locations(
    existing: Mapping[str, Location], incoming: Sequence[Location], skip: Iterable[int] = ()
) -> list[RowRejection]:
    """Rows of `incoming` that would break the hierarchy of `existing` plus the other incoming rows.

    A row is rejected when its parent is neither stored nor among the accepted rows of the batch,
    when its parent is not at a higher level, when re-levelling it would leave a stored child at
    or above it, or when its chain to a site loops. Rows in `skip` (already rejected, e.g. as
    duplicates) are left out; rejecting a row can orphan its children, which are rejected too.
    """
    skipped = set(skip)
    rejected: dict[int, str] = {}
    candidates = {index: location for index, location in enumerate(incoming) if index not in skipped}
    incoming_ids = {location.location_id for location in candidates.values()}
    stored_children: dict[str, list[Location]] = {}
    for location in existing.values():
        if location.parent_id and location.location_id not in incoming_ids:
            stored_children.setdefault(location.parent_id, []).append(location)
    # Each pass rejects the rows that fail against the rows still standing; a rejection can only
    # orphan rows one level further down, so this ends within a few passes.
    while True:
        view = dict(existing)
        view.update({location.location_id: location for location in candidates.values()})
        failed = {
            index: reason
            for index, location in candidates.items()
            if (reason := _hierarchy_problem(location, view, stored_children.get(location.location_id, ()))) is not None
        }
        if not failed:
            break
        rejected.update(failed)
        for index in failed:
            del candidates[index]
    return [RowRejection(index, reason) for index, reason in sorted(rejected.items())]


def _hierarchy_problem(location: Location, view: Mapping[str, Location], children: Iterable[Location]) -> str | None:
    rank = LEVEL_RANK[location.level]
    if location.parent_id:
        parent = view.get(location.parent_id)
        if parent is None:
            return f"parent_id {_quote(location.parent_id)}: no such location (load parents first or in the same batch)"
        if LEVEL_RANK[parent.level] >= rank:
            return (
                f"parent_id {_quote(location.parent_id)} is a {parent.level}: a {location.level} must sit under "
                f"a {' or '.join(LEVELS[:rank])}"
            )
    for child in children:  # stored children that keep their place must stay below a re-levelled location
        if LEVEL_RANK[child.level] <= rank:
            return f"level {location.level}: its {child.level} {_quote(child.location_id)} would no longer nest"
    seen = {location.location_id}
    current = location
    while current.parent_id:
        if current.parent_id in seen:
            return f"parent_id {_quote(location.parent_id)}: the chain of parents loops"
        seen.add(current.parent_id)
        parent = view.get(current.parent_id)
        if parent is None:
            return f"parent_id {_quote(location.parent_id)}: its ancestor {_quote(current.parent_id)} is missing"
        current = parent
    return None
