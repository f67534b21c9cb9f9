"""Dock-door portal engine: tag reads and photo-eye edges from a door's readers → passes → EPCIS events.

Pure logic with time passed in: `PortalEngine.feed_tag` / `feed_gpi` take the drivers' reads, `advance(now)`
closes the sessions whose time is up and returns the finished `PortalPass`es, and `pass_to_events` turns a
pass into `tallyport.v1` events. The rules follow standards.md §5.

Sessions (one open session per portal at a time):
- GPI-bounded, when both photo-eye pins are configured: the first beam broken opens a session and, once the
  other beam has broken too, gives the direction (outside eye first → inbound, inside first → outbound).
  The session ends `gpi_grace_ms` after both beams are clear again (late reads still count), or
  `session_idle_ms` after both are clear when only one beam ever broke (someone backed out, or the gap
  between the eyes is longer than the load: the second beam may still come). Reads while no GPI session is
  open are counted (``reads_outside_session``) and dropped: photo-eyes say nothing passed.
- Time-window otherwise: the first read opens a session, `session_idle_ms` without a read closes it. A read
  weaker than `peak_rssi_dbm_min` neither opens nor extends a time-window session (so a tag lying in the
  staging lane cannot keep the door "busy"), but counts in an open one.
- Either kind is cut at `session_max_ms` (a pallet parked in the door, a stuck beam).
Session time runs on the gateway's clock: `received_at` when the caller passes it, else the read's own
`seen_at`; so a reader whose clock is off does not close sessions early or late. Direction timing and event
times use the readers' `seen_at` (within a pass, the reads of one door are compared with each other).

Per session and EPC (dedupe): first/last seen, read count, peak RSSI, and per antenna group the first/last
read, the read count and the time of the peak. At the end of a session, in this order:
1. Cross-reads: an EPC also seen by a neighbouring portal (``neighbours``, taken both ways) in a session that
   overlaps in time (within `session_idle_ms`) goes to the portal with the stronger evidence: higher peak
   RSSI, then more reads, then (a full tie) the portal name that sorts first. The loser drops it
   (``suppressed`` reason ``cross_read``, ``winner`` named). Every sighting counts, strays included: a tag
   heard once but loudly at its own door must not be handed to the door that heard it faintly. A finished
   pass of a portal with neighbours waits while a neighbour's overlapping session is open, or could still
   open (until `session_idle_ms` after its last read), but at most `session_idle_ms` after it closed; if it
   must go while that neighbour session is open, it drops only the EPCs that session already beats
   (evidence only grows, so that verdict is final), keeps the rest, and says ``arbitration:partial``.
2. Strays: fewer than `reads_min` reads, or a peak below `peak_rssi_dbm_min`, is dropped and counted
   (``suppressed``, reason ``reads_min`` / ``peak_rssi_min``). An EPC whose reader reports no RSSI at all is
   not judged on RSSI: the rule cannot apply, and dropping every tag of such a reader would be worse.
3. Split: a time-window session whose remaining EPCs fall into runs with a gap of `session_idle_ms` or more
   between them becomes one pass per run (``session_split:i/n``). Cross-reads from a busy neighbour can
   bridge the quiet gap between two loads at this door; once rule 1 removed them, the gap shows again and
   each load gets its own direction. GPI sessions are bounded by the beams and never split.
4. Direction, if the photo-eyes did not give it: each accepted EPC seen on both groups (at least
   `direction_reads_per_side_min` reads each) votes by the time of its peak RSSI per group (first read when
   RSSI is missing): inbound if outside came first by ≥ `direction_gap_ms_min`, outbound if inside did. The
   pass takes a direction when it has ≥ 2/3 of the votes; else, or with no votes, ``unknown``.
5. Aggregation: exactly one SSCC-96 with at least one SGTIN-96 → the SSCC is the parent of the SGTINs. Two or
   more SSCCs with SGTINs (a double-stacked forklift) → no aggregation, ``aggregation:ambiguous:<n>_sscc``.
Invalid EPC hex never becomes an object (nor opens a session): it is returned in a pass's ``rejected`` for the
quarantine, deduplicated per EPC with its read count. One read while no session is open joins the portal's
next session if one opens before the next `advance`, else comes back alone in a pass of kind ``none``.

Late reads. A fixed reader that loses its broker keeps its reads and publishes them when the broker is back,
minutes or hours after they were made. Sessions run on arrival time, so those reads would open a new session
(or join another load's) and emit EPCs that a pass emitted already: a duplicate movement. So every pass that
emitted objects is remembered per portal (its EPCs, its span in read time, and the arrival-minus-read-time
offset its own reads showed). A valid read is a *late duplicate*, dropped before any session sees it, when
- a remembered pass of this portal, or of a neighbour (a late cross-read), emitted its EPC;
- it is late for that pass: it arrived at least `session_idle_ms` later, relative to its read time, than
  that pass's reads did (so it could not have joined the pass; the offset absorbs the reader's clock skew,
  and a tag read live again after the pass, a pallet backing out, is never late). A read by another reader
  than the pass's (the neighbour door's) is first put on the pass's readers' clock through gateway time,
  with the offset its own reader showed: the least arrival-minus-read-time of that reader's reads and
  photo-eye edges (live ones arrive with the least delay; the estimate may rise only as fast as a clock
  drifts, `READER_CLOCK_DRIFT_MAX`, so a replayed buffer never passes for the reader's clock). A reader
  not heard live since start has no offset yet and is taken to agree with the pass's readers: if the
  two clocks differ by more than `session_idle_ms`, its first live read of a pallet back from the
  neighbour door within the horizon can then be taken for a late read; and
- its read time lies in the pass's span, or up to `late_read_horizon_ms` before its first read (the approach
  to the door, or the first half of a passage whose second half came live; a replayed buffer runs oldest
  first, so these come before anything that could link them to the pass), or after its last read up to
  `late_read_horizon_ms` *and* within `session_idle_ms` of the pass's last read or of the previous late
  read taken as its continuation (a passage whose end the outage cut off goes on; after a quiet gap of
  `session_idle_ms` the tag moved again, a pallet backing out, and that is a new passage, as it would have
  been live).
A late read of an EPC no remembered pass emitted (the whole passage fell in the outage, or a tag the pass
missed) is an ordinary read: its passage has produced no event yet. A read after the horizon, or after a
quiet gap, is a new passage and emits. The price of the look back: a passage of the same EPC that ended
less than `late_read_horizon_ms` before a pass and reached us only late is taken for that pass's approach.
Dropped late duplicates are counted (``late_reads_dropped``) and logged once per pass, not quarantined: they
are valid reads of a movement already stored, not bad data, and a replayed reader buffer can hold thousands
of them, which would bury the rejects an operator must act on. Passes are remembered for
`late_read_memory_ms` of gateway time (set it above the longest broker outage to expect; 0 turns the rule
off), at most `LATE_READ_PASSES_MAX` passes and `LATE_READ_EPCS_MAX` EPCs per portal, the oldest forgotten
first. This memory lives in the process: the read journal keeps only the reads of
unfinished passes, so after an agent restart the passes finished before it are not known, and a late read
of one of them is treated as an ordinary read again. Not covered either: a late read that arrives while its
pass still waits for a neighbour's arbitration (at most `session_idle_ms`).

What the events mean (`pass_to_events`): an ObjectEvent with every accepted EPC, plus an AggregationEvent
(action OBSERVE) when rule 5 found a parent. Inbound uses the `inbound_read_point` (its id, biz_location,
action, biz_step, disposition; typically receiving), outbound the `outbound_read_point` (typically departing,
in_transit). Unknown direction: action OBSERVE, biz_step ``other``, no disposition, read point and
biz_location both the portal's own `biz_location`. Rationale: the objects were certainly at the door, but
``arriving``/``receiving``/``departing`` would assert a direction we do not know and move stock in or out
of the projections; CBV's ``entering_exiting`` is defined for a retail customer door, not a dock; ``other``
("a business step not identified by any of the values listed in the CBV") records the sighting at the door
and nothing more, and the lineage says ``direction:unknown`` so an integrator can route it to review.
Omitting biz_step is not an option: the cloud's contract requires one. Both events share: event_time = the
pass's end (the last read or beam edge) with the site zone's offset, read_point.device_id = the readers that
contributed (comma-joined), read_point.antenna = the group (``inside``/``outside``) of the last accepted read,
lineage.raw_sha256 = sha256 over the sorted distinct payload digests of the session, event class MOVEMENT.

Bounds: at most one open session per portal; `session_epcs_max` distinct EPCs (valid or rejected) per
session, further ones counted in ``epcs_over_cap``; `RAW_DIGESTS_MAX` payload digests per session;
`HELD_PASSES_MAX` passes waiting for arbitration (the oldest is released when exceeded);
`RELEASED_HISTORY_MAX` released passes remembered for neighbours that finish later;
`ORPHAN_REJECTED_MAX` invalid reads waiting outside a session per portal; `LATE_READ_PASSES_MAX` passes and
`LATE_READ_EPCS_MAX` EPCs remembered per portal for late reads, for at most `late_read_memory_ms`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import zoneinfo
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from tallyport.v1 import events_pb2

from edge.config import ReadPointConfig
from edge.epc import DecodedEpc, decode_epc
from edge.errors import ConfigError
from edge.pipeline.portal_config import PortalConfig, portal_references_problems
from edge.pipeline.reads import GpiEvent, TagRead
from edge.pipeline.scan_events import offset_minutes

__all__ = [
    "HELD_PASSES_MAX",
    "LATE_READ_EPCS_MAX",
    "LATE_READ_PASSES_MAX",
    "ORPHAN_REJECTED_MAX",
    "RAW_DIGESTS_MAX",
    "RELEASED_HISTORY_MAX",
    "AntennaGroup",
    "Direction",
    "PortalEngine",
    "PortalObject",
    "PortalPass",
    "RejectedRead",
    "SuppressedEpc",
    "pass_to_events",
]

AntennaGroup = Literal["outside", "inside"]
Direction = Literal["inbound", "outbound", "unknown"]
DirectionEvidence = Literal["gpi", "antenna_timing", "none"]
SessionKind = Literal["gpi", "time_window", "none"]
CloseReason = Literal["idle", "max", "beams_clear", "next_pass", "none"]
SuppressReason = Literal["reads_min", "peak_rssi_min", "cross_read"]

log = logging.getLogger(__name__)

HELD_PASSES_MAX = 256
# Per portal: emitted passes remembered to recognise their late reads (a busy door makes a few hundred
# passes a shift), and the EPCs they hold together (bounds the memory whatever the loads' sizes).
LATE_READ_PASSES_MAX = 1000
LATE_READ_EPCS_MAX = 50_000
RELEASED_HISTORY_MAX = 256
RAW_DIGESTS_MAX = 4096
ORPHAN_REJECTED_MAX = 1000
# How fast a reader's clock may drift from the gateway's (100 ppm: 8.6 s a day, above a plain crystal's
# 20-50 ppm). A reader's learned clock offset may grow at this rate without a read to show it, and no
# faster, so a buffer replayed after an outage (hours late) never passes for the reader's clock relation.
READER_CLOCK_DRIFT_MAX = 1e-4
# A pass takes the direction most of its EPCs vote for only with this share of the votes; below it the
# evidence contradicts itself and "unknown" is the honest answer.
DIRECTION_VOTE_SHARE_MIN = 2 / 3
assert 0.5 < DIRECTION_VOTE_SHARE_MIN <= 1, "a direction needs a majority"

_NO_RSSI = -math.inf


@dataclass(frozen=True)
class PortalObject:
    """One accepted EPC of a pass, with the evidence that kept it."""

    epc: DecodedEpc
    first_seen_at: datetime
    last_seen_at: datetime
    read_count: int
    peak_rssi_dbm: float | None
    last_antenna_group: AntennaGroup
    direction_vote: Direction  # what its own antenna timing says ("unknown" when too thin)


@dataclass(frozen=True)
class SuppressedEpc:
    """An EPC seen in a session but dropped from the pass: counted for lineage and metrics."""

    epc_hex: str
    reason: SuppressReason
    read_count: int
    peak_rssi_dbm: float | None
    detail: str  # e.g. "1 read(s) < reads_min 2", "won by dock-5 (-48.0 dBm, 9 reads)"
    winner: str = ""  # for a cross_read: the portal that kept the EPC


@dataclass(frozen=True)
class RejectedRead:
    """A read whose EPC is not valid hex for its scheme: for the quarantine, never an event."""

    reader: str
    antenna: int
    epc_hex: str  # as read (cut to a sane length by the decoder)
    seen_at: datetime
    raw_sha256: str
    reason: str
    read_count: int  # reads of this same EPC in the session


@dataclass(frozen=True)
class PortalPass:
    """What one portal session amounted to, after stray suppression and cross-read arbitration."""

    portal: PortalConfig
    number: int  # per portal, from 1, in the order sessions opened
    session_kind: SessionKind
    close_reason: CloseReason
    started_at: datetime  # reader time of the first evidence (read or beam)
    ended_at: datetime  # reader time of the last evidence: the events' event_time
    direction: Direction
    direction_evidence: DirectionEvidence
    objects: tuple[PortalObject, ...]
    suppressed: tuple[SuppressedEpc, ...]
    rejected: tuple[RejectedRead, ...]
    aggregation_parent: PortalObject | None
    aggregation_children: tuple[PortalObject, ...]
    readers: tuple[str, ...]  # readers that contributed accepted reads, sorted
    last_antenna_group: AntennaGroup | None  # the group that saw the last accepted read
    raw_sha256: str  # sha256 over the sorted distinct payload digests of the session's reads
    reads_total: int  # reads of the EPCs in this pass: accepted, suppressed and rejected (not those over the cap)
    epcs_over_cap: int
    rules_applied: tuple[str, ...]

    def suppressed_count(self, reason: SuppressReason) -> int:
        return sum(1 for item in self.suppressed if item.reason == reason)


# --- session state ---------------------------------------------------------------------------------


@dataclass
class _GroupTrack:
    first_at: datetime
    last_at: datetime
    reads: int = 0
    peak_rssi: float | None = None
    peak_at: datetime | None = None


@dataclass
class _EpcTrack:
    decoded: DecodedEpc
    first_at: datetime
    last_at: datetime
    last_group: AntennaGroup
    reads: int = 0
    peak_rssi: float | None = None
    groups: dict[AntennaGroup, _GroupTrack] = field(default_factory=dict)
    readers: set[str] = field(default_factory=set)

    def evidence(self) -> tuple[float, int]:
        return (_NO_RSSI if self.peak_rssi is None else self.peak_rssi, self.reads)


@dataclass
class _Session:
    number: int
    kind: SessionKind
    opened_arrival: datetime
    activity_arrival: datetime  # the last arrival that kept a time-window session alive
    last_arrival: datetime  # the last arrival of anything routed into the session
    started_at: datetime
    ended_at: datetime
    epcs: dict[str, _EpcTrack] = field(default_factory=dict)
    rejected: dict[str, RejectedRead] = field(default_factory=dict)
    eye_order: list[AntennaGroup] = field(default_factory=list)
    beams_clear_arrival: datetime | None = None
    raw_digests: set[str] = field(default_factory=set)
    epcs_over_cap: int = 0


@dataclass(frozen=True)
class _Evidence:
    """A pass as its neighbours see it: its time span and its accepted EPCs' (peak RSSI, reads)."""

    portal: str
    first_arrival: datetime
    last_arrival: datetime
    epcs: Mapping[str, tuple[float, int]]


