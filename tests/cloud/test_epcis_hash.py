"""The CBV 2.0 EPCIS Event Hash ID: the reference vectors, the normalisation rules one by one, and the
EPC URI → GS1 Digital Link conversion (checked against epcpy's element strings)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from epcpy.utils.parsers import epc_pure_identity_to_gs1_element_string

from cloud.epcis.digital_link import canonical_digital_link
from cloud.epcis.event_hash import context_namespaces, event_hash_id, prehash_string
from cloud.errors import ValidationError

VECTORS_DIR = Path(__file__).resolve().parent / "epcis_vectors"
VECTOR_NAMES = sorted(path.stem for path in VECTORS_DIR.glob("*.jsonld"))


def load_vector(name: str) -> tuple[list[dict[str, Any]], dict[str, str], list[str], list[str]]:
    document = json.loads((VECTORS_DIR / f"{name}.jsonld").read_text())
    prehashes = (VECTORS_DIR / f"{name}.prehashes").read_text().split()
    hashes = (VECTORS_DIR / f"{name}.hashes").read_text().split()
    return document["epcisBody"]["eventList"], context_namespaces(document["@context"]), prehashes, hashes


def test_the_vectors_are_there() -> None:
    assert VECTOR_NAMES == [
        "ReferenceEventHashAlgorithm",
        "ReferenceEventHashAlgorithm2",
        "ReferenceEventHashAlgorithm3",
        "epcisDocWithSingleEvent",
    ]


@pytest.mark.parametrize("name", VECTOR_NAMES)
def test_reference_vector_prehash_and_hash(name: str) -> None:
    events, namespaces, prehashes, hashes = load_vector(name)
    assert len(events) == len(prehashes) == len(hashes)
    for event, prehash, expected in zip(events, prehashes, hashes, strict=True):
        assert prehash_string(event, namespaces) == prehash
        assert event_hash_id(event, namespaces) == expected


def test_standards_section_6_4_vectors() -> None:
    """The two hashes ../shared/reference/standards.md §6.4 quotes, computed from the documents."""
    single, namespaces, _, _ = load_vector("epcisDocWithSingleEvent")
    assert (
        event_hash_id(single[0], namespaces)
        == "ni:///sha-256;ffa491b16867e34a7791a8d5389d826afc24e63a121026b6a4004ace38631b4b?ver=CBV2.0"
    )
    reference, namespaces, _, _ = load_vector("ReferenceEventHashAlgorithm")
    assert (
        event_hash_id(reference[0], namespaces)
        == "ni:///sha-256;6ae96341e0acc6d7a261364751f60e68278a81cdf51da0abb6b4e617014e39d7?ver=CBV2.0"
    )


def single_event() -> tuple[dict[str, Any], dict[str, str]]:
    events, namespaces, _, _ = load_vector("epcisDocWithSingleEvent")
    return events[0], namespaces


def test_same_event_in_other_serialisations_hashes_the_same() -> None:
    event, namespaces = single_event()
    expected = event_hash_id(event, namespaces)
    variant = dict(reversed(list(copy.deepcopy(event).items())))  # other key order
    variant["epcList"] = list(reversed(variant["epcList"]))  # other list order
    variant["eventTime"] = "2022-02-17T02:33:31.116Z"  # same instant in UTC
    variant["bizStep"] = "urn:epcglobal:cbv:bizstep:shipping"  # CBV 1.x URN
    variant["disposition"] = "cbv:Disp-in_transit"  # CURIE
    variant["readPoint"] = {"id": "https://example.com/path/414/0614141073467/254/1234?x=1"}  # DL, other domain
    variant["epcList"][0] = "https://id.gs1.org/01/10614141073464/21/2018"  # DL instead of EPC URI
    variant["eventID"] = "urn:uuid:0f6d3c5e-0000-4000-8000-000000000000"  # not hashed
    variant["recordTime"] = "2030-01-01T00:00:00Z"  # not hashed
    variant["bizTransactionList"] = [{"type": "po", "bizTransaction": " http://transaction.acme.com/po/12345678 "}]
    assert event_hash_id(variant, namespaces) == expected


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("eventTime", "2022-02-16T20:33:31.117-06:00"),
        ("action", "ADD"),
        ("bizStep", "receiving"),
        ("readPoint", {"id": "urn:epc:id:sgln:0614141.07346.1235"}),
        ("epcList", ["urn:epc:id:sgtin:0614141.107346.2017"]),
        ("example:note", "added"),
    ],
)
def test_any_change_of_content_changes_the_hash(field: str, value: Any) -> None:
    event, namespaces = single_event()
    changed = {**event, field: value}
    assert event_hash_id(changed, {**namespaces, "example": "https://ns.example.com/"}) != event_hash_id(
        event, namespaces
    )


@pytest.mark.parametrize(
    ("written", "hashed"),
    [
        ("2020-03-04T11:00:30+01:00", "2020-03-04T10:00:30.000Z"),  # no decimals: .000
        ("2020-03-04T11:00:30.1+01:00", "2020-03-04T10:00:30.100Z"),
        ("2023-01-18T11:04:03.1415Z", "2023-01-18T11:04:03.142Z"),  # 4th decimal 5: round half up
        ("2023-01-18T11:04:03.1414999Z", "2023-01-18T11:04:03.141Z"),
        ("2023-12-31T23:59:59.9996Z", "2024-01-01T00:00:00.000Z"),  # the round-up carries into the year
        ("2023-01-01T00:30:00.000+05:45", "2022-12-31T18:45:00.000Z"),
    ],
)
def test_timestamps_are_utc_with_milliseconds(written: str, hashed: str) -> None:
    event = {"type": "ObjectEvent", "eventTime": written, "eventTimeZoneOffset": "+01:00", "action": "OBSERVE"}
    assert prehash_string(event).startswith(f"eventType=ObjectEventeventTime={hashed}eventTimeZoneOffset=")


def test_quantities_lose_trailing_zeros_and_are_sorted() -> None:
    event = {
        "type": "ObjectEvent",
        "eventTime": "2020-01-01T00:00:00Z",
        "eventTimeZoneOffset": "+00:00",
        "action": "OBSERVE",
        "quantityList": [
            {"epcClass": "urn:epc:class:lgtin:4054739.099914.20160711", "quantity": 600.0, "uom": "KGM"},
            {"epcClass": "urn:epc:class:lgtin:4012345.099988.2014-02-10", "quantity": 2030, "uom": "KGM"},
            {"epcClass": "urn:epc:idpat:sgtin:4012345.099988.*", "quantity": 2.50},
        ],
    }
    assert prehash_string(event).endswith(
        "quantityList"  # by code point: "/" sorts before "q"
        "quantityElementepcClass=https://id.gs1.org/01/04012345999884/10/2014-02-10quantity=2030uom=KGM"
        "quantityElementepcClass=https://id.gs1.org/01/04012345999884quantity=2.5"
        "quantityElementepcClass=https://id.gs1.org/01/04054739999148/10/20160711quantity=600uom=KGM"
        "action=OBSERVE"
    )


def test_aggregation_parent_and_children_in_canonical_order() -> None:
    """Check digits as epcpy computes them for the same EPC URIs."""
    event = {
        "type": "AggregationEvent",
        "eventTime": "2019-10-21T11:58:56.591+02:00",
        "eventTimeZoneOffset": "+02:00",
        "parentID": "urn:epc:id:sscc:4047023.0111111122",
        "childEPCs": ["urn:epc:id:sgtin:4047023.077777.25", "urn:epc:id:sgtin:4047023.077777.24"],
        "action": "ADD",
        "bizStep": "packing",
        "disposition": "in_progress",
        "bizLocation": {"id": "urn:epc:id:sgln:4047023.00000.0"},
    }
    assert prehash_string(event) == (
        "eventType=AggregationEventeventTime=2019-10-21T09:58:56.591ZeventTimeZoneOffset=+02:00"
        "parentID=https://id.gs1.org/00/040470231111111229"
        "childEPCsepc=https://id.gs1.org/01/04047023777775/21/24epc=https://id.gs1.org/01/04047023777775/21/25"
        "action=ADDbizStep=https://ref.gs1.org/cbv/BizStep-packing"
        "disposition=https://ref.gs1.org/cbv/Disp-in_progress"
        "bizLocationid=https://id.gs1.org/414/4047023000002"
    )


def test_sensor_reports_expand_the_measurement_type_and_sort() -> None:
    event = {
        "type": "ObjectEvent",
        "eventTime": "2025-01-31T13:00:00.000+01:00",
        "eventTimeZoneOffset": "+01:00",
        "epcList": [],
        "action": "OBSERVE",
        "bizStep": "sensor_reporting",
        "sensorElementList": [
            {
                "sensorMetadata": {"time": "2025-01-31T13:00:00.000+01:00", "deviceID": "urn:tallyport:device:gw:p1"},
                "sensorReport": [
                    {"type": "Temperature", "value": 4.0, "uom": "CEL"},
                    {"type": "RelativeHumidity", "value": 61.5, "uom": "P1"},
                ],
            }
        ],
    }
    assert prehash_string(event).endswith(
        "action=OBSERVEbizStep=https://ref.gs1.org/cbv/BizStep-sensor_reporting"
        "sensorElementsensorMetadatatime=2025-01-31T12:00:00.000ZdeviceID=urn:tallyport:device:gw:p1"
        "sensorReporttype=https://ref.gs1.org/voc/RelativeHumidityvalue=61.5uom=P1"
        "sensorReporttype=https://ref.gs1.org/voc/Temperaturevalue=4uom=CEL"
    )


def test_extensions_use_the_context_namespace_and_come_last() -> None:
    namespaces = context_namespaces(["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld", {"t": "urn:t:"}])
    event = {
        "t:seq": 7,
        "t:eventId": "urn:uuid:1",
        "type": "ObjectEvent",
        "eventTime": "2025-01-31T12:00:00Z",
        "eventTimeZoneOffset": "+00:00",
        "action": "OBSERVE",
        "epcList": [],
    }
    assert prehash_string(event, namespaces) == (
        "eventType=ObjectEventeventTime=2025-01-31T12:00:00.000ZeventTimeZoneOffset=+00:00"
        "action=OBSERVE{urn:t:}eventId=urn:uuid:1{urn:t:}seq=7"
    )


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"type": "Thing"}, "type 'Thing' is not an EPCIS event type"),
        ({"type": "ObjectEvent", "eventTime": "2025-01-31 12:00"}, "eventTime: '2025-01-31 12:00' is not"),
        ({"type": "ObjectEvent", "eventTime": "2025-01-31T12:00:00"}, "eventTime: '2025-01-31T12:00:00' is not"),
        ({"type": "ObjectEvent", "epcList": "urn:epc:id:sscc:0614141.1234567890"}, "epcList: expected a list"),
        ({"type": "ObjectEvent", "action": {"x": 1}}, "action: expected a string or a number, got dict"),
        ({"type": "ObjectEvent", "whatever": 1}, "'whatever' is neither an EPCIS event field"),
        ({"type": "ObjectEvent", "quantityList": [{"quantity": float("nan")}]}, "quantityList[0].quantity: nan"),
    ],
)
def test_unhashable_events_are_refused_with_where_and_why(event: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as raised:
        prehash_string(event)
    assert message in str(raised.value)


# --- EPC URI / Digital Link → canonical Digital Link ---------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "canonical"),
    [
        ("urn:epc:id:sgtin:0614141.812345.6789", "https://id.gs1.org/01/80614141123458/21/6789"),
        ("urn:epc:id:sgtin:0614141.812345.A%2FB", "https://id.gs1.org/01/80614141123458/21/A%2FB"),
        ("urn:epc:id:sgtin:0614141.812345.a(1)", "https://id.gs1.org/01/80614141123458/21/a%281%29"),
        ("urn:epc:id:sscc:0614141.1234567890", "https://id.gs1.org/00/106141412345678908"),
        ("urn:epc:id:sgln:0614141.12345.400", "https://id.gs1.org/414/0614141123452/254/400"),
        ("urn:epc:id:sgln:0614141.12345.0", "https://id.gs1.org/414/0614141123452"),
        ("urn:epc:id:grai:0614141.12345.400", "https://id.gs1.org/8003/00614141123452400"),
        ("urn:epc:id:giai:4000001.111", "https://id.gs1.org/8004/4000001111"),
        ("urn:epc:id:gdti:4012345.11111.123", "https://id.gs1.org/253/4012345111118123"),
        ("urn:epc:id:pgln:4012345.00000", "https://id.gs1.org/417/4012345000009"),
        ("urn:epc:class:lgtin:4012345.012345.998877", "https://id.gs1.org/01/04012345123456/10/998877"),
        ("urn:epc:idpat:sgtin:4012345.012345.*", "https://id.gs1.org/01/04012345123456"),
        ("https://id.gs1.org/01/09501101530003/21/1001", "https://id.gs1.org/01/09501101530003/21/1001"),
        (
            "https://example.com/shop/01/9501101530003/10/L1/21/S1?17=260101",
            "https://id.gs1.org/01/09501101530003/21/S1",
        ),
        ("http://example.com/01/09501101530003/22/V2/10/LOT-9", "https://id.gs1.org/01/09501101530003/10/LOT-9"),
        ("https://example.org/00/106141412345678908#top", "https://id.gs1.org/00/106141412345678908"),
    ],
)
def test_canonical_digital_link(uri: str, canonical: str) -> None:
    assert canonical_digital_link(uri) == canonical


@pytest.mark.parametrize(
    "uri",
    [
        "urn:uuid:0f6d3c5e-0000-4000-8000-000000000000",
        "urn:tallyport:loc:dc1:dock-4",
        "urn:epc:id:sgtin:0614141.81234.6789",  # 12 digits, not 13
        "urn:epc:id:sscc:0614141.123456789",
        "urn:epc:id:sgtin:0614141.812345",
        "urn:epc:raw:96.x3074257BF7194E4000001A85",
        "https://example.com/products/123",
        "https://id.gs1.org/00/12345",  # SSCC must be 18 digits
        "https://id.gs1.org/01/09501101530003/99/X",  # 99 qualifies nothing
        "http://transaction.acme.com/po/12345678",
        "",
    ],
)
def test_non_gs1_uris_are_left_alone(uri: str) -> None:
    assert canonical_digital_link(uri) is None


# (AI) → Digital Link path, for comparing with epcpy's element strings.
def element_string_to_digital_link(element_string: str) -> str:
    pairs = [part.split(")") for part in element_string.split("(")[1:]]
    return "https://id.gs1.org" + "".join(f"/{ai}/{value}" for ai, value in pairs)


@pytest.mark.parametrize(
    "uri",
    [
        "urn:epc:id:sgtin:0614141.812345.6789",
        "urn:epc:id:sgtin:9501101.053000.1001",
        "urn:epc:id:sgtin:061414123456.0.42",
        "urn:epc:id:sscc:0614141.1234567890",
        "urn:epc:id:sscc:061414123456.12345",
        "urn:epc:id:sgln:0614141.12345.400",
        "urn:epc:id:grai:0614141.12345.400",
        "urn:epc:id:giai:0614141.12345400",
    ],
)
def test_epc_uris_agree_with_epcpy(uri: str) -> None:
    """epcpy (a dev dependency, the EPC decoder's oracle) gives the GS1 element string of each EPC URI."""
    element_string = epc_pure_identity_to_gs1_element_string(uri)
    assert canonical_digital_link(uri) == element_string_to_digital_link(element_string)
