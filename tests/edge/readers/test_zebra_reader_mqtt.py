"""The Zebra driver against a real MQTT broker, fed by the simulated IoT Connector.

Proves the delivery rule for real: a message is acknowledged (PUBACK) only by ``acknowledge``; one that was
not is sent again by the broker after a restart of the driver or a cut network, and a full local queue
loses nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self

import aiomqtt
import pytest

from edge.drivers.zebra_reader import DriverMessage, ZebraItem, ZebraReaderConfig, ZebraReaderDriver
from edge.pipeline.reads import GpiEvent, TagRead
from hw_sim.rfid_readers import ZebraMqttPublisher

T0 = datetime(2025, 3, 3, 6, 0, tzinfo=UTC)
WAIT_S = 5.0
FAST = {"reconnect_delay_ms_initial": 10, "reconnect_delay_ms_max": 100, "connect_timeout_ms": 2000}


def portal_reads(count: int) -> list[TagRead | GpiEvent]:
    reads: list[TagRead | GpiEvent] = [GpiEvent(reader="dock4", pin=1, state="high", seen_at=T0)]
    for index in range(count):
        reads.append(
            TagRead(
                reader="dock4",
                antenna=1 + index % 2,
                epc_hex=f"3074257BF7194E40000{index:05X}",
                seen_at=T0 + timedelta(milliseconds=20 * (index + 1)),
                peak_rssi_dbm=float(-50 - index),
                read_count=1 + index % 3,
            )
        )
    reads.append(GpiEvent(reader="dock4", pin=1, state="low", seen_at=T0 + timedelta(milliseconds=20 * (count + 2))))
    return reads


def zebra_config(host: str, port: int, prefix: str, kind: str, **overrides: Any) -> ZebraReaderConfig:
    options: dict[str, Any] = {
        "name": "dock4",
        "broker_host": host,
        "broker_port": port,
        "tag_topic": f"{prefix}/data",
        "event_topic": f"{prefix}/events",
        "client_id": f"tallyport-test-{uuid.uuid4().hex[:12]}",
        "session_expiry_s": 60,
        # amqtt speaks MQTT 3.1.1 only.
        "protocol": "3.1.1" if kind == "amqtt" else "5",
        **FAST,
    }
    return ZebraReaderConfig(**(options | overrides))


async def take(messages: AsyncIterator[DriverMessage[ZebraItem]], count: int) -> list[DriverMessage[ZebraItem]]:
    taken = []
    async with asyncio.timeout(WAIT_S):
        while len(taken) < count:
            taken.append(await anext(messages))
    return taken


async def nothing_more(messages: AsyncIterator[DriverMessage[ZebraItem]], wait_s: float = 0.5) -> bool:
    try:
        async with asyncio.timeout(wait_s):
            await anext(messages)
    except TimeoutError:
        return True
    return False


async def publish(host: str, port: int, topic: str, payloads: list[bytes]) -> None:
    async with aiomqtt.Client(host, port) as client:
        for payload in payloads:
            await client.publish(topic, payload, qos=1, timeout=WAIT_S)


async def forget_session(host: str, port: int, client_id: str) -> None:
    """MQTT 3.1.1 sessions never expire on the broker: end them so that test runs leave nothing behind."""
    async with aiomqtt.Client(host, port, identifier=client_id, clean_session=True):
        pass


def tag_payload(number: int) -> bytes:
    data = {"eventNum": number, "idHex": f"E2801170{number:08X}", "antenna": 1, "peakRssi": -60}
    return json.dumps({"type": "SIMPLE", "timestamp": "2024-05-27T14:32:01.123+0000", "data": data}).encode()


def event_numbers(messages: list[DriverMessage[ZebraItem]]) -> list[int]:
    return [json.loads(message.payload)["data"]["eventNum"] for message in messages]


class CuttableProxy:
    """A TCP proxy in front of the broker whose connections the test can cut, like a pulled cable."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.cut()
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def cut(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        broker_reader, broker_writer = await asyncio.open_connection(*self._target)
        self._writers += [client_writer, broker_writer]
        for source, sink in ((client_reader, broker_writer), (broker_reader, client_writer)):
            task = asyncio.create_task(self._pump(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except ConnectionError:
            pass
        finally:
            sink.transport.abort()


async def test_simulated_reader_reads_reach_the_driver_decoded_and_in_order(
    mqtt_broker: tuple[str, int], mqtt_broker_kind: str, mqtt_topic_prefix: str
) -> None:
    host, port = mqtt_broker
    config = zebra_config(host, port, mqtt_topic_prefix, mqtt_broker_kind)
    reads = portal_reads(7)
    publisher = ZebraMqttPublisher(
        host, port, tag_topic=config.tag_topic, event_topic=str(config.event_topic), batch_max=3
    )
    async with ZebraReaderDriver(config, rng=random.Random(1)) as driver:
        messages = driver.messages()
        # Tags 1-3 and 4-6 in two arrays, tag 7 closed by the final GPI edge, and the two edges: 5 messages.
        sent = await publisher.run(reads, speedup=10)
        received = await take(messages, sent)
        for message in received:
            assert message.rejects == ()
            assert message.token.qos == 1
            await driver.acknowledge(message.token)
        await messages.aclose()
    assert sent == 5
    got = [item for message in received for item in message.items]
    # Topics are separate streams, so only the order within each is guaranteed.
    assert [item for item in got if isinstance(item, GpiEvent)] == [r for r in reads if isinstance(r, GpiEvent)]
    assert [replace(item, raw_sha256="") for item in got if isinstance(item, TagRead)] == [
        read for read in reads if isinstance(read, TagRead)
    ]
    assert {message.source for message in received} == {config.tag_topic, config.event_topic}


async def test_unacknowledged_messages_come_again_after_a_restart_and_acknowledged_ones_do_not(
    mqtt_broker: tuple[str, int], mqtt_broker_kind: str, mqtt_topic_prefix: str
) -> None:
    if mqtt_broker_kind == "amqtt":
        pytest.skip("amqtt 0.12 does not redeliver unacknowledged messages to a resumed session")
    host, port = mqtt_broker
    config = zebra_config(host, port, mqtt_topic_prefix, mqtt_broker_kind)
    async with ZebraReaderDriver(config, rng=random.Random(2)) as driver:
        messages = driver.messages()
        await publish(host, port, config.tag_topic, [tag_payload(number) for number in range(1, 5)])
        first = await take(messages, 4)
        for message in first[:2]:  # events of 1 and 2 "committed"; the agent dies before committing 3 and 4
            await driver.acknowledge(message.token)
        await messages.aclose()
    assert event_numbers(first) == [1, 2, 3, 4]

    async with ZebraReaderDriver(config, rng=random.Random(3)) as driver:
        messages = driver.messages()
        again = await take(messages, 2)
        assert event_numbers(again) == [3, 4]
        assert [item.epc_hex for message in again for item in message.items if isinstance(item, TagRead)] == [
            "E280117000000003",
            "E280117000000004",
        ]
        for message in again:
            await driver.acknowledge(message.token)
        assert await nothing_more(messages)
        await messages.aclose()

    async with ZebraReaderDriver(config, rng=random.Random(4)) as driver:
        messages = driver.messages()
        assert await nothing_more(messages)
        await messages.aclose()


async def test_a_cut_network_costs_no_message_and_availability_is_logged_once_per_change(
    mqtt_broker: tuple[str, int], mqtt_broker_kind: str, mqtt_topic_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    if mqtt_broker_kind == "amqtt":
        pytest.skip("amqtt 0.12 does not redeliver unacknowledged messages to a resumed session")
    host, port = mqtt_broker
    caplog.set_level(logging.DEBUG, logger="edge.drivers.mqtt_subscription")
    async with CuttableProxy(host, port) as proxy:
        config = zebra_config("127.0.0.1", proxy.port, mqtt_topic_prefix, mqtt_broker_kind)
        async with ZebraReaderDriver(config, rng=random.Random(5)) as driver:
            messages = driver.messages()
            await publish(host, port, config.tag_topic, [tag_payload(1)])
            [before_cut] = await take(messages, 1)
            proxy.cut()  # the cable is pulled before the agent commits message 1
            await publish(host, port, config.tag_topic, [tag_payload(2)])
            after_cut = await take(messages, 2)
            await driver.acknowledge(before_cut.token)  # too late: that connection is gone
            for message in after_cut:
                await driver.acknowledge(message.token)
            assert await nothing_more(messages)
            await messages.aclose()
            subscription = driver.subscription
    assert event_numbers([before_cut, *after_cut]) == [1, 1, 2]
    assert subscription.reconnects_total == 1
    assert subscription.stale_acks_total == 1
    changes = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert len([text for text in changes if "broker unavailable" in text]) == 1
    assert len([text for text in changes if "available again" in text]) == 1


async def test_a_full_queue_loses_nothing_the_broker_resends_what_did_not_fit(
    mqtt_broker: tuple[str, int], mqtt_broker_kind: str, mqtt_topic_prefix: str
) -> None:
    if mqtt_broker_kind == "amqtt":
        pytest.skip("amqtt 0.12 does not redeliver unacknowledged messages to a resumed session")
    host, port = mqtt_broker
    # MQTT 3.1.1 has no Receive Maximum: Mosquitto sends up to 20 unacknowledged messages into a queue of 2.
    config = zebra_config(
        host, port, mqtt_topic_prefix, mqtt_broker_kind, protocol="3.1.1", message_queue_max=2, inflight_messages_max=1
    )
    try:
        async with ZebraReaderDriver(config, rng=random.Random(6)) as driver:
            messages = driver.messages()
            await publish(host, port, config.tag_topic, [tag_payload(number) for number in range(1, 13)])
            await asyncio.sleep(0.2)  # let them all arrive while nobody reads
            seen: list[int] = []
            async with asyncio.timeout(WAIT_S):
                while len(set(seen)) < 12:
                    message = await anext(messages)
                    seen += event_numbers([message])
                    await driver.acknowledge(message.token)
            assert await nothing_more(messages)
            await messages.aclose()
            assert driver.subscription.resyncs_total >= 1
    finally:
        await forget_session(host, port, config.client_id)
    assert sorted(set(seen)) == list(range(1, 13))