@dataclass
class _Closed:
    portal: str
    session: _Session
    close_reason: CloseReason
    closed_at: datetime  # gateway time the session ended (its due time, not when advance noticed)
    evidence: _Evidence


@dataclass(eq=False)  # identity: the per-EPC index removes exactly this record
class _EmittedPass:
    """A released pass that emitted objects, remembered to recognise its late reads."""

    number: int
    epcs: frozenset[str]
    started_at: datetime  # reader time of its first evidence
    ended_at: datetime  # reader time of its last evidence
    arrival_offset: timedelta  # arrival minus read time of the session's last evidence: the clock relation
    readers: frozenset[str]  # the readers whose clocks its span is in (those that read its objects)
    closed_arrival: datetime  # gateway time the session closed: the memory's age
    continued_until: datetime  # reader time of the pass's last read, or of the latest late read continuing it
    late_reads: int = 0


@dataclass
class _ReaderClock:
    """How a reader's clock relates to the gateway's: the least arrival-minus-read-time of its reads."""

    offset: timedelta  # gateway time minus reader time, plus the (least) delivery delay
    at_arrival: datetime  # gateway time the estimate was last lowered or confirmed

    def update(self, arrival: datetime, seen_at: datetime) -> None:
        # Live reads arrive with the least delay; a late one only ever shows a larger offset. The estimate
        # may rise as fast as a clock can drift, so a slow drift is followed and a replay is not.
        aged = self.offset + (arrival - self.at_arrival) * READER_CLOCK_DRIFT_MAX
        self.offset = min(arrival - seen_at, aged)
        self.at_arrival = arrival


