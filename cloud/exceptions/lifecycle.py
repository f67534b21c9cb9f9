"""The life of one exception, after ISA-18.2 / IEC 62682: pure functions, no I/O, no clock.

An exception carries two facts, `active` (is the condition abnormal now?) and `acknowledged`
(has someone taken it?), plus shelving and closure. Its state follows from them:

    active, not acknowledged  -> open          (ISA UNACK)
    active, acknowledged      -> acknowledged  (ACKED)
    normal, not acknowledged  -> cleared       (RTNUN: returned to normal, kept visible until acknowledged)
    normal, acknowledged      -> resolved      (back to NORM: closed)
    shelved until T           -> shelved       (SHLVD, timed and capped: unshelved at T into the state above)
    resolved by hand          -> resolved      (closed whatever the condition; a new occurrence opens a new one)

Transitions (every one is returned as a `Transition` for the audit trail):
- raise: a condition turns active with no open exception -> open.
- realarm: the condition comes back or gets more severe. cleared -> open; acknowledged -> open
  when more severe (ISA C->B; escalation restarts); a repeat of an active condition only
  counts (occurrences, last_seen) and is not a transition.
- clear: the condition returns to normal (after the policy's off-delay). open -> cleared;
  acknowledged -> resolved. A shelved exception stays shelved and only remembers it.
- acknowledge: open -> acknowledged; cleared -> resolved; shelved stays shelved (acknowledged).
- resolve: any state but resolved -> resolved.
- shelve: open, acknowledged, cleared or shelved -> shelved until now + min(duration, maximum).
- unshelve: at the shelve expiry -> the state that `active` and `acknowledged` give.
- escalate: open past its response due time -> level + 1, owner = the policy's next role,
  due again one escalation interval later; once per level, never past the last role.
Anything else raises `LifecycleError` with a message saying why.
"""

from __future__ import annotations

from dataclasses import replace

from cloud.errors import CloudError
from cloud.exceptions.models import (
    Condition,
    ExceptionChange,
    ExceptionRecord,
    Severity,
    State,
    Transition,
    severity_rank,
)
from cloud.exceptions.priority import Score

__all__ = [
    "SYSTEM_ACTOR",
    "LifecycleError",
    "acknowledge",
    "observe_active",
    "observe_inactive",
    "raise_exception",
    "resolve",
    "settled_state",
    "shelve",
    "tick",
]

SYSTEM_ACTOR = "system"
MICROS_PER_SECOND = 1_000_000


class LifecycleError(CloudError):
    """A transition the exception's state does not allow (answered FAILED_PRECONDITION)."""


def settled_state(active: bool, acknowledged: bool) -> State:
    """The state two facts give when the exception is neither shelved nor resolved by hand."""
    if active:
        return "acknowledged" if acknowledged else "open"
    return "resolved" if acknowledged else "cleared"


def _seconds(micros_or_seconds: float) -> int:
    return round(micros_or_seconds * MICROS_PER_SECOND)


def _transition(
    before: ExceptionRecord | None, after: ExceptionRecord, now_us: int, actor: str, action: str, reason: str
) -> Transition:
    return Transition(
        exception_id=after.exception_id,
        at_us=now_us,
        actor=actor,
        action=action,
        from_state=before.state if before is not None else None,
        to_state=after.state,
        reason=reason,
        escalation_level=after.escalation_level,
        owner_role=after.owner_role,
    )


def _change(
    before: ExceptionRecord | None, after: ExceptionRecord, now_us: int, actor: str, action: str, reason: str
) -> ExceptionChange:
    after = replace(after, updated_at_us=now_us)
    return ExceptionChange(after, (_transition(before, after, now_us, actor, action, reason),), before is None)


def raise_exception(condition: Condition, score: Score, now_us: int, exception_id: str) -> ExceptionChange:
    """A new open exception for an active condition."""
    assert condition.active, "only an active condition raises an exception"
    policy = condition.policy
    record = ExceptionRecord(
        exception_id=exception_id,
        rule=condition.rule,
        subject=condition.subject,
        state="open",
        active=True,
        acknowledged=False,
        severity=condition.severity,
        priority=score.priority,
        value_at_stake=score.value_at_stake,
        quantity_at_stake=condition.quantity_at_stake,
        service_weight=score.service_weight,
        gtin=condition.gtin,
        location=condition.location,
        details=condition.details,
        owner_role=policy.owner_role,
        escalation_level=0,
        response_due_us=now_us + _seconds(policy.response_s),
        raised_at_us=now_us,
        last_seen_us=now_us,
        updated_at_us=now_us,
        occurrences=1,
        policy=policy,
    )
    return _change(None, record, now_us, SYSTEM_ACTOR, "raise", condition.details or "condition detected")


