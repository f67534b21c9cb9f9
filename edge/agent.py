"""The gateway agent: opens the outbox, starts the uplink and one intake per device under a supervisor."""

from __future__ import annotations

import asyncio
import logging
import random
import zoneinfo
from collections.abc import Awaitable, Callable

from edge.alarms import AlarmRegistry
from edge.clock import Clock, SystemClock
from edge.config import GatewayConfig, load_modbus_profiles
from edge.drivers.impinj_reader import ImpinjReaderConfig, ImpinjReaderDriver
from edge.drivers.modbus_bus import DeviceProfile, ModbusBus
from edge.drivers.mqtt_sensor import MqttSensorDriver
from edge.drivers.scanner import ScannerConfig, ScannerDriver
from edge.drivers.zebra_reader import ZebraReaderConfig, ZebraReaderDriver
from edge.outbox import Outbox, open_outbox
from edge.pipeline.portal import PortalEngine
from edge.pipeline.portal_intake import PortalIntake, ReaderDriver
from edge.pipeline.scan_intake import ScanIntake
from edge.pipeline.sensor_events import SensorEventFilter
from edge.pipeline.sensor_intake import SensorIntake
from edge.supervisor import Supervisor
from edge.uplink import Backoff, Uplink, UplinkSettings

log = logging.getLogger(__name__)

AGENT_VERSION = "tallyport-edge/0.1.0"


def _uplink(config: GatewayConfig, outbox: Outbox, rng: random.Random) -> Uplink:
    section = config.uplink
    settings = UplinkSettings(
        target=section.target,
        gateway_id=config.gateway.id,
        agent_version=AGENT_VERSION,
        batch_events_max=section.batch_events_max,
        batch_bytes_max=section.batch_bytes_max,
        unacked_batches_max=section.unacked_batches_max,
        ack_timeout_ms=section.ack_timeout_ms,
        connect_timeout_ms=section.connect_timeout_ms,
        token=section.bearer_token,
    )
    backoff = Backoff(
        delay_ms_initial=section.reconnect_delay_ms_initial,
        delay_ms_max=section.reconnect_delay_ms_max,
        rng=rng,
    )
    return Uplink(outbox, settings, backoff)


def _scanner_task(
    config: GatewayConfig,
    scanner: ScannerConfig,
    outbox: Outbox,
    *,
    zone: zoneinfo.ZoneInfo,
    clock: Clock,
    rng: random.Random,
) -> Callable[[], Awaitable[None]]:
    def start() -> Awaitable[None]:
        intake = ScanIntake(
            ScannerDriver(scanner, rng=rng),
            scanner,
            outbox=outbox,
            gateway_id=config.gateway.id,
            read_point=config.read_point_named(scanner.read_point),
            zone=zone,
            clock=clock,
        )
        return intake.run()

    return start


def _add_rfid_tasks(
    supervisor: Supervisor,
    config: GatewayConfig,
    outbox: Outbox,
    *,
    zone: zoneinfo.ZoneInfo,
    clock: Clock,
    rng: random.Random,
) -> None:
    read_points = {point.name: point for point in config.read_point}
    drivers = {reader.name: "zebra_reader" for reader in config.zebra_reader}
    drivers |= {reader.name: "impinj_reader" for reader in config.impinj_reader}
    intake = PortalIntake(
        lambda: PortalEngine(config.portal, read_points, config.gateway.id, zone), outbox, clock, drivers
    )
    supervisor.add("portal", intake.run)

    def reader_task(reader_config: ZebraReaderConfig | ImpinjReaderConfig) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            driver: ZebraReaderDriver | ImpinjReaderDriver
            if isinstance(reader_config, ZebraReaderConfig):
                driver = ZebraReaderDriver(reader_config, rng=rng)
            else:
                driver = ImpinjReaderDriver(reader_config, rng=rng)
            async with driver:
                reader: ReaderDriver = driver
                await intake.read_from(reader_config.name, reader)

        return run

    for zebra in config.zebra_reader:
        supervisor.add(f"reader:{zebra.name}", reader_task(zebra))
    for impinj in config.impinj_reader:
        supervisor.add(f"reader:{impinj.name}", reader_task(impinj))


