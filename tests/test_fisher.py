"""Tests for symbrg.information.fisher (closed-form metrics, Jeffreys priors, identities) and symbrg.information.spectrum
(numeric ensemble Fisher, stiff/sloppy split, infinite-width link)."""
from __future__ import annotations

import tracemalloc

import mpmath
import numpy as np
import pytest
import sympy as sp
import sympy.stats as st
from hypothesis import given, settings
from hypothesis import strategies as hs

from symbrg.cli import main
from symbrg.core import codegen, errors
from symbrg.information.fisher import (
    check_kl_curvature,
    check_reparametrization,
    check_score_identity,
    exponential_family,
    gaussian_family,
    gaussian_process,
    gaussian_regression,
    gp_fisher,
    jeffreys_prior,
    network_fisher,
)
from symbrg.information.spectrum import (
    fisher_dense,
    fisher_diagonal,
    kernel_operator_spectrum,
    mercer_features,
    readout_fisher_spectrum,
    readout_jacobian,
    shell_split,
)

SETTINGS = settings(max_examples=25, deadline=None)
mu, a, b, c = sp.symbols("mu a b c", real=True)
s, sigma, ell, u, v = sp.symbols("s sigma ell u v", positive=True)
x, xp = sp.symbols("x xp", real=True)


# ----------------------------------------------------------------------- textbook closed forms
def test_gaussian_mean_and_variance():
    m = gaussian_family([mu], [[sigma ** 2]], [mu])
    assert sp.simplify(m[0, 0] - 1 / sigma ** 2) == 0
    assert m.derivation.verified
    j = jeffreys_prior(m)
    assert j.improper is True and "location" in j.reason and not j.density.has(mu)
    v_ = gaussian_family([mu], [[s]], [s])
    assert sp.simplify(v_[0, 0] - 1 / (2 * s ** 2)) == 0
    jv = jeffreys_prior(v_)
    assert jv.improper is True and "scale" in jv.reason
    assert sp.simplify(jv.density * s).free_symbols == set()  # ∝ 1/s
    joint = gaussian_family([mu], [[s]], [mu, s])
    assert joint.matrix == sp.Matrix([[1 / s, 0], [0, 1 / (2 * s ** 2)]])
    jj = jeffreys_prior(joint)
    assert jj.improper is True
    assert sp.simplify(jj.density * s ** sp.Rational(3, 2)).free_symbols == set()  # ∝ s^{-3/2}


def test_regression_with_noise_parameter_and_input_distribution():
    r = gaussian_regression(a * x + b * x ** 2, [a, b, sigma], x, sigma=sigma,
                            distribution=st.Normal("X", 0, 1))
    assert r.matrix == sp.Matrix([[1 / sigma ** 2, 0, 0], [0, 3 / sigma ** 2, 0], [0, 0, 2 / sigma ** 2]])
    assert r.derivation.verified
    d = gaussian_regression(a * x, [a], x, sigma=2, data=[1, 2, 3])
    assert d[0, 0] == sp.Rational(14, 3) / 4
    with pytest.raises(errors.Unsupported) as e:
        gaussian_regression(a * sp.atan(x), [a], x, distribution=st.Normal("X", 0, 1))
    assert e.value.argument == "distribution"


def test_gp_rbf_length_scale_closed_form():
    r = sp.Symbol("r", positive=True)
    g = gaussian_process(sp.exp(-(x - xp) ** 2 / (2 * ell ** 2)), [0, r], [ell], inputs=(x, xp))
    rho = sp.exp(-r ** 2 / (2 * ell ** 2))
    drho = sp.diff(rho, ell)
    expected = (1 + rho ** 2) * drho ** 2 / (1 - rho ** 2) ** 2  # ½ tr((K⁻¹K')²) by hand
    from symbrg.core.derivation import check_identity
    assert check_identity(g[0, 0], expected).verified
    assert g.derivation.verified
    # the numeric GP metric (any T, with noise) is the same formula
    X = np.array([0.0, 0.4])
    sym = gaussian_process(sp.exp(-(x - xp) ** 2 / (2 * ell ** 2)), [0, sp.Rational(2, 5)], [ell],
                           inputs=(x, xp), noise_var=sp.Rational(1, 10), verify=False)
    num = gp_fisher(sp.exp(-(x - xp) ** 2 / (2 * ell ** 2)), X, {ell: 0.7}, noise_var=0.1, inputs=(x, xp))
    assert np.allclose(num, sym.compile()(0.7), rtol=1e-10)


