"""Issue 12, near-parallel inputs: the gap (distance and Gram determinant of the pair) is carried
through every layer, so float64 NNGP and NTK agree with the 50-digit path as c -> 1."""
from fractions import Fraction
from functools import cache

import mpmath
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symbrg.core.codegen import lambdify
from symbrg.gaussian.activations import activation
from symbrg.gaussian.expectations import Q11, Q12, Q22, QD, QE, QH, expectation, gap_map
from symbrg.kernels.architecture import _pair_gap, mlp

# every activation with a closed form that mlp offers; the homogeneous ones carry the accurate gap
HOMOGENEOUS = ["relu", "step", "sign", "abs", "leaky_relu", "abrelu:0.3,1.2", "rectified:2", "identity"]
SMOOTH = ["erf", "gelu", "sin", "gaussian", "exp:1,0.5"]
TOL = 1e-12
# GELU's and erf's NTK at sigma_w = 2 and depth 16-20 accumulate 1e-12 to 6e-12 of rounding for any pair
# (erf, depth 18, d = 2: 1.1e-12 at eps = 1e-6 and 2.7e-12 at eps = 0.5, far from c = 1: the kernel map
# amplifies each layer's rounding by about 1.5), so they get 1e-11; rectified:2 and exp grow
# doubly exponentially with depth and overflow float64 beyond these depths at sigma_w = 2
TOLERANCE = {"gelu": 1e-11, "erf": 1e-11}
MAX_DEPTH = {"rectified:2": 4, "exp:1,0.5": 2}


@cache
def _arch(act: str, depth: int):
    return mlp(act, depth, 1.0, 0.5)          # sigma_w, sigma_b are passed per example through params=


