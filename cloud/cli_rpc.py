"""How a `tallyport-cloud` client subcommand reaches its server: one channel, one translation of gRPC errors.

An unreachable server (UNAVAILABLE, DEADLINE_EXCEEDED) raises `ServerUnreachableError`, which
`cloud.cli` turns into exit code 2 with a hint; any other error status is printed as
`tallyport-cloud: CODE: details` and becomes exit code 1.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable

import grpc
from grpc import aio

from cloud.errors import ServerUnreachableError

__all__ = ["EXIT_ERROR_ANSWER", "UNREACHABLE_CODES", "call_server", "unreachable"]

EXIT_ERROR_ANSWER = 1
UNREACHABLE_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def unreachable(server: str, exc: grpc.aio.AioRpcError) -> ServerUnreachableError:
    """The error for a server that did not answer, naming it and what to check."""
    return ServerUnreachableError(
        f"cannot reach the cloud server at {server} ({exc.code().name}: {exc.details()}); "
        "is `tallyport-cloud serve` running there? (see --server)"
    )


async def call_server(server: str, action: Callable[[aio.Channel], Awaitable[int]]) -> int:
    """Run `action` on a channel to `server`; return its exit code, or EXIT_ERROR_ANSWER on an error status."""
    async with aio.insecure_channel(server) as channel:
        try:
            return await action(channel)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in UNREACHABLE_CODES:
                raise unreachable(server, exc) from exc
            print(f"tallyport-cloud: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return EXIT_ERROR_ANSWER
