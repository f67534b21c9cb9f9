"""ScanFramer: terminators, idle gaps, split feeds and overflow, with time passed in."""

from __future__ import annotations

import pytest

from edge.drivers.scanner import Frame, ScanFramer

CR_LF_ANY = [b"\r\n", b"\r", b"\n"]


def framer(
    terminators: list[bytes] | None = None,
    frame_bytes_max: int = 4096,
    idle_gap_ms: int = 80,
    mode: str = "terminator",
) -> ScanFramer:
    return ScanFramer(CR_LF_ANY if terminators is None else terminators, frame_bytes_max, idle_gap_ms, mode)  # type: ignore[arg-type]


def data_of(frames: list[Frame]) -> list[bytes]:
    return [frame.data for frame in frames]


def test_each_terminator_ends_a_frame() -> None:
    assert data_of(framer().feed(b"A\r\nB\rC\nD", now_ms=0)) == [b"A", b"B", b"C"]


def test_crlf_is_one_terminator_not_cr_then_empty_lf() -> None:
    # With only CRLF and CR configured, a CR-first split would leave "\nB" as the second frame.
    assert data_of(framer([b"\r", b"\r\n"]).feed(b"A\r\nB\r\n", now_ms=0)) == [b"A", b"B"]


def test_crlf_split_across_feeds_is_still_one_terminator() -> None:
    scanner = framer([b"\r\n", b"\r"])
    assert scanner.feed(b"ABC\r", now_ms=0) == []
    assert data_of(scanner.feed(b"\nDEF\r\n", now_ms=1)) == [b"ABC", b"DEF"]


def test_cr_waiting_for_a_possible_lf_is_a_terminator_once_the_line_goes_idle() -> None:
    scanner = framer([b"\r\n", b"\r"])
    assert scanner.feed(b"ABC\r", now_ms=0) == []
    assert data_of(scanner.flush_idle(now_ms=80)) == [b"ABC"]


def test_cr_alone_is_data_when_only_crlf_is_a_terminator() -> None:
    scanner = framer([b"\r\n"])
    assert scanner.feed(b"A\r", now_ms=0) == []
    assert data_of(scanner.feed(b"\rB\r\n", now_ms=1)) == [b"A\r\rB"]


def test_frame_fed_one_byte_at_a_time_is_reassembled() -> None:
    scanner = framer()
    frames: list[Frame] = []
    for index, byte in enumerate(b"]E05901234123457\r\n"):
        frames += scanner.feed(bytes([byte]), now_ms=index)
    assert data_of(frames) == [b"]E05901234123457"]


def test_lone_terminators_yield_no_empty_frames() -> None:
    scanner = framer()
    assert scanner.feed(b"\r\n\r\n\n\r", now_ms=0) == []
    assert scanner.flush() == []


def test_idle_gap_flushes_a_frame_whose_terminator_never_comes() -> None:
    scanner = framer(idle_gap_ms=80)
    assert scanner.feed(b"]C100106141412345678908", now_ms=1000) == []
    assert scanner.deadline_ms() == 1080
    assert scanner.flush_idle(now_ms=1079) == []
    assert data_of(scanner.flush_idle(now_ms=1080)) == [b"]C100106141412345678908"]
    assert scanner.deadline_ms() is None


def test_deadline_is_none_when_nothing_is_pending() -> None:
    scanner = framer()
    assert scanner.deadline_ms() is None
    scanner.feed(b"A\r\n", now_ms=5)
    assert scanner.deadline_ms() is None


def test_bytes_after_a_gap_end_the_previous_frame_even_without_flush_idle() -> None:
    scanner = framer(idle_gap_ms=80)
    assert scanner.feed(b"FIRST", now_ms=0) == []
    assert data_of(scanner.feed(b"SECOND", now_ms=200)) == [b"FIRST"]
    assert data_of(scanner.flush()) == [b"SECOND"]


def test_bytes_within_the_gap_extend_the_same_frame() -> None:
    scanner = framer(idle_gap_ms=80)
    scanner.feed(b"]E0590123", now_ms=0)
    scanner.feed(b"4123457", now_ms=79)
    assert scanner.flush_idle(now_ms=158) == []
    assert data_of(scanner.flush_idle(now_ms=159)) == [b"]E05901234123457"]


def test_idle_gap_mode_without_terminator_like_zebra_data_as_is() -> None:
    scanner = framer(mode="idle_gap", idle_gap_ms=50)
    assert scanner.feed(b"]C10109501101530003", now_ms=0) == []
    assert scanner.feed(b"17250331", now_ms=20) == []
    assert data_of(scanner.flush_idle(now_ms=70)) == [b"]C1010950110153000317250331"]


def test_idle_gap_mode_keeps_cr_lf_as_data() -> None:
    scanner = framer(mode="idle_gap")
    assert scanner.feed(b"LINE1\r\nLINE2\r\n", now_ms=0) == []
    assert data_of(scanner.flush_idle(now_ms=80)) == [b"LINE1\r\nLINE2\r\n"]


def test_overflow_is_truncated_flagged_and_the_rest_counted() -> None:
    scanner = framer(frame_bytes_max=8)
    frames = scanner.feed(b"0123456789AB\r\nOK\r\n", now_ms=0)
    assert frames == [Frame(b"01234567", overflow=True, discarded_bytes=4), Frame(b"OK")]
    assert scanner.discarded_bytes_total == 4


def test_overflow_across_feeds_is_emitted_once_when_the_message_ends() -> None:
    scanner = framer(frame_bytes_max=4)
    assert scanner.feed(b"ABCDEF", now_ms=0) == []
    assert scanner.feed(b"GHIJ", now_ms=1) == []
    assert scanner.feed(b"KL\r\n", now_ms=2) == [Frame(b"ABCD", overflow=True, discarded_bytes=8)]
    assert scanner.discarded_bytes_total == 8


def test_overflow_without_terminator_ends_at_the_idle_gap() -> None:
    scanner = framer(frame_bytes_max=4, mode="idle_gap")
    scanner.feed(b"ABCDEFG", now_ms=0)
    assert scanner.flush_idle(now_ms=80) == [Frame(b"ABCD", overflow=True, discarded_bytes=3)]


def test_frame_of_exactly_frame_bytes_max_is_not_an_overflow() -> None:
    assert framer(frame_bytes_max=4).feed(b"ABCD\n", now_ms=0) == [Frame(b"ABCD")]


def test_flush_ends_the_pending_message_whatever_the_time() -> None:
    scanner = framer([b"\r\n", b"\r"])
    scanner.feed(b"PARTIAL\r", now_ms=0)
    assert data_of(scanner.flush()) == [b"PARTIAL"]
    assert scanner.deadline_ms() is None


@pytest.mark.parametrize(
    ("terminators", "frame_bytes_max", "idle_gap_ms"),
    [([], 10, 80), ([b""], 10, 80), ([b"\n"], 0, 80), ([b"\n"], 10, 0)],
)
def test_constructor_refuses_settings_that_cannot_frame(
    terminators: list[bytes], frame_bytes_max: int, idle_gap_ms: int
) -> None:
    with pytest.raises(ValueError):
        ScanFramer(terminators, frame_bytes_max, idle_gap_ms, "terminator")
