"""The simulated sensor bus: register maps, real RTU frames and CRCs on the wire, and each fault mode.

Checked from outside with a raw TCP socket (the bytes a serial device server would carry) and with a plain
pymodbus client, not with the edge driver, so that the simulator and the driver are tested independently.
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusIOException

import hw_sim.modbus as sim_package
from hw_sim.modbus import (
    ScenarioRun,
    SensorBusSimulator,
    SimulatedSensor,
    holding_registers,
    input_registers,
    load_scenario,
    run_from_config,
)

SAMPLE = Path(sim_package.__file__).parent / "sample-bus.toml"


@pytest.fixture(autouse=True)
def _quiet_pymodbus() -> None:
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


def crc16_modbus(frame: bytes) -> bytes:
    """CRC-16/MODBUS, written out here (reflected 0xA001, init 0xFFFF, low byte first) as an oracle."""
    crc = 0xFFFF
    for byte in frame:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc.to_bytes(2, "little")


@pytest.fixture
async def simulator() -> AsyncIterator[SensorBusSimulator]:
    bus = SensorBusSimulator(
        [
            SimulatedSensor(1, "xy-md02", temperature_cel=30.5, humidity_percent=54.6),
            SimulatedSensor(2, "kincony-sht30", temperature_cel=-10.5, humidity_percent=40.0),
        ],
        rng=random.Random(3),
    )
    await bus.start()
    yield bus
    await bus.stop()


async def exchange(port: int, request: bytes, wait_s: float = 0.3, expected_bytes: int = 256) -> bytes:
    """Send one raw RTU frame over TCP and collect what comes back within ``wait_s`` (or ``expected_bytes``)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        received = b""
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and len(received) < expected_bytes:
            try:
                received += await asyncio.wait_for(reader.read(256), deadline - time.monotonic())
            except TimeoutError:
                break
        return received
    finally:
        writer.close()
        await writer.wait_closed()


def test_register_maps() -> None:
    assert input_registers("xy-md02", 30.5, 54.6) == (1, (0x0131, 0x0222))
    assert input_registers("xy-md02", -20.5, 54.6) == (1, (0xFF33, 0x0222))
    start, kincony = input_registers("kincony-sht30", -10.5, 40.0)
    assert start == 0 and kincony[:2] == (10105, 400)
    assert struct.unpack(">f", struct.pack(">HH", *kincony[2:4]))[0] == pytest.approx(-10.5)
    assert holding_registers("xy-md02", 7, 0.0, 0.0) == (0x0101, (7, 0, 0, 0))
    with pytest.raises(ValueError, match="int16"):
        input_registers("xy-md02", 4000.0, 0.0)


async def test_rtu_frames_carry_real_crcs(simulator: SensorBusSimulator) -> None:
    request = bytes.fromhex("010400010002")
    assert crc16_modbus(request) == bytes.fromhex("200B")  # the frame standards.md §7.1 gives
    assert crc16_modbus(bytes.fromhex("0104040131FF33")) == bytes.fromhex("AA52")  # seen from pymodbus's own server
    answer = await exchange(simulator.port, request + crc16_modbus(request))
    assert answer == bytes.fromhex("010404 0131 0222") + crc16_modbus(bytes.fromhex("0104040131 0222"))


async def test_a_pymodbus_client_reads_values_as_they_change(simulator: SensorBusSimulator) -> None:
    client = AsyncModbusSerialClient(simulator.url, framer=FramerType.RTU, baudrate=9600, timeout=0.5, retries=0)
    assert await client.connect()
    try:
        assert (await client.read_input_registers(1, count=2, device_id=1)).registers == [0x0131, 0x0222]
        assert (await client.read_holding_registers(0x0101, count=1, device_id=1)).registers == [1]
        assert (await client.read_input_registers(0, count=2, device_id=2)).registers == [10105, 400]
        assert (await client.read_holding_registers(0, count=2, device_id=2)).registers == [10105, 400]
        await simulator.set_value(1, temperature_cel=-20.5)
        assert (await client.read_input_registers(1, count=2, device_id=1)).registers == [0xFF33, 0x0222]
        # An unmapped address is an exception response, as on the real device.
        assert (await client.read_input_registers(0, count=2, device_id=1)).exception_code == 2
    finally:
        client.close()


async def test_modbus_tcp_transport() -> None:
    bus = SensorBusSimulator([SimulatedSensor(5, "xy-md02", 21.0, 45.0)], transport="tcp", rng=random.Random(1))
    await bus.start()
    client = AsyncModbusTcpClient("127.0.0.1", port=bus.port, timeout=0.3, retries=0)
    try:
        assert await client.connect()
        assert (await client.read_input_registers(1, count=2, device_id=5)).registers == [210, 450]
        bus.set_fault(5, "absent")
        with pytest.raises(ModbusIOException):
            await client.read_input_registers(1, count=2, device_id=5)
    finally:
        client.close()
        await bus.stop()
    assert bus.url == f"127.0.0.1:{bus.port}"


