"""`tallyport-cloud position` says where an item is now; `tallyport-cloud on-hand` reads every page.

The CLI runs as a subprocess against a live server on SQLite (the store is not the subject).
"""

from __future__ import annotations

import json

import pytest
from cloud_testkit import DOCK, GTIN_A, StoreOpener, Uplink, item, make_event
from grpc import aio
from tallyport.v1 import events_pb2
from test_cloud_cli import run_cli

from cloud.cli import ON_HAND_PAGE_SIZE
from cloud.server import CloudServer

ITEM = item(GTIN_A, "3001")


@pytest.fixture
def store_backend() -> str:
    return "sqlite"


def field_values(out: str) -> dict[str, str]:
    """The `field  value` block of `position` as a dict."""
    return dict(line.split(maxsplit=1) for line in out.splitlines())


@pytest.mark.parametrize(
    ("last_event", "expected"),
    [
        (
            {"biz_step": events_pb2.BIZ_STEP_STORING},
            {"now": f"at {DOCK}", "present": "yes", "in_transit": "no"},
        ),
        (
            {"biz_step": events_pb2.BIZ_STEP_DEPARTING},
            {"now": f"in transit from {DOCK}", "present": "no", "in_transit": "yes"},
        ),
        (
            {"action": events_pb2.ACTION_DELETE},
            {"now": f"gone (taken out by action DELETE), last seen at {DOCK}", "present": "no", "in_transit": "no"},
        ),
    ],
    ids=["present", "departed", "deleted"],
)
async def test_position_says_where_it_is_now_and_where_it_was_last_seen(
    cloud: CloudServer, channel: aio.Channel, last_event: dict[str, int], expected: dict[str, str]
) -> None:
    async with Uplink(channel) as up:
        await up.hello()
        await up.send(1, [make_event(1, objects=[ITEM]), make_event(2, objects=[ITEM], **last_event)])
    code, out, err = await run_cli("position", "--server", cloud.target, ITEM.id)
    assert code == 0, err
    values = field_values(out)
    assert {key: values[key] for key in expected} == expected
    assert values["last_seen_biz_location"] == DOCK
    code, out, _ = await run_cli("position", "--server", cloud.target, ITEM.id, "--json")
    answer = json.loads(out)
    assert answer["last_seen_biz_location"] == DOCK
    assert answer.get("present", False) == (expected["present"] == "yes")


async def test_on_hand_lists_every_page(cloud: CloudServer, open_test_store: StoreOpener) -> None:
    # One row more than a page of the CLI, written directly (see test_cloud_query_position_on_hand).
    store = await open_test_store()
    locations = [f"loc-{n:06d}" for n in range(ON_HAND_PAGE_SIZE + 1)]
    async with store.write() as sql:
        await sql.execute_many(
            "INSERT INTO on_hand (gtin, biz_location, serialized_count, class_quantity) VALUES (?, ?, ?, ?)",
            [(GTIN_A, location, 2, 0.0) for location in locations],
        )
    code, out, err = await run_cli("on-hand", "--server", cloud.target)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["GTIN", "BIZ_LOCATION", "QUANTITY"]
    assert [line.split() for line in lines[1:]] == [[GTIN_A, location, "2"] for location in locations]
    code, out, err = await run_cli("on-hand", "--server", cloud.target, "--json")
    assert code == 0, err
    assert [json.loads(line)["biz_location"] for line in out.splitlines()] == locations
