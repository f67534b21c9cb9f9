"""The bus owner against pymodbus's real servers: RTU frames over socket:// and Modbus TCP on 127.0.0.1.

Each simulated sensor holds a temperature no other sensor has, so a reading attributed to the wrong device
(a late answer taken for the next device's) would show up as a wrong value.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest

from edge.clock import SystemClock
from edge.drivers.modbus_bus import BusOutput, ModbusBus, ModbusBusConfig, ModbusFault, load_profiles_for_bus
from edge.pipeline.reads import SensorReading
from hw_sim.modbus import SensorBusSimulator, SimulatedSensor

PROFILES = Path(__file__).resolve().parents[3] / "firmware_config" / "modbus_profiles"
DRIVER_LOGGER = "edge.drivers.modbus_bus.driver"
PROFILE_OF_MODEL = {"xy-md02": "xy-md02", "kincony-sht30": "kincony-sht30"}


@pytest.fixture(autouse=True)
def _quiet_pymodbus() -> None:
    # pymodbus logs an ERROR for every unanswered request; the driver reports availability itself.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


def sensors(count: int, model: str = "xy-md02") -> list[SimulatedSensor]:
    return [SimulatedSensor(n, model, temperature_cel=10.0 + n, humidity_percent=40.0 + n) for n in range(1, count + 1)]  # type: ignore[arg-type]


def bus_config(simulator: SensorBusSimulator, devices: Sequence[SimulatedSensor], **overrides: Any) -> ModbusBusConfig:
    transport = "tcp" if simulator.transport == "tcp" else "rtu"
    endpoint: dict[str, Any] = (
        {"port": simulator.url} if transport == "rtu" else {"host": "127.0.0.1", "port_number": simulator.port}
    )
    data: dict[str, Any] = {
        "name": "test-bus",
        "transport": transport,
        **endpoint,
        "request_timeout_ms": 100,
        "retries_max": 2,
        "reconnect_delay_ms_initial": 50,
        "reconnect_delay_ms_max": 200,
        "devices": [
            {
                "name": f"th-{sensor.device_id}",
                "device_id": sensor.device_id,
                "profile": PROFILE_OF_MODEL[sensor.model],
                "poll_interval_ms": 200,
                "read_point": "rp",
            }
            for sensor in devices
        ],
    }
    return ModbusBusConfig.model_validate(data | overrides)


@dataclass
class Collected:
    items: list[BusOutput] = field(default_factory=list)

    def readings(self, device: str) -> list[SensorReading]:
        return [item for item in self.items if isinstance(item, SensorReading) and item.device_id == device]

    def faults(self, device: str | None = None) -> list[ModbusFault]:
        return [item for item in self.items if isinstance(item, ModbusFault) and device in (None, item.device)]

    def temperatures(self, device: str, since: float = 0.0) -> list[SensorReading]:
        return [r for r in self.readings(device) if r.measurement == "Temperature" and r.seen_at.timestamp() >= since]


@asynccontextmanager
async def running(config: ModbusBusConfig, seed: int = 1) -> AsyncIterator[tuple[ModbusBus, Collected]]:
    bus = ModbusBus(config, load_profiles_for_bus(config, PROFILES), rng=random.Random(seed), clock=SystemClock())
    output: asyncio.Queue[BusOutput] = asyncio.Queue(maxsize=64)
    collected = Collected()

    async def consume() -> None:
        while True:
            collected.items.append(await output.get())

    tasks = [asyncio.create_task(bus.run(output)), asyncio.create_task(consume())]
    try:
        yield bus, collected
    finally:
        for task in tasks:
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    # run() must survive every device and port fault; only the cancel may end it.
    assert all(isinstance(outcome, asyncio.CancelledError) for outcome in outcomes), outcomes


@asynccontextmanager
async def simulated(devices: Sequence[SimulatedSensor], transport: str = "rtu") -> AsyncIterator[SensorBusSimulator]:
    simulator = SensorBusSimulator(devices, transport=transport, rng=random.Random(5))  # type: ignore[arg-type]
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


def now() -> float:
    return SystemClock().now().timestamp()


@pytest.mark.parametrize("transport", ["rtu", "tcp"])
async def test_reads_every_device_with_lineage(transport: str) -> None:
    devices = [
        SimulatedSensor(1, "xy-md02", temperature_cel=-20.5, humidity_percent=54.6),
        SimulatedSensor(7, "kincony-sht30", temperature_cel=-10.5, humidity_percent=40.0),
        SimulatedSensor(9, "kincony-sht30", temperature_cel=21.5, humidity_percent=33.3),
    ]
    async with simulated(devices, transport) as simulator:
        data = bus_config(simulator, devices).model_dump()
        data["devices"][2]["profile"] = "kincony-sht30-float"
        async with running(ModbusBusConfig.model_validate(data)) as (bus, collected):
            await asyncio.sleep(0.7)
    values = {(r.device_id, r.measurement): r.value for r in collected.items if isinstance(r, SensorReading)}
    assert values == {
        ("th-1", "Temperature"): -20.5,
        ("th-1", "RelativeHumidity"): 54.6,
        ("th-7", "Temperature"): -10.5,
        ("th-7", "RelativeHumidity"): 40.0,
        ("th-9", "Temperature"): 21.5,
        ("th-9", "RelativeHumidity"): 33.3,
    }
    first = collected.readings("th-1")[0]
    assert first.seen_at.tzinfo is UTC and first.uom == "CEL"
    assert first.raw_sha256 == hashlib.sha256(bytes.fromhex("FF33 0222")).hexdigest()
    assert collected.faults() == []
    assert bus.status.available is True
    assert all(status.available for status in bus.status.devices.values())


async def test_reads_over_a_real_pty_at_the_pace_of_a_9600_baud_line(tmp_path: Path) -> None:
    devices = sensors(3, "kincony-sht30")
    simulator = SensorBusSimulator(
        devices, transport="pty", link=tmp_path / "rs485-0", baudrate=9600, rng=random.Random(1)
    )
    await simulator.start()
    try:
        # 8N2: 11 bits per character as the Modbus spec asks. Not 8E1: pyserial's tcsetattr with parity on a
        # Linux pty fails with EINVAL on some opens (seen on kernel 6.18), which the driver reports as a
        # DeviceError and retries.
        config = bus_config(simulator, devices, request_timeout_ms=200, stopbits=2)
        async with running(config) as (bus, collected):
            await asyncio.sleep(1.0)
    finally:
        await simulator.stop()
    assert config.port == str(tmp_path / "rs485-0")
    for sensor in devices:
        assert {r.value for r in collected.temperatures(f"th-{sensor.device_id}")} == {sensor.temperature_cel}
    # 17 bytes x 11 bits at 9600 baud = 19.5 ms of wire time per exchange, plus the 5 ms gap: the bus cannot
    # have done more than 1 s / 24.5 ms exchanges, and with 3 devices every 200 ms it did about 15.
    assert 10 <= bus.status.exchanges_total <= 41
    assert all(status.no_response_total == 0 for status in bus.status.devices.values())


async def test_values_follow_the_device() -> None:
    devices = sensors(1)
    async with simulated(devices) as simulator, running(bus_config(simulator, devices)) as (_, collected):
        await asyncio.sleep(0.3)
        await simulator.set_value(1, temperature_cel=-3.7)
        changed_at = now()
        await asyncio.sleep(0.5)
    assert collected.temperatures("th-1")[0].value == 11.0
    assert {r.value for r in collected.temperatures("th-1", since=changed_at + 0.01)} == {-3.7}


async def test_a_dead_device_does_not_slow_the_others() -> None:
    """Three healthy sensors every 250 ms and one that never answers (100 ms timeout, 2 retries): over a 3 s
    window the healthy ones keep their rate, and none waits longer than its interval plus one timeout."""
    devices = sensors(4)
    interval_s, timeout_s, window_s = 0.25, 0.1, 3.0
    async with simulated(devices) as simulator:
        simulator.set_fault(4, "absent")
        config = bus_config(simulator, devices, request_timeout_ms=int(timeout_s * 1000))
        data = config.model_dump()
        for device in data["devices"]:
            device["poll_interval_ms"] = int(interval_s * 1000)
        async with running(ModbusBusConfig.model_validate(data)) as (bus, collected):
            await asyncio.sleep(0.5)  # past the phase offsets and the first round of timeouts
            start = now()
            await asyncio.sleep(window_s)
            end = now()
    expected = window_s / interval_s  # 12 polls
    for name in ("th-1", "th-2", "th-3"):
        times = [r.seen_at.timestamp() for r in collected.temperatures(name) if start <= r.seen_at.timestamp() < end]
        assert len(times) >= expected - 1, (name, len(times))
        gaps = [b - a for a, b in itertools.pairwise(times)]
        # A healthy device is late by at most one of the dead device's timeouts (plus scheduling slack).
        assert max(gaps) <= interval_s + timeout_s + 0.08, (name, max(gaps))
    dead = bus.status.devices["th-4"]
    assert dead.available is False and dead.readings_total == 0 and collected.readings("th-4") == []
    # Backoff: the dead device had far fewer poll cycles (each of 1 + retries_max attempts) than a healthy one.
    assert dead.polls_total - dead.retries_total <= bus.status.devices["th-1"].polls_total / 2
    assert collected.faults() == []  # silence is not bad input: nothing to quarantine


async def test_a_garbling_device_yields_faults_and_the_others_are_fine() -> None:
    devices = sensors(3)
    async with simulated(devices) as simulator:
        simulator.set_fault(2, "garble")
        async with running(bus_config(simulator, devices, retries_max=1)) as (bus, collected):
            await asyncio.sleep(1.2)
    faults = collected.faults("th-2")
    assert faults and {fault.reason_code for fault in faults} == {"garbled"}
    for fault in faults:
        assert fault.raw and fault.raw[0] == 2  # the device's own (corrupted) frame, CRC broken
        assert "bytes but no valid response frame" in fault.reason
        assert fault.raw_sha256 == hashlib.sha256(fault.raw).hexdigest()
    assert collected.readings("th-2") == []
    assert bus.status.devices["th-2"].garbled_total >= 2 * len(faults)  # every attempt failed
    for name, value in (("th-1", 11.0), ("th-3", 13.0)):
        temperatures = collected.temperatures(name)
        assert len(temperatures) >= 4 and {r.value for r in temperatures} == {value}


async def test_a_slow_device_times_out_without_its_late_answers_reaching_another_device() -> None:
    devices = sensors(3)
    async with simulated(devices) as simulator:
        simulator.set_fault(2, "slow", slow_ms=250)
        async with running(bus_config(simulator, devices)) as (bus, collected):
            await asyncio.sleep(1.5)
            simulator.set_fault(2, "none")
            await asyncio.sleep(0.6)  # let the late handlers finish before the server stops
    assert bus.status.devices["th-2"].no_response_total >= 3
    for name, value in (("th-1", 11.0), ("th-2", 12.0), ("th-3", 13.0)):
        assert {r.value for r in collected.temperatures(name)} <= {value}, name
    assert len(collected.temperatures("th-1")) >= 7
    assert collected.temperatures("th-2")  # answering again once it is quick


async def test_exception_responses_and_rejected_values_are_faults_with_raw_bytes() -> None:
    devices = sensors(2)
    async with simulated(devices) as simulator:
        simulator.set_fault(1, "exception")
        await simulator.set_registers(2, 4, 1, [0x7FFF, 0x0222])  # 3276.7 degC: a broken sensor element
        async with running(bus_config(simulator, devices)) as (bus, collected):
            await asyncio.sleep(0.5)
    exception = collected.faults("th-1")[0]
    assert exception.reason_code == "exception_response" and exception.raw == bytes([0x84, 0x04])
    assert "exception response code 4 (server device failure)" in exception.reason
    # Not retried: an exception repeats on every attempt.
    assert bus.status.devices["th-1"].retries_total == 0
    rejected = collected.faults("th-2")[0]
    assert rejected.reason_code == "out_of_range" and rejected.raw == bytes.fromhex("7FFF0222")
    # The humidity of the same response is still a reading, and the device counts as answering.
    assert {r.value for r in collected.readings("th-2")} == {54.6}
    assert bus.status.devices["th-2"].available is True


async def test_availability_changes_are_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    devices = sensors(2)
    async with simulated(devices) as simulator:
        with caplog.at_level(logging.DEBUG, logger=DRIVER_LOGGER):
            config = bus_config(simulator, devices, retries_max=0, offline_poll_delay_ms_max=200)
            async with running(config) as (bus, _):
                await asyncio.sleep(0.4)
                simulator.set_fault(2, "absent")
                await asyncio.sleep(1.2)  # several failed polls
                failed_polls = bus.status.devices["th-2"].no_response_total
                simulator.set_fault(2, "none")
                await asyncio.sleep(0.8)  # the backoff delay (at most 200 + 200 ms), then an answer
    assert failed_polls >= 3
    th2 = [r for r in caplog.records if getattr(r, "device", None) == "th-2" and r.levelno >= logging.INFO]
    assert [(r.levelname, r.getMessage().split(":")[0]) for r in th2] == [
        ("WARNING", "modbus device th-2"),
        ("INFO", "modbus device th-2"),
    ]
    assert "no valid answer" in th2[0].getMessage() and "answering again" in th2[1].getMessage()
    assert th2[0].__dict__["available"] is False and th2[1].__dict__["available"] is True
    assert not [r for r in caplog.records if getattr(r, "device", None) == "th-1" and r.levelno >= logging.INFO]


async def test_the_bus_reopens_after_the_server_restarts(caplog: pytest.LogCaptureFixture) -> None:
    devices = sensors(2, "kincony-sht30")
    async with simulated(devices) as simulator:
        with caplog.at_level(logging.INFO, logger=DRIVER_LOGGER):
            async with running(bus_config(simulator, devices)) as (bus, collected):
                await asyncio.sleep(0.4)
                await simulator.stop()
                await asyncio.sleep(0.6)
                assert bus.status.available is False
                await simulator.start()  # same port
                restarted = now()
                await asyncio.sleep(0.8)
    assert bus.status.available is True and bus.status.reopens_total == 1
    for name in ("th-1", "th-2"):
        assert collected.temperatures(name, since=restarted), name
    messages = [r.getMessage() for r in caplog.records if r.name == DRIVER_LOGGER]
    assert sum("unavailable, reopening with backoff" in m for m in messages) == 1
    assert sum("open again" in m for m in messages) == 1
    # The bus was down, not the devices: no device availability flapped.
    assert not [m for m in messages if m.startswith("modbus device")]


async def test_a_tcp_bus_whose_devices_are_all_dead_reopens_quietly(caplog: pytest.LogCaptureFixture) -> None:
    """pymodbus drops a Modbus TCP connection after enough unanswered requests in a row (it cannot tell a dead
    sensor behind a gateway from a half-open connection); the bus reopens at once without calling itself down."""
    devices = sensors(1)
    async with simulated(devices, "tcp") as simulator:
        simulator.set_fault(1, "absent")
        config = bus_config(simulator, devices, retries_max=0, offline_poll_delay_ms_max=100)
        with caplog.at_level(logging.INFO, logger=DRIVER_LOGGER):
            async with running(config) as (bus, _):
                await asyncio.sleep(2.0)
    assert bus.status.reopens_total >= 1 and bus.status.available is True
    messages = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == DRIVER_LOGGER]
    assert [level for level, message in messages if message.startswith("modbus bus")] == ["INFO"]  # "open"
    assert [level for level, message in messages if message.startswith("modbus device th-1")] == ["WARNING"]


async def test_a_bus_that_is_not_there_yet_is_opened_when_it_appears(caplog: pytest.LogCaptureFixture) -> None:
    devices = sensors(1)
    simulator = SensorBusSimulator(devices, rng=random.Random(1))
    await simulator.start()
    await simulator.stop()  # a known free port, nobody listening
    with caplog.at_level(logging.INFO, logger=DRIVER_LOGGER):
        async with running(bus_config(simulator, devices)) as (bus, collected):
            await asyncio.sleep(0.5)
            assert bus.status.available is False and collected.items == []
            await simulator.start()
            await asyncio.sleep(0.8)
            await simulator.stop()
    assert collected.temperatures("th-1")
    messages = [r.getMessage() for r in caplog.records if r.name == DRIVER_LOGGER]
    assert sum("unavailable" in m for m in messages) == 1


async def test_the_output_queue_must_be_bounded() -> None:
    config = ModbusBusConfig.model_validate(
        {
            "name": "b",
            "transport": "tcp",
            "host": "127.0.0.1",
            "devices": [{"name": "x", "device_id": 1, "profile": "xy-md02", "read_point": "rp"}],
        }
    )
    bus = ModbusBus(config, load_profiles_for_bus(config, PROFILES), rng=random.Random(1), clock=SystemClock())
    with pytest.raises(AssertionError, match="bounded"):
        await bus.run(asyncio.Queue())  # refused before any I/O


def test_every_profile_must_be_loaded() -> None:
    config = ModbusBusConfig.model_validate(
        {
            "name": "b",
            "transport": "tcp",
            "host": "127.0.0.1",
            "devices": [{"name": "x", "device_id": 1, "profile": "xy-md02", "read_point": "rp"}],
        }
    )
    with pytest.raises(ValueError, match="no profile loaded for xy-md02"):
        ModbusBus(config, {}, rng=random.Random(1), clock=SystemClock())
