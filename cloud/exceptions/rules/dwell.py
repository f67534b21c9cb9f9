"""Dwell: a tagged item present at a place a dwell rule covers (e.g. location_type "dock_staging",
or a door inside such a zone) for longer than the rule's `dwell_max_s`.

The dwell time runs from the first event that saw the item at its current place (the engine keeps
it per item as events commit, so a zone reader that sees a standing pallet again does not restart
its dwell; for an item it has no record of, the newest event's time, `positions.event_time_us`)
to now. Event times are the edge's, moved onto the cloud's clock by the gateway's measured clock
offset, so a gateway whose clock runs behind does not make every item dwell. Items in transit or
deleted are not dwelling.

Subject: the GTIN at the place ("{gtin}@{location}"; "sscc@{location}" for pallets without a GTIN),
not each item: a truck's worth of cases left on a dock is one thing to act on, and one exception per
case would flood the operator (ISA-18.2 / EEMUA 191 count a flood at 10 alarms in 10 minutes).
Quantity at stake: the items of that GTIN dwelling there; the details name the oldest and its time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cloud.exceptions.models import Condition, Policy
from cloud.exceptions.rules.base import ReadModel, place_name, seconds

__all__ = ["KIND", "evaluate"]

KIND = "dwell"


# Item ids quoted in a dwell's details, the oldest first.
QUOTED_ITEMS_MAX = 3


@dataclass
class _Dwelling:
    """The items of one GTIN dwelling at one place, oldest first once sorted."""

    gtin: str
    location: str
    dwell_max_s: float
    policy: Policy
    items: list[tuple[float, str, int]] = field(default_factory=list)  # (dwelt_s, object_id, event_time_us)


def evaluate(model: ReadModel) -> list[Condition]:
    """Active conditions: per GTIN and place, the items dwelling past their maximum."""
    groups: dict[tuple[str, str], _Dwelling] = {}
    for position in sorted(model.positions, key=lambda position: position.object_id):
        if not position.present or position.in_transit or not position.biz_location:
            continue
        settings = model.rules.settings_for(KIND, model.master, gtin=position.gtin, location=position.biz_location)
        if settings is None:
            continue
        dwell_max_s = settings.number("dwell_max_s", float("inf"))
        place, since_us = model.placements.get(position.object_id, ("", 0))
        stamped_us = since_us if place == position.biz_location and since_us else position.event_time_us
        placed_us = model.cloud_time_us(position.gateway_id, stamped_us)
        dwelt_s = seconds(model.now_us - placed_us)
        if dwelt_s <= dwell_max_s:
            continue
        key = (position.gtin, position.biz_location)
        group = groups.setdefault(key, _Dwelling(position.gtin, position.biz_location, dwell_max_s, settings.policy))
        group.items.append((dwelt_s, position.object_id, position.event_time_us))
    return [_condition(model, group) for _, group in sorted(groups.items())]


def _condition(model: ReadModel, group: _Dwelling) -> Condition:
    group.items.sort(key=lambda item: (-item[0], item[1]))
    oldest_s, oldest_id, oldest_time_us = group.items[0]
    quoted = ", ".join(object_id for _, object_id, _ in group.items[:QUOTED_ITEMS_MAX])
    more = f" and {len(group.items) - QUOTED_ITEMS_MAX} more" if len(group.items) > QUOTED_ITEMS_MAX else ""
    what = f"GTIN {group.gtin}" if group.gtin else "pallets"
    return Condition(
        rule=KIND,
        subject=f"{group.gtin or 'sscc'}@{group.location}",
        active=True,
        policy=group.policy,
        severity=group.policy.severity,
        quantity_at_stake=float(len(group.items)),
        gtin=group.gtin,
        location=group.location,
        details=f"{len(group.items)} x {what} at {place_name(model.master, group.location)}, the oldest "
        f"({oldest_id}) for {oldest_s:.0f} s (maximum {group.dwell_max_s:g} s): {quoted}{more}",
        observed_at_us=oldest_time_us,
    )
