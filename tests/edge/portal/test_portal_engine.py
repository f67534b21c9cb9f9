"""The portal engine, rule by rule: sessions, direction, strays, cross-reads, aggregation, dedupe, bounds.

Each test drives the engine the way the agent does: `advance(now)` before every read (the agent's tick),
then the read; `finish` advances far enough for every session to close.
"""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pytest

import edge.pipeline.portal as portal_module
from edge.config import ReadPointConfig
from edge.errors import ConfigError
from edge.pipeline.portal import PortalEngine, PortalPass
from edge.pipeline.portal_config import PortalConfig
from edge.pipeline.reads import GpiEvent, TagRead
from hw_sim.rfid import encode_sgtin96, encode_sscc96

T0 = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
OUTSIDE, INSIDE = 1, 3  # antenna ports: outside group [1, 2], inside group [3, 4]
EYE_OUTSIDE, EYE_INSIDE = 1, 2

READ_POINTS = {
    name: ReadPointConfig(
        name=name,
        id=f"urn:tallyport:rp:dc1:{name}",
        biz_location="urn:epc:id:sgln:0614141.00001.0",
        biz_step=step,
        disposition=disposition,
    )
    for name, step, disposition in (
        ("dock4-in", "receiving", "in_progress"),
        ("dock4-out", "departing", "in_transit"),
        ("dock5-in", "receiving", "in_progress"),
        ("dock5-out", "departing", "in_transit"),
    )
}


def at(ms: float) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def sgtin(serial: int) -> str:
    return encode_sgtin96(614141, 812345, serial)


def sscc(serial: int) -> str:
    return encode_sscc96(614141, 1_234_500_000 + serial)


def portal(name: str = "dock-4", *, gpi: bool = False, **overrides: Any) -> PortalConfig:
    number = name.removeprefix("dock-")
    settings: dict[str, Any] = {
        "name": name,
        "readers": [f"reader-{number}"],
        "outside_antennas": [1, 2],
        "inside_antennas": [3, 4],
        "inbound_read_point": f"dock{number}-in",
        "outbound_read_point": f"dock{number}-out",
        "biz_location": f"urn:tallyport:loc:dc1:{name}",
    }
    if gpi:
        settings.update(photo_eye_outside_pin=EYE_OUTSIDE, photo_eye_inside_pin=EYE_INSIDE)
    settings.update(overrides)
    return PortalConfig(**settings)


class Door:
    """Drives an engine: every call advances the clock to its time first and keeps the passes released."""

    def __init__(self, *portals: PortalConfig) -> None:
        self.engine = PortalEngine(list(portals) or [portal()], READ_POINTS, "dc1-gw", zoneinfo.ZoneInfo("UTC"))
        self.passes: list[PortalPass] = []

    def tick(self, ms: float) -> None:
        self.passes.extend(self.engine.advance(at(ms)))

    def tag(
        self,
        ms: float,
        epc: str,
        antenna: int,
        rssi: float | None = -50.0,
        reader: str = "reader-4",
        count: int = 1,
        received_ms: float | None = None,
    ) -> None:
        self.tick(ms if received_ms is None else received_ms)
        read = TagRead(reader, antenna, epc, at(ms), rssi, count, raw_sha256=f"payload-{int(ms)}")
        self.engine.feed_tag(read, None if received_ms is None else at(received_ms))

    def eye(self, ms: float, pin: int, state: Literal["high", "low"], reader: str = "reader-4") -> None:
        self.tick(ms)
        self.engine.feed_gpi(GpiEvent(reader, pin, state, at(ms)))

    def crossing(
        self,
        start_ms: float,
        epcs: list[str],
        direction: Literal["inbound", "outbound"],
        reader: str = "reader-4",
        rssi: float = -50.0,
    ) -> None:
        """Each tag read around a peak on the first antenna group, then 600 ms later on the second."""
        first, second = (OUTSIDE, INSIDE) if direction == "inbound" else (INSIDE, OUTSIDE)
        # (ms after start, antenna, dB below the peak)
        schedule = [
            (0, first, 8),
            (100, first, 0),
            (200, first, 8),
            (600, second, 8),
            (700, second, 0),
            (800, second, 8),
        ]
        for offset, antenna, loss in schedule:
            for index, epc in enumerate(epcs):
                self.tag(start_ms + offset + index, epc, antenna, rssi - loss, reader)

    def finish(self, ms: float = 120_000) -> list[PortalPass]:
        self.tick(ms)
        return self.passes

    def only_pass(self) -> PortalPass:
        passes = [p for p in self.finish() if p.objects]
        assert len(passes) == 1, passes
        return passes[0]


