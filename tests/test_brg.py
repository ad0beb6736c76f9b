"""Tests of the Bayesian-RG engine (symbrg.rg.brg) and the Gaussian training flow (symbrg.rg.posterior)."""
from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from symbrg.cli import main
from symbrg.core.errors import (
    InvalidArgument,
    NonFinite,
    NotPositive,
    NotPositiveDefinite,
    ShapeMismatch,
    SymbrgError,
    UnknownName,
    Unsupported,
)
from symbrg.rg import brg
from symbrg.rg.brg import (
    coarse_grain,
    coarse_grain_modes,
    commuting_diagram,
    nngp_flow,
    predictive_flow,
    sample_coarse_grained,
    shell_moments,
    shell_weight,
    weights,
    wilsonian_ridge,
)
from symbrg.rg.posterior import GaussianState, training_flow, training_flow_derivation

SETTINGS = settings(max_examples=30, deadline=None)


# ----------------------------------------------------------------------------- fixtures / helpers
def random_rotation(rng: np.random.Generator, p: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((p, p)))
    return q * np.sign(np.diag(r))


def conjugate_problem(spectrum, seed: int, prior_var: float = 1.5):
    """A conjugate Gaussian model: isotropic prior, Fisher with the given spectrum, trained posterior."""
    rng = np.random.default_rng(seed)
    lam = np.asarray(spectrum, dtype=float)
    p = lam.size
    u = random_rotation(rng, p)
    fisher = (u * lam) @ u.T
    prior = GaussianState.from_moments(rng.standard_normal(p), prior_var * np.eye(p))
    post = training_flow(fisher, rng.standard_normal(p), 1.0, prior)
    return fisher, prior, post, u


def general_problem(spectrum, seed: int):
    """A non-conjugate case: trained covariance and prior not aligned with the Fisher."""
    rng = np.random.default_rng(seed)
    lam = np.asarray(spectrum, dtype=float)
    p = lam.size
    u = random_rotation(rng, p)
    fisher = (u * lam) @ u.T
    a, b = rng.standard_normal((p, p)), rng.standard_normal((p, p))
    post = GaussianState.from_moments(rng.standard_normal(p), a @ a.T / p + 0.1 * np.eye(p))
    prior = GaussianState.from_moments(rng.standard_normal(p), b @ b.T / p + 0.5 * np.eye(p))
    return fisher, prior, post


spectra = st.lists(st.floats(0.0, 20.0, allow_nan=False), min_size=1, max_size=6)


def away_from_spectrum(lam, cutoffs, gap=1e-6):
    return all(np.min(np.abs(np.asarray(lam) - c)) > gap for c in cutoffs)


# ----------------------------------------------------------------------------- training flow
def test_training_flow_derivation_is_verified():
    d = training_flow_derivation()
    assert d.verified
    assert sum(s.verification.kind == "both" for s in d.steps) >= 6


@SETTINGS
@given(spectra, st.floats(0.0, 10.0), st.floats(0.0, 10.0), st.integers(0, 10_000))
def test_training_flow_is_a_semigroup_in_T(spectrum, t1, t2, seed):
    fisher, prior, _, _ = conjugate_problem(spectrum, seed)
    th = np.random.default_rng(seed + 1).standard_normal(len(spectrum))
    step = training_flow(fisher, th, t2, training_flow(fisher, th, t1, prior))
    once = training_flow(fisher, th, t1 + t2, prior)
    np.testing.assert_allclose(step.mean, once.mean, atol=1e-8)
    np.testing.assert_allclose(step.covariance, once.covariance, atol=1e-8)


def test_training_flow_limits():
    fisher, prior, _, _ = conjugate_problem([1.0, 3.0, 0.5], 3)
    th = np.array([0.3, -1.0, 2.0])
    t0 = training_flow(fisher, th, 0.0, prior)
    np.testing.assert_allclose(t0.mean, prior.mean, atol=1e-12)
    np.testing.assert_allclose(t0.covariance, prior.covariance, atol=1e-12)
    flat = training_flow(fisher, th, 7.0)  # Jeffreys prior: exactly N(theta_hat, (T I)^-1)
    np.testing.assert_allclose(flat.mean, th, atol=1e-10)
    np.testing.assert_allclose(flat.covariance, np.linalg.inv(7.0 * fisher), atol=1e-10)
    late = training_flow(fisher, th, 1e6, prior)
    np.testing.assert_allclose(1e6 * late.covariance, np.linalg.inv(fisher), rtol=1e-4)


