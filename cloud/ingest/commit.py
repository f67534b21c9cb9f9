"""What a Hello and an EventBatch do to the store, each in one atomic transaction.

This is the exactly-once half of the uplink: the edge sends at least once, and here
- an event whose event_id is already stored with the same content (everything but the seq,
  which only says where an outbox put it) is a duplicate and changes nothing;
- an event whose event_id is already stored with other content, or whose seq is already
  committed (at or below the high-water mark, or inside a committed range) while its event_id
  was never stored, is a conflict: the first copy is kept, this one is quarantined with the
  reason and reported as REJECT_CODE_CONFLICT (a forged or corrupted batch, or an outbox
  restored from a backup; nothing is overwritten silently);
- an invalid event is quarantined (once per (gateway, outbox, seq)) and counts as handled;
- the batch's events, its quarantine rows, its projection changes, any gap and the new
  committed_through_seq and committed ranges commit together, so an Ack always describes
  committed state;
- seqs the edge no longer has are recorded as a gap before they count as committed: below
  the Hello's oldest_seq, and between a batch's `follows_seq` and its first seq (without
  `follows_seq`, between the highest committed seq below the batch and its first seq).
Committed seqs are the prefix 1..committed_through_seq plus at most `ranges_max` ranges above it
(`cloud.ingest.seq_ranges`): a batch with `follows_seq` may start above the prefix (fresh events
sent while a backlog drains) and leaves the seqs between the prefix and it to come later.
The gRPC side (`cloud.ingest.service`) checks the stream-level rules and talks to the edge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from google.protobuf.message import DecodeError
from tallyport.v1 import events_pb2, ingest_pb2

from cloud.errors import ProtocolError
from cloud.ingest.seq_ranges import add_committed, committed_below, is_committed, uncommitted
from cloud.ingest.validation import event_time_ahead_problem, validate_event
from cloud.projections import moved_objects, project
from cloud.store import (
    EventObjectKey,
    GapRecord,
    IngestTransaction,
    QuarantineRecord,
    Store,
    StoredEvent,
    StreamState,
)
from cloud.timestamps import to_micros

__all__ = [
    "GAP_REASON_AT_HELLO",
    "GAP_REASON_BETWEEN_BATCHES",
    "SEQ_MAX",
    "BatchOutcome",
    "CheckedEvent",
    "HelloOutcome",
    "check_batch_shape",
    "check_events",
    "commit_batch",
    "open_stream",
]

# Seqs are uint64 on the wire but SQLite integers are signed 64-bit: larger seqs are refused.
SEQ_MAX = 2**63 - 1
GAP_REASON_AT_HELLO = "not in the edge outbox at hello"
GAP_REASON_BETWEEN_BATCHES = "missing between batches"


@dataclass(frozen=True, slots=True)
class HelloOutcome:
    """The delivery state after a Hello, and what the Hello revealed."""

    state: StreamState
    gaps: tuple[GapRecord, ...]
    new_outbox: bool
    other_outbox_ids: tuple[str, ...]  # the gateway's other outboxes, when this one is new


@dataclass(frozen=True, slots=True)
class CheckedEvent:
    """One event of a batch after validation, ready to store or quarantine."""

    event: events_pb2.Event
    payload: bytes
    reject: ingest_pb2.Reject | None


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What one committed batch did; `ack` is what the edge is told."""

    ack: ingest_pb2.Ack
    previous_seq: int  # committed_through_seq before the batch
    gaps: tuple[GapRecord, ...]
    quarantined: int  # new quarantine rows (a replayed reject is not quarantined twice)
    stored: tuple[events_pb2.Event, ...] = ()  # the events this batch newly stored, in seq order (post-commit hooks)


async def open_stream(
    store: Store, hello: ingest_pb2.Hello, now_us: int, clock_offset_ms: int | None = None
) -> HelloOutcome:
    """Create or touch the (gateway, outbox) state; record a gap if the edge lost seqs we never got.

    `clock_offset_ms` (measured from the Hello) replaces the recorded offset; None keeps it.
    """
    async with store.ingest_transaction() as tx:
        state = await tx.stream_state(hello.gateway_id, hello.outbox_id)
        new_outbox = state is None
        other_outbox_ids: tuple[str, ...] = ()
        if state is None:  # a new outbox starts its seq space at 0
            other_outbox_ids = tuple(await tx.outbox_ids(hello.gateway_id))
            state = StreamState(hello.gateway_id, hello.outbox_id, 0, hello.agent_version, now_us, now_us)
        gaps: tuple[GapRecord, ...] = ()
        if hello.oldest_seq > state.committed_through_seq + 1:
            gaps = await _record_gaps(tx, state, hello.oldest_seq - 1, GAP_REASON_AT_HELLO, now_us)
            prefix, ranges = add_committed(state.committed_through_seq, state.committed_ranges, 1, hello.oldest_seq - 1)
            state = replace(state, committed_through_seq=prefix, committed_ranges=ranges)
        state = replace(state, agent_version=hello.agent_version, last_contact_us=now_us)
        if clock_offset_ms is not None:
            state = replace(state, clock_offset_ms=clock_offset_ms)
        await tx.save_stream_state(state)
    return HelloOutcome(state, gaps, new_outbox, other_outbox_ids)


