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

Measured per :math:`\Lambda`: test MSE per member, its ensemble mean and median with percentile
bootstrap confidence intervals over members (``bootstrap`` resamples, seeded, at ``confidence``),
the ensemble's predictive mean and variance at the probe points, the fraction of parameters
replaced (in ``results.json``: ``lambdas``, ``mse_mean``, ``mse_median``, ``mse_mean_ci``,
``mse_median_ci``, ``mse_std``, ``mse_sem``, quantiles, ``fraction_resampled``, ``lambda_c``,
``lambda_c_ci``, ``lambda_c_at_grid_edge``, ``predictive_variance`` (mean over probe points) and at
``test_point``; the per-member and per-probe-point arrays ``mse_members``, ``predictive_mean_test``,
``predictive_variance_test``, ``outputs_at_test_point`` carry one extra first row, the trained
ensemble).  The critical cutoff :math:`\Lambda_C` is the first grid value where the ``statistic``
(``"median"`` by default: one badly trained member cannot move it; or ``"mean"``) of the test MSE
leaves its trained value by more than ``rtol`` (relative); ``lambda_c_ci`` is the percentile
bootstrap interval of :math:`\Lambda_C` itself (``null``: beyond the grid), and
``lambda_c_at_grid_edge`` says that the grid does not bracket the departure (it is at the first or
last cutoff, or absent).  Members whose trained test MSE is non-finite or above ``drop_above`` are
excluded from the statistics (the authors drop "poorly trained" members with test loss
:math:`\ge 10^3`); their number is reported.

