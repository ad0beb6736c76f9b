"""Benchmark: the whole cos-net BRG = ERG certificate, three regulators x d = 1..4 (target < 60 s).

Run ``python benchmarks/bench_cosnet.py`` (``--quick``: d = 3 only).  Prints the wall time of every
certificate, the total against the 60 s target, and as a baseline measured in the same run the time
of one bare ``check_identity`` call on the heart identity (the Polchinski residual, simplified and
evaluated with no step-function handling and no memoization), so the per-certificate cost reads as a
multiple of a single identity check.  A fresh process: nothing is cached before the first certificate.
Also times the finite-width sampler (members x width neurons per second) against a per-member loop.
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
    from symbrg.cosnet.theory import theory as cn
    from symbrg.rg import erg
    from symbrg.cosnet.theory import theorem as th
    from symbrg.core.derivation import check_identity
    t_import = time.perf_counter() - t0

    dims = (3,) if args.quick else (1, 2, 3, 4)
    regs = ("sharp", "litim", "exponential")
    total_start = time.perf_counter()
    ok = True
    print(f"{'d':>2} {'regulator':<12} {'identities':>10} {'verified':>8} {'seconds':>8}")
    for d in dims:
        for reg in regs:
            t = time.perf_counter()
            cert = th.cosnet_erg_certificate(d, reg)
            dt = time.perf_counter() - t
            rows = th.identity_table(cert)
            ok = ok and cert.verified
            print(f"{d:>2} {reg:<12} {len(rows):>10} {str(cert.verified):>8} {dt:8.2f}", flush=True)
    total = time.perf_counter() - total_start
    n = len(dims) * len(regs)

    # baseline: the heart identity (Litim Polchinski residual) handed raw to a bare check_identity
    # (plain sympy.simplify + mpmath), against the certificate's route (step normalization, branch
    # evaluation, rational cancellation, then check_identity), both timed in this run
    Vb, C = th._brg_variance("litim"), th._erg_covariance("litim")
    res = erg.gaussian_mode_residual(C, cn.LAM, variance=Vb)
    t = time.perf_counter()
    try:
        bare = check_identity(res, 0, domain=th.DOMAIN, points=6, dps=30)
        outcome = f"symbolic 0: {bare.symbolic_zero}, verified: {bare.verified}"
    except Exception as exc:  # the raw residual carries DiracDelta/Heaviside
        outcome = f"undecidable ({type(exc).__name__})"
    base = time.perf_counter() - t
    th._verify_cached.cache_clear()
    t = time.perf_counter()
    ours = th._verify(res, 0, stiff_only=True)
    route = time.perf_counter() - t
    print(f"\nimport {t_import:.2f} s; {n} certificates in {total:.1f} s (target 60 s: "
          f"{'met' if total < 60 else 'MISSED'}); all verified: {ok}")
    print(f"Polchinski residual (Litim), raw to check_identity: {base:.2f} s, {outcome}; certificate route: "
          f"{route:.2f} s, verified: {ours.verified} (time ratio {route / base:.1f}x)")

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
