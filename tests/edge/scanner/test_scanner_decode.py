"""decode_scan / decode_frame on the standards.md §1–§2 vectors, line noise, and the golden cases folder."""

from __future__ import annotations

import hashlib
import json
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from edge.drivers.scanner import (
    DecodeOptions,
    Frame,
    ScanDecoded,
    ScanFramer,
    ScannerConfig,
    ScanRejected,
    decode_frame,
    decode_scan,
    digital_link_gtin_serial,
    digital_link_sscc,
    gs1_check_digit,
)

CASES = Path(__file__).parent / "cases"
OPTIONS = DecodeOptions()
DATAMATRIX_VECTOR = b"]d2010950110153000317250331101234AB\x1d21SER123\x1d3103001250"
DIGITAL_LINK = "https://id.gs1.org/01/09501101530003/21/SER123"


def decoded(raw: bytes, options: DecodeOptions = OPTIONS) -> ScanDecoded:
    outcome = decode_scan(raw, options)
    assert isinstance(outcome, ScanDecoded), outcome
    return outcome


def rejected(raw: bytes, options: DecodeOptions = OPTIONS) -> ScanRejected:
    outcome = decode_scan(raw, options)
    assert isinstance(outcome, ScanRejected), outcome
    return outcome


def test_gs1_datamatrix_vector_decodes_every_field() -> None:
    scan = decoded(DATAMATRIX_VECTOR)
    assert scan.symbology == "]d2"
    assert scan.gtin == "09501101530003"
    assert scan.expiry_date == "2025-03-31"
    assert scan.batch == "1234AB"
    assert scan.serial == "SER123"
    assert scan.net_weight_kg == Decimal("1.250")
    assert scan.object_id == "https://id.gs1.org/01/09501101530003/21/SER123"
    assert scan.raw == DATAMATRIX_VECTOR
    assert scan.raw_sha256 == hashlib.sha256(DATAMATRIX_VECTOR).hexdigest()


def test_sscc_with_wrong_check_digit_is_rejected_saying_expected_7() -> None:
    reject = rejected(b"00106141411234567890")
    assert reject.reason_code == "check_digit"
    assert "SSCC" in reject.reason and "'106141411234567890'" in reject.reason
    assert "Expected 7, got 0" in reject.reason


def test_sscc_from_the_tds_vector_decodes() -> None:
    scan = decoded(b"00106141412345678908")
    assert scan.sscc == "106141412345678908"
    assert scan.gtin == ""
    assert scan.object_id == "https://id.gs1.org/00/106141412345678908"


def test_sscc_in_gs1_128_with_content_and_count() -> None:
    scan = decoded(b"]C1001061414123456789080209501101530003371234")
    assert (scan.sscc, scan.content_gtin, scan.count) == ("106141412345678908", "09501101530003", 1234)
    assert scan.object_id == "https://id.gs1.org/00/106141412345678908"


@pytest.mark.parametrize("aim", ["", "]Q1", "]Q3", "]d1", "]d2"])
def test_digital_link_decodes_with_or_without_aim_id(aim: str) -> None:
    scan = decoded(f"{aim}{DIGITAL_LINK}?17=250331&10=AB".encode())
    assert scan.symbology == aim
    assert (scan.gtin, scan.serial, scan.batch, scan.expiry_date) == (
        "09501101530003",
        "SER123",
        "AB",
        "2025-03-31",
    )
    assert scan.object_id == DIGITAL_LINK


def test_digital_link_in_capitals_from_an_alphanumeric_qr_code_decodes() -> None:
    assert decoded(b"]Q1HTTPS://ID.GS1.ORG/01/09501101530003/21/SER123").object_id == DIGITAL_LINK


def test_digital_link_serial_is_percent_encoded_in_the_object_id() -> None:
    scan = decoded(b"https://id.gs1.org/01/09501101530003/21/A%2FB%2B(C)")
    assert scan.serial == "A/B+(C)"
    assert scan.object_id == "https://id.gs1.org/01/09501101530003/21/A%2FB%2B%28C%29"


