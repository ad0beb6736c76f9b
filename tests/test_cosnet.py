"""Tests of the generalized cos-net field theories (symbrg.cosnet.theory) and the BRG = ERG certificate
(symbrg.cosnet.theorem, ``symbrg prove cosnet-erg``)."""
from __future__ import annotations

import json
import math

import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from symbrg.cli import main
from symbrg.core.errors import InvalidArgument, NotPositive, OutOfRange, UnknownName, Unsupported
from symbrg.cosnet import theorem as th
from symbrg.cosnet import theory as cn

SETTINGS = settings(max_examples=25, deadline=None)
SE = 5.0  # Monte-Carlo tolerance in standard errors


def mc_covariance(f: np.ndarray, i: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Ensemble estimate of E[f(x_i) f(x_j)] for all j, and its standard error from the sample."""
    prod = f[:, i:i + 1] * f
    return prod.mean(0), prod.std(0, ddof=1) / math.sqrt(f.shape[0])


# ----------------------------------------------------------------------------- function space
@pytest.mark.parametrize("dim", [1, 2, 3, 4, "d"])
def test_generalized_cosnet_is_the_free_scalar_with_cutoff_R(dim):
    net = cn.generalized_cosnet(dim, cn.R, cn.M, cn.SIGMA)
    assert sp.simplify(net.spectral_density - cn.SIGMA ** 2 / (cn.P ** 2 + cn.M ** 2)) == 0
    act = net.dual_action()
    assert act.local and act.cutoff == cn.R
    assert sp.simplify(act.Z - cn.SIGMA ** -2) == 0 and sp.simplify(act.mass2 - cn.M ** 2) == 0
    variant = cn.propagator_cosnet(dim, cn.R, cn.M, cn.SIGMA)   # same field theory
    assert sp.simplify(variant.spectral_density - net.spectral_density) == 0


@pytest.mark.parametrize("make", [lambda: cn.generalized_cosnet(2, cn.R, cn.M, cn.SIGMA),
                                  lambda: cn.halverson_cosnet(3, 1.2)])
def test_field_theory_derivation(make):
    dv = make().derivation()
    assert dv.verified and len(dv.steps) == 4
    assert "\\begin{document}" in dv.to_latex()


def test_gaussian_frequencies_give_the_rbf_kernel_and_a_nonlocal_action():
    net = cn.halverson_cosnet(2, sigma_w0=1.5, sigma_w1=1.0, sigma_b1=0.3)
    r = cn.DIST
    assert sp.simplify(net.kernel_expr(r) - (sp.Rational(9, 100) + sp.exp(-sp.Rational(9, 16) * r ** 2) / 2)) == 0
    assert not net.dual_action().local
    X = np.array([[0.0, 0.0], [0.4, -0.2], [1.0, 1.0]])
    K = net.kernel(X)
    assert np.allclose(K, K.T) and np.all(np.linalg.eigvalsh(K) > -1e-12)
    assert np.allclose(net.kernel(X, cutoff=1e-12), K, atol=1e-9)  # tiny cutoff: nothing removed


@pytest.mark.parametrize("dim", [1, 3])
def test_closed_form_G_R_against_mpmath_quadrature(dim):
    vals = {cn.R: 6, cn.M: sp.Rational(3, 4), cn.SIGMA: 1}  # all exactly representable in float64
    for r in (sp.Rational(5, 4), sp.Rational(7, 2)):
        closed = sp.N(cn.free_propagator_expr(dim, r).subs(vals), 30)
        quad = cn.free_propagator(float(r), dim, 6.0, 0.75, precision=30)[0]
        with mpmath.workdps(30):
            assert abs(mpmath.mpf(str(closed)) - quad) < mpmath.mpf(10) ** -20


@pytest.mark.parametrize("dim", [1, 3])
def test_G_R_approaches_the_continuum_propagator(dim):
    """|G_R - G_oo| is bounded by the oscillating tail: 1/(pi R) in d = 1, 1/(pi^2 r^2 R) in d = 3."""
    r, R, m = np.array([0.5, 1.0, 2.0]), 60.0, 0.7
    cont = sp.lambdify(cn.DIST, cn.continuum_propagator_expr(dim).subs({cn.M: m, cn.SIGMA: 1}))(r)
    bound = 1 / (np.pi * R) if dim == 1 else 1 / (np.pi ** 2 * r ** 2 * R)
    gap = np.abs(cn.free_propagator(r, dim, R, m) - cont)
    assert np.all(gap <= bound) and np.all(gap > 0)


@pytest.mark.parametrize("dim", [1, 2, 3, 4, "d"])
def test_coincident_G_R_closed_form(dim):
    vals = {cn.R: 5, cn.M: sp.Rational(1, 2), cn.SIGMA: 1}
    expr = cn.free_propagator_expr(dim, 0).subs(vals)
    d = 3 if dim == "d" else dim
    if dim == "d":
        expr = expr.subs(cn.D, 3)
    quad = cn.free_propagator(0.0, d, 5.0, 0.5, precision=25)[0]
    with mpmath.workdps(30):
        assert abs(mpmath.mpf(str(sp.N(expr, 30))) - quad) < mpmath.mpf(10) ** -18


@pytest.mark.parametrize("dim", [1, 2, 3, 4])
def test_float64_kernels_match_mpmath(dim):
    r = np.array([0.0, 0.3, 1.7, 4.0])
    for k, reg in ((None, "sharp"), (1.5, "sharp"), (1.5, "litim"), (1.5, "exponential")):
        f = cn.coarse_grained_kernel(r, dim, 5.0, 0.6, k, reg)
        g = np.array([float(x) for x in cn.coarse_grained_kernel(r, dim, 5.0, 0.6, k, reg, precision=20)])
        assert np.allclose(f, g, rtol=1e-9, atol=1e-12)


def test_coarse_graining_limits():
    r = np.linspace(0, 3, 5)
    full = cn.free_propagator(r, 3, 4.0, 0.7)
    assert np.allclose(cn.coarse_grained_kernel(r, 3, 4.0, 0.7, 4.0, "sharp"), full)  # k = R: nothing removed
    assert np.allclose(cn.coarse_grained_kernel(r, 3, 4.0, 0.7, 0.0, "litim"), 0.0)   # k = 0: everything
    # the variance decreases as the cutoff is lowered (UV -> IR)
    var = [cn.coarse_grained_kernel(0.0, 3, 4.0, 0.7, k, "exponential") for k in (0.5, 1.0, 2.0, 4.0)]
    assert np.all(np.diff(np.ravel(var)) > 0)


# ----------------------------------------------------------------------------- Fisher geometry
@SETTINGS
@given(st.floats(0.0, 5.0), st.floats(0.0, 5.0), st.floats(0.05, 3.0))
def test_readout_fisher_is_monotone_in_frequency(p1, p2, m):
    fisher = cn.generalized_cosnet(2, 5, cn.M).fisher_readout()
    f = sp.lambdify([cn.P, cn.M, cn.T, cn.N, cn.NOISE], fisher)
    a, b = sorted((p1, p2))
    assert f(a, m, 10, 3, 0.5) >= f(b, m, 10, 3, 0.5)


def test_parametrization_caveat_flat_fisher():
    cav = cn.parametrization_caveat(3)
    assert sp.simplify(cav["spectral_generalized"] - cav["spectral_propagator"]) == 0
    assert cav["dfisher_dp_propagator"] == 0
    assert sp.simplify(cav["dfisher_dp_generalized"]) != 0


def test_cos2_gaussian_input_against_monte_carlo():
    rng = np.random.default_rng(3)
    b, c, s = np.array([0.7, -0.4]), 0.9, 0.8
    x = rng.normal(0, s, size=(200_000, 2))
    v = np.cos(x @ b + c) ** 2
    expr = cn.cos2_gaussian_input().subs({cn.P: float(np.linalg.norm(b)), cn.PHASE: c, cn.SX: s})
    assert abs(v.mean() - float(expr)) < SE * v.std() / math.sqrt(v.size)


def test_readout_fisher_against_the_fisher_engine():
    """Exact Gaussian-input Fisher of every readout weight vs symbrg.information.fisher's diagonal Gauss-Newton
    Fisher of the readout Jacobian on T sampled inputs (5 standard errors of the sample mean)."""
    from symbrg.information.fisher import fisher_diagonal
    rng = np.random.default_rng(7)
    net = cn.generalized_cosnet(2, 3.0, 0.5)
    width, T, s_x, noise = 40, 20_000, 0.6, 0.3
    b = cn.sample_frequencies(net, (width,), rng)
    c = rng.uniform(-np.pi, np.pi, width)
    x = rng.normal(0, s_x, size=(T, 2))
    p = np.linalg.norm(b, axis=1)
    J = np.cos(x @ b.T + c) / np.sqrt((p ** 2 + 0.25) * width)          # d f / d a_i
    numeric = fisher_diagonal(J, noise_var=noise ** 2, reduction="sum")
    exact = sp.lambdify([cn.P, cn.PHASE], net.fisher_readout("gaussian", phase_average=False).subs(
        {cn.T: T, cn.N: width, cn.NOISE: noise, cn.SX: s_x}))(p, c)
    se = np.sqrt(T) * (J ** 2).std(0) / noise ** 2
    assert np.all(np.abs(numeric - exact) <= SE * se)


@SETTINGS
@given(st.floats(0.1, 20.0), st.floats(0.0, 3.0), st.floats(1.0, 1e4), st.integers(1, 10_000))
def test_lambda_k_round_trip(k, m, T, width):
    lam = cn.information_cutoff(k, m, T=T, width=width, noise=0.7)
    assert math.isclose(cn.momentum_cutoff(lam, m, T=T, width=width, noise=0.7), k, rel_tol=1e-9)


def test_lambda_k_map_is_derived_from_the_fisher():
    k2 = cn.momentum_cutoff_expr()
    assert sp.simplify(k2 - (cn.T / (2 * cn.N * cn.NOISE ** 2 * cn.LAM) - cn.M ** 2)) == 0


def test_training_is_a_mass_shift_on_a_lattice():
    """Exact GP posterior on a periodic lattice observed at every site (noise s_e) against the
    continuum prediction G_* = sigma^2/(p^2 + m^2 + sigma^2 n / s_e^2), n = 1/a, mode by mode."""
    L, n_sites, m, sigma, s_e, R = 20.0, 200, 0.7, 1.3, 0.4, 12.0
    a = L / n_sites
    p = 2 * np.pi * np.fft.fftfreq(n_sites, d=a)
    G = np.where(np.abs(p) < R, sigma ** 2 / (p ** 2 + m ** 2), 0.0)
    K = np.real(np.fft.ifft(G)) * n_sites / L          # K_ij = (1/L) sum_p G(p) e^{ip(x_i - x_j)}
    K = np.array([np.roll(K, i) for i in range(n_sites)])
    post = K - K @ np.linalg.solve(K + s_e ** 2 * np.eye(n_sites), K)
    spectrum = np.real(np.fft.fft(post[0])) * a        # back to continuum normalization
    m2 = cn.posterior_mass2(m, sigma, 1 / a, s_e)
    pred = np.where(np.abs(p) < R, sigma ** 2 / (p ** 2 + m2), 0.0)
    assert np.allclose(spectrum, pred, rtol=1e-8, atol=1e-10)
    assert m2 > m ** 2  # more data: heavier, shorter-ranged (IR -> UV)


# ----------------------------------------------------------------------------- finite width
@pytest.mark.parametrize("dim, width", [(1, 1000), (3, 2000)])
def test_finite_width_ensembles_reproduce_G_R(dim, width):
    net = cn.generalized_cosnet(dim, 4.0, 0.8)
    X = np.zeros((4, dim))
    X[:, 0] = [0.0, 0.4, 1.0, 2.5]
    f = cn.sample_cosnet(net, X, members=800, width=width, seed=11)
    mean, se = mc_covariance(f)
    exact = cn.free_propagator(X[:, 0], dim, 4.0, 0.8)
    assert np.all(np.abs(mean - exact) <= SE * se)


@pytest.mark.parametrize("regulator", ["sharp", "litim", "exponential"])
def test_finite_width_ensembles_reproduce_coarse_grained_kernels(regulator):
    dim, R, m, width = 2, 4.0, 0.8, 1000
    net = cn.generalized_cosnet(dim, R, m)
    T = 2.0 * width
    lam = cn.information_cutoff(2.0, m, T=T, width=width)     # the shell at k = 2
    X = np.array([[0.0, 0.0], [0.5, 0.0], [1.0, 0.5], [2.0, 1.0]])
    f = cn.sample_cosnet(net, X, members=800, width=width, seed=5, cutoff=lam, regulator=regulator, T=T)
    mean, se = mc_covariance(f)
    k = cn.momentum_cutoff(lam, m, T=T, width=width)
    exact = cn.coarse_grained_kernel(np.linalg.norm(X - X[0], axis=1), dim, R, m, k, regulator)
    assert np.allclose(net.kernel(X, cutoff=lam, regulator=regulator, T=T, width=width)[0], exact, rtol=1e-8)
    assert np.all(np.abs(mean - exact) <= SE * se)
    assert np.all(exact[0] < cn.free_propagator(0.0, dim, R, m))  # coarse graining lowers the variance


def test_propagator_variant_sampler_and_seeding():
    net = cn.propagator_cosnet(1, 5.0, 0.6)
    X = np.array([[0.0], [0.7], [2.0]])
    f = cn.sample_cosnet(net, X, members=1500, width=1000, seed=2)
    mean, se = mc_covariance(f)
    assert np.all(np.abs(mean - net.kernel(X)[0]) <= SE * se)
    g = cn.sample_cosnet(net, X, members=1500, width=1000, seed=2)
    assert np.array_equal(f, g)
    assert not np.array_equal(f, cn.sample_cosnet(net, X, members=1500, width=1000, seed=3))


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("call, exc, arg", [
    (lambda: cn.generalized_cosnet(2, 3.0, -0.1), NotPositive, "m"),
    (lambda: cn.generalized_cosnet(2, 0.0, 1.0), NotPositive, "R"),
    (lambda: cn.generalized_cosnet(0, 1.0, 1.0), OutOfRange, "dim"),
    (lambda: cn.generalized_cosnet("x", 1.0, 1.0), InvalidArgument, "dim"),
    (lambda: cn.momentum_cutoff(10.0, 1.0), OutOfRange, "lam"),
    (lambda: cn.momentum_cutoff(-1.0, 1.0), NotPositive, "lam"),
    (lambda: cn.free_propagator([0.1], 2, 3.0, 0.0), InvalidArgument, "m"),
    (lambda: cn.coarse_grained_kernel([0.1], 2, 3.0, 1.0, 1.0, "gaussian"), UnknownName, "regulator"),
    (lambda: cn.sample_cosnet(cn.generalized_cosnet(2, 3, 1), np.zeros((2, 3)), 2, 2), InvalidArgument, "X"),
    (lambda: cn.sample_cosnet(cn.generalized_cosnet(1, 3, 1), np.zeros((2, 1)), 0, 2), OutOfRange, "members"),
    (lambda: cn.sample_cosnet(cn.halverson_cosnet(1), np.zeros((2, 1)), 2, 2, cutoff=0.0), NotPositive, "cutoff"),
    (lambda: th.cosnet_erg_certificate(0, "sharp"), OutOfRange, "dim"),
    (lambda: th.cosnet_erg_certificate(2, "power:2"), UnknownName, "regulator"),
])
def test_bad_input_names_the_argument(call, exc, arg):
    with pytest.raises(exc) as info:
        call()
    assert info.value.argument == arg


def test_non_gaussian_density_without_radius_cannot_be_sampled():
    net = cn.CosNet(1, cn.FrequencyDensity("tail", 1 / (1 + cn.P ** 4)))
    with pytest.raises(Unsupported):
        cn.sample_cosnet(net, np.zeros((2, 1)), 2, 2)


# ----------------------------------------------------------------------------- the certificate
def test_step_normalization_decides_the_sharp_shell_and_catches_a_wrong_one():
    I = th._fisher()
    k2 = cn.momentum_cutoff_expr()
    right = th._verify(sp.Heaviside(I - cn.LAM), sp.Heaviside(k2 - cn.P ** 2), domain=th.WIDE)
    assert right.verified and right.symbolic_zero
    wrong = th._verify(sp.Heaviside(I - cn.LAM), sp.Heaviside(k2 / 2 - cn.P ** 2), domain=th.WIDE, points=40)
    assert not wrong.verified and not wrong.symbolic_zero and wrong.max_abs_error >= 1


@pytest.mark.parametrize("dim, regulator", [(1, "sharp"), (2, "exponential"), (4, "litim"), ("d", "sharp")])
def test_certificates_verify(dim, regulator):
    # issue 14: the falsifiable certificate has fewer identities than the old one (which restated
    # definitions), checked numerically at 30 digits, each falsified by a named mutation
    cert = th.cosnet_erg_certificate(dim, regulator, points=3)
    rows = th.identity_table(cert)
    assert cert.verified and len(rows) >= 9
    assert all(r["verified"] and r["points"] >= 2 for r in rows)
    assert "rem:mutations" in {s.label for s in cert.steps}


def test_a_wrong_brg_side_fails_the_certificate(capsys):
    """The certificate can fail: a readout prior variance off by a momentum-dependent factor is caught."""
    cert = th.cosnet_erg_certificate(2, "exponential", points=3, mutate="wrong-variance")
    bad = {r["name"] for r in th.identity_table(cert) if not r["verified"]}
    assert not cert.verified and {"two-point", "polchinski", "spectral"} <= bad
    assert main(["prove", "cosnet-erg", "--dim", "2", "--regulator", "exponential", "--points", "3",
                 "--mutate", "wrong-variance"]) == 1
    assert "NOT VERIFIED" in capsys.readouterr().out


def test_caveat_numerically_the_flat_fisher_selects_no_momentum_shell():
    """Propagator-weighted frequencies: every neuron has the same Fisher, so a cutoff keeps all or nothing."""
    net = cn.propagator_cosnet(1, 5.0, 0.6)
    X = np.array([[0.0], [1.0]])
    _, fisher = cn.sample_cosnet(net, X, 3, 50, seed=0, cutoff=0.4, T=1.0, return_fisher=True)
    assert np.allclose(fisher, fisher.flat[0])
    K = net.kernel(X)
    assert np.allclose(net.kernel(X, cutoff=0.9 * fisher.flat[0], T=1.0, width=50), K)
    assert np.allclose(net.kernel(X, cutoff=1.1 * fisher.flat[0], T=1.0, width=50), 0.0)


@SETTINGS
@given(st.floats(0.02, 0.5), st.floats(0.02, 0.5), st.sampled_from(["sharp", "litim", "exponential"]))
def test_coarse_grained_variance_decreases_with_the_information_cutoff(l1, l2, regulator):
    net = cn.generalized_cosnet(3, 4.0, 0.5)
    lo, hi = sorted((l1, l2))
    x = np.zeros((1, 3))
    v_lo = net.kernel(x, cutoff=lo, regulator=regulator)[0, 0]
    v_hi = net.kernel(x, cutoff=hi, regulator=regulator)[0, 0]
    assert v_hi <= v_lo + 1e-12 and v_lo <= net.kernel(x)[0, 0] + 1e-12


def test_certificate_symbolic_dimension_exponential():
    cert = th.cosnet_erg_certificate("d", "exponential")
    rows = th.identity_table(cert)
    assert cert.verified and all(r["verified"] for r in rows)
    names = {r["name"] for r in rows}
    assert {"two-point", "two-point-flow", "vacuum-flow", "polchinski", "coincident-flow",
            "wetterich-propagator", "wetterich-vacuum", "spectral", "cutoff-map"} <= names
    assert "\\begin{document}" in cert.to_latex()


def test_cli_prove_json_and_exit_status(capsys):
    assert main(["prove", "cosnet-erg", "--dim", "3", "--regulator", "sharp", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verified"] is True and len(out["identities"]) >= 9 and len(out["mutations"]) >= 4
    row = out["identities"][0]
    assert {"name", "symbolic_zero", "max_abs_numeric"} <= set(row)
    assert main(["prove", "cosnet-erg", "--dim", "0"]) == 2
    assert "dim" in capsys.readouterr().err


def test_cli_derive_cosnet_prints_a_document(capsys):
    assert main(["derive", "cosnet", "--dim", "1", "--regulator", "exponential", "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert "$$" in out and "Polchinski" in out


def test_cli_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        main(["prove", "cosnet-erg", "--help"])
    assert "examples:" in capsys.readouterr().out
