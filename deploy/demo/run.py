"""The all-in-one local demo: a simulated dock door end to end on the embedded defaults.

Starts the cloud aggregator, the gateway agent and the simulated devices of DC1 as separate processes
(the same commands you would run by hand): a handheld scanner on a pseudo-terminal at dock 4, pallets
through dock doors A and B read by a Zebra and an Impinj reader over MQTT, a Modbus RTU line of climate
sensors and an MQTT cold-room probe. It follows every scan from the wire until the cloud can answer for
it and prints how long that took; scores every pallet passage (door and direction) against the
simulator's ground truth; shows the climate readings that reached the cloud, the on-hand table and the
edge quarantine; lists the live exceptions ranked by priority (a dwell in dock staging and chilled goods
warming on the ambient dock among them) and acknowledges one; reconciles a cycle count and prints the
accuracy KPIs; and ends with a check that every valid scan is in the cloud exactly once.

    python deploy/demo/run.py [--scans N] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from tallyport.v1 import events_pb2, inventory_pb2, inventory_pb2_grpc

from edge.epc import decode_epc
from hw_sim.broker import Broker, find_or_start_broker, start_broker
from hw_sim.scanner.simulator import read_truth

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "deploy" / "demo"
VAR = ROOT / "var" / "demo"
CLOUD_ADDRESS = "127.0.0.1:50151"
DOCK_4 = "urn:tallyport:loc:dc1:dock-4"  # where the demo's scanner reads (deploy/demo/gateway.toml)
BIN = Path(sys.executable).parent
# How long the demo waits for the exception rules to raise a dwell and an excursion.
RULES_WAIT_S = 60


def _start(name: str, args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    print(f"  starting {name}: {' '.join(args)}")
    with log_path.open("wb") as log:  # the child keeps its own copy of the fd
        return subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


async def _visible(stub: inventory_pb2_grpc.InventoryServiceStub, scan: dict[str, object], needed: int) -> bool:
    """Whether the cloud answers for this scan: its object's position, or the n-th event of its GTIN."""
    if scan["object_id"]:
        try:
            await stub.GetPosition(inventory_pb2.GetPositionRequest(id=str(scan["object_id"])), timeout=2)
            return True
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return False
            raise
    page = await stub.ListEvents(inventory_pb2.ListEventsRequest(page_size=1000, gtin=str(scan["gtin"])), timeout=2)
    return len(page.events) >= needed


async def _follow(truth_path: Path, scans: int, simulator: subprocess.Popen[bytes]) -> list[float]:
    """Print each scan as it becomes queryable in the cloud; return the latencies in ms."""
    latencies: list[float] = []
    followed = 0
    async with grpc.aio.insecure_channel(CLOUD_ADDRESS) as channel:
        stub = inventory_pb2_grpc.InventoryServiceStub(channel)
        pending: list[dict[str, object]] = []
        gtin_scans: dict[str, int] = {}
        needed: dict[int, int] = {}
        while followed < scans or pending:
            truth = read_truth(truth_path)
            for scan in truth[followed:]:
                if scan["valid"] and not scan["object_id"]:
                    gtin_scans[str(scan["gtin"])] = gtin_scans.get(str(scan["gtin"]), 0) + 1
                    needed[int(scan["n"])] = gtin_scans[str(scan["gtin"])]  # type: ignore[call-overload]
            pending += truth[followed:]
            followed = len(truth)
            for scan in list(pending):
                sent_ms = float(scan["sent_unix_ms"])  # type: ignore[arg-type]
                waited_ms = time.time() * 1000 - sent_ms
                if not scan["valid"]:
                    print(
                        f"  scan {scan['n']:>3}  {scan['symbology']}{scan['data']!s:<44} rejected at the edge "
                        f"(NAK to the scanner, kept in the quarantine)"
                    )
                    pending.remove(scan)
                elif await _visible(stub, scan, needed.get(int(scan["n"]), 1)):  # type: ignore[call-overload]
                    latencies.append(waited_ms)
                    what = scan["object_id"] or f"GTIN {scan['gtin']} x1"
                    print(f"  scan {scan['n']:>3}  {what!s:<70} in the cloud after {waited_ms:6.0f} ms")
                    pending.remove(scan)
                elif waited_ms > 10_000:
                    print(f"  scan {scan['n']:>3}  NOT in the cloud after 10 s: {scan}")
                    pending.remove(scan)
            if simulator.poll() is not None and followed == len(read_truth(truth_path)) and not pending:
                break
            await asyncio.sleep(0.02)
    return latencies


