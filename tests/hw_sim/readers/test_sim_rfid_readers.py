"""The simulated readers on the wire, checked with plain clients (not the drivers): Zebra and Impinj formats
over a real MQTT broker, replay timing, and the Impinj HTTP stream's chunked NDJSON and keep-alives."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiomqtt
import httpx

from hw_sim.rfid_readers import ImpinjMqttPublisher, ImpinjStreamServer, ZebraMqttPublisher, impinj_event, zebra_event

T0 = datetime(2025, 3, 3, 6, 0, 0, 123456, tzinfo=UTC)
WAIT_S = 5.0


@dataclass(frozen=True)
class Read:
    """Shaped like the portal simulator's reads: no read_count."""

    reader: str
    antenna: int
    epc_hex: str
    seen_at: datetime
    peak_rssi_dbm: float


@dataclass(frozen=True)
class Edge:
    reader: str
    pin: int
    state: str
    seen_at: datetime


def reads(count: int, spacing_ms: int) -> list[Read]:
    return [
        Read("r1", 1 + n % 2, f"3074257bf7194e40000{n:05x}", T0 + timedelta(milliseconds=spacing_ms * n), -55.4 - n)
        for n in range(count)
    ]


async def collect(
    host: str, port: int, topic_filter: str, count: int, publish: Callable[[], Any]
) -> list[tuple[str, Any]]:
    got: list[tuple[str, Any]] = []
    async with aiomqtt.Client(host, port) as client:
        await client.subscribe(topic_filter, qos=1)
        task = asyncio.create_task(publish())
        async with asyncio.timeout(WAIT_S):
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                got.append((message.topic.value, json.loads(message.payload)))
                if len(got) == count:
                    break
        await task
    return got


def test_zebra_event_format() -> None:
    assert zebra_event(Read("r1", 2, "3074257bf7194e4000001a85", T0, -55.4), event_number=7) == {
        "type": "SIMPLE",
        "timestamp": "2025-03-03T06:00:00.123+0000",
        "data": {
            "eventNum": 7,
            "format": "epc",
            "idHex": "3074257BF7194E4000001A85",
            "antenna": 2,
            "reads": 1,
            "peakRssi": -55,
        },
    }
    assert zebra_event(Edge("r1", 1, "high", T0), event_number=0) == {
        "type": "GPI",
        "timestamp": "2025-03-03T06:00:00.123+0000",
        "pin": 1,
        "state": "HIGH",
    }


def test_impinj_event_format() -> None:
    event = impinj_event(Read("r1", 2, "3074257BF7194E4000001A85", T0, -61.5), hostname="impinj-sim")
    assert event == {
        "timestamp": "2025-03-03T06:00:00.123456Z",
        "hostname": "impinj-sim",
        "eventType": "tagInventory",
        "tagInventoryEvent": {
            "antennaPort": 2,
            "lastSeenTime": "2025-03-03T06:00:00.123456Z",
            "epc": "MHQle/cZTkAAABqF",
            "epcHex": "3074257BF7194E4000001A85",
            "peakRssiCdbm": -6150,
        },
    }
    gpi = impinj_event(Edge("r1", 2, "low", T0), hostname="h")
    assert gpi["gpiTransitionEvent"] == {"gpi": 2, "transition": "high-to-low"}


async def test_zebra_publisher_batches_tags_and_sends_gpi_to_the_event_topic(
    mqtt_broker: tuple[str, int], mqtt_topic_prefix: str
) -> None:
    host, port = mqtt_broker
    items: list[Read | Edge] = [
        Edge("r1", 1, "high", T0),
        *reads(5, 1),
        Edge("r1", 1, "low", T0 + timedelta(seconds=1)),
    ]
    publisher = ZebraMqttPublisher(
        host, port, tag_topic=f"{mqtt_topic_prefix}/data", event_topic=f"{mqtt_topic_prefix}/events", batch_max=2
    )
    got = await collect(host, port, f"{mqtt_topic_prefix}/#", 5, lambda: publisher.run(items, speedup=100))
    by_topic = {topic: [payload for t, payload in got if t == topic] for topic, _ in got}
    assert [event["state"] for event in by_topic[f"{mqtt_topic_prefix}/events"]] == ["HIGH", "LOW"]
    batches = by_topic[f"{mqtt_topic_prefix}/data"]
    assert [len(batch) for batch in batches] == [2, 2, 1]
    assert [event["data"]["eventNum"] for batch in batches for event in batch] == [1, 2, 3, 4, 5]


async def test_impinj_publisher_keeps_the_reads_own_spacing_divided_by_speedup(
    mqtt_broker: tuple[str, int], mqtt_topic_prefix: str
) -> None:
    host, port = mqtt_broker
    publisher = ImpinjMqttPublisher(host, port, topic=f"{mqtt_topic_prefix}/events", epc_encoding="hex")
    started = time.monotonic()
    got = await collect(host, port, f"{mqtt_topic_prefix}/events", 3, lambda: publisher.run(reads(3, 500), speedup=4))
    elapsed = time.monotonic() - started
    assert 0.2 <= elapsed < 2.0  # 1 s of scenario at 4x is 0.25 s
    assert [event["tagInventoryEvent"]["epcHex"][-2:] for _, event in got] == ["00", "01", "02"]
    assert all("epc" not in event["tagInventoryEvent"] for _, event in got)


async def test_stream_server_sends_ndjson_chunks_keepalives_and_checks_auth() -> None:
    async with (
        ImpinjStreamServer(keepalive_ms=30, username="root", password="impinj") as server,
        httpx.AsyncClient(timeout=WAIT_S) as client,
    ):
        assert (await client.get(server.url)).status_code == 401
        assert (await client.get(server.url.replace("/stream", "/nope"), auth=("root", "impinj"))).status_code == 404
        raw = b""
        async with client.stream("GET", server.url, auth=("root", "impinj")) as response:
            assert response.status_code == 200 and response.headers["transfer-encoding"] == "chunked"
            await asyncio.sleep(0.1)  # idle: keep-alives
            await server.play(reads(1, 0))
            async with asyncio.timeout(WAIT_S):
                async for chunk in response.aiter_bytes():
                    raw += chunk
                    if raw.endswith(b"}\n"):
                        break
    assert raw.startswith(b"\r\n\r\n")
    event = json.loads(raw.strip())
    assert base64.b64decode(event["tagInventoryEvent"]["epc"]).hex().upper() == event["tagInventoryEvent"]["epcHex"]
    assert server.keepalives_sent_total >= 2 and server.lines_sent_total == 1
