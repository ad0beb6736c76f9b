"""Benchmark: the connected four-point function of the generalized cos-net in float64 (target: 1e4
quadruples per second for d = 3, R = 4, m = 1).

Run ``python benchmarks/bench_four_point.py`` (``--quick``: n = 1e4 only).  Prints the quadruples per
second of :func:`symbrg.cosnet.four_point.connected_four_point` at n = 1e4 and 1e5 random quadruples
(standard normal points), full and coarse-grained (k = 2), after a first call that compiles the network
(timed separately), against the target and against a baseline measured in the same run: the Gram-matrix
entries per second of the two-point kernel ``CosNet.kernel`` on the same network (each quadruple needs 9
radial integrals, each Gram entry one).  Also times the 30-digit mpmath reference and the Monte-Carlo
estimator, for scale.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

TARGET = 1e4


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="n = 1e4 quadruples only")
    args = ap.parse_args(argv)
    from symbrg.cosnet import four_point as fp
    from symbrg.cosnet import theory as cn

    net = cn.generalized_cosnet(3, 4.0, 1.0)
    rng = np.random.default_rng(0)
    sizes = (10 ** 4,) if args.quick else (10 ** 4, 10 ** 5)
    X = rng.normal(size=(max(sizes), 4, 3))
    t = time.perf_counter()
    fp.connected_four_point(net, X[:1], 4)
    first = time.perf_counter() - t
    print(f"first call (compiles the network's radial weights): {first:.2f} s")

    # baseline: the two-point Gram matrix of the same network, entries per second
    pts = rng.normal(size=(300, 3))
    net.kernel(pts[:2])
    t = time.perf_counter()
    net.kernel(pts)
    base = pts.shape[0] ** 2 / (time.perf_counter() - t)
    print(f"baseline: CosNet.kernel Gram entries per second (300 x 300): {base:,.0f} /s")

    ok = True
    print(f"{'n':>8} {'k':>5} {'seconds':>8} {'quadruples/s':>13} {'target':>7} {'ratio to baseline':>18}")
    for n in sizes:
        for k in (None, 2.0):
            t = time.perf_counter()
            fp.connected_four_point(net, X[:n], 4, k)
            dt = time.perf_counter() - t
            rate = n / dt
            ok = ok and rate >= TARGET
            print(f"{n:>8} {k!s:>5} {dt:8.2f} {rate:13,.0f} {'met' if rate >= TARGET else 'MISSED':>7} "
                  f"{rate / base:17.2f}x")

    t = time.perf_counter()
    fp.connected_four_point_mpmath(net, X[:2], 4, dps=30)
    print(f"mpmath reference (30 digits): {2 / (time.perf_counter() - t):.2f} quadruples/s")
    members, width = (20_000, 16) if args.quick else (100_000, 16)
    t = time.perf_counter()
    fp.sample_four_point(net, X[:1], width, members)
    dt = time.perf_counter() - t
    print(f"Monte Carlo: {members} networks of width {width} in {dt:.2f} s ({members / dt:,.0f} networks/s)")
    print(f"target {TARGET:.0e} quadruples/s: {'met' if ok else 'MISSED'} (timings on a shared machine vary)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