# ----------------------------------------------------------------------------- information shell: limits
@SETTINGS
@given(spectra, st.integers(0, 10_000), st.sampled_from(["eigen", "diagonal"]))
def test_zero_cutoff_returns_the_trained_theory(spectrum, seed, criterion):
    fisher, prior, post = general_problem(spectrum, seed)
    for pres in ("prior", "jeffreys"):
        cg = coarse_grain(post, fisher, 0.0, prior=prior, prescription=pres, criterion=criterion)
        assert cg.proper
        np.testing.assert_allclose(cg.mean, post.mean, atol=1e-9)
        np.testing.assert_allclose(cg.covariance, post.covariance, atol=1e-9)


@SETTINGS
@given(spectra, st.integers(0, 10_000), st.sampled_from(["eigen", "diagonal"]))
def test_cutoff_above_spectrum_returns_the_prior_theory(spectrum, seed, criterion):
    fisher, prior, post = general_problem(spectrum, seed)
    top = max(np.max(np.linalg.eigvalsh(fisher)), np.max(np.diag(fisher))) + 1.0
    cg = coarse_grain(post, fisher, top, prior=prior, criterion=criterion)
    np.testing.assert_allclose(cg.mean, prior.mean, atol=1e-9)
    np.testing.assert_allclose(cg.covariance, prior.covariance, atol=1e-9)
    jf = coarse_grain(post, fisher, top, prescription="jeffreys", criterion=criterion)
    assert not jf.proper and jf.flat.shape[1] == len(spectrum)
    with pytest.raises(Unsupported):
        jf.sample(3)


# ----------------------------------------------------------------------------- semigroup, basis independence
@SETTINGS
@given(spectra, st.floats(0.0, 25.0), st.floats(0.0, 25.0), st.integers(0, 10_000),
       st.sampled_from(["eigen", "diagonal"]))
def test_coarse_graining_composes(spectrum, a, b, seed, criterion):
    lam1, lam2 = min(a, b), max(a, b)
    fisher, prior, post = general_problem(spectrum, seed)
    once = coarse_grain(post, fisher, lam2, prior=prior, criterion=criterion)
    twice = coarse_grain(coarse_grain(post, fisher, lam1, prior=prior, criterion=criterion), fisher, lam2,
                         prior=prior, criterion=criterion)
    np.testing.assert_allclose(twice.mean, once.mean, atol=1e-9)
    np.testing.assert_allclose(twice.covariance, once.covariance, atol=1e-9)


@SETTINGS
@given(spectra, st.floats(0.0, 25.0), st.floats(0.0, 25.0), st.integers(0, 10_000))
def test_jeffreys_coarse_graining_composes(spectrum, a, b, seed):
    lam1, lam2 = min(a, b), max(a, b)
    fisher, _, post = general_problem(spectrum, seed)
    once = coarse_grain(post, fisher, lam2, prescription="jeffreys")
    twice = coarse_grain(coarse_grain(post, fisher, lam1, prescription="jeffreys"), fisher, lam2,
                         prescription="jeffreys")
    np.testing.assert_allclose(twice.flat @ twice.flat.T, once.flat @ once.flat.T, atol=1e-8)
    np.testing.assert_allclose(twice.mean, once.mean, atol=1e-8)
    np.testing.assert_allclose(twice.covariance, once.covariance, atol=1e-8)


def test_improper_input_with_stiff_flat_direction_is_refused():
    fisher = np.diag([1.0, 5.0])
    state = GaussianState(np.zeros(2), np.diag([1.0, 0.0]), np.array([[0.0], [1.0]]))
    with pytest.raises(Unsupported) as err:
        coarse_grain(state, fisher, 2.0, prescription="jeffreys")
    assert err.value.argument == "posterior"


@SETTINGS
@given(spectra, st.floats(0.0, 25.0), st.integers(0, 10_000), st.sampled_from(["prior", "jeffreys"]))
def test_eigen_prescription_is_basis_independent(spectrum, cutoff, seed, prescription):
    lam = np.linalg.eigvalsh(np.diag(spectrum))
    assume(away_from_spectrum(lam, [cutoff]))
    fisher, prior, post = general_problem(spectrum, seed)
    r = random_rotation(np.random.default_rng(seed + 7), len(spectrum))
    rot = lambda g: GaussianState.from_moments(r @ g.mean, r @ g.covariance @ r.T)  # noqa: E731
    a = coarse_grain(post, fisher, cutoff, prior=prior, prescription=prescription)
    b = coarse_grain(rot(post), r @ fisher @ r.T, cutoff, prior=rot(prior), prescription=prescription)
    np.testing.assert_allclose(b.mean, r @ a.mean, atol=1e-8)
    np.testing.assert_allclose(b.covariance, r @ a.covariance @ r.T, atol=1e-8)
    np.testing.assert_allclose(b.flat @ b.flat.T, r @ a.flat @ a.flat.T @ r.T, atol=1e-8)


