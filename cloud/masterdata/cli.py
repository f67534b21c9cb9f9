"""`tallyport-cloud masterdata load|list`: master data files into a running server, and what it holds.

    tallyport-cloud masterdata load FILE... [--server HOST:PORT]   # also spelt --target
    tallyport-cloud masterdata list skus|locations|tiers [--limit N] [--json]

`load` parses the files here (CSV or TOML, see `cloud.masterdata.files`), then sends the good rows
through the MasterDataService upserts: customer tiers, then locations parents first, then SKUs,
at most `UPSERT_BATCH_ROWS` per request. Every rejected row, whether the file or the server
refused it, is printed as `FILE:LINE: reason` (with --json: one object per rejection, then a
summary). Exit codes: 0 every row loaded; 1 a row was rejected (the others are loaded) or the
server answered with an error; 2 the server could not be reached (cloud.cli translates
`ServerUnreachableError`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from google.protobuf.message import Message
from grpc import aio
from tallyport.v1 import masterdata_pb2, masterdata_pb2_grpc

from cloud import cli_output
from cloud.cli_rpc import call_server
from cloud.masterdata.files import KINDS, Kind, Record, Rejection, apply_loaded, read_files
from cloud.masterdata.messages import location_message, sku_message, tier_message
from cloud.masterdata.models import CustomerTier, Location, RowRejection, Sku
from cloud.masterdata.service import LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX

__all__ = ["add_parser", "run"]

UPSERT_BATCH_ROWS = 1000
EXIT_OK = 0
EXIT_REJECTED_OR_ERROR = 1
_KIND_WORDS: dict[Kind, str] = {"customer_tier": "customer tiers", "location": "locations", "sku": "SKUs"}


def add_parser(commands: Any, client: argparse.ArgumentParser) -> None:
    """`masterdata` with its `load` and `list` subcommands, on the CLI's `client` options (--server, --json...)."""
    masterdata = commands.add_parser(
        "masterdata",
        help="load master data files into a server, list what it holds",
        description="Master data the exception rules need: SKUs, the location hierarchy, customer tiers.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = masterdata.add_subparsers(dest="masterdata_command", required=True, metavar="ACTION")
    load = actions.add_parser(
        "load",
        parents=[client],
        help="load CSV / TOML files",
        description="Parse the files (the kind comes from the TOML tables or the CSV header) and send the good\n"
        "rows to the server; every rejected row is printed as FILE:LINE: reason.\n"
        "Exit code 1 if any row was rejected (the others are loaded), 0 otherwise.",
        epilog="examples:\n"
        "  tallyport-cloud masterdata load deploy/demo/masterdata.toml --server 127.0.0.1:50151\n"
        "  tallyport-cloud masterdata load deploy/demo/masterdata-csv/*.csv",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    load.add_argument("files", nargs="+", type=Path, metavar="FILE", help=".csv or .toml master data file")
    # --target: the spelling the gateway config uses for the same thing.
    load.add_argument("--target", dest="server", default=argparse.SUPPRESS, metavar="HOST:PORT", help="as --server")
    listing = actions.add_parser(
        "list",
        parents=[client],
        help="list SKUs, locations or customer tiers",
        description="What the server holds, by key.",
        epilog="examples:\n  tallyport-cloud masterdata list skus\n  tallyport-cloud masterdata list locations --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    listing.add_argument("what", choices=["skus", "locations", "tiers"])
    listing.add_argument(
        "--limit",
        type=_limit,
        default=LIST_LIMIT_DEFAULT,
        help=f"at most N rows (default {LIST_LIMIT_DEFAULT}, at most {LIST_LIMIT_MAX})",
    )
    listing.add_argument("--target", dest="server", default=argparse.SUPPRESS, metavar="HOST:PORT", help="as --server")


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 < value <= LIST_LIMIT_MAX:
        raise argparse.ArgumentTypeError(f"expected 1 to {LIST_LIMIT_MAX}, got {text}")
    return value


async def run(args: argparse.Namespace) -> int:
    """Run `masterdata load` or `masterdata list`; print the answer; return the exit code."""

    async def action(channel: aio.Channel) -> int:
        stub = masterdata_pb2_grpc.MasterDataServiceStub(channel)
        return await (_load(stub, args) if args.masterdata_command == "load" else _list(stub, args))

    return await call_server(args.server, action)


async def _load(stub: Any, args: argparse.Namespace) -> int:
    loaded = read_files(args.files)
    sent: dict[Kind, int] = dict.fromkeys(KINDS, 0)

    async def upsert(kind: Kind, records: Sequence[Record]) -> list[RowRejection]:
        response: masterdata_pb2.UpsertResponse = await _UPSERTS[kind](stub, records, args.timeout)
        sent[kind] += response.accepted
        return [RowRejection(row.index, row.reason) for row in response.rejections]

    stored, refused = await apply_loaded(loaded, upsert, UPSERT_BATCH_ROWS)
    rejections: list[Rejection] = loaded.rejected + refused
    if args.json:
        for rejection in rejections:
            origin = rejection.origin
            where = {"file": origin.file, "line": origin.line, "table_index": origin.table_index}
            print(json.dumps({**where, "reason": rejection.reason}, separators=(",", ":")))
        summary: dict[str, int] = {"loaded": stored, "rejected": len(rejections)}
        summary.update({kind: sent[kind] for kind in KINDS})
        print(json.dumps(summary, separators=(",", ":")))
    else:
        for rejection in rejections:
            print(f"rejected {rejection}")
        counts = ", ".join(f"{sent[kind]} {_KIND_WORDS[kind]}" for kind in KINDS)
        print(f"loaded {stored} rows ({counts}) from {len(args.files)} files; rejected {len(rejections)}")
    return EXIT_REJECTED_OR_ERROR if rejections else EXIT_OK


async def _upsert_skus(stub: Any, records: Sequence[Record], timeout_s: float) -> masterdata_pb2.UpsertResponse:
    skus = [sku_message(record) for record in records if isinstance(record, Sku)]
    response: masterdata_pb2.UpsertResponse = await stub.UpsertSkus(
        masterdata_pb2.UpsertSkusRequest(skus=skus), timeout=timeout_s
    )
    return response


async def _upsert_locations(stub: Any, records: Sequence[Record], timeout_s: float) -> masterdata_pb2.UpsertResponse:
    locations = [location_message(record) for record in records if isinstance(record, Location)]
    response: masterdata_pb2.UpsertResponse = await stub.UpsertLocations(
        masterdata_pb2.UpsertLocationsRequest(locations=locations), timeout=timeout_s
    )
    return response


async def _upsert_tiers(stub: Any, records: Sequence[Record], timeout_s: float) -> masterdata_pb2.UpsertResponse:
    tiers = [tier_message(record) for record in records if isinstance(record, CustomerTier)]
    response: masterdata_pb2.UpsertResponse = await stub.UpsertCustomerTiers(
        masterdata_pb2.UpsertCustomerTiersRequest(tiers=tiers), timeout=timeout_s
    )
    return response


_UPSERTS = {"sku": _upsert_skus, "location": _upsert_locations, "customer_tier": _upsert_tiers}


async def _list(stub: Any, args: argparse.Namespace) -> int:
    rows: Sequence[Message]
    if args.what == "skus":
        reply = await stub.ListSkus(masterdata_pb2.ListSkusRequest(limit=args.limit), timeout=args.timeout)
        rows, table = reply.skus, _sku_table(reply.skus)
    elif args.what == "locations":
        reply = await stub.ListLocations(masterdata_pb2.ListLocationsRequest(limit=args.limit), timeout=args.timeout)
        rows, table = reply.locations, _location_table(reply.locations)
    else:
        reply = await stub.ListCustomerTiers(
            masterdata_pb2.ListCustomerTiersRequest(limit=args.limit), timeout=args.timeout
        )
        rows = reply.tiers
        table = cli_output.table(
            ["NAME", "WEIGHT", "DESCRIPTION"],
            [[tier.name, cli_output.format_quantity(tier.weight), tier.description] for tier in reply.tiers],
        )
    lines = cli_output.json_lines(rows) if args.json else (table if rows else [])
    for line in lines:
        print(line)
    if not rows:
        print(f"no {args.what} stored", file=sys.stderr)
    if reply.truncated:
        print(f"more {args.what} than --limit {args.limit}; the rest are not shown", file=sys.stderr)
    return EXIT_OK


def _sku_table(skus: Sequence[masterdata_pb2.Sku]) -> list[str]:
    headers = ["GTIN", "ABC", "LIFECYCLE", "UNIT_COST", "CONDITION", "TIER", "ANNUAL_USAGE", "DESCRIPTION"]
    return cli_output.table(
        headers,
        [
            [
                sku.gtin,
                cli_output.enum_label(masterdata_pb2.AbcClass, sku.abc_class, "ABC_CLASS_").upper(),
                cli_output.enum_label(masterdata_pb2.Lifecycle, sku.lifecycle, "LIFECYCLE_"),
                f"{sku.unit_cost:.2f} {sku.currency}",
                _condition_text(sku) or "-",
                sku.customer_tier or "-",
                cli_output.format_quantity(sku.annual_usage_units),
                sku.description,
            ]
            for sku in skus
        ],
    )


def _condition_text(sku: masterdata_pb2.Sku) -> str:
    if not sku.HasField("condition"):
        return ""
    condition = sku.condition
    bounds = (
        (
            _bound(condition.temperature_min_c, condition.HasField("temperature_min_c")),
            _bound(condition.temperature_max_c, condition.HasField("temperature_max_c")),
            "°C",
        ),
        (
            _bound(condition.humidity_min_pct, condition.HasField("humidity_min_pct")),
            _bound(condition.humidity_max_pct, condition.HasField("humidity_max_pct")),
            "%RH",
        ),
    )
    return ", ".join(f"{low}..{high} {unit}" for low, high, unit in bounds if low or high)


def _bound(value: float, present: bool) -> str:
    return f"{value:g}" if present else ""


def _location_table(locations: Sequence[masterdata_pb2.Location]) -> list[str]:
    return cli_output.table(
        ["LOCATION_ID", "LEVEL", "TYPE", "PARENT", "TIER", "NAME"],
        [
            [
                location.location_id,
                cli_output.enum_label(masterdata_pb2.LocationLevel, location.level, "LOCATION_LEVEL_"),
                location.location_type or "-",
                location.parent_id or "-",
                location.customer_tier or "-",
                location.name,
            ]
            for location in locations
        ],
    )
