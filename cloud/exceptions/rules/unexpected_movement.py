"""Unexpected movement, judged event by event as ingest commits them:

- seen after it was shipped: an event for an item whose last transit event (biz_step shipping or
  departing, or disposition in_transit) is newer than its last receipt, when this event is neither
  a receipt (biz_step receiving, arriving, accepting, unloading, or a place of a
  `receiving_location_types` type) nor transit itself. A re-read at the shipping place within
  `grace_s` (default 300 s) is the portal seeing the pallet leave, not a movement.
- at a door its state does not allow: an outbound passage (biz_step shipping, departing or
  loading, or a place of an `outbound_location_types` type, default "shipping") by an item whose
  disposition (this event's, or the last one it was given) is in `blocked_dispositions`
  (default recalled, expired, damaged, destroyed, stolen, disposed, non_sellable_other), or whose
  SKU's lifecycle is in `blocked_lifecycles` (default obsolete).

The engine keeps, per item, what this needs (`ItemState`: when and where it was shipped, its
standing disposition; and, for the dwell rule, where it stands since when), updated by
`sighting`. Each unexpected event is a new occurrence of the item's exception; the item's next
ordinary event reports the condition inactive, which clears it.
Events older than what the state already knows do not rewrite it (late delivery after an outage).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from tallyport.v1 import events_pb2

from cloud.exceptions.config import RuleBook, RuleSettings
from cloud.exceptions.models import Condition
from cloud.exceptions.rules.base import MICROS_PER_SECOND, more_severe, place_name
from cloud.masterdata.models import MasterData
from cloud.projections import is_in_transit
from cloud.timestamps import to_micros

__all__ = ["KIND", "ItemState", "sighting"]

KIND = "unexpected_movement"
GRACE_S_DEFAULT = 300.0
BLOCKED_DISPOSITIONS_DEFAULT = (
    "recalled",
    "expired",
    "damaged",
    "destroyed",
    "stolen",
    "disposed",
    "non_sellable_other",
)
BLOCKED_LIFECYCLES_DEFAULT = ("obsolete",)
OUTBOUND_LOCATION_TYPES_DEFAULT = ("shipping",)
RECEIVING_LOCATION_TYPES_DEFAULT = ("receiving",)
_RECEIPT_STEPS = frozenset(
    {
        events_pb2.BIZ_STEP_RECEIVING,
        events_pb2.BIZ_STEP_ARRIVING,
        events_pb2.BIZ_STEP_ACCEPTING,
        events_pb2.BIZ_STEP_UNLOADING,
    }
)
_OUTBOUND_STEPS = frozenset({events_pb2.BIZ_STEP_SHIPPING, events_pb2.BIZ_STEP_DEPARTING, events_pb2.BIZ_STEP_LOADING})
# Dispositions that describe the trip, not the goods: they never become the standing disposition.
_TRIP_DISPOSITIONS = frozenset({events_pb2.DISPOSITION_UNSPECIFIED, events_pb2.DISPOSITION_IN_TRANSIT})


@dataclass(frozen=True, slots=True)
class ItemState:
    """What the rule remembers about one item between events."""

    object_id: str
    shipped_at_us: int | None = None
    shipped_location: str = ""
    disposition: int = 0  # the last disposition given to the goods (0: none)
    disposition_at_us: int = 0
    # Where the item stands and since when (its first event there), for the dwell rule: a reader
    # that sees a standing pallet again does not restart its dwell. "" while in transit or gone.
    place: str = ""
    placed_at_us: int = 0

    @property
    def empty(self) -> bool:
        return self.shipped_at_us is None and self.disposition == 0 and not self.place


def sighting(
    event: events_pb2.Event,
    identified: events_pb2.IdentifiedObject,
    prior: ItemState | None,
    master: MasterData,
    rules: RuleBook,
) -> tuple[Condition | None, ItemState]:
    """Judge one item in one newly stored event: (condition or None where the rule is off, next state)."""
    state = prior or ItemState(identified.id)
    event_time_us = to_micros(event.event_time)
    settings = rules.settings_for(KIND, master, gtin=identified.gtin, location=event.biz_location)
    problem = None if settings is None else _problem(event, identified, state, event_time_us, master, settings)
    condition = None
    if settings is not None:
        severity = settings.policy.severity
        if problem is not None and problem[1]:
            severity = more_severe(severity)
        condition = Condition(
            rule=KIND,
            subject=identified.id,
            active=problem is not None,
            policy=settings.policy,
            severity=severity,
            quantity_at_stake=1.0,
            gtin=identified.gtin,
            location=event.biz_location,
            details=problem[0] if problem is not None else "",
            occurrence=True,
            observed_at_us=event_time_us,
        )
    return condition, _next_state(state, event, event_time_us, settings, master)


def _problem(
    event: events_pb2.Event,
    identified: events_pb2.IdentifiedObject,
    state: ItemState,
    event_time_us: int,
    master: MasterData,
    settings: RuleSettings,
) -> tuple[str, bool] | None:
    """(what is wrong, whether it is one step more severe), or None when the event is ordinary."""
    where = place_name(master, event.biz_location or event.read_point.id)
    if _is_outbound(event, master, settings):
        blocked = set(settings.words("blocked_dispositions", BLOCKED_DISPOSITIONS_DEFAULT))
        for disposition in (event.disposition, state.disposition):
            word = _disposition_word(disposition)
            if word in blocked:
                return f"{identified.id} passed outbound {where} with disposition {word}", word == "recalled"
        sku = master.sku(identified.gtin)
        if sku is not None and sku.lifecycle in settings.words("blocked_lifecycles", BLOCKED_LIFECYCLES_DEFAULT):
            return f"{identified.id} passed outbound {where} but SKU {sku.gtin} is {sku.lifecycle}", False
    if state.shipped_at_us is None or event_time_us <= state.shipped_at_us:
        return None
    if is_in_transit(event) or _is_receipt(event, master, settings):
        return None
    grace_us = round(settings.number("grace_s", GRACE_S_DEFAULT) * MICROS_PER_SECOND)
    if event.biz_location == state.shipped_location and event_time_us - state.shipped_at_us <= grace_us:
        return None
    shipped_where = place_name(master, state.shipped_location) if state.shipped_location else "an unknown place"
    return f"{identified.id} seen at {where} after it was shipped from {shipped_where}", False


def _next_state(
    state: ItemState,
    event: events_pb2.Event,
    event_time_us: int,
    settings: RuleSettings | None,
    master: MasterData,
) -> ItemState:
    if is_in_transit(event):
        if state.shipped_at_us is None or event_time_us >= state.shipped_at_us:
            state = replace(state, shipped_at_us=event_time_us, shipped_location=event.biz_location)
    elif (
        state.shipped_at_us is not None
        and event_time_us >= state.shipped_at_us
        and _is_receipt(event, master, settings)
    ):
        state = replace(state, shipped_at_us=None, shipped_location="")
    if event.disposition not in _TRIP_DISPOSITIONS and event_time_us >= state.disposition_at_us:
        state = replace(state, disposition=event.disposition, disposition_at_us=event_time_us)
    if event_time_us >= state.placed_at_us:
        gone = event.type == events_pb2.EVENT_TYPE_OBJECT and event.action == events_pb2.ACTION_DELETE
        place = "" if gone or is_in_transit(event) else event.biz_location
        if place != state.place:  # moved (or left): the clock of its stay starts again
            state = replace(state, place=place, placed_at_us=event_time_us)
    return state


def _place_types(master: MasterData, location: str) -> set[str]:
    return {place.location_type for place in master.ancestors(location)} if location else set()


def _is_receipt(event: events_pb2.Event, master: MasterData, settings: RuleSettings | None) -> bool:
    if event.biz_step in _RECEIPT_STEPS:
        return True
    types = settings.words("receiving_location_types", RECEIVING_LOCATION_TYPES_DEFAULT) if settings else ()
    return bool(_place_types(master, event.biz_location) & set(types or RECEIVING_LOCATION_TYPES_DEFAULT))


def _is_outbound(event: events_pb2.Event, master: MasterData, settings: RuleSettings) -> bool:
    if event.biz_step in _OUTBOUND_STEPS:
        return True
    types = settings.words("outbound_location_types", OUTBOUND_LOCATION_TYPES_DEFAULT)
    return bool(_place_types(master, event.biz_location) & set(types))


def _disposition_word(disposition: int) -> str:
    if disposition == events_pb2.DISPOSITION_UNSPECIFIED:
        return ""
    return events_pb2.Disposition.Name(disposition).removeprefix("DISPOSITION_").lower()  # type: ignore[arg-type]
