"""Excess / above maximum: on-hand of a GTIN at a location above the rule's `max_on_hand`.

Only locations with recorded stock can be in excess, so only on-hand rows are checked.
Quantity at stake: the excess, on_hand - max_on_hand.
"""

from __future__ import annotations

from cloud.exceptions.models import Condition
from cloud.exceptions.rules.base import ReadModel, place_name

__all__ = ["KIND", "evaluate"]

KIND = "excess"


def evaluate(model: ReadModel) -> list[Condition]:
    """Active conditions: every on-hand row above its maximum."""
    conditions = []
    for row in sorted(model.on_hand, key=lambda row: (row.gtin, row.biz_location)):
        settings = model.rules.settings_for(KIND, model.master, gtin=row.gtin, location=row.biz_location)
        if settings is None:
            continue
        maximum = settings.number("max_on_hand", float("inf"))
        if row.quantity <= maximum:
            continue
        conditions.append(
            Condition(
                rule=KIND,
                subject=f"{row.gtin}@{row.biz_location}",
                active=True,
                policy=settings.policy,
                severity=settings.policy.severity,
                quantity_at_stake=row.quantity - maximum,
                gtin=row.gtin,
                location=row.biz_location,
                details=f"{row.gtin} above maximum at {place_name(model.master, row.biz_location)}: "
                f"on hand {row.quantity:g}, maximum {maximum:g}",
            )
        )
    return conditions