@dataclass
class _PortalState:
    config: PortalConfig
    neighbours: frozenset[str]
    session: _Session | None = None
    eyes_blocked: dict[AntennaGroup, bool] = field(default_factory=lambda: {"outside": False, "inside": False})
    sessions_opened: int = 0
    orphan_rejected: dict[str, RejectedRead] = field(default_factory=dict)
    counters: Counter[str] = field(default_factory=Counter)
    emitted: deque[_EmittedPass] = field(default_factory=deque)  # oldest first
    emitted_by_epc: dict[str, list[_EmittedPass]] = field(default_factory=dict)
    emitted_epcs: int = 0

    @property
    def idle(self) -> timedelta:
        return timedelta(milliseconds=self.config.session_idle_ms)


def _aware(moment: datetime, what: str) -> datetime:
    assert moment.utcoffset() is not None, f"{what} must be timezone-aware"
    return moment


class PortalEngine:
    """Turns the reads of one or more portals into `PortalPass`es. Not thread-safe: one task feeds it."""

    def __init__(
        self,
        configs: Sequence[PortalConfig],
        read_points: Mapping[str, ReadPointConfig],
        gateway_id: str,
        zone: zoneinfo.ZoneInfo,
    ) -> None:
        problems = portal_references_problems(configs, read_points.keys())
        if problems:
            raise ConfigError("; ".join(problems))
        self.gateway_id = gateway_id
        self.zone = zone
        self._configs = tuple(configs)
        self._read_points = dict(read_points)
        neighbours: dict[str, set[str]] = {config.name: set(config.neighbours) for config in configs}
        for config in configs:  # "A is next to B" is also "B is next to A"
            for other in config.neighbours:
                neighbours[other].add(config.name)
        self._portals = {config.name: _PortalState(config, frozenset(neighbours[config.name])) for config in configs}
        self._antennas: dict[tuple[str, int], tuple[_PortalState, AntennaGroup]] = {}
        self._eyes: dict[tuple[str, int], tuple[_PortalState, AntennaGroup]] = {}
        for state in self._portals.values():
            config = state.config
            for reader in config.readers:
                for port in config.outside_antennas:
                    self._antennas[(reader, port)] = (state, "outside")
                for port in config.inside_antennas:
                    self._antennas[(reader, port)] = (state, "inside")
                if config.photo_eye_outside_pin is not None and config.photo_eye_inside_pin is not None:
                    self._eyes[(reader, config.photo_eye_outside_pin)] = (state, "outside")
                    self._eyes[(reader, config.photo_eye_inside_pin)] = (state, "inside")
        self._held: list[_Closed] = []
        self._released: deque[_Evidence] = deque(maxlen=RELEASED_HISTORY_MAX)
        self._history_span = timedelta(
            milliseconds=max((c.session_max_ms + 2 * c.session_idle_ms for c in configs), default=0)
        )
        self._unrouted: Counter[str] = Counter()
        # Per configured reader (so bounded by the config), its clock relation as its reads showed it.
        self._reader_clocks: dict[str, _ReaderClock] = {}

    # --- input ---------------------------------------------------------------------------------------

    def feed_tag(self, read: TagRead, received_at: datetime | None = None) -> None:
        """Take one tag report; `received_at` is the gateway's clock when it arrived (default: its seen_at)."""
        seen_at = _aware(read.seen_at, "TagRead.seen_at")
        arrival = _aware(received_at, "received_at") if received_at is not None else seen_at
        routed = self._antennas.get((read.reader, read.antenna))
        if routed is None:
            self._unrouted["reads"] += 1
            return
        state, group = routed
        state.counters["reads"] += 1
        self._expire(state, arrival)
        decoded = decode_epc(read.epc_hex)
        if decoded.valid and self._late_duplicate(state, read, decoded.epc_hex, arrival):
            return
        # Learned after the judgement, from reads not dropped as late: a read must not vouch for itself.
        self._learn_clock(read.reader, arrival, seen_at)
        session = state.session
        if session is None and state.config.gpi_bounded:
            self._outside_session(state, read, decoded)
            return
        strong = read.peak_rssi_dbm is None or read.peak_rssi_dbm >= state.config.peak_rssi_dbm_min
        if session is None:
            if not strong or not decoded.valid:
                self._outside_session(state, read, decoded)
                return
            session = self._open(state, "time_window", arrival, seen_at)
        if strong and session.kind == "time_window" and decoded.valid:
            session.activity_arrival = max(session.activity_arrival, arrival)
        self._record(state, session, read, decoded, group, arrival)

    def feed_gpi(self, event: GpiEvent, received_at: datetime | None = None) -> None:
        """Take one GPI edge; only the photo-eye pins of a GPI-bounded portal matter."""
        seen_at = _aware(event.seen_at, "GpiEvent.seen_at")
        arrival = _aware(received_at, "received_at") if received_at is not None else seen_at
        routed = self._eyes.get((event.reader, event.pin))
        if routed is None:
            self._unrouted["gpi_edges"] += 1
            return
        state, eye = routed
        state.counters["gpi_edges"] += 1
        self._learn_clock(event.reader, arrival, seen_at)  # photo-eye edges come before the load's tag reads
        self._expire(state, arrival)
        blocked = event.state == state.config.photo_eye_blocked_state
        was_blocked = state.eyes_blocked[eye]
        state.eyes_blocked[eye] = blocked
        session = state.session
        if blocked and not was_blocked:
            if session is not None and session.beams_clear_arrival is not None and len(session.eye_order) == 2:
                # Both beams had cleared after a complete passage: this beam belongs to the next load.
                self._close(state, "next_pass", arrival)
                session = None
            if session is None:
                session = self._open(state, "gpi", arrival, seen_at)
            if eye not in session.eye_order:
                session.eye_order.append(eye)
            session.beams_clear_arrival = None
        elif not blocked and session is not None and not any(state.eyes_blocked.values()):
            session.beams_clear_arrival = arrival
        if session is not None:
            session.last_arrival = max(session.last_arrival, arrival)
            session.started_at = min(session.started_at, seen_at)
            session.ended_at = max(session.ended_at, seen_at)

    def _learn_clock(self, reader: str, arrival: datetime, seen_at: datetime) -> None:
        clock = self._reader_clocks.get(reader)
        if clock is None:
            self._reader_clocks[reader] = _ReaderClock(arrival - seen_at, arrival)
        else:
            clock.update(arrival, seen_at)

    # --- time ----------------------------------------------------------------------------------------

    def advance(self, now: datetime) -> list[PortalPass]:
        """Close the sessions whose time is up at `now` (gateway clock) and return the passes now final."""
        _aware(now, "now")
        for state in self._portals.values():
            self._expire(state, now)
            _forget_emitted(state, now)
        released = self._release(now)
        for state in self._portals.values():
            if state.orphan_rejected and state.session is None:
                released.append(self._orphan_pass(state))
        return released

    def open_sessions(self) -> int:
        """Sessions open now (at most one per portal)."""
        return sum(1 for state in self._portals.values() if state.session is not None)

    def held_passes(self) -> int:
        """Finished passes waiting for a neighbour's session to end."""
        return len(self._held)

    def pending_since(self, portal: str) -> datetime | None:
        """Gateway time from which reads routed to `portal` may still wait in its open session or held passes.

        Every read of that portal that arrived before it has become part of a returned pass or was dropped,
        so the caller may forget it (e.g. delete it from a read journal). None when nothing is pending;
        `datetime.min` (UTC) while an orphan rejected read waits for the next release.
        """
        state = self._portals[portal]
        if state.orphan_rejected:
            return datetime.min.replace(tzinfo=UTC)
        opened = [state.session.opened_arrival] if state.session is not None else []
        opened += [closed.session.opened_arrival for closed in self._held if closed.portal == portal]
        return min(opened, default=None)

    def portals_of(self, reader: str) -> frozenset[str]:
        """The portals a reader's antennas or photo-eyes feed (empty: its reads are not routed)."""
        return frozenset(config.name for config in self._configs if reader in config.readers)

    def counters(self) -> dict[str, dict[str, int]]:
        """Counts per portal name (reads, reads_outside_session, gpi_edges, sessions, passes, epcs_accepted,
        strays_suppressed, cross_reads_dropped, rejected_epcs, epcs_over_cap, late_reads_dropped,
        direction_<x>), and under "(unrouted)" the reads and GPI edges from readers, antennas or pins no
        portal claims."""
        snapshot = {name: dict(state.counters) for name, state in self._portals.items()}
        snapshot["(unrouted)"] = dict(self._unrouted)
        return snapshot

    # --- sessions ------------------------------------------------------------------------------------

    def _open(self, state: _PortalState, kind: SessionKind, arrival: datetime, seen_at: datetime) -> _Session:
        state.sessions_opened += 1
        state.counters["sessions"] += 1
        session = _Session(state.sessions_opened, kind, arrival, arrival, arrival, seen_at, seen_at)
        for orphan in state.orphan_rejected.values():  # invalid reads from just before: with this pass
            _merge_rejection(session.rejected, orphan)
        state.orphan_rejected.clear()
        state.session = session
        return session

    def _due(self, state: _PortalState, session: _Session) -> tuple[datetime, CloseReason]:
        config = state.config
        deadlines: list[tuple[datetime, CloseReason]] = [
            (session.opened_arrival + timedelta(milliseconds=config.session_max_ms), "max")
        ]
        if session.kind == "time_window":
            deadlines.append((session.activity_arrival + state.idle, "idle"))
        elif session.beams_clear_arrival is not None:
            complete = len(session.eye_order) == 2
            wait = timedelta(milliseconds=config.gpi_grace_ms) if complete else state.idle
            deadlines.append((session.beams_clear_arrival + wait, "beams_clear" if complete else "idle"))
        return min(deadlines, key=lambda deadline: deadline[0])

    def _expire(self, state: _PortalState, now: datetime) -> None:
        if state.session is None:
            return
        due, reason = self._due(state, state.session)
        if now >= due:
            self._close(state, reason, due)

    def _close(self, state: _PortalState, reason: CloseReason, closed_at: datetime) -> None:
        session = state.session
        assert session is not None
        state.session = None
        evidence = _Evidence(
            state.config.name,
            session.opened_arrival,
            session.last_arrival,
            {epc: track.evidence() for epc, track in session.epcs.items()},
        )
        self._held.append(_Closed(state.config.name, session, reason, closed_at, evidence))

    # --- release: arbitration, direction, aggregation ------------------------------------------------

    def _release(self, now: datetime) -> list[PortalPass]:
        while self._released and self._released[0].last_arrival < now - self._history_span:
            self._released.popleft()
        self._held.sort(key=lambda closed: closed.closed_at)
        overflow = len(self._held) - HELD_PASSES_MAX
        finished: list[PortalPass] = []
        still_held: list[_Closed] = []
        for index, closed in enumerate(self._held):
            state = self._portals[closed.portal]
            open_rivals = self._open_rivals(state, closed, now)
            # Wait while a neighbour's overlapping session is open, or may still open (a load reaching the
            # next door a moment later), but never longer than `session_idle_ms` after this one closed.
            may_still_open = bool(state.neighbours) and now < closed.session.last_arrival + state.idle
            waiting = (open_rivals or may_still_open) and now < closed.closed_at + state.idle
            if waiting and index >= overflow:
                still_held.append(closed)
                continue
            finished.extend(self._finish(state, closed, open_rivals))
        self._held = still_held
        return finished

    def _overlaps(self, state: _PortalState, closed: _Closed, first: datetime, last: datetime) -> bool:
        slack = state.idle
        return first <= closed.session.last_arrival + slack and closed.session.opened_arrival <= last + slack

    def _open_rivals(self, state: _PortalState, closed: _Closed, now: datetime) -> list[_Evidence]:
        """Evidence so far of the neighbours' open sessions that overlap `closed`."""
        rivals = []
        for name in sorted(state.neighbours):
            neighbour = self._portals[name]
            session = neighbour.session
            if session is not None and self._overlaps(state, closed, session.opened_arrival, now):
                epcs = {epc: track.evidence() for epc, track in session.epcs.items()}
                rivals.append(_Evidence(name, session.opened_arrival, now, epcs))
        return rivals

    def _finished_rivals(self, state: _PortalState, closed: _Closed) -> list[_Evidence]:
        """Final evidence of the neighbours' finished passes (held or released) that overlap `closed`."""
        candidates = [other.evidence for other in self._held if other is not closed]
        candidates.extend(self._released)
        return [
            evidence
            for evidence in candidates
            if evidence.portal in state.neighbours
            and self._overlaps(state, closed, evidence.first_arrival, evidence.last_arrival)
        ]

    def _finish(self, state: _PortalState, closed: _Closed, open_rivals: list[_Evidence]) -> list[PortalPass]:
        config, session = state.config, closed.session
        survivors, cross_reads = _arbitrate(
            config.name, session.epcs, self._finished_rivals(state, closed) + open_rivals
        )
        accepted, strays = _screen(config, survivors)
        self._released.append(closed.evidence)
        parts = _split(session, accepted, state.idle)
        spans = [_span(part) if part else (session.started_at, session.ended_at) for part in parts]
        suppressed: list[list[SuppressedEpc]] = [[] for _ in parts]
        for item in [*cross_reads, *strays]:
            suppressed[_nearest(spans, session.epcs[item.epc_hex].first_at)].append(item)
        rejected: list[list[RejectedRead]] = [[] for _ in parts]
        for rejection in session.rejected.values():
            rejected[_nearest(spans, rejection.seen_at)].append(rejection)
        if len(parts) == 1:  # unsplit: the session's own span, GPI edges and strays included
            spans = [(session.started_at, session.ended_at)]
        passes = []
        for index, part in enumerate(parts):
            rules = [f"portal:{config.name}", f"session:{session.kind}", f"session_closed:{closed.close_reason}"]
            if len(parts) > 1:
                rules.append(f"session_split:{index + 1}/{len(parts)}")
            if open_rivals:
                rules.append("arbitration:partial")
            if index == 0 and session.epcs_over_cap:
                rules.append(f"epcs_over_cap:{session.epcs_over_cap}")
            passes.append(
                self._build(
                    state,
                    closed,
                    part,
                    spans[index],
                    suppressed[index],
                    rejected[index],
                    rules,
                    session.epcs_over_cap if index == 0 else 0,
                )
            )
        self._remember_passes(state, closed, passes)
        return passes

    def _remember_passes(self, state: _PortalState, closed: _Closed, passes: Sequence[PortalPass]) -> None:
        """Keep what the passes emitted, to recognise their late reads (see the module docstring)."""
        if state.config.late_read_memory_ms == 0:
            return
        session = closed.session
        offset = session.last_arrival - session.ended_at
        for built in passes:
            if built.objects:
                epcs = frozenset(item.epc.epc_hex for item in built.objects)
                record = _EmittedPass(
                    built.number,
                    epcs,
                    built.started_at,
                    built.ended_at,
                    offset,
                    frozenset(built.readers),
                    closed.closed_at,
                    built.ended_at,
                )
                _remember_emitted(state, record)

    def _build(
        self,
        state: _PortalState,
        closed: _Closed,
        tracks: list[_EpcTrack],
        span: tuple[datetime, datetime],
        suppressed: list[SuppressedEpc],
        rejected: list[RejectedRead],
        rules: list[str],
        epcs_over_cap: int,
    ) -> PortalPass:
        config, session = state.config, closed.session
        objects = tuple(
            _portal_object(config, track) for track in sorted(tracks, key=lambda t: (t.first_at, t.decoded.epc_hex))
        )
        direction, evidence, direction_rules = _direction(session, objects)
        parent, children, aggregation_rules = _aggregation(objects)
        strays = sum(1 for item in suppressed if item.reason != "cross_read")
        winners = sorted({item.winner for item in suppressed if item.reason == "cross_read"})
        rules.append("dedupe")
        rules.extend(f"cross_read:{winner}" for winner in winners)
        if strays:
            rules.append(f"strays_suppressed:{strays}")
        rules.extend(direction_rules)
        rules.extend(aggregation_rules)
        last = max(tracks, key=lambda track: track.last_at, default=None)
        counters = state.counters
        counters["passes"] += 1
        counters["epcs_accepted"] += len(objects)
        counters["strays_suppressed"] += strays
        counters["cross_reads_dropped"] += len(suppressed) - strays
        counters["rejected_epcs"] += len(rejected)
        counters[f"direction_{direction}"] += 1
        reads = sum(track.reads for track in tracks) + sum(item.read_count for item in suppressed)
        return PortalPass(
            portal=config,
            number=session.number,
            session_kind=session.kind,
            close_reason=closed.close_reason,
            started_at=span[0],
            ended_at=span[1],
            direction=direction,
            direction_evidence=evidence,
            objects=objects,
            suppressed=tuple(suppressed),
            rejected=tuple(rejected),
            aggregation_parent=parent,
            aggregation_children=children,
            readers=tuple(sorted({reader for track in tracks for reader in track.readers})),
            last_antenna_group=None if last is None else last.last_group,
            raw_sha256=_digest(session.raw_digests),
            reads_total=reads + sum(item.read_count for item in rejected),
            epcs_over_cap=epcs_over_cap,
            rules_applied=tuple(rules),
        )

    def _orphan_pass(self, state: _PortalState) -> PortalPass:
        rejected = tuple(state.orphan_rejected.values())
        state.orphan_rejected.clear()
        state.counters["rejected_epcs"] += len(rejected)
        return PortalPass(
            portal=state.config,
            number=0,
            session_kind="none",
            close_reason="none",
            started_at=min(item.seen_at for item in rejected),
            ended_at=max(item.seen_at for item in rejected),
            direction="unknown",
            direction_evidence="none",
            objects=(),
            suppressed=(),
            rejected=rejected,
            aggregation_parent=None,
            aggregation_children=(),
            readers=(),
            last_antenna_group=None,
            raw_sha256=_digest({item.raw_sha256 for item in rejected if item.raw_sha256}),
            reads_total=sum(item.read_count for item in rejected),
            epcs_over_cap=0,
            rules_applied=(f"portal:{state.config.name}", "rejected_outside_session"),
        )

    def events_for(self, portal_pass: PortalPass, driver: str) -> list[events_pb2.Event]:
        """`pass_to_events` with this engine's gateway id, read points and zone."""
        return pass_to_events(
            portal_pass, gateway_id=self.gateway_id, read_points=self._read_points, zone=self.zone, driver=driver
        )

    def _late_duplicate(self, state: _PortalState, read: TagRead, epc: str, arrival: datetime) -> bool:
        """Whether `read` is a late read of a pass (here or next door) that emitted its EPC: then count it."""
        if not state.emitted and not state.neighbours:
            return False
        horizon = timedelta(milliseconds=state.config.late_read_horizon_ms)
        for owner in (state, *(self._portals[name] for name in sorted(state.neighbours))):
            for record in owner.emitted_by_epc.get(epc, ()):
                # The read time on the pass's readers' clock, which the pass's span and offset are in.
                seen_at = read.seen_at + self._clock_shift(read.reader, record)
                # Late: it reached us at least an idle gap later than that pass's own reads, read time for
                # read time, so it cannot have been part of the pass when it was live.
                late_by = arrival - (seen_at + record.arrival_offset)
                if late_by >= state.idle and _continues(record, seen_at, horizon, state.idle):
                    record.continued_until = max(record.continued_until, seen_at)
                    self._count_late(state, owner, record, read, late_by)
                    return True
        return False

    def _clock_shift(self, reader: str, record: _EmittedPass) -> timedelta:
        """What turns a read time of `reader` into one of the clock `record`'s span is in.

        Nothing for a reader of the pass itself. Another reader (the neighbour door's, a cross-read) may
        run on a different clock: its own learned offset against the pass's converts through gateway
        time. A reader not heard live before has none yet; its clock is taken to agree with the pass's
        readers (a buffer it replays first is then judged by the pass's offset).
        """
        clock = self._reader_clocks.get(reader)
        if reader in record.readers or clock is None:
            return timedelta(0)
        return clock.offset - record.arrival_offset

    def _count_late(
        self, state: _PortalState, owner: _PortalState, record: _EmittedPass, read: TagRead, late_by: timedelta
    ) -> None:
        state.counters["late_reads_dropped"] += 1
        record.late_reads += 1
        if record.late_reads > 1:
            return
        log.warning(
            "portal %s: late reads of pass %d of %s (read %s to %s) dropped: it emitted their EPCs already",
            state.config.name,
            record.number,
            owner.config.name,
            record.started_at.isoformat(),
            record.ended_at.isoformat(),
            extra={
                "portal": state.config.name,
                "pass_portal": owner.config.name,
                "pass_number": record.number,
                "reader": read.reader,
                "late_by_s": round(late_by.total_seconds(), 3),
            },
        )

    def _outside_session(self, state: _PortalState, read: TagRead, decoded: DecodedEpc) -> None:
        state.counters["reads_outside_session"] += 1
        if decoded.valid:
            return
        if decoded.epc_hex not in state.orphan_rejected and len(state.orphan_rejected) >= ORPHAN_REJECTED_MAX:
            state.counters["rejected_over_cap"] += 1
            return
        _merge_rejection(state.orphan_rejected, _rejection(read, decoded))

    def _record(
        self,
        state: _PortalState,
        session: _Session,
        read: TagRead,
        decoded: DecodedEpc,
        group: AntennaGroup,
        arrival: datetime,
    ) -> None:
        session.last_arrival = max(session.last_arrival, arrival)
        session.started_at = min(session.started_at, read.seen_at)
        session.ended_at = max(session.ended_at, read.seen_at)
        if read.raw_sha256 and len(session.raw_digests) < RAW_DIGESTS_MAX:
            session.raw_digests.add(read.raw_sha256)
        key = decoded.epc_hex
        known = key in session.epcs or key in session.rejected
        if not known and len(session.epcs) + len(session.rejected) >= state.config.session_epcs_max:
            session.epcs_over_cap += 1
            state.counters["epcs_over_cap"] += 1
            return
        if not decoded.valid:
            _merge_rejection(session.rejected, _rejection(read, decoded))
            return
        track = session.epcs.get(key)
        if track is None:
            track = session.epcs[key] = _EpcTrack(decoded, read.seen_at, read.seen_at, group)
        _add_read(track, read, group)


