"""A whole dock as processes for end-to-end tests: RFID doors, a Modbus line, an MQTT probe, a gateway, the cloud."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

from processes import BIN, Processes, cloud_events
from tallyport.v1 import events_pb2

from edge.epc import decode_epc
from hw_sim.broker import free_port
from hw_sim.scanner.simulator import read_truth


class DockSite(Processes):
    """Two RFID doors, a Modbus line and an MQTT probe feeding one gateway; state and logs under `root`."""

    def __init__(
        self, root: Path, broker: tuple[str, int], passages: int = 10, seed: int = 3, mqtt_protocol: str = "5"
    ) -> None:
        super().__init__(root)
        self.broker, self.passages, self.seed = broker, passages, seed
        self.cloud_port, self.modbus_port = free_port(), free_port()
        self.prefix = f"tallyport-test/{uuid.uuid4().hex[:12]}"
        self.rfid_truth = self.root / "rfid-truth.jsonl"
        self.gateway_config = self.root / "gateway.toml"
        self.modbus_scenario = self.root / "modbus.toml"
        host, port = self.broker
        client = f"gw-site-{uuid.uuid4().hex[:8]}"
        read_points = "\n".join(
            f"""
[[read_point]]
name = "{name}"
id = "urn:tallyport:rp:t:{name}"
biz_location = "urn:tallyport:loc:t:{location}"
biz_step = "{step}"
action = "{action}"
"""
            for name, location, step, action in [
                ("door-a-in", "door-a", "receiving", "ADD"),
                ("door-a-out", "door-a", "departing", "OBSERVE"),
                ("door-b-in", "door-b", "receiving", "ADD"),
                ("door-b-out", "door-b", "departing", "OBSERVE"),
                ("cold-room", "cold-room", "sensor_reporting", "OBSERVE"),
            ]
        )
        portals = "\n".join(
            f"""
[[portal]]
name = "door-{door}"
readers = ["reader-{door}"]
outside_antennas = [1, 2]
inside_antennas = [3, 4]
neighbours = ["door-{other}"]
inbound_read_point = "door-{door}-in"
outbound_read_point = "door-{door}-out"
biz_location = "urn:tallyport:loc:t:door-{door}"
"""
            for door, other in [("a", "b"), ("b", "a")]
        )
        self.gateway_config.write_text(
            f"""
[gateway]
id = "gw-site"
[outbox]
path = "{self.root / "outbox.db"}"
[uplink]
target = "127.0.0.1:{self.cloud_port}"
reconnect_delay_ms_initial = 50
reconnect_delay_ms_max = 500
[sensor_policy]
interval_ms_min = 0
[log]
level = "info"
{read_points}
{portals}
[[zebra_reader]]
name = "reader-a"
broker_host = "{host}"
broker_port = {port}
protocol = "{mqtt_protocol}"
client_id = "{client}-a"
tag_topic = "{self.prefix}/reader-a/data"
event_topic = "{self.prefix}/reader-a/events"
reconnect_delay_ms_initial = 50
reconnect_delay_ms_max = 500
[[impinj_reader]]
name = "reader-b"
mode = "mqtt"
broker_host = "{host}"
broker_port = {port}
protocol = "{mqtt_protocol}"
client_id = "{client}-b"
topic = "{self.prefix}/reader-b/events"
reconnect_delay_ms_initial = 50
reconnect_delay_ms_max = 500
[[mqtt_sensor]]
name = "probes"
broker_host = "{host}"
broker_port = {port}
protocol = "{mqtt_protocol}"
client_id = "{client}-probes"
topic = "{self.prefix}/sensors/+/climate"
read_point = "cold-room"
device_id_field = "dev"
time_field = "ts"
fields = [{{ path = "temp", measurement = "Temperature", uom = "CEL" }}]
[[modbus_bus]]
name = "line-1"
transport = "rtu"
port = "socket://127.0.0.1:{self.modbus_port}"
request_timeout_ms = 300
[[modbus_bus.devices]]
name = "coldroom-th-1"
device_id = 1
profile = "xy-md02"
poll_interval_ms = 500
read_point = "cold-room"
"""
        )
        self.modbus_scenario.write_text(
            f"""
[bus]
transport = "rtu"
host = "127.0.0.1"
port = {self.modbus_port}
update_interval_ms = 200
[[sensor]]
device_id = 1
model = "xy-md02"
temperature_cel = 3.8
humidity_percent = 78.0
[[sensor.step]]
at_ms = 1000
temperature_ramp_cel_per_min = 60.0
"""
        )

    def start_cloud(self) -> None:
        self.start_cloud_on(self.cloud_port)

    def start_edge(self) -> None:
        self.start_edge_with(self.gateway_config)

    def start_devices(self, speedup: float = 1.0) -> None:
        sim = str(BIN / "tallyport-sim")
        broker = f"{self.broker[0]}:{self.broker[1]}"
        self.start("modbus", [sim, "modbus", "--scenario", str(self.modbus_scenario)])
        rfid = [sim, "rfid", "--broker", broker, "--topic-prefix", self.prefix, "--passages", str(self.passages)]
        rfid += ["--seed", str(self.seed), "--speedup", str(speedup), "--truth", str(self.rfid_truth)]
        self.start("rfid", rfid)
        probe = [sim, "mqtt-sensor", "--broker", broker, "--topic", f"{self.prefix}/sensors/{{device_id}}/climate"]
        self.start("probe", [*probe, "--duration-s", "6", "--interval-s", "0.5", "--warm-from-s", "2"])

    def passages_truth(self) -> list[dict[str, object]]:
        return read_truth(self.rfid_truth)

    async def events(self) -> list[events_pb2.Event]:
        return await cloud_events(self.cloud_port)


@dataclass(frozen=True)
class PassageScore:
    right: list[int]
    wrong: list[str]  # one line per miss, with what the cloud holds
    pallet_events: dict[str, int]  # pallet id -> how many OBJECT events name it


def score_passages(truth: list[dict[str, object]], events: list[events_pb2.Event]) -> PassageScore:
    """Door and direction of each passage's pallet, from the cloud's object events."""
    by_pallet: dict[str, list[events_pb2.Event]] = {}
    for event in events:
        if event.type == events_pb2.EVENT_TYPE_OBJECT:
            for obj in event.objects:
                by_pallet.setdefault(obj.id, []).append(event)
    right, wrong, counts = [], [], {}
    for passage in truth:
        pallet = decode_epc(str(passage["sscc_hex"])).canonical_id
        seen = by_pallet.get(pallet, [])
        counts[pallet] = len(seen)
        expected_step = (
            events_pb2.BIZ_STEP_RECEIVING if passage["direction"] == "inbound" else events_pb2.BIZ_STEP_DEPARTING
        )
        location = f"urn:tallyport:loc:t:{passage['door']}"
        if len(seen) == 1 and seen[0].biz_location == location and seen[0].biz_step == expected_step:
            right.append(int(passage["passage"]))  # type: ignore[call-overload]
        else:
            held = [(e.biz_location, events_pb2.BizStep.Name(e.biz_step)) for e in seen]
            wrong.append(f"passage {passage['passage']} {passage['door']} {passage['direction']}: cloud has {held}")
    return PassageScore(right, wrong, counts)