def test_gp_over_nngp_hyperparameters_symbolic_equals_numeric():
    import symbrg
    sw, sb = sp.symbols("sigma_w sigma_b", positive=True)
    pts = [(1, 0), (sp.Rational(1, 2), 1), (-1, sp.Rational(1, 3))]
    g = gaussian_process(symbrg.mlp("relu", 1, sw, sb), pts, [sw, sb], noise_var=sp.Rational(1, 10),
                         verify=False)
    X = np.array([[1.0, 0.0], [0.5, 1.0], [-1.0, 1 / 3]])
    for w, bias in ((1.3, 0.2), (0.7, 1.1)):
        num = gp_fisher(symbrg.mlp("relu", 1, w, bias), X, {"sigma_w": w, "sigma_b": bias}, noise_var=0.1)
        assert np.allclose(g.compile()(w, bias), num, rtol=1e-9)
        assert np.all(np.linalg.eigvalsh(num) > 0)
    deep = gp_fisher(symbrg.mlp("erf", 3, 1.3, 0.2), np.random.default_rng(0).normal(size=(30, 3)),
                     {"sigma_w": 1.3, "sigma_b": 0.2}, noise_var=0.1)
    assert deep.shape == (2, 2) and np.allclose(deep, deep.T)


def test_exponential_family():
    eta, p = sp.Symbol("eta", real=True), sp.Symbol("p", positive=True)
    bern = exponential_family(sp.log(1 + sp.exp(eta)), [eta], parameters=[p],
                              natural_of={eta: sp.log(p / (1 - p))})
    assert sp.simplify(bern[0, 0] - 1 / (p * (1 - p))) == 0 and bern.derivation.verified
    j = jeffreys_prior(bern, domain={p: (0, 1)})
    assert j.improper is False and sp.simplify(j.normalization - sp.pi) == 0
    # the Gaussian as an exponential family, pulled back to (mu, s), is the Gaussian-family metric
    e1, e2 = sp.symbols("eta1 eta2", real=True)
    A = -e1 ** 2 / (4 * e2) - sp.log(-2 * e2) / 2
    g = exponential_family(A, [e1, e2], parameters=[mu, s], natural_of={e1: mu / s, e2: -1 / (2 * s)})
    assert (g.matrix - gaussian_family([mu], [[s]], [mu, s]).matrix).applyfunc(sp.simplify) == sp.zeros(2, 2)


# ------------------------------------------------------------------------------ identities
_coeff = hs.integers(-3, 3)


def _poly_model(cs):
    """A random polynomial regression function of (a, b) and x (both parameters always present: a
    parameter the model does not contain is refused, as a misspelt one would be)."""
    return cs[0] * a + cs[1] * b * x + cs[2] * a * b + cs[3] * a ** 2 * x + cs[4] * b ** 2 + a * x ** 2 + b * x ** 3


@SETTINGS
@given(hs.lists(_coeff, min_size=5, max_size=5), hs.floats(-1.5, 1.5), hs.floats(-1.5, 1.5),
       hs.floats(0.3, 2.0))
def test_metric_is_symmetric_psd(cs, a0, b0, s0):
    m = gaussian_regression(_poly_model(cs), [a, b, sigma], x, sigma=sigma, data=[-1, 0.5, 2], verify=False)
    F = m.compile()(a0, b0, s0)
    assert np.allclose(F, F.T)
    lam = np.linalg.eigvalsh(F)
    assert lam.min() >= -1e-10 * max(1.0, lam.max())


