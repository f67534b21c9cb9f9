"""Helpers for the exception tests: a clock the test moves, a server config with inline rules, master data, events."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cloud_testkit import BASE_TIME_S, GATEWAY, gtin, make_event
from google.protobuf.timestamp_pb2 import Timestamp
from tallyport.v1 import events_pb2

from cloud.config import CloudConfig
from cloud.exceptions import store as repo
from cloud.exceptions.engine import ExceptionEngine
from cloud.exceptions.models import ExceptionRecord
from cloud.masterdata.models import ConditionRange, CustomerTier, Location, MasterData, Sku

MICROS = 1_000_000
SITE = "urn:tallyport:loc:dc1"
STAGING = "urn:tallyport:loc:dc1:staging"
DOCK = "urn:tallyport:loc:dc1:dock-4"  # cloud_testkit.DOCK: a door inside the staging zone
STORAGE = "urn:tallyport:loc:dc1:aisle-7"  # cloud_testkit.STORAGE
PICK = "urn:tallyport:loc:dc1:pick-1"
COLD_ROOM = "urn:tallyport:loc:dc1:cold-room"
DOOR_OUT = "urn:tallyport:loc:dc1:door-b"
RECEIVING = "urn:tallyport:loc:dc1:receiving"
RETURNS = "urn:tallyport:loc:dc1:returns"

GTIN_CHEAP = gtin("0950110153001")
GTIN_DEAR = gtin("0950110153002")
GTIN_CHILLED = gtin("0950110153003")
GTIN_MID = gtin("0950110153004")


class ManualClock:
    """The cloud's clock in a test: microseconds since the epoch, moved only by the test."""

    def __init__(self, seconds: float = BASE_TIME_S + 1000) -> None:
        self.now_us = round(seconds * MICROS)

    def __call__(self) -> int:
        return self.now_us

    def set(self, seconds: float) -> None:
        self.now_us = round(seconds * MICROS)

    def advance(self, seconds: float) -> None:
        self.now_us += round(seconds * MICROS)


def config_with_rules(
    store: Mapping[str, Any],
    rules: Sequence[Mapping[str, Any]],
    defaults: Mapping[str, Any] | None = None,
    **section: Any,
) -> CloudConfig:
    """A config on port 0 with inline exception rules; the clock loop effectively off (tests call sweep())."""
    exceptions: dict[str, Any] = {
        "sweep_interval_ms": 3_600_000,
        "commit_delay_ms": 60_000,
        "rule": [dict(rule) for rule in rules],
        **section,
    }
    if defaults is not None:
        exceptions["defaults"] = dict(defaults)
    return CloudConfig.model_validate(
        {
            "server": {"listen": "127.0.0.1:0", "shutdown_grace_ms": 1000},
            "store": dict(store),
            "exceptions": exceptions,
        }
    )


def site_locations() -> list[Location]:
    return [
        Location(SITE, "DC1", "site", location_type="distribution_center"),
        Location(STAGING, "Dock staging", "zone", SITE, "dock_staging"),
        Location(DOCK, "Dock 4", "door", STAGING, "dock_door"),
        Location(STORAGE, "Aisle 7", "zone", SITE, "reserve"),
        Location(PICK, "Pick face 1", "zone", SITE, "forward_pick", customer_tier="strategic"),
        Location(COLD_ROOM, "Cold room", "zone", SITE, "cold_storage"),
        Location(DOOR_OUT, "Door B", "zone", SITE, "shipping"),
        Location(RECEIVING, "Receiving", "zone", SITE, "receiving"),
        Location(RETURNS, "Returns", "zone", SITE, "returns"),
    ]


def site_skus() -> list[Sku]:
    return [
        Sku(GTIN_CHEAP, "Cheap widget", 1.0, abc_class="A", customer_tier="strategic", annual_usage_units=1000),
        Sku(GTIN_DEAR, "Dear widget", 50.0, abc_class="A", annual_usage_units=100),
        Sku(GTIN_MID, "Mid widget", 20.0, abc_class="A", customer_tier="strategic", annual_usage_units=10),
        Sku(
            GTIN_CHILLED,
            "Vaccine box",
            120.0,
            condition=ConditionRange(temperature_min_c=2.0, temperature_max_c=8.0),
            abc_class="B",
            annual_usage_units=5,
        ),
    ]


def site_tiers() -> list[CustomerTier]:
    return [CustomerTier("strategic", 10.0, "strategic accounts")]


def site_master() -> MasterData:
    return MasterData.of(site_skus(), site_locations(), site_tiers())


async def load_site(server: Any) -> None:
    """The test site's master data into a running server, through its repository."""
    await server.masterdata.upsert_tiers(site_tiers())
    await server.masterdata.upsert_locations(site_locations())
    await server.masterdata.upsert_skus(site_skus())


def sensor_event(
    seq: int,
    value: float,
    time_s: float,
    *,
    location: str = COLD_ROOM,
    measurement: str = "Temperature",
    uom: str = "CEL",
    device_id: str = "probe-1",
    gateway_id: str = GATEWAY,
) -> events_pb2.Event:
    """A SENSOR event as the edge's deadband emits it: one report, timed by the sensor."""
    event = make_event(seq, gateway_id=gateway_id, time_s=int(time_s), biz_location=location, objects=[])
    event.biz_step = events_pb2.BIZ_STEP_SENSOR_REPORTING
    event.event_class = events_pb2.EVENT_CLASS_SENSOR
    seconds, fraction = divmod(time_s, 1)
    event.sensor_reports.append(
        events_pb2.SensorReport(
            type=measurement,
            value=value,
            uom=uom,
            device_id=device_id,
            time=Timestamp(seconds=int(seconds), nanos=round(fraction * 1e9)),
        )
    )
    return event


def quantity(gtin_14: str, amount: float) -> events_pb2.QuantityElement:
    return events_pb2.QuantityElement(gtin=gtin_14, quantity=amount)


async def unresolved(engine: ExceptionEngine, rule: str = "") -> list[ExceptionRecord]:
    """Every unresolved exception (of one rule), by priority."""
    return await engine.list_exceptions(repo.ExceptionFilter(rule=rule), 1000)


async def all_of_rule(engine: ExceptionEngine, rule: str) -> list[ExceptionRecord]:
    """Every exception of a rule, resolved ones too."""
    states = ("open", "acknowledged", "cleared", "shelved", "resolved")
    return await engine.list_exceptions(repo.ExceptionFilter(states=states, rule=rule), 1000)
