"""Reconciliation's long-running parts against their failure modes: periodic polling survives an
unexpected error (logged, polling goes on), and the completeness KPI counts every recorded gap,
not only those `list_gateways` returns (the newest per stream). On SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from cloud_testkit import StoreOpener

from cloud.reconciliation.config import ReconciliationSection
from cloud.reconciliation.erp_pull import PullResult
from cloud.reconciliation.kpis import collect_kpis
from cloud.reconciliation.reconciler import Reconciler
from cloud.store import GapRecord, StreamState
from cloud.store.sqlite_store import GAPS_PER_STREAM_MAX

NOW_US = 1_790_000_000_000_000


class FlakySource:
    """A source whose first pull fails with a bug (not a CloudError); later pulls find nothing."""

    def __init__(self) -> None:
        self.pulls = 0
        self.pulled_again = asyncio.Event()

    async def pull(self) -> PullResult:
        self.pulls += 1
        if self.pulls == 1:
            raise RuntimeError("a bug in the source")
        self.pulled_again.set()
        return PullResult("unavailable", "erp", None, (), 0, 0.0, "connection refused")


async def test_polling_logs_an_unexpected_failure_and_goes_on(
    open_test_store: StoreOpener, caplog: pytest.LogCaptureFixture
) -> None:
    section = ReconciliationSection(erp_url="http://127.0.0.1:9/snapshot", poll_interval_s=1)
    source = FlakySource()
    reconciler = Reconciler(await open_test_store(), section, source=source)  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR, logger="cloud.reconciliation.reconciler"):
        polling = asyncio.create_task(reconciler.run_polling())
        pulled_again = asyncio.create_task(source.pulled_again.wait())  # one interval after the failure
        try:
            done, _ = await asyncio.wait({polling, pulled_again}, return_when=asyncio.FIRST_COMPLETED)
            assert done == {pulled_again}, "polling ended instead of pulling again"
        finally:
            pulled_again.cancel()
            polling.cancel()
            await asyncio.gather(polling, pulled_again, return_exceptions=True)
    (logged,) = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert "polling goes on" in logged.getMessage() and "a bug in the source" in (logged.exc_text or "")


async def test_completeness_counts_every_recorded_gap(open_test_store: StoreOpener) -> None:
    store = await open_test_store()
    gap_count = GAPS_PER_STREAM_MAX + 50  # more than list_gateways returns for one stream
    async with store.ingest_transaction() as tx:
        await tx.save_stream_state(StreamState("gw-1", "o", 10 * gap_count, "t/1", NOW_US, NOW_US, 8 * gap_count))
        for n in range(gap_count):  # two seqs lost in every ten
            await tx.record_gap(GapRecord("gw-1", "o", 10 * n + 1, 10 * n + 2, "not in the edge outbox", NOW_US))
    kpis = await collect_kpis(store, NOW_US - 1, NOW_US + 1, NOW_US, 300, 60)
    (feed,) = kpis.data_quality
    assert (feed.expected_seqs, feed.lost_seqs) == (10 * gap_count, 2 * gap_count)
    assert feed.completeness == pytest.approx(0.8)
