"""Configuration of one dock-door RFID portal: the ``[[portal]]`` table of the gateway config.

A portal is a door with two antenna groups (outside = dock/trailer side, inside = warehouse side) on one or
more fixed readers, and optionally two photo-eyes. The portal engine (`edge.pipeline.portal`) turns its
reads into passes; the two read points named here say what an inbound and an outbound pass mean.

```toml
[[portal]]
name = "dock-4"
readers = ["dock4-reader"]           # device names of the fixed readers at this door
outside_antennas = [1, 2]            # antenna ports facing the trailer, the same numbers on every reader
inside_antennas = [3, 4]             # antenna ports facing the warehouse
photo_eye_outside_pin = 1            # GPI pins; set both or neither. Both set: GPI-bounded sessions
photo_eye_inside_pin = 2
# photo_eye_blocked_state = "high"   # GPI level while a beam is interrupted (wiring-dependent)
# gpi_grace_ms = 500                 # late reads still join a GPI session this long after both beams clear
# session_idle_ms = 2000             # time-window sessions end after this long without a read
# session_max_ms = 30000             # no session lasts longer (a pallet parked in the door)
# session_epcs_max = 10000           # distinct EPCs kept per session; more are counted, not kept
# reads_min = 2                      # fewer reads of an EPC in a session: a stray
# peak_rssi_dbm_min = -75.0          # a weaker peak: a stray; weaker reads neither open nor extend a session
# direction_gap_ms_min = 150         # outside and inside evidence this far apart to call a direction
# direction_reads_per_side_min = 1   # reads an EPC needs on each antenna group to vote on the direction
# late_read_horizon_ms = 30000       # a late read this far around a pass that emitted its EPC is that pass's
# late_read_memory_ms = 21600000     # passes are remembered this long to recognise their late reads (0: off)
neighbours = ["dock-5"]              # adjacent portals whose cross-reads are arbitrated against this one
inbound_read_point = "dock4-in"      # [[read_point]] names
outbound_read_point = "dock4-out"
biz_location = "urn:epc:id:sgln:0614141.00004.0"
```

`portal_references_problems` lists what the gateway config must check across tables (read point names,
neighbour names, readers and pins claimed by two portals); `PortalEngine` refuses to start on any.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["PortalConfig", "portal_references_problems"]

_NAME_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"


class PortalConfig(BaseModel):
    """One dock-door portal (see the module docstring for every key)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME_PATTERN)
    readers: list[str] = Field(min_length=1, max_length=16)
    inside_antennas: list[int] = Field(min_length=1, max_length=32)
    outside_antennas: list[int] = Field(min_length=1, max_length=32)
    photo_eye_outside_pin: int | None = Field(None, ge=0, le=64)
    photo_eye_inside_pin: int | None = Field(None, ge=0, le=64)
    photo_eye_blocked_state: Literal["high", "low"] = "high"
    gpi_grace_ms: int = Field(500, ge=0, le=10_000)
    session_idle_ms: int = Field(2000, ge=100, le=60_000)
    session_max_ms: int = Field(30_000, ge=1000, le=600_000)
    session_epcs_max: int = Field(10_000, ge=1, le=100_000)
    reads_min: int = Field(2, ge=1, le=1000)
    peak_rssi_dbm_min: float = Field(-75.0, ge=-120.0, le=0.0)
    direction_gap_ms_min: int = Field(150, ge=0, le=10_000)
    direction_reads_per_side_min: int = Field(1, ge=1, le=100)
    # Late reads (a reader's retention replayed after a broker outage): see edge.pipeline.portal.
    late_read_horizon_ms: int = Field(30_000, ge=0, le=3_600_000)
    late_read_memory_ms: int = Field(21_600_000, ge=0, le=7 * 86_400_000)
    neighbours: list[str] = Field(default_factory=list, max_length=16)
    inbound_read_point: str = Field(min_length=1)
    outbound_read_point: str = Field(min_length=1)
    biz_location: str = Field(min_length=1, description="EPCIS bizLocation of the door itself")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        for field, ports in (("inside_antennas", self.inside_antennas), ("outside_antennas", self.outside_antennas)):
            if any(port < 1 for port in ports):
                raise ValueError(f"{field}: antenna ports are 1-based, got {ports}")
        shared = sorted(set(self.inside_antennas) & set(self.outside_antennas))
        if shared:
            raise ValueError(f"antenna ports {shared} are in both inside_antennas and outside_antennas")
        if len(set(self.readers)) != len(self.readers):
            raise ValueError(f"readers are listed twice: {self.readers}")
        if (self.photo_eye_outside_pin is None) != (self.photo_eye_inside_pin is None):
            raise ValueError("set both photo_eye_outside_pin and photo_eye_inside_pin, or neither")
        if self.photo_eye_outside_pin is not None and self.photo_eye_outside_pin == self.photo_eye_inside_pin:
            raise ValueError("photo_eye_outside_pin and photo_eye_inside_pin must differ")
        if self.session_max_ms < self.session_idle_ms:
            raise ValueError("session_max_ms must be >= session_idle_ms")
        if self.name in self.neighbours:
            raise ValueError("a portal cannot be its own neighbour")
        return self

    @property
    def gpi_bounded(self) -> bool:
        """Whether photo-eyes bound this portal's sessions (both pins configured)."""
        return self.photo_eye_outside_pin is not None and self.photo_eye_inside_pin is not None


def portal_references_problems(portals: Sequence[PortalConfig], read_point_names: Iterable[str]) -> list[str]:
    """What is wrong across `[[portal]]` tables and `[[read_point]]` names; empty when they fit together."""
    problems: list[str] = []
    known_points = set(read_point_names)
    names = [portal.name for portal in portals]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        problems.append(f"portal names must be unique, repeated: {', '.join(repeated)}")
    antenna_owner: dict[tuple[str, int], str] = {}
    pin_owner: dict[tuple[str, int], str] = {}
    for index, portal in enumerate(portals):
        where = f"portal[{index}] ({portal.name})"
        for key in ("inbound_read_point", "outbound_read_point"):
            point = getattr(portal, key)
            if point not in known_points:
                problems.append(f"{where}.{key}: expected one of the [[read_point]] names, got {point!r}")
        for neighbour in portal.neighbours:
            if neighbour not in names:
                problems.append(f"{where}.neighbours: no portal named {neighbour!r}")
        for reader in portal.readers:
            for port in [*portal.inside_antennas, *portal.outside_antennas]:
                owner = antenna_owner.setdefault((reader, port), portal.name)
                if owner != portal.name:
                    problems.append(f"{where}: reader {reader!r} antenna {port} already belongs to portal {owner!r}")
            for pin in (portal.photo_eye_outside_pin, portal.photo_eye_inside_pin):
                if pin is None:
                    continue
                owner = pin_owner.setdefault((reader, pin), portal.name)
                if owner != portal.name:
                    problems.append(f"{where}: reader {reader!r} GPI pin {pin} already belongs to portal {owner!r}")
    return problems
