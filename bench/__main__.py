"""Run every benchmark: `python -m bench` (or `./dev bench`). `--quick` for a short smoke run."""

from __future__ import annotations

import argparse
import asyncio

from bench import agent_rss, delivery_latency, edge_ingest, modbus_rtu_polls, rfid_portal_ingest, uplink_throughput


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    options = parser.parse_args()
    asyncio.run(edge_ingest.run(quick=options.quick))
    asyncio.run(rfid_portal_ingest.run(quick=options.quick))
    asyncio.run(uplink_throughput.run(quick=options.quick))
    asyncio.run(modbus_rtu_polls.run(quick=options.quick))
    asyncio.run(delivery_latency.run(quick=options.quick))
    asyncio.run(agent_rss.run(quick=options.quick))


if __name__ == "__main__":
    main()
