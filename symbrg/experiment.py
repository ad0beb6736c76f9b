r"""The information-shell renormalization experiment of arXiv:2405.17538 §5, on a trained ensemble.

Job: train an ensemble of finite-width networks, measure each member's Fisher metric on a Fisher
set, and coarse-grain it shell by shell: for every cutoff :math:`\Lambda` of a grid, the *sloppy*
parameters (Eq. (53): Fisher sensitivity :math:`\lambda_A < \Lambda`) are replaced while the stiff
ones keep their trained values,

.. math::
    \theta_\Lambda = \xi_\Lambda + \Pi_>(\Lambda)\,(\theta_* - \xi_\Lambda),\qquad
    I = \frac{1}{n}\sum_{x\in\mathcal X_F} J(x)^\top J(x)\quad(\text{unit noise}),

with :math:`\Pi_>` the stiff projector: the mask :math:`I_{AA} \ge \Lambda` (``criterion="diagonal"``,
the paper's numerics) or the span of the eigenvectors with eigenvalue :math:`\ge\Lambda`
(``"eigen"``, computed in prior-whitened coordinates :math:`u = \theta/\sigma_{\rm prior}` from the
thin SVD of the whitened Jacobian, so no :math:`P\times P` matrix is formed; the null space of the
Fisher is always sloppy).  :math:`\xi_\Lambda` is a prior draw (``mode="resample"``; one draw for
all cutoffs when ``cumulative``, so a parameter once resampled keeps its new value, as in the
authors' code; a fresh draw per cutoff otherwise), the prior mean 0 (``"zero"``), or integrated
over the prior (``"marginalize"``: readout only, exact for the linear readout: the member's
prediction is the mean over :math:`\xi` and its variance :math:`\sum_{\rm sloppy}\sigma^2 \phi(x)^2`
enters the predictive variance).

Measured per :math:`\Lambda`: test MSE per member, its ensemble mean and spread, the ensemble's
predictive mean and variance at the test points, the fraction of parameters replaced (in
``results.json``: ``lambdas``, ``mse_mean``, ``mse_std``, ``mse_sem``, quantiles, ``fraction_resampled``,
``lambda_c``, ``predictive_variance`` (mean over test points) and at ``test_point``; the per-member
and per-test-point arrays ``mse_members``, ``predictive_mean_test``, ``predictive_variance_test``,
``outputs_at_test_point`` carry one extra first row, the trained ensemble); the critical
cutoff :math:`\Lambda_C` is the first grid value where the mean test MSE leaves its trained value
by more than ``rtol`` (relative).  Members whose trained test MSE is non-finite or above
``drop_above`` are excluded from the statistics (the authors drop "poorly trained" members with
test loss :math:`\ge 10^3`); their number is reported.

Reproducibility: the data come from ``SeedSequence(seed, spawn_key=(0,))``, member block ``b`` from
``spawn_key=(1, b)``; blocks of ``block`` members are trained together and saved as they finish, so
an interrupted run resumed with ``resume=True`` ends with exactly the results of an uninterrupted
run with the same seed.
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import checks
from .errors import InvalidArgument, OutputExists, Unsupported, UnknownName
from .fisher import fisher_diagonal, shell_split
from .network import Ensemble, Network, network
from .training import readout_design, train

__all__ = ["ShellExperiment", "PRESETS", "PAPER_LAMBDAS", "preset", "run_shell_experiment",
           "critical_cutoff", "renormalize", "make_data", "plot_results"]

#: The 25-point cutoff grid of the authors' code (xand-stapleton/bayes-nn-ft, 2a398b4).
PAPER_LAMBDAS = (1e-4, 5e-3, 7.5e-3, 1e-2, 5e-2, 7.5e-2, 0.1, 0.5, 0.75, 1.0, 5.0, 7.5, 10.0, 50.0,
                 75.0, 100.0, 500.0, 750.0, 1e3, 5e3, 7.5e3, 1e4, 5e4, 7.5e4, 1e5)
MODES = ("resample", "zero", "marginalize")
#: Members per block whose full Fisher eigenvalues are kept for the spectrum figure.
SPECTRUM_MEMBERS = 4
CRITERIA = ("diagonal", "eigen")
TARGETS = ("quadratic", "cosnet")


@dataclass(frozen=True)
class ShellExperiment:
    """Configuration of one shell-renormalization experiment (all sizes, seeds, options)."""
    name: str = "custom"
    # data: x ~ N(input_mean, input_std^2 I); target "quadratic" (the paper's) or "cosnet"
    target: str = "quadratic"
    input_mean: tuple = (1.0, 1.0)
    input_std: float = 1.0
    n_train: int = 200
    n_test: int = 200
    fisher_set: int = 10
    # network
    widths: tuple = (2, 10, 10, 2000, 1)
    activations: tuple = ("identity", "relu", "relu")
    sigma_w: tuple = (2 ** 0.5, 10 ** 0.5, 10 ** 0.5, 2000 ** 0.5)
    sigma_b: float = 0.0
    parameterization: str = "standard"
    bias: bool = False
    cosnet_radius: float = 0.0     # > 0: first layer uniform in the ball B_R, gain (|b|^2+m^2)^-1/2
    cosnet_mass: float = 1.0
    kernel_separations: tuple = ()  # cos-net: compare the coarse-grained prior kernel with G_k(r)
    kernel_bases: int = 16
    # training
    optimizer: str = "sgd"
    lr: float = 1e-6
    epochs: int = 1000
    batch_size: int | None = 1
    readout_only: bool = True
    # renormalization
    lambdas: tuple = PAPER_LAMBDAS
    criterion: str = "diagonal"
    mode: str = "resample"
    cumulative: bool = True
    rtol: float = 0.05
    drop_above: float | None = 1e3
    test_point: int = 40
    # ensemble
    members: int = 100
    block: int = 25
    seed: int = 0

    def validate(self) -> "ShellExperiment":
        """Check every field; raise a :mod:`symbrg.errors` exception naming the bad one."""
        checks.choice("target", self.target, TARGETS)
        checks.finite_array("input_mean", self.input_mean, ndim=1)
        checks.positive("input_std", self.input_std)
        for name in ("n_train", "n_test", "fisher_set", "members", "block"):
            checks.integer(name, getattr(self, name), minimum=1)
        for w in self.widths:
            checks.integer("width", w, minimum=1)
        checks.matching("input_mean", len(self.input_mean), self.widths[0], "input dimension")
        checks.positive("lr", self.lr)
        checks.integer("epochs", self.epochs, minimum=0)
        lam = checks.finite_array("lambdas", self.lambdas, ndim=1)
        if np.any(lam <= 0) or np.any(np.diff(lam) <= 0):
            raise InvalidArgument("lambdas", "the cutoff grid must be positive and strictly increasing")
        checks.choice("criterion", self.criterion, CRITERIA)
        checks.choice("mode", self.mode, MODES)
        if self.mode == "marginalize" and not self.readout_only:
            raise Unsupported("mode", "'marginalize' is exact (and implemented) for the readout only")
        checks.positive("rtol", self.rtol)
        checks.integer("test_point", self.test_point, minimum=0, maximum=self.n_test - 1)
        if self.drop_above is not None:
            checks.positive("drop_above", self.drop_above)
        checks.nonnegative("cosnet_radius", self.cosnet_radius)
        checks.positive("cosnet_mass", self.cosnet_mass)
        self.network()
        return self

    def network(self) -> Network:
        """The architecture."""
        acts = list(self.activations)
        return network(self.widths, acts, sigma_w=list(self.sigma_w), sigma_b=self.sigma_b,
                       parameterization=self.parameterization, bias=self.bias)

    def to_json(self) -> dict:
        """A JSON-serializable dict (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))


