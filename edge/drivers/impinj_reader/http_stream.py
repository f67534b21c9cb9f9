"""The Impinj HTTP event stream: ``GET /api/v1/data/stream`` held open, NDJSON lines out, reconnecting.

The reader answers with newline-delimited JSON, one event per line, and when it has nothing to send for
30 s it sends a CR-LF keep-alive every 30 s. A read timeout longer than that period (``read_timeout_ms``)
therefore means the stream is dead, not idle. Lines are split here rather than with httpx's
``aiter_lines``, which has no length limit: a line longer than ``payload_bytes_max`` is cut, counted and
handed on as a reject instead of growing without bound. httpx errors are translated here, at this one
boundary, into ``edge.errors.DeviceError``; ``lines()`` never raises for a reader fault.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import httpx

from edge.backoff import Backoff
from edge.drivers.impinj_reader.config import ImpinjReaderConfig
from edge.errors import ConfigError, DeviceError

__all__ = ["ImpinjHttpStream", "LineSplitter", "StreamLine"]

logger = logging.getLogger(__name__)

CLOSE_TIMEOUT_MS = 2000
# Writing the request and waiting for a free connection are local matters; they get a short bound of their own.
WRITE_TIMEOUT_MS = 5000


@dataclass(frozen=True)
class StreamLine:
    """One line of the stream, without its line end. ``cut_bytes`` > 0: the line was longer than the cap and
    only its start is in ``data``; ``complete`` False: the connection dropped before the line ended."""

    data: bytes
    complete: bool = True
    cut_bytes: int = 0

    @property
    def is_keepalive(self) -> bool:
        """A blank line: the reader's CR-LF keep-alive."""
        return self.complete and not self.cut_bytes and not self.data.strip()


class LineSplitter:
    """Splits a byte stream on LF (dropping a CR before it), never holding more than ``line_bytes_max`` bytes."""

    def __init__(self, line_bytes_max: int) -> None:
        assert line_bytes_max > 0
        self._line_bytes_max = line_bytes_max
        self._buffer = bytearray()
        self._cut_bytes = 0  # bytes of the current line dropped past the cap

    def feed(self, chunk: bytes) -> list[StreamLine]:
        lines: list[StreamLine] = []
        start = 0
        while start < len(chunk):
            end = chunk.find(b"\n", start)
            piece = chunk[start:] if end < 0 else chunk[start:end]
            self._keep(piece)
            if end < 0:
                break
            lines.append(self._take(complete=True))
            start = end + 1
        return lines

    def flush(self) -> StreamLine | None:
        """The unfinished line at a disconnect, if any."""
        if not self._buffer and not self._cut_bytes:
            return None
        return self._take(complete=False)

    def _keep(self, piece: bytes) -> None:
        room = self._line_bytes_max - len(self._buffer)
        self._buffer += piece[:room]
        self._cut_bytes += max(0, len(piece) - room)

    def _take(self, *, complete: bool) -> StreamLine:
        data = bytes(self._buffer)
        if complete and data.endswith(b"\r") and not self._cut_bytes:
            data = data[:-1]
        line = StreamLine(data=data, complete=complete, cut_bytes=self._cut_bytes)
        self._buffer.clear()
        self._cut_bytes = 0
        return line


