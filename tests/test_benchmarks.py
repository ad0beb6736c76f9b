"""The benchmarks run: each ``benchmarks/bench_*.py --quick`` exits 0 and prints its baseline ratio.

Only that they run and report is tested here (no test asserts on wall time); the figures themselves
are read from their output.
"""
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).parent.parent / "benchmarks").glob("bench_*.py"))


@pytest.mark.parametrize("script", BENCHMARKS, ids=[b.stem for b in BENCHMARKS])
def test_benchmark_runs_quick(script):
    done = subprocess.run([sys.executable, str(script), "--quick"], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert any(word in done.stdout for word in ("ratio", "x base", "speed-up", "/s")), done.stdout[-2000:]
