"""Compare counts and snapshots with the event-derived on-hand: pure functions, no I/O.

Quantities: the system quantity of (location, gtin) is the on-hand projection's `quantity`
(tagged items present and not in transit + net class quantity), compared at the exact
biz_location the count names. The comparison uses the on-hand at the time of the run, so
reconcile a count soon after it is taken (events that move stock in between show as drift).

- A cycle count compares the one (location, gtin) it names. Two counts of the same place are
  two comparisons: IRA counts counts, it never nets them.
- A snapshot is the source's whole on-hand (set-on-hand, not deltas) for the locations it lists:
  every row is compared, and so is every system row at those locations that the snapshot leaves
  out (its quantity there is 0). Locations the snapshot never mentions are outside its scope.

Accurate (within tolerance): |counted − system| × 100 <= tolerance_pct × system; a system
quantity of 0 is matched only by a count of 0. The tolerance comes from the SKU's ABC class in
the master data (`tolerance_pct("A")`...), the unclassified one when the GTIN has no SKU.

EPCs (counts that list the tags found, `CycleCount.epcs is not None`):
- missing: a tag the system places at the count's location with the count's GTIN (present,
  not in transit) that was not among the tags counted;
- unexpected: a tag counted there that the system places elsewhere, has in transit or gone,
  has under another GTIN, or does not know at all.
A counted tag may be written as its canonical id, EPC URI or EPC hex (any case).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from cloud.masterdata.models import MasterData
from cloud.reconciliation.models import (
    CycleCount,
    Drift,
    EpcDrift,
    OnHandSnapshot,
    ReconciliationSummary,
    SourceKind,
)

__all__ = [
    "Place",
    "SystemTag",
    "ToleranceOf",
    "compare_counts",
    "compare_epcs",
    "compare_snapshot",
    "is_within_tolerance",
    "make_drift",
    "summarize",
]

# (biz_location, gtin)
Place = tuple[str, str]
# abc_class ("" when unknown) -> tolerance in percent
ToleranceOf = Callable[[str], float]
# Quantities are often fractional (kg, litres): a rounding error this small is not a variance.
_RELATIVE_SLACK = 1e-9


@dataclass(frozen=True, slots=True)
class SystemTag:
    """One serialised object as the system places it (a row of `positions`)."""

    object_id: str
    epc_uri: str
    epc_hex: str
    gtin: str
    biz_location: str
    present: bool
    in_transit: bool

    @property
    def counted_location(self) -> str:
        """Where the on-hand counts it: its location when present and not in transit, else ""."""
        return self.biz_location if self.present and not self.in_transit else ""

    @property
    def label(self) -> str:
        """How a report names it: the EPC URI when known, else the canonical id."""
        return self.epc_uri or self.object_id

    def names(self) -> tuple[str, ...]:
        """Every spelling a counter may use for it, normalised by `tag_key`."""
        return tuple(tag_key(name) for name in (self.object_id, self.epc_uri, self.epc_hex) if name)


def tag_key(name: str) -> str:
    """A counted tag's spelling, normalised: URIs and hex compare case-insensitively."""
    return name.strip().upper()


def is_within_tolerance(system_quantity: float, counted_quantity: float, tolerance_pct: float) -> bool:
    """Whether |counted − system| is within tolerance_pct % of the system quantity (0 only matches 0)."""
    variance = abs(counted_quantity - system_quantity)
    slack = _RELATIVE_SLACK * max(abs(system_quantity), abs(counted_quantity), 1.0)
    if system_quantity <= 0:
        return variance <= slack
    # Multiplying instead of dividing keeps whole-number cases exact: 1 of 100 at 1 % is within.
    return variance * 100 <= tolerance_pct * system_quantity + slack * 100


def make_drift(
    source_kind: SourceKind,
    source: str,
    place: Place,
    system_quantity: float,
    counted_quantity: float,
    counted_at_us: int,
    masterdata: MasterData,
    tolerance_of: ToleranceOf,
) -> Drift:
    """The comparison of one place, valued at the SKU's unit cost and judged by its ABC tolerance."""
    location, gtin = place
    sku = masterdata.sku(gtin)
    abc_class = sku.abc_class if sku is not None else ""
    unit_cost = sku.unit_cost if sku is not None else 0.0
    tolerance_pct = tolerance_of(abc_class)
    variance = counted_quantity - system_quantity
    return Drift(
        source_kind=source_kind,
        source=source,
        biz_location=location,
        gtin=gtin,
        abc_class=abc_class,
        system_quantity=system_quantity,
        counted_quantity=counted_quantity,
        variance=variance,
        unit_cost=unit_cost,
        variance_value=variance * unit_cost,
        tolerance_pct=tolerance_pct,
        within_tolerance=is_within_tolerance(system_quantity, counted_quantity, tolerance_pct),
        counted_at_us=counted_at_us,
    )


