"""The [[zebra_reader]] and [[impinj_reader]] config tables: the samples load, wrong combinations are refused
with a message that names the key."""

from __future__ import annotations

import random
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from edge.drivers.impinj_reader import ImpinjReaderConfig, ImpinjReaderDriver
from edge.drivers.mqtt_subscription import AckToken, ReceivedMessage, decode_received
from edge.drivers.zebra_reader import ZebraReaderConfig, decode_zebra_payload
from edge.errors import ConfigError

DRIVERS = Path(__file__).parents[3] / "edge" / "drivers"
ZEBRA: dict[str, Any] = {
    "name": "dock4",
    "broker_host": "127.0.0.1",
    "tag_topic": "zebra/dock4/data",
    "event_topic": "zebra/dock4/events",
    "client_id": "gw1-dock4",
}
IMPINJ_STREAM: dict[str, Any] = {
    "name": "dock2",
    "mode": "http_stream",
    "stream_url": "http://127.0.0.1:8080/api/v1/data/stream",
}


def test_samples_load() -> None:
    [zebra] = tomllib.loads((DRIVERS / "zebra_reader" / "sample.toml").read_text())["zebra_reader"]
    assert ZebraReaderConfig(**zebra).topics == ("zebra/dock4-reader/data", "zebra/dock4-reader/events")
    stream, mqtt = tomllib.loads((DRIVERS / "impinj_reader" / "sample.toml").read_text())["impinj_reader"]
    assert ImpinjReaderConfig(**stream).read_timeout_ms == 45_000
    assert ImpinjReaderConfig(**mqtt).topic == "impinj/dock3-r700/events"


def test_defaults_are_the_safe_ones() -> None:
    config = ZebraReaderConfig(**ZEBRA)
    assert (config.qos, config.protocol, config.broker_port) == (1, "5", 1883)
    assert ZebraReaderConfig(**(ZEBRA | {"event_topic": None})).topics == ("zebra/dock4/data",)


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"qos": 2}, "qos"),
        ({"tag_topic": "zebra/#/data"}, "topic filter"),
        ({"event_topic": "zebra/dock4/data"}, "event_topic must differ"),
        ({"reconnect_delay_ms_initial": 500, "reconnect_delay_ms_max": 100}, "reconnect_delay_ms_max"),
        ({"password": "secret"}, "password is set but username is not"),
        ({"client_id": ""}, "client_id"),
        ({"tagTopic": "x"}, "Extra inputs are not permitted"),
    ],
)
def test_zebra_config_refuses(change: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        ZebraReaderConfig(**(ZEBRA | change))


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"read_timeout_ms": 30_000}, "read_timeout_ms"),
        ({"stream_url": "ftp://reader/stream"}, "http:// or https://"),
        ({"stream_url": None}, "needs stream_url"),
        ({"topic": "impinj/events"}, "for mode 'mqtt' only"),
        ({"mode": "mqtt"}, "mode 'mqtt' needs broker_host, client_id, topic"),
        ({"mode": "llrp"}, "mode"),
    ],
)
def test_impinj_config_refuses(change: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        ImpinjReaderConfig(**(IMPINJ_STREAM | change))


def test_password_is_not_shown_in_the_config_repr() -> None:
    config = ImpinjReaderConfig(**(IMPINJ_STREAM | {"username": "root", "password": "impinj"}))
    assert "impinj" not in repr(config).replace("impinj_reader", "")


async def test_a_missing_ca_file_is_a_config_error_at_start() -> None:
    config = ImpinjReaderConfig(**(IMPINJ_STREAM | {"tls_ca_file": "/nonexistent/reader.pem"}))
    with pytest.raises(ConfigError, match=r"tls_ca_file '/nonexistent/reader\.pem'"):
        async with ImpinjReaderDriver(config, rng=random.Random(0)):
            pass


def test_a_retained_message_is_an_old_report_counted_not_decoded() -> None:
    received = ReceivedMessage(
        topic="zebra/dock4/data",
        payload=b'{"type":"GPI","pin":1,"state":"HIGH"}',
        qos=1,
        retained=True,
        received_at=datetime(2025, 1, 1, tzinfo=UTC),
        token=AckToken(subscription=1, connection=1, mid=7, qos=1),
    )
    message = decode_received(received, lambda payload, at: decode_zebra_payload(payload, reader="r", received_at=at))
    assert (message.items, message.rejects, dict(message.ignored)) == ((), (), {"retained message": 1})
    assert message.token == received.token  # still acknowledged after the commit of nothing