def test_diagonal_prescription_is_not_basis_independent():
    fisher = np.diag([1.0, 4.0])
    c = np.sqrt(0.5)
    r = np.array([[c, -c], [c, c]])  # rotated: diagonal entries (5/2, 5/2), eigenvalues (1, 4)
    post = GaussianState.from_moments([1.0, 2.0], 0.1 * np.eye(2))
    prior = GaussianState.from_moments([0.0, 0.0], np.eye(2))
    a = coarse_grain(post, fisher, 2.0, prior=prior, criterion="diagonal")
    b = coarse_grain(GaussianState.from_moments(r @ post.mean, r @ post.covariance @ r.T), r @ fisher @ r.T, 2.0,
                     prior=prior, criterion="diagonal")
    assert np.max(np.abs(b.mean - r @ a.mean)) > 0.1
    e = coarse_grain(post, fisher, 2.0, prior=prior, criterion="eigen")
    np.testing.assert_allclose(e.mean, [0.0, 2.0], atol=1e-12)  # only the lambda = 4 direction is stiff


def test_metric_split_is_the_whitened_split():
    """I v = lambda G v with G the prior precision equals the split of prior-whitened parameters."""
    rng = np.random.default_rng(12)
    j = rng.standard_normal((6, 9))
    v0, s2 = 0.4, 0.3
    fisher_raw = j.T @ j / s2
    prior = GaussianState.from_moments(np.zeros(9), v0 * np.eye(9))
    q = np.eye(9) / v0 + fisher_raw
    post = GaussianState.from_moments(np.linalg.solve(q, j.T @ rng.standard_normal(6) / s2), np.linalg.inv(q))
    for pres in ("prior", "jeffreys"):
        a = coarse_grain(post, fisher_raw, 2.0, prior=prior, prescription=pres, metric=np.eye(9) / v0)
        b = coarse_grain(post, v0 * fisher_raw, 2.0, prior=prior, prescription=pres)
        np.testing.assert_allclose(a.mean, b.mean, atol=1e-9)
        np.testing.assert_allclose(a.covariance, b.covariance, atol=1e-9)
        np.testing.assert_allclose(a.sensitivities, b.sensitivities, atol=1e-9)


def test_jeffreys_leaves_flat_sloppy_directions():
    fisher, prior, post, u = conjugate_problem([0.5, 2.0, 8.0], 11)
    cg = coarse_grain(post, fisher, 1.0, prescription="jeffreys")
    assert cg.flat.shape[1] == 1
    np.testing.assert_allclose(abs(cg.flat[:, 0] @ u[:, 0]), 1.0, atol=1e-10)
    np.testing.assert_allclose(cg.precision @ cg.flat, 0.0, atol=1e-9)
    stiff = u[:, 1:]
    np.testing.assert_allclose(stiff.T @ cg.covariance @ stiff, stiff.T @ post.covariance @ stiff, atol=1e-10)
    np.testing.assert_allclose(stiff.T @ cg.mean, stiff.T @ post.mean, atol=1e-10)


# ----------------------------------------------------------------------------- smooth shells
@SETTINGS
@given(st.lists(st.floats(0.05, 20.0), min_size=1, max_size=5), st.floats(0.0, 25.0), st.integers(0, 10_000))
def test_smooth_shell_with_step_weight_is_the_sharp_shell(spectrum, cutoff, seed):
    assume(away_from_spectrum(spectrum, [cutoff], gap=1e-3))
    fisher, prior, post, _ = conjugate_problem(spectrum, seed)
    sharp = coarse_grain(post, fisher, cutoff, prior=prior)
    step = coarse_grain(post, fisher, cutoff, prior=prior, regulator="K:Heaviside(1 - z)")
    np.testing.assert_allclose(step.mean, sharp.mean, atol=1e-8)
    np.testing.assert_allclose(step.covariance, sharp.covariance, atol=1e-8)


@pytest.mark.parametrize("regulator", ["power:4", "litim", "exponential"])
def test_smooth_flow_is_monotone_and_has_the_right_limits(regulator):
    fisher, prior, post, _ = conjugate_problem([0.3, 1.0, 4.0, 12.0], 5)
    cuts = [0.0, 0.5, 2.0, 6.0, 30.0]
    covs = [coarse_grain(post, fisher, c, prior=prior, regulator=regulator).covariance for c in cuts]
    np.testing.assert_allclose(covs[0], post.covariance, atol=1e-10)
    for lo, hi in zip(covs, covs[1:]):  # information only ever removed: C_Lambda grows (Loewner order)
        assert np.min(np.linalg.eigvalsh(hi - lo)) > -1e-10
    far = coarse_grain(post, fisher, 1e7, prior=prior, regulator=regulator)
    np.testing.assert_allclose(far.covariance, prior.covariance, atol=1e-5)


