"""The exception engine: runs the rules, keeps one exception per (rule, subject), feeds the hub.

Two ways in:
- `on_commit(events)`, the ingest service's post-commit hook: keeps the climate readings of
  SENSOR events, judges every item of a movement event for unexpected movement and notes where
  it stands since when, for the dwell rule (`sighting`), then asks the clock loop for an early
  sweep (within `commit_delay_ms`) so the state rules see the new on-hand, positions and
  readings without slowing the batch down.
- `sweep()`, on the clock (`run()`, every `sweep_interval_ms`, owned by CloudServer): every
  state rule over a fresh read model; the open exceptions of a rule it no longer reports are
  cleared; then the clock's own work (shelves expiring, escalations) and pruning old readings.
And the operators' actions: `acknowledge`, `resolve`, `shelve`.

Every write is one transaction; changes are published to the hub after it commits, under one
asyncio lock, so subscribers see them in commit order. Writes race safely with another
aggregator on the same PostgreSQL database: see `cloud.exceptions.store` (unique open key,
version check); a lost race re-reads the row and applies the change again, up to
`WRITE_ATTEMPTS_MAX` times. The clock is injected (`cloud.timestamps.Clock`), so tests drive time.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

from tallyport.v1 import events_pb2

from cloud.errors import CloudError, StoreError
from cloud.exceptions import lifecycle
from cloud.exceptions import store as repo
from cloud.exceptions.config import ExceptionsSection, RuleBook
from cloud.exceptions.hub import ExceptionHub
from cloud.exceptions.models import Condition, ExceptionChange, ExceptionRecord, Transition
from cloud.exceptions.priority import score_condition
from cloud.exceptions.rules import (
    STATE_RULES,
    ReadModel,
    SensorReading,
    dwell,
    excursion,
    gateway_alarm,
    seq_gap,
    stale_feed,
)
from cloud.exceptions.rules.base import GatewayAlarm
from cloud.exceptions.rules.unexpected_movement import KIND as UNEXPECTED_MOVEMENT
from cloud.exceptions.rules.unexpected_movement import ItemState, sighting
from cloud.masterdata.models import MasterData
from cloud.projections import moved_objects
from cloud.store import GatewayRecord, PositionRecord, Sql, Store, StreamState
from cloud.timestamps import Clock, system_clock_us, to_micros

__all__ = ["ExceptionEngine", "ExceptionNotFound", "MasterDataSource", "SweepReport", "sensor_readings"]

log = logging.getLogger(__name__)

WRITE_ATTEMPTS_MAX = 5
# An active exception's last_seen is rewritten at most this often when nothing else changed.
LAST_SEEN_REFRESH_US = 60 * 1_000_000
ON_HAND_ROWS_MAX = 200_000
POSITIONS_MAX = 200_000
MICROS_PER_SECOND = 1_000_000
_ON_HAND_KINDS = frozenset({"stockout", "excess", excursion.KIND})
_GATEWAY_KINDS = frozenset({stale_feed.KIND, seq_gap.KIND})
_POSITION_COLUMNS = (
    "object_id, epc_uri, epc_hex, gtin, sscc, biz_location, read_point_id, biz_step, disposition, "
    "in_transit, present, event_time_us, event_id, gateway_id, seq"
)

# Where master data comes from: CloudServer passes its MasterDataRepository's `snapshot`.
MasterDataSource = Callable[[], Awaitable[MasterData]]


async def _no_master_data() -> MasterData:
    return MasterData.empty()


class ExceptionNotFound(CloudError):
    """No exception has that id (answered NOT_FOUND)."""


@dataclass(frozen=True, slots=True)
class SweepReport:
    """What one sweep did."""

    conditions: int
    changes: tuple[ExceptionChange, ...]


def _new_exception_id() -> str:
    return f"ex-{uuid.uuid4().hex[:16]}"


class ExceptionEngine:
    """Rules in, exceptions out. Start `run()` as a task for the clock; cancel it to stop."""

    def __init__(
        self,
        store: Store,
        section: ExceptionsSection,
        rules: RuleBook,
        *,
        master_data: MasterDataSource = _no_master_data,
        clock: Clock = system_clock_us,
        hub: ExceptionHub | None = None,
        new_id: Callable[[], str] = _new_exception_id,
    ) -> None:
        self._store = store
        self.section = section
        self.rules = rules
        self._master_data = master_data
        self._clock = clock
        self.hub = hub if hub is not None else ExceptionHub(section.subscriber_queue_max)
        self._new_id = new_id
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._alarms_table_missing_logged = False

    # ---- the clock -----------------------------------------------------------------------

    def request_sweep(self) -> None:
        """Ask `run()` to sweep soon (after `commit_delay_ms`) instead of at its next interval."""
        self._wake.set()

    async def run(self) -> None:
        """Sweep every `sweep_interval_ms`, or soon after a commit; until cancelled."""
        interval_s = self.section.sweep_interval_ms / 1000
        while True:
            try:
                async with asyncio.timeout(interval_s):
                    await self._wake.wait()
                await asyncio.sleep(self.section.commit_delay_ms / 1000)  # let a burst of batches land
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.sweep()
            except StoreError as exc:
                log.warning("exception sweep failed; retrying at the next interval", extra={"error": str(exc)})
            except Exception:
                log.exception("exception sweep failed; retrying at the next interval")

    async def sweep(self) -> SweepReport:
        """Evaluate every state rule now, apply the results, then escalations, shelves and pruning."""
        now_us = self._clock()
        master = await self._master_data()
        kinds = sorted(self.rules.kinds() & STATE_RULES.keys())
        model = await self._read_model(now_us, master, frozenset(kinds))
        conditions = [condition for kind in kinds for condition in STATE_RULES[kind](model)]
        conditions.sort(key=lambda condition: condition.key)  # one lock order for every writer
        async with self._lock:
            async with self._store.write() as sql:
                changes = await self._apply(sql, conditions, kinds, master, now_us)
                changes += await self._tick(sql, now_us)
                retention_us = self.section.sensor_retention_s * MICROS_PER_SECOND
                await repo.prune_readings(sql, now_us - retention_us)
            self.hub.publish([change for change in changes if not change.quiet])
        return SweepReport(len(conditions), tuple(changes))

    # ---- ingest --------------------------------------------------------------------------

    async def on_commit(self, events: Sequence[events_pb2.Event]) -> None:
        """Post-commit hook: keep readings, judge movements, then ask for an early sweep."""
        readings = [reading for event in events for reading in sensor_readings(event)]
        movers = [event for event in events if event.objects or event.HasField("parent")]
        judge = bool(self.rules.kinds() & {UNEXPECTED_MOVEMENT, dwell.KIND}) and bool(movers)
        if readings or judge:
            now_us = self._clock()
            master = await self._master_data() if judge else MasterData.empty()
            async with self._lock:
                async with self._store.write() as sql:
                    await repo.add_readings(sql, readings)
                    changes = await self._judge_movements(sql, movers, master, now_us) if judge else []
                self.hub.publish([change for change in changes if not change.quiet])
        if events:
            self.request_sweep()

    async def _judge_movements(
        self, sql: Sql, events: Sequence[events_pb2.Event], master: MasterData, now_us: int
    ) -> list[ExceptionChange]:
        object_ids = [identified.id for event in events for identified in moved_objects(event)]
        states = await repo.load_item_states(sql, object_ids)
        changed: dict[str, ItemState] = {}
        conditions: list[Condition] = []
        for event in events:
            for identified in moved_objects(event):
                condition, state = sighting(event, identified, states.get(identified.id), master, self.rules)
                if state != states.get(identified.id, ItemState(identified.id)):
                    changed[identified.id] = state
                states[identified.id] = state
                if condition is not None:
                    conditions.append(condition)
        await repo.save_item_states(sql, list(changed.values()))
        return await self._apply(sql, conditions, (), master, now_us)

    # ---- operators -----------------------------------------------------------------------

    async def acknowledge(self, exception_id: str, actor: str, reason: str) -> ExceptionChange:
        """Acknowledge; LifecycleError when its state does not allow it, ExceptionNotFound if unknown."""
        return await self._act(
            exception_id, lambda record, now_us: lifecycle.acknowledge(record, actor, reason, now_us)
        )

    async def resolve(self, exception_id: str, actor: str, reason: str) -> ExceptionChange:
        """Resolve (close) by hand."""
        return await self._act(exception_id, lambda record, now_us: lifecycle.resolve(record, actor, reason, now_us))

    async def shelve(self, exception_id: str, actor: str, reason: str, duration_s: float) -> ExceptionChange:
        """Shelve for `duration_s`, capped at `[exceptions] shelve_max_s`."""
        shelve_max_s = float(self.section.shelve_max_s)
        return await self._act(
            exception_id,
            lambda record, now_us: lifecycle.shelve(record, actor, reason, duration_s, shelve_max_s, now_us),
        )

    async def _act(
        self, exception_id: str, action: Callable[[ExceptionRecord, int], ExceptionChange]
    ) -> ExceptionChange:
        async with self._lock:
            async with self._store.write() as sql:
                for _ in range(WRITE_ATTEMPTS_MAX):
                    record = await repo.get_exception(sql, exception_id)
                    if record is None:
                        raise ExceptionNotFound(f"no exception {exception_id[:80]!r}")
                    change = action(record, self._clock())
                    written = await self._write(sql, record, change)
                    if written is not None:
                        break
                else:
                    raise StoreError(f"exception {exception_id} kept changing under us; try again")
            self.hub.publish([written])
        return written

    async def get(self, exception_id: str) -> tuple[ExceptionRecord, list[Transition]]:
        """An exception with its audit trail."""
        async with self._store.read() as sql:
            record = await repo.get_exception(sql, exception_id)
            if record is None:
                raise ExceptionNotFound(f"no exception {exception_id[:80]!r}")
            return record, await repo.transitions_of(sql, exception_id)

    async def list_exceptions(
        self, where: repo.ExceptionFilter, limit: int, after: tuple[float, str] | None = None
    ) -> list[ExceptionRecord]:
        """Exceptions by priority, highest first."""
        async with self._store.read() as sql:
            return await repo.list_exceptions(sql, where, limit, after)

    # ---- applying conditions ---------------------------------------------------------------

    async def _apply(
        self,
        sql: Sql,
        conditions: Sequence[Condition],
        full_kinds: Sequence[str],
        master: MasterData,
        now_us: int,
    ) -> list[ExceptionChange]:
        """Turn conditions into exception changes. For `full_kinds` (evaluated completely), an open
        exception whose condition was not reported has returned to normal."""
        known = await repo.load_open_of_rules(sql, list(full_kinds))
        known.update(await repo.load_open(sql, [c.key for c in conditions if c.key not in known]))
        # Every on-delay running for a rule evaluated in full: one whose condition is gone starts over.
        pending = await repo.load_pending(sql, [c.key for c in conditions if c.active], full_kinds)
        reported: set[str] = set()
        changes: list[ExceptionChange] = []
        for condition in conditions:
            reported.add(condition.key)
            change = await self._apply_one(sql, condition, known.get(condition.key), pending, master, now_us)
            if change is not None:
                changes.append(change)
                known[condition.key] = change.record
        for key in sorted(set(known) - reported):
            record = known[key]
            if record.rule in full_kinds and not record.is_closed:
                change = await self._settle(
                    sql, record, lambda current: lifecycle.observe_inactive(current, now_us), now_us
                )
                if change is not None:
                    changes.append(change)
        active_keys = {c.key for c in conditions if c.active}
        stale_pending = [key for key in pending if key not in active_keys]
        await repo.delete_pending(sql, stale_pending + [c.key for c in conditions if not c.active])
        return changes

    async def _apply_one(
        self,
        sql: Sql,
        condition: Condition,
        record: ExceptionRecord | None,
        pending: dict[str, int],
        master: MasterData,
        now_us: int,
    ) -> ExceptionChange | None:
        if record is not None and record.is_closed:
            record = None
        if not condition.active:
            if record is None:
                return None
            return await self._settle(sql, record, lambda current: lifecycle.observe_inactive(current, now_us), now_us)
        score = score_condition(
            master, condition.gtin, condition.location, condition.quantity_at_stake, condition.severity
        )
        if record is None:
            on_delay_us = round(condition.policy.on_delay_s * MICROS_PER_SECOND)
            if on_delay_us > 0:
                since_us = pending.get(condition.key)
                if since_us is None:
                    await repo.set_pending(sql, condition.rule, condition.key, now_us)
                    pending[condition.key] = now_us
                    return None
                if now_us - since_us < on_delay_us:
                    return None
            pending.pop(condition.key, None)
            await repo.delete_pending(sql, [condition.key])

        def compute(current: ExceptionRecord | None) -> ExceptionChange | None:
            if current is None:
                return lifecycle.raise_exception(condition, score, now_us, self._new_id())
            change = lifecycle.observe_active(current, condition, score, now_us)
            if change.transitions or _significant(current, change.record):
                return change
            # Only last_seen and the wording moved: write now and then, and tell no subscriber.
            if now_us - current.last_seen_us >= LAST_SEEN_REFRESH_US:
                return replace(change, quiet=True)
            return None

        return await self._upsert(sql, condition.key, record, compute)

    async def _settle(
        self,
        sql: Sql,
        record: ExceptionRecord,
        compute: Callable[[ExceptionRecord], ExceptionChange | None],
        now_us: int,
    ) -> ExceptionChange | None:
        """Apply `compute` to an existing exception, re-reading it if another writer got there first."""

        def guarded(current: ExceptionRecord | None) -> ExceptionChange | None:
            return None if current is None or current.is_closed else compute(current)

        return await self._upsert(sql, record.key, record, guarded)

    async def _upsert(
        self,
        sql: Sql,
        key: str,
        record: ExceptionRecord | None,
        compute: Callable[[ExceptionRecord | None], ExceptionChange | None],
    ) -> ExceptionChange | None:
        current = record
        for attempt in range(WRITE_ATTEMPTS_MAX):
            if attempt > 0:  # lost a race: see what the other writer left
                current = (await repo.load_open(sql, [key])).get(key)
            change = compute(current)
            if change is None:
                return None
            written = await self._write(sql, current, change)
            if written is not None:
                return written
        raise StoreError(f"exception {key!r} kept changing under us after {WRITE_ATTEMPTS_MAX} attempts")

    async def _write(self, sql: Sql, before: ExceptionRecord | None, change: ExceptionChange) -> ExceptionChange | None:
        """Insert or update with the version check; None if another writer changed it first."""
        if before is None:
            record = replace(change.record, version=1)
            if not await repo.insert_exception(sql, record):
                return None
        else:
            record = replace(change.record, version=before.version + 1)
            if not await repo.update_exception(sql, record, before.version):
                return None
        await repo.insert_transitions(sql, change.transitions)
        return replace(change, record=record)

    async def _tick(self, sql: Sql, now_us: int) -> list[ExceptionChange]:
        changes = []
        for record in await repo.load_due(sql, now_us):
            change = await self._settle(sql, record, lambda current: lifecycle.tick(current, now_us), now_us)
            if change is not None:
                changes.append(change)
        return changes

    # ---- the read model ------------------------------------------------------------------

    async def _read_model(self, now_us: int, master: MasterData, kinds: frozenset[str]) -> ReadModel:
        on_hand = await self._store.list_on_hand(limit=ON_HAND_ROWS_MAX) if kinds & _ON_HAND_KINDS else []
        gateways = await self._store.list_gateways() if kinds & (_GATEWAY_KINDS | {dwell.KIND}) else []
        positions: list[PositionRecord] = []
        placements: dict[str, tuple[str, int]] = {}
        readings: list[SensorReading] = []
        alarms: list[GatewayAlarm] = []
        async with self._store.read() as sql:
            if dwell.KIND in kinds:
                positions = await _dwell_positions(sql, _dwell_places(self.rules, master))
                states = await repo.load_item_states(sql, [position.object_id for position in positions])
                placements = {object_id: (state.place, state.placed_at_us) for object_id, state in states.items()}
            if excursion.KIND in kinds:
                since_us = now_us - self.section.sensor_retention_s * MICROS_PER_SECOND
                readings = await repo.load_readings(sql, since_us)
        if gateway_alarm.KIND in kinds:
            alarms = await self._gateway_alarms()
        return ReadModel(
            now_us=now_us,
            master=master,
            rules=self.rules,
            on_hand=on_hand,
            positions=positions,
            placements=placements,
            gateways=gateways,
            readings=readings,
            alarms=alarms,
            clock_offsets_us=_clock_offsets(gateways),
        )

    async def _gateway_alarms(self) -> list[GatewayAlarm]:
        try:
            async with self._store.read() as sql:
                return await repo.load_gateway_alarms(sql)
        except StoreError as exc:
            # The table belongs to the uplink's migration; a store without it has no alarms to raise.
            if not self._alarms_table_missing_logged:
                log.warning("cannot read gateway_alarms; no gateway alarm exceptions", extra={"error": str(exc)})
                self._alarms_table_missing_logged = True
            return []


def _clock_offsets(gateways: Sequence[GatewayRecord]) -> dict[str, int]:
    """Each gateway's clock offset (cloud - gateway), from its most recently heard outbox."""
    latest: dict[str, StreamState] = {}
    for record in gateways:
        state = record.state
        known = latest.get(state.gateway_id)
        if state.clock_offset_ms is not None and (known is None or state.last_contact_us > known.last_contact_us):
            latest[state.gateway_id] = state
    return {gateway_id: (state.clock_offset_ms or 0) * 1000 for gateway_id, state in latest.items()}


