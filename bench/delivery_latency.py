"""Read → queryable in the cloud: latency at a steady 1k events/s, and the drain of a backlog with live events.

Ours: a producer appends events at a fixed rate into the real outbox (group commit, fsync), the real uplink
streams them to the real aggregator running as its own process (`tallyport-cloud serve`: validation, dedupe,
projections, SQLite store with synchronous=FULL), and a watcher polls the aggregator's query API (`ListEvents`)
every 2 ms. An event's latency is the wall time the watcher first sees it minus the time it was handed to the
outbox (carried in its ``event_time``), so it includes up to one poll interval and one query.

1. Steady: 1k events/s for a few seconds on an empty outbox: latency p50/p99.
2. Drain: the uplink is stopped, the outbox is filled with a backlog (100k in quick mode, 1M in full), then the
   uplink starts again while the producer keeps adding live events at 1k/s. Figures: the drain rate (backlog
   events acknowledged as committed per second) and the latency of the live events produced during the drain.

Baselines, same run, same machine:

* latency: the same producer, batching and window over a bare ``grpc.aio`` bidirectional stream to a server that
  commits each batch's rows to raw ``sqlite3`` (WAL, synchronous=FULL) and then acks; latency is at the ack. That
  is one network hop and one durable commit, the floor under "visible in the cloud"; ours does two durable
  commits (edge outbox, cloud store), validation, dedupe, projections and a query. A bare stream without a
  commit would measure no durability at all, and a bare SQLite commit no network.
* drain rate: the bare ``grpc.aio`` stream moving the same serialized batches (``uplink_throughput``'s baseline).
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import tempfile
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import grpc.aio
from tallyport.v1 import events_pb2, ingest_pb2, inventory_pb2, inventory_pb2_grpc

from bench import uplink_throughput
from bench.cloud_process import cloud_process, free_port
from edge.backoff import Backoff
from edge.clock import SystemClock
from edge.outbox import Outbox, open_outbox
from edge.uplink import Uplink, UplinkSettings
from edge.uplink.wire import encode_batch_message

GATEWAY_ID = "gw-bench-latency"
RATE_PER_S = 1000
BATCH_EVENTS = 500
WINDOW = 4
POLL_INTERVAL_S = 0.002
FILL_CHUNK = 5000
SETTLE_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 900.0


def event(serial: int, produced_ns: int) -> events_pb2.Event:
    """A receiving event whose serial names it and whose event_time is when it was produced."""
    result = events_pb2.Event(
        gateway_id=GATEWAY_ID,
        type=events_pb2.EVENT_TYPE_OBJECT,
        action=events_pb2.ACTION_OBSERVE,
        biz_step=events_pb2.BIZ_STEP_RECEIVING,
        biz_location="urn:tallyport:loc:bench:dock-1",
        read_point=events_pb2.ReadPoint(id="urn:tallyport:rp:bench:dock-1", device_id="scanner-1"),
        event_class=events_pb2.EVENT_CLASS_MOVEMENT,
    )
    result.event_time.FromNanoseconds(produced_ns)
    result.objects.append(
        events_pb2.IdentifiedObject(
            id=f"https://id.gs1.org/01/09501101530003/21/S{serial}", gtin="09501101530003", serial=f"S{serial}"
        )
    )
    return result


def percentile_ms(latencies_ns: Sequence[int], fraction: float) -> float:
    ordered = sorted(latencies_ns)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] / 1e6


@dataclass
class Timeline:
    """When each event (by serial) was produced and when it became visible, in Unix ns.

    Serials are produced in ascending order, so the oldest event not yet seen is found with a cursor instead
    of a scan of every event (which would cost the process under test a lot at each 2 ms poll).
    """

    produced: dict[int, int] = field(default_factory=dict)
    visible: dict[int, int] = field(default_factory=dict)
    _cursor: int | None = None

    def latencies_ns(self, serials: Sequence[int]) -> list[int]:
        return [self.visible[serial] - self.produced[serial] for serial in serials if serial in self.visible]

    def oldest_unseen_ns(self) -> int | None:
        """Production time of the oldest event not yet visible; None when every produced event was seen."""
        if self._cursor is None:
            self._cursor = min(self.produced, default=None)
        while self._cursor is not None and self._cursor in self.visible:
            self._cursor += 1
        if self._cursor is None or self._cursor not in self.produced:
            return None
        return self.produced[self._cursor]


async def produce(outbox: Outbox, timeline: Timeline, first_serial: int, duration_s: float, stop: asyncio.Event) -> int:
    """Append one event every 1/RATE_PER_S s (each as its own append, as device intakes do) until ``duration_s``
    passed or ``stop`` is set; returns how many were produced."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    appends: set[asyncio.Task[int]] = set()
    count = 0
    while not stop.is_set() and loop.time() - started < duration_s:
        due = started + count / RATE_PER_S
        if due > loop.time():
            await asyncio.sleep(due - loop.time())
        serial = first_serial + count
        produced_ns = time.time_ns()
        timeline.produced[serial] = produced_ns
        task = asyncio.create_task(outbox.append(event(serial, produced_ns)))
        appends.add(task)
        task.add_done_callback(appends.discard)
        count += 1
    await asyncio.gather(*appends)
    return count


