"""The gateway's alarms as the uplink's `GatewayStatus` message (see `edge.alarms` for what they mean)."""

from __future__ import annotations

from collections.abc import Sequence

from tallyport.v1 import ingest_pb2

from edge.alarms import Alarm, Severity

__all__ = ["STATUS_INTERVAL_MS_MIN", "encode_status_message"]

# At most one status per this interval: an alarm whose message counts something (samples shed) may
# change on every commit, and the cloud needs its latest state, not every step.
STATUS_INTERVAL_MS_MIN = 1_000

_SEVERITIES: dict[Severity, ingest_pb2.AlarmSeverity.ValueType] = {
    "critical": ingest_pb2.ALARM_SEVERITY_CRITICAL,
    "major": ingest_pb2.ALARM_SEVERITY_MAJOR,
    "minor": ingest_pb2.ALARM_SEVERITY_MINOR,
    "warning": ingest_pb2.ALARM_SEVERITY_WARNING,
}


def encode_status_message(alarms: Sequence[Alarm]) -> bytes:
    """The serialized `GatewayMessage{status: GatewayStatus{alarms}}`."""
    status = ingest_pb2.GatewayStatus()
    for alarm in alarms:
        message = status.alarms.add(
            code=alarm.code, severity=_SEVERITIES[alarm.severity], message=alarm.message, active=alarm.active
        )
        message.raised_at.FromMilliseconds(alarm.raised_at_ms)
    return ingest_pb2.GatewayMessage(status=status).SerializeToString()
