"""Code-generator benchmarks: is the symbolic-to-NumPy pipeline linear in the size of the program?

Run ``python benchmarks/bench_codegen.py [--quick]``.  Every figure is printed next to a baseline
measured in the same run:

* Per stage (derive the NNGP+NTK program, partition it into row/column/pair stages, compile the row
  and column stages and the in-place pair stage), for tanh (Mehler series) and a user's activation
  given as a ``sympy.Lambda`` (the degree-15 Taylor polynomial of sin: its kernels are exact Wick
  closed forms of about a thousand operations per layer, the largest programs of the package), at
  depths 10, 20, 50 and 100: seconds, milliseconds per hidden layer, and the *ratio* of the time per
  layer to the time per layer at the smallest depth.  A ratio near 1 at every depth is a linear cost; a
  quadratic stage shows a ratio that grows like the depth (about 10 at depth 100).
* The same for the NNGP chain of tanh with every Mehler series written out (built here from
  ``expectation("tanh").expr``: about 7,000 operations a layer, the programs of issue 18).
* Cold NNGP+NTK Gram matrices (20 points, d = 5, a fresh process each, median of three): tanh
  against ReLU at depth 10, and tanh at depth 20 against depth 10, as ratios.  Cold means derive,
  partition, compile and evaluate, in a process that has imported symbrg and nothing else.

The partition here is the Gram drivers' (``[s_11]``, ``[s_22]``, ``[s_12]``, with the input gap left as
assignments of the pair stage).  No test asserts on these times; ``tests/test_codegen.py`` pins the
linear behaviour by counting work instead.
"""
from __future__ import annotations

import argparse
import gc
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from symbrg.core.codegen import Program

#: The user's activation of the benchmark (registered under this name).
LAMBDA_NAME = "user_sin15"

#: Cold NNGP+NTK Gram matrices in a fresh process: ``python -c _COLD activation depth`` prints seconds.
_COLD = """
import sys, time
import numpy as np
import symbrg
act, depth = sys.argv[1], int(sys.argv[2])
x = np.random.default_rng(0).normal(size=(20, 5))
start = time.perf_counter()
net = symbrg.mlp(act, depth)
net.nngp(x)
net.ntk(x)
print(time.perf_counter() - start)
"""