Data: with ``data="fresh"`` (the default, as in the authors' runs, one per member) member ``m``
draws its own training, test and Fisher sets from ``SeedSequence(seed, spawn_key=(2, m))``; with
``"shared"`` all members use the sets of ``SeedSequence(seed, spawn_key=(0,))``.  The predictive
statistics are always taken at the shared test inputs (the *probe* set), so that they describe one
distribution of functions at fixed inputs.

Reproducibility: member ``m`` is initialized (and its sloppy parameters redrawn) from
``SeedSequence(seed, spawn_key=(1, m))`` and the bootstrap resamples come from
``spawn_key=(3,)``, so the results do not depend on ``block``; blocks of ``block`` members are
trained together and saved as they finish, so an interrupted run resumed with ``resume=True`` ends
with exactly the results of an uninterrupted run with the same seed.

Cost: :func:`estimate_cost` bounds the memory held at once and the run time from the
configuration before any work; above the limits ``experiment_memory`` (bytes) and
``experiment_time`` (seconds) a run is refused (:mod:`symbrg.core.limits`).
"""
from __future__ import annotations

import json
import math
import sys
import time
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from symbrg.core import checks
from symbrg.core.errors import InvalidArgument, OutputExists, UnknownName, Unsupported
from symbrg.core.limits import Limit
from symbrg.ensembles.ensemble import percentile_bootstrap
from symbrg.ensembles.networks import Ensemble, Network, network
from symbrg.ensembles.plots import plot_results
from symbrg.ensembles.training import OPTIMIZERS, readout_design, train
from symbrg.information.fisher import fisher_diagonal, shell_split
from symbrg.information.spectrum import SplitCriterion

__all__ = ["ShellExperiment", "PRESETS", "PAPER_LAMBDAS", "preset", "run_shell_experiment",
           "critical_cutoff", "shell_statistics", "renormalize", "make_data", "member_data",
           "estimate_cost", "check_cost", "Cost", "summary", "plot_results"]

#: The 25-point cutoff grid of the authors' code (xand-stapleton/bayes-nn-ft, 2a398b4).
PAPER_LAMBDAS = (1e-4, 5e-3, 7.5e-3, 1e-2, 5e-2, 7.5e-2, 0.1, 0.5, 0.75, 1.0, 5.0, 7.5, 10.0, 50.0,
                 75.0, 100.0, 500.0, 750.0, 1e3, 5e3, 7.5e3, 1e4, 5e4, 7.5e4, 1e5)
MODES = ("resample", "zero", "marginalize")
#: Members per block whose full Fisher eigenvalues are kept for the spectrum figure.
SPECTRUM_MEMBERS = 4
CRITERIA = (SplitCriterion.DIAGONAL, SplitCriterion.EIGEN)
TARGETS = ("quadratic", "cosnet")
DATA = ("fresh", "shared")
STATISTICS = ("median", "mean")

MEMORY = Limit("experiment_memory", 4e9, "bytes held at once by the shell experiment")
TIME = Limit("experiment_time", 3600, "estimated seconds of the shell experiment")


@dataclass(frozen=True)
class ShellExperiment:
    """Configuration of one shell-renormalization experiment (all sizes, seeds, options)."""
    name: str = "custom"
    # data: x ~ N(input_mean, input_std^2 I); target "quadratic" (the paper's) or "cosnet";
    # "fresh" sets per member (as the authors' runs) or one "shared" set
    data: str = "fresh"
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
    criterion: SplitCriterion | str = SplitCriterion.DIAGONAL  # parsed once by validate()
    mode: str = "resample"
    cumulative: bool = True
    rtol: float = 0.05
    drop_above: float | None = 1e3
    test_point: int = 40
    # statistics: Λ_C from the median (robust) or mean curve; percentile bootstrap over members
    statistic: str = "median"
    bootstrap: int = 2000
    confidence: float = 0.95
    # ensemble
    members: int = 100
    block: int = 25
    seed: int = 0

    def validate(self) -> "ShellExperiment":
        """Check every field; raise a :mod:`symbrg.core.errors` exception naming the bad one."""
        checks.choice("data", self.data, DATA)
        checks.choice("target", self.target, TARGETS)
        checks.finite_array("input_mean", self.input_mean, ndim=1)
        checks.positive("input_std", self.input_std)
        for name in ("n_train", "n_test", "fisher_set", "members", "block", "kernel_bases"):
            checks.integer(name, getattr(self, name), minimum=1)
        checks.integer("seed", self.seed, minimum=0)
        for w in self.widths:
            checks.integer("width", w, minimum=1)
        checks.matching("input_mean", len(self.input_mean), self.widths[0], "input dimension")
        if len(self.widths) < 3 or self.widths[-1] != 1:
            raise Unsupported("widths", f"the experiment needs a hidden layer and one output, got {self.widths}")
        for name in ("bias", "readout_only", "cumulative"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise InvalidArgument(name, f"must be true or false, got {getattr(self, name)!r}")
        checks.choice("optimizer", self.optimizer, OPTIMIZERS)
        checks.positive("lr", self.lr)
        checks.integer("epochs", self.epochs, minimum=1)
        if self.batch_size is not None:
            checks.integer("batch_size", self.batch_size, minimum=1, maximum=self.n_train)
        lam = checks.finite_array("lambdas", self.lambdas, ndim=1)
        if np.any(lam <= 0) or np.any(np.diff(lam) <= 0):
            raise InvalidArgument("lambdas", "the cutoff grid must be positive and strictly increasing")
        object.__setattr__(self, "criterion", SplitCriterion.parse(self.criterion, "criterion", CRITERIA))
        checks.choice("mode", self.mode, MODES)
        if self.mode == "marginalize" and not self.readout_only:
            raise Unsupported("mode", "'marginalize' is exact (and implemented) for the readout only")
        checks.positive("rtol", self.rtol)
        checks.integer("test_point", self.test_point, minimum=0, maximum=self.n_test - 1)
        if self.drop_above is not None:
            checks.positive("drop_above", self.drop_above)
        checks.nonnegative("cosnet_radius", self.cosnet_radius)
        checks.positive("cosnet_mass", self.cosnet_mass)
        if self.kernel_separations:
            checks.finite_array("kernel_separations", self.kernel_separations, ndim=1)
            if self.cosnet_radius <= 0 or not self.readout_only:
                raise Unsupported("kernel_separations", "the kernel comparison needs the cos-net "
                                                        "(cosnet_radius > 0) trained on the readout only")
            if any(v != 0 for v in self.input_mean):
                raise Unsupported("input_mean", "the kernel comparison's theory (CosNet.brg_kernel) takes "
                                                "centred Gaussian inputs; set input_mean to zeros")
        checks.choice("statistic", self.statistic, STATISTICS)
        checks.integer("bootstrap", self.bootstrap, minimum=100)
        checks.in_range("confidence", self.confidence, 0.0, 1.0, closed=(False, False))
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
    base: dict[str, Any] = dict(name="cosnet", target="cosnet", input_mean=(0.0,), input_std=2.0, n_train=100,
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
    "Rosenbrock"), ``"cosnet"`` :math:`\sin x_0 + \tfrac12\cos 3x_0` (band-limited,
    :math:`|p| \le 3`); the coordinates are the last axis of x."""
    if kind == "quadratic":
        return (1 - x[..., 0]) ** 2 - 0.5 * (x[..., 1] - x[..., 0] ** 2)
    return np.sin(x[..., 0]) + 0.5 * np.cos(3 * x[..., 0])


def _draw(cfg: ShellExperiment, rng: np.random.Generator, n: int) -> np.ndarray:
    r"""n inputs :math:`x \sim N(\mu, s^2 1)` (``input_mean``, ``input_std``), shape (n, d)."""
    mean = np.asarray(cfg.input_mean, dtype=float)
    return mean + cfg.input_std * rng.standard_normal((n, mean.size))


def make_data(cfg: ShellExperiment) -> dict[str, np.ndarray]:
    """The shared train, test and Fisher inputs (and targets), drawn from
    ``SeedSequence(seed, spawn_key=(0,))``: every member's data with ``data="shared"``, and the probe
    inputs of the predictive statistics (the test set) in both modes."""
    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(0,)))
    x_train, x_test, x_fisher = _draw(cfg, rng, cfg.n_train), _draw(cfg, rng, cfg.n_test), \
        _draw(cfg, rng, cfg.fisher_set)
    data = {"x_train": x_train, "y_train": target_function(cfg.target, x_train),
            "x_test": x_test, "y_test": target_function(cfg.target, x_test), "x_fisher": x_fisher}
    if cfg.kernel_separations:   # pairs (u, u + r e_0) for translation-averaged 2-point functions
        d = x_train.shape[1]
        bases = _draw(cfg, rng, cfg.kernel_bases)
        shift = np.zeros((len(cfg.kernel_separations), d))
        shift[:, 0] = cfg.kernel_separations
        data["x_kernel"] = np.concatenate([bases, (bases[:, None, :] + shift[None]).reshape(-1, d)])
    return data


