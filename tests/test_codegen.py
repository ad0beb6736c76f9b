"""Programs: one symbolic chain, compiled to NumPy and mpmath, differentiated, partitioned."""
import math
import re

import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from symbrg.core import errors
from symbrg.core.codegen import Program, Workspace, lambdify
from symbrg.core.special import ArcCosKernel, GramDet

x, y, s = sp.symbols("x y s", real=True)
a, b, c = sp.symbols("a b c", real=True)
PROG = Program((x, y, s), ((a, sp.sqrt(x**2 + y**2) + s * sp.atan2(y, x)),
                           (b, a**2 + sp.exp(-a) * sp.erf(a)), (c, b * x)), (c, a), name="toy")


@settings(max_examples=30, deadline=None)
@given(st.floats(0.1, 3), st.floats(-2, 2), st.floats(-1, 1))
def test_numpy_and_mpmath_agree_with_the_expanded_expression(xv, yv, sv):
    c_np, a_np = PROG.compile()(np.array([xv]), np.array([yv]), sv)
    c_mp, a_mp = PROG.compile("mpmath", dps=40)(xv, yv, sv)
    exact = {x: sp.Float(xv, 60), y: sp.Float(yv, 60), s: sp.Float(sv, 60)}    # the binary values, exactly
    c_ex = PROG.expand()[0].evalf(40, subs=exact)
    assert float(c_np[0]) == pytest.approx(float(c_ex), rel=1e-13)
    with mpmath.workdps(40):
        assert abs(c_mp - mpmath.mpf(str(c_ex))) <= mpmath.mpf(10) ** -30 * max(1, abs(c_mp))


def test_forward_mode_derivative_matches_sympy():
    d = PROG.diff(s)
    exact = sp.diff(PROG.expand()[0], s)
    got = d.compile()(1.2, -0.4, 0.3)[0]
    assert got == pytest.approx(float(exact.subs({x: 1.2, y: -0.4, s: 0.3})), rel=1e-13)
    assert len(d) == 2 * len(PROG)


def test_generated_code_frees_dead_arrays_and_drops_dead_code():
    p = Program((x,), ((a, x + 1), (b, a * 2), (c, sp.sin(x))), (b,))
    src = p.source()
    assert "sin" not in src                    # c is not needed
    assert "del a0" in src                     # a is dead after b


def test_partition_stages_reproduce_the_program():
    k11, k22, k12 = sp.symbols("k11 k22 k12", positive=True)
    w = sp.Symbol("w", positive=True)
    q1, q2, q12, r = sp.symbols("q1 q2 q12 r")
    prog = Program((k11, k22, k12, w), ((q1, w * k11), (q2, w * k22), (q12, w * k12),
                                        (r, q12 / sp.sqrt(q1 * q2) + w)), (r,))
    row, col, pair = prog.partition([k11], [k22], [k12])
    assert {str(t) for t, _ in row.assignments} == {"q1"}
    assert {str(t) for t, _ in col.assignments} == {"q2"}
    rv, cv = row.compile()(2.0, 0.5), col.compile()(3.0, 0.5)
    assert pair.compile()(1.5, 0.5, rv, cv) == pytest.approx(prog.compile()(2.0, 3.0, 1.5, 0.5), rel=1e-15)


def test_large_expressions_take_the_symengine_path_with_identical_values():
    xs = sp.symbols("x0:8")
    exprs = [sum(xs[i] ** k * xs[j] for i in range(8) for j in range(8)) ** 2 for k in range(1, 6)]
    vals = [0.1 * (i + 1) for i in range(8)]
    got = lambdify(exprs, xs)(*vals)
    for e, g in zip(exprs, got):
        assert g == pytest.approx(float(e.subs(dict(zip(xs, vals)))), rel=1e-13)


def test_piecewise_and_heaviside_print_for_both_backends():
    e = sp.Heaviside(x, 0) * x + sp.Max(x, 0) - sp.Min(x, 1)
    f, g = lambdify(e, [x]), lambdify(e, [x], "mpmath", dps=20)
    for v in (-1.5, 0.0, 0.5, 2.0):
        assert f(np.array(v)) == pytest.approx(float(g(v)))


def test_bad_programs_and_backends_are_refused():
    with pytest.raises(errors.InvalidArgument) as info:
        Program((x,), ((a, x + y),), (a,))
    assert info.value.argument == "assignments"
    with pytest.raises(errors.InvalidArgument) as info:
        Program((x,), (), (y,))
    assert info.value.argument == "outputs"
    with pytest.raises(errors.UnknownName) as info:
        PROG.compile("fortran")
    assert info.value.argument == "backend"


