"""Salvage of a damaged outbox file at start: keep every readable row, move the damage aside, keep running.

A power cut on cheap flash, a full disk or a bad sector can leave `outbox.db` (or its WAL) unreadable.
Refusing to start would stop every scanner and reader at the dock; deleting the file (as some gateways
do) would throw the backlog away. Instead, before the outbox opens, `inspect_outbox` looks for damage:

- the database file is empty (0 bytes) with no WAL beside it: the file was cut to nothing;
- the WAL beside it has an invalid header (magic, version, page size or checksum): SQLite would
  silently ignore it, and every commit since the last checkpoint with it;
- opening or `PRAGMA quick_check` fails with SQLITE_NOTADB or SQLITE_CORRUPT ("file is not a
  database", "database disk image is malformed", a truncated file, a page that does not parse), or
  quick_check reports problems. Any other error (the file locked by another program, an I/O error,
  out of memory) says nothing about the file: `inspect_outbox` raises OutboxError, to be retried,
  and never has a healthy file moved aside;
- the file is shorter than its header says, or not a whole number of pages (SQLite would read the
  missing part as zeros without a word).

On damage, `salvage_outbox` copies the damaged files to a scratch copy, reads every table of the copy
in rowid order and, where a read fails, goes over the rows one at a time up to the damage and probes
forward (exponentially, then by bisection) for the next key that reads, so one bad leaf page loses only
the rows on it. A destroyed 100-byte header is rebuilt first (the page size is recognised from the page
headers). Where the events table was damaged (an interior page hides every leaf below it), its rows are
also read straight from the leaf pages (`edge.outbox.page_scan`; the copy's WAL is checkpointed into it
first, as the scan reads the main file only), skipping the freelist so rows deleted
after their ack do not come back. Event rows are kept only if their payload parses and agrees with the
row's seq, event_id and class (SQLite keeps no checksum per row: damage that leaves a payload parsing
and agreeing is not detected). The rows go into a fresh outbox built beside the original, which then
takes the original's place; the damaged file and its `-wal`/`-shm` are kept as
`<name>.corrupt-<UTC timestamp>` for a person to look at. The steps are ordered so that a crash at any
point leaves either the damaged file in place (salvage runs again) or a complete salvaged outbox
(`<name>.salvage-ready`, put in place at the next start).

Identity and seqs. The salvaged outbox gets a NEW `outbox_id`, and the salvaged events keep their seq,
their event_id and their stored bytes:

- The cloud tracks its high-water mark per (gateway, outbox_id). Under the old id, rows lost at the
  tail would be invisible: unless the old AUTOINCREMENT counter survived, the new outbox would hand
  their seqs to new events, and the cloud would either take those for the lost ones or (if it had
  committed the old ones) quarantine them as seq conflicts. A new id starts a new seq space in the
  cloud, so no seq of the damaged file is ever reused under the id the cloud knew it by.
- Salvaged events may already be in the cloud (committed there, but the edge's delete of them was in
  the damaged part). They keep their event_id, so the cloud stores them once and counts the resend
  as duplicates: at-least-once on the wire, exactly-once in the store.
- Seqs stay monotonic: the next seq is above the highest salvaged seq and above the old file's
  AUTOINCREMENT counter when that is readable, so rows lost at the tail show in the cloud as a gap
  between the last salvaged seq and the first new one. Holes inside the salvaged range (lost pages,
  or sensor samples shed before the damage) show as gaps between batches. The first Hello under the
  new id names the first salvaged seq as its oldest, so the cloud records the seqs below it as "not in
  the edge outbox at hello" and resumes there: those seqs belong to the old outbox_id, whose state in
  the cloud stays as it was (the cloud cannot tell which of its missing seqs the damage took; the
  alarm says how many at most).

What was lost is reported (`SalvageReport`): rows salvaged per table, the seq ranges of events that
could not be read (an upper bound: a hole may also be sensor samples shed earlier), and whether the
extent is known at all. The outbox turns the report into the `outbox_salvaged` alarm, which it
remembers in the new file's `meta` so a restart before the cloud heard of it raises it again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sqlite3
import struct
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from google.protobuf.message import DecodeError
from tallyport.v1 import events_pb2

from edge.clock import Clock
from edge.errors import OutboxError
from edge.outbox.page_scan import scan_table_leaves
from edge.outbox.schema import MIGRATIONS

__all__ = ["SALVAGE_META_KEY", "SalvageReport", "finish_interrupted_salvage", "inspect_outbox", "salvage_outbox"]

log = logging.getLogger(__name__)

SALVAGE_META_KEY = "salvage"  # in the salvaged outbox's meta: the report as JSON, for the alarm
INSERT_ROWS_PER_CHUNK = 1000
ROWS_PER_READ = 1000
KEY_MAX = 2**63 - 1
QUICK_CHECK_LINES_MAX = 5
SQLITE_CORRUPT = 11  # primary result codes that mean damage; every other error is worth a retry
SQLITE_NOTADB = 26
SQLITE_MAGIC = b"SQLite format 3\x00"
WAL_MAGICS = (0x377F0682, 0x377F0683)
WAL_VERSION = 3007000
WAL_HEADER_BYTES = 32
PAGE_SIZES = (4096, 1024, 2048, 8192, 16384, 32768, 65536, 512)  # the default first
BTREE_PAGE_TYPES = (0x02, 0x05, 0x0A, 0x0D)
PAGE_SIZE_PROBE_PAGES = 64


@dataclass(frozen=True)
class _Table:
    name: str
    # Every column salvage knows, with the type a value must have to be copied (a damaged cell can read
    # back as the wrong type); a column the damaged file's schema lacks (older migration) is left to
    # its default. Only `required` ones (there since the table was created) must be present.
    columns: tuple[tuple[str, type], ...]
    required: int
    or_ignore: bool = False  # a damaged copy may hold a unique key twice

    def insert(self, names: Sequence[str]) -> str:
        verb = "INSERT OR IGNORE" if self.or_ignore else "INSERT"
        return f"{verb} INTO {self.name} ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})"


_OUTBOX = _Table(
    "outbox",
    (("seq", int), ("event_id", str), ("event_class", int), ("created_at_ms", int), ("payload", bytes)),
    required=5,
)
_TABLES = (
    _OUTBOX,
    _Table(
        "quarantine",
        (
            ("id", int),
            ("received_at_ms", int),
            ("source", str),
            ("reason_code", str),
            ("reason", str),
            ("raw", bytes),
            ("raw_sha256", str),
        ),
        required=7,
    ),
    _Table("read_journal", (("id", int), ("source", str), ("received_at_ms", int), ("payload", bytes)), required=4),
    _Table("journal_messages", (("digest", str), ("source", str), ("received_at_ms", int)), required=3, or_ignore=True),
    _Table(
        "device_frames",
        (("device", str), ("raw_sha256", str), ("committed_at_ms", int), ("acked", int), ("rejected", int)),
        required=4,
        or_ignore=True,
    ),
)
_OUTBOX_TYPES = tuple(kind for _name, kind in _OUTBOX.columns)


@dataclass
class SalvageReport:
    """What a salvage found, kept and lost."""

    problem: str  # what was wrong with the file
    damaged_path: Path  # where the damaged file now is
    old_outbox_id: str  # "" when unreadable
    new_outbox_id: str
    salvaged_at_ms: int
    events_salvaged: int = 0
    events_first_seq: int = 0  # 0 when none salvaged
    events_last_seq: int = 0
    # Seq ranges (inclusive) where event rows may have been and could not be read: an upper bound.
    events_lost_ranges: list[tuple[int, int]] = field(default_factory=list)
    events_invalid: int = 0  # rows read back but with a payload that does not parse or match
    events_damaged_at_tail: bool = False  # unreadable keys after the last salvaged event
    extent_known: bool = True  # False when the damage hid how many events there were
    rows_salvaged: dict[str, int] = field(default_factory=dict)  # other tables
    tables_damaged: list[str] = field(default_factory=list)  # tables with unreadable parts

    @property
    def events_lost_max(self) -> int:
        return sum(last - first + 1 for first, last in self.events_lost_ranges)

    def summary(self) -> str:
        lost = f"at most {self.events_lost_max}" if self.extent_known else "an unknown number of"
        kept = ", ".join(f"{count} {table}" for table, count in sorted(self.rows_salvaged.items()) if count)
        return (
            f"outbox damaged ({self.problem}); salvaged {self.events_salvaged} events"
            + (f" (seq {self.events_first_seq}-{self.events_last_seq})" if self.events_salvaged else "")
            + (f" and {kept}" if kept else "")
            + f", {lost} events lost; damaged file kept as {self.damaged_path.name}"
        )

    def severity(self) -> str:
        return "major" if self.extent_known and self.events_lost_max == 0 else "critical"

    def to_json(self) -> str:
        return json.dumps(
            {
                "problem": self.problem,
                "damaged_path": str(self.damaged_path),
                "old_outbox_id": self.old_outbox_id,
                "salvaged_at_ms": self.salvaged_at_ms,
                "events_salvaged": self.events_salvaged,
                "events_lost_max": self.events_lost_max,
                "extent_known": self.extent_known,
                "severity": self.severity(),
                "summary": self.summary(),
            }
        )


# -- finding damage ------------------------------------------------------------------------------


def _sidecars(path: Path) -> tuple[Path, Path]:
    return path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")


def inspect_outbox(path: Path) -> str | None:
    """What is wrong with the outbox at `path`, or None if it opens and checks clean (or does not exist)."""
    wal, _shm = _sidecars(path)
    if not path.exists():
        return None
    wal_bytes = wal.stat().st_size if wal.exists() else 0
    size = path.stat().st_size
    if size == 0 and wal_bytes == 0:
        return "the file is empty (0 bytes)"
    if size > 0:
        with path.open("rb") as file:
            head = file.read(len(SQLITE_MAGIC))
        # SQLite itself takes a file shorter than its header for an empty database, and would overwrite it.
        if head != SQLITE_MAGIC:
            return "file is not a database" if size >= 100 else f"the file is cut short ({size} bytes)"
        if wal_bytes == 0:
            # SQLite reads a file cut inside its last page as if the rest were zeros, without complaint.
            # (With a WAL beside it, an interrupted checkpoint can leave this and the WAL repairs it.)
            problem = _size_problem(path, size)
            if problem is not None:
                return problem
    if wal_bytes:
        problem = _wal_header_problem(wal)
        if problem is not None:
            return problem
    try:
        # Read-only, so that looking at a damaged file never checkpoints into it.
        with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
            rows = [str(row[0]) for row in db.execute(f"PRAGMA quick_check({QUICK_CHECK_LINES_MAX})")]
    except sqlite3.Error as exc:
        if _is_damage(exc):
            return str(exc)
        # Locked by another program (an operator's sqlite3 shell, a backup), a transient I/O error on the
        # flash, out of memory: the file may be sound. Salvaging would move a healthy outbox aside (and
        # any writer still holding it would go on writing into the file set aside), so retry instead.
        raise OutboxError(
            f"outbox {path}: cannot check it ({exc}; {getattr(exc, 'sqlite_errorname', 'no SQLite error code')});"
            " not treated as damage, try again"
        ) from exc
    # One answer row can hold several lines ("*** in database main ***\nPage 2: ..."): the problem goes
    # into the alarm message and the log on one line.
    lines = [line.strip() for row in rows for line in row.splitlines() if line.strip()]
    if lines != ["ok"]:
        return "quick_check: " + "; ".join(lines)
    return None


def _is_damage(exc: sqlite3.Error) -> bool:
    """Whether SQLite's error says the file itself is damaged (SQLITE_CORRUPT, SQLITE_NOTADB)."""
    code = getattr(exc, "sqlite_errorcode", None)
    # Extended codes (SQLITE_CORRUPT_INDEX, ...) carry the primary code in their low byte.
    return isinstance(code, int) and code & 0xFF in (SQLITE_CORRUPT, SQLITE_NOTADB)


