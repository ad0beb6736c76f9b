"""Kernel-engine benchmarks: Gram time and peak memory, derive+compile scaling, mpmath throughput.

Run ``python benchmarks/bench_kernel.py [--quick]``.  Every figure is printed next to a baseline
measured in the same run:

* Gram matrices (ReLU, depth 3 and 10, d = 5): symbrg's compiled, in-place, tiled, threaded program against a
  hand-written in-place NumPy recursion, and against neural-tangents' jitted ``kernel_fn`` when it is
  importable (``pip install neural-tangents==0.6.5 jax==0.5.3 jaxlib==0.5.3 tf2jax==0.3.7``; never a
  dependency).  Peak memory (tracemalloc) is reported as a multiple of the output matrix.  A second
  table separates what the upper-triangle symmetry and the second thread contribute.
* One layer map per backend (in-place NumPy, NumPy with temporaries, SymEngine Lambdify with and
  without LLVM, numexpr when importable): why the Gram path is in-place NumPy.
* Derive-and-compile time of the NNGP+NTK programs for depth 1..100 (should grow linearly).
* mpmath evaluation rate at 50 digits, depth 3.
"""
from __future__ import annotations

import argparse
import gc
import math
import time
import tracemalloc
from functools import partial

import numpy as np


def handwritten_relu_nngp(x: np.ndarray, depth: int, sw: float, sb: float) -> np.ndarray:
    """The baseline: the arc-cosine recursion written by hand with in-place NumPy."""
    d = x.shape[1]
    sq = np.einsum("ij,ij->i", x, x) / d
    k = x @ x.T
    k *= sw**2 / d
    k += sb**2
    q = sb**2 + sw**2 * sq
    for _ in range(depth):
        norm = np.sqrt(np.outer(q, q))
        c = k / norm
        np.clip(c, -1, 1, out=c)
        th = np.arccos(c)
        s = np.sin(th)
        th *= -1
        th += math.pi
        th *= c
        th += s
        th *= norm
        th *= sw**2 / (2 * math.pi)
        th += sb**2
        k = th
        q = sb**2 + sw**2 * q / 2
    return k


def timed(fn, repeat: int = 3):
    best = math.inf
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def peak_bytes(fn) -> int:
    gc.collect()
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def neural_tangents_fn(depth: int, sw: float, sb: float):
    try:
        import jax
        jax.config.update("jax_enable_x64", True)
        from neural_tangents import stax
    except Exception:  # noqa: BLE001 - optional comparison only
        return None
    layers = []
    for _ in range(depth):
        layers += [stax.Dense(1, W_std=sw, b_std=sb), stax.Relu()]
    layers.append(stax.Dense(1, W_std=sw, b_std=sb))
    _, _, kernel_fn = stax.serial(*layers)
    kfn = jax.jit(kernel_fn, static_argnames="get")

    def run(x):
        return np.asarray(kfn(x, None, "nngp").block_until_ready())
    return run


