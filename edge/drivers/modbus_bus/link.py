"""The one place that talks to pymodbus: open the bus, read a block of registers, translate every failure.

``ModbusLink`` wraps one pymodbus async client (RTU over a serial port or a pyserial URL, or Modbus TCP) and
turns what pymodbus reports into the agent's error tree:

DeviceError (edge.errors)
├── PortClosedError              the port or TCP connection is gone (reopen the bus, with backoff)
├── ModbusNoResponseError        the device said nothing before the timeout (absent, wrong id, wrong baud)
├── ModbusGarbledResponseError   bytes came back but no valid frame (CRC error, noise, collision); ``raw``
└── ModbusExceptionResponseError the device answered with a Modbus exception (e.g. illegal address); ``raw``

pymodbus's own retries and reconnects are switched off (``retries=0``, ``reconnect_delay=0``): the bus
driver retries per device, interleaving other devices between attempts, and reopens the port with the
agent's jittered ``Backoff``. pymodbus resends a timed-out request at once and cannot tell a device that is
silent from one that garbles; the ``trace_packet`` hook sees the bytes that arrived, which tells them apart.

pymodbus 3.16 waits for a response (and for the connection) with ``asyncio.wait_for``. On Python 3.11 that
returns the result and drops the cancellation when a cancel lands in the event-loop iteration in which the
response arrived; the bus task then kept polling after it was cancelled, and nothing could stop it. The task
still counts the cancel (``Task.cancelling()``), so each call into pymodbus raises it again afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import termios
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from pymodbus import FramerType, ModbusException
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException
from pymodbus.pdu import ModbusPDU

from edge.drivers.modbus_bus.codec import registers_to_bytes
from edge.drivers.modbus_bus.config import ModbusBusConfig
from edge.drivers.modbus_bus.profiles import FunctionCode
from edge.errors import DeviceError, PortClosedError

__all__ = [
    "ClientFactory",
    "ModbusClient",
    "ModbusExceptionResponseError",
    "ModbusGarbledResponseError",
    "ModbusLink",
    "ModbusNoResponseError",
    "RegisterResponse",
    "TracePacket",
    "make_client",
]

logger = logging.getLogger(__name__)

# Bytes kept from a garbled answer for the quarantine: an RTU frame is at most 256 bytes; noise beyond a
# couple of frames says nothing more.
RAW_BYTES_MAX = 512
# pymodbus enforces the request timeout itself; this outer bound only catches a hang inside pymodbus.
REQUEST_TIMEOUT_SLACK_MS = 250
# On Modbus TCP pymodbus drops the connection once about this many requests in a row went unanswered (a
# half-open connection looks like that). Set to every attempt of every device, so that one dead sensor behind
# a TCP gateway does not make the connection churn; never below pymodbus's own default.
NO_RESPONSE_COUNT_MIN = 3


def no_response_limit(config: ModbusBusConfig) -> int:
    """Unanswered requests in a row after which pymodbus closes a Modbus TCP connection."""
    return max(NO_RESPONSE_COUNT_MIN, len(config.devices) * (config.retries_max + 1))


TracePacket = Callable[[bool, bytes], bytes]
"""pymodbus's ``trace_packet(sending, data) -> data`` hook."""


class ModbusClient(Protocol):
    """What the link needs from a pymodbus async client (``AsyncModbusSerialClient``/``AsyncModbusTcpClient``)."""

    @property
    def connected(self) -> bool: ...

    async def connect(self) -> bool: ...

    def close(self) -> None: ...

    def set_max_no_responses(self, max_count: int) -> None: ...

    def read_holding_registers(self, address: int, *, count: int = 1, device_id: int = 1) -> Awaitable[ModbusPDU]: ...

    def read_input_registers(self, address: int, *, count: int = 1, device_id: int = 1) -> Awaitable[ModbusPDU]: ...


ClientFactory = Callable[[ModbusBusConfig, TracePacket], ModbusClient]
"""Builds the pymodbus client for a bus; tests and the simulated site may pass their own."""


class ModbusNoResponseError(DeviceError):
    """The device did not answer within the request timeout."""