@settings(max_examples=15, deadline=None)
@given(hs.lists(_coeff, min_size=5, max_size=5), hs.integers(0, 2), hs.integers(-2, 2), hs.integers(0, 2))
def test_reparametrization_covariance(cs, k1, k2, k3):
    # exact data: a Float input would carry 53-bit coefficients into a check made at 30 digits
    model = gaussian_regression(_poly_model(cs), [a, b, sigma], x, sigma=sigma,
                                data=[-1, sp.Rational(1, 2), 2], verify=False, simplify=False)
    # a random polynomial change of coordinates (u, v, w) -> (a, b, sigma), sigma kept positive
    w = sp.Symbol("w", positive=True)
    sub = {a: u + k1 * v ** 2, b: v + k2 * u * v, sigma: w + k3 * u ** 2}
    assert check_reparametrization(model, [u, v, w], sub, points=4).verified
    fam = gaussian_family([a * u], [[u + (k1 + 1) * v ** 2]], [u, v], verify=False)  # v must occur
    p, q = sp.symbols("p q", real=True)
    assert check_reparametrization(fam, [p, q], {u: p ** 2 + 1, v: q + k2 * p}, points=4).verified


def _kl_quadrature(f0, v0, f1, v1, dps=30):
    """D(N(f0, v0) || N(f1, v1)) by mpmath quadrature of p log(p/q), independent of symbrg."""
    with mpmath.workdps(dps):
        p = lambda y: mpmath.npdf(y, f0, mpmath.sqrt(v0))  # noqa: E731
        q = lambda y: mpmath.npdf(y, f1, mpmath.sqrt(v1))  # noqa: E731
        lo, hi = f0 - 40 * mpmath.sqrt(v0), f0 + 40 * mpmath.sqrt(v0)
        return mpmath.quad(lambda y: p(y) * (mpmath.log(p(y)) - mpmath.log(q(y))), [lo, f0, hi])


@settings(max_examples=15, deadline=None)
@given(hs.lists(_coeff, min_size=5, max_size=5), hs.floats(-1, 1), hs.floats(-1, 1), hs.floats(0.5, 2),
       hs.lists(hs.floats(-1, 1), min_size=3, max_size=3).filter(lambda d: max(map(abs, d)) > 0.1))
def test_kl_curvature_against_quadrature(cs, a0, b0, s0, delta):
    data = [sp.Rational(-1), sp.Rational(1, 2)]
    f = _poly_model(cs)
    m = gaussian_regression(f, [a, b, sigma], x, sigma=sigma, data=data, verify=False)
    th0 = {a: sp.Rational(a0), b: sp.Rational(b0), sigma: sp.Rational(s0)}
    quad = sum(m[i, j] * delta[i] * delta[j] for i in range(3) for j in range(3)).subs(th0) / 2

    def D(eps):  # KL of the joint over the data set, averaged per observation
        th1 = {k: th0[k] + sp.Rational(eps) * sp.Rational(d) for k, d in zip((a, b, sigma), delta)}
        out = 0
        for xv in data:
            args = [mpmath.mpf(sp.N(f.subs(x, xv).subs(t), 35)) for t in (th0, th1)]
            out += _kl_quadrature(args[0], mpmath.mpf(sp.N(th0[sigma], 35)) ** 2,
                                  args[1], mpmath.mpf(sp.N(th1[sigma], 35)) ** 2)
        return out / len(data)
    eps = 1e-3
    r1, r2 = D(eps) / eps ** 2, D(eps / 2) / (eps / 2) ** 2
    richardson = 2 * r2 - r1  # removes the O(eps) term
    assert abs(richardson - float(quad)) <= 1e-4 * (1 + abs(float(quad)))
    # and symbrg's own closed-form KL agrees: remainders are O(eps), halving with eps
    rep = check_kl_curvature(m, th0, delta, eps=(1e-2, 5e-3))
    rem = [float(r) for r in rep["remainders"]]
    assert abs(float(rep["quadratic"]) - float(quad)) <= 1e-12 * (1 + abs(float(quad)))
    assert abs(rem[1]) <= 0.55 * abs(rem[0]) + 1e-25  # the remainder vanishes (at least) linearly


