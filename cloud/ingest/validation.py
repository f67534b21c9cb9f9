"""Contract validation of one event, pure: an `events_pb2.Event` in, a reason string or None out.

The cloud trusts the contract, not the device: it never re-parses raw reads, but it checks
every field the projections and queries rely on. A reason says what and where, e.g.
`objects[2].gtin '09501101530004': check digit should be 3`. The function never raises,
whatever the message holds (a property test feeds it garbage).

Rules, in the order they are checked (the first failure is the reason):
- gateway_id equals the stream's gateway (otherwise the reject code is WRONG_GATEWAY);
- event_id non-empty, at most 128 characters; seq > 0;
- event_time set, nanos in range, between 2000-01-01 and 2100-12-31 UTC;
  |event_time_offset_minutes| <= 14 h;
- type, action and biz_step specified and known; disposition, when set, known;
- an OBJECT event carries at least one object, quantity or sensor report; an AGGREGATION
  event with action ADD or OBSERVE names its parent;
- every object (and the parent) has a non-empty id; every GTIN present is 14 digits with a
  valid GS1 check digit, every SSCC 18 digits with a valid check digit; epc_hex, when
  present, is upper-case hex;
- every quantity names a valid GTIN and is finite and >= 0; sensor values are finite.

One rule depends on the cloud's clock and its config, so it is a function of its own
(`event_time_ahead_problem`, applied by `cloud.ingest.commit.check_events`): an event_time
more than `[ingest].max_event_time_ahead_ms` ahead of the cloud's clock is rejected. The bound
is there because positions follow the newest event_time: a far-future event would pin an
item where it was seen until real time caught up. Events in the past are never refused for
their age (a backlog drained after a long outage is old), and a gateway clock skewed by less
than the bound (the default is 2 h: ±1 h of skew passes) changes nothing.
"""

from __future__ import annotations

import math
import re

from tallyport.v1 import events_pb2

__all__ = ["EVENT_ID_LENGTH_MAX", "event_time_ahead_problem", "gs1_check_digit", "validate_event"]

EVENT_ID_LENGTH_MAX = 128
EVENT_TIME_OFFSET_MINUTES_MAX = 14 * 60
# 2000-01-01T00:00:00Z and 2101-01-01T00:00:00Z: a clock outside these is broken, not early.
EVENT_TIME_SECONDS_MIN = 946_684_800
EVENT_TIME_SECONDS_END = 4_133_980_800
NANOS_PER_SECOND = 1_000_000_000
# Values quoted in a reason are cut so a hostile 4 MB string cannot bloat an Ack.
QUOTED_VALUE_LENGTH_MAX = 64

_GTIN_PATTERN = re.compile(r"[0-9]{14}")  # [0-9], not \d: \d also matches non-ASCII digits
_SSCC_PATTERN = re.compile(r"[0-9]{18}")
_EPC_HEX_PATTERN = re.compile(r"[0-9A-F]+")

_KNOWN_TYPES = frozenset(events_pb2.EventType.values()) - {events_pb2.EVENT_TYPE_UNSPECIFIED}
_KNOWN_ACTIONS = frozenset(events_pb2.Action.values()) - {events_pb2.ACTION_UNSPECIFIED}
_KNOWN_BIZ_STEPS = frozenset(events_pb2.BizStep.values()) - {events_pb2.BIZ_STEP_UNSPECIFIED}
_KNOWN_DISPOSITIONS = frozenset(events_pb2.Disposition.values())


def gs1_check_digit(data_digits: str) -> int:
    """The GS1 mod-10 check digit of ASCII `data_digits` (weights 3,1,3,1... from the rightmost)."""
    digits = [ord(char) - 48 for char in data_digits]
    total = 3 * sum(digits[-1::-2]) + sum(digits[-2::-2])
    return (10 - total % 10) % 10


def validate_event(event: events_pb2.Event, gateway_id: str) -> str | None:
    """Why `event` breaks the contract for a stream of `gateway_id`, or None when it is valid."""
    for check in (_check_envelope, _check_time, _check_vocabulary, _check_content):
        reason = check(event, gateway_id)
        if reason is not None:
            return reason
    return None


def event_time_ahead_problem(event: events_pb2.Event, now_us: int, ahead_max_ms: int) -> str | None:
    """Why `event`'s (already valid) event_time is too far ahead of the cloud's `now_us`, or None."""
    ahead_us = event.event_time.seconds * 1_000_000 + event.event_time.nanos // 1000 - now_us
    if ahead_us <= ahead_max_ms * 1000:
        return None
    return (
        f"event_time is {_duration(ahead_us)} ahead of the cloud's clock, beyond the "
        f"{_duration(ahead_max_ms * 1000)} allowed ([ingest].max_event_time_ahead_ms = {ahead_max_ms}): "
        "is the gateway's clock wrong?"
    )


