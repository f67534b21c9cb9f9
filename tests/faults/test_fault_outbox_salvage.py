"""A corrupt or truncated outbox file at start: the agent keeps every readable event, moves the damaged file
aside, raises an alarm the cloud lists, and keeps running; every salvaged event reaches the cloud once.

The backlog is written through the edge's real outbox API; part of it is first delivered to the cloud under
the old outbox_id (as if the agent had sent it but died before its delete was durable), so the salvaged
outbox (a new outbox_id) resends events the cloud already holds. Then the file is damaged for real:
leaf pages overwritten with random bytes, the tail cut off, the events table's root page overwritten
(every leaf intact but unreachable through the b-tree), or the header destroyed; or leaf pages
overwritten in a file the agent was killed with, its ack of the delivered events (their delete) still
only in the WAL, which the salvage must read through. Which events sat on
the damaged pages is read from SQLite's own page map (`dbstat`) before the damage, independently of the
salvage code; those may be lost (unless already in the cloud), every other one must be in the cloud once.
A live scanner keeps scanning after the restart to show the agent runs on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import sqlite3
import time
from collections import Counter
from pathlib import Path

import grpc.aio
import pytest
from fault_site import (
    AGENT_READY,
    FaultSite,
    assert_exactly_once,
    count_delivery,
    events_stored,
    fault_seed,
    scaled,
    unique_gateway_id,
)
from tallyport.v1 import events_pb2, ingest_pb2, ingest_pb2_grpc, inventory_pb2, inventory_pb2_grpc

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

SEED = 20261129
BACKLOG = scaled(3000)
DELIVERED_BEFORE = 400  # backlog events the cloud got under the old outbox_id before the damage
PAGES_DAMAGED = 3
SETTLE_TIMEOUT_S = 60


def _rows(path: Path) -> dict[int, events_pb2.Event]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return {
            int(seq): events_pb2.Event.FromString(payload)
            for seq, payload in db.execute("SELECT seq, payload FROM outbox")
        }


def _leaves(path: Path) -> list[tuple[int, list[int]]]:
    """(page number, seqs on it) of every leaf of the outbox table, from SQLite's page map, in key order."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        leaves = db.execute(
            "SELECT pageno, ncell FROM dbstat WHERE name = 'outbox' AND pagetype = 'leaf' ORDER BY path"
        ).fetchall()
        seqs = [int(row[0]) for row in db.execute("SELECT seq FROM outbox ORDER BY seq")]
        page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
    assert page_size == 4096
    out, index = [], 0
    for pageno, cells in leaves:
        out.append((int(pageno), seqs[index : index + int(cells)]))
        index += int(cells)
    assert index == len(seqs), "the page map does not cover every row"
    return out


def _killed_after_deleting_the_delivered(path: Path) -> None:
    """Leave the outbox as an agent killed right after deleting the delivered events: the delete in the WAL."""
    live = sqlite3.connect(path, isolation_level=None)
    killed = [(file, file.with_name(file.name + ".killed")) for file in (path, *_sidecars(path))]
    try:
        live.execute("PRAGMA journal_mode=WAL")
        live.execute("PRAGMA wal_autocheckpoint=0")
        live.execute("DELETE FROM outbox WHERE seq <= ?", (DELIVERED_BEFORE,))
        for file, copy in killed:
            shutil.copyfile(file, copy)
    finally:
        live.close()  # a clean close checkpoints; the copies are what the kill left
    for file, copy in killed:
        os.replace(copy, file)
    assert _sidecars(path)[0].stat().st_size > 0


def _sidecars(path: Path) -> tuple[Path, Path]:
    return path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")


def _damage(path: Path, kind: str, rng: random.Random) -> set[int]:
    """Damage the closed outbox file; return the seqs whose rows sat on damaged pages."""
    leaves = _leaves(path)
    pages = path.stat().st_size // 4096
    if kind == "wal":
        _killed_after_deleting_the_delivered(path)
        kind = "pages"  # of the main file, on leaves the delete in the WAL did not touch
    late = [(page, seqs) for page, seqs in leaves if min(seqs) > DELIVERED_BEFORE + 100 and page < pages - 5]
    if kind == "pages":
        chosen = rng.sample(late, PAGES_DAMAGED)
        with path.open("r+b") as file:
            for page, _seqs in chosen:
                file.seek((page - 1) * 4096)
                file.write(rng.randbytes(4096))
        return {seq for _page, seqs in chosen for seq in seqs}
    if kind == "truncated":
        # Cut at a page boundary: a page cut in its middle keeps some of its rows, which this oracle
        # cannot tell apart (tests/edge/test_outbox_salvage.py cuts inside pages).
        keep_pages = pages - PAGES_DAMAGED
        with path.open("r+b") as file:
            file.truncate(keep_pages * 4096)
        return {seq for page, seqs in leaves if page > keep_pages for seq in seqs}
    if kind == "root":
        # The events table's root: an interior page every key is found through; its leaves are intact.
        with contextlib.closing(sqlite3.connect(path)) as db:
            (root,) = db.execute("SELECT rootpage FROM sqlite_schema WHERE name = 'outbox'").fetchone()
        with path.open("r+b") as file:
            file.seek((root - 1) * 4096)
            file.write(rng.randbytes(4096))
        return set()
    assert kind == "header"
    with path.open("r+b") as file:
        file.write(rng.randbytes(100))
    return set()