def _continues(record: _EmittedPass, seen_at: datetime, horizon: timedelta, idle: timedelta) -> bool:
    """Whether a late read at `seen_at` belongs to the passage of `record` (see the module docstring)."""
    if seen_at <= record.ended_at:
        return seen_at >= record.started_at - horizon
    return seen_at <= record.ended_at + horizon and seen_at - record.continued_until < idle


def _remember_emitted(state: _PortalState, record: _EmittedPass) -> None:
    state.emitted.append(record)
    state.emitted_epcs += len(record.epcs)
    for epc in record.epcs:
        state.emitted_by_epc.setdefault(epc, []).append(record)
    while len(state.emitted) > LATE_READ_PASSES_MAX or state.emitted_epcs > LATE_READ_EPCS_MAX:
        _forget_oldest_emitted(state)


def _forget_emitted(state: _PortalState, now: datetime) -> None:
    """Forget the passes older than `late_read_memory_ms` (gateway time)."""
    memory = timedelta(milliseconds=state.config.late_read_memory_ms)
    while state.emitted and state.emitted[0].closed_arrival < now - memory:
        _forget_oldest_emitted(state)


def _forget_oldest_emitted(state: _PortalState) -> None:
    record = state.emitted.popleft()
    state.emitted_epcs -= len(record.epcs)
    for epc in record.epcs:
        records = state.emitted_by_epc[epc]
        records.remove(record)
        if not records:
            del state.emitted_by_epc[epc]


