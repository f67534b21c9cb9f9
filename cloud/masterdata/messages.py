"""Master data records to and from their `tallyport.v1.masterdata` messages.

From a message: a record, or `MasterDataError` with the one-line reason (an unknown enum number
included). The proto3 defaults stand for the documented defaults: ABC_CLASS_UNSPECIFIED is C,
LIFECYCLE_UNSPECIFIED is active, an empty currency is EUR; LOCATION_LEVEL_UNSPECIFIED is an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from tallyport.v1 import masterdata_pb2

from cloud.masterdata.models import (
    AbcClass,
    ConditionRange,
    CustomerTier,
    Level,
    Lifecycle,
    Location,
    MasterDataError,
    Sku,
)

__all__ = [
    "location_from_message",
    "location_message",
    "sku_from_message",
    "sku_message",
    "tier_from_message",
    "tier_message",
]

_ABC_CLASSES: Final[Mapping[int, AbcClass]] = {
    masterdata_pb2.ABC_CLASS_UNSPECIFIED: "C",
    masterdata_pb2.ABC_CLASS_A: "A",
    masterdata_pb2.ABC_CLASS_B: "B",
    masterdata_pb2.ABC_CLASS_C: "C",
}
_LIFECYCLES: Final[Mapping[int, Lifecycle]] = {
    masterdata_pb2.LIFECYCLE_UNSPECIFIED: "active",
    masterdata_pb2.LIFECYCLE_ACTIVE: "active",
    masterdata_pb2.LIFECYCLE_PHASE_OUT: "phase_out",
    masterdata_pb2.LIFECYCLE_OBSOLETE: "obsolete",
}
_LEVELS: Final[Mapping[int, Level]] = {
    masterdata_pb2.LOCATION_LEVEL_SITE: "site",
    masterdata_pb2.LOCATION_LEVEL_ZONE: "zone",
    masterdata_pb2.LOCATION_LEVEL_DOOR: "door",
    masterdata_pb2.LOCATION_LEVEL_READ_POINT: "read_point",
}
_ABC_NUMBERS: Final = {
    "A": masterdata_pb2.ABC_CLASS_A,
    "B": masterdata_pb2.ABC_CLASS_B,
    "C": masterdata_pb2.ABC_CLASS_C,
}
_LIFECYCLE_NUMBERS: Final = {
    "active": masterdata_pb2.LIFECYCLE_ACTIVE,
    "phase_out": masterdata_pb2.LIFECYCLE_PHASE_OUT,
    "obsolete": masterdata_pb2.LIFECYCLE_OBSOLETE,
}
_LEVEL_NUMBERS: Final = {
    "site": masterdata_pb2.LOCATION_LEVEL_SITE,
    "zone": masterdata_pb2.LOCATION_LEVEL_ZONE,
    "door": masterdata_pb2.LOCATION_LEVEL_DOOR,
    "read_point": masterdata_pb2.LOCATION_LEVEL_READ_POINT,
}


def sku_from_message(message: masterdata_pb2.Sku) -> Sku:
    """The SKU a message describes; MasterDataError if it is invalid."""
    abc_class = _ABC_CLASSES.get(message.abc_class)
    if abc_class is None:
        raise MasterDataError(f"abc_class: unknown value {message.abc_class}")
    lifecycle = _LIFECYCLES.get(message.lifecycle)
    if lifecycle is None:
        raise MasterDataError(f"lifecycle: unknown value {message.lifecycle}")
    return Sku(
        gtin=message.gtin,
        description=message.description,
        unit_cost=message.unit_cost,
        currency=message.currency or "EUR",
        condition=_condition(message.condition) if message.HasField("condition") else None,
        abc_class=abc_class,
        lifecycle=lifecycle,
        customer_tier=message.customer_tier,
        annual_usage_units=message.annual_usage_units,
    )


def _condition(message: masterdata_pb2.ConditionRange) -> ConditionRange:
    return ConditionRange(
        temperature_min_c=message.temperature_min_c if message.HasField("temperature_min_c") else None,
        temperature_max_c=message.temperature_max_c if message.HasField("temperature_max_c") else None,
        humidity_min_pct=message.humidity_min_pct if message.HasField("humidity_min_pct") else None,
        humidity_max_pct=message.humidity_max_pct if message.HasField("humidity_max_pct") else None,
    )


def sku_message(sku: Sku) -> masterdata_pb2.Sku:
    """The message of a SKU."""
    message = masterdata_pb2.Sku(
        gtin=sku.gtin,
        description=sku.description,
        unit_cost=sku.unit_cost,
        currency=sku.currency,
        abc_class=_ABC_NUMBERS[sku.abc_class],
        lifecycle=_LIFECYCLE_NUMBERS[sku.lifecycle],
        customer_tier=sku.customer_tier,
        annual_usage_units=sku.annual_usage_units,
    )
    condition = sku.condition
    if condition is not None:
        message.condition.SetInParent()  # present even if (impossibly) no bound is set
        for name in ("temperature_min_c", "temperature_max_c", "humidity_min_pct", "humidity_max_pct"):
            value = getattr(condition, name)
            if value is not None:
                setattr(message.condition, name, value)
    return message


def location_from_message(message: masterdata_pb2.Location) -> Location:
    """The location a message describes; MasterDataError if it is invalid."""
    level = _LEVELS.get(message.level)
    if level is None:
        if message.level == masterdata_pb2.LOCATION_LEVEL_UNSPECIFIED:
            raise MasterDataError("level: required: site, zone, door or read_point")
        raise MasterDataError(f"level: unknown value {message.level}")
    return Location(
        location_id=message.location_id,
        name=message.name,
        level=level,
        parent_id=message.parent_id,
        location_type=message.location_type,
        customer_tier=message.customer_tier,
    )


def location_message(location: Location) -> masterdata_pb2.Location:
    """The message of a location."""
    return masterdata_pb2.Location(
        location_id=location.location_id,
        name=location.name,
        level=_LEVEL_NUMBERS[location.level],
        parent_id=location.parent_id,
        location_type=location.location_type,
        customer_tier=location.customer_tier,
    )


def tier_from_message(message: masterdata_pb2.CustomerTier) -> CustomerTier:
    """The customer tier a message describes; MasterDataError if it is invalid."""
    return CustomerTier(name=message.name, weight=message.weight, description=message.description)


def tier_message(tier: CustomerTier) -> masterdata_pb2.CustomerTier:
    """The message of a customer tier."""
    return masterdata_pb2.CustomerTier(name=tier.name, weight=tier.weight, description=tier.description)
