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

import importlib
import json
import math
import sys
import time
import uuid
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from functools import cache
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

__all__ = ["ShellExperiment", "PRESETS", "PAPER_LAMBDAS", "preset", "run_shell_experiment", "load_run", "Run",
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
               count: int, *, state: tuple[np.ndarray, np.ndarray] | None = None,
               cutoffs: Sequence[float] | np.ndarray | None = None) -> dict[str, np.ndarray]:
    """:func:`_train_block` with BLAS on one thread: a reduction split over another number of threads
    rounds differently, and training amplifies it, so a block is bit-for-bit the same on any machine,
    in this process or as a task on a dask cluster (whose workers start OpenBLAS with one thread)."""
    held = _blas_threads()
    _set_blas_threads(tuple(1 for _ in held or ()))
    try:
        return _train_block(cfg, net, data, start, count, state=state, cutoffs=cutoffs)
    finally:
        _set_blas_threads(held or ())


def _train_block(cfg: ShellExperiment, net: Network, data: dict, start: int,
                 count: int, *, state: tuple[np.ndarray, np.ndarray] | None = None,
                 cutoffs: Sequence[float] | np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Train members ``start .. start+count-1`` and renormalize them at every cutoff of ``cutoffs``
    (default: the configuration's grid).  ``state = (theta, finite)``, the trained parameters and
    finiteness flags saved in a block, rebuilds the trained members without training them again
    (to renormalize a finished run at more cutoffs).  Row 0 of the per-cutoff arrays is the trained
    ensemble; the block also holds ``theta`` and its cutoff grid ``lambdas``."""
    rngs = _member_rngs(cfg, start, count)
    ens = _init_members(cfg, net, rngs)
    own = member_data(cfg, start, count) if cfg.data == "fresh" else data
    which = "readout" if cfg.readout_only else "all"
    prior_std = net.prior_std(which)
    if state is None:
        with np.errstate(over="ignore", invalid="ignore"):
            trained = train(net, ens, own["x_train"], own["y_train"], lr=cfg.lr, epochs=cfg.epochs,
                            optimizer=cfg.optimizer, batch_size=cfg.batch_size,
                            readout_only=cfg.readout_only).ensemble
        theta = trained.flat(which)
        finite = np.all(np.isfinite(theta), axis=1)
        theta = np.where(finite[:, None], theta, 0.0)   # diverged members: kept finite, dropped later
    else:       # training changes only the parameters in theta: the rest is the prior draw
        trained, theta, finite = ens, np.asarray(state[0], dtype=net.dtype), np.asarray(state[1], dtype=bool)
    trained = trained.with_flat(theta, which)
    jac = net.jacobian(trained, own["x_fisher"], which)
    split = fisher_split(jac, prior_std, cfg.criterion)
    lambdas = np.asarray(cfg.lambdas if cutoffs is None else cutoffs, dtype=float)
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
        if phi is not None:   # readout: a product per cutoff, so that BLAS rounds each member's outputs
            # the same whatever the number of cutoffs (a resumed run adds cutoffs: it must equal a fresh one)
            return np.stack([np.matmul(phi, th[:, :, None])[..., 0] for th in thetas])
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
            "finite": finite, "theta": theta, "lambdas": lambdas}


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
    common = [key for key in blocks[0] if key not in ("lambdas", "theta") and all(key in b for b in blocks)]
    cat = {key: np.concatenate([b[key] for b in blocks], axis=1 if blocks[0][key].ndim == 3 or key in
                               ("test_mse", "fraction_resampled", "kernel") else 0) for key in common}
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
#: Block arrays with one row per cutoff (row 0: the trained ensemble); members on axis 1.
_PER_CUTOFF = ("test_mse", "predictions", "within_variance", "fraction_resampled", "kernel")
#: Configuration fields that only enter the statistics of the saved blocks: a resumed run may change them.
_STATISTICS_FIELDS = ("rtol", "statistic", "bootstrap", "confidence", "drop_above", "test_point")


def _unreadable(path: Path, why: str, argument: str = "resume") -> InvalidArgument:
    why = " ".join(why.split())
    if argument != "resume":
        return InvalidArgument(argument, f"{path} is unreadable ({why})")
    return InvalidArgument("resume", f"{path} is unreadable ({why}); rerun without --resume into a new "
                                     f"--out, or with --force to start afresh")


def _save_block(path: Path, block: dict) -> None:
    with checks.atomic_write(path, force=True, mode="wb") as fh:
        np.savez(fh, **block)


def _read_block(path: Path, argument: str = "resume") -> dict:
    """The arrays of a saved block (unchecked)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise _unreadable(path, f"{type(exc).__name__}: {exc}", argument) from None


def _check_block(path: Path, block: dict, cutoffs: int, count: int | None, n_test: int,
                 argument: str = "resume") -> int:
    """Check that a block holds ``count`` members (None: any number) at ``cutoffs`` cutoffs;
    return its number of members."""
    if "test_mse" in block and block["test_mse"].ndim == 2 and count is None:
        count = block["test_mse"].shape[1]
    for key, shape in _BLOCK_SHAPES.items():
        want = shape(cutoffs + 1, count, n_test)
        if key not in block or block[key].shape != want:
            raise _unreadable(path, f"{key} missing or not of shape {want}", argument)
    if "lambdas" in block and block["lambdas"].shape != (cutoffs,):
        raise _unreadable(path, f"lambdas not of shape ({cutoffs},)", argument)
    if "theta" in block and (block["theta"].ndim != 2 or block["theta"].shape[0] != count):
        raise _unreadable(path, f"theta not of shape ({count}, parameters)", argument)
    return int(count or 0)


def _load_block(path: Path, cfg: ShellExperiment, count: int) -> dict:
    """A saved block, checked to hold the ``count`` members this configuration expects."""
    block = _read_block(path)
    _check_block(path, block, len(cfg.lambdas), count, cfg.n_test)
    return block


def _load_config(path: Path, argument: str = "resume") -> dict:
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise _unreadable(path, f"{type(exc).__name__}: {exc}", argument) from None
    if not isinstance(old, dict):
        raise _unreadable(path, "not a JSON object", argument)
    return old


def _extension(old: dict, cfg: ShellExperiment, out_dir: Path) -> list[float]:
    """Check that the run in ``out_dir`` (configuration ``old``) can be extended to ``cfg``: more
    members, a cutoff grid that contains the old one (cumulative or deterministic renormalization
    only) and other statistics; anything that changes the saved blocks (seed, widths, data,
    training, ...) is refused in one line.  Returns the old cutoff grid."""
    new = cfg.to_json()
    diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    fixed = [k for k in diff if k not in ("members", "lambdas", *_STATISTICS_FIELDS)]
    if fixed:
        raise InvalidArgument("resume", f"{out_dir} was run with a different configuration "
                                        f"({', '.join(fixed)}); a resumed run may only add members, add "
                                        f"cutoffs or change the statistics; use --force or a new --out")
    try:
        members, grid = int(old["members"]), [float(v) for v in old["lambdas"]]
    except (KeyError, TypeError, ValueError):
        raise _unreadable(out_dir / "config.json", "members or lambdas missing") from None
    if cfg.members < members:
        raise InvalidArgument("resume", f"{out_dir} holds {members} members; a resumed run cannot "
                                        f"drop members (--members {cfg.members} < {members})")
    if grid != [float(v) for v in cfg.lambdas]:
        dropped = sorted(set(grid) - {float(v) for v in cfg.lambdas})
        if dropped:
            raise InvalidArgument("resume", f"{out_dir} was renormalized at cutoffs this grid lacks "
                                            f"({', '.join(f'{v:g}' for v in dropped[:3])}); a resumed run "
                                            f"may only add cutoffs")
        if cfg.mode == "resample" and not cfg.cumulative:
            raise InvalidArgument("resume", "with --afresh every cutoff draws in grid order, so cutoffs "
                                            "cannot be added to a finished run; use --force or a new --out")
        for path in sorted((out_dir / "blocks").glob("block_*.npz")):
            try:
                with np.load(path, allow_pickle=False) as z:
                    legacy = "theta" not in z.files
            except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
                raise _unreadable(path, f"{type(exc).__name__}: {exc}") from None
            if legacy:
                raise InvalidArgument("resume", f"{path} holds no trained parameters (written by an "
                                                f"older symbrg): its cutoff grid cannot be extended; use "
                                                f"--force or a new --out")
    return grid


def _merge_cutoffs(block: dict, extra: dict, grid: np.ndarray) -> dict:
    """A block renormalized at its own cutoffs and at ``extra``'s, rows in increasing cutoff order."""
    combined = np.concatenate([grid, extra["lambdas"]])
    order = np.argsort(combined, kind="stable")
    out = dict(block)
    for key in _PER_CUTOFF:
        if key in block:
            rows = np.concatenate([block[key][1:], extra[key][1:]])[order]
            out[key] = np.concatenate([block[key][:1], rows])
    out["lambdas"] = combined[order]
    return out


def _merge_members(block: dict, extra: dict) -> dict:
    """A block with ``extra``'s members appended (as if they had been trained with it)."""
    out = {}
    for key, value in block.items():
        if key == "lambdas" or key not in extra:
            out[key] = value
        elif key in _PER_CUTOFF:
            out[key] = np.concatenate([value, extra[key]], axis=1)
        elif key == "fisher_eigenvalues":      # the spectrum figure keeps a block's first members
            out[key] = np.concatenate([value, extra[key]])[:SPECTRUM_MEMBERS]
        else:
            out[key] = np.concatenate([value, extra[key]])
    out.setdefault("lambdas", extra["lambdas"])
    return out


def _resume_block(cfg: ShellExperiment, net: Network, data: dict, path: Path, start: int, count: int,
                  grid: Sequence[float]) -> tuple[dict, bool]:
    """A saved block brought up to ``cfg``: renormalized at the cutoffs it lacks (from its saved
    trained parameters, without training) and topped up with the members it lacks; whether it
    changed.  ``grid``: the cutoffs of blocks that do not record theirs."""
    block = _read_block(path)
    own = np.asarray(block["lambdas"], dtype=float) if "lambdas" in block else np.asarray(grid, dtype=float)
    members = _check_block(path, block, own.size, None, cfg.n_test)
    if not 1 <= members <= count:
        raise _unreadable(path, f"{members} members where this run has {count} in the block")
    changed = False
    lambdas = np.asarray(cfg.lambdas, dtype=float)
    if own.size != lambdas.size or np.any(own != lambdas):
        missing = lambdas[~np.isin(lambdas, own)]
        if "theta" not in block or np.any(~np.isin(own, lambdas)):
            raise _unreadable(path, "its cutoff grid cannot be extended to this run's")
        extra = _run_block(cfg, net, data, start, members, state=(block["theta"], block["finite"]),
                           cutoffs=missing)
        block = _merge_cutoffs(block, extra, own)
        changed = True
    if members < count:
        block = _merge_members(block, _run_block(cfg, net, data, start + members, count - members))
        changed = True
    return block, changed


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
                         stop_after: int | None = None, bar: bool = False,
                         client: Any = None) -> dict[str, Any]:
    """Run (or resume, or extend) the experiment; with ``out`` write ``config.json``,
    ``blocks/*.npz`` as member blocks finish, ``results.json`` (updated after every block) and the
    figures.

    The estimated memory and time are checked first (:func:`check_cost`).  An existing
    ``out/config.json`` is refused unless ``resume`` or ``force`` (start afresh).  ``resume``
    continues an interrupted run, or extends a finished one: a larger ``members`` trains only the
    new members, a cutoff grid that contains the old one renormalizes the saved members at the new
    cutoffs only (from the trained parameters kept in every block; not with ``cumulative=False``
    resampling, whose draws follow the grid order), and the statistics fields (``rtol``,
    ``statistic``, ``bootstrap``, ``confidence``, ``drop_above``, ``test_point``) may change; the
    results are those of a fresh run with the new configuration.  Any other change, an unreadable
    config or block is refused naming ``resume``.  ``progress`` receives one line per event
    (default: stderr); ``bar`` shows a tqdm bar of the members on stderr; ``stop_after`` stops after
    that many new (or topped-up) blocks (for testing interruption).  Returns the results.

    ``client``: a ``distributed.Client`` (the ``[dask]`` extra); the member blocks to train are then
    tasks on its cluster (``_run_block``, one per block, all submitted at once), collected, saved and
    aggregated here in block order.  Every member draws from its own seeds
    (``SeedSequence(seed, spawn_key=(1, m))`` and ``(2, m)``), so the results equal a local run's
    bit for bit; the blocks are written by this process (``out`` need not be shared).  Extending
    saved blocks on resume runs here.
    """
    cfg = cfg.validate()
    check_cost(cfg)
    _check_client(client)
    if progress is not None and not callable(progress):
        raise InvalidArgument("progress", "must be a callable taking one line of text, or None")
    members_bar = _members_bar(bar, cfg.members)
    if progress is not None:
        log = progress
    elif bar:
        log = lambda s: members_bar.write(s, file=sys.stderr)  # noqa: E731 - keeps the bar intact
    else:
        log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    try:
        return _run(cfg, out, resume, force, figures, log, stop_after, members_bar, client)
    finally:
        members_bar.close()


def _check_client(client: Any) -> None:
    """Refuse a ``client`` that is not a ``distributed.Client`` (or None); without the ``[dask]``
    extra any client is refused naming it."""
    if client is None:
        return
    try:
        distributed = importlib.import_module("distributed")
    except ImportError:
        raise Unsupported("client", "needs the [dask] extra: pip install 'symbrg[dask]' "
                                    "(distributed is not installed)") from None
    if not isinstance(client, distributed.Client):
        raise InvalidArgument("client", f"expected a distributed.Client or None, got {type(client).__name__}")


def _submit_blocks(client: Any, cfg: ShellExperiment, net: Network, data: dict,
                   todo: list[tuple[int, int]]) -> dict[int, Any]:
    """The blocks ``todo`` (index, members) as tasks on ``client``'s cluster: index -> future of
    :func:`_run_block`'s result (the same function, seeds and inputs as a local run, BLAS on one
    thread in both: the results are the same bit for bit)."""
    if client is None or not todo:
        return {}
    tag = uuid.uuid4().hex
    return {index: client.submit(_run_block, cfg, net, data, index * cfg.block, count, pure=False,
                                 key=f"symbrg-shell-block-{index:04d}-{tag}")
            for index, count in todo}


@cache
def _openblas() -> list[tuple[Any, Any]]:
    """(get, set) of the number of threads of every OpenBLAS loaded (NumPy and SciPy each bring
    their own; found in ``/proc/self/maps``), or [] (another BLAS, or no ``/proc``: the thread counts
    are left alone, and a cluster run then agrees with a local one to rounding, not bit for bit).
    Read once per process (every block asks three times)."""
    import ctypes

    import scipy.linalg  # noqa: F401 - load SciPy's OpenBLAS too, so that driver and worker list the same
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
            paths = sorted({line.split()[-1] for line in fh
                            if "openblas" in line.lower() and line.split()[-1].startswith("/")})
    except OSError:
        return []
    found = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        pairs = [(getattr(lib, f"{prefix}_get_num_threads{suffix}", None),
                  getattr(lib, f"{prefix}_set_num_threads{suffix}", None))
                 for prefix in ("scipy_openblas", "openblas") for suffix in ("64_", "")]
        found += [pair for pair in pairs if None not in pair][:1]
    return found


def _blas_threads() -> tuple[int, ...] | None:
    """The thread count of each OpenBLAS of this process, if they can be read."""
    libs = _openblas()
    return tuple(int(get()) for get, _ in libs) if libs else None


def _set_blas_threads(threads: tuple[int, ...]) -> None:
    libs = _openblas()
    if len(libs) == len(threads):
        for (_, put), n in zip(libs, threads):
            put(int(n))


def _members_bar(show: bool, total: int) -> Any:
    """A tqdm bar of the members on stderr (a no-op unless ``show``)."""
    tqdm = importlib.import_module("tqdm").tqdm       # untyped: imported as Any
    return tqdm(total=total, desc="shell", unit="member", file=sys.stderr, leave=False,
                dynamic_ncols=True, disable=not show)


def _run(cfg: ShellExperiment, out: str | Path | None, resume: bool, force: bool, figures: bool,
         log: Callable[[str], None], stop_after: int | None, members_bar: Any, client: Any = None) -> dict[str, Any]:
    """The body of :func:`run_shell_experiment`."""
    futures: dict[int, Any] = {}
    try:
        return _run_blocks(cfg, out, resume, force, figures, log, stop_after, members_bar, client, futures)
    finally:
        if futures:                          # stopped early or failed: drop the tasks still queued
            client.cancel(list(futures.values()))


def _run_blocks(cfg: ShellExperiment, out: str | Path | None, resume: bool, force: bool, figures: bool,
                log: Callable[[str], None], stop_after: int | None, members_bar: Any, client: Any,
                futures: dict[int, Any]) -> dict[str, Any]:
    """:func:`_run` with the cluster's block futures kept in ``futures`` (to cancel them)."""
    net = cfg.network()
    data = make_data(cfg)
    start = time.perf_counter()
    out_dir = _output_folder(out) if out is not None else None
    grid = list(cfg.lambdas)
    if out_dir is not None:
        cfg_path = out_dir / "config.json"
        if cfg_path.exists() and not resume and not force:
            raise OutputExists("out", f"{out_dir} holds an experiment; pass --resume to continue it "
                                      f"or --force to start afresh")
        if cfg_path.exists() and resume and not force:
            old = _load_config(cfg_path)
            if old != cfg.to_json():
                grid = _extension(old, cfg, out_dir)
                log(f"[shell] extending {out_dir}: {old.get('members')} -> {cfg.members} members, "
                    f"{len(grid)} -> {len(cfg.lambdas)} cutoffs")
        elif cfg_path.exists():   # force: forget the old blocks
            for old_block in (out_dir / "blocks").glob("block_*.npz"):
                old_block.unlink()
        _write_json(cfg_path, cfg.to_json())
    sizes = [min(cfg.block, cfg.members - s) for s in range(0, cfg.members, cfg.block)]
    saved = [out_dir is not None and resume and (out_dir / "blocks" / f"block_{i:04d}.npz").exists()
             for i in range(len(sizes))]
    todo = [(i, count) for i, count in enumerate(sizes) if not saved[i]]
    futures.update(_submit_blocks(client, cfg, net, data, todo[:stop_after] if stop_after is not None else todo))
    blocks, new, done = [], 0, 0
    results: dict = {}
    for index, count in enumerate(sizes):
        path = out_dir / "blocks" / f"block_{index:04d}.npz" if out_dir is not None else None
        if path is not None and resume and path.exists():
            if stop_after is not None and new >= stop_after:
                break
            t0 = time.perf_counter()
            block, changed = _resume_block(cfg, net, data, path, index * cfg.block, count, grid)
            blocks.append(block)
            done += count
            members_bar.update(count)
            if changed:
                new += 1
                _save_block(path, block)
                log(f"[shell] members {done}/{cfg.members} extended in {path.name} "
                    f"({time.perf_counter() - t0:.1f} s)")
            else:
                log(f"[shell] members {done}/{cfg.members} loaded from {path.name}")
            continue
        if stop_after is not None and new >= stop_after:
            break
        t0 = time.perf_counter()
        if index in futures:
            block = futures.pop(index).result()
        else:
            block = _run_block(cfg, net, data, index * cfg.block, count)
        done += count
        new += 1
        members_bar.update(count)
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


# ------------------------------------------------------------------------------ reading a run
@dataclass(frozen=True)
class Run:
    """A run written by :func:`run_shell_experiment` (``symbrg experiment shell --out DIR``), as read
    by :func:`load_run`.

    ``config``: its :class:`ShellExperiment`; ``results``: ``results.json`` as a dict (also by
    ``run["key"]``); ``arrays``: the saved member blocks concatenated over members (``test_mse``,
    ``predictions`` and ``within_variance`` (cutoffs + 1, members[, probe points]),
    ``fraction_resampled``, ``finite``, ``fisher_diagonal``, ``theta`` the trained parameters
    (members, P) when every block holds them, ...; row 0 of the per-cutoff arrays is the trained
    ensemble, row k the cutoff ``lambdas[k-1]``).
    """
    path: Path
    config: ShellExperiment
    results: dict[str, Any]
    arrays: dict[str, np.ndarray]

    @property
    def lambdas(self) -> np.ndarray:
        """The cutoff grid Λ."""
        return np.asarray(self.results["lambdas"], dtype=float)

    @property
    def mse_mean(self) -> np.ndarray:
        """Mean test MSE over the kept members at each cutoff."""
        return np.asarray(self.results["mse_mean"], dtype=float)

    @property
    def mse_median(self) -> np.ndarray:
        """Median test MSE over the kept members at each cutoff."""
        return np.asarray(self.results["mse_median"], dtype=float)

    @property
    def lambda_c(self) -> float | None:
        """The critical cutoff Λ_C (None: beyond the grid)."""
        return self.results["lambda_c"]

    @property
    def members(self) -> int:
        """Members whose blocks are saved."""
        return int(self.arrays["finite"].shape[0])

    @property
    def complete(self) -> bool:
        """Whether every member block of the configuration has finished."""
        return bool(self.results.get("complete", False))

    def __getitem__(self, key: str) -> Any:
        return self.results[key]

    def network(self) -> Network:
        """The architecture of the members."""
        return self.config.network()

    def ensemble(self) -> Ensemble:
        """The trained members as an :class:`~symbrg.ensembles.networks.Ensemble` (the prior draws
        of their seeds with the saved trained parameters)."""
        if "theta" not in self.arrays:
            raise Unsupported("path", f"{self.path} holds no trained parameters (blocks written by an "
                                      f"older symbrg)")
        net = self.network()
        ens = _init_members(self.config, net, _member_rngs(self.config, 0, self.members))
        return ens.with_flat(self.arrays["theta"], "readout" if self.config.readout_only else "all")

    def __repr__(self) -> str:
        return (f"Run({str(self.path)!r}, {self.config.name}, {self.members} members, "
                f"{len(self.lambdas)} cutoffs, lambda_c={self.lambda_c}, complete={self.complete})")


def _config_from_json(path: Path, saved: dict) -> ShellExperiment:
    """The :class:`ShellExperiment` saved as ``config.json`` (lists back to tuples)."""
    names = {f.name for f in fields(ShellExperiment)}
    unknown = sorted(set(saved) - names)
    if unknown:
        raise InvalidArgument("path", f"{path} is not a shell-experiment configuration (unknown "
                                      f"field {unknown[0]!r})")
    kw: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()}
    try:
        return ShellExperiment(**kw).validate()
    except (InvalidArgument, TypeError) as exc:
        raise InvalidArgument("path", f"{path} holds an invalid configuration ({exc})") from None


