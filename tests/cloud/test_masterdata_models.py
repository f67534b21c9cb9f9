"""Master data records validate themselves; the hierarchy, duplicate and tier checks; the snapshot's lookups."""

from __future__ import annotations

import math

import pytest

from cloud.masterdata.models import (
    ConditionRange,
    CustomerTier,
    Location,
    MasterData,
    MasterDataError,
    RowRejection,
    Sku,
    check_duplicates,
    check_locations,
    check_tier_references,
)

GTIN = "09501101530003"
SITE = Location("urn:loc:dc1", "DC1", "site", location_type="distribution_center")
STAGING = Location("urn:loc:dc1:staging", "Dock staging", "zone", SITE.location_id, "dock_staging")
DOOR = Location("urn:loc:dc1:door-b", "Door B", "door", STAGING.location_id, "shipping", "strategic")
READ_POINT = Location("urn:rp:dc1:door-b", "Door B portal", "read_point", DOOR.location_id, "portal")
TIERS = {
    "strategic": CustomerTier("strategic", 3.0),
    "standard": CustomerTier("standard", 1.5),
    "basic": CustomerTier("basic", 0.5),
}


def stored(*locations: Location) -> dict[str, Location]:
    return {location.location_id: location for location in locations}


# ---- records -----------------------------------------------------------------------------------


def test_a_valid_sku_keeps_its_fields_and_defaults() -> None:
    sku = Sku(GTIN, "Vaccine", 184.0, condition=ConditionRange(2.0, 8.0), annual_usage_units=10)
    assert (sku.currency, sku.abc_class, sku.lifecycle, sku.customer_tier) == ("EUR", "C", "active", "")
    assert sku.annual_value == 1840.0
    assert sku.condition is not None and sku.condition.describe() == "2..8 °C"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"gtin": "09501101530004"}, "gtin '09501101530004': check digit should be 3"),
        ({"gtin": "9501101530003"}, "gtin '9501101530003': expected 14 digits"),
        ({"gtin": "0950110153000x"}, "expected 14 digits"),
        ({"gtin": "٠٩٥٠١١٠١٥٣٠٠٠٣"}, "expected 14 digits"),  # Arabic-Indic digits are not GS1 digits
        ({"description": ""}, "description: required"),
        ({"description": "a\x00b"}, "description: control character"),
        ({"description": " padded"}, "description: leading or trailing spaces"),
        ({"unit_cost": -1.0}, "unit_cost: expected a number >= 0, got -1"),
        ({"unit_cost": math.nan}, "unit_cost: expected a finite number"),
        ({"unit_cost": True}, "unit_cost: expected a finite number, got True"),
        ({"currency": "eur"}, "currency: expected an ISO 4217 code like 'EUR'"),
        ({"abc_class": "D"}, "abc_class: expected one of A, B, C, got 'D'"),
        ({"lifecycle": "retired"}, "lifecycle: expected one of active, phase_out, obsolete, got 'retired'"),
        ({"customer_tier": "Gold Tier"}, "customer_tier: expected a lower-case word"),
        ({"annual_usage_units": -5}, "annual_usage_units: expected a number >= 0"),
    ],
)
def test_an_invalid_sku_is_refused_with_the_field_and_the_reason(fields: dict[str, object], reason: str) -> None:
    values: dict[str, object] = {"gtin": GTIN, "description": "Vaccine", "unit_cost": 1.0, **fields}
    with pytest.raises(MasterDataError) as caught:
        Sku(**values)  # type: ignore[arg-type]
    assert reason in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("bounds", "reason"),
    [
        ({"temperature_min_c": 8.0, "temperature_max_c": 2.0}, "condition: temperature min 8 is above max 2"),
        ({"humidity_min_pct": 70.0, "humidity_max_pct": 30.0}, "condition: humidity min 70 is above max 30"),
        ({"humidity_max_pct": 120.0}, "humidity_max_pct: expected a number from 0 to 100, got 120"),
        ({"temperature_max_c": 300.0}, "temperature_max_c: expected a number from -100 to 100, got 300"),
        ({}, "condition: no bound set"),
    ],
)
def test_a_condition_range_checks_its_bounds(bounds: dict[str, float], reason: str) -> None:
    with pytest.raises(MasterDataError, match=reason):
        ConditionRange(**bounds)


