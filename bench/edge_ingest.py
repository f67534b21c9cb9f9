"""Edge durable ingest: scanner frames through decode and validation into the committed outbox.

Baseline, same run, same machine: raw `sqlite3` inserts of the same rows (seq INTEGER PRIMARY KEY,
same payload bytes) with the same durability (WAL, synchronous=FULL), 1000 rows per transaction.
"""

from __future__ import annotations

import random
import sqlite3
import tempfile
import time
from pathlib import Path

from tallyport.v1 import events_pb2

from edge.clock import SystemClock
from edge.config import ReadPointConfig
from edge.drivers.scanner import DecodeOptions, ScanDecoded, decode_scan
from edge.outbox import open_outbox
from edge.pipeline.scan_events import scan_to_event

BATCH = 1000
READ_POINT = ReadPointConfig(
    name="dock-1",
    id="urn:tallyport:rp:bench:dock-1",
    biz_location="urn:tallyport:loc:bench:dock-1",
    biz_step="receiving",
    action="ADD",
)


def _frames(count: int) -> list[bytes]:
    rng = random.Random(1)
    return [f"]C101095011015300031727033110L{rng.randrange(10**6)}\x1d21S{n:09d}".encode() for n in range(count)]


def _events(frames: list[bytes]) -> list[events_pb2.Event]:
    clock = SystemClock()
    events = []
    options = DecodeOptions()
    for frame in frames:
        scan = decode_scan(frame, options)
        assert isinstance(scan, ScanDecoded), scan
        events.append(
            scan_to_event(
                scan,
                gateway_id="gw-bench",
                device_id="scanner-1",
                read_point=READ_POINT,
                read_time=clock.now(),
            )
        )
    return events


async def _outbox_rate(path: Path, frames: list[bytes], decode: bool) -> float:
    events = None if decode else _events(frames)
    async with open_outbox(path, clock=SystemClock(), rng=random.Random(1), commit_events_max=BATCH) as outbox:
        started = time.perf_counter()
        for start in range(0, len(frames), BATCH):
            chunk = _events(frames[start : start + BATCH]) if events is None else events[start : start + BATCH]
            await outbox.append_many(chunk)
        elapsed = time.perf_counter() - started
    return len(frames) / elapsed


def _raw_sqlite_rate(path: Path, payloads: list[bytes]) -> float:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(
        "CREATE TABLE outbox (seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL, event_class INTEGER NOT NULL,"
        " created_at_ms INTEGER NOT NULL, payload BLOB NOT NULL)"
    )
    rows = [(n + 1, f"urn:uuid:{n:032x}", 1, 0, payload) for n, payload in enumerate(payloads)]
    started = time.perf_counter()
    for start in range(0, len(rows), BATCH):
        db.execute("BEGIN")
        db.executemany("INSERT INTO outbox VALUES (?, ?, ?, ?, ?)", rows[start : start + BATCH])
        db.execute("COMMIT")
    elapsed = time.perf_counter() - started
    db.close()
    return len(rows) / elapsed


async def run(quick: bool = False) -> None:
    count = 10_000 if quick else 100_000
    frames = _frames(count)
    payloads = [event.SerializeToString() for event in _events(frames[:BATCH])] * (count // BATCH)
    with tempfile.TemporaryDirectory() as tmp:
        raw = _raw_sqlite_rate(Path(tmp) / "raw.db", payloads)
        outbox_only = await _outbox_rate(Path(tmp) / "outbox.db", frames, decode=False)
        full = await _outbox_rate(Path(tmp) / "pipeline.db", frames, decode=True)
    print(f"edge durable ingest, {count} events, batch {BATCH}, WAL + synchronous=FULL")
    print(f"  baseline raw sqlite3 inserts            {raw:>10,.0f} rows/s")
    print(f"  outbox group commit (prebuilt events)   {outbox_only:>10,.0f} events/s  ({outbox_only / raw:.0%} of raw)")
    print(f"  scan frames → decode → event → outbox   {full:>10,.0f} events/s  ({full / raw:.0%} of raw)")
