"""Property tests: framing is independent of how bytes are chunked, accounts for every byte, and decoding
never raises whatever arrives on the wire."""

from __future__ import annotations

import itertools
import re
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.drivers.scanner import (
    DecodeOptions,
    Frame,
    ScanDecoded,
    ScanFramer,
    ScanRejected,
    decode_frame,
    decode_scan,
    gs1_check_digit,
)

IDLE_GAP_MS = 80
TERMINATOR_SETS = [
    [b"\r\n", b"\r", b"\n"],
    [b"\r\n"],
    [b"\r\n", b"\r"],
    [b"\x03"],
    [b"ABC", b"B"],  # one terminator inside another: the hardest case for a streaming splitter
]
# Bytes that form, break and overlap terminators, plus anything else.
wire_pieces = st.sampled_from([b"\r", b"\n", b"\r\n", b"\x03", b"A", b"B", b"C", b"x", b"\x1d"]) | st.binary(max_size=4)
wire_bytes = st.lists(wire_pieces, max_size=60).map(b"".join)
# (bytes, milliseconds since the previous chunk)
chunks = st.lists(st.tuples(wire_bytes, st.integers(min_value=0, max_value=3 * IDLE_GAP_MS)), max_size=12)
fuzz = settings(max_examples=300, deadline=None)


def feed_all(framer: ScanFramer, timed_chunks: list[tuple[bytes, int]]) -> list[Frame]:
    frames: list[Frame] = []
    now_ms = 0
    for data, delay_ms in timed_chunks:
        now_ms += delay_ms
        frames += framer.flush_idle(now_ms) + framer.feed(data, now_ms)
    return frames + framer.flush()


def bursts(timed_chunks: list[tuple[bytes, int]]) -> list[bytes]:
    """The byte stream cut where the line was idle for the gap: what the framer must treat as separate."""
    result: list[bytes] = []
    quiet_ms = 0  # since the last bytes arrived; empty chunks carry time but no bytes
    for data, delay_ms in timed_chunks:
        quiet_ms += delay_ms
        if not data:
            continue
        if result and quiet_ms < IDLE_GAP_MS:
            result[-1] += data
        else:
            result.append(data)
        quiet_ms = 0
    return result


def reference_frames(stream_bursts: list[bytes], terminators: list[bytes], frame_bytes_max: int) -> list[Frame]:
    """The whole input split at once with a leftmost, longest-first regex: what streaming must reproduce."""
    pattern = re.compile(b"|".join(re.escape(t) for t in sorted(terminators, key=len, reverse=True)))
    return [
        Frame(segment[:frame_bytes_max], len(segment) > frame_bytes_max, max(0, len(segment) - frame_bytes_max))
        for burst in stream_bursts
        for segment in pattern.split(burst)
        if segment
    ]


@fuzz
@given(
    timed_chunks=chunks,
    terminators=st.sampled_from(TERMINATOR_SETS),
    frame_bytes_max=st.integers(min_value=1, max_value=40),
)
def test_streaming_framing_equals_splitting_the_whole_input_whatever_the_chunks(
    timed_chunks: list[tuple[bytes, int]], terminators: list[bytes], frame_bytes_max: int
) -> None:
    framer = ScanFramer(terminators, frame_bytes_max, IDLE_GAP_MS, "terminator")
    frames = feed_all(framer, timed_chunks)
    assert frames == reference_frames(bursts(timed_chunks), terminators, frame_bytes_max)
    assert framer.discarded_bytes_total == sum(frame.discarded_bytes for frame in frames)


@fuzz
@given(
    messages=st.lists(st.binary(max_size=50).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")), max_size=10),
    separators=st.lists(st.sampled_from([b"\r\n", b"\r", b"\n"]), min_size=10, max_size=10),
    cuts=st.lists(st.integers(min_value=0, max_value=600), max_size=8),
    frame_bytes_max=st.integers(min_value=1, max_value=30),
)
def test_frame_bytes_plus_discarded_bytes_account_for_all_input_but_terminators(
    messages: list[bytes], separators: list[bytes], cuts: list[int], frame_bytes_max: int
) -> None:
    stream = b"".join(message + separator for message, separator in zip(messages, separators, strict=False))
    framer = ScanFramer([b"\r\n", b"\r", b"\n"], frame_bytes_max, IDLE_GAP_MS, "terminator")
    bounds = [0, *sorted(min(cut, len(stream)) for cut in cuts), len(stream)]
    frames = [frame for lo, hi in itertools.pairwise(bounds) for frame in framer.feed(stream[lo:hi], 0)]
    frames += framer.flush()

    non_empty = [message for message in messages if message]
    assert [frame.data for frame in frames] == [message[:frame_bytes_max] for message in non_empty]
    assert [frame.overflow for frame in frames] == [len(message) > frame_bytes_max for message in non_empty]
    terminator_bytes = sum(len(separator) for separator in separators[: len(messages)])
    assert sum(len(frame.data) + frame.discarded_bytes for frame in frames) == len(stream) - terminator_bytes


@fuzz
@given(
    timed_chunks=st.lists(st.tuples(st.binary(max_size=200), st.integers(min_value=0, max_value=200)), max_size=8),
    mode=st.sampled_from(["terminator", "idle_gap"]),
    prefix=st.sampled_from(["", "#", "\x02", "]"]),
)
def test_any_byte_stream_framed_then_decoded_never_raises(
    timed_chunks: list[tuple[bytes, int]], mode: str, prefix: str
) -> None:
    framer = ScanFramer([b"\r\n", b"\r", b"\n"], 64, IDLE_GAP_MS, mode)  # type: ignore[arg-type]
    for frame in feed_all(framer, timed_chunks):
        outcome = decode_frame(frame, DecodeOptions(prefix=prefix))
        assert isinstance(outcome, ScanDecoded | ScanRejected)
        assert outcome.raw == frame.data


gs1_like_text = st.lists(
    st.sampled_from(["]C1", "]d2", "]Q1", "]Q3", "]E0", "]", "01", "00", "02", "10", "17", "21", "37", "3103", "414"])
    | st.sampled_from(["https://id.gs1.org/", "HTTP://X/", "/01/", "/21/", "?17=", "%2F", "\x1d", "09501101530003"])
    | st.text(alphabet="0123456789ABC/%?=&\x1d]", max_size=6),
    max_size=10,
).map("".join)


@fuzz
@given(text=gs1_like_text)
def test_gs1_shaped_input_decodes_to_a_consistent_scan_or_a_reject(text: str) -> None:
    outcome = decode_scan(text.encode("latin-1"), DecodeOptions())
    if isinstance(outcome, ScanRejected):
        assert outcome.reason and outcome.reason_code
        return
    assert outcome.gtin or outcome.sscc
    for key, length in ((outcome.gtin, 14), (outcome.sscc, 18), (outcome.content_gtin, 14)):
        if key:
            assert len(key) == length and gs1_check_digit(key[:-1]) == int(key[-1])
    assert outcome.net_weight_kg is None or isinstance(outcome.net_weight_kg, Decimal)
    if outcome.sscc:
        assert outcome.object_id.endswith(outcome.sscc)
    elif outcome.serial:
        assert outcome.object_id.startswith(f"https://id.gs1.org/01/{outcome.gtin}/21/")