def test_smooth_flow_equation_matches_finite_differences():
    fisher, prior, post, u = conjugate_problem([0.3, 1.0, 4.0], 9)
    lam = np.linalg.eigvalsh(fisher)
    cut, h = 1.3, 1e-5
    prec = lambda c: coarse_grain(post, fisher, c, prior=prior, regulator="power:3").precision  # noqa: E731
    fd = (prec(cut + h) - prec(cut - h)) / (2 * h)
    dw = sp.lambdify((brg.LAM, brg.CUT), sp.diff(shell_weight(brg.LAM, brg.CUT, "power:3"), brg.CUT))(lam, cut)
    q_gain = u.T @ (post.precision - prior.precision) @ u
    exact = u @ (np.asarray(dw)[:, None] * q_gain) @ u.T
    np.testing.assert_allclose(fd, exact, atol=1e-6)


def test_smooth_shell_refuses_noncommuting_information():
    fisher, prior, post = general_problem([0.5, 3.0, 9.0], 2)
    with pytest.raises(Unsupported) as err:
        coarse_grain(post, fisher, 1.0, prior=prior, regulator="litim")
    assert err.value.argument == "regulator"


def test_weights_edges():
    lam = np.array([0.0, 0.5, 1.0, 2.0])
    np.testing.assert_array_equal(weights(lam, 1.0), [0, 0, 1, 1])
    np.testing.assert_array_equal(weights(lam, 0.0, "litim"), [1, 1, 1, 1])
    w = weights(lam, 1.0, "litim")
    np.testing.assert_allclose(lam * w, np.maximum(lam - 1.0, 0.0))
    w = weights(lam, 1.0, "power:2")
    np.testing.assert_allclose(w, [0.0, 0.2, 0.5, 0.8])


# ----------------------------------------------------------------------------- Monte Carlo against pi_Lambda
@pytest.mark.parametrize("criterion", ["eigen", "diagonal"])
def test_closed_form_matches_resampling(criterion):
    fisher, prior, post = general_problem([0.2, 1.0, 3.0, 7.0], 21)
    n = 40_000
    draws = sample_coarse_grained(post, prior, fisher, 2.0, n, rng=1, criterion=criterion)
    cg = coarse_grain(post, fisher, 2.0, prior=prior, criterion=criterion)
    c = cg.covariance
    se_mean = np.sqrt(np.diag(c) / n)
    assert np.all(np.abs(draws.mean(0) - cg.mean) < 5 * se_mean)
    se_cov = np.sqrt((np.outer(np.diag(c), np.diag(c)) + c ** 2) / n)
    assert np.all(np.abs(np.cov(draws.T) - c) < 5 * se_cov + 1e-12)


# ----------------------------------------------------------------------------- symbolic counterparts
def test_symbolic_modes_match_numeric():
    fisher, prior, post, u = conjugate_problem([0.4, 2.0, 5.0], 4)
    lam = np.linalg.eigvalsh(fisher)
    mu_s, var_s = u.T @ post.mean, np.diag(u.T @ post.covariance @ u)
    m0, v0 = u.T @ prior.mean, np.diag(u.T @ prior.covariance @ u)
    cut = sp.Symbol("Lambda", nonnegative=True)
    for reg in (None, "exponential"):
        modes = coarse_grain_modes(lam, cut, mu_s, var_s, m0, v0, regulator=reg)
        for c in (0.1, 1.0, 3.0, 10.0):
            cg = coarse_grain(post, fisher, c, prior=prior, regulator=reg)
            num_mean = u.T @ cg.mean
            num_var = np.diag(u.T @ cg.covariance @ u)
            for k, m in enumerate(modes):
                assert float(m.mean.subs(cut, c)) == pytest.approx(num_mean[k], abs=1e-9)
                assert float(m.variance.subs(cut, c)) == pytest.approx(num_var[k], abs=1e-9)
    jm = coarse_grain_modes(lam, 1.0, mu_s, var_s, prescription="jeffreys")
    assert jm[0].variance == sp.oo and jm[0].precision == 0
    assert float(jm[2].mean) == pytest.approx(mu_s[2])


def test_symbolic_mode_flow_equation():
    lam, cut = sp.symbols("lambda Lambda", positive=True)
    (m,) = coarse_grain_modes([lam], cut, [sp.Symbol("mu")], [sp.Integer(1) / 3], [0], [1], regulator="exponential")
    dp, dh = m.flow(cut)
    assert sp.simplify(dp - (1 - 3) * sp.exp(-cut / lam) / lam) == 0  # (p_0 - p_*) e^{-Lambda/lambda}/lambda
    assert dh != 0