def _rejection(read: TagRead, decoded: DecodedEpc) -> RejectedRead:
    return RejectedRead(
        read.reader, read.antenna, decoded.epc_hex, read.seen_at, read.raw_sha256, decoded.error, read.read_count
    )


def _add_read(track: _EpcTrack, read: TagRead, group: AntennaGroup) -> None:
    seen_at, rssi = read.seen_at, read.peak_rssi_dbm
    track.reads += read.read_count
    track.readers.add(read.reader)
    track.first_at = min(track.first_at, seen_at)
    if seen_at >= track.last_at:
        track.last_at, track.last_group = seen_at, group
    if rssi is not None and (track.peak_rssi is None or rssi > track.peak_rssi):
        track.peak_rssi = rssi
    side = track.groups.get(group)
    if side is None:
        side = track.groups[group] = _GroupTrack(seen_at, seen_at)
    side.reads += read.read_count
    side.first_at = min(side.first_at, seen_at)
    side.last_at = max(side.last_at, seen_at)
    if rssi is not None and (side.peak_rssi is None or rssi > side.peak_rssi):
        side.peak_rssi, side.peak_at = rssi, seen_at


def _merge_rejection(rejected: dict[str, RejectedRead], new: RejectedRead) -> None:
    first = rejected.get(new.epc_hex)
    if first is None:
        rejected[new.epc_hex] = new
        return
    rejected[new.epc_hex] = RejectedRead(
        first.reader,
        first.antenna,
        first.epc_hex,
        first.seen_at,
        first.raw_sha256,
        first.reason,
        first.read_count + new.read_count,
    )


