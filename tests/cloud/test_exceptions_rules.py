"""Each exception rule against a real aggregator: a scenario that triggers it, repeats without
duplicating, and clears. Events go through the real ingest path (gRPC uplink, commit, projections,
post-commit hook); the clock is the test's; the sweep is called when the test moves time.
Runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from cloud_testkit import BASE_TIME_S, Uplink, item, make_event
from exceptions_testkit import (
    COLD_ROOM,
    DOCK,
    DOOR_OUT,
    GTIN_CHEAP,
    GTIN_CHILLED,
    GTIN_MID,
    PICK,
    RECEIVING,
    RETURNS,
    STORAGE,
    ManualClock,
    all_of_rule,
    config_with_rules,
    load_site,
    quantity,
    sensor_event,
    site_skus,
)
from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio
from tallyport.v1 import events_pb2, ingest_pb2

from cloud.errors import StoreError
from cloud.exceptions import engine as engine_module
from cloud.exceptions import store as repo
from cloud.exceptions.models import ExceptionRecord
from cloud.masterdata.models import Sku
from cloud.server import CloudServer

T = BASE_TIME_S + 1000  # the clock's start; events are timed around it
RULES: list[dict[str, Any]] = [
    {"kind": "stockout", "gtin": GTIN_CHEAP, "location": PICK, "min_on_hand": 3, "severity": "major"},
    {"kind": "excess", "location": PICK, "max_on_hand": 4},
    {"kind": "dwell", "location_type": "dock_staging", "dwell_max_s": 20},
    {"kind": "excursion", "tolerance_s": 30},
    {"kind": "unexpected_movement", "grace_s": 30},
    {"kind": "stale_feed", "freshness_sla_s": 60},
    {"kind": "seq_gap", "window_s": 3600},
    {"kind": "gateway_alarm"},
    {"kind": "tier_transition", "margin": 0.02},
]


@dataclass
class Site:
    server: CloudServer
    clock: ManualClock
    channel: aio.Channel

    async def sweep(self, at_s: float) -> None:
        self.clock.set(at_s)
        await self.server.exceptions.sweep()

    async def exceptions(self, rule: str) -> list[ExceptionRecord]:
        return await all_of_rule(self.server.exceptions, rule)

    async def trail(self, exception_id: str) -> list[tuple[str, str | None, str]]:
        _, transitions = await self.server.exceptions.get(exception_id)
        return [(t.action, t.from_state, t.to_state) for t in transitions]


@pytest.fixture
async def site(store_section: dict[str, Any]) -> AsyncIterator[Site]:
    clock = ManualClock(T)
    async with CloudServer(config_with_rules(store_section, RULES), clock=clock) as server:
        await load_site(server)
        async with aio.insecure_channel(server.target) as channel:
            yield Site(server, clock, channel)


def only(records: list[ExceptionRecord]) -> ExceptionRecord:
    assert len(records) == 1, records
    return records[0]


async def test_stockout_below_minimum_repeats_then_clears(site: Site) -> None:
    await site.sweep(T)
    raised = only(await site.exceptions("stockout"))
    assert (raised.subject, raised.state, raised.severity) == (f"{GTIN_CHEAP}@{PICK}", "open", "critical")
    assert (raised.quantity_at_stake, raised.value_at_stake) == (3.0, 3.0)  # out of stock: a step above major
    async with Uplink(site.channel) as up:
        await up.hello()
        add = events_pb2.ACTION_ADD
        await up.send(1, [make_event(1, time_s=T, action=add, biz_location=PICK, quantities=[quantity(GTIN_CHEAP, 1)])])
        await site.sweep(T + 5)
        repeat = only(await site.exceptions("stockout"))
        assert repeat.exception_id == raised.exception_id and repeat.active
        assert repeat.quantity_at_stake == 2.0 and "below minimum" in repeat.details
        await up.send(2, [make_event(2, time_s=T, action=add, biz_location=PICK, quantities=[quantity(GTIN_CHEAP, 5)])])
    await site.sweep(T + 10)
    cleared = only(await site.exceptions("stockout"))
    assert (cleared.exception_id, cleared.state, cleared.active) == (raised.exception_id, "cleared", False)
    assert await site.trail(raised.exception_id) == [("raise", None, "open"), ("clear", "open", "cleared")]


async def test_excess_above_maximum_repeats_then_clears(site: Site) -> None:
    async with Uplink(site.channel) as up:
        await up.hello()
        add, delete = events_pb2.ACTION_ADD, events_pb2.ACTION_DELETE
        await up.send(1, [make_event(1, time_s=T, action=add, biz_location=PICK, quantities=[quantity(GTIN_CHEAP, 6)])])
        await site.sweep(T + 1)
        raised = only(await site.exceptions("excess"))
        assert (raised.state, raised.quantity_at_stake, raised.location) == ("open", 2.0, PICK)
        await up.send(2, [make_event(2, time_s=T, action=add, biz_location=PICK, quantities=[quantity(GTIN_CHEAP, 1)])])
        await site.sweep(T + 2)
        repeat = only(await site.exceptions("excess"))
        assert (repeat.exception_id, repeat.quantity_at_stake, repeat.occurrences) == (raised.exception_id, 3.0, 1)
        await up.send(
            3, [make_event(3, time_s=T, action=delete, biz_location=PICK, quantities=[quantity(GTIN_CHEAP, 5)])]
        )
    await site.sweep(T + 3)
    assert only(await site.exceptions("excess")).state == "cleared"


async def test_dwell_in_dock_staging_repeats_then_clears_when_the_item_moves(site: Site) -> None:
    pallet = item(GTIN_CHEAP, "5001")
    async with Uplink(site.channel) as up:
        await up.hello()
        await up.send(1, [make_event(1, time_s=T, biz_location=DOCK, objects=[pallet])])
        await site.sweep(T + 10)
        assert await site.exceptions("dwell") == []
        await site.sweep(T + 25)
        raised = only(await site.exceptions("dwell"))
        assert (raised.subject, raised.location, raised.state) == (f"{GTIN_CHEAP}@{DOCK}", DOCK, "open")
        assert f"1 x GTIN {GTIN_CHEAP}" in raised.details and f"({pallet.id}) for 25 s (maximum 20 s)" in raised.details
        await site.sweep(T + 40)
        assert only(await site.exceptions("dwell")).exception_id == raised.exception_id
        storing = events_pb2.BIZ_STEP_STORING
        await up.send(2, [make_event(2, time_s=T + 45, biz_step=storing, biz_location=STORAGE, objects=[pallet])])
    await site.sweep(T + 46)
    assert only(await site.exceptions("dwell")).state == "cleared"


async def test_items_dwelling_together_are_one_exception_per_gtin_and_place(site: Site) -> None:
    cases = [item(GTIN_CHEAP, f"60{n}") for n in range(5)]
    other = item(GTIN_MID, "6100")
    async with Uplink(site.channel) as up:
        await up.hello()
        await up.send(1, [make_event(1, time_s=T, biz_location=DOCK, objects=cases[:3])])
        await up.send(2, [make_event(2, time_s=T + 2, biz_location=DOCK, objects=[*cases[3:], other])])
    await site.sweep(T + 25)
    raised = {record.subject: record for record in await site.exceptions("dwell")}
    assert set(raised) == {f"{GTIN_CHEAP}@{DOCK}", f"{GTIN_MID}@{DOCK}"}
    cheap = raised[f"{GTIN_CHEAP}@{DOCK}"]
    assert cheap.quantity_at_stake == 5.0 and "5 x GTIN" in cheap.details and "and 2 more" in cheap.details
    assert raised[f"{GTIN_MID}@{DOCK}"].quantity_at_stake == 1.0


async def test_a_reader_seeing_a_standing_pallet_again_does_not_restart_its_dwell(site: Site) -> None:
    pallet = item(GTIN_CHEAP, "5003")
    async with Uplink(site.channel) as up:
        await up.hello()
        await up.send(1, [make_event(1, time_s=T, biz_location=DOCK, objects=[pallet])])
        await up.send(2, [make_event(2, time_s=T + 15, biz_location=DOCK, objects=[pallet])])  # the zone reader again
    await site.sweep(T + 25)
    assert "for 25 s" in only(await site.exceptions("dwell")).details


async def test_dwell_is_timed_on_the_cloud_clock_when_a_gateway_clock_runs_behind(site: Site) -> None:
    pallet = item(GTIN_CHEAP, "5002")
    late_s = 600  # the gateway's clock is ten minutes behind the cloud's
    async with Uplink(site.channel) as up:
        hello = ingest_pb2.Hello(
            gateway_id="gw-dock4",
            outbox_id="outbox-1",
            agent_version="test/1",
            gateway_time=Timestamp(seconds=T - late_s),
        )
        await up.call.write(ingest_pb2.GatewayMessage(hello=hello))
        assert (await up.call.read()).WhichOneof("body") == "welcome"
        await up.send(1, [make_event(1, time_s=T - late_s, biz_location=DOCK, objects=[pallet])])
    await site.sweep(T + 10)  # 610 s by the gateway's stamp, 10 s in fact
    assert await site.exceptions("dwell") == []
    await site.sweep(T + 25)
    assert "for 25 s" in only(await site.exceptions("dwell")).details


async def test_excursion_uses_reading_times_repeats_then_clears(site: Site) -> None:
    box = item(GTIN_CHILLED, "7001")
    async with Uplink(site.channel) as up:
        await up.hello()
        await up.send(
            1,
            [
                make_event(1, time_s=T, biz_location=COLD_ROOM, objects=[box]),
                sensor_event(2, 5.0, T + 1),
                sensor_event(3, 9.5, T + 10),  # out of 2..8 °C from here
                sensor_event(4, 10.0, T + 30),
            ],
        )
        await site.sweep(T + 35)  # 25 s out of range: within the 30 s tolerance
        assert await site.exceptions("excursion") == []
        await site.sweep(T + 45)
        raised = only(await site.exceptions("excursion"))
        assert (raised.subject, raised.gtin, raised.location) == (
            f"temperature:{GTIN_CHILLED}@{COLD_ROOM}",
            GTIN_CHILLED,
            COLD_ROOM,
        )
        assert (raised.quantity_at_stake, raised.value_at_stake, raised.priority) == (1.0, 120.0, 121.0 * 4)
        assert "for 35 s (tolerance 30 s)" in raised.details
        await up.send(2, [sensor_event(5, 11.0, T + 50)])
        await site.sweep(T + 55)
        assert only(await site.exceptions("excursion")).exception_id == raised.exception_id
        await up.send(3, [sensor_event(6, 6.0, T + 60)])
    await site.sweep(T + 61)
    cleared = only(await site.exceptions("excursion"))
    assert (cleared.exception_id, cleared.state) == (raised.exception_id, "cleared")


async def test_a_late_backlog_of_readings_is_judged_by_when_they_were_measured(site: Site) -> None:
    box = item(GTIN_CHILLED, "7002")
    # The readings arrive long after they were taken (an outage): 20 s out of range by their own
    # times, although they all arrive at once 300 s later.
    async with Uplink(site.channel) as up:
        await up.hello()
        readings = [sensor_event(2, 9.0, T + 10), sensor_event(3, 9.2, T + 20), sensor_event(4, 5.0, T + 30)]
        await up.send(1, [make_event(1, time_s=T, biz_location=COLD_ROOM, objects=[box]), *readings])
    await site.sweep(T + 300)
    assert await site.exceptions("excursion") == []


@pytest.mark.parametrize("late_s", [600, -600], ids=["gateway-clock-behind", "gateway-clock-ahead"])
async def test_excursion_is_timed_on_the_cloud_clock_when_a_gateway_clock_is_skewed(site: Site, late_s: int) -> None:
    box = item(GTIN_CHILLED, "7101")
    async with Uplink(site.channel) as up:
        hello = ingest_pb2.Hello(
            gateway_id="gw-dock4",
            outbox_id="outbox-1",
            agent_version="test/1",
            gateway_time=Timestamp(seconds=T - late_s),
        )
        await up.call.write(ingest_pb2.GatewayMessage(hello=hello))
        assert (await up.call.read()).WhichOneof("body") == "welcome"
        g = T - late_s  # the gateway's clock when the cloud's reads T
        await up.send(
            1,
            [
                make_event(1, time_s=g, biz_location=COLD_ROOM, objects=[box]),
                sensor_event(2, 5.0, g + 1),
                sensor_event(3, 9.5, g + 10),  # out of 2..8 °C from here
                sensor_event(4, 10.0, g + 30),
            ],
        )
    await site.sweep(T + 35)  # 25 s out of range in fact: within the 30 s tolerance
    assert await site.exceptions("excursion") == []
    await site.sweep(T + 45)
    assert "for 35 s (tolerance 30 s)" in only(await site.exceptions("excursion")).details


async def test_unexpected_movement_after_shipping_repeats_then_clears_on_receipt(site: Site) -> None:
    pallet = item(GTIN_CHEAP, "6001")
    departing, storing = events_pb2.BIZ_STEP_DEPARTING, events_pb2.BIZ_STEP_STORING
    in_transit = events_pb2.DISPOSITION_IN_TRANSIT
    async with Uplink(site.channel) as up:
        await up.hello()
        shipped = make_event(
            1, time_s=T, biz_step=departing, disposition=in_transit, biz_location=DOOR_OUT, objects=[pallet]
        )
        reread = make_event(
            2, time_s=T + 10, biz_step=events_pb2.BIZ_STEP_UNSPECIFIED, biz_location=DOOR_OUT, objects=[pallet]
        )
        await up.send(1, [shipped, reread])  # the portal seeing it leave, within grace_s
        assert await site.exceptions("unexpected_movement") == []
        await up.send(2, [make_event(3, time_s=T + 100, biz_step=storing, biz_location=STORAGE, objects=[pallet])])
        raised = only(await site.exceptions("unexpected_movement"))  # judged at commit, no sweep needed
        assert (raised.subject, raised.state, raised.occurrences) == (pallet.id, "open", 1)
        assert "after it was shipped from Door B" in raised.details
        await up.send(3, [make_event(4, time_s=T + 200, biz_step=storing, biz_location=STORAGE, objects=[pallet])])
        repeat = only(await site.exceptions("unexpected_movement"))
        assert (repeat.exception_id, repeat.occurrences) == (raised.exception_id, 2)
        receiving = events_pb2.BIZ_STEP_RECEIVING
        await up.send(4, [make_event(5, time_s=T + 300, biz_step=receiving, biz_location=RECEIVING, objects=[pallet])])
    cleared = only(await site.exceptions("unexpected_movement"))
    assert (cleared.exception_id, cleared.state) == (raised.exception_id, "cleared")
    assert await site.trail(raised.exception_id) == [("raise", None, "open"), ("clear", "open", "cleared")]


async def test_a_recalled_item_passing_an_outbound_door_is_unexpected(site: Site) -> None:
    case = item(GTIN_CHEAP, "6002")
    async with Uplink(site.channel) as up:
        await up.hello()
        recall = make_event(
            1,
            time_s=T,
            biz_step=events_pb2.BIZ_STEP_INSPECTING,
            disposition=events_pb2.DISPOSITION_RECALLED,
            biz_location=STORAGE,
            objects=[case],
        )
        out = make_event(
            2,
            time_s=T + 50,
            biz_step=events_pb2.BIZ_STEP_DEPARTING,
            disposition=events_pb2.DISPOSITION_IN_TRANSIT,
            biz_location=DOOR_OUT,
            objects=[case],
        )
        await up.send(1, [recall, out])
        raised = only(await site.exceptions("unexpected_movement"))
        assert raised.severity == "critical"  # a recalled item leaving: one step above the rule's major
        assert "passed outbound Door B with disposition recalled" in raised.details
        back = make_event(
            3, time_s=T + 100, biz_step=events_pb2.BIZ_STEP_RECEIVING, biz_location=RETURNS, objects=[case]
        )
        await up.send(2, [back])
    assert only(await site.exceptions("unexpected_movement")).state == "cleared"


async def test_stale_feed_repeats_with_rising_severity_then_clears_on_contact(site: Site) -> None:
    async with Uplink(site.channel) as up:
        await up.hello()
        await up.send(1, [make_event(1, time_s=T)])
        await site.sweep(T + 30)
        assert await site.exceptions("stale_feed") == []
        await site.sweep(T + 90)
        raised = only(await site.exceptions("stale_feed"))
        assert (raised.subject, raised.severity) == ("gw-dock4", "major")
        await site.sweep(T + 300)  # silent for five times the SLA
        worse = only(await site.exceptions("stale_feed"))
        assert (worse.exception_id, worse.severity) == (raised.exception_id, "critical")
        site.clock.set(T + 310)
        await up.send(2, [make_event(2, time_s=T + 310)])
    await site.sweep(T + 311)
    assert only(await site.exceptions("stale_feed")).state == "cleared"
    assert await site.trail(raised.exception_id) == [
        ("raise", None, "open"),
        ("severity", "open", "open"),
        ("clear", "open", "cleared"),
    ]


async def test_seq_gap_repeats_on_a_new_gap_then_clears_after_its_window(site: Site) -> None:
    async with Uplink(site.channel) as up:
        await up.hello()
        await up.send(1, [make_event(seq, time_s=T) for seq in (1, 2, 3)])
        await up.send(2, [make_event(seq, time_s=T) for seq in (6, 7)])  # 4 and 5 never come
        await site.sweep(T + 1)
        raised = only(await site.exceptions("seq_gap"))
        assert (raised.subject, raised.quantity_at_stake) == ("gw-dock4", 2.0)
        await up.send(3, [make_event(10, time_s=T)])  # 8 and 9 lost too
        await site.sweep(T + 2)
        repeat = only(await site.exceptions("seq_gap"))
        assert (repeat.exception_id, repeat.quantity_at_stake) == (raised.exception_id, 4.0)
        assert "lost 4 events in 2 gap(s)" in repeat.details
    await site.sweep(T + 3700)
    assert only(await site.exceptions("seq_gap")).state == "cleared"


def alarm_status(message: str, active: bool = True) -> ingest_pb2.GatewayMessage:
    alarm = ingest_pb2.GatewayAlarm(
        code="outbox_near_cap",
        severity=ingest_pb2.ALARM_SEVERITY_MAJOR,
        message=message,
        raised_at=Timestamp(seconds=T),
        active=active,
    )
    return ingest_pb2.GatewayMessage(status=ingest_pb2.GatewayStatus(alarms=[alarm]))


async def test_gateway_alarm_repeats_then_clears_when_the_gateway_clears_it(site: Site) -> None:
    async with Uplink(site.channel) as up:
        await up.hello()
        await site.sweep(T)
        assert await site.exceptions("gateway_alarm") == []  # an empty table raises nothing
        # A status is never acked: the ack of the batch after it says the stream got that far.
        await up.call.write(alarm_status("outbox at 91 % of its cap"))
        await up.send(1, [make_event(1, time_s=T)])
        await site.sweep(T + 1)
        raised = only(await site.exceptions("gateway_alarm"))
        assert (raised.subject, raised.severity, raised.state) == ("gw-dock4:outbox_near_cap", "major", "open")
        await up.call.write(alarm_status("outbox at 93 % of its cap"))
        await up.send(2, [make_event(2, time_s=T)])
        await site.sweep(T + 2)
        repeat = only(await site.exceptions("gateway_alarm"))
        assert repeat.exception_id == raised.exception_id and "91 %" in repeat.details
        # Wording and last_seen alone are rewritten at most once a minute (no write per sweep).
        await site.sweep(T + 62)
        refreshed = only(await site.exceptions("gateway_alarm"))
        assert refreshed.exception_id == raised.exception_id and "93 %" in refreshed.details
        assert refreshed.last_seen_us == site.clock.now_us
        await up.call.write(alarm_status("outbox back to 40 %", active=False))
        await up.send(3, [make_event(3, time_s=T)])
    await site.sweep(T + 63)
    assert only(await site.exceptions("gateway_alarm")).state == "cleared"


async def test_a_failed_alarm_read_fails_the_sweep_and_keeps_the_acknowledged_alarm(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Uplink(site.channel) as up:
        await up.hello()
        await up.call.write(alarm_status("outbox at 91 % of its cap"))
        await up.send(1, [make_event(1, time_s=T)])
    await site.sweep(T + 1)
    raised = only(await site.exceptions("gateway_alarm"))
    await site.server.exceptions.acknowledge(raised.exception_id, "ann", "on it")

    async def unavailable(sql: object) -> list[object]:
        raise StoreError("read: no database connection within 5 s")

    monkeypatch.setattr(repo, "load_gateway_alarms", unavailable)
    with pytest.raises(StoreError, match="no database connection"):
        await site.sweep(T + 2)  # not read as "no alarms": that cleared it and lost the ack
    monkeypatch.undo()
    await site.sweep(T + 3)
    kept = only(await site.exceptions("gateway_alarm"))
    assert (kept.exception_id, kept.state) == (raised.exception_id, "acknowledged")
    assert await site.trail(raised.exception_id) == [("raise", None, "open"), ("acknowledge", "open", "acknowledged")]


async def test_a_truncated_on_hand_read_skips_the_on_hand_rules_for_that_sweep(
    site: Site, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with Uplink(site.channel) as up:
        await up.hello()
        add = events_pb2.ACTION_ADD
        await up.send(1, [make_event(1, time_s=T, action=add, biz_location=PICK, quantities=[quantity(GTIN_CHEAP, 6)])])
    await site.sweep(T)
    raised = only(await site.exceptions("excess"))
    assert await site.exceptions("stockout") == []
    # The one on-hand row is one too many: judged on what came back, the excess would clear and
    # the SKU would look out of stock.
    monkeypatch.setattr(engine_module, "ON_HAND_ROWS_MAX", 0)
    with caplog.at_level(logging.ERROR, logger="cloud.exceptions.engine"):
        await site.sweep(T + 5)
    kept = only(await site.exceptions("excess"))
    assert (kept.exception_id, kept.state, kept.active) == (raised.exception_id, "open", True)
    assert await site.exceptions("stockout") == []
    (logged,) = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert "too many on-hand rows" in logged.getMessage()
    assert logged.rules == ["excess", "excursion", "stockout"]  # type: ignore[attr-defined]
    monkeypatch.undo()
    await site.sweep(T + 10)
    assert only(await site.exceptions("excess")).exception_id == raised.exception_id
    assert await site.exceptions("stockout") == []


async def test_a_truncated_positions_read_skips_the_dwell_rule_for_that_sweep(
    site: Site, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pallet = item(GTIN_CHEAP, "5101")
    async with Uplink(site.channel) as up:
        await up.hello()
        await up.send(1, [make_event(1, time_s=T, biz_location=DOCK, objects=[pallet])])
    await site.sweep(T + 25)
    raised = only(await site.exceptions("dwell"))
    monkeypatch.setattr(engine_module, "POSITIONS_MAX", 0)  # the pallet standing there is one too many
    with caplog.at_level(logging.ERROR, logger="cloud.exceptions.engine"):
        await site.sweep(T + 30)
    kept = only(await site.exceptions("dwell"))  # not cleared for want of the rows past the limit
    assert (kept.exception_id, kept.state, kept.active) == (raised.exception_id, "open", True)
    (logged,) = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert "too many items at dwell places" in logged.getMessage()


async def test_tier_transition_repeats_then_clears_when_the_master_follows(site: Site) -> None:
    # Usage values: dear 5000, cheap 1000, chilled 600, mid 200 (of 6800). Mid ranks at 97 %:
    # class C, but the master says A.
    await site.sweep(T)
    raised = only(await site.exceptions("tier_transition"))
    assert (raised.subject, raised.severity) == (GTIN_MID, "minor")
    assert "ranks as class C now (master says A)" in raised.details
    await site.sweep(T + 10)
    assert only(await site.exceptions("tier_transition")).exception_id == raised.exception_id
    mid = next(sku for sku in site_skus() if sku.gtin == GTIN_MID)
    await site.server.masterdata.upsert_skus([Sku(**{**_fields(mid), "abc_class": "C"})])
    await site.sweep(T + 20)
    assert only(await site.exceptions("tier_transition")).state == "cleared"


def _fields(sku: Sku) -> dict[str, Any]:
    return {name: getattr(sku, name) for name in sku.__dataclass_fields__}


async def test_listing_by_rule_and_state_through_the_store(site: Site) -> None:
    await site.sweep(T)
    open_ones = await site.server.exceptions.list_exceptions(repo.ExceptionFilter(states=("open",)), 100)
    assert {record.rule for record in open_ones} == {"stockout", "tier_transition"}
    assert [record.priority for record in open_ones] == sorted((r.priority for r in open_ones), reverse=True)
