"""Tests of the Gaussian-expectation engine (symbrg.gaussian.expectations) and its stable nodes (symbrg.core.special).

Closed forms are checked against independent 2-D quadrature (NumPy split Gauss-Legendre, and
mpmath for the kinked activations), against Monte Carlo (5 standard errors from the sample),
against Price's theorem, and for numerical honesty: the float64 code generated from one
expression must match a 50-digit mpmath evaluation of that expression to 1e-12 relative, also
within 1e-12 of c = +1 and c = -1.
"""
from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from symbrg.core.derivation import check_identity
from symbrg.core.errors import InvalidArgument, NotPositive, UnknownName, Unsupported
from symbrg.core.special import ArcCosKernel
from symbrg.gaussian.activations import X, activation
from symbrg.gaussian.expectations import Q11, Q12, Q22, expectation, expectation_derivation, explicit

CLOSED = ["relu", "leaky_relu:0.2", "abrelu:-0.5,2", "abs", "rectified:0", "rectified:1", "rectified:2",
          "rectified:3", "rectified:4", "step", "sign", "identity", "affine:2,-1", "monomial:5", "monomial:6",
          "polynomial:0.5,-1,0.25,0,0.3,0,-0.1", "erf", "erf:2,0.5,0.3", "gelu", "exp:1,0.5",
          "gaussian", "gaussian:2", "sin", "cos", "sin:1.5,0.7,0.3", "cos:0.8,1.3,-1.1", "cosnet",
          "cosnet:2,0.7"]
MIXED = [("rectified:1", "rectified:3"), ("rectified:0", "rectified:2"), ("erf:1,2,0", "erf:0.5,0.7,0.1"),
         ("affine:2,1", "relu"), ("monomial:3", "erf"), ("polynomial:1,0,2", "sin:1,1.2,0.4"),
         ("sign", "relu"), ("sin:1,1,0.3", "cos:2,0.5,0"), ("identity", "gelu"), ("monomial:2", "exp:1,0.3"),
         ("leaky_relu", "abs"), ("cosnet", "relu")]
POINTS = [(1.3, -0.4, 0.7), (0.3, 0.9, 2.5), (4.0, -0.97, 0.05)]   # (q11, c, q22): unequal, non-unit


def _q12(q11: float, c: float, q22: float) -> float:
    return c * math.sqrt(q11 * q22)


def _scale(e, q11: float, q22: float) -> float:
    """sqrt(E[f(u)^2] E[g(v)^2]): the natural size of E[f(u) g(v)] (Cauchy-Schwarz)."""
    ef = expectation(e.f, derivative=e.derivative).compile()
    eg = expectation(e.g, derivative=e.derivative).compile()
    return math.sqrt(abs(float(ef(q11, q11, q11))) * abs(float(eg(q22, q22, q22))))


# ------------------------------------------------------------------ closed forms vs quadrature
@pytest.mark.parametrize("derivative", [False, True])
@pytest.mark.parametrize("name", CLOSED)
def test_closed_form_against_quadrature(name, derivative):
    e = expectation(name, derivative=derivative)
    assert e.method == "exact" and e.order is None and e.bound is None and e.degree is None
    q = expectation(name, derivative=derivative, method="quadrature", degree=24)
    assert q.method == "quadrature" and q.degree == 24
    ex, qu = e.compile(), q.compile()
    for q11, c, q22 in POINTS:
        q12 = _q12(q11, c, q22)
        a, b = float(ex(q11, q12, q22)), float(qu(q11, q12, q22))
        assert a == pytest.approx(b, rel=1e-9, abs=1e-11 * max(1.0, _scale(e, q11, q22))), (name, q11, c, q22)


@pytest.mark.parametrize("derivative", [False, True])
@pytest.mark.parametrize("f,g", MIXED)
def test_mixed_pairs_closed_and_correct(f, g, derivative):
    e = expectation(f, g, derivative=derivative)
    assert e.method == "exact", (f, g, e.rule)
    q = expectation(f, g, derivative=derivative, method="quadrature", degree=24)
    for q11, c, q22 in POINTS:
        q12 = _q12(q11, c, q22)
        a, b = float(e.compile()(q11, q12, q22)), float(q.compile()(q11, q12, q22))
        assert a == pytest.approx(b, rel=1e-9, abs=1e-11 * max(1.0, _scale(e, q11, q22))), (f, g, q11, c)


