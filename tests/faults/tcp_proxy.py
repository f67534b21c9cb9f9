"""A TCP proxy the fault harness puts between the edge agent and the cloud, to break the network on cue.

    edge ──▶ 127.0.0.1:proxy.port ──▶ FaultProxy ──▶ upstream (the cloud)

Modes (`set_mode`), applied to live connections and to new ones alike:
- `pass`: bytes flow both ways.
- `drop`: a black hole. New connections are accepted and never connected upstream; live ones stop
  forwarding; what arrives is read and thrown away. Leaving `drop` resets the black-holed connections,
  as the peer's kernel answers the first retransmission of a connection it no longer knows with RST.
- `stall`: nothing is forwarded for `stall_s` seconds (bytes wait in the proxy), then flow resumes and
  the mode returns to `pass` by itself. Nothing is lost: it is a long pause, not a cut.
- `slow`: each chunk is delayed by `latency_ms` and the flow is capped at `bytes_per_s` per direction.
`reset_all()` sends RST to both sides of every live connection (SO_LINGER 0 then close).
Counters say what the proxy did, so a test can show its fault really happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["pass", "drop", "stall", "slow"]
CHUNK_BYTES_MAX = 64 * 1024
CONNECT_TIMEOUT_S = 5.0


@dataclass
class ProxyCounters:
    connections_total: int = 0
    resets_total: int = 0  # connections ended with RST by the proxy
    bytes_to_upstream: int = 0
    bytes_to_client: int = 0
    bytes_dropped: int = 0  # read during `drop` and thrown away
    stalls_total: int = 0


@dataclass(eq=False)  # identity: links live in a set
class _Link:
    """One proxied connection: the client side and (unless black-holed) the upstream side."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    black_holed: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class FaultProxy:
    """`async with FaultProxy(upstream_port) as proxy:` listens on `proxy.port` until the block ends."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.mode: Mode = "pass"
        self.latency_ms = 0.0
        self.bytes_per_s = 0  # 0 = no cap
        self.counters = ProxyCounters()
        self._links: set[_Link] = set()
        self._flowing = asyncio.Event()  # clear while stalled
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._stall_task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._server is not None
        self._server.close()
        if self._stall_task is not None:
            self._stall_task.cancel()
        links = list(self._links)
        for link in links:
            self._abort(link, count=False)
        await asyncio.gather(*(task for link in links for task in link.tasks), return_exceptions=True)
        await self._server.wait_closed()

    # -- control -----------------------------------------------------------------------------

    def set_mode(self, mode: Mode, *, stall_s: float = 0.0, latency_ms: float = 0.0, bytes_per_s: int = 0) -> None:
        if self.mode == "drop" and mode != "drop":
            for link in [link for link in self._links if link.black_holed]:
                self._abort(link)
        self.mode = mode
        self.latency_ms, self.bytes_per_s = (latency_ms, bytes_per_s) if mode == "slow" else (0.0, 0)
        if mode == "drop":
            for link in self._links:
                link.black_holed = True
        if mode == "stall":
            assert stall_s > 0, "a stall needs its length"
            self.counters.stalls_total += 1
            self._flowing.clear()
            self._stall_task = asyncio.create_task(self._end_stall(stall_s))
        else:
            self._flowing.set()

    def reset_all(self) -> int:
        """RST both sides of every live connection; return how many."""
        links = list(self._links)
        for link in links:
            self._abort(link)
        return len(links)

    @property
    def live_connections(self) -> int:
        return len(self._links)

    # -- plumbing ----------------------------------------------------------------------------

    async def _end_stall(self, stall_s: float) -> None:
        await asyncio.sleep(stall_s)
        self.mode = "pass"
        self._flowing.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.counters.connections_total += 1
        link = _Link(client=writer, black_holed=self.mode == "drop")
        self._links.add(link)
        if not link.black_holed:
            try:
                up_reader, link.upstream = await asyncio.wait_for(
                    asyncio.open_connection(*self.upstream), CONNECT_TIMEOUT_S
                )
            except (OSError, TimeoutError):
                self._abort(link)  # the cloud is down: the client sees its connection refused-ish
                return
            if link not in self._links:  # reset while connecting
                link.upstream.transport.abort()
                return
            link.tasks.append(asyncio.create_task(self._pump(link, up_reader, link.client, to_upstream=False)))
        link.tasks.append(asyncio.create_task(self._pump(link, reader, link.upstream, to_upstream=True)))

    async def _pump(
        self, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None, *, to_upstream: bool
    ) -> None:
        next_send = time.monotonic()
        try:
            while link in self._links:
                data = await reader.read(CHUNK_BYTES_MAX)
                if not data:
                    break
                if link.black_holed or writer is None:
                    self.counters.bytes_dropped += len(data)
                    continue
                await self._flowing.wait()
                if self.latency_ms:
                    await asyncio.sleep(self.latency_ms / 1000)
                if self.bytes_per_s:
                    # Pace: this chunk may leave only once the previous ones have had their share of time.
                    next_send = max(next_send, time.monotonic()) + len(data) / self.bytes_per_s
                    await asyncio.sleep(max(0.0, next_send - time.monotonic()))
                if link.black_holed or link not in self._links:
                    self.counters.bytes_dropped += len(data)
                    continue
                writer.write(data)
                await writer.drain()
                if to_upstream:
                    self.counters.bytes_to_upstream += len(data)
                else:
                    self.counters.bytes_to_client += len(data)
        except (ConnectionError, OSError):
            pass
        # One side ended: end the other as a plain close would (FIN), unless black-holed.
        if link in self._links and not link.black_holed:
            self._close(link)

    def _close(self, link: _Link) -> None:
        self._links.discard(link)
        for side in (link.client, link.upstream):
            if side is not None:
                with contextlib.suppress(Exception):
                    side.close()

    def _abort(self, link: _Link, *, count: bool = True) -> None:
        """Close both sides with RST: SO_LINGER on with a zero timeout makes close() send RST, not FIN."""
        self._links.discard(link)
        if count:
            self.counters.resets_total += 1
        for side in (link.client, link.upstream):
            if side is None:
                continue
            sock = side.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            side.transport.abort()
        for task in link.tasks:
            if task is not asyncio.current_task():
                task.cancel()
