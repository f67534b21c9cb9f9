"""Encode uplink messages straight from the outbox's stored bytes.

The outbox already holds each event serialized; a `GatewayMessage{batch: EventBatch{...}}` is those
bytes framed as protobuf length-delimited fields, so the uplink never parses and re-serializes an
event on its way out. Written by hand because protobuf's Python API has no way to embed
pre-serialized sub-messages; `tests/edge/test_uplink_wire.py` checks it against the real encoder.
"""

from __future__ import annotations

from collections.abc import Sequence

from tallyport.v1 import ingest_pb2

# Field tags: (field_number << 3) | wire_type, per protos/tallyport/v1/ingest.proto.
_TAG_GATEWAY_MESSAGE_BATCH = (2 << 3) | 2
_TAG_BATCH_ID = (1 << 3) | 0
_TAG_BATCH_EVENTS = (2 << 3) | 2
_TAG_BATCH_GATEWAY_TIME = (3 << 3) | 2
_TAG_BATCH_FOLLOWS_SEQ = (4 << 3) | 0
_TAG_TIMESTAMP_SECONDS = (1 << 3) | 0
_TAG_TIMESTAMP_NANOS = (2 << 3) | 0


def _varint(value: int) -> bytes:
    assert value >= 0
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_batch_message(
    batch_id: int,
    event_payloads: Sequence[bytes],
    gateway_time_ms: int | None = None,
    follows_seq: int | None = None,
) -> bytes:
    """The serialized `GatewayMessage` carrying `EventBatch{batch_id, events, gateway_time, follows_seq}`.

    `gateway_time_ms` (Unix ms, >= 0) is the gateway's clock when sending; None leaves it unset.
    `follows_seq` (an `optional` field: sent even when 0) only to a cloud that accepts ranges; None leaves it unset.
    """
    # proto3 leaves a zero scalar off the wire; do the same so the bytes equal protobuf's own.
    parts = [bytes([_TAG_BATCH_ID]), _varint(batch_id)] if batch_id else []
    for payload in event_payloads:
        parts.append(bytes([_TAG_BATCH_EVENTS]))
        parts.append(_varint(len(payload)))
        parts.append(payload)
    if gateway_time_ms is not None:
        seconds, millis = divmod(gateway_time_ms, 1000)
        stamp = (bytes([_TAG_TIMESTAMP_SECONDS]) + _varint(seconds)) if seconds else b""
        stamp += (bytes([_TAG_TIMESTAMP_NANOS]) + _varint(millis * 1_000_000)) if millis else b""
        parts.extend((bytes([_TAG_BATCH_GATEWAY_TIME]), _varint(len(stamp)), stamp))
    if follows_seq is not None:
        parts.extend((bytes([_TAG_BATCH_FOLLOWS_SEQ]), _varint(follows_seq)))
    inner = b"".join(parts)
    return bytes([_TAG_GATEWAY_MESSAGE_BATCH]) + _varint(len(inner)) + inner


def encode_hello_message(hello: ingest_pb2.Hello) -> bytes:
    return ingest_pb2.GatewayMessage(hello=hello).SerializeToString()