def _cosnet_sigma_w(d: int, radius: float) -> float:
    r"""Readout :math:`\sigma_w` of the generalized cos-net: :math:`\sigma_w^2 = 2\,\mathrm{vol}(B_R)/(2\pi)^d`."""
    vol = math.pi ** (d / 2) / math.gamma(d / 2 + 1) * radius ** d
    return math.sqrt(2 * vol / (2 * math.pi) ** d)


def _paper(**kw) -> ShellExperiment:
    return ShellExperiment(name="paper", **kw)


def _cosnet(**kw) -> ShellExperiment:
    radius, width = 6.0, 1000
    lambdas = tuple(float(v) for v in np.geomspace(2e-3, 2.0, 19))
    base = dict(name="cosnet", target="cosnet", input_mean=(0.0,), input_std=2.0, n_train=100,
                n_test=200, fisher_set=200, widths=(1, width, 1), activations=("cosnet",),
                sigma_w=(1.0, _cosnet_sigma_w(1, radius)), parameterization="standard",
                cosnet_radius=radius, cosnet_mass=0.8, kernel_separations=(0.0, 0.25, 0.5, 1.0, 2.0), lr=2e-3, epochs=200, batch_size=1,
                lambdas=lambdas, criterion="diagonal", mode="marginalize", drop_above=None, rtol=1.0,
                test_point=0, members=100, block=50)
    base.update(kw)
    return ShellExperiment(**base)


#: Named configurations: "paper" (the authors' code, §1e of the notes) and "cosnet" (the generalized
#: cos-net, where information shells are momentum shells and the renormalized kernel is known).
PRESETS: dict[str, Callable[..., ShellExperiment]] = {"paper": _paper, "cosnet": _cosnet}


