"""tallyport-edge as a person runs it: help, config check, outbox and quarantine listings."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
from pathlib import Path

from tallyport.v1 import events_pb2

from edge.clock import SystemClock
from edge.outbox import Rejected, open_outbox

EDGE = [sys.executable, "-m", "edge.cli"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EDGE, *args], capture_output=True, text=True, timeout=60, check=False)


def _config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "gw.toml"
    path.write_text(
        f"""
[gateway]
id = "gw-cli"
[outbox]
path = "{tmp_path / "outbox.db"}"
{extra}
[[read_point]]
name = "dock-1"
id = "urn:rp:1"
biz_location = "urn:loc:1"
biz_step = "receiving"
[[scanner]]
name = "scanner0"
port = "/dev/null-scanner"
read_point = "dock-1"
"""
    )
    return path


def test_help_lists_every_command() -> None:
    result = _run("--help")
    assert result.returncode == 0
    for command in ("run", "check", "outbox", "quarantine"):
        assert command in result.stdout


def test_check_accepts_a_valid_config(tmp_path: Path) -> None:
    result = _run("check", "--config", str(_config(tmp_path)))
    assert (
        result.returncode == 0
        and "valid (1 scanners, 0 RFID readers, 0 portals, 0 Modbus buses, 0 MQTT sensor feeds, 1 read points)"
        in result.stdout
    )


def test_check_refuses_a_bad_config_with_file_and_key(tmp_path: Path) -> None:
    path = _config(tmp_path, "[uplink]\nwindow = 3")
    result = _run("check", "--config", str(path))
    assert result.returncode == 2
    assert f"{path}: uplink.window: unknown key" in result.stderr
    assert "Traceback" not in result.stderr


def test_outbox_and_quarantine_list_what_the_agent_kept(tmp_path: Path) -> None:
    path = _config(tmp_path)

    async def fill() -> None:
        async with open_outbox(tmp_path / "outbox.db", clock=SystemClock(), rng=random.Random(1)) as outbox:
            event = events_pb2.Event(gateway_id="gw-cli", biz_location="urn:loc:1")
            event.event_time.GetCurrentTime()
            await outbox.append(event)
            await outbox.quarantine(Rejected("scanner0", "not_gs1", "not a GS1 barcode: 'HELLO'", b"]C0HELLO\x00"))

    asyncio.run(fill())
    outbox = _run("outbox", "--config", str(path))
    assert outbox.returncode == 0
    assert "waiting for the cloud: 1 events, seq 1..1" in outbox.stdout
    assert "quarantined reads:     1" in outbox.stdout
    quarantine = _run("quarantine", "--config", str(path))
    assert quarantine.returncode == 0
    assert "not_gs1" in quarantine.stdout and "reason: not a GS1 barcode: 'HELLO'" in quarantine.stdout
    assert "raw:    ]C0HELLO\\x00" in quarantine.stdout


def test_listing_before_the_agent_ever_ran_says_so(tmp_path: Path) -> None:
    result = _run("quarantine", "--config", str(_config(tmp_path)))
    assert result.returncode == 2 and "no outbox" in result.stderr


def test_a_bad_setting_found_while_starting_is_a_config_error_not_a_traceback(tmp_path: Path) -> None:
    environment = {**os.environ, "TALLYPORT_CLOCK_OFFSET_S": "an hour"}
    result = subprocess.run(
        [*EDGE, "run", "--config", str(_config(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=environment,
    )
    assert result.returncode == 2
    assert "invalid config" in result.stderr and "TALLYPORT_CLOCK_OFFSET_S" in result.stderr
    assert "Traceback" not in result.stderr
