"""The aggregator's configuration: `cloud.toml`, optional, with every key defaulted.

    [server]
    listen = "127.0.0.1:50051"      # HOST:PORT the gRPC server binds; port 0 picks a free port
    shutdown_grace_ms = 5000         # how long in-flight RPCs may finish on SIGTERM

    [store]
    backend = "sqlite"               # "sqlite": one embedded file, one aggregator (a site)
                                     # "postgres": a PostgreSQL database shared by several aggregators
    operation_timeout_ms = 10000     # bound on any one store transaction or query (both backends)
    # backend = "sqlite":
    path = "var/cloud.db"            # SQLite file, relative to the working directory
    durability = "full"              # "full": a committed batch survives power loss
                                     # "normal": survives a process crash; the last commits
                                     #           may roll back on power loss or an OS crash
    # backend = "postgres":
    dsn = ""                         # "postgresql://USER@HOST:5432/DATABASE"; keep the password in
                                     # PGPASSWORD or ~/.pgpass rather than here
    schema = "tallyport"             # the PostgreSQL schema holding the tables (created if missing)
    pool_connections_min = 1         # connections kept open per aggregator
    pool_connections_max = 10        # at most this many per aggregator
    pool_acquire_timeout_ms = 5000   # how long a transaction or query waits for a free connection
    connect_timeout_ms = 10000       # how long to wait for the database when connecting

    [ingest]
    max_batch_events = 2000          # events per EventBatch (told to the edge in Welcome)
    max_unacked_batches = 8          # the edge's window of batches in flight (told in Welcome)
    max_message_bytes = 4194304      # largest gRPC message the server accepts

Flags given on the command line override the file (`--store-dsn` also sets backend =
"postgres"). A wrong key or value fails at start with the file, the key and what was expected:
`cloud.toml: [ingest].max_batch_events: expected an integer from 1 to 10000, got 'abc'`,
`cloud.toml: [store].dsn: required when backend = "postgres"; ...`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import annotated_types
import pydantic
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from cloud.errors import ConfigError

__all__ = ["CloudConfig", "IngestSection", "ServerSection", "StoreSection", "load_config"]

# A batch can never be larger than the message that carries it; a minimal event is far
# above 16 bytes on the wire, so this keeps the two limits from contradicting each other.
MAX_BATCH_EVENTS_LIMIT = 10_000
MAX_MESSAGE_BYTES_LIMIT = 64 * 1024 * 1024
MIN_MESSAGE_BYTES = 64 * 1024
assert MIN_MESSAGE_BYTES <= 4 * 1024 * 1024 <= MAX_MESSAGE_BYTES_LIMIT

# Connections one aggregator may hold; PostgreSQL's own default max_connections is 100.
POOL_CONNECTIONS_LIMIT = 1000
_SCHEMA_PATTERN = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_DSN_PREFIXES = ("postgresql://", "postgres://")
_DSN_EXAMPLE = "'postgresql://USER@HOST:5432/DATABASE'"
# A rule that involves more than a field's type and range: its message is reported as is.
_RULE_ERROR = "tallyport_rule"
# A DSN's password (URI "scheme://user:PASSWORD@", or key=value "password=PASSWORD"), hidden in messages.
_DSN_PASSWORDS = (
    re.compile(r"([A-Za-z][A-Za-z0-9+.-]*:/*[^:/@\s]*:)[^@\s]*@"),
    re.compile(r"(password\s*=\s*)\S+"),
)

_LISTEN_PATTERN = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(?P<port>[0-9]{1,5})$")


class _Section(BaseModel):
    # strict: TOML already has types, so "2000" (a string) is an error, not a number.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ServerSection(_Section):
    """`[server]`: where the gRPC server listens and how it stops."""

    listen: str = Field(
        default="127.0.0.1:50051",
        json_schema_extra={"expected": "HOST:PORT, e.g. '127.0.0.1:50051' or '[::]:50051'"},
    )
    shutdown_grace_ms: int = Field(default=5000, ge=0, le=600_000)

    @field_validator("listen")
    @classmethod
    def _listen_is_host_port(cls, value: str) -> str:
        match = _LISTEN_PATTERN.match(value)
        if match is None or int(match["port"]) > 65535:
            raise ValueError("not HOST:PORT")
        return value


class StoreSection(_Section):
    """`[store]`: which store, and its settings: the SQLite file, or the PostgreSQL database."""

    backend: Literal["sqlite", "postgres"] = "sqlite"
    path: str = Field(default="var/cloud.db", min_length=1)
    durability: Literal["full", "normal"] = "full"
    operation_timeout_ms: int = Field(default=10_000, ge=100, le=600_000)
    dsn: str = Field(default="", validate_default=True)
    # "schema" is the key; the attribute is schema_name because BaseModel already has `schema`.
    schema_name: str = Field(
        default="tallyport",
        alias="schema",
        json_schema_extra={"expected": "a schema name matching ^[a-z_][a-z0-9_]{0,62}$, e.g. 'tallyport'"},
    )
    pool_connections_min: int = Field(default=1, ge=0, le=POOL_CONNECTIONS_LIMIT)
    pool_connections_max: int = Field(default=10, ge=1, le=POOL_CONNECTIONS_LIMIT)
    pool_acquire_timeout_ms: int = Field(default=5_000, ge=100, le=600_000)
    connect_timeout_ms: int = Field(default=10_000, ge=1_000, le=600_000)

    @field_validator("dsn")
    @classmethod
    def _dsn_fits_the_backend(cls, value: str, info: ValidationInfo) -> str:
        backend = info.data.get("backend")
        if backend == "postgres" and not value:
            raise PydanticCustomError(_RULE_ERROR, f'required when backend = "postgres"; expected e.g. {_DSN_EXAMPLE}')
        if backend == "sqlite" and value:
            raise PydanticCustomError(_RULE_ERROR, 'only used with backend = "postgres" (backend is "sqlite")')
        if value and not value.startswith(_DSN_PREFIXES):
            raise PydanticCustomError(
                _RULE_ERROR, f"expected a URI starting with postgresql://, e.g. {_DSN_EXAMPLE}, got {_show(value)}"
            )
        return value

    @field_validator("schema_name")
    @classmethod
    def _schema_is_plain(cls, value: str) -> str:
        if _SCHEMA_PATTERN.match(value) is None:
            raise ValueError("not a plain schema name")
        return value

    @field_validator("pool_connections_max")
    @classmethod
    def _pool_max_covers_min(cls, value: int, info: ValidationInfo) -> int:
        lowest = info.data.get("pool_connections_min")
        if lowest is not None and value < lowest:
            raise PydanticCustomError(_RULE_ERROR, f"expected at least pool_connections_min ({lowest}), got {value}")
        return value


class IngestSection(_Section):
    """`[ingest]`: the limits the cloud announces to every gateway in Welcome."""

    max_batch_events: int = Field(default=2000, ge=1, le=MAX_BATCH_EVENTS_LIMIT)
    max_unacked_batches: int = Field(default=8, ge=1, le=1024)
    max_message_bytes: int = Field(default=4 * 1024 * 1024, ge=MIN_MESSAGE_BYTES, le=MAX_MESSAGE_BYTES_LIMIT)


class CloudConfig(_Section):
    """The whole configuration; `CloudConfig()` is the documented default."""

    server: ServerSection = ServerSection()
    store: StoreSection = StoreSection()
    ingest: IngestSection = IngestSection()


# Command-line flags that override a key: (section, key) -> the flag's spelling.
FLAG_NAMES: Mapping[tuple[str, str], str] = {
    ("server", "listen"): "--listen",
    ("store", "path"): "--db",
    ("store", "durability"): "--durability",
    ("store", "dsn"): "--store-dsn",
}


def load_config(path: Path | None = None, overrides: Mapping[tuple[str, str], Any] | None = None) -> CloudConfig:
    """Read `path` (optional), apply flag `overrides` keyed by (section, key), validate.

    Raises ConfigError with one line per problem, each naming the file (or flag), the key
    and what was expected.
    """
    source = str(path) if path is not None else "defaults"
    raw: dict[str, Any] = _read_toml(path) if path is not None else {}
    for (section, key), value in (overrides or {}).items():
        table = raw.setdefault(section, {})
        if not isinstance(table, dict):
            break  # the file's own error about this section is reported below
        table[key] = value
    try:
        return CloudConfig.model_validate(raw)
    except pydantic.ValidationError as exc:
        overridden = set(overrides or {})
        lines = [_describe_error(error, source, overridden) for error in exc.errors()]
        raise ConfigError("\n".join(lines)) from exc


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


def _describe_error(error: Any, source: str, overridden: set[tuple[str, str]]) -> str:
    location = tuple(str(part) for part in error["loc"])
    got = _show(error["input"])
    if len(location) == 1:
        section = location[0]
        if error["type"] == "extra_forbidden":
            known = ", ".join(f"[{name}]" for name in CloudConfig.model_fields)
            return f"{source}: [{section}]: unknown section; expected one of {known}"
        return f"{source}: [{section}]: expected a table of keys, got {got}"
    section, key = location[0], location[1]
    where = f"{source}: [{section}].{key}"
    if (section, key) in overridden:
        where = f"{FLAG_NAMES.get((section, key), f'[{section}].{key}')}"
    section_model = CloudConfig.model_fields[section].annotation
    assert isinstance(section_model, type) and issubclass(section_model, _Section)
    keys = {field.alias or name: field for name, field in section_model.model_fields.items()}
    field = keys.get(key)
    if error["type"] == "extra_forbidden" or field is None:
        return f"{where}: unknown key; expected one of {', '.join(keys)}"
    if error["type"] == _RULE_ERROR:
        return f"{where}: {error['msg']}"
    return f"{where}: expected {_expected(field)}, got {got}"


def _expected(field: FieldInfo) -> str:
    """What a field accepts, in words, from its annotation and constraints."""
    extra = field.json_schema_extra
    if isinstance(extra, dict) and isinstance(extra.get("expected"), str):
        return str(extra["expected"])
    annotation = field.annotation
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(repr(choice) for choice in get_args(annotation))
    lowest = highest = None
    for constraint in field.metadata:
        if isinstance(constraint, annotated_types.Ge):
            lowest = constraint.ge
        elif isinstance(constraint, annotated_types.Le):
            highest = constraint.le
        elif isinstance(constraint, annotated_types.MinLen) and constraint.min_length > 0:
            return "a non-empty string"
    kind = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        annotation if isinstance(annotation, type) else object, "a value"
    )
    if lowest is not None and highest is not None:
        return f"{kind} from {lowest} to {highest}"
    if highest is not None:
        return f"{kind} <= {highest}"
    if lowest is not None:
        return f"{kind} >= {lowest}"
    return kind


def _show(value: Any) -> str:
    text = repr(value)
    for pattern, replacement in zip(_DSN_PASSWORDS, (r"\1***@", r"\1***"), strict=True):
        text = pattern.sub(replacement, text)  # never echo a DSN's password
    return text if len(text) <= 60 else text[:57] + "..."
