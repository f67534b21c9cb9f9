"""`tallyport-cloud masterdata load|list` as a subprocess against a live server (SQLite: the CLI is the subject)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from cloud_testkit import run_cli

from cloud.server import CloudServer

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_TOML = REPO_ROOT / "deploy" / "demo" / "masterdata.toml"
DEMO_CSV_DIR = REPO_ROOT / "deploy" / "demo" / "masterdata-csv"


@pytest.fixture
def store_backend() -> str:
    return "sqlite"


async def test_load_a_bad_file_reports_each_row_and_loads_the_rest(cloud: CloudServer, tmp_path: Path) -> None:
    tiers = tmp_path / "tiers.csv"
    tiers.write_text("name,weight,description\nstrategic,3,Key\nbasic,-1,Spot\n", encoding="utf-8")
    site = tmp_path / "site.toml"
    site.write_text(
        """[[location]]
location_id = "urn:loc:dc1"
name = "DC1"
level = "site"

[[location]]
location_id = "urn:loc:dc1:door-9"
name = "Door 9"
level = "door"
parent_id = "urn:loc:dc1:dock"

[[sku]]
gtin = "09501101530003"
description = "Vaccine"
unit_cost = 184.0
customer_tier = "strategic"
temperature_min_c = 2.0
temperature_max_c = 8.0

[[sku]]
gtin = "09501101530003"
description = "Vaccine again"
unit_cost = 1.0

[[sku]]
gtin = "05901234123457"
description = "Gel"
unit_cost = 3.1
customer_tier = "gold"
""",
        encoding="utf-8",
    )
    code, out, err = await run_cli("masterdata", "load", str(tiers), str(site), "--target", cloud.target)
    assert code == 1, err
    assert out.splitlines() == [
        f"rejected {tiers}:3: weight: expected a number > 0, got -1",
        f"rejected {site}:6: [[location]] #2: parent_id 'urn:loc:dc1:dock': no such location "
        "(load parents first or in the same batch)",
        f"rejected {site}:20: [[sku]] #2: '09501101530003' is already given at {site}:12: [[sku]] #1",
        f"rejected {site}:25: [[sku]] #3: customer_tier 'gold' is not a known tier (known: strategic)",
        "loaded 3 rows (1 customer tiers, 1 locations, 1 SKUs) from 2 files; rejected 4",
    ]
    snapshot = await cloud.masterdata.snapshot()
    assert set(snapshot.skus) == {"09501101530003"} and set(snapshot.locations) == {"urn:loc:dc1"}

    code, out, err = await run_cli("masterdata", "load", str(tiers), "--server", cloud.target, "--json")
    assert code == 1, err
    assert [json.loads(line) for line in out.splitlines()] == [
        {"file": str(tiers), "line": 3, "table_index": None, "reason": "weight: expected a number > 0, got -1"},
        {"loaded": 1, "rejected": 1, "customer_tier": 1, "location": 0, "sku": 0},
    ]

    code, out, err = await run_cli("masterdata", "list", "skus", "--server", cloud.target)
    assert code == 0, err
    assert out.splitlines() == [
        "GTIN            ABC  LIFECYCLE  UNIT_COST   CONDITION  TIER       ANNUAL_USAGE  DESCRIPTION",
        "09501101530003  C    active     184.00 EUR  2..8 °C    strategic  0             Vaccine",
    ]


async def test_load_the_demo_csv_set_then_list_it(cloud: CloudServer) -> None:
    files = sorted(str(path) for path in DEMO_CSV_DIR.glob("*.csv"))
    code, out, err = await run_cli("masterdata", "load", *files, "--server", cloud.target)
    assert code == 0, err
    assert out.splitlines() == ["loaded 43 rows (3 customer tiers, 17 locations, 23 SKUs) from 3 files; rejected 0"]
    code, out, err = await run_cli("masterdata", "list", "tiers", "--server", cloud.target, "--json")
    assert code == 0, err
    assert json.loads(out.splitlines()[0]) == {
        "name": "basic",
        "weight": 1.0,
        "description": "wholesale and spot customers",
    }
    code, out, err = await run_cli("masterdata", "list", "locations", "--server", cloud.target, "--limit", "2")
    assert code == 0, err
    assert out.splitlines()[1].split()[:3] == ["urn:tallyport:loc:dc1", "site", "distribution_center"]
    assert len(out.splitlines()) == 3
    assert "more locations than --limit 2" in err


async def test_an_unreachable_server_is_exit_code_2(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, _, err = await run_cli(
        "masterdata", "load", str(DEMO_TOML), "--server", f"127.0.0.1:{port}", "--timeout", "2"
    )
    assert code == 2
    assert f"cannot reach the cloud server at 127.0.0.1:{port}" in err


@pytest.mark.parametrize("command", [["masterdata"], ["masterdata", "load"], ["masterdata", "list"]])
async def test_help_exits_zero(command: list[str]) -> None:
    code, out, _ = await run_cli(*command, "--help")
    assert code == 0
    assert "usage: tallyport-cloud masterdata" in out
