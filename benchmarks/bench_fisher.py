"""Benchmark: dense and diagonal Fisher of a wide readout, a whole ensemble at once vs a per-member loop.

The readout of the paper's network (2000 frozen ReLU features, arXiv:2405.17538 §5) has Jacobian
J(x) = h(x), so its Fisher is (1/n) Σ_x h(x) h(x)ᵀ / σ².  For 10, 200 and 1000 Fisher inputs and
100 ensemble members we time ``fisher_dense`` / ``fisher_diagonal`` on the stacked (members, n, P)
Jacobians against the baseline of calling the same function member by member (writing into a
preallocated output), and record peak traced memory (tracemalloc, which sees NumPy allocations).
Times are the best of ``--repeat`` calls.

    python benchmarks/bench_fisher.py            # 100 members, n = 10, 200, 1000, P = 2000
    python benchmarks/bench_fisher.py --quick    # 10 members, n = 10, 200
"""
from __future__ import annotations

import argparse
import functools
import gc
import time
import tracemalloc

import numpy as np

from symbrg.information.spectrum import fisher_dense, fisher_diagonal


def measure(fn, repeat: int):
    """(best seconds of ``repeat`` calls, peak traced bytes of one more call).

    Timing and tracing are separate so that tracemalloc's bookkeeping does not enter the times;
    the best of several calls removes the first-touch cost of the large output pages.
    """
    times = []
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
        del out
    gc.collect()
    tracemalloc.start()
    out = fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    del out
    return min(times), peak


def per_member(fisher, J):
    def run():
        first = fisher(J[0])
        out = np.empty((J.shape[0],) + first.shape)
        out[0] = first
        for m in range(1, J.shape[0]):
            out[m] = fisher(J[m])
        return out
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10 members and n = 10, 200")
    ap.add_argument("--members", type=int, default=None)
    ap.add_argument("--width", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3, help="timed calls per case (best is reported)")
    args = ap.parse_args()
    members = args.members or (10 if args.quick else 100)
    sizes = (10, 200) if args.quick else (10, 200, 1000)
    P = args.width
    rng = np.random.default_rng(0)
    print(f"readout Fisher, P = {P} parameters, {members} members; times in s, peak memory in MB")
    print(f"{'kind':9s} {'n':>5s} {'batched s':>10s} {'loop s':>9s} {'speed-up':>9s} "
          f"{'batched MB':>11s} {'loop MB':>9s} {'mem ratio':>10s}")
    for n in sizes:
        W = rng.standard_normal((10, P))
        x = rng.standard_normal((members, n, 10))
        J = np.maximum(x @ W, 0.0)  # (members, n, P): frozen ReLU features = readout Jacobian
        for kind, fn in (("diagonal", fisher_diagonal), ("dense", fisher_dense)):
            tb, mb = measure(functools.partial(fn, J), args.repeat)
            tl, ml = measure(per_member(fn, J), args.repeat)
            print(f"{kind:9s} {n:5d} {tb:10.3f} {tl:9.3f} {tl / tb:9.2f} {mb / 2**20:11.1f} "
                  f"{ml / 2**20:9.1f} {ml / mb:10.2f}")
        del J
    print("speed-up and mem ratio are loop / batched (> 1: batching wins).")


if __name__ == "__main__":
    main()