def test_a_condition_range_with_one_side_open() -> None:
    frozen = ConditionRange(temperature_max_c=-18.0)
    assert frozen.temperature_ok(-25.0) and frozen.temperature_ok(-18.0) and not frozen.temperature_ok(-17.9)
    assert frozen.humidity_ok(99.0)  # unconstrained
    assert ConditionRange(-25.0, -18.0).describe() == "-25..-18 °C"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"level": "aisle"}, "level: expected one of site, zone, door, read_point, got 'aisle'"),
        ({"level": "site", "parent_id": "urn:loc:x"}, "parent_id: a site has no parent"),
        ({"level": "zone", "parent_id": ""}, "parent_id: required for a zone"),
        ({"location_id": "urn:loc:a b"}, "location_id: no spaces allowed"),
        ({"location_id": ""}, "location_id: required"),
        ({"parent_id": "urn:loc:z"}, "parent_id: a location cannot be its own parent"),
        ({"location_type": "Cold Storage"}, "location_type: expected a snake_case word"),
        ({"name": ""}, "name: required"),
    ],
)
def test_an_invalid_location_is_refused(fields: dict[str, str], reason: str) -> None:
    values = {"location_id": "urn:loc:z", "name": "Z", "level": "zone", "parent_id": "urn:loc:dc1", **fields}
    with pytest.raises(MasterDataError, match=reason):
        Location(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "weight", "reason"),
    [
        ("strategic", 0.0, "weight: expected a number > 0, got 0"),
        ("strategic", -1.0, "weight: expected a number > 0"),
        ("strategic", math.inf, "weight: expected a finite number"),
        ("strategic", 5000.0, "weight: expected a number <= 1000"),
        ("", 1.0, "name: required"),
        ("Strategic", 1.0, "name: expected a lower-case word"),
    ],
)
def test_an_invalid_customer_tier_is_refused(name: str, weight: float, reason: str) -> None:
    with pytest.raises(MasterDataError, match=reason):
        CustomerTier(name, weight)


# ---- checks across rows ----------------------------------------------------------------------


def test_locations_may_come_in_any_order_within_a_batch() -> None:
    assert check_locations({}, [READ_POINT, DOOR, STAGING, SITE]) == []


def test_a_location_without_its_parent_is_rejected_and_so_are_its_children() -> None:
    orphan_door = Location("urn:loc:dc1:door-c", "Door C", "door", "urn:loc:dc1:nowhere")
    child = Location("urn:rp:dc1:door-c", "Door C portal", "read_point", orphan_door.location_id)
    rejections = check_locations(stored(SITE), [orphan_door, child, STAGING])
    assert [row.index for row in rejections] == [0, 1]
    assert "parent_id 'urn:loc:dc1:nowhere': no such location" in rejections[0].reason
    assert rejections[1].reason == "parent_id 'urn:loc:dc1:door-c': its ancestor 'urn:loc:dc1:nowhere' is missing"


def test_levels_must_nest() -> None:
    zone_under_door = Location("urn:loc:dc1:inner", "Inner", "zone", DOOR.location_id)
    door_under_door = Location("urn:loc:dc1:door-x", "X", "door", DOOR.location_id)
    read_point_under_zone = Location("urn:rp:dc1:cold", "Cold probe", "read_point", STAGING.location_id)
    rejections = check_locations(stored(SITE, STAGING, DOOR), [zone_under_door, door_under_door, read_point_under_zone])
    assert rejections == [
        RowRejection(0, "parent_id 'urn:loc:dc1:door-b' is a door: a zone must sit under a site"),
        RowRejection(1, "parent_id 'urn:loc:dc1:door-b' is a door: a door must sit under a site or zone"),
    ]


