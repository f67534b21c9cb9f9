"""ExceptionService over a real gRPC server: ranking by money x tier, filters and paging, the audit
trail, actions and their refusals, escalation and shelving on the test's clock, and the
subscription delivering changes in order to two concurrent subscribers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from cloud_testkit import BASE_TIME_S
from exceptions_testkit import (
    GTIN_CHILLED,
    GTIN_DEAR,
    GTIN_MID,
    PICK,
    STORAGE,
    ManualClock,
    config_with_rules,
    load_site,
)
from grpc import aio
from tallyport.v1 import exceptions_pb2, exceptions_pb2_grpc

from cloud.config import CloudConfig
from cloud.exceptions.hub import ExceptionHub, SubscriberOverflow
from cloud.exceptions.lifecycle import raise_exception
from cloud.exceptions.models import Condition, ExceptionChange, Policy
from cloud.exceptions.priority import priority_score
from cloud.server import SERVICE_NAMES, CloudServer

T = BASE_TIME_S + 1000
READ_GUARD_S = 30.0  # a stream that stops answering fails the test instead of hanging it
RULES = [
    {"kind": "stockout", "location": PICK, "min_on_hand": 3},
    {"kind": "stockout", "location": STORAGE, "min_on_hand": 3},
]
DEFAULTS = {
    "owner_role": "replenishment",
    "response_s": 60,
    "escalation_roles": ["shift_lead", "site_manager"],
    "escalation_interval_s": 120,
}


@pytest.fixture
def store_backend() -> str:
    return "sqlite"  # the store is tested on both backends in test_exceptions_store and _rules


@dataclass
class Api:
    server: CloudServer
    clock: ManualClock
    stub: Any

    async def sweep(self, at_s: float) -> None:
        self.clock.set(at_s)
        await self.server.exceptions.sweep()


@pytest.fixture
async def api(store_section: dict[str, Any]) -> AsyncIterator[Api]:
    clock = ManualClock(T)
    config = config_with_rules(store_section, RULES, DEFAULTS, shelve_max_s=600)
    async with CloudServer(config, clock=clock) as server:
        await load_site(server)
        async with aio.insecure_channel(server.target) as channel:
            yield Api(server, clock, exceptions_pb2_grpc.ExceptionServiceStub(channel))


async def list_all(stub: Any, **fields: Any) -> list[exceptions_pb2.InventoryException]:
    reply = await stub.ListExceptions(exceptions_pb2.ListExceptionsRequest(**fields))
    return list(reply.exceptions)


def subject(gtin: str, location: str) -> str:
    return f"{gtin}@{location}"


async def test_list_ranks_by_money_times_tier_times_severity(api: Api) -> None:
    await api.sweep(T)
    ranked = await list_all(api.stub)
    # Out of stock everywhere: critical (x8); shortfall 3. Pick-1 and the cheap and mid SKUs serve the
    # strategic tier (x10): priority = (3 x unit cost + 1) x weight x 8.
    assert [(e.subject, e.priority) for e in ranked[:2]] == [
        (subject(GTIN_CHILLED, PICK), 361 * 10 * 8),
        (subject(GTIN_DEAR, PICK), 151 * 10 * 8),
    ]
    assert {e.subject for e in ranked[2:4]} == {subject(GTIN_MID, PICK), subject(GTIN_MID, STORAGE)}  # a tie
    assert [e.priority for e in ranked] == [28880, 12080, 4880, 4880, 2888, 1208, 320, 320]
    assert ranked[4].subject == subject(GTIN_CHILLED, STORAGE)  # the dearest SKU, but no strategic customer
    top = ranked[0]
    assert (top.value_at_stake, top.service_weight, top.quantity_at_stake) == (360.0, 10.0, 3.0)
    assert top.severity == exceptions_pb2.EXCEPTION_SEVERITY_CRITICAL
    assert (top.owner_role, top.state) == ("replenishment", exceptions_pb2.EXCEPTION_STATE_OPEN)
    assert top.response_due.seconds == T + 60


async def test_filters_and_paging(api: Api) -> None:
    await api.sweep(T)
    everything = await list_all(api.stub)
    assert [e.subject for e in await list_all(api.stub, location=STORAGE, gtin=GTIN_DEAR)] == [
        subject(GTIN_DEAR, STORAGE)
    ]
    assert len(await list_all(api.stub, rule="stockout", owner_role="replenishment")) == 8
    assert await list_all(api.stub, rule="dwell") == []
    assert len(await list_all(api.stub, min_severity=exceptions_pb2.EXCEPTION_SEVERITY_CRITICAL)) == 8
    await api.stub.ResolveException(
        exceptions_pb2.ResolveExceptionRequest(exception_id=everything[0].exception_id, actor="ann", reason="filled")
    )
    assert len(await list_all(api.stub)) == 7  # no states: the unresolved ones
    resolved = await list_all(api.stub, states=[exceptions_pb2.EXCEPTION_STATE_RESOLVED])
    assert [e.exception_id for e in resolved] == [everything[0].exception_id]
    paged: list[str] = []
    request = exceptions_pb2.ListExceptionsRequest(page_size=3)
    while True:
        reply = await api.stub.ListExceptions(request)
        paged.extend(e.exception_id for e in reply.exceptions)
        if not reply.next_page_token:
            break
        request.page_token = reply.next_page_token
    assert paged == [e.exception_id for e in everything[1:]]
    for bad in (
        exceptions_pb2.ListExceptionsRequest(page_size=1001),
        exceptions_pb2.ListExceptionsRequest(page_token="not-ours"),
        exceptions_pb2.ListExceptionsRequest(states=[9]),  # type: ignore[list-item]
    ):
        with pytest.raises(aio.AioRpcError) as caught:
            await api.stub.ListExceptions(bad)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_actions_record_the_audit_trail_and_wrong_transitions_are_refused(api: Api) -> None:
    await api.sweep(T)
    target = (await list_all(api.stub))[0].exception_id
    api.clock.set(T + 10)
    acked = await api.stub.AcknowledgeException(
        exceptions_pb2.AcknowledgeExceptionRequest(exception_id=target, actor="ann", reason="refilling now")
    )
    assert acked.state == exceptions_pb2.EXCEPTION_STATE_ACKNOWLEDGED and acked.acknowledged
    with pytest.raises(aio.AioRpcError) as caught:
        await api.stub.AcknowledgeException(
            exceptions_pb2.AcknowledgeExceptionRequest(exception_id=target, actor="bob")
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert caught.value.details() == f"exception {target} is already acknowledged; there is nothing to acknowledge"
    with pytest.raises(aio.AioRpcError) as caught:
        await api.stub.ResolveException(exceptions_pb2.ResolveExceptionRequest(exception_id="ex-nope", actor="bob"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(aio.AioRpcError) as caught:
        await api.stub.ResolveException(exceptions_pb2.ResolveExceptionRequest(exception_id=target, actor=" "))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    api.clock.set(T + 20)
    await api.stub.ResolveException(
        exceptions_pb2.ResolveExceptionRequest(exception_id=target, actor="ann", reason="done")
    )
    detail = await api.stub.GetException(exceptions_pb2.GetExceptionRequest(exception_id=target))
    assert detail.exception.state == exceptions_pb2.EXCEPTION_STATE_RESOLVED
    assert [(t.action, t.actor, t.reason, t.at.seconds) for t in detail.transitions] == [
        ("raise", "system", detail.transitions[0].reason, T),
        ("acknowledge", "ann", "refilling now", T + 10),
        ("resolve", "ann", "done", T + 20),
    ]
    # Resolved while the shelf is still empty: the rule raises a new exception, not the old one again.
    await api.sweep(T + 30)
    again = await list_all(api.stub, location=detail.exception.location, gtin=detail.exception.gtin)
    assert len(again) == 1 and again[0].exception_id != target


async def test_escalation_when_overdue_once_per_level(api: Api) -> None:
    await api.sweep(T)
    target = (await list_all(api.stub))[0].exception_id

    async def owner() -> tuple[str, int]:
        found = (await api.stub.GetException(exceptions_pb2.GetExceptionRequest(exception_id=target))).exception
        return found.owner_role, found.escalation_level

    await api.sweep(T + 59)
    assert await owner() == ("replenishment", 0)
    await api.sweep(T + 60)
    assert await owner() == ("shift_lead", 1)
    await api.sweep(T + 61)
    assert await owner() == ("shift_lead", 1)
    await api.sweep(T + 180)
    assert await owner() == ("site_manager", 2)
    await api.sweep(T + 10_000)
    assert await owner() == ("site_manager", 2)  # no role left to escalate to
    detail = await api.stub.GetException(exceptions_pb2.GetExceptionRequest(exception_id=target))
    assert [(t.action, t.owner_role, t.escalation_level) for t in detail.transitions] == [
        ("raise", "replenishment", 0),
        ("escalate", "shift_lead", 1),
        ("escalate", "site_manager", 2),
    ]


async def test_shelve_is_capped_then_expires_back_to_open(api: Api) -> None:
    await api.sweep(T)
    target = (await list_all(api.stub))[0].exception_id
    shelved = await api.stub.ShelveException(
        exceptions_pb2.ShelveExceptionRequest(exception_id=target, actor="ann", reason="delivery due", duration_s=7200)
    )
    assert shelved.state == exceptions_pb2.EXCEPTION_STATE_SHELVED
    assert shelved.shelved_until.seconds == T + 600  # capped at [exceptions] shelve_max_s
    await api.sweep(T + 300)  # overdue, but shelved: no escalation
    assert (await list_all(api.stub, states=[exceptions_pb2.EXCEPTION_STATE_SHELVED]))[0].escalation_level == 0
    await api.sweep(T + 600)
    back = (await api.stub.GetException(exceptions_pb2.GetExceptionRequest(exception_id=target))).exception
    assert back.state == exceptions_pb2.EXCEPTION_STATE_OPEN and not back.HasField("shelved_until")
    with pytest.raises(aio.AioRpcError) as caught:
        await api.stub.ShelveException(exceptions_pb2.ShelveExceptionRequest(exception_id=target, actor="ann"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def read_update(call: Any) -> exceptions_pb2.ExceptionUpdate:
    async with asyncio.timeout(READ_GUARD_S):
        update: exceptions_pb2.ExceptionUpdate = await call.read()
    return update


async def test_two_concurrent_subscribers_get_every_change_in_commit_order(api: Api) -> None:
    first = api.stub.Subscribe(exceptions_pb2.SubscribeExceptionsRequest(include_snapshot=True))
    second = api.stub.Subscribe(exceptions_pb2.SubscribeExceptionsRequest(include_snapshot=True))
    for call in (first, second):  # both subscribed once their (empty) snapshot is done
        assert (await read_update(call)).kind == exceptions_pb2.EXCEPTION_UPDATE_KIND_SNAPSHOT_DONE
    await api.sweep(T)
    ranked = await list_all(api.stub)
    one, two, three = (e.exception_id for e in ranked[:3])
    await api.stub.AcknowledgeException(exceptions_pb2.AcknowledgeExceptionRequest(exception_id=one, actor="ann"))
    await api.stub.ShelveException(exceptions_pb2.ShelveExceptionRequest(exception_id=two, actor="bob", duration_s=60))
    await api.stub.ResolveException(exceptions_pb2.ResolveExceptionRequest(exception_id=three, actor="cy"))
    await api.stub.ResolveException(exceptions_pb2.ResolveExceptionRequest(exception_id=one, actor="ann"))
    seen: list[list[tuple[int, str, int, tuple[str, ...]]]] = []
    for call in (first, second):
        updates = [await read_update(call) for _ in range(8 + 4)]
        seen.append(
            [
                (u.kind, u.exception.exception_id, u.exception.version, tuple(t.action for t in u.transitions))
                for u in updates
            ]
        )
        call.cancel()
    assert seen[0] == seen[1]
    raised = seen[0][:8]
    assert all(
        kind == exceptions_pb2.EXCEPTION_UPDATE_KIND_RAISED and actions == ("raise",) for kind, _, _, actions in raised
    )
    assert sorted(exception_id for _, exception_id, _, _ in raised) == sorted(e.exception_id for e in ranked)
    assert [(exception_id, version, actions) for _, exception_id, version, actions in seen[0][8:]] == [
        (one, 2, ("acknowledge",)),
        (two, 2, ("shelve",)),
        (three, 2, ("resolve",)),
        (one, 3, ("resolve",)),
    ]


async def test_a_snapshot_lists_the_unresolved_then_live_changes_follow(api: Api) -> None:
    await api.sweep(T)
    call = api.stub.Subscribe(exceptions_pb2.SubscribeExceptionsRequest(include_snapshot=True))
    snapshot = [await read_update(call) for _ in range(8)]
    assert {u.kind for u in snapshot} == {exceptions_pb2.EXCEPTION_UPDATE_KIND_SNAPSHOT}
    assert [u.exception.priority for u in snapshot] == sorted((u.exception.priority for u in snapshot), reverse=True)
    assert (await read_update(call)).kind == exceptions_pb2.EXCEPTION_UPDATE_KIND_SNAPSHOT_DONE
    target = snapshot[0].exception.exception_id
    await api.stub.AcknowledgeException(exceptions_pb2.AcknowledgeExceptionRequest(exception_id=target, actor="ann"))
    live = await read_update(call)
    assert (live.kind, live.exception.exception_id) == (exceptions_pb2.EXCEPTION_UPDATE_KIND_CHANGED, target)
    call.cancel()


def change(number: int) -> ExceptionChange:
    condition = Condition("stockout", f"s{number}", True, Policy(), "minor")
    return raise_exception(condition, priority_score(0, 0, 1, "minor"), number, f"ex-{number}")


async def test_a_slow_subscriber_is_cut_off_and_the_others_keep_their_order() -> None:
    hub = ExceptionHub(queue_max=2)
    slow, fast = hub.subscribe(), hub.subscribe()
    received: list[str] = []

    async def drain() -> None:
        async for item in fast:
            received.append(item.record.exception_id)

    reader = asyncio.create_task(drain())
    for number in range(5):
        hub.publish([change(number)])
        await asyncio.sleep(0)  # let the fast reader take it, as a connected client would
    hub.close()
    await reader
    assert received == [f"ex-{number}" for number in range(5)]
    assert slow.overflowed and hub.subscriber_count == 0
    with pytest.raises(SubscriberOverflow, match="more than 2 changes waited"):
        async for _ in slow:
            pass


async def test_the_sweep_clock_runs_inside_the_server_and_stops_with_it(tmp_path: Any) -> None:
    config = CloudConfig.model_validate(
        {
            "server": {"listen": "127.0.0.1:0", "shutdown_grace_ms": 1000},
            "store": {"backend": "sqlite", "path": str(tmp_path / "cloud.db")},
            "exceptions": {"sweep_interval_ms": 100, "commit_delay_ms": 0, "rule": RULES},
        }
    )
    server = CloudServer(config)
    await server.start()
    try:
        assert "tallyport.v1.ExceptionService" in SERVICE_NAMES
        async with aio.insecure_channel(server.target) as channel:
            stub = exceptions_pb2_grpc.ExceptionServiceStub(channel)
            call = stub.Subscribe(exceptions_pb2.SubscribeExceptionsRequest(include_snapshot=True))
            while (await read_update(call)).kind != exceptions_pb2.EXCEPTION_UPDATE_KIND_SNAPSHOT_DONE:
                pass
            await load_site(server)  # no request to sweep: the clock alone finds the empty shelves
            update = await read_update(call)
            assert update.kind == exceptions_pb2.EXCEPTION_UPDATE_KIND_RAISED
            assert update.exception.rule == "stockout"
            call.cancel()
        sweeps = server._exception_sweeps
        assert sweeps is not None and not sweeps.done()
    finally:
        await server.stop()
    assert sweeps.done() and server._exception_sweeps is None


async def test_a_subscriber_more_than_its_queue_behind_ends_with_resource_exhausted(
    store_section: dict[str, Any],
) -> None:
    clock = ManualClock(T)
    config = config_with_rules(store_section, RULES, DEFAULTS, subscriber_queue_max=2)
    async with CloudServer(config, clock=clock) as server:
        await load_site(server)
        async with aio.insecure_channel(server.target) as channel:
            stub = exceptions_pb2_grpc.ExceptionServiceStub(channel)
            call = stub.Subscribe(exceptions_pb2.SubscribeExceptionsRequest(include_snapshot=True))
            assert (await read_update(call)).kind == exceptions_pb2.EXCEPTION_UPDATE_KIND_SNAPSHOT_DONE
            await server.exceptions.sweep()  # eight exceptions raised in one commit: more than 2 queued
            with pytest.raises(aio.AioRpcError) as caught:
                while True:
                    await read_update(call)
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "resubscribe" in (caught.value.details() or "")
            assert server.exceptions.hub.subscriber_count == 0
