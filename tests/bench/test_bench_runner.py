"""The benchmark runner: a benchmark past its bound is cancelled and named, the others still run, exit non-zero.

The benchmarks here are tiny modules written for the test and run the way ``python -m bench`` runs the real
ones: each in a child process of its own.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

import bench.__main__ as runner
from bench.__main__ import BENCHMARKS, Benchmark, run_benchmarks

REPOSITORY = Path(__file__).resolve().parents[2]

MODULES = {
    "fast_bench": """
async def run(quick: bool = False) -> None:
    print(f"fast bench ran, quick={quick}", flush=True)
""",
    "stuck_bench": """
import asyncio

async def run(quick: bool = False) -> None:
    try:
        await asyncio.Event().wait()
    finally:
        print("stuck bench cleaned up", flush=True)
""",
    "deaf_bench": """
import asyncio

async def run(quick: bool = False) -> None:
    while True:  # loses every cancel, as pymodbus's wait_for did on Python 3.11
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            print("deaf bench lost a cancel", flush=True)
""",
    "failing_bench": """
async def run(quick: bool = False) -> None:
    raise RuntimeError("broken benchmark")
""",
}


@pytest.fixture
def bench_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, source in MODULES.items():
        (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPOSITORY), str(tmp_path)]))
    monkeypatch.chdir(REPOSITORY)


@pytest.mark.usefixtures("bench_modules")
def test_a_benchmark_past_its_bound_is_cancelled_and_named_and_the_others_run(
    capfd: pytest.CaptureFixture[str],
) -> None:
    benchmarks = [
        Benchmark("stuck", "stuck_bench", bound_s=600.0, bound_s_quick=3.0),
        Benchmark("deaf", "deaf_bench", bound_s=600.0, bound_s_quick=3.0),
        Benchmark("failing", "failing_bench", bound_s=600.0, bound_s_quick=60.0),
        Benchmark("fast", "fast_bench", bound_s=600.0, bound_s_quick=60.0),
    ]
    problems = run_benchmarks(benchmarks, quick=True, cancel_grace_s=3.0)
    output = capfd.readouterr()
    assert problems == [
        "stuck exceeded its bound of 3 s (quick sizes): cancelled",
        "deaf exceeded its bound of 3 s (quick sizes): cancelled, still running 3 s later, killed",
        "failing failed with exit code 1",
    ]
    assert "stuck bench cleaned up" in output.out  # cancelled in the child: its cleanup ran
    assert "deaf bench lost a cancel" in output.out
    assert "fast bench ran, quick=True" in output.out
    assert "bench: stuck exceeded its bound" in output.err


def test_main_exits_non_zero_naming_the_benchmark(
    bench_modules: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(runner, "BENCHMARKS", (Benchmark("stuck", "stuck_bench", 600.0, 2.0),))
    monkeypatch.setattr(runner, "CANCEL_GRACE_S", 3.0)
    monkeypatch.setattr(sys, "argv", ["bench", "--quick"])
    with pytest.raises(SystemExit) as exited:
        runner.main()
    assert exited.value.code == 1
    assert "stuck exceeded its bound of 2 s (quick sizes)" in capsys.readouterr().err


def test_every_benchmark_has_a_bound_above_zero_and_a_quick_one_no_larger() -> None:
    assert {benchmark.module for benchmark in BENCHMARKS} == {
        f"bench.{path.stem}"
        for path in (REPOSITORY / "bench").glob("*.py")
        if re.search(r"^async def run\(", path.read_text(), re.MULTILINE)
    }
    for benchmark in BENCHMARKS:
        assert 0 < benchmark.bound_s_quick <= benchmark.bound_s, benchmark
