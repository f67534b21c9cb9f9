"""The programs under test as child processes: start, SIGKILL, stop, wait, read their logs."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import grpc.aio
from tallyport.v1 import events_pb2, inventory_pb2, inventory_pb2_grpc

BIN = Path(sys.executable).parent
STOP_TIMEOUT_S = 10


class Processes:
    """Named child processes whose output goes to `root/<name>.log`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, args: list[str], env: Mapping[str, str] | None = None) -> None:
        """Start `args` as `name`; `env` adds to (or overrides) this process's environment."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        with (self.root / f"{name}.log").open("ab") as log:  # the child keeps its own copy of the fd
            self.processes[name] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)

    def start_cloud_on(self, port: int) -> None:
        db = str(self.root / "cloud.db")
        self.start("cloud", [str(BIN / "tallyport-cloud"), "serve", "--listen", f"127.0.0.1:{port}", "--db", db])

    def start_edge_with(self, config: Path, env: Mapping[str, str] | None = None) -> None:
        self.start("edge", [str(BIN / "tallyport-edge"), "run", "--config", str(config)], env)

    def kill(self, name: str) -> None:
        """SIGKILL: no cleanup, no flush, as a power cut or the OOM killer would."""
        process = self.processes[name]
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT_S)

    async def wait_for(self, name: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.processes[name].poll() is None:
            assert time.monotonic() < deadline, f"{name} did not finish\n" + self.log(name)
            await asyncio.sleep(0.05)

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    async def wait_for_log(self, name: str, text: str, count: int, timeout_s: float) -> None:
        """Wait until `text` appears `count` times in `name`'s log (which restarts append to)."""
        deadline = time.monotonic() + timeout_s
        while self.log(name).count(text) < count:
            assert self.processes[name].poll() is None, f"{name} exited before logging {text!r}\n" + self.log(name)
            assert time.monotonic() < deadline, f"{name} did not log {text!r} {count} times\n" + self.log(name)
            await asyncio.sleep(0.01)


async def cloud_events(port: int, biz_location: str = "", gateway_id: str = "") -> list[events_pb2.Event]:
    """Every event the cloud on 127.0.0.1:`port` holds (at `biz_location`, from `gateway_id`, if given)."""
    found: list[events_pb2.Event] = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = inventory_pb2_grpc.InventoryServiceStub(channel)
        token = ""
        while True:
            request = inventory_pb2.ListEventsRequest(
                page_size=1000, page_token=token, biz_location=biz_location, gateway_id=gateway_id
            )
            page = await stub.ListEvents(request, timeout=5)
            found.extend(page.events)
            token = page.next_page_token
            if not token:
                return found