def register_lambda() -> str:
    """Register the user's activation, the degree-15 Taylor polynomial of sin (sum over odd k <= 15 of
    (-1)^((k-1)/2) t^k / k!) as a ``sympy.Lambda``, in this process; its name."""
    import sympy as sp

    import symbrg
    t = sp.Symbol("t")
    phi = sum((-1) ** (k // 2) * t**k / sp.factorial(k) for k in range(1, 16, 2))
    symbrg.register_activation(LAMBDA_NAME, sp.Lambda(t, phi))
    return LAMBDA_NAME


def written_out(depth: int) -> Program:
    """The NNGP chain of tanh with every Mehler series written out (``expectation("tanh").expr``, about
    2,400 operations, three times a layer: the form of the kernel programs before a series became one
    node), built here: the largest programs the code generator meets."""
    import sympy as sp

    from symbrg.core.codegen import Program
    from symbrg.gaussian.expectations import Q11, Q12, Q22, expectation
    from symbrg.kernels import S11, S12, S22
    series = expectation("tanh").expr
    sw, sb = sp.symbols("sigma_w sigma_b", positive=True)
    q11, q22, q12 = S11, S22, S12
    chain: list[tuple[sp.Symbol, sp.Expr]] = []
    for layer in range(depth):
        k11, k22, k12, e11, e22, e12 = sp.symbols(f"K11_{layer} K22_{layer} K12_{layer} E11_{layer} "
                                                  f"E22_{layer} E12_{layer}", real=True)
        chain += [(k11, sb**2 + sw**2 * q11), (k22, sb**2 + sw**2 * q22), (k12, sb**2 + sw**2 * q12),
                  (e12, series.xreplace({Q11: k11, Q22: k22, Q12: k12})),
                  (e11, series.xreplace({Q11: k11, Q22: k11, Q12: k11})),
                  (e22, series.xreplace({Q11: k22, Q22: k22, Q12: k22}))]
        q11, q22, q12 = e11, e22, e12
    return Program((S11, S22, S12, sw, sb), tuple(chain), (sb**2 + sw**2 * q12,), name="tanh_written_out")


def stages(build: Callable[[int], Program], depth: int) -> dict[str, float]:
    """Seconds of each stage of the program ``build(depth)``, all fresh."""
    from symbrg.kernels import S11, S12, S22
    gc.collect()
    out = {}
    t = time.perf_counter()
    prog = build(depth)
    out["derive"] = time.perf_counter() - t
    t = time.perf_counter()
    row, col, pair = prog.partition([S11], [S22], [S12])
    out["partition"] = time.perf_counter() - t
    t = time.perf_counter()
    row.compile()
    col.compile()
    arrays = [S12, *(o for o in row.outputs if not o.name.startswith("hoisted_c")), *col.outputs]
    pair.compile_inplace(arrays)
    out["compile"] = time.perf_counter() - t
    out["total"] = sum(out.values())
    out["assignments"] = len(prog) + len(row) + len(col) + len(pair)
    return out


def scaling(title: str, build: Callable[[int], Program], depths: tuple[int, ...]) -> None:
    """The per-stage table of one kind of program: ms per layer and its ratio to the smallest depth's."""
    len(build(1))                                # one-off costs (the activation's series, its nodes) first
    print(f"\n== {title}, per stage (ratio: ms per layer / ms per layer at depth {depths[0]})")
    print(f"{'depth':>5} {'assignments':>11} " + " ".join(f"{s + ' s':>11} {'ms/layer':>8} {'ratio':>5}"
                                                      for s in ("derive", "partition", "compile", "total")))
    base: dict[str, float] = {}
    for depth in depths:
        res = stages(build, depth)
        per = {k: 1e3 * v / depth for k, v in res.items() if k != "assignments"}
        base = base or per
        cols = " ".join(f"{res[s]:11.2f} {per[s]:8.1f} {per[s] / base[s]:5.2f}"
                        for s in ("derive", "partition", "compile", "total"))
        print(f"{depth:5d} {res['assignments']:11.0f} {cols}", flush=True)


def ntk_program(act: str) -> Callable[[int], Program]:
    """``depth -> mlp(act, depth).ntk_program`` (NNGP and NTK)."""
    import symbrg
    return lambda depth: symbrg.mlp(act, depth).ntk_program


def cold(act: str, depth: int, runs: int) -> float:
    """Median over ``runs`` fresh processes of the seconds from ``mlp(act, depth)`` to both Gram matrices."""
    times = []
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-c", _COLD, act, str(depth)], capture_output=True, text=True,
                              check=True)
        times.append(float(done.stdout.split()[-1]))
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small depths, one process per cold figure")
    args = ap.parse_args()
    depths = (2, 4) if args.quick else (10, 20, 50, 100)
    scaling("tanh: NNGP+NTK program", ntk_program("tanh"), depths)
    scaling(f"{LAMBDA_NAME}, a user's sympy.Lambda: NNGP+NTK program", ntk_program(register_lambda()), depths)
    scaling("tanh, every Mehler series written out: NNGP chain", written_out, depths)

    runs, low, high = (1, 2, 4) if args.quick else (3, 10, 20)
    print(f"\n== cold NNGP+NTK Gram matrices, 20 points, d = 5 (seconds, median of {runs} fresh process(es))")
    relu, tanh_low, tanh_high = cold("relu", low, runs), cold("tanh", low, runs), cold("tanh", high, runs)
    print(f"relu  depth {low:3d}: {relu:7.2f} s")
    print(f"tanh  depth {low:3d}: {tanh_low:7.2f} s   ratio tanh/relu           {tanh_low / relu:6.2f}"
          "   (issue 18: <= 10)")
    print(f"tanh  depth {high:3d}: {tanh_high:7.2f} s   ratio depth {high}/depth {low}   "
          f"{tanh_high / tanh_low:6.2f}   (issue 18: <= 2.6)")


if __name__ == "__main__":
    main()