def _add_sensor_tasks(
    supervisor: Supervisor,
    config: GatewayConfig,
    outbox: Outbox,
    profiles: dict[str, dict[str, DeviceProfile]],
    *,
    zone: zoneinfo.ZoneInfo,
    clock: Clock,
    rng: random.Random,
) -> None:
    read_points = {point.name: point for point in config.read_point}
    intake = SensorIntake(outbox, SensorEventFilter(config.sensor_policy), gateway_id=config.gateway.id, zone=zone)
    for bus in config.modbus_bus:
        device_points = {device.name: read_points[device.read_point] for device in bus.devices}
        supervisor.add(
            f"modbus:{bus.name}",
            lambda bus=bus, points=device_points: intake.from_modbus(  # type: ignore[misc]
                ModbusBus(bus, profiles[bus.name], rng=rng, clock=clock), points
            ),
        )
    for sensor in config.mqtt_sensor:
        supervisor.add(
            f"mqtt_sensor:{sensor.name}",
            lambda sensor=sensor: intake.from_mqtt(  # type: ignore[misc]
                MqttSensorDriver(sensor, rng=rng), read_points[sensor.read_point]
            ),
        )


def build_supervisor(
    config: GatewayConfig,
    outbox: Outbox,
    *,
    clock: Clock,
    rng: random.Random,
    modbus_profiles: dict[str, dict[str, DeviceProfile]] | None = None,
) -> Supervisor:
    """Every long-running task of the agent, registered by name."""
    supervisor = Supervisor(rng)
    zone = zoneinfo.ZoneInfo(config.gateway.timezone)
    supervisor.add("uplink", lambda: _uplink(config, outbox, rng).run())
    for scanner in config.scanner:
        supervisor.add(
            f"scanner:{scanner.name}", _scanner_task(config, scanner, outbox, zone=zone, clock=clock, rng=rng)
        )
    if config.portal:
        _add_rfid_tasks(supervisor, config, outbox, zone=zone, clock=clock, rng=rng)
    if config.modbus_bus or config.mqtt_sensor:
        profiles = modbus_profiles if modbus_profiles is not None else load_modbus_profiles(config)
        _add_sensor_tasks(supervisor, config, outbox, profiles, zone=zone, clock=clock, rng=rng)
    return supervisor


async def run_agent(
    config: GatewayConfig,
    *,
    clock: Clock | None = None,
    rng: random.Random | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run the agent until `stop` is set (or the task is cancelled); commits everything queued on the way out."""
    clock = clock or SystemClock()
    rng = rng or random.Random()
    stop = stop or asyncio.Event()
    modbus_profiles = load_modbus_profiles(config)  # a bad profile stops the start, before any device opens
    async with open_outbox(
        config.outbox.path,
        clock=clock,
        rng=rng,
        durability=config.outbox.durability,
        commit_events_max=config.outbox.commit_events_max,
        pending_submissions_max=config.outbox.pending_submissions_max,
        bytes_max=config.outbox.bytes_max,
        # The agent's one alarm registry: the outbox raises into it, the uplink sends it (`outbox.alarms`).
        alarms=AlarmRegistry(clock),
    ) as outbox:
        stats = await outbox.stats()
        log.info(
            "agent started",
            extra={
                "gateway_id": config.gateway.id,
                "outbox": str(config.outbox.path),
                "backlog_events": stats.events,
                "devices": len(config.device_names()),
            },
        )
        supervisor = build_supervisor(config, outbox, clock=clock, rng=rng, modbus_profiles=modbus_profiles)
        supervised = asyncio.create_task(supervisor.run())
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({supervised, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (supervised, stopping):
                task.cancel()
            await asyncio.gather(supervised, stopping, return_exceptions=True)
        log.info("agent stopped", extra={"gateway_id": config.gateway.id})