def preset(name: str, **overrides: Any) -> ShellExperiment:
    """The named preset with fields overridden (e.g. ``preset("paper", members=20, fisher_set=200)``)."""
    if name not in PRESETS:
        raise UnknownName("preset", f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    bad = set(overrides) - {f.name for f in fields(ShellExperiment)}
    if bad:
        raise InvalidArgument(sorted(bad)[0], "is not a field of ShellExperiment")
    return PRESETS[name](**overrides).validate()


# ------------------------------------------------------------------------------------------ data
def target_function(kind: str, x: np.ndarray) -> np.ndarray:
    r"""The regression target: ``"quadratic"`` :math:`(1-x_0)^2 - \tfrac12(x_1 - x_0^2)` (the authors'
    "Rosenbrock"), ``"cosnet"`` :math:`\sin x_0 + \tfrac12\cos 3x_0` (band-limited, :math:`|p| \le 3`)."""
    if kind == "quadratic":
        return (1 - x[:, 0]) ** 2 - 0.5 * (x[:, 1] - x[:, 0] ** 2)
    return np.sin(x[:, 0]) + 0.5 * np.cos(3 * x[:, 0])


def make_data(cfg: ShellExperiment) -> dict[str, np.ndarray]:
    """Train, test and Fisher inputs (and targets), drawn from ``SeedSequence(seed, spawn_key=(0,))``."""
    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(0,)))
    mean = np.asarray(cfg.input_mean, dtype=float)
    draw = lambda n: mean + cfg.input_std * rng.standard_normal((n, mean.size))  # noqa: E731
    x_train, x_test, x_fisher = draw(cfg.n_train), draw(cfg.n_test), draw(cfg.fisher_set)
    data = {"x_train": x_train, "y_train": target_function(cfg.target, x_train),
            "x_test": x_test, "y_test": target_function(cfg.target, x_test), "x_fisher": x_fisher}
    if cfg.kernel_separations:   # pairs (u, u + r e_0) for translation-averaged 2-point functions
        bases = draw(cfg.kernel_bases)
        shift = np.zeros((len(cfg.kernel_separations), mean.size))
        shift[:, 0] = cfg.kernel_separations
        data["x_kernel"] = np.concatenate([bases, (bases[:, None, :] + shift[None]).reshape(-1, mean.size)])
    return data


def _init_members(cfg: ShellExperiment, net: Network, count: int, rng: np.random.Generator) -> Ensemble:
    ens = net.init(count, rng)
    if cfg.cosnet_radius > 0:   # generalized cos-net: frequencies uniform in the ball B_R
        from .cosnet import generalized_cosnet, sample_frequencies
        d, n = net.widths[0], net.widths[1]
        b = sample_frequencies(generalized_cosnet(d, cfg.cosnet_radius, cfg.cosnet_mass), (count, n), rng)
        ens.weights[0] = (b / net.weight_scale(0)).astype(net.dtype)
        ens.gains[0] = 1.0 / np.sqrt(np.sum(b ** 2, -1) + cfg.cosnet_mass ** 2)
    return ens


# ------------------------------------------------------------------------------- renormalization
@dataclass
class _Split:
    """Per-member sensitivities and (eigen) the whitened stiff basis."""
    criterion: str
    sensitivities: np.ndarray           # (M, P) diagonal entries, or (M, r) eigenvalues
    basis: np.ndarray | None = None     # (M, r, P) orthonormal rows, whitened coordinates