@pytest.mark.parametrize("name", ["relu", "rectified:2", "abrelu:-0.5,2", "sign", "gaussian:0.7",
                                  "sin:1,1,0.5"])
def test_closed_forms_against_mpmath_quadrature(name):
    """Independent reference: nested mpmath.quad split at the kinks (12 digits)."""
    e = expectation(name)
    node = expectation(name, method="quadrature").expr.func
    q11, c, q22 = 1.7, -0.55, 0.6
    q12 = _q12(q11, c, q22)
    with mpmath.workdps(12):
        ref = node.mpmath_impl(q11, q12, q22)
    assert float(e.compile()(q11, q12, q22)) == pytest.approx(float(ref), rel=1e-10, abs=1e-12)


def test_mixed_smooth_pair_without_closed_form_uses_series():
    e = expectation("erf:1,0.8,0.2", "sin:1,1,0.5")
    assert e.method == "series" and e.bound <= 1e-10
    q = expectation("erf:1,0.8,0.2", "sin:1,1,0.5", method="quadrature", degree=24)
    assert float(e.compile()(0.9, 0.3, 1.4)) == pytest.approx(float(q.compile()(0.9, 0.3, 1.4)), abs=1e-10)


def test_arccos_symbolic_for_any_order_matches_cho_saul_recursion():
    """J_n from the polar integral equals Cho & Saul's
    (-1)^n sin^(2n+1) (1/sin d/dtheta)^n ((pi - theta)/sin)."""
    th = sp.Symbol("theta", positive=True)
    for n in range(6):
        h = (sp.pi - th) / sp.sin(th)
        for _ in range(n):
            h = sp.diff(h, th) / sp.sin(th)
        jn = (-1) ** n * sp.sin(th) ** (2 * n + 1) * h
        ours = 2 * sp.pi * ArcCosKernel.explicit(n, n, sp.Integer(1), sp.cos(th), sp.Integer(1))
        ours = explicit(ours)
        ver = check_identity(ours, jn, domain={th: (0.05, 3.1)}, points=8, dps=30, simplify=False)
        assert ver.verified, (n, ver)


def test_polynomial_of_high_degree_at_unequal_variances_by_wick():
    """E[u^7 v^9] against the Hermite-free formula via sympy's exact Gaussian integral at q11=2, q22=3."""
    e = expectation("monomial:7", "monomial:9")
    u, v = sp.symbols("u v", real=True)
    q11, q12, q22 = sp.Integer(2), sp.Rational(1, 2), sp.Integer(3)
    det = q11 * q22 - q12 ** 2
    dens = sp.exp(-(q22 * u ** 2 - 2 * q12 * u * v + q11 * v ** 2) / (2 * det)) / (2 * sp.pi * sp.sqrt(det))
    ref = sp.integrate(sp.integrate(u ** 7 * v ** 9 * dens, (v, -sp.oo, sp.oo)), (u, -sp.oo, sp.oo))
    assert sp.simplify(explicit(e.expr).subs({Q11: q11, Q12: q12, Q22: q22}) - ref) == 0


# ------------------------------------------------------------------ Monte Carlo
@pytest.mark.parametrize("name,other", [("relu", None), ("erf:1,2,0.1", None), ("rectified:3", "relu"),
                                        ("sin:1,1,0.3", None), ("cosnet:1,1.5", None),
                                        ("gelu", "monomial:2")])
def test_monte_carlo(name, other):
    rng = np.random.default_rng(7)
    q11, q12, q22 = 1.4, 0.5, 0.8
    n = 200_000
    L = np.linalg.cholesky([[q11, q12], [q12, q22]])
    u, v = L @ rng.standard_normal((2, n))
    f = activation(name)
    g = f if other is None else activation(other)
    if f.random_phase:
        phase = rng.uniform(-np.pi, np.pi, n)
        samples = f(u, phase=phase) * g(v, phase=phase)
    else:
        samples = f(u) * g(v)
    se = samples.std(ddof=1) / math.sqrt(n)
    exact = float(expectation(name, other).compile()(q11, q12, q22))
    assert abs(samples.mean() - exact) <= 5 * se, (name, samples.mean(), exact, se)


# ------------------------------------------------------------------ Price's theorem
@pytest.mark.parametrize("name", ["relu", "rectified:3", "erf:2,0.5,0.3", "sin:1.5,0.7,0.3", "exp:1,0.5",
                                  "monomial:5", "cosnet:1,2", "leaky_relu:0.1"])
