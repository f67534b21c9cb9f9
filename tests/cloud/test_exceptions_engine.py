"""The engine where it meets the rest of the aggregator: the ingest post-commit hook (new events
only, a failing hook never fails a batch), the shipped demo rules with the demo master data, on-
and off-delays (SQLite and PostgreSQL), and the sensor readings the excursion rule keeps.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from cloud_testkit import BASE_TIME_S, DOCK, GTIN_A, Uplink, item, make_event
from exceptions_testkit import (
    COLD_ROOM,
    GTIN_CHEAP,
    PICK,
    ManualClock,
    all_of_rule,
    config_with_rules,
    load_site,
    quantity,
    sensor_event,
    unresolved,
)
from grpc import aio
from tallyport.v1 import events_pb2

from cloud.config import CloudConfig
from cloud.exceptions.engine import sensor_readings
from cloud.exceptions.rules.base import SensorReading
from cloud.exceptions.rules.excursion import excursion_start
from cloud.masterdata.models import ConditionRange
from cloud.server import CloudServer

REPO_ROOT = Path(__file__).resolve().parents[2]
T = BASE_TIME_S + 1000


SQLITE_ONLY = pytest.mark.parametrize("store_backend", ["sqlite"])  # the store is not their subject


def config(store_section: dict[str, Any], **exceptions: Any) -> CloudConfig:
    return CloudConfig.model_validate(
        {
            "server": {"listen": "127.0.0.1:0", "shutdown_grace_ms": 1000},
            "store": store_section,
            "exceptions": {"sweep_interval_ms": 3_600_000, "commit_delay_ms": 60_000, **exceptions},
        }
    )


@SQLITE_ONLY
async def test_the_hook_gets_each_new_event_once_and_its_failure_never_fails_a_batch(
    store_section: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[list[int]] = []

    async def hook(events: Sequence[events_pb2.Event]) -> None:
        calls.append([event.seq for event in events])
        if len(calls) == 2:
            raise RuntimeError("a rule blew up")

    async with CloudServer(config(store_section), clock=ManualClock(T)) as server:
        assert server._ingest is not None
        server._ingest._on_commit = hook  # the hook CloudServer wires, replaced to watch it
        async with aio.insecure_channel(server.target) as channel, Uplink(channel) as up:
            await up.hello()
            first = [make_event(seq, time_s=T) for seq in (1, 2)]
            assert (await up.send(1, first)).accepted == 2
            resent = await up.send(2, first)  # the edge resends what it had no ack for: duplicates
            assert (resent.accepted, resent.duplicates) == (0, 2)
            with caplog.at_level(logging.ERROR, logger="cloud.ingest.service"):
                failed = await up.send(3, [make_event(3, time_s=T)])  # the hook raises on this one
            assert (failed.accepted, failed.committed_through_seq) == (1, 3)
            assert (await up.send(4, [make_event(4, time_s=T)])).accepted == 1  # the stream lives on
    assert calls == [[1, 2], [3], [4]]
    assert "post-commit hook failed; the batch stays committed" in caplog.text


@SQLITE_ONLY
async def test_the_demo_rules_with_the_demo_master_data_show_dwell_and_excursion(
    store_section: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO_ROOT)  # the demo names its files relative to the repository
    demo = CloudConfig.model_validate(
        {
            **config(store_section).model_dump(by_alias=True, exclude={"exceptions"}),
            "masterdata": {"files": ["deploy/demo/masterdata.toml"]},
            "exceptions": {"rules_file": "deploy/demo/exception-rules.toml", "sweep_interval_ms": 3_600_000},
        }
    )
    clock = ManualClock(T)
    async with CloudServer(demo, clock=clock) as server:
        async with aio.insecure_channel(server.target) as channel, Uplink(channel) as up:
            await up.hello()
            case = item(GTIN_A, "4242")  # 09501101530003: a 2..8 °C SKU in the demo master data
            received = make_event(1, time_s=T, biz_location=DOCK, objects=[case])
            ambient = [
                sensor_event(2, 21.5, T, location=DOCK, device_id="dock-ambient-th-3"),
                sensor_event(3, 22.0, T + 5, location=DOCK, device_id="dock-ambient-th-3"),
            ]
            await up.send(1, [received, *ambient])
        clock.set(T + 35)
        await server.exceptions.sweep()
        found = {record.rule: record for record in await unresolved(server.exceptions)}
    assert {"dwell", "excursion"} <= set(found)
    assert found["dwell"].subject == f"{GTIN_A}@{DOCK}" and found["dwell"].owner_role == "dock_supervisor"
    assert case.id in found["dwell"].details
    assert found["excursion"].owner_role == "quality" and "outside 2..8 °C" in found["excursion"].details


async def test_on_and_off_delays_hold_back_raising_and_clearing(store_section: dict[str, Any]) -> None:
    rule = {"kind": "stockout", "gtin": GTIN_CHEAP, "location": PICK, "min_on_hand": 3}
    clock = ManualClock(T)
    config = config_with_rules(store_section, [rule], {"on_delay_s": 10, "off_delay_s": 10})
    async with CloudServer(config, clock=clock) as server:
        await load_site(server)

        async def sweep(at_s: float) -> list[str]:
            clock.set(at_s)
            await server.exceptions.sweep()
            return [record.state for record in await all_of_rule(server.exceptions, "stockout")]

        def stock(seq: int, action: int) -> events_pb2.Event:
            return make_event(seq, time_s=T, action=action, biz_location=PICK, quantities=[quantity(GTIN_CHEAP, 5)])

        async with aio.insecure_channel(server.target) as channel, Uplink(channel) as up:
            await up.hello()
            assert await sweep(T) == []  # empty shelf: the on-delay starts
            assert await sweep(T + 9) == []
            await up.send(1, [stock(1, events_pb2.ACTION_ADD)])  # refilled before the delay ran out
            assert await sweep(T + 9.5) == []
            await up.send(2, [stock(2, events_pb2.ACTION_DELETE)])  # empty again: the delay starts over
            assert await sweep(T + 12) == []
            assert await sweep(T + 21) == []
            assert await sweep(T + 22) == ["open"]
            await up.send(3, [stock(3, events_pb2.ACTION_ADD)])
            assert await sweep(T + 30) == ["open"]  # normal again: the off-delay starts
            assert await sweep(T + 39) == ["open"]
            assert await sweep(T + 40) == ["cleared"]


def test_sensor_readings_are_normalised_and_unknown_units_skipped() -> None:
    event = sensor_event(1, 46.4, T, uom="FAH")
    event.sensor_reports.extend(
        [
            events_pb2.SensorReport(type="RelativeHumidity", value=55.0, uom="P1", device_id="probe-2"),
            events_pb2.SensorReport(type="Temperature", value=1.0, uom="XYZ", device_id="probe-3"),
            events_pb2.SensorReport(type="Illuminance", value=300.0, uom="LUX", device_id="probe-4"),
        ]
    )
    readings = sensor_readings(event)
    assert [(r.measurement, round(r.value, 6), r.device_id) for r in readings] == [
        ("temperature", 8.0, "probe-1"),
        ("humidity", 55.0, "probe-2"),
    ]
    assert readings[0].reading_time_us == T * 1_000_000  # the sensor's time
    assert readings[1].reading_time_us == T * 1_000_000  # no time of its own: the event's


def test_humidity_excursions_use_the_humidity_bounds() -> None:
    dry = ConditionRange(humidity_min_pct=30.0, humidity_max_pct=60.0)
    readings = [
        SensorReading(COLD_ROOM, "humidity", "p", T * 1_000_000, 50.0),
        SensorReading(COLD_ROOM, "humidity", "p", (T + 10) * 1_000_000, 65.0),
        SensorReading(COLD_ROOM, "humidity", "p", (T + 20) * 1_000_000, 70.0),
    ]
    found = excursion_start(readings, dry, "humidity")
    assert found is not None and found[0] == (T + 10) * 1_000_000 and found[1].value == 70.0
    assert excursion_start(readings[:1], dry, "humidity") is None
    assert excursion_start(readings, dry, "temperature") is None  # no temperature bound: never out of range
