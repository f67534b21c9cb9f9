"""Fixtures shared by the whole suite: a real MQTT broker, and a topic prefix of its own for every test.

``mqtt_broker`` is ``(host, port)`` of, in this order:

1. whatever MQTT broker answers on 127.0.0.1:1883 (CI starts Mosquitto there);
2. with ``CI=true`` and nothing there: every test that needs the broker fails, saying so (no fallback: CI
   must test against its broker);
3. a ``mosquitto -p PORT`` started for the session, if the binary is installed (Debian package);
4. an ``amqtt`` broker started for the session in a child Python process. In a child, not in the test
   process: the fixture lives for the whole session while each test runs its own event loop, and the
   suite turns warnings into errors, which must not reach a third-party broker's internals.

``mqtt_broker_kind`` says which ("external", "mosquitto" or "amqtt"): amqtt 0.12 speaks MQTT 3.1.1 only and
does not redeliver unacknowledged messages to a resumed session, so tests of that path skip on it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hw_sim.broker import DEFAULT_BROKER, BrokerError, mqtt_answers, start_broker

CI_BROKER = DEFAULT_BROKER


@dataclass(frozen=True)
class _Broker:
    host: str
    port: int
    kind: str


@pytest.fixture(scope="session")
def _mqtt_broker_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Broker]:
    if mqtt_answers(*CI_BROKER):
        yield _Broker(*CI_BROKER, kind="external")
        return
    if os.environ.get("CI") == "true":
        pytest.fail(
            f"CI=true but no MQTT broker answers on {CI_BROKER[0]}:{CI_BROKER[1]}: "
            "the CI script must start Mosquitto there (no fallback broker in CI)",
            pytrace=False,
        )
    try:
        broker = start_broker(Path(tmp_path_factory.mktemp("mqtt-broker")) / "broker.log")
    except BrokerError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield _Broker(broker.host, broker.port, kind=broker.kind)
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def mqtt_broker(_mqtt_broker_process: _Broker) -> tuple[str, int]:
    """``(host, port)`` of a real MQTT broker for the whole session."""
    return _mqtt_broker_process.host, _mqtt_broker_process.port


@pytest.fixture(scope="session")
def mqtt_broker_kind(_mqtt_broker_process: _Broker) -> str:
    """Which broker ``mqtt_broker`` is: "external" (the one on 127.0.0.1:1883), "mosquitto" or "amqtt"."""
    return _mqtt_broker_process.kind


@pytest.fixture
def mqtt_topic_prefix() -> str:
    """A topic prefix no other test uses, so that tests never see each other's messages."""
    return f"tallyport-test/{uuid.uuid4().hex}"
