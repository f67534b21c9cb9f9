"""Helpers for the reconciliation tests: the site they reconcile, a tiny real HTTP server, a clock turned by hand.

The site (event times 2025-01-31T12:00:00Z + seq s):
- gateway gw-dock4 says hello with oldest_seq 3: seqs 1-2 are a gap (lost);
- seq 3: ADD 100 of GTIN_A (class A, 10.00) at the dock     seq 4: ADD 50 of GTIN_B (class B, 2.50) at the dock
- seq 5: ADD 20 of GTIN_C (class C, 4.00) in the aisle      seq 6: tags 2001-2003 of GTIN_A seen in the aisle
- seq 7: tag 2004 of GTIN_A seen at door A                 seq 8: an invalid event (quarantined)
- seqs 3-4 sent again (2 duplicates).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from cloud_testkit import DOCK, GATEWAY, OUTBOX, STORAGE, Uplink, gtin, item, make_event
from grpc import aio
from tallyport.v1 import events_pb2

from cloud.masterdata.models import Sku

# 2025-01-31T12:00:00Z, as cloud_testkit.BASE_TIME_S.
BASE_TIME_US = 1_738_324_800_000_000
HEADER_BYTES_MAX = 64 * 1024

GTIN_A = gtin("0950110153000")  # 09501101530003
GTIN_B = gtin("0061414100001")
GTIN_C = gtin("1061414107346")
GTIN_UNKNOWN = gtin("0061414100002")  # not in the SKU master
DOOR_A = "urn:tallyport:loc:dc1:door-a"
SKUS = [
    Sku(GTIN_A, "A item", 10.0, abc_class="A"),
    Sku(GTIN_B, "B item", 2.5, abc_class="B"),
    Sku(GTIN_C, "C item", 4.0, abc_class="C"),
]


def quantity_event(seq: int, gtin_14: str, quantity: float, location: str) -> events_pb2.Event:
    return make_event(
        seq,
        action=events_pb2.ACTION_ADD,
        biz_location=location,
        quantities=[events_pb2.QuantityElement(gtin=gtin_14, quantity=quantity)],
    )


def site_events() -> list[events_pb2.Event]:
    bad = make_event(8, quantities=[events_pb2.QuantityElement(gtin="09501101530004", quantity=1)])
    return [
        quantity_event(3, GTIN_A, 100, DOCK),
        quantity_event(4, GTIN_B, 50, DOCK),
        quantity_event(5, GTIN_C, 20, STORAGE),
        make_event(6, biz_location=STORAGE, objects=[item(GTIN_A, serial) for serial in ("2001", "2002", "2003")]),
        make_event(7, biz_location=DOOR_A, objects=[item(GTIN_A, "2004")]),
        bad,
    ]


async def stream_the_site(channel: aio.Channel) -> None:
    async with Uplink(channel) as uplink:
        await uplink.hello(GATEWAY, OUTBOX, oldest_seq=3)
        ack = await uplink.send(1, site_events())
        assert (ack.committed_through_seq, ack.accepted, len(ack.rejects)) == (8, 5, 1)
        again = await uplink.send(2, site_events()[:2])
        assert again.duplicates == 2
        await uplink.finish()


class ManualClock:
    """`clock()` returns `now_us`; tests move it with `advance`."""

    def __init__(self, now_us: int = BASE_TIME_US) -> None:
        self.now_us = now_us

    def __call__(self) -> int:
        return self.now_us

    def advance(self, seconds: float) -> None:
        self.now_us += round(seconds * 1_000_000)


class SnapshotHttpServer:
    """A minimal HTTP/1.1 server on 127.0.0.1 answering every GET with the configured status and body.

    `hang = True` makes it accept and read the request but never answer (a source that stalls);
    `chunked = True` sends the body without Content-Length. `close()` takes it down for real: new
    connections are refused, as when the ERP is down.
    """

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.status = 200
        self.body = b""
        self.hang = False
        self.chunked = False
        self.requests = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/onhand"

    def answer_json(self, document: Any) -> None:
        self.status = 200
        self.body = json.dumps(document).encode()

    async def start(self) -> SnapshotHttpServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
        for task in list(self._handlers):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            assert len(head) < HEADER_BYTES_MAX and head.startswith(b"GET ")
            self.requests += 1
            if self.hang:
                await asyncio.Event().wait()  # until close() cancels it
            reason = {200: "OK", 503: "Service Unavailable"}.get(self.status, "Status")
            lines = [f"HTTP/1.1 {self.status} {reason}", "Content-Type: application/json", "Connection: close"]
            if self.chunked:
                lines.append("Transfer-Encoding: chunked")
                body = f"{len(self.body):X}\r\n".encode() + self.body + b"\r\n0\r\n\r\n"
            else:
                lines.append(f"Content-Length: {len(self.body)}")
                body = self.body
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client gave up (a timeout test): nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self._handlers.discard(task)