def test_digital_link_with_wrong_check_digit_is_a_check_digit_reject() -> None:
    assert rejected(b"]Q1https://id.gs1.org/01/09501101530004").reason_code == "check_digit"


def test_url_that_is_not_a_digital_link_is_not_gs1() -> None:
    assert rejected(b"]Q1https://example.com/menu").reason_code == "not_gs1"


def test_ean13_with_aim_id_decodes_to_gtin14() -> None:
    scan = decoded(b"]E05901234123457")
    assert (scan.symbology, scan.gtin, scan.object_id) == ("]E0", "05901234123457", "")


def test_upc_e_under_e0_is_expanded_to_its_upc_a_gtin() -> None:
    assert decoded(b"]E004252614").gtin == "00042100005264"


@pytest.mark.parametrize(
    ("raw", "gtin"),
    [
        (b"]E496385074", "00000096385074"),
        (b"]I110614141234568", "10614141234568"),
        (b"614141123452", "00614141123452"),
        (b"5901234123457", "05901234123457"),
    ],
)
def test_bare_gtins_decode_zero_padded(raw: bytes, gtin: str) -> None:
    assert decoded(raw).gtin == gtin


def test_ean13_with_wrong_check_digit_is_rejected_with_biips_reason() -> None:
    reject = rejected(b"]E05901234123458")
    assert reject.reason_code == "check_digit"
    assert "Expected 7, got 8" in reject.reason


def test_gtin_check_digit_reject_says_what_and_where() -> None:
    reject = rejected(b"]d2010950110153000417250331")
    assert reject.reason == (
        "GTIN check digit invalid in '09501101530004': "
        "Invalid GTIN check digit for '09501101530004': Expected 3, got 4."
    )


@pytest.mark.parametrize(
    ("body", "check_digit"),
    [("8061414112345", 8), ("10614141234567890", 8), ("061414112345", 2), ("0950110153000", 3)],
)
def test_gs1_check_digit_matches_the_standards_vectors(body: str, check_digit: int) -> None:
    assert gs1_check_digit(body) == check_digit


def test_not_gs1_text_is_rejected_with_the_text_quoted() -> None:
    reject = rejected(b"HELLO")
    assert reject.reason_code == "not_gs1"
    assert reject.reason == "not a GS1 barcode (no GTIN, SSCC or Digital Link): 'HELLO'"


def test_plain_code128_digits_are_not_taken_for_gs1() -> None:
    assert rejected(b"]C00109501101530003").reason_code == "not_gs1"


def test_gs1_128_without_gtin_or_sscc_is_not_gs1() -> None:
    assert rejected(b"]C1414061414112345225440").reason_code == "not_gs1"


def test_eighteen_bare_digits_are_not_an_sscc_without_ai_00() -> None:
    assert rejected(b"106141412345678908").reason_code == "not_gs1"


def test_truncated_gs1_data_is_a_syntax_reject() -> None:
    reject = rejected(b"]C10109501101530003172503")
    assert reject.reason_code == "gs1_syntax"
    assert "(17)" in reject.reason


@pytest.mark.parametrize("raw", [b"]C1010950110153000317250230", b"https://id.gs1.org/01/09501101530003?17=251131"])
def test_impossible_date_is_a_bad_date_reject(raw: bytes) -> None:
    assert rejected(raw).reason_code == "bad_date"


def test_day_00_expiry_means_last_day_of_month() -> None:
    assert decoded(b"]C1010950110153000317240200").expiry_date == "2024-02-29"


def test_best_before_and_count_are_extracted() -> None:
    scan = decoded(b"]C10109501101530003152601153712")
    assert (scan.best_before_date, scan.count) == ("2026-01-15", 12)


def test_same_ai_twice_with_different_values_is_a_syntax_reject() -> None:
    assert rejected(b"]C1010950110153000321A\x1d21B").reason_code == "gs1_syntax"