def load_run(path: str | Path) -> Run:
    """Read the run that ``symbrg experiment shell --out DIR`` (:func:`run_shell_experiment`) wrote
    into ``path``: its configuration, ``results.json`` and the saved member blocks.

    A missing folder, a folder without ``config.json`` or ``results.json``, or an unreadable,
    inconsistent or missing file is refused with :class:`~symbrg.core.errors.InvalidArgument`
    naming ``path`` and the file."""
    if not isinstance(path, (str, Path)) or not str(path).strip():
        raise InvalidArgument("path", f"expected the folder of a run, got {path!r}")
    root = Path(path)
    if not root.is_dir():
        raise InvalidArgument("path", f"{root} is not a folder" if root.exists() else f"{root} does not exist")
    for name in ("config.json", "results.json"):
        if not (root / name).is_file():
            raise InvalidArgument("path", f"{root} has no {name}: not a run written by "
                                          f"`symbrg experiment shell --out`"
                                  + (" (or it has not finished its first block)" if name == "results.json" else ""))
    saved = _load_config(root / "config.json", "path")
    results = _load_config(root / "results.json", "path")
    if not {"lambdas", "mse_mean", "members"} <= set(results):
        raise InvalidArgument("path", f"{root / 'results.json'} is not the results of a shell experiment")
    # the configuration that produced the results (config.json is ahead while an extension runs)
    config_file = root / ("results.json" if isinstance(results.get("config"), dict) else "config.json")
    cfg = _config_from_json(config_file, results["config"] if config_file.name == "results.json" else saved)
    want, held, blocks = int(results["members"]), 0, []
    for index in range(math.ceil(cfg.members / cfg.block)):
        file = root / "blocks" / f"block_{index:04d}.npz"
        if held >= want or not file.exists():
            break
        block = _read_block(file, "path")
        held += _check_block(file, block, len(results["lambdas"]), None, cfg.n_test, "path")
        blocks.append(block)
    if not blocks or held != want:
        raise InvalidArgument("path", f"{root / 'results.json'} describes {want} members but the blocks in "
                                      f"{root / 'blocks'} hold {held}; if a run was interrupted, finish it "
                                      f"with --resume")
    keys = [k for k in blocks[0] if k != "lambdas" and all(k in b for b in blocks)]
    arrays = {k: np.concatenate([b[k] for b in blocks], axis=1 if k in _PER_CUTOFF else 0) for k in keys}
    return Run(root, cfg, results, arrays)
