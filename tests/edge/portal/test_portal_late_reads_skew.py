"""Late reads across neighbour doors whose readers' clocks differ.

A neighbour's pass has its span and offset on its own reader's clock; a read by this door's reader is on
another. Judged on the wrong clock, a pallet brought back through the next door a few seconds later looked
like a late read of its pass and its movement was dropped; and a late cross-read from a skewed reader
escaped the rule and became a duplicate movement.
"""

from __future__ import annotations

import pytest
from test_portal_engine import Door, epcs_of, portal, sgtin
from test_portal_late_reads import crossing_reads, feed

SKEW_MS = 10_000  # reader-5's clock runs 10 s ahead of the gateway's and reader-4's (no NTP on it)


def _neighbour_doors() -> Door:
    return Door(portal("dock-4", neighbours=["dock-5"]), portal("dock-5", neighbours=["dock-4"]))


def _moves(door: Door) -> list[tuple[str, str, set[str]]]:
    return [(item.portal.name, item.direction, epcs_of(item)) for item in door.passes if item.objects]


@pytest.mark.parametrize("back_after_ms", [5_000, 6_000, 8_000])
@pytest.mark.parametrize("skew_ms", [0, SKEW_MS, -SKEW_MS])
def test_a_pallet_back_through_the_neighbour_door_is_a_movement_whatever_the_clocks(
    skew_ms: int, back_after_ms: int
) -> None:
    door = _neighbour_doors()
    # Earlier in the shift each door's reader read a load live: the engine knows how their clocks relate.
    feed(door, crossing_reads(0, [sgtin(7)], "inbound"), reader="reader-4")
    for seen_ms, epc, antenna, rssi in crossing_reads(10_000, [sgtin(8)], "inbound"):
        door.tag(seen_ms + skew_ms, epc, antenna, rssi, reader="reader-5", received_ms=seen_ms)
    # A pallet leaves through dock-5, read live on reader-5's clock ...
    for seen_ms, epc, antenna, rssi in crossing_reads(60_000, [sgtin(1)], "outbound"):
        door.tag(seen_ms + skew_ms, epc, antenna, rssi, reader="reader-5", received_ms=seen_ms)
    door.tick(60_000 + back_after_ms - 1)
    # ... and the forklift brings it back in through dock-4 seconds later, read live by reader-4.
    feed(door, crossing_reads(60_000 + back_after_ms, [sgtin(1)], "inbound"), reader="reader-4")
    door.finish(200_000)

    assert _moves(door) == [
        ("dock-4", "inbound", {sgtin(7)}),
        ("dock-5", "inbound", {sgtin(8)}),
        ("dock-5", "outbound", {sgtin(1)}),
        ("dock-4", "inbound", {sgtin(1)}),
    ]
    assert door.engine.counters()["dock-4"].get("late_reads_dropped", 0) == 0


@pytest.mark.parametrize("skew_ms", [0, SKEW_MS, -SKEW_MS])
def test_a_late_cross_read_from_a_reader_with_a_skewed_clock_is_dropped(skew_ms: int) -> None:
    door = _neighbour_doors()
    # reader-5 read a load live: its clock relation is known.
    for seen_ms, epc, antenna, rssi in crossing_reads(0, [sgtin(8)], "inbound"):
        door.tag(seen_ms + skew_ms, epc, antenna, rssi, reader="reader-5", received_ms=seen_ms)
    feed(door, crossing_reads(30_000, [sgtin(1)], "inbound"), reader="reader-4")
    door.tick(40_000)
    # reader-5 heard that pallet through the wall during its broker outage; its buffer comes 5 min later.
    for seen_ms, epc, antenna, rssi in crossing_reads(30_000, [sgtin(1)], "inbound"):
        door.tag(seen_ms + skew_ms, epc, antenna, rssi, reader="reader-5", received_ms=330_000)
    door.finish(400_000)

    assert _moves(door) == [("dock-5", "inbound", {sgtin(8)}), ("dock-4", "inbound", {sgtin(1)})]
    assert door.engine.counters()["dock-5"]["late_reads_dropped"] == 6


def test_a_replayed_buffer_does_not_pass_for_the_reader_s_clock() -> None:
    door = _neighbour_doors()
    feed(door, crossing_reads(0, [sgtin(8)], "inbound"), reader="reader-5")
    # An hour later (reader-5 silent meanwhile: its broker is down) a pallet goes in through dock-4.
    feed(door, crossing_reads(3_610_000, [sgtin(1)], "inbound"), reader="reader-4")
    door.tick(3_620_000)
    # reader-5's buffer arrives 5 min later. First the passage of a pallet nobody else saw, an ordinary
    # read though late: its delay must not be taken for reader-5's clock relation ...
    feed(door, crossing_reads(3_600_000, [sgtin(2)], "inbound"), arrival_ms=3_900_000, reader="reader-5")
    # ... for then come its cross-reads of dock-4's pass, still to be recognised as late.
    feed(door, crossing_reads(3_610_000, [sgtin(1)], "inbound"), arrival_ms=3_900_000, reader="reader-5")
    door.finish(4_000_000)

    assert {(name, frozenset(epcs)) for name, _direction, epcs in _moves(door)} == {
        ("dock-5", frozenset({sgtin(8)})),
        ("dock-5", frozenset({sgtin(2)})),
        ("dock-4", frozenset({sgtin(1)})),
    }
    assert door.engine.counters()["dock-5"]["late_reads_dropped"] == 6
