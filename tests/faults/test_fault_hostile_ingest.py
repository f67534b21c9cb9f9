"""A hostile client on the ingest port, against a real cloud on 127.0.0.1 port 0, while a legit gateway streams.

Every case sends raw bytes or raw protobuf over its own gRPC stream and asserts three things:
the status or reject names what was wrong and where; nothing that should not be stored was
(events, gateway state, positions); and `LegitGateway`, streaming on another stream at the same
moment (half of its batches before the attack, half after), lost nothing and doubled nothing.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio
from tallyport.v1 import events_pb2, ingest_pb2, inventory_pb2, inventory_pb2_grpc

from cloud.ingest.commit import SEQ_MAX
from cloud.server import CloudServer
from tests.cloud.cloud_testkit import BASE_TIME_S, cloud_config, item, make_event, sqlite_section
from tests.cloud.gateway_clients import (
    LegitGateway,
    all_events,
    batch_bytes,
    expect_status,
    gateway_states,
    hello_bytes,
    quarantine_entries,
    raw_stream,
    read_message,
)

HOSTILE = "gw-hostile"
MESSAGE_BYTES_MAX = 64 * 1024
STREAMS_MAX = 32


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[CloudServer]:
    config = cloud_config(sqlite_section(tmp_path), max_message_bytes=MESSAGE_BYTES_MAX, max_streams=STREAMS_MAX)
    async with CloudServer(config) as server:
        yield server


@pytest.fixture
async def channel(cloud: CloudServer) -> AsyncIterator[aio.Channel]:
    async with aio.insecure_channel(cloud.target) as opened:
        yield opened


async def hostile_stream(channel: aio.Channel, gateway_id: str = HOSTILE) -> Any:
    """A raw stream that has sent a valid Hello and got its Welcome."""
    call = raw_stream(channel)
    await call.write(hello_bytes(gateway_id))
    assert (await read_message(call)).WhichOneof("body") == "welcome"
    return call


async def assert_nothing_stored_for(channel: aio.Channel, gateway_id: str = HOSTILE) -> None:
    assert await all_events(channel, gateway_id) == []
    states = await gateway_states(channel)
    assert all(state.events_stored == 0 for (gateway, _), state in states.items() if gateway == gateway_id)


# ---- oversized messages ------------------------------------------------------------------


@pytest.mark.parametrize("after_hello", [False, True], ids=["as-first-message", "after-hello"])
async def test_an_oversized_message_is_refused_resource_exhausted_and_the_server_carries_on(
    cloud: CloudServer, channel: aio.Channel, after_hello: bool
) -> None:
    async with LegitGateway(cloud.target) as legit:
        call = await hostile_stream(channel) if after_hello else raw_stream(channel)
        await call.write(b"\x12" + b"\xff" * (MESSAGE_BYTES_MAX + 100))
        details = await expect_status(call, grpc.StatusCode.RESOURCE_EXHAUSTED)
        assert f"larger than max ({MESSAGE_BYTES_MAX + 101} vs. {MESSAGE_BYTES_MAX})" in details
        # The server is fine afterwards: the same client streams a valid batch.
        call = await hostile_stream(channel)
        await call.write(batch_bytes(1, [make_event(1, gateway_id=HOSTILE)]))
        assert (await read_message(call)).ack.committed_through_seq == 1
        call.cancel()
    await legit.verify(channel)
    assert len(await all_events(channel, HOSTILE)) == 1


# ---- wrong types ---------------------------------------------------------------------------

# A Welcome is field 1 of CloudMessage, as Hello is of GatewayMessage: it parses as a Hello whose
# field 1 (gateway_id, a string) came as a varint, so protobuf keeps it as an unknown field.
CLOUD_MESSAGE = ingest_pb2.CloudMessage(welcome=ingest_pb2.Welcome(resume_after_seq=5)).SerializeToString()
WRONG_FIRST_MESSAGES = {
    "not-protobuf": (b"\xff\xff\xff\xff", "message 1 of the stream is not a tallyport.v1.GatewayMessage"),
    "truncated-hello": (hello_bytes(HOSTILE)[:-3], "message 1 of the stream is not a tallyport.v1.GatewayMessage"),
    "hello-gateway-id-not-utf8": (
        b"\x0a\x05" + b"\x0a\x03\xff\xfe\xfd",
        "message 1 of the stream is not a tallyport.v1.GatewayMessage",
    ),
    "another-message-type": (CLOUD_MESSAGE, "Hello.gateway_id '' must match"),
    "hello-field-wrong-wire-type": (b"\x0a\x02\x08\x07", "Hello.gateway_id '' must match"),
    "only-unknown-fields": (b"\xf8\x06\x01", "the first message must be a Hello, got nothing"),
    "empty-message": (b"", "the first message must be a Hello, got nothing"),
    "batch-before-hello": (
        batch_bytes(1, [make_event(1, gateway_id=HOSTILE)]),
        "the first message must be a Hello, got batch",
    ),
    "hello-time-out-of-range": (
        hello_bytes(HOSTILE, gateway_time=Timestamp(seconds=2**62)),
        f"Hello.gateway_time ({2**62} s, 0 ns) is not a valid time",
    ),
}


@pytest.mark.parametrize("case", list(WRONG_FIRST_MESSAGES))
async def test_a_first_message_that_is_not_a_hello_is_refused_invalid_argument(
    cloud: CloudServer, channel: aio.Channel, case: str
) -> None:
    raw, expected = WRONG_FIRST_MESSAGES[case]
    async with LegitGateway(cloud.target) as legit:
        call = raw_stream(channel)
        await call.write(raw)
        assert expected in await expect_status(call, grpc.StatusCode.INVALID_ARGUMENT)
    await legit.verify(channel)
    await assert_nothing_stored_for(channel)
    assert HOSTILE not in {gateway for gateway, _ in await gateway_states(channel)}


WRONG_LATER_MESSAGES = {
    "not-protobuf": (b"\xff\xff\xff\xff", "message 2 of the stream is not a tallyport.v1.GatewayMessage"),
    "batch-with-garbage-event": (
        b"\x12\x04" + b"\x12\x02\xff\xff",
        "message 2 of the stream is not a tallyport.v1.GatewayMessage",
    ),
    "batch-field-wrong-wire-type": (b"\x10\x01", "expected an EventBatch, got nothing"),
    "second-hello": (hello_bytes(HOSTILE), "expected an EventBatch, got hello"),
    "batch-time-out-of-range": (
        ingest_pb2.GatewayMessage(
            batch=ingest_pb2.EventBatch(
                batch_id=7, events=[make_event(1, gateway_id=HOSTILE)], gateway_time=Timestamp(nanos=-1)
            )
        ).SerializeToString(),
        "batch 7: gateway_time (0 s, -1 ns) is not a valid time",
    ),
}


@pytest.mark.parametrize("case", list(WRONG_LATER_MESSAGES))
async def test_a_later_message_that_is_not_a_batch_is_refused_invalid_argument(
    cloud: CloudServer, channel: aio.Channel, case: str
) -> None:
    raw, expected = WRONG_LATER_MESSAGES[case]
    async with LegitGateway(cloud.target) as legit:
        call = await hostile_stream(channel)
        await call.write(raw)
        assert expected in await expect_status(call, grpc.StatusCode.INVALID_ARGUMENT)
    await legit.verify(channel)
    await assert_nothing_stored_for(channel)


async def test_unknown_fields_beside_a_valid_hello_and_batch_are_ignored(
    cloud: CloudServer, channel: aio.Channel
) -> None:
    """Forward compatibility: a newer agent's extra fields change nothing."""
    unknown = b"\xf8\x06\x01"  # field 111, varint 1
    async with LegitGateway(cloud.target) as legit:
        call = raw_stream(channel)
        await call.write(hello_bytes(HOSTILE) + unknown)
        assert (await read_message(call)).WhichOneof("body") == "welcome"
        await call.write(batch_bytes(1, [make_event(1, gateway_id=HOSTILE)]) + unknown)
        ack = (await read_message(call)).ack
        assert (ack.committed_through_seq, ack.accepted) == (1, 1)
        call.cancel()
    await legit.verify(channel)