def check_batch_shape(batch: ingest_pb2.EventBatch, max_batch_events: int) -> None:
    """Raise ProtocolError unless the batch is non-empty, within the limit, seq-contiguous, and any
    `follows_seq` is below its first seq."""
    count = len(batch.events)
    if count == 0:
        raise ProtocolError(f"batch {batch.batch_id} is empty")
    if count > max_batch_events:
        raise ProtocolError(f"batch {batch.batch_id} has {count} events; the limit is {max_batch_events}")
    first = batch.events[0].seq
    for index, event in enumerate(batch.events):
        if event.seq != first + index:
            raise ProtocolError(
                f"batch {batch.batch_id}: events[{index}].seq is {event.seq}, expected {first + index} "
                "(seqs must be ascending and contiguous)"
            )
    if first + count - 1 > SEQ_MAX:
        raise ProtocolError(f"batch {batch.batch_id}: seq {first + count - 1} is above the maximum {SEQ_MAX}")
    if batch.HasField("follows_seq") and batch.follows_seq >= first:
        raise ProtocolError(
            f"batch {batch.batch_id}: follows_seq {batch.follows_seq} must be below its first seq {first}"
        )


def check_events(
    batch: ingest_pb2.EventBatch, gateway_id: str, now_us: int | None = None, event_time_ahead_max_ms: int = 0
) -> list[CheckedEvent]:
    """Validate every event of a well-shaped batch against the contract.

    With `now_us`, an event_time more than `event_time_ahead_max_ms` ahead of it is invalid too.
    """
    checked = []
    for event in batch.events:
        reason = validate_event(event, gateway_id)
        if reason is None and now_us is not None:
            reason = event_time_ahead_problem(event, now_us, event_time_ahead_max_ms)
        reject = None
        if reason is not None:
            code = (
                ingest_pb2.REJECT_CODE_WRONG_GATEWAY
                if event.gateway_id != gateway_id
                else ingest_pb2.REJECT_CODE_INVALID
            )
            reject = ingest_pb2.Reject(seq=event.seq, event_id=event.event_id, code=code, reason=reason)
        checked.append(CheckedEvent(event, event.SerializeToString(), reject))
    return checked


async def commit_batch(
    store: Store,
    gateway_id: str,
    outbox_id: str,
    batch_id: int,
    checked: Sequence[CheckedEvent],
    now_us: int,
    clock_offset_ms: int | None = None,
    follows_seq: int | None = None,
    ranges_max: int = 0,
) -> BatchOutcome:
    """Store, quarantine and project one batch and record its seqs as committed, all in one transaction.

    `clock_offset_ms`, when given, replaces the stream's recorded gateway clock offset.
    `follows_seq` (EventBatch.follows_seq, below the first seq): the seqs between it and the batch
    are gone at the edge; None: the batch follows the highest committed seq below it. Raise
    ProtocolError, committing nothing, when the batch would leave more than `ranges_max` committed
    ranges above the prefix.
    """
    assert checked, "check_batch_shape refuses empty batches"
    first_seq, last_seq = checked[0].event.seq, checked[-1].event.seq
    valid = [item for item in checked if item.reject is None]
    async with store.ingest_transaction() as tx:
        state = await tx.stream_state(gateway_id, outbox_id)
        if state is None:  # the Hello created it; only a hand-edited database lacks it
            state = StreamState(gateway_id, outbox_id, 0, "", now_us, now_us)
        prefix, ranges = state.committed_through_seq, state.committed_ranges
        follows = committed_below(first_seq, prefix, ranges) if follows_seq is None else follows_seq
        new_prefix, new_ranges = add_committed(prefix, ranges, follows + 1, last_seq)
        if len(new_ranges) > ranges_max:
            raise ProtocolError(
                f"batch seqs {first_seq}..{last_seq} (after {follows}) would leave {len(new_ranges)} committed "
                f"ranges above seq {new_prefix}; the limit is {ranges_max} (Welcome.max_committed_ranges)"
            )
        gaps = await _record_gaps(tx, state, first_seq - 1, GAP_REASON_BETWEEN_BATCHES, now_us, low=follows + 1)
        # A seq already committed was handled before: it may only be a replay.
        above = [item for item in valid if not is_committed(item.event.seq, prefix, ranges)]
        inserted = await tx.insert_events([_stored(item, outbox_id, now_us) for item in above])
        kept = await tx.stored_payloads({item.event.event_id for item in valid} - inserted)
        sorted_out = _sort_out(valid, inserted, kept, outbox_id, prefix)
        rejected = sorted(
            [item for item in checked if item.reject is not None] + sorted_out.conflicts,
            key=lambda item: item.event.seq,
        )
        quarantined = await tx.quarantine([_quarantined(item, gateway_id, outbox_id, now_us) for item in rejected])
        fresh = sorted_out.fresh
        if fresh:
            await _apply_projections(tx, fresh)
        await tx.save_stream_state(
            replace(
                state,
                committed_through_seq=new_prefix,
                committed_ranges=new_ranges,
                last_contact_us=now_us,
                events_stored=state.events_stored + len(fresh),
                duplicates=state.duplicates + sorted_out.duplicates,
                rejects=state.rejects + quarantined,
                batches=state.batches + 1,
                clock_offset_ms=state.clock_offset_ms if clock_offset_ms is None else clock_offset_ms,
            )
        )
    ack = ingest_pb2.Ack(
        batch_id=batch_id,
        committed_through_seq=new_prefix,
        accepted=len(fresh),
        duplicates=sorted_out.duplicates,
        rejects=[item.reject for item in rejected if item.reject is not None],
        committed_ranges=[ingest_pb2.SeqRange(first_seq=first, last_seq=last) for first, last in new_ranges],
    )
    return BatchOutcome(ack, prefix, gaps, quarantined, tuple(fresh))


