"""Gateway alarms on the uplink (`GatewayStatus`), stored in `gateway_alarms` and listed by ListGateways,
over a real gRPC stream and a real store, for each store."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
from cloud_testkit import GATEWAY, OUTBOX, StoreOpener, Uplink, make_events
from grpc import aio
from tallyport.v1 import ingest_pb2, inventory_pb2

from cloud.gateway_alarms import list_gateway_alarms
from cloud.server import CloudServer

RAISED_AT_S = 1_790_000_000
REPO_ROOT = Path(__file__).resolve().parents[2]


def _alarm(code: str, severity: int, active: bool = True, message: str = "") -> ingest_pb2.GatewayAlarm:
    alarm = ingest_pb2.GatewayAlarm(code=code, severity=severity, message=message or f"{code} text", active=active)
    alarm.raised_at.seconds = RAISED_AT_S
    return alarm


async def _send_status(up: Uplink, *alarms: ingest_pb2.GatewayAlarm) -> None:
    await up.call.write(ingest_pb2.GatewayMessage(status=ingest_pb2.GatewayStatus(alarms=list(alarms))))


async def _alarms_listed(inventory: Any, gateway_id: str = GATEWAY) -> dict[str, tuple[int, bool, str]]:
    reply = await inventory.ListGateways(inventory_pb2.ListGatewaysRequest())
    (state,) = [g for g in reply.gateways if g.gateway_id == gateway_id]
    return {a.code: (a.severity, a.active, a.message) for a in state.alarms}


async def test_a_status_is_stored_and_listed_with_the_gateway(channel: aio.Channel, inventory: Any) -> None:
    async with Uplink(channel) as up:
        welcome = await up.hello()
        assert welcome.accepts_status
        await _send_status(
            up,
            _alarm("outbox_full", ingest_pb2.ALARM_SEVERITY_CRITICAL),
            _alarm("outbox_salvaged", ingest_pb2.ALARM_SEVERITY_MAJOR, message="salvaged 10 events"),
        )
        # A status is not acked: the next batch's ack shows the stream went on, in order, after it.
        ack = await up.send(1, make_events(1, 3))
        assert ack.committed_through_seq == 3
    listed = await _alarms_listed(inventory)
    assert listed == {
        "outbox_full": (ingest_pb2.ALARM_SEVERITY_CRITICAL, True, "outbox_full text"),
        "outbox_salvaged": (ingest_pb2.ALARM_SEVERITY_MAJOR, True, "salvaged 10 events"),
    }
    reply = await inventory.ListGateways(inventory_pb2.ListGatewaysRequest())
    (alarm,) = [a for a in reply.gateways[0].alarms if a.code == "outbox_full"]
    assert alarm.raised_at.seconds == RAISED_AT_S
    assert alarm.updated_at.seconds > 0


async def test_a_later_status_updates_clears_and_drops_what_it_leaves_out(
    channel: aio.Channel, inventory: Any, open_test_store: StoreOpener
) -> None:
    async with Uplink(channel) as up:
        await up.hello()
        await _send_status(
            up,
            _alarm("outbox_near_cap", ingest_pb2.ALARM_SEVERITY_WARNING),
            _alarm("outbox_full", ingest_pb2.ALARM_SEVERITY_CRITICAL),
        )
        await up.send(1, make_events(1, 1))
        # The agent restarted: only the near-cap alarm, now cleared, and a new one.
        await _send_status(
            up,
            _alarm("outbox_near_cap", ingest_pb2.ALARM_SEVERITY_WARNING, active=False, message="below the cap"),
            _alarm("clock_skew", ingest_pb2.ALARM_SEVERITY_MINOR),
        )
        await up.send(2, make_events(2, 1))
    listed = await _alarms_listed(inventory)
    assert listed["outbox_near_cap"] == (ingest_pb2.ALARM_SEVERITY_WARNING, False, "below the cap")
    assert listed["outbox_full"][1] is False, "an active alarm the gateway no longer reports is cleared"
    assert listed["clock_skew"][1] is True
    stored = await list_gateway_alarms(await open_test_store())
    assert [(a.code, a.active) for a in stored[GATEWAY]] == [
        ("clock_skew", True),
        ("outbox_full", False),
        ("outbox_near_cap", False),
    ]


async def test_an_old_gateway_that_never_sends_a_status_works_and_has_no_alarms(
    channel: aio.Channel, inventory: Any
) -> None:
    async with Uplink(channel) as up:
        await up.hello()
        assert (await up.send(1, make_events(1, 5))).committed_through_seq == 5
    assert await _alarms_listed(inventory) == {}


@pytest.mark.parametrize(
    ("alarm", "expected"),
    [
        (ingest_pb2.GatewayAlarm(code="Outbox Full", severity=ingest_pb2.ALARM_SEVERITY_MAJOR), "code"),
        (ingest_pb2.GatewayAlarm(code="outbox_full"), "severity"),
        (ingest_pb2.GatewayAlarm(code="x", severity=1, message="m" * 1025), "message"),
    ],
)
async def test_an_out_of_contract_status_ends_the_stream_and_stores_nothing(
    channel: aio.Channel, open_test_store: StoreOpener, alarm: ingest_pb2.GatewayAlarm, expected: str
) -> None:
    async with Uplink(channel) as up:
        await up.hello()
        await _send_status(up, alarm)
        with pytest.raises(aio.AioRpcError) as failure:
            await up.call.read()
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert expected in (failure.value.details() or "")
    assert await list_gateway_alarms(await open_test_store()) == {}


async def test_control_characters_in_a_message_become_spaces_and_the_stream_goes_on(
    channel: aio.Channel, inventory: Any
) -> None:
    # A NUL used to fail the write on PostgreSQL and end the stream UNAVAILABLE on every reconnect;
    # a newline comes from a multi-line diagnosis such as SQLite's quick_check.
    async with Uplink(channel) as up:
        await up.hello()
        await _send_status(
            up,
            _alarm("outbox_salvaged", ingest_pb2.ALARM_SEVERITY_MAJOR, message="page 3 bad\npage 4 bad"),
            _alarm("clock_skew", ingest_pb2.ALARM_SEVERITY_MINOR, message="a\x00b\tc"),
        )
        assert (await up.send(1, make_events(1, 3))).committed_through_seq == 3
    assert await _alarms_listed(inventory) == {
        "outbox_salvaged": (ingest_pb2.ALARM_SEVERITY_MAJOR, True, "page 3 bad page 4 bad"),
        "clock_skew": (ingest_pb2.ALARM_SEVERITY_MINOR, True, "a b c"),
    }


async def test_too_many_alarms_in_one_status_are_refused(channel: aio.Channel) -> None:
    alarms = [_alarm(f"alarm_{n}", ingest_pb2.ALARM_SEVERITY_MINOR) for n in range(65)]
    async with Uplink(channel) as up:
        await up.hello()
        await _send_status(up, *alarms)
        with pytest.raises(aio.AioRpcError) as failure:
            await up.call.read()
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_alarms_are_per_gateway(channel: aio.Channel, inventory: Any) -> None:
    for gateway, code in (("gw-a", "outbox_full"), ("gw-b", "clock_skew")):
        async with Uplink(channel) as up:
            await up.hello(gateway_id=gateway, outbox_id=OUTBOX)
            await _send_status(up, _alarm(code, ingest_pb2.ALARM_SEVERITY_MAJOR))
            await up.send(1, make_events(1, 1, gateway_id=gateway))
    assert set(await _alarms_listed(inventory, "gw-a")) == {"outbox_full"}
    assert set(await _alarms_listed(inventory, "gw-b")) == {"clock_skew"}


async def test_the_gateways_command_prints_the_alarms_table(channel: aio.Channel, cloud: CloudServer) -> None:
    async with Uplink(channel) as up:
        await up.hello()
        await _send_status(
            up,
            _alarm("outbox_full", ingest_pb2.ALARM_SEVERITY_CRITICAL, message="refusing new reads"),
            _alarm("outbox_near_cap", ingest_pb2.ALARM_SEVERITY_WARNING, active=False),
        )
        await up.send(1, make_events(1, 1))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cloud.cli",
        "gateways",
        "--server",
        cloud.target,
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        stdout, _stderr = await process.communicate()
    assert process.returncode == 0
    lines = stdout.decode().splitlines()
    alarms_at = lines.index("") + 1  # the gateways table, a blank line, then the alarms table
    assert lines[alarms_at].split() == ["GATEWAY", "ALARM", "SEVERITY", "STATE", "RAISED_AT", "MESSAGE"]
    assert lines[alarms_at + 1].split()[:4] == [GATEWAY, "outbox_full", "critical", "active"]
    assert lines[alarms_at + 1].endswith("refusing new reads")
    assert lines[alarms_at + 2].split()[:4] == [GATEWAY, "outbox_near_cap", "warning", "cleared"]