def epcs_of(portal_pass: PortalPass) -> set[str]:
    return {item.epc.epc_hex for item in portal_pass.objects}


def test_public_api_is_what_all_names() -> None:
    for name in portal_module.__all__:
        assert hasattr(portal_module, name), name
    assert {"PortalEngine", "PortalPass", "pass_to_events"} <= set(portal_module.__all__)


# --- GPI-bounded sessions --------------------------------------------------------------------------


def _beams(door: Door, start_ms: float, first: int, second: int) -> None:
    door.eye(start_ms, first, "high")
    door.eye(start_ms + 500, second, "high")
    door.eye(start_ms + 900, first, "low")
    door.eye(start_ms + 1300, second, "low")


def test_outside_eye_first_is_inbound_whatever_the_antennas_say() -> None:
    door = Door(portal(gpi=True))
    _beams(door, 0, EYE_OUTSIDE, EYE_INSIDE)
    door.crossing(100, [sgtin(1), sgtin(2)], "outbound")  # the eyes outrank antenna timing
    result = door.only_pass()
    assert (result.direction, result.direction_evidence, result.session_kind) == ("inbound", "gpi", "gpi")
    assert result.close_reason == "beams_clear"
    assert epcs_of(result) == {sgtin(1), sgtin(2)}
    assert "direction:gpi" in result.rules_applied


def test_inside_eye_first_is_outbound() -> None:
    door = Door(portal(gpi=True))
    _beams(door, 0, EYE_INSIDE, EYE_OUTSIDE)
    door.crossing(100, [sgtin(1)], "outbound")
    result = door.only_pass()
    assert (result.direction, result.direction_evidence) == ("outbound", "gpi")


def test_late_reads_within_the_grace_join_and_later_ones_are_dropped() -> None:
    door = Door(portal(gpi=True, gpi_grace_ms=500))
    _beams(door, 0, EYE_OUTSIDE, EYE_INSIDE)
    door.crossing(100, [sgtin(1)], "inbound")
    door.tag(1300 + 400, sgtin(2), INSIDE)  # both beams clear at 1300: inside the grace
    door.tag(1300 + 450, sgtin(2), INSIDE)
    door.tag(1300 + 900, sgtin(3), INSIDE)  # after the grace: no session
    door.tag(1300 + 950, sgtin(3), INSIDE)
    result = door.only_pass()
    assert epcs_of(result) == {sgtin(1), sgtin(2)}
    assert door.engine.counters()["dock-4"]["reads_outside_session"] == 2


def test_reads_without_a_beam_broken_are_counted_and_dropped() -> None:
    door = Door(portal(gpi=True))
    door.crossing(0, [sgtin(1)], "inbound")
    assert [p for p in door.finish() if p.objects] == []
    assert door.engine.counters()["dock-4"]["reads_outside_session"] == 6


def test_one_beam_only_falls_back_on_antenna_timing() -> None:
    door = Door(portal(gpi=True))
    door.eye(0, EYE_INSIDE, "high")
    door.crossing(100, [sgtin(1), sgtin(2), sgtin(3)], "outbound")
    door.eye(1000, EYE_INSIDE, "low")
    result = door.only_pass()
    assert (result.direction, result.direction_evidence) == ("outbound", "antenna_timing")
    assert "direction:gpi_incomplete" in result.rules_applied
    assert result.close_reason == "idle"  # waited session_idle_ms for the other beam