def member_data(cfg: ShellExperiment, start: int, count: int) -> dict[str, np.ndarray]:
    """Fresh train, test and Fisher sets of members ``start .. start+count-1``, stacked (count, n, d);
    member m draws them from ``SeedSequence(seed, spawn_key=(2, m))``, so its data do not depend on
    the block it is trained in."""
    sets: dict[str, list] = {"x_train": [], "x_test": [], "x_fisher": []}
    for m in range(start, start + count):
        rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(2, m)))
        for key, n in zip(sets, (cfg.n_train, cfg.n_test, cfg.fisher_set)):
            sets[key].append(_draw(cfg, rng, n))
    out = {key: np.stack(v) for key, v in sets.items()}
    out.update(y_train=target_function(cfg.target, out["x_train"]),
               y_test=target_function(cfg.target, out["x_test"]))
    return out


def _member_rngs(cfg: ShellExperiment, start: int, count: int) -> list[np.random.Generator]:
    """One generator per member, from ``SeedSequence(seed, spawn_key=(1, m))``."""
    return [np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(1, m)))
            for m in range(start, start + count)]


def _init_members(cfg: ShellExperiment, net: Network, rngs: list[np.random.Generator]) -> Ensemble:
    """Prior draws of the members, one from each generator, stacked."""
    parts = []
    for rng in rngs:
        ens = net.init(1, rng)
        if cfg.cosnet_radius > 0:   # generalized cos-net: frequencies uniform in the ball B_R
            from symbrg.cosnet.theory import generalized_cosnet, sample_frequencies
            d, n = net.widths[0], net.widths[1]
            cos_net = generalized_cosnet(d, cfg.cosnet_radius, cfg.cosnet_mass)
            b = sample_frequencies(cos_net, (1, n), rng)
            ens.weights[0] = (b / net.weight_scale(0)).astype(net.dtype)
            ens.gains[0] = np.array(cos_net.neuron_scales(b))   # s(|b|) = 1/sqrt(|b|^2 + m^2)
        parts.append(ens)
    stack = lambda arrays: None if arrays[0] is None else np.concatenate(arrays)  # noqa: E731
    return Ensemble(*([stack(layer) for layer in zip(*(getattr(e, f) for e in parts))]
                      for f in ("weights", "biases", "phases", "gains")))


# ------------------------------------------------------------------------------- renormalization
@dataclass
class _Split:
    """Per-member sensitivities and (eigen) the whitened stiff basis."""
    criterion: SplitCriterion
    sensitivities: np.ndarray           # (M, P) diagonal entries, or (M, r) eigenvalues
    basis: np.ndarray | None = None     # (M, r, P) orthonormal rows, whitened coordinates

    @property
    def eigenbasis(self) -> np.ndarray:
        """The stiff basis of an eigen split (the diagonal split has none)."""
        if self.basis is None:
            raise Unsupported("criterion", f"the {self.criterion} split has no eigenbasis")
        return self.basis


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


def fisher_split(jac: np.ndarray, prior_std: np.ndarray, criterion: SplitCriterion | str) -> _Split:
    r"""Fisher sensitivities from per-sample Jacobians ``jac`` (M, n, k, P), unit noise, mean over
    the n Fisher inputs: the diagonal :math:`I_{AA}`, or the nonzero eigenvalues of the prior-whitened
    Fisher :math:`\sigma I \sigma = W^\top W`, :math:`W = J\sigma/\sqrt n`, with its eigenvectors."""
    if SplitCriterion.parse(criterion, "criterion") is SplitCriterion.DIAGONAL:
        return _Split(SplitCriterion.DIAGONAL, fisher_diagonal(jac, 1.0, "mean"))
    m, n = jac.shape[:2]
    white = (jac * prior_std).reshape(m, -1, jac.shape[-1]) / math.sqrt(n)
    lam, basis = _gram_eigen(white)
    return _Split(SplitCriterion.EIGEN, lam, basis)