def test_score_identity_exact_and_monte_carlo():
    s2 = sp.Symbol("s2", positive=True)
    pts = [0, 1]
    k = s2 * sp.exp(-(x - xp) ** 2 / (2 * ell ** 2))
    g = gaussian_process(k, pts, [ell, s2, mu], mean=[mu, mu * 2], noise_var=sp.Rational(1, 5),
                         inputs=(x, xp))
    assert check_score_identity(g).verified
    theta = (0.8, 1.3, 0.4)
    F = g.compile()(*theta)
    ys = g.observations
    score = codegen.lambdify([sp.diff(g.log_density, p) for p in g.parameters], ys + g.parameters)
    hess = codegen.lambdify([sp.diff(g.log_density, p, q) for p in g.parameters for q in g.parameters],
                            ys + g.parameters)
    mean = np.array(g.observation_mean.subs(dict(zip(g.parameters, theta))), dtype=float).ravel()
    cov = np.array(g.observation_cov.subs(dict(zip(g.parameters, theta))), dtype=float)
    n = 200_000
    y = np.random.default_rng(1).multivariate_normal(mean, cov, size=n)
    S = np.stack(np.broadcast_arrays(*score(y[:, 0], y[:, 1], *theta)), axis=-1)  # (n, P)
    outer = S[:, :, None] * S[:, None, :]
    H = -np.stack(np.broadcast_arrays(*hess(y[:, 0], y[:, 1], *theta)), axis=-1).reshape(n, 3, 3)
    for samples in (outer, H):
        est = samples.mean(axis=0)
        se = samples.std(axis=0, ddof=1) / np.sqrt(n)
        assert np.all(np.abs(est - F) <= 5 * se + 1e-9 * np.abs(F).max()), (est, F, se)  # 1e-9: summation round-off


# ---------------------------------------------------------------------- numeric ensemble Fisher
def test_dense_and_diagonal_match_a_per_member_loop():
    rng = np.random.default_rng(0)
    J = rng.normal(size=(4, 9, 6))
    F = fisher_dense(J, noise_var=0.5)
    for m in range(4):
        assert np.allclose(F[m], sum(np.outer(j, j) for j in J[m]) / (9 * 0.5))
    assert np.allclose(fisher_dense(J, reduction="sum"), 9 * fisher_dense(J))
    assert np.allclose(fisher_diagonal(J, 0.5), np.diagonal(F, axis1=1, axis2=2))
    assert np.allclose(fisher_dense(J[0]), F[0] * 0.5)
    blocks = iter([J[:, :4], J[:, 4:]])
    assert np.allclose(fisher_diagonal(blocks, 0.5), np.diagonal(F, axis1=1, axis2=2))
    J4 = rng.normal(size=(2, 5, 3, 7))  # (members, n, k outputs, P), e.g. Network.jacobian
    assert np.allclose(fisher_dense(J4), fisher_dense(J4.reshape(2, 15, 7), reduction="sum") / 5)


def test_diagonal_fisher_memory_is_order_p():
    P = 100_000
    J = np.random.default_rng(0).normal(size=(2, 40, P))
    tracemalloc.start()
    D = fisher_diagonal(J)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert D.shape == (2, P)
    assert peak <= 2 * D.nbytes  # O(members * P), not O(members * n * P)
    assert np.allclose(D, (J ** 2).mean(axis=1))


