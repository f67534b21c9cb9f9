"""A null-modem cable made of two pseudo-terminals, optionally as slow as a real serial line.

    modem = PtyNullModem(link=Path("/tmp/rs485-0"), baudrate=9600)
    modem.open()            # the simulator opens modem.device_side; the gateway opens the link
    ...
    modem.close()

pymodbus's ``ModbusSerialServer`` and the gateway's ``AsyncModbusSerialClient`` each need a serial device
*path*, and a single pty offers only one (the master side is a file descriptor). So each side gets a pty of
its own, both in raw mode, and the event loop copies bytes between the two masters (no thread). The gateway
opens a stable symlink to its side, as it would open ``/dev/serial/by-id/...``.

With ``baudrate`` set, each chunk is delivered only when its last character would have arrived on a line at
that speed (``bits_per_character`` per byte, back to back, one direction at a time: RS-485 is half duplex),
so the bus time of a 9600-baud line is felt for real; pyserial's own baud setting means nothing on a pty.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from pathlib import Path

__all__ = ["PtyNullModem"]

READ_BYTES_MAX = 4096


class _Line:
    """The one wire both directions share: RS-485 is half duplex."""

    def __init__(self, character_time_s: float | None) -> None:
        self.character_time_s = character_time_s
        self.free_at = 0.0


class _Direction:
    """Bytes from one master to the other, paced like a serial line when a baud rate is set."""

    def __init__(self, source: int, target: int, line: _Line) -> None:
        self.source = source
        self.target = target
        self._line = line
        self.bytes_total = 0
        self.closed = False

    def on_readable(self) -> None:
        try:
            data = os.read(self.source, READ_BYTES_MAX)
        except OSError:
            return  # EIO: nobody holds the other end open; nothing to carry
        if not data:
            return
        self.bytes_total += len(data)
        if self._line.character_time_s is None:
            self._deliver(data)
            return
        loop = asyncio.get_running_loop()
        start = max(loop.time(), self._line.free_at)
        self._line.free_at = start + len(data) * self._line.character_time_s
        loop.call_at(self._line.free_at, self._deliver, data)

    def _deliver(self, data: bytes) -> None:
        if self.closed:
            # A paced chunk still due after close(): its fd number may belong to a newer pty by now.
            return
        with contextlib.suppress(BlockingIOError, OSError):
            # A full pty buffer drops bytes, as an overrun UART would.
            os.write(self.target, data)


class PtyNullModem:
    """Two raw ptys joined back to back; see the module docstring."""

    def __init__(self, link: Path, *, baudrate: int | None = None, bits_per_character: int = 11) -> None:
        self.link = link
        self._character_time_s = None if baudrate is None else bits_per_character / baudrate
        self._fds: list[int] = []
        self._directions: list[_Direction] = []
        self.device_side = ""
        """The pty the simulated devices open."""
        self.gateway_side = ""
        """The pty behind ``link``."""

    def open(self) -> None:
        device_master, device_slave = os.openpty()
        gateway_master, gateway_slave = os.openpty()
        self._fds = [device_master, device_slave, gateway_master, gateway_slave]
        for fd in (device_slave, gateway_slave):
            tty.setraw(fd)  # no echo, no line editing: bytes pass as a serial line carries them
        for fd in (device_master, gateway_master):
            os.set_blocking(fd, False)
        self.device_side, self.gateway_side = os.ttyname(device_slave), os.ttyname(gateway_slave)
        self.link.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.link.with_name(self.link.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        temporary.symlink_to(self.gateway_side)
        os.replace(temporary, self.link)
        loop = asyncio.get_running_loop()
        line = _Line(self._character_time_s)
        self._directions = [
            _Direction(device_master, gateway_master, line),
            _Direction(gateway_master, device_master, line),
        ]
        for direction in self._directions:
            loop.add_reader(direction.source, direction.on_readable)

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        for direction in self._directions:
            loop.remove_reader(direction.source)
            direction.closed = True
        # The slaves are ours too and closed last: closing them first would hang up the line for the peers.
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds, self._directions = [], []
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()

    @property
    def bytes_total(self) -> int:
        """Bytes carried in both directions."""
        return sum(direction.bytes_total for direction in self._directions)