# ---- seqs ----------------------------------------------------------------------------------


def _seqs_batch(seqs: list[int]) -> bytes:
    events = [make_event(1, gateway_id=HOSTILE) for _ in seqs]
    for event, seq in zip(events, seqs, strict=True):
        event.seq = seq
        event.event_id = f"urn:uuid:hostile-{seq}"
    return batch_bytes(9, events)


BAD_SEQS = {
    "descending": ([3, 2], "batch 9: events[1].seq is 2, expected 4 (seqs must be ascending and contiguous)"),
    "repeated": ([5, 5], "batch 9: events[1].seq is 5, expected 6"),
    "with-a-hole": ([1, 3], "batch 9: events[1].seq is 3, expected 2"),
    "negative-as-uint64": ([2**64 - 1], f"batch 9: seq {2**64 - 1} is above the maximum {SEQ_MAX}"),
    "above-int64": ([2**63], f"batch 9: seq {2**63} is above the maximum {SEQ_MAX}"),
    "running-past-int64": ([SEQ_MAX, SEQ_MAX + 1], f"is above the maximum {SEQ_MAX}"),
}


@pytest.mark.parametrize("case", list(BAD_SEQS))
async def test_a_batch_with_impossible_seqs_aborts_and_stores_nothing(
    cloud: CloudServer, channel: aio.Channel, case: str
) -> None:
    seqs, expected = BAD_SEQS[case]
    async with LegitGateway(cloud.target) as legit:
        call = await hostile_stream(channel)
        await call.write(_seqs_batch(seqs))
        assert expected in await expect_status(call, grpc.StatusCode.INVALID_ARGUMENT)
    await legit.verify(channel)
    await assert_nothing_stored_for(channel)
    state = (await gateway_states(channel))[(HOSTILE, "outbox-h")]
    assert (state.committed_through_seq, list(state.gaps)) == (0, [])


