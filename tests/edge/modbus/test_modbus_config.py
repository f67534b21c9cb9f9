"""ModbusBusConfig validation, the documented sample.toml, and the package's public names."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pydantic
import pytest

import edge.drivers.modbus_bus as modbus_package
from edge.config import format_validation_error
from edge.drivers.modbus_bus import ModbusBusConfig, silent_interval_ms

SAMPLE = Path(modbus_package.__file__).parent / "sample.toml"
DEVICE = {"name": "th-1", "device_id": 1, "profile": "xy-md02", "read_point": "coldroom"}
RTU = {"name": "line-1", "transport": "rtu", "port": "/dev/ttyUSB0", "devices": [DEVICE]}


def make(**overrides: Any) -> ModbusBusConfig:
    return ModbusBusConfig.model_validate(RTU | overrides)


def problems(data: dict[str, Any]) -> str:
    """What the gateway config loader would print for this [[modbus_bus]] table."""
    with pytest.raises(pydantic.ValidationError) as caught:
        ModbusBusConfig.model_validate(data)
    return format_validation_error("gw.toml", caught.value)


def test_defaults_are_the_sensor_factory_settings() -> None:
    config = make()
    assert (config.baudrate, config.bytesize, config.parity, config.stopbits) == (9600, 8, "N", 1)
    assert (config.request_timeout_ms, config.retries_max, config.devices[0].poll_interval_ms) == (500, 2, 5000)
    # t3.5 at 9600 8N1 = 3.5 * 10 bits / 9600 = 3.65 ms, rounded up.
    assert config.inter_request_gap_ms_effective == 4
    assert config.endpoint == "/dev/ttyUSB0"


@pytest.mark.parametrize(
    ("baudrate", "parity", "stopbits", "expected_ms"),
    [
        (9600, "E", 1, 4.0104),
        (9600, "N", 2, 4.0104),
        (4800, "N", 1, 7.2917),
        (19200, "N", 1, 1.8229),
        (38400, "N", 1, 1.75),
    ],
)
def test_silent_interval(baudrate: int, parity: str, stopbits: int, expected_ms: float) -> None:
    assert silent_interval_ms(baudrate, parity, stopbits) == pytest.approx(expected_ms, abs=1e-4)


def test_a_gap_shorter_than_t35_is_refused_at_its_key() -> None:
    assert problems(RTU | {"baudrate": 4800, "inter_request_gap_ms": 5}) == (
        "gw.toml: inter_request_gap_ms: must be at least t3.5 = 7.29 ms at 4800 baud 8N1 (3.5 character times), "
        "or a device may read two requests as one frame; got 5"
    )
    assert make(baudrate=4800, inter_request_gap_ms=8).inter_request_gap_ms_effective == 8
    assert make(baudrate=4800).inter_request_gap_ms_effective == 8


def test_transport_needs_its_own_endpoint_and_refuses_the_other_kind() -> None:
    no_port = {key: value for key, value in RTU.items() if key != "port"}
    assert problems(no_port) == (
        "gw.toml: port: transport = 'rtu' needs a serial port, e.g. '/dev/serial/by-id/usb-FTDI_...' or "
        "'socket://host:port'"
    )
    tcp = {"name": "gw", "transport": "tcp", "devices": [DEVICE]}
    assert "gw.toml: host: transport = 'tcp' needs the host name" in problems(tcp)
    assert problems(tcp | {"host": "10.0.0.5", "baudrate": 19200, "port": "/dev/ttyUSB0"}) == (
        "gw.toml: (top level): port, baudrate: not used with transport = 'tcp'; remove them"
    )
    assert "host: not used with transport = 'rtu'" in problems(RTU | {"host": "10.0.0.5"})
    tcp_config = ModbusBusConfig.model_validate(tcp | {"host": "10.0.0.5"})
    assert (tcp_config.endpoint, tcp_config.inter_request_gap_ms_effective) == ("10.0.0.5:502", 0)


def test_device_ids_and_names_are_checked() -> None:
    assert "devices[0].device_id: Input should be less than or equal to 247" in problems(
        RTU | {"devices": [DEVICE | {"device_id": 248}]}
    )
    assert "devices[0].device_id: Input should be greater than or equal to 1" in problems(
        RTU | {"devices": [DEVICE | {"device_id": 0}]}
    )
    assert problems(RTU | {"devices": [DEVICE, DEVICE | {"name": "th-2"}]}) == (
        "gw.toml: (top level): devices[1].device_id: 1 is already used by devices[0] on this bus"
    )
    assert "devices[1].name: 'th-1' is already used by devices[0]" in problems(
        RTU | {"devices": [DEVICE, DEVICE | {"device_id": 2}]}
    )
    assert "devices[0].profile: String should match pattern" in problems(
        RTU | {"devices": [DEVICE | {"profile": "../etc/passwd"}]}
    )
    assert "devices: List should have at least 1 item" in problems(RTU | {"devices": []})


def test_rtu_is_eight_data_bits_and_reconnect_delays_are_ordered() -> None:
    assert "bytesize: Input should be 8" in problems(RTU | {"bytesize": 7})
    assert "reconnect_delay_ms_max (100) must be >= reconnect_delay_ms_initial (500)" in problems(
        RTU | {"reconnect_delay_ms_max": 100}
    )


def test_sample_toml_is_valid_and_states_the_true_defaults() -> None:
    buses = tomllib.loads(SAMPLE.read_text())["modbus_bus"]
    assert [ModbusBusConfig.model_validate(bus).transport for bus in buses] == ["rtu", "tcp"]
    # Uncomment the "# key = value" lines: the sample then states every default explicitly.
    uncommented = tomllib.loads(re.sub(r"(?m)^# (\w+ = )", r"\1", SAMPLE.read_text()))["modbus_bus"]
    rtu, tcp = (ModbusBusConfig.model_validate(bus) for bus in uncommented)
    defaults = make()
    for key in set(uncommented[0]) - {"name", "port", "devices", "transport"}:
        expected = defaults.inter_request_gap_ms_effective if key == "inter_request_gap_ms" else getattr(defaults, key)
        assert getattr(rtu, key) == expected, key
    assert set(uncommented[0]) | {"host", "port_number"} == set(ModbusBusConfig.model_fields)
    assert set(uncommented[0]["devices"][0]) == set(modbus_package.ModbusDeviceConfig.model_fields)
    assert (tcp.port_number, tcp.inter_request_gap_ms) == (502, 0)


def test_public_names() -> None:
    assert set(modbus_package.__all__) >= {
        "ModbusBus",
        "ModbusBusConfig",
        "ModbusDeviceConfig",
        "ModbusFault",
        "BusOutput",
        "decode_registers",
        "load_profiles_for_bus",
    }
    for name in modbus_package.__all__:
        assert hasattr(modbus_package, name), name
