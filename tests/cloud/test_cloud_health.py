"""Standard gRPC health checking and server reflection, and what they say at shutdown.

Nothing here depends on the store: these run on SQLite only.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest
from cloud_testkit import cloud_config, sqlite_section
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from cloud.errors import ListenError
from cloud.server import SERVICE_NAMES, CloudServer


@pytest.fixture
def store_backend() -> str:
    return "sqlite"


async def check(channel: aio.Channel, service: str) -> Any:
    stub: Any = health_pb2_grpc.HealthStub(channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return reply.status


@pytest.mark.parametrize("service", ["", "tallyport.v1.IngestService", "tallyport.v1.InventoryService"])
async def test_health_is_serving(channel: aio.Channel, service: str) -> None:
    assert await check(channel, service) == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_services(channel: aio.Channel) -> None:
    stub: Any = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = stub.ServerReflectionInfo()
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    reply = await call.read()
    await call.done_writing()
    names = {service.name for service in reply.list_services_response.service}
    assert set(SERVICE_NAMES) <= names
    assert "grpc.health.v1.Health" in names


async def test_health_turns_not_serving_during_graceful_shutdown(tmp_path: Path) -> None:
    server = CloudServer(cloud_config(sqlite_section(tmp_path)))
    await server.start()
    async with aio.insecure_channel(server.target) as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)
        watch = stub.Watch(health_pb2.HealthCheckRequest(service=""))
        first = await watch.read()
        stopping = asyncio.create_task(server.stop(grace_s=1.0))
        second = await watch.read()
        await stopping
        watch.cancel()
    assert first.status == health_pb2.HealthCheckResponse.SERVING
    assert second.status == health_pb2.HealthCheckResponse.NOT_SERVING


async def test_a_busy_port_fails_to_start_with_a_clear_error(cloud: CloudServer, tmp_path: Path) -> None:
    config = cloud_config(sqlite_section(tmp_path / "second"))
    busy = config.model_copy(update={"server": config.server.model_copy(update={"listen": cloud.target})})
    second = CloudServer(busy)
    try:
        with pytest.raises(ListenError, match=f"cannot listen on {cloud.target}"):
            await second.start()
    finally:
        await second.stop()


async def test_unknown_service_is_not_found(channel: aio.Channel) -> None:
    with pytest.raises(aio.AioRpcError) as raised:
        await check(channel, "no.such.Service")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
