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
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

CI_BROKER = ("127.0.0.1", 1883)
PROBE_TIMEOUT_S = 1.0
BROKER_START_TIMEOUT_S = 10.0
BROKER_STOP_TIMEOUT_S = 5.0
# MQTT 3.1.1 CONNECT: protocol "MQTT" level 4, clean session, keep-alive 5 s, client id "tallyport-probe".
_CLIENT_ID = b"tallyport-probe"
_CONNECT = (
    bytes([0x10, 12 + len(_CLIENT_ID)])
    + b"\x00\x04MQTT\x04\x02\x00\x05"
    + len(_CLIENT_ID).to_bytes(2, "big")
    + _CLIENT_ID
)
_CONNACK_ACCEPTED = b"\x20\x02\x00\x00"
_DISCONNECT = b"\xe0\x00"
_AMQTT_BROKER = """
import asyncio, sys
from amqtt.broker import Broker

async def main(port: int) -> None:
    broker = Broker({
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    })
    await broker.start()
    await asyncio.Event().wait()

asyncio.run(main(int(sys.argv[1])))
"""


@dataclass(frozen=True)
class _Broker:
    host: str
    port: int
    kind: str


def _mqtt_answers(host: str, port: int) -> bool:
    """True if an MQTT broker accepts a CONNECT there (a bare open port is not enough)."""
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S) as probe:
            probe.settimeout(PROBE_TIMEOUT_S)
            probe.sendall(_CONNECT)
            answer = b""
            while len(answer) < len(_CONNACK_ACCEPTED):
                data = probe.recv(len(_CONNACK_ACCEPTED) - len(answer))
                if not data:
                    return False
                answer += data
            probe.sendall(_DISCONNECT)
            return answer == _CONNACK_ACCEPTED
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _mosquitto_binary() -> str | None:
    # Debian installs it in /usr/sbin, which is not on every user's PATH.
    found = shutil.which("mosquitto")
    if found is None and os.access("/usr/sbin/mosquitto", os.X_OK):
        found = "/usr/sbin/mosquitto"
    return found


@pytest.fixture(scope="session")
def _mqtt_broker_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Broker]:
    if _mqtt_answers(*CI_BROKER):
        yield _Broker(*CI_BROKER, kind="external")
        return
    if os.environ.get("CI") == "true":
        pytest.fail(
            f"CI=true but no MQTT broker answers on {CI_BROKER[0]}:{CI_BROKER[1]}: "
            "the CI script must start Mosquitto there (no fallback broker in CI)",
            pytrace=False,
        )
    port = _free_port()
    mosquitto = _mosquitto_binary()
    if mosquitto is not None:
        command, kind = [mosquitto, "-p", str(port)], "mosquitto"
    else:
        command, kind = [sys.executable, "-c", _AMQTT_BROKER, str(port)], "amqtt"
    # The broker's log goes to a file: a pipe nobody reads would fill up and stall the broker.
    log_path = Path(tmp_path_factory.mktemp("mqtt-broker")) / f"{kind}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + BROKER_START_TIMEOUT_S
        while not _mqtt_answers("127.0.0.1", port):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{kind} did not start on port {port}; its log:\n{log_path.read_text()}", pytrace=False)
            time.sleep(0.05)
        yield _Broker("127.0.0.1", port, kind=kind)
    finally:
        process.terminate()
        try:
            process.wait(timeout=BROKER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=BROKER_STOP_TIMEOUT_S)


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