def test_price_theorem(name):
    """d/dq12 E[f g] = E[f' g']: the derivative kernel is built from the derivative's own atoms
    (e.g. erf' is a Gaussian, so the gaussian-det rule), independently of the kernel's closed form."""
    e, d = expectation(name), expectation(name, derivative=True)
    assert not d.rule.startswith("price(")
    ver = check_identity(sp.diff(e.explicit(), Q12), d.explicit(),
                         domain={Q11: (1.0, 2.0), Q22: (1.0, 2.0), Q12: (-0.9, 0.9)}, points=6, dps=30,
                         simplify=False)
    assert ver.verified, (name, ver)


def test_price_theorem_for_price_derived_kernels_against_quadrature():
    """GELU' and Gaussian' are not atoms: their derivative kernels come from Price's theorem, so the
    independent check is quadrature of E[f'(u) g'(v)]."""
    for name in ("gelu", "gaussian:0.7"):
        d = expectation(name, derivative=True)
        assert d.rule.startswith("price(")
        q = expectation(name, derivative=True, method="quadrature", degree=24)
        want = float(q.compile()(1.1, 0.3, 0.6))
        assert float(d.compile()(1.1, 0.3, 0.6)) == pytest.approx(want, rel=1e-10)


def test_derivative_convention_for_jumps_is_almost_everywhere():
    assert expectation("step", derivative=True).expr == 0
    assert expectation("sign", derivative=True).expr == 0
    d = expectation("relu", derivative=True)           # relu' = step: arccos J_0
    assert float(d.compile()(1.0, 0.0, 1.0)) == pytest.approx(0.25)


# ------------------------------------------------------------------ numerical honesty (float64 vs 50 digits)
HONEST_POSITIVE = ["relu", "rectified:0", "rectified:2", "rectified:4", "step", "abs", "sign", "erf",
                   "erf:1,3,0", "exp:1,0.5", "gaussian", "cosnet:1,1.3"]
HONEST_SIGNED = ["leaky_relu:0.2", "polynomial:0.5,-1,0.25,0,0.3", "monomial:5", "erf:2,0.5,0.3", "gelu",
                 "sin", "cos", "sin:1.5,0.7,0.3", "identity"]
_COMPILED: dict = {}


def _both(name: str, derivative: bool):
    key = (name, derivative)
    if key not in _COMPILED:
        e = expectation(name, derivative=derivative)
        _COMPILED[key] = (e, e.compile("numpy"), e.compile("mpmath", dps=50))
    return _COMPILED[key]


_near_one = st.floats(0, 1e-12)
correlations = st.one_of(st.floats(-1, 1), _near_one.map(lambda d: 1.0 - d),
                         _near_one.map(lambda d: -1.0 + d),
                         st.sampled_from([-1.0, 1.0, 0.0, 1 - 2 ** -52, -1 + 2 ** -53]))
variances = st.floats(1e-2, 1e2)


@settings(max_examples=50, deadline=None)
@given(name=st.sampled_from(HONEST_POSITIVE + HONEST_SIGNED), derivative=st.booleans(), q11=variances,
       q22=variances, c=correlations)
def test_float64_matches_50_digit_mpmath(name, derivative, q11, q22, c):
    e, fnp, fmp = _both(name, derivative)
    q12 = c * math.sqrt(q11 * q22)                   # the rounded float64 input both evaluations share
    a = float(fnp(q11, q12, q22))
    with mpmath.workdps(50):
        b = fmp(q11, q12, q22)
    assert math.isfinite(a)
    # signed kernels cross zero: there the natural size sqrt(E[f^2] E[g^2]) sets the floor; 1e-300
    # admits the rounding of subnormal results (hypothesis likes c = 2e-313)
    floor = 1e-15 * _scale(e, q11, q22) if name in HONEST_SIGNED else 1e-300
    assert abs(a - float(b)) <= 1e-12 * abs(float(b)) + floor, (name, derivative, q11, q22, c, a, b)