def _pair(d: int, eps: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x, v = rng.standard_normal(d), rng.standard_normal(d)
    return np.stack([x, x + eps * np.linalg.norm(x) * v / np.linalg.norm(v)])


def _worst(act: str, depth: int, X: np.ndarray, sw: float, sb: float) -> dict[str, float]:
    arch = _arch(act, depth)
    params = {"sigma_w": sw, "sigma_b": sb}
    out = {}
    for kind in ("nngp", "ntk"):
        got = getattr(arch, kind)(X, params=params)
        ref = getattr(arch, kind)(X, params=params, precision=50)
        ref = np.array([[float(v) for v in r] for r in ref])
        out[kind] = float(np.max(np.abs(got - ref) / np.abs(ref)))
    return out


# sigma_b whose square underflows float64 (< 1e-154) is taken as 0: mpmath keeps a gap of 1e-616 there,
# which a step network amplifies to ~(1e-616)^(1/2^depth) = 1e-10 at depth 6
near_parallel = dict(d=st.integers(1, 8), eps=st.floats(-15, -6).map(lambda e: 10.0 ** e),
                     seed=st.integers(0, 2 ** 32 - 1), sw=st.floats(0.5, 2.0),
                     sb=st.floats(0.0, 1.0).map(lambda b: b if b > 1e-150 else 0.0))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(depth=st.integers(1, 20), **near_parallel)
def test_relu_near_parallel_agrees_with_50_digits(depth, d, eps, seed, sw, sb):
    """The acceptance test: before the gap was carried, the NTK was off by up to 2e-8 here."""
    worst = _worst("relu", depth, _pair(d, eps, seed), sw, sb)
    assert worst["nngp"] <= TOL and worst["ntk"] <= TOL, worst


def _closed_form_case(act, depth, d, eps, seed, sw, sb):
    depth = min(depth, MAX_DEPTH.get(act, depth))
    worst = _worst(act, depth, _pair(d, eps, seed), sw, sb)
    tol = TOLERANCE.get(act, TOL)
    assert worst["nngp"] <= tol and worst["ntk"] <= tol, worst


@pytest.mark.parametrize("act", [a for a in HOMOGENEOUS if a != "relu"])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(depth=st.integers(1, 20), **near_parallel)
def test_homogeneous_near_parallel_agree_with_50_digits(act, depth, d, eps, seed, sw, sb):
    """Step and sign were off by up to 0.7 (their angle map has infinite slope at c = 1), abs and
    leaky ReLU NTKs by 3e-8, before the gap was carried."""
    _closed_form_case(act, depth, d, eps, seed, sw, sb)


@pytest.mark.parametrize("act", SMOOTH)
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(depth=st.integers(1, 20), **near_parallel)
def test_smooth_near_parallel_agree_with_50_digits(act, depth, d, eps, seed, sw, sb):
    """Smooth kernels need no gap at c = 1 (they carry the plain one)."""
    _closed_form_case(act, depth, d, eps, seed, sw, sb)


def test_issue_example_depth_10_relu_ntk():
    """The case of the issue: correlation within ~1e-13 of 1, depth 10 (2e-8 before)."""
    X = _pair(5, 3e-7, 7)
    c = X[0] @ X[1] / np.linalg.norm(X[0]) / np.linalg.norm(X[1])
    assert 1 - c < 1e-12
    worst = _worst("relu", 10, X, 1.4, 0.1)
    assert worst["ntk"] <= TOL and worst["nngp"] <= TOL, worst


def test_gram_tiles_with_near_duplicates():
    """Near-duplicate rows inside and across tiles, square and cross Gram matrices: the entries that
    take the exact input-gap path agree with 50 digits, the diagonal keeps c = 1 exactly."""
    rng = np.random.default_rng(3)
    base = rng.standard_normal((5, 4))
    X = np.vstack([base, base * 1.3 + 1e-9 * rng.standard_normal((5, 4)), base + 1e-13])
    arch = mlp("relu", 6, 1.3, 0.3)
    for kind in ("nngp", "ntk"):
        got = getattr(arch, kind)(X, block=16)
        ref = np.array([[float(v) for v in r] for r in getattr(arch, kind)(X, precision=50)])
        np.testing.assert_allclose(got, ref, rtol=TOL, atol=0)
        assert np.array_equal(got, got.T)
        cross = getattr(arch, kind)(X[:7], X[5:], block=9)
        np.testing.assert_allclose(cross, ref[:7, 5:], rtol=TOL, atol=0)


def _exact_gap(x: np.ndarray, y: np.ndarray) -> tuple[Fraction, Fraction]:
    fx, fy = [Fraction(v) for v in x], [Fraction(v) for v in y]
    dot = lambda a, b: sum(p * q for p, q in zip(a, b))  # noqa: E731
    return dot([a - b for a, b in zip(fx, fy)], [a - b for a, b in zip(fx, fy)]), \
        dot(fx, fx) * dot(fy, fy) - dot(fx, fy) ** 2


@settings(max_examples=200, deadline=None)
@given(d=st.integers(1, 8), eps=st.floats(-16, 0).map(lambda e: 10.0 ** e), seed=st.integers(0, 2 ** 32 - 1),
       scale=st.sampled_from([1.0, -1.0, 3.0, 1e-3]))
def test_pair_gap_is_accurate(d, eps, seed, scale):
    """|x - y|^2 and |x ^ y|^2 of nearly parallel (or anti-parallel) rows to a few ulp, where the
    formula from x.y would lose everything."""
    X = _pair(d, eps, seed)
    x, y = X[0], X[1] * scale
    dist, wedge = _pair_gap(x[None, :], y[None, :])
    want_d, want_w = _exact_gap(x, y)
    assert abs(Fraction(float(dist[0])) - want_d) <= 1e-14 * want_d
    floor = Fraction(1e-40) * Fraction(float(x @ x)) * Fraction(float(y @ y))   # exactly parallel: ~0
    assert abs(Fraction(float(wedge[0])) - want_w) <= 1e-13 * want_w + floor


@pytest.mark.parametrize("act", HOMOGENEOUS)
def test_gap_map_equals_its_definition(act):
    r"""D_phi = E11 + E22 - 2 E12 and Delta_phi = E11 E22 - E12^2, evaluated at 60 digits from the
    closed form, against the float64 gap update, on both sides of the series switch of H."""
    phi = activation(act)
    update = gap_map(phi)
    e = expectation(phi)
    E64 = lambdify(e.expr, (Q11, Q12, Q22))
    E = lambdify(e.expr, (Q11, Q12, Q22), backend="mpmath", dps=60)
    H = lambdify(update.angular, (QD, Q12, QE, Q11, Q22))
    dist_gap = lambdify([update.distance, update.gap], (Q11, Q22, QH))
    switch = update.angular.func.switch
    for q11, q22, theta in [(1.3, 0.7, 1e-9), (1.0, 1.0 + 1e-12, 1e-6), (2.0, 0.5, 0.3), (0.8, 0.9, 2.5),
                            (1.1, 1.1, 0.999 * switch), (1.1, 1.1, 1.001 * switch), (0.6, 1.7, 1.4)]:
        with mpmath.workdps(60):
            a, b = mpmath.sqrt(q11), mpmath.sqrt(q22)
            q12, det = a * b * mpmath.cos(theta), q11 * q22 * mpmath.sin(theta) ** 2
            E11, E22, E12 = E(q11, q11, q11), E(q22, q22, q22), E(q11, q12, q22)
            want_d, want_g = E11 + E22 - 2 * E12, E11 * E22 - E12 ** 2
        h = H(float(det), float(q12), E64(q11, float(q12), q22), q11, q22)
        got_d, got_g = dist_gap(q11, q22, h)
        # D_phi: error below eps sqrt(E11 D_phi) (the rounding of a^n - b^n, see gap_map)
        assert abs(got_d - float(want_d)) <= 1e-13 * abs(float(want_d)) + 1e-15 * float(
            mpmath.sqrt(E11 * want_d)), (q11, q22, theta)
        assert abs(got_g - float(want_g)) <= 1e-13 * abs(float(want_g)), (q11, q22, theta)


def test_smooth_activations_have_no_gap_map():
    """erf, GELU, ... are not homogeneous: they carry the plain gap (and need none at c = 1)."""
    assert all(gap_map(activation(a)) is None for a in SMOOTH + ["tanh"])