def test_shell_moments_symbolic_matches_numeric():
    fisher, prior, post = general_problem([0.5, 2.0, 6.0], 8)
    lam, u = np.linalg.eigh(fisher)
    cut = sp.Symbol("Lambda", nonnegative=True)
    mean, cov = shell_moments(list(lam), sp.Matrix(u), cut, sp.Matrix(post.mean), sp.Matrix(post.covariance),
                              sp.Matrix(prior.mean), sp.Matrix(prior.covariance))
    assert mean.has(sp.Heaviside)
    for c in (0.1, 1.0, 4.0, 9.0):
        cg = coarse_grain(post, fisher, c, prior=prior)
        np.testing.assert_allclose(np.array(mean.subs(cut, c), dtype=float).ravel(), cg.mean, atol=1e-9)
        np.testing.assert_allclose(np.array(cov.subs(cut, c), dtype=float), cg.covariance, atol=1e-9)


@pytest.mark.parametrize("regulator", [None, "litim", "power:4"])
def test_derivations_are_verified(regulator):
    d = brg.information_shell_derivation(regulator)
    assert d.verified
    n = brg.nngp_brg_derivation("relu", 2, regulator=regulator, kernel=False)
    assert n.verified
    labels = {s.label for s in n.steps}
    assert {"eq:brg-fisher", "eq:brg-predictive", "eq:brg-wilson", "eq:brg-ridge", "eq:brg-commute"} <= labels
    if regulator is not None:
        assert {"eq:brg-flow", "eq:brg-action", "eq:brg-polchinski"} <= labels


# ----------------------------------------------------------------------------- infinite width: predictive GP
def rbf(a, b):
    d2 = np.sum(a ** 2, 1)[:, None] + np.sum(b ** 2, 1)[None, :] - 2 * a @ b.T
    return np.exp(-0.5 * d2)


def _kernel():
    try:
        from symbrg import mlp
        return mlp("relu", 2, 1.4, 0.1)
    except Exception:  # pragma: no cover - kernel engine absent: any callable kernel works
        return rbf


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x, z = rng.standard_normal((12, 3)), rng.standard_normal((5, 3))
    y = np.sin(x[:, 0]) + 0.1 * rng.standard_normal(12)
    return x, z, y


def test_predictive_flow_limits_are_gp_posterior_and_prior(data):
    x, z, y = data
    kern = _kernel()
    s2 = 0.05
    kxx, kzx, kzz = (np.asarray(kern.nngp(a, b) if hasattr(kern, "nngp") else kern(a, b))
                     for a, b in ((x, x), (z, x), (z, z)))
    post = nngp_flow(kern, x, y, s2, 0.0, z)
    g = np.linalg.solve(kxx + s2 * np.eye(len(y)), np.c_[y, kzx.T])
    np.testing.assert_allclose(post.mean, kzx @ g[:, 0], atol=1e-8)
    np.testing.assert_allclose(post.covariance, kzz - kzx @ g[:, 1:], atol=1e-8)
    np.testing.assert_allclose(post.fisher_eigenvalues, np.linalg.eigvalsh(kxx)[::-1][:post.kappa.size] / s2,
                               rtol=1e-8)
    top = post.fisher_eigenvalues.max() * 1.01
    for reg in (None, "litim"):
        pri = nngp_flow(kern, x, y, s2, top if reg is None else 1e9, z, regulator=reg)
        np.testing.assert_allclose(pri.mean, 0.0, atol=1e-6)
        np.testing.assert_allclose(pri.covariance, kzz, atol=1e-6)


def test_function_space_training_flow(data):
    x, _, y = data
    k = rbf(x, x)
    s2 = 0.3
    for t in (0.5, 4.0):
        a = predictive_flow(k, y, s2, 0.7, observations=t)
        b = predictive_flow(k, y, s2 / t, 0.7)
        np.testing.assert_allclose(a.mean, b.mean, atol=1e-10)
        np.testing.assert_allclose(a.covariance, b.covariance, atol=1e-10)
        np.testing.assert_allclose(a.fisher_eigenvalues, t * a.kappa / s2)
        j = predictive_flow(k, y, s2, 0.0, observations=t, prescription="jeffreys")
        np.testing.assert_allclose(j.covariance, predictive_flow(k, y, s2, 0.0, observations=t).covariance,
                                   atol=1e-10)
    late = predictive_flow(k, y, s2, 0.0, observations=1e7)  # on the data: T^-1 I^-1 pushed forward
    np.testing.assert_allclose(1e7 * late.mode_variance, s2, rtol=1e-3)


