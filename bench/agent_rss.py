"""Edge agent memory with a large backlog: the real `tallyport-edge run` process holding, then draining, its outbox.

Ours: an outbox is filled with a backlog (100k events in quick mode, 1M in full), then the agent is started on
it with its uplink pointed at a port where no cloud listens yet, so it holds the backlog; after a few seconds
the aggregator (`tallyport-cloud serve`, its own process) comes up on that port and the agent drains into it.
Memory is read from /proc/<pid>/status of the agent: the largest VmRSS sampled while it holds the backlog and
while it drains, and VmHWM (the kernel's peak RSS over the process's life) at the end. Goal: ≤ 100 MB.

Baseline, same run: a bare Python process that imported the same modules (`edge.cli`, `edge.agent`) and did
nothing else, so the ratio shows what the backlog and the work cost above the interpreter and its libraries.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.cloud_process import cloud_process, free_port, vm_kib
from bench.delivery_latency import event
from edge.clock import SystemClock
from edge.outbox import open_outbox

GATEWAY_ID = "gw-bench-latency"  # the events of delivery_latency.event carry this gateway id
FILL_CHUNK = 5000
SAMPLE_INTERVAL_S = 0.1
DRAIN_TIMEOUT_S = 900.0
STOP_TIMEOUT_S = 30.0
MIB = 1024 * 1024
BASELINE_SCRIPT = (
    "import edge.cli, edge.agent, json, pathlib\n"
    "status = dict(line.split(':', 1) for line in pathlib.Path('/proc/self/status').read_text().splitlines())\n"
    "print(json.dumps({key: int(status[key].split()[0]) for key in ('VmRSS', 'VmHWM')}))\n"
)


def _gateway_config(root: Path, port: int) -> Path:
    path = root / "gateway.toml"
    path.write_text(
        f'[gateway]\nid = "{GATEWAY_ID}"\n\n'
        f'[outbox]\npath = "{root / "outbox.db"}"\ndurability = "full"\n\n'
        f'[uplink]\ntarget = "127.0.0.1:{port}"\nreconnect_delay_ms_initial = 50\nreconnect_delay_ms_max = 500\n\n'
        '[log]\nlevel = "warning"\n'
    )
    return path


async def _fill(path: Path, count: int) -> None:
    async with open_outbox(path, clock=SystemClock(), rng=random.Random(1)) as outbox:
        for start in range(0, count, FILL_CHUNK):
            await outbox.append_many([event(n, time.time_ns()) for n in range(start, min(count, start + FILL_CHUNK))])


def _waiting(outbox: Path) -> int:
    with sqlite3.connect(f"file:{outbox}?mode=ro", uri=True, timeout=10) as db:
        return int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])


async def _sample_rss_max_kib(pid: int, seconds: float) -> int:
    peak = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        peak = max(peak, vm_kib(pid, "VmRSS"))
        await asyncio.sleep(SAMPLE_INTERVAL_S)
    return peak


async def _ours(root: Path, backlog: int, hold_s: float) -> dict[str, float]:
    port = free_port()
    await _fill(root / "outbox.db", backlog)
    log = (root / "agent.log").open("wb")
    agent = subprocess.Popen(  # noqa: ASYNC220 - returns at once; the child is watched through /proc
        [sys.executable, "-m", "edge.cli", "run", "--config", str(_gateway_config(root, port))],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        holding_kib = await _sample_rss_max_kib(agent.pid, hold_s)
        draining_kib = 0
        async with cloud_process(root, port):
            started = time.perf_counter()
            deadline = time.monotonic() + DRAIN_TIMEOUT_S
            while await asyncio.to_thread(_waiting, root / "outbox.db"):
                if time.monotonic() > deadline or agent.poll() is not None:
                    raise RuntimeError(f"the agent did not drain its outbox (exit code {agent.poll()}; see agent.log)")
                draining_kib = max(draining_kib, await _sample_rss_max_kib(agent.pid, 0.5))
            drain_s = time.perf_counter() - started
            peak_kib = vm_kib(agent.pid, "VmHWM")
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(agent.wait, STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            agent.kill()
            await asyncio.to_thread(agent.wait)
        log.close()
    return {
        "holding_mib": holding_kib * 1024 / MIB,
        "draining_mib": draining_kib * 1024 / MIB,
        "peak_mib": peak_kib * 1024 / MIB,
        "drain_events_per_s": backlog / drain_s,
    }


def _baseline_mib() -> float:
    output = subprocess.run([sys.executable, "-c", BASELINE_SCRIPT], capture_output=True, check=True, text=True)
    return int(json.loads(output.stdout)["VmHWM"]) * 1024 / MIB


async def run(quick: bool = False) -> None:
    backlog = 100_000 if quick else 1_000_000
    hold_s = 3.0 if quick else 5.0
    baseline = await asyncio.to_thread(_baseline_mib)
    with tempfile.TemporaryDirectory() as tmp:
        ours = await _ours(Path(tmp), backlog, hold_s)
    print(f"edge agent memory, {backlog:,} events in the outbox, real `tallyport-edge run` process (goal ≤ 100 MB)")
    print(f"  baseline bare Python that imported edge.cli + edge.agent, VmHWM  {baseline:6.1f} MiB")
    print(f"  agent holding the backlog (cloud down), max RSS sampled          {ours['holding_mib']:6.1f} MiB")
    print(
        f"  agent draining it into the cloud process, max RSS sampled        {ours['draining_mib']:6.1f} MiB"
        f"  ({ours['drain_events_per_s']:,.0f} events/s)"
    )
    print(
        f"  agent peak RSS over the run (VmHWM)                              {ours['peak_mib']:6.1f} MiB"
        f"  ({ours['peak_mib'] / baseline:.1f}× baseline, +{ours['peak_mib'] - baseline:.1f} MiB)"
    )