async def test_pty_null_modem_paces_bytes_like_a_9600_baud_line(tmp_path: Path) -> None:
    link = tmp_path / "rs485-0"
    bus = SensorBusSimulator(
        [SimulatedSensor(1, "xy-md02", 30.5, 54.6)], transport="pty", link=link, baudrate=9600, rng=random.Random(1)
    )
    await bus.start()
    assert bus.url == str(link) and link.is_symlink()
    client = AsyncModbusSerialClient(str(link), framer=FramerType.RTU, baudrate=9600, timeout=0.5, retries=0)
    try:
        assert await client.connect()
        started = time.monotonic()
        for _ in range(5):
            assert (await client.read_input_registers(1, count=2, device_id=1)).registers == [0x0131, 0x0222]
        per_exchange_s = (time.monotonic() - started) / 5
    finally:
        client.close()
        await bus.stop()
    # 8 + 9 bytes x 11 bits at 9600 baud = 19.5 ms on the wire per exchange.
    assert 0.0194 <= per_exchange_s < 0.1
    assert not link.exists()


async def test_absent_devices_and_unknown_ids_say_nothing(simulator: SensorBusSimulator) -> None:
    for device_id in (1, 9):
        request = bytes([device_id]) + bytes.fromhex("0400010002")
        if device_id == 1:
            simulator.set_fault(1, "absent")
        assert await exchange(simulator.port, request + crc16_modbus(request), wait_s=0.2) == b""
    assert simulator.responses_dropped_total == 2
    simulator.set_fault(1, "none")
    request = bytes.fromhex("010400010002")
    assert len(await exchange(simulator.port, request + crc16_modbus(request))) == 9


async def test_a_garbling_device_sends_frames_whose_crc_does_not_match(simulator: SensorBusSimulator) -> None:
    simulator.set_fault(2, "garble")
    request = bytes.fromhex("020400000002")
    for _ in range(3):
        answer = await exchange(simulator.port, request + crc16_modbus(request), expected_bytes=9)
        assert len(answer) == 9 and answer[0] == 2
        assert crc16_modbus(answer[:-2]) != answer[-2:]


async def test_exception_fault(simulator: SensorBusSimulator) -> None:
    simulator.set_fault(1, "exception")
    request = bytes.fromhex("010400010002")
    answer = await exchange(simulator.port, request + crc16_modbus(request))
    assert answer == bytes.fromhex("018404") + crc16_modbus(bytes.fromhex("018404"))


async def test_a_slow_device_answers_late_and_a_superseded_answer_is_dropped(simulator: SensorBusSimulator) -> None:
    simulator.set_fault(1, "slow", slow_ms=150)
    client = AsyncModbusSerialClient(simulator.url, framer=FramerType.RTU, timeout=0.5, retries=0)
    assert await client.connect()
    try:
        started = time.monotonic()
        assert (await client.read_input_registers(1, count=2, device_id=1)).registers == [0x0131, 0x0222]
        assert time.monotonic() - started >= 0.15
    finally:
        client.close()
    # Ask the slow device, then another device before it answered: the late answer must not go out (pymodbus
    # would label it with the second request's device id).
    reader, writer = await asyncio.open_connection("127.0.0.1", simulator.port)
    try:
        for request in (bytes.fromhex("010400010002"), bytes.fromhex("020400000002")):
            writer.write(request + crc16_modbus(request))
            await writer.drain()
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        answers = await asyncio.wait_for(reader.read(256), 0.2)
    finally:
        writer.close()
        await writer.wait_closed()
    assert answers == bytes.fromhex("020404 2779 0190") + crc16_modbus(bytes.fromhex("0204042779 0190"))  # 10105, 400
    assert simulator.responses_dropped_total == 1


async def test_values_survive_a_restart_on_the_same_port(simulator: SensorBusSimulator) -> None:
    port = simulator.port
    await simulator.stop()
    await simulator.set_value(1, temperature_cel=4.2)  # while stopped
    await simulator.start()
    assert simulator.port == port and simulator.running
    request = bytes.fromhex("010400010001")
    answer = await exchange(port, request + crc16_modbus(request))
    assert answer[3:5] == (42).to_bytes(2, "big")


def test_sample_scenario_is_valid() -> None:
    scenario = load_scenario(SAMPLE)
    assert [sensor.model for sensor in scenario.sensor] == ["xy-md02", "kincony-sht30", "xy-md02"]
    with pytest.raises(ValueError, match=r"nope\.toml"):
        load_scenario(SAMPLE.with_name("nope.toml"))


async def test_scenario_steps_and_ramps() -> None:
    run = ScenarioRun(load_scenario(SAMPLE))
    simulator = run.simulator
    await run.update(elapsed_ms=59_000, step_s=59.0)
    assert simulator.sensor(1).temperature_cel == pytest.approx(3.8)
    await run.update(elapsed_ms=61_000, step_s=120.0)  # the ramp starts: +0.5 degC per minute
    assert simulator.sensor(1).temperature_cel == pytest.approx(4.8)
    await run.update(elapsed_ms=121_000, step_s=1.0)
    assert simulator.sensor(2).fault == "absent"
    assert simulator.sensor(3).temperature_cel == 26.0
    await run.update(elapsed_ms=221_000, step_s=1.0)
    assert (simulator.sensor(3).fault, simulator.sensor(3).slow_ms) == ("slow", 800)


async def test_run_from_config_serves_and_stops(tmp_path: Path) -> None:
    scenario = tmp_path / "bus.toml"
    scenario.write_text(
        "[bus]\nport = 0\nupdate_interval_ms = 20\nduration_ms = 150\n"
        '[[sensor]]\ndevice_id = 3\nmodel = "xy-md02"\ntemperature_ramp_cel_per_min = 600.0\n'
    )
    started = time.monotonic()
    await asyncio.wait_for(run_from_config(scenario), 2.0)
    assert 0.15 <= time.monotonic() - started < 1.0
