"""The exception subsystem's values: conditions the rules find, exceptions, their audit trail.

A rule finds *conditions* (something abnormal, or no longer abnormal, about one subject); the
engine turns them into *exceptions*, at most one open per (rule, subject), whose life follows
`cloud.exceptions.lifecycle`. Times are integer microseconds since the epoch, UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

__all__ = [
    "SEVERITIES",
    "STATES",
    "Condition",
    "ExceptionChange",
    "ExceptionRecord",
    "Policy",
    "Severity",
    "State",
    "Transition",
    "open_key",
    "severity_rank",
]

# ISA-18.2 style severities, mildest first; gateway alarms use the same words.
Severity = Literal["warning", "minor", "major", "critical"]
SEVERITIES: tuple[Severity, ...] = get_args(Severity)

# open:         the condition is active and nobody acknowledged it (ISA-18.2 UNACK)
# acknowledged: active, acknowledged, someone is on it (ACKED)
# cleared:      returned to normal by itself, kept visible until acknowledged (RTNUN)
# shelved:      hidden from escalation until `shelved_until_us` (SHLVD, timed)
# resolved:     closed; a new occurrence opens a new exception
State = Literal["open", "acknowledged", "cleared", "shelved", "resolved"]
STATES: tuple[State, ...] = get_args(State)


def severity_rank(severity: Severity) -> int:
    """0 for warning up to 3 for critical."""
    return SEVERITIES.index(severity)


def open_key(rule: str, subject: str) -> str:
    """The identity of the one open exception a (rule, subject) may have."""
    return f"{rule}|{subject}"


@dataclass(frozen=True, slots=True)
class Policy:
    """How an exception of one rule for one subject is handled, fixed when it is raised.

    An exception follows the policy it was raised under (as PagerDuty incidents follow the
    escalation policy as it was at creation), so editing the rules file does not rewrite the
    due times of exceptions already open.
    """

    severity: Severity = "minor"
    owner_role: str = "inventory_control"
    response_s: float = 900.0  # acknowledge within this, else escalate
    escalation_roles: tuple[str, ...] = ()  # owner role at escalation level 1, 2, ...
    escalation_interval_s: float = 900.0  # due time after each escalation
    on_delay_s: float = 0.0  # the condition must hold this long before an exception is raised
    off_delay_s: float = 0.0  # and be gone this long before it is cleared


@dataclass(frozen=True, slots=True)
class Condition:
    """What one rule found about one subject at one moment."""

    rule: str  # the rule's kind, e.g. "dwell"
    subject: str  # what it is about, stable across evaluations, e.g. "dwell:<object id>"
    active: bool  # abnormal now?
    policy: Policy
    severity: Severity
    quantity_at_stake: float = 0.0  # units whose value is at risk (priced by gtin's unit cost)
    gtin: str = ""
    location: str = ""
    details: str = ""
    # True for rules whose every report is a new occurrence (an unexpected movement event);
    # False for state rules, whose occurrence count only grows when the condition comes back.
    occurrence: bool = False
    observed_at_us: int = 0  # when the fact behind it happened (reading or event time); 0: evaluation time

    @property
    def key(self) -> str:
        return open_key(self.rule, self.subject)


@dataclass(frozen=True, slots=True)
class ExceptionRecord:
    """One exception as stored; `version` grows with every write (optimistic concurrency)."""

    exception_id: str
    rule: str
    subject: str
    state: State
    active: bool
    acknowledged: bool
    severity: Severity
    priority: float
    value_at_stake: float
    quantity_at_stake: float
    service_weight: float
    gtin: str
    location: str
    details: str
    owner_role: str
    escalation_level: int
    response_due_us: int
    raised_at_us: int
    last_seen_us: int
    updated_at_us: int
    occurrences: int
    policy: Policy
    cleared_at_us: int | None = None
    resolved_at_us: int | None = None
    shelved_until_us: int | None = None
    clear_pending_since_us: int | None = None  # inactive since, while the off-delay runs
    version: int = 1

    @property
    def key(self) -> str:
        return open_key(self.rule, self.subject)

    @property
    def is_closed(self) -> bool:
        return self.state == "resolved"


@dataclass(frozen=True, slots=True)
class Transition:
    """One line of an exception's audit trail: who moved it from which state to which, when and why."""

    exception_id: str
    at_us: int
    actor: str  # "system" for the rules and the clock, else the person or system that acted
    action: str  # raise, realarm, severity, clear, acknowledge, resolve, shelve, unshelve, escalate
    from_state: State | None  # None when raised
    to_state: State
    reason: str
    escalation_level: int = 0
    owner_role: str = ""


@dataclass(frozen=True, slots=True)
class ExceptionChange:
    """An exception after a write, with the transitions that write recorded (possibly none)."""

    record: ExceptionRecord
    transitions: tuple[Transition, ...] = field(default=())
    created: bool = False
    quiet: bool = False  # bookkeeping only (last seen, an off-delay starting): not sent to subscribers