async def watch(target: str, timeline: Timeline, since_ns: int, stop: asyncio.Event) -> None:
    """Poll ListEvents for events produced since ``since_ns`` and stamp each one the first time it shows."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = inventory_pb2_grpc.InventoryServiceStub(channel)
        oldest_unseen_ns = since_ns
        while not stop.is_set():
            request = inventory_pb2.ListEventsRequest(gateway_id=GATEWAY_ID, page_size=1000)
            request.since.FromNanoseconds(oldest_unseen_ns)
            while True:
                response = await stub.ListEvents(request)
                seen_ns = time.time_ns()
                for stored in response.events:
                    timeline.visible.setdefault(int(stored.objects[0].serial[1:]), seen_ns)
                if not response.next_page_token:
                    break
                request.page_token = response.next_page_token
            oldest = timeline.oldest_unseen_ns()
            oldest_unseen_ns = oldest if oldest is not None else max(oldest_unseen_ns, time.time_ns() - 1_000_000_000)
            await asyncio.sleep(POLL_INTERVAL_S)


async def wait_visible(timeline: Timeline) -> None:
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while len(timeline.visible) < len(timeline.produced):
        if time.monotonic() > deadline:
            missing = len(timeline.produced) - len(timeline.visible)
            raise RuntimeError(f"{missing} events not queryable {SETTLE_TIMEOUT_S:.0f} s after they were produced")
        await asyncio.sleep(0.01)


def start_uplink(outbox: Outbox, target: str) -> tuple[Uplink, asyncio.Task[None]]:
    settings = UplinkSettings(
        target=target,
        gateway_id=GATEWAY_ID,
        agent_version="bench",
        batch_events_max=BATCH_EVENTS,
        unacked_batches_max=WINDOW,
    )
    uplink = Uplink(outbox, settings, Backoff(delay_ms_initial=20, delay_ms_max=200, rng=random.Random(1)))
    return uplink, asyncio.create_task(uplink.run())


async def stop_task(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@dataclass
class OurFigures:
    steady_p50_ms: float
    steady_p99_ms: float
    steady_events: int
    drain_events_per_s: float
    drain_s: float
    live_p50_ms: float
    live_p99_ms: float
    live_events: int


async def ours(root: Path, steady_s: float, backlog: int) -> OurFigures:
    port = free_port()
    target = f"127.0.0.1:{port}"
    timeline = Timeline()
    async with (
        cloud_process(root, port),
        open_outbox(root / "o.db", clock=SystemClock(), rng=random.Random(1)) as outbox,
    ):
        # 1. steady rate on an empty outbox
        uplink, uplink_task = start_uplink(outbox, target)
        stop_watching = asyncio.Event()
        watcher = asyncio.create_task(watch(target, timeline, time.time_ns(), stop_watching))
        steady = await produce(outbox, timeline, 0, steady_s, asyncio.Event())
        await wait_visible(timeline)
        steady_latencies = timeline.latencies_ns(range(steady))
        stop_watching.set()
        await watcher
        await stop_task(uplink_task)

        # 2. a backlog builds while the uplink is down, then drains while live events keep coming
        serial = steady
        for start in range(0, backlog, FILL_CHUNK):
            chunk = range(serial + start, serial + min(backlog, start + FILL_CHUNK))
            await outbox.append_many([event(n, time.time_ns()) for n in chunk])
        backlog_last_seq = (await outbox.stats()).newest_seq
        live_first = serial + backlog
        live_timeline = Timeline()
        stop_watching = asyncio.Event()
        drained = asyncio.Event()
        watcher = asyncio.create_task(watch(target, live_timeline, time.time_ns(), stop_watching))
        uplink, uplink_task = start_uplink(outbox, target)
        started = time.perf_counter()
        producer = asyncio.create_task(produce(outbox, live_timeline, live_first, 3600.0, drained))
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while uplink.acked_through_seq < backlog_last_seq:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"backlog not drained within {DRAIN_TIMEOUT_S:.0f} s "
                    f"(acked through seq {uplink.acked_through_seq} of {backlog_last_seq})"
                )
            await asyncio.sleep(0.005)
        drain_s = time.perf_counter() - started
        drained.set()
        live = await producer
        await wait_visible(live_timeline)
        stop_watching.set()
        await watcher
        await stop_task(uplink_task)
    live_latencies = live_timeline.latencies_ns(range(live_first, live_first + live))
    return OurFigures(
        steady_p50_ms=percentile_ms(steady_latencies, 0.50),
        steady_p99_ms=percentile_ms(steady_latencies, 0.99),
        steady_events=len(steady_latencies),
        drain_events_per_s=backlog / drain_s,
        drain_s=drain_s,
        live_p50_ms=percentile_ms(live_latencies, 0.50),
        live_p99_ms=percentile_ms(live_latencies, 0.99),
        live_events=len(live_latencies),
    )


async def baseline_latency(root: Path, duration_s: float) -> tuple[float, float]:
    """p50/p99 ms: producer → batches over a bare grpc.aio stream → raw sqlite3 commit → ack (see the docstring)."""
    db = sqlite3.connect(root / "raw.db", check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, payload BLOB NOT NULL)")

    def commit(payloads: Sequence[bytes]) -> None:
        db.execute("BEGIN")
        db.executemany("INSERT INTO events (payload) VALUES (?)", [(payload,) for payload in payloads])
        db.execute("COMMIT")

    async def stream(requests: object, context: object) -> object:
        async for request in requests:  # type: ignore[attr-defined]
            batch = ingest_pb2.GatewayMessage.FromString(request).batch
            await asyncio.to_thread(commit, [stored.SerializeToString() for stored in batch.events])
            yield ingest_pb2.CloudMessage(ack=ingest_pb2.Ack(batch_id=batch.batch_id)).SerializeToString()

    handler = grpc.method_handlers_generic_handler(
        "bench.Bare", {"Stream": grpc.stream_stream_rpc_method_handler(stream)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    pending: deque[tuple[int, bytes]] = deque()
    produced_more = asyncio.Event()
    latencies: list[int] = []
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.stream_stream(
                "/bench.Bare/Stream", request_serializer=lambda b: b, response_deserializer=lambda b: b
            )(None)
            in_flight: deque[list[int]] = deque()
            window_free = asyncio.Semaphore(WINDOW)

            async def send() -> None:
                batch_id = 0
                while True:
                    await window_free.acquire()
                    while not pending:
                        produced_more.clear()
                        await produced_more.wait()
                    rows = [pending.popleft() for _ in range(min(BATCH_EVENTS, len(pending)))]
                    batch_id += 1
                    in_flight.append([produced for produced, _ in rows])
                    await call.write(encode_batch_message(batch_id, [payload for _, payload in rows]))

            async def receive() -> None:
                while True:
                    await call.read()
                    acked_ns = time.time_ns()
                    latencies.extend(acked_ns - produced for produced in in_flight.popleft())
                    window_free.release()

            sender, receiver = asyncio.create_task(send()), asyncio.create_task(receive())
            loop = asyncio.get_running_loop()
            started = loop.time()
            count = 0
            while loop.time() - started < duration_s:
                due = started + count / RATE_PER_S
                if due > loop.time():
                    await asyncio.sleep(due - loop.time())
                produced_ns = time.time_ns()
                pending.append((produced_ns, event(count, produced_ns).SerializeToString()))
                produced_more.set()
                count += 1
            deadline = time.monotonic() + SETTLE_TIMEOUT_S
            while len(latencies) < count and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            for task in (sender, receiver):
                task.cancel()
            await asyncio.gather(sender, receiver, return_exceptions=True)
            call.cancel()
    finally:
        await server.stop(None)
        db.close()
    return percentile_ms(latencies, 0.50), percentile_ms(latencies, 0.99)


async def run(quick: bool = False) -> None:
    steady_s = 5.0 if quick else 20.0
    backlog = 100_000 if quick else 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        base_p50, base_p99 = await baseline_latency(Path(tmp), steady_s)
    bare_rate = await uplink_throughput._baseline(min(backlog, 200_000))
    with tempfile.TemporaryDirectory() as tmp:
        figures = await ours(Path(tmp), steady_s, backlog)
    print(f"read → queryable in the cloud, {RATE_PER_S} events/s for {steady_s:.0f} s ({figures.steady_events} events)")
    print(
        "  baseline bare grpc.aio stream + raw sqlite3 commit, at the ack "
        f"  p50 {base_p50:7.1f} ms  p99 {base_p99:7.1f} ms"
    )
    print(
        f"  outbox → uplink → cloud → ListEvents                            p50 {figures.steady_p50_ms:7.1f} ms"
        f"  p99 {figures.steady_p99_ms:7.1f} ms  (p99 {figures.steady_p99_ms / base_p99:.1f}× baseline)"
    )
    print(
        f"backlog drain: {backlog:,} events queued while the uplink was down, live events at {RATE_PER_S}/s meanwhile"
    )
    print(f"  baseline bare grpc.aio stream, same bytes                       {bare_rate:>10,.0f} events/s")
    print(
        "  uplink → cloud committed                                        "
        f"{figures.drain_events_per_s:>10,.0f} events/s"
        f"  ({figures.drain_events_per_s / bare_rate:.1%} of bare; {figures.drain_s:.1f} s)"
    )
    print(
        f"  live events produced during the drain ({figures.live_events}) → queryable"
        f"      p50 {figures.live_p50_ms:7.1f} ms  p99 {figures.live_p99_ms:7.1f} ms"
        " (issue 5's goal: ≤ 1000 ms)"
    )
