"""Cancelling the bus owner always ends it, even when the cancel lands as a response arrives.

pymodbus 3.16 waits for each response with ``asyncio.wait_for``, which on Python 3.11 returns the response
and drops the cancellation when both happen in the same event-loop iteration. The bus then kept polling
after its consumer was gone, logged "output queue full" and never ended (a benchmark hung for 20 minutes).

The race is made deterministic, with the real pymodbus client and the real simulator: the client's
``trace_packet`` hook, which pymodbus calls with the response bytes just before it completes the response
future, cancels the task that is waiting for that response.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from edge.clock import SystemClock
from edge.drivers.modbus_bus import BusOutput, ModbusBus, ModbusBusConfig, load_profiles_for_bus
from edge.drivers.modbus_bus.link import ModbusClient, ModbusLink, TracePacket, make_client
from hw_sim.modbus import SensorBusSimulator, SimulatedSensor

PROFILES = Path(__file__).resolve().parents[3] / "firmware_config" / "modbus_profiles"


@pytest.fixture(autouse=True)
def _quiet_pymodbus() -> None:
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


class CancelOnResponse:
    """A client factory whose client cancels ``victim`` when the first response's bytes arrive."""

    def __init__(self) -> None:
        self.victim: asyncio.Task[object] | None = None
        self.cancels_total = 0

    def __call__(self, config: ModbusBusConfig, trace_packet: TracePacket) -> ModbusClient:
        def traced(sending: bool, data: bytes) -> bytes:
            if not sending and data and self.victim is not None and self.cancels_total == 0:
                self.cancels_total += 1
                self.victim.cancel()
            return trace_packet(sending, data)

        return make_client(config, traced)


@asynccontextmanager
async def one_sensor_bus() -> AsyncIterator[ModbusBusConfig]:
    simulator = SensorBusSimulator([SimulatedSensor(1, "xy-md02", 21.5, 40.0)], rng=random.Random(1))
    await simulator.start()
    try:
        yield ModbusBusConfig.model_validate(
            {
                "name": "cancel-bus",
                "transport": "rtu",
                "port": simulator.url,
                "request_timeout_ms": 1000,
                "devices": [{"name": "th-1", "device_id": 1, "profile": "xy-md02", "read_point": "rp"}],
            }
        )
    finally:
        await simulator.stop()


async def test_a_read_cancelled_as_its_response_arrives_is_cancelled() -> None:
    async with one_sensor_bus() as config:
        factory = CancelOnResponse()
        link = ModbusLink(config, client_factory=factory)
        await link.open()
        try:
            read = asyncio.create_task(link.read_registers(device_id=1, function_code=4, address=1, count=2))
            factory.victim = read
            await asyncio.wait([read])
        finally:
            link.close()
    assert factory.cancels_total == 1
    assert read.cancelled(), f"the cancel was lost; the read returned {read.result()}"


async def test_the_bus_ends_when_cancelled_as_a_response_arrives() -> None:
    async with one_sensor_bus() as config:
        factory = CancelOnResponse()
        bus = ModbusBus(
            config,
            load_profiles_for_bus(config, PROFILES),
            rng=random.Random(1),
            clock=SystemClock(),
            client_factory=factory,
        )
        output: asyncio.Queue[BusOutput] = asyncio.Queue(maxsize=4)
        polling = asyncio.create_task(bus.run(output))
        factory.victim = polling
        # Whichever comes first: the bus ending, or a reading from a bus that ignored its cancel.
        reading = asyncio.create_task(output.get())
        await asyncio.wait([polling, reading], return_when=asyncio.FIRST_COMPLETED)
        reading.cancel()
        if not polling.done():
            polling.cancel()  # the lost cancel, sent again so that the test ends
        await asyncio.gather(polling, reading, return_exceptions=True)
    assert factory.cancels_total == 1
    assert reading.cancelled(), f"the cancel was lost; the bus went on and put out {reading.result()}"
    assert polling.cancelled()
    assert bus.status.exchanges_total == 1
