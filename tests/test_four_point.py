"""Tests of the connected four-point function of the cos-net at finite width (symbrg.cosnet.four_point).

The float64 path is checked against the 30-digit mpmath reference, against closed forms (Gaussian
frequencies; coincident points of the generalized cos-net in d = 1, by sympy), against a brute-force
tensor-product quadrature over (|b|, angle of b, phase) that uses neither the phase-average identity nor
the angular average, and against Monte-Carlo ensembles of sampled networks; each Monte-Carlo check has a
mutation it must reject.
"""
from __future__ import annotations

import itertools
import math

import mpmath
import numpy as np
import pytest
import sympy as sp

from symbrg.core import limits
from symbrg.core.errors import (
    InvalidArgument,
    NonFinite,
    NotPositive,
    OutOfRange,
    ShapeMismatch,
    TooExpensive,
    UnknownName,
    Unsupported,
)
from symbrg.cosnet import _radial
from symbrg.cosnet import four_point as fp
from symbrg.cosnet import theory as cn

RTOL = 1e-10          # float64 against the 30-digit reference
Z_AGREE = 3.0         # Monte Carlo agrees within 3 standard errors ...
Z_REJECT = 5.0        # ... and a wrong prediction is off by more than 5


def configurations(d: int, seed: int = 0) -> np.ndarray:
    """Four quadruples in d dimensions: generic, two coincident points, two coincident pairs, all equal."""
    rng = np.random.default_rng(seed + d)
    X = rng.normal(scale=0.8, size=(4, 4, d))
    X[1, 2] = X[1, 0]
    X[2, 1], X[2, 3] = X[2, 0], X[2, 2]
    X[3, :] = X[3, 0]
    return X


# ----------------------------------------------------------------------------- accuracy
@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("k", [None, 2.0, 1.0])
def test_float64_matches_the_30_digit_mpmath_reference(d, k):
    net = cn.generalized_cosnet(d, 4, 1)
    X = configurations(d)
    got = fp.connected_four_point(net, X, 3, k)
    ref = np.array([float(v) for v in fp.connected_four_point_mpmath(net, X, 3, k, dps=30)])
    assert np.all(np.abs(ref) > 1e-4)          # no configuration is a near-cancellation
    np.testing.assert_allclose(got, ref, rtol=RTOL, atol=0)


@pytest.mark.parametrize("make", [lambda: cn.propagator_cosnet(2, 3, 0.5),
                                  lambda: cn.halverson_cosnet(3, 1.3, 0.9),
                                  lambda: cn.generalized_cosnet(3, 4, 0.05, sigma=1.7)],
                         ids=["propagator-d2", "gaussian-d3", "generalized-small-mass-d3"])
def test_other_densities_match_the_mpmath_reference(make):
    net = make()
    X = configurations(int(net.dim), seed=7)[:2]
    for k in (None, 1.5):
        got = fp.connected_four_point(net, X, 5, k)
        ref = [float(v) for v in fp.connected_four_point_mpmath(net, X, 5, k)]
        np.testing.assert_allclose(got, ref, rtol=RTOL, atol=0)


def test_all_equal_points_in_d1_against_sympy():
    """x1 = x2 = x3 = x4: kappa_4 = sigma_a^4/N [(9/8) E s^4 - (3/4) (E s^2)^2], b ~ U[-R, R], by sympy."""
    R, m, N = 4, 1, 7
    net = cn.generalized_cosnet(1, R, m)
    p = sp.Symbol("p", positive=True)
    Es2 = sp.integrate(1 / (p ** 2 + m ** 2), (p, 0, R)) / R
    Es4 = sp.integrate(1 / (p ** 2 + m ** 2) ** 2, (p, 0, R)) / R
    exact = sp.S(net.sigma_a) ** 4 / N * (sp.Rational(9, 8) * Es4 - sp.Rational(3, 4) * Es2 ** 2)
    assert fp.connected_four_point(net, np.full((4, 1), 0.3), N) == pytest.approx(float(exact), rel=1e-14)
    # and the kernel inside it is CosNet.kernel's (K = sigma_a^2 E[s^2] / 2 at r = 0)
    assert net.kernel(np.zeros((1, 1)))[0, 0] == pytest.approx(float(sp.S(net.sigma_a) ** 2 * Es2 / 2), rel=1e-13)


