"""`tallyport-cloud epcis-export` as a subprocess against a live server: one document of every page,
oldest first, to stdout or to a file, and its errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cloud_testkit import GTIN_A, Uplink, item, make_event, run_cli
from grpc import aio
from tallyport.v1 import events_pb2
from test_epcis_jsonld import document_problems

from cloud.epcis import service as epcis_service
from cloud.epcis.jsonld import event_to_jsonld
from cloud.server import CloudServer


@pytest.fixture
def store_backend() -> str:
    return "sqlite"


async def ingest_five(channel: aio.Channel) -> list[events_pb2.Event]:
    events = [make_event(seq, objects=[item(GTIN_A, str(seq))]) for seq in range(1, 6)]
    async with Uplink(channel) as up:
        await up.hello()
        await up.send(1, events)
        await up.finish()
    return events


async def test_help_has_an_example() -> None:
    code, out, _ = await run_cli("epcis-export", "--help")
    assert code == 0
    assert "usage: tallyport-cloud epcis-export" in out
    assert "tallyport-cloud epcis-export --output events.jsonld" in out


async def test_export_to_stdout_is_one_document_oldest_first(cloud: CloudServer, channel: aio.Channel) -> None:
    events = await ingest_five(channel)
    code, out, err = await run_cli("epcis-export", "--server", cloud.target)
    assert code == 0, err
    document = json.loads(out)
    assert document_problems(document) == []
    assert document["epcisBody"]["eventList"] == [event_to_jsonld(event) for event in events]


async def test_export_to_a_file_merges_every_page(
    cloud: CloudServer, channel: aio.Channel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = await ingest_five(channel)
    # The server runs in this process: a tiny document cap makes it answer one event per page.
    monkeypatch.setattr(epcis_service, "DOCUMENT_BYTES_MAX", 1)
    os.mkdir(tmp_path / "out")
    output = tmp_path / "out" / "export.jsonld"
    code, out, err = await run_cli("epcis-export", "--server", cloud.target, "--output", str(output))
    assert code == 0, err
    assert out == ""
    assert f"wrote 5 events to {output}" in err
    document = json.loads(output.read_text())
    assert document_problems(document) == []
    assert document["epcisBody"]["eventList"] == [event_to_jsonld(event) for event in events]
    assert os.listdir(tmp_path / "out") == ["export.jsonld"]  # no temporary file left behind


async def test_filters_reach_the_server(cloud: CloudServer, channel: aio.Channel) -> None:
    await ingest_five(channel)
    code, out, err = await run_cli(
        "epcis-export", "--server", cloud.target, "--since", "2025-01-31T12:00:04Z", "--biz-step", "receiving"
    )
    assert code == 0, err
    assert [event["tallyport:seq"] for event in json.loads(out)["epcisBody"]["eventList"]] == [4, 5]


async def test_more_events_than_allowed_fail_and_write_nothing(
    cloud: CloudServer, channel: aio.Channel, tmp_path: Path
) -> None:
    await ingest_five(channel)
    output = tmp_path / "export.jsonld"
    code, out, err = await run_cli(
        "epcis-export", "--server", cloud.target, "--max-events", "2", "--output", str(output)
    )
    assert code == 1
    assert "more than 2 events match" in err
    assert not output.exists()
    assert out == ""


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--biz-step", "dancing"], "--biz-step: unknown business step 'dancing'"),
        (["--since", "yesterday"], "--since: expected an ISO 8601 time"),
        (["--output", "/nonexistent-dir/x.jsonld"], "--output /nonexistent-dir/x.jsonld: cannot write"),
    ],
)
async def test_usage_errors_exit_2(cloud: CloudServer, arguments: list[str], message: str) -> None:
    code, _, err = await run_cli("epcis-export", "--server", cloud.target, *arguments)
    assert code == 2
    assert message in err


async def test_unreachable_server_exits_2(unused_tcp_port: int) -> None:
    code, _, err = await run_cli("epcis-export", "--server", f"127.0.0.1:{unused_tcp_port}", "--timeout", "2")
    assert code == 2
    assert "cannot reach the cloud server" in err