async def test_a_seq_far_ahead_is_a_recorded_gap_never_a_silent_jump(cloud: CloudServer, channel: aio.Channel) -> None:
    """Skipping seqs is allowed (the edge sheds sensor samples), so it must be visible: a gap with its reason."""
    far = 10**12
    async with LegitGateway(cloud.target) as legit:
        call = await hostile_stream(channel)
        await call.write(_seqs_batch([far]))
        assert (await read_message(call)).ack.committed_through_seq == far
        call.cancel()
    await legit.verify(channel)
    state = (await gateway_states(channel))[(HOSTILE, "outbox-h")]
    assert [(gap.first_seq, gap.last_seq, gap.reason) for gap in state.gaps] == [
        (1, far - 1, "missing between batches")
    ]


# ---- another gateway's id in the events ---------------------------------------------------------


async def test_events_claiming_another_gateway_are_quarantined_under_the_stream_gateway(
    cloud: CloudServer, channel: aio.Channel
) -> None:
    async with LegitGateway(cloud.target) as legit:
        call = await hostile_stream(channel)
        # Valid events in every other respect, claiming the legit gateway and seqs it is about to send.
        forged = [make_event(seq, gateway_id=legit.gateway_id) for seq in (1, 2)]
        for index, event in enumerate(forged):
            event.event_id = f"urn:uuid:forged-{index}"
            event.seq = index + 1
        await call.write(batch_bytes(1, forged))
        ack = (await read_message(call)).ack
        assert (ack.committed_through_seq, ack.accepted) == (2, 0)
        assert [(reject.seq, reject.code) for reject in ack.rejects] == [
            (1, ingest_pb2.REJECT_CODE_WRONG_GATEWAY),
            (2, ingest_pb2.REJECT_CODE_WRONG_GATEWAY),
        ]
        assert "gateway_id 'gw-legit' differs from the stream's gateway 'gw-hostile'" in ack.rejects[0].reason
        call.cancel()
    await legit.verify(channel)  # the forged ids are not among the legit gateway's events
    quarantined = [(entry.gateway_id, entry.event_id) for entry in await quarantine_entries(channel)]
    assert quarantined == [(HOSTILE, "urn:uuid:forged-1"), (HOSTILE, "urn:uuid:forged-0")]


# ---- replayed batches ---------------------------------------------------------------------------


