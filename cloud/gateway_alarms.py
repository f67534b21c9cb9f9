"""Gateway alarms: what each gateway last reported in its `GatewayStatus`, kept in `gateway_alarms`.

One row per (gateway_id, code), updated in place (an alarm is unique per originator and type, as in
ThingsBoard). A status is the gateway's whole set: every alarm in it is written as sent, and an
alarm the table holds as active that the status leaves out is cleared (the agent restarted and no
longer has the condition). `updated_at_us` is when the cloud last heard of the alarm; `raised_at_us`
is the gateway's own clock (it may be skewed: see ListGateways' clock_offset_ms).

Readers: ListGateways (`InventoryService`) and `tallyport-cloud gateways` list them; the exceptions
engine turns active ones into exceptions. Writes go through `Store.write()` and run on both stores.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from tallyport.v1 import ingest_pb2

from cloud.errors import ProtocolError
from cloud.store import Store
from cloud.timestamps import from_micros, to_micros

__all__ = [
    "ALARMS_PER_STATUS_MAX",
    "ALARM_CODE_PATTERN",
    "ALARM_MESSAGE_LENGTH_MAX",
    "GatewayAlarmRecord",
    "alarm_message",
    "alarm_messages",
    "check_status",
    "list_gateway_alarms",
    "save_gateway_status",
]

ALARMS_PER_STATUS_MAX = 64
ALARM_CODE_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,63}")
ALARM_MESSAGE_LENGTH_MAX = 1024
# As master data refuses them: a message is one line of text for a person, and a NUL cannot even
# be stored in PostgreSQL text.
_CONTROL_PATTERN = re.compile(r"[\x00-\x1f\x7f]")
# A protobuf Timestamp's range; a raised_at outside it is refused, not stored.
_SECONDS_MIN, _SECONDS_MAX = -62_135_596_800, 253_402_300_799

SEVERITY_NAMES: dict[ingest_pb2.AlarmSeverity.ValueType, str] = {
    ingest_pb2.ALARM_SEVERITY_CRITICAL: "critical",
    ingest_pb2.ALARM_SEVERITY_MAJOR: "major",
    ingest_pb2.ALARM_SEVERITY_MINOR: "minor",
    ingest_pb2.ALARM_SEVERITY_WARNING: "warning",
}
_SEVERITY_NUMBERS = {name: number for number, name in SEVERITY_NAMES.items()}


@dataclass(frozen=True, slots=True)
class GatewayAlarmRecord:
    """One row of `gateway_alarms`."""

    gateway_id: str
    code: str
    severity: str  # "critical" | "major" | "minor" | "warning"
    message: str
    raised_at_us: int
    updated_at_us: int
    active: bool


def check_status(status: ingest_pb2.GatewayStatus) -> None:
    """Raise ProtocolError if the status is out of contract (the stream then ends with INVALID_ARGUMENT)."""
    if len(status.alarms) > ALARMS_PER_STATUS_MAX:
        raise ProtocolError(f"GatewayStatus has {len(status.alarms)} alarms; the limit is {ALARMS_PER_STATUS_MAX}")
    seen: set[str] = set()
    for index, alarm in enumerate(status.alarms):
        where = f"GatewayStatus.alarms[{index}]"
        if ALARM_CODE_PATTERN.fullmatch(alarm.code) is None:
            raise ProtocolError(f"{where}.code {alarm.code[:80]!r} must match {ALARM_CODE_PATTERN.pattern}")
        if alarm.code in seen:
            raise ProtocolError(f"{where}.code {alarm.code!r} appears twice")
        seen.add(alarm.code)
        if alarm.severity not in SEVERITY_NAMES:
            raise ProtocolError(f"{where}.severity must be critical, major, minor or warning, got {alarm.severity}")
        if len(alarm.message) > ALARM_MESSAGE_LENGTH_MAX:
            raise ProtocolError(f"{where}.message is longer than {ALARM_MESSAGE_LENGTH_MAX} characters")
        stamp = alarm.raised_at
        if not (_SECONDS_MIN <= stamp.seconds <= _SECONDS_MAX and 0 <= stamp.nanos < 10**9):
            raise ProtocolError(f"{where}.raised_at is not a valid time")


async def save_gateway_status(store: Store, gateway_id: str, status: ingest_pb2.GatewayStatus, now_us: int) -> None:
    """Write a checked status as the gateway's alarms, in one transaction."""
    rows = [
        (
            gateway_id,
            alarm.code,
            SEVERITY_NAMES[alarm.severity],
            # Display text: a control character (a NUL PostgreSQL cannot store, a newline from a
            # multi-line diagnosis) becomes a space. Refusing the status would end the stream that
            # also carries the gateway's events, on every reconnect.
            _CONTROL_PATTERN.sub(" ", alarm.message),
            to_micros(alarm.raised_at) if alarm.HasField("raised_at") else now_us,
            now_us,
            int(alarm.active),
        )
        for alarm in status.alarms
    ]
    async with store.write() as sql:
        if rows:
            await sql.execute_many(
                "INSERT INTO gateway_alarms"
                " (gateway_id, code, severity, message, raised_at_us, updated_at_us, active)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (gateway_id, code) DO UPDATE SET severity = excluded.severity,"
                " message = excluded.message, raised_at_us = excluded.raised_at_us,"
                " updated_at_us = excluded.updated_at_us, active = excluded.active",
                rows,
            )
        codes = [row[1] for row in rows]
        not_reported = f" AND code NOT IN ({', '.join('?' for _ in codes)})" if codes else ""
        await sql.execute(
            "UPDATE gateway_alarms SET active = 0, updated_at_us = ? WHERE gateway_id = ? AND active = 1"
            + not_reported,
            (now_us, gateway_id, *codes),
        )


async def list_gateway_alarms(store: Store, gateway_id: str = "") -> dict[str, list[GatewayAlarmRecord]]:
    """Alarms per gateway (all gateways, or one), active first, then by code."""
    where, parameters = (" WHERE gateway_id = ?", (gateway_id,)) if gateway_id else ("", ())
    async with store.read() as sql:
        rows = await sql.fetch_all(
            "SELECT gateway_id, code, severity, message, raised_at_us, updated_at_us, active FROM gateway_alarms"
            + where
            + " ORDER BY gateway_id, active DESC, code",
            parameters,
        )
    alarms: dict[str, list[GatewayAlarmRecord]] = {}
    for row in rows:
        record = GatewayAlarmRecord(
            str(row[0]), str(row[1]), str(row[2]), str(row[3]), int(row[4]), int(row[5]), bool(row[6])
        )
        alarms.setdefault(record.gateway_id, []).append(record)
    return alarms


def alarm_message(record: GatewayAlarmRecord) -> ingest_pb2.GatewayAlarm:
    """A stored alarm as the contract's GatewayAlarm, with the cloud's `updated_at`."""
    return ingest_pb2.GatewayAlarm(
        code=record.code,
        severity=_SEVERITY_NUMBERS.get(record.severity, ingest_pb2.ALARM_SEVERITY_UNSPECIFIED),
        message=record.message,
        raised_at=from_micros(record.raised_at_us),
        active=record.active,
        updated_at=from_micros(record.updated_at_us),
    )


def alarm_messages(records: Sequence[GatewayAlarmRecord]) -> list[ingest_pb2.GatewayAlarm]:
    return [alarm_message(record) for record in records]
