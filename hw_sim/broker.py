"""A real MQTT broker for the simulated site and the tests: the one on 127.0.0.1:1883, else one we start.

In this order: whatever broker answers on 127.0.0.1:1883; else Debian's `mosquitto -p PORT` if installed;
else the pure-Python `amqtt` broker in a child process. amqtt 0.12 speaks MQTT 3.1.1 only and does not
redeliver unacknowledged messages to a resumed session, which callers may need to know (`kind`).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

DEFAULT_BROKER = ("127.0.0.1", 1883)
PROBE_TIMEOUT_S = 1.0
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
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

BrokerKind = Literal["external", "mosquitto", "amqtt"]


class BrokerError(RuntimeError):
    """No broker answers and none could be started."""


@dataclass
class Broker:
    host: str
    port: int
    kind: BrokerKind
    process: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT_S)


def mqtt_answers(host: str, port: int) -> bool:
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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def mosquitto_binary() -> str | None:
    # Debian installs it in /usr/sbin, which is not on every user's PATH.
    found = shutil.which("mosquitto")
    if found is None and os.access("/usr/sbin/mosquitto", os.X_OK):
        found = "/usr/sbin/mosquitto"
    return found


def start_broker(log_path: Path, *, prefer_amqtt: bool = False) -> Broker:
    """Start mosquitto (or amqtt) on a free port and wait until it answers; its output goes to `log_path`."""
    port = free_port()
    mosquitto = None if prefer_amqtt else mosquitto_binary()
    kind: BrokerKind
    if mosquitto is not None:
        command, kind = [mosquitto, "-p", str(port)], "mosquitto"
    else:
        command, kind = [sys.executable, "-c", _AMQTT_BROKER, str(port)], "amqtt"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # A log file, not a pipe: a pipe nobody reads would fill up and stall the broker.
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    broker = Broker("127.0.0.1", port, kind, process)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not mqtt_answers("127.0.0.1", port):
        if process.poll() is not None or time.monotonic() > deadline:
            broker.stop()
            raise BrokerError(f"{kind} did not start on port {port}; its log:\n{log_path.read_text()}")
        time.sleep(0.05)
    return broker


def find_or_start_broker(log_path: Path) -> Broker:
    """The broker on 127.0.0.1:1883 if one answers, else one started for the caller (stop it when done)."""
    if mqtt_answers(*DEFAULT_BROKER):
        return Broker(*DEFAULT_BROKER, kind="external")
    return start_broker(log_path)
