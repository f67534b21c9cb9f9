"""Which uplink stream currently speaks for each gateway.

One gateway, one stream: when a gateway opens a new stream while an old one is still
registered (a zombie connection left by a network cut that keepalive has not yet noticed),
the newer one wins and the older one is told to stop with ABORTED. With gateway tokens
configured only a stream authenticated for that gateway gets here (`cloud.ingest.auth`), so a
client claiming another gateway's id cannot supersede its stream. At shutdown every
stream is told to stop with UNAVAILABLE so that gateways reconnect and resume.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import grpc

__all__ = ["StreamRegistry", "StreamTicket"]

SUPERSEDED_MESSAGE = "superseded by a newer stream"
SHUTDOWN_MESSAGE = "the cloud is shutting down; reconnect"


@dataclass(eq=False)
class StreamTicket:
    """One registered stream: how to ask it to stop, and how to learn that it has."""

    gateway_id: str
    peer: str
    stop_code: grpc.StatusCode | None = None
    stop_message: str = ""
    stop_requested: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    def request_stop(self, code: grpc.StatusCode, message: str) -> None:
        """Ask the stream to end with `code`; the first request wins."""
        if self.stop_code is None:
            self.stop_code, self.stop_message = code, message
            self.stop_requested.set()


class StreamRegistry:
    """The active stream per gateway_id."""

    def __init__(self) -> None:
        self._active: dict[str, StreamTicket] = {}
        self._closing = False

    def __len__(self) -> int:
        return len(self._active)

    def claim(self, gateway_id: str, peer: str) -> tuple[StreamTicket, StreamTicket | None]:
        """Register a new stream for `gateway_id`; return it and the stream it superseded, if any."""
        ticket = StreamTicket(gateway_id, peer)
        previous = self._active.get(gateway_id)
        self._active[gateway_id] = ticket
        if previous is not None:
            previous.request_stop(grpc.StatusCode.ABORTED, SUPERSEDED_MESSAGE)
        if self._closing:
            ticket.request_stop(grpc.StatusCode.UNAVAILABLE, SHUTDOWN_MESSAGE)
        return ticket, previous

    def release(self, ticket: StreamTicket) -> None:
        """The stream has ended: unregister it (unless already superseded) and say so."""
        if self._active.get(ticket.gateway_id) is ticket:
            del self._active[ticket.gateway_id]
        ticket.finished.set()

    def stop_all(self) -> list[StreamTicket]:
        """Ask every stream to end with UNAVAILABLE, and refuse new ones; return those asked."""
        self._closing = True
        tickets = list(self._active.values())
        for ticket in tickets:
            ticket.request_stop(grpc.StatusCode.UNAVAILABLE, SHUTDOWN_MESSAGE)
        return tickets
