"""A simulated RS-485 sensor bus on pymodbus's real servers, with per-device faults.

    simulator = SensorBusSimulator([SimulatedSensor(1, "xy-md02", 4.0, 60.0)], transport="rtu", rng=rng)
    await simulator.start()                 # binds 127.0.0.1:<free port>; simulator.url is what to poll
    await simulator.set_value(1, temperature_cel=9.5)
    simulator.set_fault(1, "absent")
    await simulator.stop()

``transport="rtu"`` runs ``ModbusSerialServer`` on ``socket://host:port``: real RTU frames with real CRCs,
carried over TCP (the driver connects with ``AsyncModbusSerialClient("socket://host:port")``, as it would to
a serial device server); the baud rate is not simulated there, bytes arrive at loopback speed.
``transport="tcp"`` runs ``ModbusTcpServer`` (MBAP framing). ``transport="pty"`` runs ``ModbusSerialServer``
on a real serial device: one side of a ``PtyNullModem``, whose other side the gateway opens through ``link``;
with ``baudrate`` set, the null modem delivers bytes no faster than a line at that speed.

Faults per device, set with ``set_fault``, all made with pymodbus's documented server hooks:

* ``absent``: the device never answers, as a sensor that is unplugged, unpowered or on another address. The
  server's ``trace_packet`` hook (which "allows to modify the datastream") returns no bytes for that
  device's responses. Device ids that no sensor has are absent the same way. (``ignore_missing_devices``
  would be the obvious switch, but in pymodbus 3.16.1 a missing id with ``SimDevice`` contexts raises
  ``KeyError`` in ``SimCore`` instead of ``NoSuchIdException``, and the server answers exception 4; a
  catch-all device 0 avoids that, and its answers are then dropped like any absent device's.)
* ``garble``: the answer is corrupted on the wire: RTU flips one bit of the payload, so the CRC no longer
  matches (what line noise and a bad termination do); TCP replaces the frame with random bytes of the same
  length (TCP has no CRC; garbage there means a broken gateway).
* ``slow``: the answer comes ``slow_ms`` late (the device ``action`` hook sleeps before the registers are
  read). An answer that is still pending when the next request arrives is dropped: pymodbus's request
  handler keeps one "last request" per connection, so it would send the late registers under the *next*
  request's device id; on a real line a late answer collides with the next exchange instead.
* ``exception``: the device answers every read with exception 4 (server device failure).

Values change with ``set_value`` (``async_setValues`` on the running server) and survive ``stop()``/
``start()``, which tests use to take the whole bus away and bring it back on the same port.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

from pymodbus import FramerType
from pymodbus.constants import ExcCodes
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from hw_sim.modbus.pty_link import PtyNullModem
from hw_sim.modbus.registers import SensorModel, holding_registers, input_registers, register_writes

__all__ = ["Fault", "SensorBusSimulator", "SimulatedSensor", "Transport"]

log = logging.getLogger(__name__)

Fault = Literal["none", "absent", "garble", "slow", "exception"]
Transport = Literal["rtu", "tcp", "pty"]
FAULTS: tuple[Fault, ...] = ("none", "absent", "garble", "slow", "exception")
SLOW_MS_MAX = 10_000
START_TIMEOUT_S = 5.0
# Byte offsets of the device id in a response: RTU [id][fc]...; Modbus TCP MBAP [tid 2][pid 2][len 2][id].
_DEVICE_ID_OFFSET: dict[Transport, int] = {"rtu": 0, "pty": 0, "tcp": 6}
# The catch-all SimDevice (id 0 answers for every id no sensor has); its answers are dropped.
_CATCH_ALL_ID = 0


@dataclass
class SimulatedSensor:
    """One sensor on the simulated bus and its current state."""

    device_id: int
    model: SensorModel
    temperature_cel: float = 20.0
    humidity_percent: float = 50.0
    fault: Fault = "none"
    slow_ms: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.device_id <= 247:
            raise ValueError(f"device_id must be 1..247, got {self.device_id}")


class SensorBusSimulator:
    """Several simulated sensors behind one pymodbus server; see the module docstring."""

    def __init__(
        self,
        sensors: Sequence[SimulatedSensor],
        *,
        transport: Transport = "rtu",
        host: str = "127.0.0.1",
        port: int = 0,
        link: Path | None = None,
        baudrate: int | None = None,
        rng: random.Random,
    ) -> None:
        ids = [sensor.device_id for sensor in sensors]
        if len(set(ids)) != len(ids):
            raise ValueError(f"device ids must be unique, got {ids}")
        if transport == "pty" and link is None:
            raise ValueError("transport 'pty' needs the link path the gateway opens")
        self._sensors = {sensor.device_id: sensor for sensor in sensors}
        self._link = link
        self._baudrate = baudrate
        self._modem: PtyNullModem | None = None
        self._transport: Transport = transport
        self._host = host
        self._port = port
        self._rng = rng
        self._server: ModbusSerialServer | ModbusTcpServer | None = None
        # Requests seen by the server, in total (to spot a late answer) and per device id.
        self._requests_seen = 0
        self.requests_by_device: Counter[int] = Counter()
        self.responses_dropped_total = 0
        self._drop_next_response = False

    @property
    def port(self) -> int:
        """The TCP port the server listens on (known after the first ``start()``)."""
        return self._port

    @property
    def url(self) -> str:
        """What a client opens: ``socket://host:port`` (RTU), ``host:port`` (Modbus TCP), or the pty's link."""
        if self._transport == "pty":
            return str(self._link)
        return f"socket://{self._host}:{self._port}" if self._transport == "rtu" else f"{self._host}:{self._port}"

    @property
    def transport(self) -> Transport:
        return self._transport

    @property
    def running(self) -> bool:
        return self._server is not None

    def sensor(self, device_id: int) -> SimulatedSensor:
        return self._sensors[device_id]

    async def start(self) -> None:
        """Listen; the first start with ``port=0`` takes a free port, later starts reuse it."""
        if self._server is not None:
            return
        devices = [self._sim_device(sensor) for sensor in self._sensors.values()]
        devices.append(self._catch_all_device())
        server: ModbusSerialServer | ModbusTcpServer
        if self._transport == "pty":
            assert self._link is not None
            self._modem = PtyNullModem(self._link, baudrate=self._baudrate)
            self._modem.open()
            server = ModbusSerialServer(
                devices,
                framer=FramerType.RTU,
                port=self._modem.device_side,
                baudrate=self._baudrate or 9600,
                trace_packet=self._trace_packet,
                trace_pdu=self._trace_pdu,
            )
        elif self._transport == "rtu":
            server = ModbusSerialServer(
                devices,
                framer=FramerType.RTU,
                port=f"socket://{self._host}:{self._port}",
                trace_packet=self._trace_packet,
                trace_pdu=self._trace_pdu,
            )
        else:
            server = ModbusTcpServer(
                devices, address=(self._host, self._port), trace_packet=self._trace_packet, trace_pdu=self._trace_pdu
            )
        async with asyncio.timeout(START_TIMEOUT_S):
            await server.serve_forever(background=True)
            # pymodbus's serial transport finishes its setup in a call_soon callback, which fails if the
            # transport is closed first (a stop() right after start()): let it run.
            await asyncio.sleep(0)
        self._server = server
        if self._port == 0 and self._transport != "pty":
            self._port = _bound_port(server)
        log.info("modbus bus simulator listening", extra={"url": self.url, "sensors": sorted(self._sensors)})

    async def stop(self) -> None:
        """Close the server and every client connection (a pulled cable, a power cut of the gateway)."""
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()  # type: ignore[no-untyped-call]  # pymodbus leaves it unannotated
        modem, self._modem = self._modem, None
        if modem is not None:
            modem.close()  # the next start() makes new ptys behind the same link, like a replug

    async def set_value(
        self, device_id: int, *, temperature_cel: float | None = None, humidity_percent: float | None = None
    ) -> None:
        """Change what a sensor measures; the registers follow at once if the server runs."""
        sensor = self._sensors[device_id]
        if temperature_cel is not None:
            sensor.temperature_cel = temperature_cel
        if humidity_percent is not None:
            sensor.humidity_percent = humidity_percent
        if self._server is None:
            return
        for write in register_writes(sensor.model, sensor.temperature_cel, sensor.humidity_percent):
            await self._server.async_setValues(device_id, write.function_code, write.address, list(write.values))

    async def set_registers(
        self, device_id: int, function_code: Literal[3, 4], address: int, values: Sequence[int]
    ) -> None:
        """Write raw registers (e.g. 0x7FFF or a NaN float, as a broken sensor element reports)."""
        if self._server is None:
            raise RuntimeError("the simulator is not running")
        await self._server.async_setValues(device_id, function_code, address, list(values))

    def set_fault(self, device_id: int, fault: Fault, *, slow_ms: int | None = None) -> None:
        """Make a device misbehave (or behave again with ``"none"``); takes effect on the next request."""
        if fault not in FAULTS:
            raise ValueError(f"fault must be one of {', '.join(FAULTS)}, got {fault!r}")
        sensor = self._sensors[device_id]
        sensor.fault = fault
        if slow_ms is not None:
            if not 0 <= slow_ms <= SLOW_MS_MAX:
                raise ValueError(f"slow_ms must be 0..{SLOW_MS_MAX}, got {slow_ms}")
            sensor.slow_ms = slow_ms

    def _sim_device(self, sensor: SimulatedSensor) -> SimDevice:
        input_start, inputs = input_registers(sensor.model, sensor.temperature_cel, sensor.humidity_percent)
        holding_start, holdings = holding_registers(
            sensor.model, sensor.device_id, sensor.temperature_cel, sensor.humidity_percent
        )
        # Separate blocks per register type, as these devices have: FC 03 and FC 04 read different registers.
        simdata = (
            [SimData(0, values=[False] * 16, datatype=DataType.BITS)],
            [SimData(0, values=[False] * 16, datatype=DataType.BITS)],
            [SimData(holding_start, values=list(holdings), datatype=DataType.REGISTERS)],
            [SimData(input_start, values=list(inputs), datatype=DataType.REGISTERS)],
        )
        return SimDevice(sensor.device_id, simdata=simdata, action=partial(self._on_access, sensor.device_id))

    def _catch_all_device(self) -> SimDevice:
        registers = [SimData(0, values=[0], datatype=DataType.REGISTERS)]
        bits = [SimData(0, values=[False] * 16, datatype=DataType.BITS)]
        return SimDevice(_CATCH_ALL_ID, simdata=(bits, list(bits), registers, list(registers)))

    async def _on_access(
        self,
        device_id: int,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """pymodbus's per-device ``action`` hook: runs on every register access, before the registers are read."""
        if set_values is not None:  # our own set_value(); never delayed or refused
            return None
        sensor = self._sensors[device_id]
        if sensor.fault == "exception":
            return ExcCodes.DEVICE_FAILURE
        if sensor.fault == "slow" and sensor.slow_ms > 0:
            requests_before = self._requests_seen
            await asyncio.sleep(sensor.slow_ms / 1000)
            if self._requests_seen != requests_before:
                # The master has moved on; see the module docstring for why this answer must not go out.
                self._drop_next_response = True
        return None

    def _trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            self._requests_seen += 1
            self.requests_by_device[pdu.dev_id] += 1
        return pdu

    def _trace_packet(self, sending: bool, packet: bytes) -> bytes:
        if not sending or not packet:
            return packet
        if self._drop_next_response:
            # Set by a late answer just before it is framed: nothing else can be sent in between, because
            # pymodbus frames and writes the response without yielding to the event loop.
            self._drop_next_response = False
            self.responses_dropped_total += 1
            return b""
        device_id = packet[_DEVICE_ID_OFFSET[self._transport]]
        sensor = self._sensors.get(device_id)
        if sensor is None or sensor.fault == "absent":
            self.responses_dropped_total += 1
            return b""
        if sensor.fault == "garble":
            return self._garble(packet)
        return packet

    def _garble(self, packet: bytes) -> bytes:
        if self._transport == "tcp":
            return self._rng.randbytes(len(packet))
        corrupted = bytearray(packet)
        # A bit of the payload (between the function code and the CRC) flips, as on a noisy line.
        position = self._rng.randrange(2, max(3, len(packet) - 2))
        corrupted[position] ^= 1 << self._rng.randrange(8)
        return bytes(corrupted)


def _bound_port(server: ModbusSerialServer | ModbusTcpServer) -> int:
    listener = server.transport
    sockets = getattr(listener, "sockets", None)
    if not sockets:
        raise RuntimeError("the pymodbus server did not report its listening socket")
    port: int = sockets[0].getsockname()[1]
    return port
