"""The gateway config: one TOML file, validated by this schema before the agent starts.

Any error names the file, the key and what was expected, and the agent refuses to start.
Relative paths in the file are taken from the agent's working directory.
See `firmware_config/gateways/` for examples; every key and its default is listed below.
"""

from __future__ import annotations

import tomllib
import zoneinfo
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from tallyport.v1 import events_pb2

from edge.drivers.scanner.config import ScannerConfig
from edge.errors import ConfigError

GATEWAY_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"


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
    unacked_batches_max: int = Field(4, ge=1, le=64)
    ack_timeout_ms: int = Field(10_000, ge=100, le=600_000)
    connect_timeout_ms: int = Field(5_000, ge=100, le=120_000)
    reconnect_delay_ms_initial: int = Field(200, ge=10, le=60_000)
    reconnect_delay_ms_max: int = Field(30_000, ge=10, le=3_600_000)

    @model_validator(mode="after")
    def _delays_ordered(self) -> UplinkSection:
        if self.reconnect_delay_ms_max < self.reconnect_delay_ms_initial:
            raise ValueError("reconnect_delay_ms_max must be >= reconnect_delay_ms_initial")
        return self


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
    read_point: list[ReadPointConfig] = Field(default_factory=list)
    scanner: list[ScannerConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references_resolve(self) -> GatewayConfig:
        names = [point.name for point in self.read_point]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"read_point names must be unique, repeated: {', '.join(duplicates)}")
        devices = [scanner.name for scanner in self.scanner]
        duplicates = sorted({name for name in devices if devices.count(name) > 1})
        if duplicates:
            raise ValueError(f"device names must be unique, repeated: {', '.join(duplicates)}")
        for index, scanner in enumerate(self.scanner):
            if scanner.read_point not in names:
                raise ValueError(
                    f"scanner[{index}].read_point: expected one of the [[read_point]] names "
                    f"({', '.join(names) or 'none defined'}), got {scanner.read_point!r}"
                )
        return self

    def read_point_named(self, name: str) -> ReadPointConfig:
        return next(point for point in self.read_point if point.name == name)


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


def load_config(path: Path) -> GatewayConfig:
    """Read and validate a gateway config file; ConfigError says what is wrong and where."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc}") from exc
    return parse_config(text, str(path))