def _cli(*args: str) -> str:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=False).stdout


def _gateway_config(broker: Broker) -> Path:
    """The demo gateway config, pointed at the broker we found or started."""
    text = (DEMO / "gateway.toml").read_text()
    # amqtt speaks MQTT 3.1.1 only; the drivers default to MQTT 5.
    settings = f"broker_port = {broker.port}" + ('\nprotocol = "3.1.1"' if broker.kind == "amqtt" else "")
    text = text.replace("broker_port = 1883", settings)
    path = VAR / "gateway.toml"
    path.write_text(text)
    return path


async def _score_passages(truth_path: Path) -> tuple[int, int]:
    """(passages whose pallet the cloud places at the right door in the right direction, passages)."""
    passages = read_truth(truth_path)
    correct = 0
    async with grpc.aio.insecure_channel(CLOUD_ADDRESS) as channel:
        stub = inventory_pb2_grpc.InventoryServiceStub(channel)
        for passage in passages:
            pallet = decode_epc(str(passage["sscc_hex"])).canonical_id
            expected_step = (
                events_pb2.BIZ_STEP_RECEIVING if passage["direction"] == "inbound" else events_pb2.BIZ_STEP_DEPARTING
            )
            try:
                position = await stub.GetPosition(inventory_pb2.GetPositionRequest(id=pallet), timeout=2)
            except grpc.aio.AioRpcError:
                where = f"{passage['door']}  {passage['direction']:<8}"
                print(f"  passage {passage['passage']:>2}  {where}  pallet {pallet}: not in the cloud")
                continue
            ok = position.biz_location.endswith(str(passage["door"])) and position.biz_step == expected_step
            correct += ok
            step = events_pb2.BizStep.Name(position.biz_step).removeprefix("BIZ_STEP_").lower()
            print(
                f"  passage {passage['passage']:>2}  {passage['door']}  {passage['direction']:<8}  "
                f"cloud: {position.biz_location.rsplit(':', 1)[-1]} {step:<10} {'ok' if ok else 'WRONG'}"
            )
    return correct, len(passages)


