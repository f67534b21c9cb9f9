"""A pseudo-terminal standing in for a scanner's serial port, reachable through a stable symlink.

The gateway opens the symlink (as it would open /dev/serial/by-id/usb-...). `replug()` closes the pty
and makes a new one behind the same symlink, as USB re-enumeration does (ttyACM0 → ttyACM1).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from pathlib import Path


class PtyPort:
    def __init__(self, link: Path) -> None:
        self.link = link
        self._master = -1
        self._slave = -1
        self.slave_name = ""
        self._incoming: asyncio.Queue[bytes] = asyncio.Queue(maxsize=1024)
        self.replugs_total = 0

    def open(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line editing: bytes pass as a serial line would carry them
        self._master, self._slave = master, slave
        self.slave_name = os.ttyname(slave)
        self.link.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.link.with_name(self.link.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        temporary.symlink_to(self.slave_name)
        os.replace(temporary, self.link)  # atomic: the gateway never sees a missing link mid-swap
        os.set_blocking(master, False)
        asyncio.get_running_loop().add_reader(master, self._on_readable)

    def _on_readable(self) -> None:
        try:
            data = os.read(self._master, 4096)
        except OSError:
            # EIO: no process holds the slave open (the gateway is down); nothing to read.
            return
        if data and not self._incoming.full():
            self._incoming.put_nowait(data)

    def write(self, data: bytes) -> None:
        """Send bytes towards the gateway; lost, like on a real line, if the buffer is full."""
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._master, view)
            except BlockingIOError:
                return
            view = view[written:]

    def discard_incoming(self) -> None:
        """Forget answers that arrived too late to count (a late ACK must not answer the next scan)."""
        while not self._incoming.empty():
            self._incoming.get_nowait()

    async def read(self, timeout_s: float) -> bytes:
        """Bytes the gateway sent back (ACK/NAK), or b"" after `timeout_s`."""
        try:
            # asyncio.timeout, never wait_for: Python 3.11's wait_for drops a cancel that lands as bytes arrive.
            async with asyncio.timeout(timeout_s):
                return await self._incoming.get()
        except TimeoutError:
            return b""

    def close(self) -> None:
        """Unplug: remove the link (as udev removes /dev/serial/by-id/... links), then the pty.

        A link left behind would name a /dev/pts/N the kernel soon gives to someone else: a gateway
        re-opening it would then read another program's line and acknowledge its frames.
        """
        if self._master >= 0:
            with contextlib.suppress(OSError):
                if os.readlink(self.link) == self.slave_name:
                    self.link.unlink()
            asyncio.get_running_loop().remove_reader(self._master)
            os.close(self._master)
            # Keep the slave open until now: closing it earlier hangs up the line for the gateway.
            os.close(self._slave)
            self._master = self._slave = -1

    def replug(self) -> None:
        """Move to a new pty, then drop the old one: like ttyACM0 → ttyACM1 after a USB reset."""
        old = (self._master, self._slave)
        asyncio.get_running_loop().remove_reader(self._master)
        self.open()
        for fd in old:
            os.close(fd)
        self.replugs_total += 1
