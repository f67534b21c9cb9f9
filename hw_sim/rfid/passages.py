"""Seeded dock-door passages: pallets (one SSCC tag + N SGTIN case tags) through door A or B, in or out.

Pure and replayable: everything random comes from one `random.Random(seed)`. Physical model, per passage:
- The load crosses the door in `transit_ms`; every tag passes the outside read zone then the inside one
  (inbound) or the reverse (outbound), each tag a little ahead or behind the others (`tag_spread_ms`).
- In its zone a tag is read `reads_per_zone` times around the moment it is closest to the antennas, with an
  RSSI that falls off on both sides of that moment (a parabola in dB plus noise). Each tag has its own
  strength (`peak_rssi_dbm`), the same at both groups give or take `zone_peak_sd_db`. The other antenna
  group hears it too, weaker by `spill_penalty_db`: the antennas of one door overlap.
- Each read is dropped with `read_drop_probability` (RFID streams lose ~30 %, standards.md §5.1).
- A `cross_read_tag_fraction` of the tags is also heard by the neighbouring door, its peak weaker by
  `cross_read_penalty_db` than the same tag's peak at its own door (reflections off the trailer and the
  dock leveller); with 30 % of the reads lost, the strongest read at the own door is sometimes missing.
- With `gpi`, the two photo-eyes break in the order of travel (outside first when inbound) and clear again;
  the first eye sometimes clears before the second breaks (a short load between widely spaced eyes).
Same-door passages are at least `door_gap_ms_min` apart (a forklift has to come back); passages at
different doors overlap freely.

This module imports nothing from `edge` (hw_sim speaks wire formats, not our pipeline): its reads are its own
small types, and the EPCs are encoded here from the TDS layout, independently of the decoder under test.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

__all__ = [
    "DoorLayout",
    "Passage",
    "PassageRun",
    "PassageScenario",
    "SimGpiEdge",
    "SimTagRead",
    "encode_sgtin96",
    "encode_sscc96",
    "generate_passages",
]

Direction = Literal["inbound", "outbound"]

# TDS partition 5: a 7-digit GS1 Company Prefix in 24 bits; SGTIN item reference (6 digits) in 20 bits,
# SSCC serial reference (10 digits) in 34 bits. One partition is enough to make realistic tags.
_PARTITION_7_DIGIT_PREFIX = 5
_PREFIX_BITS = 24
_SGTIN_ITEM_BITS = 20
_SGTIN_SERIAL_BITS = 38
_SSCC_SERIAL_REFERENCE_BITS = 34
_SSCC_UNALLOCATED_BITS = 24


def _pack(fields: list[tuple[int, int]]) -> str:
    value = 0
    total = 0
    for width, field_value in fields:
        if not 0 <= field_value < 1 << width:
            raise ValueError(f"{field_value} does not fit in {width} bits")
        value = (value << width) | field_value
        total += width
    assert total == 96, "a 96-bit scheme"
    return f"{value:024X}"


def encode_sgtin96(company_prefix: int, item_reference: int, serial: int, filter_value: int = 2) -> str:
    """SGTIN-96 hex for a 7-digit company prefix and 6-digit indicator + item reference (filter 2: case)."""
    return _pack(
        [
            (8, 0x30),
            (3, filter_value),
            (3, _PARTITION_7_DIGIT_PREFIX),
            (_PREFIX_BITS, company_prefix),
            (_SGTIN_ITEM_BITS, item_reference),
            (_SGTIN_SERIAL_BITS, serial),
        ]
    )


def encode_sscc96(company_prefix: int, serial_reference: int, filter_value: int = 6) -> str:
    """SSCC-96 hex for a 7-digit company prefix and 10-digit extension + serial reference (filter 6: pallet)."""
    return _pack(
        [
            (8, 0x31),
            (3, filter_value),
            (3, _PARTITION_7_DIGIT_PREFIX),
            (_PREFIX_BITS, company_prefix),
            (_SSCC_SERIAL_REFERENCE_BITS, serial_reference),
            (_SSCC_UNALLOCATED_BITS, 0),
        ]
    )


@dataclass(frozen=True)
class DoorLayout:
    """One simulated door: its reader, antenna groups and photo-eye pins."""

    name: str
    reader: str
    outside_antennas: tuple[int, ...] = (1, 2)
    inside_antennas: tuple[int, ...] = (3, 4)
    photo_eye_outside_pin: int = 1
    photo_eye_inside_pin: int = 2


def _two_doors() -> tuple[DoorLayout, ...]:
    return (DoorLayout("door-a", "reader-a"), DoorLayout("door-b", "reader-b"))


@dataclass(frozen=True)
class PassageScenario:
    """What to simulate. Times in milliseconds, RSSI in dBm, probabilities in 0..1."""

    seed: int = 1
    passages: int = 500
    doors: tuple[DoorLayout, ...] = field(default_factory=_two_doors)
    start: datetime = datetime(2025, 3, 3, 6, 0, tzinfo=UTC)
    cases_min: int = 1
    cases_max: int = 12
    transit_ms: tuple[int, int] = (1500, 4000)
    tag_spread_ms: int = 150
    start_gap_ms: tuple[int, int] = (0, 4000)  # between consecutive passage starts (any door)
    door_gap_ms_min: int = 3000  # between the end of one passage and the start of the next at that door
    reads_per_zone: tuple[int, int] = (3, 8)
    peak_rssi_dbm: tuple[float, float] = (-62.0, -45.0)  # a tag's strength, closest to an antenna group
    zone_peak_sd_db: float = 2.0  # how much that peak differs between the two groups
    zone_falloff_db: float = 12.0  # RSSI lost at the edge of a zone
    rssi_noise_db: float = 1.5
    spill_reads: tuple[int, int] = (0, 2)
    spill_penalty_db: tuple[float, float] = (8.0, 15.0)
    read_drop_probability: float = 0.3
    cross_read_tag_fraction: float = 0.25
    cross_read_reads: tuple[int, int] = (1, 4)
    cross_read_penalty_db: tuple[float, float] = (8.0, 20.0)
    gpi: bool = False

    def __post_init__(self) -> None:
        if len(self.doors) < 2:
            raise ValueError("cross-reads need at least two doors")
        if not 0.0 <= self.read_drop_probability < 1.0 or not 0.0 <= self.cross_read_tag_fraction <= 1.0:
            raise ValueError("probabilities are in 0..1 (a drop probability of 1 would read nothing)")
        if not 1 <= self.cases_min <= self.cases_max:
            raise ValueError("need 1 <= cases_min <= cases_max")


@dataclass(frozen=True)
class SimTagRead:
    """One tag report as a fixed reader would send it, tagged with where it came from (ground truth)."""

    reader: str
    antenna: int
    epc_hex: str
    seen_at: datetime
    peak_rssi_dbm: float
    passage: int  # index of the passage whose load carried the tag
    cross_read: bool  # heard by a door the load did not pass through


@dataclass(frozen=True)
class SimGpiEdge:
    """A photo-eye edge: "high" while the beam is interrupted."""

    reader: str
    pin: int
    state: Literal["high", "low"]
    seen_at: datetime
    passage: int


@dataclass(frozen=True)
class Passage:
    """Ground truth: one load through one door in one direction."""

    index: int
    door: str
    direction: Direction
    sscc: str  # EPC hex of the pallet tag
    sgtins: tuple[str, ...]  # EPC hex of the case tags
    started_at: datetime
    ended_at: datetime
    cross_read_door: str  # the neighbouring door that may hear some tags
    cross_read_epcs: frozenset[str]  # tags that door actually reported at least once

    @property
    def epcs(self) -> frozenset[str]:
        return frozenset((self.sscc, *self.sgtins))


@dataclass(frozen=True)
class PassageRun:
    """A generated run: every read and GPI edge in time order, and what really happened."""

    scenario: PassageScenario
    events: tuple[SimTagRead | SimGpiEdge, ...]
    passages: tuple[Passage, ...]


class _Builder:
    def __init__(self, scenario: PassageScenario) -> None:
        self.scenario = scenario
        self.random = random.Random(scenario.seed)
        self.events: list[SimTagRead | SimGpiEdge] = []
        self.serial = 0

    def uniform(self, bounds: tuple[float, float]) -> float:
        return self.random.uniform(*bounds)

    def count(self, bounds: tuple[int, int]) -> int:
        return self.random.randint(*bounds)

    def next_serial(self) -> int:
        self.serial += 1
        return self.serial

    def zone_reads(
        self,
        door: DoorLayout,
        antennas: tuple[int, ...],
        epc_hex: str,
        peak_at: datetime,
        peak_rssi: float,
        half_width_ms: float,
        attempts: int,
        passage: int,
        cross_read: bool,
    ) -> int:
        """Reads of one tag by one antenna group around `peak_at`; returns how many survived the drops."""
        kept = 0
        for _ in range(attempts):
            offset_ms = self.random.uniform(-half_width_ms, half_width_ms)
            rssi = peak_rssi - self.scenario.zone_falloff_db * (offset_ms / half_width_ms) ** 2
            rssi += self.random.gauss(0.0, self.scenario.rssi_noise_db)
            if self.random.random() < self.scenario.read_drop_probability:
                continue
            kept += 1
            self.events.append(
                SimTagRead(
                    reader=door.reader,
                    antenna=self.random.choice(antennas),
                    epc_hex=epc_hex,
                    seen_at=peak_at + timedelta(milliseconds=offset_ms),
                    peak_rssi_dbm=round(rssi, 1),
                    passage=passage,
                    cross_read=cross_read,
                )
            )
        return kept

    def gpi(
        self, door: DoorLayout, first_pin: int, second_pin: int, start: datetime, transit_ms: float, index: int
    ) -> None:
        def edge(pin: int, state: Literal["high", "low"], fraction: float) -> None:
            moment = start + timedelta(milliseconds=transit_ms * fraction)
            self.events.append(SimGpiEdge(door.reader, pin, state, moment, index))

        edge(first_pin, "high", 0.12)
        edge(first_pin, "low", self.random.uniform(0.42, 0.6))
        edge(second_pin, "high", self.random.uniform(0.45, 0.55))
        edge(second_pin, "low", 0.9)


def generate_passages(scenario: PassageScenario) -> PassageRun:
    """Simulate `scenario.passages` passages; see the module docstring for the model."""
    builder = _Builder(scenario)
    door_free_at = {door.name: scenario.start for door in scenario.doors}
    cursor = scenario.start
    passages: list[Passage] = []
    for index in range(scenario.passages):
        door = builder.random.choice(scenario.doors)
        neighbour = builder.random.choice([other for other in scenario.doors if other is not door])
        direction: Direction = builder.random.choice(("inbound", "outbound"))
        cursor += timedelta(milliseconds=builder.uniform(scenario.start_gap_ms))
        start = max(cursor, door_free_at[door.name])
        transit_ms = builder.uniform(scenario.transit_ms)
        end = start + timedelta(milliseconds=transit_ms)
        door_free_at[door.name] = end + timedelta(milliseconds=scenario.door_gap_ms_min + builder.uniform((0, 2000)))
        cursor = start
        passages.append(_passage(builder, index, door, neighbour, direction, start, transit_ms))
    builder.events.sort(key=lambda event: event.seen_at)  # stable: equal times keep their generation order
    return PassageRun(scenario, tuple(builder.events), tuple(passages))


def _passage(
    builder: _Builder,
    index: int,
    door: DoorLayout,
    neighbour: DoorLayout,
    direction: Direction,
    start: datetime,
    transit_ms: float,
) -> Passage:
    scenario = builder.scenario
    company_prefix = 614141 + index % 7
    sscc = encode_sscc96(company_prefix, 3_000_000_000 + builder.next_serial())
    item = 100_000 + builder.random.randrange(90_000)
    sgtins = tuple(
        encode_sgtin96(company_prefix, item, builder.next_serial())
        for _ in range(builder.count((scenario.cases_min, scenario.cases_max)))
    )
    first, second = (
        (door.outside_antennas, door.inside_antennas)
        if direction == "inbound"
        else (door.inside_antennas, door.outside_antennas)
    )
    half_width_ms = 0.2 * transit_ms
    cross_read_epcs: set[str] = set()
    end = start + timedelta(milliseconds=transit_ms)
    for epc_hex in (sscc, *sgtins):
        spread = timedelta(milliseconds=builder.uniform((-scenario.tag_spread_ms, scenario.tag_spread_ms)))
        strength = builder.uniform(scenario.peak_rssi_dbm)  # this tag: its chip, orientation, what it sits on
        strongest = -200.0
        for antennas, fraction in ((first, 0.3), (second, 0.7)):
            peak_at = start + timedelta(milliseconds=transit_ms * fraction) + spread
            peak_rssi = strength + builder.random.gauss(0.0, scenario.zone_peak_sd_db)
            strongest = max(strongest, peak_rssi)
            own = builder.count(scenario.reads_per_zone)
            builder.zone_reads(door, antennas, epc_hex, peak_at, peak_rssi, half_width_ms, own, index, False)
            other = second if antennas is first else first
            spill_rssi = peak_rssi - builder.uniform(scenario.spill_penalty_db)
            spill = builder.count(scenario.spill_reads)
            builder.zone_reads(door, other, epc_hex, peak_at, spill_rssi, half_width_ms, spill, index, False)
        if builder.random.random() < scenario.cross_read_tag_fraction:
            peak_at = start + timedelta(milliseconds=builder.uniform((0.0, transit_ms)))
            # The same tag (orientation, detuning on its case) further away: weaker than at its own door.
            rssi = strongest - builder.uniform(scenario.cross_read_penalty_db)
            antennas = neighbour.outside_antennas + neighbour.inside_antennas
            reads = builder.count(scenario.cross_read_reads)
            if builder.zone_reads(neighbour, antennas, epc_hex, peak_at, rssi, half_width_ms, reads, index, True):
                cross_read_epcs.add(epc_hex)
    if scenario.gpi:
        pins = (door.photo_eye_outside_pin, door.photo_eye_inside_pin)
        first_pin, second_pin = pins if direction == "inbound" else pins[::-1]
        builder.gpi(door, first_pin, second_pin, start, transit_ms, index)
    return Passage(index, door.name, direction, sscc, sgtins, start, end, neighbour.name, frozenset(cross_read_epcs))
