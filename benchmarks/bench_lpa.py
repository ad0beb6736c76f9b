"""Benchmark: derive and solve the LPA polynomial truncation as a function of the order n (phi^2n).

Run ``python benchmarks/bench_lpa.py`` (``--quick``: orders up to 8, Litim only).  For every order
prints the time to *derive* the truncation (projection of the flow in a sparse polynomial ring,
beta functions and exact Jacobian), to *solve* it (damped Newton from the previous order, 30 digits,
then the stability matrix and its eigenvalues), the number of polynomial terms, and nu, omega.
Baseline measured in the same run: the order-2 truncation (derive + solve); every row prints its
cost as a multiple of that baseline.  A second table compares regulators at one order (Litim and
sharp: closed-form threshold functions; exponential: mpmath quadrature).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="orders 2..8, Litim only")
    ap.add_argument("--max-order", type=int, default=None, help="largest order (default 16, quick 8)")
    args = ap.parse_args(argv)
    from symbrg.rg.lpa import KNOWN_LITIM_LPA_3D, fixed_point, lpa_truncation

    top = args.max_order or (8 if args.quick else 16)

    def run(reg: str, n: int, guess, dps: int = 30):
        t0 = time.perf_counter()
        tr = lpa_truncation(reg, 3, n)
        t1 = time.perf_counter()
        fp = fixed_point(tr, guess, dps=dps)
        t2 = time.perf_counter()
        terms = sum(len(ts) for ts in tr._poly.terms)
        return tr, fp, t1 - t0, t2 - t1, terms

    # warm-up import and caches of the closed-form thresholds, then the baseline
    run("litim", 2, None)
    _, _, a, b, _ = run("litim", 2, None)
    base = a + b
    print(f"LPA, d = 3, Litim regulator; baseline (order 2, derive + solve) = {base * 1e3:.1f} ms")
    print(f"{'n':>3} {'terms':>7} {'derive/s':>9} {'solve/s':>9} {'x base':>8} {'nu':>11} {'omega':>11}"
          f" {'|nu-nu*|':>9}")
    guess = None
    for n in range(2, top + 1):
        tr, fp, td, ts, terms = run("litim", n, guess)
        guess = list(fp.couplings.values()) + [0.0]
        print(f"{n:3d} {terms:7d} {td:9.3f} {ts:9.3f} {(td + ts) / base:8.1f} {fp.nu:11.7f} "
              f"{fp.omega:11.7f} {abs(fp.nu - KNOWN_LITIM_LPA_3D['nu']):9.2e}")
    if args.quick:
        return 0
    order = 8
    print(f"\nregulators at order {order} (continued from order 2; exponential by quadrature, 20 digits)")
    print(f"{'regulator':<12} {'seconds':>8} {'x base':>8} {'nu':>11} {'omega':>11}")
    for reg in ("litim", "sharp", "exponential"):
        t0 = time.perf_counter()
        g = None
        for n in range(2, order + 1):
            _, fp, _, _, _ = run(reg, n, g, dps=20)
            g = list(fp.couplings.values()) + [0.0]
        dt = time.perf_counter() - t0
        print(f"{reg:<12} {dt:8.2f} {dt / base:8.1f} {fp.nu:11.7f} {fp.omega:11.7f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