def test_a_beam_broken_during_the_grace_starts_the_next_pass() -> None:
    door = Door(portal(gpi=True, gpi_grace_ms=1000))
    _beams(door, 0, EYE_OUTSIDE, EYE_INSIDE)
    door.crossing(100, [sgtin(1)], "inbound")
    _beams(door, 1500, EYE_INSIDE, EYE_OUTSIDE)  # next load, 200 ms after the beams cleared
    door.crossing(1600, [sgtin(2)], "outbound")
    first, second = [p for p in door.finish() if p.objects]
    assert (first.direction, first.close_reason, epcs_of(first)) == ("inbound", "next_pass", {sgtin(1)})
    assert (second.direction, epcs_of(second)) == ("outbound", {sgtin(2)})
    assert second.number == first.number + 1


def test_a_stuck_beam_is_cut_at_session_max() -> None:
    door = Door(portal(gpi=True, session_max_ms=5000))
    door.eye(0, EYE_OUTSIDE, "high")
    door.crossing(100, [sgtin(1)], "inbound")
    door.tick(5000)
    assert [p.close_reason for p in door.passes] == ["max"]
    door.crossing(6000, [sgtin(2)], "inbound")  # the beam is still "blocked": no new edge, no session
    assert door.engine.open_sessions() == 0


# --- time-window sessions and direction from antenna timing -------------------------------------------


@pytest.mark.parametrize("direction", ["inbound", "outbound"])
def test_antenna_timing_gives_the_direction(direction: Literal["inbound", "outbound"]) -> None:
    door = Door()
    door.crossing(0, [sgtin(1), sgtin(2), sscc(1)], direction)
    result = door.only_pass()
    assert (result.direction, result.direction_evidence, result.session_kind) == (
        direction,
        "antenna_timing",
        "time_window",
    )
    assert {item.direction_vote for item in result.objects} == {direction}
    assert result.last_antenna_group == ("inside" if direction == "inbound" else "outside")


def test_direction_unknown_with_reads_on_one_side_only() -> None:
    door = Door()
    for ms in (0, 100, 200):
        door.tag(ms, sgtin(1), OUTSIDE)
    result = door.only_pass()
    assert (result.direction, result.direction_evidence) == ("unknown", "none")
    assert result.objects[0].direction_vote == "unknown"
    assert "direction:unknown" in result.rules_applied


def test_direction_unknown_when_the_peaks_are_closer_than_the_minimum_gap() -> None:
    door = Door(portal(direction_gap_ms_min=150))
    door.tag(0, sgtin(1), OUTSIDE, -45)
    door.tag(100, sgtin(1), INSIDE, -45)  # 100 ms after: too close to call
    assert door.only_pass().direction == "unknown"


def test_direction_unknown_when_the_votes_disagree() -> None:
    door = Door()
    door.crossing(0, [sgtin(1)], "inbound")
    door.crossing(20, [sgtin(2)], "outbound")
    result = door.only_pass()
    assert sorted(item.direction_vote for item in result.objects) == ["inbound", "outbound"]
    assert (result.direction, result.direction_evidence) == ("unknown", "antenna_timing")


def test_direction_needs_the_configured_reads_on_each_side() -> None:
    door = Door(portal(direction_reads_per_side_min=2))
    door.tag(0, sgtin(1), OUTSIDE, -45)
    door.tag(100, sgtin(1), OUTSIDE, -50)
    door.tag(800, sgtin(1), INSIDE, -45)  # one inside read only
    assert door.only_pass().direction == "unknown"


def test_without_rssi_the_first_reads_decide_and_no_rssi_floor_applies() -> None:
    door = Door()
    for ms, antenna in ((0, OUTSIDE), (100, OUTSIDE), (700, INSIDE), (800, INSIDE)):
        door.tag(ms, sgtin(1), antenna, rssi=None)
    result = door.only_pass()
    assert result.direction == "inbound"
    assert result.objects[0].peak_rssi_dbm is None


# --- strays, dedupe, session boundaries --------------------------------------------------------------


