"""Salvage of a damaged outbox at start, on real damaged SQLite files: truncated, pages overwritten,
header destroyed, zero length, garbage WAL. The agent must start, keep every readable event byte for
byte, move the damaged file aside, account for what it lost, and raise the `outbox_salvaged` alarm."""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import shutil
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tallyport.v1 import events_pb2

from edge.alarms import AlarmRegistry
from edge.clock import SystemClock
from edge.errors import OutboxError
from edge.outbox import FrameMarker, Rejected, open_outbox
from edge.outbox.outbox import ALARM_SALVAGED, SALVAGE_ALARM_ACTIVE_MS
from edge.outbox.salvage import SALVAGE_META_KEY, inspect_outbox, salvage_outbox
from edge.outbox.schema import MIGRATIONS

EVENTS = 3000
PAGE_SIZE = 4096


class ManualClock:
    def __init__(self, unix_ms: int) -> None:
        self.ms = unix_ms

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.ms / 1000, tz=UTC)

    def unix_ms(self) -> int:
        return self.ms


@dataclass
class Original:
    outbox_id: str
    payloads: dict[int, bytes]  # seq -> stored bytes
    quarantined: int
    journaled: int


def _event(n: int) -> events_pb2.Event:
    event = events_pb2.Event(gateway_id="gw-1", biz_location=f"urn:tallyport:loc:dc1:dock-{n % 7}")
    event.event_class = events_pb2.EVENT_CLASS_SENSOR if n % 3 == 0 else events_pb2.EVENT_CLASS_MOVEMENT
    event.read_point.id = "r" * (100 + n % 50)  # ~200-byte rows: many leaf pages
    event.event_time.FromMilliseconds(1_760_000_000_000 + n)
    return event


async def _filled_outbox(path: Path, events: int = EVENTS) -> Original:
    """An outbox closed cleanly (checkpointed into the main file), with events, quarantine and journal rows."""
    async with open_outbox(path, clock=SystemClock(), rng=random.Random(7)) as outbox:
        for start in range(0, events, 500):
            await outbox.append_many([_event(n) for n in range(start, min(events, start + 500))])
        for n in range(5):
            await outbox.quarantine(Rejected("scanner-1", "check_digit", f"bad label {n}", b"raw-%d" % n))
        await outbox.journal_reads("reader-1", [b"read-a", b"read-b"], message_digest="d1")
        await outbox.append(_event(events), marker=FrameMarker("scanner-1", "ab" * 32))
        await outbox.quarantine(
            Rejected("scanner-2", "check_digit", "bad label", b"raw"), marker=FrameMarker("scanner-2", "cd" * 32, True)
        )
        outbox_id = outbox.outbox_id
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        payloads = {int(seq): bytes(payload) for seq, payload in db.execute("SELECT seq, payload FROM outbox")}
    assert not path.with_name(path.name + "-wal").exists()
    return Original(outbox_id, payloads, quarantined=6, journaled=2)


def _asides(path: Path) -> list[Path]:
    return sorted(
        p
        for p in path.parent.iterdir()
        if p.name.startswith(path.name + ".corrupt-") and not p.name.endswith(("-wal", "-shm"))
    )


def _root_pages(path: Path) -> set[int]:
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        return {int(row[0]) for row in db.execute("SELECT rootpage FROM sqlite_schema WHERE rootpage > 0")}


async def _open_and_check(path: Path, original: Original, clock: ManualClock | None = None) -> dict[int, bytes]:
    """Open the damaged outbox; assert it started salvaged and consistent; return the salvaged payloads."""
    alarms = AlarmRegistry(clock or SystemClock())
    async with open_outbox(path, clock=clock or SystemClock(), rng=random.Random(1), alarms=alarms) as outbox:
        salvaged = {event.seq: event.SerializeToString() for event in await outbox.list_events(100_000)}
        new_seq = await outbox.append(_event(99_999))
        assert outbox.outbox_id != original.outbox_id, "a salvaged outbox starts a new seq space in the cloud"
        assert new_seq > max(salvaged, default=0)
    assert len(_asides(path)) == 1, "the damaged file is kept aside, once"
    assert alarms.is_active(ALARM_SALVAGED)
    # Every event kept is byte for byte one that was stored, under its own seq.
    for seq, payload in salvaged.items():
        assert original.payloads[seq] == payload, f"seq {seq} differs from what was stored"
    return salvaged


