"""Stale feed: a gateway silent for longer than the rule's `freshness_sla_s`.

Silence is measured from the gateway's last contact (`gateway_streams.last_contact_us`: its last
Hello or committed batch, on the cloud's clock, so edge clock skew does not matter), the newest
over all its outboxes. A gateway retired on purpose is switched off with an entry
`kind = "stale_feed"`, `gateway_id = "..."`, `enabled = false`. Subject: the gateway.
"""

from __future__ import annotations

from cloud.exceptions.models import Condition
from cloud.exceptions.rules.base import ReadModel, more_severe, seconds

__all__ = ["KIND", "evaluate"]

KIND = "stale_feed"


def evaluate(model: ReadModel) -> list[Condition]:
    """Active conditions: every gateway silent past its SLA."""
    last_contact: dict[str, int] = {}
    for record in model.gateways:
        state = record.state
        last_contact[state.gateway_id] = max(last_contact.get(state.gateway_id, 0), state.last_contact_us)
    conditions = []
    for gateway_id, contact_us in sorted(last_contact.items()):
        settings = model.rules.settings_for(KIND, model.master, gateway_id=gateway_id)
        if settings is None:
            continue
        sla_s = settings.number("freshness_sla_s", float("inf"))
        silent_s = seconds(model.now_us - contact_us)
        if silent_s <= sla_s:
            continue
        severity = settings.policy.severity if silent_s < 4 * sla_s else more_severe(settings.policy.severity)
        conditions.append(
            Condition(
                rule=KIND,
                subject=gateway_id,
                active=True,
                policy=settings.policy,
                severity=severity,
                details=f"gateway {gateway_id} silent for {silent_s:.0f} s (freshness SLA {sla_s:g} s)",
                observed_at_us=contact_us,
            )
        )
    return conditions
