"""`tallyport-cloud`: run the aggregator, or ask a running one about inventory.

Exit codes: 0 done; 1 the server answered with an error (e.g. no such object) or the server
failed to start; 2 bad usage or config, or the server could not be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio
from tallyport.v1 import epcis_pb2, epcis_pb2_grpc, events_pb2, inventory_pb2, inventory_pb2_grpc

from cloud import cli_output
from cloud.cli_rpc import UNREACHABLE_CODES, unreachable
from cloud.config import load_config
from cloud.epcis.client import ExportError, fetch_document, write_document
from cloud.errors import CloudError, ConfigError, ServerUnreachableError
from cloud.exceptions import cli as exceptions_cli
from cloud.logs import configure_logging
from cloud.masterdata import cli as masterdata_cli
from cloud.reconciliation import cli as reconciliation_cli
from cloud.server import serve

__all__ = ["build_parser", "main"]

DEFAULT_SERVER = "127.0.0.1:50051"
RPC_TIMEOUT_S_DEFAULT = 10.0
EVENTS_LIMIT_DEFAULT = 50
EVENTS_LIMIT_MAX = 100_000
EXPORT_PAGE_SIZE = 1000  # the largest page ExportEvents serves: fewest round trips
# Pages of `on-hand`: under gRPC's 4 MiB message limit with locations up to ~700 characters, few round trips.
ON_HAND_PAGE_SIZE = 5000
EXIT_ERROR_ANSWER = 1
EXIT_USAGE_OR_UNREACHABLE = 2

_DESCRIPTION = """\
Tallyport cloud aggregator.

Gateways stream inventory events to it over gRPC; it stores each event once, keeps the
position of every tagged item and the on-hand of every GTIN at every location, and answers
queries. `serve` runs it; the other commands ask a running server (see --server).
"""

_EPILOG = """\
examples:
  tallyport-cloud serve                                  # defaults: 127.0.0.1:50051, var/cloud.db
  tallyport-cloud serve --config cloud.toml --listen 0.0.0.0:50051
  tallyport-cloud on-hand --location urn:tallyport:loc:dc1:dock-4
  tallyport-cloud position https://id.gs1.org/01/09501101530003/21/1001
  tallyport-cloud events --gtin 09501101530003 --limit 20
  tallyport-cloud events --gateway gw-dock4 --json | jq .event_id
  tallyport-cloud quarantine
  tallyport-cloud gateways --server cloud.example:50051
  tallyport-cloud masterdata load deploy/demo/masterdata.toml
  tallyport-cloud masterdata list skus
  tallyport-cloud exceptions list                        # ranked by priority; also show|ack|resolve|shelve|watch
  tallyport-cloud reconcile --cycle-counts deploy/demo/cycle-counts.csv   # or --snapshot FILE --source NAME, --pull
  tallyport-cloud kpis --window 24h                      # accuracy, freshness, exceptions, data quality
  tallyport-cloud epcis-export --since 2025-01-31T00:00:00Z --output events.jsonld