def compare_counts(
    counts: Iterable[CycleCount],
    on_hand: Mapping[Place, float],
    masterdata: MasterData,
    tolerance_of: ToleranceOf,
) -> list[Drift]:
    """One drift per count, in the order given; a place missing from `on_hand` has 0."""
    return [
        make_drift(
            "cycle_count",
            count.counter_id,
            (count.biz_location, count.gtin),
            on_hand.get((count.biz_location, count.gtin), 0.0),
            count.counted_quantity,
            count.counted_at_us,
            masterdata,
            tolerance_of,
        )
        for count in counts
    ]


def compare_snapshot(
    snapshot: OnHandSnapshot,
    on_hand: Mapping[Place, float],
    masterdata: MasterData,
    tolerance_of: ToleranceOf,
) -> list[Drift]:
    """One drift per place the snapshot lists or the system has at the snapshot's locations, by place."""
    listed = {(row.biz_location, row.gtin): row.quantity for row in snapshot.rows}
    in_scope = {row.biz_location for row in snapshot.rows}
    places = set(listed) | {place for place in on_hand if place[0] in in_scope}
    return [
        make_drift(
            "snapshot",
            snapshot.source,
            place,
            on_hand.get(place, 0.0),
            listed.get(place, 0.0),
            snapshot.taken_at_us,
            masterdata,
            tolerance_of,
        )
        for place in sorted(places)
    ]


def compare_epcs(
    count: CycleCount,
    at_place: Sequence[SystemTag],
    counted_tags: Mapping[str, SystemTag],
) -> list[EpcDrift]:
    """Missing and unexpected tags of one count that lists its EPCs.

    `at_place`: the tags the system has at (count.biz_location, count.gtin), any state;
    `counted_tags`: what the system knows of the counted tags, keyed by `tag_key` of each
    spelling (a counted tag absent from it is unknown to the system).
    """
    if count.epcs is None:
        return []
    counted = {tag_key(epc): epc for epc in count.epcs}
    drifts: list[EpcDrift] = []
    for tag in sorted(at_place, key=lambda tag: tag.label):
        expected_here = tag.counted_location == count.biz_location and tag.gtin == count.gtin
        if expected_here and not any(name in counted for name in tag.names()):
            drifts.append(EpcDrift(count.biz_location, count.gtin, tag.label, "missing", tag.biz_location))
    seen: set[str] = set()
    for key, written in counted.items():  # in the order counted
        known = counted_tags.get(key)
        if known is not None:
            if known.object_id in seen:
                continue  # the same tag counted twice under two spellings is one tag
            seen.add(known.object_id)
            if known.counted_location == count.biz_location and known.gtin == count.gtin:
                continue
        where = known.counted_location if known is not None else ""
        drifts.append(EpcDrift(count.biz_location, count.gtin, written.strip(), "unexpected", where))
    return drifts


def summarize(
    run_id: str,
    source_kind: SourceKind,
    source: str,
    subject_id: str,
    drifts: Sequence[Drift],
    epc_drifts: Sequence[EpcDrift],
    taken_at_us: int,
    recorded_at_us: int,
) -> ReconciliationSummary:
    """The totals of a run: accurate rows, gross and net variance value (never netted away)."""
    return ReconciliationSummary(
        run_id=run_id,
        source_kind=source_kind,
        source=source,
        subject_id=subject_id,
        rows_compared=len(drifts),
        accurate=sum(1 for drift in drifts if drift.within_tolerance),
        gross_variance_value=sum(abs(drift.variance_value) for drift in drifts),
        net_variance_value=sum(drift.variance_value for drift in drifts),
        system_value=sum(drift.system_value for drift in drifts),
        missing_epcs=sum(1 for drift in epc_drifts if drift.kind == "missing"),
        unexpected_epcs=sum(1 for drift in epc_drifts if drift.kind == "unexpected"),
        taken_at_us=taken_at_us,
        recorded_at_us=recorded_at_us,
    )