def test_numeric_fisher_of_a_network_equals_the_symbolic_jacobian():
    from symbrg.ensembles.networks import network
    net = network((2, 3, 1), "tanh", sigma_w=1.2, sigma_b=0.3)
    ens = net.init(3, seed=0)
    X = np.random.default_rng(1).normal(size=(5, 2))
    num = fisher_dense(net.jacobian(ens, X), noise_var=0.7)
    sym = network_fisher(net, X, sigma=sp.sqrt(sp.Rational(7, 10))).compile()
    theta = ens.flat()  # (members, P)
    assert np.allclose(sym(*theta.T), num, rtol=1e-10, atol=1e-12)
    ro = fisher_dense(net.jacobian(ens, X, which="readout"), noise_var=0.7)
    assert ro.shape == (3, 4, 4)


# ---------------------------------------------------------------------------- shell split
def test_diagonal_split_is_not_reparametrization_invariant_eigen_split_is():
    R = np.array([[1.0, -1.0], [1.0, 1.0]]) / np.sqrt(2)
    F = np.diag([1.0, 4.0])
    Fr = R.T @ F @ R  # the same metric in rotated coordinates
    assert np.allclose(np.diag(Fr), [2.5, 2.5])
    # diagonal criterion: one sloppy parameter before the rotation, none after
    assert shell_split(F, 2.0, "diagonal").n_sloppy == 1
    assert shell_split(Fr, 2.0, "diagonal").n_sloppy == 0
    # eigen criterion: the same sloppy direction in both coordinates
    e, er = shell_split(F, 2.0), shell_split(Fr, 2.0)
    assert e.n_sloppy == er.n_sloppy == 1
    assert np.allclose(er.sloppy_projector, R.T @ e.sloppy_projector @ R)
    assert shell_split(F, 0.0).n_sloppy == 0  # Λ = 0: nothing is sloppy


@SETTINGS
@given(hs.integers(0, 10_000), hs.floats(0.05, 3.0))
def test_eigen_split_invariance_batch_and_metric(seed, cutoff):
    rng = np.random.default_rng(seed)
    P = 5
    J = rng.normal(size=(3, 4, P))  # rank-4 Fisher in 5 parameters, a batch of 3
    F = fisher_dense(J)
    Q, _ = np.linalg.qr(rng.normal(size=(P, P)))
    base, rot = shell_split(F, cutoff), shell_split(Q.T @ F @ Q, cutoff)
    assert np.array_equal(base.n_sloppy, rot.n_sloppy)
    assert np.allclose(rot.sloppy_projector, Q.T @ base.sloppy_projector @ Q, atol=1e-8)
    assert np.allclose(base.sloppy_projector + base.stiff_projector, np.eye(P))
    assert np.all(base.n_sloppy >= 1)  # the null direction is always sloppy
    # generalized problem I v = λ G v is invariant under any linear reparametrization θ = A θ'
    A = rng.normal(size=(P, P)) + 3 * np.eye(P)
    G = np.diag(rng.uniform(0.5, 2.0, P))
    g0 = shell_split(F, cutoff, metric=G)
    g1 = shell_split(A.T @ F @ A, cutoff, metric=A.T @ G @ A)
    assert np.allclose(g0.sensitivities, g1.sensitivities, atol=1e-8 * np.abs(g0.sensitivities).max())
    Pi0, Pi1 = g0.sloppy_projector, g1.sloppy_projector
    assert np.allclose(Pi1, np.linalg.solve(A, Pi0 @ A), atol=1e-6)
    assert np.allclose(Pi0 @ Pi0, Pi0, atol=1e-8)
    d = shell_split(fisher_diagonal(J), cutoff, "diagonal")
    assert np.array_equal(d.sloppy, np.diagonal(F, axis1=1, axis2=2) < cutoff)
    assert np.array_equal(d.at(0.0).n_sloppy, np.zeros(3, int))


