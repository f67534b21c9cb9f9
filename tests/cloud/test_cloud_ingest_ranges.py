"""Committed seq ranges above the prefix (issue 5): batches with follows_seq over a real gRPC stream, for each store."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc
import pytest
from cloud_testkit import Uplink, make_event, make_events
from grpc import aio
from tallyport.v1 import events_pb2, ingest_pb2, inventory_pb2

from cloud.ingest.seq_ranges import add_committed, committed_below, is_committed, uncommitted
from cloud.ingest.service import COMMITTED_RANGES_MAX


async def send(up: Uplink, batch_id: int, events: Iterable[events_pb2.Event], follows_seq: int) -> ingest_pb2.Ack:
    """Send one batch with follows_seq set, as an edge that accepts ranges does, and read its ack."""
    await up.call.write(
        ingest_pb2.GatewayMessage(
            batch=ingest_pb2.EventBatch(batch_id=batch_id, events=list(events), follows_seq=follows_seq)
        )
    )
    reply = await up.call.read()
    assert reply.WhichOneof("body") == "ack", reply
    ack: ingest_pb2.Ack = reply.ack
    assert ack.batch_id == batch_id
    return ack


async def count_events(inventory: Any) -> int:
    total, token = 0, ""
    while True:
        reply = await inventory.ListEvents(inventory_pb2.ListEventsRequest(page_size=1000, page_token=token))
        total += len(reply.events)
        token = reply.next_page_token
        if not token:
            return total


async def gateway_state(inventory: Any) -> Any:
    reply = await inventory.ListGateways(inventory_pb2.ListGatewaysRequest())
    assert len(reply.gateways) == 1, reply
    return reply.gateways[0]


async def expect_abort(up: Uplink, code: grpc.StatusCode) -> str:
    with pytest.raises(aio.AioRpcError) as raised:
        await up.call.read()
    assert raised.value.code() == code, raised.value
    return str(raised.value.details())


def ranges(message: ingest_pb2.Ack | ingest_pb2.Welcome) -> list[tuple[int, int]]:
    return [(pair.first_seq, pair.last_seq) for pair in message.committed_ranges]


def test_range_arithmetic() -> None:
    assert add_committed(3, (), 11, 15) == (3, ((11, 15),))
    assert add_committed(3, ((11, 15),), 4, 10) == (15, ())  # touching the prefix merges into it
    assert add_committed(3, ((11, 15), (20, 25)), 16, 19) == (3, ((11, 25),))
    assert add_committed(3, ((11, 15),), 1, 2) == (3, ((11, 15),))  # already committed
    assert uncommitted(1, 30, 3, ((11, 15), (20, 25))) == [(4, 10), (16, 19), (26, 30)]
    assert uncommitted(12, 14, 3, ((11, 15),)) == []
    assert committed_below(11, 3, ((11, 15),)) == 3
    assert committed_below(18, 3, ((11, 15),)) == 15
    assert committed_below(13, 3, ((11, 15),)) == 12
    assert [is_committed(seq, 3, ((11, 15),)) for seq in (3, 4, 11, 15, 16)] == [True, False, True, True, False]


async def test_welcome_offers_ranges_and_the_byte_cap(channel: aio.Channel) -> None:
    async with Uplink(channel) as up:
        welcome = await up.hello()
    assert welcome.accepts_ranges
    assert welcome.max_committed_ranges == COMMITTED_RANGES_MAX
    assert ranges(welcome) == []
    # [ingest].max_message_bytes is 4 MiB by default; the Welcome leaves 64 KiB for the batch's other fields.
    assert welcome.batch_bytes_max == 4 * 1024 * 1024 - 64 * 1024


async def test_a_batch_above_the_prefix_commits_a_range_that_the_backlog_merges(
    channel: aio.Channel, inventory: Any
) -> None:
    async with Uplink(channel) as up:
        await up.hello()
        backlog = await send(up, 1, make_events(1, 3), follows_seq=0)
        live = await send(up, 2, make_events(11, 5), follows_seq=10)
        more_live = await send(up, 3, make_events(16, 2), follows_seq=15)
        merged = await send(up, 4, make_events(4, 7), follows_seq=3)
        await up.finish()
    assert (backlog.committed_through_seq, ranges(backlog)) == (3, [])
    assert (live.committed_through_seq, ranges(live), live.accepted) == (3, [(11, 15)], 5)
    assert (more_live.committed_through_seq, ranges(more_live)) == (3, [(11, 17)])
    assert (merged.committed_through_seq, ranges(merged), merged.accepted) == (17, [], 7)
    assert await count_events(inventory) == 17
    state = await gateway_state(inventory)
    assert (state.committed_through_seq, state.events_stored, list(state.gaps)) == (17, 17, [])


async def test_a_reconnect_is_told_the_ranges_and_resumes_below_them(channel: aio.Channel, inventory: Any) -> None:
    async with Uplink(channel) as up:
        await up.hello()
        await send(up, 1, make_events(1, 3), follows_seq=0)
        await send(up, 2, make_events(11, 5), follows_seq=10)
        await send(up, 3, make_events(21, 2), follows_seq=20)
        await up.finish()
    async with Uplink(channel) as up:
        welcome = await up.hello(oldest_seq=4)
        ack = await send(up, 1, make_events(4, 7), follows_seq=3)
        await up.finish()
    assert (welcome.resume_after_seq, ranges(welcome)) == (3, [(11, 15), (21, 22)])
    assert (ack.committed_through_seq, ranges(ack)) == (15, [(21, 22)])
    assert await count_events(inventory) == 17


async def test_follows_seq_declares_only_the_seqs_below_the_batch_gone(channel: aio.Channel, inventory: Any) -> None:
    async with Uplink(channel) as up:
        await up.hello()
        await send(up, 1, make_events(1, 3), follows_seq=0)
        await send(up, 2, make_events(11, 5), follows_seq=10)
        # The backlog lane read 6..10 after 3: seqs 4 and 5 were shed at the edge.
        ack = await send(up, 3, make_events(6, 5), follows_seq=3)
        await up.finish()
    assert (ack.committed_through_seq, ranges(ack)) == (15, [])
    state = await gateway_state(inventory)
    assert [(g.first_seq, g.last_seq, g.reason) for g in state.gaps] == [(4, 5, "missing between batches")]


async def test_a_backlog_batch_whose_follows_seq_spans_a_range_records_only_the_hole(
    channel: aio.Channel, inventory: Any
) -> None:
    async with Uplink(channel) as up:
        await up.hello()
        await send(up, 1, make_events(1, 3), follows_seq=0)
        await send(up, 2, make_events(11, 5), follows_seq=10)
        # Nothing was left below the range but 4..10 were shed; the next backlog batch follows 3.
        ack = await send(up, 3, make_events(16, 2), follows_seq=3)
        await up.finish()
    assert (ack.committed_through_seq, ranges(ack)) == (17, [])
    state = await gateway_state(inventory)
    assert [(g.first_seq, g.last_seq) for g in state.gaps] == [(4, 10)]
    assert state.events_stored == 10


async def test_a_replay_inside_a_range_is_a_duplicate_and_a_new_event_there_a_conflict(
    channel: aio.Channel, inventory: Any
) -> None:
    async with Uplink(channel) as up:
        await up.hello()
        await send(up, 1, make_events(1, 3), follows_seq=0)
        await send(up, 2, make_events(11, 5), follows_seq=10)
        replay = await send(up, 3, make_events(12, 2), follows_seq=11)
        forged = await send(up, 4, [make_event(14, event_id="urn:uuid:not-the-one-committed")], follows_seq=13)
        await up.finish()
    assert (replay.accepted, replay.duplicates, replay.committed_through_seq, ranges(replay)) == (0, 2, 3, [(11, 15)])
    assert (forged.accepted, forged.duplicates, ranges(forged)) == (0, 0, [(11, 15)])
    assert [(reject.seq, reject.code) for reject in forged.rejects] == [(14, ingest_pb2.REJECT_CODE_CONFLICT)]
    assert "was already committed (in a committed range)" in forged.rejects[0].reason
    assert await count_events(inventory) == 8
    quarantined = await inventory.ListQuarantine(inventory_pb2.ListQuarantineRequest(page_size=10))
    assert [entry.event_id for entry in quarantined.entries] == ["urn:uuid:not-the-one-committed"]


async def test_a_hello_past_a_range_records_the_gap_below_it_and_absorbs_it(
    channel: aio.Channel, inventory: Any
) -> None:
    async with Uplink(channel) as up:
        await up.hello()
        await send(up, 1, make_events(1, 3), follows_seq=0)
        await send(up, 2, make_events(11, 5), follows_seq=10)
        await up.finish()
    async with Uplink(channel) as up:
        welcome = await up.hello(oldest_seq=13)  # the edge lost 4..10 (and deleted the acked 11, 12)
        await up.finish()
    assert (welcome.resume_after_seq, ranges(welcome)) == (15, [])
    state = await gateway_state(inventory)
    assert [(g.first_seq, g.last_seq, g.reason) for g in state.gaps] == [(4, 10, "not in the edge outbox at hello")]


async def test_a_batch_without_follows_seq_follows_the_highest_committed_seq_below_it(
    channel: aio.Channel, inventory: Any
) -> None:
    """An older edge never sends follows_seq: what lies between the committed seqs and its batch is a gap, as before."""
    async with Uplink(channel) as up:
        await up.hello()
        await send(up, 1, make_events(1, 3), follows_seq=0)
        await send(up, 2, make_events(11, 5), follows_seq=10)
        below = await up.send(3, make_events(8, 3))  # 4..7 gone; 8..10 meet the range
        above = await up.send(4, make_events(20, 1))  # 16..19 gone
        await up.finish()
    assert (below.committed_through_seq, ranges(below)) == (15, [])
    assert (above.committed_through_seq, ranges(above)) == (20, [])
    state = await gateway_state(inventory)
    assert [(g.first_seq, g.last_seq) for g in state.gaps] == [(4, 7), (16, 19)]


async def test_more_ranges_than_the_limit_end_the_stream_and_commit_nothing(
    channel: aio.Channel, inventory: Any
) -> None:
    async with Uplink(channel) as up:
        await up.hello()
        for index in range(COMMITTED_RANGES_MAX):
            await send(up, index + 1, make_events(10 * (index + 1) + 1, 1), follows_seq=10 * (index + 1))
        over = 10 * (COMMITTED_RANGES_MAX + 1)
        await up.call.write(
            ingest_pb2.GatewayMessage(
                batch=ingest_pb2.EventBatch(batch_id=99, events=make_events(over + 1, 1), follows_seq=over)
            )
        )
        details = await expect_abort(up, grpc.StatusCode.INVALID_ARGUMENT)
    assert f"the limit is {COMMITTED_RANGES_MAX}" in details
    assert await count_events(inventory) == COMMITTED_RANGES_MAX


async def test_follows_seq_at_or_above_the_first_seq_is_refused(channel: aio.Channel) -> None:
    async with Uplink(channel) as up:
        await up.hello()
        await up.call.write(
            ingest_pb2.GatewayMessage(batch=ingest_pb2.EventBatch(batch_id=1, events=make_events(5, 1), follows_seq=5))
        )
        details = await expect_abort(up, grpc.StatusCode.INVALID_ARGUMENT)
    assert "follows_seq 5 must be below its first seq 5" in details


@pytest.mark.parametrize("follows_seq", [0, 7])
def test_follows_seq_is_sent_even_when_zero(follows_seq: int) -> None:
    """proto3 `optional`: presence is what says the edge accepts ranges, so 0 must be on the wire."""
    batch = ingest_pb2.EventBatch(batch_id=1, follows_seq=follows_seq)
    assert ingest_pb2.EventBatch.FromString(batch.SerializeToString()).HasField("follows_seq")