class ModbusGarbledResponseError(DeviceError):
    """Bytes arrived, but no valid response frame: CRC error, line noise, or a collision on the bus."""

    def __init__(self, message: str, raw: bytes) -> None:
        super().__init__(message)
        self.raw = raw


class ModbusExceptionResponseError(DeviceError):
    """The device answered with a Modbus exception response."""

    def __init__(self, message: str, exception_code: int, raw: bytes) -> None:
        super().__init__(message)
        self.exception_code = exception_code
        self.raw = raw


@dataclass(frozen=True, slots=True)
class RegisterResponse:
    """The registers of a successful read and their bytes as on the wire (for the lineage digest)."""

    registers: tuple[int, ...]
    raw: bytes


def make_client(config: ModbusBusConfig, trace_packet: TracePacket) -> ModbusClient:
    """The real pymodbus client for a bus, with pymodbus's own retries and reconnects off."""
    timeout_s = config.request_timeout_ms / 1000
    client: AsyncModbusSerialClient | AsyncModbusTcpClient
    if config.transport == "rtu":
        assert config.port is not None  # the config validator guarantees it
        client = AsyncModbusSerialClient(
            config.port,
            framer=FramerType.RTU,
            baudrate=config.baudrate,
            bytesize=config.bytesize,
            parity=config.parity,
            stopbits=config.stopbits,
            handle_local_echo=config.handle_local_echo,
            name=config.name,
            reconnect_delay=0,
            timeout=timeout_s,
            retries=0,
            trace_packet=trace_packet,
        )
    else:
        assert config.host is not None
        client = AsyncModbusTcpClient(
            config.host,
            port=config.port_number,
            name=config.name,
            reconnect_delay=0,
            timeout=timeout_s,
            retries=0,
            trace_packet=trace_packet,
        )
    return client