def test_gaussian_frequencies_closed_form():
    """s = 1, b ~ N(0, v 1): F_4(r) = G(r) = exp(-v r^2 / 2)."""
    d, w0, w1, N = 2, 1.3, 0.9, 5
    net = cn.halverson_cosnet(d, w0, w1)
    v = w0 ** 2 / d
    X = np.random.default_rng(1).normal(size=(20, 4, d))

    def g(u):
        return np.exp(-v * (u ** 2).sum(-1) / 2)
    four = sum(g(X[:, i] + X[:, j] - X[:, k] - X[:, l]) for i, j, k, l in _radial.PAIRINGS)
    two = sum(g(X[:, i] - X[:, j]) * g(X[:, k] - X[:, l]) for i, j, k, l in _radial.PAIRINGS)
    exact = w1 ** 4 / N * (3 / 8 * four - two / 4)
    np.testing.assert_allclose(fp.connected_four_point(net, X, N), exact, rtol=1e-12, atol=1e-15)


def test_brute_force_average_over_frequency_angle_and_phase():
    """kappa_4 = (1/N)[3 sigma_a^4 E_{b,c}(s^4 prod cos) - sum K K] with the (b, c) average as a tensor-product
    quadrature in d = 2 (Gauss-Legendre in |b|, trapezoid in the angle of b and in c: exact for these
    trigonometric polynomials), the kernel from CosNet.kernel: neither the phase identity nor Omega_d used."""
    R, m, N = 4.0, 1.0, 3
    net = cn.generalized_cosnet(2, R, m)
    X = configurations(2, seed=3)[0]
    t, wt = np.polynomial.legendre.leggauss(160)
    p, wp = (t + 1) * R / 2, wt * R / 2 * ((t + 1) * R / 2) / (R ** 2 / 2)     # density p dp / (R^2/2)
    phi = np.linspace(0, 2 * np.pi, 96, endpoint=False)
    c = np.linspace(-np.pi, np.pi, 8, endpoint=False)
    b = p[:, None, None] * np.stack([np.cos(phi), np.sin(phi)], -1)[None]      # (p, phi, 2)
    theta = np.einsum("pfd,jd->pfj", b, X)[..., None] + c                      # (p, phi, 4, c)
    integrand = (1 / (p ** 2 + m ** 2) ** 2)[:, None, None] * np.cos(theta).prod(2)
    moment = np.einsum("pfc,p->", integrand, wp) / (phi.size * c.size)
    K = net.kernel(X)
    pairs = sum(K[i, j] * K[k, l] for i, j, k, l in _radial.PAIRINGS)
    brute = (3 * float(net.sigma_a) ** 4 * moment - pairs) / N
    assert fp.connected_four_point(net, X, N) == pytest.approx(brute, rel=1e-11)


def test_phase_average_identity_by_direct_integration_over_c():
    rng = np.random.default_rng(2)
    theta = rng.uniform(-7, 7, size=(6, 4))
    theta[0] = [0.3, 0.3, 0.3, 0.3]
    theta[1] = [0.0, np.pi / 2, 1.0, 2.0]
    for row in theta:
        direct = mpmath.quad(lambda c: mpmath.fprod(mpmath.cos(t + c) for t in row), [-mpmath.pi, 0, mpmath.pi])
        assert fp.phase_average_cos4(row) == pytest.approx(float(direct / (2 * mpmath.pi)), abs=1e-14)
    np.testing.assert_allclose(fp.phase_average_cos4(theta[None]), [[fp.phase_average_cos4(t) for t in theta]])


# ----------------------------------------------------------------------------- structure
def test_one_over_N_and_the_gaussian_limit():
    net = cn.generalized_cosnet(3, 4, 1)
    X = configurations(3)
    base = fp.connected_four_point(net, X, 1)
    for N in (2, 17, 10 ** 6):
        np.testing.assert_allclose(N * fp.connected_four_point(net, X, N), base, rtol=1e-14)
    assert np.max(np.abs(fp.connected_four_point(net, X, 10 ** 9))) < 1e-9     # N -> oo: Gaussian


def test_symmetric_under_permutations_of_the_four_points():
    net = cn.generalized_cosnet(2, 4, 1)
    X = configurations(2, seed=5)[0]
    perms = np.array([X[list(s)] for s in itertools.permutations(range(4))])
    vals = fp.connected_four_point(net, perms, 4)
    np.testing.assert_allclose(vals, vals[0], rtol=1e-13)


def test_translation_and_rotation_invariance():
    net = cn.generalized_cosnet(3, 4, 1)
    X = configurations(3, seed=9)
    Q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))
    moved = X @ Q.T + np.array([1.7, -0.4, 3.1])
    for k in (None, 1.3):
        np.testing.assert_allclose(fp.connected_four_point(net, moved, 4, k), fp.connected_four_point(net, X, 4, k),
                                   rtol=1e-12)