async def test_replayed_batches_store_nothing_twice_and_ack_right(cloud: CloudServer, channel: aio.Channel) -> None:
    events = [make_event(seq, gateway_id=HOSTILE) for seq in range(1, 31)]
    async with LegitGateway(cloud.target) as legit:
        call = await hostile_stream(channel)
        acks = []
        # The batch, the same batch twice more, an overlapping one, then the first again after reconnecting.
        for batch_id, chunk in enumerate([events[:10], events[:10], events[:10], events[5:20]], start=1):
            await call.write(batch_bytes(batch_id, chunk))
            acks.append((await read_message(call)).ack)
        call.cancel()
        call = raw_stream(channel)
        await call.write(hello_bytes(HOSTILE))
        welcome = (await read_message(call)).welcome
        await call.write(batch_bytes(5, events[:10]))
        acks.append((await read_message(call)).ack)
        await call.write(batch_bytes(6, events[20:]))
        acks.append((await read_message(call)).ack)
        call.cancel()
    assert welcome.resume_after_seq == 20
    assert [
        (ack.batch_id, ack.committed_through_seq, ack.accepted, ack.duplicates, len(ack.rejects)) for ack in acks
    ] == [
        (1, 10, 10, 0, 0),
        (2, 10, 0, 10, 0),
        (3, 10, 0, 10, 0),
        (4, 20, 10, 5, 0),
        (5, 20, 0, 10, 0),
        (6, 30, 10, 0, 0),
    ]
    stored = [event.event_id for event in await all_events(channel, HOSTILE)]
    assert sorted(stored) == sorted(event.event_id for event in events)
    await legit.verify(channel)


# ---- forged batches -----------------------------------------------------------------------------


async def test_a_forged_event_id_with_other_content_keeps_the_first_and_reports_the_conflict(
    cloud: CloudServer, channel: aio.Channel
) -> None:
    inventory = inventory_pb2_grpc.InventoryServiceStub(channel)
    original = make_event(1, gateway_id=HOSTILE)
    forged = make_event(2, gateway_id=HOSTILE, event_id=original.event_id, biz_location="urn:tallyport:loc:dc1:exit")
    forged.objects[0].CopyFrom(original.objects[0])
    async with LegitGateway(cloud.target) as legit:
        call = await hostile_stream(channel)
        await call.write(batch_bytes(1, [original]))
        assert (await read_message(call)).ack.accepted == 1
        await call.write(batch_bytes(2, [forged]))
        ack = (await read_message(call)).ack
        call.cancel()
    assert (ack.committed_through_seq, ack.accepted, ack.duplicates) == (2, 0, 0)
    (reject,) = ack.rejects
    assert (reject.seq, reject.event_id, reject.code) == (2, original.event_id, ingest_pb2.REJECT_CODE_CONFLICT)
    assert (
        reject.reason == f"event_id {original.event_id!r} is already stored with other content; the first copy is kept"
    )
    (stored,) = await all_events(channel, HOSTILE)
    assert stored == original  # not overwritten
    position = await inventory.GetPosition(inventory_pb2.GetPositionRequest(id=original.objects[0].id))
    assert position.biz_location == original.biz_location  # the forged move was not projected
    (entry,) = await quarantine_entries(channel)
    assert (entry.seq, entry.reason) == (2, reject.reason)
    assert events_pb2.Event.FromString(entry.payload) == forged  # the forged copy is kept as evidence
    await legit.verify(channel)


async def test_a_forged_event_reusing_another_gateways_event_id_is_a_conflict(
    cloud: CloudServer, channel: aio.Channel
) -> None:
    async with LegitGateway(cloud.target) as legit:
        stolen_id = make_event(1, gateway_id=legit.gateway_id).event_id  # stored in the first half
        forged = make_event(1, gateway_id=HOSTILE, event_id=stolen_id)
        call = await hostile_stream(channel)
        await call.write(batch_bytes(1, [forged]))
        ack = (await read_message(call)).ack
        call.cancel()
    assert [(reject.event_id, reject.code) for reject in ack.rejects] == [(stolen_id, ingest_pb2.REJECT_CODE_CONFLICT)]
    await legit.verify(channel)
    (kept,) = [event for event in await all_events(channel, legit.gateway_id) if event.event_id == stolen_id]
    assert kept.gateway_id == legit.gateway_id


