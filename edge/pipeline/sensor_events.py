"""Climate readings → sensor events, after a deadband and a minimum interval.

A sensor polled every few seconds would flood the outbox with identical numbers. A reading becomes an
event when it moved by at least the deadband since the last event of that device and measurement and
the minimum interval has passed, or when `interval_ms_max` passed without an event (a heartbeat, so the
cloud can tell a steady sensor from a dead one). Events are EPCIS ObjectEvents with no objects,
biz_step `sensor_reporting` and a sensorReport, in the SENSOR class: the first the outbox sheds under
disk pressure.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import datetime

from tallyport.v1 import events_pb2

from edge.config import ReadPointConfig
from edge.pipeline.reads import SensorReading
from edge.pipeline.scan_events import offset_minutes
from edge.pipeline.sensor_policy import SensorPolicy


@dataclass
class _Last:
    value: float
    at: datetime


class SensorEventFilter:
    """Decides, per (device, measurement), which readings become events."""

    def __init__(self, policy: SensorPolicy) -> None:
        self._policy = policy
        self._last: dict[tuple[str, str], _Last] = {}
        self.readings_total = 0
        self.suppressed_total = 0

    def admit(self, reading: SensorReading) -> bool:
        """Whether `reading` is worth an event; call `remember` once that event is committed."""
        self.readings_total += 1
        key = (reading.device_id, reading.measurement)
        last = self._last.get(key)
        if last is not None:
            elapsed_ms = (reading.seen_at - last.at).total_seconds() * 1000
            moved = abs(reading.value - last.value) >= self._policy.deadband(reading.measurement)
            # A reading dated before the last event (a sensor's clock jumped back) restarts the clock
            # instead of silencing the device until its clock catches up.
            due = elapsed_ms >= self._policy.interval_ms_max or elapsed_ms < 0
            if not due and (not moved or elapsed_ms < self._policy.interval_ms_min):
                self.suppressed_total += 1
                return False
        return True

    def remember(self, reading: SensorReading) -> None:
        """The reading's event is stored: later readings are measured against it. Only after the commit,
        so that a sample whose commit failed is not suppressed when its source sends it again."""
        self._last[(reading.device_id, reading.measurement)] = _Last(reading.value, reading.seen_at)


def reading_to_event(
    reading: SensorReading,
    *,
    gateway_id: str,
    driver: str,
    read_point: ReadPointConfig,
    zone: zoneinfo.ZoneInfo,
) -> events_pb2.Event:
    local_time = reading.seen_at.astimezone(zone)
    report = events_pb2.SensorReport(
        type=reading.measurement, value=reading.value, uom=reading.uom, device_id=reading.device_id
    )
    report.time.FromDatetime(reading.seen_at)
    event = events_pb2.Event(
        gateway_id=gateway_id,
        type=events_pb2.EVENT_TYPE_OBJECT,
        event_time_offset_minutes=offset_minutes(local_time),
        read_point=events_pb2.ReadPoint(id=read_point.id, device_id=reading.device_id),
        biz_location=read_point.biz_location,
        action=events_pb2.ACTION_OBSERVE,
        biz_step=events_pb2.BIZ_STEP_SENSOR_REPORTING,
        event_class=events_pb2.EVENT_CLASS_SENSOR,
        sensor_reports=[report],
        lineage=events_pb2.Lineage(
            driver=driver,
            raw_sha256=reading.raw_sha256,
            rules_applied=["sensor.deadband", f"read_point:{read_point.name}"],
        ),
    )
    event.event_time.FromDatetime(reading.seen_at)
    return event
