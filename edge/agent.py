"""The gateway agent: opens the outbox, starts the uplink and one intake per device under a supervisor."""

from __future__ import annotations

import asyncio
import logging
import random
import zoneinfo
from collections.abc import Awaitable, Callable

from edge.clock import Clock, SystemClock
from edge.config import GatewayConfig
from edge.drivers.scanner import ScannerConfig, ScannerDriver
from edge.outbox import Outbox, open_outbox
from edge.pipeline.scan_intake import ScanIntake
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
        unacked_batches_max=section.unacked_batches_max,
        ack_timeout_ms=section.ack_timeout_ms,
        connect_timeout_ms=section.connect_timeout_ms,
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


def build_supervisor(config: GatewayConfig, outbox: Outbox, *, clock: Clock, rng: random.Random) -> Supervisor:
    """Every long-running task of the agent, registered by name."""
    supervisor = Supervisor(rng)
    zone = zoneinfo.ZoneInfo(config.gateway.timezone)
    supervisor.add("uplink", lambda: _uplink(config, outbox, rng).run())
    for scanner in config.scanner:
        supervisor.add(
            f"scanner:{scanner.name}", _scanner_task(config, scanner, outbox, zone=zone, clock=clock, rng=rng)
        )
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
    async with open_outbox(
        config.outbox.path,
        clock=clock,
        rng=rng,
        durability=config.outbox.durability,
        commit_events_max=config.outbox.commit_events_max,
        pending_submissions_max=config.outbox.pending_submissions_max,
        bytes_max=config.outbox.bytes_max,
    ) as outbox:
        stats = await outbox.stats()
        log.info(
            "agent started",
            extra={
                "gateway_id": config.gateway.id,
                "outbox": str(config.outbox.path),
                "backlog_events": stats.events,
                "devices": len(config.scanner),
            },
        )
        supervised = asyncio.create_task(build_supervisor(config, outbox, clock=clock, rng=rng).run())
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({supervised, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (supervised, stopping):
                task.cancel()
            await asyncio.gather(supervised, stopping, return_exceptions=True)
        log.info("agent stopped", extra={"gateway_id": config.gateway.id})