def _screen(config: PortalConfig, epcs: Mapping[str, _EpcTrack]) -> tuple[dict[str, _EpcTrack], list[SuppressedEpc]]:
    """Split a session's EPCs into accepted ones and strays (too few reads, too weak a peak)."""
    accepted: dict[str, _EpcTrack] = {}
    strays: list[SuppressedEpc] = []
    for epc, track in epcs.items():
        if track.reads < config.reads_min:
            detail = f"{track.reads} read(s) < reads_min {config.reads_min}"
            strays.append(SuppressedEpc(epc, "reads_min", track.reads, track.peak_rssi, detail))
        elif track.peak_rssi is not None and track.peak_rssi < config.peak_rssi_dbm_min:
            detail = f"peak {_dbm(track.peak_rssi)} < peak_rssi_dbm_min {_dbm(config.peak_rssi_dbm_min)}"
            strays.append(SuppressedEpc(epc, "peak_rssi_min", track.reads, track.peak_rssi, detail))
        else:
            accepted[epc] = track
    return accepted, strays


def _arbitrate(
    portal: str, epcs: Mapping[str, _EpcTrack], rivals: Sequence[_Evidence]
) -> tuple[dict[str, _EpcTrack], list[SuppressedEpc]]:
    """Keep the EPCs no overlapping neighbour has stronger evidence for; the others are cross-reads."""
    survivors: dict[str, _EpcTrack] = {}
    cross_reads: list[SuppressedEpc] = []
    for epc, track in sorted(epcs.items()):
        winner = _stronger_rival(portal, epc, track.evidence(), rivals)
        if winner is None:
            survivors[epc] = track
            continue
        peak, reads = winner.epcs[epc]
        detail = f"won by {winner.portal} ({_dbm(peak)}, {reads} reads)"
        cross_reads.append(SuppressedEpc(epc, "cross_read", track.reads, track.peak_rssi, detail, winner.portal))
    return survivors, cross_reads


