"""What a portal pass becomes on the wire: `pass_to_events` and the cloud's contract check on its output."""

from __future__ import annotations

import hashlib
import zoneinfo
from datetime import UTC, datetime, timedelta
from typing import Literal

from tallyport.v1 import events_pb2

from cloud.ingest.validation import validate_event
from edge.config import ReadPointConfig
from edge.pipeline.portal import PortalEngine, PortalPass, pass_to_events
from edge.pipeline.portal_config import PortalConfig
from edge.pipeline.reads import TagRead
from hw_sim.rfid import encode_sgtin96, encode_sscc96

AMSTERDAM = zoneinfo.ZoneInfo("Europe/Amsterdam")
WINTER = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
SUMMER = datetime(2025, 7, 1, 8, 0, tzinfo=UTC)
OUTSIDE, INSIDE = 1, 3
GATEWAY = "dc1-gw"

READ_POINTS = {
    "dock4-in": ReadPointConfig(
        name="dock4-in",
        id="urn:tallyport:rp:dc1:dock-4:in",
        biz_location="urn:epc:id:sgln:0614141.00001.0",
        biz_step="receiving",
        disposition="in_progress",
    ),
    "dock4-out": ReadPointConfig(
        name="dock4-out",
        id="urn:tallyport:rp:dc1:dock-4:out",
        biz_location="urn:epc:id:sgln:0614141.00002.0",
        biz_step="departing",
        disposition="in_transit",
    ),
}
PORTAL = PortalConfig(
    name="dock-4",
    readers=["reader-4a", "reader-4b"],
    outside_antennas=[1, 2],
    inside_antennas=[3, 4],
    inbound_read_point="dock4-in",
    outbound_read_point="dock4-out",
    biz_location="urn:epc:id:sgln:0614141.00004.0",
)
SSCC = encode_sscc96(614141, 1_234_567_890)
CASES = [encode_sgtin96(614141, 812345, serial) for serial in (6789, 6790)]
GRAI = "3314257BF40C0E4000001A85"  # urn:epc:id:grai:0614141.12345.6789 (a returnable pallet)


def run_pass(
    direction: Literal["inbound", "outbound", "unknown"], start: datetime = WINTER, epcs: list[str] | None = None
) -> PortalPass:
    engine = PortalEngine([PORTAL], READ_POINTS, GATEWAY, AMSTERDAM)
    sides = {"inbound": (OUTSIDE, INSIDE), "outbound": (INSIDE, OUTSIDE), "unknown": (OUTSIDE, OUTSIDE)}[direction]
    for index, epc in enumerate(epcs if epcs is not None else [SSCC, *CASES]):
        schedule = [(0, sides[0], "reader-4a"), (100, sides[0], "reader-4a")]
        schedule += [(700, sides[1], "reader-4b"), (800, sides[1], "reader-4b")]
        for offset_ms, antenna, reader in schedule:
            moment = start + timedelta(milliseconds=offset_ms + index)
            engine.feed_tag(TagRead(reader, antenna, epc, moment, -50.0, raw_sha256=f"{offset_ms:064x}"))
    (result,) = engine.advance(start + timedelta(minutes=1))
    assert result.direction == direction
    return result


def events(portal_pass: PortalPass) -> list[events_pb2.Event]:
    return pass_to_events(portal_pass, gateway_id=GATEWAY, read_points=READ_POINTS, zone=AMSTERDAM, driver="zebra_iot")


def as_stored(event: events_pb2.Event, seq: int) -> events_pb2.Event:
    """What the outbox adds before the uplink sends it."""
    stored = events_pb2.Event()
    stored.CopyFrom(event)
    stored.event_id = f"urn:uuid:00000000-0000-7000-8000-{seq:012d}"
    stored.seq = seq
    return stored


def test_inbound_pass_is_an_object_event_and_an_aggregation_at_the_inbound_read_point() -> None:
    portal_pass = run_pass("inbound")
    object_event, aggregation = events(portal_pass)
    for event in (object_event, aggregation):
        assert event.read_point.id == "urn:tallyport:rp:dc1:dock-4:in"
        assert event.biz_location == "urn:epc:id:sgln:0614141.00001.0"
        assert event.biz_step == events_pb2.BIZ_STEP_RECEIVING
        assert event.disposition == events_pb2.DISPOSITION_IN_PROGRESS
        assert event.event_class == events_pb2.EVENT_CLASS_MOVEMENT
        assert event.gateway_id == GATEWAY and event.event_id == "" and event.seq == 0
        assert event.read_point.device_id == "reader-4a,reader-4b"
        assert event.read_point.antenna == "inside"
        assert event.lineage.driver == "zebra_iot"
        assert list(event.lineage.rules_applied)[:3] == ["portal:dock-4", "session:time_window", "session_closed:idle"]
        assert "direction:antenna_timing" in event.lineage.rules_applied
        assert event.lineage.rules_applied[-1] == "read_point:dock4-in"
    assert object_event.type == events_pb2.EVENT_TYPE_OBJECT
    assert object_event.action == events_pb2.ACTION_OBSERVE  # the read point's action
    assert [item.epc_hex for item in object_event.objects] == [SSCC, *CASES]
    assert aggregation.type == events_pb2.EVENT_TYPE_AGGREGATION
    assert aggregation.action == events_pb2.ACTION_OBSERVE
    assert aggregation.parent.id == "https://id.gs1.org/00/106141412345678908"
    assert aggregation.parent.sscc == "106141412345678908"
    assert [item.serial for item in aggregation.objects] == ["6789", "6790"]


