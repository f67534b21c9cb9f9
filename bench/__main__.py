"""Run every benchmark: `python -m bench` (or `./dev bench`). `--quick` for a short smoke run.

Each benchmark runs in a process of its own under a bound (several times its normal duration; CI runs the
quick sizes after the tests, and a hang there would hold CI until its own limit). Past its bound the
benchmark is cancelled (SIGTERM: the child cancels it, so what it started is stopped by its own cleanup);
if it is still there ``CANCEL_GRACE_S`` later (a cancel it lost), its whole process group is killed. Either
way the runner says which benchmark exceeded its bound, runs the others, and exits non-zero at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import cast

# Bounds per benchmark, full and --quick sizes: about ten times what each took on the 2-core development
# machine under other load (quick: measured 2026-11-29; full: README, "Benchmarks"), so that only a hang or a
# collapse crosses them, not a busy machine. Together the quick ones stay far inside CI's 90 minutes.
EDGE_INGEST_BOUND_S = 300.0  # about 30 s
EDGE_INGEST_BOUND_S_QUICK = 60.0  # 2.8 s
RFID_PORTAL_INGEST_BOUND_S = 120.0  # a few seconds
RFID_PORTAL_INGEST_BOUND_S_QUICK = 60.0  # under 1 s
UPLINK_THROUGHPUT_BOUND_S = 300.0  # about 25 s
UPLINK_THROUGHPUT_BOUND_S_QUICK = 60.0  # 2.5 s
MODBUS_RTU_POLLS_BOUND_S = 180.0  # about 16 s
MODBUS_RTU_POLLS_BOUND_S_QUICK = 60.0  # about 4 s
DELIVERY_LATENCY_BOUND_S = 1800.0  # about 4 min, a 1M-event drain of 100 s among it (its own drain bound: 900 s)
DELIVERY_LATENCY_BOUND_S_QUICK = 240.0  # 26 s
AGENT_RSS_BOUND_S = 1200.0  # about 3 min (its own drain bound: 900 s)
AGENT_RSS_BOUND_S_QUICK = 150.0  # 14 s
# After the cancel: time for the benchmark's cleanup (stopping a cloud process takes up to 10 s) to finish.
CANCEL_GRACE_S = 30.0
EXIT_POLL_INTERVAL_S = 0.1
# The child's exit status when its benchmark was cancelled (128 + SIGTERM, as a shell reports it).
CANCELLED_EXIT_CODE = 128 + signal.SIGTERM


@dataclass(frozen=True, slots=True)
class Benchmark:
    """A module with ``async def run(quick: bool = False)`` and the bounds it must finish within."""

    name: str
    module: str
    bound_s: float
    bound_s_quick: float

    def bound_for(self, quick: bool) -> float:
        return self.bound_s_quick if quick else self.bound_s


BENCHMARKS = (
    Benchmark("edge_ingest", "bench.edge_ingest", EDGE_INGEST_BOUND_S, EDGE_INGEST_BOUND_S_QUICK),
    Benchmark(
        "rfid_portal_ingest", "bench.rfid_portal_ingest", RFID_PORTAL_INGEST_BOUND_S, RFID_PORTAL_INGEST_BOUND_S_QUICK
    ),
    Benchmark(
        "uplink_throughput", "bench.uplink_throughput", UPLINK_THROUGHPUT_BOUND_S, UPLINK_THROUGHPUT_BOUND_S_QUICK
    ),
    Benchmark("modbus_rtu_polls", "bench.modbus_rtu_polls", MODBUS_RTU_POLLS_BOUND_S, MODBUS_RTU_POLLS_BOUND_S_QUICK),
    Benchmark("delivery_latency", "bench.delivery_latency", DELIVERY_LATENCY_BOUND_S, DELIVERY_LATENCY_BOUND_S_QUICK),
    Benchmark("agent_rss", "bench.agent_rss", AGENT_RSS_BOUND_S, AGENT_RSS_BOUND_S_QUICK),
)


def run_benchmarks(
    benchmarks: Sequence[Benchmark], *, quick: bool, cancel_grace_s: float = CANCEL_GRACE_S
) -> list[str]:
    """Run each benchmark in its own process, one after another; what went wrong, one line per benchmark."""
    problems = []
    for benchmark in benchmarks:
        problem = _run_child(benchmark, quick=quick, cancel_grace_s=cancel_grace_s)
        if problem is not None:
            print(f"bench: {problem}", file=sys.stderr, flush=True)
            problems.append(problem)
    return problems


def _run_child(benchmark: Benchmark, *, quick: bool, cancel_grace_s: float) -> str | None:
    bound_s = benchmark.bound_for(quick)
    command = [sys.executable, "-m", "bench", "--child", benchmark.module, *(["--quick"] if quick else [])]
    # A session of its own: the benchmark and every process it starts share one process group to kill.
    started = time.monotonic()
    child = subprocess.Popen(command, start_new_session=True)
    try:
        finished = _exited_unreaped(child, bound_s)
    except BaseException:
        _stop(child, cancel_grace_s)  # the runner itself was interrupted: leave nothing running
        raise
    if not finished:
        sizes = "quick sizes" if quick else "full sizes"
        return f"{benchmark.name} exceeded its bound of {bound_s:.0f} s ({sizes}): {_stop(child, cancel_grace_s)}"
    _kill_group_and_reap(child)  # anything it started and forgot to stop
    # The time beside the bound, so that a bound that became tight shows in CI's log before it fails.
    print(f"bench: {benchmark.name} took {time.monotonic() - started:.1f} s of its {bound_s:.0f} s", file=sys.stderr)
    if child.returncode != 0:
        return f"{benchmark.name} failed with exit code {child.returncode}"
    return None


def _stop(child: subprocess.Popen[bytes], cancel_grace_s: float) -> str:
    """Cancel the benchmark, then kill what is left of its process group; how it ended."""
    # os.kill, not child.terminate(): that would reap an exited child, and its group id with it.
    os.kill(child.pid, signal.SIGTERM)
    if _exited_unreaped(child, cancel_grace_s):
        outcome = "cancelled"
    else:
        outcome = f"cancelled, still running {cancel_grace_s:.0f} s later, killed"
    _kill_group_and_reap(child)
    return outcome


def _kill_group_and_reap(child: subprocess.Popen[bytes]) -> None:
    # The child is not reaped yet (alive, or a zombie), so its process group still exists and its id cannot
    # belong to anyone else; SIGKILL ends every member that is left (the zombie does not mind).
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    child.wait()


def _exited_unreaped(child: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Whether the child exits within ``timeout_s``; left a zombie (WNOWAIT) so that its group stays ours."""
    deadline = time.monotonic() + timeout_s
    while True:
        if os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(EXIT_POLL_INTERVAL_S)


def run_child(module_name: str, *, quick: bool) -> int:
    """The child's side: run one benchmark module; SIGTERM cancels it (its cleanup runs)."""
    run = cast(Callable[..., Awaitable[None]], importlib.import_module(module_name).run)

    async def cancellable() -> None:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        await run(quick=quick)

    try:
        asyncio.run(cancellable())
    except asyncio.CancelledError:
        print(f"bench: {module_name} cancelled", file=sys.stderr, flush=True)
        return CANCELLED_EXIT_CODE
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--child", metavar="MODULE", help=argparse.SUPPRESS)  # one benchmark, in the child
    options = parser.parse_args()
    if options.child is not None:
        sys.exit(run_child(options.child, quick=options.quick))
    problems = run_benchmarks(BENCHMARKS, quick=options.quick)
    if problems:
        print(f"bench: {len(problems)} of {len(BENCHMARKS)} benchmarks did not finish:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
