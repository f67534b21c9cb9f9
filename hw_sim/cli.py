"""tallyport-sim: run simulated warehouse devices that speak the real wire protocols."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

from hw_sim.modbus import run_from_config as run_modbus_scenario
from hw_sim.mqtt_sensors.publisher import ClimateSensorPublisher
from hw_sim.scanner import ScannerSimulator, load_scenario
from hw_sim.site import climate, rfid_portal

EPILOG = """\
examples:
  # a handheld scanner on a pseudo-terminal; the gateway config's [[scanner]] port points at --link
  tallyport-sim scanner --scenario deploy/demo/scanner-scenario.toml --truth var/demo/truth.jsonl

  # the same with the link and the number of scans overridden
  tallyport-sim scanner --scenario deploy/demo/scanner-scenario.toml --link /tmp/scanner0 --scans 20

  # pallets through two dock doors: a Zebra reader at door A, an Impinj reader at door B, over MQTT
  tallyport-sim rfid --broker 127.0.0.1:1883 --topic-prefix site1 --passages 20 --truth var/rfid-truth.jsonl

  # an RS-485 line of Modbus climate sensors (RTU over socket://, TCP or a pty)
  tallyport-sim modbus --scenario hw_sim/modbus/sample-bus.toml

  # a cold-room probe publishing JSON on MQTT, warming past 8 degC after a while
  tallyport-sim mqtt-sensor --broker 127.0.0.1:1883 --topic site1/sensors/{device_id}/climate
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tallyport-sim",
        description="Run simulated devices. Each writes its ground truth so results can be scored.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    scanner = commands.add_parser(
        "scanner",
        help="a serial barcode scanner on a pseudo-terminal, driven by a scenario file",
        description="Create a pty, point --link (or the scenario's link) at it, send the scenario's scans.",
    )
    scanner.add_argument("--scenario", type=Path, required=True, help="scenario TOML file")
    scanner.add_argument("--truth", type=Path, help="append each scan and its outcome to this JSONL file")
    scanner.add_argument("--link", type=Path, help="override the scenario's [scanner] link path")
    scanner.add_argument("--scans", type=int, help="override the scenario's [run] scans (0 = forever)")
    scanner.add_argument("--scan-interval-ms", type=int, help="override the scenario's scan interval")
    scanner.add_argument("--start-after-ms", type=int, default=0, help="wait this long after the port is up")
    rfid = commands.add_parser(
        "rfid",
        help="pallets through two dock doors, read by a Zebra and an Impinj reader publishing to MQTT",
        description="Generate passages (pallet SSCC + case SGTINs, 30%% missed reads, cross-reads from the "
        "neighbouring door) and publish them as the two readers would.",
    )
    rfid.add_argument("--broker", default="127.0.0.1:1883", help="MQTT broker HOST:PORT")
    rfid.add_argument(
        "--topic-prefix", default="tallyport-sim", help="topics: PREFIX/reader-a/data|events, PREFIX/reader-b/events"
    )
    rfid.add_argument("--passages", type=int, default=20)
    rfid.add_argument("--seed", type=int, default=1)
    rfid.add_argument("--gpi", action="store_true", help="photo-eyes at the doors (GPI events)")
    rfid.add_argument("--speedup", type=float, default=1.0, help="replay faster than real time")
    rfid.add_argument("--truth", type=Path, help="write each passage (door, direction, EPCs) to this JSONL file")
    modbus = commands.add_parser("modbus", help="Modbus climate sensors on a simulated RS-485 line or TCP")
    modbus.add_argument(
        "--scenario", type=Path, required=True, help="bus scenario TOML (see hw_sim/modbus/sample-bus.toml)"
    )
    sensor = commands.add_parser("mqtt-sensor", help="a cold-room probe publishing JSON climate readings")
    sensor.add_argument("--broker", default="127.0.0.1:1883", help="MQTT broker HOST:PORT")
    sensor.add_argument("--topic", default="tallyport-sim/sensors/{device_id}/climate", help="topic template")
    sensor.add_argument("--device", default="coldroom-probe-1")
    sensor.add_argument("--duration-s", type=float, default=60.0)
    sensor.add_argument("--interval-s", type=float, default=1.0)
    sensor.add_argument("--warm-from-s", type=float, default=20.0, help="when the door is left open")
    return parser


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


async def _run_rfid(options: argparse.Namespace) -> None:
    run = rfid_portal.plan(options.passages, options.seed, gpi=options.gpi)
    if options.truth is not None:
        rfid_portal.write_truth(run, options.truth)
    host, port = _host_port(options.broker)
    sent = await rfid_portal.publish(run, host, port, options.topic_prefix, speedup=options.speedup)
    logging.getLogger("hw_sim").info("rfid done", extra={"passages": len(run.passages), "messages": sent})


async def _run_mqtt_sensor(options: argparse.Namespace) -> None:
    host, port = _host_port(options.broker)
    script = climate.cold_room_script(options.device, options.duration_s, options.interval_s, options.warm_from_s)
    await ClimateSensorPublisher(host, port, topic_template=options.topic).run(script)


async def _run_modbus(options: argparse.Namespace) -> None:
    await run_modbus_scenario(options.scenario)


async def _run_scanner(options: argparse.Namespace) -> None:
    scenario = load_scenario(options.scenario)
    updates: dict[str, object] = {}
    if options.link is not None:
        updates["link"] = options.link
    if options.scan_interval_ms is not None:
        updates["scan_interval_ms"] = options.scan_interval_ms
    scenario = scenario.model_copy(
        update={
            "scanner": scenario.scanner.model_copy(update=updates),
            "run": scenario.run.model_copy(update={} if options.scans is None else {"scans": options.scans}),
        }
    )
    with contextlib.ExitStack() as stack:
        truth = None
        if options.truth is not None:
            options.truth.parent.mkdir(parents=True, exist_ok=True)
            truth = stack.enter_context(options.truth.open("a", encoding="utf-8"))
        simulator = ScannerSimulator(scenario, truth, start_after_ms=options.start_after_ms)
        task = asyncio.create_task(simulator.run())
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task
        logging.getLogger("hw_sim").info(
            "scanner done",
            extra={
                "sent": simulator.sent_total,
                "acked": simulator.acked_total,
                "naked": simulator.naked_total,
            },
        )


def main(argv: list[str] | None = None) -> int:
    options = _parser().parse_args(argv)
    logging.basicConfig(
        level=options.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    runners = {
        "scanner": _run_scanner,
        "rfid": _run_rfid,
        "mqtt-sensor": _run_mqtt_sensor,
        "modbus": _run_modbus,
    }
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(runners[options.command](options))
    return 0


if __name__ == "__main__":
    sys.exit(main())