@pytest.mark.parametrize("name", ["relu", "rectified:3", "erf", "sign", "gelu", "abs"])
def test_no_nan_when_rounding_pushes_correlation_past_one(name):
    fn = expectation(name).compile()
    q11 = np.array([1.1, 0.3, 7.0])
    q22 = np.array([0.9, 0.3, 2.0])
    for c in (1.0, -1.0):
        q12 = c * np.sqrt(q11 * q22) * (1 + 4e-16)         # |c| slightly above 1 by rounding
        out = fn(q11, q12, q22)
        assert np.all(np.isfinite(out))


def test_arccos_near_minus_one_keeps_relative_accuracy():
    """J_1 ~ psi^3/3 as c -> -1: the naive closed form loses everything, the node does not."""
    q11 = q22 = 1.0
    for delta in (1e-6, 1e-10, 1e-14):
        q12 = -1.0 + delta
        with mpmath.workdps(60):
            ref = ArcCosKernel.mpmath_impl(1, 1, q11, q12, q22)
        got = ArcCosKernel.numpy_impl(1, 1, q11, q12, q22)
        assert abs(got - float(ref)) <= 1e-13 * float(ref)


# ------------------------------------------------------------------ series and generic activations
def test_tanh_series_within_its_bound():
    e = expectation("tanh", tol=1e-8)
    assert e.method == "series" and e.rule == "mehler" and 0 < e.order <= 400 and e.bound <= 1e-8
    q = expectation("tanh", method="quadrature", degree=24).compile()
    from symbrg.core.codegen import lambdify
    b = lambdify(e.bound_expr, [Q11, Q12, Q22])
    q11 = np.array([0.02, 0.5, 1.3, 3.9, 3.9])
    q22 = np.array([0.03, 2.0, 0.7, 3.0, 3.9])
    c = np.array([0.3, -0.99, 0.5, 0.999, 1.0])
    q12 = c * np.sqrt(q11 * q22)
    fixed = lambdify(e.expr, [Q11, Q12, Q22])               # the series at its one order, written out
    err = np.abs(fixed(q11, q12, q22) - q(q11, q12, q22))
    assert np.all(err <= b(q11, q12, q22) + 1e-13)
    assert np.all(b(q11, q12, q22) <= e.bound * (1 + 1e-9))
    # compile(): the vectorized node, truncated per entry within its own certified bound (<= tol)
    err = np.abs(e.compile()(q11, q12, q22) - q(q11, q12, q22))
    own = e.error_bound(q11, q12, q22)
    assert np.all(err <= own + 1e-13) and np.all(own <= 1e-8)
    d = expectation("tanh", derivative=True)            # sech^2: about 300 orders for 1e-10 on [0.01, 4]
    assert d.method == "series" and d.bound <= 1e-10
    qd = expectation("tanh", derivative=True, method="quadrature", degree=24).compile()
    small = (np.array([1e-3, 0.05]), np.array([1e-4, 0.01]), np.array([2e-3, 0.02]))   # no under/overflow
    assert np.allclose(d.compile()(*small), qd(*small), rtol=0, atol=1e-10)
    assert np.all(np.abs(d.compile()(q11, q12, q22) - qd(q11, q12, q22)) <= 1e-10 + 1e-13)


def test_generic_derivative_and_lambda_and_poly_times_generic():
    x = sp.Symbol("y", real=True)
    e = expectation(sp.Lambda(x, sp.atan(x)), derivative=True, tol=1e-9, variance_range=(0.01, 1.0))
    q = expectation(sp.Lambda(x, sp.atan(x)), derivative=True, method="quadrature", degree=24)
    assert e.method == "series"
    assert float(e.compile()(0.7, 0.2, 1.1)) == pytest.approx(float(q.compile()(0.7, 0.2, 1.1)), abs=1e-9)
    p = expectation("monomial:3", "softplus")     # Mehler series of a cubic terminates at order 3
    assert p.method == "series" and p.order <= 3
    qp = expectation("monomial:3", "softplus", method="quadrature", degree=24)
    assert float(p.compile()(0.8, -0.3, 1.5)) == pytest.approx(float(qp.compile()(0.8, -0.3, 1.5)), rel=1e-10)


def test_forced_series_and_forced_quadrature_for_closed_forms():
    s = expectation("erf", method="series", tol=1e-10)
    assert s.method == "series"
    want = float(expectation("erf").compile()(0.5, 0.2, 0.8))
    assert float(s.compile()(0.5, 0.2, 0.8)) == pytest.approx(want, abs=1e-10)


