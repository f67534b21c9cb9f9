"""The hand-written batch framing equals what protobuf itself would serialize."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from tallyport.v1 import events_pb2, ingest_pb2

from edge.uplink.wire import encode_batch_message


@given(
    batch_id=st.integers(min_value=0, max_value=2**64 - 1),
    locations=st.lists(st.text(max_size=300), max_size=20),
)
def test_encoded_batch_parses_to_the_same_events(batch_id: int, locations: list[str]) -> None:
    events = [events_pb2.Event(seq=n + 1, biz_location=loc) for n, loc in enumerate(locations)]
    wire = encode_batch_message(batch_id, [e.SerializeToString() for e in events])
    parsed = ingest_pb2.GatewayMessage.FromString(wire)
    assert parsed.WhichOneof("body") == "batch"
    assert parsed.batch.batch_id == batch_id
    assert list(parsed.batch.events) == events
    expected = ingest_pb2.GatewayMessage(batch=ingest_pb2.EventBatch(batch_id=batch_id, events=events))
    assert wire == expected.SerializeToString()