def test_momentum_cutoff_limits():
    """k >= R is the full network; k -> 0 removes everything, kappa_4 ~ k^d (the F_4 term; K K ~ k^2d)."""
    R = 4.0
    for d in (1, 2, 3):
        net = cn.generalized_cosnet(d, R, 1)
        X = configurations(d)
        full = fp.connected_four_point(net, X, 4)
        for k in (R, 10 * R):
            np.testing.assert_array_equal(fp.connected_four_point(net, X, 4, k), full)
        small = fp.connected_four_point(net, X, 4, 1e-3)
        assert np.all(np.abs(small) < 1e-2 ** d * np.abs(full))
        np.testing.assert_allclose(small / fp.connected_four_point(net, X, 4, 5e-4), 2.0 ** d, rtol=1e-3)


def test_method_vectorization_and_shapes():
    net = cn.generalized_cosnet(1, 4, 1)
    X = configurations(1)
    vals = fp.connected_four_point(net, X, 4, 2.0)
    assert vals.shape == (4,)
    assert [fp.connected_four_point(net, x, 4, 2.0) for x in X] == pytest.approx(vals, rel=1e-14)
    assert isinstance(fp.connected_four_point(net, X[0], 4), float)
    assert fp.connected_four_point(net, X[0, :, 0], 4) == fp.connected_four_point(net, X[0], 4)   # d = 1: (4,)
    np.testing.assert_array_equal(net.connected_four_point(X, 4, 2.0), vals)                      # the method
    big = np.random.default_rng(0).normal(size=(3000, 4, 1))
    np.testing.assert_allclose(fp.connected_four_point(net, big, 4)[[0, 1234, 2999]],
                               fp.connected_four_point(net, big[[0, 1234, 2999]], 4), rtol=1e-13)


# ----------------------------------------------------------------------------- Monte Carlo
MC_NET = cn.generalized_cosnet(2, 4, 1)
MC_X = np.array([[0.0, 0.45], [0.2, 0.25], [0.5, 0.1], [0.9, 0.0]])
MC_MEMBERS = 40_000


