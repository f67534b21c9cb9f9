"""The SQLite outbox: every event the gateway produces is committed here before its source is acknowledged.

Durability (`[outbox] durability`), WAL journal in both modes:

- ``"full"`` (default): ``PRAGMA synchronous=FULL``. A commit returns after the WAL is fsynced, so an
  acknowledged read survives `kill -9` *and* power loss. Loss window: none for committed events.
- ``"normal"``: ``PRAGMA synchronous=NORMAL``. Survives `kill -9` (the OS holds the WAL); on power loss
  or an OS crash the commits since the last checkpoint's fsync may roll back. Loss window: up to the
  last few hundred milliseconds of commits. Faster on slow flash.

Disk cap (`[outbox] bytes_max`): above `SHED_AT_FRACTION` of the cap the outbox sheds sensor samples
first, by halving the oldest half of them (downsampling, never a whole interval), and logs an alarm.
Used bytes are live pages; deleting a sample frees a whole page only when nothing else is on it, and
samples share pages with movements, so near the cap every commit sheds again until no samples are left.
If only movements are left and the cap is reached, new events are refused with OutboxFullError: the
source is not acknowledged (a scanner beeps and resends, an MQTT reader redelivers) and nothing is
dropped silently. Refusal ends once acknowledged deletes bring the size under `RESUME_AT_FRACTION`.
The seqs of shed samples are gaps the cloud records. Each state is an alarm (`edge.alarms`) that reaches
the cloud: `outbox_near_cap` (warning) above `SHED_AT_FRACTION`, `outbox_shedding` (major) once samples
were shed, `outbox_full` (critical) while refusing; the first two clear below `RESUME_AT_FRACTION`.

Damage: a file that does not open or check clean at start is salvaged (`edge.outbox.salvage`): every
readable row moves to a fresh outbox (a new outbox_id), the damaged file is kept aside, and the
`outbox_salvaged` alarm is raised (for `SALVAGE_ALARM_ACTIVE_MS`, across restarts).

Group commit: appenders put their event on a bounded queue and wait; one writer task takes everything
queued, assigns each event its `seq` (the integer primary key, monotonic per outbox) and its `event_id`
(a time-ordered UUIDv7, fixed here once and for all), and commits the group in one transaction. Rows
leave only through `delete_through(seq)` and `delete_committed(seq, ranges)`, which the uplink calls with what
the cloud acknowledged as committed (its contiguous seq and the committed ranges above it).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import random
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

import aiosqlite
from tallyport.v1 import events_pb2

from edge.alarms import AlarmRegistry
from edge.clock import Clock
from edge.errors import OutboxError, OutboxFullError
from edge.event_ids import new_event_id
from edge.outbox.records import (
    DeviceFrame,
    FrameMarker,
    OutboxStats,
    QuarantineRecord,
    Rejected,
)
from edge.outbox.salvage import SALVAGE_META_KEY, finish_interrupted_salvage, inspect_outbox, salvage_outbox
from edge.outbox.schema import MIGRATIONS

log = logging.getLogger(__name__)

Durability = Literal["full", "normal"]

COMMIT_EVENTS_MAX_DEFAULT = 2000
PENDING_SUBMISSIONS_MAX_DEFAULT = 10_000
CLOSE_TIMEOUT_S = 30.0
BYTES_MAX_DEFAULT = 512 * 1024 * 1024
# How long a journaled message's digest is kept to recognise its redelivery: far longer than a broker
# takes to resend an unacknowledged QoS 1 message after the agent restarts.
JOURNAL_MESSAGES_KEPT_MS = 3_600_000
SHED_AT_FRACTION = 0.9
RESUME_AT_FRACTION = 0.8
CAPACITY_CHECK_COMMITS = 8  # the size is measured every this many commits, and on every commit while near the cap
assert RESUME_AT_FRACTION < SHED_AT_FRACTION < 1.0
# How long after a salvage its alarm stays active, restarts included: long enough for a person to see it.
SALVAGE_ALARM_ACTIVE_MS = 24 * 3_600_000
SALVAGE_LOCK_WAIT_S = 60.0  # how long an open waits for another process's salvage of the same outbox
ALARM_NEAR_CAP = "outbox_near_cap"
ALARM_SHEDDING = "outbox_shedding"
ALARM_FULL = "outbox_full"
ALARM_SALVAGED = "outbox_salvaged"


@dataclass
class _Pending:
    """One submission waiting for the next group commit: events, or a rejected read, or an ACK mark."""

    events: Sequence[events_pb2.Event]
    rejected: Rejected | None
    marker: FrameMarker | None
    acked_device: str | None
    # Resolves to the events' seqs, or [quarantine id] for a rejected read, or the journal ids of
    # journaled reads, or [] for an ACK mark.
    future: asyncio.Future[list[int]]
    journal_source: str = ""
    journal_payloads: Sequence[bytes] = ()
    journal_message_digest: str = ""
    consumed_journal_ids: Sequence[int] = ()


@dataclass
class _GroupWrite:
    """Every row one group commit writes, gathered before the transaction opens."""

    events: list[tuple[int, str, int, int, bytes]] = field(default_factory=list)
    quarantine: list[tuple[int, str, str, str, bytes, str]] = field(default_factory=list)
    markers: dict[str, tuple[str, int, int, int]] = field(default_factory=dict)
    acked_devices: list[str] = field(default_factory=list)
    journal: list[tuple[str, int, bytes]] = field(default_factory=list)
    journal_messages: list[tuple[str, str, int]] = field(default_factory=list)
    consumed_journal_ids: list[int] = field(default_factory=list)


class Outbox:
    """A durable, ordered, acknowledged-delete queue of events, plus the edge quarantine.

    Open it with `open_outbox(...)` (an async context manager that owns the writer task).
    """

    def __init__(
        self,
        db: aiosqlite.Connection,
        *,
        path: Path,
        outbox_id: str,
        next_seq: int,
        clock: Clock,
        rng: random.Random,
        commit_events_max: int,
        pending_submissions_max: int,
        bytes_max: int = BYTES_MAX_DEFAULT,
        alarms: AlarmRegistry | None = None,
    ) -> None:
        assert commit_events_max >= 1 and pending_submissions_max >= 1
        self.alarms = alarms if alarms is not None else AlarmRegistry(clock)
        self._db = db
        self.path = path
        self.outbox_id = outbox_id
        self._next_seq = next_seq
        self._clock = clock
        self._rng = rng
        self._commit_events_max = commit_events_max
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue(maxsize=pending_submissions_max)
        # Set after every commit that added events; the uplink waits on it instead of polling.
        self.events_committed = asyncio.Event()
        # One connection serves the writer and the uplink; a transaction spans several awaits, so
        # without this lock a read could see (and send) rows of a group that has not committed yet.
        self._lock = asyncio.Lock()
        self.commits_total = 0
        self.events_total = 0
        self._bytes_max = bytes_max
        self._near_cap = False
        self.full = False  # refusing new events: at the cap with nothing left to shed
        self.shed_total = 0
        self.refused_total = 0

    # -- writing ---------------------------------------------------------------------------------

    async def append(self, event: events_pb2.Event, *, marker: FrameMarker | None = None) -> int:
        """Commit `event` durably and return its seq. Fills `event.seq` and, if empty, `event.event_id`.

        Raises OutboxError if the commit failed; then nothing was stored and the caller must not
        acknowledge the source.
        """
        (seq,) = await self._submit(_Pending([event], None, marker, None, self._future()))
        return seq

    async def append_many(
        self, events: Sequence[events_pb2.Event], *, consumed_journal_ids: Sequence[int] = ()
    ) -> list[int]:
        """Commit several events in one group and return their seqs, in order.

        `consumed_journal_ids` are journaled reads these events were made from: they leave the journal
        in the same transaction, so a restart never replays a read whose event is already stored.
        """
        if not events and not consumed_journal_ids:
            return []
        return await self._submit(
            _Pending(events, None, None, None, self._future(), consumed_journal_ids=consumed_journal_ids)
        )

    async def journal_reads(self, source: str, payloads: Sequence[bytes], *, message_digest: str = "") -> list[int]:
        """Commit raw reads to the journal and return their ids; after this their source may be acked.

        `message_digest` (of the message the reads came in) is remembered for `JOURNAL_MESSAGES_KEPT_MS`,
        so `journaled_message` can tell a redelivery of it.
        """
        if not payloads:
            return []
        return await self._submit(
            _Pending(
                (),
                None,
                None,
                None,
                self._future(),
                journal_source=source,
                journal_payloads=payloads,
                journal_message_digest=message_digest,
            )
        )

    async def journaled_message(self, digest: str) -> bool:
        """Whether a message with this digest had its reads journaled recently."""
        rows = await self._fetch("SELECT 1 FROM journal_messages WHERE digest = ?", (digest,))
        return bool(rows)

    async def journaled_reads(self, after_id: int = 0, limit: int = 10_000) -> list[tuple[int, str, bytes]]:
        """Reads still in the journal (not yet turned into events), oldest first: (id, source, payload)."""
        rows = await self._fetch(
            "SELECT id, source, payload FROM read_journal WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
        )
        return [(int(r[0]), str(r[1]), bytes(r[2])) for r in rows]

    async def quarantine(self, rejected: Rejected, *, marker: FrameMarker | None = None) -> int:
        """Commit a rejected read to the quarantine and return its quarantine id."""
        (quarantine_id,) = await self._submit(_Pending((), rejected, marker, None, self._future()))
        return quarantine_id

    async def mark_frame_acked(self, device: str) -> None:
        """Record that the device received our ACK for its last committed frame."""
        await self._submit(_Pending((), None, None, device, self._future()))

    def _future(self) -> asyncio.Future[list[int]]:
        return asyncio.get_running_loop().create_future()

    async def _submit(self, item: _Pending) -> list[int]:
        await self._queue.put(item)
        return await item.future

    async def run_writer(self) -> None:
        """Take whatever is queued, commit it as one group, resolve the waiters; until closed."""
        while True:
            first = await self._queue.get()
            if first is None:
                return
            group = [first]
            events = len(first.events)
            stop = False
            while events < self._commit_events_max and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    stop = True
                    break
                group.append(item)
                events += len(item.events)
            try:
                await self._commit_group(group)
            except Exception as exc:
                # The writer must outlive any one group: every later append waits on it.
                log.exception("outbox writer: a group failed", extra={"path": str(self.path)})
                error = OutboxError(f"outbox {self.path}: commit failed: {exc}")
                for item in group:
                    if not item.future.done():
                        item.future.set_exception(error)
            if stop:
                return

    async def _commit_group(self, group: list[_Pending]) -> None:
        if self.full:
            group = self._refuse_events(group)
        now_ms = self._clock.unix_ms()
        rows = _GroupWrite()
        seq = self._next_seq
        for item in group:
            for event in item.events:
                event.seq = seq
                if not event.event_id:
                    event.event_id = new_event_id(now_ms, self._rng)
                rows.events.append((seq, event.event_id, event.event_class, now_ms, event.SerializeToString()))
                seq += 1
            if item.rejected is not None:
                rejected = item.rejected
                rows.quarantine.append(
                    (now_ms, rejected.source, rejected.reason_code, rejected.reason, rejected.raw, rejected.digest())
                )
            if item.acked_device is not None:
                rows.acked_devices.append(item.acked_device)
            if item.marker is not None:
                rows.markers[item.marker.device] = (item.marker.raw_sha256, now_ms, 0, int(item.marker.rejected))
            rows.journal.extend((item.journal_source, now_ms, payload) for payload in item.journal_payloads)
            if item.journal_message_digest and item.journal_payloads:
                rows.journal_messages.append((item.journal_message_digest, item.journal_source, now_ms))
            rows.consumed_journal_ids.extend(item.consumed_journal_ids)
        try:
            quarantine_ids, journal_ids = await self._write(rows)
        except OutboxError as exc:
            for item in group:
                for event in item.events:
                    event.seq = 0
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        self._next_seq = seq
        self.commits_total += 1
        self.events_total += len(rows.events)
        quarantine_iter, journal_iter = iter(quarantine_ids), iter(journal_ids)
        for item in group:
            if item.future.done():
                continue
            if item.rejected is not None:
                item.future.set_result([next(quarantine_iter)])
            elif item.journal_payloads:
                item.future.set_result([next(journal_iter) for _ in item.journal_payloads])
            else:
                item.future.set_result([event.seq for event in item.events])
        if rows.events:
            self.events_committed.set()
        if self._near_cap or self.commits_total % CAPACITY_CHECK_COMMITS == 0:
            try:
                await self.check_capacity()
            except OutboxError:
                # Measuring or shedding failed (e.g. the disk itself is full); the next commit tries again.
                log.exception("outbox capacity check failed", extra={"path": str(self.path)})

    def _refuse_events(self, group: list[_Pending]) -> list[_Pending]:
        """Fail every submission that carries events; keep quarantine rows and ACK marks (they are tiny)."""
        kept = []
        for item in group:
            # Journaled reads are refused too: their source then stays unacknowledged (back-pressure to the
            # reader and the broker) instead of growing the journal of a full outbox.
            if item.events or item.journal_payloads:
                self.refused_total += len(item.events) + len(item.journal_payloads)
                if not item.future.done():  # its submitter may have been cancelled meanwhile
                    item.future.set_exception(
                        OutboxFullError(f"outbox {self.path} is full ({self._bytes_max} bytes) with movements only")
                    )
            else:
                kept.append(item)
        return kept

    async def used_bytes(self) -> int:
        """Bytes held by live pages (deleted rows' pages are reused, so the file size alone overstates)."""
        pages = (await self._fetch("PRAGMA page_count", ()))[0][0]
        free = (await self._fetch("PRAGMA freelist_count", ()))[0][0]
        page_size = (await self._fetch("PRAGMA page_size", ()))[0][0]
        return (int(pages) - int(free)) * int(page_size)

    async def check_capacity(self) -> None:
        """Shed sensor samples near the cap; refuse new events at the cap when only movements are left."""
        used = await self.used_bytes()
        self._near_cap = used >= RESUME_AT_FRACTION * self._bytes_max
        if used >= SHED_AT_FRACTION * self._bytes_max:
            self.alarms.raise_alarm(
                ALARM_NEAR_CAP,
                "warning",
                f"outbox above {SHED_AT_FRACTION:.0%} of its {self._bytes_max}-byte cap: the cloud is not draining"
                " it; sensor samples are shed first",
            )
            shed = await self._shed_sensor_samples()
            if shed:
                self.alarms.raise_alarm(
                    ALARM_SHEDDING,
                    "major",
                    f"{self.shed_total} sensor samples downsampled to stay under the outbox cap; movements kept",
                )
                log.warning(
                    "outbox near its cap: sensor samples downsampled",
                    extra={
                        "used_bytes": used,
                        "bytes_max": self._bytes_max,
                        "shed": shed,
                        "shed_total": self.shed_total,
                    },
                )
            elif used >= self._bytes_max and not self.full:
                self.full = True
                self.alarms.raise_alarm(
                    ALARM_FULL,
                    "critical",
                    f"outbox at its {self._bytes_max}-byte cap with movements only: new reads are refused"
                    " (not acknowledged to their devices) until the cloud takes the backlog",
                )
                log.error(
                    "outbox full: refusing new events until the cloud acknowledges the backlog",
                    extra={"used_bytes": used, "bytes_max": self._bytes_max},
                )
        elif used < RESUME_AT_FRACTION * self._bytes_max:
            self.alarms.clear(ALARM_NEAR_CAP)
            self.alarms.clear(ALARM_SHEDDING)
            if self.full:
                self.full = False
                self.alarms.clear(ALARM_FULL, f"outbox below {RESUME_AT_FRACTION:.0%} of its cap: accepting events")
                log.warning("outbox below its cap again: accepting events", extra={"used_bytes": used})

    async def _shed_sensor_samples(self) -> int:
        """Delete every second sample among the oldest half of the sensor samples; return how many."""
        sensor_rows = (
            await self._fetch("SELECT count(*) FROM outbox WHERE event_class = ?", (events_pb2.EVENT_CLASS_SENSOR,))
        )[0][0]
        oldest_half = int(sensor_rows) // 2 or int(sensor_rows)
        if oldest_half == 0:
            return 0
        try:
            async with self._lock:
                cursor = await self._db.execute(
                    "DELETE FROM outbox WHERE seq IN (SELECT seq FROM"
                    " (SELECT seq, row_number() OVER (ORDER BY seq) AS n FROM outbox WHERE event_class = ?"
                    " ORDER BY seq LIMIT ?) WHERE n % 2 = 0 OR ? = 1)",
                    (events_pb2.EVENT_CLASS_SENSOR, oldest_half, int(oldest_half == 1)),
                )
        except sqlite3.Error as exc:
            raise OutboxError(f"outbox {self.path}: shedding failed: {exc}") from exc
        self.shed_total += cursor.rowcount
        return cursor.rowcount

    async def _write(self, rows: _GroupWrite) -> tuple[list[int], list[int]]:
        try:
            async with self._lock:
                return await self._write_locked(self._db, rows)
        except sqlite3.Error as exc:
            log.error("outbox commit failed", extra={"path": str(self.path), "error": str(exc)})
            raise OutboxError(f"outbox {self.path}: commit failed: {exc}") from exc

    @staticmethod
    async def _write_locked(db: aiosqlite.Connection, rows: _GroupWrite) -> tuple[list[int], list[int]]:
        """One transaction; returns the new quarantine ids and journal ids, in submission order."""
        await db.execute("BEGIN IMMEDIATE")
        try:
            if rows.events:
                await db.executemany(
                    "INSERT INTO outbox (seq, event_id, event_class, created_at_ms, payload) VALUES (?, ?, ?, ?, ?)",
                    rows.events,
                )
            quarantine_ids = await _insert_many_returning_ids(
                db,
                "INSERT INTO quarantine (received_at_ms, source, reason_code, reason, raw, raw_sha256)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                rows.quarantine,
            )
            journal_ids = await _insert_many_returning_ids(
                db, "INSERT INTO read_journal (source, received_at_ms, payload) VALUES (?, ?, ?)", rows.journal
            )
            if rows.journal_messages:
                await db.executemany(
                    "INSERT OR IGNORE INTO journal_messages (digest, source, received_at_ms) VALUES (?, ?, ?)",
                    rows.journal_messages,
                )
                await db.execute(
                    "DELETE FROM journal_messages WHERE received_at_ms < ?",
                    (rows.journal_messages[-1][2] - JOURNAL_MESSAGES_KEPT_MS,),
                )
            if rows.consumed_journal_ids:
                await db.executemany(
                    "DELETE FROM read_journal WHERE id = ?", [(read_id,) for read_id in rows.consumed_journal_ids]
                )
            for device in rows.acked_devices:
                await db.execute("UPDATE device_frames SET acked = 1 WHERE device = ?", (device,))
            if rows.markers:
                await db.executemany(
                    "INSERT INTO device_frames (device, raw_sha256, committed_at_ms, acked, rejected)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT(device) DO UPDATE SET"
                    " raw_sha256 = excluded.raw_sha256, committed_at_ms = excluded.committed_at_ms,"
                    " acked = excluded.acked, rejected = excluded.rejected",
                    [(device, *values) for device, values in rows.markers.items()],
                )
            await db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                await db.execute("ROLLBACK")
            raise
        return quarantine_ids, journal_ids

    # -- reading and acknowledging ---------------------------------------------------------------

    async def read_after(self, seq: int, limit: int, before: int | None = None) -> list[tuple[int, bytes]]:
        """Up to `limit` (seq, serialized Event) rows with seq > `seq` (and < `before`, if given), ascending."""
        if before is None:
            rows = await self._fetch("SELECT seq, payload FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit))
        else:
            rows = await self._fetch(
                "SELECT seq, payload FROM outbox WHERE seq > ? AND seq < ? ORDER BY seq LIMIT ?", (seq, before, limit)
            )
        return [(int(row[0]), bytes(row[1])) for row in rows]

    @property
    def newest_seq(self) -> int:
        """The highest seq committed so far (0 before the first), whether or not it is still held."""
        return self._next_seq - 1

    async def delete_through(self, seq: int) -> int:
        """Delete every event with seq <= `seq` (the cloud has committed them); return how many."""
        return await self.delete_committed(seq, ())

    async def delete_committed(self, through_seq: int, ranges: Sequence[tuple[int, int]]) -> int:
        """Delete every event with seq <= `through_seq` or in one of the inclusive (first, last) `ranges`
        (the cloud has committed them), in one statement; return how many."""
        where = " OR ".join(["seq <= ?"] + ["seq BETWEEN ? AND ?"] * len(ranges))
        params = [through_seq] + [seq for pair in ranges for seq in pair]
        try:
            async with self._lock:
                cursor = await self._db.execute(f"DELETE FROM outbox WHERE {where}", params)
        except sqlite3.Error as exc:
            raise OutboxError(f"outbox {self.path}: delete failed: {exc}") from exc
        # Near the cap too, not only when full: on a site gone quiet after the drain no commit comes to
        # clear `outbox_near_cap` / `outbox_shedding`, so the delete that drains the outbox must.
        if (self.full or self._near_cap) and cursor.rowcount:
            try:
                await self.check_capacity()
            except OutboxError:
                # The delete is done; a failed measure or shed (a full disk) must not fail the ack.
                log.exception("outbox capacity check failed", extra={"path": str(self.path)})
        return max(cursor.rowcount, 0)

    def ensure_seq_after(self, seq: int) -> None:
        """Never hand out a seq at or below `seq` (the cloud already holds it for this outbox)."""
        if self._next_seq <= seq:
            log.warning(
                "cloud is ahead of the outbox; skipping seq forward",
                extra={"next_seq": self._next_seq, "cloud_seq": seq},
            )
            self._next_seq = seq + 1

    async def last_frame(self, device: str) -> DeviceFrame | None:
        rows = await self._fetch(
            "SELECT device, raw_sha256, committed_at_ms, acked, rejected FROM device_frames WHERE device = ?", (device,)
        )
        if not rows:
            return None
        row = rows[0]
        return DeviceFrame(str(row[0]), str(row[1]), int(row[2]), bool(row[3]), bool(row[4]))

    async def stats(self) -> OutboxStats:
        row = (
            await self._fetch("SELECT count(*), coalesce(min(seq), 0), coalesce(min(created_at_ms), 0) FROM outbox", ())
        )[0]
        quarantined = (await self._fetch("SELECT count(*) FROM quarantine", ()))[0][0]
        pages = (await self._fetch("PRAGMA page_count", ()))[0][0]
        page_size = (await self._fetch("PRAGMA page_size", ()))[0][0]
        wal = self.path.with_name(self.path.name + "-wal")
        wal_bytes = wal.stat().st_size if wal.exists() else 0
        return OutboxStats(
            events=int(row[0]),
            oldest_seq=int(row[1]),
            newest_seq=self._next_seq - 1,
            oldest_created_at_ms=int(row[2]),
            quarantined=int(quarantined),
            file_bytes=int(pages) * int(page_size) + wal_bytes,
        )

    async def list_events(self, limit: int, after_seq: int = 0) -> list[events_pb2.Event]:
        events = []
        for _seq, payload in await self.read_after(after_seq, limit):
            event = events_pb2.Event()
            event.ParseFromString(payload)
            events.append(event)
        return events

    async def list_quarantine(self, limit: int, after_id: int = 0) -> list[QuarantineRecord]:
        rows = await self._fetch(
            "SELECT id, received_at_ms, source, reason_code, reason, raw, raw_sha256 FROM quarantine"
            " WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        )
        return [
            QuarantineRecord(int(r[0]), int(r[1]), str(r[2]), str(r[3]), str(r[4]), bytes(r[5]), str(r[6]))
            for r in rows
        ]

    async def _fetch(self, sql: str, params: tuple[object, ...]) -> list[sqlite3.Row]:
        try:
            async with self._lock:
                return list(await self._db.execute_fetchall(sql, params))
        except sqlite3.Error as exc:
            raise OutboxError(f"outbox {self.path}: read failed: {exc}") from exc

    async def close_writer(self) -> None:
        """Ask the writer to stop once everything queued before now is committed."""
        await self._queue.put(None)


async def _insert_many_returning_ids(
    db: aiosqlite.Connection, sql: str, rows: Sequence[tuple[object, ...]]
) -> list[int]:
    """Insert rows into an AUTOINCREMENT table and return their ids.

    Inside our BEGIN IMMEDIATE transaction nobody else writes, so the ids are consecutive and end at
    last_insert_rowid(): one statement for the lot instead of one round trip per row.
    """
    if not rows:
        return []
    await db.executemany(sql, rows)
    last = int(next(iter(await db.execute_fetchall("SELECT last_insert_rowid()", ())))[0])
    return list(range(last - len(rows) + 1, last + 1))


async def _migrate(db: aiosqlite.Connection, path: Path) -> None:
    version = int(next(iter(await db.execute_fetchall("PRAGMA user_version", ())))[0])
    if version > len(MIGRATIONS):
        raise OutboxError(f"outbox {path}: schema version {version} is newer than this agent knows ({len(MIGRATIONS)})")
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        await db.executescript(f"BEGIN IMMEDIATE; {script}; PRAGMA user_version = {number}; COMMIT;")


async def _outbox_id(db: aiosqlite.Connection) -> str:
    rows = list(await db.execute_fetchall("SELECT value FROM meta WHERE key = 'outbox_id'", ()))
    if rows:
        return str(rows[0][0])
    outbox_id = str(uuid.uuid4())
    await db.execute("INSERT INTO meta (key, value) VALUES ('outbox_id', ?)", (outbox_id,))
    return outbox_id


async def _next_seq(db: aiosqlite.Connection) -> int:
    rows = list(
        await db.execute_fetchall(
            "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0),"
            " coalesce((SELECT max(seq) FROM outbox), 0))",
            (),
        )
    )
    return int(rows[0][0]) + 1


@asynccontextmanager
async def open_outbox(
    path: Path,
    *,
    clock: Clock,
    rng: random.Random,
    durability: Durability = "full",
    commit_events_max: int = COMMIT_EVENTS_MAX_DEFAULT,
    pending_submissions_max: int = PENDING_SUBMISSIONS_MAX_DEFAULT,
    bytes_max: int = BYTES_MAX_DEFAULT,
    alarms: AlarmRegistry | None = None,
) -> AsyncIterator[Outbox]:
    """Open (creating and migrating if needed) the outbox at `path` and run its writer while in use.

    A damaged file is salvaged first (see `edge.outbox.salvage`). On exit everything queued is
    committed before the file is closed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    alarms = alarms if alarms is not None else AlarmRegistry(clock)
    lock = await asyncio.to_thread(_lock_and_salvage, path, clock)
    try:
        db = await aiosqlite.connect(path, isolation_level=None)
    except sqlite3.Error as exc:
        lock.close()
        raise OutboxError(f"outbox {path}: cannot open: {exc}") from exc
    try:
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute(f"PRAGMA synchronous={'FULL' if durability == 'full' else 'NORMAL'}")
            await _migrate(db, path)
            outbox_id = await _outbox_id(db)
            next_seq = await _next_seq(db)
            await _raise_salvage_alarm(db, clock, alarms)
        except sqlite3.Error as exc:
            raise OutboxError(f"outbox {path}: cannot prepare: {exc}") from exc
        outbox = Outbox(
            db,
            path=path,
            outbox_id=outbox_id,
            next_seq=next_seq,
            clock=clock,
            rng=rng,
            commit_events_max=commit_events_max,
            pending_submissions_max=pending_submissions_max,
            bytes_max=bytes_max,
            alarms=alarms,
        )
        await outbox.check_capacity()
        writer = asyncio.create_task(outbox.run_writer(), name="outbox-writer")
        try:
            yield outbox
        finally:
            if not writer.done():
                await outbox.close_writer()
                try:
                    await asyncio.wait_for(asyncio.shield(writer), CLOSE_TIMEOUT_S)
                except TimeoutError:
                    writer.cancel()
    finally:
        await db.close()
        lock.close()


def _lock_and_salvage(path: Path, clock: Clock) -> BinaryIO:
    """Hold `<name>.lock` shared while the outbox is open; inspect and salvage only when holding it alone.

    When another process has this outbox open (the running agent, while `tallyport-edge outbox` looks
    at it), nothing is inspected or moved: salvaging a file a live agent writes to would send its new
    events into the file set aside. The lock file is closed (and the lock released) by the caller.
    """
    lock = path.with_name(path.name + ".lock").open("a+b")
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _wait_for_shared_lock(lock, path)
            return lock
        _salvage_if_damaged(path, clock)
        fcntl.flock(lock, fcntl.LOCK_SH)
        return lock
    except BaseException:
        lock.close()
        raise


def _wait_for_shared_lock(lock: BinaryIO, path: Path) -> None:
    """A shared hold, waiting (bounded) while another process holds it alone to salvage."""
    deadline = time.monotonic() + SALVAGE_LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise OutboxError(
                    f"outbox {path}: another process held it exclusively for {SALVAGE_LOCK_WAIT_S:g} s"
                ) from None
            time.sleep(0.05)


def _salvage_if_damaged(path: Path, clock: Clock) -> None:
    """Finish an interrupted salvage, then salvage the file if it is damaged (blocking: run in a thread)."""
    aside = finish_interrupted_salvage(path, clock)
    if aside is not None:
        log.error("outbox: finished a salvage interrupted by a crash", extra={"path": str(path), "aside": str(aside)})
    problem = inspect_outbox(path)
    if problem is None:
        return
    log.error("outbox damaged; salvaging what can be read", extra={"path": str(path), "problem": problem})
    report = salvage_outbox(path, problem, clock)
    log.error(
        "outbox salvaged",
        extra={
            "path": str(path),
            "aside": str(report.damaged_path),
            "events_salvaged": report.events_salvaged,
            "events_lost_max": report.events_lost_max if report.extent_known else "unknown",
            "old_outbox_id": report.old_outbox_id,
            "new_outbox_id": report.new_outbox_id,
            "summary": report.summary(),
        },
    )


async def _raise_salvage_alarm(db: aiosqlite.Connection, clock: Clock, alarms: AlarmRegistry) -> None:
    """Raise `outbox_salvaged` while this outbox's salvage (remembered in its meta) is recent."""
    rows = list(await db.execute_fetchall("SELECT value FROM meta WHERE key = ?", (SALVAGE_META_KEY,)))
    if not rows:
        return
    try:
        record = json.loads(str(rows[0][0]))
        salvaged_at_ms, severity, summary = int(record["salvaged_at_ms"]), record["severity"], str(record["summary"])
    except (ValueError, KeyError, TypeError):
        log.warning("outbox: unreadable salvage record in meta; no alarm raised")
        return
    if clock.unix_ms() - salvaged_at_ms < SALVAGE_ALARM_ACTIVE_MS and severity in ("critical", "major"):
        alarms.raise_alarm(ALARM_SALVAGED, severity, summary, raised_at_ms=salvaged_at_ms)
