"""RFID intake: reader messages → read journal → portal engine → events, with acks only after commits.

A tag read becomes an event only when its portal pass ends, seconds later. So each reader message is
first committed to the outbox's read journal, and only then acknowledged to the reader (MQTT QoS 1
PUBACK); the engine works in memory. When passes end, their events are committed in the same transaction
that deletes the journaled reads they consumed (everything that arrived before the engine's
`pending_since`). After a crash the journal still holds exactly the reads of unfinished passes, and they
are replayed into the engine at start: nothing acknowledged is lost, no pass is stored twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Protocol

from tallyport.v1 import events_pb2

from edge.clock import Clock
from edge.drivers.mqtt_subscription import AckToken, DriverMessage
from edge.errors import OutboxError
from edge.outbox import Outbox, Rejected
from edge.pipeline.portal import PortalEngine, PortalPass
from edge.pipeline.read_journal import JournaledRead, RfidItem, decode_read, encode_read
from edge.pipeline.reads import TagRead

log = logging.getLogger(__name__)

TICK_MS = 100  # how often sessions are checked for their end; bounds pass latency past session_idle_ms
QUEUE_READS_MAX = 50_000
JOURNAL_REPLAY_PAGE = 5_000
SWEEP_INTERVAL_MS = 2_000


class ReaderDriver(Protocol):
    def messages(self) -> AsyncIterator[DriverMessage[RfidItem]]: ...

    async def acknowledge(self, token: AckToken) -> None: ...


class PortalIntake:
    """Owns the portal engine: one `run()` task, plus one `read_from(...)` task per reader."""

    def __init__(
        self,
        engine_factory: Callable[[], PortalEngine],
        outbox: Outbox,
        clock: Clock,
        reader_drivers: Mapping[str, str],
    ) -> None:
        """`reader_drivers` maps each reader's name to its driver key (lineage), e.g. "zebra_reader".

        Each `run()` starts from a fresh engine and the journal, so a restarted portal task rebuilds
        exactly the sessions that were open.
        """
        self._engine_factory = engine_factory
        self._engine = engine_factory()
        self._replayed: set[int] = set()
        self._outbox = outbox
        self._clock = clock
        self._reader_drivers = dict(reader_drivers)
        self._queue: asyncio.Queue[JournaledRead] = asyncio.Queue(maxsize=QUEUE_READS_MAX)
        self._fed: deque[tuple[int, datetime, str]] = deque()  # (journal id, arrival, reader) not yet consumed
        self.passes_total = 0
        self.events_total = 0
        self.redeliveries_total = 0
        self._last_sweep = datetime.min.replace(tzinfo=UTC)

    async def read_from(self, reader: str, driver: ReaderDriver) -> None:
        """Journal each message's reads, quarantine its rejects, then acknowledge it to the reader."""
        async for message in driver.messages():
            digest = hashlib.sha256(message.payload).hexdigest()
            if await self._outbox.journaled_message(digest):
                # A redelivery (the agent died between journaling it and its PUBACK): already in hand.
                self.redeliveries_total += 1
                await driver.acknowledge(message.token)
                continue
            if message.rejects:
                reason = "; ".join(message.rejects)
                await self._outbox.quarantine(Rejected(reader, "reader_payload", reason, message.payload))
            items = list(message.items)
            payloads = [encode_read(item, message.received_at) for item in items]
            ids = await self._outbox.journal_reads(reader, payloads, message_digest=digest)
            await driver.acknowledge(message.token)
            for journal_id, item in zip(ids, items, strict=True):
                await self._queue.put(JournaledRead(journal_id, item, message.received_at))

    async def run(self) -> None:
        """Replay the journal, then feed reads and close passes until cancelled."""
        self._engine = self._engine_factory()
        self._fed.clear()
        await self._replay()
        while True:
            first = None
            # asyncio.timeout, never wait_for: Python 3.11's wait_for can swallow a cancellation that
            # lands as the queue hands over a read, and the intake would then outlive its supervisor.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK_MS / 1000):
                    first = await self._queue.get()
            if first is not None:
                self._feed_new(first)
                while not self._queue.empty():
                    self._feed_new(self._queue.get_nowait())
            await self._close_passes(self._clock.now())

    async def _replay(self) -> None:
        self._replayed.clear()
        after = 0
        while page := await self._outbox.journaled_reads(after, JOURNAL_REPLAY_PAGE):
            for journal_id, _source, payload in page:
                self._feed(decode_read(journal_id, payload))
                self._replayed.add(journal_id)
            after = page[-1][0]
        if self._replayed:
            log.info("replayed journaled RFID reads", extra={"reads": len(self._replayed)})

    def _feed_new(self, read: JournaledRead) -> None:
        # A read queued before a restart of this task was journaled too, and replay has fed it already.
        if read.journal_id in self._replayed:
            self._replayed.discard(read.journal_id)
            return
        self._feed(read)

    def _feed(self, read: JournaledRead) -> None:
        self._fed.append((read.journal_id, read.arrival, read.item.reader))
        if isinstance(read.item, TagRead):
            self._engine.feed_tag(read.item, read.arrival)
        else:
            self._engine.feed_gpi(read.item, read.arrival)

    async def _close_passes(self, now: datetime) -> None:
        passes = self._engine.advance(now)
        # Consumption changes when passes end; reads dropped outside any session are swept now and then,
        # not on every tick (the scan is linear in the reads of open sessions).
        sweep_due = now - self._last_sweep >= timedelta(milliseconds=SWEEP_INTERVAL_MS)
        consumed = self._consumed_ids() if passes or sweep_due else []
        if sweep_due:
            self._last_sweep = now
        if not passes and not consumed:
            return
        events = [event for portal_pass in passes for event in self._events(portal_pass)]
        try:
            for portal_pass in passes:
                await self._quarantine_rejected(portal_pass)
            await self._outbox.append_many(events, consumed_journal_ids=consumed)
        except OutboxError:
            # The reads stay journaled; they are replayed (and the passes rebuilt) after a restart.
            log.exception("could not commit portal passes", extra={"passes": len(passes)})
            raise
        kept = set(consumed)
        self._fed = deque(entry for entry in self._fed if entry[0] not in kept)
        self.passes_total += len(passes)
        self.events_total += len(events)

    def _consumed_ids(self) -> list[int]:
        """Journaled reads every portal they feed is done with: arrived before that portal's pending time.

        Per portal, not one cutoff for all: a busy door must not keep a quiet door's finished passes in
        the journal, where a restart would replay them into a second pass.
        """
        pending: dict[str, datetime | None] = {}
        consumed = []
        for journal_id, arrival, reader in self._fed:
            done = True
            for portal in self._engine.portals_of(reader):
                if portal not in pending:
                    pending[portal] = self._engine.pending_since(portal)
                since = pending[portal]
                done = done and (since is None or arrival < since)
            if done:
                consumed.append(journal_id)
        return consumed

    def _events(self, portal_pass: PortalPass) -> list[events_pb2.Event]:
        driver = self._reader_drivers.get(portal_pass.readers[0], "rfid") if portal_pass.readers else "rfid"
        return list(self._engine.events_for(portal_pass, driver))

    async def _quarantine_rejected(self, portal_pass: PortalPass) -> None:
        for rejected in portal_pass.rejected:
            await self._outbox.quarantine(
                Rejected(rejected.reader, "epc_invalid", rejected.reason, rejected.epc_hex.encode("latin-1"))
            )
