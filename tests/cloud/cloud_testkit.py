"""Helpers for the cloud tests: valid events on demand, a gateway-side uplink client, store configs."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg
from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio
from psycopg import sql
from tallyport.v1 import events_pb2, ingest_pb2, ingest_pb2_grpc

from cloud.config import CloudConfig
from cloud.ingest.validation import gs1_check_digit
from cloud.store import Store

GATEWAY = "gw-dock4"
OUTBOX = "outbox-1"
DOCK = "urn:tallyport:loc:dc1:dock-4"
STORAGE = "urn:tallyport:loc:dc1:aisle-7"
READ_POINT = "urn:tallyport:rp:dc1:door-4"
# 2025-01-31T12:00:00Z: a plausible event time.
BASE_TIME_S = 1_738_324_800
# `await opener(**store_settings)`: the store under test (the `open_test_store` fixture).
StoreOpener = Callable[..., Awaitable[Store]]
# Statements the tests send PostgreSQL on the side must not hang on a lock a broken test left behind.
ADMIN_STATEMENT_TIMEOUT_MS = 10_000
ADMIN_CONNECT_TIMEOUT_S = 3


def gtin(data_digits: str) -> str:
    """A GTIN-14 from 13 data digits, with its check digit."""
    assert len(data_digits) == 13
    return data_digits + str(gs1_check_digit(data_digits))


def sscc(data_digits: str) -> str:
    """An SSCC-18 from 17 data digits, with its check digit."""
    assert len(data_digits) == 17
    return data_digits + str(gs1_check_digit(data_digits))


GTIN_A = gtin("0950110153000")  # 09501101530003
GTIN_B = gtin("0061414100001")


def item(gtin_14: str = GTIN_A, serial: str = "1001") -> events_pb2.IdentifiedObject:
    """A serialised trade item as the edge would describe it."""
    return events_pb2.IdentifiedObject(
        id=f"https://id.gs1.org/01/{gtin_14}/21/{serial}",
        epc_uri=f"urn:epc:id:sgtin:{gtin_14[1:8]}.{gtin_14[0]}{gtin_14[8:13]}.{serial}",
        epc_hex=f"30{int(serial):022X}",
        gtin=gtin_14,
        serial=serial,
    )


def event_id_for(gateway_id: str, seq: int, salt: str = "") -> str:
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{gateway_id}/{seq}/{salt}')}"


def make_event(
    seq: int,
    *,
    gateway_id: str = GATEWAY,
    event_id: str | None = None,
    time_s: int | None = None,
    biz_step: int = events_pb2.BIZ_STEP_RECEIVING,
    action: int = events_pb2.ACTION_OBSERVE,
    disposition: int = events_pb2.DISPOSITION_UNSPECIFIED,
    biz_location: str = DOCK,
    objects: Sequence[events_pb2.IdentifiedObject] | None = None,
    quantities: Sequence[events_pb2.QuantityElement] = (),
    event_type: int = events_pb2.EVENT_TYPE_OBJECT,
    parent: events_pb2.IdentifiedObject | None = None,
) -> events_pb2.Event:
    """A valid event (unless the caller breaks it): one item seen at the dock by default."""
    if objects is None:
        objects = [] if quantities else [item(serial=str(1000 + seq))]
    event = events_pb2.Event(
        event_id=event_id or event_id_for(gateway_id, seq),
        event_time=Timestamp(seconds=time_s if time_s is not None else BASE_TIME_S + seq),
        event_time_offset_minutes=60,
        gateway_id=gateway_id,
        seq=seq,
        type=event_type,  # type: ignore[arg-type]
        read_point=events_pb2.ReadPoint(id=READ_POINT, device_id="portal-4", antenna="1"),
        biz_location=biz_location,
        action=action,  # type: ignore[arg-type]
        biz_step=biz_step,  # type: ignore[arg-type]
        disposition=disposition,  # type: ignore[arg-type]
        objects=objects,
        quantities=quantities,
        event_class=events_pb2.EVENT_CLASS_MOVEMENT,
    )
    if parent is not None:
        event.parent.CopyFrom(parent)
    return event


def make_events(first_seq: int, count: int, **fields: Any) -> list[events_pb2.Event]:
    return [make_event(seq, **fields) for seq in range(first_seq, first_seq + count)]


def sqlite_section(directory: Path) -> dict[str, Any]:
    """The `[store]` table of a SQLite store in `directory`."""
    return {"backend": "sqlite", "path": str(directory / "cloud.db"), "durability": "full"}


def cloud_config(store: Mapping[str, Any], **ingest: int) -> CloudConfig:
    """A config on port 0 with the `[store]` table `store` (the `store_section` fixture, or `sqlite_section`)."""
    return CloudConfig.model_validate(
        {
            "server": {"listen": "127.0.0.1:0", "shutdown_grace_ms": 1000},
            "store": dict(store),
            "ingest": ingest,
        }
    )


class Uplink:
    """One gateway stream, driven step by step: `async with Uplink(channel) as up: await up.hello()`."""

    def __init__(self, channel: aio.Channel) -> None:
        self.call: Any = ingest_pb2_grpc.IngestServiceStub(channel).Stream()

    async def __aenter__(self) -> Uplink:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.call.cancel()

    async def hello(
        self, gateway_id: str = GATEWAY, outbox_id: str = OUTBOX, oldest_seq: int = 0
    ) -> ingest_pb2.Welcome:
        await self.call.write(
            ingest_pb2.GatewayMessage(
                hello=ingest_pb2.Hello(
                    gateway_id=gateway_id, outbox_id=outbox_id, oldest_seq=oldest_seq, agent_version="test/1"
                )
            )
        )
        reply = await self.call.read()
        assert reply.WhichOneof("body") == "welcome", reply
        welcome: ingest_pb2.Welcome = reply.welcome
        return welcome

    async def send(self, batch_id: int, events: Iterable[events_pb2.Event]) -> ingest_pb2.Ack:
        await self.write_batch(batch_id, events)
        reply = await self.call.read()
        assert reply.WhichOneof("body") == "ack", reply
        ack: ingest_pb2.Ack = reply.ack
        assert ack.batch_id == batch_id
        return ack

    async def write_batch(self, batch_id: int, events: Iterable[events_pb2.Event]) -> None:
        await self.call.write(
            ingest_pb2.GatewayMessage(batch=ingest_pb2.EventBatch(batch_id=batch_id, events=list(events)))
        )

    async def finish(self) -> None:
        """Half-close and wait for the server to end the stream."""
        await self.call.done_writing()
        await self.call.code()


def admin_execute(dsn: str, statement: sql.SQL | sql.Composed, parameters: Any = None) -> list[tuple[Any, ...]]:
    """Run one statement on a PostgreSQL connection of its own, bounded; return its rows, if any."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=ADMIN_CONNECT_TIMEOUT_S) as connection:
        connection.execute(sql.SQL("SET statement_timeout = {}").format(sql.Literal(ADMIN_STATEMENT_TIMEOUT_MS)))
        cursor = connection.execute(statement, parameters)
        return cursor.fetchall() if cursor.description else []


REPO_ROOT = Path(__file__).resolve().parents[2]
CLI_TIMEOUT_S = 60.0


async def run_cli(*args: str) -> tuple[int, str, str]:
    """Run `tallyport-cloud ARGS` as a person would, from the repository root: (exit code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cloud.cli",
        *args,
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(CLI_TIMEOUT_S):
        stdout, stderr = await process.communicate()
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()
