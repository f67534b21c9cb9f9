"""ScannerDriver over real pseudo-terminals: the test writes as the scanner on the master side, the driver
opens the slave side through pyserial-asyncio-fast exactly as it opens /dev/ttyACM0."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import random
import select
import tty
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.drivers.scanner import Frame, ScannerConfig, ScannerDriver

WAIT_S = 3.0


class Pty:
    """A pseudo-terminal pair; the master side plays the scanner."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self._open_fds = (self.master, self.slave)

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def read_answer(self, timeout_s: float = 1.0) -> bytes:
        """What the driver wrote to the scanner, or b'' if nothing came within the timeout."""
        ready, _, _ = select.select([self.master], [], [], timeout_s)
        return os.read(self.master, 64) if ready else b""

    def close(self) -> None:
        # Once only: a second close could hit an fd number the kernel has since handed to someone else.
        fds, self._open_fds = self._open_fds, ()
        for fd in fds:
            os.close(fd)


@pytest.fixture
def make_pty() -> Iterator[Callable[[], Pty]]:
    made: list[Pty] = []

    def make() -> Pty:
        made.append(Pty())
        return made[-1]

    yield make
    for pty in made:
        pty.close()


def point_symlink(link: Path, target: str) -> None:
    """Repoint ``link`` atomically, as udev does for /dev/serial/by-id/…."""
    staging = link.with_name(link.name + ".new")
    staging.unlink(missing_ok=True)
    staging.symlink_to(target)
    os.replace(staging, link)


def config(port: str | Path, **overrides: Any) -> ScannerConfig:
    table: dict[str, Any] = {
        "name": "scanner-test",
        "port": str(port),
        "read_point": "dock-test",
        "reconnect_delay_ms_initial": 20,
        "reconnect_delay_ms_max": 100,
    }
    return ScannerConfig.model_validate(table | overrides)


@contextlib.asynccontextmanager
async def running(scanner_config: ScannerConfig) -> AsyncIterator[tuple[ScannerDriver, AsyncIterator[Frame]]]:
    async with (
        ScannerDriver(scanner_config, rng=random.Random(7)) as scanner,
        contextlib.aclosing(scanner.frames()) as frames,
    ):
        yield scanner, frames


async def next_frame(frames: AsyncIterator[Frame]) -> Frame:
    return await asyncio.wait_for(anext(frames), WAIT_S)


async def wait_until(condition: Callable[[], bool]) -> None:
    """Poll the driver's state: it exposes counters and a flag, not events, by design."""
    async with asyncio.timeout(WAIT_S):
        while not condition():
            await asyncio.sleep(0.005)


def port_is_locked(path: str) -> bool:
    """True while some open file holds the exclusive lock pyserial takes with exclusive=True."""
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        assert exc.errno == errno.EWOULDBLOCK
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


async def test_frames_written_by_the_scanner_arrive_through_the_driver(make_pty: Callable[[], Pty]) -> None:
    pty = make_pty()
    async with running(config(pty.path)) as (scanner, frames):
        assert scanner.available
        pty.write(b"]E05901234123457\r\n]C100106141412345678908\r")
        pty.write(b"\n]d20109501101530003")
        pty.write(b"17250331\r\n")
        received = [await next_frame(frames) for _ in range(3)]
        assert [frame.data for frame in received] == [
            b"]E05901234123457",
            b"]C100106141412345678908",
            b"]d2010950110153000317250331",
        ]
        assert scanner.frames_total == 3


async def test_idle_gap_framing_yields_a_scan_without_terminator_after_the_silence(
    make_pty: Callable[[], Pty],
) -> None:
    pty = make_pty()
    async with running(config(pty.path, framing="idle_gap", idle_gap_ms=60)) as (_, frames):
        loop = asyncio.get_running_loop()
        pty.write(b"]C10109501101530003")
        await asyncio.sleep(0.02)  # a pause shorter than the gap stays inside the scan
        pty.write(b"17250331")
        last_byte_s = loop.time()
        frame = await next_frame(frames)
        assert frame.data == b"]C1010950110153000317250331"
        assert loop.time() - last_byte_s >= 0.06


async def test_terminator_mode_falls_back_to_the_idle_gap(make_pty: Callable[[], Pty]) -> None:
    pty = make_pty()
    async with running(config(pty.path, idle_gap_ms=50)) as (_, frames):
        pty.write(b"]E05901234123457")
        assert (await next_frame(frames)).data == b"]E05901234123457"


async def test_acknowledge_sends_ack_and_nak_to_the_scanner(make_pty: Callable[[], Pty]) -> None:
    pty = make_pty()
    async with running(config(pty.path, ack_nak=True)) as (scanner, frames):
        pty.write(b"]E05901234123457\r\n")
        await next_frame(frames)
        await scanner.acknowledge(True)
        assert pty.read_answer() == b"\x06"
        pty.write(b"HELLO\r\n")
        await next_frame(frames)
        await scanner.acknowledge(False)
        assert pty.read_answer() == b"\x15"