def _size_problem(path: Path, size: int) -> str | None:
    """A file that is not a whole number of pages, or shorter than its header says, was cut."""
    with path.open("rb") as file:
        header = file.read(100)
    if len(header) < 100:
        return f"the file is cut short ({size} bytes)"
    (page_size,) = struct.unpack(">H", header[16:18])
    page_size = 65536 if page_size == 1 else page_size
    if page_size not in PAGE_SIZES:
        return f"the header names an impossible page size ({page_size})"
    if size % page_size:
        return f"the file is cut short ({size} bytes is not a whole number of {page_size}-byte pages)"
    change_counter, pages = struct.unpack(">II", header[24:32])
    (valid_for,) = struct.unpack(">I", header[92:96])
    if change_counter == valid_for and pages > size // page_size:
        return f"the file is cut short ({size // page_size} pages of the {pages} its header counts)"
    return None


def _wal_header_problem(wal: Path) -> str | None:
    """Why SQLite would ignore this WAL (and the commits in it), or None if its header is sound."""
    with wal.open("rb") as file:
        header = file.read(WAL_HEADER_BYTES)
    if len(header) < WAL_HEADER_BYTES:
        return None  # a torn header: written before any frame, so no commit was in it
    magic, version, page_size = struct.unpack(">III", header[:12])
    if magic not in WAL_MAGICS:
        return "the WAL header is damaged (bad magic number)"
    if version != WAL_VERSION or page_size not in PAGE_SIZES:
        return "the WAL header is damaged (bad version or page size)"
    words = struct.unpack((">" if magic & 1 else "<") + "6I", header[:24])
    s0 = s1 = 0
    for index in range(0, 6, 2):
        s0 = (s0 + words[index] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[index + 1] + s0) & 0xFFFFFFFF
    if (s0, s1) != struct.unpack(">II", header[24:32]):
        return "the WAL header is damaged (checksum mismatch)"
    return None


