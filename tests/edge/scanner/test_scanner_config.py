"""ScannerConfig validation, the documented sample.toml, and the package's public names."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pydantic
import pytest

import edge.drivers.scanner as scanner_package
from edge.drivers.scanner import DecodeOptions, ScannerConfig

SAMPLE = Path(scanner_package.__file__).parent / "sample.toml"
REQUIRED = {"name": "scanner-dock4", "port": "/dev/ttyACM0", "read_point": "dock4-door"}


def make(**overrides: Any) -> ScannerConfig:
    return ScannerConfig.model_validate(REQUIRED | overrides)


def test_sample_toml_is_a_valid_scanner_table() -> None:
    tables = tomllib.loads(SAMPLE.read_text())["scanner"]
    assert len(tables) == 1
    ScannerConfig.model_validate(tables[0])


def test_sample_toml_documents_every_option_with_its_true_default() -> None:
    # Uncomment the "# key = value" lines: the sample then states every default explicitly.
    uncommented = re.sub(r"(?m)^# (\w+ = )", r"\1", SAMPLE.read_text())
    table = tomllib.loads(uncommented)["scanner"][0]
    assert set(table) == set(ScannerConfig.model_fields)
    defaults = make()
    for key, value in table.items():
        if key not in REQUIRED:
            assert getattr(defaults, key) == value, key


def test_defaults_match_the_zebra_rs232_line_settings() -> None:
    config = make()
    assert (config.baudrate, config.bytesize, config.parity, config.stopbits) == (9600, 8, "N", 1)
    assert config.terminator_bytes == [b"\r\n", b"\r", b"\n"]
    assert config.decode_options() == DecodeOptions()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"terminators": ["\r\n", ""]}, "terminators must be non-empty strings"),
        ({"terminators": []}, "needs at least one terminator"),
        ({"terminators": ["\u2028"]}, "latin-1"),
        (
            {"reconnect_delay_ms_initial": 500, "reconnect_delay_ms_max": 400},
            "reconnect_delay_ms_max (400) must be >=",
        ),
        ({"baudrate": 300, "idle_gap_ms": 100}, "idle_gap_ms (100) must be >= 134"),
        ({"idle_gap_ms": 4}, "greater than or equal to 5"),
        ({"parity": "M"}, "'N', 'E' or 'O'"),
        ({"framing": "lines"}, "'terminator' or 'idle_gap'"),
        ({"baud": 9600}, "Extra inputs are not permitted"),
        ({"name": ""}, "at least 1 character"),
    ],
)
def test_invalid_config_is_refused_with_a_clear_message(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        make(**overrides)
    assert message in str(caught.value)


def test_idle_gap_mode_needs_no_terminators() -> None:
    assert make(framing="idle_gap", terminators=[]).terminators == []


def test_config_is_frozen() -> None:
    with pytest.raises(pydantic.ValidationError):
        make().baudrate = 115200  # type: ignore[misc]


def test_public_names_are_exactly_the_documented_ones() -> None:
    assert set(scanner_package.__all__) == {
        "ACK", "NAK", "DecodeOptions", "Frame", "FramingMode", "RejectCode",
        "ScanDecoded", "ScanFramer", "ScanRejected", "ScannerConfig", "ScannerDriver", "SerialOpener",
        "clean_text", "decode_frame", "decode_scan", "digital_link_gtin_serial", "digital_link_sscc",
        "gs1_check_digit",
    }  # fmt: skip
    for name in scanner_package.__all__:
        assert getattr(scanner_package, name) is not None
