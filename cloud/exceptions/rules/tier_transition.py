"""Tier transition: a SKU whose annual usage value ranks it within `margin` of an ABC class
boundary, or already past it, so its class (and the rules and counts that follow it) is about
to change.

ABC by value: SKUs ranked by annual usage x unit cost, highest first; a SKU's position is the
share of the total value held by the SKUs ranked above it. Position below `a_boundary` (0.80)
is class A, below `b_boundary` (0.95) B, else C. Active when the position is within `margin`
(default 0.02) of a boundary, or when the class it ranks in differs from the master's
abc_class (one severity step higher). SKUs without usage value are not ranked. Subject: the
GTIN. Nothing priced at stake: a planning notice.
"""

from __future__ import annotations

from cloud.exceptions.models import Condition
from cloud.exceptions.rules.base import ReadModel, more_severe

__all__ = ["KIND", "abc_positions", "evaluate"]

KIND = "tier_transition"
MARGIN_DEFAULT = 0.02
A_BOUNDARY_DEFAULT = 0.80
B_BOUNDARY_DEFAULT = 0.95


def abc_positions(values: dict[str, float]) -> dict[str, float]:
    """Each GTIN's share of total value held by those ranked above it (ties ranked by GTIN)."""
    ranked = sorted(
        ((value, gtin) for gtin, value in values.items() if value > 0), key=lambda pair: (-pair[0], pair[1])
    )
    total = sum(value for value, _ in ranked)
    positions: dict[str, float] = {}
    above = 0.0
    for value, gtin in ranked:
        positions[gtin] = above / total
        above += value
    return positions


def evaluate(model: ReadModel) -> list[Condition]:
    """Active conditions: SKUs near or past their class boundary."""
    positions = abc_positions({gtin: sku.annual_value for gtin, sku in model.master.skus.items()})
    conditions = []
    for gtin, position in sorted(positions.items()):
        sku = model.master.skus[gtin]
        settings = model.rules.settings_for(KIND, model.master, gtin=gtin)
        if settings is None:
            continue
        margin = settings.number("margin", MARGIN_DEFAULT)
        a_boundary = settings.number("a_boundary", A_BOUNDARY_DEFAULT)
        b_boundary = settings.number("b_boundary", B_BOUNDARY_DEFAULT)
        ranked = "A" if position < a_boundary else "B" if position < b_boundary else "C"
        near = [boundary for boundary in (a_boundary, b_boundary) if abs(position - boundary) <= margin]
        if ranked == sku.abc_class and not near:
            continue
        if ranked != sku.abc_class:
            severity = more_severe(settings.policy.severity)
            text = f"ranks as class {ranked} now (master says {sku.abc_class})"
        else:
            text = f"within {margin:.0%} of the {near[0]:.0%} class boundary"
        conditions.append(
            Condition(
                rule=KIND,
                subject=gtin,
                active=True,
                policy=settings.policy,
                severity=severity if ranked != sku.abc_class else settings.policy.severity,
                gtin=gtin,
                details=f"{gtin} ({sku.description}) at {position:.1%} of cumulative usage value: {text}",
            )
        )
    return conditions
