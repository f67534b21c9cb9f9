"""tallyport-edge: run the gateway agent, check its config, and look into its outbox and quarantine."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

from google.protobuf.json_format import MessageToDict

from edge.agent import run_agent
from edge.clock import SystemClock
from edge.config import GatewayConfig, load_config, load_modbus_profiles
from edge.errors import ConfigError, OutboxError
from edge.logging_setup import configure_logging
from edge.outbox import open_outbox

EPILOG = """\
examples:
  tallyport-edge check --config firmware_config/gateways/dock-door.toml
  tallyport-edge run --config firmware_config/gateways/dock-door.toml
  tallyport-edge outbox --config firmware_config/gateways/dock-door.toml      # backlog waiting for the cloud
  tallyport-edge quarantine --config firmware_config/gateways/dock-door.toml  # rejected reads and why

The config file is TOML; every key, its default and its meaning are in edge/config.py and in
each driver's sample.toml (edge/drivers/*/sample.toml).
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tallyport-edge",
        description="The Tallyport gateway agent: reads devices, keeps events in a durable outbox and "
        "streams them to the cloud.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--config", type=Path, required=True, help="gateway config TOML file")
        return sub

    run = command("run", "run the agent until SIGTERM/SIGINT")
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="override [log] level")
    command("check", "validate the config file and exit (0 = valid)")
    outbox = command("outbox", "show the outbox: backlog size and the oldest events waiting for the cloud")
    outbox.add_argument("--limit", type=int, default=20, help="events to list (default 20)")
    outbox.add_argument("--json", action="store_true", help="one JSON object per line")
    quarantine = command("quarantine", "list rejected reads with their reason")
    quarantine.add_argument("--limit", type=int, default=50, help="entries to list (default 50)")
    quarantine.add_argument("--json", action="store_true", help="one JSON object per line")
    return parser


def _stamp(unix_ms: int) -> str:
    return datetime.fromtimestamp(unix_ms / 1000, UTC).isoformat(timespec="milliseconds")


async def _run(config: GatewayConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await run_agent(config, stop=stop)


async def _show_outbox(config: GatewayConfig, limit: int, as_json: bool) -> None:
    async with open_outbox(config.outbox.path, clock=SystemClock(), rng=random.Random()) as outbox:
        stats = await outbox.stats()
        events = await outbox.list_events(limit)
    if as_json:
        print(json.dumps({"outbox_id": outbox.outbox_id, **stats.__dict__}))
        for event in events:
            print(json.dumps(MessageToDict(event)))
        return
    oldest = _stamp(stats.oldest_created_at_ms) if stats.events else "-"
    print(f"outbox {config.outbox.path} (id {outbox.outbox_id})")
    print(f"  waiting for the cloud: {stats.events} events, seq {stats.oldest_seq}..{stats.newest_seq}")
    print(f"  oldest waiting since:  {oldest}")
    print(f"  quarantined reads:     {stats.quarantined}")
    print(f"  file size:             {stats.file_bytes} bytes")
    for event in events:
        ids = [obj.id for obj in event.objects] + [f"{q.gtin} x{q.quantity:g}" for q in event.quantities]
        print(f"  {event.seq:>8}  {event.event_time.ToJsonString()}  {event.biz_location}  {' '.join(ids)}")


async def _show_quarantine(config: GatewayConfig, limit: int, as_json: bool) -> None:
    async with open_outbox(config.outbox.path, clock=SystemClock(), rng=random.Random()) as outbox:
        records = await outbox.list_quarantine(limit)
    for record in records:
        if as_json:
            body = {
                **record.__dict__,
                "raw": record.raw.decode("latin-1"),
                "received_at": _stamp(record.received_at_ms),
            }
            print(json.dumps(body))
        else:
            raw = record.raw.decode("latin-1").encode("unicode_escape").decode("ascii")
            print(f"{record.id:>6}  {_stamp(record.received_at_ms)}  {record.source}  {record.reason_code}")
            print(f"        reason: {record.reason}")
            print(f"        raw:    {raw}")
    if not records and not as_json:
        print("quarantine is empty")


def main(argv: list[str] | None = None) -> int:
    options = _parser().parse_args(argv)
    try:
        config = load_config(options.config)
    except ConfigError as exc:
        print(f"tallyport-edge: invalid config:\n{exc}", file=sys.stderr)
        return 2
    if options.command == "check":
        try:
            load_modbus_profiles(config)
        except ConfigError as exc:
            print(f"tallyport-edge: invalid config:\n{exc}", file=sys.stderr)
            return 2
        kinds = {
            "scanners": len(config.scanner),
            "RFID readers": len(config.zebra_reader) + len(config.impinj_reader),
            "portals": len(config.portal),
            "Modbus buses": len(config.modbus_bus),
            "MQTT sensor feeds": len(config.mqtt_sensor),
            "read points": len(config.read_point),
        }
        print(f"{options.config}: valid ({', '.join(f'{count} {kind}' for kind, count in kinds.items())})")
        return 0
    if options.command != "run" and not config.outbox.path.exists():
        print(f"tallyport-edge: no outbox at {config.outbox.path} yet (the agent has not run)", file=sys.stderr)
        return 2
    try:
        if options.command == "run":
            configure_logging(options.log_level or config.log.level, config.log.format)
            asyncio.run(_run(config))
        elif options.command == "outbox":
            asyncio.run(_show_outbox(config, options.limit, options.json))
        elif options.command == "quarantine":
            asyncio.run(_show_quarantine(config, options.limit, options.json))
    except ConfigError as exc:  # found only once running, e.g. a Modbus profile or a fault-injection knob
        print(f"tallyport-edge: invalid config:\n{exc}", file=sys.stderr)
        return 2
    except OutboxError as exc:
        print(f"tallyport-edge: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
