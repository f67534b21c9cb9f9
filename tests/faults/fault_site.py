"""What every process-level fault run shares: seeds and modes, the site with its knobs, and the count.

A fault run starts the real cloud, the real edge agent and a real producer (the simulated scanner of
`hw_sim`, or events written through the edge's real outbox API before the agent starts) as processes,
injects its fault, then scores the cloud against ground truth: every valid scan and every backlog
event carries an object id that exists once, so

    produced   = ids the producers made            committed  = distinct produced ids the cloud holds
    lost       = produced copies missing            duplicated = stored copies beyond one per produced copy

and every run prints `fault=<name> seed=<n> produced=<n> committed=<n> lost=<n> duplicated=<n>`.

Environment: TALLYPORT_FAULT_SEED overrides a run's seed (to replay a failure); TALLYPORT_FAULT_MODE=long
multiplies the counts by `LONG_MODE_FACTOR` (release runs); the default is the short CI mode;
TALLYPORT_FAULT_LOG_LEVEL=debug makes the agent log every batch and scan (to read a failure's logs).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import grpc.aio
from tallyport.v1 import events_pb2, inventory_pb2, inventory_pb2_grpc

# The e2e helpers (`processes`, `site_processes`) import each other as top-level modules, the way pytest
# puts tests/e2e on sys.path for its own tests; fault tests live in another folder, so do the same here.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "e2e"))

from processes import cloud_events
from site_processes import Site

from edge.clock import SystemClock
from edge.outbox import open_outbox

LONG_MODE_FACTOR = 10
GATEWAY_ID = "gw-e2e"  # the id Site's gateway config gives the agent; FaultSite's default
AGENT_READY = "uplink connected"  # logged by the agent once its outbox is open and the cloud answered
AGENT_STARTED = "agent started"  # logged once the outbox is open (before any device or uplink)
BACKLOG_GTIN = "09501101530003"
# Backlog events have a location of their own, so a test can list the scanner's events apart.
BACKLOG_LOCATION = "urn:tallyport:loc:e2e:backlog"
SCAN_LOCATION = "urn:tallyport:loc:e2e:dock-1"  # the biz_location of Site's read point


def long_mode() -> bool:
    mode = os.environ.get("TALLYPORT_FAULT_MODE", "short").strip() or "short"
    assert mode in ("short", "long"), f"TALLYPORT_FAULT_MODE={mode!r}: expected 'short' (CI) or 'long' (release)"
    return mode == "long"


def scaled(count: int) -> int:
    """`count` in the short CI mode, `LONG_MODE_FACTOR` times it in the long (release) mode."""
    return count * LONG_MODE_FACTOR if long_mode() else count


def fault_seed(default: int) -> int:
    """The run's seed: TALLYPORT_FAULT_SEED when set (replaying a printed failure), else `default`."""
    text = os.environ.get("TALLYPORT_FAULT_SEED", "").strip()
    return int(text) if text else default


def _set_key(text: str, key: str, value: str) -> str:
    """`text` with the first `key = ...` line set to `key = value` (TOML as Site writes it)."""
    changed, replaced = re.subn(rf"^{key} = .*$", f"{key} = {value}", text, count=1, flags=re.MULTILINE)
    assert replaced == 1, f"no {key} in the config"
    return changed


