"""Salvage against the states a crash or a busy file leaves, on real SQLite files.

A salvage interrupted between its renames must never let the damaged file's WAL be replayed over the
salvaged outbox; a file that is only locked (or hit a transient I/O error) is not damage and must not
be moved aside; the leaf-page scan must see the commits a WAL holds, not the stale main file; and the
alarm a salvage raises must be one the cloud accepts (SQLite's answer comes in lines).
"""

from __future__ import annotations

import contextlib
import random
import shutil
import sqlite3
from pathlib import Path

import pytest
from tallyport.v1 import ingest_pb2
from test_outbox_salvage import PAGE_SIZE, _asides, _filled_outbox, _open_and_check, _outbox_leaves

import edge.outbox.salvage as salvage_module
from cloud.gateway_alarms import check_status
from edge.alarms import AlarmRegistry
from edge.clock import SystemClock
from edge.errors import OutboxError
from edge.outbox import open_outbox
from edge.outbox.salvage import inspect_outbox
from edge.uplink.status import encode_status_message


def _wal(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def _shm(path: Path) -> Path:
    return path.with_name(path.name + "-shm")


def _killed_with_wal(source: Path, target: Path, sql: str) -> None:
    """`target` (+ -wal, -shm) as a process killed right after running `sql` on `source` leaves it:
    the commit in WAL frames, not yet checkpointed into the main file."""
    live = sqlite3.connect(source, isolation_level=None)
    try:
        live.execute("PRAGMA journal_mode=WAL")
        live.execute("PRAGMA wal_autocheckpoint=0")
        live.execute(sql)
        for file, copy in ((source, target), (_wal(source), _wal(target)), (_shm(source), _shm(target))):
            shutil.copyfile(file, copy)
    finally:
        live.close()
    assert _wal(target).stat().st_size > 0


@pytest.mark.parametrize(
    "left_at_path",
    [
        ("-wal", "-shm"),  # crashed after the damaged file moved, before its side files (the old order)
        ("-wal",),
        ("", "-wal", "-shm"),  # crashed before any rename
        ("",),  # crashed after the side files moved, before the file (the order now)
    ],
)
async def test_a_crash_between_the_renames_never_replays_the_damaged_wal_over_the_salvage(
    tmp_path: Path, left_at_path: tuple[str, ...]
) -> None:
    # The damaged outbox, as the killed agent left it: its latest commits are in its WAL.
    old = tmp_path / "old" / "o.db"
    old.parent.mkdir()
    await _filled_outbox(old, events=300)
    site = tmp_path / "site"
    site.mkdir()
    path = site / "o.db"
    _killed_with_wal(old, site / "damaged.db", "DELETE FROM outbox WHERE seq <= 100")
    # The salvaged outbox, complete and standing alone, as `salvage_outbox` leaves it before the renames.
    salvaged = await _filled_outbox(tmp_path / "salvaged.db", events=40)
    shutil.copyfile(tmp_path / "salvaged.db", site / "o.db.salvage-ready")
    for suffix in ("", "-wal", "-shm"):
        damaged = site / f"damaged.db{suffix}"
        if suffix in left_at_path:
            damaged.rename(site / f"o.db{suffix}")
        else:
            damaged.rename(site / f"o.db.corrupt-20261129T000000Z{suffix}")

    async with open_outbox(path, clock=SystemClock(), rng=random.Random(3)) as outbox:
        assert outbox.outbox_id == salvaged.outbox_id, "the salvaged outbox is in place, not the damaged one"
        events = {event.seq: event.SerializeToString() for event in await outbox.list_events(10_000)}
    assert events == salvaged.payloads
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    # The damaged file's WAL was kept for a person to look at, beside a damaged file of its own.
    kept_wals = [file for file in site.iterdir() if ".corrupt-" in file.name and file.name.endswith("-wal")]
    assert len(kept_wals) == 1 and kept_wals[0].stat().st_size > 0
    assert not (site / "o.db.salvage-ready").exists()


async def test_a_healthy_outbox_another_program_holds_locked_is_not_damage(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    original = await _filled_outbox(path, events=50)
    # An operator's `sqlite3 o.db` session (or a backup tool) holds it exclusively; it does not take our .lock.
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("PRAGMA locking_mode=EXCLUSIVE")
        other.execute("BEGIN IMMEDIATE")
        other.execute("DELETE FROM quarantine WHERE id = 1")
        with pytest.raises(OutboxError, match=r"database is locked.*try again"):
            inspect_outbox(path)
        with pytest.raises(OutboxError, match="database is locked"):
            async with open_outbox(path, clock=SystemClock(), rng=random.Random(1)):
                pass
        assert _asides(path) == [] and not path.with_name("o.db.salvage-ready").exists()
    finally:
        other.execute("ROLLBACK")
        other.close()
    # Once the other program lets go, the same outbox opens, untouched.
    async with open_outbox(path, clock=SystemClock(), rng=random.Random(1)) as outbox:
        assert outbox.outbox_id == original.outbox_id
        assert not outbox.alarms.snapshot()
        assert len(await outbox.list_events(10_000)) == len(original.payloads)


@pytest.mark.parametrize(
    ("code", "message", "damage"),
    [
        (10, "disk I/O error", False),  # SQLITE_IOERR: a transient read error on the flash
        (10 | (13 << 8), "disk I/O error", False),  # SQLITE_IOERR_SHORT_READ, an extended code
        (14, "unable to open database file", False),  # SQLITE_CANTOPEN
        (7, "out of memory", False),  # SQLITE_NOMEM
        (11, "database disk image is malformed", True),  # SQLITE_CORRUPT
        (11 | (1 << 8), "database disk image is malformed", True),  # SQLITE_CORRUPT_VTAB, extended
        (26, "file is not a database", True),  # SQLITE_NOTADB
    ],
)
async def test_only_corruption_errors_count_as_damage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, message: str, damage: bool
) -> None:
    path = tmp_path / "o.db"
    await _filled_outbox(path, events=10)

    def failing_connect(*_args: object, **_kwargs: object) -> sqlite3.Connection:
        error = sqlite3.OperationalError(message)
        error.sqlite_errorcode = code
        raise error

    monkeypatch.setattr(salvage_module.sqlite3, "connect", failing_connect)
    if damage:
        assert inspect_outbox(path) == message
    else:
        with pytest.raises(OutboxError, match=rf"{message}.*not treated as damage"):
            inspect_outbox(path)


async def test_the_leaf_scan_sees_the_wal_so_acknowledged_rows_do_not_come_back(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    original = await _filled_outbox(old)
    leaves = _outbox_leaves(old)
    page, lost = leaves[-3]  # a leaf of recent events, which the delete below does not touch
    assert min(lost) > 1500
    # Killed after the cloud acknowledged seqs 1-1500: the delete is only in the WAL.
    path = tmp_path / "o.db"
    _killed_with_wal(old, path, "DELETE FROM outbox WHERE seq <= 1500")
    with path.open("r+b") as file:  # then a bad sector in the main file
        file.seek((page - 1) * PAGE_SIZE)
        file.write(random.Random(4).randbytes(PAGE_SIZE))
    assert inspect_outbox(path) is not None

    salvaged = await _open_and_check(path, original)

    # The walk hit damage in the events table, so the leaves were scanned too: after the WAL's commits.
    assert set(salvaged) == {seq for seq in original.payloads if seq > 1500} - set(lost)


async def test_a_quick_check_answer_in_lines_makes_an_alarm_the_cloud_accepts(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    original = await _filled_outbox(path)
    with path.open("r+b") as file:  # the events table's root: quick_check answers in several lines
        file.seek(PAGE_SIZE)
        file.write(random.Random(9).randbytes(PAGE_SIZE))
    problem = inspect_outbox(path)
    assert problem is not None and problem.startswith("quick_check: ") and "\n" not in problem

    await _open_and_check(path, original)
    async with open_outbox(path, clock=SystemClock(), rng=random.Random(1)) as outbox:
        (alarm,) = outbox.alarms.active()
    # What the uplink sends, checked by the cloud's own rule: a refused status would break every stream.
    message = ingest_pb2.GatewayMessage.FromString(encode_status_message([alarm]))
    check_status(message.status)
    assert "Page 2" in alarm.message


def test_alarm_messages_never_carry_control_characters() -> None:
    alarms = AlarmRegistry(SystemClock())
    alarms.raise_alarm("outbox_salvaged", "major", "first line\nsecond\tline\x7f")
    alarms.clear("outbox_salvaged", "gone\r\n")
    status = ingest_pb2.GatewayMessage.FromString(encode_status_message(alarms.snapshot())).status
    check_status(status)
    assert status.alarms[0].message == "gone  "
