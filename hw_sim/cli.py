"""tallyport-sim: run simulated warehouse devices that speak the real wire protocols."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

from hw_sim.scanner import ScannerSimulator, load_scenario

EPILOG = """\
examples:
  # a handheld scanner on a pseudo-terminal; the gateway config's [[scanner]] port points at --link
  tallyport-sim scanner --scenario deploy/demo/scanner-scenario.toml --truth var/demo/truth.jsonl

  # the same with the link and the number of scans overridden
  tallyport-sim scanner --scenario deploy/demo/scanner-scenario.toml --link /tmp/scanner0 --scans 20
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
    return parser


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
        simulator = ScannerSimulator(scenario, truth)
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
    if options.command == "scanner":
        asyncio.run(_run_scanner(options))
    return 0


if __name__ == "__main__":
    sys.exit(main())