def test_strays_are_suppressed_and_counted() -> None:
    door = Door(portal(reads_min=2, peak_rssi_dbm_min=-75.0))
    door.crossing(0, [sgtin(1)], "inbound")
    door.tag(50, sgtin(2), OUTSIDE, -60)  # one read only
    door.tag(60, sgtin(3), OUTSIDE, -78)  # weak, twice
    door.tag(260, sgtin(3), INSIDE, -79)
    result = door.only_pass()
    assert epcs_of(result) == {sgtin(1)}
    reasons = {item.epc_hex: (item.reason, item.detail) for item in result.suppressed}
    assert reasons == {
        sgtin(2): ("reads_min", "1 read(s) < reads_min 2"),
        sgtin(3): ("peak_rssi_min", "peak -78.0 dBm < peak_rssi_dbm_min -75.0 dBm"),
    }
    assert "strays_suppressed:2" in result.rules_applied
    assert result.suppressed_count("reads_min") == 1
    assert door.engine.counters()["dock-4"]["strays_suppressed"] == 2


def test_weak_reads_neither_open_nor_extend_a_session() -> None:
    door = Door(portal(session_idle_ms=2000))
    for ms in range(0, 10_000, 500):  # a tag lying in the staging lane, heard faintly all the time
        door.tag(ms, sgtin(9), OUTSIDE, -80)
    assert door.engine.open_sessions() == 0
    door.crossing(10_000, [sgtin(1)], "inbound")
    for ms in range(11_000, 20_000, 500):
        door.tag(ms, sgtin(9), OUTSIDE, -80)
    passes = door.finish(30_000)
    assert len(passes) == 1
    assert passes[0].ended_at < at(13_000)  # closed 2 s after the last strong read, not kept open
    assert passes[0].suppressed[0].reason == "peak_rssi_min"


def test_hundreds_of_repeated_reads_become_one_object() -> None:
    door = Door()
    for index in range(300):
        antenna = OUTSIDE if index < 150 else INSIDE
        door.tag(index * 5, sgtin(1), antenna, -70 + (index % 20), count=2)
    result = door.only_pass()
    (item,) = result.objects
    assert item.read_count == 600
    assert item.peak_rssi_dbm == -51
    assert (item.first_seen_at, item.last_seen_at) == (at(0), at(299 * 5))
    assert result.reads_total == 600
    assert "dedupe" in result.rules_applied


def test_an_idle_gap_closes_the_session() -> None:
    door = Door(portal(session_idle_ms=2000))
    door.crossing(0, [sgtin(1)], "inbound")
    door.tick(800 + 1999)
    assert door.passes == [] and door.engine.open_sessions() == 1
    door.tick(800 + 2000)
    assert [p.close_reason for p in door.passes] == ["idle"]
    door.crossing(5000, [sgtin(1)], "outbound")
    first, second = door.finish()
    assert (first.direction, second.direction) == ("inbound", "outbound")


def test_session_max_caps_a_busy_door() -> None:
    door = Door(portal(session_idle_ms=2000, session_max_ms=10_000))
    for ms in range(0, 25_000, 200):
        door.tag(ms, sgtin(1), OUTSIDE)
    passes = door.finish()
    assert [p.close_reason for p in passes] == ["max", "max", "idle"]
    assert [p.started_at for p in passes] == [at(0), at(10_000), at(20_000)]


def test_a_session_that_closed_between_ticks_does_not_swallow_the_next_read() -> None:
    door = Door(portal(session_idle_ms=2000))
    door.engine.feed_tag(TagRead("reader-4", OUTSIDE, sgtin(1), at(0), -50))
    door.engine.feed_tag(TagRead("reader-4", OUTSIDE, sgtin(1), at(100), -50))
    door.engine.feed_tag(TagRead("reader-4", OUTSIDE, sgtin(2), at(5000), -50))  # no advance in between
    door.engine.feed_tag(TagRead("reader-4", OUTSIDE, sgtin(2), at(5100), -50))
    passes = door.finish()
    assert [epcs_of(p) for p in passes] == [{sgtin(1)}, {sgtin(2)}]


def test_session_time_runs_on_the_gateway_clock_when_given() -> None:
    door = Door(portal(session_idle_ms=2000))
    skew_ms = -60_000  # the reader's clock is a minute behind the gateway
    for offset in (0, 500, 1000, 1500):
        door.tag(offset + skew_ms, sgtin(1), OUTSIDE if offset < 1000 else INSIDE, received_ms=offset)
    assert door.passes == [] and door.engine.open_sessions() == 1  # not closed on arrival by the skew
    door.tick(1500 + 2000)
    (result,) = door.passes
    assert result.direction == "inbound"
    assert result.ended_at == at(1500 + skew_ms)  # event time stays the reader's observation


