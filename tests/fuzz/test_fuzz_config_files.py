"""Fuzz the config loaders: the gateway config (``edge.config.load_config`` and the Modbus profiles it names) and
the aggregator config (``cloud.config.load_config``, with and without command-line overrides).

Inputs are the shipped example configs, mutated as TOML trees (values of the wrong type, huge numbers, NaN and
inf, deep nesting, keys deleted and added) and as bytes (bit flips, truncation, control bytes, invalid UTF-8).
Property: a loader returns a validated config or raises its package's ``ConfigError``, and every line of the
message names the file (or the flag) it is about; no other exception escapes.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any

from fuzz_mutations import mutated_bytes, mutated_tree, odd_leaves, to_toml
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from cloud.config import CloudConfig
from cloud.config import load_config as load_cloud_config
from cloud.errors import ConfigError as CloudConfigError
from edge.config import GatewayConfig, load_modbus_profiles
from edge.config import load_config as load_gateway_config
from edge.errors import ConfigError as EdgeConfigError

fuzz = settings(settings.get_profile("tallyport-fuzz"))
ROOT = Path(__file__).resolve().parents[2]
GATEWAY_SAMPLES = [
    (ROOT / "firmware_config" / "gateways" / "dock-door.toml").read_bytes(),
    (ROOT / "firmware_config" / "gateways" / "zebra-rs232-default.toml").read_bytes(),
    (ROOT / "deploy" / "demo" / "gateway.toml").read_bytes(),
]
CLOUD_SAMPLES = [
    b'[server]\nlisten = "127.0.0.1:50051"\nshutdown_grace_ms = 5000\n\n[store]\nbackend = "sqlite"\n'
    b'path = "var/cloud.db"\ndurability = "full"\n\n[ingest]\nmax_batch_events = 2000\nmax_unacked_batches = 8\n',
    b'[store]\nbackend = "postgres"\ndsn = "postgresql://tallyport:secret@db:5432/tallyport"\nschema = "tp"\n'
    b"pool_connections_min = 2\npool_connections_max = 4\n",
    b"",
]
config_leaves = odd_leaves | st.sampled_from(
    ["rtu", "tcp", "xy-md02", "../../etc/passwd", "a\x00b", "socket://", "http://[", "#", "+/#", "Europe/Nowhere"]
)


def documents(samples: list[bytes]) -> st.SearchStrategy[bytes]:
    def structural(sample: bytes) -> st.SearchStrategy[bytes]:
        tree = tomllib.loads(sample.decode())
        return mutated_tree(tree, config_leaves, rounds_max=4).map(lambda mutated: to_toml(mutated).encode())

    sample = st.sampled_from(samples)
    return sample.flatmap(structural) | sample.flatmap(mutated_bytes)


def assert_names_the_source(message: str, source: str) -> None:
    assert message.strip()
    for line in message.splitlines():
        assert line.startswith(source), f"{line!r} does not name {source!r}"


@fuzz
@given(document=documents(GATEWAY_SAMPLES))
@example(document=b'[gateway]\nid = "gw"\n[firmware]\nmodbus_profiles_dir = "a\\u0000b"\n')
@example(document=b'[gateway]\nid = "gw"\n[sensor_policy]\ntemperature_deadband_cel = nan\n')
@example(document=b'[gateway]\nid = "\xff"\n')
def test_fuzz_gateway_config_loads_or_is_refused_naming_the_file(document: bytes, tmp_path_factory: Any) -> None:
    path = tmp_path_factory.mktemp("gateway") / "gateway.toml"
    path.write_bytes(document)
    try:
        config = load_gateway_config(path)
    except EdgeConfigError as exc:
        event("gateway config refused")
        assert_names_the_source(str(exc), str(path))
        return
    event("gateway config loaded")
    try:
        # Profiles are looked up from the working directory, as the agent does; run from the repository root.
        load_modbus_profiles(config)
    except EdgeConfigError as exc:
        # A missing profile is reported at the bus key that names it, a broken one at the profile's file.
        assert str(exc).startswith(("modbus_bus[", str(config.firmware.modbus_profiles_dir))), str(exc)
    assert isinstance(config, GatewayConfig)
    # What validation let through is usable: a deadband is a number the filter can compare against.
    assert not math.isnan(config.sensor_policy.temperature_deadband_cel)


@fuzz
@given(document=documents(CLOUD_SAMPLES))
@example(document=b'[server]\nlisten = "\xff"\n')  # found by this fuzzer: UnicodeDecodeError escaped
def test_fuzz_cloud_config_loads_or_is_refused_naming_the_file(document: bytes, tmp_path_factory: Any) -> None:
    path = tmp_path_factory.mktemp("cloud") / "cloud.toml"
    path.write_bytes(document)
    try:
        config = load_cloud_config(path)
    except CloudConfigError as exc:
        event("cloud config refused")
        assert_names_the_source(str(exc), str(path))
        return
    event("cloud config loaded")
    assert isinstance(config, CloudConfig)


@fuzz
@given(
    document=documents(CLOUD_SAMPLES),
    listen=config_leaves,
    dsn=st.sampled_from(["", "postgresql://u:pw@h/db", "mysql://x", 5]),
)
def test_fuzz_cloud_config_with_flag_overrides_is_refused_naming_file_or_flag(
    document: bytes, listen: Any, dsn: Any, tmp_path_factory: Any
) -> None:
    path = tmp_path_factory.mktemp("cloud") / "cloud.toml"
    path.write_bytes(document)
    overrides = {("server", "listen"): listen, ("store", "dsn"): dsn}
    try:
        load_cloud_config(path, overrides)
    except CloudConfigError as exc:
        for line in str(exc).splitlines():
            assert line.startswith((str(path), "--listen", "--store-dsn")), line
            assert "pw@" not in line  # a DSN's password is never echoed
