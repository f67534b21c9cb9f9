"""The SQLite outbox: group commit, seq and event_id assignment, acknowledged delete, quarantine."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from pathlib import Path

import pytest
from tallyport.v1 import events_pb2

from edge.clock import SystemClock
from edge.outbox import FrameMarker, Rejected, open_outbox


def _event(n: int) -> events_pb2.Event:
    event = events_pb2.Event(gateway_id="gw-1", biz_location=f"loc-{n}")
    event.event_time.GetCurrentTime()
    return event


async def test_append_assigns_contiguous_seq_and_a_uuid7_event_id(tmp_path: Path) -> None:
    async with open_outbox(tmp_path / "o.db", clock=SystemClock(), rng=random.Random(1)) as outbox:
        seqs = await outbox.append_many([_event(n) for n in range(5)])
        events = await outbox.list_events(10)
    assert seqs == [1, 2, 3, 4, 5]
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert all(e.event_id.startswith("urn:uuid:") and e.event_id[23] == "7" for e in events)
    assert len({e.event_id for e in events}) == 5


async def test_concurrent_appends_are_grouped_into_few_commits(tmp_path: Path) -> None:
    async with open_outbox(tmp_path / "o.db", clock=SystemClock(), rng=random.Random(1)) as outbox:
        await asyncio.gather(*(outbox.append(_event(n)) for n in range(500)))
        assert outbox.events_total == 500
        assert outbox.commits_total < 50


async def test_event_id_set_by_the_caller_is_kept(tmp_path: Path) -> None:
    async with open_outbox(tmp_path / "o.db", clock=SystemClock(), rng=random.Random(1)) as outbox:
        event = _event(1)
        event.event_id = "urn:uuid:given"
        await outbox.append(event)
        (stored,) = await outbox.list_events(1)
    assert stored.event_id == "urn:uuid:given"


async def test_rows_survive_reopen_and_leave_only_when_acknowledged(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    async with open_outbox(path, clock=SystemClock(), rng=random.Random(1)) as outbox:
        await outbox.append_many([_event(n) for n in range(10)])
        outbox_id = outbox.outbox_id
        assert await outbox.delete_through(4) == 4
    async with open_outbox(path, clock=SystemClock(), rng=random.Random(2)) as outbox:
        stats = await outbox.stats()
        assert outbox.outbox_id == outbox_id
        assert (stats.events, stats.oldest_seq, stats.newest_seq) == (6, 5, 10)
        assert [seq for seq, _ in await outbox.read_after(4, 100)] == [5, 6, 7, 8, 9, 10]


async def test_seq_is_never_reused_after_everything_was_acknowledged(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    async with open_outbox(path, clock=SystemClock(), rng=random.Random(1)) as outbox:
        await outbox.append_many([_event(n) for n in range(3)])
        await outbox.delete_through(3)
    async with open_outbox(path, clock=SystemClock(), rng=random.Random(1)) as outbox:
        assert await outbox.append(_event(9)) == 4


async def test_ensure_seq_after_skips_forward_when_the_cloud_is_ahead(tmp_path: Path) -> None:
    async with open_outbox(tmp_path / "o.db", clock=SystemClock(), rng=random.Random(1)) as outbox:
        await outbox.append(_event(1))
        outbox.ensure_seq_after(100)
        assert await outbox.append(_event(2)) == 101


async def test_quarantine_keeps_the_raw_read_and_its_reason(tmp_path: Path) -> None:
    async with open_outbox(tmp_path / "o.db", clock=SystemClock(), rng=random.Random(1)) as outbox:
        rejected = Rejected("scanner-1", "check_digit", "GTIN check digit should be 3", b"]C1bad\x00")
        first = await outbox.quarantine(rejected)
        second = await outbox.quarantine(rejected)
        records = await outbox.list_quarantine(10)
        stats = await outbox.stats()
    assert (first, second) == (1, 2)
    assert stats.quarantined == 2 and stats.events == 0
    assert records[0].raw == b"]C1bad\x00"
    assert records[0].reason == "GTIN check digit should be 3"
    assert records[0].reason_code == "check_digit"
    assert len(records[0].raw_sha256) == 64


async def test_frame_marker_is_committed_with_the_event_and_acked_later(tmp_path: Path) -> None:
    async with open_outbox(tmp_path / "o.db", clock=SystemClock(), rng=random.Random(1)) as outbox:
        await outbox.append(_event(1), marker=FrameMarker("scanner-1", "ab" * 32))
        before = await outbox.last_frame("scanner-1")
        await outbox.mark_frame_acked("scanner-1")
        after = await outbox.last_frame("scanner-1")
        assert await outbox.last_frame("scanner-2") is None
    assert before is not None and before.raw_sha256 == "ab" * 32 and not before.acked
    assert after is not None and after.acked


async def test_a_failed_commit_reports_outbox_error_and_stores_nothing(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    async with open_outbox(path, clock=SystemClock(), rng=random.Random(1)) as outbox:
        await outbox.append(_event(1))
        # A trigger makes the next insert fail inside the transaction, as a full disk would.
        with sqlite3.connect(path) as other:
            other.execute("CREATE TRIGGER refuse BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'disk full'); END")
        from edge.errors import OutboxError

        failed = _event(2)
        try:
            await outbox.append(failed)
        except OutboxError as exc:
            assert "disk full" in str(exc)
        else:
            raise AssertionError("append should have failed")
        with sqlite3.connect(path) as other:
            other.execute("DROP TRIGGER refuse")
        assert failed.seq == 0
        assert await outbox.append(_event(3)) == 2
        assert (await outbox.stats()).events == 2


def _sensor_event(n: int) -> events_pb2.Event:
    event = _event(n)
    event.event_class = events_pb2.EVENT_CLASS_SENSOR
    event.biz_location = "x" * 2000  # make each sample take real space
    return event


async def test_near_the_cap_sensor_samples_are_shed_first_and_movements_kept(tmp_path: Path) -> None:
    cap = 1024 * 1024
    async with open_outbox(tmp_path / "o.db", clock=SystemClock(), rng=random.Random(1), bytes_max=cap) as outbox:
        movements = await outbox.append_many([_event(n) for n in range(50)])
        for start in range(0, 600, 50):
            await outbox.append_many([_sensor_event(n) for n in range(start, start + 50)])
        kept = {event.seq: event.event_class for event in await outbox.list_events(10_000)}
        assert outbox.shed_total > 0
        assert all(seq in kept for seq in movements)
        assert sum(1 for c in kept.values() if c == events_pb2.EVENT_CLASS_SENSOR) < 600
        assert await outbox.used_bytes() < cap
        assert not outbox.full


async def test_at_the_cap_with_only_movements_new_events_are_refused_not_dropped(tmp_path: Path) -> None:
    from edge.errors import OutboxFullError

    cap = 1024 * 1024
    async with open_outbox(tmp_path / "o.db", clock=SystemClock(), rng=random.Random(1), bytes_max=cap) as outbox:
        with pytest.raises(OutboxFullError):
            for _ in range(40):
                await outbox.append_many(
                    [events_pb2.Event(gateway_id="gw-1", biz_location="y" * 2000) for _ in range(50)]
                )
        stored = (await outbox.stats()).events
        assert outbox.full and outbox.refused_total > 0
        assert outbox.shed_total == 0  # nothing sheddable: movements are never dropped
        # The cloud acknowledges the backlog: space frees up and events are accepted again.
        await outbox.delete_through(stored)
        assert not outbox.full
        assert await outbox.append(_event(1)) > stored


async def test_journaled_reads_leave_only_with_the_events_they_became(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    async with open_outbox(path, clock=SystemClock(), rng=random.Random(1)) as outbox:
        ids = await outbox.journal_reads("reader-1", [b"read-a", b"read-b", b"read-c"])
        more = await outbox.journal_reads("reader-2", [b"read-d"])
        assert ids == [1, 2, 3] and more == [4]
        await outbox.append_many([_event(1)], consumed_journal_ids=ids[:2])
    async with open_outbox(path, clock=SystemClock(), rng=random.Random(1)) as outbox:
        left = await outbox.journaled_reads()
        assert left == [(3, "reader-1", b"read-c"), (4, "reader-2", b"read-d")]
        assert (await outbox.stats()).events == 1


async def test_a_failed_commit_keeps_the_journal_untouched(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    async with open_outbox(path, clock=SystemClock(), rng=random.Random(1)) as outbox:
        ids = await outbox.journal_reads("reader-1", [b"read-a"])
        with sqlite3.connect(path) as other:
            other.execute("CREATE TRIGGER refuse BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'io'); END")
        from edge.errors import OutboxError

        with pytest.raises(OutboxError):
            await outbox.append_many([_event(1)], consumed_journal_ids=ids)
        assert [row[0] for row in await outbox.journaled_reads()] == ids


async def test_a_cancelled_append_at_the_cap_does_not_stop_the_writer(tmp_path: Path) -> None:
    from edge.errors import OutboxFullError

    cap = 1024 * 1024
    async with open_outbox(tmp_path / "o.db", clock=SystemClock(), rng=random.Random(1), bytes_max=cap) as outbox:
        with pytest.raises(OutboxFullError):
            for _ in range(40):
                await outbox.append_many([events_pb2.Event(gateway_id="gw-1", biz_location="y" * 2000)] * 50)
        waiting = asyncio.create_task(outbox.append(_event(1)))
        await asyncio.sleep(0)  # queued, now waiting for its commit
        waiting.cancel()
        # The writer meets the cancelled submission and must carry on answering the next one.
        with pytest.raises(OutboxFullError):
            await asyncio.wait_for(outbox.append(_event(2)), 5)