class FaultSite(Site):
    """Site (cloud + gateway + scanner simulator as processes) with the knobs fault runs turn.

    The scanner scans only labels that name one object each (serialised GTINs, Digital Link URIs) plus
    bad labels: a GTIN-only label repeated back to back cannot be told from a resend by a scanner
    protocol without sequence numbers (see edge/pipeline/scan_intake.py), so it has no place in a count.
    """

    def __init__(
        self,
        root: Path,
        *,
        scans: int,
        seed: int,
        scan_interval_ms: int = 0,
        scanner_ack_timeout_ms: int = 300,
        batch_events_max: int = 50,
        uplink_ack_timeout_ms: int = 3000,
        log_level: str = "",
        gateway_id: str = GATEWAY_ID,
    ) -> None:
        super().__init__(root, scans=scans, seed=seed, scan_interval_ms=scan_interval_ms)
        self.uplink_port = self.cloud_port  # a proxy in between changes it with `route_uplink_through`
        self.gateway_id = gateway_id
        config = self.gateway_config.read_text()
        config = _set_key(config, "id", f'"{self.gateway_id}"')  # the first `id =` is [gateway] id
        config = _set_key(config, "batch_events_max", str(batch_events_max))
        config = _set_key(config, "ack_timeout_ms", str(uplink_ack_timeout_ms))
        log_level = log_level or os.environ.get("TALLYPORT_FAULT_LOG_LEVEL", "info")
        config = _set_key(config, "level", f'"{log_level}"')
        self.gateway_config.write_text(config)
        self.scenario.write_text(
            f"""
[scanner]
link = "{self.link}"
ack_nak = true
ack_timeout_ms = {scanner_ack_timeout_ms}
scan_interval_ms = {scan_interval_ms}
noise_probability = 0.05
[[items]]
kind = "serialized"
weight = 6
batch = "B1"
[[items]]
kind = "digital_link"
weight = 2
[[items]]
kind = "invalid"
weight = 1
[run]
scans = {scans}
seed = {seed}
"""
        )
        self.backlog_ids: list[str] = []

    def route_uplink_through(self, port: int) -> None:
        """Point the gateway at `port` (a proxy) instead of the cloud; before the agent starts."""
        self.uplink_port = port
        config = _set_key(self.gateway_config.read_text(), "target", f'"127.0.0.1:{port}"')
        self.gateway_config.write_text(config)

    async def write_backlog(self, count: int, *, chunk: int = 5000) -> float:
        """Commit `count` events through the edge's real outbox API, as if the agent had produced them
        while the cloud was unreachable; the agent must not be running. Returns the seconds it took."""
        started = time.monotonic()
        outbox_path = self.root / "outbox.db"
        start = len(self.backlog_ids)
        async with open_outbox(outbox_path, clock=SystemClock(), rng=random.Random(count)) as outbox:
            for first in range(start, start + count, chunk):
                numbers = range(first, min(first + chunk, start + count))
                await outbox.append_many([backlog_event(n, self.gateway_id) for n in numbers])
        self.backlog_ids.extend(backlog_object_id(n) for n in range(start, start + count))
        return time.monotonic() - started

    async def events(self, biz_location: str = "") -> list[events_pb2.Event]:
        """Every event the cloud holds from this site's gateway (at `biz_location` if given)."""
        return await cloud_events(self.cloud_port, biz_location=biz_location, gateway_id=self.gateway_id)

    def expected_ids(self) -> Counter[str]:
        """Every object id the producers made, with how many copies of it the cloud must hold."""
        truth = self.truth_lines()
        scanned = [str(s["object_id"]) for s in truth if s["valid"] and s["object_id"] and s["outcome"] == "acked"]
        return Counter(scanned + self.backlog_ids)


def backlog_object_id(n: int) -> str:
    return f"https://id.gs1.org/01/{BACKLOG_GTIN}/21/BACKLOG{n:09d}"


def unique_gateway_id() -> str:
    """A gateway id no other run shares: with concurrent test runs on one machine, free_port() can hand
    two runs the same port, and a run must count only its own gateway's events."""
    return f"gw-fault-{uuid.uuid4().hex[:12]}"


