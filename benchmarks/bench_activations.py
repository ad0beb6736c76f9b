"""Series activations against closed forms, NNGP + NTK in one pass, and the closed forms' bandwidth floor.

Run ``python benchmarks/bench_activations.py [--quick]``.  Every figure is a ratio of two times
measured in this run (d = 5, sigma_w = 1.4, sigma_b = 0.1, inputs N(0, 1)):

1. warm Gram matrices, N = 4000 (``--quick``: 1000), depth 3: tanh (a Mehler series,
   :class:`symbrg.core.special.MehlerSeries`) against erf (a closed form), NNGP, NTK and
   ``kernels(get=("nngp", "ntk"))``; each of three fresh processes times both (best of 3 after a
   warm-up, new inputs each call), the ratio printed is the median of the three, of the wall-clock
   times and of the CPU times (all threads: what other jobs on a shared machine disturb least);
2. cold cost (fresh process: build the network, derive, compile, evaluate ``kernels`` on 20
   points): tanh / ReLU at depth 10 and tanh depth 20 / depth 10, median of three processes each;
3. the memory-bandwidth floor of the closed forms: symbrg's ReLU depth-3 NNGP Gram against the
   minimal traffic of the recursion, depth + 1 passes over the N x N float64 matrix (the input Gram
   and one pass per layer), each pass timed as a plain in-place ufunc on the same threads;
4. what the series costs in accuracy: the largest certified per-entry truncation bound over the
   Gram matrix's layer-1 entries, float64 against 30-digit mpmath, and against 2-D quadrature.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

SW, SB, D = 1.4, 0.1, 5


def _inputs(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, D))


def _best(fn, repeat: int = 3) -> float:
    """The shortest wall-clock time of ``repeat`` calls ``fn(i)``."""
    best = math.inf
    for i in range(repeat):
        t = time.perf_counter()
        fn(i)
        best = min(best, time.perf_counter() - t)
    return best


def worker_warm(n: int) -> dict[str, float]:
    """In a fresh process: warm times (compiled programs, new inputs each call, so that nothing is
    reused but the code and the per-octave coefficient tables) of erf and tanh, NNGP, NTK and both;
    erf and tanh alternate, so that other jobs on a shared machine disturb both alike; the best of
    3 wall-clock and, of the same calls, CPU times (all threads)."""
    import symbrg
    data = [_inputs(n, seed) for seed in range(10)]
    archs = {act: symbrg.mlp(act, 3, SW, SB) for act in ("erf", "tanh")}
    for arch in archs.values():
        arch.kernels(data[0])                        # derive, compile, build the coefficient tables
    calls = {"nngp": lambda a, x: a.nngp(x), "ntk": lambda a, x: a.ntk(x),
             "both": lambda a, x: a.kernels(x, get=("nngp", "ntk"))}
    out: dict[str, float] = {}
    for rep in range(3):
        for k, (kind, call) in enumerate(calls.items()):
            for act, arch in archs.items():
                wall, cpu = time.perf_counter(), time.process_time()
                call(arch, data[1 + 3 * rep + k])
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                out[f"{act} {kind}"] = min(out.get(f"{act} {kind}", math.inf), wall)
                out[f"{act} {kind} cpu"] = min(out.get(f"{act} {kind} cpu", math.inf), cpu)
    return out


def worker_cold(act: str, depth: int) -> dict[str, float]:
    """In a fresh process (symbrg imported): build, derive, compile and evaluate NNGP + NTK on 20 points."""
    import symbrg
    x = _inputs(20)
    t = time.perf_counter()
    symbrg.mlp(act, depth, SW, SB).kernels(x)
    return {"cold": time.perf_counter() - t}


def _run(args: list[str]) -> dict[str, float]:
    done = subprocess.run([sys.executable, __file__, "--worker", *args], capture_output=True, text=True,
                          check=True, timeout=3600)
    return json.loads(done.stdout.strip().splitlines()[-1])


def warm_ratios(n: int, processes: int) -> None:
    print(f"== warm Gram, N = {n}, d = {D}, depth 3: tanh (Mehler series) / erf (closed form), "
          f"{processes} fresh processes")
    runs = [_run(["warm", str(n)]) for _ in range(processes)]
    print(f"{'':>6} {'erf s':>8} {'tanh s':>8} {'ratio':>6}   (per process)   {'CPU ratio':>9}   (per process)")
    for kind in ("nngp", "ntk", "both"):
        ratios = [r[f"tanh {kind}"] / r[f"erf {kind}"] for r in runs]
        cpu = [r[f"tanh {kind} cpu"] / r[f"erf {kind} cpu"] for r in runs]
        erf = statistics.median(r[f"erf {kind}"] for r in runs)
        tanh = statistics.median(r[f"tanh {kind}"] for r in runs)
        print(f"{kind:>6} {erf:8.3f} {tanh:8.3f} {statistics.median(ratios):6.2f}   "
              f"({', '.join(f'{v:.2f}' for v in ratios)})   {statistics.median(cpu):9.2f}   "
              f"({', '.join(f'{v:.2f}' for v in cpu)})")
    for act in ("erf", "tanh"):
        sep = statistics.median(r[f"{act} nngp"] + r[f"{act} ntk"] for r in runs)
        both = statistics.median(r[f"{act} both"] for r in runs)
        print(f"{act}: kernels(get=('nngp', 'ntk')) {both:.3f} s vs nngp() + ntk() {sep:.3f} s: "
              f"one pass costs {both / sep:.2f}x the two")


def cold_ratios(processes: int) -> None:
    print(f"\n== cold NNGP + NTK on 20 points (fresh process each, median of {processes})")
    times = {}
    for act, depth in (("relu", 10), ("tanh", 10), ("tanh", 20)):
        times[act, depth] = statistics.median(_run(["cold", act, str(depth)])["cold"] for _ in range(processes))
        print(f"{act:>5} depth {depth:2d}: {times[act, depth]:.3f} s")
    print(f"ratio tanh / relu at depth 10: {times['tanh', 10] / times['relu', 10]:.2f}")
    print(f"ratio tanh depth 20 / depth 10: {times['tanh', 20] / times['tanh', 10]:.2f}")


def _passes(k: np.ndarray, passes: int, threads: int, into: np.ndarray | None = None) -> None:
    """``passes`` in-place ufunc passes over ``k`` (x 1.0), its rows shared out to ``threads``
    threads; with ``into``: ``np.arccos`` of ``k`` into ``into`` instead."""
    blocks = np.array_split(np.arange(k.shape[0]), threads)

    def work(rows: np.ndarray) -> None:
        part = k[rows[0]:rows[-1] + 1]
        for _ in range(passes):
            if into is None:
                np.multiply(part, 1.0, out=part)
            else:
                np.arccos(part, out=into[rows[0]:rows[-1] + 1])
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, blocks))


def floor_ratio(n: int) -> None:
    import symbrg
    from symbrg.kernels.architecture import _cores
    depth, threads = 3, _cores()
    print(f"\n== bandwidth floor, ReLU NNGP depth {depth}, N = {n}, {threads} thread(s)")
    x = _inputs(n)
    arch = symbrg.mlp("relu", depth, SW, SB)
    arch.nngp(x)
    t = _best(lambda i: arch.nngp(x), 3)
    k = np.ones((n, n))
    floor = _best(lambda i: _passes(k, depth + 1, threads), 3)
    print(f"floor: {depth + 1} in-place passes over the {n} x {n} float64 matrix, {floor:.3f} s "
          f"({floor / (depth + 1) / (8 * n * n) * 1e9 * 2:.2f} ns per byte read and written)")
    print(f"symbrg {t:.3f} s: ratio to the floor {t / floor:.2f}")
    half = np.cos(np.random.default_rng(2).uniform(0, 3, (n // 2 + 1, n)))     # the N(N+1)/2 entries computed
    theta = np.empty_like(half)
    acos = _best(lambda i: _passes(half, depth, threads, theta), 2)
    print(f"what is left: np.arccos alone on those N(N+1)/2 entries, once per layer, takes {acos:.3f} s "
          f"({acos / t:.0%} of symbrg's time)")


def accuracy(n: int) -> None:
    import mpmath

    import symbrg
    from symbrg.gaussian.expectations import expectation
    print("\n== the series' accuracy (tanh, tol = 1e-10)")
    x = _inputs(n)
    s = np.einsum("ij,ij->i", x, x) / D
    q = SB ** 2 + SW ** 2 * s
    k = SB ** 2 + SW ** 2 * (x @ x.T) / D
    for derivative in (False, True):
        e = expectation("tanh", derivative=derivative)
        bound = e.error_bound(q[:, None], k, q[None, :])
        fn, mp = e.compile(), e.compile("mpmath", dps=30)
        quad = expectation("tanh", derivative=derivative, method="quadrature", degree=24).compile()
        idx = np.random.default_rng(1).integers(0, n, size=(40, 2))
        a, c, b = q[idx[:, 0]], k[idx[:, 0], idx[:, 1]], q[idx[:, 1]]
        v = fn(a, c, b)
        ref = np.array([float(mp(*map(mpmath.mpf, t))) for t in zip(a, c, b)])
        name = "E[tanh' tanh']" if derivative else "E[tanh tanh]"
        print(f"{name:>16}: certified bound <= {np.max(bound[np.isfinite(bound)]):.1e} on all {n * n} "
              f"first-layer entries ({np.count_nonzero(bound == 0)} exact, {np.count_nonzero(~np.isfinite(bound))} "
              f"by quadrature); float64 vs 30 digits {np.max(np.abs(v - ref)):.1e}; vs quadrature "
              f"{np.max(np.abs(v - quad(a, c, b))):.1e}")
    arch = symbrg.mlp("tanh", 3, SW, SB)
    xs = x[:6]
    g64, g30 = arch.kernels(xs), arch.kernels(xs, precision=30)
    rel = max(float(np.max(np.abs(a - b.astype(float)) / np.abs(b.astype(float)))) for a, b in zip(g64, g30))
    print(f"depth-3 NNGP and NTK Gram (6 points), float64 vs 30-digit mpmath: max relative {rel:.1e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, one process each")
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        kind, *rest = args.worker
        result = worker_warm(int(rest[0])) if kind == "warm" else worker_cold(rest[0], int(rest[1]))
        print(json.dumps(result))
        return
    n = 1000 if args.quick else 4000
    processes = 1 if args.quick else 3
    os.environ.setdefault("PYTHONHASHSEED", "0")
    warm_ratios(n, processes)
    cold_ratios(processes)
    floor_ratio(n)
    accuracy(200 if args.quick else 1000)


if __name__ == "__main__":
    main()
