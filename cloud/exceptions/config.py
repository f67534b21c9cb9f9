"""Exception rules configuration: which rules run, for which segment and location, with which thresholds.

The cloud config's `[exceptions]` table (`ExceptionsSection`) points to a rules file, or holds
the same tables inline (`[exceptions.defaults]`, `[[exceptions.rule]]`):

    [exceptions]
    rules_file = "deploy/demo/exception-rules.toml"   # relative to the working directory
    sweep_interval_ms = 5000       # the clock: rules re-evaluated, escalations and shelves checked
    commit_delay_ms = 500          # after ingest commits, the state rules run within this
    shelve_max_s = 86400           # a shelve never lasts longer, whatever is asked
    sensor_retention_s = 86400     # climate readings kept for the excursion rule
    subscriber_queue_max = 1000    # changes buffered per subscriber before it is cut off

A rules file (see `deploy/demo/exception-rules.toml`, and `cloud/exceptions/rules.sample.toml`
for production values):

    [defaults]                     # every rule inherits these unless it sets them
    owner_role = "inventory_control"
    response_s = 900
    escalation_roles = ["shift_lead", "site_manager"]
    escalation_interval_s = 900

    [[rule]]
    kind = "stockout"              # see KINDS
    abc_class = "A"                # segment: abc_class or gtin (none: every SKU)
    location_type = "forward_pick" # place: location (and what is under it) or location_type
    min_on_hand = 20
    severity = "major"

For one subject the most specific matching entry of its kind wins: a gtin beats an abc_class
beats no segment, then a location beats a location_type beats no place, then a gateway_id;
between equals, the later entry wins. `enabled = false` on the winner turns the rule off there.
With no rules file and no inline rules, `DEFAULT_RULES` apply (the rules that need no
site-specific threshold). Errors name the file, the entry and the key, and what was expected:
`rules.toml: [[rule]] #3 (kind = "dwell").dwell_max_s: expected a number > 0, got -5`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import pydantic
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError
from tallyport.v1 import events_pb2

from cloud.errors import ConfigError
from cloud.exceptions.models import Policy, Severity
from cloud.masterdata.models import MasterData

__all__ = [
    "DEFAULT_RULES",
    "KINDS",
    "ExceptionsSection",
    "Kind",
    "RuleBook",
    "RuleEntry",
    "RuleSettings",
    "load_rules_file",
    "parse_rules",
]

Kind = Literal[
    "stockout",  # on-hand of a GTIN at a location below min_on_hand
    "excess",  # on-hand above max_on_hand
    "dwell",  # a tagged item in a zone longer than dwell_max_s
    "excursion",  # temperature/humidity outside a SKU's range for longer than tolerance_s where it is held
    "unexpected_movement",  # seen after it was shipped, or at a door its disposition/lifecycle forbids
    "stale_feed",  # a gateway silent past freshness_sla_s
    "seq_gap",  # seqs a gateway lost, recorded within window_s
    "gateway_alarm",  # an alarm a gateway raised (outbox near its cap, clock skew...)
    "tier_transition",  # a SKU's usage value within margin of its ABC class boundary
]
KINDS: tuple[Kind, ...] = get_args(Kind)

# Shown in messages: which settings belong to which kind (the matchers and policy keys belong to all).
KIND_SETTINGS: Mapping[str, tuple[str, ...]] = {
    "stockout": ("min_on_hand",),
    "excess": ("max_on_hand",),
    "dwell": ("dwell_max_s",),
    "excursion": ("tolerance_s", "reading_hold_s"),
    "unexpected_movement": (
        "grace_s",
        "blocked_dispositions",
        "blocked_lifecycles",
        "outbound_location_types",
        "receiving_location_types",
    ),
    "stale_feed": ("freshness_sla_s",),
    "seq_gap": ("window_s",),
    "gateway_alarm": (),
    "tier_transition": ("margin", "a_boundary", "b_boundary"),
}
_REQUIRED: Mapping[str, tuple[str, ...]] = {
    "stockout": ("min_on_hand",),
    "excess": ("max_on_hand",),
    "dwell": ("dwell_max_s",),
    "stale_feed": ("freshness_sla_s",),
}
DEFAULT_SEVERITY: Mapping[str, Severity] = {
    "stockout": "major",
    "excess": "minor",
    "dwell": "minor",
    "excursion": "major",
    "unexpected_movement": "major",
    "stale_feed": "major",
    "seq_gap": "minor",
    "gateway_alarm": "minor",  # the alarm's own severity is used when it has one
    "tier_transition": "warning",
}
_RULE_ERROR = "tallyport_rule"  # the error type cloud.config reports with its message as is
SHELVE_MAX_S_LIMIT = 30 * 86_400


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class PolicyDefaults(_Strict):
    """`[defaults]`: the policy every rule inherits."""

    owner_role: str = Field(default="inventory_control", min_length=1)
    response_s: float = Field(default=900.0, gt=0, le=30 * 86_400)
    escalation_roles: list[str] = Field(default_factory=list)
    escalation_interval_s: float = Field(default=900.0, gt=0, le=30 * 86_400)
    on_delay_s: float = Field(default=0.0, ge=0, le=86_400)
    off_delay_s: float = Field(default=0.0, ge=0, le=86_400)

    # TOML integers are fine where seconds are floats.
    @field_validator("response_s", "escalation_interval_s", "on_delay_s", "off_delay_s", mode="before")
    @classmethod
    def _int_is_float(cls, value: Any) -> Any:
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


class RuleEntry(_Strict):
    """One `[[rule]]`: a kind, where it applies, its thresholds, and policy overrides."""

    kind: Kind
    enabled: bool = True
    # where it applies
    gtin: str = Field(default="", pattern=r"^([0-9]{14})?$")
    abc_class: Literal["", "A", "B", "C"] = ""
    location: str = ""
    location_type: str = ""
    gateway_id: str = ""
    # policy overrides (None: from [defaults])
    severity: Severity | None = None
    owner_role: str | None = Field(default=None, min_length=1)
    response_s: float | None = Field(default=None, gt=0, le=30 * 86_400)
    escalation_roles: list[str] | None = None
    escalation_interval_s: float | None = Field(default=None, gt=0, le=30 * 86_400)
    on_delay_s: float | None = Field(default=None, ge=0, le=86_400)
    off_delay_s: float | None = Field(default=None, ge=0, le=86_400)
    # thresholds, by kind (KIND_SETTINGS)
    min_on_hand: float | None = Field(default=None, gt=0)
    max_on_hand: float | None = Field(default=None, ge=0)
    dwell_max_s: float | None = Field(default=None, gt=0, le=365 * 86_400)
    tolerance_s: float | None = Field(default=None, ge=0, le=30 * 86_400)
    reading_hold_s: float | None = Field(default=None, gt=0, le=86_400)
    grace_s: float | None = Field(default=None, ge=0, le=30 * 86_400)
    blocked_dispositions: list[str] | None = None
    blocked_lifecycles: list[Literal["active", "phase_out", "obsolete"]] | None = None
    outbound_location_types: list[str] | None = None
    receiving_location_types: list[str] | None = None
    freshness_sla_s: float | None = Field(default=None, gt=0, le=30 * 86_400)
    window_s: float | None = Field(default=None, gt=0, le=365 * 86_400)
    margin: float | None = Field(default=None, gt=0, lt=0.5)
    a_boundary: float | None = Field(default=None, gt=0, lt=1)
    b_boundary: float | None = Field(default=None, gt=0, lt=1)

    @field_validator(
        "response_s",
        "escalation_interval_s",
        "on_delay_s",
        "off_delay_s",
        "min_on_hand",
        "max_on_hand",
        "dwell_max_s",
        "tolerance_s",
        "reading_hold_s",
        "grace_s",
        "freshness_sla_s",
        "window_s",
        mode="before",
    )
    @classmethod
    def _int_is_float(cls, value: Any) -> Any:
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("blocked_dispositions")
    @classmethod
    def _known_dispositions(cls, value: list[str] | None) -> list[str] | None:
        for word in value or ():
            if "DISPOSITION_" + word.upper() not in events_pb2.Disposition.DESCRIPTOR.values_by_name:
                raise PydanticCustomError(
                    _RULE_ERROR, f"unknown CBV disposition {word!r}; expected e.g. 'recalled', 'expired', 'damaged'"
                )
        return value

    @model_validator(mode="after")
    def _fits_its_kind(self) -> RuleEntry:
        if self.gtin and self.abc_class:
            raise PydanticCustomError(_RULE_ERROR, "give gtin or abc_class, not both")
        if self.location and self.location_type:
            raise PydanticCustomError(_RULE_ERROR, "give location or location_type, not both")
        own = set(KIND_SETTINGS[self.kind])
        for kind, names in KIND_SETTINGS.items():
            for name in names:
                if name not in own and getattr(self, name) is not None:
                    raise PydanticCustomError(
                        _RULE_ERROR, f"{name} is a setting of kind {kind!r}, not of {self.kind!r}"
                    )
        if self.enabled:
            for name in _REQUIRED.get(self.kind, ()):
                if getattr(self, name) is None:
                    raise PydanticCustomError(_RULE_ERROR, f"{name} is required for kind {self.kind!r}")
        if self.kind == "dwell" and not (self.location or self.location_type):
            raise PydanticCustomError(
                _RULE_ERROR, "a dwell rule needs a location or location_type, e.g. location_type = 'dock_staging'"
            )
        return self

    def specificity(self) -> tuple[int, int, int]:
        segment = 2 if self.gtin else 1 if self.abc_class else 0
        place = 2 if self.location else 1 if self.location_type else 0
        return segment, place, int(bool(self.gateway_id))


class RulesDocument(_Strict):
    """A whole rules file."""

    defaults: PolicyDefaults = PolicyDefaults()
    rule: list[RuleEntry] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RuleSettings:
    """The winning entry for one subject, with its policy resolved against [defaults]."""

    entry: RuleEntry
    policy: Policy

    def number(self, name: str, default: float) -> float:
        """A threshold of the entry, or `default` when it does not set it."""
        value = getattr(self.entry, name)
        return default if value is None else float(value)

    def words(self, name: str, default: Sequence[str]) -> tuple[str, ...]:
        value = getattr(self.entry, name)
        return tuple(default) if value is None else tuple(value)


def _policy(entry: RuleEntry, defaults: PolicyDefaults) -> Policy:
    def pick(name: str) -> Any:
        value = getattr(entry, name)
        return getattr(defaults, name) if value is None else value

    return Policy(
        severity=entry.severity or DEFAULT_SEVERITY[entry.kind],
        owner_role=pick("owner_role"),
        response_s=pick("response_s"),
        escalation_roles=tuple(pick("escalation_roles")),
        escalation_interval_s=pick("escalation_interval_s"),
        on_delay_s=pick("on_delay_s"),
        off_delay_s=pick("off_delay_s"),
    )


class RuleBook:
    """The rules, ready to answer "which settings apply to this subject?"."""

    def __init__(self, document: RulesDocument, source: str = "rules") -> None:
        self.source = source
        self.defaults = document.defaults
        self._by_kind: dict[str, list[tuple[tuple[int, int, int, int], RuleEntry]]] = {}
        for index, entry in enumerate(document.rule):
            self._by_kind.setdefault(entry.kind, []).append(((*entry.specificity(), index), entry))
        for entries in self._by_kind.values():
            entries.sort(key=lambda pair: pair[0], reverse=True)  # most specific, then latest, first

    def kinds(self) -> frozenset[str]:
        """The kinds with at least one enabled entry."""
        return frozenset(kind for kind, entries in self._by_kind.items() if any(e.enabled for _, e in entries))

    def entries(self, kind: str) -> list[RuleEntry]:
        """Every entry of a kind, most specific first."""
        return [entry for _, entry in self._by_kind.get(kind, [])]

    def settings_for(
        self, kind: str, master: MasterData, *, gtin: str = "", location: str = "", gateway_id: str = ""
    ) -> RuleSettings | None:
        """The settings of the most specific matching entry, or None when none matches or it is disabled."""
        entries = self._by_kind.get(kind)
        if not entries:
            return None
        sku = master.sku(gtin) if gtin else None
        places = master.ancestors(location) if location else []
        place_ids = {place.location_id for place in places} | ({location} if location else set())
        place_types = {place.location_type for place in places}
        for _, entry in entries:
            if entry.gtin and entry.gtin != gtin:
                continue
            if entry.abc_class and (sku is None or sku.abc_class != entry.abc_class):
                continue
            if entry.location and entry.location not in place_ids:
                continue
            if entry.location_type and entry.location_type not in place_types:
                continue
            if entry.gateway_id and entry.gateway_id != gateway_id:
                continue
            return RuleSettings(entry, _policy(entry, self.defaults)) if entry.enabled else None
        return None


DEFAULT_RULES: RulesDocument = RulesDocument(
    rule=[
        RuleEntry(kind="excursion", tolerance_s=300.0),
        RuleEntry(kind="unexpected_movement"),
        RuleEntry(kind="stale_feed", freshness_sla_s=900.0),
        RuleEntry(kind="seq_gap"),
        RuleEntry(kind="gateway_alarm"),
        RuleEntry(kind="tier_transition"),
    ]
)


def parse_rules(raw: Mapping[str, Any], source: str) -> RuleBook:
    """Validate a rules document (a parsed TOML table); ConfigError names the source, entry and key."""
    try:
        return RuleBook(RulesDocument.model_validate(dict(raw)), source)
    except pydantic.ValidationError as exc:
        raise ConfigError("\n".join(_describe(error, raw, source) for error in exc.errors())) from exc


def load_rules_file(path: Path) -> RuleBook:
    """Read and validate a rules file."""
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the rules file: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return parse_rules(raw, str(path))


def _describe(error: Any, raw: Mapping[str, Any], source: str) -> str:
    location = list(error["loc"])
    value = error.get("input")
    got = f"{value:g}" if isinstance(value, float) else repr(value)
    got = got if len(got) <= 60 else got[:57] + "..."
    if location and location[0] == "rule" and len(location) >= 2 and isinstance(location[1], int):
        index = location[1]
        entries = raw.get("rule")
        kind = entries[index].get("kind") if isinstance(entries, list) and isinstance(entries[index], dict) else None
        where = f"{source}: [[rule]] #{index + 1}" + (f" (kind = {kind!r})" if kind is not None else "")
        rest = [str(part) for part in location[2:]]
    elif location:
        where = f"{source}: [{location[0]}]" if len(location) > 1 else f"{source}"
        rest = [str(part) for part in location[1:]] if len(location) > 1 else [str(location[0])]
    else:
        where, rest = source, []
    if rest:
        where += "." + ".".join(rest)
    if error["type"] == _RULE_ERROR:
        return f"{where}: {error['msg']}"
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown key"
    if error["type"] in ("literal_error", "enum"):
        return f"{where}: {error['msg'].lower()}, got {got}"
    return f"{where}: expected {_expected(error)}, got {got}"


def _expected(error: Any) -> str:
    kind = str(error["type"])
    context = error.get("ctx") or {}
    if kind.startswith(("greater_than", "less_than")):
        bound = next(iter(context.values()), "?")
        bound = f"{bound:g}" if isinstance(bound, float) else bound
        symbol = {
            "greater_than": ">",
            "greater_than_equal": ">=",
            "less_than": "<",
            "less_than_equal": "<=",
        }.get(kind, "?")
        return f"a number {symbol} {bound}"
    if kind.startswith("string_pattern"):
        return f"a string matching {context.get('pattern', '')}"
    if kind.startswith("string_too_short"):
        return "a non-empty string"
    if kind in ("float_type", "float_parsing", "int_type"):
        return "a number"
    if kind in ("string_type",):
        return "a string"
    if kind in ("bool_type",):
        return "true or false"
    if kind in ("tuple_type", "list_type"):
        return "a list"
    if kind == "missing":
        return "a value (it is required)"
    return str(error.get("msg", "a valid value")).lower()


class ExceptionsSection(_Strict):
    """`[exceptions]` of the cloud config; `rules()` gives the validated RuleBook."""

    enabled: bool = True
    sweep_interval_ms: int = Field(default=5_000, ge=100, le=3_600_000)
    commit_delay_ms: int = Field(default=500, ge=0, le=60_000)
    shelve_max_s: int = Field(default=86_400, ge=1, le=SHELVE_MAX_S_LIMIT)
    sensor_retention_s: int = Field(default=86_400, ge=60, le=90 * 86_400)
    subscriber_queue_max: int = Field(default=1_000, ge=1, le=1_000_000)
    defaults: dict[str, Any] | None = None
    rule: list[dict[str, Any]] | None = None
    # Last, so that its validator sees the inline tables above and checks the rules once at load.
    rules_file: str = Field(default="", validate_default=True)

    @field_validator("rules_file")
    @classmethod
    def _rules_load(cls, value: str, info: ValidationInfo) -> str:
        inline = info.data.get("defaults") is not None or info.data.get("rule") is not None
        if value and inline:
            raise PydanticCustomError(
                _RULE_ERROR, "give rules_file or inline [exceptions.defaults]/[[exceptions.rule]], not both"
            )
        try:
            _book(value, info.data.get("defaults"), info.data.get("rule"))
        except ConfigError as exc:
            raise PydanticCustomError(_RULE_ERROR, "{problem}", {"problem": str(exc)}) from None
        return value

    def rules(self) -> RuleBook:
        """The rule book this section names (the file is read again: call it once, at start)."""
        return _book(self.rules_file, self.defaults, self.rule)


def _book(path: str, defaults: Mapping[str, Any] | None, rules: Sequence[Mapping[str, Any]] | None) -> RuleBook:
    if path:
        return load_rules_file(Path(path))
    if defaults is None and rules is None:
        return RuleBook(DEFAULT_RULES, "built-in default rules")
    raw: dict[str, Any] = {}
    if defaults is not None:
        raw["defaults"] = dict(defaults)
    if rules is not None:
        raw["rule"] = [dict(entry) for entry in rules]
    return parse_rules(raw, "inline [exceptions] rules")
