"""The Impinj driver in ``http_stream`` mode against the simulated R700 event stream on a real socket.

Keep-alives are skipped, a connection dropped mid-line costs exactly that line (handed over as a reject) and
the driver reconnects and continues, an over-long line is cut and rejected, a stream that goes silent
(no keep-alive) is declared dead after ``read_timeout_ms``, and basic auth is sent.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from edge.drivers.impinj_reader import DriverMessage, ImpinjItem, ImpinjReaderConfig, ImpinjReaderDriver
from edge.pipeline.reads import GpiEvent, TagRead
from hw_sim.rfid_readers import ImpinjStreamServer

T0 = datetime(2025, 3, 3, 6, 0, tzinfo=UTC)
WAIT_S = 5.0


def tag_reads(count: int, *, spacing_ms: int = 10) -> list[TagRead]:
    return [
        TagRead(
            reader="dock2",
            antenna=1 + index % 4,
            epc_hex=f"3074257BF7194E40000{index:05X}",
            seen_at=T0 + timedelta(milliseconds=spacing_ms * index),
            peak_rssi_dbm=-61.5 - index,
        )
        for index in range(count)
    ]


def stream_config(url: str, **overrides: Any) -> ImpinjReaderConfig:
    options: dict[str, Any] = {
        "name": "dock2",
        "mode": "http_stream",
        "stream_url": url,
        "reconnect_delay_ms_initial": 10,
        "reconnect_delay_ms_max": 50,
        "connect_timeout_ms": 2000,
    }
    return ImpinjReaderConfig(**(options | overrides))


async def take(messages: AsyncIterator[DriverMessage[ImpinjItem]], count: int) -> list[DriverMessage[ImpinjItem]]:
    taken = []
    async with asyncio.timeout(WAIT_S):
        while len(taken) < count:
            taken.append(await anext(messages))
    return taken


def reads_in(messages: list[DriverMessage[ImpinjItem]]) -> list[ImpinjItem]:
    return [replace(item, raw_sha256="") if isinstance(item, TagRead) else item for m in messages for item in m.items]


async def test_keepalives_while_idle_are_skipped_and_reads_arrive() -> None:
    reads: list[TagRead | GpiEvent] = [*tag_reads(2), GpiEvent("dock2", 1, "high", T0 + timedelta(seconds=1))]
    async with ImpinjStreamServer(keepalive_ms=40) as server:
        url = server.url
        async with ImpinjReaderDriver(stream_config(url), rng=random.Random(1)) as driver:
            messages = driver.messages()
            # 10x faster: a 0.1 s pause before the GPI edge, long enough for keep-alives.
            play = asyncio.create_task(server.play(reads, speedup=10))
            received = await take(messages, 3)
            await play
            await messages.aclose()
            stream = driver.stream
    assert stream is not None
    assert reads_in(received) == reads
    assert all(message.rejects == () and message.source == url for message in received)
    assert stream.keepalives_total >= 1 and server.keepalives_sent_total >= 1
    assert stream.connections_total == 1


async def test_a_connection_dropped_mid_stream_costs_only_the_cut_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="edge.drivers.impinj_reader")
    reads = tag_reads(6)
    async with ImpinjStreamServer(keepalive_ms=1000) as server:
        server.drop_after(3)  # half of the third line, then the socket closes
        async with ImpinjReaderDriver(stream_config(server.url), rng=random.Random(2)) as driver:
            messages = driver.messages()
            await server.play(reads, speedup=1000)
            received = await take(messages, 6)
            await messages.aclose()
            stream = driver.stream
    assert stream is not None
    assert reads_in(received) == [reads[0], reads[1], reads[3], reads[4], reads[5]]
    [cut] = [message for message in received if message.rejects]
    assert cut.rejects[0].startswith("line cut off after")
    assert cut.payload.startswith(b'{"timestamp"') and not cut.items
    assert stream.connections_total == 2
    warnings = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert len([text for text in warnings if "event stream lost" in text and "mid-stream" in text]) == 1
    assert len([text for text in warnings if "open again" in text]) == 1


async def test_an_over_long_line_is_cut_and_rejected_and_the_stream_goes_on() -> None:
    async with ImpinjStreamServer(keepalive_ms=1000) as server:
        config = stream_config(server.url, payload_bytes_max=1024)
        async with ImpinjReaderDriver(config, rng=random.Random(3)) as driver:
            messages = driver.messages()
            await server.send_raw_line(b'{"eventType":"tagInventory","junk":"' + b"A" * 5000 + b'"}')
            await server.play(tag_reads(1))
            long_line, good = await take(messages, 2)
            await messages.aclose()
    assert long_line.rejects == ("line of 5038 bytes, over the 1024-byte cap; only its first 1024 bytes are kept",)
    assert len(long_line.payload) == 1024
    assert reads_in([good]) == tag_reads(1)


async def test_a_silent_stream_is_declared_dead_and_reopened() -> None:
    # A reader that stops sending, keep-alives included: the driver must not wait forever.
    async with ImpinjStreamServer(keepalive_ms=60_000) as server:
        config = stream_config(server.url, stream_keepalive_ms=100, read_timeout_ms=300)
        async with ImpinjReaderDriver(config, rng=random.Random(4)) as driver:
            messages = driver.messages()
            first = asyncio.create_task(anext(messages))
            async with asyncio.timeout(WAIT_S):
                while server.connections_total < 2:
                    await asyncio.sleep(0.05)
            await server.play(tag_reads(1))
            async with asyncio.timeout(WAIT_S):
                message = await first
            await messages.aclose()
    assert reads_in([message]) == tag_reads(1)


async def test_basic_auth_is_sent_and_a_wrong_password_is_retried_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    async with ImpinjStreamServer(keepalive_ms=1000, username="root", password="impinj") as server:
        wrong = stream_config(server.url, username="root", password="nope")
        async with ImpinjReaderDriver(wrong, rng=random.Random(5)) as driver:
            messages = driver.messages()
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await anext(messages)
            await messages.aclose()
            assert not driver.available
        assert any("HTTP 401" in record.getMessage() for record in caplog.records)

        right = stream_config(server.url, username="root", password="impinj")
        async with ImpinjReaderDriver(right, rng=random.Random(6)) as driver:
            messages = driver.messages()
            await server.play(tag_reads(1))
            received = await take(messages, 1)
            await messages.aclose()
    assert reads_in(received) == tag_reads(1)
