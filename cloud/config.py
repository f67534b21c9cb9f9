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
    max_streams = 768                # uplink streams served at once (a Hello pending counts);
                                     # the server's cap of 1024 concurrent RPCs covers queries too
    max_event_time_ahead_ms = 7200000  # an event_time further ahead of the cloud's clock is
                                     # quarantined (a gateway clock skewed by ±1 h passes)
    gateway_tokens_file = ""         # TOML file of `gateway_id = "<sha256 of its token, hex>"`;
                                     # when set (or [ingest.gateway_tokens] inline), every stream
                                     # must send `authorization: Bearer <token>` matching its Hello

    [masterdata]                     # see cloud.masterdata.settings
    files = []                       # master data CSV/TOML files loaded at start, e.g. ["masterdata.toml"]
    snapshot_max_age_ms = 5000       # the rules re-read master data at least this often

    [reconciliation]                 # see cloud.reconciliation.config
    erp_url = ""                     # JSON on-hand snapshot to pull (format: cloud.reconciliation.erp_pull)
    snapshot_ttl_s = 3600            # the last good snapshot serves (marked stale) this long while it is down
    poll_interval_s = 0              # pull and reconcile every N s; 0 = only when asked
    tolerance_pct_a = 1.0            # ABC tolerances: B 3.0, C 5.0, unclassified 0.0
    freshness_sla_s = 300            # a gateway silent longer is not fresh
    timeliness_sla_s = 60            # an event received later than this after its event_time is late

    [exceptions]                     # see cloud.exceptions.config
    rules_file = ""                  # exception rules TOML (thresholds, owners, escalation), relative to the
                                     # working directory; "" = built-in defaults; or [exceptions.defaults] +
                                     # [[exceptions.rule]] inline
    sweep_interval_ms = 5000         # the rules' clock: re-evaluation, escalation, shelve expiry
    commit_delay_ms = 500            # after ingest commits, the state rules run within this
    shelve_max_s = 86400             # a shelve never lasts longer