exit codes: 0 ok; 1 the server answered with an error; 2 usage/config error or server unreachable.
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with one subcommand per job."""
    parser = argparse.ArgumentParser(
        prog="tallyport-cloud",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="how much to log on stderr (default: INFO; DEBUG adds a line per batch)",
    )
    client = argparse.ArgumentParser(add_help=False, parents=[common])
    client.add_argument(
        "--server",
        default=DEFAULT_SERVER,
        metavar="HOST:PORT",
        help=f"the server to ask (default: {DEFAULT_SERVER})",
    )
    client.add_argument(
        "--timeout",
        type=float,
        default=RPC_TIMEOUT_S_DEFAULT,
        metavar="SECONDS",
        help=f"give up after this long (default: {RPC_TIMEOUT_S_DEFAULT:g})",
    )
    client.add_argument("--json", action="store_true", help="print one JSON object per line instead of a table")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_serve(commands, common)
    _add_position(commands, client)
    _add_on_hand(commands, client)
    _add_events(commands, client)
    _add_quarantine(commands, client)
    masterdata_cli.add_parser(commands, client)
    exceptions_cli.add_parser(commands, client)
    reconciliation_cli.add_parsers(commands, client)
    _add_epcis_export(commands, client)
    _subcommand(
        commands,
        "gateways",
        client,
        "per-gateway delivery state, gaps and alarms",
        "Each gateway outbox: the highest seq committed, last contact, events stored, and the seq\n"
        "ranges recorded as lost (gaps); then the alarms each gateway last reported (outbox near its\n"
        "cap, shedding, full, salvaged...), active or cleared.",
        ["tallyport-cloud gateways", "tallyport-cloud gateways --json"],
    )
    return parser


def _subcommand(
    commands: Any,
    name: str,
    parent: argparse.ArgumentParser,
    summary: str,
    description: str,
    examples: Sequence[str],
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        parents=[parent],
        help=summary,
        description=description,
        epilog="examples:\n" + "\n".join(f"  {example}" for example in examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def _add_serve(commands: Any, common: argparse.ArgumentParser) -> None:
    serve_parser = _subcommand(
        commands,
        "serve",
        common,
        "run the aggregator",
        "Run the aggregator until SIGTERM or Ctrl-C. Flags override the config file; without a\n"
        "config file the documented defaults apply (see cloud/sample.toml).",
        [
            "tallyport-cloud serve",
            "tallyport-cloud serve --config cloud.toml",
            "tallyport-cloud serve --listen 0.0.0.0:50051 --db /var/lib/tallyport/cloud.db",
            "tallyport-cloud serve --listen 0.0.0.0:50051 --store-dsn postgresql://tallyport@db:5432/tallyport",
            "tallyport-cloud serve --exception-rules deploy/demo/exception-rules.toml",
        ],
    )
    serve_parser.add_argument("--config", type=Path, metavar="FILE", help="cloud.toml to read (optional)")
    serve_parser.add_argument("--listen", metavar="HOST:PORT", help="address to bind (default 127.0.0.1:50051)")
    serve_parser.add_argument("--db", metavar="PATH", help="SQLite file (default var/cloud.db)")
    serve_parser.add_argument(
        "--durability", choices=["full", "normal"], help="full: survive power loss; normal: survive a crash"
    )
    serve_parser.add_argument(
        "--store-dsn",
        metavar="DSN",
        help="store in this PostgreSQL database instead of SQLite (sets [store] backend = postgres), "
        "e.g. postgresql://tallyport@db:5432/tallyport; the password belongs in PGPASSWORD or ~/.pgpass",
    )
    serve_parser.add_argument(
        "--exception-rules",
        metavar="FILE",
        help="exception rules TOML (sets [exceptions] rules_file), e.g. deploy/demo/exception-rules.toml",
    )


def _add_position(commands: Any, client: argparse.ArgumentParser) -> None:
    position = _subcommand(
        commands,
        "position",
        client,
        "where one object is",
        "Where one serialised object is, looked up by canonical id, then EPC URI, then EPC hex.",
        [
            "tallyport-cloud position https://id.gs1.org/01/09501101530003/21/1001",
            "tallyport-cloud position urn:epc:id:sgtin:9501101.053000.1001",
            "tallyport-cloud position 3074257BF7194E4000001A85 --json",
        ],
    )
    position.add_argument("id", help="canonical id (GS1 Digital Link URI), EPC URI or EPC hex")


def _add_on_hand(commands: Any, client: argparse.ArgumentParser) -> None:
    on_hand = _subcommand(
        commands,
        "on-hand",
        client,
        "on-hand quantity per GTIN and location",
        "On-hand quantity per GTIN per location: tagged items present and not in transit, plus\n"
        "the net of class-level quantities (ADD minus DELETE). Rows at zero are not listed.",
        [
            "tallyport-cloud on-hand",
            "tallyport-cloud on-hand --location urn:tallyport:loc:dc1:dock-4",
            "tallyport-cloud on-hand --gtin 09501101530003 --json",
        ],
    )
    on_hand.add_argument("--gtin", default="", help="only this GTIN-14")
    on_hand.add_argument("--location", default="", help="only this biz_location")


def _add_event_filters(parser: argparse.ArgumentParser) -> None:
    """The filters of `events` and `epcis-export`, which ask ListEvents the same question."""
    parser.add_argument("--gateway", default="", help="only from this gateway_id")
    parser.add_argument("--location", default="", help="only at this biz_location")
    parser.add_argument("--gtin", default="", help="only mentioning this GTIN-14")
    parser.add_argument("--object", default="", help="only mentioning this object id")
    parser.add_argument("--biz-step", default="", help="only this business step, e.g. receiving")
    parser.add_argument("--since", default="", help="event_time >= this ISO 8601 time, e.g. 2025-01-31T00:00:00Z")
    parser.add_argument("--until", default="", help="event_time < this ISO 8601 time")


def _add_events(commands: Any, client: argparse.ArgumentParser) -> None:
    events = _subcommand(
        commands,
        "events",
        client,
        "stored events, newest first",
        "Stored events, newest first; filters combine with AND.",
        [
            "tallyport-cloud events --limit 20",
            "tallyport-cloud events --gateway gw-dock4 --biz-step receiving",
            "tallyport-cloud events --gtin 09501101530003 --since 2025-01-31T00:00:00Z --json",
        ],
    )
    _add_event_filters(events)
    events.add_argument(
        "--limit",
        type=_positive_int,
        default=EVENTS_LIMIT_DEFAULT,
        help=f"at most N events (default {EVENTS_LIMIT_DEFAULT})",
    )


def _add_quarantine(commands: Any, client: argparse.ArgumentParser) -> None:
    quarantine = _subcommand(
        commands,
        "quarantine",
        client,
        "events the cloud rejected, with the reason",
        "Events the cloud rejected, newest first, with the reason. The edge was told (Ack.rejects)\n"
        "and moved on; they stay here until someone looks.",
        ["tallyport-cloud quarantine", "tallyport-cloud quarantine --limit 500 --json"],
    )
    quarantine.add_argument(
        "--limit",
        type=_positive_int,
        default=EVENTS_LIMIT_DEFAULT,
        help=f"at most N entries (default {EVENTS_LIMIT_DEFAULT})",
    )


def _add_epcis_export(commands: Any, client: argparse.ArgumentParser) -> None:
    export = _subcommand(
        commands,
        "epcis-export",
        client,
        "export events as one EPCIS 2.0 JSON-LD document",
        "Export stored events as one GS1 EPCIS 2.0 JSON-LD document (EPCISDocument, CBV 2.0 vocabulary),\n"
        "oldest first. Each event's eventID is its CBV 2.0 EPCIS Event Hash ID; the Tallyport event_id,\n"
        "gateway and seq are the extensions tallyport:eventId, tallyport:gatewayId, tallyport:seq.\n"
        "Filters combine with AND, as for `events`. Writes to stdout, or to FILE whole or not at all.",
        [
            "tallyport-cloud epcis-export --output events.jsonld",
            "tallyport-cloud epcis-export --location urn:tallyport:loc:dc1:dock-4 --biz-step receiving",
            "tallyport-cloud epcis-export --since 2025-01-31T00:00:00Z --until 2025-02-01T00:00:00Z > day.jsonld",
        ],
    )
    _add_event_filters(export)
    export.add_argument("--output", type=Path, metavar="FILE", help="write the document here (default: stdout)")
    export.add_argument(
        "--max-events",
        type=_positive_int,
        default=EVENTS_LIMIT_MAX,
        metavar="N",
        help=f"fail instead of exporting more than N events (default and maximum {EVENTS_LIMIT_MAX})",
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 < value <= EVENTS_LIMIT_MAX:
        raise argparse.ArgumentTypeError(f"expected 1 to {EVENTS_LIMIT_MAX}, got {text}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "masterdata":
            return asyncio.run(masterdata_cli.run(args))
        if args.command == "exceptions":
            return exceptions_cli.main_command(args)
        if args.command in reconciliation_cli.COMMANDS:
            return asyncio.run(reconciliation_cli.run(args))
        lines = asyncio.run(_query(args))
    except ConfigError as exc:
        print(f"tallyport-cloud: {exc}", file=sys.stderr)
        return EXIT_USAGE_OR_UNREACHABLE
    except ServerUnreachableError as exc:
        print(f"tallyport-cloud: {exc}", file=sys.stderr)
        return EXIT_USAGE_OR_UNREACHABLE
    except _ErrorAnswer as exc:
        print(f"tallyport-cloud: {exc}", file=sys.stderr)
        return EXIT_ERROR_ANSWER
    for line in lines:
        print(line)
    return 0


def _serve(args: argparse.Namespace) -> int:
    overrides = {
        key: value
        for key, value in {
            ("server", "listen"): args.listen,
            ("store", "path"): args.db,
            ("store", "durability"): args.durability,
            ("store", "dsn"): args.store_dsn,
            ("store", "backend"): None if args.store_dsn is None else "postgres",
            ("exceptions", "rules_file"): args.exception_rules,
        }.items()
        if value is not None
    }
    config = load_config(args.config, overrides)
    try:
        asyncio.run(serve(config))
    except CloudError as exc:  # the store or the listen address, at start
        print(f"tallyport-cloud: {exc}", file=sys.stderr)
        return EXIT_ERROR_ANSWER
    return 0


class _ErrorAnswer(CloudError):
    """The server answered with an error status other than unreachable."""


async def _query(args: argparse.Namespace) -> list[str]:
    async with aio.insecure_channel(args.server) as channel:
        stub: Any = (
            epcis_pb2_grpc.EpcisServiceStub(channel)
            if args.command == "epcis-export"
            else inventory_pb2_grpc.InventoryServiceStub(channel)
        )
        command: Callable[[Any, argparse.Namespace], Awaitable[list[str]]] = _QUERIES[args.command]
        try:
            return await command(stub, args)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in UNREACHABLE_CODES:
                raise unreachable(args.server, exc) from exc
            raise _ErrorAnswer(f"{exc.code().name}: {exc.details()}") from exc


async def _position(stub: Any, args: argparse.Namespace) -> list[str]:
    position = await stub.GetPosition(inventory_pb2.GetPositionRequest(id=args.id), timeout=args.timeout)
    return cli_output.json_lines([position]) if args.json else cli_output.position_lines(position)


async def _on_hand(stub: Any, args: argparse.Namespace) -> list[str]:
    request = inventory_pb2.ListOnHandRequest(gtin=args.gtin, biz_location=args.location, page_size=ON_HAND_PAGE_SIZE)
    rows: list[inventory_pb2.OnHand] = []
    while True:  # every page: the table is all the matching stock, never its first page
        reply = await stub.ListOnHand(request, timeout=args.timeout)
        rows.extend(reply.on_hand)
        if not reply.next_page_token:
            break
        request.page_token = reply.next_page_token
    if args.json:
        return cli_output.json_lines(rows)
    if not rows:
        print("no on-hand stock matches", file=sys.stderr)
        return []
    return cli_output.table(["GTIN", "BIZ_LOCATION", "QUANTITY"], cli_output.on_hand_rows(rows))


_FilteredRequest = TypeVar("_FilteredRequest", inventory_pb2.ListEventsRequest, epcis_pb2.ExportEventsRequest)


def _with_event_filters(request: _FilteredRequest, args: argparse.Namespace) -> _FilteredRequest:
    """`request` with the flags of `_add_event_filters` set (both requests name the filters alike)."""
    request.gateway_id = args.gateway
    request.biz_location = args.location
    request.gtin = args.gtin
    request.object_id = args.object
    request.biz_step = _biz_step(args.biz_step)
    if args.since:
        request.since.CopyFrom(_timestamp(args.since, "--since"))
    if args.until:
        request.until.CopyFrom(_timestamp(args.until, "--until"))
    return request


async def _events(stub: Any, args: argparse.Namespace) -> list[str]:
    request = _with_event_filters(inventory_pb2.ListEventsRequest(), args)
    events: list[events_pb2.Event] = []
    while len(events) < args.limit:
        request.page_size = min(args.limit - len(events), 1000)
        reply = await stub.ListEvents(request, timeout=args.timeout)
        events.extend(reply.events)
        if not reply.next_page_token:
            break
        request.page_token = reply.next_page_token
    if args.json:
        return cli_output.json_lines(events)
    headers = ["EVENT_TIME", "GATEWAY", "SEQ", "BIZ_STEP", "ACTION", "BIZ_LOCATION", "SEEN", "EVENT_ID"]
    return cli_output.table(headers, cli_output.event_rows(events)) if events else []


async def _quarantine(stub: Any, args: argparse.Namespace) -> list[str]:
    request = inventory_pb2.ListQuarantineRequest()
    entries: list[inventory_pb2.QuarantinedEvent] = []
    while len(entries) < args.limit:
        request.page_size = min(args.limit - len(entries), 1000)
        reply = await stub.ListQuarantine(request, timeout=args.timeout)
        entries.extend(reply.entries)
        if not reply.next_page_token:
            break
        request.page_token = reply.next_page_token
    if args.json:
        return cli_output.json_lines(entries)
    headers = ["RECEIVED_AT", "GATEWAY", "SEQ", "EVENT_ID", "REASON"]
    return cli_output.table(headers, cli_output.quarantine_rows(entries)) if entries else []


async def _gateways(stub: Any, args: argparse.Namespace) -> list[str]:
    reply = await stub.ListGateways(inventory_pb2.ListGatewaysRequest(), timeout=args.timeout)
    if args.json:
        return cli_output.json_lines(reply.gateways)
    headers = ["GATEWAY", "OUTBOX", "COMMITTED_SEQ", "LAST_CONTACT", "EVENTS", "CLOCK_OFFSET", "GAPS"]
    lines = cli_output.table(headers, cli_output.gateway_rows(reply.gateways)) if reply.gateways else []
    alarms = cli_output.alarm_rows(reply.gateways)
    if alarms:  # a second table: the alarms each gateway last reported
        lines += ["", *cli_output.table(cli_output.ALARM_HEADERS, alarms)]
    return lines


async def _epcis_export(stub: Any, args: argparse.Namespace) -> list[str]:
    request = _with_event_filters(epcis_pb2.ExportEventsRequest(page_size=EXPORT_PAGE_SIZE), args)
    try:
        document = await fetch_document(stub, request, events_max=args.max_events, timeout_s=args.timeout)
    except ExportError as exc:
        raise _ErrorAnswer(str(exc)) from exc
    if args.output is None:
        return [json.dumps(document, ensure_ascii=False, indent=2)]
    try:
        write_document(document, args.output)
    except OSError as exc:
        raise ConfigError(f"--output {args.output}: cannot write the document: {exc}") from exc
    print(f"wrote {len(document['epcisBody']['eventList'])} events to {args.output}", file=sys.stderr)
    return []


_QUERIES: dict[str, Callable[[Any, argparse.Namespace], Awaitable[list[str]]]] = {
    "position": _position,
    "on-hand": _on_hand,
    "events": _events,
    "quarantine": _quarantine,
    "gateways": _gateways,
    "epcis-export": _epcis_export,
}


def _biz_step(word: str) -> events_pb2.BizStep.ValueType:
    if not word:
        return events_pb2.BIZ_STEP_UNSPECIFIED
    try:
        return events_pb2.BizStep.Value("BIZ_STEP_" + word.upper())
    except ValueError:
        raise ConfigError(f"--biz-step: unknown business step {word!r}, e.g. receiving, shipping") from None


def _timestamp(text: str, flag: str) -> Timestamp:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{flag}: expected an ISO 8601 time like 2025-01-31T12:00:00Z, got {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


if __name__ == "__main__":
    sys.exit(main())