def _split(session: _Session, accepted: Mapping[str, _EpcTrack], idle: timedelta) -> list[list[_EpcTrack]]:
    """A time-window session's accepted EPCs in runs with no gap of `idle` between them (at least one run).

    Cross-reads from a busy neighbour can bridge the quiet gap between two loads at this door and hold one
    session open across both; once arbitration has removed them, the gap shows again and each load gets
    its own pass (and direction). Photo-eyes bound GPI sessions: those are never split.
    """
    tracks = sorted(accepted.values(), key=lambda track: (track.first_at, track.decoded.epc_hex))
    if session.kind != "time_window" or not tracks:
        return [tracks]
    runs: list[list[_EpcTrack]] = [[tracks[0]]]
    run_last = tracks[0].last_at
    for track in tracks[1:]:
        if track.first_at - run_last >= idle:
            runs.append([])
        runs[-1].append(track)
        run_last = max(run_last, track.last_at) if len(runs[-1]) > 1 else track.last_at
    return runs


def _span(tracks: Sequence[_EpcTrack]) -> tuple[datetime, datetime]:
    return min(track.first_at for track in tracks), max(track.last_at for track in tracks)


def _nearest(spans: Sequence[tuple[datetime, datetime]], moment: datetime) -> int:
    """Index of the span that contains `moment`, or is closest to it."""

    def distance(span: tuple[datetime, datetime]) -> timedelta:
        return max(span[0] - moment, moment - span[1], timedelta(0))

    return min(range(len(spans)), key=lambda index: distance(spans[index]))


def _stronger_rival(portal: str, epc: str, mine: tuple[float, int], rivals: Iterable[_Evidence]) -> _Evidence | None:
    """The rival with the strongest evidence for `epc` if it beats ours: (peak RSSI, reads), then name."""
    best: _Evidence | None = None
    for rival in rivals:
        theirs = rival.epcs.get(epc)
        if theirs is None:
            continue
        beats_mine = theirs > mine or (theirs == mine and rival.portal < portal)
        if beats_mine and (best is None or theirs > best.epcs[epc]):
            best = rival
    return best


