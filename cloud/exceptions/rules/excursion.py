"""Condition excursion: temperature or humidity outside a SKU's range, for longer than the rule's
`tolerance_s`, at a place where that SKU is held.

Readings come from ingested SENSOR events (kept per location by the engine). A sensor covers the
stock at its own location and at every location under it (a probe in the cold-room zone covers
the racks inside), and the stock at the location above it (a probe on a read point inside the
zone). For each (sensor, measurement) the readings are walked newest first: the excursion
started at the earliest reading of the newest unbroken run of out-of-range readings, and lasts
until now. Readings are timed by the sensor (SensorReport.time), not by arrival, so a backlog
delivered after an outage is judged by when it was measured; the engine puts those times on the
cloud's clock (the gateway's measured clock offset) when it stores them, as the dwell rule does
with its placements, so a gateway whose clock is skewed gets excursions neither early nor
late. A reading stands for at most `reading_hold_s` (default 600 s, two heartbeats of the edge's
deadband): a sensor that went silent stops lengthening the excursion (a silent feed is the
stale_feed rule's job).

Subject: measurement, GTIN and stock location; severity the entry's, one step higher beyond
three times the tolerance. Quantity at stake: the SKU's on-hand there.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from cloud.exceptions.models import Condition
from cloud.exceptions.rules.base import MICROS_PER_SECOND, ReadModel, SensorReading, more_severe, place_name, seconds
from cloud.masterdata.models import ConditionRange, MasterData

__all__ = ["KIND", "READING_HOLD_S_DEFAULT", "TOLERANCE_S_DEFAULT", "evaluate", "excursion_start"]

KIND = "excursion"
TOLERANCE_S_DEFAULT = 300.0
READING_HOLD_S_DEFAULT = 600.0
_UNITS = {"temperature": "°C", "humidity": "%RH"}


def evaluate(model: ReadModel) -> list[Condition]:
    """Active conditions: every SKU with stock at a covered place, out of range past its tolerance."""
    # Each series is ordered once (the store returns them ordered, so this is a linear pass), kept
    # per location, and judged once per condition range: the cost grows with readings + rows, not
    # with rows x readings.
    by_location: dict[str, dict[tuple[str, str], list[SensorReading]]] = defaultdict(lambda: defaultdict(list))
    for reading in model.readings:
        by_location[reading.location][(reading.measurement, reading.device_id)].append(reading)
    series: dict[str, list[tuple[str, str, list[SensorReading]]]] = {}
    for location, of_location in by_location.items():
        for readings in of_location.values():
            readings.sort(key=lambda reading: reading.reading_time_us)
        series[location] = [
            (measurement, device, of_location[measurement, device]) for measurement, device in sorted(of_location)
        ]
    judged: dict[tuple[str, str, str, ConditionRange], tuple[int, SensorReading] | None] = {}
    worst: dict[str, Condition] = {}
    for row in model.on_hand:
        sku = model.master.sku(row.gtin)
        if sku is None or sku.condition is None or row.quantity <= 0:
            continue
        settings = model.rules.settings_for(KIND, model.master, gtin=row.gtin, location=row.biz_location)
        if settings is None:
            continue
        tolerance_s = settings.number("tolerance_s", TOLERANCE_S_DEFAULT)
        hold_us = round(settings.number("reading_hold_s", READING_HOLD_S_DEFAULT) * MICROS_PER_SECOND)
        for location in sorted(_covering_locations(model.master, row.biz_location) & series.keys()):
            for measurement, device_id, readings in series[location]:
                memo_key = (location, measurement, device_id, sku.condition)
                if memo_key not in judged:
                    judged[memo_key] = _newest_run(readings, sku.condition, measurement)
                found = judged[memo_key]
                if found is None:
                    continue
                start_us, latest = found
                end_us = min(model.now_us, latest.reading_time_us + hold_us)
                lasted_s = seconds(end_us - start_us)
                if lasted_s < tolerance_s:
                    continue
                severity = settings.policy.severity
                if lasted_s >= 3 * tolerance_s and tolerance_s > 0:
                    severity = more_severe(severity)
                subject = f"{measurement}:{row.gtin}@{row.biz_location}"
                condition = Condition(
                    rule=KIND,
                    subject=subject,
                    active=True,
                    policy=settings.policy,
                    severity=severity,
                    quantity_at_stake=row.quantity,
                    gtin=row.gtin,
                    location=row.biz_location,
                    details=f"{measurement} {latest.value:g} {_UNITS.get(measurement, '')} at "
                    f"{place_name(model.master, location)} (sensor {device_id}) outside {sku.condition.describe()} "
                    f"for {sku.description} for {lasted_s:.0f} s (tolerance {tolerance_s:g} s); "
                    f"{row.quantity:g} on hand at {place_name(model.master, row.biz_location)}",
                    observed_at_us=start_us,
                )
                previous = worst.get(subject)
                if previous is None or condition.observed_at_us < previous.observed_at_us:
                    worst[subject] = condition  # several sensors: report the longest excursion
    return [worst[subject] for subject in sorted(worst)]


def excursion_start(
    readings: Sequence[SensorReading], condition: ConditionRange, measurement: str
) -> tuple[int, SensorReading] | None:
    """(start of the newest out-of-range run, newest reading) if the newest reading is out of range."""
    return _newest_run(sorted(readings, key=lambda reading: reading.reading_time_us), condition, measurement)


def _newest_run(
    ordered: Sequence[SensorReading], condition: ConditionRange, measurement: str
) -> tuple[int, SensorReading] | None:
    """`excursion_start` of readings already ordered oldest first: walks back from the newest only."""
    if not ordered or _in_range(ordered[-1], condition, measurement):
        return None
    start_us = ordered[-1].reading_time_us
    for index in range(len(ordered) - 2, -1, -1):
        reading = ordered[index]
        if _in_range(reading, condition, measurement):
            break
        start_us = reading.reading_time_us
    return start_us, ordered[-1]


def _in_range(reading: SensorReading, condition: ConditionRange, measurement: str) -> bool:
    if measurement == "temperature":
        return condition.temperature_ok(reading.value)
    if measurement == "humidity":
        return condition.humidity_ok(reading.value)
    return True


def _covering_locations(master: MasterData, stock_location: str) -> set[str]:
    """Sensor locations that cover stock at `stock_location`: itself, its ancestors, and its children."""
    covering = {stock_location}
    covering.update(place.location_id for place in master.ancestors(stock_location))
    covering.update(child.location_id for child in master.children(stock_location))
    return covering
