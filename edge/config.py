"""The gateway config: one TOML file, validated by this schema before the agent starts.

Any error names the file, the key and what was expected, and the agent refuses to start.
Relative paths in the file are taken from the agent's working directory.
See `firmware_config/gateways/` for examples; every key and its default is listed below.
"""

from __future__ import annotations

import re
import tomllib
import zoneinfo
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator
from tallyport.v1 import events_pb2

from edge.drivers.impinj_reader.config import ImpinjReaderConfig
from edge.drivers.modbus_bus.config import ModbusBusConfig
from edge.drivers.modbus_bus.profiles import PROFILES_DIR_DEFAULT, DeviceProfile, load_profiles_for_bus
from edge.drivers.mqtt_sensor.config import MqttSensorConfig
from edge.drivers.scanner.config import ScannerConfig
from edge.drivers.zebra_reader.config import ZebraReaderConfig
from edge.errors import ConfigError
from edge.pipeline.portal_config import PortalConfig, portal_references_problems
from edge.pipeline.sensor_policy import SensorPolicy

GATEWAY_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"
# A bearer token travels as gRPC metadata: printable ASCII without spaces, and the cloud reads
# at most 1024 characters of the header (cloud/ingest/auth.py).
TOKEN_PATTERN = re.compile(r"^[\x21-\x7e]{1,1000}$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GatewaySection(_Section):
    id: str = Field(pattern=GATEWAY_ID_PATTERN, description="unique id of this gateway, e.g. 'dc1-dock4'")
    timezone: str = Field("UTC", description="IANA zone of the site; sets each event's zone offset")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"an IANA time zone such as 'Europe/Amsterdam', got {value!r}") from exc
        return value


class OutboxSection(_Section):
    path: Path = Path("var/edge/outbox.db")
    durability: Literal["full", "normal"] = "full"
    bytes_max: int = Field(
        512 * 1024 * 1024, ge=1024 * 1024, description="disk cap; sensor samples are shed first near it"
    )
    commit_events_max: int = Field(2000, ge=1, le=100_000, description="events per group commit")
    pending_submissions_max: int = Field(
        10_000, ge=1, le=1_000_000, description="appends waiting for a commit before appenders wait"
    )


class UplinkSection(_Section):
    target: str = Field("127.0.0.1:50051", pattern=r"^[^\s:]+:\d{1,5}$", description="cloud host:port")
    batch_events_max: int = Field(500, ge=1, le=10_000)
    batch_bytes_max: int = Field(3 * 1024 * 1024, ge=64 * 1024, le=64 * 1024 * 1024)
    unacked_batches_max: int = Field(4, ge=1, le=64)
    ack_timeout_ms: int = Field(10_000, ge=100, le=600_000)
    connect_timeout_ms: int = Field(5_000, ge=100, le=120_000)
    reconnect_delay_ms_initial: int = Field(200, ge=10, le=60_000)
    reconnect_delay_ms_max: int = Field(30_000, ge=10, le=3_600_000)
    # The cloud's gateway token (cloud [ingest] gateway_tokens): inline, or better a file only the
    # agent can read. Either is read once, when the config is loaded.
    token: str = Field("", repr=False, description="bearer token the cloud requires when it has gateway tokens")
    token_file: Path | None = Field(None, description="file holding the token (one line)")
    _bearer_token: str = PrivateAttr("")

    @model_validator(mode="after")
    def _delays_ordered(self) -> UplinkSection:
        if self.reconnect_delay_ms_max < self.reconnect_delay_ms_initial:
            raise ValueError("reconnect_delay_ms_max must be >= reconnect_delay_ms_initial")
        return self

    @model_validator(mode="after")
    def _token_read(self) -> UplinkSection:
        if self.token and self.token_file is not None:
            raise ValueError("set either token or token_file, not both")
        token, key = self.token, "token"
        if self.token_file is not None:
            key = f"token_file {str(self.token_file)!r}"
            try:
                token = self.token_file.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"{key}: cannot read the token: {exc}") from exc
            if not token:
                raise ValueError(f"{key}: the file is empty; expected the gateway's token on one line")
        if token and TOKEN_PATTERN.match(token) is None:
            raise ValueError(f"{key}: expected 1 to 1000 printable ASCII characters without spaces")
        self._bearer_token = token
        return self

    @property
    def bearer_token(self) -> str:
        """The token to send the cloud ("" for none), as read when the config was loaded."""
        return self._bearer_token


class FirmwareSection(_Section):
    """`[firmware]`: where device profiles live."""

    modbus_profiles_dir: Path = PROFILES_DIR_DEFAULT