async def _record_gaps(
    tx: IngestTransaction, state: StreamState, high: int, reason: str, now_us: int, low: int = 1
) -> tuple[GapRecord, ...]:
    """Record the seqs in low..high that are not committed as gaps (the edge no longer has them)."""
    gaps = tuple(
        GapRecord(state.gateway_id, state.outbox_id, first, last, reason, now_us)
        for first, last in uncommitted(low, high, state.committed_through_seq, state.committed_ranges)
    )
    for gap in gaps:
        await tx.record_gap(gap)
    return gaps


@dataclass(slots=True)
class _SortedOut:
    fresh: list[events_pb2.Event]  # newly stored, in seq order
    duplicates: int
    conflicts: list[CheckedEvent]  # with their REJECT_CODE_CONFLICT reject


def _sort_out(
    valid: Sequence[CheckedEvent], inserted: set[str], kept: dict[str, bytes], outbox_id: str, committed_seq: int
) -> _SortedOut:
    """Which valid events were newly stored, which repeat a kept copy, and which contradict one."""
    sorted_out = _SortedOut([], 0, [])
    first_copies: dict[str, bytes] = {}  # the payload of each event_id this batch stored
    for item in valid:
        event = item.event
        if event.event_id in inserted and event.event_id not in first_copies:
            first_copies[event.event_id] = item.payload
            sorted_out.fresh.append(event)
            continue
        kept_payload = first_copies.get(event.event_id, kept.get(event.event_id))
        if kept_payload is None:
            where = f"through {committed_seq}" if event.seq <= committed_seq else "in a committed range"
            reason = (
                f"seq {event.seq} of outbox {outbox_id!r} was already committed ({where}) "
                f"and event_id {event.event_id!r} was never stored: the seq cannot hold a new event"
            )
        elif _same_content(kept_payload, item):
            sorted_out.duplicates += 1
            continue
        else:
            reason = f"event_id {event.event_id!r} is already stored with other content; the first copy is kept"
        reject = ingest_pb2.Reject(
            seq=event.seq, event_id=event.event_id, code=ingest_pb2.REJECT_CODE_CONFLICT, reason=reason
        )
        sorted_out.conflicts.append(replace(item, reject=reject))
    return sorted_out


def _same_content(kept_payload: bytes, item: CheckedEvent) -> bool:
    """Whether a stored event and `item` are the same event, whatever seq each was sent under."""
    if kept_payload == item.payload:
        return True
    try:
        kept = events_pb2.Event.FromString(kept_payload)
    except DecodeError:
        return False  # an unreadable stored copy: report the conflict rather than guess
    kept.seq = item.event.seq
    return kept == item.event


async def _apply_projections(tx: IngestTransaction, events: Sequence[events_pb2.Event]) -> None:
    object_ids = {identified.id for event in events for identified in moved_objects(event)}
    changes = project(events, await tx.load_positions(object_ids) if object_ids else {})
    await tx.save_positions(list(changes.positions.values()))
    await tx.apply_on_hand(changes.on_hand)
    await tx.apply_measures(changes.measures)


def _stored(item: CheckedEvent, outbox_id: str, now_us: int) -> StoredEvent:
    event = item.event
    mentions = {EventObjectKey(identified.id, identified.gtin) for identified in moved_objects(event)}
    mentions.update(EventObjectKey("", element.gtin) for element in event.quantities)
    return StoredEvent(
        event_id=event.event_id,
        gateway_id=event.gateway_id,
        outbox_id=outbox_id,
        seq=event.seq,
        event_time_us=to_micros(event.event_time),
        biz_location=event.biz_location,
        biz_step=event.biz_step,
        received_at_us=now_us,
        payload=item.payload,
        mentions=tuple(sorted(mentions, key=lambda key: (key.object_id, key.gtin))),
    )


def _quarantined(item: CheckedEvent, gateway_id: str, outbox_id: str, now_us: int) -> QuarantineRecord:
    assert item.reject is not None
    return QuarantineRecord(
        gateway_id=gateway_id,  # the stream's gateway, whatever the event claims
        outbox_id=outbox_id,
        seq=item.event.seq,
        event_id=item.event.event_id,
        reason=item.reject.reason,
        received_at_us=now_us,
        payload=item.payload,
    )