def renormalize(theta: np.ndarray, split: _Split, cutoff: float, xi: np.ndarray,
                prior_std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r""":math:`\theta_\Lambda = \xi + \Pi_>(\Lambda)(\theta_* - \xi)` for every member, and the fraction
    of parameter-space dimensions that are sloppy.  theta, xi: (M, P)."""
    if split.criterion is SplitCriterion.DIAGONAL:
        sloppy = shell_split(split.sensitivities, cutoff, SplitCriterion.DIAGONAL, layout="diagonal").sloppy
        return np.where(sloppy, xi, theta), sloppy.mean(axis=1)
    stiff = (split.sensitivities >= cutoff).astype(theta.dtype)          # (M, r)
    coeff = np.einsum("mrp,mp->mr", split.eigenbasis, (theta - xi) / prior_std) * stiff
    out = xi + prior_std * np.einsum("mrp,mr->mp", split.eigenbasis, coeff)
    return out, 1.0 - stiff.sum(axis=1) / theta.shape[1]


def _marginal_variance(phi: np.ndarray, split: _Split, cutoff: float, prior_std: np.ndarray) -> np.ndarray:
    r"""Per-member variance :math:`\mathrm{Var}_\xi f(x) = |\Pi_< \sigma\phi(x)|^2` of a linear readout
    with the sloppy part drawn from the prior; phi (M, T, P) -> (M, T)."""
    white = phi * prior_std
    if split.criterion is SplitCriterion.DIAGONAL:
        return np.einsum("mtp,mp->mt", white ** 2, (split.sensitivities < cutoff).astype(phi.dtype))
    stiff = (split.sensitivities >= cutoff).astype(phi.dtype)
    proj = np.einsum("mrp,mtp->mtr", split.eigenbasis, white)
    return np.sum(white ** 2, -1) - np.einsum("mtr,mr->mt", proj ** 2, stiff)


def _run_block(cfg: ShellExperiment, net: Network, data: dict, start: int,
               count: int) -> dict[str, np.ndarray]:
    """Train members ``start .. start+count-1`` and renormalize them at every cutoff."""
    rngs = _member_rngs(cfg, start, count)
    ens = _init_members(cfg, net, rngs)
    own = member_data(cfg, start, count) if cfg.data == "fresh" else data
    with np.errstate(over="ignore", invalid="ignore"):
        trained = train(net, ens, own["x_train"], own["y_train"], lr=cfg.lr, epochs=cfg.epochs,
                        optimizer=cfg.optimizer, batch_size=cfg.batch_size,
                        readout_only=cfg.readout_only).ensemble
    which = "readout" if cfg.readout_only else "all"
    prior_std = net.prior_std(which)
    theta = trained.flat(which)
    finite = np.all(np.isfinite(theta), axis=1)
    theta = np.where(finite[:, None], theta, 0.0)       # diverged members: kept finite, dropped later
    trained = trained.with_flat(theta, which)
    jac = net.jacobian(trained, own["x_fisher"], which)
    split = fisher_split(jac, prior_std, cfg.criterion)
    lambdas = np.asarray(cfg.lambdas)
    n_lam = lambdas.size
    within = np.zeros((n_lam + 1, count, cfg.n_test))   # within-member variance (marginalize)
    frac = np.zeros((n_lam + 1, count))
    thetas = np.empty((n_lam + 1,) + theta.shape)
    thetas[0] = theta

    def prior_draw() -> np.ndarray:
        return prior_std * np.stack([rng.standard_normal(theta.shape[1]) for rng in rngs])

    xi = prior_draw()
    phi_probe = readout_design(net, trained, data["x_test"]) if which == "readout" else None
    for k, cutoff in enumerate(lambdas, start=1):
        if cfg.mode == "resample" and not cfg.cumulative and k > 1:
            xi = prior_draw()
        noise = xi if cfg.mode == "resample" else np.zeros_like(theta)
        thetas[k], frac[k] = renormalize(theta, split, float(cutoff), noise, prior_std)
        if phi_probe is not None and cfg.mode == "marginalize":
            within[k] = _marginal_variance(phi_probe, split, float(cutoff), prior_std)

    def predict(x: np.ndarray, phi: np.ndarray | None) -> np.ndarray:
        """Outputs (n_lam + 1, M, T) of every renormalized member at inputs x."""
        if phi is not None:   # readout: all cutoffs in one product, the features read once
            return np.ascontiguousarray(np.matmul(phi, np.moveaxis(thetas, 0, 2)).transpose(2, 0, 1))
        return np.stack([net.forward(trained.with_flat(th, which), x)[..., 0] for th in thetas])

    preds = predict(data["x_test"], phi_probe)
    if cfg.data == "fresh":
        phi_own = readout_design(net, trained, own["x_test"]) if which == "readout" else None
        preds_own = predict(own["x_test"], phi_own)
    else:
        preds_own = preds
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
        test_mse = np.mean((preds_own - own["y_test"]) ** 2, axis=-1)   # (n_lam + 1, M)
    test_mse[:, ~finite] = np.inf
    if split.criterion is SplitCriterion.DIAGONAL:   # the eigenvalues only feed the spectrum figure: few members
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
def _departures(lam: np.ndarray, curves: np.ndarray, rtol: float) -> np.ndarray:
    r""":math:`\Lambda_C` of each curve (..., n_lam + 1) whose first entry is the trained value: the first
    grid :math:`\Lambda` with :math:`|c(\Lambda) - c_*| > \mathrm{rtol}\,|c_*|`; ``inf`` where there is none."""
    with np.errstate(invalid="ignore"):                      # inf - inf: no departure seen
        dev = np.abs(curves[..., 1:] - curves[..., :1]) > rtol * np.abs(curves[..., :1])
    return np.where(dev.any(axis=-1), lam[np.argmax(dev, axis=-1)], np.inf)


def critical_cutoff(lambdas: Sequence[float], curve: Sequence[float], trained: float,
                    rtol: float) -> float | None:
    r"""The first :math:`\Lambda` with :math:`|c(\Lambda) - c_*| > \mathrm{rtol}\cdot|c_*|`, for a
    curve c of the test MSE (mean or median over members) and its trained value :math:`c_*` (None
    if the curve never leaves its trained value on the grid)."""
    lam = checks.finite_array("lambdas", lambdas, ndim=1)
    rtol = checks.positive("rtol", rtol)
    value = float(_departures(lam, np.concatenate([[trained], np.asarray(curve, dtype=float)]), rtol))
    return value if math.isfinite(value) else None


def grid_edge_note(lambdas: Sequence[float] | np.ndarray, lambda_c: float | None) -> str | None:
    r"""Why :math:`\Lambda_C` is not bracketed by the cutoff grid, or None when it is (the departure
    then lies between the grid value before :math:`\Lambda_C` and :math:`\Lambda_C`)."""
    lo, hi = float(lambdas[0]), float(lambdas[-1])
    if lambda_c is None:
        return (f"Λ_C is beyond the grid: the test MSE never leaves its trained value up to Λ = {hi:g} "
                f"(extend the grid to larger Λ)")
    if lambda_c == lo:
        return (f"Λ_C = {lo:g} is the smallest cutoff of the grid: the test MSE has already left its "
                f"trained value there, so only Λ_C <= {lo:g} is known (extend the grid to smaller Λ)")
    if lambda_c == hi:
        return (f"Λ_C = {hi:g} is the largest cutoff of the grid: the departure is seen at that "
                f"cutoff alone (extend the grid to larger Λ)")
    return None


def shell_statistics(mse: Any, lambdas: Sequence[float], rtol: float, *, statistic: str = "median",
                     resamples: int = 2000, confidence: float = 0.95,
                     seed: "int | np.random.SeedSequence | None" = 0) -> dict[str, Any]:
    r"""Mean and median test MSE per cutoff, :math:`\Lambda_C` from both curves, and percentile
    bootstrap intervals over members for all of them (:func:`symbrg.ensembles.ensemble.percentile_bootstrap`;
    one resampling of whole members serves every cutoff, so the curves and :math:`\Lambda_C` are
    resampled together).

    mse: (n_lam + 1, M), row 0 the trained members, row k the members renormalized at
    ``lambdas[k-1]``.  ``statistic`` picks the curve that defines ``lambda_c`` (the median by
    default: robust to a few badly trained members).  Returns the ``results.json`` entries
    ``mse_mean``, ``mse_median``, their ``_ci`` lists of [lo, hi], the trained values, ``lambda_c``,
    ``lambda_c_ci`` ([lo, hi], None for "beyond the grid"), ``lambda_c_mean``, ``lambda_c_median``,
    ``lambda_c_at_grid_edge`` and ``lambda_c_note`` (:func:`grid_edge_note`).
    """
    lam = checks.finite_array("lambdas", lambdas, ndim=1)
    mse = np.asarray(mse, dtype=float)
    checks.matching("mse", mse.shape[0] if mse.ndim == 2 else -1, lam.size + 1,
                    "rows (the trained members, then one per cutoff)")
    rtol = checks.positive("rtol", rtol)
    checks.choice("statistic", statistic, STATISTICS)
    n = lam.size + 1

    def stats(s: np.ndarray) -> np.ndarray:   # (K, M, n) -> (K, 2n + 2)
        med, mean = np.median(s, axis=1), np.mean(s, axis=1)
        return np.concatenate([med, mean, _departures(lam, med, rtol)[:, None],
                               _departures(lam, mean, rtol)[:, None]], axis=1)

    est, lo, hi = percentile_bootstrap(stats, mse.T, resamples=resamples, confidence=confidence,
                                       seed=seed)
    grid = lambda v: float(v) if math.isfinite(v) else None  # noqa: E731
    ci = lambda a, b: [[float(lo[j]), float(hi[j])] for j in range(a, b)]  # noqa: E731
    j = 2 * n if statistic == "median" else 2 * n + 1
    lam_c = grid(est[j])
    note = grid_edge_note(lam, lam_c)
    return {"mse_trained": float(est[n]), "mse_trained_median": float(est[0]),
            "mse_trained_mean_ci": ci(n, n + 1)[0], "mse_trained_median_ci": ci(0, 1)[0],
            "mse_mean": [float(v) for v in est[n + 1:2 * n]], "mse_mean_ci": ci(n + 1, 2 * n),
            "mse_median": [float(v) for v in est[1:n]], "mse_median_ci": ci(1, n),
            "lambda_c": lam_c, "lambda_c_ci": [grid(lo[j]), grid(hi[j])], "lambda_c_statistic": statistic,
            "lambda_c_median": grid(est[2 * n]), "lambda_c_mean": grid(est[2 * n + 1]),
            "lambda_c_at_grid_edge": note is not None, "lambda_c_note": note,
            "confidence": float(confidence), "bootstrap_resamples": int(resamples)}


def _aggregate(cfg: ShellExperiment, blocks: list[dict], elapsed: float,
               resamples: int | None = None) -> dict:
    """The results of the members in ``blocks`` (``resamples`` bootstrap resamples, default the
    configuration's)."""
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
    with np.errstate(invalid="ignore"):
        std = mse_k.std(axis=1, ddof=1) if n_keep > 1 else np.zeros(mse_k.shape[0])
    pred_mean = p_k.mean(axis=1)                                             # (n_lam+1, T)
    at = cfg.test_point
    pred_var = (p_k.var(axis=1, ddof=1) if n_keep > 1 else 0.0) + w_k.mean(axis=1)
    tolist = lambda a: [float(v) for v in np.asarray(a).ravel()]  # noqa: E731
    out = {
        "preset": cfg.name, "config": cfg.to_json(),
        "members": int(test_mse.shape[1]), "members_kept": n_keep,
        "members_dropped": int(test_mse.shape[1] - n_keep),
        "lambdas": lambdas,
        **shell_statistics(mse_k, lambdas, cfg.rtol, statistic=cfg.statistic,
                           resamples=resamples or cfg.bootstrap,
                           confidence=cfg.confidence,
                           seed=np.random.SeedSequence(cfg.seed, spawn_key=(3,))),
        "mse_trained_std": float(std[0]), "mse_std": tolist(std[1:]),
        "mse_sem": tolist(std[1:] / math.sqrt(n_keep)),
        "mse_q16": tolist(np.quantile(mse_k[1:], 0.16, axis=1)),
        "mse_q84": tolist(np.quantile(mse_k[1:], 0.84, axis=1)),
        "fraction_resampled": tolist(cat["fraction_resampled"][1:, keep].mean(axis=1)),
        "rtol": cfg.rtol,
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
    r"""Empirical 2-point function of the shell-removed prior ensemble against two predictions, at the
    run's own kernel pairs :math:`(u_b, u_b + r\,e_0)`, averaged over the bases :math:`u_b`:

    * ``kernel_predicted``: the exact :math:`N\to\infty` stiff-sector kernel for the run's inputs
      :math:`x\sim\mathcal N(0, s_x^2\mathbb 1)` (:meth:`~symbrg.cosnet.theory.CosNet.brg_kernel`, phase-resolved
      readout Fisher :math:`s(|b|)^2\,\mathbb E_x\cos^2(b\cdot x+c)`, unit noise, mean reduction: T = N = 1);
    * ``kernel_predicted_broad_inputs``: the paper's idealisation :math:`\mathbb E_x\cos^2 = \frac12`, the
      coarse-grained free propagator :math:`G_{k(\Lambda)}(r)`, which misses the IR (no neuron is stiff
      beyond :math:`\Lambda = 1/(2m^2)`, while phase-aligned low frequencies still are).

    ``kernel_z``: :math:`|\bar K - K_{\rm pred}|/\mathrm{s.e.}` at every cutoff and separation (0 where both
    are exactly 0), and its maximum ``kernel_z_max``."""
    from symbrg.cosnet.theory import (
        coarse_grained_kernel,
        free_propagator,
        generalized_cosnet,
        information_cutoff,
        momentum_cutoff,
    )
    d, R, m = cfg.widths[0], cfg.cosnet_radius, cfg.cosnet_mass
    r = np.asarray(cfg.kernel_separations, dtype=float)
    top = information_cutoff(0.0, m)
    ks = [momentum_cutoff(lam, m) if lam <= top else 0.0 for lam in cfg.lambdas]
    broad = [coarse_grained_kernel(r, d, R, m, min(k, R)) for k in ks]
    x_kernel = make_data(cfg)["x_kernel"]
    nb = cfg.kernel_bases
    bases, shifted = np.repeat(x_kernel[:nb], r.size, axis=0), x_kernel[nb:]   # base-major, as measured
    net = generalized_cosnet(d, R, m)
    exact = np.array([net.brg_kernel(bases, shifted, lam, inputs=("gaussian", cfg.input_std), pairs=True)
                      .reshape(nb, r.size).mean(axis=0) for lam in cfg.lambdas])
    mean = kern.mean(axis=1)
    se = kern.std(axis=1, ddof=1) / math.sqrt(kern.shape[1]) if kern.shape[1] > 1 else 0 * mean
    gap = np.abs(mean[1:] - exact)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(gap == 0, 0.0, gap / se[1:])
    return {"kernel_separations": r.tolist(), "momentum_cutoff": [float(min(k, R)) for k in ks],
            "kernel_empirical": mean[1:].tolist(), "kernel_stderr": se[1:].tolist(),
            "kernel_predicted": exact.tolist(), "kernel_predicted_broad_inputs": np.asarray(broad).tolist(),
            "kernel_z": z.tolist(), "kernel_z_max": float(np.max(z, initial=0.0)),
            "kernel_prior_empirical": mean[0].tolist(),
            "kernel_prior_predicted": np.asarray(free_propagator(r, d, R, m)).tolist()}


# ------------------------------------------------------------------------------------ the runner
# ------------------------------------------------------------------------------------------ cost
#: Rates of the cost model, for one idle core with one BLAS thread: dense floating-point work
#: (flop/s), memory-bound array passes (elements/s), seconds per Python-level training step of a
#: block, elements per second of the bootstrap (gather + median).
FLOP_RATE, ELEMENT_RATE, STEP_SECONDS, BOOTSTRAP_RATE = 2e9, 5e8, 2e-5, 5e7


@dataclass(frozen=True)
class Cost:
    """Up-front estimate of a shell experiment: peak memory and disk (bytes), run time (seconds), the
    largest memory and time terms, and the parameters that drive them."""
    memory: float
    seconds: float
    disk: float
    memory_term: str
    time_term: str
    memory_argument: str
    time_argument: str


def _driver(cfg: ShellExperiment, names: Sequence[str]) -> str:
    """The parameter among ``names`` that grew most relative to its preset default."""
    base = PRESETS[cfg.name]() if cfg.name in PRESETS else ShellExperiment()

    def size(c: ShellExperiment, name: str) -> float:
        value = getattr(c, name)
        return float(len(value) if name == "lambdas" else sum(value) if isinstance(value, tuple) else value)
    return max(names, key=lambda name: size(cfg, name) / max(size(base, name), 1.0))


def estimate_cost(cfg: ShellExperiment) -> Cost:
    r"""Memory, disk and time of ``cfg`` from its sizes alone, before any array is made.

    Memory is a member block's working set (parameters, training matrices, the Fisher Jacobian
    :math:`M_b \times n_F \times P \times 8` bytes and its temporaries, the renormalized
    predictions) plus the collected per-member results; time counts the dense work of training,
    Fisher and renormalization at :data:`FLOP_RATE`, array passes at :data:`ELEMENT_RATE`, the
    Python-level training steps at :data:`STEP_SECONDS` and the bootstrap at
    :data:`BOOTSTRAP_RATE`, on an idle core.  Within a factor of a few of the measured cost.
    """
    w = [int(v) for v in cfg.widths]
    members, mb, r = cfg.members, min(cfg.block, cfg.members), len(cfg.lambdas) + 1
    n_tr, n_te, n_f, d = cfg.n_train, cfg.n_test, cfg.fisher_set, w[0]
    bias = int(cfg.bias)
    layers = [w[l] * w[l + 1] + bias * w[l + 1] for l in range(len(w) - 1)]
    hidden, p_all = sum(layers[:-1]), sum(layers)
    p = layers[-1] if cfg.readout_only else p_all
    fresh = cfg.data == "fresh"
    evals = n_te * (2 if fresh else 1)                       # own test set + the probe set
    n_kernel = cfg.kernel_bases * (1 + len(cfg.kernel_separations)) if cfg.kernel_separations else 0
    dual = cfg.readout_only and cfg.optimizer == "sgd" and n_tr < p
    steps = cfg.epochs * math.ceil(n_tr / (cfg.batch_size or n_tr))
    rank = min(n_f, p)
    eigen = cfg.criterion == SplitCriterion.EIGEN
    # memory (float64 elements) of one block, then of the collected results
    train_mem = (n_tr * p + 6 * n_tr * n_tr if dual else n_tr * p + 3 * p if cfg.readout_only
                 else 3 * (cfg.batch_size or n_tr) * sum(w[1:-1]) + 3 * p)
    block_terms = {
        "Fisher Jacobian": (n_f * p * (5 if eigen else 4) + (rank * (rank + p) if eigen else 0),
                            ("block", "fisher_set", "widths")),
        "training": (train_mem, ("block", "n_train", "widths")),
        "renormalized predictions": (evals * p + r * (p + 3 * n_te) + n_kernel * p,
                                     ("block", "n_test", "lambdas", "widths")),
        "parameters and data": (3 * p_all + (n_tr + n_te + n_f) * (d + 1) * fresh,
                                ("block", "widths", "n_train", "n_test", "fisher_set")),
    }
    per_member = 2 * r * n_te + r + p + 7 * r            # blocks kept; results.json: 2r numbers of ~25 B
    memory_terms = {key: (8.0 * mb * v, names) for key, (v, names) in block_terms.items()}
    memory_terms["collected results"] = (8.0 * 2 * members * per_member, ("members", "n_test", "lambdas"))
    # time
    inputs = n_tr + evals + n_f + n_kernel
    forward = 2 * hidden * inputs + 10 * sum(w[1:-1]) * inputs * FLOP_RATE / ELEMENT_RATE  # + activations
    if dual:
        train_flops = 2 * n_tr * n_tr * p + n_tr ** 3 * (3 + 4 * math.log2(2 + cfg.epochs))
    else:
        train_flops = cfg.epochs * n_tr * 6 * (p if cfg.readout_only else p_all + hidden)
    fisher_flops = 2 * rank * rank * max(n_f, p) + 10 * rank ** 3 if eigen else 0
    renorm_flops = (2 * r * (evals + n_kernel) * p + r * p * (4 * rank if eigen else 1)
                    + (3 * r * n_te * p * (rank if eigen else 1) if cfg.mode == "marginalize" else 0))
    blocks = math.ceil(members / mb)
    time_terms = {
        "training": (members * (forward + train_flops) / FLOP_RATE + (0 if dual else blocks * steps * STEP_SECONDS),
                     ("members", "epochs", "n_train", "widths")),
        "Fisher metric": (members * (fisher_flops / FLOP_RATE + 6 * n_f * p / ELEMENT_RATE),
                          ("members", "fisher_set", "widths")),
        "renormalization": (members * renorm_flops / FLOP_RATE, ("members", "lambdas", "n_test", "widths")),
        "bootstrap": ((cfg.bootstrap + 200 * blocks) * r * members / BOOTSTRAP_RATE,
                      ("bootstrap", "members", "lambdas")),
    }
    mem_key = max(memory_terms, key=lambda k: memory_terms[k][0])
    time_key = max(time_terms, key=lambda k: time_terms[k][0])
    return Cost(memory=sum(v for v, _ in memory_terms.values()),
                seconds=sum(v for v, _ in time_terms.values()),
                disk=8.0 * members * per_member,
                memory_term=mem_key, time_term=time_key,
                memory_argument=_driver(cfg, memory_terms[mem_key][1]),
                time_argument=_driver(cfg, time_terms[time_key][1]))


def _human_bytes(x: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if x >= size:
            return f"{x / size:.3g} {unit}"
    return f"{x:.0f} B"


def _human_seconds(x: float) -> str:
    for unit, size in (("days", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if x >= size:
            return f"{x / size:.3g} {unit}"
    return f"{x:.2g} s"


def check_cost(cfg: ShellExperiment) -> Cost:
    """Refuse ``cfg`` (:class:`~symbrg.core.errors.TooExpensive`, naming the parameter that drives the
    excess) when its estimated memory or time exceeds the ``experiment_memory`` /
    ``experiment_time`` limits; return the estimate."""
    cost = estimate_cost(cfg)
    MEMORY.check(cost.memory_argument, math.ceil(cost.memory),
                 cost=f"{_human_bytes(cost.memory)}, mostly the {cost.memory_term}")
    TIME.check(cost.time_argument, math.ceil(cost.seconds),
               cost=f"{_human_seconds(cost.seconds)}, mostly the {cost.time_term}")
    return cost


# ------------------------------------------------------------------------------------ the runner
#: Arrays every saved block holds, with their shapes given (n_lam + 1, members in the block, n_test).
_BLOCK_SHAPES = {"test_mse": lambda r, m, t: (r, m), "predictions": lambda r, m, t: (r, m, t),
                 "within_variance": lambda r, m, t: (r, m, t), "fraction_resampled": lambda r, m, t: (r, m),
                 "finite": lambda r, m, t: (m,)}


def _unreadable(path: Path, why: str) -> InvalidArgument:
    why = " ".join(why.split())
    return InvalidArgument("resume", f"{path} is unreadable ({why}); rerun without --resume into a new "
                                     f"--out, or with --force to start afresh")


def _save_block(path: Path, block: dict) -> None:
    with checks.atomic_write(path, force=True, mode="wb") as fh:
        np.savez(fh, **block)


def _load_block(path: Path, cfg: ShellExperiment, count: int) -> dict:
    """A saved block, checked to hold the ``count`` members this configuration expects."""
    try:
        with np.load(path, allow_pickle=False) as z:
            block = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise _unreadable(path, f"{type(exc).__name__}: {exc}") from None
    for key, shape in _BLOCK_SHAPES.items():
        want = shape(len(cfg.lambdas) + 1, count, cfg.n_test)
        if key not in block or block[key].shape != want:
            raise _unreadable(path, f"{key} missing or not of shape {want}")
    return block


def _load_config(path: Path) -> dict:
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise _unreadable(path, f"{type(exc).__name__}: {exc}") from None
    if not isinstance(old, dict):
        raise _unreadable(path, "not a JSON object")
    return old


def _output_folder(out: str | Path) -> Path:
    """The output folder, created if missing; refused in one line when the path is empty, names
    something other than a folder, or cannot be created."""
    if not str(out).strip():
        raise InvalidArgument("out", "the output folder is empty; name a folder (. for the current one)")
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise InvalidArgument("out", f"{path} exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidArgument("out", f"cannot create the folder {path}: {exc.strerror or exc}") from None
    return path


def _write_json(path: Path, obj: Any) -> None:
    with checks.atomic_write(path, force=True) as fh:
        json.dump(obj, fh, indent=1, allow_nan=True)
        fh.write("\n")


def summary(results: dict) -> str:
    """One line on Λ_C: its value, bootstrap interval and curve, and whether it (or its interval)
    reaches the edge of the cutoff grid."""
    lam_c, (lo, hi) = results["lambda_c"], results["lambda_c_ci"]
    text = lambda v: "beyond the grid" if v is None else f"{v:g}"  # noqa: E731
    line = (f"Λ_C = {text(lam_c)} ({results['confidence']:.0%} bootstrap interval [{text(lo)}, {text(hi)}], "
            f"{results['lambda_c_statistic']} test MSE over {results['members_kept']} members)")
    if results["lambda_c_at_grid_edge"]:
        line += f"; at the grid edge: {results['lambda_c_note']}"
    elif lo == results["lambdas"][0] or hi is None or hi == results["lambdas"][-1]:
        line += "; the interval reaches the edge of the grid, so that bound is only a limit"
    return line


def run_shell_experiment(cfg: ShellExperiment, out: str | Path | None = None, *,
                         resume: bool = False, force: bool = False, figures: bool = True,
                         progress: Callable[[str], None] | None = None,
                         stop_after: int | None = None) -> dict[str, Any]:
    """Run (or resume) the experiment; with ``out`` write ``config.json``, ``blocks/*.npz`` as
    member blocks finish, ``results.json`` (updated after every block) and the figures.

    The estimated memory and time are checked first (:func:`check_cost`).  An existing
    ``out/config.json`` is refused unless ``resume`` (same configuration required; an unreadable
    config or block is refused) or ``force`` (start afresh).  ``progress`` receives one line per
    event (default: stderr); ``stop_after`` stops after that many new blocks (for testing
    interruption).  Returns the results.
    """
    cfg = cfg.validate()
    check_cost(cfg)
    log = progress or (lambda s: print(s, file=sys.stderr, flush=True))
    net = cfg.network()
    data = make_data(cfg)
    start = time.perf_counter()
    out_dir = _output_folder(out) if out is not None else None
    if out_dir is not None:
        cfg_path = out_dir / "config.json"
        if cfg_path.exists() and not resume and not force:
            raise OutputExists("out", f"{out_dir} holds an experiment; pass --resume to continue it "
                                      f"or --force to start afresh")
        if cfg_path.exists() and resume and not force:
            old = _load_config(cfg_path)
            if old != cfg.to_json():
                diff = sorted(k for k in set(old) | set(cfg.to_json()) if old.get(k) != cfg.to_json().get(k))
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
            blocks.append(_load_block(path, cfg, count))
            done += count
            log(f"[shell] members {done}/{cfg.members} loaded from {path.name}")
            continue
        if stop_after is not None and new >= stop_after:
            break
        t0 = time.perf_counter()
        block = _run_block(cfg, net, data, index * cfg.block, count)
        done += count
        new += 1
        log(f"[shell] members {done}/{cfg.members} trained; Λ {len(cfg.lambdas)}/{len(cfg.lambdas)} "
            f"done for this block ({time.perf_counter() - t0:.1f} s)")
        blocks.append(block)
        if path is not None:
            _save_block(path, block)
        if out_dir is not None and done < cfg.members:   # partial results, saved as we go
            try:   # a cheaper bootstrap for the partial results
                partial = _aggregate(cfg, blocks, time.perf_counter() - start,
                                     resamples=min(cfg.bootstrap, 200))
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
        log(f"[shell] median test MSE {results['mse_trained_median']:.4g} trained -> "
            f"{results['mse_median'][-1]:.4g} at Λ = {cfg.lambdas[-1]:g}; {summary(results)}")
    return results
