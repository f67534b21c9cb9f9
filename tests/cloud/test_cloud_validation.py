"""Contract validation of single events: each rule, and garbage that must never raise."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cloud_testkit import GATEWAY, GTIN_A, item, make_event, sscc
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tallyport.v1 import events_pb2

from cloud.ingest.validation import gs1_check_digit, validate_event

Breaker = Callable[[events_pb2.Event], object]


def test_a_valid_event_passes() -> None:
    assert validate_event(make_event(1), GATEWAY) is None


def test_quantity_only_and_aggregation_events_pass() -> None:
    quantity = make_event(1, quantities=[events_pb2.QuantityElement(gtin=GTIN_A, quantity=12)])
    pallet = events_pb2.IdentifiedObject(id="https://id.gs1.org/00/" + sscc("10614141000000123"))
    aggregation = make_event(
        2, event_type=events_pb2.EVENT_TYPE_AGGREGATION, action=events_pb2.ACTION_ADD, parent=pallet
    )
    aggregation.parent.sscc = sscc("10614141000000123")
    assert validate_event(quantity, GATEWAY) is None
    assert validate_event(aggregation, GATEWAY) is None


@pytest.mark.parametrize(
    ("gtin", "expected"),
    [("0950110153000", 3), ("0061414100001", gs1_check_digit("0061414100001")), ("1061414100000", 2)],
)
def test_gs1_check_digit(gtin: str, expected: int) -> None:
    assert gs1_check_digit(gtin) == expected


@settings(max_examples=300)
@given(st.sampled_from(["gtin", "sscc"]), st.text("0123456789", min_size=17, max_size=17), st.integers(0, 9))
def test_a_gs1_key_passes_exactly_when_its_last_digit_is_the_check_digit(
    field: str, digits: str, last_digit: int
) -> None:
    body = digits[:13] if field == "gtin" else digits
    event = make_event(1)
    setattr(event.objects[0], field, body + str(last_digit))
    reason = validate_event(event, GATEWAY)
    if last_digit == gs1_check_digit(body):
        assert reason is None
    else:
        assert reason == (f"objects[0].{field} '{body}{last_digit}': check digit should be {gs1_check_digit(body)}")


def _set(field: str, value: object) -> Breaker:
    return lambda event: setattr(event, field, value)


def _clear(field: str) -> Breaker:
    return lambda event: event.ClearField(field)


def _object(field: str, value: object, index: int = 0) -> Breaker:
    return lambda event: setattr(event.objects[index], field, value)


def _three_objects_last_gtin(value: str) -> Breaker:
    def breaker(event: events_pb2.Event) -> None:
        event.objects.extend([item(serial="2"), item(serial="3")])
        event.objects[2].gtin = value

    return breaker


def _quantity(quantity: float, uom: str = "", gtin: str = GTIN_A) -> Breaker:
    return lambda event: event.quantities.append(events_pb2.QuantityElement(gtin=gtin, quantity=quantity, uom=uom))


@pytest.mark.parametrize(
    ("breaker", "reason"),
    [
        (
            _set("gateway_id", "gw-other"),
            "gateway_id 'gw-other' differs from the stream's gateway 'gw-dock4'",
        ),
        (_set("event_id", ""), "event_id is empty"),
        (_set("event_id", "x" * 129), "event_id is 129 characters; at most 128 allowed"),
        (_set("seq", 0), "seq is 0; seqs start at 1"),
        (_clear("event_time"), "event_time is not set"),
        (lambda e: setattr(e.event_time, "seconds", 0), "outside the years 2000-2100"),
        (lambda e: setattr(e.event_time, "seconds", 4_200_000_000), "outside the years 2000-2100"),
        (lambda e: setattr(e.event_time, "nanos", -1), "event_time.nanos -1 is outside 0..999999999"),
        (_set("event_time_offset_minutes", 14 * 60 + 1), "event_time_offset_minutes 841 is beyond"),
        (_set("event_time_offset_minutes", -(14 * 60 + 1)), "event_time_offset_minutes -841 is beyond"),
        (_set("type", events_pb2.EVENT_TYPE_UNSPECIFIED), "type 0 is unspecified or unknown"),
        (_set("type", 99), "type 99 is unspecified or unknown"),
        (_set("action", events_pb2.ACTION_UNSPECIFIED), "action 0 is unspecified or unknown"),
        (_set("biz_step", events_pb2.BIZ_STEP_UNSPECIFIED), "biz_step 0 is unspecified or unknown"),
        (_set("biz_step", 4242), "biz_step 4242 is unspecified or unknown"),
        (_set("disposition", 4242), "disposition 4242 is unknown"),
        (_clear("objects"), "an OBJECT event needs at least one object, quantity or sensor report"),
        (_object("id", ""), "objects[0].id is empty"),
        (
            _three_objects_last_gtin("09501101530004"),
            "objects[2].gtin '09501101530004': check digit should be 3",
        ),
        (_object("gtin", "9501101530003"), "objects[0].gtin '9501101530003': expected 14 digits"),
        (
            _object("gtin", "0950110153000٣"),
            "expected 14 digits",
        ),  # an Arabic-Indic digit is not a digit here
        (
            _object("sscc", "106141410000001230"),
            "objects[0].sscc '106141410000001230': check digit should be",
        ),
        (_object("sscc", "12"), "objects[0].sscc '12': expected 18 digits"),
        (_object("epc_hex", "30abc"), "objects[0].epc_hex '30abc': expected upper-case hex digits"),
        (_quantity(float("nan")), "quantities[0].quantity nan is not a finite number >= 0"),
        (_quantity(float("inf")), "quantities[0].quantity inf is not a finite number >= 0"),
        (_quantity(-1.0), "quantities[0].quantity -1.0 is not a finite number >= 0"),
        (_quantity(1.0, gtin=""), "quantities[0].gtin is empty"),
        (
            _quantity(1.0, gtin="09501101530004"),
            "quantities[0].gtin '09501101530004': check digit should be 3",
        ),
        (
            lambda e: e.sensor_reports.append(events_pb2.SensorReport(type="Temperature", value=float("nan"))),
            "sensor_reports[0].value nan is not a finite number",
        ),
        (
            lambda e: (setattr(e, "type", events_pb2.EVENT_TYPE_AGGREGATION), setattr(e, "action", 1)),
            "an AGGREGATION event with action ADD or OBSERVE needs parent.id",
        ),
    ],
)
def test_each_rule_names_what_and_where(breaker: Breaker, reason: str) -> None:
    event = make_event(1)
    breaker(event)
    found = validate_event(event, GATEWAY)
    assert found is not None
    assert found.startswith(reason) or reason in found, found


def test_a_long_bad_value_is_cut_in_the_reason() -> None:
    event = make_event(1)
    event.objects[0].gtin = "9" * 100_000
    reason = validate_event(event, GATEWAY)
    assert reason is not None
    assert len(reason) < 200


_texts = st.text(max_size=40) | st.sampled_from(["", GATEWAY, GTIN_A, "0" * 14, "0" * 18, "٣" * 14])
_floats = st.floats(allow_nan=True, allow_infinity=True)
_ints32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
_objects = st.builds(
    events_pb2.IdentifiedObject,
    id=_texts,
    epc_uri=_texts,
    epc_hex=_texts,
    gtin=_texts,
    serial=_texts,
    sscc=_texts,
)


@st.composite
def _garbage_events(draw: st.DrawFn) -> events_pb2.Event:
    event = events_pb2.Event(
        event_id=draw(_texts),
        gateway_id=draw(_texts),
        seq=draw(st.integers(min_value=0, max_value=2**64 - 1)),
        event_time_offset_minutes=draw(_ints32),
        type=draw(_ints32),
        action=draw(_ints32),
        biz_step=draw(_ints32),
        disposition=draw(_ints32),
        biz_location=draw(_texts),
        objects=draw(st.lists(_objects, max_size=3)),
        quantities=draw(
            st.lists(st.builds(events_pb2.QuantityElement, gtin=_texts, quantity=_floats, uom=_texts), max_size=3)
        ),
        sensor_reports=draw(st.lists(st.builds(events_pb2.SensorReport, value=_floats), max_size=2)),
    )
    if draw(st.booleans()):
        event.event_time.seconds = draw(st.integers(min_value=-(2**63), max_value=2**63 - 1))
        event.event_time.nanos = draw(_ints32)
    if draw(st.booleans()):
        event.parent.CopyFrom(draw(_objects))
    return event


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(_garbage_events(), st.sampled_from([GATEWAY, "", "x" * 64]))
def test_garbage_fields_never_raise(event: events_pb2.Event, gateway_id: str) -> None:
    reason = validate_event(event, gateway_id)
    assert reason is None or isinstance(reason, str)


@settings(max_examples=300)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    try:
        event = events_pb2.Event.FromString(data)
    except DecodeError:
        return
    reason = validate_event(event, GATEWAY)
    assert reason is None or isinstance(reason, str)