async def test_a_new_event_under_an_already_committed_seq_is_a_conflict(
    cloud: CloudServer, channel: aio.Channel
) -> None:
    """Below the high-water mark a seq can only be replayed: an event_id never stored there is forged (or a
    restored outbox), and is quarantined with the reason instead of being stored beside the first."""
    first = [make_event(seq, gateway_id=HOSTILE) for seq in (1, 2, 3)]
    forged = make_event(2, gateway_id=HOSTILE, event_id="urn:uuid:not-the-seq-2-event")
    async with LegitGateway(cloud.target) as legit:
        call = await hostile_stream(channel)
        await call.write(batch_bytes(1, first))
        assert (await read_message(call)).ack.accepted == 3
        await call.write(batch_bytes(2, [forged, first[2]]))  # seqs 2, 3 again: one forged, one replayed
        ack = (await read_message(call)).ack
        call.cancel()
    assert (ack.committed_through_seq, ack.accepted, ack.duplicates) == (3, 0, 1)
    (reject,) = ack.rejects
    assert reject.code == ingest_pb2.REJECT_CODE_CONFLICT
    assert reject.reason == (
        "seq 2 of outbox 'outbox-h' was already committed (through 3) and event_id "
        "'urn:uuid:not-the-seq-2-event' was never stored: the seq cannot hold a new event"
    )
    stored = sorted(event.event_id for event in await all_events(channel, HOSTILE))
    assert stored == sorted(event.event_id for event in first)
    assert [entry.event_id for entry in await quarantine_entries(channel)] == [forged.event_id]
    await legit.verify(channel)


async def test_a_forged_batch_of_impossible_values_is_quarantined_with_reasons(
    cloud: CloudServer, channel: aio.Channel
) -> None:
    impossible = [
        make_event(1, gateway_id=HOSTILE, time_s=4_200_000_000),  # year 2103
        make_event(2, gateway_id=HOSTILE, objects=[item(gtin_14="09501101530004")]),  # bad check digit
        make_event(3, gateway_id=HOSTILE, event_id="x" * 200),
    ]
    impossible[0].event_time_offset_minutes = 10_000
    async with LegitGateway(cloud.target) as legit:
        call = await hostile_stream(channel)
        await call.write(batch_bytes(1, impossible))
        ack = (await read_message(call)).ack
        call.cancel()
    assert (ack.committed_through_seq, ack.accepted) == (3, 0)
    assert [reject.reason for reject in ack.rejects] == [
        "event_time 4200000000 s since the epoch is outside the years 2000-2100",
        "objects[0].gtin '09501101530004': check digit should be 3",
        "event_id is 200 characters; at most 128 allowed",
    ]
    await assert_nothing_stored_for(channel)
    assert len(await quarantine_entries(channel)) == 3
    await legit.verify(channel)


# ---- floods and slow clients ----------------------------------------------------------------------


async def _open_until_accepted(channel: aio.Channel, count: int, prefix: str) -> list[Any]:
    """Hold `count` streams past their Welcome, retrying while abandoned streams are still being
    released on the server (bounded): a refusal along the way must be the stream cap's."""
    async with asyncio.timeout(20):
        while True:
            opened = await asyncio.gather(
                *(hostile_stream(channel, f"{prefix}-{n}") for n in range(count)), return_exceptions=True
            )
            failures = [result for result in opened if isinstance(result, BaseException)]
            if not failures:
                return list(opened)
            for result in opened:
                if not isinstance(result, BaseException):
                    result.cancel()
            for failure in failures:
                assert isinstance(failure, aio.AioRpcError), failure
                assert failure.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, failure
            await asyncio.sleep(0.05)