def test_predictive_flow_rbf_callable_and_semigroup(data):
    x, z, y = data
    a = nngp_flow(rbf, x, y, 0.1, 3.0, z)
    b = nngp_flow(rbf, x, y, 0.1, 30.0, z)
    assert np.all(b.weights <= a.weights)
    assert np.all(np.diag(b.covariance) >= np.diag(a.covariance) - 1e-12)


def test_induced_action_expectation_by_monte_carlo(data):
    x, z, y = data
    flow = nngp_flow(rbf, x, y, 0.1, 2.0, z)
    n = 20_000
    phi = flow.sample(n, rng=3)
    s = flow.action(phi)
    lam = np.linalg.eigvalsh(flow.covariance)
    lam = lam[lam > 1e-12 * lam.max()]
    expected = 0.5 * lam.size + 0.5 * np.sum(np.log(2 * np.pi * lam))  # E[S] = rank/2 + log-normalizer
    se = np.sqrt(lam.size / 2 / n)  # Var of a chi^2_r / 2 is r/2
    assert abs(s.mean() - expected) < 5 * se


@settings(max_examples=12, deadline=None)
@given(st.floats(0.0, 40.0), st.integers(0, 1000), st.sampled_from([None, "power:2", "litim"]),
       st.sampled_from(["prior", "jeffreys"]))
def test_commuting_diagram_property(cutoff, seed, regulator, prescription):
    rng = np.random.default_rng(seed)
    x, z = rng.standard_normal((7, 2)), rng.standard_normal((3, 2))
    w1 = rng.standard_normal((2, 30))
    hx, hz = np.tanh(x @ w1), np.tanh(z @ w1)
    out = commuting_diagram(hx, hz, rng.standard_normal(7), 0.2, cutoff, prescription=prescription,
                            regulator=regulator)
    fl = out["field_path"].fisher_eigenvalues
    assume(regulator is not None or away_from_spectrum(fl, [cutoff], gap=1e-6 * max(1.0, fl.max())))
    assert out["mean_gap"] < 1e-7 and out["covariance_gap"] < 1e-7


@pytest.mark.parametrize("regulator", [None, "power:2"])
@pytest.mark.parametrize("prescription", ["prior", "jeffreys"])
def test_commuting_diagram_on_random_features(regulator, prescription):
    rng = np.random.default_rng(1)
    x, z = rng.standard_normal((10, 3)), rng.standard_normal((4, 3))
    w1 = rng.standard_normal((3, 60)) * 1.2 / np.sqrt(3)
    hx, hz = np.maximum(x @ w1, 0), np.maximum(z @ w1, 0)
    y = np.cos(x[:, 1])
    out = commuting_diagram(hx, hz, y, 0.1, 1.5, prior_variance=0.7, prescription=prescription,
                            regulator=regulator)
    assert out["mean_gap"] < 1e-8 and out["covariance_gap"] < 1e-8
    assert out["flat_dims"][0] == out["flat_dims"][1]
    broken = commuting_diagram(hx, hz, y, 0.1, 1.5, prior_variance=0.7, criterion="diagonal")
    assert broken["mean_gap"] > 1e-3


def test_finite_width_readout_sampling_matches_predictive_flow():
    rng = np.random.default_rng(5)
    x, z = rng.standard_normal((8, 2)), rng.standard_normal((3, 2))
    nfeat, s2, v0, cut = 80, 0.2, 1.0, 2.0
    w1, b1 = rng.standard_normal((2, nfeat)), rng.standard_normal(nfeat) * 0.3
    jx, jz = np.tanh(x @ w1 + b1) / np.sqrt(nfeat), np.tanh(z @ w1 + b1) / np.sqrt(nfeat)
    y = x[:, 0] - x[:, 1] ** 2
    q = np.eye(nfeat) / v0 + jx.T @ jx / s2
    cov = np.linalg.inv(q)
    post = GaussianState.from_moments(cov @ jx.T @ y / s2, cov)
    prior = GaussianState.from_moments(np.zeros(nfeat), v0 * np.eye(nfeat))
    n = 40_000
    draws = sample_coarse_grained(post, prior, v0 * jx.T @ jx / s2, cut, n, rng=2) @ jz.T
    flow = predictive_flow(v0 * jx @ jx.T, y, s2, cut, k_zx=v0 * jz @ jx.T, k_zz=v0 * jz @ jz.T)
    sd = np.sqrt(np.diag(flow.covariance))
    assert np.all(np.abs(draws.mean(0) - flow.mean) < 5 * sd / np.sqrt(n))
    var_se = np.sqrt(2.0 / n) * sd ** 2
    assert np.all(np.abs(draws.var(0) - sd ** 2) < 5 * var_se)


