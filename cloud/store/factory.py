"""Open the store `[store] backend` names: the embedded SQLite file, or a shared PostgreSQL database.

The PostgreSQL store is imported only when chosen, so a site on SQLite does not need psycopg.
"""

from __future__ import annotations

from pathlib import Path

from cloud.config import StoreSection
from cloud.errors import StoreError
from cloud.store import Store
from cloud.store.sqlite_store import SqliteStore

__all__ = ["describe_store", "open_store"]


async def open_store(section: StoreSection) -> Store:
    """Open (creating and migrating if needed) the store `section` describes; raise StoreError if it cannot."""
    if section.backend == "postgres":
        try:
            from cloud.store.postgres_store import PostgresStore
        except ImportError as exc:
            raise StoreError(
                f'[store].backend = "postgres" needs psycopg 3 and psycopg-pool ({exc}); '
                "install them: pip install 'psycopg[binary]>=3.2,<4' 'psycopg-pool>=3.2,<4'"
            ) from exc
        return await PostgresStore.open(
            section.dsn,
            section.schema_name,
            pool_connections_min=section.pool_connections_min,
            pool_connections_max=section.pool_connections_max,
            operation_timeout_ms=section.operation_timeout_ms,
            pool_acquire_timeout_ms=section.pool_acquire_timeout_ms,
            connect_timeout_ms=section.connect_timeout_ms,
        )
    return await SqliteStore.open(
        Path(section.path), section.durability, operation_timeout_ms=section.operation_timeout_ms
    )


def describe_store(section: StoreSection) -> str:
    """The store in a few words for logs, never a password."""
    if section.backend == "postgres":
        from cloud.store.postgres_store import describe_dsn

        return f"postgres {describe_dsn(section.dsn)} schema {section.schema_name}"
    return f"sqlite {section.path} durability {section.durability}"
