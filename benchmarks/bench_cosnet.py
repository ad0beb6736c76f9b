"""Benchmark: the falsifiable cos-net BRG = ERG certificate, three regulators x d = 1..4, every named
mutation included (target < 60 s; issue 14).

Run ``python benchmarks/bench_cosnet.py`` (``--quick``: d = 3 only).  Prints the wall time of every
certificate (identities and all mutations), how many mutations it refused, the total against the 60 s
target, and as a baseline measured in the same run the unmutated certificate alone, so the cost of the
mutation runs reads as a multiple of it.  A fresh process: nothing is cached before the first
certificate.  Also times the finite-width sampler against a per-member loop.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="d = 3 only")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    from symbrg.cosnet import theory as cn
    from symbrg.cosnet.certificate import certify
    t_import = time.perf_counter() - t0

    dims = (3,) if args.quick else (1, 2, 3, 4)
    regs = ("sharp", "litim", "exponential")
    total_start = time.perf_counter()
    ok = True
    print(f"{'d':>2} {'regulator':<12} {'identities':>10} {'mutations refused':>17} {'verified':>8} {'seconds':>8}")
    for d in dims:
        for reg in regs:
            t = time.perf_counter()
            cert = certify(d, reg)
            dt = time.perf_counter() - t
            refused = sum(1 for m in cert.mutations if m["falsified"])
            ok = ok and cert.verified
            print(f"{d:>2} {reg:<12} {len(cert.identities):>10} {f'{refused}/{len(cert.mutations)}':>17} "
                  f"{cert.verified!s:>8} {dt:8.2f}", flush=True)
    total = time.perf_counter() - total_start
    n = len(dims) * len(regs)
    t = time.perf_counter()
    certify(5, "litim", mutations=False)  # baseline: a fresh dimension, identities only
    base = time.perf_counter() - t
    print(f"\nimport {t_import:.2f} s; {n} certificates with mutations in {total:.1f} s (target 60 s: "
          f"{'met' if total < 60 else 'MISSED'}); all verified, every mutation refused: {ok}")
    print(f"baseline: one certificate without mutations (d = 5, litim) {base:.2f} s; "
          f"mean certificate with mutations {total / n:.2f} s ({total / n / base:.1f}x)")

    # sampler: vectorized ensemble vs one member at a time
    net = cn.generalized_cosnet(3, 4.0, 0.8)
    X = np.random.default_rng(0).normal(size=(16, 3))
    members, width = (50, 2000) if args.quick else (200, 4000)
    t = time.perf_counter()
    cn.sample_cosnet(net, X, members, width, seed=0)
    vec = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(members):
        cn.sample_cosnet(net, X, 1, width, seed=i)
    loop = time.perf_counter() - t
    print(f"sampler: {members} members x {width} neurons x {len(X)} inputs: vectorized {vec:.2f} s, "
          f"per-member loop {loop:.2f} s, ratio {loop / vec:.1f}x")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