def backends_of_one_layer(n: int = 1 << 16) -> None:
    """Why the Gram path is in-place NumPy: one ReLU layer map J_1(c)/2pi on n entries, per backend."""
    import symengine as se
    c = se.Symbol("c")
    expr = (se.sqrt((1 - c) * (1 + c)) + c * (se.pi - se.acos(c))) / (2 * se.pi)
    x = np.random.default_rng(1).uniform(-0.9, 0.99, n)
    th, s, u = np.empty(n), np.empty(n), np.empty(n)

    def numpy_inplace():
        np.arccos(x, out=th)
        np.subtract(1.0, x, out=s)
        np.add(1.0, x, out=u)
        np.multiply(s, u, out=s)
        np.sqrt(s, out=s)
        np.subtract(math.pi, th, out=th)
        np.multiply(th, x, out=th)
        np.add(th, s, out=th)
        np.multiply(th, 1 / (2 * math.pi), out=th)

    cases = {"NumPy, in place (symbrg's path)": numpy_inplace,
             "NumPy, fresh temporaries":
                 lambda: (np.sqrt((1 - x) * (1 + x)) + x * (math.pi - np.arccos(x))) / (2 * math.pi),
             "SymEngine Lambdify": partial(se.Lambdify([c], [expr]), x)}
    try:
        cases["SymEngine Lambdify, LLVM"] = partial(se.Lambdify([c], [expr], backend="llvm"), x)
    except Exception:  # noqa: BLE001 - symengine built without LLVM
        pass
    try:
        import numexpr
        out = np.empty(n)
        numexpr.set_num_threads(1)
        cases["numexpr, 1 thread"] = lambda: numexpr.evaluate(
            "(sqrt((1-x)*(1+x)) + x*(3.141592653589793 - arccos(x)))/6.283185307179586", {"x": x}, out=out)
    except ImportError:
        pass
    print(f"\n== one ReLU layer map on {n} entries, one thread (ns per entry; ratio to in-place NumPy)")
    def twenty(fn):
        for _ in range(20):
            fn()
    base = None
    for label, fn in cases.items():
        t = timed(lambda: twenty(fn))[0] / 20 / n * 1e9
        base = base or t
        print(f"{label:>34} {t:7.2f} {t / base:6.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes only")
    args = ap.parse_args()
    import symbrg
    sizes = (500, 1000) if args.quick else (1000, 2000, 4000)
    sw, sb = 1.4, 0.1
    print("== Gram matrices, ReLU, d = 5 (best of 3; ratio < 1 means symbrg is faster)")
    print(f"{'depth':>5} {'N':>6} {'symbrg s':>9} {'numpy s':>9} {'ratio':>6} {'NT s':>8} {'ratio':>6} "
          f"{'peak/out':>8} {'max rel diff':>12}")
    rng = np.random.default_rng(0)
    for depth in (3, 10):
        arch = symbrg.mlp("relu", depth, sw, sb)
        arch.nngp(rng.normal(size=(4, 5)))  # compile once
        nt = neural_tangents_fn(depth, sw, sb)
        for n in sizes:
            x = rng.normal(size=(n, 5))
            t_s, k = timed(lambda: arch.nngp(x))
            t_b, kb = timed(lambda: handwritten_relu_nngp(x, depth, sw, sb))
            peak = peak_bytes(lambda: arch.nngp(x)) / k.nbytes
            rel = float(np.max(np.abs(k - kb) / np.abs(kb)))
            if nt is not None:
                nt(x)
                t_nt, _ = timed(lambda: nt(x))
                nt_cols = f"{t_nt:8.3f} {t_s / t_nt:6.2f}"
            else:
                nt_cols = f"{'n/a':>8} {'':>6}"
            print(f"{depth:5d} {n:6d} {t_s:9.3f} {t_b:9.3f} {t_s / t_b:6.2f} {nt_cols} {peak:8.2f} {rel:12.1e}")

    n = sizes[-1]
    print(f"\n== where the time goes, N = {n}: symmetry (upper triangle only) and threads")
    print(f"{'depth':>5} {'case':>26} {'symbrg s':>9} {'NT ratio':>8}")
    x, y = rng.normal(size=(n, 5)), rng.normal(size=(n, 5))
    for depth in (3, 10):
        arch = symbrg.mlp("relu", depth, sw, sb)
        nt = neural_tangents_fn(depth, sw, sb)
        t_nt = timed(lambda: nt(x))[0] if nt is not None else math.nan
        for label, fn in (("K(x, x), 2 threads", lambda: arch.nngp(x)),
                          ("K(x, x), 1 thread", lambda: arch.nngp(x, threads=1)),
                          ("K(x, y), 2 threads", lambda: arch.nngp(x, y)),
                          ("K(x, y), 1 thread", lambda: arch.nngp(x, y, threads=1)),
                          ("NTK(x, x), 2 threads", lambda: arch.ntk(x))):
            t = timed(fn)[0]
            print(f"{depth:5d} {label:>26} {t:9.3f} {t / t_nt:8.2f}")

    backends_of_one_layer()

    print("\n== derive + compile NNGP and NTK programs (fresh each depth)")
    print(f"{'depth':>5} {'seconds':>8} {'per layer ms':>12} {'DAG nodes':>9}")
    for depth in (1, 10, 25, 50, 100):
        t = time.perf_counter()
        arch = symbrg.mlp("relu", depth, sw, sb)
        arch.nngp_program.compile()
        arch.ntk_program.compile()
        dt = time.perf_counter() - t
        print(f"{depth:5d} {dt:8.3f} {1e3 * dt / depth:12.2f} {len(arch.ntk_program):9d}")

    import mpmath.libmp
    print(f"\n== mpmath at 50 digits, ReLU depth 3 (mpmath backend: {mpmath.libmp.BACKEND})")
    arch = symbrg.mlp("relu", 3, sw, sb)
    x = rng.normal(size=(40 if args.quick else 80, 5))
    arch.nngp(x[:2], precision=50)
    t = time.perf_counter()
    arch.nngp(x, precision=50)
    dt = time.perf_counter() - t
    print(f"{x.shape[0] ** 2} entries in {dt:.2f} s: {x.shape[0] ** 2 / dt:,.0f} entries/s (target >= 5,000)")


if __name__ == "__main__":
    main()