class ImpinjHttpStream:
    """The reader's event stream as an ``async with`` resource whose ``lines()`` yields lines, reconnecting.

    ``transport`` replaces httpx's network transport (tests, the simulated site); ``rng`` drives the jitter.
    """

    def __init__(
        self,
        config: ImpinjReaderConfig,
        *,
        rng: random.Random,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        assert config.stream_url is not None
        self._config = config
        self._url = config.stream_url
        self._transport = transport
        self._backoff = Backoff(
            delay_ms_initial=config.reconnect_delay_ms_initial,
            delay_ms_max=config.reconnect_delay_ms_max,
            rng=rng,
        )
        self._client: httpx.AsyncClient | None = None
        self._available: bool | None = None
        self._iterating = False
        self.connections_total = 0
        self.keepalives_total = 0
        self.lines_total = 0
        self.cut_lines_total = 0

    @property
    def available(self) -> bool:
        """True while the stream is open (since the last successful response, until it breaks)."""
        return self._available is True

    async def __aenter__(self) -> Self:
        config = self._config
        auth = None
        if config.username is not None:
            password = "" if config.password is None else config.password.get_secret_value()
            auth = httpx.BasicAuth(config.username, password)
        self._client = httpx.AsyncClient(
            auth=auth,
            verify=self._tls_verify(),
            transport=self._transport,
            timeout=httpx.Timeout(
                connect=config.connect_timeout_ms / 1000,
                read=config.read_timeout_ms / 1000,
                write=WRITE_TIMEOUT_MS / 1000,
                pool=config.connect_timeout_ms / 1000,
            ),
            # One stream per reader: a bounded pool of one connection.
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=0),
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_MS / 1000):
                await client.aclose()
        except (httpx.HTTPError, OSError, TimeoutError) as exc:
            logger.debug("%s: closing the HTTP client: %s", self._config.name, exc, extra=self._log_fields())

    async def lines(self) -> AsyncGenerator[StreamLine, None]:
        """Yield the stream's lines (keep-alives counted, not yielded), reconnecting with backoff forever.

        A line cut short by a disconnect is yielded with ``complete=False`` so that it is rejected, not lost.
        """
        if self._iterating:
            raise RuntimeError(f"{self._config.name}: lines() is already being iterated")
        assert self._client is not None, "use ImpinjHttpStream as an async context manager"
        self._iterating = True
        try:
            while True:
                if self._available is False:
                    await asyncio.sleep(self._backoff.next_delay_s())
                splitter = LineSplitter(self._config.payload_bytes_max)
                error: DeviceError
                try:
                    # aclosing: a consumer that stops iterating must close the response now, not at GC time.
                    async with aclosing(self._read_stream(self._client, splitter)) as stream_lines:
                        async for line in stream_lines:
                            yield line
                    error = DeviceError(f"{self._url}: the reader ended the stream")
                except httpx.HTTPError as exc:
                    error = _translate(exc, self._url, self._config.read_timeout_ms)
                except DeviceError as exc:
                    error = exc
                partial = splitter.flush()
                if partial is not None:
                    self.cut_lines_total += 1
                    yield partial
                self._mark_unavailable(error)
        finally:
            self._iterating = False

    async def _read_stream(self, client: httpx.AsyncClient, splitter: LineSplitter) -> AsyncGenerator[StreamLine, None]:
        # Every wait in here is bounded by the client's timeouts: connect, then read_timeout_ms per chunk,
        # which the reader's keep-alives keep from expiring on an idle but healthy stream.
        async with client.stream("GET", self._url, headers={"Accept": "application/json"}) as response:
            if response.status_code != httpx.codes.OK:
                hint = " (check username and password)" if response.status_code == httpx.codes.UNAUTHORIZED else ""
                raise DeviceError(f"{self._url}: HTTP {response.status_code} {response.reason_phrase}{hint}")
            self.connections_total += 1
            self._mark_available()
            first_line = True
            async for chunk in response.aiter_bytes():
                for line in splitter.feed(chunk):
                    if first_line:
                        # The stream works: start the backoff afresh. Not on the 200 alone, or a reader that
                        # answers and hangs up at once would be hammered at the initial delay.
                        self._backoff.reset()
                        first_line = False
                    if line.is_keepalive:
                        self.keepalives_total += 1
                        continue
                    self.lines_total += 1
                    if line.cut_bytes:
                        self.cut_lines_total += 1
                    yield line

    def _tls_verify(self) -> ssl.SSLContext | bool:
        if not self._config.tls_verify:
            return False
        # Impinj readers ship a self-signed certificate: tls_ca_file pins it (or the site's CA).
        try:
            return ssl.create_default_context(cafile=self._config.tls_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"{self._config.name}: tls_ca_file {self._config.tls_ca_file!r}: {exc}") from exc

    def _mark_available(self) -> None:
        previous, self._available = self._available, True
        fields = self._log_fields(available=True)
        if previous is False:
            logger.warning("%s: event stream open again", self._config.name, extra=fields)
        else:
            logger.info("%s: event stream open at %s", self._config.name, self._url, extra=fields)

    def _mark_unavailable(self, error: DeviceError) -> None:
        previous, self._available = self._available, False
        fields = self._log_fields(error=str(error), error_kind=type(error).__name__, available=False)
        if previous is False:
            logger.debug("%s: event stream still unavailable: %s", self._config.name, error, extra=fields)
        else:
            logger.warning(
                "%s: event stream lost, reconnecting with backoff: %s", self._config.name, error, extra=fields
            )

    def _log_fields(self, **fields: Any) -> dict[str, Any]:
        return {"device": self._config.name, "url": self._url, **fields}


def _translate(exc: httpx.HTTPError, url: str, read_timeout_ms: int) -> DeviceError:
    """httpx error → ours, saying what it means for a reader stream."""
    if isinstance(exc, httpx.ReadTimeout):
        return DeviceError(f"{url}: nothing, not even a keep-alive, for {read_timeout_ms} ms")
    if isinstance(exc, httpx.RemoteProtocolError):
        return DeviceError(f"{url}: connection dropped mid-stream: {exc}")
    return DeviceError(f"{url}: {type(exc).__name__}: {exc}")