def test_line_noise_around_a_valid_scan_still_decodes() -> None:
    noisy = b"\x00\x00\x07 \x11" + DATAMATRIX_VECTOR[:20] + b"\x00\x7f" + DATAMATRIX_VECTOR[20:] + b"\x13\x00 \r"
    scan = decoded(noisy)
    assert scan.text == DATAMATRIX_VECTOR.decode()
    assert (scan.gtin, scan.serial) == ("09501101530003", "SER123")
    assert scan.raw == noisy


def test_leading_gs_sent_as_fnc1_without_aim_id_is_ignored() -> None:
    assert decoded(b"\x1d010950110153000317250331").gtin == "09501101530003"


def test_configured_prefix_and_suffix_are_stripped() -> None:
    scan = decoded(b"#]E05901234123457!", DecodeOptions(prefix="#", suffix="!"))
    assert (scan.text, scan.gtin) == ("]E05901234123457", "05901234123457")


def test_frame_of_only_noise_is_an_empty_reject_not_dropped() -> None:
    reject = rejected(b"\x00\x01\x7f \t\x1b")
    assert reject.reason_code == "empty"
    assert reject.raw == b"\x00\x01\x7f \t\x1b"


@pytest.mark.parametrize(
    "raw", [bytes(range(256)), b"\xff\xfe\xfd", b"\xe9t\xe9", b"]", b"]W1abc", b"]Yx", b"]\xff\xff"]
)
def test_any_latin1_bytes_decode_without_raising(raw: bytes) -> None:
    assert isinstance(decode_scan(raw, OPTIONS), ScanDecoded | ScanRejected)


def test_overflowing_frame_is_rejected_with_counts() -> None:
    reject = decode_frame(Frame(b"A" * 4096, overflow=True, discarded_bytes=123), OPTIONS)
    assert isinstance(reject, ScanRejected)
    assert reject.reason_code == "overflow"
    assert reject.reason == "frame exceeds 4096 bytes (truncated, 123 bytes discarded)"


def test_decode_frame_decodes_a_complete_frame() -> None:
    assert isinstance(decode_frame(Frame(DATAMATRIX_VECTOR), OPTIONS), ScanDecoded)


def test_digital_link_builders_refuse_invalid_keys() -> None:
    assert digital_link_gtin_serial("09501101530003", "~a.b_c-") == "https://id.gs1.org/01/09501101530003/21/~a.b_c-"
    assert digital_link_sscc("106141412345678908") == "https://id.gs1.org/00/106141412345678908"
    with pytest.raises(ValueError):
        digital_link_gtin_serial("09501101530004", "1")
    with pytest.raises(ValueError):
        digital_link_sscc("10614141234567890")


# Golden cases: cases/<name>/{input.bin, expected.json[, config.toml]}. A bug report becomes a folder.


def outcome_as_json(outcome: ScanDecoded | ScanRejected) -> dict[str, Any]:
    if isinstance(outcome, ScanRejected):
        return {
            "reason_code": outcome.reason_code,
            "reason": outcome.reason,
            "raw_sha256": outcome.raw_sha256,
        }
    fields = {name: getattr(outcome, name) for name in ScanDecoded.__dataclass_fields__ if name != "raw"}
    fields["net_weight_kg"] = None if outcome.net_weight_kg is None else str(outcome.net_weight_kg)
    return fields


def case_config(case: Path) -> ScannerConfig:
    table: dict[str, Any] = {"name": "scanner-golden", "port": "/dev/null", "read_point": "golden"}
    if (case / "config.toml").exists():
        table |= tomllib.loads((case / "config.toml").read_text())["scanner"][0]
    return ScannerConfig.model_validate(table)


def run_case(case: Path) -> list[dict[str, Any]]:
    config = case_config(case)
    framer = ScanFramer(config.terminator_bytes, config.frame_bytes_max, config.idle_gap_ms, config.framing)
    frames = framer.feed((case / "input.bin").read_bytes(), now_ms=0) + framer.flush()
    return [outcome_as_json(decode_frame(frame, config.decode_options())) for frame in frames]


@pytest.mark.parametrize("case", sorted(path for path in CASES.iterdir() if path.is_dir()), ids=lambda path: path.name)
def test_golden_case(case: Path) -> None:
    assert run_case(case) == json.loads((case / "expected.json").read_text())