def test_a_cross_read_bridge_between_two_loads_is_split_afterwards() -> None:
    door = Door(portal("dock-4", neighbours=["dock-5"]), portal("dock-5"))
    door.crossing(0, [sgtin(1), sscc(1)], "inbound")
    # dock-5's own load; dock-4 hears two of its tags weakly, which keeps dock-4's session open.
    door.crossing(1500, [sgtin(50), sgtin(51)], "outbound", reader="reader-5", rssi=-45)
    for ms in (1600, 2400, 3000):
        door.tag(ms, sgtin(50), OUTSIDE, -70)
        door.tag(ms + 1, sgtin(51), OUTSIDE, -70)
    door.crossing(4200, [sgtin(2), sscc(2)], "outbound")
    dock4 = [p for p in door.finish() if p.portal.name == "dock-4"]
    assert [(p.direction, epcs_of(p)) for p in dock4] == [
        ("inbound", {sgtin(1), sscc(1)}),
        ("outbound", {sgtin(2), sscc(2)}),
    ]
    assert [p.number for p in dock4] == [1, 1]
    assert "session_split:1/2" in dock4[0].rules_applied
    assert "session_split:2/2" in dock4[1].rules_applied
    assert dock4[0].suppressed_count("cross_read") == 2


# --- cross-read arbitration -------------------------------------------------------------------------


def _neighbours(**overrides: Any) -> Door:
    return Door(portal("dock-4", neighbours=["dock-5"], **overrides), portal("dock-5", **overrides))


def test_a_cross_read_goes_to_the_door_with_the_stronger_evidence() -> None:
    door = _neighbours()
    load = [sgtin(1), sgtin(2), sscc(1)]
    door.crossing(0, load, "inbound", reader="reader-4", rssi=-45)
    door.crossing(50, load[:2], "inbound", reader="reader-5", rssi=-62)  # reflections heard at dock-5
    passes = {p.portal.name: p for p in door.finish()}
    assert epcs_of(passes["dock-4"]) == set(load)
    assert epcs_of(passes["dock-5"]) == set()
    lost = passes["dock-5"].suppressed
    assert {item.epc_hex for item in lost} == set(load[:2])
    assert {(item.reason, item.winner) for item in lost} == {("cross_read", "dock-4")}
    assert lost[0].detail == "won by dock-4 (-45.0 dBm, 6 reads)"
    assert "cross_read:dock-4" in passes["dock-5"].rules_applied
    assert door.engine.counters()["dock-5"]["cross_reads_dropped"] == 2


def test_equal_peaks_go_to_the_door_with_more_reads() -> None:
    door = _neighbours()
    for ms in (0, 100, 200):
        door.tag(ms, sgtin(1), OUTSIDE, -55, reader="reader-5")
    for ms in (10, 110):
        door.tag(ms, sgtin(1), OUTSIDE, -55, reader="reader-4")
    passes = {p.portal.name: p for p in door.finish()}
    assert epcs_of(passes["dock-5"]) == {sgtin(1)}
    assert epcs_of(passes["dock-4"]) == set()


def test_a_stray_that_wins_arbitration_is_lost_rather_than_placed_at_the_wrong_door() -> None:
    door = _neighbours()
    door.tag(0, sgtin(1), OUTSIDE, -40, reader="reader-4")  # once, loudly: its own door, but a stray there
    for ms in (10, 110, 210):
        door.tag(ms, sgtin(1), OUTSIDE, -70, reader="reader-5")
    passes = {p.portal.name: p for p in door.finish()}
    assert passes["dock-4"].suppressed[0].reason == "reads_min"
    assert passes["dock-5"].suppressed[0].reason == "cross_read"
    assert not passes["dock-4"].objects and not passes["dock-5"].objects


