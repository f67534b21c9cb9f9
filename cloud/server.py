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
import logging
import signal
from types import TracebackType
from typing import Any

from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from tallyport.v1 import ingest_pb2, ingest_pb2_grpc, inventory_pb2, inventory_pb2_grpc

from cloud.config import CloudConfig
from cloud.errors import ListenError
from cloud.ingest.service import IngestService
from cloud.query.service import InventoryService
from cloud.store import Store
from cloud.store.factory import describe_store, open_store
from cloud.timestamps import Clock, system_clock_us

__all__ = ["SERVICE_NAMES", "CloudServer", "serve"]

log = logging.getLogger(__name__)

INGEST_SERVICE_NAME: str = ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name
INVENTORY_SERVICE_NAME: str = inventory_pb2.DESCRIPTOR.services_by_name["InventoryService"].full_name
SERVICE_NAMES = (INGEST_SERVICE_NAME, INVENTORY_SERVICE_NAME)

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
        self.port = 0

    @property
    def target(self) -> str:
        """HOST:PORT a client on this machine can dial."""
        host = self.config.server.listen.rpartition(":")[0]
        if host in ("0.0.0.0", "[::]", ""):
            host = "127.0.0.1"
        return f"{host}:{self.port}"

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
        self._ingest = IngestService(store, self.config.ingest, self._clock)
        ingest_pb2_grpc.add_IngestServiceServicer_to_server(self._ingest, server)
        inventory_pb2_grpc.add_InventoryServiceServicer_to_server(InventoryService(store), server)
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
            await server.stop(grace_s)
        await self._close_store()
        if server is not None:
            log.info("cloud server stopped")

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
