"""Device profiles: the shipped files, request coalescing, and errors that name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.drivers.modbus_bus import ModbusBusConfig, RegisterBlock, RegisterSpec, load_profiles_for_bus, parse_profile
from edge.drivers.modbus_bus.profiles import coalesce, load_profile
from edge.errors import ConfigError

PROFILES = Path(__file__).resolve().parents[3] / "firmware_config" / "modbus_profiles"
TEMPERATURE = 'measurement = "Temperature"\nuom = "CEL"\n'
HUMIDITY = 'measurement = "RelativeHumidity"\nuom = "P1"\n'


def register(function_code: int, address: int, type_: str = "int16") -> RegisterSpec:
    return RegisterSpec.model_validate(
        {"function_code": function_code, "address": address, "type": type_, "measurement": "Temperature", "uom": "CEL"}
    )


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_profile(text, "bad", "profiles/bad.toml")
    return str(caught.value)


def test_shipped_profiles_load_and_read_each_sensor_with_one_request() -> None:
    blocks = {path.stem: load_profile(path).blocks for path in sorted(PROFILES.glob("*.toml"))}
    assert blocks == {
        "generic-example": (RegisterBlock(3, 0, 2),),
        "kincony-sht30": (RegisterBlock(4, 0, 2),),
        "kincony-sht30-float": (RegisterBlock(4, 2, 4),),
        "xy-md02": (RegisterBlock(4, 1, 2),),
    }


def test_coalescing_merges_contiguous_registers_of_one_function_code_only() -> None:
    registers = [register(4, 5), register(4, 1), register(4, 2, "float32"), register(3, 4), register(4, 7)]
    # 4:1 + 4:2-3 are contiguous; 4:5 follows a gap at 4; 3:4 is another function code; 4:7 after a gap at 6.
    assert coalesce(registers) == (
        RegisterBlock(3, 4, 1),
        RegisterBlock(4, 1, 3),
        RegisterBlock(4, 5, 1),
        RegisterBlock(4, 7, 1),
    )


def test_coalescing_never_asks_for_more_than_125_registers() -> None:
    blocks = coalesce([register(3, address) for address in range(130)])
    assert blocks == (RegisterBlock(3, 0, 125), RegisterBlock(3, 125, 5))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (f"function_code = 4\naddress = 1\ntype = 'int17'\n{TEMPERATURE}", "register[0].type: Input should be"),
        (
            f"function_code = 6\naddress = 1\ntype = 'int16'\n{TEMPERATURE}",
            "register[0].function_code: Input should be 3 or 4",
        ),
        (
            f"function_code = 4\naddress = 70000\ntype = 'int16'\n{TEMPERATURE}",
            "register[0].address: Input should be less",
        ),
        (
            f"function_code = 4\naddress = 1\ntype = 'float32'\ncount = 1\n{TEMPERATURE}",
            "register[0]: count: type 'float32' takes 2",
        ),
        (
            f"function_code = 4\naddress = 1\ntype = 'int16'\nword_order = 'big'\n{TEMPERATURE}",
            "register[0]: word_order: applies to float32 only",
        ),
        (
            "function_code = 4\naddress = 1\ntype = 'int16'\nmeasurement = 'Temperature'\nuom = 'P1'\n",
            "register[0]: uom: Temperature is reported in 'CEL'",
        ),
        (
            f"function_code = 4\naddress = 1\ntype = 'int16'\nvalid_min = 5.0\nvalid_max = 1.0\n{TEMPERATURE}",
            "register[0]: valid_min (5.0) must be below valid_max (1.0)",
        ),
        (
            f"function_code = 4\naddress = 1\ntype = 'int16'\nscale = 0.0\n{TEMPERATURE}",
            "register[0]: scale: must be a finite, non-zero",
        ),
        (
            f"function_code = 4\naddress = 1\ntype = 'int16'\nsacle = 0.1\n{TEMPERATURE}",
            "register[0].sacle: unknown key",
        ),
        (
            "function_code = 4\naddress = 1\ntype = 'int16'\nmeasurement = 'Pressure'\nuom = 'CEL'\n",
            "register[0].measurement: Input should be",
        ),
    ],
)
def test_a_bad_register_is_reported_with_file_and_key(body: str, expected: str) -> None:
    message = error_of(f"[[register]]\n{body}")
    assert message.startswith("profiles/bad.toml: ")
    assert expected in message


def test_profile_level_errors_name_the_register() -> None:
    first = f"[[register]]\nfunction_code = 4\naddress = 2\ntype = 'float32'\n{TEMPERATURE}"
    overlap = f"[[register]]\nfunction_code = 4\naddress = 3\ntype = 'uint16'\n{HUMIDITY}"
    assert "overlaps register[0] (function code 4, addresses 2..3)" in error_of(first + overlap)
    twice = f"[[register]]\nfunction_code = 4\naddress = 9\ntype = 'int16'\n{TEMPERATURE}"
    assert "register[1].measurement: Temperature is already read by register[0]" in error_of(first + twice)
    assert error_of("description = 'x'\n") == "profiles/bad.toml: register: Field required"
    assert error_of("[[register]\n").startswith("profiles/bad.toml: not valid TOML:")


def test_a_missing_profile_is_reported_at_the_device_key_with_the_choices(tmp_path: Path) -> None:
    (tmp_path / "xy-md02.toml").write_text((PROFILES / "xy-md02.toml").read_text())
    bus = ModbusBusConfig.model_validate(
        {
            "name": "b",
            "transport": "tcp",
            "host": "127.0.0.1",
            "devices": [
                {"name": "a", "device_id": 1, "profile": "xy-md02", "read_point": "rp"},
                {"name": "b", "device_id": 2, "profile": "xy-md03", "read_point": "rp"},
            ],
        }
    )
    with pytest.raises(ConfigError) as caught:
        load_profiles_for_bus(bus, tmp_path, source="gw.toml: modbus_bus[0]")
    assert str(caught.value) == (
        f"gw.toml: modbus_bus[0].devices[1].profile: no profile file {tmp_path}/xy-md03.toml "
        f"(available in {tmp_path}: xy-md02), got 'xy-md03'"
    )
    assert set(load_profiles_for_bus(bus.model_copy(update={"devices": bus.devices[:1]}), tmp_path)) == {"xy-md02"}


def test_an_unreadable_profile_names_its_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: cannot read the profile"):
        load_profile(tmp_path / "nope.toml")
