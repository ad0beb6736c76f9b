"""Benchmark of the Gaussian-expectation engine (symbrg.gaussian.expectations).

Measures, in one process:

1. NumPy evaluation time of the compiled closed forms E[f(u) f(v)] for ReLU and erf on n entries,
   against hand-written NumPy formulas (neural-tangents' arctan2 form; Williams' arcsine form);
2. float64 accuracy near c = -1 and c = +1 of both, against 50-digit mpmath (the price of stability);
3. mpmath evaluation rate at 50 digits (entries per second) for relu, erf and tanh (Mehler series;
   its Hermite coefficients cost a one-off few seconds per distinct variance, reported separately).

Run:  python benchmarks/bench_gaussian.py [--quick]
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np

from symbrg.gaussian.expectations import expectation


def relu_by_hand(q11: np.ndarray, q12: np.ndarray, q22: np.ndarray) -> np.ndarray:
    """neural-tangents' ABRelu(0, 1) NNGP map as coded there (arctan2 of sqrt(prod - q12^2))."""
    prod = q11 * q22
    root = np.sqrt(np.maximum(prod - q12 ** 2, 0.0))
    theta = np.arctan2(root, q12)
    return (root + (np.pi - theta) * q12) / (2 * np.pi)


def erf_by_hand(q11: np.ndarray, q12: np.ndarray, q22: np.ndarray) -> np.ndarray:
    """Williams' arcsine kernel, the textbook way."""
    return 2 / np.pi * np.arcsin(np.clip(2 * q12 / np.sqrt((1 + 2 * q11) * (1 + 2 * q22)), -1, 1))


def best_of(fn, repeat: int) -> float:
    best = math.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench_numpy(n: int, repeat: int) -> None:
    rng = np.random.default_rng(0)
    q11 = rng.uniform(0.2, 3.0, n)
    q22 = rng.uniform(0.2, 3.0, n)
    print(f"NumPy evaluation, {n:,} entries (best of {repeat}):")
    for lo, regime in ((-1.0, "c uniform in [-1, 1]"), (0.5, "c uniform in [0.5, 1] (deep networks)")):
        q12 = rng.uniform(lo, 1, n) * np.sqrt(q11 * q22)
        print(f"  {regime}:")
        for name, hand in (("relu", relu_by_hand), ("erf", erf_by_hand)):
            fn = expectation(name).compile()
            t_ours = best_of(lambda: fn(q11, q12, q22), repeat)
            t_hand = best_of(lambda: hand(q11, q12, q22), repeat)
            diff = np.max(np.abs(fn(q11, q12, q22) - hand(q11, q12, q22)))
            print(f"    {name:5s} symbrg {t_ours * 1e3:8.2f} ms   hand-written {t_hand * 1e3:8.2f} ms   "
                  f"ratio {t_ours / t_hand:5.2f}x   max |diff| {diff:.1e}")


def bench_accuracy() -> None:
    print("float64 relative error against 50-digit mpmath (ReLU, q11 = q22 = 1):")
    fn = expectation("relu").compile()
    fm = expectation("relu").compile("mpmath", dps=50)
    print(f"  {'c':>14s} {'symbrg':>10s} {'hand (NT)':>10s}")
    for c in (-1 + 1e-6, -1 + 1e-10, -1 + 1e-14, 1 - 1e-10, 1 - 1e-14):
        ref = fm(1.0, c, 1.0)
        ours = float(fn(1.0, c, 1.0))
        hand = float(relu_by_hand(np.array(1.0), np.array(c), np.array(1.0)))
        rel = lambda x: float(abs((x - ref) / ref))  # noqa: E731
        print(f"  {c:14.12f} {rel(ours):10.1e} {rel(hand):10.1e}")


def bench_mpmath(entries: int) -> None:
    print(f"mpmath at 50 digits ({entries} entries each):")
    rng = np.random.default_rng(1)
    for name in ("relu", "erf", "tanh"):
        e = expectation(name)
        fm = e.compile("mpmath", dps=50)
        qs = [0.5, 1.0, 1.7, 2.5]                       # few distinct variances, as in a Gram matrix
        pts = [(qs[i % 4], float(rng.uniform(-0.9, 0.9)) * math.sqrt(qs[i % 4] * qs[(i + 1) % 4]),
                qs[(i + 1) % 4]) for i in range(entries)]
        t0 = time.perf_counter()
        for q in qs:                                     # warm the per-variance caches (series only)
            fm(q, 0.1 * q, q)
        warm = time.perf_counter() - t0
        t0 = time.perf_counter()
        for p in pts:
            fm(*p)
        rate = entries / (time.perf_counter() - t0)
        extra = f"   ({e.method}, order {e.order}; one-off {warm / len(qs):.1f} s per distinct variance)" \
            if e.method == "series" else f"   ({e.method})"
        print(f"  {name:5s} {rate:10,.0f} entries/s{extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes")
    args = parser.parse_args()
    bench_numpy(200_000 if args.quick else 2_000_000, 3 if args.quick else 5)
    bench_accuracy()
    bench_mpmath(200 if args.quick else 2000)


if __name__ == "__main__":
    main()