async def _deliver_under_old_outbox(site: FaultSite, outbox_id: str, events: list[events_pb2.Event]) -> None:
    """Send `events` to the cloud as the agent would have before the damage, and wait for their acks."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{site.cloud_port}") as channel:
        call = ingest_pb2_grpc.IngestServiceStub(channel).Stream()
        hello = ingest_pb2.Hello(gateway_id=site.gateway_id, outbox_id=outbox_id, agent_version="before-the-damage")
        await call.write(ingest_pb2.GatewayMessage(hello=hello))
        assert (await call.read()).WhichOneof("body") == "welcome"
        for batch_id, first in enumerate(range(0, len(events), 100), start=1):
            batch = ingest_pb2.EventBatch(batch_id=batch_id, events=events[first : first + 100])
            await call.write(ingest_pb2.GatewayMessage(batch=batch))
            reply = await call.read()
            assert reply.ack.committed_through_seq == events[min(first + 100, len(events)) - 1].seq
        await call.done_writing()
        await call.code()


def _asides(root: Path) -> list[Path]:
    return [
        p for p in root.iterdir() if p.name.startswith("outbox.db.corrupt-") and not p.name.endswith(("-wal", "-shm"))
    ]


def _kept_wals(root: Path) -> list[Path]:
    return [p for p in root.iterdir() if p.name.startswith("outbox.db.corrupt-") and p.name.endswith("-wal")]


async def _wait_stored(site: FaultSite, total: int, timeout_s: float) -> None:
    """Until the cloud has stored `total` events for the gateway, or the time is up (then the count shows it)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(grpc.aio.AioRpcError):
            if await events_stored(site.cloud_port, site.gateway_id) >= total:
                return
        await asyncio.sleep(0.1)


async def _gateway_alarms(site: FaultSite) -> dict[str, ingest_pb2.GatewayAlarm]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{site.cloud_port}") as channel:
        reply = await inventory_pb2_grpc.InventoryServiceStub(channel).ListGateways(
            inventory_pb2.ListGatewaysRequest(), timeout=5
        )
    return {
        alarm.code: alarm for state in reply.gateways if state.gateway_id == site.gateway_id for alarm in state.alarms
    }


@pytest.mark.parametrize("kind", ["pages", "truncated", "root", "header", "wal"])
async def test_a_damaged_outbox_is_salvaged_and_every_readable_event_reaches_the_cloud_once(
    tmp_path: Path, kind: str
) -> None:
    seed = fault_seed(SEED)
    rng = random.Random(f"{seed}-{kind}")
    site = FaultSite(tmp_path, scans=scaled(30), seed=seed, scan_interval_ms=20, gateway_id=unique_gateway_id())
    outbox_path = tmp_path / "outbox.db"
    try:
        await site.write_backlog(BACKLOG)
        rows = _rows(outbox_path)
        with contextlib.closing(sqlite3.connect(outbox_path)) as db:
            (old_outbox_id,) = db.execute("SELECT value FROM meta WHERE key = 'outbox_id'").fetchone()
        site.start_cloud()
        await site.wait_for_log("cloud", "cloud server listening", 1, timeout_s=20)
        delivered = [rows[seq] for seq in sorted(rows)[:DELIVERED_BEFORE]]
        await _deliver_under_old_outbox(site, old_outbox_id, delivered)

        on_damaged_pages = _damage(outbox_path, kind, rng)

        site.start_simulator()
        await site.wait_for_link()
        site.start_edge()
        await site.wait_for_log("edge", "outbox salvaged", 1, timeout_s=30)
        await site.wait_for_log("edge", AGENT_READY, 1, timeout_s=30)
        await site.wait_for_simulator(timeout_s=120)

        kept = {seq for seq in rows if seq not in on_damaged_pages}
        in_cloud_before = {event.seq for event in delivered}
        expected = Counter(obj.id for seq in sorted(kept | in_cloud_before) for obj in rows[seq].objects) + Counter(
            str(s["object_id"]) for s in site.truth_lines() if s["valid"] and s["object_id"] and s["outcome"] == "acked"
        )
        await _wait_stored(site, sum(expected.values()), SETTLE_TIMEOUT_S)
        count = count_delivery(expected, await site.events())
        alarms = await _gateway_alarms(site)
    finally:
        site.stop_all()

    print(f"kind={kind}: {len(on_damaged_pages)} events sat on damaged pages, {len(kept)} readable")
    assert_exactly_once(f"outbox_salvage_{kind}", seed, count, site)
    assert len(_asides(tmp_path)) == 1, "the damaged file is kept aside"
    salvaged = alarms.get("outbox_salvaged")
    assert salvaged is not None and salvaged.active, f"the cloud lists no active outbox_salvaged alarm: {alarms}"
    lost_unreadable = len(on_damaged_pages)
    if kind == "pages":
        # Seqs are contiguous here, so the holes between readable rows are exactly the damaged rows.
        assert f"at most {lost_unreadable} events lost" in salvaged.message, salvaged.message
    if kind in ("root", "header"):
        assert "at most 0 events lost" in salvaged.message, salvaged.message
    if kind == "wal":
        # The delivered events were deleted in the WAL: the salvage (its leaf scan included) must not
        # bring them back from the stale main-file pages.
        readable_undelivered = len({seq for seq in kept if seq > DELIVERED_BEFORE})
        assert f"salvaged {readable_undelivered} events " in salvaged.message, salvaged.message
        assert _kept_wals(tmp_path), "the damaged file's WAL is kept aside with it"