def test_a_finished_pass_waits_for_the_overlapping_neighbour_session() -> None:
    door = _neighbours(session_idle_ms=2000)
    door.crossing(0, [sgtin(1)], "inbound", reader="reader-5", rssi=-65)  # dock-5 hears it early and briefly
    for ms in range(0, 3000, 100):  # dock-4's load takes longer
        door.tag(ms, sgtin(1), OUTSIDE if ms < 1500 else INSIDE, -45, reader="reader-4")
    door.tick(2900)  # dock-5 closed at 800 + 2000 and waits for dock-4
    assert door.passes == [] and door.engine.held_passes() == 1
    door.tick(2900 + 2000)
    passes = {p.portal.name: p for p in door.passes}
    assert epcs_of(passes["dock-4"]) == {sgtin(1)} and epcs_of(passes["dock-5"]) == set()
    assert "arbitration:partial" not in passes["dock-5"].rules_applied


def test_a_neighbour_that_outlasts_the_wait_gets_a_partial_verdict() -> None:
    door = _neighbours(session_idle_ms=2000, session_max_ms=30_000)
    door.crossing(0, [sgtin(1), sgtin(2)], "inbound", reader="reader-5", rssi=-65)
    for ms in range(0, 8000, 100):  # dock-4 stays busy well past dock-5's wait
        door.tag(ms, sgtin(1), OUTSIDE, -45, reader="reader-4")
    door.tick(8000)
    (dock5,) = door.passes
    assert dock5.portal.name == "dock-5"
    assert "arbitration:partial" in dock5.rules_applied
    assert epcs_of(dock5) == {sgtin(2)}  # dock-4 already beat it on sgtin(1); sgtin(2) it never saw
    passes = {p.portal.name: p for p in door.finish()}
    assert epcs_of(passes["dock-4"]) == {sgtin(1)}


def test_portals_that_are_not_neighbours_do_not_arbitrate() -> None:
    door = Door(portal("dock-4"), portal("dock-5"))
    door.crossing(0, [sgtin(1)], "inbound", reader="reader-4", rssi=-45)
    door.crossing(0, [sgtin(1)], "inbound", reader="reader-5", rssi=-65)
    assert {p.portal.name for p in door.finish() if p.objects} == {"dock-4", "dock-5"}


# --- aggregation ------------------------------------------------------------------------------------


def test_one_sscc_with_sgtins_is_their_parent() -> None:
    door = Door()
    door.crossing(0, [sscc(1), sgtin(1), sgtin(2), sgtin(3)], "inbound")
    result = door.only_pass()
    assert result.aggregation_parent is not None
    assert result.aggregation_parent.epc.epc_hex == sscc(1)
    assert {item.epc.epc_hex for item in result.aggregation_children} == {sgtin(1), sgtin(2), sgtin(3)}
    assert "aggregation:sscc_parent" in result.rules_applied


def test_two_ssccs_are_ambiguous_and_not_aggregated() -> None:
    door = Door()
    door.crossing(0, [sscc(1), sscc(2), sgtin(1), sgtin(2)], "inbound")
    result = door.only_pass()
    assert result.aggregation_parent is None and result.aggregation_children == ()
    assert "aggregation:ambiguous:2_sscc" in result.rules_applied
    assert len(result.objects) == 4


def test_an_sscc_alone_is_no_aggregation() -> None:
    door = Door()
    door.crossing(0, [sscc(1)], "inbound")
    result = door.only_pass()
    assert result.aggregation_parent is None
    assert not any(rule.startswith("aggregation") for rule in result.rules_applied)


# --- bad and unusual EPCs ---------------------------------------------------------------------------


def test_invalid_epc_is_rejected_not_an_object() -> None:
    door = Door()
    door.crossing(0, [sgtin(1)], "inbound")
    bad = "30FC257BF7194E4000001A85"  # SGTIN-96 header, partition 7
    door.tag(50, bad, OUTSIDE)
    door.tag(60, bad, OUTSIDE)
    door.tag(70, "XYZ", OUTSIDE)
    result = door.only_pass()
    assert epcs_of(result) == {sgtin(1)}
    rejected = {item.epc_hex: item for item in result.rejected}
    assert set(rejected) == {bad, "XYZ"}
    assert rejected[bad].reason == "sgtin-96: partition value 7 is undefined (0 to 6 are)"
    assert rejected[bad].read_count == 2
    assert rejected[bad].raw_sha256 == "payload-50"


