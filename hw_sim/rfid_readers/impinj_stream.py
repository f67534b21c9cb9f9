"""A simulated Impinj R700 HTTP event stream: ``GET /api/v1/data/stream`` answered with chunked NDJSON.

    async with ImpinjStreamServer(keepalive_ms=30_000) as server:   # server.url → http://127.0.0.1:PORT/...
        await server.play(reads, speedup=20)

Like the reader, it sends one JSON event per line and, when it has had nothing to send for ``keepalive_ms``,
a CR-LF keep-alive. Events wait in a bounded buffer for the (single) client, so a client that reconnects
picks up where the stream broke. Faults: ``drop_after(n)`` cuts the connection in the middle of the n-th
next line (the client sees half a line, then a broken chunked body, and that event is gone, as on a real
reader); ``send_raw_line`` puts arbitrary bytes on the stream (over-long or corrupt lines).

HTTP/1.1 over ``asyncio.start_server``: the request head is read with a size cap and a timeout, optional
basic auth is checked, and the response is ``Transfer-Encoding: chunked``, one chunk per line.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Iterable
from types import TracebackType
from typing import Self

from hw_sim.rfid_readers.formats import EpcEncoding, ReaderItem, impinj_event, in_time_order, json_bytes
from hw_sim.rfid_readers.timing import ReplayClock

__all__ = ["STREAM_PATH", "ImpinjStreamServer"]

log = logging.getLogger(__name__)

STREAM_PATH = "/api/v1/data/stream"
REQUEST_HEAD_BYTES_MAX = 8192
REQUEST_HEAD_TIMEOUT_S = 5.0
WRITE_TIMEOUT_S = 5.0
KEEPALIVE = b"\r\n"


class ImpinjStreamServer:
    """One simulated reader's event stream on ``host``:``port`` (port 0 picks a free one)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        keepalive_ms: int = 30_000,
        username: str | None = None,
        password: str | None = None,
        hostname: str = "impinj-sim",
        epc_encoding: EpcEncoding = "both",
        buffer_max: int = 10_000,
    ) -> None:
        self._host, self._port = host, port
        self._keepalive_s = keepalive_ms / 1000
        self._credentials = None if username is None else f"{username}:{password or ''}"
        self._hostname = hostname
        self._epc_encoding: EpcEncoding = epc_encoding
        self._lines: asyncio.Queue[bytes] = asyncio.Queue(maxsize=buffer_max)
        self._server: asyncio.Server | None = None
        self._current: asyncio.Task[None] | None = None
        self._drop_after_lines: int | None = None
        self.connections_total = 0
        self.lines_sent_total = 0
        self.keepalives_sent_total = 0
        self.lines_cut_total = 0

    @property
    def port(self) -> int:
        assert self._server is not None, "the server is not started"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}{STREAM_PATH}"

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, self._host, self._port, limit=REQUEST_HEAD_BYTES_MAX)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._current is not None:
            self._current.cancel()
            await asyncio.wait({self._current}, timeout=WRITE_TIMEOUT_S)
        if self._server is not None:
            self._server.close()
            async with asyncio.timeout(WRITE_TIMEOUT_S):
                await self._server.wait_closed()

    async def play(self, items: Iterable[ReaderItem], *, speedup: float = 1.0) -> int:
        """Queue every item as an event line at its time (sped up); returns how many were queued."""
        clock = ReplayClock(speedup)
        queued = 0
        for item in in_time_order(items):
            await clock.wait_until(item.seen_at)
            event = impinj_event(item, hostname=self._hostname, epc_encoding=self._epc_encoding)
            await self._lines.put(json_bytes(event))
            queued += 1
        return queued

    async def send_raw_line(self, data: bytes) -> None:
        """Queue arbitrary bytes as one line (a line end is added)."""
        await self._lines.put(data)

    def drop_after(self, lines: int) -> None:
        """Cut the connection halfway through the ``lines``-th next line (1 = the very next one)."""
        assert lines >= 1
        self._drop_after_lines = lines

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # One client at a time, like one agent per reader: a new connection replaces the old one, whose
        # handler would otherwise take the next line off the queue and write it to a dead socket.
        if self._current is not None and not self._current.done():
            self._current.cancel()
        self._current = asyncio.current_task()
        # Replaced, or the server is closing. Python 3.11's start_server logs a handler that ends cancelled as
        # an "Exception in callback", so it ends quietly instead.
        with contextlib.suppress(asyncio.CancelledError):
            await self._serve_connection(reader, writer)

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status = await self._read_request(reader)
            if status != 200:
                await self._respond_error(writer, status)
                return
            self.connections_total += 1
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\nCache-Control: no-cache\r\n\r\n"
            )
            await self._stream(writer)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            log.debug("stream client gone: %s", exc)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError):
                async with asyncio.timeout(WRITE_TIMEOUT_S):
                    await writer.wait_closed()

    async def _read_request(self, reader: asyncio.StreamReader) -> int:
        try:
            async with asyncio.timeout(REQUEST_HEAD_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")  # the reader's limit caps the head's size
        except asyncio.LimitOverrunError:
            return 431
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        parts = request_line.split(" ")
        if len(parts) != 3 or parts[0] != "GET":
            return 405
        if parts[1].split("?")[0] != STREAM_PATH:
            return 404
        if self._credentials is not None:
            headers = {
                name.strip().lower(): value.strip()
                for name, _, value in (line.partition(":") for line in header_lines if line)
            }
            expected = "Basic " + base64.b64encode(self._credentials.encode()).decode("ascii")
            if headers.get("authorization") != expected:
                return 401
        return 200

    async def _respond_error(self, writer: asyncio.StreamWriter, status: int) -> None:
        reasons = {401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed", 431: "Header Too Large"}
        extra = b'WWW-Authenticate: Basic realm="impinj"\r\n' if status == 401 else b""
        writer.write(
            f"HTTP/1.1 {status} {reasons.get(status, 'Error')}\r\n".encode()
            + extra
            + b"Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        async with asyncio.timeout(WRITE_TIMEOUT_S):
            await writer.drain()

    async def _stream(self, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                # asyncio.timeout, never wait_for: Python 3.11's wait_for drops a cancel (a newer client
                # replacing this one) that lands as a line arrives, and this handler would go on streaming.
                async with asyncio.timeout(self._keepalive_s):
                    line = await self._lines.get()
            except TimeoutError:
                await self._write_chunk(writer, KEEPALIVE)
                self.keepalives_sent_total += 1
                continue
            if self._drop_after_lines is not None:
                self._drop_after_lines -= 1
                if self._drop_after_lines == 0:
                    self._drop_after_lines = None
                    # Half a line in a chunk, then the socket closes without the chunked body's end.
                    await self._write_chunk(writer, line[: max(1, len(line) // 2)])
                    self.lines_cut_total += 1
                    return
            await self._write_chunk(writer, line + b"\n")
            self.lines_sent_total += 1

    async def _write_chunk(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        async with asyncio.timeout(WRITE_TIMEOUT_S):
            await writer.drain()
