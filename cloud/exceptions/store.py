"""The exceptions' tables, read and written through the portable SQL layer (`cloud.store.sql`).

One open exception per (rule, subject) is a database guarantee, not a hope: `open_key` is
'rule|subject' while the exception is unresolved and NULL once resolved, under a UNIQUE
constraint (both SQLite and PostgreSQL allow many NULLs). Writers insert with
`ON CONFLICT (open_key) DO NOTHING` and update with a version check
(`... WHERE exception_id = ? AND version = ?`), so two aggregators on one PostgreSQL database
that find the same condition at once end with one exception: the loser of the race sees 0 rows
changed, re-reads the winner's row and applies its change to it (`cloud.exceptions.engine`).

Tables (schema slot `_V3_EXCEPTIONS`): exceptions, exception_transitions (audit trail),
exception_pending (on-delays running), exception_sensor_readings (recent climate readings per
location), exception_item_states (per item: where it was shipped, its standing disposition).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from cloud.errors import ValidationError
from cloud.exceptions.models import (
    ExceptionRecord,
    Policy,
    Severity,
    State,
    Transition,
    severity_rank,
)
from cloud.exceptions.rules.base import GatewayAlarm, SensorReading
from cloud.exceptions.rules.unexpected_movement import ItemState
from cloud.store.sql import Sql

__all__ = [
    "ExceptionFilter",
    "add_readings",
    "decode_page_token",
    "delete_pending",
    "encode_page_token",
    "get_exception",
    "insert_exception",
    "insert_transitions",
    "last_transition_id",
    "list_exceptions",
    "load_due",
    "load_gateway_alarms",
    "load_item_states",
    "load_open",
    "load_open_of_rules",
    "load_pending",
    "load_readings",
    "prune_readings",
    "save_item_states",
    "set_pending",
    "transitions_of",
    "transitions_since",
    "update_exception",
]

KEYS_PER_STATEMENT = 500  # parameters per IN (...) list, well below SQLite's limit

_COLUMNS = (
    "exception_id, rule, subject, state, active, acknowledged, severity, priority, value_at_stake, "
    "quantity_at_stake, service_weight, gtin, location, details, owner_role, escalation_level, response_due_us, "
    "raised_at_us, last_seen_us, updated_at_us, occurrences, cleared_at_us, resolved_at_us, shelved_until_us, "
    "clear_pending_since_us, policy, version"
)
_TRANSITION_COLUMNS = "exception_id, at_us, actor, action, from_state, to_state, reason, escalation_level, owner_role"


def _chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), KEYS_PER_STATEMENT):
        yield items[start : start + KEYS_PER_STATEMENT]


def _marks(count: int) -> str:
    return ", ".join("?" * count)


def _policy_text(policy: Policy) -> str:
    return json.dumps(
        {
            "severity": policy.severity,
            "owner_role": policy.owner_role,
            "response_s": policy.response_s,
            "escalation_roles": list(policy.escalation_roles),
            "escalation_interval_s": policy.escalation_interval_s,
            "on_delay_s": policy.on_delay_s,
            "off_delay_s": policy.off_delay_s,
        },
        separators=(",", ":"),
    )


def _policy_from(text: str) -> Policy:
    raw = json.loads(text)
    return Policy(
        severity=raw["severity"],
        owner_role=raw["owner_role"],
        response_s=float(raw["response_s"]),
        escalation_roles=tuple(raw["escalation_roles"]),
        escalation_interval_s=float(raw["escalation_interval_s"]),
        on_delay_s=float(raw["on_delay_s"]),
        off_delay_s=float(raw["off_delay_s"]),
    )


def _row(record: ExceptionRecord) -> tuple[object, ...]:
    return (
        record.exception_id,
        record.rule,
        record.subject,
        record.state,
        int(record.active),
        int(record.acknowledged),
        record.severity,
        float(record.priority),
        float(record.value_at_stake),
        float(record.quantity_at_stake),
        float(record.service_weight),
        record.gtin,
        record.location,
        record.details,
        record.owner_role,
        record.escalation_level,
        record.response_due_us,
        record.raised_at_us,
        record.last_seen_us,
        record.updated_at_us,
        record.occurrences,
        record.cleared_at_us,
        record.resolved_at_us,
        record.shelved_until_us,
        record.clear_pending_since_us,
        _policy_text(record.policy),
    )


def _record(row: Sequence[Any]) -> ExceptionRecord:
    return ExceptionRecord(
        exception_id=row[0],
        rule=row[1],
        subject=row[2],
        state=row[3],
        active=bool(row[4]),
        acknowledged=bool(row[5]),
        severity=row[6],
        priority=float(row[7]),
        value_at_stake=float(row[8]),
        quantity_at_stake=float(row[9]),
        service_weight=float(row[10]),
        gtin=row[11],
        location=row[12],
        details=row[13],
        owner_role=row[14],
        escalation_level=int(row[15]),
        response_due_us=int(row[16]),
        raised_at_us=int(row[17]),
        last_seen_us=int(row[18]),
        updated_at_us=int(row[19]),
        occurrences=int(row[20]),
        cleared_at_us=row[21],
        resolved_at_us=row[22],
        shelved_until_us=row[23],
        clear_pending_since_us=row[24],
        policy=_policy_from(row[25]),
        version=int(row[26]),
    )


# ---- exceptions ----------------------------------------------------------------------------


async def insert_exception(sql: Sql, record: ExceptionRecord) -> bool:
    """Insert a new unresolved exception; False when its (rule, subject) already has one (another writer won)."""
    assert not record.is_closed
    changed = await sql.execute(
        f"INSERT INTO exceptions ({_COLUMNS}, open_key, severity_rank) "
        f"VALUES ({_marks(29)}) ON CONFLICT (open_key) DO NOTHING",
        (*_row(record), 1, record.key, severity_rank(record.severity)),
    )
    return changed == 1


async def update_exception(sql: Sql, record: ExceptionRecord, expected_version: int) -> bool:
    """Write `record` over the row at `expected_version`; False when someone changed it meanwhile."""
    assignments = ", ".join(f"{name.strip()} = ?" for name in _COLUMNS.split(",")[1:-1])
    changed = await sql.execute(
        f"UPDATE exceptions SET {assignments}, open_key = ?, severity_rank = ?, version = ? "
        "WHERE exception_id = ? AND version = ?",
        (
            *_row(record)[1:],
            None if record.is_closed else record.key,
            severity_rank(record.severity),
            expected_version + 1,
            record.exception_id,
            expected_version,
        ),
    )
    return changed == 1


async def insert_transitions(sql: Sql, transitions: Iterable[Transition]) -> None:
    """Append to the audit trail."""
    rows = [
        (
            item.exception_id,
            item.at_us,
            item.actor,
            item.action,
            item.from_state,
            item.to_state,
            item.reason,
            item.escalation_level,
            item.owner_role,
        )
        for item in transitions
    ]
    if rows:
        await sql.execute_many(f"INSERT INTO exception_transitions ({_TRANSITION_COLUMNS}) VALUES ({_marks(9)})", rows)


async def get_exception(sql: Sql, exception_id: str) -> ExceptionRecord | None:
    """One exception by id."""
    row = await sql.fetch_one(f"SELECT {_COLUMNS} FROM exceptions WHERE exception_id = ?", (exception_id,))
    return _record(row) if row is not None else None


async def load_open(sql: Sql, keys: Sequence[str]) -> dict[str, ExceptionRecord]:
    """The unresolved exceptions of these open keys ('rule|subject')."""
    found: dict[str, ExceptionRecord] = {}
    unique = sorted(set(keys))
    for chunk in _chunks(unique):
        rows = await sql.fetch_all(
            f"SELECT {_COLUMNS} FROM exceptions WHERE open_key IN ({_marks(len(chunk))})", tuple(chunk)
        )
        for row in rows:
            record = _record(row)
            found[record.key] = record
    return found


async def load_open_of_rules(sql: Sql, rules: Sequence[str]) -> dict[str, ExceptionRecord]:
    """Every unresolved exception of these rules, by open key."""
    if not rules:
        return {}
    rows = await sql.fetch_all(
        f"SELECT {_COLUMNS} FROM exceptions WHERE open_key IS NOT NULL AND rule IN ({_marks(len(rules))})",
        tuple(rules),
    )
    return {record.key: record for record in map(_record, rows)}


async def load_due(sql: Sql, now_us: int) -> list[ExceptionRecord]:
    """Exceptions the clock may change: shelves expired, open ones past their due time."""
    rows = await sql.fetch_all(
        f"SELECT {_COLUMNS} FROM exceptions WHERE open_key IS NOT NULL AND "
        "((state = 'shelved' AND shelved_until_us <= ?) OR (state = 'open' AND response_due_us <= ?)) "
        "ORDER BY exception_id",
        (now_us, now_us),
    )
    return [_record(row) for row in rows]


async def transitions_of(sql: Sql, exception_id: str) -> list[Transition]:
    """The audit trail of one exception, oldest first."""
    rows = await sql.fetch_all(
        f"SELECT {_TRANSITION_COLUMNS} FROM exception_transitions WHERE exception_id = ? ORDER BY transition_id",
        (exception_id,),
    )
    return [_transition(row) for row in rows]


def _transition(row: Sequence[Any]) -> Transition:
    return Transition(
        exception_id=row[0],
        at_us=int(row[1]),
        actor=row[2],
        action=row[3],
        from_state=row[4],
        to_state=row[5],
        reason=row[6],
        escalation_level=int(row[7]),
        owner_role=row[8],
    )


async def last_transition_id(sql: Sql) -> int:
    """The highest transition_id recorded so far (0 when none)."""
    row = await sql.fetch_one("SELECT COALESCE(MAX(transition_id), 0) FROM exception_transitions")
    return int(row[0]) if row is not None else 0


async def transitions_since(
    sql: Sql, after_id: int, also_ids: Sequence[int], limit: int
) -> list[tuple[int, Transition, ExceptionRecord]]:
    """Transitions with a transition_id above `after_id` or in `also_ids`, by transition_id, at
    most `limit`, each with its exception as it is now (the feed of the subscription hub)."""
    transition_columns = ", ".join(f"t.{name.strip()}" for name in _TRANSITION_COLUMNS.split(","))
    exception_columns = ", ".join(f"e.{name.strip()}" for name in _COLUMNS.split(","))
    where = "t.transition_id > ?"
    parameters: list[object] = [after_id]
    if also_ids:
        where += f" OR t.transition_id IN ({_marks(len(also_ids))})"
        parameters.extend(also_ids)
    rows = await sql.fetch_all(
        f"SELECT t.transition_id, {transition_columns}, {exception_columns} FROM exception_transitions t "
        f"JOIN exceptions e ON e.exception_id = t.exception_id WHERE {where} ORDER BY t.transition_id LIMIT ?",
        (*parameters, limit),
    )
    return [(int(row[0]), _transition(row[1:10]), _record(row[10:])) for row in rows]


@dataclass(frozen=True, slots=True)
class ExceptionFilter:
    """Filters of ListExceptions; empty ones match everything. No states: every unresolved one."""

    states: tuple[State, ...] = ()
    rule: str = ""
    location: str = ""
    gtin: str = ""
    owner_role: str = ""
    min_severity: Severity | None = None


async def list_exceptions(
    sql: Sql, where: ExceptionFilter, limit: int, after: tuple[float, str] | None = None
) -> list[ExceptionRecord]:
    """Exceptions by priority (highest first), then id; `after` is the (priority, id) of the last row seen."""
    clauses: list[str] = []
    parameters: list[object] = []
    if where.states:
        clauses.append(f"state IN ({_marks(len(where.states))})")
        parameters.extend(where.states)
    else:
        clauses.append("open_key IS NOT NULL")
    for column, value in (
        ("rule", where.rule),
        ("location", where.location),
        ("gtin", where.gtin),
        ("owner_role", where.owner_role),
    ):
        if value:
            clauses.append(f"{column} = ?")
            parameters.append(value)
    if where.min_severity is not None:
        clauses.append("severity_rank >= ?")
        parameters.append(severity_rank(where.min_severity))
    if after is not None:
        clauses.append("(priority < ? OR (priority = ? AND exception_id > ?))")
        parameters.extend((after[0], after[0], after[1]))
    rows = await sql.fetch_all(
        f"SELECT {_COLUMNS} FROM exceptions WHERE {' AND '.join(clauses)} ORDER BY priority DESC, exception_id LIMIT ?",
        (*parameters, limit),
    )
    return [_record(row) for row in rows]


def encode_page_token(priority: float, exception_id: str) -> str:
    """An opaque cursor after (priority, exception_id)."""
    text = json.dumps([priority.hex(), exception_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode()


def decode_page_token(token: str) -> tuple[float, str]:
    """The (priority, exception_id) of a cursor; ValidationError when it is not one of ours."""
    try:
        priority_hex, exception_id = json.loads(base64.urlsafe_b64decode(token.encode()))
        return float.fromhex(priority_hex), str(exception_id)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise ValidationError("page_token is not a token this server issued") from exc


# ---- on-delays -------------------------------------------------------------------------------


async def load_pending(sql: Sql, keys: Sequence[str], rules: Sequence[str] = ()) -> dict[str, int]:
    """When conditions waiting out an on-delay became active: those of these keys, and every one of `rules`."""
    found: dict[str, int] = {}
    for chunk in _chunks(sorted(set(keys))):
        rows = await sql.fetch_all(
            f"SELECT open_key, active_since_us FROM exception_pending WHERE open_key IN ({_marks(len(chunk))})",
            tuple(chunk),
        )
        found.update((row[0], int(row[1])) for row in rows)
    if rules:
        rows = await sql.fetch_all(
            f"SELECT open_key, active_since_us FROM exception_pending WHERE rule IN ({_marks(len(rules))})",
            tuple(rules),
        )
        found.update((row[0], int(row[1])) for row in rows)
    return found


async def set_pending(sql: Sql, rule: str, key: str, since_us: int) -> None:
    await sql.execute(
        "INSERT INTO exception_pending (open_key, rule, active_since_us) VALUES (?, ?, ?) "
        "ON CONFLICT (open_key) DO NOTHING",
        (key, rule, since_us),
    )


async def delete_pending(sql: Sql, keys: Sequence[str]) -> None:
    for chunk in _chunks(sorted(set(keys))):
        await sql.execute(f"DELETE FROM exception_pending WHERE open_key IN ({_marks(len(chunk))})", tuple(chunk))


# ---- climate readings ----------------------------------------------------------------------


async def add_readings(sql: Sql, readings: Sequence[SensorReading]) -> None:
    """Keep readings; one reading delivered twice is kept once."""
    if readings:
        await sql.execute_many(
            "INSERT INTO exception_sensor_readings (location, measurement, device_id, reading_time_us, value) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (location, measurement, device_id, reading_time_us) DO NOTHING",
            [(r.location, r.measurement, r.device_id, r.reading_time_us, r.value) for r in readings],
        )


async def load_readings(sql: Sql, since_us: int) -> list[SensorReading]:
    rows = await sql.fetch_all(
        "SELECT location, measurement, device_id, reading_time_us, value FROM exception_sensor_readings "
        "WHERE reading_time_us >= ? ORDER BY location, measurement, device_id, reading_time_us",
        (since_us,),
    )
    return [SensorReading(row[0], row[1], row[2], int(row[3]), float(row[4])) for row in rows]


async def prune_readings(sql: Sql, before_us: int) -> int:
    return await sql.execute("DELETE FROM exception_sensor_readings WHERE reading_time_us < ?", (before_us,))


# ---- per-item state of the unexpected movement and dwell rules ---------------------------------


async def load_item_states(sql: Sql, object_ids: Sequence[str]) -> dict[str, ItemState]:
    found: dict[str, ItemState] = {}
    for chunk in _chunks(sorted(set(object_ids))):
        rows = await sql.fetch_all(
            "SELECT object_id, shipped_at_us, shipped_location, disposition, disposition_at_us, place, placed_at_us "
            f"FROM exception_item_states WHERE object_id IN ({_marks(len(chunk))})",
            tuple(chunk),
        )
        found.update(
            (row[0], ItemState(row[0], row[1], row[2], int(row[3]), int(row[4]), row[5], int(row[6]))) for row in rows
        )
    return found


async def save_item_states(sql: Sql, states: Sequence[ItemState]) -> None:
    """Write states; an empty state deletes the item's row (nothing to remember)."""
    keep = [s for s in states if not s.empty]
    drop = [s.object_id for s in states if s.empty]
    if keep:
        await sql.execute_many(
            "INSERT INTO exception_item_states (object_id, shipped_at_us, shipped_location, disposition, "
            "disposition_at_us, place, placed_at_us) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (object_id) DO UPDATE SET "
            "shipped_at_us = excluded.shipped_at_us, shipped_location = excluded.shipped_location, "
            "disposition = excluded.disposition, disposition_at_us = excluded.disposition_at_us, "
            "place = excluded.place, placed_at_us = excluded.placed_at_us",
            [
                (
                    s.object_id,
                    s.shipped_at_us,
                    s.shipped_location,
                    s.disposition,
                    s.disposition_at_us,
                    s.place,
                    s.placed_at_us,
                )
                for s in keep
            ],
        )
    for chunk in _chunks(drop):
        await sql.execute(f"DELETE FROM exception_item_states WHERE object_id IN ({_marks(len(chunk))})", tuple(chunk))


# ---- gateway alarms (table owned by the uplink) ------------------------------------------------


async def load_gateway_alarms(sql: Sql) -> list[GatewayAlarm]:
    """Active rows of `gateway_alarms`."""
    rows = await sql.fetch_all(
        "SELECT gateway_id, code, severity, message, raised_at_us, updated_at_us, active FROM gateway_alarms "
        "WHERE active = 1 ORDER BY gateway_id, code"
    )
    return [GatewayAlarm(row[0], row[1], row[2], row[3], int(row[4]), int(row[5]), bool(row[6])) for row in rows]