def test_mpmath_evaluation_of_series_node_matches_numpy():
    from symbrg.gaussian.expectations import _hermite_coefficient_class
    node = _hermite_coefficient_class(activation("tanh"), False)
    with mpmath.workdps(20):
        for n in (1, 3, 8):
            assert float(node.mpmath_impl(n, 0.7)) == pytest.approx(float(node.numpy_impl(n, 0.7)), abs=1e-13)


# ------------------------------------------------------------------ records, printing, derivations
def test_result_records_and_latex():
    e = expectation("relu")
    assert e.rule == "arccos-J1" and "mathcal{J}" in sp.latex(e.expr) and "atan" in e.latex()
    assert r"\sum_{n=0}" in expectation("softplus").latex()
    assert expectation("erf").rule == "erf-arcsin"
    assert expectation("rectified:3").rule == "arccos-J3"
    assert expectation("cosnet").rule == "cosnet-uniform-phase"
    assert expectation("cos").expr.free_symbols <= {Q11, Q12, Q22}
    # uniform-phase cos-net: a^2/2 exp(-b^2 (q11 + q22 - 2 q12)/2), translation invariant
    a, b = 2, sp.Rational(7, 10)
    ref = sp.Rational(a * a, 2) * sp.exp(-b ** 2 * (Q11 + Q22 - 2 * Q12) / 2)
    assert sp.simplify(expectation(f"cosnet:{a},{b}").expr - ref) == 0


def test_derivation_is_verified():
    d = expectation_derivation("relu", derivative=True)
    assert d.result.verification.verified and d.result.label.endswith("price")
    assert "arccos" in d.to_text().lower() or "J" in d.to_latex()
    assert expectation_derivation("erf").result.verification.verified


# ------------------------------------------------------------------ bad input
def test_bad_input():
    with pytest.raises(UnknownName) as err:
        expectation("no-such-activation")
    assert err.value.argument == "activation"
    with pytest.raises(Unsupported) as err:
        expectation("tanh", method="exact")
    assert err.value.argument == "method"
    for tol in (0, -1e-3):
        with pytest.raises(NotPositive) as err:
            expectation("relu", tol=tol)
        assert err.value.argument == "tol"
    with pytest.raises(UnknownName) as err:
        expectation("relu", method="magic")
    assert err.value.argument == "method"
    with pytest.raises(Unsupported):
        expectation("cosnet", method="series")
    with pytest.raises(InvalidArgument) as err:
        expectation("relu", variance_range=(2.0, 1.0))
    assert err.value.argument == "variance_range"
    with pytest.raises(InvalidArgument):
        expectation(sp.Lambda((X, sp.Symbol("z")), X))


def test_series_and_quadrature_nodes_are_differentiable():
    """d/dq of a Hermite coefficient through f' (kernel programs differentiate in hyperparameters);
    d/dq12 of a quadrature node is the quadrature of E[f' g'] (Price)."""
    from symbrg.core.codegen import lambdify
    e = expectation("tanh", tol=1e-8)
    d11 = lambdify(sp.diff(e.expr, Q11), [Q11, Q12, Q22])
    fn, h = e.compile(), 1e-5
    fd = (fn(0.9 + h, 0.3, 1.2) - fn(0.9 - h, 0.3, 1.2)) / (2 * h)
    assert float(d11(0.9, 0.3, 1.2)) == pytest.approx(float(fd), rel=1e-6)
    q = expectation("softplus", "tanh", method="quadrature", degree=24)
    dq = lambdify(sp.diff(q.expr, Q12), [Q11, Q12, Q22])
    ref = expectation("softplus", "tanh", derivative=True, method="quadrature", degree=24).compile()
    assert float(dq(0.9, 0.3, 1.2)) == pytest.approx(float(ref(0.9, 0.3, 1.2)), rel=1e-12)
    d22 = lambdify(sp.diff(q.expr, Q22), [Q11, Q12, Q22])      # (1/2) E[f g''] for smooth f, g
    fq = q.compile()
    fd = (fq(0.9, 0.3, 1.2 + h) - fq(0.9, 0.3, 1.2 - h)) / (2 * h)
    assert float(d22(0.9, 0.3, 1.2)) == pytest.approx(float(fd), rel=1e-6)
    with pytest.raises(Unsupported):          # relu'' is a delta: refused, not dropped
        sp.diff(expectation("relu", "tanh", method="quadrature").expr, Q11)