Flags given on the command line override the file (`--store-dsn` also sets backend =
"postgres"). A wrong key or value fails at start with the file, the key and what was expected:
`cloud.toml: [ingest].max_batch_events: expected an integer from 1 to 10000, got 'abc'`,
`cloud.toml: [store].dsn: required when backend = "postgres"; ...`.
"""

from __future__ import annotations

import hashlib
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
from cloud.exceptions.config import ExceptionsSection
from cloud.masterdata.settings import MasterDataSection
from cloud.reconciliation.config import ReconciliationSection

__all__ = ["CloudConfig", "IngestSection", "ServerSection", "StoreSection", "load_config", "token_digest"]

# A batch can never be larger than the message that carries it; a minimal event is far
# above 16 bytes on the wire, so this keeps the two limits from contradicting each other.
MAX_BATCH_EVENTS_LIMIT = 10_000
MAX_MESSAGE_BYTES_LIMIT = 64 * 1024 * 1024
MIN_MESSAGE_BYTES = 64 * 1024
assert MIN_MESSAGE_BYTES <= 4 * 1024 * 1024 <= MAX_MESSAGE_BYTES_LIMIT

# cloud.server serves at most 1024 RPCs at once (CONCURRENT_RPCS_MAX); more streams could never run.
MAX_STREAMS_LIMIT = 1024
EVENT_TIME_AHEAD_MS_LIMIT = 366 * 24 * 3_600_000

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

# As the ingest service's check of Hello.gateway_id.
_GATEWAY_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_SHA256_HEX_PATTERN = re.compile(r"^[0-9A-Fa-f]{64}$")
_TOKEN_DIGEST_EXAMPLE = 'printf %s "$TOKEN" | sha256sum'
_LISTEN_PATTERN = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(?P<port>[0-9]{1,5})$")


def _read_token_digests(tokens_file: str) -> dict[str, str]:
    """The gateway_id -> token digest table of a tokens file, checked; errors name the file and key."""
    try:
        with Path(tokens_file).open("rb") as handle:
            table = tomllib.load(handle)
    except OSError as exc:
        raise PydanticCustomError(
            _RULE_ERROR, f"cannot read the tokens file {tokens_file!r}: {exc.strerror or exc}"
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise PydanticCustomError(_RULE_ERROR, f"{tokens_file}: not valid TOML: {exc}") from exc
    if not table:
        raise PydanticCustomError(_RULE_ERROR, f"{tokens_file}: no gateways; expected lines of {_TOKEN_LINE}")
    return _checked_token_digests(table, tokens_file)


_TOKEN_LINE = "'gw-dock4 = \"<64 hex digits>\"'"


def _checked_token_digests(table: Mapping[str, Any], where: str) -> dict[str, str]:
    digests: dict[str, str] = {}
    owners: dict[str, str] = {}
    for gateway_id, digest in table.items():
        if _GATEWAY_ID_PATTERN.match(gateway_id) is None:
            raise PydanticCustomError(
                _RULE_ERROR,
                f"{where}: key {_show(gateway_id)}: expected a gateway_id matching ^[A-Za-z0-9._:-]{{1,64}}$",
            )
        if not isinstance(digest, str) or _SHA256_HEX_PATTERN.match(digest) is None:
            raise PydanticCustomError(
                _RULE_ERROR,
                f"{where}: {gateway_id}: expected the SHA-256 of the gateway's token as 64 hex digits "
                f"(`{_TOKEN_DIGEST_EXAMPLE}`), got {_not_echoed(digest)}",
            )
        digest = digest.lower()
        if digest in owners:
            raise PydanticCustomError(
                _RULE_ERROR, f"{where}: {owners[digest]} and {gateway_id} have the same token; each needs its own"
            )
        owners[digest] = gateway_id
        digests[gateway_id] = digest
    return digests


def _not_echoed(value: Any) -> str:
    """What a wrong token digest is, without echoing it: it may be the token itself."""
    return f"{len(value)} characters" if isinstance(value, str) else f"a {type(value).__name__}"


def token_digest(token: str) -> str:
    """The SHA-256 of a gateway token, lower-case hex, as `gateway_tokens` holds it."""
    return hashlib.sha256(token.encode()).hexdigest()


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
    """`[ingest]`: the limits the cloud announces to every gateway in Welcome, and who may stream."""

    max_batch_events: int = Field(default=2000, ge=1, le=MAX_BATCH_EVENTS_LIMIT)
    max_unacked_batches: int = Field(default=8, ge=1, le=1024)
    max_message_bytes: int = Field(default=4 * 1024 * 1024, ge=MIN_MESSAGE_BYTES, le=MAX_MESSAGE_BYTES_LIMIT)
    max_streams: int = Field(default=768, ge=1, le=MAX_STREAMS_LIMIT)
    max_event_time_ahead_ms: int = Field(default=2 * 3_600_000, ge=60_000, le=EVENT_TIME_AHEAD_MS_LIMIT)
    gateway_tokens_file: str = ""
    # gateway_id -> SHA-256 of its token, lower-case hex: inline, or read from gateway_tokens_file.
    gateway_tokens: dict[str, str] = Field(
        default_factory=dict,
        validate_default=True,
        json_schema_extra={"expected": 'a table of gateway_id = "<SHA-256 of its token, 64 hex digits>"'},
    )

    @field_validator("gateway_tokens_file")
    @classmethod
    def _tokens_file_is_readable(cls, value: str) -> str:
        if value:
            _read_token_digests(value)  # errors name the file and its key; read again below to keep
        return value

    @field_validator("gateway_tokens")
    @classmethod
    def _tokens_are_digests(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        tokens_file = info.data.get("gateway_tokens_file")
        if tokens_file and value:
            raise PydanticCustomError(_RULE_ERROR, "set either gateway_tokens or gateway_tokens_file, not both")
        if tokens_file:
            return _read_token_digests(tokens_file)
        return _checked_token_digests(value, "[ingest.gateway_tokens]")


class CloudConfig(_Section):
    """The whole configuration; `CloudConfig()` is the documented default."""

    server: ServerSection = ServerSection()
    store: StoreSection = StoreSection()
    ingest: IngestSection = IngestSection()
    masterdata: MasterDataSection = MasterDataSection()
    reconciliation: ReconciliationSection = ReconciliationSection()
    exceptions: ExceptionsSection = ExceptionsSection()


# Command-line flags that override a key: (section, key) -> the flag's spelling.
FLAG_NAMES: Mapping[tuple[str, str], str] = {
    ("server", "listen"): "--listen",
    ("store", "path"): "--db",
    ("store", "durability"): "--durability",
    ("store", "dsn"): "--store-dsn",
    ("exceptions", "rules_file"): "--exception-rules",
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
    except UnicodeDecodeError as exc:  # tomllib.load decodes the bytes itself and lets this through
        raise ConfigError(f"{path}: not valid TOML: not UTF-8 text ({exc})") from exc


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
    # BaseModel, not _Section: a subsystem's section (e.g. [masterdata]) lives in its own package.
    assert isinstance(section_model, type) and issubclass(section_model, BaseModel)
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
