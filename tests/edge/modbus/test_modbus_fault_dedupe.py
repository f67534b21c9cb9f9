"""A sensor fault that repeats on every poll is one quarantine row, not one per poll: pymodbus's real servers.

The bus polls simulated sensors over Modbus RTU (real frames and CRCs over socket://) every 200 ms while a
sensor element reports a value it cannot have measured. The fault comes out once when it starts, its repeats
are counted, and one ``fault_repeats`` row sums them up when it clears (and every
``fault_summary_interval_ms`` while it lasts); a different fault kind starts a new row.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest
from test_modbus_bus import bus_config, running, sensors, simulated

from edge.drivers.modbus_bus import ModbusBusConfig, ModbusFault
from hw_sim.modbus import SensorBusSimulator

FAULTS_LOGGER = "edge.drivers.modbus_bus.faults"
WAIT_S = 10.0
# XY-MD02: input registers 0x0001 temperature (int16, x0.1 degC), 0x0002 humidity (x0.1 %RH).
BROKEN_XY_MD02 = [0x7FFF, 0x0222]  # 3276.7 degC: a broken sensor element; humidity 54.6 %
# kincony-sht30 float32 registers 0x0002-0x0003 temperature, 0x0004-0x0005 humidity (high word first).
FLOAT_NAN = [0x7FC0, 0x0000]
FLOAT_HUGE = [0x7F7F, 0xFFFF]  # 3.4e38 degC


@pytest.fixture(autouse=True)
def _quiet_pymodbus() -> None:
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait for the bus to get there; the bound only keeps a broken test from hanging."""
    try:
        async with asyncio.timeout(WAIT_S):
            while not condition():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"not reached within {WAIT_S} s: {what}") from None


def float_bus_config(simulator: SensorBusSimulator, **overrides: Any) -> ModbusBusConfig:
    """Device 1 read through the float32 profile (the simulated kincony-sht30 holds both encodings)."""
    config = bus_config(simulator, sensors(1, "kincony-sht30"), **overrides)
    device = config.devices[0].model_copy(update={"profile": "kincony-sht30-float"})
    return config.model_copy(update={"devices": [device]})


def codes(faults: list[ModbusFault]) -> list[str]:
    return [fault.reason_code for fault in faults]


async def test_an_out_of_range_sensor_is_one_row_its_repeats_counted_and_one_row_when_it_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    devices = sensors(2)
    async with simulated(devices) as simulator:
        await simulator.set_registers(2, 4, 1, BROKEN_XY_MD02)
        with caplog.at_level(logging.INFO, logger=FAULTS_LOGGER):
            async with running(bus_config(simulator, devices)) as (bus, collected):
                status = bus.status.devices["th-2"]
                await until(lambda: status.fault_repeats_total >= 5, "5 repeated faults")
                # Five polls and more rejected the same way: still one fault out of the bus.
                (first,) = collected.faults("th-2")
                assert first.reason_code == "out_of_range" and first.raw == bytes.fromhex("7FFF0222")
                assert "3276.7" in first.reason and "repeats of this fault are counted" in first.reason
                assert status.faults_total == status.fault_repeats_total + 1
                # The humidity element of the same device still reads.
                assert {reading.value for reading in collected.readings("th-2")} == {54.6}

                await simulator.set_value(2, temperature_cel=12.0)  # the probe is replaced
                await until(lambda: bool(collected.temperatures("th-2")), "a temperature from th-2")
                repeats = status.fault_repeats_total
                temperatures = len(collected.temperatures("th-2"))
                await until(lambda: len(collected.temperatures("th-2")) >= temperatures + 3, "3 more readings")
    first, summary = collected.faults("th-2")
    assert summary.reason_code == "fault_repeats"
    assert f"out_of_range on Temperature repeated {repeats} more time(s)" in summary.reason
    assert "cleared at" in summary.reason and "3276.7" in summary.reason
    assert summary.raw == bytes.fromhex("7FFF0222")  # the last rejected response
    assert status.fault_repeats_total == repeats  # the good readings after it counted nothing
    assert {reading.value for reading in collected.temperatures("th-2")} == {12.0}
    assert collected.faults("th-1") == []
    th2_lines = [
        (record.levelname, record.getMessage())
        for record in caplog.records
        if record.name == FAULTS_LOGGER and "th-2" in record.getMessage()
    ]
    assert [level for level, _ in th2_lines] == ["WARNING", "INFO"], th2_lines
    assert f"cleared after {repeats} repeat(s)" in th2_lines[1][1]


async def test_a_different_fault_kind_starts_a_new_row() -> None:
    devices = sensors(1, "kincony-sht30")
    async with simulated(devices) as simulator:
        await simulator.set_registers(1, 4, 2, FLOAT_NAN)
        async with running(float_bus_config(simulator)) as (bus, collected):
            status = bus.status.devices["th-1"]
            await until(lambda: status.fault_repeats_total >= 2, "2 repeated NaN faults")
            nan_repeats = status.fault_repeats_total
            assert codes(collected.faults()) == ["not_finite"]
            await simulator.set_registers(1, 4, 2, FLOAT_HUGE)
            await until(lambda: "out_of_range" in codes(collected.faults()), "the out-of-range fault")
            await until(lambda: status.fault_repeats_total >= nan_repeats + 2, "2 repeated out-of-range faults")
    faults = collected.faults()
    assert codes(faults) == ["not_finite", "fault_repeats", "out_of_range"]
    assert faults[0].raw[:4] == bytes.fromhex("7FC00000")
    assert f"not_finite on Temperature repeated {nan_repeats} more time(s)" in faults[1].reason
    assert "became out_of_range" in faults[1].reason
    assert faults[2].raw[:4] == bytes.fromhex("7F7FFFFF") and "repeats of this fault are counted" in faults[2].reason
    assert {reading.measurement for reading in collected.readings("th-1")} == {"RelativeHumidity"}


async def test_a_fault_that_lasts_is_summed_up_every_interval_while_it_lasts() -> None:
    devices = sensors(1)
    async with simulated(devices) as simulator:
        await simulator.set_registers(1, 4, 1, BROKEN_XY_MD02)
        async with running(bus_config(simulator, devices, fault_summary_interval_ms=1000)) as (bus, collected):
            status = bus.status.devices["th-1"]
            await until(lambda: codes(collected.faults()).count("fault_repeats") >= 2, "two interval summaries")
            faults = list(collected.faults())
            repeats = status.fault_repeats_total
    assert codes(faults) == ["out_of_range", "fault_repeats", "fault_repeats"]
    for summary in faults[1:]:
        assert "still failing" in summary.reason and summary.raw == bytes.fromhex("7FFF0222")
    # Each summary counts what the previous row had not; together they never exceed the repeats seen.
    counted = [int(summary.reason.split(" repeated ")[1].split(" ")[0]) for summary in faults[1:]]
    assert all(count >= 1 for count in counted) and sum(counted) <= repeats
    # One second apart at the earliest: one row a second instead of five.
    assert (faults[2].seen_at - faults[1].seen_at).total_seconds() >= 1.0
    assert (faults[1].seen_at - faults[0].seen_at).total_seconds() >= 1.0