def test_wilsonian_ridge_exact_is_the_shell_and_trace_is_the_scalar_ridge(data):
    x, z, y = data
    kxx, kzx, kzz = rbf(x, x), rbf(z, x), rbf(z, z)
    s2, cut = 0.05, 5.0
    ex = wilsonian_ridge(kxx, y, s2, cut, k_zx=kzx, k_zz=kzz, split="exact")
    np.testing.assert_allclose(ex.mean, ex.shell_mean, atol=1e-8)
    tr = wilsonian_ridge(kxx, y, s2, cut, k_zx=kzx, k_zz=kzz, split="trace")
    flow = predictive_flow(kxx, y, s2, cut, k_zx=kzx, k_zz=kzz)
    stiff = flow.weights >= 1
    assert 0 < stiff.sum() < flow.kappa.size
    lam_op = np.linalg.eigvalsh(kxx) / len(y)
    assert tr.c == pytest.approx(np.sum(lam_op[lam_op * len(y) / s2 < cut]), rel=1e-8)
    yk = flow.modes.T @ y
    k = flow.kappa[stiff]
    scalar = flow.psi[:, stiff] @ (k * yk[stiff] / (k + s2 + tr.c))
    np.testing.assert_allclose(tr.mean, scalar, atol=1e-8)
    assert np.max(np.abs(tr.mean - tr.shell_mean)) > 1e-4


def test_jeffreys_predictive_is_flat_off_the_data(data):
    x, z, y = data
    on_data = nngp_flow(rbf, x, y, 0.1, 0.0, prescription="jeffreys")
    assert on_data.proper  # Lambda = 0: every data mode stiff, no null directions on X
    at_zero = nngp_flow(rbf, x, y, 0.1, 0.0, z, prescription="jeffreys")
    assert at_zero.proper  # lambda = 0 >= Lambda = 0: even the Fisher null directions are stiff
    np.testing.assert_allclose(at_zero.covariance, nngp_flow(rbf, x, y, 0.1, 0.0, z).covariance, atol=1e-10)
    off = nngp_flow(rbf, x, y, 0.1, 1e-3, z, prescription="jeffreys")
    assert not off.proper  # Lambda > 0: Fisher null directions of the infinite readout are flat
    assert off.flat.shape[1] == z.shape[0]


# ----------------------------------------------------------------------------- CLI
def test_cli_derive_brg(capsys):
    assert main(["derive", "brg", "--activation", "relu", "--depth", "2", "--no-kernel"]) == 0
    out = capsys.readouterr().out
    assert "Polchinski" in out and "Wilsonian" in out
    assert main(["derive", "brg", "--part", "shell", "--regulator", "sharp", "--format", "latex"]) == 0
    assert "\\begin{equation" in capsys.readouterr().out
    assert main(["derive", "brg", "--part", "training", "--format", "markdown"]) == 0
    assert "$$" in capsys.readouterr().out


def test_cli_derive_brg_with_kernel_recursion(capsys):
    assert main(["derive", "brg", "--activation", "relu", "--depth", "1", "--regulator", "sharp"]) == 0
    out = capsys.readouterr().out
    assert "K⁽¹⁾₁₂" in out and "NOT verified" not in out


def test_cli_bad_input(capsys):
    assert main(["derive", "brg", "--regulator", "nonsense", "--no-kernel"]) == 2
    assert "regulator" in capsys.readouterr().err
    assert main(["derive", "brg", "--depth", "0", "--no-kernel"]) == 2
    assert "depth" in capsys.readouterr().err