def test_invalid_epc_outside_a_session_comes_back_in_a_pass_without_objects() -> None:
    door = Door(portal(gpi=True))
    door.tag(0, "ABC", OUTSIDE)
    door.tick(1)
    (result,) = door.passes
    assert (result.session_kind, result.objects, result.direction) == ("none", (), "unknown")
    assert result.rejected[0].reason == "3 hex digits: not a whole number of bytes"
    assert "rejected_outside_session" in result.rules_applied


def test_invalid_epc_never_opens_a_time_window_session() -> None:
    door = Door()
    for ms in (0, 1):  # two reads between two ticks
        door.engine.feed_tag(TagRead("reader-4", OUTSIDE, "30FC257BF7194E4000001A85", at(ms), -50))
    assert door.engine.open_sessions() == 0
    door.tick(2)
    assert [p.rejected[0].read_count for p in door.passes] == [2]


def test_a_factory_epc_passes_through_raw() -> None:
    door = Door()
    door.crossing(0, ["E2801160600002054E1F2A2B"], "inbound")
    (item,) = door.only_pass().objects
    assert item.epc.scheme == "raw"
    assert item.epc.canonical_id == "urn:epc:raw:96.xE2801160600002054E1F2A2B"


def test_epcs_beyond_the_session_cap_are_counted_not_kept() -> None:
    door = Door(portal(session_epcs_max=3))
    door.crossing(0, [sgtin(n) for n in range(5)], "inbound")
    result = door.only_pass()
    assert len(result.objects) == 3
    assert result.epcs_over_cap == 12  # 2 EPCs x 6 reads
    assert "epcs_over_cap:12" in result.rules_applied


def test_reads_from_unknown_readers_or_antennas_are_counted() -> None:
    door = Door()
    door.tag(0, sgtin(1), 9)
    door.tag(0, sgtin(1), OUTSIDE, reader="reader-x")
    door.engine.feed_gpi(GpiEvent("reader-4", 7, "high", at(0)))
    assert door.engine.counters()["(unrouted)"] == {"reads": 2, "gpi_edges": 1}
    assert door.finish() == []


def test_naive_times_are_a_driver_bug() -> None:
    door = Door()
    with pytest.raises(AssertionError, match="timezone-aware"):
        door.engine.feed_tag(TagRead("reader-4", OUTSIDE, sgtin(1), datetime(2025, 3, 3, 8, 0), -50))


# --- configuration the engine refuses -----------------------------------------------------------------


def test_unknown_read_points_and_neighbours_are_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        PortalEngine(
            [portal(inbound_read_point="nowhere", neighbours=["dock-9"])], READ_POINTS, "gw", zoneinfo.ZoneInfo("UTC")
        )
    message = str(caught.value)
    assert "portal[0] (dock-4).inbound_read_point: expected one of the [[read_point]] names, got 'nowhere'" in message
    assert "portal[0] (dock-4).neighbours: no portal named 'dock-9'" in message


def test_an_antenna_claimed_by_two_portals_is_refused() -> None:
    other = portal("dock-5", readers=["reader-4"], outside_antennas=[2, 5], inside_antennas=[6])
    with pytest.raises(ConfigError, match="reader 'reader-4' antenna 2 already belongs to portal 'dock-4'"):
        PortalEngine([portal(), other], READ_POINTS, "gw", zoneinfo.ZoneInfo("UTC"))


def test_two_doors_on_one_reader_with_their_own_ports() -> None:
    shared = portal("dock-5", readers=["reader-4"], outside_antennas=[5, 6], inside_antennas=[7, 8])
    door = Door(portal(), shared)
    door.crossing(0, [sgtin(1)], "inbound")
    for ms, antenna in ((0, 5), (100, 5), (700, 7), (800, 7)):
        door.tag(ms, sgtin(2), antenna, -45)
    passes = {p.portal.name: epcs_of(p) for p in door.finish()}
    assert passes == {"dock-4": {sgtin(1)}, "dock-5": {sgtin(2)}}