class LogSection(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"


def _cbv_names(enum: Any, prefix: str) -> list[str]:
    names: list[str] = enum.keys()
    return [name.removeprefix(prefix).lower() for name in names if not name.endswith("UNSPECIFIED")]


BIZ_STEPS = _cbv_names(events_pb2.BizStep, "BIZ_STEP_")
DISPOSITIONS = _cbv_names(events_pb2.Disposition, "DISPOSITION_")


class ReadPointConfig(_Section):
    """Where a device reads, and what a read there means in business terms (EPCIS/CBV)."""

    name: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    id: str = Field(min_length=1, description="EPCIS readPoint id, e.g. urn:tallyport:rp:dc1:dock-4")
    biz_location: str = Field(min_length=1, description="EPCIS bizLocation id")
    biz_step: str = Field(description="CBV business step, e.g. 'receiving'")
    action: Literal["ADD", "OBSERVE", "DELETE"] = "OBSERVE"
    disposition: str = ""

    @field_validator("biz_step")
    @classmethod
    def _known_biz_step(cls, value: str) -> str:
        if value not in BIZ_STEPS:
            raise ValueError(f"a CBV business step ({', '.join(BIZ_STEPS)}), got {value!r}")
        return value

    @field_validator("disposition")
    @classmethod
    def _known_disposition(cls, value: str) -> str:
        if value and value not in DISPOSITIONS:
            raise ValueError(f"a CBV disposition ({', '.join(DISPOSITIONS)}) or empty, got {value!r}")
        return value


class GatewayConfig(_Section):
    gateway: GatewaySection
    outbox: OutboxSection = OutboxSection()
    uplink: UplinkSection = UplinkSection()
    log: LogSection = LogSection()
    firmware: FirmwareSection = FirmwareSection()
    sensor_policy: SensorPolicy = SensorPolicy()
    read_point: list[ReadPointConfig] = Field(default_factory=list)
    # One list per shipped driver: the table name is the driver's folder under edge/drivers/.
    scanner: list[ScannerConfig] = Field(default_factory=list)
    zebra_reader: list[ZebraReaderConfig] = Field(default_factory=list)
    impinj_reader: list[ImpinjReaderConfig] = Field(default_factory=list)
    modbus_bus: list[ModbusBusConfig] = Field(default_factory=list)
    mqtt_sensor: list[MqttSensorConfig] = Field(default_factory=list)
    portal: list[PortalConfig] = Field(default_factory=list)

    def device_names(self) -> list[str]:
        names = [device.name for device in self.scanner]
        names += [reader.name for reader in self.zebra_reader]
        names += [reader.name for reader in self.impinj_reader]
        names += [device.name for device in self.mqtt_sensor]
        names += [bus.name for bus in self.modbus_bus]
        names += [device.name for bus in self.modbus_bus for device in bus.devices]
        return names

    @model_validator(mode="after")
    def _references_resolve(self) -> GatewayConfig:
        names = [point.name for point in self.read_point]
        _require_unique("read_point names", names)
        _require_unique("device names", self.device_names())
        _require_unique("portal names", [portal.name for portal in self.portal])
        references = [(f"scanner[{i}].read_point", s.read_point) for i, s in enumerate(self.scanner)]
        references += [(f"mqtt_sensor[{i}].read_point", m.read_point) for i, m in enumerate(self.mqtt_sensor)]
        references += [
            (f"modbus_bus[{i}].devices[{j}].read_point", device.read_point)
            for i, bus in enumerate(self.modbus_bus)
            for j, device in enumerate(bus.devices)
        ]
        for key, name in references:
            if name not in names:
                raise ValueError(
                    f"{key}: expected one of the [[read_point]] names ({', '.join(names) or 'none defined'}), "
                    f"got {name!r}"
                )
        problems = portal_references_problems(self.portal, names)
        readers = {reader.name for reader in self.zebra_reader} | {reader.name for reader in self.impinj_reader}
        for index, portal in enumerate(self.portal):
            unknown = sorted(set(portal.readers) - readers)
            if unknown:
                problems.append(
                    f"portal[{index}].readers: expected names of [[zebra_reader]] or [[impinj_reader]] tables "
                    f"({', '.join(sorted(readers)) or 'none defined'}), got {', '.join(unknown)}"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def read_point_named(self, name: str) -> ReadPointConfig:
        return next(point for point in self.read_point if point.name == name)


def _require_unique(what: str, names: list[str]) -> None:
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"{what} must be unique, repeated: {', '.join(duplicates)}")


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def format_validation_error(source: str, error: ValidationError) -> str:
    """One line per problem: `file: key: what was expected (got ...)`."""
    lines = []
    for problem in error.errors():
        key = _location(problem["loc"])
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            message = "unknown key (check its spelling and section)"
        elif problem["type"] not in ("missing", "value_error"):
            message += f", got {problem['input']!r}"
        lines.append(f"{source}: {key}: {message}")
    return "\n".join(lines)


def parse_config(text: str, source: str = "<config>") -> GatewayConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc)) from exc


def load_modbus_profiles(config: GatewayConfig) -> dict[str, dict[str, DeviceProfile]]:
    """The device profiles each Modbus bus names, per bus; ConfigError names the bus, device and file."""
    return {
        bus.name: load_profiles_for_bus(bus, config.firmware.modbus_profiles_dir, source=f"modbus_bus[{index}]")
        for index, bus in enumerate(config.modbus_bus)
    }


def load_config(path: Path) -> GatewayConfig:
    """Read and validate a gateway config file; ConfigError says what is wrong and where."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc}") from exc
    return parse_config(text, str(path))
