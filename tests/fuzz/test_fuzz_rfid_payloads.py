"""Fuzz the RFID reader codecs (Zebra IoT Connector JSON, Impinj IoT Device Interface JSON and its NDJSON stream).

Property, for every payload: the codec returns (never raises); each top-level element is accounted for as a
read, a GPI edge, an ignored event kind or a reject with a non-empty reason, and a payload that yields nothing
at all is rejected as a whole, so the quarantine keeps it (``PortalIntake.read_from`` quarantines a message
when it has rejects). Every read that comes out can be journaled and replayed (``encode_read``/``decode_read``),
and its EPC either decodes or is named invalid with a reason (the portal quarantines those).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from collections.abc import AsyncIterator
from contextlib import aclosing
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
from fuzz_mutations import mutated_bytes, mutated_tree, to_json
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from edge.drivers.impinj_reader import ImpinjReaderConfig, ImpinjReaderDriver
from edge.drivers.impinj_reader.http_stream import LineSplitter, StreamLine
from edge.drivers.impinj_reader.payload import decode_impinj_payload
from edge.drivers.json_payload import Decoded
from edge.drivers.mqtt_subscription import NO_ACK, DriverMessage, ReceivedMessage, decode_received
from edge.drivers.zebra_reader.payload import decode_zebra_payload
from edge.epc import decode_epc
from edge.pipeline.read_journal import decode_read, encode_read
from edge.pipeline.reads import GpiEvent, TagRead

fuzz = settings(settings.get_profile("tallyport-fuzz"))
RECEIVED_AT = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
PAYLOAD_BYTES_MAX = 4096  # small, so that the fuzzers also reach the size cap
ITEMS_MAX = 8

ZEBRA_SAMPLES: list[Any] = [
    {
        "type": "SIMPLE",
        "timestamp": "2024-05-27T14:32:01.123+0000",
        "data": {
            "eventNum": 231,
            "format": "epc",
            "idHex": "3074257BF7194E4000001A85",
            "antenna": 2,
            "peakRssi": -55,
            "reads": 3,
        },
    },
    {"type": "GPI", "timestamp": "2024-05-27T14:32:00Z", "pin": 1, "state": "HIGH"},
    {"type": "GPI", "data": {"pin": 2, "state": "low"}},
    {"type": "HEARTBEAT", "timestamp": "2024-05-27T14:32:00+00:00", "data": {}},
]
IMPINJ_SAMPLES: list[Any] = [
    {
        "timestamp": "2023-05-09T15:04:12.310Z",
        "hostname": "impinj-14-1f-23",
        "eventType": "tagInventory",
        "tagInventoryEvent": {
            "epc": "MHQle/cZTkAAABqF",
            "epcHex": "3074257BF7194E4000001A85",
            "antennaPort": 2,
            "peakRssiCdbm": -6150,
            "lastSeenTime": "2023-05-09T15:04:12.305Z",
        },
    },
    {"timestamp": "2023-05-09T15:04:12Z", "tagInventoryEvent": {"epc": "MHQle/cZTkAAABqF", "antennaPort": 1}},
    {
        "timestamp": "2023-05-09T15:04:13Z",
        "eventType": "gpiTransition",
        "gpiTransitionEvent": {"gpi": 1, "transition": "low-to-high"},
    },
    {
        "timestamp": "2023-05-09T15:04:14Z",
        "eventType": "inventoryStatus",
        "inventoryStatusEvent": {"status": "running"},
    },
]
HOSTILE_PAYLOADS = [b"", b"   ", b"[]", b"{}", b"null", b"[" * 100_000, b'{"a":' * 5000, b"\xff\xfe", b"NaN"]


def payloads(samples: list[Any]) -> st.SearchStrategy[bytes]:
    """One event or a batch of them, structurally mutated, then byte-mutated; plus known-hostile payloads."""
    one = st.sampled_from(samples).flatmap(mutated_tree)
    document = one | st.lists(one, max_size=ITEMS_MAX + 2)
    encoded = document.map(to_json)
    return encoded.flatmap(mutated_bytes) | encoded | st.sampled_from(HOSTILE_PAYLOADS)


def assert_accounted(payload: bytes, decoded: Decoded[Any]) -> None:
    assert all(isinstance(reject, str) and reject.strip() for reject in decoded.rejects)
    assert all(count > 0 for count in decoded.ignored.values())
    # Nothing vanishes: a payload gives reads, counted ignorable events, or rejects the quarantine keeps.
    assert decoded.items or decoded.ignored or decoded.rejects, f"payload {payload[:80]!r} vanished"
    event("has reads" if decoded.items else "no reads")
    for item in decoded.items:
        assert isinstance(item, TagRead | GpiEvent)
        assert item.seen_at.utcoffset() is not None
        # The pipeline turns a read's time into UTC and into the site's zone, whatever the zone.
        for hours in (-12, 0, 14):
            item.seen_at.astimezone(timezone(timedelta(hours=hours)))
        # The portal intake journals every read and replays the journal after a restart.
        assert decode_read(1, encode_read(item, RECEIVED_AT)).item == item
        if isinstance(item, TagRead):
            assert item.antenna >= 1 and item.read_count >= 1
            epc = decode_epc(item.epc_hex)
            assert epc.valid == (not epc.error)


@fuzz
@given(payload=payloads(ZEBRA_SAMPLES))
@example(payload=b"[]")  # found by this fuzzer: an empty batch produced nothing, not even a reject
# A time past year 9999 once converted to UTC: it passed the codec and overflowed in the pipeline.
@example(payload=b'{"type": "SIMPLE", "timestamp": "9999-12-31T23:59:59-23:59", "data": {"idHex": "AA", "antenna": 1}}')
def test_fuzz_zebra_payload_becomes_reads_or_rejects(payload: bytes) -> None:
    decoded = decode_zebra_payload(
        payload,
        reader="dock4-reader",
        received_at=RECEIVED_AT,
        payload_bytes_max=PAYLOAD_BYTES_MAX,
        items_max=ITEMS_MAX,
    )
    assert_accounted(payload, decoded)
    # The MQTT drivers hand the payload on with exactly these rejects: what the portal intake quarantines.
    received = ReceivedMessage("dock4/data", payload, 1, False, RECEIVED_AT, NO_ACK)
    message = decode_received(
        received,
        lambda data, at: decode_zebra_payload(
            data, reader="dock4-reader", received_at=at, payload_bytes_max=PAYLOAD_BYTES_MAX, items_max=ITEMS_MAX
        ),
    )
    assert (message.payload, message.rejects, message.items) == (payload, decoded.rejects, decoded.items)


@fuzz
@given(payload=payloads(IMPINJ_SAMPLES))
@example(payload=b"[]")
@example(
    payload=b'{"eventType": "gpiTransition", "timestamp": "0001-01-01T00:00:00+23:59",'
    b' "gpiTransitionEvent": {"gpi": 1, "transition": "low-to-high"}}'
)
def test_fuzz_impinj_payload_becomes_reads_or_rejects(payload: bytes) -> None:
    decoded = decode_impinj_payload(
        payload, reader="dock2-r700", received_at=RECEIVED_AT, payload_bytes_max=PAYLOAD_BYTES_MAX, items_max=ITEMS_MAX
    )
    assert_accounted(payload, decoded)


def reference_lines(stream: bytes, line_bytes_max: int) -> list[StreamLine]:
    segments = stream.split(b"\n")
    lines = []
    for index, segment in enumerate(segments):
        complete = index < len(segments) - 1
        if not complete and not segment:
            break
        data, cut = segment[:line_bytes_max], max(0, len(segment) - line_bytes_max)
        if complete and not cut and data.endswith(b"\r"):
            data = data[:-1]
        lines.append(StreamLine(data=data, complete=complete, cut_bytes=cut))
    return lines


@fuzz
@given(
    events=st.lists(st.sampled_from(IMPINJ_SAMPLES).flatmap(mutated_tree).map(to_json), max_size=6),
    separators=st.lists(st.sampled_from([b"\n", b"\r\n", b"\r\n\r\n", b"\n\r\n"]), min_size=6, max_size=6),
    noise=st.lists(
        st.tuples(st.integers(min_value=0, max_value=2000), st.sampled_from([b"\r", b"\x00", b"\n"])), max_size=3
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=8),
    line_bytes_max=st.integers(min_value=16, max_value=600),
)
def test_fuzz_impinj_ndjson_stream_lines_become_reads_or_rejects(
    events: list[bytes], separators: list[bytes], noise: list[tuple[int, bytes]], cuts: list[int], line_bytes_max: int
) -> None:
    stream = bytearray(b"".join(event + separator for event, separator in zip(events, separators, strict=False)))
    for position, byte in noise:
        stream[position:position] = byte
    splitter = LineSplitter(line_bytes_max)
    bounds = [0, *sorted(min(cut, len(stream)) for cut in cuts), len(stream)]
    lines = [line for lo, hi in itertools.pairwise(bounds) for line in splitter.feed(bytes(stream[lo:hi]))]
    last = splitter.flush()
    lines += [last] if last is not None else []

    # However the bytes were chunked: the lines of the whole stream split at once, each cut at the cap.
    assert lines == reference_lines(bytes(stream), line_bytes_max)
    for line in lines:
        if line.is_keepalive:
            continue
        decoded = decode_impinj_payload(line.data, reader="dock2-r700", received_at=RECEIVED_AT)
        if line.cut_bytes or not line.complete:
            continue  # the stream driver rejects a cut or unfinished line before decoding it
        assert_accounted(line.data, decoded)


@fuzz
@given(
    lines=st.lists(
        st.sampled_from(IMPINJ_SAMPLES).flatmap(mutated_tree).map(to_json).flatmap(mutated_bytes)
        | st.sampled_from([b"", b"\r", b" ", b"x" * 1500]),
        max_size=6,
    ),
    ends=st.lists(st.sampled_from([b"\n", b"\r\n"]), min_size=6, max_size=6),
    unfinished=st.binary(max_size=30),
    chunk_bytes=st.integers(min_value=1, max_value=700),
)
def test_fuzz_impinj_http_stream_lines_become_messages_with_reads_or_rejects(
    lines: list[bytes], ends: list[bytes], unfinished: bytes, chunk_bytes: int
) -> None:
    """The whole driver in http_stream mode, over httpx with an in-memory transport serving the fuzzed body."""
    body = b"".join(line.replace(b"\n", b"") + end for line, end in zip(lines, ends, strict=False)) + unfinished
    config = ImpinjReaderConfig(
        name="dock2-r700",
        mode="http_stream",
        stream_url="http://reader.invalid/api/v1/data/stream",
        payload_bytes_max=1024,
        reconnect_delay_ms_initial=10,
        reconnect_delay_ms_max=10,
    )
    expected = [line for line in reference_lines(body, 1024) if not line.is_keepalive]

    async def serve(request: httpx.Request) -> httpx.Response:
        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(body), chunk_bytes):
                yield body[start : start + chunk_bytes]

        return httpx.Response(200, content=chunks())

    async def take() -> list[DriverMessage[Any]]:
        driver = ImpinjReaderDriver(
            config, rng=random.Random(1), clock=lambda: RECEIVED_AT, http_transport=httpx.MockTransport(serve)
        )
        async with driver, aclosing(driver.messages()) as messages, asyncio.timeout(10):
            return [await anext(messages) for _ in expected]

    messages = asyncio.run(take())
    assert [message.payload for message in messages] == [line.data for line in expected]
    for message, line in zip(messages, expected, strict=True):
        # What PortalIntake.read_from quarantines: the payload with its rejects, whenever there are rejects.
        assert message.items or message.ignored or message.rejects
        assert all(reject.strip() for reject in message.rejects)
        if line.cut_bytes or not line.complete:
            assert message.rejects and not message.items


@fuzz
@given(
    document=st.recursive(
        st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
        max_leaves=30,
    )
)
def test_fuzz_any_json_document_is_accounted_by_both_reader_codecs(document: Any) -> None:
    payload = json.dumps(document).encode()
    for decode in (decode_zebra_payload, decode_impinj_payload):
        assert_accounted(payload, decode(payload, reader="r", received_at=RECEIVED_AT))
