"""Gateway alarm: an active row of `gateway_alarms` (outbox near its cap or shedding, clock skew...),
which the uplink keeps from what gateways report. The alarm's own severity is used when it is
one of ours; the row going inactive (or away) clears the exception. Subject: gateway and code.
"""

from __future__ import annotations

from cloud.exceptions.models import SEVERITIES, Condition
from cloud.exceptions.rules.base import ReadModel

__all__ = ["KIND", "evaluate"]

KIND = "gateway_alarm"


def evaluate(model: ReadModel) -> list[Condition]:
    """Active conditions: one per active gateway alarm."""
    conditions = []
    for alarm in sorted(model.alarms, key=lambda alarm: (alarm.gateway_id, alarm.code)):
        if not alarm.active:
            continue
        settings = model.rules.settings_for(KIND, model.master, gateway_id=alarm.gateway_id)
        if settings is None:
            continue
        severity = next((known for known in SEVERITIES if known == alarm.severity), settings.policy.severity)
        conditions.append(
            Condition(
                rule=KIND,
                subject=f"{alarm.gateway_id}:{alarm.code}",
                active=True,
                policy=settings.policy,
                severity=severity,
                details=f"gateway {alarm.gateway_id} reports {alarm.code}: {alarm.message}",
                observed_at_us=alarm.updated_at_us,
            )
        )
    return conditions