# ------------------------------------------------------------------------ infinite-width link
def test_readout_fisher_spectrum_is_the_kernel_operator_spectrum():
    rng = np.random.default_rng(3)
    T, N, noise = 12, 40, 0.3
    J = readout_jacobian(rng.normal(size=(T, N)), sigma_w=1.4, sigma_b=0.5)
    lam = np.sort(np.linalg.eigvalsh(fisher_dense(J, noise, reduction="sum")))[::-1][:T]
    K = J @ J.T
    assert np.allclose(lam, readout_fisher_spectrum(K, noise), rtol=1e-9)
    assert np.allclose(readout_fisher_spectrum(K, noise), T / noise * kernel_operator_spectrum(K))
    lam_mean = np.sort(np.linalg.eigvalsh(fisher_dense(J, noise)))[::-1][:T]
    assert np.allclose(lam_mean, readout_fisher_spectrum(K, noise, reduction="mean"), rtol=1e-9)


def test_infinite_width_link_nngp_and_convergence_of_finite_width_features():
    import symbrg
    from symbrg.ensembles.networks import network
    sw, sb, T, noise = 1.5, 0.4, 10, 0.5
    X = np.random.default_rng(4).normal(size=(T, 3))
    K = symbrg.mlp("relu", 1, sw, sb).nngp(X)
    target = readout_fisher_spectrum(K, noise)
    # NNGP (Mercer) features: exact
    Phi = mercer_features(K)
    lam = np.sort(np.linalg.eigvalsh(fisher_dense(Phi, noise, reduction="sum")))[::-1][:T]
    assert np.allclose(lam, target, rtol=1e-8, atol=1e-10 * target[0])
    # finite-width random ReLU features converge: |Δλ_k| <= ||ΔK||_F (Weyl), 5 standard errors
    bounds = []
    for width in (64, 4096):
        net = network((3, width, 1), "relu", sigma_w=sw, sigma_b=sb)
        h = net.features(net.init(1, seed=width), X)[0]  # (T, width)
        J = readout_jacobian(h, sw, sb)
        # nonzero spectrum of the (P x P) readout Fisher via its T x T dual (identity tested above)
        lam = np.sort(np.linalg.eigvalsh(J @ J.T / noise))[::-1]
        if width == 64:
            assert np.allclose(lam, np.sort(np.linalg.eigvalsh(fisher_dense(J, noise, "sum")))[::-1][:T])
        prods = sw ** 2 * h[:, None, :] * h[None, :, :]  # per-neuron contributions to K
        se_F = np.sqrt(np.sum(prods.var(axis=-1, ddof=1) / width))
        assert np.max(np.abs(lam - target)) <= 5 * se_F / noise
        bounds.append(se_F)
    assert bounds[1] < bounds[0] / 4  # the tolerance itself shrinks like 1/sqrt(width)


