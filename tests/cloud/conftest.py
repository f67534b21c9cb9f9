"""Fixtures for the cloud tests: a real server on 127.0.0.1 port 0 over a real store, for each store.

Tests that use `cloud` (or `channel`, `inventory`, `store_section`, `open_test_store`) run
once per store: "sqlite" (a file in tmp_path) and "postgres" (a schema of its own in the test
database, created before the test and dropped after it). A module whose subject is not the
store (the CLI, health checking) pins `store_backend` to "sqlite".

Which PostgreSQL (see `postgres_dsn`):
- `TALLYPORT_TEST_PG_DSN` when set; if that database does not answer, its tests fail;
- otherwise `DEFAULT_TEST_PG_DSN` when it answers, else its tests are skipped with a reason
  that says how to enable them;
- with `CI=true`, a PostgreSQL that does not answer (or an empty DSN) fails the postgres
  tests: CI must test against its database, never skip it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cloud_testkit import StoreOpener, admin_execute, cloud_config, sqlite_section
from grpc import aio
from psycopg import sql
from tallyport.v1 import inventory_pb2_grpc

from cloud.config import StoreSection
from cloud.server import CloudServer
from cloud.store import Store
from cloud.store.factory import open_store

DSN_ENV = "TALLYPORT_TEST_PG_DSN"
DEFAULT_TEST_PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
PROBE_TIMEOUT_S = 3
STORE_BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    """The test database's DSN, once it has answered; skips or fails as the module docstring says."""
    in_ci = os.environ.get("CI") == "true"
    given = os.environ.get(DSN_ENV)
    dsn = DEFAULT_TEST_PG_DSN if given is None else given
    if not dsn:
        if in_ci:
            pytest.fail(f"CI=true but {DSN_ENV} is empty: CI must run the PostgreSQL store tests", pytrace=False)
        pytest.skip(f"PostgreSQL tests disabled ({DSN_ENV} is empty)")
    try:
        with psycopg.connect(dsn, connect_timeout=PROBE_TIMEOUT_S) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as exc:
        problem = f"PostgreSQL at {dsn} does not answer: {' '.join(str(exc).split())}"
        if in_ci:
            pytest.fail(f"CI=true but {problem}; CI must start PostgreSQL or set {DSN_ENV}", pytrace=False)
        if given is not None:
            pytest.fail(f"{DSN_ENV} is set but {problem}", pytrace=False)
        pytest.skip(
            f"{problem}; to run the PostgreSQL store tests start one there (trust auth, database 'test') "
            f"or set {DSN_ENV}=postgresql://USER@HOST:PORT/DATABASE"
        )
    return dsn


def _drop_schema(dsn: str, name: str) -> None:
    admin_execute(dsn, sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def fresh_schema_name(postgres_dsn: str) -> Iterator[str]:
    """A schema name nothing uses yet (no schema made); whatever the test creates there is dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    yield name
    _drop_schema(postgres_dsn, name)


@pytest.fixture
def postgres_schema(postgres_dsn: str) -> Iterator[str]:
    """An empty schema of this test's own, created here and dropped after the test."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    admin_execute(postgres_dsn, sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    yield name
    _drop_schema(postgres_dsn, name)


@pytest.fixture(params=STORE_BACKENDS)
def store_backend(request: pytest.FixtureRequest) -> str:
    """The store under test; override it in a module to pin one."""
    backend: str = request.param
    return backend


@pytest.fixture
def store_section(store_backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
    """The `[store]` table of a test config, for the store under test."""
    if store_backend == "sqlite":
        return sqlite_section(tmp_path)
    dsn: str = request.getfixturevalue("postgres_dsn")
    schema: str = request.getfixturevalue("postgres_schema")
    return {"backend": "postgres", "dsn": dsn, "schema": schema, "pool_connections_max": 4}


@pytest.fixture
async def open_test_store(store_section: dict[str, Any]) -> AsyncIterator[StoreOpener]:
    """`await open_test_store(operation_timeout_ms=...)`: the store under test, closed after the test."""
    opened: list[Store] = []

    async def opener(**settings: Any) -> Store:
        store = await open_store(StoreSection.model_validate({**store_section, **settings}))
        opened.append(store)
        return store

    yield opener
    for store in opened:
        await store.close()


@pytest.fixture
async def cloud(store_section: dict[str, Any]) -> AsyncIterator[CloudServer]:
    async with CloudServer(cloud_config(store_section)) as server:
        yield server


@pytest.fixture
async def channel(cloud: CloudServer) -> AsyncIterator[aio.Channel]:
    async with aio.insecure_channel(cloud.target) as opened:
        yield opened


@pytest.fixture
def inventory(channel: aio.Channel) -> Any:
    """An InventoryService stub on the test channel."""
    return inventory_pb2_grpc.InventoryServiceStub(channel)