_BOOKKEEPING_FIELDS = frozenset({"last_seen_us", "updated_at_us", "details", "version", "clear_pending_since_us"})


def _significant(before: ExceptionRecord, after: ExceptionRecord) -> bool:
    """Whether anything but bookkeeping (last seen, wording such as a growing duration) changed."""
    return any(
        getattr(before, name) != getattr(after, name)
        for name in ExceptionRecord.__dataclass_fields__
        if name not in _BOOKKEEPING_FIELDS
    )


def _dwell_places(rules: RuleBook, master: MasterData) -> list[str]:
    """Every location a dwell entry covers: named ones and what is under them, or those of its type."""
    places: set[str] = set()
    for entry in rules.entries(dwell.KIND):
        if not entry.enabled:
            continue
        if entry.location:
            places.add(entry.location)
        for location_id in master.locations:
            chain = master.ancestors(location_id)
            if entry.location and any(place.location_id == entry.location for place in chain):
                places.add(location_id)
            if entry.location_type and any(place.location_type == entry.location_type for place in chain):
                places.add(location_id)
    return sorted(places)


async def _dwell_positions(sql: Sql, places: Sequence[str]) -> list[PositionRecord]:
    found: list[PositionRecord] = []
    for start in range(0, len(places), repo.KEYS_PER_STATEMENT):
        chunk = places[start : start + repo.KEYS_PER_STATEMENT]
        rows = await sql.fetch_all(
            f"SELECT {_POSITION_COLUMNS} FROM positions WHERE biz_location IN ({', '.join('?' * len(chunk))}) "
            "AND present AND NOT in_transit LIMIT ?",
            (*chunk, POSITIONS_MAX),
        )
        found.extend(
            PositionRecord(
                object_id=row[0],
                epc_uri=row[1],
                epc_hex=row[2],
                gtin=row[3],
                sscc=row[4],
                biz_location=row[5],
                read_point_id=row[6],
                biz_step=int(row[7]),
                disposition=int(row[8]),
                in_transit=bool(row[9]),
                present=bool(row[10]),
                event_time_us=int(row[11]),
                event_id=row[12],
                gateway_id=row[13],
                seq=int(row[14]),
            )
            for row in rows
        )
    return found


_MEASUREMENTS = {"Temperature": "temperature", "RelativeHumidity": "humidity"}
_TO_CELSIUS: dict[str, Callable[[float], float]] = {
    "": lambda value: value,
    "CEL": lambda value: value,
    "FAH": lambda value: (value - 32.0) * 5.0 / 9.0,
    "KEL": lambda value: value - 273.15,
}


def sensor_readings(event: events_pb2.Event) -> list[SensorReading]:
    """The temperature and humidity readings of an event, in °C and %RH; other kinds and units skipped."""
    readings = []
    location = event.biz_location or event.read_point.id
    for report in event.sensor_reports:
        measurement = _MEASUREMENTS.get(report.type)
        if measurement is None or not location:
            continue
        if measurement == "temperature":
            convert = _TO_CELSIUS.get(report.uom)
            if convert is None:
                continue
            value = convert(report.value)
        elif report.uom in ("", "P1"):
            value = report.value
        else:
            continue
        timed = report.HasField("time") and (report.time.seconds or report.time.nanos)
        reading_time_us = to_micros(report.time) if timed else to_micros(event.event_time)
        device_id = report.device_id or event.read_point.device_id
        readings.append(SensorReading(location, measurement, device_id, reading_time_us, value))
    return readings