# ------------------------------------------------------------------------------- bad input
def test_bad_input_names_the_argument():
    J = np.ones((2, 3, 4))
    cases = [
        (lambda: fisher_dense(J, noise_var=0), errors.NotPositive, "noise_var"),
        (lambda: fisher_diagonal(J, noise_var=-1), errors.NotPositive, "noise_var"),
        (lambda: fisher_dense(np.where(J > 0, np.nan, 0)), errors.NonFinite, "J"),
        (lambda: fisher_diagonal(np.array([1.0, np.inf])), errors.ShapeMismatch, "J"),
        (lambda: fisher_diagonal(iter([J, np.ones((2, 3, 5))])), errors.ShapeMismatch, "J"),
        (lambda: fisher_dense(J, reduction="median"), errors.UnknownName, "reduction"),
        (lambda: shell_split(np.eye(2), -1.0), errors.NotPositive, "cutoff"),
        (lambda: shell_split(np.eye(2), 1.0, "spectral"), errors.UnknownName, "criterion"),
        (lambda: shell_split(np.ones((2, 3)), 1.0), errors.ShapeMismatch, "fisher"),
        (lambda: shell_split(np.diag([1.0, -1.0]), 1.0), errors.NotPositiveDefinite, "fisher"),
        (lambda: shell_split(np.eye(2), 1.0, metric=np.eye(3)), errors.ShapeMismatch, "metric"),
        (lambda: shell_split(np.eye(2), 1.0, metric=np.zeros((2, 2))), errors.NotPositiveDefinite, "metric"),
        (lambda: gaussian_regression(a * x, [a], x, sigma=-1, data=[1]), errors.NotPositive, "sigma"),
        (lambda: gaussian_regression(a * x, [a], x, sigma=0, data=[1]), errors.NotPositive, "sigma"),
        (lambda: gaussian_regression(a * x, [a], x, data=[1, float("nan")]), errors.NonFinite, "data"),
        (lambda: gaussian_family([mu, mu], [[s, s], [s, s]], [mu, s]), errors.NotPositiveDefinite, "covariance"),
        (lambda: gaussian_family([mu], [[0]], [mu]), errors.NotPositiveDefinite, "covariance"),
        (lambda: gaussian_family([mu, mu], [[s]], [mu]), errors.ShapeMismatch, "covariance"),
        (lambda: gaussian_process(sp.exp(-(x - xp) ** 2 / ell ** 2), [0, 1], [ell], mean=[mu], inputs=(x, xp)),
         errors.ShapeMismatch, "mean"),
        (lambda: gp_fisher(sp.exp(-(x - xp) ** 2 / ell ** 2), [0.0, 0.0], {ell: 1.0}, inputs=(x, xp)),
         errors.NotPositiveDefinite, "kernel"),
        (lambda: gp_fisher(sp.exp(-(x - xp) ** 2 / ell ** 2), [0.0, 1.0], {ell: 1.0}, noise_var=-1,
                           inputs=(x, xp)), errors.NotPositive, "noise_var"),
        (lambda: readout_jacobian(np.ones((3, 4)), sigma_w=0), errors.NotPositive, "sigma_w"),
        (lambda: readout_fisher_spectrum(np.ones((2, 3))), errors.ShapeMismatch, "gram"),
    ]
    for call, exc, arg in cases:
        with pytest.raises(exc) as info:
            call()
        assert info.value.argument == arg, (arg, info.value)


# ------------------------------------------------------------------------------------- CLI
def test_cli_prints_closed_forms(capsys):
    assert main(["derive", "fisher", "--model", "normal", "--jeffreys"]) == 0
    out = capsys.readouterr().out                       # sympy's unicode pretty form
    assert sp.pretty(sp.Matrix([[1 / s, 0], [0, 1 / (2 * s**2)]]), use_unicode=True).splitlines()[1] in out
    assert "improper" in out
    assert main(["derive", "fisher", "--model", "gaussian-regression", "--f", "m*x", "--params", "m,sigma",
                 "--sigma", "sigma", "--data", "1,2"]) == 0
    sigma = sp.Symbol("sigma", positive=True)
    metric = sp.pretty(sp.Matrix([[5 / (2 * sigma**2), 0], [0, 2 / sigma**2]]), use_unicode=True)
    out = capsys.readouterr().out
    assert all(row in out for row in metric.splitlines()[1:])
    assert main(["derive", "fisher", "--model", "gp", "--kernel", "rbf", "--points", "0,1",
                 "--format", "latex"]) == 0
    out = capsys.readouterr().out
    assert "\\begin{document}" in out and "\\ell" in out
    assert main(["derive", "fisher", "--sigma", "-1"]) == 2
    assert "sigma" in capsys.readouterr().err
    assert main(["derive", "fisher", "--model", "gp", "--kernel", "rbf", "--points", "0,0"]) == 2
    assert "covariance" in capsys.readouterr().err
    assert main(["derive", "fisher", "--model", "gp", "--kernel", "nngp:relu:1", "--points", "1,2",
                 "--noise", "1/10"]) == 0
    assert "sigma_w" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["derive", "fisher", "--help"])
    assert "examples:" in capsys.readouterr().out
