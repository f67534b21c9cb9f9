"""The priority score that ranks exceptions: money at stake, service exposure, severity.

    value_at_stake = quantity_at_stake x unit_cost            (unit_cost from the SKU master; 0 if unknown)
    priority       = (value_at_stake + 1) x service_weight x severity_factor

- quantity_at_stake is what the rule says is at risk: the shortfall below the minimum, the
  excess above the maximum, the item dwelling or moving, the stock of the SKU in an excursion.
- service_weight is `MasterData.service_weight(gtin, location)`: the heaviest customer tier
  the SKU or the location (or one of its parents) serves; 1.0 when none.
- severity_factor doubles per severity step: warning 1, minor 2, major 4, critical 8.
- The "+ 1" keeps exceptions with nothing priced (a silent gateway, a seq gap) ordered by
  severity and service instead of all scoring zero; it is one currency unit, negligible next
  to any priced stock.

Several currencies are not converted: the SKU master states unit costs in one currency per
site in practice, and the score only ranks.
"""

from __future__ import annotations

from dataclasses import dataclass

from cloud.exceptions.models import Severity
from cloud.masterdata.models import MasterData

__all__ = ["SEVERITY_FACTOR", "Score", "priority_score", "score_condition"]

SEVERITY_FACTOR: dict[Severity, float] = {"warning": 1.0, "minor": 2.0, "major": 4.0, "critical": 8.0}
_UNPRICED_FLOOR = 1.0


@dataclass(frozen=True, slots=True)
class Score:
    """A priority with the figures it came from, kept on the exception for the operator to see."""

    priority: float
    value_at_stake: float
    service_weight: float


def priority_score(quantity_at_stake: float, unit_cost: float, service_weight: float, severity: Severity) -> Score:
    """The documented formula; negative quantities or costs count as zero."""
    value = max(quantity_at_stake, 0.0) * max(unit_cost, 0.0)
    weight = max(service_weight, 0.0)
    return Score((value + _UNPRICED_FLOOR) * weight * SEVERITY_FACTOR[severity], value, weight)


def score_condition(
    master: MasterData, gtin: str, location: str, quantity_at_stake: float, severity: Severity
) -> Score:
    """Price a condition with the SKU master and weigh it by the customer tiers it touches."""
    sku = master.sku(gtin) if gtin else None
    unit_cost = sku.unit_cost if sku is not None else 0.0
    weight = master.service_weight(gtin, location)
    return priority_score(quantity_at_stake, unit_cost, weight, severity)
