"""Modbus RTU polling: polls/s of one bus owner against the bus-time limit of a 9600-baud RS-485 line.

The baseline is computed, not measured: one exchange reading 2 registers is an 8-byte request and a
5 + 2n = 9-byte response, 11 bits per character (start, 8 data, parity or a second stop bit, stop) at 9600
baud, plus the t3.5 silence before each frame; no master can poll faster than that on a real line.

Two measured runs poll simulated XY-MD02 sensors through pymodbus's RTU server, with the line settings of
that 9600-baud line (a t3.5 gap of 5 ms between exchanges):

* over ``socket://`` (real frames and CRCs, carried over TCP). The baud rate is NOT enforced there, so the
  figure is the ceiling of the driver, pymodbus and the loopback on this machine; it must be well above the
  line's limit for the driver never to be the bottleneck of a real bus;
* over a real pty pair whose null modem delivers bytes no faster than 9600 baud at 11 bits per character
  (``hw_sim.modbus.PtyNullModem``): close to what a real line allows. The simulated device answers at once,
  where the limit counts a t3.5 turnaround, so this run can come out slightly above the limit.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import tempfile
from pathlib import Path

from edge.clock import SystemClock
from edge.drivers.modbus_bus import BusOutput, ModbusBus, ModbusBusConfig, load_profiles_for_bus
from edge.drivers.modbus_bus.config import silent_interval_ms
from hw_sim.modbus import SensorBusSimulator, SimulatedSensor

PROFILES = Path(__file__).resolve().parents[1] / "firmware_config" / "modbus_profiles"
BAUDRATE = 9600
# 8N2: 11 bits per character, as the Modbus serial line spec asks for (8E1 would be the same on the wire, but
# pyserial cannot always set parity on a Linux pty).
PARITY = "N"
STOPBITS = 2
REGISTERS_PER_POLL = 2
REQUEST_BYTES = 8  # id, function, address (2), count (2), CRC (2)
# Every device is due every 100 ms (the shortest interval the config allows), so the bus is never idle.
DEVICES = 32
POLL_INTERVAL_MS = 100
WARMUP_S = 0.5
# Cancelling the bus and stopping the simulator take milliseconds; past this, something lost its cancel.
STOP_TIMEOUT_S = 10.0


def bus_time_limit_polls_per_s(registers: int = REGISTERS_PER_POLL) -> tuple[float, float]:
    """Polls/s a real line allows, and the milliseconds one exchange takes on it."""
    response_bytes = 5 + 2 * registers  # id, function, byte count, data, CRC (2)
    bits_per_character = 1 + 8 + (0 if PARITY == "N" else 1) + STOPBITS
    wire_ms = 1000.0 * (REQUEST_BYTES + response_bytes) * bits_per_character / BAUDRATE
    gaps_ms = 2 * silent_interval_ms(BAUDRATE, PARITY, STOPBITS)  # before the request and before the response
    exchange_ms = wire_ms + gaps_ms
    return 1000.0 / exchange_ms, exchange_ms


async def _measure(duration_s: float, pty_link: Path | None) -> tuple[float, float, int]:
    """Exchanges/s and readings/s over ``duration_s``, and the count of failed polls."""
    sensors = [SimulatedSensor(n, "xy-md02", 4.0 + n / 10, 60.0) for n in range(1, DEVICES + 1)]
    if pty_link is None:
        simulator = SensorBusSimulator(sensors, rng=random.Random(1))
    else:
        simulator = SensorBusSimulator(sensors, transport="pty", link=pty_link, baudrate=BAUDRATE, rng=random.Random(1))
    await simulator.start()
    config = ModbusBusConfig.model_validate(
        {
            "name": "bench-rs485",
            "transport": "rtu",
            "port": simulator.url,
            "baudrate": BAUDRATE,
            "parity": PARITY,
            "stopbits": STOPBITS,
            "devices": [
                {
                    "name": f"th-{n}",
                    "device_id": n,
                    "profile": "xy-md02",
                    "poll_interval_ms": POLL_INTERVAL_MS,
                    "read_point": "bench",
                }
                for n in range(1, DEVICES + 1)
            ],
        }
    )
    bus = ModbusBus(config, load_profiles_for_bus(config, PROFILES), rng=random.Random(2), clock=SystemClock())
    output: asyncio.Queue[BusOutput] = asyncio.Queue(maxsize=1024)
    readings = 0

    async def consume() -> None:
        nonlocal readings
        while True:
            await output.get()
            readings += 1

    tasks = [asyncio.create_task(bus.run(output)), asyncio.create_task(consume())]
    loop = asyncio.get_running_loop()
    try:
        await asyncio.sleep(WARMUP_S)
        exchanges_before, readings_before, started = bus.status.exchanges_total, readings, loop.time()
        await asyncio.sleep(duration_s)
        elapsed = loop.time() - started
        exchanges = bus.status.exchanges_total - exchanges_before
        read = readings - readings_before
    finally:
        for task in tasks:
            task.cancel()
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                outcomes = await asyncio.gather(*tasks, return_exceptions=True)
                await simulator.stop()
        except TimeoutError as exc:
            # A bus that outlives its cancel polls on with nobody reading: say so instead of hanging.
            raise RuntimeError(f"the bus or the simulator did not stop within {STOP_TIMEOUT_S} s") from exc
    failures = [outcome for outcome in outcomes if not isinstance(outcome, asyncio.CancelledError)]
    if failures:
        raise RuntimeError(f"the bus or its consumer ended with {failures[0]!r}") from failures[0]
    faults = sum(status.faults_total + status.no_response_total for status in bus.status.devices.values())
    return exchanges / elapsed, read / elapsed, faults


async def run(quick: bool = False) -> None:
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    duration_s = 1.0 if quick else 5.0
    limit, exchange_ms = bus_time_limit_polls_per_s()
    unpaced, unpaced_readings, unpaced_failed = await _measure(duration_s, None)
    with tempfile.TemporaryDirectory() as directory:
        paced, paced_readings, paced_failed = await _measure(duration_s, Path(directory) / "rs485-0")
    demand = DEVICES * 1000 / POLL_INTERVAL_MS
    gap_ms = config_gap_ms()
    print(
        f"modbus RTU polls, one bus, {DEVICES} XY-MD02 sensors due every {POLL_INTERVAL_MS} ms "
        f"(demand {demand:.0f} polls/s), {REGISTERS_PER_POLL} registers per poll, {duration_s:.0f} s per run"
    )
    print(
        f"  bus-time limit at 9600 baud, computed ({REQUEST_BYTES}+{5 + 2 * REGISTERS_PER_POLL} bytes x 11 bits "
        f"+ 2 x t3.5 = {exchange_ms:.1f} ms/poll)   {limit:>7.1f} polls/s"
    )
    print(
        f"  measured, socket:// (baud rate NOT enforced: loopback speed)   {unpaced:>7.1f} polls/s"
        f"  {unpaced / limit:>5.2f}x the limit  ({1000 / unpaced:.2f} ms/poll incl. the {gap_ms} ms t3.5 gap; "
        f"{unpaced_readings:.0f} readings/s, {unpaced_failed} failed polls)"
    )
    print(
        f"  measured, pty paced at 9600 baud, 11 bits per character       {paced:>7.1f} polls/s"
        f"  {paced / limit:>5.2f}x the limit  ({1000 / paced:.2f} ms/poll; "
        f"{paced_readings:.0f} readings/s, {paced_failed} failed polls)"
    )


def config_gap_ms() -> int:
    """The inter-request gap the driver uses at these line settings (t3.5 rounded up)."""
    return math.ceil(silent_interval_ms(BAUDRATE, PARITY, STOPBITS))


if __name__ == "__main__":
    asyncio.run(run())
