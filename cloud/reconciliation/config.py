"""`[reconciliation]` of cloud.toml: the ERP/WMS source to pull, ABC tolerances and the KPI SLAs.

    [reconciliation]
    erp_url = ""                    # JSON on-hand snapshot to pull with HTTP GET (see erp_pull.py); "" = none
    erp_source = "erp"              # the source name pulled snapshots are recorded under
    erp_timeout_ms = 10000          # bound on one pull: connect, each read, the whole body
    erp_response_bytes_max = 16777216  # a larger answer is refused (the source is reported failing)
    snapshot_ttl_s = 3600           # while the source is down the last good snapshot is served, marked
                                    # stale with its age, for this long; after it the source is unavailable
    poll_interval_s = 0             # pull (and reconcile) every N seconds; 0 = only on request
    tolerance_pct_a = 1.0           # |variance| <= this % of the system quantity counts as accurate
    tolerance_pct_b = 3.0
    tolerance_pct_c = 5.0
    tolerance_pct_unclassified = 0.0  # GTINs not in the SKU master data
    freshness_sla_s = 300           # a gateway silent for longer is not fresh
    timeliness_sla_s = 60           # an event received later than this after its event_time is late

Tolerances follow the supplychainmetric convention (A ±1 %, B ±3 %, C ±5 %); a system quantity of
0 only matches a count of 0.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

__all__ = ["RULE_ERROR", "ReconciliationSection"]

# Same error type as cloud.config's rules: its message is reported as is, after file and key.
RULE_ERROR = "tallyport_rule"
TOLERANCE_PCT_MAX = 100.0
SNAPSHOT_TTL_S_MAX = 30 * 24 * 3600
POLL_INTERVAL_S_MAX = 24 * 3600
SLA_S_MAX = 30 * 24 * 3600
ERP_RESPONSE_BYTES_LIMIT = 1024 * 1024 * 1024
_URL_PREFIXES = ("http://", "https://")


class ReconciliationSection(BaseModel):
    """`[reconciliation]`: the pulled ERP/WMS source, ABC tolerances, freshness and timeliness SLAs."""

    # As every cloud.toml section: unknown keys and wrong TOML types are errors.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    erp_url: str = Field(default="", json_schema_extra={"expected": "'' or an http:// or https:// URL"})
    erp_source: str = Field(default="erp", min_length=1, max_length=128)
    erp_timeout_ms: int = Field(default=10_000, ge=100, le=600_000)
    erp_response_bytes_max: int = Field(default=16 * 1024 * 1024, ge=1024, le=ERP_RESPONSE_BYTES_LIMIT)
    snapshot_ttl_s: int = Field(default=3600, ge=0, le=SNAPSHOT_TTL_S_MAX)
    poll_interval_s: int = Field(default=0, ge=0, le=POLL_INTERVAL_S_MAX)
    tolerance_pct_a: float = Field(default=1.0, ge=0.0, le=TOLERANCE_PCT_MAX)
    tolerance_pct_b: float = Field(default=3.0, ge=0.0, le=TOLERANCE_PCT_MAX)
    tolerance_pct_c: float = Field(default=5.0, ge=0.0, le=TOLERANCE_PCT_MAX)
    tolerance_pct_unclassified: float = Field(default=0.0, ge=0.0, le=TOLERANCE_PCT_MAX)
    freshness_sla_s: int = Field(default=300, ge=1, le=SLA_S_MAX)
    timeliness_sla_s: float = Field(default=60.0, gt=0.0, le=SLA_S_MAX)

    @field_validator("erp_url")
    @classmethod
    def _url_is_http(cls, value: str) -> str:
        if value and not value.startswith(_URL_PREFIXES):
            raise ValueError("not an http(s) URL")
        return value

    @field_validator("poll_interval_s")
    @classmethod
    def _polling_needs_a_url(cls, value: int, info: ValidationInfo) -> int:
        if value and not info.data.get("erp_url"):
            raise PydanticCustomError(RULE_ERROR, "needs erp_url: there is nothing to pull (0 turns polling off)")
        return value

    def tolerance_pct(self, abc_class: str) -> float:
        """The tolerance of an ABC class ("A", "B", "C"); anything else is unclassified."""
        return {
            "A": self.tolerance_pct_a,
            "B": self.tolerance_pct_b,
            "C": self.tolerance_pct_c,
        }.get(abc_class, self.tolerance_pct_unclassified)
