"""Climate sensors → events: Modbus bus outputs and MQTT sensor messages, through the deadband, into the outbox.

Faults and malformed payloads go to the quarantine with their bytes. An MQTT message is acknowledged only
after what it produced (events, quarantine rows) is committed; a reading the deadband drops produced
nothing by policy, so its message is acknowledged as handled. When the outbox is full and refuses events,
sensor samples are the ones to lose: they are counted as shed and the message is acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import zoneinfo
from collections.abc import Mapping, Sequence

from edge.config import ReadPointConfig
from edge.drivers.modbus_bus import ModbusBus, ModbusFault
from edge.drivers.mqtt_sensor import MqttSensorDriver
from edge.errors import OutboxFullError
from edge.outbox import Outbox, Rejected
from edge.pipeline.reads import SensorReading
from edge.pipeline.sensor_events import SensorEventFilter, reading_to_event

log = logging.getLogger(__name__)

BUS_OUTPUT_QUEUE_MAX = 1000


class SensorIntake:
    """Shared by every sensor source of the gateway, so one deadband state covers each device."""

    def __init__(self, outbox: Outbox, event_filter: SensorEventFilter, *, gateway_id: str, zone: zoneinfo.ZoneInfo):
        self._outbox = outbox
        self._filter = event_filter
        self._gateway_id = gateway_id
        self._zone = zone
        self.events_total = 0
        self.shed_total = 0

    async def _store(self, readings: Sequence[SensorReading], read_point: ReadPointConfig, driver: str) -> None:
        admitted = [reading for reading in readings if self._filter.admit(reading)]
        if not admitted:
            return
        events = [
            reading_to_event(
                reading, gateway_id=self._gateway_id, driver=driver, read_point=read_point, zone=self._zone
            )
            for reading in admitted
        ]
        try:
            await self._outbox.append_many(events)
        except OutboxFullError:
            # Sensor samples are what a full outbox gives up first: counted as shed, nothing remembered.
            self.shed_total += len(events)
            return
        self.events_total += len(events)
        for reading in admitted:
            self._filter.remember(reading)

    async def from_modbus(self, bus: ModbusBus, read_points: Mapping[str, ReadPointConfig]) -> None:
        """Run one bus and store what it reads; `read_points` maps each device name to its read point."""
        output: asyncio.Queue[SensorReading | ModbusFault] = asyncio.Queue(maxsize=BUS_OUTPUT_QUEUE_MAX)
        async with asyncio.TaskGroup() as group:
            group.create_task(bus.run(output))
            while True:
                item = await output.get()
                if isinstance(item, ModbusFault):
                    await self._outbox.quarantine(Rejected(item.device, item.reason_code, item.reason, item.raw))
                    continue
                await self._store([item], read_points[item.device_id], "modbus_bus")

    async def from_mqtt(self, driver: MqttSensorDriver, read_point: ReadPointConfig) -> None:
        async with driver:
            async for message in driver.messages():
                if message.rejects:
                    reason = "; ".join(message.rejects)
                    await self._outbox.quarantine(Rejected(message.source, "sensor_payload", reason, message.payload))
                await self._store(message.items, read_point, "mqtt_sensor")
                await driver.acknowledge(message.token)