def test_printing_views():
    assert "\\begin{aligned}" in PROG.to_latex()
    assert PROG.to_text().splitlines()[0].startswith("a = ")
    assert PROG.count_ops() > 0 and math.isfinite(PROG.count_ops())


def test_erf_without_scipy_handles_scalars_and_arrays(monkeypatch):
    import builtins

    from symbrg.core.special import numpy_erf
    real = builtins.__import__

    def no_scipy(name, *args, **kwargs):
        if name.startswith("scipy"):
            raise ImportError(name)
        return real(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_scipy)
    assert float(numpy_erf(0.5)) == pytest.approx(math.erf(0.5), rel=1e-15)
    np.testing.assert_allclose(numpy_erf(np.array([0.1, -2.0])), [math.erf(0.1), math.erf(-2.0)], rtol=1e-15)


# ------------------------------------------------------------------ in-place compilation
_K11, _K12, _K22, _W = sp.symbols("k11 k12 k22 w", real=True)
_INPLACE = Program(
    (x, y, s, _K11, _K12, _K22),
    ((a, sp.sqrt(x**2 + y**2) + s * sp.atan2(y, x) - 3 / x + x**sp.Rational(-1, 2)),
     (b, a**2 + sp.exp(-a) * sp.erf(a) + sp.Max(a, y, 0.5) - sp.Heaviside(y) / (1 + s**2)),
     (c, sp.pi - b * x + ArcCosKernel(1, 1, _K11, _K12 * x / (1 + x), _K22) + GramDet(_K11, _K12, _K22) * a**3
      + sp.Piecewise((x**2, x > y), (sp.sin(x) + y, True)))),
    (c, a, s**2 + 1), name="inplace_toy")


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.floats(-1, 1))
def test_inplace_compilation_matches_the_plain_one(rows, cols, sv):
    """Row (rows, 1) and column (1, cols) inputs broadcast into workspace buffers; every node kind
    (sums with subtractions, products with divisions, powers, ufuncs, n-ary Max, printed functions,
    a Piecewise printed whole, NumericFunctions with and without their own numpy_into) agrees with
    the allocating code."""
    rng = np.random.default_rng(rows * 41 + cols)
    xv, yv = rng.uniform(0.2, 2, (rows, 1)), rng.uniform(-1, 1, (1, cols))
    k11, k22 = rng.uniform(0.5, 2, (rows, 1)), rng.uniform(0.5, 2, (1, cols))
    k12 = rng.uniform(-0.99, 0.99, (rows, cols)) * np.sqrt(k11 * k22)
    args = (xv, yv, sv, k11, k12, k22)
    want = _INPLACE.compile()(*args)
    ws = Workspace()
    for _ in range(2):                                 # the second call reuses the buffers
        got = _INPLACE.compile_inplace([x, y, _K11, _K12, _K22])(*args, ws)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-13, atol=1e-14 * np.abs(w).max())  # sums cancel


def test_inplace_warm_call_allocates_nothing_of_array_size():
    import tracemalloc

    from symbrg.kernels.architecture import S11, S12, S22, mlp
    arch = mlp("relu", 4, 1.4, 0.1)
    row, col, pair = arch.nngp_program.partition([S11], [S22], [S12])
    rng = np.random.default_rng(0)
    s1, s2 = rng.uniform(0.5, 2, 512), rng.uniform(0.5, 2, 512)
    s12 = rng.uniform(-0.8, 0.99, (512, 512)) * np.sqrt(np.outer(s1, s2))
    rv, cv = row.compile()(s1, 0.1, 1.4), col.compile()(s2, 0.1, 1.4)   # no entry needs the careful path
    fn = pair.compile_inplace([S12] + [o for o, v in zip(row.outputs + col.outputs, rv + cv) if np.ndim(v)])
    rv = [v[:, None] if np.ndim(v) else v for v in rv]
    cv = [v[None, :] for v in cv]
    ws = Workspace()
    fn(s12, 0.1, 1.4, *rv, *cv, ws)
    tracemalloc.start()
    out = fn(s12, 0.1, 1.4, *rv, *cv, ws)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # per-point vectors and NumPy's own broadcasting buffers (8192 entries), no tile-sized temporary
    assert peak < s12.nbytes / 8, peak
    np.testing.assert_allclose(out, arch.nngp_program.compile()(s1[:, None], s2[None, :], s12, 0.1, 1.4),
                               rtol=1e-13)


