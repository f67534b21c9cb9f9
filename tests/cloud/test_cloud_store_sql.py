"""The plain-SQL access every store offers (`Store.write` / `Store.read`), on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from cloud_testkit import StoreOpener

from cloud.errors import StoreError
from cloud.store.sql import to_postgres_placeholders

TABLE = "CREATE TABLE sql_probe (name TEXT PRIMARY KEY, amount REAL NOT NULL, flag INTEGER NOT NULL)"


async def test_a_write_commits_and_a_read_sees_it(open_test_store: StoreOpener) -> None:
    store = await open_test_store()
    async with store.write() as sql:
        await sql.execute(TABLE)
        await sql.execute_many(
            "INSERT INTO sql_probe (name, amount, flag) VALUES (?, ?, ?)", [("a", 1.5, 1), ("b", 2.0, 0)]
        )
        changed = await sql.execute(
            "INSERT INTO sql_probe (name, amount, flag) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET amount = sql_probe.amount + excluded.amount",
            ("a", 1.0, 1),
        )
        assert changed == 1
    async with store.read() as sql:
        assert sql.dialect in ("sqlite", "postgres")
        rows = await sql.fetch_all("SELECT name, amount, flag FROM sql_probe ORDER BY name")
        missing = await sql.fetch_one("SELECT name FROM sql_probe WHERE name = ?", ("zzz",))
        literal = await sql.fetch_one("SELECT count(*) FROM sql_probe WHERE name <> '?'")
    assert rows == [("a", 2.5, 1), ("b", 2.0, 0)]
    assert missing is None
    assert literal == (2,)


async def test_a_failed_write_rolls_back_everything_it_did(open_test_store: StoreOpener) -> None:
    store = await open_test_store()
    async with store.write() as sql:
        await sql.execute(TABLE)
    with pytest.raises(StoreError):
        async with store.write() as sql:
            await sql.execute("INSERT INTO sql_probe (name, amount, flag) VALUES (?, ?, ?)", ("a", 1.0, 0))
            await sql.execute("INSERT INTO sql_probe (name, amount, flag) VALUES (?, ?, ?)", ("a", 2.0, 0))
    async with store.read() as sql:
        assert await sql.fetch_all("SELECT name FROM sql_probe") == []


async def test_an_error_in_the_callers_code_rolls_back_too(open_test_store: StoreOpener) -> None:
    store = await open_test_store()
    async with store.write() as sql:
        await sql.execute(TABLE)
    with pytest.raises(RuntimeError, match="caller"):
        async with store.write() as sql:
            await sql.execute("INSERT INTO sql_probe (name, amount, flag) VALUES (?, ?, ?)", ("a", 1.0, 0))
            raise RuntimeError("caller gave up")
    async with store.read() as sql:
        assert await sql.fetch_one("SELECT count(*) FROM sql_probe") == (0,)


def test_placeholders_become_psycopgs_outside_literals_only() -> None:
    assert to_postgres_placeholders("SELECT a FROM t WHERE b = ? AND c = '?' AND d = ?") == (
        "SELECT a FROM t WHERE b = %s AND c = '?' AND d = %s"
    )
    with pytest.raises(ValueError, match="must not contain '%'"):
        to_postgres_placeholders("SELECT a FROM t WHERE b LIKE 'x%'")
