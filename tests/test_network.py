"""Finite-width ensembles: gradients vs finite differences, training, statistics vs the engines."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from symbrg.core.errors import InvalidArgument, NonFinite, NotPositive, OutOfRange, UnknownName
from symbrg.ensembles import ensemble as E
from symbrg.ensembles.networks import network
from symbrg.ensembles.training import readout_design, train

RNG = np.random.default_rng(12345)
X = RNG.standard_normal((6, 3))
Y = np.sin(X[:, 0]) + 0.5 * X[:, 1]


def finite_difference_jacobian(net, ens, x, which, eps=1e-6):
    theta = ens.flat(which)
    out = np.zeros(net.forward(ens, x).shape + (theta.shape[1],))
    for a in range(theta.shape[1]):
        up, down = theta.copy(), theta.copy()
        up[:, a] += eps
        down[:, a] -= eps
        out[..., a] = (net.forward(ens.with_flat(up, which), x)
                       - net.forward(ens.with_flat(down, which), x)) / (2 * eps)
    return out


@pytest.mark.parametrize("param", ["ntk", "standard"])
@pytest.mark.parametrize("act,bias", [("tanh", True), ("erf", False), ("cosnet", True),
                                      ("softplus", True)])
def test_jacobian_and_backprop_match_finite_differences(param, act, bias):
    net = network((3, 5, 4, 2), act, sigma_w=1.3, sigma_b=0.4, parameterization=param, bias=bias)
    ens = net.init(3, seed=7)
    for which in ("all", "readout"):
        jac = net.jacobian(ens, X, which)
        fd = finite_difference_jacobian(net, ens, X, which)
        assert jac.shape == (3, 6, 2, net.n_params(which))
        np.testing.assert_allclose(jac, fd, atol=1e-7, rtol=1e-6)
        g = np.random.default_rng(1).standard_normal((3, 6, 2))
        out, cache = net.forward(ens, X, cache=True)
        vjp = net.backward(ens, cache, g, which)
        np.testing.assert_allclose(vjp, np.einsum("mpk,mpka->ma", g, jac), atol=1e-12, rtol=1e-10)


@settings(max_examples=25, deadline=None)
@given(widths=st.lists(st.integers(1, 4), min_size=1, max_size=3), members=st.integers(1, 3),
       seed=st.integers(0, 10 ** 6))
def test_flat_round_trip_and_readout_block(widths, members, seed):
    net = network((2, *widths, 1), "tanh", sigma_w=1.1, sigma_b=0.2)
    ens = net.init(members, seed)
    theta = ens.flat("all")
    assert theta.shape == (members, net.n_params("all"))
    np.testing.assert_array_equal(ens.with_flat(theta).flat("all"), theta)
    jac = net.jacobian(ens, X[:, :2], "all")
    np.testing.assert_allclose(net.jacobian(ens, X[:, :2], "readout"),
                               jac[..., -net.n_params("readout"):], atol=1e-14)
    assert net.prior_std("all").shape == (net.n_params("all"),)


def test_float32_and_member_inputs():
    net = network((3, 8, 1), "relu", dtype="float32")
    ens = net.init(2, 0)
    assert ens.weights[0].dtype == np.float32
    assert net.forward(ens, X).dtype == np.float32
    per_member = np.stack([X, 2 * X])
    out = network((3, 8, 1), "relu").forward(network((3, 8, 1), "relu").init(2, 0), per_member)
    assert out.shape == (2, 6, 1)


def manual_readout_sgd(net, ens, x, y, lr, epochs, batch):
    """The plain (primal) reference: one batch at a time on the readout weights."""
    theta = ens.flat("readout").copy()
    phi = readout_design(net, ens, x)
    p = x.shape[0]
    for _ in range(epochs):
        for s in range(0, p, batch):
            idx = list(range(s, min(s + batch, p)))
            resid = phi[:, idx] @ theta[:, :, None] - y[idx][None, :, None]
            theta -= lr * 2 / len(idx) * (np.swapaxes(phi[:, idx], 1, 2) @ resid)[..., 0]
    return theta


@pytest.mark.parametrize("batch", [1, 4, None])
@pytest.mark.parametrize("bias", [False, True])
def test_readout_epoch_map_equals_plain_sgd(batch, bias):
    net = network((3, 40, 1), "relu", sigma_w=1.5, sigma_b=0.3, bias=bias)
    ens = net.init(3, 1)
    res = train(net, ens, X, Y, lr=0.02, epochs=25, batch_size=batch, readout_only=True, record_every=6)
    ref = manual_readout_sgd(net, ens, X, Y, 0.02, 25, batch or X.shape[0])
    np.testing.assert_allclose(res.ensemble.flat("readout"), ref, rtol=1e-10, atol=1e-12)
    assert list(res.epochs_recorded) == [0, 6, 12, 18, 24, 25]
    final = np.mean((net.forward(res.ensemble, X)[..., 0] - Y) ** 2, axis=1)
    np.testing.assert_allclose(res.loss[-1], final, rtol=1e-10)
    np.testing.assert_array_equal(res.ensemble.weights[0], ens.weights[0])   # hidden layer frozen


def test_all_layer_training_sgd_gd_adam_reduce_loss_and_are_reproducible():
    net = network((3, 16, 16, 1), "tanh", sigma_w=1.2, sigma_b=0.1)
    ens = net.init(4, 3)
    for kw in (dict(batch_size=None, lr=0.2), dict(batch_size=2, lr=0.02, shuffle=True),
               dict(batch_size=1, lr=0.01), dict(optimizer="adam", lr=0.01, batch_size=3)):
        a = train(net, ens, X, Y, epochs=40, seed=5, **kw)
        b = train(net, ens, X, Y, epochs=40, seed=5, **kw)
        assert np.all(a.loss[-1] < 0.5 * a.loss[0]), kw
        np.testing.assert_array_equal(a.ensemble.flat(), b.ensemble.flat())
    c = train(net, ens, X, Y, epochs=5, lr=0.02, batch_size=2, shuffle=True, seed=6)
    d = train(net, ens, X, Y, epochs=5, lr=0.02, batch_size=2, shuffle=True, seed=7)
    assert not np.array_equal(c.ensemble.flat(), d.ensemble.flat())
    np.testing.assert_array_equal(net.init(4, 3).flat(), ens.flat())


def test_gd_step_is_minus_lr_times_the_mse_gradient():
    net = network((3, 6, 1), "tanh", sigma_w=1.2, sigma_b=0.3)
    ens = net.init(2, 0)
    step = train(net, ens, X, Y, lr=1e-3, epochs=1, batch_size=None).ensemble.flat()
    jac = net.jacobian(ens, X)[:, :, 0, :]
    resid = net.forward(ens, X)[..., 0] - Y
    grad = 2.0 / X.shape[0] * np.einsum("mp,mpa->ma", resid, jac)
    np.testing.assert_allclose(step, ens.flat() - 1e-3 * grad, rtol=1e-12, atol=1e-14)


def test_bad_input_names_the_argument():
    with pytest.raises(OutOfRange, match="width"):
        network((3, 0, 1), "relu")
    with pytest.raises(UnknownName, match="activation"):
        network((3, 4, 1), "nope")
    with pytest.raises(UnknownName, match="parameterization"):
        network((3, 4, 1), "relu", parameterization="mup")
    net = network((3, 4, 1), "relu")
    ens = net.init(2, 0)
    with pytest.raises(NonFinite, match="x"):
        net.forward(ens, np.full((2, 3), np.nan))
    with pytest.raises(NotPositive, match="lr"):
        train(net, ens, X, Y, lr=0.0, epochs=1)
    with pytest.raises(NonFinite, match="y"):
        train(net, ens, X, np.full(6, np.inf), lr=0.1, epochs=1)
    with pytest.raises(InvalidArgument, match="x"):
        net.forward(ens, np.ones((2, 5)))


# ----------------------------------------------------------------------- statistics vs engines
@pytest.mark.parametrize("param,act", [("standard", "relu"), ("ntk", "erf")])
def test_two_point_function_matches_nngp_within_5_se(param, act):
    net = network((3, 48, 48, 1), act, sigma_w=1.4, sigma_b=0.3, parameterization=param)
    cmp = E.nngp_comparison(net, X[:4], members=1500, seed=11)
    assert cmp.agrees(5.0), cmp.max_z
    assert cmp.stderr.max() < 0.1 * cmp.predicted.max()    # the test has power


def test_two_point_function_detects_a_wrong_kernel():
    net = network((3, 48, 1), "relu", sigma_w=1.4, sigma_b=0.3)
    cmp = E.nngp_comparison(net, X[:4], members=1500, seed=11)
    wrong = E.Comparison(cmp.empirical, cmp.stderr, 1.25 * cmp.predicted, cmp.members)
    assert not wrong.agrees(5.0)


def test_connected_four_point_scales_as_one_over_width():
    fit = E.four_point_scaling(lambda n: network((3, n, n, 1), "relu", sigma_w=1.4, sigma_b=0.1),
                               [16, 32, 64], X[:1], members=6000, seed=2)
    assert np.all(fit["g4c"] > 0)
    assert abs(fit["alpha"] - 1.0) < 5 * fit["alpha_stderr"] + 0.1, fit
    assert fit["alpha_stderr"] < 0.3


def test_connected_four_point_of_gaussians_is_zero_and_jackknife_is_calibrated():
    rng = np.random.default_rng(4)
    cov = np.array([[1.0, 0.5], [0.5, 2.0]])
    f = rng.multivariate_normal([0, 0], cov, size=20000)
    g4, se = E.connected_four_point(f, (0, 0, 1, 1))
    assert abs(g4) < 5 * se
    # exact value for a non-Gaussian case: f = s * u, u ~ N(0,1), s = +-1 or 2 -> E f^4 - 3 (E f^2)^2
    u = rng.standard_normal(40000) * np.where(rng.random(40000) < 0.5, 1.0, 2.0)
    g4, se = E.connected_four_point(u[:, None])
    exact = 3 * (1 + 16) / 2 - 3 * ((1 + 4) / 2) ** 2
    assert abs(g4 - exact) < 5 * se


def test_readout_trained_ensemble_samples_the_nngp_posterior():
    rng = np.random.default_rng(8)
    x, xt = rng.standard_normal((5, 2)), rng.standard_normal((3, 2))
    net = network((2, 512, 1), "erf", sigma_w=1.5, sigma_b=0.2)
    mean, var = E.readout_posterior_comparison(net, x, np.sin(x[:, 0]), xt, members=400, seed=3)
    assert mean.agrees(5.0) and var.agrees(5.0), (mean.max_z, var.max_z)
    assert np.all(var.predicted < 0.5 * np.diag(E.infinite_width(net).nngp(xt)))   # data informed


def test_gradient_descent_wide_ensemble_follows_the_ntk_mean():
    rng = np.random.default_rng(9)
    x, xt = rng.standard_normal((5, 2)), rng.standard_normal((3, 2))
    net = network((2, 512, 1), "erf", sigma_w=1.5, sigma_b=0.2)
    cmp = E.ntk_mean_comparison(net, x, np.sin(x[:, 0]), xt, members=150, lr=0.5, steps=60, seed=4)
    assert cmp.agrees(5.0), cmp.max_z
    assert np.max(np.abs(cmp.predicted)) > 10 * np.max(cmp.stderr)   # training moved the mean
