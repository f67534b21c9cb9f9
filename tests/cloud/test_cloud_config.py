"""cloud.toml: defaults, overrides, and errors that name the file, the key and what was expected."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest

from cloud.config import CloudConfig, load_config
from cloud.errors import ConfigError
from cloud.logs import KeyValueFormatter


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cloud.toml"
    path.write_text(text)
    return path


def test_no_file_gives_the_documented_defaults() -> None:
    config = load_config(None)
    assert config == CloudConfig()
    assert config.server.listen == "127.0.0.1:50051"
    assert (config.store.path, config.store.durability) == ("var/cloud.db", "full")
    assert (config.ingest.max_batch_events, config.ingest.max_unacked_batches) == (2000, 8)
    assert config.ingest.max_message_bytes == 4_194_304
    assert (config.store.backend, config.store.dsn, config.store.schema_name) == ("sqlite", "", "tallyport")
    assert (config.store.pool_connections_min, config.store.pool_connections_max) == (1, 10)


def test_file_values_and_flag_overrides(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[server]\nlisten = "0.0.0.0:6000"\n[store]\ndurability = "normal"\n[ingest]\nmax_batch_events = 500\n',
    )
    config = load_config(path, {("server", "listen"): "127.0.0.1:7000", ("store", "path"): "x.db"})
    assert config.server.listen == "127.0.0.1:7000"
    assert (config.store.path, config.store.durability) == ("x.db", "normal")
    assert config.ingest.max_batch_events == 500


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[ingest]\nmax_batch_events = 'abc'\n",
            "[ingest].max_batch_events: expected an integer from 1 to 10000, got 'abc'",
        ),
        (
            "[ingest]\nmax_batch_events = 20000\n",
            "[ingest].max_batch_events: expected an integer from 1 to 10000, got 20000",
        ),
        (
            "[ingest]\nmax_batch = 5\n",
            "[ingest].max_batch: unknown key; expected one of max_batch_events, max_unacked_batches, max_message_bytes",
        ),
        ("[stroe]\npath = 'x'\n", "[stroe]: unknown section; expected one of [server], [store], [ingest]"),
        (
            "[store]\ndurability = 'off'\n",
            "[store].durability: expected one of 'full', 'normal', got 'off'",
        ),
        ("[server]\nlisten = 'localhost'\n", "[server].listen: expected HOST:PORT"),
        ("[server]\nlisten = 'h:99999'\n", "[server].listen: expected HOST:PORT"),
        ("server = 3\n", "[server]: expected a table of keys, got 3"),
        ("[ingest\n", "not valid TOML"),
        ("[store]\nbackend = 'postgres'\n", '[store].dsn: required when backend = "postgres"; expected e.g.'),
        (
            "[store]\ndsn = 'postgresql://db/x'\n",
            '[store].dsn: only used with backend = "postgres" (backend is "sqlite")',
        ),
        (
            "[store]\nbackend = 'postgres'\ndsn = 'mysql://root:hunter2@db/x'\n",
            "[store].dsn: expected a URI starting with postgresql://, e.g. 'postgresql://USER@HOST:5432/DATABASE', "
            "got 'mysql://root:***@db/x'",
        ),
        ("[store]\nschema = 'Tally-Port'\n", "[store].schema: expected a schema name matching ^[a-z_][a-z0-9_]{0,62}$"),
        (
            "[store]\npool_connections_min = 5\npool_connections_max = 2\n",
            "[store].pool_connections_max: expected at least pool_connections_min (5), got 2",
        ),
        ("[store]\npool_connections_max = 0\n", "[store].pool_connections_max: expected an integer from 1 to 1000"),
        ("[store]\nbackend = 'mysql'\n", "[store].backend: expected one of 'sqlite', 'postgres', got 'mysql'"),
        ("[store]\nschema_name = 'x'\n", "[store].schema_name: unknown key; expected one of backend, path, "),
    ],
    ids=[
        "wrong-type",
        "too-big",
        "unknown-key",
        "unknown-section",
        "bad-choice",
        "no-port",
        "bad-port",
        "not-table",
        "bad-toml",
        "postgres-without-dsn",
        "dsn-without-postgres",
        "dsn-not-postgres",
        "bad-schema",
        "pool-max-below-min",
        "pool-max-zero",
        "unknown-backend",
        "attribute-name-is-not-the-key",
    ],
)
def test_errors_name_file_key_and_expectation(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert str(raised.value).startswith(f"{path}: {message}"), raised.value


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "[ingest]\nmax_batch_events = 0\nmax_unacked_batches = 'x'\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert len(str(raised.value).splitlines()) == 2


def test_a_bad_flag_is_named_as_the_flag() -> None:
    with pytest.raises(ConfigError, match=r"^--listen: expected HOST:PORT"):
        load_config(None, {("server", "listen"): "nowhere"})


def test_postgres_settings_and_the_store_dsn_flag(tmp_path: Path) -> None:
    path = write(tmp_path, '[store]\nschema = "site_7"\npool_connections_max = 32\n')
    config = load_config(path, {("store", "dsn"): "postgresql://tp@db:5432/tp", ("store", "backend"): "postgres"})
    assert (config.store.backend, config.store.dsn) == ("postgres", "postgresql://tp@db:5432/tp")
    assert (config.store.schema_name, config.store.pool_connections_max) == ("site_7", 32)


@pytest.mark.parametrize("dsn", ["postgresql:/tp:secret@db", "host=db password=secret"])
def test_a_bad_store_dsn_flag_is_named_as_the_flag_without_its_password(dsn: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(None, {("store", "dsn"): dsn, ("store", "backend"): "postgres"})
    assert str(raised.value).startswith("--store-dsn: expected a URI starting with postgresql://")
    assert "secret" not in str(raised.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.toml: cannot read the config file"):
        load_config(tmp_path / "missing.toml")


def test_log_lines_end_with_key_values() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(KeyValueFormatter())
    logger = logging.getLogger("cloud.test_logs")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("gap recorded", extra={"gateway_id": "gw-1", "reason": "not in the edge outbox"})
    finally:
        logger.removeHandler(handler)
    line = stream.getvalue().strip()
    parts = line.split(" ", 3)
    assert parts[0].endswith("Z") and parts[1:3] == ["WARNING", "cloud.test_logs"]
    assert parts[3] == 'gap recorded gateway_id=gw-1 reason="not in the edge outbox"'


def test_the_sample_file_holds_exactly_the_defaults() -> None:
    sample = Path(__file__).resolve().parents[2] / "cloud" / "sample.toml"
    assert load_config(sample) == CloudConfig()