def test_objects_carry_the_decoded_identity() -> None:
    (object_event, _) = events(run_pass("inbound"))
    case = object_event.objects[1]
    assert case.id == "https://id.gs1.org/01/80614141123458/21/6789"
    assert case.epc_uri == "urn:epc:id:sgtin:0614141.812345.6789"
    assert case.epc_hex == CASES[0]
    assert (case.gtin, case.serial, case.sscc) == ("80614141123458", "6789", "")


def test_a_grai_is_an_object_without_ai_21_serial() -> None:
    (object_event,) = events(run_pass("inbound", epcs=[GRAI]))
    (pallet,) = object_event.objects
    assert pallet.id == "https://id.gs1.org/8003/006141411234526789"
    assert pallet.epc_uri == "urn:epc:id:grai:0614141.12345.6789"
    assert (pallet.gtin, pallet.serial, pallet.sscc) == ("", "", "")


def test_outbound_pass_departs_in_transit() -> None:
    object_event, aggregation = events(run_pass("outbound"))
    assert object_event.read_point.id == "urn:tallyport:rp:dc1:dock-4:out"
    assert object_event.biz_step == events_pb2.BIZ_STEP_DEPARTING
    assert object_event.disposition == events_pb2.DISPOSITION_IN_TRANSIT
    assert object_event.read_point.antenna == "outside"
    assert aggregation.biz_step == events_pb2.BIZ_STEP_DEPARTING


def test_unknown_direction_is_an_observation_at_the_door_with_biz_step_other() -> None:
    object_event, _ = events(run_pass("unknown"))
    assert object_event.action == events_pb2.ACTION_OBSERVE
    assert object_event.biz_step == events_pb2.BIZ_STEP_OTHER
    assert object_event.disposition == events_pb2.DISPOSITION_UNSPECIFIED
    assert object_event.read_point.id == object_event.biz_location == "urn:epc:id:sgln:0614141.00004.0"
    assert "direction:unknown" in object_event.lineage.rules_applied
    assert not any(rule.startswith("read_point:") for rule in object_event.lineage.rules_applied)


def test_event_time_is_the_end_of_the_pass_with_the_site_offset() -> None:
    winter, summer = run_pass("inbound", WINTER), run_pass("inbound", SUMMER)
    for portal_pass, offset in ((winter, 60), (summer, 120)):
        (object_event, _) = events(portal_pass)
        assert object_event.event_time.ToDatetime(tzinfo=UTC) == portal_pass.ended_at
        assert object_event.event_time_offset_minutes == offset
    assert winter.ended_at == WINTER + timedelta(milliseconds=802)


def test_lineage_digest_covers_the_payloads_of_the_pass() -> None:
    portal_pass = run_pass("inbound")
    payloads = sorted(f"{offset:064x}" for offset in (0, 100, 700, 800))
    assert portal_pass.raw_sha256 == hashlib.sha256("\n".join(payloads).encode()).hexdigest()
    assert events(portal_pass)[0].lineage.raw_sha256 == portal_pass.raw_sha256


def test_every_event_passes_the_cloud_contract() -> None:
    seq = 0
    directions: tuple[Literal["inbound", "outbound", "unknown"], ...] = ("inbound", "outbound", "unknown")
    for direction in directions:
        for event in events(run_pass(direction)):
            seq += 1
            assert validate_event(as_stored(event, seq), GATEWAY) is None, (direction, event)


def test_a_pass_without_objects_makes_no_events() -> None:
    engine = PortalEngine([PORTAL], READ_POINTS, GATEWAY, AMSTERDAM)
    engine.feed_tag(TagRead("reader-4a", OUTSIDE, CASES[0], WINTER, -50.0))  # one read: a stray
    (portal_pass,) = engine.advance(WINTER + timedelta(minutes=1))
    assert portal_pass.objects == () and portal_pass.suppressed_count("reads_min") == 1
    assert events(portal_pass) == []
    assert engine.events_for(portal_pass, "zebra_iot") == []
