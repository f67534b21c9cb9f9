"""Fixtures for the cloud tests: a real server on 127.0.0.1 port 0 over a real SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cloud_testkit import cloud_config
from grpc import aio
from tallyport.v1 import inventory_pb2_grpc

from cloud.server import CloudServer


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[CloudServer]:
    async with CloudServer(cloud_config(tmp_path)) as server:
        yield server


@pytest.fixture
async def channel(cloud: CloudServer) -> AsyncIterator[aio.Channel]:
    async with aio.insecure_channel(cloud.target) as opened:
        yield opened


@pytest.fixture
def inventory(channel: aio.Channel) -> Any:
    """An InventoryService stub on the test channel."""
    return inventory_pb2_grpc.InventoryServiceStub(channel)
