r"""Ensemble statistics of finite-width networks, with error bars, against the analytic engines.

Job: estimate n-point functions of an ensemble of networks and set them beside the infinite-width
predictions of :mod:`symbrg.kernels.architecture`, each with a standard error from the ensemble size M:

* 2-point function :math:`G_2(x,x') = \mathbb E[f(x)f(x')]` at initialization vs the NNGP kernel
  :math:`K^{(L)}(x,x')`; standard error :math:`\mathrm{sd}(f f')/\sqrt M`;
* connected 4-point function
  :math:`G_4^c = \mathbb E[f_1f_2f_3f_4] - \mathbb E[f_1f_2]\mathbb E[f_3f_4] - \mathbb E[f_1f_3]\mathbb E[f_2f_4]
  - \mathbb E[f_1f_4]\mathbb E[f_2f_3]` (zero for a Gaussian process; :math:`O(1/n)` at width n), with
  jackknife errors, and the exponent of its width scaling :math:`G_4^c \propto n^{-\alpha}` (:math:`\alpha = 1`);
* readout-trained ensembles ("sample then optimize", Matthews et al. 2017): gradient descent on the
  readout alone, to convergence from the prior, maps each member to
  :math:`f_\infty = f_0 + k_*K^{-1}(y - f_0(X))`, so the ensemble samples the noise-free GP posterior
  :math:`\mu_* = K_{*X}K_{XX}^{-1}y`, :math:`\Sigma_* = K_{**} - K_{*X}K_{XX}^{-1}K_{X*}` of the NNGP;
* gradient-descent-trained wide ensembles vs the NTK: with the loss of :mod:`symbrg.ensembles.training`
  (:math:`\frac1P\sum(f-y)^2`) and step :math:`\eta`, the linearized network obeys
  :math:`f_{t}(X) - y = (1 - \tfrac{2\eta}{P}\Theta)^t (f_0(X) - y)`, hence the ensemble mean
  :math:`\mu_t(x_*) = \Theta_{*X}\Theta^{-1}\big(1 - (1-\tfrac{2\eta}{P}\Theta)^t\big)y` (Lee et al. 2019).

Finite width adds a bias :math:`O(1/n)` to all of these; the comparisons report it as part of the
deviation, in units of the standard error, and leave the tolerance to the caller.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from symbrg.core import checks
from symbrg.ensembles.networks import Network
from symbrg.ensembles.training import train

__all__ = ["Comparison", "infinite_width", "two_point", "connected_four_point", "jackknife",
           "percentile_bootstrap", "nngp_comparison", "four_point_scaling", "readout_posterior_comparison",
           "ntk_mean_comparison", "gp_posterior"]


@dataclass
class Comparison:
    """An ensemble estimate, its standard error and the analytic prediction (same shapes)."""
    empirical: np.ndarray
    stderr: np.ndarray
    predicted: np.ndarray
    members: int

    @property
    def z(self) -> np.ndarray:
        """Deviation in standard errors, :math:`(\\hat G - G)/\\mathrm{se}` (0 where se = 0 and equal)."""
        diff = np.asarray(self.empirical - self.predicted, dtype=float)
        se = np.asarray(self.stderr, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(se > 0, diff / np.where(se > 0, se, 1), np.where(diff == 0, 0.0, np.inf))

    @property
    def max_z(self) -> float:
        """The largest :math:`|z|`."""
        return float(np.max(np.abs(self.z)))

    def agrees(self, sigmas: float = 5.0) -> bool:
        """Whether every entry lies within ``sigmas`` standard errors of the prediction."""
        return self.max_z <= sigmas


def infinite_width(net: Network):
    """The :mod:`symbrg.kernels.architecture` architecture with the same layers, σ's and parameterization."""
    from symbrg.kernels.architecture import Dense, Nonlinearity, serial
    layers: list[Dense | Nonlinearity] = []
    for l in range(net.depth + 1):
        sb = net.sigma_b[l] if net.bias else 0.0
        layers.append(Dense(net.sigma_w[l], sb, net.parameterization, net.widths[l + 1]))
        if l < net.depth:
            layers.append(Nonlinearity(net.activations[l]))
    return serial(*layers, name="network")


def _outputs(outputs: Any) -> np.ndarray:
    f = checks.finite_array("outputs", outputs, ndim=(2, 3))
    f = f[..., 0] if f.ndim == 3 else f
    checks.integer("members", f.shape[0], minimum=2)
    return f


def two_point(outputs: Any) -> tuple[np.ndarray, np.ndarray]:
    r"""Empirical :math:`G_2(x_a, x_b) = \frac1M\sum_m f_m(x_a)f_m(x_b)` and its standard error.

    outputs: (M, P) (or (M, P, 1)).  Returns two (P, P) arrays.
    """
    f = _outputs(outputs)
    prod = f[:, :, None] * f[:, None, :]
    return prod.mean(axis=0), prod.std(axis=0, ddof=1) / math.sqrt(f.shape[0])


