"""Fuzz the serial scanner path: byte stream → ``ScanFramer`` → ``decode_frame`` (biip's GS1 parsing) → event.

Inputs are mutations of real labels (GS1-128 with FNC1/GS separators, GS1 DataMatrix, Digital Link URIs in QR
codes, EAN/UPC) in a framed stream with line noise. Property: nothing raises; every frame becomes a
``ScanDecoded`` or a ``ScanRejected`` with a non-empty reason and a reason code (``ScanIntake`` quarantines those);
every decoded scan names a GTIN or SSCC with valid check digits and becomes an event that serializes.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone

from fuzz_mutations import mutated_bytes
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from edge.config import ReadPointConfig
from edge.drivers.scanner import (
    DecodeOptions,
    ScanDecoded,
    ScanFramer,
    ScanRejected,
    decode_frame,
    decode_scan,
    gs1_check_digit,
)
from edge.pipeline.scan_events import scan_to_event

fuzz = settings(settings.get_profile("tallyport-fuzz"))
READ_POINT = ReadPointConfig(
    name="dock-4", id="urn:rp:dock-4", biz_location="urn:loc:dock-4", biz_step="receiving", action="ADD"
)
READ_TIME = datetime(2026, 11, 29, 11, 0, tzinfo=timezone(timedelta(hours=1)))
LABELS = [
    b"]C1010950110153000317261231109876\x1d21ABC123",  # GS1-128: GTIN, expiry, batch, GS, serial
    b"]C100095011015300000013",  # SSCC
    b"]C1020950110153000337100\x1d10LOT7",  # contents + count
    b"]C10109501101530003310300150015210101",  # net weight, best before
    b"]d2010950110153000317250229\x1d10B\x1d21S",
    b"]Q1https://id.gs1.org/01/09501101530003/21/ABC%2F1?17=261231",
    b"]Q1HTTPS://ID.GS1.ORG/01/09501101530003/21/X",
    b"]Q3https://example.com/00/095011015300000013",
    b"]E09501101530003",  # EAN-13
    b"]E001234565",  # UPC-E
    b"]E409501231",  # EAN-8
    b"09501101530003",  # no AIM id
    b"\x1d0109501101530003\x1d21X",
    b"]C1011234567890123417999999",
]
TERMINATORS = [b"\r\n", b"\r", b"\n"]
labels = st.sampled_from(LABELS).flatmap(mutated_bytes)


def assert_outcome(frame_data: bytes, outcome: ScanDecoded | ScanRejected) -> None:
    assert outcome.raw == frame_data
    event(f"rejected: {outcome.reason_code}" if isinstance(outcome, ScanRejected) else "decoded")
    if isinstance(outcome, ScanRejected):
        assert outcome.reason.strip() and outcome.reason_code
        return
    assert outcome.gtin or outcome.sscc
    for key, length in ((outcome.gtin, 14), (outcome.sscc, 18), (outcome.content_gtin, 14)):
        if key:
            assert len(key) == length and key.isdigit() and gs1_check_digit(key[:-1]) == int(key[-1])
    scan_event = scan_to_event(
        outcome, gateway_id="gw", device_id="scanner-dock4", read_point=READ_POINT, read_time=READ_TIME
    )
    assert scan_event.SerializeToString()
    assert scan_event.objects or scan_event.quantities


@fuzz
@given(
    messages=st.lists(labels, min_size=1, max_size=5),
    separators=st.lists(st.sampled_from(TERMINATORS), min_size=5, max_size=5),
    noise=st.lists(st.binary(max_size=3), min_size=5, max_size=5),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6),
    prefix=st.sampled_from(["", "#", "\x02"]),
)
def test_fuzz_scanner_stream_frames_become_scans_or_rejects(
    messages: list[bytes], separators: list[bytes], noise: list[bytes], cuts: list[int], prefix: str
) -> None:
    stream = b"".join(
        line_noise + prefix.encode("latin-1") + message + separator
        for message, separator, line_noise in zip(messages, separators, noise, strict=False)
    )
    framer = ScanFramer(TERMINATORS, 64, 80, "terminator")
    bounds = [0, *sorted(min(cut, len(stream)) for cut in cuts), len(stream)]
    frames = [frame for lo, hi in itertools.pairwise(bounds) for frame in framer.feed(stream[lo:hi], 0)]
    frames += framer.flush()
    for frame in frames:
        assert_outcome(frame.data, decode_frame(frame, DecodeOptions(prefix=prefix)))


gs1_pieces = st.sampled_from(
    [
        "]C1",
        "]d2",
        "]Q1",
        "]Q3",
        "]E0",
        "]e0",
        "]",
        "01",
        "00",
        "02",
        "10",
        "11",
        "15",
        "17",
        "21",
        "37",
        "3103",
        "3922",
        "414",
        "254",
        "8003",
        "8004",
        "7003",
        "\x1d",
        "/01/",
        "/00/",
        "/21/",
        "?",
        "&",
        "=",
        "%",
        "%2",
        "https://id.gs1.org",
        "http://",
        "09501101530003",
        "095011015300000013",
        "991231",
        "000000",
        "999999",
    ]
) | st.text(alphabet="0123456789ABCZ/%?=&#\x1d\x00é", max_size=6)


@fuzz
@given(text=st.lists(gs1_pieces, max_size=12).map("".join))
@example(text="]Q1https://id.gs1.org/01/09501101530003/21/%")  # a dangling percent escape in a serial
@example(text="]C10109501101530003\x1d\x1d\x1d")
@example(text="]")
def test_fuzz_gs1_element_strings_and_digital_links_decode_or_reject(text: str) -> None:
    raw = text.encode("latin-1", errors="replace")
    assert_outcome(raw, decode_scan(raw, DecodeOptions()))


@fuzz
@given(data=st.binary(max_size=300))
def test_fuzz_any_bytes_decode_to_a_scan_or_a_reject(data: bytes) -> None:
    assert_outcome(data, decode_scan(data, DecodeOptions(prefix="]", suffix="\r")))


def test_a_scan_at_any_site_time_becomes_an_event() -> None:
    # The scan's event time is the gateway clock; at the edges of the offset range it must still serialize.
    scan = decode_scan(LABELS[0], DecodeOptions())
    assert isinstance(scan, ScanDecoded)
    for hours in (-12, 14):
        moment = datetime.now(UTC).astimezone(timezone(timedelta(hours=hours)))
        scan_event = scan_to_event(scan, gateway_id="gw", device_id="s", read_point=READ_POINT, read_time=moment)
        assert scan_event.event_time_offset_minutes == hours * 60