async def _climate_summary() -> None:
    async with grpc.aio.insecure_channel(CLOUD_ADDRESS) as channel:
        stub = inventory_pb2_grpc.InventoryServiceStub(channel)
        page = await stub.ListEvents(
            inventory_pb2.ListEventsRequest(page_size=1000, biz_step=events_pb2.BIZ_STEP_SENSOR_REPORTING), timeout=5
        )
    latest: dict[tuple[str, str], tuple[str, float, str]] = {}
    counts: dict[str, int] = {}
    for event in page.events:  # newest first
        for report in event.sensor_reports:
            counts[report.device_id] = counts.get(report.device_id, 0) + 1
            latest.setdefault(
                (report.device_id, report.type), (event.event_time.ToJsonString(), report.value, report.uom)
            )
    for (device, kind), (when, value, uom) in sorted(latest.items()):
        print(f"  {device:<20} {kind:<17} {value:>7.1f} {uom:<4} at {when}  ({counts[device]} events)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scans", type=int, default=40, help="scans the simulated scanner sends (default 40)")
    parser.add_argument("--passages", type=int, default=12, help="pallets through the RFID doors (default 12)")
    parser.add_argument(
        "--amqtt", action="store_true", help="run on a pure-Python amqtt broker of its own (as on a bare machine)"
    )
    parser.add_argument("--keep", action="store_true", help="keep var/demo from the last run (default: start clean)")
    options = parser.parse_args()
    if not options.keep and VAR.exists():
        shutil.rmtree(VAR)
    (VAR / "dev").mkdir(parents=True, exist_ok=True)
    truth = VAR / "truth.jsonl"
    rfid_truth = VAR / "rfid-truth.jsonl"
    print("Tallyport demo: DC1 with a scanner at dock 4, RFID portals at doors A and B, climate sensors on")
    print("Modbus RTU and MQTT; one gateway agent; the cloud on its embedded SQLite store.\n")
    log = VAR / "mqtt-broker.log"
    broker = start_broker(log, prefer_amqtt=True) if options.amqtt else find_or_start_broker(log)
    print(f"  MQTT broker: {broker.kind} on {broker.host}:{broker.port}")
    gateway_config = _gateway_config(broker)
    sim = str(BIN / "tallyport-sim")
    broker_address = f"{broker.host}:{broker.port}"
    # deploy/demo/cloud.toml: the store in var/demo, DC1's master data, the demo's exception rules.
    cloud = [str(BIN / "tallyport-cloud"), "serve", "--config", str(DEMO / "cloud.toml")]
    processes = [_start("cloud", cloud, VAR / "cloud.log")]
    try:
        modbus = [sim, "modbus", "--scenario", str(DEMO / "modbus-bus.toml")]
        processes.append(_start("Modbus sensor line", modbus, VAR / "sim-modbus.log"))
        scanner = [sim, "scanner", "--scenario", str(DEMO / "scanner-scenario.toml"), "--truth", str(truth)]
        # The operator starts scanning once the gateway is up: the scanner's first scan waits 2 s.
        scanner += ["--scans", str(options.scans), "--start-after-ms", "2000"]
        processes.append(_start("scanner", scanner, VAR / "sim-scanner.log"))
        edge = [str(BIN / "tallyport-edge"), "run", "--config", str(gateway_config)]
        processes.append(_start("gateway agent", edge, VAR / "edge.log"))
        time.sleep(1.5)  # let the agent subscribe before the readers publish
        rfid = [sim, "rfid", "--broker", broker_address, "--topic-prefix", "tallyport-demo"]
        rfid += ["--passages", str(options.passages), "--truth", str(rfid_truth)]
        processes.append(_start("RFID readers", rfid, VAR / "sim-rfid.log"))
        probe = [
            sim,
            "mqtt-sensor",
            "--broker",
            broker_address,
            "--topic",
            "tallyport-demo/sensors/{device_id}/climate",
        ]
        processes.append(
            _start(
                "MQTT cold-room probe",
                [*probe, "--duration-s", "40", "--warm-from-s", "15"],
                VAR / "sim-mqtt-sensor.log",
            )
        )
        print("\nFollowing each scan from the scanner's wire to a query answered by the cloud:\n")
        latencies = asyncio.run(_follow(truth, options.scans, processes[2]))
        print()
        if latencies:
            ordered = sorted(latencies)
            p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
            print(
                f"scan → queryable in the cloud: p50 {statistics.median(ordered):.0f} ms, p99 {p99:.0f} ms, "
                f"max {ordered[-1]:.0f} ms over {len(ordered)} scans\n"
            )
        print("Pallets through the RFID doors (waiting for the readers to finish):")
        rfid = processes[4]
        try:
            rfid.wait(timeout=180)
        except subprocess.TimeoutExpired:
            print("  the RFID simulator did not finish in 180 s")
        time.sleep(4)  # the last passes close after the portals' idle time, then travel to the cloud
        correct, total = asyncio.run(_score_passages(rfid_truth))
        print(f"  door and direction right for {correct} of {total} passages\n")
        print("Climate readings in the cloud (after the edge's deadband):")
        asyncio.run(_climate_summary())
        print()
        server = ["--server", CLOUD_ADDRESS]
        print("On hand in the cloud (tallyport-cloud on-hand):")
        print(_cli(str(BIN / "tallyport-cloud"), "on-hand", *server))
        print("Edge quarantine (tallyport-edge quarantine):")
        print(_cli(str(BIN / "tallyport-edge"), "quarantine", "--config", str(gateway_config), "--limit", "12"))
        exceptions_shown = _show_exceptions()
        _show_reconciliation()
        scans_ok = _score(truth)
        return scans_ok if exceptions_shown else 1
    finally:
        for process in reversed(processes):
            _stop(process)
        broker.stop()
        print(f"logs and databases are in {VAR.relative_to(ROOT)}/")


