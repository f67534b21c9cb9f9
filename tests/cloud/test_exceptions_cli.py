"""`tallyport-cloud exceptions ...` as a subprocess against a live server: the ranked table, the audit
trail, actions and their refusals, watch, and --help."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cloud_testkit import BASE_TIME_S, run_cli
from exceptions_testkit import GTIN_CHILLED, PICK, STORAGE, ManualClock, config_with_rules, load_site

from cloud.exceptions import store as repo
from cloud.exceptions.cli import LIST_HEADERS, format_duration, parse_duration
from cloud.server import CloudServer

T = BASE_TIME_S + 1000
RULES = [
    {"kind": "stockout", "location": PICK, "min_on_hand": 3},
    {"kind": "stockout", "location": STORAGE, "min_on_hand": 3},
]


@pytest.fixture
def store_backend() -> str:
    return "sqlite"


@pytest.fixture
async def server(store_section: dict[str, Any]) -> AsyncIterator[CloudServer]:
    config = config_with_rules(store_section, RULES, {"owner_role": "replenishment", "response_s": 600})
    async with CloudServer(config, clock=ManualClock(T)) as running:
        await load_site(running)
        await running.exceptions.sweep()
        yield running


@pytest.mark.parametrize("action", ["list", "show", "ack", "resolve", "shelve", "watch"])
async def test_help_shows_examples(action: str) -> None:
    code, out, _ = await run_cli("exceptions", action, "--help")
    assert code == 0 and f"tallyport-cloud exceptions {action}" in out and "examples:" in out


async def test_list_prints_the_ranked_table(server: CloudServer) -> None:
    code, out, err = await run_cli("exceptions", "list", "--server", server.target)
    assert code == 0, err
    header, *rows = out.splitlines()
    assert header.split() == LIST_HEADERS
    assert len(rows) == 8
    top = rows[0].split()
    assert top[:3] == ["28,880", "critical", "stockout"] and top[4] == PICK and top[5] == "replenishment"
    assert top[-3] == "open" and top[-1].startswith("ex-")
    code, out, _ = await run_cli("exceptions", "list", "--server", server.target, "--location", STORAGE, "--json")
    assert code == 0 and len(out.splitlines()) == 4
    assert {json.loads(line)["location"] for line in out.splitlines()} == {STORAGE}


async def test_show_ack_shelve_and_a_refused_transition(server: CloudServer) -> None:
    target = (await server.exceptions.list_exceptions(repo.ExceptionFilter(gtin=GTIN_CHILLED, location=PICK), 1))[0]
    target_id = target.exception_id
    code, out, err = await run_cli(
        "exceptions", "ack", target_id, "--server", server.target, "--actor", "ann", "--reason", "on it"
    )
    assert (code, out.strip()) == (0, f"{target_id} is now acknowledged"), err
    code, _, err = await run_cli("exceptions", "ack", target_id, "--server", server.target, "--actor", "ann")
    assert code == 1 and "FAILED_PRECONDITION" in err and "already acknowledged" in err
    code, out, err = await run_cli(
        "exceptions", "shelve", target_id, "--for", "30m", "--server", server.target, "--actor", "bob"
    )
    assert (code, out.strip()) == (0, f"{target_id} is now shelved"), err
    code, out, err = await run_cli("exceptions", "show", target_id, "--server", server.target)
    assert code == 0, err
    assert "state           shelved" in out and "audit trail:" in out
    trail = out.split("audit trail:")[1]
    assert [line.split()[2] for line in trail.strip().splitlines()[1:]] == ["raise", "acknowledge", "shelve"]
    code, _, err = await run_cli("exceptions", "show", "ex-unknown", "--server", server.target)
    assert code == 1 and "NOT_FOUND" in err


async def test_watch_prints_the_snapshot_then_stops_after_count(server: CloudServer) -> None:
    code, out, err = await run_cli("exceptions", "watch", "--snapshot", "--count", "9", "--server", server.target)
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 9 and lines[-1] == "-- snapshot done; live changes follow"
    assert all("snapshot" in line and "stockout" in line for line in lines[:8])


def test_durations_parse_and_print() -> None:
    assert [parse_duration(text) for text in ("90", "90s", "30m", "2h", "1d", "1.5h")] == [
        90,
        90,
        1800,
        7200,
        86400,
        5400,
    ]
    assert [format_duration(s) for s in (45, 720, 11_100, 190_000)] == ["45s", "12m", "3h05m", "2d04h"]
