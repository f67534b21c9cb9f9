"""`tallyport-cloud reconcile` and `kpis` as subprocesses against a live server (SQLite: the CLI is the subject)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cloud_testkit import DOCK, STORAGE, run_cli
from grpc import aio
from reconciliation_testkit import GTIN_A, GTIN_B, GTIN_C, GTIN_UNKNOWN, SKUS, stream_the_site

from cloud.reconciliation.files import read_cycle_counts
from cloud.server import CloudServer

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store_backend() -> str:
    return "sqlite"


@pytest.fixture
async def site(cloud: CloudServer, channel: aio.Channel) -> CloudServer:
    await stream_the_site(channel)
    await cloud.masterdata.upsert_skus(SKUS)
    return cloud


async def test_reconcile_cycle_counts_prints_rejections_drifts_and_accuracy(site: CloudServer, tmp_path: Path) -> None:
    counts = tmp_path / "counts.csv"
    counts.write_text(
        "location,gtin,quantity,counter\n"
        f"{DOCK},{GTIN_A},101,alice\n"
        f"{DOCK},{GTIN_B},47,alice\n"
        f"{STORAGE},{GTIN_C},21,bob\n"
        f"{STORAGE},12345,1,bob\n"
        f"{STORAGE},{GTIN_UNKNOWN},2,bob\n"
    )
    code, out, err = await run_cli("reconcile", "--cycle-counts", str(counts), "--server", site.target)
    assert code == 1, err  # a row was rejected; the others are reconciled
    assert f"rejected {counts}:5: gtin '12345': expected 8, 12, 13 or 14 digits" in err
    lines = [" ".join(line.split()) for line in out.splitlines()]
    assert "LOCATION GTIN ABC SYSTEM COUNTED VARIANCE VALUE TOLERANCE OK SOURCE" in lines
    assert f"{DOCK} {GTIN_A} A 100 101 +1 +10.00 ±1 % yes alice" in lines
    assert f"{DOCK} {GTIN_B} B 50 47 -3 -7.50 ±3 % NO alice" in lines
    assert f"{STORAGE} {GTIN_UNKNOWN} - 0 2 +2 +0.00 ±0 % NO bob" in lines
    assert any("2 of 4 within tolerance; record accuracy 50.0 %" in line for line in lines)
    assert f"{DOCK} 2 1 50.0 % 1125.00 17.50 98.4 %" in lines
    assert "A 1 1 100.0 % 1000.00 10.00 99.0 %" in lines

    code, out, err = await run_cli("kpis", "--server", site.target, "--window", "1d")
    assert code == 0, err
    assert "Inventory record accuracy (cycle counts, never netted): 50.0 % (2 of 4 within tolerance)" in out
    lines = [" ".join(line.split()) for line in out.splitlines()]
    assert f"{STORAGE} 2 1 50.0 % 80.00 4.00 95.0 %" in lines
    assert any(line.startswith("gw-dock4 ") and line.endswith(" yes") for line in lines)  # it just spoke: fresh
    assert any(line.startswith("Exceptions: ") for line in lines)
    assert any(line.startswith("gw-dock4 ") and "2/8" in line for line in lines)  # lost/expected seqs


async def test_reconcile_a_snapshot_needs_its_source(site: CloudServer, tmp_path: Path) -> None:
    snapshot = tmp_path / "wms.csv"
    snapshot.write_text(f"location,gtin,quantity\n{DOCK},{GTIN_A},100\n")
    code, _, err = await run_cli("reconcile", "--snapshot", str(snapshot), "--server", site.target)
    assert code == 2
    assert "--snapshot needs --source NAME" in err
    code, out, err = await run_cli(
        "reconcile", "--snapshot", str(snapshot), "--source", "wms", "--server", site.target, "--json"
    )
    assert code == 0, err
    assert out.count('"source":"wms"') == 3  # the summary and two drifts (GTIN_B at the dock: none in the WMS)


async def test_reconcile_pull_without_a_source_is_an_error_answer(site: CloudServer) -> None:
    code, _, err = await run_cli("reconcile", "--pull", "--server", site.target)
    assert code == 1
    assert "FAILED_PRECONDITION: no ERP/WMS source configured" in err


async def test_a_bad_header_is_a_usage_error_naming_the_file(site: CloudServer, tmp_path: Path) -> None:
    counts = tmp_path / "counts.csv"
    counts.write_text("location,gtin,qty,counter\n")
    code, _, err = await run_cli("reconcile", "--cycle-counts", str(counts), "--server", site.target)
    assert code == 2
    assert f"{counts}:1: unknown column 'qty'" in err


def test_the_demo_cycle_counts_file_loads_without_rejections() -> None:
    result = read_cycle_counts(REPO_ROOT / "deploy" / "demo" / "cycle-counts.csv", 0)
    assert result.rejections == ()
    assert len(result.rows) == 4
    assert result.rows[0].epcs is not None and len(result.rows[0].epcs) == 15