def test_relevelling_a_location_above_its_stored_children_is_rejected() -> None:
    door_as_read_point = Location(DOOR.location_id, "Door B", "read_point", STAGING.location_id)
    rejections = check_locations(stored(SITE, STAGING, DOOR, READ_POINT), [door_as_read_point])
    assert rejections == [
        RowRejection(0, "level read_point: its read_point 'urn:rp:dc1:door-b' would no longer nest"),
    ]


def test_a_cycle_is_impossible() -> None:
    # Two zones naming each other: each one's parent is at its own level, so neither goes in.
    first = Location("urn:loc:a", "A", "zone", "urn:loc:b")
    second = Location("urn:loc:b", "B", "zone", "urn:loc:a")
    assert [row.index for row in check_locations({}, [first, second])] == [0, 1]


def test_duplicates_in_a_batch_keep_the_first() -> None:
    rows = [CustomerTier("basic", 1.0), CustomerTier("standard", 1.5), CustomerTier("basic", 2.0)]
    assert check_duplicates(rows) == [RowRejection(2, "'basic' is already given by row 0")]


def test_an_unknown_tier_is_rejected() -> None:
    rows = [Sku(GTIN, "Vaccine", 1.0, customer_tier="gold"), Sku("05901234123457", "Gel", 1.0, customer_tier="basic")]
    assert check_tier_references(rows, TIERS) == [
        RowRejection(0, "customer_tier 'gold' is not a known tier (known: basic, standard, strategic)")
    ]


# ---- the snapshot ------------------------------------------------------------------------------


def snapshot() -> MasterData:
    return MasterData.of(
        skus=[Sku(GTIN, "Vaccine", 184.0, customer_tier="standard"), Sku("05901234123457", "Gel", 3.0)],
        locations=[SITE, STAGING, DOOR, READ_POINT],
        tiers=TIERS.values(),
    )


def test_ancestors_go_from_the_location_up_to_the_site() -> None:
    data = snapshot()
    assert data.ancestors(READ_POINT.location_id) == [READ_POINT, DOOR, STAGING, SITE]
    assert data.ancestors(SITE.location_id) == [SITE]
    assert data.ancestors("urn:loc:unknown") == []
    assert data.within(READ_POINT.location_id, "dock_staging") == STAGING
    assert data.within(READ_POINT.location_id, "cold_storage") is None
    assert data.children(STAGING.location_id) == [DOOR]


def test_tier_weight_is_one_for_none_or_unknown() -> None:
    data = snapshot()
    assert data.tier_weight("strategic") == 3.0
    assert data.tier_weight("") == 1.0
    assert data.tier_weight("gold") == 1.0


def test_service_weight_is_the_largest_of_the_sku_and_the_location_chain() -> None:
    data = snapshot()
    assert data.service_weight(GTIN, READ_POINT.location_id) == 3.0  # door B serves a strategic customer
    assert data.service_weight(GTIN, STAGING.location_id) == 1.5  # the SKU's own tier
    assert data.service_weight("05901234123457", STAGING.location_id) == 1.0  # no tier anywhere
    assert data.service_weight("00000000000000", "urn:loc:unknown") == 1.0
    basic_only = MasterData.of(skus=[Sku(GTIN, "Vaccine", 1.0, customer_tier="basic")], tiers=TIERS.values())
    assert basic_only.service_weight(GTIN, "") == 0.5  # a named tier counts even below 1.0


def test_a_snapshot_cannot_be_changed_through_its_mappings() -> None:
    source = {GTIN: Sku(GTIN, "Vaccine", 1.0)}
    data = MasterData(skus=source)
    source.clear()
    assert data.sku(GTIN) is not None
    with pytest.raises(TypeError):
        data.skus[GTIN] = Sku(GTIN, "Other", 2.0)  # type: ignore[index]
    assert MasterData.empty().sku(GTIN) is None
    assert MasterData.empty().location("x") is None