def _report_of(path: Path) -> dict[str, object]:
    import json

    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        (value,) = db.execute("SELECT value FROM meta WHERE key = ?", (SALVAGE_META_KEY,)).fetchone()
    record: dict[str, object] = json.loads(value)
    return record


async def test_a_healthy_outbox_and_a_live_wal_are_not_mistaken_for_damage(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    original = await _filled_outbox(path, events=200)
    assert inspect_outbox(path) is None
    # A WAL with commits the main file does not have yet (the agent was SIGKILLed) is sound, not damage.
    live = sqlite3.connect(path, isolation_level=None)
    live.execute("PRAGMA journal_mode=WAL")
    live.execute("PRAGMA wal_autocheckpoint=0")
    live.execute("DELETE FROM outbox WHERE seq <= 10")
    copy = tmp_path / "copy.db"
    shutil.copyfile(path, copy)
    shutil.copyfile(path.with_name("o.db-wal"), tmp_path / "copy.db-wal")
    live.close()
    assert inspect_outbox(copy) is None
    async with open_outbox(copy, clock=SystemClock(), rng=random.Random(1)) as outbox:
        assert outbox.outbox_id == original.outbox_id
        assert (await outbox.stats()).oldest_seq == 11
        assert not outbox.alarms.snapshot()
    assert not _asides(copy)


@pytest.mark.parametrize("keep_bytes", [1, 50, 100, 2000, PAGE_SIZE, 3 * PAGE_SIZE + 7, -PAGE_SIZE, -1, "half"])
async def test_a_truncated_outbox_is_salvaged(tmp_path: Path, keep_bytes: int | str) -> None:
    path = tmp_path / "o.db"
    original = await _filled_outbox(path)
    size = path.stat().st_size
    keep = size // 2 if keep_bytes == "half" else keep_bytes if int(keep_bytes) > 0 else size + int(keep_bytes)
    assert isinstance(keep, int)
    os.truncate(path, keep)
    assert inspect_outbox(path) is not None

    salvaged = await _open_and_check(path, original)

    (aside,) = _asides(path)
    assert aside.stat().st_size == keep, "the damaged file is kept as it was"
    report = _report_of(path)
    assert report["events_salvaged"] == len(salvaged)
    if keep >= size - PAGE_SIZE:
        # Only the last page is gone: everything before it is kept.
        assert len(salvaged) >= len(original.payloads) - 40, report
    if keep == size // 2:
        assert len(original.payloads) // 3 < len(salvaged) < len(original.payloads), report


def _outbox_leaves(path: Path) -> list[tuple[int, list[int]]]:
    """(page number, seqs on it) of each leaf of the outbox table, from SQLite's own page map, in key order."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        leaves = db.execute(
            "SELECT pageno, ncell FROM dbstat WHERE name = 'outbox' AND pagetype = 'leaf' ORDER BY path"
        ).fetchall()
        seqs = [int(row[0]) for row in db.execute("SELECT seq FROM outbox ORDER BY seq")]
    out, index = [], 0
    for page, cells in leaves:
        out.append((int(page), seqs[index : index + int(cells)]))
        index += int(cells)
    assert index == len(seqs)
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_overwritten_leaf_pages_lose_exactly_the_rows_on_them(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "o.db"
    original = await _filled_outbox(path)
    rng = random.Random(seed)
    leaves = _outbox_leaves(path)
    damaged = rng.sample(leaves[1:-1], 3)
    with path.open("r+b") as file:
        for page, _seqs in damaged:
            file.seek((page - 1) * PAGE_SIZE)
            file.write(rng.randbytes(PAGE_SIZE))
    assert inspect_outbox(path) is not None

    salvaged = await _open_and_check(path, original)

    on_damaged_pages = {seq for _page, seqs in damaged for seq in seqs}
    assert set(salvaged) == set(original.payloads) - on_damaged_pages
    report = _report_of(path)
    assert report["extent_known"] is True
    assert report["events_lost_max"] == len(on_damaged_pages), "the lost ranges name exactly the missing seqs"


async def test_an_overwritten_root_page_hides_no_event_the_leaves_still_hold(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    original = await _filled_outbox(path)
    root = 2  # the events table's root page: an interior page above every leaf
    assert root in _root_pages(path) and len(_outbox_leaves(path)) > 1
    with path.open("r+b") as file:
        file.seek((root - 1) * PAGE_SIZE)
        file.write(random.Random(9).randbytes(PAGE_SIZE))

    salvaged = await _open_and_check(path, original)

    # Every key seeks through the root, so the b-tree reaches nothing; the leaves are read page by page.
    assert salvaged == original.payloads
    assert _report_of(path)["events_lost_max"] == 0
    async with open_outbox(path, clock=SystemClock(), rng=random.Random(1)) as outbox:
        assert len(await outbox.list_quarantine(100)) == original.quarantined


async def test_rows_acknowledged_and_deleted_before_the_damage_do_not_come_back(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    original = await _filled_outbox(path)
    async with open_outbox(path, clock=SystemClock(), rng=random.Random(1)) as outbox:
        assert await outbox.delete_through(1500) == 1500  # their pages go to the freelist, content intact
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA freelist_count").fetchone()[0] > 10
    with path.open("r+b") as file:
        file.seek(PAGE_SIZE)  # page 2, the events table's root
        file.write(random.Random(9).randbytes(PAGE_SIZE))
    live = {seq: payload for seq, payload in original.payloads.items() if seq > 1500}

    salvaged = await _open_and_check(path, original)

    assert salvaged == live


async def test_a_destroyed_first_page_still_gives_up_the_events_on_the_others(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    original = await _filled_outbox(path)
    with path.open("r+b") as file:
        file.write(random.Random(4).randbytes(PAGE_SIZE))  # header and schema gone

    salvaged = await _open_and_check(path, original)

    assert salvaged == original.payloads
    report = _report_of(path)
    assert report["extent_known"] is False, "without the schema nothing says how many rows there were"


async def test_a_destroyed_header_is_rebuilt_and_every_row_kept(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    original = await _filled_outbox(path)
    with path.open("r+b") as file:
        file.write(random.Random(3).randbytes(100))
    assert inspect_outbox(path) == "file is not a database"

    salvaged = await _open_and_check(path, original)

    assert salvaged == original.payloads
    async with open_outbox(path, clock=SystemClock(), rng=random.Random(1)) as outbox:
        assert len(await outbox.list_quarantine(100)) == original.quarantined
        assert len(await outbox.journaled_reads()) == original.journaled
        assert await outbox.journaled_message("d1")
        frame = await outbox.last_frame("scanner-1")
        assert frame is not None and frame.raw_sha256 == "ab" * 32 and not frame.rejected
        refused = await outbox.last_frame("scanner-2")
        assert refused is not None and refused.rejected, "a refused frame stays refused across the salvage"
    assert _report_of(path)["events_lost_max"] == 0


async def test_a_zero_length_outbox_is_set_aside_and_the_agent_starts_empty(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    path.touch()
    assert inspect_outbox(path) == "the file is empty (0 bytes)"
    alarms = AlarmRegistry(SystemClock())
    async with open_outbox(path, clock=SystemClock(), rng=random.Random(1), alarms=alarms) as outbox:
        assert (await outbox.stats()).events == 0
        assert await outbox.append(_event(1)) == 1
    (aside,) = _asides(path)
    assert aside.stat().st_size == 0
    (alarm,) = alarms.active()
    assert alarm.code == ALARM_SALVAGED and alarm.severity == "critical"
    assert "unknown number" in alarm.message


async def test_a_garbage_wal_is_set_aside_and_the_main_file_salvaged(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    original = await _filled_outbox(path, events=300)
    path.with_name("o.db-wal").write_bytes(random.Random(5).randbytes(8 * PAGE_SIZE))
    assert inspect_outbox(path) == "the WAL header is damaged (bad magic number)"

    salvaged = await _open_and_check(path, original)

    assert salvaged == original.payloads
    (aside,) = _asides(path)
    assert aside.with_name(aside.name + "-wal").stat().st_size == 8 * PAGE_SIZE, "the WAL is kept beside it"
    report = _report_of(path)
    assert report["extent_known"] is False, "commits in an unreadable WAL are lost in unknown number"
    assert report["severity"] == "critical"


async def test_new_seqs_continue_above_the_old_counter_so_a_lost_tail_shows_as_a_gap(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    await _filled_outbox(path, events=100)
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        counter = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()[0]
        db.execute("DELETE FROM outbox")  # everything acknowledged: the counter alone remembers the seqs
    with path.open("r+b") as file:
        file.write(b"\0" * 100)
    async with open_outbox(path, clock=SystemClock(), rng=random.Random(1)) as outbox:
        assert await outbox.append(_event(1)) == counter + 1


async def test_the_salvage_alarm_survives_a_restart_and_expires(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    await _filled_outbox(path, events=50)
    os.truncate(path, 3 * PAGE_SIZE)
    clock = ManualClock(1_790_000_000_000)
    report = salvage_outbox(path, "test damage", clock)
    assert report.new_outbox_id
    clock.ms += 60_000
    alarms = AlarmRegistry(clock)
    async with open_outbox(path, clock=clock, rng=random.Random(1), alarms=alarms):
        (alarm,) = alarms.active()
    assert alarm.raised_at_ms == 1_790_000_000_000
    assert "test damage" in alarm.message
    clock.ms += SALVAGE_ALARM_ACTIVE_MS
    later = AlarmRegistry(clock)
    async with open_outbox(path, clock=clock, rng=random.Random(1), alarms=later):
        assert later.active() == []


async def test_a_salvage_interrupted_after_the_new_file_was_ready_is_finished_at_start(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    original = await _filled_outbox(path, events=50)
    damaged = tmp_path / "damaged.db"
    shutil.copyfile(path, damaged)
    os.truncate(damaged, 100)
    # The crash came after the salvaged file was complete, before the damaged one moved aside.
    os.replace(path, path.with_name("o.db.salvage-ready"))
    os.replace(damaged, path)
    async with open_outbox(path, clock=SystemClock(), rng=random.Random(1)) as outbox:
        assert len(await outbox.list_events(1000)) == len(original.payloads)
        assert outbox.outbox_id == original.outbox_id  # the ready file is what salvage built
    (aside,) = _asides(path)
    assert aside.stat().st_size == 100


async def test_a_damaged_outbox_another_process_has_open_is_not_moved(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    original = await _filled_outbox(path, events=50)
    with path.open("r+b") as file:
        file.write(b"\0" * 100)
    # The running agent holds the lock shared; this open (say `tallyport-edge outbox`) must not salvage.
    with path.with_name("o.db.lock").open("a+b") as agent_lock:
        fcntl.flock(agent_lock, fcntl.LOCK_SH)
        with pytest.raises(OutboxError):
            async with open_outbox(path, clock=SystemClock(), rng=random.Random(1)) as outbox:
                await outbox.list_events(100)
        assert _asides(path) == []
    # Once nobody else has it open, the next start salvages.
    async with open_outbox(path, clock=SystemClock(), rng=random.Random(1)) as outbox:
        assert len(await outbox.list_events(100)) == len(original.payloads)
    assert len(_asides(path)) == 1


async def test_a_damaged_file_of_an_older_schema_is_salvaged_into_the_current_one(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    event = _event(1)
    event.seq, event.event_id = 1, "urn:uuid:01900000-0000-7000-8000-000000000001"
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("PRAGMA journal_mode=WAL")
        for number, script in enumerate(MIGRATIONS[:3], start=1):  # an agent from before migration 4
            db.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")
        db.execute(
            "INSERT INTO outbox (seq, event_id, event_class, created_at_ms, payload) VALUES (1, ?, ?, 0, ?)",
            (event.event_id, event.event_class, event.SerializeToString()),
        )
        db.execute("INSERT INTO device_frames (device, raw_sha256, committed_at_ms, acked) VALUES ('s1', 'ab', 0, 1)")
        db.execute("INSERT INTO meta (key, value) VALUES ('outbox_id', 'old')")
    with path.open("r+b") as file:
        file.write(b"\0" * 100)

    async with open_outbox(path, clock=SystemClock(), rng=random.Random(1)) as outbox:
        (salvaged,) = await outbox.list_events(10)
        frame = await outbox.last_frame("s1")
    assert salvaged == event
    assert frame is not None and frame.acked and not frame.rejected
