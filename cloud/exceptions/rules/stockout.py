"""Stockout / below minimum: on-hand of a GTIN at a location under the rule's `min_on_hand`.

Which (GTIN, location) pairs are checked: every on-hand row, plus, for each stockout entry
that names a place (location or location_type), every SKU of its segment (gtin, abc_class, or
all SKUs in the master) at every location it names, so that stock that ran out entirely (no
on-hand row any more) is seen too. The winning entry for the pair decides (see RuleBook).
Severity: the entry's, one step higher at zero or below (a true stockout).
Quantity at stake: the shortfall, min_on_hand - on_hand.
"""

from __future__ import annotations

from cloud.exceptions.config import RuleEntry
from cloud.exceptions.models import Condition
from cloud.exceptions.rules.base import ReadModel, more_severe, place_name
from cloud.masterdata.models import MasterData

__all__ = ["KIND", "evaluate"]

KIND = "stockout"


def evaluate(model: ReadModel) -> list[Condition]:
    """Active conditions: every checked pair below its minimum."""
    quantities = {(row.gtin, row.biz_location): row.quantity for row in model.on_hand}
    pairs = set(quantities)
    for entry in model.rules.entries(KIND):
        if entry.enabled:
            pairs.update(_expected_pairs(entry, model.master))
    conditions = []
    for gtin, location in sorted(pairs):
        settings = model.rules.settings_for(KIND, model.master, gtin=gtin, location=location)
        if settings is None:
            continue
        minimum = settings.number("min_on_hand", 0.0)
        quantity = quantities.get((gtin, location), 0.0)
        if quantity >= minimum:
            continue
        severity = settings.policy.severity if quantity > 0 else more_severe(settings.policy.severity)
        word = "out of stock" if quantity <= 0 else "below minimum"
        conditions.append(
            Condition(
                rule=KIND,
                subject=f"{gtin}@{location}",
                active=True,
                policy=settings.policy,
                severity=severity,
                quantity_at_stake=minimum - quantity,
                gtin=gtin,
                location=location,
                details=f"{gtin} {word} at {place_name(model.master, location)}: on hand {quantity:g}, "
                f"minimum {minimum:g}",
            )
        )
    return conditions


def _expected_pairs(entry: RuleEntry, master: MasterData) -> set[tuple[str, str]]:
    """Pairs where an entry expects stock whether or not an on-hand row exists."""
    if entry.location:
        places = [entry.location]
    elif entry.location_type:
        places = [
            place.location_id for place in master.locations.values() if place.location_type == entry.location_type
        ]
    else:
        return set()  # no place named: only where stock is recorded
    if entry.gtin:
        gtins = [entry.gtin]
    else:
        gtins = [sku.gtin for sku in master.skus.values() if not entry.abc_class or sku.abc_class == entry.abc_class]
    return {(gtin, place) for gtin in gtins for place in places}