def backlog_event(n: int, gateway_id: str = GATEWAY_ID) -> events_pb2.Event:
    """A valid receiving event as the scanner pipeline would make it, for object `backlog_object_id(n)`."""
    event = events_pb2.Event(
        gateway_id=gateway_id,
        type=events_pb2.EVENT_TYPE_OBJECT,
        action=events_pb2.ACTION_ADD,
        biz_step=events_pb2.BIZ_STEP_RECEIVING,
        biz_location=BACKLOG_LOCATION,
        read_point=events_pb2.ReadPoint(id="urn:tallyport:rp:e2e:backlog", device_id="backlog"),
    )
    event.event_time.GetCurrentTime()
    event.objects.append(events_pb2.IdentifiedObject(id=backlog_object_id(n), gtin=BACKLOG_GTIN))
    return event


@dataclass(frozen=True)
class DeliveryCount:
    """Produced against committed, per object id, as the run line prints it."""

    produced: int
    committed: int
    lost: int
    duplicated: int
    unexpected: int  # events in the cloud that no producer made
    lost_examples: tuple[str, ...]
    duplicated_examples: tuple[str, ...]

    def line(self, fault: str, seed: int) -> str:
        return (
            f"fault={fault} seed={seed} produced={self.produced} committed={self.committed} "
            f"lost={self.lost} duplicated={self.duplicated}"
        )


def count_delivery(expected: Counter[str], events: Iterable[events_pb2.Event]) -> DeliveryCount:
    stored: Counter[str] = Counter()
    unexpected = 0
    for event in events:
        ids = [obj.id for obj in event.objects]
        if not ids or any(object_id not in expected for object_id in ids):
            unexpected += 1
        stored.update(ids)
    lost = {i: n - stored[i] for i, n in expected.items() if stored[i] < n}
    duplicated = {i: stored[i] - n for i, n in expected.items() if stored[i] > n}
    return DeliveryCount(
        produced=sum(expected.values()),
        committed=sum(min(n, stored[i]) for i, n in expected.items()),
        lost=sum(lost.values()),
        duplicated=sum(duplicated.values()),
        unexpected=unexpected,
        lost_examples=tuple(sorted(lost)[:5]),
        duplicated_examples=tuple(sorted(duplicated)[:5]),
    )


async def events_stored(port: int, gateway_id: str = GATEWAY_ID) -> int:
    """How many events the cloud says it stored for the gateway (cheap: one ListGateways call)."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = await inventory_pb2_grpc.InventoryServiceStub(channel).ListGateways(
            inventory_pb2.ListGatewaysRequest(), timeout=5
        )
    return sum(g.events_stored for g in reply.gateways if g.gateway_id == gateway_id)


async def settle(site: FaultSite, timeout_s: float) -> DeliveryCount:
    """Wait until the cloud has stored as many events as were produced (or the time is up), then count.

    Polls the cheap per-gateway counter and lists every event only at the end. A run that lost
    events reaches the timeout and is counted as it stands; one that stored too many stops early.
    """
    expected = site.expected_ids()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if await events_stored(site.cloud_port, site.gateway_id) >= sum(expected.values()):
                break
        except grpc.aio.AioRpcError:
            pass  # the cloud is restarting
        await asyncio.sleep(0.1)
    return count_delivery(expected, await site.events())


def assert_exactly_once(fault: str, seed: int, count: DeliveryCount, site: Site) -> None:
    """Print the run line, then require nothing lost, nothing doubled, nothing made up."""
    print(count.line(fault, seed))
    logs = "\n--- edge ---\n" + site.log("edge")[-4000:] + "\n--- cloud ---\n" + site.log("cloud")[-2000:]
    replay = f"replay with TALLYPORT_FAULT_SEED={seed}"
    assert count.produced > 0, f"{fault}: nothing was produced; the run proves nothing"
    assert count.lost == 0, f"{count.line(fault, seed)}; lost e.g. {count.lost_examples}; {replay}{logs}"
    assert count.duplicated == 0, (
        f"{count.line(fault, seed)}; duplicated e.g. {count.duplicated_examples}; {replay}{logs}"
    )
    assert count.unexpected == 0, f"{count.line(fault, seed)}; {count.unexpected} events nobody produced{logs}"
