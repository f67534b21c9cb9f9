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

GTIN_LENGTH = 14
SSCC_LENGTH = 18
_UPPER_CASE_HEX_DIGITS = "0123456789ABCDEF"
# What the digits' ASCII offset (48 each) adds to a key's weighted sum, modulo 10, by key length:
# from the rightmost, (length + 1) // 2 digits weigh 1 and length // 2 weigh 3.
_ASCII_WEIGHTED_SUM_MOD_10 = {
    length: 48 * ((length + 1) // 2 + 3 * (length // 2)) % 10 for length in (GTIN_LENGTH, SSCC_LENGTH)
}

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
    # Every reason is a non-empty string, so `or` stops at the first one, in the documented order.
    return _check_envelope(event, gateway_id) or _check_time(event) or _check_vocabulary(event) or _check_content(event)


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


def _check_time(event: events_pb2.Event) -> str | None:
    if not event.HasField("event_time"):
        return "event_time is not set"
    event_time = event.event_time
    seconds, nanos = event_time.seconds, event_time.nanos
    if not 0 <= nanos < NANOS_PER_SECOND:
        return f"event_time.nanos {nanos} is outside 0..999999999"
    if not EVENT_TIME_SECONDS_MIN <= seconds < EVENT_TIME_SECONDS_END:
        return f"event_time {seconds} s since the epoch is outside the years 2000-2100"
    offset_minutes = event.event_time_offset_minutes
    if abs(offset_minutes) > EVENT_TIME_OFFSET_MINUTES_MAX:
        return f"event_time_offset_minutes {offset_minutes} is beyond ±{EVENT_TIME_OFFSET_MINUTES_MAX} (±14 h)"
    return None


def _check_vocabulary(event: events_pb2.Event) -> str | None:
    if event.type not in _KNOWN_TYPES:
        return f"type {event.type} is unspecified or unknown"
    if event.action not in _KNOWN_ACTIONS:
        return f"action {event.action} is unspecified or unknown"
    if event.biz_step not in _KNOWN_BIZ_STEPS:
        return f"biz_step {event.biz_step} is unspecified or unknown"
    if event.disposition not in _KNOWN_DISPOSITIONS:
        return f"disposition {event.disposition} is unknown"
    return None


def _check_content(event: events_pb2.Event) -> str | None:
    objects, quantities, reports = event.objects, event.quantities, event.sensor_reports
    event_type = event.type
    if event_type == events_pb2.EVENT_TYPE_OBJECT and not (objects or quantities or reports):
        return "an OBJECT event needs at least one object, quantity or sensor report"
    parent = event.parent if event.HasField("parent") else None
    if (
        event_type == events_pb2.EVENT_TYPE_AGGREGATION
        and event.action in (events_pb2.ACTION_ADD, events_pb2.ACTION_OBSERVE)
        and not (parent is not None and parent.id)
    ):
        return "an AGGREGATION event with action ADD or OBSERVE needs parent.id"
    # The helpers return the reason without its "where": a valid event builds no "objects[i]" string.
    for index, identified in enumerate(objects):
        reason = _object_problem(identified)
        if reason is not None:
            return f"objects[{index}]{reason}"
    if parent is not None:
        reason = _object_problem(parent)
        if reason is not None:
            return f"parent{reason}"
    # Walking even an empty repeated field costs an iterator: most events carry only objects.
    if quantities:
        for index, quantity in enumerate(quantities):
            reason = _quantity_problem(quantity)
            if reason is not None:
                return f"quantities[{index}]{reason}"
    if reports:
        for index, report in enumerate(reports):
            if not math.isfinite(report.value):
                return f"sensor_reports[{index}].value {report.value} is not a finite number"
    return None


def _object_problem(identified: events_pb2.IdentifiedObject) -> str | None:
    """What is wrong with an object, starting at the field (".gtin ..."), or None."""
    if not identified.id:
        return ".id is empty"
    gtin = identified.gtin
    if gtin:
        reason = _gs1_key_problem(gtin, GTIN_LENGTH)
        if reason is not None:
            return f".gtin {_quote(gtin)}: {reason}"
    sscc = identified.sscc
    if sscc:
        reason = _gs1_key_problem(sscc, SSCC_LENGTH)
        if reason is not None:
            return f".sscc {_quote(sscc)}: {reason}"
    epc_hex = identified.epc_hex
    # Stripping every upper-case hex digit from both ends leaves nothing only if there was nothing else.
    if epc_hex and epc_hex.strip(_UPPER_CASE_HEX_DIGITS):
        return f".epc_hex {_quote(epc_hex)}: expected upper-case hex digits"
    return None


def _quantity_problem(quantity: events_pb2.QuantityElement) -> str | None:
    """What is wrong with a quantity element, starting at the field (".gtin ..."), or None."""
    gtin = quantity.gtin
    if not gtin:
        return ".gtin is empty"
    reason = _gs1_key_problem(gtin, GTIN_LENGTH)
    if reason is not None:
        return f".gtin {_quote(gtin)}: {reason}"
    value = quantity.quantity
    if not math.isfinite(value) or value < 0:
        return f".quantity {value} is not a finite number >= 0"
    return None


def _gs1_key_problem(key: str, length: int) -> str | None:
    # isascii() first: str.isdigit() alone also accepts non-ASCII digits such as '٣'.
    if len(key) != length or not (key.isascii() and key.isdigit()):
        return f"expected {length} digits"
    # Weights 1 (the check digit), 3, 1, 3... from the rightmost: a valid key sums to a multiple
    # of 10. Summing the ASCII codes in C (bytes slices) adds 48 per digit, known in advance.
    codes = key.encode("ascii")
    if (3 * sum(codes[-2::-2]) + sum(codes[-1::-2])) % 10 != _ASCII_WEIGHTED_SUM_MOD_10[length]:
        return f"check digit should be {gs1_check_digit(key[:-1])}"
    return None
