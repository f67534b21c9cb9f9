"""Plain SQL access for the subsystems that own their tables (master data, exceptions, reconciliation, alarms).

The ingest path keeps its tuned, store-specific `IngestTransaction`. Everything else reads and
writes its own tables through `Sql`: statements are written once, with `?` placeholders, in the
SQL that SQLite 3.40 and PostgreSQL 15 both accept (INSERT ... ON CONFLICT ... DO UPDATE SET
c = excluded.c, RETURNING, CASE, COALESCE), and run unchanged on either store:

    async with store.write() as sql:            # one transaction, committed on clean exit
        await sql.execute("INSERT INTO skus (gtin, description) VALUES (?, ?)", (gtin, text))
    async with store.read() as sql:
        rows = await sql.fetch_all("SELECT gtin FROM skus WHERE abc_class = ?", ("A",))

Conventions that keep one statement portable: flags are integers 0/1 (pass `int(flag)`), times
integer microseconds UTC, quantities and money REAL / double precision; never a `%` in a
statement (PostgreSQL's driver reads it as a placeholder). Errors surface as `StoreError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal, Protocol

__all__ = ["Dialect", "Sql", "to_postgres_placeholders"]

Dialect = Literal["sqlite", "postgres"]


class Sql(Protocol):
    """One connection: inside a transaction (`Store.write`) or reading committed state (`Store.read`)."""

    dialect: Dialect

    async def execute(self, statement: str, parameters: Sequence[object] = ()) -> int:
        """Run one statement; return the rows it changed."""
        ...

    async def execute_many(self, statement: str, rows: Iterable[Sequence[object]]) -> None:
        """Run one statement once per parameter row."""
        ...

    async def fetch_all(self, statement: str, parameters: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Every row the statement returns."""
        ...

    async def fetch_one(self, statement: str, parameters: Sequence[object] = ()) -> tuple[Any, ...] | None:
        """The first row the statement returns, or None."""
        ...


def to_postgres_placeholders(statement: str) -> str:
    """`?` placeholders become psycopg's `%s`; a `?` inside a quoted literal is left alone."""
    if "%" in statement:
        raise ValueError(f"a portable statement must not contain '%': {statement!r}")
    out: list[str] = []
    quote: str | None = None
    for char in statement:
        if quote is not None:
            if char == quote:
                quote = None
        elif char in ("'", '"'):
            quote = char
        elif char == "?":
            out.append("%s")
            continue
        out.append(char)
    return "".join(out)