def test_inplace_buffers_are_reused_along_a_chain():
    """A depth-40 chain keeps a constant number of live arrays: buffers are recycled."""
    syms = sp.symbols("u0:41")
    chain = tuple((syms[k + 1], sp.sin(syms[k]) * syms[k] + 1) for k in range(40))
    prog = Program((syms[0],), chain, (syms[-1],))
    assert prog.source_inplace([syms[0]]).count("= _ws(") <= 3
    with pytest.raises(errors.InvalidArgument) as info:
        prog.compile_inplace([x])
    assert info.value.argument == "arrays"


def test_workspace_views_follow_its_shape():
    ws = Workspace((3, 4))
    a0 = ws("a")
    a0[...] = 1.0
    ws.shape = (2, 2)
    assert ws("a").shape == (2, 2) and np.shares_memory(ws("a"), a0)
    ws.shape = (5, 5)                                 # larger: a new buffer
    assert ws("a").shape == (5, 5) and ws.child("k").shape == (5, 5)
    assert ws("m", bool).dtype == bool


def test_inplace_source_does_not_depend_on_the_hash_seed():
    """Buffer assignment follows a fixed order, so the generated code is reproducible."""
    import os
    import subprocess
    import sys
    code = ("from symbrg.kernels.architecture import S11, S22, S12, mlp\n"
            "r, c, p = mlp('relu', 2, 1.3, 0.2).ntk_program.partition([S11], [S22], [S12])\n"
            "print(p.source_inplace([S12, *[o for o in r.outputs if 'hoisted_c' not in o.name], *c.outputs]))")
    sources = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("0", "4")}
    assert len(sources) == 1


# ------------------------------------------------------------------ linear cost (no timing: counted work)
def _sympy_work(monkeypatch, fn):
    """What ``fn()`` costs in SymPy, counted: nodes walked (reads of ``Basic.args``), default free-symbol
    evaluations (``Basic.free_symbols``, once per node of sympy's own recursive walk) and ``Basic.__eq__``
    calls (``tuple.index`` and list scans over symbols).  A loop that re-walks expressions or scans a
    sequence per element makes these grow quadratically with the size of the program."""
    counts = dict.fromkeys(("args", "free_symbols", "eq"), 0)
    eq = sp.Basic.__eq__

    def counted(name):
        prop = sp.Basic.__dict__[name]

        def get(self):
            counts[name] += 1
            return prop.fget(self)
        return property(get)

    def counted_eq(self, other):
        counts["eq"] += 1
        return eq(self, other)
    with monkeypatch.context() as m:
        m.setattr(sp.Basic, "args", counted("args"))
        m.setattr(sp.Basic, "free_symbols", counted("free_symbols"))
        m.setattr(sp.Basic, "__eq__", counted_eq)
        fn()
    return counts


def _assert_linear(small, large, factor, slack=4.5 / 4):
    """Every count of ``large`` (a program ``factor`` times the size) is at most ``factor * slack`` times
    that of ``small`` (quadratic growth would be ``factor ** 2``)."""
    for name, n in small.items():
        assert large[name] <= factor * slack * max(n, 25), (name, small, large)


def test_partition_and_compilation_cost_is_linear_in_depth(monkeypatch):
    """Partition, row/column compilation and the in-place pair compilation of the NNGP+NTK program at
    depth 40 cost at most 4.5x what they cost at depth 10: no per-input scan (``tuple.index`` over the
    pair stage's hundreds of inputs: 10x here), no per-assignment re-walk of the program."""
    from symbrg.kernels.architecture import S11, S12, S22, mlp

    def run(depth):
        prog = mlp("relu", depth, 1.3, 0.2).ntk_program        # derived outside the count
        prog = Program(prog.inputs, prog.assignments, prog.outputs, prog.name)

        def stages():
            row, col, pair = prog.partition([S11], [S22], [S12])
            row.compile()
            col.compile()
            pair.compile_inplace([S12, *(o for o in row.outputs if "hoisted_c" not in o.name), *col.outputs])
            pair.compile("mpmath")
        return _sympy_work(monkeypatch, stages)
    _assert_linear(run(10), run(40), 4)