async def test_thousands_of_abandoned_streams_never_pass_the_cap_and_release_their_slots(
    cloud: CloudServer, channel: aio.Channel
) -> None:
    async def opened(n: int) -> tuple[Any, str]:
        """Open a stream and leave it hanging: Hello'd (with the cloud's answer), half a message, or nothing."""
        call = raw_stream(channel)
        if n % 3 == 2:
            return call, ""
        message = hello_bytes(f"gw-flood-{n}") if n % 3 == 0 else hello_bytes(HOSTILE, outbox_id=f"o{n}")[:5]
        try:
            await call.write(message)
        except aio.AioRpcError:
            # Refused before the write went out: gRPC then reports the write's failure (INTERNAL), not
            # the cloud's status, so there is nothing more to learn from this stream.
            return call, "ended before its write"
        if n % 3 == 1:
            return call, ""
        try:
            return call, (await read_message(call)).WhichOneof("body") or ""
        except aio.AioRpcError as exc:
            return call, f"{exc.code().name}: {exc.details()}"

    answers: list[str] = []
    async with LegitGateway(cloud.target, count=40) as legit:
        for wave in range(20):  # 2000 streams, 100 open at a time: three times the cap
            calls = await asyncio.gather(*(opened(wave * 100 + n) for n in range(100)))
            welcomed = [answer for _, answer in calls if answer == "welcome"]
            assert len(welcomed) <= STREAMS_MAX - 1  # the legit gateway holds the last slot
            answers.extend(answer for _, answer in calls)
            for call, _ in calls:
                call.cancel()
    await legit.verify(channel)
    refusal = f"the cloud already serves its limit of {STREAMS_MAX} uplink streams ([ingest].max_streams); retry later"
    assert f"RESOURCE_EXHAUSTED: {refusal}" in answers  # the flood did press the cap
    assert set(answers) <= {"", "welcome", "ended before its write", f"RESOURCE_EXHAUSTED: {refusal}"}
    # Every abandoned stream gave its slot back: the cap admits exactly STREAMS_MAX streams again,
    # a legit gateway's among them, and refuses the next.
    held = await _open_until_accepted(channel, STREAMS_MAX - 1, "held")
    async with LegitGateway(cloud.target, "gw-legit-2", count=40) as after:
        over = raw_stream(channel)
        details = await expect_status(over, grpc.StatusCode.RESOURCE_EXHAUSTED)
    for call in held:
        call.cancel()
    assert details == refusal
    await after.verify(channel)
    await assert_nothing_stored_for(channel)


async def test_a_client_that_never_sends_a_hello_is_cut_off(
    cloud: CloudServer, channel: aio.Channel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("cloud.ingest.service.HELLO_TIMEOUT_S", 0.3)
    async with LegitGateway(cloud.target) as legit:
        silent = [raw_stream(channel) for _ in range(STREAMS_MAX // 2)]
        for call in silent:
            assert await expect_status(call, grpc.StatusCode.DEADLINE_EXCEEDED) == "no Hello within 0.3 s"
    await legit.verify(channel)


async def test_a_client_silent_after_its_hello_holds_one_slot_and_ends_at_shutdown(tmp_path: Path) -> None:
    """A quiet gateway may hold its stream for hours (keepalive finds dead ones), so a slowloris after its
    Hello is indistinguishable from one: it costs one stream slot, blocks nobody, and shutdown ends it."""
    config = cloud_config(sqlite_section(tmp_path), max_streams=STREAMS_MAX)
    server = CloudServer(config)
    await server.start()
    try:
        async with aio.insecure_channel(server.target) as channel:
            async with LegitGateway(server.target) as legit:
                slow = await hostile_stream(channel)
            await legit.verify(channel)
            await server.stop(grace_s=2)
            details = await expect_status(slow, grpc.StatusCode.UNAVAILABLE)
            assert details == "the cloud is shutting down; reconnect"
    finally:
        await server.stop()


async def test_raw_tcp_clients_stalling_in_the_http2_preface_block_no_gateway(
    cloud: CloudServer, channel: aio.Channel
) -> None:
    host, port = cloud.target.rsplit(":", 1)
    sockets: list[socket.socket] = []
    try:
        for _ in range(64):
            stalled = socket.create_connection((host, int(port)), timeout=5)
            stalled.sendall(b"PRI * HTTP/2.0\r\n")  # half the client preface, then nothing
            sockets.append(stalled)
        async with LegitGateway(cloud.target) as legit:
            pass
        await legit.verify(channel)
    finally:
        for stalled in sockets:
            stalled.close()


async def test_a_batch_far_in_the_future_is_quarantined_not_dropped(cloud: CloudServer, channel: aio.Channel) -> None:
    far = make_event(1, gateway_id=HOSTILE, time_s=BASE_TIME_S)
    far.event_time.GetCurrentTime()
    far.event_time.seconds += 3 * 3600 + 30  # beyond the default 2 h allowed ahead
    async with LegitGateway(cloud.target) as legit:
        call = await hostile_stream(channel)
        await call.write(batch_bytes(1, [far]))
        ack = (await read_message(call)).ack
        call.cancel()
    (reject,) = ack.rejects
    assert reject.reason.startswith("event_time is 3 h 00 min")
    assert "ahead of the cloud's clock, beyond the 2 h 00 min 00 s allowed ([ingest].max_event_time_ahead_ms" in (
        reject.reason
    )
    assert [entry.event_id for entry in await quarantine_entries(channel)] == [far.event_id]
    await legit.verify(channel)