def test_sampler_draws_the_networks_of_sample_cosnet():
    pts = MC_X
    f = np.concatenate([b for _, b in fp._output_blocks(MC_NET, pts, 8, 300, None, 3, 2 ** 12)])
    np.testing.assert_array_equal(f, cn.sample_cosnet(MC_NET, pts, 300, 8, seed=3, block=2 ** 12))
    # the momentum cutoff is the generalized cos-net's sharp information shell at Lambda = I(k)
    k, N = 1.3, 8
    lam = cn.information_cutoff(k, 1.0, width=N)
    g = np.concatenate([b for _, b in fp._output_blocks(MC_NET, pts, N, 300, k, 3, 2 ** 20)])
    np.testing.assert_allclose(g, cn.sample_cosnet(MC_NET, pts, 300, N, seed=3, cutoff=lam), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("N", [4, 16, 64])
@pytest.mark.parametrize("k", [None, 1.0])
def test_monte_carlo_agrees_with_the_prediction(N, k):
    est, se = fp.sample_four_point(MC_NET, MC_X, N, MC_MEMBERS, k, seed=N)
    pred = fp.connected_four_point(MC_NET, MC_X, N, k)
    assert abs(est - pred) < Z_AGREE * se, (est, se, pred)
    if N == 4:
        assert pred > 10 * se            # the signal is many standard errors: the comparison has power


def test_monte_carlo_rejects_wrong_predictions():
    N = 4
    est, se = fp.sample_four_point(MC_NET, MC_X, N, MC_MEMBERS, seed=N)
    right = fp.connected_four_point(MC_NET, MC_X, N)
    wrong_a4 = _radial.connected_four_point(MC_NET, MC_X, N, None, cn._angular_numpy, a4=1.0)  # E a^4 = sigma_a^4
    assert abs(est - right) < Z_AGREE * se
    assert abs(est - wrong_a4) > Z_REJECT * se
    coarse, se_c = fp.sample_four_point(MC_NET, MC_X, N, MC_MEMBERS, 0.5, seed=N + 1)
    assert abs(coarse - fp.connected_four_point(MC_NET, MC_X, N, 0.5)) < Z_AGREE * se_c
    assert abs(coarse - right) > Z_REJECT * se_c          # coarse-grained ensemble vs the full prediction


def test_delta_method_and_bootstrap_agree():
    X = np.stack([MC_X, MC_X[[0, 0, 1, 1]]])
    est_b, boot = fp.sample_four_point(MC_NET, X, 4, 20_000, seed=11, error="bootstrap")
    est_d, delta = fp.sample_four_point(MC_NET, X, 4, 20_000, seed=11, error="delta")
    np.testing.assert_array_equal(est_b, est_d)           # the same ensemble, the same estimate
    np.testing.assert_allclose(boot, delta, rtol=0.25)


def test_bias_does_not_change_the_connected_four_point_function():
    biased = cn.CosNet(2, MC_NET.frequencies, MC_NET.readout_scale, MC_NET.sigma_a, sp.Rational(7, 10))
    np.testing.assert_array_equal(fp.connected_four_point(biased, MC_X, 4), fp.connected_four_point(MC_NET, MC_X, 4))
    est, se = fp.sample_four_point(biased, MC_X, 4, 20_000, seed=4)
    assert abs(est - fp.connected_four_point(MC_NET, MC_X, 4)) < Z_AGREE * se


# ----------------------------------------------------------------------------- domain errors
def _argument(exc_type, fn, *args, **kw):
    with pytest.raises(exc_type) as info:
        fn(*args, **kw)
    return info.value.argument


def test_domain_errors_name_the_argument():
    net = cn.generalized_cosnet(2, 4, 1)
    X = configurations(2)[0]
    f = fp.connected_four_point
    assert _argument(OutOfRange, f, net, X, 0) == "width"
    assert _argument(InvalidArgument, f, net, X, 2.5) == "width"
    assert _argument(NotPositive, f, net, X, 4, 0.0) == "k"
    assert _argument(NotPositive, f, net, X, 4, -1.0) == "k"
    assert _argument(ShapeMismatch, f, net, X[:3], 4) == "X"
    assert _argument(ShapeMismatch, f, net, np.zeros((2, 4, 3)), 4) == "X"
    assert _argument(NonFinite, f, net, np.where(X == X[0, 0], np.nan, X), 4) == "X"
    assert _argument(InvalidArgument, f, cn.generalized_cosnet(2, cn.R, 1), X, 4) == "net"      # symbolic
    assert _argument(InvalidArgument, f, cn.generalized_cosnet(2, 4, 0), X, 4) == "net"         # E s^4 = oo
    assert _argument(InvalidArgument, f, "cosnet", X, 4) == "net"
    unbounded = cn.CosNet(1, cn.FrequencyDensity("laplace", sp.exp(-cn.P)), sp.Integer(1))
    assert _argument(Unsupported, f, unbounded, X[:, :1], 4) == "net"
    assert _argument(OutOfRange, fp.connected_four_point_mpmath, net, X, 4, dps=5) == "dps"
    with limits.lifted(four_point_quadruples=2):
        assert _argument(TooExpensive, f, net, configurations(2), 4) == "X"
    s = fp.sample_four_point
    assert _argument(OutOfRange, s, net, X, 4, 1) == "members"
    assert _argument(OutOfRange, s, net, X, 0, 100) == "width"
    assert _argument(NotPositive, s, net, X, 4, 100, 0.0) == "k"
    assert _argument(UnknownName, s, net, X, 4, 100, error="jackknife") == "error"
    assert _argument(ShapeMismatch, s, net, X[:, :1], 4, 100) == "X"
    assert _argument(TooExpensive, s, net, X, 10 ** 6, 10 ** 6) == "members"
    assert _argument(InvalidArgument, fp.phase_average_cos4, np.zeros(3)) == "theta"


# ----------------------------------------------------------------------------- figure
def test_plot_four_point_flow():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from symbrg.ensembles.plots import plot_four_point_flow
    net = cn.generalized_cosnet(2, 4, 1)
    fig = Figure()
    ks = np.linspace(0.1, 5.0, 12)
    out = plot_four_point_flow(net, MC_X, widths=(4, 8, 32), ks=ks, ax=fig.subplots())
    ax = out.axes[0]
    assert out is fig and ax.get_yscale() == "log"
    solid = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-" and ln.get_label().startswith("N = ")]
    assert [ln.get_label() for ln in solid] == ["N = 4", "N = 8", "N = 32"]
    np.testing.assert_allclose(solid[0].get_ydata() / solid[2].get_ydata(), 8.0, rtol=1e-12)   # the 1/N law
    np.testing.assert_allclose(solid[1].get_ydata(), [fp.connected_four_point(net, MC_X, 8, k) for k in ks],
                               rtol=1e-12)
    with pytest.raises(OutOfRange) as info:
        plot_four_point_flow(net, MC_X, widths=(0,), ax=Figure().subplots())
    assert info.value.argument == "widths"
    assert math.isfinite(float(solid[0].get_ydata()[0]))
