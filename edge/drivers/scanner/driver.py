"""Asyncio driver for one serial (RS-232 / USB-CDC) barcode scanner: bytes in, frames out, ACK/NAK back.

    async with ScannerDriver(config, rng=random.Random(seed)) as scanner:
        async for frame in scanner.frames():
            outcome = decode_frame(frame, config.decode_options())
            ...  # commit the event, or the quarantine row, to the outbox
            await scanner.acknowledge(isinstance(outcome, ScanDecoded))

The driver outlives the device. A port that vanishes (cable pulled, USB re-enumeration) or cannot be opened
is retried with capped, jittered exponential backoff, re-resolving the configured path (a
/dev/serial/by-id/… symlink) on every open, and each change of availability is logged once. pyserial and OS
errors are translated here, at this one boundary, into ``edge.errors.PortClosedError`` / ``DeviceError``;
the frame iterator itself never raises for a device fault.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import random
from collections.abc import AsyncGenerator, Awaitable, Callable
from types import TracebackType
from typing import Any, Self

from serial_asyncio_fast import open_serial_connection

from edge.backoff import Backoff
from edge.drivers.scanner.config import ScannerConfig
from edge.drivers.scanner.framing import Frame, ScanFramer
from edge.errors import DeviceError, PortClosedError

__all__ = ["ACK", "NAK", "ScannerDriver", "SerialOpener"]

logger = logging.getLogger(__name__)

ACK = b"\x06"
NAK = b"\x15"
READ_BYTES_MAX = 4096
# No I/O await is unbounded: a quiet scanner just loops on this wait.
READ_WAIT_MS_MAX = 1000
OPEN_TIMEOUT_MS = 5000
CLOSE_TIMEOUT_MS = 2000
WRITE_TIMEOUT_MS = 1000
# errno values of an open() that mean "the device is not there (yet)", as opposed to refused or busy.
_PORT_GONE_ERRNOS = frozenset({errno.ENOENT, errno.ENODEV, errno.ENXIO, errno.EIO})

SerialOpener = Callable[..., Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]
"""Opens a serial port: ``serial_asyncio_fast.open_serial_connection`` or a test/simulation stand-in."""


class ScannerDriver:
    """One serial scanner as an ``async with`` resource whose ``frames()`` yields what it scans.

    ``rng`` drives the reconnect jitter; ``open_serial`` opens the port (``serial_asyncio_fast`` by
    default) so that tests and the simulated site can inject faults. Idle gaps are timed on the running
    event loop's clock.
    """

    def __init__(
        self,
        config: ScannerConfig,
        *,
        rng: random.Random,
        open_serial: SerialOpener = open_serial_connection,
    ) -> None:
        self._config = config
        self._open_serial = open_serial
        self._backoff = Backoff(
            delay_ms_initial=config.reconnect_delay_ms_initial,
            delay_ms_max=config.reconnect_delay_ms_max,
            rng=rng,
        )
        self._framer = ScanFramer(config.terminator_bytes, config.frame_bytes_max, config.idle_gap_ms, config.framing)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        # Last reported availability, so that only changes are logged; None: no open attempted yet.
        self._available: bool | None = None
        self._opened_before = False
        self._iterating = False
        # Milliseconds spent waiting for bytes; see _read_frames for why this is not wall time.
        self._idle_clock_ms = 0.0
        self._frames_total = 0
        self._reconnects_total = 0

    @property
    def available(self) -> bool:
        """True while the port is open."""
        return self._writer is not None

    @property
    def frames_total(self) -> int:
        """Frames yielded since this driver was made."""
        return self._frames_total

    @property
    def reconnects_total(self) -> int:
        """Successful reopens after the port had been open and was lost."""
        return self._reconnects_total

    @property
    def discarded_bytes_total(self) -> int:
        """Bytes dropped from frames longer than ``frame_bytes_max``."""
        return self._framer.discarded_bytes_total

    async def __aenter__(self) -> Self:
        """Try to open the port once; a scanner that is not there yet is retried by ``frames()``."""
        await self._try_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._close_port()

    async def frames(self) -> AsyncGenerator[Frame, None]:
        """Yield frames as the scanner sends them, reconnecting for as long as it is iterated.

        Device faults never escape: the port is closed, the pending partial frame is yielded (it will be
        rejected, not lost), and the port is reopened after a backoff. Cancelling closes the port.
        """
        if self._iterating:
            raise RuntimeError(f"scanner {self._config.name}: frames() is already being iterated")
        self._iterating = True
        try:
            while True:
                reader = await self._connected_reader()
                for frame in await self._read_frames(reader):
                    self._frames_total += 1
                    logger.debug(
                        "scanner %s: frame of %d bytes",
                        self._config.name,
                        len(frame.data),
                        extra=self._log_fields(frame_bytes=len(frame.data), overflow=frame.overflow),
                    )
                    yield frame
        except asyncio.CancelledError:
            await self._close_port()
            raise
        finally:
            self._iterating = False

    async def acknowledge(self, ok: bool) -> bool:
        """Answer the scanner for the last frame: ACK (0x06) when ``ok``, NAK (0x15) when rejected.

        Contract: the agent calls this only after the event, or the quarantine row, for that frame is
        committed to the outbox. A crash before the commit then leaves the scan unacknowledged, and the
        scanner retransmits or signals the operator, instead of the scan being lost. With NAK the scanner
        beeps an error and may retransmit the same data (Zebra: up to 3 times).

        A no-op unless ``ack_nak`` is configured. A port that vanished in between is logged, not raised.
        Returns whether the answer reached the port (False with ``ack_nak`` off): a scanner that never got
        its ACK will resend the frame, and the caller must still recognise that as a retransmission.
        """
        if not self._config.ack_nak:
            return False
        answer = ACK if ok else NAK
        writer = self._writer
        if writer is None or writer.is_closing():
            logger.warning(
                "scanner %s: port closed, %s not sent",
                self._config.name,
                "ACK" if ok else "NAK",
                extra=self._log_fields(ok=ok),
            )
            return False
        try:
            writer.write(answer)
            async with asyncio.timeout(WRITE_TIMEOUT_MS / 1000):
                await writer.drain()
        except Exception as exc:
            # The transport has already failed the stream; the read loop will see it and reconnect.
            error = _translate(exc, f"writing {'ACK' if ok else 'NAK'} to {self._config.port}", reading=True)
            logger.warning("scanner %s: %s", self._config.name, error, extra=self._log_fields(ok=ok))
            return False
        return True

    async def _connected_reader(self) -> asyncio.StreamReader:
        while self._reader is None:
            if self._available is not None:  # the last attempt failed or the port was lost: back off
                await asyncio.sleep(self._backoff.next_delay_s())
            await self._try_open()
        return self._reader

    async def _try_open(self) -> None:
        try:
            await self._open()
        except DeviceError as exc:
            self._mark_unavailable(exc)

    async def _open(self) -> None:
        # Resolved on every open: after a replug the by-id symlink points at a new /dev/ttyACM*. A lookup
        # in /dev (an in-memory filesystem) does not block the loop in any way that matters. pyserial URLs
        # (socket://, rfc2217:// for serial device servers) are not paths and pass through.
        port = self._config.port
        resolved_port = port if "://" in port else os.path.realpath(port)  # noqa: ASYNC240
        try:
            async with asyncio.timeout(OPEN_TIMEOUT_MS / 1000):
                self._reader, self._writer = await self._open_serial(
                    url=resolved_port,
                    baudrate=self._config.baudrate,
                    bytesize=self._config.bytesize,
                    parity=self._config.parity,
                    stopbits=self._config.stopbits,
                    # A second process on the same port would steal half of the scans: refuse to share.
                    exclusive=True,
                )
        except (OSError, ValueError) as exc:
            raise _translate(exc, f"cannot open {self._config.port} ({resolved_port})", reading=False) from exc
        self._discard_stale_input()
        if self._opened_before:
            self._reconnects_total += 1
        self._opened_before = True
        self._backoff.reset()
        self._mark_available(resolved_port)

    def _discard_stale_input(self) -> None:
        """Drop bytes that sat in the port's buffer while nobody was reading.

        They were sent to a host that was not listening (the agent was down): a scanner with ACK/NAK
        resends what we never acknowledged, and a stale copy read now would be stored twice.
        """
        transport = self._writer.transport if self._writer is not None else None
        port = getattr(transport, "serial", None)
        if port is not None:
            try:
                port.reset_input_buffer()
            except (OSError, ValueError) as exc:
                logger.debug("scanner %s: could not flush input: %s", self._config.name, exc)

    async def _read_frames(self, reader: asyncio.StreamReader) -> list[Frame]:
        """Wait for bytes up to the framer's idle deadline; return the frames that completes.

        The idle gap is measured on a clock that runs only while waiting here. While the consumer is busy
        with a frame (committing it, acknowledging it) bytes pile up in the OS buffer; timing them by wall
        clock would see a false gap and cut the next scan in two.
        """
        deadline_ms = self._framer.deadline_ms()
        wait_ms = READ_WAIT_MS_MAX if deadline_ms is None else deadline_ms - self._idle_clock_ms
        started = asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout(max(0.0, min(wait_ms, READ_WAIT_MS_MAX)) / 1000):
                data = await reader.read(READ_BYTES_MAX)
        except TimeoutError:
            self._advance_idle_clock(started)
            return self._framer.flush_idle(int(self._idle_clock_ms))
        except Exception as exc:
            # The stream reader raises only what the serial transport put into it: a device fault.
            return await self._lose_port(_translate(exc, f"reading {self._config.port}", reading=True))
        self._advance_idle_clock(started)
        if not data:
            return await self._lose_port(PortClosedError(f"reading {self._config.port}: end of file"))
        return self._framer.feed(data, int(self._idle_clock_ms))

    def _advance_idle_clock(self, started: float) -> None:
        self._idle_clock_ms += (asyncio.get_running_loop().time() - started) * 1000

    async def _lose_port(self, error: DeviceError) -> list[Frame]:
        await self._close_port()
        self._mark_unavailable(error)
        # A scan cut short by the fault is handed over to be rejected, not kept for a port that may
        # come back with other data.
        return self._framer.flush()

    async def _close_port(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is None:
            return
        writer.close()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_MS / 1000):
                await writer.wait_closed()
        except Exception as exc:
            # A port that failed reports that failure again on close; it is closed all the same.
            logger.debug("scanner %s: port closed with error: %s", self._config.name, exc, extra=self._log_fields())

    def _mark_available(self, resolved_port: str) -> None:
        previous, self._available = self._available, True
        fields = self._log_fields(resolved_port=resolved_port, available=True)
        if previous is False:
            logger.warning("scanner %s: available again on %s", self._config.name, resolved_port, extra=fields)
        else:
            logger.info("scanner %s: open on %s", self._config.name, resolved_port, extra=fields)

    def _mark_unavailable(self, error: DeviceError) -> None:
        previous, self._available = self._available, False
        fields = self._log_fields(error=str(error), error_kind=type(error).__name__, available=False)
        if previous is False:
            logger.debug("scanner %s: still unavailable: %s", self._config.name, error, extra=fields)
        else:
            logger.warning(
                "scanner %s: unavailable, reopening with backoff: %s", self._config.name, error, extra=fields
            )

    def _log_fields(self, **fields: Any) -> dict[str, Any]:
        return {"device": self._config.name, "port": self._config.port, **fields}


def _translate(exc: BaseException, what: str, *, reading: bool) -> DeviceError:
    """pyserial/OS error → ours. On an open port every failure means the port is gone; on open, only
    "no such device" does (permission denied or a port locked by another process is a DeviceError)."""
    if isinstance(exc, DeviceError):
        return exc
    message = f"{what}: {type(exc).__name__}: {exc}"
    if reading or getattr(exc, "errno", None) in _PORT_GONE_ERRNOS:
        return PortClosedError(message)
    return DeviceError(message)
