"""The aggregator process: a `grpc.aio` server with ingest, inventory, health and reflection.

Programmatic use (tests start it on port 0 and ask which port it bound):

    config = CloudConfig.model_validate({"server": {"listen": "127.0.0.1:0"}, "store": {"path": "x.db"}})
    # or "store": {"backend": "postgres", "dsn": "postgresql://tallyport@db:5432/tallyport"}
    async with CloudServer(config) as server:
        channel = grpc.aio.insecure_channel(server.target)
        ...

`serve(config)` runs until SIGTERM/SIGINT or cancellation, then shuts down gracefully:
health turns NOT_SERVING, every uplink stream ends with UNAVAILABLE (gateways reconnect
and resume from their outbox), in-flight queries get `shutdown_grace_ms`, the store closes.

Standard gRPC health checking (`grpc.health.v1.Health`) answers SERVING for "" and for each
service name; server reflection lists every service for grpcurl and friends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from types import TracebackType
from typing import Any

from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from tallyport.v1 import (
    epcis_pb2,
    epcis_pb2_grpc,
    exceptions_pb2,
    exceptions_pb2_grpc,
    ingest_pb2,
    ingest_pb2_grpc,
    inventory_pb2,
    inventory_pb2_grpc,
    masterdata_pb2,
    masterdata_pb2_grpc,
    reconciliation_pb2,
    reconciliation_pb2_grpc,
)

from cloud.config import CloudConfig
from cloud.epcis.service import EpcisService
from cloud.errors import ListenError
from cloud.exceptions.engine import ExceptionEngine
from cloud.exceptions.service import ExceptionService
from cloud.ingest.service import IngestService
from cloud.masterdata.loading import load_at_start
from cloud.masterdata.repository import MasterDataRepository
from cloud.masterdata.service import MasterDataService
from cloud.query.service import InventoryService
from cloud.reconciliation.erp_pull import SnapshotSource
from cloud.reconciliation.reconciler import Reconciler
from cloud.reconciliation.service import ReconciliationService
from cloud.store import Store
from cloud.store.factory import describe_store, open_store
from cloud.timestamps import Clock, system_clock_us

__all__ = ["SERVICE_NAMES", "CloudServer", "serve"]

log = logging.getLogger(__name__)

INGEST_SERVICE_NAME: str = ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name
INVENTORY_SERVICE_NAME: str = inventory_pb2.DESCRIPTOR.services_by_name["InventoryService"].full_name
MASTERDATA_SERVICE_NAME: str = masterdata_pb2.DESCRIPTOR.services_by_name["MasterDataService"].full_name
EPCIS_SERVICE_NAME: str = epcis_pb2.DESCRIPTOR.services_by_name["EpcisService"].full_name
RECONCILIATION_SERVICE_NAME: str = reconciliation_pb2.DESCRIPTOR.services_by_name["ReconciliationService"].full_name
EXCEPTION_SERVICE_NAME: str = exceptions_pb2.DESCRIPTOR.services_by_name["ExceptionService"].full_name
SERVICE_NAMES = (
    EXCEPTION_SERVICE_NAME,
    INGEST_SERVICE_NAME,
    INVENTORY_SERVICE_NAME,
    MASTERDATA_SERVICE_NAME,
    EPCIS_SERVICE_NAME,
    RECONCILIATION_SERVICE_NAME,
)

# Streams count against this too: one per connected gateway, plus queries in flight.
CONCURRENT_RPCS_MAX = 1024
# Server-side keepalive: ping an idle connection every 60 s, drop it if no answer in 20 s,
# so a gateway behind a dead network path is noticed and its stream released.
KEEPALIVE_TIME_MS = 60_000
KEEPALIVE_TIMEOUT_MS = 20_000
# Gateways may ping us as often as every 10 s, even between RPCs, without being cut off.
CLIENT_PING_INTERVAL_MIN_MS = 10_000

# grpc-stubs types only the threaded HealthServicer; the asyncio one (health.aio) is untyped.
AsyncHealthServicer: Any = health.aio.HealthServicer  # type: ignore[attr-defined]


class CloudServer:
    """One aggregator: start it, learn `port`/`target`, stop it. Also an async context manager."""

    def __init__(self, config: CloudConfig, *, store: Store | None = None, clock: Clock = system_clock_us) -> None:
        self.config = config
        self._given_store = store
        self._clock = clock
        self._store: Store | None = None
        self._server: aio.Server | None = None
        self._health: Any = None  # an AsyncHealthServicer once started
        self._ingest: IngestService | None = None
        self._masterdata: MasterDataRepository | None = None
        self._exceptions: ExceptionEngine | None = None
        self._exception_sweeps: asyncio.Task[None] | None = None
        self._reconciler: Reconciler | None = None
        self._reconciliation_polling: asyncio.Task[None] | None = None
        self.port = 0

    @property
    def target(self) -> str:
        """HOST:PORT a client on this machine can dial."""
        host = self.config.server.listen.rpartition(":")[0]
        if host in ("0.0.0.0", "[::]", ""):
            host = "127.0.0.1"
        return f"{host}:{self.port}"

    @property
    def exceptions(self) -> ExceptionEngine:
        """The exception engine: its rules run on ingest commits and on the sweep clock; tests call `sweep()`."""
        assert self._exceptions is not None, "the server is not started"
        return self._exceptions

    @property
    def masterdata(self) -> MasterDataRepository:
        """The master data repository this server's services share (the rules read its `snapshot()`)."""
        assert self._masterdata is not None, "the server is not started"
        return self._masterdata

    @property
    def reconciler(self) -> Reconciler:
        """Cycle counts, snapshots, drifts and KPIs of this server (the ReconciliationService's engine)."""
        assert self._reconciler is not None, "the server is not started"
        return self._reconciler

    async def start(self) -> None:
        """Open the store, bind the address, start serving."""
        assert self._server is None, "start() called twice"
        store = self._given_store
        if store is None:
            store = await open_store(self.config.store)
        self._store = store
        try:
            await self._start_server(store)
        except BaseException:
            await self._stop_exception_sweeps()
            await self._stop_reconciliation()
            await self._close_store()
            raise
        log.info(
            "cloud server listening",
            extra={
                "listen": self.config.server.listen,
                "port": self.port,
                "store": describe_store(self.config.store) if self._given_store is None else type(store).__name__,
                "max_batch_events": self.config.ingest.max_batch_events,
            },
        )

    async def _start_server(self, store: Store) -> None:
        self._masterdata = MasterDataRepository(
            store, clock=self._clock, snapshot_max_age_s=self.config.masterdata.snapshot_max_age_ms / 1000
        )
        await load_at_start(self._masterdata, self.config.masterdata)  # a site starts with its master data
        server = aio.server(
            options=[
                ("grpc.max_receive_message_length", self.config.ingest.max_message_bytes),
                # gRPC sets SO_REUSEPORT by default, which lets a second aggregator bind the
                # same port and silently take half the gateways: refuse instead.
                ("grpc.so_reuseport", 0),
                ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
                ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", CLIENT_PING_INTERVAL_MIN_MS),
            ],
            maximum_concurrent_rpcs=CONCURRENT_RPCS_MAX,
        )
        exceptions = self.config.exceptions
        self._exceptions = ExceptionEngine(
            store, exceptions, exceptions.rules(), master_data=self._masterdata.snapshot, clock=self._clock
        )
        self._ingest = IngestService(
            store, self.config.ingest, self._clock, on_commit=self._exceptions.on_commit if exceptions.enabled else None
        )
        exceptions_pb2_grpc.add_ExceptionServiceServicer_to_server(ExceptionService(self._exceptions), server)
        ingest_pb2_grpc.add_IngestServiceServicer_to_server(self._ingest, server)
        inventory_pb2_grpc.add_InventoryServiceServicer_to_server(InventoryService(store), server)
        masterdata_pb2_grpc.add_MasterDataServiceServicer_to_server(MasterDataService(self._masterdata), server)
        epcis_pb2_grpc.add_EpcisServiceServicer_to_server(EpcisService(store, self._clock), server)
        reconciliation = self.config.reconciliation
        self._reconciler = Reconciler(
            store,
            reconciliation,
            masterdata=self._masterdata.snapshot,
            source=SnapshotSource(reconciliation, self._clock) if reconciliation.erp_url else None,
            clock=self._clock,
        )
        reconciliation_pb2_grpc.add_ReconciliationServiceServicer_to_server(
            ReconciliationService(self._reconciler, self._clock), server
        )
        self._health = AsyncHealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection((*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        try:
            self.port = server.add_insecure_port(self.config.server.listen)
        except RuntimeError as exc:
            raise ListenError(
                f"cannot listen on {self.config.server.listen} (in use by another server, or not an "
                f"address of this machine?): {exc}"
            ) from exc
        await server.start()
        self._server = server
        for name in ("", *SERVICE_NAMES):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if exceptions.enabled:
            self._exception_sweeps = asyncio.create_task(self._exceptions.run(), name="exception-sweeps")
        if reconciliation.poll_interval_s and self._reconciler.source is not None:
            self._reconciliation_polling = asyncio.create_task(
                self._reconciler.run_polling(), name="reconciliation-polling"
            )

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop gracefully: NOT_SERVING, end uplink streams, let queries finish, close the store."""
        if grace_s is None:
            grace_s = self.config.server.shutdown_grace_ms / 1000
        server, self._server = self._server, None
        if server is not None:
            log.info("cloud server stopping", extra={"grace_s": grace_s})
            if self._health is not None:
                await self._health.enter_graceful_shutdown()
            if self._ingest is not None:
                await self._ingest.stop_streams(wait_s=grace_s)
            if self._exceptions is not None:
                self._exceptions.hub.close()  # ends Subscribe streams now rather than at the grace's end
            await server.stop(grace_s)
        await self._stop_exception_sweeps()
        await self._stop_reconciliation()
        await self._close_store()
        if server is not None:
            log.info("cloud server stopped")

    async def _stop_exception_sweeps(self) -> None:
        """Cancel the exception sweep clock (before the store closes)."""
        sweeps, self._exception_sweeps = self._exception_sweeps, None
        if sweeps is not None:
            sweeps.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeps

    async def _stop_reconciliation(self) -> None:
        """Cancel the periodic ERP/WMS pull and close its HTTP client (before the store closes)."""
        polling, self._reconciliation_polling = self._reconciliation_polling, None
        if polling is not None:
            polling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await polling
        if self._reconciler is not None and self._reconciler.source is not None:
            await self._reconciler.source.aclose()

    async def _close_store(self) -> None:
        store, self._store = self._store, None
        if store is not None and self._given_store is None:
            await store.close()

    async def wait_for_termination(self) -> None:
        """Return when the server has stopped."""
        if self._server is not None:
            await self._server.wait_for_termination()

    async def __aenter__(self) -> CloudServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.stop()


async def serve(config: CloudConfig) -> None:
    """Run the aggregator until SIGTERM, SIGINT or cancellation; then stop gracefully."""
    server = CloudServer(config)
    await server.start()
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for number in signals:
        loop.add_signal_handler(number, stop_requested.set)
    try:
        await stop_requested.wait()
        log.info("stop requested by signal")
    finally:
        for number in signals:
            loop.remove_signal_handler(number)
        await server.stop()