def _duration(micros: int) -> str:
    minutes, seconds = divmod(micros // 1_000_000, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min {seconds:02d} s"


def _quote(value: str) -> str:
    if len(value) > QUOTED_VALUE_LENGTH_MAX:
        value = value[: QUOTED_VALUE_LENGTH_MAX - 3] + "..."
    return repr(value)


def _check_envelope(event: events_pb2.Event, gateway_id: str) -> str | None:
    if event.gateway_id != gateway_id:
        return f"gateway_id {_quote(event.gateway_id)} differs from the stream's gateway {_quote(gateway_id)}"
    if not event.event_id:
        return "event_id is empty"
    if len(event.event_id) > EVENT_ID_LENGTH_MAX:
        return f"event_id is {len(event.event_id)} characters; at most {EVENT_ID_LENGTH_MAX} allowed"
    if event.seq == 0:
        return "seq is 0; seqs start at 1"
    return None


def _check_time(event: events_pb2.Event, gateway_id: str) -> str | None:
    if not event.HasField("event_time"):
        return "event_time is not set"
    seconds, nanos = event.event_time.seconds, event.event_time.nanos
    if not 0 <= nanos < NANOS_PER_SECOND:
        return f"event_time.nanos {nanos} is outside 0..999999999"
    if not EVENT_TIME_SECONDS_MIN <= seconds < EVENT_TIME_SECONDS_END:
        return f"event_time {seconds} s since the epoch is outside the years 2000-2100"
    if abs(event.event_time_offset_minutes) > EVENT_TIME_OFFSET_MINUTES_MAX:
        return (
            f"event_time_offset_minutes {event.event_time_offset_minutes} is beyond "
            f"±{EVENT_TIME_OFFSET_MINUTES_MAX} (±14 h)"
        )
    return None


def _check_vocabulary(event: events_pb2.Event, gateway_id: str) -> str | None:
    if event.type not in _KNOWN_TYPES:
        return f"type {event.type} is unspecified or unknown"
    if event.action not in _KNOWN_ACTIONS:
        return f"action {event.action} is unspecified or unknown"
    if event.biz_step not in _KNOWN_BIZ_STEPS:
        return f"biz_step {event.biz_step} is unspecified or unknown"
    if event.disposition not in _KNOWN_DISPOSITIONS:
        return f"disposition {event.disposition} is unknown"
    return None


def _check_content(event: events_pb2.Event, gateway_id: str) -> str | None:
    if event.type == events_pb2.EVENT_TYPE_OBJECT and not (event.objects or event.quantities or event.sensor_reports):
        return "an OBJECT event needs at least one object, quantity or sensor report"
    has_parent = event.HasField("parent")
    if (
        event.type == events_pb2.EVENT_TYPE_AGGREGATION
        and event.action in (events_pb2.ACTION_ADD, events_pb2.ACTION_OBSERVE)
        and not (has_parent and event.parent.id)
    ):
        return "an AGGREGATION event with action ADD or OBSERVE needs parent.id"
    for index, identified in enumerate(event.objects):
        reason = _check_object(identified, f"objects[{index}]")
        if reason is not None:
            return reason
    if has_parent:
        reason = _check_object(event.parent, "parent")
        if reason is not None:
            return reason
    for index, quantity in enumerate(event.quantities):
        reason = _check_quantity(quantity, f"quantities[{index}]")
        if reason is not None:
            return reason
    for index, report in enumerate(event.sensor_reports):
        if not math.isfinite(report.value):
            return f"sensor_reports[{index}].value {report.value} is not a finite number"
    return None


def _check_object(identified: events_pb2.IdentifiedObject, where: str) -> str | None:
    if not identified.id:
        return f"{where}.id is empty"
    if identified.gtin:
        reason = _check_gs1_key(identified.gtin, _GTIN_PATTERN, 14)
        if reason is not None:
            return f"{where}.gtin {_quote(identified.gtin)}: {reason}"
    if identified.sscc:
        reason = _check_gs1_key(identified.sscc, _SSCC_PATTERN, 18)
        if reason is not None:
            return f"{where}.sscc {_quote(identified.sscc)}: {reason}"
    if identified.epc_hex and _EPC_HEX_PATTERN.fullmatch(identified.epc_hex) is None:
        return f"{where}.epc_hex {_quote(identified.epc_hex)}: expected upper-case hex digits"
    return None


def _check_quantity(quantity: events_pb2.QuantityElement, where: str) -> str | None:
    if not quantity.gtin:
        return f"{where}.gtin is empty"
    reason = _check_gs1_key(quantity.gtin, _GTIN_PATTERN, 14)
    if reason is not None:
        return f"{where}.gtin {_quote(quantity.gtin)}: {reason}"
    if not math.isfinite(quantity.quantity) or quantity.quantity < 0:
        return f"{where}.quantity {quantity.quantity} is not a finite number >= 0"
    return None


def _check_gs1_key(key: str, pattern: re.Pattern[str], length: int) -> str | None:
    if pattern.fullmatch(key) is None:
        return f"expected {length} digits"
    expected = gs1_check_digit(key[:-1])
    if int(key[-1]) != expected:
        return f"check digit should be {expected}"
    return None
