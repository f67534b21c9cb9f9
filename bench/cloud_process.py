"""Helpers for benchmarks that run the real aggregator as its own process (`tallyport-cloud serve`).

A gateway and its cloud are different machines in production; as two processes they at least get a core each
on the 2-core development machine, instead of sharing one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio
from tallyport.v1 import inventory_pb2, inventory_pb2_grpc

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


def free_port() -> int:
    """A TCP port nothing listens on now (the usual small race with other programs is fine for a benchmark)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def vm_kib(pid: int, field: str) -> int:
    """A memory figure of a live process from /proc/<pid>/status, in KiB (``VmRSS``, ``VmHWM``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise ValueError(f"no {field} in /proc/{pid}/status")


async def wait_until_queryable(target: str, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Return once the aggregator at ``target`` answers a query; RuntimeError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    async with grpc.aio.insecure_channel(target) as channel:
        stub = inventory_pb2_grpc.InventoryServiceStub(channel)
        while True:
            try:
                await stub.ListGateways(inventory_pb2.ListGatewaysRequest(), timeout=1.0)
                return
            except grpc.aio.AioRpcError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the cloud at {target} did not answer within {timeout_s} s") from None
                await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def cloud_process(root: Path, port: int) -> AsyncIterator[subprocess.Popen[bytes]]:
    """`tallyport-cloud serve` on 127.0.0.1:``port`` with its SQLite store under ``root``, until the block ends."""
    log = (root / "cloud.log").open("wb")
    command = [sys.executable, "-m", "cloud.cli", "serve", "--listen", f"127.0.0.1:{port}", "--db", str(root / "c.db")]
    # Popen returns at once (it does not wait for the child); asyncio's subprocess API would tie the child to
    # this event loop's watcher for no gain here.
    process = subprocess.Popen(  # noqa: ASYNC220
        command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(Path.cwd())}
    )
    try:
        await wait_until_queryable(f"127.0.0.1:{port}")
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait)
        log.close()
