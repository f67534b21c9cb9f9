"""Zebra and Impinj codecs on the standards.md §4 samples and their quirks, the NDJSON line splitter, and
property tests: whatever bytes arrive, the codecs return items and rejects and never raise."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.drivers.impinj_reader import LineSplitter, StreamLine, decode_impinj_payload
from edge.drivers.json_payload import ITEMS_PER_PAYLOAD_MAX
from edge.drivers.zebra_reader import decode_zebra_payload
from edge.pipeline.reads import GpiEvent, TagRead

RECEIVED_AT = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
SGTIN_HEX = "3074257BF7194E4000001A85"
ZEBRA_SAMPLE = {
    "type": "SIMPLE",
    "timestamp": "2024-05-27T14:32:01.123+0000",
    "data": {"eventNum": 231, "format": "epc", "idHex": SGTIN_HEX, "antenna": 2, "peakRssi": -55, "reads": 3},
}
IMPINJ_SAMPLE = {
    "timestamp": "2023-05-09T15:04:12.310Z",
    "hostname": "impinj-14-1f-23",
    "eventType": "tagInventory",
    "tagInventoryEvent": {
        "epc": "MHQle/cZTkAAABqF",
        "epcHex": SGTIN_HEX,
        "antennaPort": 2,
        "peakRssiCdbm": -6150,
        "lastSeenTime": "2023-05-09T15:04:12.305Z",
    },
}
fuzz = settings(max_examples=200, deadline=None)


def zebra(document: object) -> tuple[list[TagRead | GpiEvent], list[str]]:
    decoded = decode_zebra_payload(json.dumps(document).encode(), reader="r1", received_at=RECEIVED_AT)
    return list(decoded.items), list(decoded.rejects)


def impinj(document: object) -> tuple[list[TagRead | GpiEvent], list[str]]:
    decoded = decode_impinj_payload(json.dumps(document).encode(), reader="r1", received_at=RECEIVED_AT)
    return list(decoded.items), list(decoded.rejects)


def test_zebra_sample_object_and_the_same_in_an_array_decode_alike() -> None:
    single, _ = zebra(ZEBRA_SAMPLE)
    assert isinstance(single[0], TagRead)
    batched, rejects = zebra([ZEBRA_SAMPLE, ZEBRA_SAMPLE])
    assert rejects == []
    # Same reads; only the lineage digest differs, since it is of the payload each came in.
    assert [replace(item, raw_sha256="") for item in batched] == [replace(single[0], raw_sha256="")] * 2
    read = single[0]
    assert isinstance(read, TagRead)
    assert (read.antenna, read.epc_hex, read.peak_rssi_dbm, read.read_count) == (2, SGTIN_HEX, -55.0, 3)


def test_zebra_timestamp_offsets_without_colon_with_colon_and_z_are_the_same_instant() -> None:
    times = ["2024-05-27T14:32:01.123+0000", "2024-05-27T14:32:01.123Z", "2024-05-27T14:32:01.123+00:00"]
    seen = {zebra({**ZEBRA_SAMPLE, "timestamp": text})[0][0].seen_at for text in times}
    assert seen == {datetime(2024, 5, 27, 14, 32, 1, 123000, tzinfo=UTC)}


def test_zebra_non_utc_offset_is_kept() -> None:
    [read], _ = zebra({**ZEBRA_SAMPLE, "timestamp": "2024-05-27T16:32:01.123+0200"})
    assert read.seen_at.utcoffset() == timedelta(hours=2)
    assert read.seen_at == datetime(2024, 5, 27, 14, 32, 1, 123000, tzinfo=UTC)


def test_zebra_missing_timestamp_takes_the_receive_time() -> None:
    document = {key: value for key, value in ZEBRA_SAMPLE.items() if key != "timestamp"}
    [read], _ = zebra(document)
    assert read.seen_at == RECEIVED_AT


def test_zebra_gpi_event_from_the_reference_sample() -> None:
    [edge], rejects = zebra({"type": "GPI", "pin": 1, "state": "HIGH"})
    assert rejects == []
    assert edge == GpiEvent(reader="r1", pin=1, state="high", seen_at=RECEIVED_AT)


def test_zebra_rejects_say_what_and_where() -> None:
    bad_rssi = {**ZEBRA_SAMPLE, "data": {**ZEBRA_SAMPLE["data"], "peakRssi": "loud"}}  # type: ignore[dict-item]
    odd_hex = {**ZEBRA_SAMPLE, "data": {**ZEBRA_SAMPLE["data"], "idHex": "ABC"}}  # type: ignore[dict-item]
    no_type = {"data": ZEBRA_SAMPLE["data"]}
    items, rejects = zebra([ZEBRA_SAMPLE, bad_rssi, odd_hex, no_type])
    assert len(items) == 1
    assert rejects == [
        "item 1: data.peakRssi 'loud' is not a number",
        "item 2: data.idHex 'ABC' has an odd number of hex digits",
        "item 3: no type",
    ]


def test_json_nan_infinity_and_booleans_are_not_numbers() -> None:
    payload = b'{"type":"SIMPLE","data":{"idHex":"AA","antenna":1,"peakRssi":NaN}}'
    assert decode_zebra_payload(payload, reader="r", received_at=RECEIVED_AT).rejects == (
        "item 0: data.peakRssi nan is not a finite number",
    )
    _, rejects = zebra({"type": "SIMPLE", "data": {"idHex": "AA", "antenna": True}})
    assert rejects == ["item 0: data.antenna true is not an integer"]


def test_payload_and_item_caps() -> None:
    big = decode_zebra_payload(b" " * 2000, reader="r", received_at=RECEIVED_AT, payload_bytes_max=1024)
    assert big.rejects == ("payload: 2000 bytes, over the 1024-byte cap",)
    many = [{"type": "GPI", "pin": 1, "state": "LOW"}] * (ITEMS_PER_PAYLOAD_MAX + 2)
    items, rejects = zebra(many)
    assert len(items) == ITEMS_PER_PAYLOAD_MAX
    assert rejects == [f"items {ITEMS_PER_PAYLOAD_MAX}..{ITEMS_PER_PAYLOAD_MAX + 1}: over the 5000-item cap"]


def test_deeply_nested_json_is_a_reject_not_a_recursion_error() -> None:
    decoded = decode_zebra_payload(b"[" * 100_000 + b"]" * 100_000, reader="r", received_at=RECEIVED_AT)
    assert decoded.rejects == ("payload: JSON nested too deeply",)


def test_impinj_sample_uses_epchex_centi_dbm_and_last_seen_time() -> None:
    [read], rejects = impinj(IMPINJ_SAMPLE)
    assert rejects == []
    assert isinstance(read, TagRead)
    assert read.epc_hex == SGTIN_HEX
    assert read.peak_rssi_dbm == -61.5
    assert read.seen_at == datetime(2023, 5, 9, 15, 4, 12, 305000, tzinfo=UTC)


def test_impinj_base64_epc_alone_is_converted_to_hex() -> None:
    tag = {"epc": base64.b64encode(bytes.fromhex(SGTIN_HEX)).decode().rstrip("="), "antennaPort": 1}
    [read], rejects = impinj({"eventType": "tagInventory", "tagInventoryEvent": tag})
    assert rejects == []
    assert read.epc_hex == SGTIN_HEX
    assert read.seen_at == RECEIVED_AT  # neither lastSeenTime nor timestamp


def test_impinj_other_event_types_are_counted_not_decoded() -> None:
    payload = json.dumps(
        [
            {"eventType": "inventoryStatus", "inventoryStatusEvent": {"inventoryStatus": "running"}},
            {"eventType": "antennaDisconnected", "antennaDisconnectedEvent": {"antennaPort": 4}},
            {"eventType": "inventoryStatus", "inventoryStatusEvent": {"inventoryStatus": "idle"}},
        ]
    ).encode()
    decoded = decode_impinj_payload(payload, reader="r", received_at=RECEIVED_AT)
    assert decoded.items == () and decoded.rejects == ()
    assert decoded.ignored == {"inventoryStatus": 2, "antennaDisconnected": 1}


def test_impinj_gpi_transition() -> None:
    event = {
        "timestamp": "2023-05-09T15:04:12+01:00",
        "eventType": "gpiTransition",
        "gpiTransitionEvent": {"gpi": 2, "transition": "high-to-low"},
    }
    [edge], _ = impinj(event)
    assert edge == GpiEvent(
        reader="r1", pin=2, state="low", seen_at=datetime(2023, 5, 9, 15, 4, 12, tzinfo=timezone(timedelta(hours=1)))
    )


def test_line_splitter_separates_keepalives_from_lines_across_chunk_boundaries() -> None:
    splitter = LineSplitter(64)
    lines = [
        *splitter.feed(b'{"a":1}\r'),
        *splitter.feed(b"\n\r\n\r"),
        *splitter.feed(b'\n{"b"'),
        *splitter.feed(b":2}\n"),
    ]
    assert [line.data for line in lines] == [b'{"a":1}', b"", b"", b'{"b":2}']
    assert [line.is_keepalive for line in lines] == [False, True, True, False]
    assert splitter.flush() is None


def test_line_splitter_caps_a_long_line_and_reports_what_it_cut() -> None:
    splitter = LineSplitter(8)
    lines = splitter.feed(b"0123456789abcdef\nok\n")
    assert lines == [StreamLine(data=b"01234567", cut_bytes=8), StreamLine(data=b"ok")]
    assert not lines[0].is_keepalive


def test_line_splitter_hands_over_the_partial_line_at_a_disconnect() -> None:
    splitter = LineSplitter(64)
    assert splitter.feed(b'{"eventType":"tagInv') == []
    assert splitter.flush() == StreamLine(data=b'{"eventType":"tagInv', complete=False)
    assert splitter.flush() is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=30,
)
# Objects built from the keys the codecs look at, so that the fuzzer reaches past the first check.
reader_keys = st.sampled_from(
    [
        "type",
        "timestamp",
        "data",
        "idHex",
        "antenna",
        "peakRssi",
        "reads",
        "format",
        "pin",
        "state",
        "eventType",
        "tagInventoryEvent",
        "gpiTransitionEvent",
        "epc",
        "epcHex",
        "antennaPort",
        "peakRssiCdbm",
        "lastSeenTime",
        "gpi",
        "transition",
    ]
)
reader_values = (
    st.sampled_from(
        [
            "SIMPLE",
            "CUSTOM",
            "GPI",
            "tagInventory",
            "gpiTransition",
            "HIGH",
            "low-to-high",
            SGTIN_HEX,
            "MHQle/cZTkAAABqF",
        ]
    )
    | json_values
)
reader_objects = st.recursive(
    st.dictionaries(reader_keys, reader_values, max_size=8),
    lambda children: st.dictionaries(reader_keys, children | reader_values, max_size=8),
    max_leaves=20,
)


def check_never_raises(payload: bytes) -> None:
    for decode in (decode_zebra_payload, decode_impinj_payload):
        decoded = decode(payload, reader="r", received_at=RECEIVED_AT)
        assert all(isinstance(item, (TagRead, GpiEvent)) for item in decoded.items)
        assert all(isinstance(reason, str) and reason for reason in decoded.rejects)
        for item in decoded.items:
            assert item.seen_at.tzinfo is not None
            if isinstance(item, TagRead):
                assert item.epc_hex == item.epc_hex.upper() and len(item.epc_hex) % 2 == 0 and item.antenna >= 1


@fuzz
@given(st.binary(max_size=400))
def test_any_bytes_give_items_or_rejects(payload: bytes) -> None:
    check_never_raises(payload)


@fuzz
@given(st.one_of(reader_objects, st.lists(reader_objects, max_size=4), json_values))
def test_any_json_built_from_reader_keys_gives_items_or_rejects(document: object) -> None:
    check_never_raises(json.dumps(document).encode())