def _horner(n, k11, k22, k12, w):
    r"""A Mehler-series-like pair expression nested ``n`` deep: :math:`\sum_j a_j(k_{11}) b_j(k_{22}) \rho^j`
    in Horner form, :math:`\rho = k_{12}/\sqrt{k_{11}k_{22}}` (row, column and pair parts at every level)."""
    rho = k12 / sp.sqrt(k11 * k22)
    e = sp.sin(n * k11 + w) * sp.cos(n * k22)
    for j in range(n - 1, -1, -1):
        e = sp.sin(j * k11 + w) * sp.cos(j * k22) + rho * e
    return e


def test_hoisting_and_lowering_cost_is_linear_in_expression_size(monkeypatch):
    """Hoisting (:meth:`Program.partition`) and the in-place lowering of an expression nested 80 deep
    cost at most 4.5x what they cost at 20 deep: a node's class is found once, not by re-walking
    its subtree at every level (which is quadratic in the nesting: 14x here)."""
    k11, k22, k12, w = sp.symbols("k11 k22 k12 w", positive=True)

    def run(n):
        prog = Program((k11, k22, k12, w), ((a, _horner(n, k11, k22, k12, w)), (b, a * _horner(n // 2, k11, k22, k12, w))),
                       (b,), name="horner")

        def stages():
            row, col, pair = prog.partition([k11], [k22], [k12])
            pair.compile_inplace([k12, *(o for o in row.outputs if "hoisted_c" not in o.name), *col.outputs])
        return _sympy_work(monkeypatch, stages)
    _assert_linear(run(20), run(80), 4)


def test_staged_horner_program_reproduces_the_program():
    """The hoisted stages of the nested expression evaluate to the unstaged program."""
    k11, k22, k12, w = sp.symbols("k11 k22 k12 w", positive=True)
    prog = Program((k11, k22, k12, w), ((a, _horner(12, k11, k22, k12, w)),), (a,))
    row, col, pair = prog.partition([k11], [k22], [k12])
    assert len(row) > 10 and len(col) > 10                      # every a_j(k11), b_j(k22) hoisted
    k1, k2 = np.array([[0.7], [1.3]]), np.array([[0.9, 2.0, 1.1]])
    k = np.array([[0.3, -0.5, 0.8], [0.1, 0.9, -1.0]]) * np.sqrt(k1 * k2)
    rv, cv = row.compile()(k1, 0.4), col.compile()(k2, 0.4)
    want = prog.compile()(k1, k2, k, 0.4)
    np.testing.assert_allclose(pair.compile()(k, 0.4, *rv, *cv), want, rtol=1e-13)
    got = pair.compile_inplace([k12, *(o for o in row.outputs if "hoisted_c" not in o.name), *col.outputs])(
        k, 0.4, *rv, *cv, Workspace())
    np.testing.assert_allclose(got, want, rtol=1e-13)


@pytest.mark.parametrize("expr", [x, sp.Integer(3), sp.sin(x), sp.atan2(y, x), ArcCosKernel(1, 1, x, y, s),
                                  sp.Max(x, 0), x**-1, -x * y, x - 1, sp.Float(-2.5)])
def test_atomic_expressions_skip_cse_with_sympys_result(expr):
    """An atom or a function of atoms is returned as SymPy's CSE would return it (nothing repeats)."""
    from symbrg.core.codegen import _cse, _Temps
    temps = _Temps()
    repl, reduced = _cse([expr], temps)
    want_repl, want_reduced = sp.cse([expr], order="none")
    assert (repl, reduced) == (want_repl, want_reduced) and temps.n == 0


def test_symengine_temporaries_are_numbered_across_statements():
    """Large statements take the SymEngine path; their temporaries are t0, t1, ... across the whole
    program, renamed before the conversion back to SymPy, and the values are right."""
    xs = sp.symbols("x0:6", real=True)
    u, v = sp.symbols("u v")
    big = sum((xs[i] + xs[j]) ** 2 * sp.sin(xs[i] + xs[j]) for i in range(6) for j in range(6))
    prog = Program(xs, ((u, big), (v, big * u + sp.cos(big))), (v,))
    src = prog.source()
    temps = sorted({int(t[1:]) for t in re.findall(r"\bt\d+\b", src)})
    assert temps == list(range(len(temps))) and len(temps) > 10
    vals = [0.1 * (i + 1) for i in range(6)]
    want = float(prog.expand()[0].subs(dict(zip(xs, vals))))
    assert prog.compile()(*vals) == pytest.approx(want, rel=1e-12)
