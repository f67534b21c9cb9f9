"""`tallyport-cloud exceptions list|show|ack|resolve|shelve|watch`: the exception queue from a shell.

    tallyport-cloud exceptions list [--state open ...] [--rule R] [--location L] [--gtin G] [--owner ROLE]
                                    [--min-severity major] [--limit N] [--json]
    tallyport-cloud exceptions show ID [--json]
    tallyport-cloud exceptions ack ID [--actor NAME] [--reason TEXT]
    tallyport-cloud exceptions resolve ID [--actor NAME] [--reason TEXT]
    tallyport-cloud exceptions shelve ID --for 30m [--actor NAME] [--reason TEXT]
    tallyport-cloud exceptions watch [--snapshot] [--count N] [--json]

`list` prints the queue ranked by priority: PRIORITY, SEVERITY, RULE, SUBJECT, LOCATION, OWNER,
DUE (relative: "in 12m", "overdue 3m"), STATE, AGE, ID. Exit codes: 0 done; 1 the server answered
with an error (unknown id, a transition the state does not allow); 2 bad usage or the server
could not be reached (cloud.cli translates `ServerUnreachableError`).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import re
import sys
import time
from collections.abc import Sequence
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio
from tallyport.v1 import exceptions_pb2, exceptions_pb2_grpc

from cloud import cli_output
from cloud.cli_rpc import call_server
from cloud.exceptions.models import SEVERITIES, STATES

__all__ = ["add_parser", "format_duration", "main_command", "parse_duration", "run"]

EXIT_OK = 0
LIST_LIMIT_DEFAULT = 50
LIST_LIMIT_MAX = 100_000
PAGE_SIZE_MAX = 1000
_DURATION = re.compile(r"^(?P<number>[0-9]+(?:\.[0-9]+)?)(?P<unit>s|m|h|d)?$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
LIST_HEADERS = ["PRIORITY", "SEVERITY", "RULE", "SUBJECT", "LOCATION", "OWNER", "DUE", "STATE", "AGE", "ID"]
SUBJECT_WIDTH_MAX = 48


def parse_duration(text: str) -> int:
    """'90' or '90s', '30m', '2h', '1d' as whole seconds (argparse type)."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"expected a duration like 90s, 30m, 2h or 1d, got {text!r}")
    seconds = round(float(match["number"]) * _UNIT_S[match["unit"] or "s"])
    if not 0 < seconds <= 2**32 - 1:
        raise argparse.ArgumentTypeError(f"expected a duration above 0 s, got {text!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """A short human duration: 45s, 12m, 3h05m, 2d04h."""
    seconds = abs(int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86_400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86_400}d{seconds % 86_400 // 3600:02d}h"


def _word(enum: Any, number: int, prefix: str) -> str:
    return str(enum.Name(number)).removeprefix(prefix).lower() if number else "-"


def _seconds(stamp: Timestamp) -> float:
    return stamp.seconds + stamp.nanos / 1e9


def _due(exception: exceptions_pb2.InventoryException, now_s: float) -> str:
    if exception.state not in (exceptions_pb2.EXCEPTION_STATE_OPEN, exceptions_pb2.EXCEPTION_STATE_CLEARED):
        return "-"  # only an unacknowledged exception is waiting for a response
    left_s = _seconds(exception.response_due) - now_s
    return f"in {format_duration(left_s)}" if left_s >= 0 else f"overdue {format_duration(left_s)}"


def _short(text: str, width: int = SUBJECT_WIDTH_MAX) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1) :]


def list_rows(exceptions: Sequence[exceptions_pb2.InventoryException], now_s: float) -> list[list[str]]:
    """The `list` table rows, in the order given (the server's priority order)."""
    return [
        [
            f"{exception.priority:,.0f}",
            _word(exceptions_pb2.ExceptionSeverity, exception.severity, "EXCEPTION_SEVERITY_"),
            exception.rule,
            _short(exception.subject),
            _short(exception.location) or "-",
            exception.owner_role + (f" (L{exception.escalation_level})" if exception.escalation_level else ""),
            _due(exception, now_s),
            _word(exceptions_pb2.ExceptionState, exception.state, "EXCEPTION_STATE_"),
            format_duration(now_s - _seconds(exception.raised_at)),
            exception.exception_id,
        ]
        for exception in exceptions
    ]


def add_parser(commands: Any, client: argparse.ArgumentParser) -> None:
    """`exceptions` with its actions, on the CLI's `client` options (--server, --timeout, --json)."""
    exceptions = commands.add_parser(
        "exceptions",
        help="the exception queue: list, show, ack, resolve, shelve, watch",
        description="Exceptions the rules raised (stockout, excess, dwell, excursion, unexpected movement,\n"
        "stale feed, seq gap, gateway alarm, tier transition), ranked by priority: money at stake x\n"
        "customer tier x severity. Acknowledge what you take, resolve what is fixed, shelve noise.",
        epilog="examples:\n"
        "  tallyport-cloud exceptions list\n"
        "  tallyport-cloud exceptions ack ex-1f2e3d4c5b6a7988 --actor alice --reason 'moving the pallet'\n"
        "  tallyport-cloud exceptions watch --snapshot",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = exceptions.add_subparsers(dest="exceptions_command", required=True, metavar="ACTION")

    def action(name: str, summary: str, description: str, examples: Sequence[str]) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = actions.add_parser(
            name,
            parents=[client],
            help=summary,
            description=description,
            epilog="examples:\n" + "\n".join(f"  {example}" for example in examples),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        return parser

    listing = action(
        "list",
        "exceptions ranked by priority",
        "Unresolved exceptions (or those in --state), highest priority first: PRIORITY, SEVERITY, RULE,\n"
        "SUBJECT, LOCATION, OWNER (with its escalation level), DUE, STATE, AGE, ID.",
        [
            "tallyport-cloud exceptions list",
            "tallyport-cloud exceptions list --rule dwell --min-severity major",
            "tallyport-cloud exceptions list --state resolved --limit 200 --json",
            "tallyport-cloud exceptions list --owner shift_lead --location urn:tallyport:loc:dc1:cold-room",
        ],
    )
    listing.add_argument("--state", action="append", choices=STATES, default=[], help="only in this state (repeat)")
    listing.add_argument("--rule", default="", help="only this rule, e.g. dwell, excursion, stockout")
    listing.add_argument("--location", default="", help="only at this location id")
    listing.add_argument("--gtin", default="", help="only this GTIN-14")
    listing.add_argument("--owner", default="", help="only owned by this role")
    listing.add_argument("--min-severity", choices=SEVERITIES, default=None, help="only this severe or worse")
    listing.add_argument(
        "--limit", type=_limit, default=LIST_LIMIT_DEFAULT, help=f"at most N (default {LIST_LIMIT_DEFAULT})"
    )
    show = action(
        "show",
        "one exception with its audit trail",
        "One exception, every field, then its audit trail (who moved it, when, why, from -> to).",
        ["tallyport-cloud exceptions show ex-1f2e3d4c5b6a7988"],
    )
    show.add_argument("id", help="the exception id (the ID column of `list`)")
    for name, summary, verb in (
        ("ack", "acknowledge: you take it", "open -> acknowledged; cleared -> resolved"),
        ("resolve", "resolve: it is dealt with", "any unresolved state -> resolved"),
    ):
        parser = action(
            name,
            summary,
            f"{summary[0].upper()}{summary[1:]} ({verb}). Recorded in the audit trail with --actor and --reason.",
            [f"tallyport-cloud exceptions {name} ex-1f2e3d4c5b6a7988 --actor alice --reason 'on my way'"],
        )
        _action_arguments(parser)
    shelve = action(
        "shelve",
        "hide from escalation for a while",
        "Shelve: no escalation until the time is up (capped by the server's [exceptions] shelve_max_s),\n"
        "then it comes back in the state its condition and acknowledgement give.",
        ["tallyport-cloud exceptions shelve ex-1f2e3d4c5b6a7988 --for 2h --actor bob --reason 'sensor maintenance'"],
    )
    _action_arguments(shelve)
    shelve.add_argument("--for", dest="duration", type=parse_duration, required=True, help="90s, 30m, 2h or 1d")
    watch = action(
        "watch",
        "print changes as they happen",
        "One line per new or changed exception, in the order the server commits them, until Ctrl-C.",
        ["tallyport-cloud exceptions watch --snapshot", "tallyport-cloud exceptions watch --json | jq .exception.rule"],
    )
    watch.add_argument("--snapshot", action="store_true", help="first print every unresolved exception")
    watch.add_argument("--count", type=_limit, default=None, help="stop after N updates")


def _action_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", help="the exception id (the ID column of `list`)")
    parser.add_argument("--actor", default=_user(), help="who acts, for the audit trail (default: your login)")
    parser.add_argument("--reason", default="", help="why, for the audit trail")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 < value <= LIST_LIMIT_MAX:
        raise argparse.ArgumentTypeError(f"expected 1 to {LIST_LIMIT_MAX}, got {text}")
    return value


def main_command(args: argparse.Namespace) -> int:
    """Run an `exceptions` action to completion (Ctrl-C ends `watch` quietly)."""
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return EXIT_OK


async def run(args: argparse.Namespace) -> int:
    """Run one action against the server in `args.server`; print; return the exit code."""

    async def action(channel: aio.Channel) -> int:
        return await _ACTIONS[args.exceptions_command](exceptions_pb2_grpc.ExceptionServiceStub(channel), args)

    return await call_server(args.server, action)


async def _list(stub: Any, args: argparse.Namespace) -> int:
    request = exceptions_pb2.ListExceptionsRequest(
        states=[STATES.index(state) + 1 for state in args.state],  # type: ignore[misc]
        rule=args.rule,
        location=args.location,
        gtin=args.gtin,
        owner_role=args.owner,
        min_severity=SEVERITIES.index(args.min_severity) + 1 if args.min_severity else 0,  # type: ignore[arg-type]
    )
    found: list[exceptions_pb2.InventoryException] = []
    while len(found) < args.limit:
        request.page_size = min(args.limit - len(found), PAGE_SIZE_MAX)
        reply = await stub.ListExceptions(request, timeout=args.timeout)
        found.extend(reply.exceptions)
        if not reply.next_page_token:
            break
        request.page_token = reply.next_page_token
    if args.json:
        _print(cli_output.json_lines(found))
    elif found:
        _print(cli_output.table(LIST_HEADERS, list_rows(found, time.time())))
    else:
        print("no exceptions match", file=sys.stderr)
    return EXIT_OK


async def _show(stub: Any, args: argparse.Namespace) -> int:
    reply = await stub.GetException(exceptions_pb2.GetExceptionRequest(exception_id=args.id), timeout=args.timeout)
    if args.json:
        _print(cli_output.json_lines([reply]))
        return EXIT_OK
    exception = reply.exception
    now_s = time.time()
    fields = [
        ("id", exception.exception_id),
        ("rule", exception.rule),
        ("subject", exception.subject),
        ("state", _word(exceptions_pb2.ExceptionState, exception.state, "EXCEPTION_STATE_")),
        ("severity", _word(exceptions_pb2.ExceptionSeverity, exception.severity, "EXCEPTION_SEVERITY_")),
        ("priority", f"{exception.priority:,.2f}"),
        ("value at stake", f"{exception.value_at_stake:,.2f} ({exception.quantity_at_stake:g} units)"),
        ("service weight", f"{exception.service_weight:g}"),
        ("gtin", exception.gtin or "-"),
        ("location", exception.location or "-"),
        ("owner", f"{exception.owner_role} (escalation level {exception.escalation_level})"),
        ("due", f"{cli_output.format_time(exception.response_due)} ({_due(exception, now_s)})"),
        ("raised", cli_output.format_time(exception.raised_at)),
        ("last seen", cli_output.format_time(exception.last_seen)),
        ("occurrences", str(exception.occurrences)),
        ("details", exception.details),
    ]
    if exception.HasField("shelved_until"):
        fields.append(("shelved until", cli_output.format_time(exception.shelved_until)))
    width = max(len(name) for name, _ in fields)
    lines = [f"{name.ljust(width)}  {value}" for name, value in fields]
    lines += ["", "audit trail:"]
    rows = [
        [
            cli_output.format_time(item.at),
            item.actor,
            item.action,
            _word(exceptions_pb2.ExceptionState, item.from_state, "EXCEPTION_STATE_"),
            _word(exceptions_pb2.ExceptionState, item.to_state, "EXCEPTION_STATE_"),
            item.owner_role,
            item.reason,
        ]
        for item in reply.transitions
    ]
    lines += cli_output.table(["AT", "ACTOR", "ACTION", "FROM", "TO", "OWNER", "REASON"], rows)
    _print(lines)
    return EXIT_OK


async def _ack(stub: Any, args: argparse.Namespace) -> int:
    request = exceptions_pb2.AcknowledgeExceptionRequest(exception_id=args.id, actor=args.actor, reason=args.reason)
    return _done(await stub.AcknowledgeException(request, timeout=args.timeout), args)


async def _resolve(stub: Any, args: argparse.Namespace) -> int:
    request = exceptions_pb2.ResolveExceptionRequest(exception_id=args.id, actor=args.actor, reason=args.reason)
    return _done(await stub.ResolveException(request, timeout=args.timeout), args)


async def _shelve(stub: Any, args: argparse.Namespace) -> int:
    request = exceptions_pb2.ShelveExceptionRequest(
        exception_id=args.id, actor=args.actor, reason=args.reason, duration_s=args.duration
    )
    return _done(await stub.ShelveException(request, timeout=args.timeout), args)


def _done(exception: exceptions_pb2.InventoryException, args: argparse.Namespace) -> int:
    if args.json:
        _print(cli_output.json_lines([exception]))
    else:
        state = _word(exceptions_pb2.ExceptionState, exception.state, "EXCEPTION_STATE_")
        print(f"{exception.exception_id} is now {state}")
    return EXIT_OK


async def _watch(stub: Any, args: argparse.Namespace) -> int:
    # No deadline: a watch lasts until Ctrl-C or --count.
    call = stub.Subscribe(exceptions_pb2.SubscribeExceptionsRequest(include_snapshot=args.snapshot))
    seen = 0
    async for update in call:
        if args.json:
            _print(cli_output.json_lines([update]))
        elif update.kind == exceptions_pb2.EXCEPTION_UPDATE_KIND_SNAPSHOT_DONE:
            print("-- snapshot done; live changes follow", flush=True)
        else:
            _print([_watch_line(update)])
        seen += 1
        if args.count is not None and seen >= args.count:
            call.cancel()
            break
    return EXIT_OK


def _watch_line(update: exceptions_pb2.ExceptionUpdate) -> str:
    exception = update.exception
    kind = _word(exceptions_pb2.ExceptionUpdateKind, update.kind, "EXCEPTION_UPDATE_KIND_")
    actions = ",".join(item.action for item in update.transitions) or "-"
    state = _word(exceptions_pb2.ExceptionState, exception.state, "EXCEPTION_STATE_")
    severity = _word(exceptions_pb2.ExceptionSeverity, exception.severity, "EXCEPTION_SEVERITY_")
    return (
        f"{cli_output.format_time(exception.updated_at)}  {kind:8}  {actions:12}  {state:12}  {severity:8}  "
        f"{exception.priority:>12,.0f}  {exception.rule:20}  {exception.exception_id}  {exception.details}"
    )


def _print(lines: Sequence[str]) -> None:
    for line in lines:
        print(line, flush=True)


_ACTIONS = {
    "list": _list,
    "show": _show,
    "ack": _ack,
    "resolve": _resolve,
    "shelve": _shelve,
    "watch": _watch,
}
