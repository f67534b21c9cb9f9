"""How a newly stored event changes positions and on-hand: pure rules, no I/O.

`cloud.ingest.commit` applies the result in the same transaction as the event insert, and
only for events that were actually inserted: a duplicate changes nothing.

Positions (one per serialised object, keyed by `IdentifiedObject.id`; the objects of an
event and the parent of an aggregation event):
- An event moves an object only if it is newer than the event that last moved it, ordered
  by (event_time, gateway_id, seq): a late event never moves an item backwards.
- The position takes the event's biz_location, read_point.id, biz_step and disposition as
  they are (an empty biz_location means "not at a known location"). Identity fields (epc_uri,
  epc_hex, gtin, sscc) keep their previous value when the event leaves them empty.
- in_transit = disposition IN_TRANSIT, or biz_step DEPARTING or SHIPPING.
- present = false after an OBJECT event with action DELETE (the object left the system:
  the row is kept, for the record). ADD and OBSERVE make it present again. An AGGREGATION
  event with DELETE means unpacking, so its parent and children stay present.

On-hand per (gtin, biz_location):
- serialized_count = positions with that GTIN at that location that are present and not in
  transit. Maintained incrementally: when a position changes, -1 where it counted before
  and +1 where it counts now.
- class_quantity = the net of quantity elements without a uom: action ADD adds the quantity
  at the event's biz_location, DELETE subtracts it, OBSERVE changes nothing. Quantities
  without a biz_location change nothing. Being additive, late events simply add in.
- Quantities with a uom (a measure such as KGM) are kept apart per (gtin, biz_location, uom)
  and never enter `quantity`.
- quantity = serialized_count + class_quantity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tallyport.v1 import events_pb2

from cloud.store.records import MeasureDelta, OnHandDelta, PositionRecord
from cloud.timestamps import to_micros

__all__ = ["ProjectionChanges", "counted_at", "is_in_transit", "moved_objects", "project"]

_IN_TRANSIT_BIZ_STEPS = frozenset({events_pb2.BIZ_STEP_DEPARTING, events_pb2.BIZ_STEP_SHIPPING})
_QUANTITY_SIGN = {events_pb2.ACTION_ADD: 1.0, events_pb2.ACTION_DELETE: -1.0}


@dataclass
class ProjectionChanges:
    """What a run of events does to the projections: write these in the same transaction."""

    positions: dict[str, PositionRecord] = field(default_factory=dict)  # changed positions by object id
    on_hand: list[OnHandDelta] = field(default_factory=list)
    measures: list[MeasureDelta] = field(default_factory=list)


def is_in_transit(event: events_pb2.Event) -> bool:
    """Whether the event leaves its objects in transit."""
    return event.disposition == events_pb2.DISPOSITION_IN_TRANSIT or event.biz_step in _IN_TRANSIT_BIZ_STEPS


def counted_at(position: PositionRecord) -> tuple[str, str] | None:
    """The (gtin, biz_location) whose serialized_count includes this position, if any."""
    if position.present and not position.in_transit and position.gtin and position.biz_location:
        return position.gtin, position.biz_location
    return None


def moved_objects(event: events_pb2.Event) -> Sequence[events_pb2.IdentifiedObject]:
    """The objects whose position the event may change: its objects and an aggregation's parent."""
    # A sequence, not a generator: callers walk it several times per event on the ingest path.
    if event.HasField("parent") and event.parent.id:
        return [*event.objects, event.parent]
    return event.objects


def project(events: Sequence[events_pb2.Event], positions: Mapping[str, PositionRecord]) -> ProjectionChanges:
    """Apply `events` in order to the current `positions` (those of their objects that exist)."""
    working = dict(positions)
    changes = ProjectionChanges()
    counts: dict[tuple[str, str], int] = {}
    quantities: dict[tuple[str, str], float] = {}
    measures: dict[tuple[str, str, str], float] = {}
    for event in events:
        moved = moved_objects(event)
        if moved:
            _move_objects(event, moved, working, changes.positions, counts)
        if event.quantities:
            _add_quantities(event, quantities, measures)
    changes.on_hand = _on_hand_deltas(counts, quantities)
    changes.measures = [
        MeasureDelta(gtin, location, uom, quantity) for (gtin, location, uom), quantity in measures.items()
    ]
    return changes


def _move_objects(
    event: events_pb2.Event,
    moved: Sequence[events_pb2.IdentifiedObject],
    working: dict[str, PositionRecord],
    changed: dict[str, PositionRecord],
    counts: dict[tuple[str, str], int],
) -> None:
    """Move each of `moved` to where `event` saw it, unless a newer event already moved it."""
    # What the event says is the same for all its objects: read it from the message once.
    event_time_us = to_micros(event.event_time)
    gateway_id, seq = event.gateway_id, event.seq
    order = (event_time_us, gateway_id, seq)
    biz_location = event.biz_location
    read_point_id = event.read_point.id
    biz_step, disposition, event_id = event.biz_step, event.disposition, event.event_id
    in_transit = is_in_transit(event)
    present = not (event.type == events_pb2.EVENT_TYPE_OBJECT and event.action == events_pb2.ACTION_DELETE)
    for identified in moved:
        object_id = identified.id
        before = working.get(object_id)
        if before is not None and order <= (before.event_time_us, before.gateway_id, before.seq):
            continue  # a late event never moves an item backwards
        after = PositionRecord(
            object_id=object_id,
            epc_uri=identified.epc_uri or (before.epc_uri if before else ""),
            epc_hex=identified.epc_hex or (before.epc_hex if before else ""),
            gtin=identified.gtin or (before.gtin if before else ""),
            sscc=identified.sscc or (before.sscc if before else ""),
            biz_location=biz_location,
            read_point_id=read_point_id,
            biz_step=biz_step,
            disposition=disposition,
            in_transit=in_transit,
            present=present,
            event_time_us=event_time_us,
            event_id=event_id,
            gateway_id=gateway_id,
            seq=seq,
        )
        working[object_id] = after
        changed[object_id] = after
        _move_count(counts, counted_at(before) if before else None, counted_at(after))


def _move_count(
    counts: dict[tuple[str, str], int], before: tuple[str, str] | None, after: tuple[str, str] | None
) -> None:
    if before == after:
        return
    if before is not None:
        counts[before] = counts.get(before, 0) - 1
    if after is not None:
        counts[after] = counts.get(after, 0) + 1


def _add_quantities(
    event: events_pb2.Event,
    quantities: dict[tuple[str, str], float],
    measures: dict[tuple[str, str, str], float],
) -> None:
    sign = _QUANTITY_SIGN.get(event.action)
    if sign is None or not event.biz_location:
        return
    for element in event.quantities:
        if element.uom:
            key = (element.gtin, event.biz_location, element.uom)
            measures[key] = measures.get(key, 0.0) + sign * element.quantity
        else:
            place = (element.gtin, event.biz_location)
            quantities[place] = quantities.get(place, 0.0) + sign * element.quantity


def _on_hand_deltas(counts: dict[tuple[str, str], int], quantities: dict[tuple[str, str], float]) -> list[OnHandDelta]:
    deltas = []
    for place in sorted(counts.keys() | quantities.keys()):
        count, quantity = counts.get(place, 0), quantities.get(place, 0.0)
        if count or quantity:
            deltas.append(OnHandDelta(place[0], place[1], count, quantity))
    return deltas
