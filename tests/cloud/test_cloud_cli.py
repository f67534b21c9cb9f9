"""`tallyport-cloud`: help, queries against a live server (as a subprocess), errors and `serve`.

The queries do not depend on the store: the `cloud` fixture runs on SQLite only here; `serve`
is also run on PostgreSQL, chosen by `--store-dsn`.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import sys
from pathlib import Path

import pytest
from cloud_testkit import CLI_TIMEOUT_S, DOCK, GTIN_A, Uplink, admin_execute, item, make_event, run_cli
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from psycopg import sql

from cloud.cli import main
from cloud.server import CloudServer
from cloud.store.postgres_schema import SCHEMA_VERSION

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store_backend() -> str:
    return "sqlite"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.mark.parametrize(
    "command", [[], ["serve"], ["position"], ["on-hand"], ["events"], ["quarantine"], ["gateways"]]
)
async def test_help_exits_zero(command: list[str]) -> None:
    code, out, _ = await run_cli(*command, "--help")
    assert code == 0
    assert "usage: tallyport-cloud" in out


async def test_on_hand_prints_the_row(cloud: CloudServer, channel: aio.Channel) -> None:
    async with Uplink(channel) as up:
        await up.hello()
        await up.send(1, [make_event(seq, objects=[item(GTIN_A, str(seq))]) for seq in range(1, 13)])
    code, out, err = await run_cli("on-hand", "--server", cloud.target)
    assert code == 0, err
    assert f"{GTIN_A}  {DOCK}  12" in out.splitlines()
    code, out, _ = await run_cli("on-hand", "--server", cloud.target, "--json")
    assert json.loads(out.splitlines()[0]) == {
        "gtin": GTIN_A,
        "biz_location": DOCK,
        "quantity": 12.0,
        "serialized_count": "12",
    }


async def test_events_position_gateways_and_quarantine(cloud: CloudServer, channel: aio.Channel) -> None:
    broken = make_event(3)
    broken.event_id = ""
    async with Uplink(channel) as up:
        await up.hello()
        await up.send(1, [make_event(1), make_event(2), broken])
    code, out, _ = await run_cli("events", "--server", cloud.target, "--json", "--limit", "1")
    assert code == 0
    assert [json.loads(line)["seq"] for line in out.splitlines()] == ["2"]
    code, out, _ = await run_cli("events", "--server", cloud.target, "--biz-step", "receiving")
    assert code == 0 and len(out.splitlines()) == 3  # header and two events
    assert out.splitlines()[0].split() == [
        "EVENT_TIME",
        "GATEWAY",
        "SEQ",
        "BIZ_STEP",
        "ACTION",
        "BIZ_LOCATION",
        "SEEN",
        "EVENT_ID",
    ]
    code, out, _ = await run_cli("position", "--server", cloud.target, make_event(1).objects[0].id)
    assert code == 0 and re.search(rf"biz_location\s+{re.escape(DOCK)}", out)
    code, out, _ = await run_cli("gateways", "--server", cloud.target)
    assert code == 0 and out.splitlines()[1].split()[:3] == ["gw-dock4", "outbox-1", "3"]
    code, out, _ = await run_cli("quarantine", "--server", cloud.target)
    assert code == 0 and "event_id is empty" in out


async def test_position_not_found_exits_one(cloud: CloudServer) -> None:
    code, _, err = await run_cli("position", "--server", cloud.target, "nothing-like-this")
    assert code == 1
    assert "NOT_FOUND" in err and "Traceback" not in err


def test_unreachable_server_exits_two_without_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    target = f"127.0.0.1:{free_port()}"
    code = main(["on-hand", "--server", target, "--timeout", "5"])
    captured = capsys.readouterr()
    assert code == 2
    assert f"cannot reach the cloud server at {target}" in captured.err
    assert "Traceback" not in captured.err
    assert captured.out == ""


def test_bad_config_exits_two_naming_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "cloud.toml"
    config.write_text("[ingest]\nmax_batch_events = 'abc'\n")
    code = main(["serve", "--config", str(config)])
    assert code == 2
    assert f"{config}: [ingest].max_batch_events: expected an integer" in capsys.readouterr().err


async def serve_until_sigterm(*args: str) -> str:
    """Run `serve` with `args` on port 0, check it answers health, SIGTERM it; return its stderr after the stop."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cloud.cli",
        "serve",
        "--listen",
        "127.0.0.1:0",
        *args,
        cwd=REPO_ROOT,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    try:
        async with asyncio.timeout(CLI_TIMEOUT_S):
            port = None
            while port is None:
                line = (await process.stderr.readline()).decode()
                assert line, "serve exited before listening"
                found = re.search(r"cloud server listening .*port=(\d+)", line)
                port = int(found.group(1)) if found else None
            async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
            process.send_signal(signal.SIGTERM)
            rest = (await process.stderr.read()).decode()
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert "cloud server stopped" in rest
    return rest


async def test_serve_runs_until_sigterm_then_stops_cleanly(tmp_path: Path) -> None:
    await serve_until_sigterm("--db", str(tmp_path / "serve.db"))
    assert (tmp_path / "serve.db").exists()


async def test_serve_on_postgres_chosen_by_store_dsn(tmp_path: Path, postgres_dsn: str, postgres_schema: str) -> None:
    config = tmp_path / "cloud.toml"
    config.write_text(f'[store]\nschema = "{postgres_schema}"\n')
    await serve_until_sigterm("--config", str(config), "--store-dsn", postgres_dsn)
    migrated = admin_execute(
        postgres_dsn,
        sql.SQL("SELECT max(version) FROM {}.schema_migrations").format(sql.Identifier(postgres_schema)),
    )
    assert migrated == [(SCHEMA_VERSION,)]


async def test_serve_with_an_unreachable_database_exits_one_without_a_traceback(tmp_path: Path) -> None:
    dsn = f"postgresql://tallyport:hunter2@127.0.0.1:{free_port()}/nowhere"
    code, _, err = await run_cli("serve", "--listen", "127.0.0.1:0", "--store-dsn", dsn)
    assert code == 1
    assert f"postgresql://tallyport@127.0.0.1:{dsn.rsplit(':', 1)[1].split('/')[0]}/nowhere: cannot connect" in err
    assert "Connection refused" in err
    assert "Traceback" not in err and "hunter2" not in err


def test_a_bad_store_dsn_flag_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["serve", "--store-dsn", "mysql://root:hunter2@db/x"])
    err = capsys.readouterr().err
    assert code == 2
    assert "--store-dsn: expected a URI starting with postgresql://" in err
    assert "hunter2" not in err
