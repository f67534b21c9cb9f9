"""Sensor readings become events only past a deadband and a minimum interval, with a heartbeat."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta

from tallyport.v1 import events_pb2

from edge.config import ReadPointConfig
from edge.pipeline.reads import SensorReading
from edge.pipeline.sensor_events import SensorEventFilter, reading_to_event
from edge.pipeline.sensor_policy import SensorPolicy

T0 = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
POLICY = SensorPolicy(temperature_deadband_cel=0.5, interval_ms_min=10_000, interval_ms_max=60_000)


def _reading(seconds: float, value: float, measurement: str = "Temperature") -> SensorReading:
    uom = "CEL" if measurement == "Temperature" else "P1"
    return SensorReading("sht20-1", measurement, value, uom, T0 + timedelta(seconds=seconds))  # type: ignore[arg-type]


def _admit(gate: SensorEventFilter, reading: SensorReading) -> bool:
    """Admit and, as the intake does after a successful commit, remember."""
    admitted = gate.admit(reading)
    if admitted:
        gate.remember(reading)
    return admitted


def test_first_reading_passes_then_small_changes_are_suppressed() -> None:
    gate = SensorEventFilter(POLICY)
    admitted = [_admit(gate, _reading(s, v)) for s, v in [(0, 4.0), (15, 4.2), (30, 4.4), (45, 4.6)]]
    assert admitted == [True, False, False, True]  # 4.6 is 0.6 away from 4.0
    assert gate.suppressed_total == 2


def test_a_big_change_waits_for_the_minimum_interval() -> None:
    gate = SensorEventFilter(POLICY)
    assert _admit(gate, _reading(0, 4.0))
    assert not _admit(gate, _reading(5, 9.0))  # moved, but only 5 s later
    assert _admit(gate, _reading(11, 9.0))


def test_a_steady_sensor_still_reports_at_the_heartbeat_interval() -> None:
    gate = SensorEventFilter(POLICY)
    assert _admit(gate, _reading(0, 4.0))
    assert not _admit(gate, _reading(59, 4.0))
    assert _admit(gate, _reading(60, 4.0))


def test_measurements_and_devices_are_tracked_apart() -> None:
    gate = SensorEventFilter(POLICY)
    assert _admit(gate, _reading(0, 4.0))
    assert _admit(gate, _reading(1, 55.0, "RelativeHumidity"))


def test_the_event_is_an_epcis_sensor_report_in_the_sheddable_class() -> None:
    read_point = ReadPointConfig(
        name="chiller", id="urn:rp:chiller", biz_location="urn:loc:chiller", biz_step="sensor_reporting"
    )
    event = reading_to_event(
        _reading(0, -20.5),
        gateway_id="gw-1",
        driver="modbus_bus",
        read_point=read_point,
        zone=zoneinfo.ZoneInfo("Europe/Amsterdam"),
    )
    assert event.event_class == events_pb2.EVENT_CLASS_SENSOR
    assert event.biz_step == events_pb2.BIZ_STEP_SENSOR_REPORTING and event.action == events_pb2.ACTION_OBSERVE
    assert event.event_time_offset_minutes == 120  # Amsterdam in summer
    (report,) = event.sensor_reports
    assert (report.type, report.value, report.uom, report.device_id) == ("Temperature", -20.5, "CEL", "sht20-1")
    assert not event.objects and event.biz_location == "urn:loc:chiller"


def test_a_reading_whose_event_was_not_stored_is_admitted_again() -> None:
    gate = SensorEventFilter(POLICY)
    assert _admit(gate, _reading(0, 4.0))
    assert gate.admit(_reading(20, 9.0))  # admitted, but its commit failed: not remembered
    assert gate.admit(_reading(20, 9.0))  # the redelivered sample still becomes an event