def _exceptions_json(*filters: str) -> list[dict[str, Any]]:
    lines = _cli(str(BIN / "tallyport-cloud"), "exceptions", "list", "--server", CLOUD_ADDRESS, "--json", *filters)
    return [json.loads(line) for line in lines.splitlines() if line.strip()]


def _show_exceptions() -> bool:
    """Print the live exceptions, ranked; acknowledge the top excursion. Whether dwell and excursion showed up."""
    cloud = str(BIN / "tallyport-cloud")
    server = ["--server", CLOUD_ADDRESS]
    # The rules run as events arrive and on a 2 s sweep; an excursion needs 30 s out of range, a dwell 20 s.
    deadline = time.monotonic() + RULES_WAIT_S
    wanted = ("excursion", "dwell")
    while time.monotonic() < deadline and not all(_exceptions_json("--rule", rule) for rule in wanted):
        time.sleep(1)
    print("Live exceptions, highest priority first (tallyport-cloud exceptions list):")
    print(_cli(cloud, "exceptions", "list", *server, "--limit", "25"))
    raised = {rule: _exceptions_json("--rule", rule) for rule in wanted}
    for rule in wanted:
        print(f"  {rule}: {len(raised[rule])} raised" if raised[rule] else f"  {rule}: NOT raised")
    if raised["excursion"]:
        top = raised["excursion"][0]["exception_id"]
        reason = "chilled cases moved to the cold room"
        _cli(cloud, "exceptions", "ack", str(top), *server, "--actor", "demo-operator", "--reason", reason)
        print(f"\nThe operator acknowledges the top excursion (tallyport-cloud exceptions ack {top}):")
        print(_cli(cloud, "exceptions", "show", str(top), *server))
    return all(raised.values())


def _show_reconciliation() -> None:
    """Reconcile the demo's cycle counts against the cloud's on-hand, then print the KPIs."""
    cloud = str(BIN / "tallyport-cloud")
    server = ["--server", CLOUD_ADDRESS]
    counts = DEMO / "cycle-counts.csv"
    where = counts.relative_to(ROOT)
    print(f"Reconciliation against a cycle count (tallyport-cloud reconcile --cycle-counts {where}):")
    print(_cli(cloud, "reconcile", "--cycle-counts", str(counts), *server))
    print("Accuracy, freshness and data-quality KPIs (tallyport-cloud kpis):")
    print(_cli(cloud, "kpis", *server))


def _score(truth_path: Path) -> int:
    """Every valid scan in the cloud exactly once: compare the simulator's truth with the cloud's events."""
    scans = read_truth(truth_path)
    expected_objects = sorted(str(s["object_id"]) for s in scans if s["valid"] and s["object_id"])
    expected_quantity = sum(float(s["quantity"]) for s in scans if s["valid"] and not s["object_id"])  # type: ignore[arg-type]
    lines = _cli(
        str(BIN / "tallyport-cloud"),
        "events",
        "--server",
        CLOUD_ADDRESS,
        "--location",
        DOCK_4,
        "--limit",
        "100000",
        "--json",
    )
    events = [json.loads(line) for line in lines.splitlines() if line.strip()]
    stored_objects = sorted(obj["id"] for event in events for obj in event.get("objects", []))
    stored_quantity = sum(q.get("quantity", 0) for event in events for q in event.get("quantities", []))
    ok = stored_objects == expected_objects and stored_quantity == expected_quantity
    print(
        f"scanned: {len(scans)} ({len(expected_objects)} serialised, {expected_quantity:g} trade items, "
        f"{sum(1 for s in scans if not s['valid'])} bad labels)"
    )
    print(
        f"in the cloud: {len(stored_objects)} serialised objects, {stored_quantity:g} trade items "
        f"-> {'every valid scan exactly once' if ok else 'MISMATCH'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