def _vote(config: PortalConfig, track: _EpcTrack) -> Direction:
    """One EPC's direction from its antenna timing, or "unknown" when the evidence is too thin."""
    outside, inside = track.groups.get("outside"), track.groups.get("inside")
    reads_min = config.direction_reads_per_side_min
    if outside is None or inside is None or outside.reads < reads_min or inside.reads < reads_min:
        return "unknown"
    if outside.peak_at is not None and inside.peak_at is not None:
        outside_at, inside_at = outside.peak_at, inside.peak_at
    else:  # no RSSI on one side: compare first reads, which at least share a meaning on both sides
        outside_at, inside_at = outside.first_at, inside.first_at
    gap_ms = (inside_at - outside_at).total_seconds() * 1000
    if gap_ms > 0 and gap_ms >= config.direction_gap_ms_min:
        return "inbound"
    if gap_ms < 0 and -gap_ms >= config.direction_gap_ms_min:
        return "outbound"
    return "unknown"


def _portal_object(config: PortalConfig, track: _EpcTrack) -> PortalObject:
    return PortalObject(
        epc=track.decoded,
        first_seen_at=track.first_at,
        last_seen_at=track.last_at,
        read_count=track.reads,
        peak_rssi_dbm=track.peak_rssi,
        last_antenna_group=track.last_group,
        direction_vote=_vote(config, track),
    )


def _direction(session: _Session, objects: Sequence[PortalObject]) -> tuple[Direction, DirectionEvidence, list[str]]:
    rules: list[str] = []
    if session.kind == "gpi":
        if len(session.eye_order) == 2:
            direction: Direction = "inbound" if session.eye_order[0] == "outside" else "outbound"
            return direction, "gpi", ["direction:gpi"]
        rules.append("direction:gpi_incomplete")  # one beam only: fall back on the antennas
    votes = Counter(item.direction_vote for item in objects if item.direction_vote != "unknown")
    decided = sum(votes.values())
    if decided == 0:
        return "unknown", "none", [*rules, "direction:unknown"]
    leader, count = votes.most_common(1)[0]
    if count / decided >= DIRECTION_VOTE_SHARE_MIN:
        return leader, "antenna_timing", [*rules, "direction:antenna_timing"]
    return "unknown", "antenna_timing", [*rules, "direction:antenna_timing", "direction:unknown"]


def _aggregation(
    objects: Sequence[PortalObject],
) -> tuple[PortalObject | None, tuple[PortalObject, ...], list[str]]:
    ssccs = [item for item in objects if item.epc.scheme == "sscc-96"]
    sgtins = tuple(item for item in objects if item.epc.scheme == "sgtin-96")
    if not sgtins or not ssccs:
        return None, (), []
    if len(ssccs) > 1:
        return None, (), [f"aggregation:ambiguous:{len(ssccs)}_sscc"]
    return ssccs[0], sgtins, ["aggregation:sscc_parent"]


def _digest(raw_digests: Iterable[str]) -> str:
    digests = sorted(raw_digests)
    if not digests:
        return ""
    return hashlib.sha256("\n".join(digests).encode("ascii", "replace")).hexdigest()


def _dbm(value: float) -> str:
    return "no RSSI" if value == _NO_RSSI else f"{value:.1f} dBm"


# --- events --------------------------------------------------------------------------------------------


def _identified(item: PortalObject) -> events_pb2.IdentifiedObject:
    epc = item.epc
    return events_pb2.IdentifiedObject(
        id=epc.canonical_id,
        epc_uri=epc.pure_identity_uri,
        epc_hex=epc.epc_hex,
        gtin=epc.gtin,
        serial=epc.serial if epc.scheme == "sgtin-96" else "",  # IdentifiedObject.serial is AI (21)
        sscc=epc.sscc,
    )


def pass_to_events(
    portal_pass: PortalPass,
    *,
    gateway_id: str,
    read_points: Mapping[str, ReadPointConfig],
    zone: zoneinfo.ZoneInfo,
    driver: str,
) -> list[events_pb2.Event]:
    """The events a pass means: an ObjectEvent, plus an AggregationEvent when the pass found a parent.

    No accepted objects → no events. `driver` is the reader driver's registry key (lineage). event_id and
    seq stay empty: the outbox assigns them.
    """
    if not portal_pass.objects:
        return []
    portal = portal_pass.portal
    local_end = portal_pass.ended_at.astimezone(zone)
    common = events_pb2.Event(
        gateway_id=gateway_id,
        event_time_offset_minutes=offset_minutes(local_end),
        event_class=events_pb2.EVENT_CLASS_MOVEMENT,
        read_point=events_pb2.ReadPoint(
            device_id=",".join(portal_pass.readers), antenna=portal_pass.last_antenna_group or ""
        ),
        lineage=events_pb2.Lineage(driver=driver, raw_sha256=portal_pass.raw_sha256),
    )
    common.event_time.FromDatetime(portal_pass.ended_at)
    common.lineage.rules_applied.extend(portal_pass.rules_applied)
    if portal_pass.direction == "unknown":
        common.read_point.id = portal.biz_location
        common.biz_location = portal.biz_location
        common.action = events_pb2.ACTION_OBSERVE
        common.biz_step = events_pb2.BIZ_STEP_OTHER
    else:
        name = portal.inbound_read_point if portal_pass.direction == "inbound" else portal.outbound_read_point
        point = read_points[name]
        common.read_point.id = point.id
        common.biz_location = point.biz_location
        common.action = events_pb2.Action.Value(f"ACTION_{point.action}")
        common.biz_step = events_pb2.BizStep.Value(f"BIZ_STEP_{point.biz_step.upper()}")
        if point.disposition:
            common.disposition = events_pb2.Disposition.Value(f"DISPOSITION_{point.disposition.upper()}")
        common.lineage.rules_applied.append(f"read_point:{point.name}")
    object_event = events_pb2.Event()
    object_event.CopyFrom(common)
    object_event.type = events_pb2.EVENT_TYPE_OBJECT
    object_event.objects.extend(_identified(item) for item in portal_pass.objects)
    events = [object_event]
    if portal_pass.aggregation_parent is not None:
        aggregation = events_pb2.Event()
        aggregation.CopyFrom(common)
        aggregation.type = events_pb2.EVENT_TYPE_AGGREGATION
        aggregation.action = events_pb2.ACTION_OBSERVE  # inferred from co-presence, not a packing step
        aggregation.parent.CopyFrom(_identified(portal_pass.aggregation_parent))
        aggregation.objects.extend(_identified(item) for item in portal_pass.aggregation_children)
        events.append(aggregation)
    return events
