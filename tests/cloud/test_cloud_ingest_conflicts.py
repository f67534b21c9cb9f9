"""Exactly-once by event_id, on each store: a repeat is a duplicate, a contradiction is a reported conflict.

The same event_id with the same content (whatever seq it comes under) changes nothing; with other
content, or a new event_id under a seq already committed, the first copy stays and the other is
quarantined with REJECT_CODE_CONFLICT. The hostile-client versions of these run in
tests/faults/test_fault_hostile_ingest.py; here each store's `stored_payloads` is exercised.
"""

from __future__ import annotations

from typing import Any

from cloud_testkit import DOCK, GATEWAY, STORAGE, Uplink, make_event
from grpc import aio
from tallyport.v1 import events_pb2, ingest_pb2, inventory_pb2


async def listed_events(inventory: Any) -> list[events_pb2.Event]:
    reply = await inventory.ListEvents(inventory_pb2.ListEventsRequest(page_size=1000))
    return list(reply.events)


async def test_the_same_event_under_a_new_outbox_is_a_duplicate(channel: aio.Channel, inventory: Any) -> None:
    """A salvaged outbox resends its events under a new outbox_id with their bytes unchanged."""
    events = [make_event(seq) for seq in (1, 2, 3)]
    async with Uplink(channel) as up:
        await up.hello()
        await up.send(1, events)
    async with Uplink(channel) as up:
        await up.hello(outbox_id="outbox-salvaged")
        ack = await up.send(1, events)
    assert (ack.accepted, ack.duplicates, list(ack.rejects)) == (0, 3, [])
    assert len(await listed_events(inventory)) == 3


async def test_an_event_id_with_other_content_keeps_the_first_and_is_quarantined(
    channel: aio.Channel, inventory: Any
) -> None:
    first = make_event(1, biz_location=DOCK)
    other = make_event(2, event_id=first.event_id, biz_location=STORAGE)
    async with Uplink(channel) as up:
        await up.hello()
        await up.send(1, [first])
        ack = await up.send(2, [other])
    assert (ack.committed_through_seq, ack.accepted, ack.duplicates) == (2, 0, 0)
    assert [(reject.seq, reject.code) for reject in ack.rejects] == [(2, ingest_pb2.REJECT_CODE_CONFLICT)]
    assert await listed_events(inventory) == [first]
    quarantined = await inventory.ListQuarantine(inventory_pb2.ListQuarantineRequest())
    assert [(entry.gateway_id, entry.seq, entry.reason) for entry in quarantined.entries] == [
        (GATEWAY, 2, ack.rejects[0].reason)
    ]


async def test_a_new_event_id_under_a_committed_seq_is_a_conflict(channel: aio.Channel, inventory: Any) -> None:
    async with Uplink(channel) as up:
        await up.hello()
        await up.send(1, [make_event(1), make_event(2)])
    async with Uplink(channel) as up:
        welcome = await up.hello()
        ack = await up.send(1, [make_event(1, event_id="urn:uuid:restored-from-backup"), make_event(2)])
    assert welcome.resume_after_seq == 2
    assert (ack.committed_through_seq, ack.accepted, ack.duplicates) == (2, 0, 1)
    assert [(reject.seq, reject.code) for reject in ack.rejects] == [(1, ingest_pb2.REJECT_CODE_CONFLICT)]
    assert "was already committed (through 2)" in ack.rejects[0].reason
    assert sorted(event.seq for event in await listed_events(inventory)) == [1, 2]
