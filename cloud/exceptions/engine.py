"""The exception engine: runs the rules, keeps one exception per (rule, subject), feeds the hub.

Two ways in:
- `on_commit(events)`, the ingest service's post-commit hook: keeps the climate readings of
  SENSOR events when an excursion rule is configured (their sensor times moved onto the cloud's
  clock by the gateway's measured clock offset, so the rule can compare them with now), judges
  every item of a movement event for unexpected movement and notes where it stands since when,
  for the dwell rule (`sighting`), then asks the clock loop for an early sweep (within
  `commit_delay_ms`) so the state rules see the new on-hand, positions and readings without
  slowing the batch down.
- `sweep()`, on the clock (`run()`, every `sweep_interval_ms`, owned by CloudServer): every
  state rule over a fresh read model; the open exceptions of a rule it no longer reports are
  cleared; then the clock's own work (shelves expiring, escalations) and pruning old readings.
And the operators' actions: `acknowledge`, `resolve`, `shelve`.

A sweep plans outside any write transaction (read model, open exceptions and on-delays read
with `Store.read`, then pure planning of which keys change), then applies the plan in chunks of
`SWEEP_CHUNK_KEYS` keys, each chunk its own write transaction, in key order (one lock order for
every writer). So a sweep's size is not bounded by `operation_timeout_ms`, and the engine lock,
which the ingest hook needs too, is held for one chunk at a time, never for a whole sweep. Every
write is followed, under that asyncio lock, by publishing to the hub. Sweeps are at least
`min_sweep_gap_s` apart, however often ingest asks for one.

The hub is fed from the database, not from this process's writes: after each write, and every
`FOLLOW_INTERVAL_S` (`run()`), `catch_up` reads `exception_transitions` past the last
transition_id it published, each with its exception as it is now, and publishes them in that
order. So a subscriber connected to any aggregator sees every raise, clear, escalation and
operator action, whichever aggregator made it (with several aggregators on one PostgreSQL
database each still sweeps; the losers of a race write nothing and publish what the winner
wrote). PostgreSQL hands out transition_ids at insert, not at commit, so an id skipped over is
looked for again for `FEED_HOLE_WAIT_S` (a rolled-back transaction leaves it missing for ever).
Changes that record no transition (a priority or quantity moving on an open exception) are
published by the aggregator that wrote them only.

Writes race safely with another aggregator on the same PostgreSQL database: see
`cloud.exceptions.store` (unique open key, version check); a lost race re-reads the row and
applies the change again, up to `WRITE_ATTEMPTS_MAX` times. The clock is injected
(`cloud.timestamps.Clock`), so tests drive time.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, replace
from typing import Literal

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
from cloud.store import GatewayRecord, OnHandRecord, PositionRecord, Sql, Store, StreamState
from cloud.store.records import POSITION_COLUMNS, position_from_row
from cloud.timestamps import Clock, system_clock_us, to_micros

__all__ = ["ExceptionEngine", "ExceptionNotFound", "MasterDataSource", "SweepReport", "sensor_readings"]

log = logging.getLogger(__name__)

WRITE_ATTEMPTS_MAX = 5
# An active exception's last_seen is rewritten at most this often when nothing else changed.
LAST_SEEN_REFRESH_US = 60 * 1_000_000
ON_HAND_ROWS_MAX = 200_000
POSITIONS_MAX = 200_000
# Keys written per sweep transaction: a chunk commits in a fraction of a second on either store.
SWEEP_CHUNK_KEYS = 200
# The hub's feed from exception_transitions (see the module docstring).
FOLLOW_INTERVAL_S = 0.25
FEED_ROWS_MAX = 1000
FEED_ROUNDS_MAX = 100  # per catch-up; the rest waits for the next one
FEED_HOLE_WAIT_S = 30.0  # well beyond operation_timeout_ms, which bounds every write transaction
FEED_HOLES_MAX = 1000  # ids looked for again at once (each is a parameter of the feed query)
MICROS_PER_SECOND = 1_000_000
_ON_HAND_KINDS = frozenset({"stockout", "excess", excursion.KIND})
_GATEWAY_KINDS = frozenset({stale_feed.KIND, seq_gap.KIND})

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


@dataclass(frozen=True, slots=True)
class _Step:
    """One planned write for one open key: its condition observed (raise or update), its exception
    settled because the condition is gone, or an on-delay started or dropped."""

    key: str
    action: Literal["observe", "inactive", "set_pending", "drop_pending"]
    condition: Condition | None = None
    record: ExceptionRecord | None = None  # as planned; the write re-reads it if it changed since


def min_sweep_gap_s(sweep_interval_ms: int, commit_delay_ms: int) -> float:
    """The least time between the end of one sweep and the start of the next: at least the commit
    delay, and a fifth of the interval, so steady ingest cannot keep the engine sweeping."""
    return max(commit_delay_ms, sweep_interval_ms / 5) / 1000


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
        # The hub's feed: the last transition_id published (None until the first write or catch-up),
        # and ids skipped over that may still commit, with when they were first missed.
        self._feed_after: int | None = None
        self._feed_holes: dict[int, float] = {}

    # ---- the clock -----------------------------------------------------------------------

    def request_sweep(self) -> None:
        """Ask `run()` to sweep soon (after `commit_delay_ms`) instead of at its next interval."""
        self._wake.set()

    async def run(self) -> None:
        """Sweep every `sweep_interval_ms`, or soon after a commit, and follow what other
        aggregators record (`catch_up` every `FOLLOW_INTERVAL_S`); until cancelled."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._follow(), name="exception-feed")
            await self._sweeps()

    async def _follow(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(FOLLOW_INTERVAL_S)
            try:
                await self.catch_up()
            except StoreError as exc:
                if not failing:  # once per outage, not four times a second
                    log.warning("cannot read exception changes for subscribers; retrying", extra={"error": str(exc)})
                failing = True
            except Exception:
                log.exception("reading exception changes for subscribers failed; retrying")
            else:
                failing = False

    async def _sweeps(self) -> None:
        interval_s = self.section.sweep_interval_ms / 1000
        gap_s = min_sweep_gap_s(self.section.sweep_interval_ms, self.section.commit_delay_ms)
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                async with asyncio.timeout(interval_s):
                    await self._wake.wait()
                # Let a burst of batches land, and keep sweeps `gap_s` apart under steady ingest.
                await asyncio.sleep(max(self.section.commit_delay_ms / 1000, gap_s - (loop.time() - started)))
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
        """Evaluate every state rule now, apply the results, then escalations, shelves and pruning.

        Chunk by chunk (see the module docstring): a failure stops the sweep, with the chunks before
        it committed and published; the next sweep plans again from what is stored."""
        now_us = self._clock()
        master = await self._master_data()
        model, kinds = await self._read_model(now_us, master, self.rules.kinds() & STATE_RULES.keys())
        conditions = [condition for kind in kinds for condition in STATE_RULES[kind](model)]
        async with self._store.read() as sql:
            known, pending = await self._load_state(sql, conditions, kinds)
        steps = self._plan(conditions, kinds, known, pending, master, now_us)
        changes: list[ExceptionChange] = []
        for start in range(0, len(steps), SWEEP_CHUNK_KEYS):
            changes += await self._write_steps(steps[start : start + SWEEP_CHUNK_KEYS], master, now_us)
        async with self._store.read() as sql:
            due = [record for record in await repo.load_due(sql, now_us) if lifecycle.tick(record, now_us) is not None]
        due.sort(key=lambda record: record.key)  # the lock order of every other sweep write
        for start in range(0, len(due), SWEEP_CHUNK_KEYS):
            changes += await self._write_ticks(due[start : start + SWEEP_CHUNK_KEYS], now_us)
        async with self._store.write() as sql:
            await repo.prune_readings(sql, now_us - self.section.sensor_retention_s * MICROS_PER_SECOND)
        return SweepReport(len(conditions), tuple(changes))

    async def _write_steps(self, steps: Sequence[_Step], master: MasterData, now_us: int) -> list[ExceptionChange]:
        async def work(sql: Sql) -> list[ExceptionChange]:
            return await self._execute(sql, steps, master, now_us)

        return await self._committed(work)

    async def _write_ticks(self, records: Sequence[ExceptionRecord], now_us: int) -> list[ExceptionChange]:
        async def work(sql: Sql) -> list[ExceptionChange]:
            changes = []
            for record in records:
                change = await self._settle(sql, record, lambda current: lifecycle.tick(current, now_us), now_us)
                if change is not None:
                    changes.append(change)
            return changes

        return await self._committed(work)

    async def _committed(self, work: Callable[[Sql], Awaitable[list[ExceptionChange]]]) -> list[ExceptionChange]:
        """`work` in one write transaction under the engine lock, then its changes published."""
        async with self._lock:
            if self._feed_after is None:  # before our first write, or we would not publish it
                await self._start_feed()
            async with self._store.write() as sql:
                changes = await work(sql)
            try:
                await self._catch_up()
            except StoreError as exc:  # committed all the same: `run()`'s next catch-up publishes it
                log.warning("cannot read exception changes for subscribers yet", extra={"error": str(exc)})
            # What recorded no transition is not in the feed: only this aggregator's subscribers hear of it.
            self.hub.publish([change for change in changes if not change.quiet and not change.transitions])
        return changes

    # ---- the hub's feed ------------------------------------------------------------------

    async def catch_up(self) -> None:
        """Publish every transition recorded (by any aggregator) since the last one published."""
        async with self._lock:
            if self._feed_after is None:
                await self._start_feed()
            await self._catch_up()

    async def _start_feed(self) -> None:
        async with self._store.read() as sql:
            self._feed_after = await repo.last_transition_id(sql)

    async def _catch_up(self) -> None:
        assert self._feed_after is not None
        if not self.hub.subscriber_count:  # nobody to tell: skip ahead rather than read it all
            async with self._store.read() as sql:
                self._feed_after = max(self._feed_after, await repo.last_transition_id(sql))
            self._feed_holes.clear()
            return
        now = asyncio.get_running_loop().time()
        for transition_id, since in list(self._feed_holes.items()):
            if now - since > FEED_HOLE_WAIT_S:
                del self._feed_holes[transition_id]
        for _ in range(FEED_ROUNDS_MAX):
            async with self._store.read() as sql:
                rows = await repo.transitions_since(sql, self._feed_after, sorted(self._feed_holes), FEED_ROWS_MAX)
            changes: list[ExceptionChange] = []
            for transition_id, transition, record in rows:
                self._feed_holes.pop(transition_id, None)
                if transition_id > self._feed_after:
                    if transition_id - self._feed_after - 1 <= FEED_HOLES_MAX - len(self._feed_holes):
                        self._feed_holes.update(
                            (skipped, now) for skipped in range(self._feed_after + 1, transition_id)
                        )
                    self._feed_after = transition_id
                created = transition.action == "raise"
                if changes and changes[-1].record.exception_id == record.exception_id:
                    last = changes[-1]
                    changes[-1] = replace(
                        last, transitions=(*last.transitions, transition), created=last.created or created
                    )
                else:
                    changes.append(ExceptionChange(record, (transition,), created))
            self.hub.publish(changes)
            if len(rows) < FEED_ROWS_MAX:
                break

    # ---- ingest --------------------------------------------------------------------------

    async def on_commit(self, events: Sequence[events_pb2.Event]) -> None:
        """Post-commit hook: keep readings, judge movements, then ask for an early sweep."""
        climate = [event for event in events if event.sensor_reports] if excursion.KIND in self.rules.kinds() else []
        movers = [event for event in events if event.objects or event.HasField("parent")]
        judge = bool(self.rules.kinds() & {UNEXPECTED_MOVEMENT, dwell.KIND}) and bool(movers)
        if climate or judge:
            now_us = self._clock()
            master = await self._master_data() if judge else MasterData.empty()

            async def work(sql: Sql) -> list[ExceptionChange]:
                if climate:
                    # Readings are kept on the cloud's clock: the rule compares them with now.
                    offsets = await _gateway_clock_offsets(sql, sorted({event.gateway_id for event in climate}))
                    await repo.add_readings(
                        sql,
                        [
                            replace(reading, reading_time_us=reading.reading_time_us + offsets.get(event.gateway_id, 0))
                            for event in climate
                            for reading in sensor_readings(event)
                        ],
                    )
                return await self._judge_movements(sql, movers, master, now_us) if judge else []

            await self._committed(work)
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
        async def work(sql: Sql) -> list[ExceptionChange]:
            for _ in range(WRITE_ATTEMPTS_MAX):
                record = await repo.get_exception(sql, exception_id)
                if record is None:
                    raise ExceptionNotFound(f"no exception {exception_id[:80]!r}")
                change = action(record, self._clock())
                written = await self._write(sql, record, change)
                if written is not None:
                    return [written]
            raise StoreError(f"exception {exception_id} kept changing under us; try again")

        (written,) = await self._committed(work)
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
        full_kinds: Collection[str],
        master: MasterData,
        now_us: int,
    ) -> list[ExceptionChange]:
        """Plan and write conditions in one transaction (the ingest hook's few)."""
        known, pending = await self._load_state(sql, conditions, full_kinds)
        return await self._execute(
            sql, self._plan(conditions, full_kinds, known, pending, master, now_us), master, now_us
        )

    async def _load_state(
        self, sql: Sql, conditions: Sequence[Condition], full_kinds: Collection[str]
    ) -> tuple[dict[str, ExceptionRecord], dict[str, int]]:
        """The open exceptions and running on-delays that planning `conditions` needs."""
        known = await repo.load_open_of_rules(sql, sorted(full_kinds))
        known.update(await repo.load_open(sql, [c.key for c in conditions if c.key not in known]))
        # Every on-delay running for a rule evaluated in full: one whose condition is gone starts over.
        pending = await repo.load_pending(sql, [c.key for c in conditions], sorted(full_kinds))
        return known, pending

    def _plan(
        self,
        conditions: Sequence[Condition],
        full_kinds: Collection[str],
        known: dict[str, ExceptionRecord],
        pending: dict[str, int],
        master: MasterData,
        now_us: int,
    ) -> list[_Step]:
        """Which keys change, without writing: the steps, in key order (one lock order for every
        writer). For `full_kinds` (evaluated completely), an open exception whose condition was not
        reported has returned to normal. A key whose exception would not change gets no step."""
        steps: list[_Step] = []
        reported: set[str] = set()
        active: set[str] = set()
        for condition in conditions:
            key = condition.key
            reported.add(key)
            record = known.get(key)
            if record is not None and record.is_closed:
                record = None
            if not condition.active:
                if key in pending:
                    steps.append(_Step(key, "drop_pending"))
                if record is not None and lifecycle.observe_inactive(record, now_us) is not None:
                    steps.append(_Step(key, "inactive", record=record))
                continue
            active.add(key)
            if record is None:
                on_delay_us = round(condition.policy.on_delay_s * MICROS_PER_SECOND)
                since_us = pending.get(key)
                if on_delay_us > 0 and since_us is None:
                    steps.append(_Step(key, "set_pending", condition))
                    continue
                if on_delay_us > 0 and since_us is not None and now_us - since_us < on_delay_us:
                    continue
                if since_us is not None:
                    steps.append(_Step(key, "drop_pending"))
                steps.append(_Step(key, "observe", condition))
            elif self._observed(condition, master, now_us)(record) is not None:
                steps.append(_Step(key, "observe", condition, record))
        for key in set(known) - reported:
            record = known[key]
            if record.rule not in full_kinds or record.is_closed:
                continue
            if lifecycle.observe_inactive(record, now_us) is not None:
                steps.append(_Step(key, "inactive", record=record))
        steps.extend(_Step(key, "drop_pending") for key in pending if key not in active and key not in reported)
        steps.sort(key=lambda step: step.key)
        return steps

    async def _execute(
        self, sql: Sql, steps: Sequence[_Step], master: MasterData, now_us: int
    ) -> list[ExceptionChange]:
        """Write planned steps; each exception write re-reads and re-applies if it changed since planning."""
        changes: list[ExceptionChange] = []
        await repo.delete_pending(sql, [step.key for step in steps if step.action == "drop_pending"])
        for step in steps:
            change: ExceptionChange | None = None
            if step.action == "set_pending":
                assert step.condition is not None
                await repo.set_pending(sql, step.condition.rule, step.key, now_us)
            elif step.action == "observe":
                assert step.condition is not None
                change = await self._upsert(sql, step.key, step.record, self._observed(step.condition, master, now_us))
            elif step.action == "inactive":
                assert step.record is not None
                change = await self._settle(
                    sql, step.record, lambda current: lifecycle.observe_inactive(current, now_us), now_us
                )
            if change is not None:
                changes.append(change)
        return changes

    def _observed(
        self, condition: Condition, master: MasterData, now_us: int
    ) -> Callable[[ExceptionRecord | None], ExceptionChange | None]:
        """What an active condition does to its exception (None: nothing worth writing)."""
        score = score_condition(
            master, condition.gtin, condition.location, condition.quantity_at_stake, condition.severity
        )

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

        return compute

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

    # ---- the read model ------------------------------------------------------------------

    async def _read_model(
        self, now_us: int, master: MasterData, wanted: Collection[str]
    ) -> tuple[ReadModel, list[str]]:
        """The read model, and the kinds to evaluate with it, in order: those wanted, less any whose
        rows came back truncated (a truncated read model would clear real exceptions and raise
        false ones, so those kinds sit this sweep out, with an error logged)."""
        kinds = set(wanted)
        on_hand: list[OnHandRecord] = []
        if kinds & _ON_HAND_KINDS:
            on_hand = await self._store.list_on_hand(limit=ON_HAND_ROWS_MAX + 1)
            if len(on_hand) > ON_HAND_ROWS_MAX:
                skipped = sorted(kinds & _ON_HAND_KINDS)
                log.error(
                    "too many on-hand rows: these rules sit this sweep out, their exceptions left as they are",
                    extra={"rows_max": ON_HAND_ROWS_MAX, "rules": skipped},
                )
                kinds -= _ON_HAND_KINDS
                on_hand = []
        gateways = await self._store.list_gateways() if kinds & (_GATEWAY_KINDS | {dwell.KIND}) else []
        positions: list[PositionRecord] = []
        placements: dict[str, tuple[str, int]] = {}
        readings: list[SensorReading] = []
        alarms: list[GatewayAlarm] = []
        async with self._store.read() as sql:
            if dwell.KIND in kinds:
                positions = await _dwell_positions(sql, _dwell_places(self.rules, master), POSITIONS_MAX + 1)
                if len(positions) > POSITIONS_MAX:
                    log.error(
                        "too many items at dwell places: the dwell rule sits this sweep out, its exceptions left alone",
                        extra={"positions_max": POSITIONS_MAX},
                    )
                    kinds.discard(dwell.KIND)
                    positions = []
                states = await repo.load_item_states(sql, [position.object_id for position in positions])
                placements = {object_id: (state.place, state.placed_at_us) for object_id, state in states.items()}
            if excursion.KIND in kinds:
                since_us = now_us - self.section.sensor_retention_s * MICROS_PER_SECOND
                readings = await repo.load_readings(sql, since_us)
            if gateway_alarm.KIND in kinds:
                # No fallback: a failed read fails the sweep, as the other reads do. Reading it
                # as "no alarms" would clear every alarm exception (and lose their acks).
                alarms = await repo.load_gateway_alarms(sql)
        model = ReadModel(
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
        return model, sorted(kinds)


async def _gateway_clock_offsets(sql: Sql, gateway_ids: Sequence[str]) -> dict[str, int]:
    """Per gateway: its clock offset in µs (cloud - gateway) from its most recently heard outbox,
    as `_clock_offsets` takes it from the read model; gateways with none measured are left out."""
    found: dict[str, int] = {}
    for start in range(0, len(gateway_ids), repo.KEYS_PER_STATEMENT):
        chunk = gateway_ids[start : start + repo.KEYS_PER_STATEMENT]
        rows = await sql.fetch_all(
            "SELECT gateway_id, clock_offset_ms FROM gateway_streams "
            f"WHERE gateway_id IN ({', '.join('?' * len(chunk))}) AND clock_offset_ms IS NOT NULL "
            "ORDER BY last_contact_us",
            tuple(chunk),
        )
        found.update((row[0], int(row[1]) * 1000) for row in rows)  # the last contact wins
    return found


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


async def _dwell_positions(sql: Sql, places: Sequence[str], limit: int) -> list[PositionRecord]:
    """Items present and not in transit at `places`, at most `limit` in all."""
    found: list[PositionRecord] = []
    for start in range(0, len(places), repo.KEYS_PER_STATEMENT):
        if len(found) >= limit:
            break
        chunk = places[start : start + repo.KEYS_PER_STATEMENT]
        rows = await sql.fetch_all(
            f"SELECT {POSITION_COLUMNS} FROM positions WHERE biz_location IN ({', '.join('?' * len(chunk))}) "
            "AND present AND NOT in_transit LIMIT ?",
            (*chunk, limit - len(found)),
        )
        found.extend(position_from_row(row) for row in rows)
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