# -- salvaging ----------------------------------------------------------------------------------


def _named(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def finish_interrupted_salvage(path: Path, clock: Clock) -> Path | None:
    """Complete a salvage a crash interrupted; return where the damaged file went, if it moved now.

    `<name>.salvage-ready` exists only once the salvaged outbox is complete and synced (and stands
    alone, without a WAL); whatever is at `path`, `-wal` or `-shm` then belongs to the damaged file,
    or nothing, if the crash came after they moved. A leftover `-wal` must go aside even when `path`
    has gone already: SQLite would otherwise replay the damaged file's commits over the salvaged one.
    """
    ready = _named(path, ".salvage-ready")
    for scratch in (_named(path, ".salvage-copy"), _named(path, ".salvage-new")):
        for file in (scratch, *_sidecars(scratch)):
            file.unlink(missing_ok=True)
    if not ready.exists():
        return None
    leftovers = any(file.exists() for file in (path, *_sidecars(path)))
    aside = _move_aside(path, _aside_name(path, clock)) if leftovers else None
    os.replace(ready, path)
    _fsync(path.parent)
    return aside


def salvage_outbox(path: Path, problem: str, clock: Clock) -> SalvageReport:
    """Replace the damaged outbox at `path` by a fresh one holding every row that could be read."""
    copy, new, ready = _named(path, ".salvage-copy"), _named(path, ".salvage-new"), _named(path, ".salvage-ready")
    wal, _shm = _sidecars(path)
    report = SalvageReport(
        problem=problem,
        damaged_path=_aside_name(path, clock),
        old_outbox_id="",
        new_outbox_id=str(uuid.uuid4()),
        salvaged_at_ms=clock.unix_ms(),
    )
    try:
        shutil.copyfile(path, copy)
        if wal.exists() and wal.stat().st_size:
            if _wal_header_problem(wal) is None:
                shutil.copyfile(wal, _sidecars(copy)[0])  # a sound WAL holds the latest commits: read through it
            else:
                report.extent_known = False  # the commits in the unreadable WAL are gone, however many
        with contextlib.closing(_open_damaged(copy)) as source, contextlib.closing(_create(new)) as target:
            _copy_rows(source, target, report, copy)
            target.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        _fsync(new)
        for file in _sidecars(new):
            file.unlink(missing_ok=True)  # empty after the checkpoint; the new file stands alone
        os.replace(new, ready)
        _fsync(path.parent)
        _move_aside(path, report.damaged_path)
        os.replace(ready, path)
        _fsync(path.parent)
    except (OSError, sqlite3.Error) as exc:
        raise OutboxError(f"outbox {path}: damaged ({problem}) and salvage failed: {exc}") from exc
    finally:
        for scratch in (copy, *_sidecars(copy), new, *_sidecars(new)):
            scratch.unlink(missing_ok=True)
    return report


def _aside_name(path: Path, clock: Clock) -> Path:
    """`<name>.corrupt-<UTC timestamp>`, with `-<n>` added if that name is taken."""
    stamp = datetime.fromtimestamp(clock.unix_ms() / 1000, tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = _named(path, f".corrupt-{stamp}")
    number = 1
    while aside.exists():
        aside = _named(path, f".corrupt-{stamp}-{number}")
        number += 1
    return aside


def _move_aside(path: Path, aside: Path) -> Path:
    """Rename the file's -wal/-shm and then the file to `aside` (and its -wal/-shm); return `aside`.

    Side files first: a crash between the renames then leaves the damaged file without its WAL, never
    a WAL without its file that could be replayed over the salvaged outbox once it takes `path`.
    """
    for source, target in zip((*_sidecars(path), path), (*_sidecars(aside), aside), strict=True):
        if source.exists():
            os.replace(source, target)
    _fsync(path.parent)
    return aside


def _open_damaged(copy: Path) -> sqlite3.Connection:
    """A connection to the scratch copy, its header rebuilt if it was destroyed."""
    with copy.open("rb") as file:
        head = file.read(len(SQLITE_MAGIC))
    if head != SQLITE_MAGIC and copy.stat().st_size > 0:
        _rebuild_header(copy)
    db = sqlite3.connect(copy, isolation_level=None)
    # Check each cell's size against its page as it is read: a damaged cell then fails (and is skipped)
    # instead of reading back as garbage. writable_schema makes SQLite read a file shorter than its
    # header says (truncated) instead of refusing it whole; nothing here writes the schema.
    for pragma in ("PRAGMA cell_size_check = ON", "PRAGMA writable_schema = ON"):
        with contextlib.suppress(sqlite3.DatabaseError):
            db.execute(pragma)
    return db


def _rebuild_header(copy: Path) -> None:
    """Write a plausible 100-byte database header over a destroyed one, so the pages behind it read."""
    size = copy.stat().st_size
    with copy.open("r+b") as file:
        probe = file.read(max(PAGE_SIZES) * PAGE_SIZE_PROBE_PAGES)
        page_size = max(
            PAGE_SIZES,
            key=lambda candidate: sum(
                1
                for page in range(1, PAGE_SIZE_PROBE_PAGES)
                if page * candidate < len(probe) and probe[page * candidate] in BTREE_PAGE_TYPES
            ),
        )
        header = bytearray(100)
        header[:16] = SQLITE_MAGIC
        struct.pack_into(">H", header, 16, 1 if page_size == 65536 else page_size)
        header[18:24] = bytes([1, 1, 0, 64, 32, 32])  # rollback journal format; reserved 0; payload fractions
        struct.pack_into(">I", header, 24, 1)  # change counter
        struct.pack_into(">I", header, 28, size // page_size)  # pages (valid: counter == version-valid-for)
        struct.pack_into(">I", header, 40, 1)  # schema cookie
        struct.pack_into(">I", header, 44, 4)  # schema format
        struct.pack_into(">I", header, 56, 1)  # UTF-8
        struct.pack_into(">I", header, 92, 1)  # version-valid-for
        struct.pack_into(">I", header, 96, sqlite3.sqlite_version_info[0] * 1_000_000)
        file.seek(0)
        file.write(header)


def _create(new: Path) -> sqlite3.Connection:
    for file in (new, *_sidecars(new)):
        file.unlink(missing_ok=True)
    db = sqlite3.connect(new, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    for number, script in enumerate(MIGRATIONS, start=1):
        db.executescript(f"BEGIN IMMEDIATE; {script}; PRAGMA user_version = {number}; COMMIT;")
    return db


def _copy_rows(source: sqlite3.Connection, target: sqlite3.Connection, report: SalvageReport, copy: Path) -> None:
    """Every readable row of every table, in one transaction of the new outbox."""
    tables = _existing_tables(source)
    if not tables:
        # Nothing to read (an empty file) or the schema itself is gone: how much was lost is unknown.
        report.extent_known = False
        if tables is None:
            report.tables_damaged.append("sqlite_schema")
        tables = set()
    report.old_outbox_id = _old_outbox_id(source) if "meta" in tables else ""
    old_counter = _old_seq_counter(source) if "sqlite_sequence" in tables else None
    target.execute("BEGIN IMMEDIATE")
    try:
        for table in _TABLES:
            if table.name not in tables:
                if tables:  # readable schema without the table: an old schema version, nothing to lose
                    continue
                break
            _copy_table(source, target, table, report)
        if "outbox" in report.tables_damaged or "sqlite_schema" in report.tables_damaged:
            scanned_counter = _recover_events_from_pages(source, copy, target, report)
            if scanned_counter is not None and (old_counter is None or scanned_counter > old_counter):
                old_counter = scanned_counter
        target.execute("INSERT INTO meta (key, value) VALUES ('outbox_id', ?)", (report.new_outbox_id,))
        target.execute(
            "INSERT INTO meta (key, value) VALUES ('salvaged_from_outbox_id', ?)", (report.old_outbox_id or "unknown",)
        )
        _continue_seqs(target, report, old_counter)
        target.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (SALVAGE_META_KEY, report.to_json()))
        target.execute("COMMIT")
    except BaseException:
        if target.in_transaction:
            target.execute("ROLLBACK")
        raise


def _recover_events_from_pages(
    source: sqlite3.Connection, copy: Path, target: sqlite3.Connection, report: SalvageReport
) -> int | None:
    """Add the events the b-tree walk could not reach, read from the leaf pages themselves (`page_scan`).

    Only event rows are taken this way, each checked like a walked one; never journaled reads, which a
    stale page could bring back after they became events. Returns the highest AUTOINCREMENT counter of
    the events table found on the pages, if any.

    The scan reads the main file only, so the scratch copy's WAL is checkpointed into it first (it is
    scratch: nothing else sees it). Scanning past a WAL would bring back rows acknowledged and deleted
    in it (their pages are live in the main file, and its freelist is stale) and miss rows only the WAL
    holds. If the checkpoint cannot complete, the scan is not done, and the log says why.
    """
    if not _checkpointed(source, copy):
        return None
    with copy.open("rb") as file:
        header = file.read(18)
    (page_size,) = struct.unpack(">H", header[16:18]) if len(header) == 18 else (0,)
    page_size = 65536 if page_size == 1 else page_size
    if page_size not in PAGE_SIZES:
        return None
    counter: int | None = None
    recovered = 0
    insert = replace(_OUTBOX, or_ignore=True).insert([name for name, _ in _OUTBOX.columns])
    for leaf in scan_table_leaves(copy, page_size):
        values = leaf.values
        if len(values) == 2 and values[0] == "outbox" and isinstance(values[1], int):
            counter = max(counter or 0, values[1])  # a sqlite_sequence row
            continue
        # A record may hold more columns than the events table had at first (later migrations add them).
        if len(values) < len(_OUTBOX_TYPES) or values[0] is not None or not 0 < leaf.rowid <= KEY_MAX:
            continue
        row = (leaf.rowid, *values[1 : len(_OUTBOX_TYPES)])
        if _well_typed(_OUTBOX_TYPES, row) and _event_matches(row):
            recovered += target.execute(insert, row).rowcount
    if recovered:
        log.warning("outbox salvage: events recovered from leaf pages", extra={"events": recovered})
        _recount_events(target, report)
    return counter


def _checkpointed(source: sqlite3.Connection, copy: Path) -> bool:
    """Whether every frame of the scratch copy's WAL is now in its main file (True when it has none)."""
    wal, _shm = _sidecars(copy)
    error = "the WAL was not emptied"
    try:
        source.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    except sqlite3.Error as exc:
        error = str(exc)
    # TRUNCATE empties the WAL only once every frame is in the main file: judge by that, not the result.
    if not wal.exists() or wal.stat().st_size == 0:
        return True
    log.error(
        "outbox salvage: the damaged file's WAL could not be checkpointed into the scratch copy; the leaf"
        " page scan is skipped (it would read stale pages), so events behind damaged pages stay lost",
        extra={"error": error},
    )
    return False


def _recount_events(target: sqlite3.Connection, report: SalvageReport) -> None:
    """Salvaged events and lost ranges again, after rows were added out of key order."""
    first, last, count = target.execute("SELECT min(seq), max(seq), count(*) FROM outbox").fetchone()
    report.events_salvaged, report.events_first_seq, report.events_last_seq = int(count), int(first), int(last)
    still_lost: list[tuple[int, int]] = []
    for low, high in report.events_lost_ranges:
        start = low
        for (seq,) in target.execute("SELECT seq FROM outbox WHERE seq BETWEEN ? AND ? ORDER BY seq", (low, high)):
            if seq > start:
                still_lost.append((start, seq - 1))
            start = seq + 1
        if start <= high:
            still_lost.append((start, high))
    report.events_lost_ranges = still_lost


def _existing_tables(source: sqlite3.Connection) -> set[str] | None:
    try:
        return {str(row[0]) for row in source.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        log.error("outbox salvage: the schema is unreadable", extra={"error": str(exc)})
        return None


def _old_outbox_id(source: sqlite3.Connection) -> str:
    with contextlib.suppress(sqlite3.DatabaseError):
        row = source.execute("SELECT value FROM meta WHERE key = 'outbox_id'").fetchone()
        if row is not None and isinstance(row[0], str):
            return row[0]
    return ""


def _old_seq_counter(source: sqlite3.Connection) -> int | None:
    """The old file's AUTOINCREMENT counter for events: the highest seq it ever handed out."""
    with contextlib.suppress(sqlite3.DatabaseError):
        row = source.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        if row is not None and isinstance(row[0], int) and 0 <= row[0] <= KEY_MAX:
            return int(row[0])
    return None


def _copy_table(source: sqlite3.Connection, target: sqlite3.Connection, table: _Table, report: SalvageReport) -> None:
    present = _source_columns(source, table.name)
    columns = [(name, kind) for name, kind in table.columns if present is None or name in present]
    if present is not None and len(columns) < table.required:
        log.error("outbox salvage: a table lacks its columns; not copied", extra={"table": table.name})
        report.tables_damaged.append(table.name)
        return
    names, types = [name for name, _ in columns], tuple(kind for _, kind in columns)
    insert = table.insert(names)
    chunk: list[tuple[object, ...]] = []
    copied = 0
    damage_pending = False  # keys that could not be read since the last row kept
    for row in _readable_rows(source, table.name, names):
        if row is None or not _well_typed(types, row):
            damage_pending = True
        elif table is not _OUTBOX:
            chunk.append(row)
        elif _event_matches(row) and _count_event(row, report, damage_pending):
            chunk.append(row)
            damage_pending = False
        else:
            report.events_invalid += 1
            damage_pending = True
        if damage_pending and table.name not in report.tables_damaged:
            report.tables_damaged.append(table.name)
        if len(chunk) >= INSERT_ROWS_PER_CHUNK:
            target.executemany(insert, chunk)
            copied, chunk = copied + len(chunk), []
    if chunk:
        target.executemany(insert, chunk)
        copied += len(chunk)
    if table is _OUTBOX:
        report.events_damaged_at_tail = damage_pending
    else:
        report.rows_salvaged[table.name] = copied


def _source_columns(source: sqlite3.Connection, table: str) -> set[str] | None:
    """The columns the damaged file's schema gives `table`, or None if that cannot be read."""
    try:
        return {str(row[1]) for row in source.execute(f"PRAGMA table_info({table})")}
    except sqlite3.DatabaseError:
        return None


def _count_event(row: Sequence[object], report: SalvageReport, damage_before: bool) -> bool:
    """Account for one readable event row; False if it is out of order (a sound walk never goes back)."""
    seq = row[0]
    assert isinstance(seq, int)
    if seq <= report.events_last_seq:
        return False
    if damage_before:
        if report.events_last_seq:
            report.events_lost_ranges.append((report.events_last_seq + 1, seq - 1))
        else:
            # Damage before the first readable event: the rows below it were partly acknowledged and
            # deleted already, partly lost; which, only the cloud knows.
            report.extent_known = False
    report.events_first_seq = report.events_first_seq or seq
    report.events_last_seq = seq
    report.events_salvaged += 1
    return True


def _readable_rows(
    source: sqlite3.Connection, table: str, columns: Sequence[str]
) -> Iterator[tuple[object, ...] | None]:
    """The table's rows in rowid order; None once for each stretch of keys that could not be read.

    Reads go in chunks while the table reads clean. A failed step also loses the row read just before
    it (the driver fetches one row ahead), and `rowid > k` seeks through the page where k would be;
    so after a failure rows are read one at a time with `rowid >= k LIMIT 1` (which neither steps past
    its row nor visits k's page unless k is on it) up to the damage, and the damage is skipped by
    probing for the first key whose page reads.
    """
    select = f"SELECT rowid, {', '.join(columns)} FROM {table} WHERE rowid >= ? ORDER BY rowid LIMIT ?"
    start = -KEY_MAX - 1  # the next key to read
    chunked = True
    while start <= KEY_MAX:
        limit = ROWS_PER_READ if chunked else 1
        rows_read = 0
        try:
            for row in source.execute(select, (start, limit)):
                rows_read += 1
                start = int(row[0]) + 1
                yield tuple(row[1:])
        except sqlite3.DatabaseError as exc:
            if chunked:
                chunked = False  # go over the next rows one by one: the failure may hide a good row
                continue
            log.warning(
                "outbox salvage: unreadable rows", extra={"table": table, "from_rowid": start, "error": str(exc)}
            )
            yield None
            resume = _next_readable_key(source, select, start)
            if resume is None:
                return
            start = resume
        else:
            if rows_read < limit:
                return  # the end of the table
        chunked = True


def _reads(source: sqlite3.Connection, select: str, start: int) -> bool:
    """Whether the first row at or after key `start` (or the end of the table) can be read."""
    try:
        source.execute(select, (start, 1)).fetchall()
    except sqlite3.DatabaseError:
        return False
    return True


def _next_readable_key(source: sqlite3.Connection, select: str, failed_at: int) -> int | None:
    """The smallest key k > `failed_at` from which reading works, found by doubling then bisection."""
    low, step = failed_at, 1
    while True:
        probe = failed_at + step
        if probe > KEY_MAX:
            return None
        if _reads(source, select, probe):
            break
        low, step = probe, step * 2
    high = probe
    while high - low > 1:
        middle = (low + high) // 2
        if _reads(source, select, middle):
            high = middle
        else:
            low = middle
    return high


def _well_typed(types: Sequence[type], row: Sequence[object]) -> bool:
    return len(row) == len(types) and all(isinstance(value, kind) for value, kind in zip(row, types, strict=True))


def _event_matches(row: Sequence[object]) -> bool:
    """A stored event parses and carries the seq, event_id and class of its row (else the cell is garbage).

    SQLite keeps no checksum of a row: damage that leaves a payload parsing and agreeing with its row's
    columns is not detected here.
    """
    seq, event_id, event_class, _created_at_ms, payload = row
    assert isinstance(payload, bytes)
    event = events_pb2.Event()
    try:
        event.ParseFromString(payload)
    except DecodeError:
        return False
    return event.seq == seq and event.event_id == event_id and event.event_class == event_class


def _continue_seqs(target: sqlite3.Connection, report: SalvageReport, old_counter: int | None) -> None:
    """Seqs go on above every salvaged seq and above the old counter; say what may be lost at the tail."""
    last = report.events_last_seq
    if report.events_damaged_at_tail:
        if old_counter is not None and old_counter > last:
            report.events_lost_ranges.append((last + 1, old_counter))
        elif old_counter is None:
            report.extent_known = False  # rows after the last salvaged one may have existed: how many is unknown
    next_after = max(old_counter or 0, last)
    # AUTOINCREMENT's counter: the next seq handed out is next_after + 1.
    target.execute("DELETE FROM sqlite_sequence WHERE name = 'outbox'")
    if next_after:
        target.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('outbox', ?)", (next_after,))


def _fsync(path: Path) -> None:
    """Flush a file's data, or a directory's entries (a rename is only on disk once its directory is)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
