"""Seq gap: a gateway lost events (seqs recorded in the `gaps` table) within the rule's `window_s`.

A gap never heals (the edge no longer has those events), so the exception stays active while a
gap is younger than the window (default 86400 s) and clears after; a new gap on the same gateway
updates the same exception. Subject: the gateway. Quantity at stake: seqs missing in the window
(events, not priced).
"""

from __future__ import annotations

from cloud.exceptions.models import Condition
from cloud.exceptions.rules.base import MICROS_PER_SECOND, ReadModel
from cloud.store.records import GapRecord

__all__ = ["KIND", "WINDOW_S_DEFAULT", "evaluate"]

KIND = "seq_gap"
WINDOW_S_DEFAULT = 86_400.0
RANGES_SHOWN_MAX = 5


def evaluate(model: ReadModel) -> list[Condition]:
    """Active conditions: every gateway with a gap recorded within its window."""
    gaps: dict[str, list[GapRecord]] = {}
    for record in model.gateways:
        gaps.setdefault(record.state.gateway_id, []).extend(record.gaps)
    conditions = []
    for gateway_id, found in sorted(gaps.items()):
        settings = model.rules.settings_for(KIND, model.master, gateway_id=gateway_id)
        if settings is None:
            continue
        window_us = round(settings.number("window_s", WINDOW_S_DEFAULT) * MICROS_PER_SECOND)
        recent = sorted(
            (gap for gap in found if model.now_us - gap.recorded_at_us <= window_us),
            key=lambda gap: gap.recorded_at_us,
        )
        if not recent:
            continue
        missing = sum(gap.last_seq - gap.first_seq + 1 for gap in recent)
        shown = ", ".join(
            f"{gap.outbox_id}:{gap.first_seq}-{gap.last_seq} ({gap.reason})" for gap in recent[-RANGES_SHOWN_MAX:]
        )
        conditions.append(
            Condition(
                rule=KIND,
                subject=gateway_id,
                active=True,
                policy=settings.policy,
                severity=settings.policy.severity,
                quantity_at_stake=float(missing),
                details=f"gateway {gateway_id} lost {missing} events in {len(recent)} gap(s): {shown}",
                observed_at_us=recent[-1].recorded_at_us,
            )
        )
    return conditions