class ModbusLink:
    """One bus connection: ``open()``, ``read_registers()`` one request at a time, ``close()``.

    Not safe for concurrent callers by design: the bus driver is its only user and never has two requests
    outstanding (pymodbus would serialise them with a lock anyway, but a second caller's timeout would then
    include the first one's wait).
    """

    def __init__(self, config: ModbusBusConfig, *, client_factory: ClientFactory = make_client) -> None:
        self._config = config
        self._client_factory = client_factory
        self._client: ModbusClient | None = None
        self._received = bytearray()
        self._receiving = b""

    @property
    def is_open(self) -> bool:
        return self._client is not None and self._client.connected

    async def open(self) -> None:
        """Open the port or connection; DeviceError (PortClosedError when absent) if it cannot be opened."""
        self.close()
        client = self._client_factory(self._config, self._trace_packet)
        # Before connecting: pymodbus copies the limit into its counter when the connection is made.
        client.set_max_no_responses(no_response_limit(self._config))
        timeout_s = (self._config.request_timeout_ms + REQUEST_TIMEOUT_SLACK_MS) / 1000
        try:
            # pymodbus bounds the connect with its timeout; the outer one covers a pymodbus that does not.
            with _cancels_kept():
                async with asyncio.timeout(max(timeout_s, 1.0)):
                    connected = await client.connect()
        except TimeoutError:
            connected = False
        except asyncio.CancelledError:
            client.close()
            raise
        except (ModbusException, OSError) as exc:
            client.close()
            raise PortClosedError(f"opening {self._config.endpoint}: {type(exc).__name__}: {exc}") from exc
        except (termios.error, ValueError) as exc:
            # pyserial passes these through pymodbus's connect(): the port exists but refuses the line
            # settings (a pty refuses even parity, for one) or pyserial rejects a value.
            client.close()
            raise DeviceError(
                f"opening {self._config.endpoint} at {self._config.baudrate} 8{self._config.parity}"
                f"{self._config.stopbits}: {type(exc).__name__}: {exc}"
            ) from exc
        # pymodbus's serial transport registers its reader in a call_soon callback that fails if the
        # transport is closed before it ran (a cancel right after open): let it run now.
        await asyncio.sleep(0)
        if not connected:
            client.close()
            # pymodbus logs the cause itself and returns only False: a missing device node, a refused TCP
            # connection and a permission error all end here.
            raise PortClosedError(f"opening {self._config.endpoint}: cannot open (see the pymodbus warning)")
        self._client = client

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    async def read_registers(
        self, *, device_id: int, function_code: FunctionCode, address: int, count: int
    ) -> RegisterResponse:
        """One request, one response; every failure is one of this module's DeviceErrors."""
        client = self._client
        if client is None or not client.connected:
            raise PortClosedError(f"{self._config.endpoint}: not open")
        self._received.clear()
        self._receiving = b""
        where = f"device {device_id} FC{function_code:02d} 0x{address:04X}+{count}"
        timeout_s = (self._config.request_timeout_ms + REQUEST_TIMEOUT_SLACK_MS) / 1000
        try:
            with _cancels_kept():
                async with asyncio.timeout(timeout_s):
                    if function_code == 3:
                        response = await client.read_holding_registers(address, count=count, device_id=device_id)
                    else:
                        response = await client.read_input_registers(address, count=count, device_id=device_id)
        except ConnectionException as exc:
            raise PortClosedError(f"{self._config.endpoint}: {where}: connection lost: {exc}") from exc
        except (ModbusException, TimeoutError) as exc:
            # pymodbus raises ModbusIOException for "no response received" and for an undecodable frame.
            raise self._no_valid_answer(client, where) from exc
        except OSError as exc:
            raise PortClosedError(f"{self._config.endpoint}: {where}: {type(exc).__name__}: {exc}") from exc
        return self._check_response(response, function_code, count, where)

    def _no_valid_answer(self, client: ModbusClient, where: str) -> DeviceError:
        if not client.connected:
            return PortClosedError(f"{self._config.endpoint}: {where}: connection lost while waiting")
        raw = self._raw_received()
        if raw:
            return ModbusGarbledResponseError(f"{where}: {len(raw)} bytes but no valid response frame", raw)
        # pymodbus's own text ("No response received after 0 retries") adds nothing to this.
        return ModbusNoResponseError(f"{where}: no response within {self._config.request_timeout_ms} ms")

    def _check_response(
        self, response: ModbusPDU, function_code: FunctionCode, count: int, where: str
    ) -> RegisterResponse:
        if response.isError():
            code = response.exception_code
            raw = bytes([function_code | 0x80, code & 0xFF])
            name = _EXCEPTION_NAMES.get(code, "unknown")
            raise ModbusExceptionResponseError(f"{where}: exception response code {code} ({name})", code, raw)
        registers = tuple(int(register) for register in response.registers)
        if len(registers) != count:
            # The frame as it arrived: a response with no registers would otherwise be quarantined as no bytes.
            raw = self._raw_received() or registers_to_bytes(registers)
            raise ModbusGarbledResponseError(f"{where}: asked for {count} registers, got {len(registers)}", raw)
        return RegisterResponse(registers, registers_to_bytes(registers))

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        # pymodbus passes its whole receive buffer each time bytes arrive, so a buffer that extends the last
        # one replaces it, and a new one (the framer dropped a bad frame) starts a new piece.
        if not sending:
            if self._receiving and not data.startswith(self._receiving) and len(self._received) < RAW_BYTES_MAX:
                self._received += self._receiving[:RAW_BYTES_MAX]
            self._receiving = data
        return data

    def _raw_received(self) -> bytes:
        return bytes(self._received + self._receiving)[:RAW_BYTES_MAX]


@contextlib.contextmanager
def _cancels_kept() -> Iterator[None]:
    """Raise CancelledError after a block (around a pymodbus call) in which a cancel of this task was lost.

    ``Task.cancelling()`` counts the cancels requested and not taken back; asyncio.timeout takes back its own
    when it expires (so this goes outside it), and a count above the one before the block means someone
    cancelled the task and pymodbus's wait_for returned (or raised something else) instead.
    """
    task = asyncio.current_task()
    assert task is not None, "pymodbus calls run in a task"
    cancels_before = task.cancelling()
    try:
        yield
    except Exception as exc:
        if task.cancelling() > cancels_before:
            raise asyncio.CancelledError(_LOST_CANCEL) from exc
        raise
    if task.cancelling() > cancels_before:
        raise asyncio.CancelledError(_LOST_CANCEL)


_LOST_CANCEL = "cancelled during a pymodbus call whose asyncio.wait_for dropped the cancel (Python 3.11)"


_EXCEPTION_NAMES: dict[int, str] = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}