def observe_active(record: ExceptionRecord, condition: Condition, score: Score, now_us: int) -> ExceptionChange:
    """The condition of a not-yet-resolved exception is active: count it, re-alarm or raise severity."""
    assert not record.is_closed, "a resolved exception is never updated; raise a new one"
    new_occurrence = condition.occurrence or not record.active
    severity: Severity = max(record.severity, condition.severity, key=severity_rank)
    more_severe = severity_rank(severity) > severity_rank(record.severity)
    updated = replace(
        record,
        active=True,
        severity=severity,
        priority=score.priority,
        value_at_stake=score.value_at_stake,
        quantity_at_stake=condition.quantity_at_stake,
        service_weight=score.service_weight,
        gtin=condition.gtin or record.gtin,
        location=condition.location or record.location,
        details=condition.details or record.details,
        last_seen_us=now_us,
        occurrences=record.occurrences + int(new_occurrence),
        cleared_at_us=None if new_occurrence else record.cleared_at_us,
        clear_pending_since_us=None,
    )
    if record.acknowledged and more_severe:
        # ISA-18.2 C->B: worse than what was acknowledged; it needs a fresh response and escalation restarts.
        updated = replace(
            updated,
            acknowledged=False,
            escalation_level=0,
            owner_role=record.policy.owner_role,
            response_due_us=now_us + _seconds(record.policy.response_s),
        )
    if record.state != "shelved":
        updated = replace(updated, state=settled_state(updated.active, updated.acknowledged))
    if updated.state != record.state:
        reason = f"condition returned: {condition.details}" if new_occurrence else f"severity rose to {severity}"
        return _change(record, updated, now_us, SYSTEM_ACTOR, "realarm", reason)
    if more_severe:
        return _change(record, updated, now_us, SYSTEM_ACTOR, "severity", f"severity rose to {severity}")
    return ExceptionChange(replace(updated, updated_at_us=now_us))


def observe_inactive(
    record: ExceptionRecord, now_us: int, reason: str = "returned to normal"
) -> ExceptionChange | None:
    """The condition is normal: clear the exception once the off-delay has passed; None if nothing changes."""
    assert not record.is_closed
    if not record.active:
        return None
    off_delay_us = _seconds(record.policy.off_delay_s)
    if off_delay_us > 0:
        if record.clear_pending_since_us is None:
            return ExceptionChange(replace(record, clear_pending_since_us=now_us, updated_at_us=now_us), quiet=True)
        if now_us - record.clear_pending_since_us < off_delay_us:
            return None
    cleared = replace(record, active=False, cleared_at_us=now_us, clear_pending_since_us=None)
    if record.state != "shelved":
        cleared = replace(cleared, state=settled_state(False, record.acknowledged))
    if cleared.state == "resolved":
        cleared = replace(cleared, resolved_at_us=now_us)
    return _change(record, cleared, now_us, SYSTEM_ACTOR, "clear", reason)


def acknowledge(record: ExceptionRecord, actor: str, reason: str, now_us: int) -> ExceptionChange:
    """Someone takes the exception: open -> acknowledged, cleared -> resolved."""
    if record.acknowledged or record.is_closed:
        raise LifecycleError(f"exception {record.exception_id} is {_describe(record)}; there is nothing to acknowledge")
    updated = replace(record, acknowledged=True)
    if record.state != "shelved":
        updated = replace(updated, state=settled_state(record.active, True))
    if updated.state == "resolved":
        updated = replace(updated, resolved_at_us=now_us)
    return _change(record, updated, now_us, actor, "acknowledge", reason)


def resolve(record: ExceptionRecord, actor: str, reason: str, now_us: int) -> ExceptionChange:
    """Close the exception by hand; if the rule still finds the condition, it raises a new one."""
    if record.is_closed:
        raise LifecycleError(f"exception {record.exception_id} is already resolved")
    updated = replace(record, state="resolved", resolved_at_us=now_us, shelved_until_us=None)
    return _change(record, updated, now_us, actor, "resolve", reason)


def shelve(
    record: ExceptionRecord, actor: str, reason: str, duration_s: float, shelve_max_s: float, now_us: int
) -> ExceptionChange:
    """Hide the exception from escalation for `duration_s`, at most `shelve_max_s`; unshelved at expiry."""
    if record.is_closed:
        raise LifecycleError(f"exception {record.exception_id} is resolved; only an unresolved one can be shelved")
    if not duration_s > 0:
        raise LifecycleError(f"a shelve duration must be above 0 s, got {duration_s:g} s")
    granted_s = min(duration_s, shelve_max_s)
    until_us = now_us + _seconds(granted_s)
    updated = replace(record, state="shelved", shelved_until_us=until_us)
    capped = f" (capped at the maximum {shelve_max_s:g} s)" if granted_s < duration_s else ""
    return _change(record, updated, now_us, actor, "shelve", f"{reason} [shelved for {granted_s:g} s{capped}]")


def tick(record: ExceptionRecord, now_us: int) -> ExceptionChange | None:
    """What the clock does: unshelve at expiry, escalate when overdue; None if nothing is due."""
    if record.is_closed:
        return None
    if record.state == "shelved":
        if record.shelved_until_us is None or now_us < record.shelved_until_us:
            return None
        state = settled_state(record.active, record.acknowledged)
        unshelved = replace(
            record,
            state=state,
            shelved_until_us=None,
            resolved_at_us=now_us if state == "resolved" else None,
        )
        return _change(record, unshelved, now_us, SYSTEM_ACTOR, "unshelve", "shelve period expired")
    roles = record.policy.escalation_roles
    if record.state != "open" or now_us < record.response_due_us or record.escalation_level >= len(roles):
        return None
    level = record.escalation_level + 1
    escalated = replace(
        record,
        escalation_level=level,
        owner_role=roles[level - 1],
        response_due_us=now_us + _seconds(record.policy.escalation_interval_s),
    )
    overdue_s = (now_us - record.response_due_us) / MICROS_PER_SECOND
    reason = f"not acknowledged by its due time ({overdue_s:.0f} s overdue); escalated to {roles[level - 1]}"
    return _change(record, escalated, now_us, SYSTEM_ACTOR, "escalate", reason)


def _describe(record: ExceptionRecord) -> str:
    if record.state == "shelved" and record.acknowledged:
        return "shelved and already acknowledged"
    return f"already {record.state}" if record.state in ("acknowledged", "resolved") else record.state