# ----------------------------------------------------------------------------- bad input
def test_bad_input_names_the_argument():
    fisher, prior, post = general_problem([1.0, 2.0], 0)
    cases = [
        (lambda: coarse_grain(post, fisher, -1.0, prior=prior), NotPositive, "cutoff"),
        (lambda: coarse_grain(post, fisher, float("nan"), prior=prior), NonFinite, "cutoff"),
        (lambda: coarse_grain(post, fisher, float("inf"), prior=prior), NonFinite, "cutoff"),
        (lambda: coarse_grain(([0, 0], [[1, 0], [0, -1]]), fisher, 1.0, prior=prior), NotPositiveDefinite,
         "posterior.covariance"),
        (lambda: coarse_grain(post, np.eye(3), 1.0, prior=prior), ShapeMismatch, "fisher"),
        (lambda: coarse_grain(post, -np.eye(2), 1.0, prior=prior), NotPositiveDefinite, "fisher"),
        (lambda: coarse_grain(post, fisher, 1.0), InvalidArgument, "prior"),
        (lambda: coarse_grain(post, fisher, 1.0, prior=prior, prescription="flat"), UnknownName, "prescription"),
        (lambda: coarse_grain(post, fisher, 1.0, prior=prior, criterion="trace"), UnknownName, "criterion"),
        (lambda: predictive_flow(np.zeros((0, 0)), [], 0.1, 1.0), ShapeMismatch, "k_xx"),
        (lambda: predictive_flow(np.eye(3), [1.0, 2.0], 0.1, 1.0), ShapeMismatch, "y"),
        (lambda: predictive_flow(np.eye(2), [1.0, 2.0], 0.0, 1.0), NotPositive, "noise_variance"),
        (lambda: predictive_flow(np.eye(2), [1.0, 2.0], 0.1, -2.0), NotPositive, "cutoff"),
        (lambda: predictive_flow(np.eye(2), [1.0, 2.0], 0.1, 1.0, k_zx=np.ones((3, 2))), ShapeMismatch, "k_zz"),
        (lambda: nngp_flow(rbf, np.zeros((0, 2)), [], 0.1, 1.0), ShapeMismatch, "x"),
        (lambda: nngp_flow(rbf, np.ones((2, 2)), [1.0, 2.0], 0.1, 1.0, np.ones((2, 3))), ShapeMismatch, "z"),
        (lambda: training_flow(np.eye(2), [0.0, 0.0], -1.0), NotPositive, "observations"),
        (lambda: predictive_flow(np.eye(2), [1.0, 2.0], 0.1, 1.0, observations=0.0), NotPositive, "observations"),
        (lambda: coarse_grain_modes([], 1.0, [], [], [], []), ShapeMismatch, "fisher_eigenvalues"),
        (lambda: coarse_grain_modes([1], -1.0, [0], [1], [0], [1]), NotPositive, "cutoff"),
        (lambda: shell_weight(1, 1, "nonsense"), UnknownName, "regulator"),
    ]
    for call, exc, arg in cases:
        with pytest.raises(exc) as err:
            call()
        assert isinstance(err.value, SymbrgError)
        assert err.value.argument == arg, (arg, str(err.value))


# ------------------------------------------------------------------------- composition law
def _composition_case(correlated: bool):
    rng = np.random.default_rng(0)
    q = np.linalg.qr(rng.normal(size=(5, 5)))[0]
    fisher = q @ np.diag([0.1, 0.5, 1.0, 2.0, 4.0]) @ q.T
    a = rng.normal(size=(5, 5))
    trained = (rng.normal(size=5), a @ a.T / 5 + 0.1 * np.eye(5))
    b = rng.normal(size=(5, 5))
    c0 = b @ b.T / 5 + 0.5 * np.eye(5) if correlated else q @ np.diag(rng.uniform(0.5, 2.0, 5)) @ q.T
    prior = (rng.normal(size=5), c0)

    def step(state, cutoff):
        return coarse_grain(state, fisher, cutoff, prior=prior, prescription="prior")

    def gap(x, y):
        return max(np.abs(x.mean - y.mean).max(), np.abs(x.covariance - y.covariance).max())
    return step, trained, gap


@pytest.mark.parametrize("correlated", [False, True])
def test_coarse_graining_composes_to_the_larger_cutoff_in_the_ir_direction(correlated):
    r"""Sharp shell: :math:`\pi_{\Lambda_2}\circ\pi_{\Lambda_1} = \pi_{\Lambda_2}` for :math:`\Lambda_2\ge\Lambda_1`,
    with any prior (the stiff set at :math:`\Lambda_2` lies inside the one at :math:`\Lambda_1`)."""
    step, trained, gap = _composition_case(correlated)
    assert gap(step(step(trained, 0.7), 1.5), step(trained, 1.5)) < 1e-12


def test_coarse_graining_back_towards_the_uv_is_not_a_semigroup_with_a_correlated_prior():
    r""":math:`\Lambda_2 < \Lambda_1`: with a prior diagonal in the Fisher eigenbasis the second step returns
    :math:`\pi_{\Lambda_1} = \pi_{\max}` (lost information is not restored); with a correlated prior it is
    neither :math:`\pi_{\Lambda_1}` nor :math:`\pi_{\Lambda_2}` (the prior's correlation across the split
    at :math:`\Lambda_2` is dropped).  The derivation text states exactly this."""
    step, trained, gap = _composition_case(False)
    assert gap(step(step(trained, 1.5), 0.7), step(trained, 1.5)) < 1e-12
    step, trained, gap = _composition_case(True)
    back = step(step(trained, 1.5), 0.7)
    assert gap(back, step(trained, 1.5)) > 0.1 and gap(back, step(trained, 0.7)) > 0.1