def jackknife(statistic: Callable[[np.ndarray], np.ndarray], samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Jackknife estimate and standard error of a smooth function of sample means.

    ``statistic`` maps stacked means (K, ...) to values (K, ...); ``samples`` has the member axis
    first.  The leave-one-out means :math:`(S - s_m)/(M-1)` are formed at once (no loop over members);
    :math:`\mathrm{se}^2 = \frac{M-1}{M}\sum_m(\hat\theta_{(m)} - \bar\theta)^2`, and the estimate is the
    bias-corrected :math:`M\hat\theta - (M-1)\bar\theta`.
    """
    m = samples.shape[0]
    total = samples.sum(axis=0)
    full = statistic((total / m)[None])[0]
    loo = statistic((total[None] - samples) / (m - 1))
    mean_loo = loo.mean(axis=0)
    se = np.sqrt((m - 1) / m * np.sum((loo - mean_loo) ** 2, axis=0))
    return m * full - (m - 1) * mean_loo, se


#: Elements of resampled data held at once by :func:`percentile_bootstrap` (bounds its memory).
BOOTSTRAP_CHUNK = 1 << 22


def percentile_bootstrap(statistic: Callable[[np.ndarray], np.ndarray], samples: np.ndarray, *,
                         resamples: int = 2000, confidence: float = 0.95,
                         seed: "int | np.random.SeedSequence | None" = 0
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Percentile bootstrap over members: the estimate :math:`\hat\theta = s(X)` and the interval
    :math:`[q_{\alpha/2}, q_{1-\alpha/2}]` of :math:`s(X^*_b)`, :math:`b = 1..B`, :math:`\alpha = 1 -`
    ``confidence``, each :math:`X^*_b` drawn with replacement from the M members (Efron & Tibshirani
    1993, ch. 13).

    ``statistic`` maps stacked samples (K, M, ...) to values (K, ...); ``samples`` has the member axis
    first.  Quantiles are empirical (``inverted_cdf``: each bound is one of the resampled values, so a
    statistic on a grid keeps its bounds on the grid; infinities are allowed).  Resamples are drawn
    from ``seed`` and evaluated in chunks of at most :data:`BOOTSTRAP_CHUNK` elements.
    """
    samples = np.asarray(samples)
    m = checks.integer("members", samples.shape[0], minimum=1)
    resamples = checks.integer("resamples", resamples, minimum=1)
    alpha = 1.0 - checks.in_range("confidence", confidence, 0.0, 1.0, closed=(False, False))
    rng = np.random.default_rng(seed)
    step = max(1, BOOTSTRAP_CHUNK // max(1, samples.size))
    reps = np.concatenate([statistic(samples[rng.integers(0, m, (min(step, resamples - s), m))])
                           for s in range(0, resamples, step)])
    lo, hi = np.quantile(reps, [alpha / 2, 1 - alpha / 2], axis=0, method="inverted_cdf")
    return statistic(samples[None])[0], lo, hi


def connected_four_point(outputs: Any, index: Sequence[int] = (0, 0, 0, 0)) -> tuple[float, float]:
    r""":math:`G_4^c(x_i,x_j,x_k,x_l)` (module docstring) with its jackknife standard error.

    outputs: (M, P); index: four input indices (default: all equal, :math:`\mathbb E f^4 - 3(\mathbb E f^2)^2`).
    """
    f = _outputs(outputs)
    i, j, k, l = (checks.integer("index", v, minimum=0, maximum=f.shape[1] - 1) for v in index)
    a, b, c, d = f[:, i], f[:, j], f[:, k], f[:, l]
    samples = np.stack([a * b * c * d, a * b, c * d, a * c, b * d, a * d, b * c], axis=1)

    def g4c(mom):
        return mom[:, 0] - mom[:, 1] * mom[:, 2] - mom[:, 3] * mom[:, 4] - mom[:, 5] * mom[:, 6]
    est, se = jackknife(g4c, samples)
    return float(est), float(se)


def _init_outputs(net: Network, x: np.ndarray, members: int, seed: Any, block: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, members, block):   # blocks of members bound memory
        ens = net.init(min(block, members - start), rng)
        out.append(net.forward(ens, x)[..., 0])
    return np.concatenate(out)


def nngp_comparison(net: Network, x: Any, members: int, seed: Any = 0, block: int = 256) -> Comparison:
    """The initialization ensemble's 2-point function on the rows of x against the NNGP Gram matrix."""
    x = checks.finite_array("x", x, ndim=2)
    members = checks.integer("members", members, minimum=2)
    f = _init_outputs(net, x, members, seed, block)
    emp, se = two_point(f)
    return Comparison(emp, se, infinite_width(net).nngp(x), members)


def four_point_scaling(make_net: Callable[[int], Network], widths: Sequence[int], x: Any,
                       members: int, seed: Any = 0, index: Sequence[int] = (0, 0, 0, 0),
                       block: int = 256) -> dict[str, Any]:
    r"""Connected 4-point function at several widths and the fitted exponent :math:`\alpha` of
    :math:`|G_4^c| \propto n^{-\alpha}` (weighted least squares in log-log, errors propagated as
    :math:`\mathrm{se}/|G_4^c|`).  ``make_net(n)`` builds the network of hidden width n."""
    x = checks.finite_array("x", x, ndim=2)
    ns = [checks.integer("width", n, minimum=1) for n in widths]
    ss = np.random.SeedSequence(seed if isinstance(seed, int) else None)
    pairs = [connected_four_point(_init_outputs(make_net(n), x, members, child, block), index)
             for n, child in zip(ns, ss.spawn(len(ns)))]
    vals, errs = np.array([v for v, _ in pairs]), np.array([e for _, e in pairs])
    ln, lv = np.log(ns), np.log(np.abs(vals))
    w = (np.abs(vals) / errs) ** 2
    A = np.stack([np.ones_like(ln), ln], axis=1)
    cov = np.linalg.inv(A.T @ (w[:, None] * A))
    coef = cov @ (A.T @ (w * lv))
    return {"widths": ns, "g4c": vals, "stderr": errs, "alpha": float(-coef[1]),
            "alpha_stderr": float(math.sqrt(cov[1, 1])), "amplitude": float(math.exp(coef[0]))}


def gp_posterior(k_xx: np.ndarray, k_sx: np.ndarray, k_ss: np.ndarray, y: np.ndarray,
                 noise_var: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    r"""GP posterior :math:`\mu = K_{*X}(K+\sigma^2)^{-1}y`, :math:`\Sigma = K_{**} - K_{*X}(K+\sigma^2)^{-1}K_{X*}`."""
    a = k_xx + checks.nonnegative("noise_var", noise_var) * np.eye(k_xx.shape[0])
    sol = np.linalg.solve(a, np.concatenate([y[:, None], k_sx.T], axis=1))
    return k_sx @ sol[:, 0], k_ss - k_sx @ sol[:, 1:]


def readout_posterior_comparison(net: Network, x: Any, y: Any, x_test: Any, members: int,
                                 seed: Any = 0, epochs: int = 10 ** 6) -> tuple[Comparison, Comparison]:
    r"""Readout-only gradient descent to convergence (``epochs`` full-batch steps of size
    :math:`\eta = P/(2\lambda_{\max}(K_{XX}))`, K the NNGP Gram matrix) vs the NNGP posterior.

    Returns the comparisons of the ensemble mean and variance at ``x_test``.  The variance's
    standard error is :math:`s^2\sqrt{2/(M-1)}` (Gaussian ensemble).
    """
    x = checks.finite_array("x", x, ndim=2)
    y = checks.finite_array("y", y, ndim=1)
    x_test = checks.finite_array("x_test", x_test, ndim=2)
    members = checks.integer("members", members, minimum=2)
    arch = infinite_width(net)
    k_xx = arch.nngp(x)
    lr = 0.5 * x.shape[0] / np.linalg.eigvalsh(k_xx)[-1]     # stable: 2 lr lambda_max / P = 1
    ens = net.init(members, seed)
    trained = train(net, ens, x, y, lr=lr, epochs=epochs, batch_size=None, readout_only=True,
                    record_every=epochs).ensemble
    f = net.forward(trained, x_test)[..., 0]
    mu, cov = gp_posterior(k_xx, arch.nngp(x_test, x), arch.nngp(x_test), y)
    mean, var = f.mean(axis=0), f.var(axis=0, ddof=1)
    return (Comparison(mean, np.sqrt(var / members), mu, members),
            Comparison(var, var * math.sqrt(2.0 / (members - 1)), np.diag(cov), members))


def ntk_mean_comparison(net: Network, x: Any, y: Any, x_test: Any, members: int, *, lr: float,
                        steps: int, seed: Any = 0) -> Comparison:
    r"""Full-batch gradient descent on all layers for ``steps`` steps vs the NTK mean prediction
    :math:`\Theta_{*X}\Theta^{-1}(1-(1-\tfrac{2\eta}{P}\Theta)^t)y` (module docstring)."""
    x = checks.finite_array("x", x, ndim=2)
    y = checks.finite_array("y", y, ndim=1)
    x_test = checks.finite_array("x_test", x_test, ndim=2)
    members = checks.integer("members", members, minimum=2)
    ens = net.init(members, seed)
    trained = train(net, ens, x, y, lr=lr, epochs=steps, batch_size=None, record_every=max(1, steps)).ensemble
    f = net.forward(trained, x_test)[..., 0]
    arch = infinite_width(net)
    theta = arch.ntk(x)
    lam, u = np.linalg.eigh(theta)
    decay = 1.0 - (1.0 - 2.0 * lr * lam / x.shape[0]) ** steps
    mu = arch.ntk(x_test, x) @ (u @ ((decay / lam) * (u.T @ y)))
    return Comparison(f.mean(axis=0), f.std(axis=0, ddof=1) / math.sqrt(members), mu, members)