async def test_acknowledge_sends_nothing_without_ack_nak(make_pty: Callable[[], Pty]) -> None:
    pty = make_pty()
    async with running(config(pty.path)) as (scanner, frames):
        pty.write(b"]E05901234123457\r\n")
        await next_frame(frames)
        await scanner.acknowledge(True)
        assert pty.read_answer(timeout_s=0.1) == b""


async def test_port_vanishing_and_coming_back_behind_the_symlink_is_reopened(
    make_pty: Callable[[], Pty], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pty_a = make_pty()
    link = tmp_path / "usb-scanner-if00"
    point_symlink(link, pty_a.path)
    async with running(config(link)) as (scanner, frames):
        pty_a.write(b"]E05901234123457\r\n")
        assert (await next_frame(frames)).data == b"]E05901234123457"
        pending = asyncio.ensure_future(next_frame(frames))

        with caplog.at_level(logging.WARNING, logger="edge.drivers.scanner.driver"):
            pty_a.close()
            await wait_until(lambda: not scanner.available)
            await asyncio.sleep(0.2)  # several failed reopens: still one warning
            pty_b = make_pty()
            point_symlink(link, pty_b.path)
            await wait_until(lambda: scanner.available)
            pty_b.write(b"]C100106141412345678908\r\n")
            assert (await pending).data == b"]C100106141412345678908"

        assert scanner.reconnects_total >= 1
        messages = [record.getMessage() for record in caplog.records]
        assert sum("unavailable" in message for message in messages) == 1, messages
        assert sum("available again" in message for message in messages) == 1, messages


async def test_scanner_missing_at_start_is_opened_when_it_appears(make_pty: Callable[[], Pty], tmp_path: Path) -> None:
    link = tmp_path / "not-plugged-in-yet"
    async with running(config(link)) as (scanner, frames):
        assert not scanner.available
        pending = asyncio.ensure_future(next_frame(frames))
        await asyncio.sleep(0.1)
        pty = make_pty()
        point_symlink(link, pty.path)
        await wait_until(lambda: scanner.available)
        pty.write(b"]E05901234123457\r\n")
        assert (await pending).data == b"]E05901234123457"
        assert scanner.reconnects_total == 0


async def test_partial_scan_cut_by_a_vanishing_port_is_handed_over(make_pty: Callable[[], Pty]) -> None:
    pty = make_pty()
    async with running(config(pty.path, idle_gap_ms=2000)) as (scanner, frames):
        pty.write(b"]C10109501")
        pending = asyncio.ensure_future(next_frame(frames))
        await asyncio.sleep(0.05)
        pty.close()
        assert (await pending).data == b"]C10109501"
        assert not scanner.available


async def test_acknowledge_on_a_vanished_port_is_logged_not_raised(
    make_pty: Callable[[], Pty], caplog: pytest.LogCaptureFixture
) -> None:
    pty = make_pty()
    async with running(config(pty.path, ack_nak=True)) as (scanner, frames):
        pty.write(b"]E05901234123457\r\n")
        await next_frame(frames)
        pending = asyncio.ensure_future(next_frame(frames))
        pty.close()
        await wait_until(lambda: not scanner.available)
        with caplog.at_level(logging.WARNING, logger="edge.drivers.scanner.driver"):
            await scanner.acknowledge(True)
        assert any("ACK not sent" in record.getMessage() for record in caplog.records)
        pending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pending


async def test_cancelling_the_reader_closes_the_port(make_pty: Callable[[], Pty]) -> None:
    pty = make_pty()
    async with ScannerDriver(config(pty.path), rng=random.Random(7)) as scanner:
        assert port_is_locked(pty.path)

        async def consume() -> None:
            async for _ in scanner.frames():
                pass

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.05)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert not scanner.available
        assert not port_is_locked(pty.path)


async def test_leaving_the_context_closes_the_port(make_pty: Callable[[], Pty]) -> None:
    pty = make_pty()
    async with ScannerDriver(config(pty.path), rng=random.Random(7)) as scanner:
        assert scanner.available
    assert not scanner.available
    assert not port_is_locked(pty.path)


async def test_opener_gets_line_settings_and_a_pyserial_url_unresolved() -> None:
    calls: list[dict[str, Any]] = []

    async def refusing_opener(**kwargs: Any) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        calls.append(kwargs)
        raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")

    settings = config("socket://127.0.0.1:4001", baudrate=19200, bytesize=7, parity="E", stopbits=2)
    async with ScannerDriver(settings, rng=random.Random(7), open_serial=refusing_opener) as scanner:
        assert not scanner.available
    assert calls == [
        {
            "url": "socket://127.0.0.1:4001",
            "baudrate": 19200,
            "bytesize": 7,
            "parity": "E",
            "stopbits": 2,
            "exclusive": True,
        }
    ]
