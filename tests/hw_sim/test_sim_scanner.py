"""The simulated scanner: real frames on a pty, ACK/NAK retransmission, replug behind a stable link, ground truth."""

from __future__ import annotations

import asyncio
import io
import json
import os
import select
from pathlib import Path

import pytest

from hw_sim.scanner import PtyPort, ScannerSimulator
from hw_sim.scanner.scenario import ScannerScenario, check_digit, generate_scans


def _scenario(link: Path, **scanner: object) -> ScannerScenario:
    return ScannerScenario.model_validate(
        {
            "scanner": {"link": str(link), "scan_interval_ms": 0, **scanner},
            "items": [
                {"kind": "serialized", "batch": "B1", "expiry": "2027-03-31"},
                {"kind": "gtin", "gtin": "05901234123457"},
                {"kind": "sscc"},
                {"kind": "digital_link"},
                {"kind": "invalid"},
            ],
            "run": {"scans": 40, "seed": 3},
        }
    )


def test_generated_scans_carry_valid_gs1_keys_and_their_truth(tmp_path: Path) -> None:
    scans = list(generate_scans(_scenario(tmp_path / "l")))
    assert len(scans) == 40 and {s.symbology for s in scans} == {"]C1", "]E0", "]Q1"}
    for scan in scans:
        if scan.object_id.startswith("https://id.gs1.org/00/"):
            sscc = scan.object_id.rsplit("/", 1)[1]
            assert len(sscc) == 18 and check_digit(sscc[:-1]) == int(sscc[-1])
        if scan.symbology == "]E0":
            assert scan.quantity == 1.0 and scan.gtin == "05901234123457"
        if not scan.valid:
            assert scan.object_id == "" and scan.data.startswith("01")
    assert list(generate_scans(_scenario(tmp_path / "l"))) == scans  # deterministic for its seed


async def _gateway_side(link: Path, answers: list[bytes], frames: list[bytes]) -> None:
    """Play the gateway: read frames from the link, answer each with the next byte of `answers`."""
    fd = os.open(link, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    buffer = b""
    try:
        while answers:
            await asyncio.sleep(0.01)
            if select.select([fd], [], [], 0)[0]:
                buffer += os.read(fd, 4096)
            while b"\r\n" in buffer:
                frame, buffer = buffer.split(b"\r\n", 1)
                frames.append(frame)
                os.write(fd, answers.pop(0))
    finally:
        os.close(fd)


async def test_nak_makes_the_scanner_resend_and_ack_moves_on(tmp_path: Path) -> None:
    link = tmp_path / "dev" / "scanner0"
    scenario = _scenario(link, ack_timeout_ms=2000).model_copy(
        update={"run": _scenario(link).run.model_copy(update={"scans": 2})}
    )
    truth = io.StringIO()
    simulator = ScannerSimulator(scenario, truth)
    run = asyncio.create_task(simulator.run())
    while not link.exists():
        await asyncio.sleep(0.01)
    frames: list[bytes] = []
    await _gateway_side(link, [b"\x15", b"\x06", b"\x06"], frames)
    await asyncio.wait_for(run, 5)
    assert frames[0] == frames[1] and frames[1] != frames[2]  # resent after NAK, then the next scan
    assert (simulator.sent_total, simulator.naked_total, simulator.acked_total) == (3, 1, 2)
    outcomes = [json.loads(line)["outcome"] for line in truth.getvalue().splitlines()]
    assert outcomes == ["acked", "acked"]


async def test_replug_points_the_same_link_at_a_new_pty(tmp_path: Path) -> None:
    port = PtyPort(tmp_path / "scanner0")
    port.open()
    first = os.readlink(port.link)
    port.replug()
    second = os.readlink(port.link)
    try:
        assert first != second
        fd = os.open(port.link, os.O_RDWR | os.O_NOCTTY)
        assert os.isatty(fd)
        os.close(fd)
        assert port.replugs_total == 1
    finally:
        port.close()


def test_an_invalid_scenario_names_the_problem(tmp_path: Path) -> None:
    from hw_sim.scanner import load_scenario

    path = tmp_path / "bad.toml"
    path.write_text('[scanner]\nlink = "x"\n[[items]]\nkind = "rfid"\n')
    with pytest.raises(SystemExit, match=r"bad\.toml: invalid scenario: items\.0\.kind"):
        load_scenario(path)


async def test_unplugging_removes_the_link_so_nobody_opens_a_reused_pty(tmp_path: Path) -> None:
    port = PtyPort(tmp_path / "scanner0")
    port.open()
    assert os.readlink(port.link) == port.slave_name
    port.close()
    assert not port.link.exists() and not port.link.is_symlink()
