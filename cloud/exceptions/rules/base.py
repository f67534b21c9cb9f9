"""What the rules read: one immutable read model per evaluation, and small helpers they share.

A rule is a pure function of a `ReadModel` (state + master data + rule book + now) to the
conditions it finds; the engine loads the model from the store and turns conditions into
exceptions. Keeping rules free of I/O is what lets the tests drive every rule by hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cloud.exceptions.config import RuleBook
from cloud.exceptions.models import SEVERITIES, Severity
from cloud.masterdata.models import MasterData
from cloud.store.records import GatewayRecord, OnHandRecord, PositionRecord

__all__ = [
    "GatewayAlarm",
    "ReadModel",
    "SensorReading",
    "more_severe",
    "place_name",
    "seconds",
]

MICROS_PER_SECOND = 1_000_000


@dataclass(frozen=True, slots=True)
class SensorReading:
    """One climate reading at a location, normalised: temperature in °C, humidity in %RH."""

    location: str  # the event's biz_location (else its read point)
    measurement: str  # "temperature" or "humidity"
    device_id: str
    reading_time_us: int  # when the sensor measured it (SensorReport.time, else the event time)
    value: float


@dataclass(frozen=True, slots=True)
class GatewayAlarm:
    """A row of `gateway_alarms`, which the uplink fills from what gateways report."""

    gateway_id: str
    code: str
    severity: str
    message: str
    raised_at_us: int
    updated_at_us: int
    active: bool


@dataclass(frozen=True, slots=True)
class ReadModel:
    """Everything a state rule may look at, as of `now_us`."""

    now_us: int
    master: MasterData
    rules: RuleBook
    on_hand: Sequence[OnHandRecord] = ()
    positions: Sequence[PositionRecord] = ()  # present, not in transit, at a place a dwell rule covers
    gateways: Sequence[GatewayRecord] = ()
    readings: Sequence[SensorReading] = ()
    alarms: Sequence[GatewayAlarm] = field(default=())
    # Per item of `positions`: (place, since when it has stood there), as the engine tracked it.
    placements: Mapping[str, tuple[str, int]] = field(default_factory=dict)
    # Per gateway: cloud time minus gateway time, as measured on its uplink (0 when unknown).
    clock_offsets_us: Mapping[str, int] = field(default_factory=dict)

    def cloud_time_us(self, gateway_id: str, gateway_time_us: int) -> int:
        """A time stamped by a gateway's clock, on the cloud's clock."""
        return gateway_time_us + self.clock_offsets_us.get(gateway_id, 0)


def more_severe(severity: Severity, steps: int = 1) -> Severity:
    """`steps` severities up, capped at critical."""
    index = min(SEVERITIES.index(severity) + steps, len(SEVERITIES) - 1)
    return SEVERITIES[index]


def seconds(micros: int) -> float:
    return micros / MICROS_PER_SECOND


def place_name(master: MasterData, location_id: str) -> str:
    """A location's name from the master, else its id."""
    location = master.location(location_id)
    return location.name if location is not None else location_id
