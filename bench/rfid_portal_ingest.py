"""RFID reads through the portal pipeline into committed events, against raw SQLite inserts of the same reads.

Ours, per reader message of 50 reads: commit them to the read journal (the point where the reader may be
acknowledged), feed the portal engine, close the passes that are due and commit their events together
with the consumption of their journaled reads. Baseline, same run and durability (WAL, synchronous=FULL):
plain `sqlite3` inserts of the same serialized reads, 50 rows per transaction.
"""

from __future__ import annotations

import random
import sqlite3
import tempfile
import time
import zoneinfo
from datetime import timedelta
from pathlib import Path

from edge.clock import SystemClock
from edge.config import ReadPointConfig
from edge.outbox import open_outbox
from edge.pipeline.portal import PortalEngine
from edge.pipeline.portal_config import PortalConfig
from edge.pipeline.read_journal import encode_read
from edge.pipeline.reads import GpiEvent, TagRead
from hw_sim.rfid.passages import PassageScenario, SimTagRead, generate_passages

MESSAGE_READS = 50


def _reads(passages: int) -> list[TagRead | GpiEvent]:
    run = generate_passages(PassageScenario(seed=7, passages=passages))
    return [
        TagRead(e.reader, e.antenna, e.epc_hex, e.seen_at, e.peak_rssi_dbm)
        for e in run.events
        if isinstance(e, SimTagRead)
    ]


def _engine() -> PortalEngine:
    points = {
        f"{door}-{way}": ReadPointConfig(
            name=f"{door}-{way}",
            id=f"urn:rp:{door}",
            biz_location=f"urn:loc:{door}",
            biz_step="receiving" if way == "in" else "departing",
            action="ADD" if way == "in" else "OBSERVE",
        )
        for door in ("door-a", "door-b")
        for way in ("in", "out")
    }
    portals = [
        PortalConfig(
            name=door,
            readers=[reader],
            outside_antennas=[1, 2],
            inside_antennas=[3, 4],
            neighbours=[other],
            inbound_read_point=f"{door}-in",
            outbound_read_point=f"{door}-out",
            biz_location=f"urn:loc:{door}",
        )
        for door, reader, other in (("door-a", "reader-a", "door-b"), ("door-b", "reader-b", "door-a"))
    ]
    return PortalEngine(portals, points, "gw-bench", zoneinfo.ZoneInfo("UTC"))


async def _ours(path: Path, reads: list[TagRead | GpiEvent]) -> tuple[float, int]:
    engine = _engine()
    fed: list[tuple[int, object]] = []
    events_total = 0
    async with open_outbox(path, clock=SystemClock(), rng=random.Random(1)) as outbox:
        started = time.perf_counter()
        for start in range(0, len(reads), MESSAGE_READS):
            chunk = reads[start : start + MESSAGE_READS]
            ids = await outbox.journal_reads("reader", [encode_read(read, read.seen_at) for read in chunk])
            for journal_id, read in zip(ids, chunk, strict=True):
                assert isinstance(read, TagRead)
                engine.feed_tag(read, read.seen_at)
                fed.append((journal_id, read.seen_at))
            now = chunk[-1].seen_at
            passes = engine.advance(now)
            if passes:
                pending = [engine.pending_since(portal) for portal in ("door-a", "door-b")]
                cutoff = min((p for p in pending if p is not None), default=None)
                consumed = [jid for jid, at in fed if cutoff is None or at < cutoff]  # type: ignore[operator]
                fed = fed[len(consumed) :]
                events = [event for p in passes for event in engine.events_for(p, "zebra_reader")]
                await outbox.append_many(events, consumed_journal_ids=consumed)
                events_total += len(events)
        last = reads[-1].seen_at + timedelta(minutes=5)
        events = [event for p in engine.advance(last) for event in engine.events_for(p, "zebra_reader")]
        await outbox.append_many(events, consumed_journal_ids=[jid for jid, _ in fed])
        events_total += len(events)
        elapsed = time.perf_counter() - started
    return len(reads) / elapsed, events_total


def _raw(path: Path, reads: list[TagRead | GpiEvent]) -> float:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE reads (id INTEGER PRIMARY KEY, source TEXT, received_at_ms INTEGER, payload BLOB)")
    payloads = [encode_read(read, read.seen_at) for read in reads]
    started = time.perf_counter()
    for start in range(0, len(payloads), MESSAGE_READS):
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO reads (source, received_at_ms, payload) VALUES ('reader', 0, ?)",
            [(p,) for p in payloads[start : start + MESSAGE_READS]],
        )
        db.execute("COMMIT")
    elapsed = time.perf_counter() - started
    db.close()
    return len(payloads) / elapsed


async def run(quick: bool = False) -> None:
    reads = _reads(60 if quick else 400)
    with tempfile.TemporaryDirectory() as tmp:
        raw = _raw(Path(tmp) / "raw.db", reads)
        ours, events = await _ours(Path(tmp) / "outbox.db", reads)
    print(f"RFID reads → portal engine → committed events, {len(reads)} reads, {MESSAGE_READS} reads per message")
    print(f"  baseline raw sqlite3 inserts of the reads   {raw:>10,.0f} reads/s")
    ratio = f"({ours / raw:.0%} of raw)"
    print(f"  journal + engine + events committed          {ours:>10,.0f} reads/s  {ratio}, {events} events")
