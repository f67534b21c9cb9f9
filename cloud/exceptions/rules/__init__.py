"""The exception rules, one module per rule; this file is the list of what ships.

State rules are pure functions `evaluate(ReadModel) -> list[Condition]` returning the conditions
active now; the engine clears the open exceptions of a rule that it no longer reports.
`unexpected_movement` is judged per event as ingest commits (`sighting`), not by the sweep.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from cloud.exceptions.models import Condition
from cloud.exceptions.rules import (
    dwell,
    excess,
    excursion,
    gateway_alarm,
    seq_gap,
    stale_feed,
    stockout,
    tier_transition,
    unexpected_movement,
)
from cloud.exceptions.rules.base import GatewayAlarm, ReadModel, SensorReading

__all__ = ["EVENT_RULES", "STATE_RULES", "GatewayAlarm", "ReadModel", "SensorReading", "StateRule"]

StateRule = Callable[[ReadModel], list[Condition]]

STATE_RULES: Mapping[str, StateRule] = {
    stockout.KIND: stockout.evaluate,
    excess.KIND: excess.evaluate,
    dwell.KIND: dwell.evaluate,
    excursion.KIND: excursion.evaluate,
    stale_feed.KIND: stale_feed.evaluate,
    seq_gap.KIND: seq_gap.evaluate,
    gateway_alarm.KIND: gateway_alarm.evaluate,
    tier_transition.KIND: tier_transition.evaluate,
}
EVENT_RULES = frozenset({unexpected_movement.KIND})
