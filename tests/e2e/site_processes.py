"""Run the three Tallyport programs as real processes for end-to-end tests, and count what reached the cloud."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import grpc.aio
from processes import BIN, Processes, cloud_events

from hw_sim.broker import free_port
from hw_sim.scanner.simulator import read_truth


class Site(Processes):
    """One gateway, one simulated scanner and one cloud, each a subprocess, all state under `root`."""

    def __init__(self, root: Path, scans: int, seed: int = 1, scan_interval_ms: int = 40) -> None:
        super().__init__(root)
        self.scans, self.seed, self.scan_interval_ms = scans, seed, scan_interval_ms
        self.cloud_port = free_port()
        self.link = self.root / "dev" / "scanner0"
        self.truth = self.root / "truth.jsonl"
        self.gateway_config = self.root / "gateway.toml"
        self.scenario = self.root / "scenario.toml"
        (self.root / "dev").mkdir(parents=True, exist_ok=True)
        self.gateway_config.write_text(
            f"""
[gateway]
id = "gw-e2e"
[outbox]
path = "{self.root / "outbox.db"}"
[uplink]
target = "127.0.0.1:{self.cloud_port}"
batch_events_max = 50
reconnect_delay_ms_initial = 50
reconnect_delay_ms_max = 500
ack_timeout_ms = 3000
[log]
level = "info"
[[read_point]]
name = "dock-1"
id = "urn:tallyport:rp:e2e:dock-1"
biz_location = "urn:tallyport:loc:e2e:dock-1"
biz_step = "receiving"
action = "ADD"
[[scanner]]
name = "scanner0"
port = "{self.link}"
read_point = "dock-1"
ack_nak = true
reconnect_delay_ms_initial = 20
reconnect_delay_ms_max = 200
"""
        )
        self.scenario.write_text(
            f"""
[scanner]
link = "{self.link}"
ack_nak = true
ack_timeout_ms = 1000
scan_interval_ms = {self.scan_interval_ms}
noise_probability = 0.05
[[items]]
kind = "serialized"
weight = 5
batch = "B1"
[[items]]
kind = "gtin"
gtin = "05901234123457"
weight = 2
[[items]]
kind = "sscc"
[[items]]
kind = "digital_link"
[[items]]
kind = "invalid"
[run]
scans = {self.scans}
seed = {self.seed}
"""
        )

    def start_cloud(self) -> None:
        self.start_cloud_on(self.cloud_port)

    def start_edge(self) -> None:
        self.start_edge_with(self.gateway_config)

    def start_simulator(self) -> None:
        scenario = ["--scenario", str(self.scenario), "--truth", str(self.truth)]
        self.start("sim", [str(BIN / "tallyport-sim"), "scanner", *scenario])

    async def wait_for_link(self, timeout_s: float = 10) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.link.exists():
            assert time.monotonic() < deadline, "simulator never created its pty link\n" + self.log("sim")
            await asyncio.sleep(0.02)

    def truth_lines(self) -> list[dict[str, object]]:
        return read_truth(self.truth)

    async def wait_for_simulator(self, timeout_s: float) -> None:
        await self.wait_for("sim", timeout_s)


@dataclass(frozen=True)
class Tally:
    """What the simulator scanned against what the cloud stored."""

    expected_objects: list[str]
    stored_objects: list[str]
    expected_quantity: float
    stored_quantity: float
    stored_events: int
    rejected_scans: int

    @property
    def lost(self) -> list[str]:
        return sorted(set(self.expected_objects) - set(self.stored_objects))

    @property
    def duplicated(self) -> list[str]:
        return sorted({o for o in self.stored_objects if self.stored_objects.count(o) > 1})

    def summary(self) -> str:
        return (
            f"produced {len(self.expected_objects)} objects + {self.expected_quantity:g} items, "
            f"committed {len(set(self.stored_objects))} objects + {self.stored_quantity:g} items, "
            f"lost {len(self.lost)}, duplicated {len(self.duplicated)}, rejected scans {self.rejected_scans}"
        )


async def tally(site: Site) -> Tally:
    truth = site.truth_lines()
    events = await cloud_events(site.cloud_port)
    return Tally(
        expected_objects=sorted(str(s["object_id"]) for s in truth if s["valid"] and s["object_id"]),
        stored_objects=sorted(obj.id for event in events for obj in event.objects),
        expected_quantity=sum(float(s["quantity"]) for s in truth if s["valid"] and not s["object_id"]),  # type: ignore[arg-type]
        stored_quantity=sum(q.quantity for event in events for q in event.quantities),
        stored_events=len(events),
        rejected_scans=sum(1 for s in truth if not s["valid"]),
    )


async def wait_until_settled(site: Site, timeout_s: float) -> Tally:
    """Poll the cloud until it holds every valid scan (or the time is up); return the last count."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = await tally(site)
        except grpc.aio.AioRpcError:
            result = None
        if result is not None and not result.lost and result.stored_quantity >= result.expected_quantity:
            return result
        if time.monotonic() > deadline:
            assert result is not None, "cloud unreachable\n" + site.log("cloud")
            return result
        await asyncio.sleep(0.1)
