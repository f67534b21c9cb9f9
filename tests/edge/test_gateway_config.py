"""The gateway config schema: shipped examples load; every mistake names the file, the key and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import load_config, load_modbus_profiles, parse_config
from edge.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = [*sorted((ROOT / "firmware_config" / "gateways").glob("*.toml")), ROOT / "deploy" / "demo" / "gateway.toml"]

MINIMAL = """
[gateway]
id = "gw-1"
[[read_point]]
name = "dock-1"
id = "urn:rp:1"
biz_location = "urn:loc:1"
biz_step = "receiving"
[[scanner]]
name = "scanner0"
port = "/dev/ttyACM0"
read_point = "dock-1"
"""


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_shipped_example_configs_are_valid(path: Path) -> None:
    config = load_config(path)
    assert config.scanner, f"{path} should configure a scanner"
    for scanner in config.scanner:
        assert config.read_point_named(scanner.read_point).name == scanner.read_point
    profiles = load_modbus_profiles(config)  # every device's profile file exists and validates
    assert set(profiles) == {bus.name for bus in config.modbus_bus}


def test_the_demo_gateway_configures_every_driver_kind() -> None:
    config = load_config(ROOT / "deploy" / "demo" / "gateway.toml")
    assert config.scanner and config.zebra_reader and config.impinj_reader
    assert config.modbus_bus and config.mqtt_sensor and len(config.portal) == 2


def test_defaults_are_filled_in() -> None:
    config = parse_config(MINIMAL)
    assert config.outbox.durability == "full"
    assert config.uplink.batch_events_max == 500
    assert config.gateway.timezone == "UTC"
    assert config.read_point[0].action == "OBSERVE"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("[gateway]", "[gateway]\ncolour = 'red'"), "site.toml: gateway.colour: unknown key"),
        (('biz_step = "receiving"', 'biz_step = "recieving"'), "read_point[0].biz_step: a CBV business step"),
        (('id = "gw-1"', 'id = "gw 1"'), "site.toml: gateway.id: String should match pattern"),
        (('read_point = "dock-1"', 'read_point = "dock-9"'), "expected one of the [[read_point]] names (dock-1)"),
        (("[gateway]", "[uplink]\nbatch_events_max = 'many'\n[gateway]"), "site.toml: uplink.batch_events_max: Input"),
        (("[gateway]", "[outbox]\ndurability = 'sometimes'\n[gateway]"), "outbox.durability: Input should be"),
        (('port = "/dev/ttyACM0"', 'port = "/dev/ttyACM0"\nbaud = 9600'), "site.toml: scanner[0].baud: unknown key"),
        (("[gateway]", "[gateway]\ntimezone = 'Mars/Olympus'"), "an IANA time zone"),
    ],
)
def test_a_wrong_key_or_value_names_file_key_and_expectation(change: tuple[str, str], expected: str) -> None:
    text = MINIMAL.replace(*change, 1)
    with pytest.raises(ConfigError) as error:
        parse_config(text, "site.toml")
    assert expected in str(error.value)


def test_broken_toml_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[gateway\nid = 1\n")
    with pytest.raises(ConfigError, match=r"broken\.toml: not valid TOML: .*line 1"):
        load_config(path)


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path / "absent.toml")