def _gram_eigen(white: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Nonzero spectrum of :math:`W^\top W` and its orthonormal eigenvectors (rows), for W (M, n, P),
    from the smaller of the two Gram matrices (no SVD: eigh of :math:`WW^\top` or :math:`W^\top W`);
    eigenvalues below round-off are set to 0 and their rows to 0."""
    n, p = white.shape[-2:]
    if n <= p:
        lam, u = np.linalg.eigh(np.matmul(white, np.swapaxes(white, 1, 2)))
        tol = 10 * max(n, p) * np.finfo(float).eps * lam[:, -1:]
        keep = lam > tol
        basis = np.matmul(np.swapaxes(u, 1, 2), white) / np.sqrt(np.where(keep, lam, 1.0))[..., None]
    else:
        lam, v = np.linalg.eigh(np.matmul(np.swapaxes(white, 1, 2), white))
        tol = 10 * max(n, p) * np.finfo(float).eps * lam[:, -1:]
        keep = lam > tol
        basis = np.swapaxes(v, 1, 2)
    return np.where(keep, lam, 0.0), basis * keep[..., None]


def fisher_split(jac: np.ndarray, prior_std: np.ndarray, criterion: str) -> _Split:
    r"""Fisher sensitivities from per-sample Jacobians ``jac`` (M, n, k, P), unit noise, mean over
    the n Fisher inputs: the diagonal :math:`I_{AA}`, or the nonzero eigenvalues of the prior-whitened
    Fisher :math:`\sigma I \sigma = W^\top W`, :math:`W = J\sigma/\sqrt n`, with its eigenvectors."""
    if criterion == "diagonal":
        return _Split("diagonal", fisher_diagonal(jac, 1.0, "mean"))
    m, n = jac.shape[:2]
    white = (jac * prior_std).reshape(m, -1, jac.shape[-1]) / math.sqrt(n)
    lam, basis = _gram_eigen(white)
    return _Split("eigen", lam, basis)


def renormalize(theta: np.ndarray, split: _Split, cutoff: float, xi: np.ndarray,
                prior_std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r""":math:`\theta_\Lambda = \xi + \Pi_>(\Lambda)(\theta_* - \xi)` for every member, and the fraction
    of parameter-space dimensions that are sloppy.  theta, xi: (M, P)."""
    if split.criterion == "diagonal":
        sloppy = shell_split(split.sensitivities, cutoff, "diagonal", layout="diagonal").sloppy
        return np.where(sloppy, xi, theta), sloppy.mean(axis=1)
    stiff = (split.sensitivities >= cutoff).astype(theta.dtype)          # (M, r)
    coeff = np.einsum("mrp,mp->mr", split.basis, (theta - xi) / prior_std) * stiff
    out = xi + prior_std * np.einsum("mrp,mr->mp", split.basis, coeff)
    return out, 1.0 - stiff.sum(axis=1) / theta.shape[1]


def _marginal_variance(phi: np.ndarray, split: _Split, cutoff: float, prior_std: np.ndarray) -> np.ndarray:
    r"""Per-member variance :math:`\mathrm{Var}_\xi f(x) = |\Pi_< \sigma\phi(x)|^2` of a linear readout
    with the sloppy part drawn from the prior; phi (M, T, P) -> (M, T)."""
    white = phi * prior_std
    if split.criterion == "diagonal":
        return np.einsum("mtp,mp->mt", white ** 2, (split.sensitivities < cutoff).astype(phi.dtype))
    stiff = (split.sensitivities >= cutoff).astype(phi.dtype)
    proj = np.einsum("mrp,mtp->mtr", split.basis, white)
    return np.sum(white ** 2, -1) - np.einsum("mtr,mr->mt", proj ** 2, stiff)


def _run_block(cfg: ShellExperiment, net: Network, data: dict, index: int,
               count: int) -> dict[str, np.ndarray]:
    """Train ``count`` members (block ``index``) and renormalize them at every cutoff."""
    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(1, index)))
    ens = _init_members(cfg, net, count, rng)
    with np.errstate(over="ignore", invalid="ignore"):
        trained = train(net, ens, data["x_train"], data["y_train"], lr=cfg.lr, epochs=cfg.epochs,
                        optimizer=cfg.optimizer, batch_size=cfg.batch_size,
                        readout_only=cfg.readout_only, seed=rng).ensemble
    which = "readout" if cfg.readout_only else "all"
    prior_std = net.prior_std(which)
    theta = trained.flat(which)
    finite = np.all(np.isfinite(theta), axis=1)
    theta = np.where(finite[:, None], theta, 0.0)       # diverged members: kept finite, dropped later
    trained = trained.with_flat(theta, which)
    jac = net.jacobian(trained, data["x_fisher"], which)
    split = fisher_split(jac, prior_std, cfg.criterion)
    lambdas = np.asarray(cfg.lambdas)
    y_test = data["y_test"]
    n_lam = lambdas.size
    within = np.zeros((n_lam + 1, count, cfg.n_test))   # within-member variance (marginalize)
    frac = np.zeros((n_lam + 1, count))
    thetas = np.empty((n_lam + 1,) + theta.shape)
    thetas[0] = theta
    xi = prior_std * rng.standard_normal(theta.shape)
    phi_test = readout_design(net, trained, data["x_test"]) if which == "readout" else None
    for k, cutoff in enumerate(lambdas, start=1):
        if cfg.mode == "resample" and not cfg.cumulative and k > 1:
            xi = prior_std * rng.standard_normal(theta.shape)
        noise = xi if cfg.mode == "resample" else np.zeros_like(theta)
        thetas[k], frac[k] = renormalize(theta, split, float(cutoff), noise, prior_std)
        if cfg.mode == "marginalize":
            within[k] = _marginal_variance(phi_test, split, float(cutoff), prior_std)
    if which == "readout":   # all cutoffs in one product: the test features are read once
        preds = np.ascontiguousarray(                                   # (n_lam + 1, M, T)
            np.matmul(phi_test, np.moveaxis(thetas, 0, 2)).transpose(2, 0, 1))
    else:
        preds = np.stack([net.forward(trained.with_flat(th, which), data["x_test"])[..., 0]
                          for th in thetas])
    block = {}
    if cfg.kernel_separations and which == "readout":   # shell-removed prior ensemble (= init)
        theta0, n_sep = ens.flat(which), len(cfg.kernel_separations)
        phi_k = readout_design(net, trained, data["x_kernel"])   # hidden layers are frozen
        kern = np.empty((n_lam + 1, count, n_sep))
        for k in range(n_lam + 1):
            th = theta0 if k == 0 else renormalize(theta0, split, float(lambdas[k - 1]),
                                                   np.zeros_like(theta0), prior_std)[0]
            f = np.matmul(phi_k, th[:, :, None])[..., 0]
            base, shifted = f[:, :cfg.kernel_bases], f[:, cfg.kernel_bases:].reshape(count, -1, n_sep)
            kern[k] = np.mean(base[:, :, None] * shifted, axis=1)
        block["kernel"] = kern
    with np.errstate(over="ignore", invalid="ignore"):
        test_mse = np.mean((preds - y_test) ** 2, axis=-1)           # (n_lam + 1, M)
    test_mse[:, ~finite] = np.inf
    if split.criterion == "diagonal":   # the eigenvalues only feed the spectrum figure: few members
        diag = split.sensitivities
        few = jac[:SPECTRUM_MEMBERS].reshape(min(count, SPECTRUM_MEMBERS), -1, jac.shape[-1])
        small = np.matmul(few, np.swapaxes(few, 1, 2)) if few.shape[1] <= few.shape[2] else \
            np.matmul(np.swapaxes(few, 1, 2), few)
        eig = np.linalg.eigvalsh(small)[:, ::-1] / jac.shape[1]
    else:
        diag = fisher_diagonal(jac, 1.0, "mean")
        eig = split.sensitivities[:SPECTRUM_MEMBERS]
    return {**block, "test_mse": test_mse, "predictions": preds, "within_variance": within,
            "fraction_resampled": frac, "fisher_diagonal": diag, "fisher_eigenvalues": eig,
            "finite": finite}


# ------------------------------------------------------------------------------------ statistics
def critical_cutoff(lambdas: Sequence[float], mse_mean: Sequence[float], mse_trained: float,
                    rtol: float) -> float | None:
    r"""The first :math:`\Lambda` with :math:`|\overline{\rm MSE}(\Lambda) - \overline{\rm MSE}_*| > \mathrm{rtol}\cdot\overline{\rm MSE}_*`
    (None if the mean test MSE never leaves its trained value)."""
    lam = checks.finite_array("lambdas", lambdas, ndim=1)
    rtol = checks.positive("rtol", rtol)
    dev = np.abs(np.asarray(mse_mean, dtype=float) - mse_trained) > rtol * abs(mse_trained)
    hits = np.flatnonzero(dev)
    return float(lam[hits[0]]) if hits.size else None


def _aggregate(cfg: ShellExperiment, blocks: list[dict], elapsed: float) -> dict:
    cat = {key: np.concatenate([b[key] for b in blocks], axis=1 if blocks[0][key].ndim == 3 or key in
                               ("test_mse", "fraction_resampled", "kernel") else 0) for key in blocks[0]}
    test_mse, preds = cat["test_mse"], cat["predictions"]
    trained = test_mse[0]
    keep = np.isfinite(trained) & cat["finite"]
    if cfg.drop_above is not None:
        keep &= trained < cfg.drop_above
    mse_k = test_mse[:, keep]
    p_k, w_k = preds[:, keep], cat["within_variance"][:, keep]
    n_keep = int(keep.sum())
    lambdas = [float(v) for v in cfg.lambdas]
    if n_keep == 0:
        raise InvalidArgument("members", "no member trained to a finite test MSE below drop_above")
    mean = mse_k.mean(axis=1)
    std = mse_k.std(axis=1, ddof=1) if n_keep > 1 else np.zeros_like(mean)
    pred_mean = p_k.mean(axis=1)                                             # (n_lam+1, T)
    at = cfg.test_point
    pred_var = (p_k.var(axis=1, ddof=1) if n_keep > 1 else 0.0) + w_k.mean(axis=1)
    lam_c = critical_cutoff(lambdas, mean[1:], float(mean[0]), cfg.rtol)
    tolist = lambda a: [float(v) for v in np.asarray(a).ravel()]  # noqa: E731
    out = {
        "preset": cfg.name, "config": cfg.to_json(),
        "members": int(test_mse.shape[1]), "members_kept": n_keep,
        "members_dropped": int(test_mse.shape[1] - n_keep),
        "lambdas": lambdas,
        "mse_trained": float(mean[0]), "mse_trained_std": float(std[0]),
        "mse_mean": tolist(mean[1:]), "mse_std": tolist(std[1:]),
        "mse_sem": tolist(std[1:] / math.sqrt(n_keep)),
        "mse_median": tolist(np.median(mse_k[1:], axis=1)),
        "mse_q16": tolist(np.quantile(mse_k[1:], 0.16, axis=1)),
        "mse_q84": tolist(np.quantile(mse_k[1:], 0.84, axis=1)),
        "fraction_resampled": tolist(cat["fraction_resampled"][1:, keep].mean(axis=1)),
        "lambda_c": lam_c, "rtol": cfg.rtol,
        "predictive_variance": tolist(pred_var[1:].mean(axis=1)),
        "predictive_variance_trained": float(pred_var[0].mean()),
        "predictive_mean_at_test_point": tolist(pred_mean[1:, at]),
        "predictive_variance_at_test_point": tolist(pred_var[1:, at]),
        "predictive_mean_test": [tolist(row) for row in pred_mean],
        "predictive_variance_test": [tolist(row) for row in pred_var],
        "mse_members": [tolist(row) for row in mse_k],
        "test_point": at, "y_test_point": None,
        "outputs_at_test_point": [tolist(row) for row in p_k[:, :, at]],
        "fisher_diagonal_quantiles": tolist(np.quantile(cat["fisher_diagonal"][keep],
                                                        [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0])),
        "elapsed_seconds": float(elapsed),
    }
    if "kernel" in cat:
        out.update(_kernel_comparison(cfg, cat["kernel"]))
    return out


def _kernel_comparison(cfg: ShellExperiment, kern: np.ndarray) -> dict:
    r"""Empirical 2-point function of the shell-removed prior ensemble against the coarse-grained
    free propagator :math:`G_{k(\Lambda)}(r)` of :mod:`symbrg.cosnet` (diagonal Fisher with unit noise
    and mean reduction: :math:`I(p) = 1/(2(p^2+m^2))`, i.e. T = N = 1 there)."""
    from .cosnet import coarse_grained_kernel, free_propagator, information_cutoff, momentum_cutoff
    d, R, m = cfg.widths[0], cfg.cosnet_radius, cfg.cosnet_mass
    r = np.asarray(cfg.kernel_separations, dtype=float)
    top = information_cutoff(0.0, m)
    ks = [None] + [momentum_cutoff(lam, m) if lam <= top else 0.0 for lam in cfg.lambdas]
    pred = [free_propagator(r, d, R, m) if k is None else coarse_grained_kernel(r, d, R, m, min(k, R))
            for k in ks]
    mean = kern.mean(axis=1)
    se = kern.std(axis=1, ddof=1) / math.sqrt(kern.shape[1]) if kern.shape[1] > 1 else 0 * mean
    return {"kernel_separations": r.tolist(), "momentum_cutoff": [None if k is None else float(min(k, R))
                                                                  for k in ks][1:],
            "kernel_empirical": mean[1:].tolist(), "kernel_stderr": se[1:].tolist(),
            "kernel_predicted": np.asarray(pred[1:]).tolist(),
            "kernel_prior_empirical": mean[0].tolist(), "kernel_prior_predicted": np.asarray(pred[0]).tolist()}


# ------------------------------------------------------------------------------------ the runner
def _save_block(path: Path, block: dict) -> None:
    with checks.atomic_write(path, force=True, mode="wb") as fh:
        np.savez(fh, **block)


def _load_block(path: Path) -> dict:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _write_json(path: Path, obj: Any) -> None:
    with checks.atomic_write(path, force=True) as fh:
        json.dump(obj, fh, indent=1, allow_nan=True)
        fh.write("\n")


def run_shell_experiment(cfg: ShellExperiment, out: str | Path | None = None, *,
                         resume: bool = False, force: bool = False, figures: bool = True,
                         progress: Callable[[str], None] | None = None,
                         stop_after: int | None = None) -> dict:
    """Run (or resume) the experiment; with ``out`` write ``config.json``, ``blocks/*.npz`` as
    member blocks finish, ``results.json`` (updated after every block) and the figures.

    An existing ``out/config.json`` is refused unless ``resume`` (same configuration required) or
    ``force`` (start afresh).  ``progress`` receives one line per event (default: stderr);
    ``stop_after`` stops after that many new blocks (for testing interruption).  Returns the results.
    """
    cfg = cfg.validate()
    log = progress or (lambda s: print(s, file=sys.stderr, flush=True))
    net = cfg.network()
    data = make_data(cfg)
    start = time.perf_counter()
    out_dir = Path(out) if out is not None else None
    if out_dir is not None:
        cfg_path = out_dir / "config.json"
        if cfg_path.exists() and not resume and not force:
            raise OutputExists("out", f"{out_dir} holds an experiment; pass --resume to continue it "
                                      f"or --force to start afresh")
        if cfg_path.exists() and resume and not force:
            old = json.loads(cfg_path.read_text())
            if old != cfg.to_json():
                diff = sorted(k for k in old if old.get(k) != cfg.to_json().get(k))
                raise InvalidArgument("resume", f"{out_dir} was run with a different configuration "
                                                f"({', '.join(diff) or 'fields'}); use --force")
        elif cfg_path.exists():   # force: forget the old blocks
            for old_block in (out_dir / "blocks").glob("block_*.npz"):
                old_block.unlink()
        _write_json(cfg_path, cfg.to_json())
    sizes = [min(cfg.block, cfg.members - s) for s in range(0, cfg.members, cfg.block)]
    blocks, new, done = [], 0, 0
    results: dict = {}
    for index, count in enumerate(sizes):
        path = out_dir / "blocks" / f"block_{index:04d}.npz" if out_dir is not None else None
        if path is not None and resume and path.exists():
            blocks.append(_load_block(path))
            done += count
            log(f"[shell] members {done}/{cfg.members} loaded from {path.name}")
            continue
        if stop_after is not None and new >= stop_after:
            break
        t0 = time.perf_counter()
        block = _run_block(cfg, net, data, index, count)
        done += count
        new += 1
        log(f"[shell] members {done}/{cfg.members} trained; Λ {len(cfg.lambdas)}/{len(cfg.lambdas)} "
            f"done for this block ({time.perf_counter() - t0:.1f} s)")
        blocks.append(block)
        if path is not None:
            _save_block(path, block)
        if out_dir is not None and done < cfg.members:   # partial results, saved as we go
            try:
                partial = _aggregate(cfg, blocks, time.perf_counter() - start)
            except InvalidArgument:          # no member kept yet
                continue
            partial.update(complete=False, y_test_point=float(data["y_test"][cfg.test_point]))
            _write_json(out_dir / "results.json", partial)
    if blocks:
        results = _aggregate(cfg, blocks, time.perf_counter() - start)
        results["complete"] = len(blocks) == len(sizes)
        results["y_test_point"] = float(data["y_test"][cfg.test_point])
        results.pop("elapsed_seconds")   # identical results whether resumed or not
        if out_dir is not None:
            _write_json(out_dir / "results.json", results)
            if figures and results["complete"]:
                spectra = {k: np.concatenate([b[k] for b in blocks]) for k in
                           ("fisher_diagonal", "fisher_eigenvalues")}
                written = plot_results(results, spectra, out_dir)
                if written:
                    log(f"[shell] figures: {', '.join(p.name for p in written)}")
        log(f"[shell] mean test MSE {results['mse_trained']:.4g} trained -> "
            f"{results['mse_mean'][-1]:.4g} at Λ = {cfg.lambdas[-1]:g}; Λ_C = {results['lambda_c']}")
    return results


# -------------------------------------------------------------------------------------- figures
def plot_results(results: dict, spectra: dict, out_dir: str | Path) -> list[Path]:
    """Four PNG figures (matplotlib, Agg; nothing is written when matplotlib is missing): mean test
    MSE vs Λ with the ensemble band, the Fisher spectrum, output histograms at the test point with
    Gaussian fits, and the predictive variance vs Λ."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is optional
        return []
    out_dir = Path(out_dir)
    lam = np.asarray(results["lambdas"])
    mean = np.asarray(results["mse_mean"])
    sem = np.asarray(results["mse_sem"])
    n_keep = results["members_kept"]
    title = f"{results['preset']} preset, {n_keep} members"
    written = []

    def save(fig, name):
        path = out_dir / name
        fig.tight_layout()
        with checks.atomic_write(path, force=True, mode="wb") as fh:
            fig.savefig(fh, format="png", dpi=130)
        plt.close(fig)
        written.append(path)

    # 1. mean test MSE vs cutoff
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.fill_between(lam, results["mse_q16"], results["mse_q84"], color="C0", alpha=0.18,
                    label="members, 16-84% quantiles")
    ax.fill_between(lam, np.maximum(mean - 2 * sem, mean * 1e-3), mean + 2 * sem, color="C0", alpha=0.4,
                    label="mean ±2 s.e.")
    ax.plot(lam, mean, "o-", color="C0", ms=3.5, label="mean test MSE")
    ax.axhline(results["mse_trained"], color="k", ls="--", lw=1, label="trained (no RG)")
    if results["lambda_c"] is not None:
        ax.axvline(results["lambda_c"], color="C3", ls=":", lw=1.5,
                   label=fr"$\Lambda_C$ = {results['lambda_c']:.3g} (rtol {results['rtol']:g})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"Fisher cutoff $\Lambda$")
    ax.set_ylabel("test MSE")
    ax.set_title(f"Information-shell RG: test loss ({title})", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3, which="both", lw=0.5)
    save(fig, "mse_vs_lambda.png")

    # 2. Fisher spectrum: counts per member on shared logarithmic bins
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    diag = np.asarray(spectra["fisher_diagonal"], dtype=float)
    eig = np.asarray(spectra["fisher_eigenvalues"], dtype=float)
    eig = eig[eig > 1e-12 * max(eig.max(initial=0), 1e-300)]
    pos = diag[diag > 0]
    both = np.concatenate([pos, eig])
    if both.size:
        bins = np.geomspace(max(both.min(), 1e-12 * both.max()), both.max() * 1.01, 60)
        ax.hist(np.clip(pos, bins[0], None), bins=bins, color="C0", alpha=0.6,
                weights=np.full(pos.size, diag.shape[0] and 1.0 / diag.shape[0]),
                label=fr"diagonal entries $I_{{AA}}$ ({np.mean(diag == 0):.0%} are exactly 0)")
        if eig.size:
            members_eig = max(1, np.asarray(spectra["fisher_eigenvalues"]).shape[0])
            ax.hist(np.clip(eig, bins[0], None), bins=bins, color="C1", alpha=0.6,
                    weights=np.full(eig.size, 1.0 / members_eig), label="nonzero eigenvalues of $I$")
    for v in lam:
        ax.axvline(v, color="0.55", lw=0.6, ls=":", zorder=0)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"Fisher sensitivity $\lambda$ (dotted: the cutoffs $\Lambda$)")
    ax.set_ylabel("count per member")
    ax.set_title(f"Fisher spectrum, {results['config']['fisher_set']} Fisher inputs ({title})",
                 fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    save(fig, "fisher_spectrum.png")

    # 3. histograms of the outputs at the test point, per cutoff
    outs = np.asarray(results["outputs_at_test_point"], dtype=float)   # (n_lam + 1, M)
    picks = [0] + list(np.unique(np.linspace(1, lam.size, 11).round().astype(int)))
    cols = 4
    rows = math.ceil(len(picks) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.3 * rows), squeeze=False)
    y_star = results.get("y_test_point")
    for ax, k in zip(axes.ravel(), picks):
        vals = outs[k][np.isfinite(outs[k])]
        mu, sd = float(np.mean(vals)), float(np.std(vals, ddof=1)) if vals.size > 1 else 0.0
        lo, hi = np.quantile(vals, [0.005, 0.995])
        if y_star is not None:
            lo, hi = min(lo, y_star), max(hi, y_star)
        span = max(hi - lo, 1e-9)
        lo, hi = lo - 0.1 * span, hi + 0.1 * span
        grid = np.linspace(lo, hi, 300)
        ax.hist(np.clip(vals, lo, hi), bins=25, range=(lo, hi), density=True, color="C0", alpha=0.55)
        if sd > 0:
            ax.plot(grid, np.exp(-0.5 * ((grid - mu) / sd) ** 2) / (sd * math.sqrt(2 * math.pi)),
                    color="C3", lw=1.3)
        if y_star is not None:
            ax.axvline(y_star, color="k", ls="--", lw=1)
        label = "trained" if k == 0 else fr"$\Lambda$ = {lam[k - 1]:g}"
        ax.set_title(f"{label}: μ={mu:.3g}, σ={sd:.3g}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_yticks([])
    for ax in axes.ravel()[len(picks):]:
        ax.axis("off")
    fig.suptitle(f"Ensemble outputs at test point {results['test_point']} with Gaussian fits "
                 f"(dashed: target; {title})", fontsize=10)
    save(fig, "outputs_at_test_point.png")

    # 4. predictive variance vs cutoff
    fig, ax1 = plt.subplots(figsize=(6.4, 4.2))
    ax1.plot(lam, results["predictive_variance"], "o-", ms=3.5, color="C2",
             label="predictive variance (mean over test points)")
    ax1.axhline(results["predictive_variance_trained"], color="C2", ls="--", lw=1, label="trained")
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel(r"Fisher cutoff $\Lambda$")
    ax1.set_ylabel("predictive variance", color="C2")
    ax2 = ax1.twinx()
    ax2.plot(lam, results["fraction_resampled"], "s-", ms=3, color="C4", alpha=0.8,
             label="fraction of parameters sloppy")
    ax2.set_ylim(-0.02, 1.02)
    ax2.set_ylabel("fraction sloppy", color="C4")
    lines = ax1.get_legend_handles_labels()
    more = ax2.get_legend_handles_labels()
    ax1.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="upper left")
    ax1.grid(alpha=0.3, which="both", lw=0.5)
    ax1.set_title(f"Predictive variance under coarse graining ({title})", fontsize=10)
    save(fig, "predictive_variance.png")

    # 5. cos-net: the shell-removed prior ensemble's 2-point function vs the coarse-grained propagator
    if "kernel_empirical" in results:
        k = np.array([np.nan if v is None else v for v in results["momentum_cutoff"]], dtype=float)
        emp, se = np.asarray(results["kernel_empirical"]), np.asarray(results["kernel_stderr"])
        pred = np.asarray(results["kernel_predicted"])
        fig, ax = plt.subplots(figsize=(8.0, 4.2))
        for j, r in enumerate(results["kernel_separations"]):
            ax.plot(lam, pred[:, j], "-", color=f"C{j}", lw=1.3)
            ax.errorbar(lam, emp[:, j], yerr=2 * se[:, j], fmt="o", ms=3, color=f"C{j}", capsize=2,
                        label=f"|x - y| = {r:g}")
        ax.set_xscale("log")
        ax.set_xlabel(r"Fisher cutoff $\Lambda$")
        ax.set_ylabel(r"$\langle f(x) f(y)\rangle$ after removing the sloppy shell")
        top = ax.secondary_xaxis("top", functions=(lambda v: v, lambda v: v))
        labels: dict[str, int] = {}
        for i in range(len(lam)):
            if np.isfinite(k[i]):
                labels.setdefault(f"{k[i]:.2g}", i)
        ticks = sorted(labels.values())[::2]
        top.set_xticks(lam[ticks])
        top.set_xticklabels([f"{k[i]:.2g}" for i in ticks], fontsize=7)
        top.set_xlabel(r"momentum cutoff $k(\Lambda)$ ($I(k) = \Lambda$)", fontsize=8)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), title_fontsize=8,
                  title="points: ensemble\n±2 s.e.; lines:\n" r"$G_{k(\Lambda)}(|x-y|)$")
        ax.grid(alpha=0.3, lw=0.5)
        ax.set_title(f"Information shells are momentum shells ({title})", fontsize=10)
        save(fig, "kernel_flow.png")
    return written
