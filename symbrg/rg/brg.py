r"""The Bayesian renormalization group: information-shell coarse graining (UV → IR) and its field theory.

Job: coarse-grain a trained Gaussian distribution over parameters against the Fisher
distinguishability scale :math:`\Lambda` (arXiv:2405.17538, Eqs. (53)-(54)), and follow the flow it
induces on the dual field theory (the predictive Gaussian process of an infinite-width network).
Defining equations, with Fisher eigen-coordinates :math:`\xi = V^{-1}\theta`
(:math:`I = V^{-\mathsf T}\mathrm{diag}(\lambda)V^{-1}`), the stiff set
:math:`\lambda_k \ge \Lambda` and the sloppy set :math:`\lambda_k < \Lambda`:

.. math::

    \pi_\Lambda(\xi_<, \xi_>) = \pi^<_\Lambda(\xi_<)\int d\xi_<\,\pi_*(\xi_<, \xi_>),\qquad
    \mu_\Lambda = S\mu_* + (1-S)\,m_0,\qquad C_\Lambda = S C_* S + (1-S) C_0 (1-S),

:math:`S = \mathrm{diag}\,\Theta(\lambda_k - \Lambda)` (with :math:`\Theta(0) = 1`), for the *prior*
prescription (sloppy directions re-drawn from the original prior :math:`\mathcal N(m_0, C_0)`, what
numerical experiments do).  The *Jeffreys* prescription gives the sloppy directions the Jeffreys
prior :math:`\sqrt{\det I_<}`, which for the Gaussian (location) models treated here is flat and
improper: the result carries flat directions (:attr:`GaussianState.flat`).

**Smooth shells.**  A regulator replaces :math:`\Theta` by a weight :math:`w_k = K(\Lambda/\lambda_k)`,
the UV cutoff function of :mod:`symbrg.rg.regulators` (:math:`K(0)=1`, :math:`K(\infty)=0`; e.g.
``power:b`` gives :math:`w = \lambda^b/(\lambda^b+\Lambda^b)`, ``litim`` gives
:math:`\lambda w = \max(\lambda - \Lambda, 0)`), so one regulator object serves the ERG and the
BRG.  The smooth shell tempers the likelihood mode by mode (geometric interpolation of natural
parameters, exact for the conjugate case where :math:`C_*^{-1} - C_0^{-1}` commutes with :math:`I`):

.. math::  Q_\Lambda = Q_0 + w\,(Q_* - Q_0),\qquad h_\Lambda = h_0 + w\,(h_* - h_0),\qquad
           \partial_\Lambda Q_\Lambda = \partial_\Lambda w\,(Q_* - Q_0),\quad
           \partial_\Lambda w = \lambda^{-1} K'(\Lambda/\lambda) \le 0.

For :math:`w \in \{0, 1\}` it coincides with the sharp shell above.

**Infinite-width networks.**  For the NNGP posterior (kernel :math:`K`, noise :math:`\sigma^2`,
:math:`T` points) the readout Fisher, in parameters whitened by the readout prior, has the
eigen-directions of :math:`K(X,X) = \sum_k \kappa_k e_k e_k^{\mathsf T}` and eigenvalues
:math:`\kappa_k/\sigma^2 = T\lambda_k/\sigma^2` (:math:`\lambda_k` the eigenvalues of the kernel
operator :math:`K(X,X)/T`).  With :math:`\psi_k(x) = K(x,X)e_k/\kappa_k`, :math:`y_k = e_k^{\mathsf T} y`:

.. math::

    m_\Lambda(x) = \sum_k \psi_k(x)\,\frac{w_k\kappa_k y_k}{\sigma^2 + w_k\kappa_k},\qquad
    \Sigma_\Lambda(x,x') = K(x,x') - \sum_k \psi_k(x)\psi_k(x')\,\frac{w_k\kappa_k^2}{\sigma^2+w_k\kappa_k},

i.e. a mode-dependent ridge :math:`\sigma^2 \to \sigma^2/w_k` (a prior-prescription shell), and the induced action
:math:`S_\Lambda[\phi] = \tfrac12(\phi-m_\Lambda)^{\mathsf T}\Sigma_\Lambda^{-1}(\phi - m_\Lambda) +
\tfrac12\log\det 2\pi\Sigma_\Lambda`.  The Wilsonian ridge flow of NNGPs (arXiv:2405.06008,
:math:`\sigma^2 \to \sigma^2 + \sum_{k>\kappa}\lambda_k`) is the trace approximation of the exact
Wilsonian noise :math:`\sigma^2 1 + K_>(X,X)`; the exact one reproduces the sharp information shell,
and the scalar ridge is the shell with :math:`w_k = \sigma^2/(\sigma^2 + c)` on the stiff modes
(see :func:`wilsonian_ridge` and :func:`nngp_brg_derivation`).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any, TypeAlias, TypedDict

import numpy as np
import sympy as sp

from symbrg.core.calculus import drop_deltas
from symbrg.core.checks import (
    choice,
    finite_array,
    matching,
    nonnegative,
    positive,
    psd_matrix,
    resolve_symbols,
)
from symbrg.core.derivation import Derivation, check_identity
from symbrg.core.errors import InvalidArgument, ShapeMismatch, Unsupported
from symbrg.core.limits import Limit
from symbrg.core.parsing import as_expression
from symbrg.core.symbols import symbol, symbols
from symbrg.core.types import ArrayLike, ExprLike, NDArray, Number
from symbrg.information.spectrum import CRITERIA, Choice, SplitCriterion, shell_split
from symbrg.rg.posterior import GaussianLike, GaussianState, as_gaussian, orthonormal_span
from symbrg.rg.regulators import Regulator, Sharp
from symbrg.rg.regulators import regulator as _regulator

if TYPE_CHECKING:
    from symbrg.gaussian.expectations import ActivationSpec
    from symbrg.kernels.architecture import Architecture

__all__ = ["Prescription", "PRESCRIPTIONS", "SplitCriterion", "CRITERIA", "shell_weight", "weights", "CoarseGrained", "coarse_grain",
           "sample_coarse_grained", "ModeShell", "coarse_grain_modes", "shell_moments",
           "PredictiveFlow", "predictive_flow", "nngp_flow", "wilsonian_ridge", "commuting_diagram",
           "induced_action_modes", "information_shell_derivation", "nngp_brg_derivation"]



class Prescription(Choice):
    r"""What coarse graining does with the sloppy directions: re-draw them from the prior
    (``PRIOR``, the paper's :math:`\pi_\Lambda`, what numerical experiments do), give them the flat
    Jeffreys prior (``JEFFREYS``), or set them to zero (``REMOVED``, the stiff marginal: the
    Wilsonian low-mode theory, see :mod:`symbrg.cosnet`).  Parse text once with :meth:`Choice.parse`."""
    PRIOR = "prior"
    JEFFREYS = "jeffreys"
    REMOVED = "removed"


#: The prescriptions of the Gaussian engines of this module.
PRESCRIPTIONS = (Prescription.PRIOR, Prescription.JEFFREYS)


def _prescription(value: "Prescription | str") -> Prescription:
    """Parse a prescription of this module's engines (``prior`` or ``jeffreys``)."""
    return Prescription.parse(value, "prescription", PRESCRIPTIONS)


#: A shell's regulator: a :class:`~symbrg.rg.regulators.Regulator`, a name parsed by
#: :func:`~symbrg.rg.regulators.regulator`, or ``None`` for the sharp shell.
RegulatorSpec: TypeAlias = "Regulator | str | None"
#: A kernel for :func:`nngp_flow`: an architecture from :func:`symbrg.mlp` (its ``.nngp``) or a
#: callable :math:`(X_1, X_2) \mapsto K(X_1, X_2)`.
KernelSource: TypeAlias = "Architecture | Callable[[NDArray[np.float64], NDArray[np.float64]], ArrayLike]"

#: Symbols of the mode-wise formulas.
LAM, CUT = symbols("lambda_k Lambda")
KAPPA, SIGMA = symbols("kappa_k sigma")
SIGMA2 = SIGMA ** 2
W = symbol("w_k")
YK = symbol("y_k")
P0, PS = symbols("p_0 p_*")
H0, HS = symbols("h_0 h_*")


# --------------------------------------------------------------------------- the one-source formulas
def _tempered(p0: Number, h0: Number, ps: Number, hs: Number, w: Number) -> tuple[sp.Expr, sp.Expr]:
    r"""Natural parameters of one smooth-shell mode: :math:`p = p_0 + w(p_*-p_0)`, :math:`h = h_0 + w(h_*-h_0)`."""
    return p0 + w * (ps - p0), h0 + w * (hs - h0)


def _nngp_mode(prescription: Prescription) -> tuple[sp.Expr, sp.Expr]:
    r"""Mean and variance of the kernel mode :math:`f_k = e_k^{\mathsf T}f(X)` at weight :math:`w`.

    Prior :math:`\mathcal N(0, \kappa)`, likelihood :math:`y_k \sim \mathcal N(f_k, \sigma^2)`.
    """
    p0, h0 = (1 / KAPPA, 0) if prescription is Prescription.PRIOR else (0, 0)
    p, h = _tempered(p0, h0, 1 / KAPPA + 1 / SIGMA2, YK / SIGMA2, W)
    return sp.factor(sp.simplify(h / p)), sp.factor(sp.simplify(1 / p))


@cache
def _nngp_mode_numpy(prescription: Prescription) -> Callable:
    from symbrg.core.codegen import lambdify
    mean, var = _nngp_mode(prescription)
    reduction = sp.factor(sp.simplify(KAPPA - var))
    return lambdify([mean, var, reduction], [KAPPA, YK, SIGMA, W])


# --------------------------------------------------------------------------- regulators / weights
def _shell(regulator: "Regulator | str | None") -> Regulator:
    """The shell's regulator, parsed once (``None`` is the sharp shell)."""
    return Sharp() if regulator is None else _regulator(regulator)


def shell_weight(fisher_eigenvalue: ExprLike, cutoff: ExprLike, regulator: RegulatorSpec = None) -> sp.Expr:
    r"""The information-shell weight :math:`w(\lambda, \Lambda)` (1 = kept/stiff, 0 = coarse-grained).

    ``regulator=None`` or :class:`~symbrg.rg.regulators.Sharp`: :math:`\Theta(\lambda - \Lambda)` with
    :math:`\Theta(0)=1` (Eq. (53): :math:`\lambda \ge \Lambda` is stiff).  Otherwise
    :math:`K(\Lambda/\lambda)` with :math:`K` the UV cutoff function of the regulator (an object, or a
    name parsed by :func:`~symbrg.rg.regulators.regulator`).
    """
    lam, cut = as_expression(fisher_eigenvalue, "fisher_eigenvalue"), as_expression(cutoff, "cutoff")
    nonnegative("fisher_eigenvalue", lam)  # NaN, inf and provably negative values are refused
    nonnegative("cutoff", cut)
    R = _shell(regulator)
    if R.is_sharp:
        return sp.Heaviside(lam - cut, 1)
    return R.K(cut / lam)


def weights(fisher_eigenvalues: ArrayLike, cutoff: float, regulator: RegulatorSpec = None) -> np.ndarray:
    r"""NumPy weights :math:`w_k` for an array of Fisher eigenvalues (compiled from :func:`shell_weight`).

    Conventions at the edges: :math:`\lambda_k \le 0` (Fisher null directions) has :math:`w = 0`
    for :math:`\Lambda > 0`; :math:`\Lambda = 0` returns :math:`w = 1` (the trained theory).
    """
    lam = finite_array("fisher_eigenvalues", fisher_eigenvalues, ndim=1, nonempty=False)
    cut = nonnegative("cutoff", cutoff)
    R = _shell(regulator)
    if R.is_sharp:
        return (lam >= cut).astype(float)
    if cut == 0.0:
        return np.ones_like(lam)
    fn = _weight_numpy(R)
    out = np.zeros_like(lam)
    pos = lam > 0
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        out[pos] = np.broadcast_to(fn(lam[pos], cut), lam[pos].shape)
    if not np.all(np.isfinite(out)):
        raise InvalidArgument("regulator", "gives a non-finite shell weight")
    return np.clip(out, 0.0, 1.0) + 0.0


@lru_cache(maxsize=32)
def _weight_numpy(regulator: Regulator) -> Callable:
    from symbrg.core.codegen import lambdify
    return lambdify(shell_weight(LAM, CUT, regulator), [LAM, CUT])


# --------------------------------------------------------------------------- numeric coarse graining
@dataclass(frozen=True)
class CoarseGrained(GaussianState):
    r"""The renormalized distribution :math:`\pi_\Lambda` with the split that produced it.

    ``sensitivities``: the Fisher eigenvalues (``criterion="eigen"``) or diagonal entries
    (``"diagonal"``) :math:`\lambda_k`; ``basis``: the columns :math:`v_k` of :math:`V`
    (:math:`\theta = V\xi`); ``weights``: :math:`w_k` (1 stiff, 0 sloppy for the sharp shell).
    """
    sensitivities: np.ndarray = field(default_factory=lambda: np.zeros(0))
    basis: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    weights: np.ndarray = field(default_factory=lambda: np.zeros(0))
    cutoff: float = 0.0
    prescription: Prescription = Prescription.PRIOR
    criterion: SplitCriterion = SplitCriterion.EIGEN

    @property
    def stiff(self) -> np.ndarray:
        """Boolean mask of the kept directions (:math:`w_k = 1`)."""
        return self.weights >= 1.0

    @property
    def state(self) -> GaussianState:
        """The bare :class:`GaussianState`."""
        return GaussianState(self.mean, self.covariance, self.flat)


def _split(fisher: ArrayLike, cutoff: float, criterion: SplitCriterion,
           metric: ArrayLike | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sensitivities, V, V^{-1}) from :func:`symbrg.information.spectrum.shell_split`."""
    f = finite_array("fisher", fisher, ndim=2)
    if criterion is SplitCriterion.EIGEN:
        psd_matrix("fisher", f)
    sp_ = shell_split(f, cutoff, criterion, metric=metric, layout="matrix")
    p = f.shape[0]
    if sp_.eigenvectors is None:
        return sp_.sensitivities, np.eye(p), np.eye(p)
    v = sp_.eigenvectors
    vinv = v.T if sp_.metric is None else v.T @ sp_.metric
    return sp_.sensitivities, v, vinv


def coarse_grain(posterior: GaussianLike, fisher: ArrayLike, cutoff: float, *, prior: GaussianLike | None = None,
                 prescription: Prescription | str = Prescription.PRIOR,
                 criterion: SplitCriterion | str = SplitCriterion.EIGEN,
                 regulator: RegulatorSpec = None, metric: ArrayLike | None = None) -> CoarseGrained:
    r"""Information-shell coarse graining :math:`\pi_* \mapsto \pi_\Lambda` (Eqs. (53)-(54)).

    posterior: the trained :math:`\pi_* = \mathcal N(\mu_*, C_*)` (a :class:`GaussianState` or a
    ``(mean, covariance)`` pair).  fisher: the Fisher metric at :math:`\theta_*` (``(P, P)``, PSD),
    in the same parameter units in which ``cutoff`` :math:`\Lambda \ge 0` is meant.
    prior: :math:`\mathcal N(m_0, C_0)`, required for ``prescription="prior"``.
    criterion: ``"eigen"`` (Fisher eigen-directions, basis independent) or ``"diagonal"`` (the
    entries :math:`I_{AA}`, the paper's numerics; not reparametrization invariant).
    metric: optional positive-definite :math:`G` for the generalized problem :math:`Iv = \lambda Gv`
    (e.g. the prior precision: the Fisher of prior-whitened parameters).
    regulator: ``None``/``"sharp"`` for the sharp shell; any :mod:`symbrg.rg.regulators` name for the
    smooth shell (requires :math:`Q_* - Q_0` to commute with the split, else
    :class:`~symbrg.core.errors.Unsupported`).

    Sharp: :math:`\mu_\Lambda = V[S\xi_* + (1-S)\xi_0]`,
    :math:`C_\Lambda = V[S C^\xi_* S + (1-S)C^\xi_0(1-S)]V^{\mathsf T}`;
    Jeffreys: :math:`C^\xi_0 = \infty` on the sloppy block (flat directions :math:`V_<`).
    """
    post = as_gaussian(posterior, "posterior")
    cut = nonnegative("cutoff", cutoff)
    prescription = _prescription(prescription)
    split_by: SplitCriterion = SplitCriterion.parse(criterion, "criterion")
    R = _shell(regulator)
    f = finite_array("fisher", fisher, ndim=2)
    matching("fisher", f.shape[0], post.dim, "size")
    lam, v, vinv = _split(f, cut, split_by, metric)
    if prescription is Prescription.PRIOR:
        if prior is None:
            raise InvalidArgument("prior", "is required for prescription='prior'")
        pri = as_gaussian(prior, "prior")
        matching("prior", pri.dim, post.dim, "dimension")
        if not pri.proper:
            raise Unsupported("prior", "must be proper for prescription='prior'")
    else:
        pri = None
    w = weights(lam, cut, R)
    common = dict(sensitivities=lam, basis=v, weights=w, cutoff=cut, prescription=prescription,
                  criterion=split_by)
    if R.is_sharp:
        state = _sharp(post, pri, v, vinv, w.astype(bool))
    else:
        state = _smooth(post, pri, v, vinv, w)
    return CoarseGrained(state.mean, state.covariance, state.flat, **common)


def _sharp(post: GaussianState, pri: GaussianState | None, v: np.ndarray, vinv: np.ndarray,
           stiff: np.ndarray) -> GaussianState:
    s = stiff.astype(float)
    if not post.proper:  # allowed when every flat direction is sloppy (e.g. a Jeffreys pi_Lambda1)
        leak = (vinv @ post.flat) * s[:, None]
        if np.max(np.abs(leak), initial=0.0) > 1e-8:
            raise Unsupported("posterior", "has flat (improper) directions with stiff components; "
                                           "its stiff marginal does not exist")
    mu = s * (vinv @ post.mean)
    cov = (s[:, None] * (vinv @ post.covariance @ vinv.T)) * s[None, :]
    if pri is not None:
        mu = mu + (1 - s) * (vinv @ pri.mean)
        cov = cov + ((1 - s)[:, None] * (vinv @ pri.covariance @ vinv.T)) * (1 - s)[None, :]
        return GaussianState(v @ mu, _sym(v @ cov @ v.T), np.zeros((post.dim, 0)))
    flat = orthonormal_span(np.hstack([v[:, ~stiff], post.flat]))
    proj = np.eye(post.dim) - flat @ flat.T
    return GaussianState(proj @ v @ mu, _sym(proj @ v @ cov @ v.T @ proj), flat)


def _smooth(post: GaussianState, pri: GaussianState | None, v: np.ndarray, vinv: np.ndarray,
            w: np.ndarray) -> GaussianState:
    q_s, h_s = v.T @ post.precision @ v, v.T @ post.shift
    if pri is None:
        q_0, h_0 = np.zeros_like(q_s), np.zeros_like(h_s)
    else:
        q_0, h_0 = v.T @ pri.precision @ v, v.T @ pri.shift
    dq = q_s - q_0
    comm = w[:, None] * dq - dq * w[None, :]
    if np.max(np.abs(comm), initial=0.0) > 1e-8 * max(1.0, float(np.max(np.abs(dq), initial=0.0))):
        raise Unsupported("regulator", "a smooth shell needs the information gained in training "
                                       "(Q_* - Q_0) to commute with the Fisher split (the conjugate "
                                       "case); use the sharp shell (regulator=None)")
    q = q_0 + w[:, None] * dq
    h = h_0 + w * (h_s - h_0)
    return GaussianState.from_natural(vinv.T @ _sym(q) @ vinv, vinv.T @ h, name="coarse_grained")


def _sym(m: np.ndarray) -> np.ndarray:
    return 0.5 * (m + m.T)


def sample_coarse_grained(posterior: GaussianLike, prior: GaussianLike, fisher: ArrayLike, cutoff: float,
                          n: int, rng: np.random.Generator | int | None = None, *,
                          criterion: SplitCriterion | str = SplitCriterion.EIGEN,
                          metric: ArrayLike | None = None) -> np.ndarray:
    r"""Monte Carlo of the numerical experiments' procedure: keep the stiff coordinates of a draw
    :math:`\theta_* \sim \pi_*`, re-draw the sloppy ones from the prior:
    :math:`\theta_\Lambda = V[S V^{-1}\theta_* + (1-S)V^{-1}\theta_0]`.  Returns ``(n, P)``.

    Independent of the closed form of :func:`coarse_grain` (it never forms a covariance), so it
    checks it.
    """
    post, pri = as_gaussian(posterior, "posterior"), as_gaussian(prior, "prior")
    cut = nonnegative("cutoff", cutoff)
    lam, v, vinv = _split(fisher, cut, SplitCriterion.parse(criterion, "criterion"), metric)
    rng = np.random.default_rng(rng)
    s = (lam >= cut).astype(float)
    a, b = post.sample(n, rng) @ vinv.T, pri.sample(n, rng) @ vinv.T
    return (s * a + (1 - s) * b) @ v.T


# --------------------------------------------------------------------------- symbolic coarse graining
@dataclass(frozen=True)
class ModeShell:
    r"""One Fisher eigenmode of :math:`\pi_\Lambda`, symbolically.

    ``weight`` :math:`w`; natural parameters ``precision`` :math:`p` and ``shift`` :math:`h`
    (:math:`p = 0`: a flat, improper mode); ``mean`` :math:`h/p` and ``variance`` :math:`1/p`, as
    ``Piecewise`` expressions that give the mean 0 and the variance :math:`\infty` on flat modes.
    """
    weight: sp.Expr
    precision: sp.Expr
    shift: sp.Expr

    @property
    def mean(self) -> sp.Expr:
        return sp.Piecewise((0, sp.Eq(self.precision, 0)), (self.shift / self.precision, True))

    @property
    def variance(self) -> sp.Expr:
        return sp.Piecewise((sp.oo, sp.Eq(self.precision, 0)), (1 / self.precision, True))

    def flow(self, cutoff: sp.Symbol | str) -> tuple[sp.Expr, sp.Expr]:
        r""":math:`(\partial_\Lambda p, \partial_\Lambda h)`: the flow equation of the mode (``cutoff``, a
        symbol or a name, is matched by name against the mode's symbols)."""
        lam = resolve_symbols("cutoff", cutoff, self.weight.free_symbols | self.precision.free_symbols
                              | self.shift.free_symbols, what="the mode's symbols")[0]
        return sp.diff(self.precision, lam), sp.diff(self.shift, lam)


def coarse_grain_modes(fisher_eigenvalues: Sequence[ExprLike], cutoff: ExprLike,
                       trained_mean: Sequence[ExprLike], trained_variance: Sequence[ExprLike],
                       prior_mean: Sequence[ExprLike] | None = None,
                       prior_variance: Sequence[ExprLike] | None = None, *,
                       prescription: Prescription | str = Prescription.PRIOR,
                       regulator: Regulator | str | None = None) -> list[ModeShell]:
    r"""Symbolic :math:`\pi_\Lambda` mode by mode, in a Fisher eigenbasis where :math:`\pi_*` and the
    prior factorize (the conjugate case: e.g. a readout with an isotropic prior).

    Inputs are sequences of sympy expressions (or numbers), one per mode; ``cutoff`` :math:`\Lambda`
    may be a symbol.  Mode :math:`k`: :math:`w_k` = :func:`shell_weight`,
    :math:`p_k = p_{0k} + w_k(p_{*k} - p_{0k})`, :math:`h_k = h_{0k} + w_k(h_{*k} - h_{0k})` with
    :math:`p = 1/\text{variance}`, :math:`h = \text{mean}/\text{variance}`; Jeffreys: :math:`p_0 = h_0 = 0`.
    For the sharp shell this is Eq. (54) exactly: stiff modes keep :math:`\pi_*`, sloppy modes take
    the prior (or become flat).
    """
    prescription = _prescription(prescription)
    regulator = _shell(regulator)
    lam = list(fisher_eigenvalues)
    n = len(lam)
    if n == 0:
        raise ShapeMismatch("fisher_eigenvalues", "must not be empty")
    for name, seq in (("trained_mean", trained_mean), ("trained_variance", trained_variance)):
        matching(name, len(seq), n)
    pv: list[ExprLike] = []
    if prescription is Prescription.PRIOR:
        if prior_variance is None:
            raise InvalidArgument("prior_variance", "is required for prescription='prior'")
        pv = list(prior_variance)
        matching("prior_variance", len(pv), n)
        pm = list(prior_mean) if prior_mean is not None else [0] * n
        matching("prior_mean", len(pm), n)
    cut = nonnegative("cutoff", as_expression(cutoff, "cutoff")) if not isinstance(cutoff, sp.Basic) else cutoff
    out = []
    for k in range(n):
        w = shell_weight(lam[k], cut, regulator)
        ps = 1 / as_expression(trained_variance[k], "trained_variance")
        hs = as_expression(trained_mean[k], "trained_mean") * ps
        if prescription is Prescription.PRIOR:
            p0 = 1 / as_expression(pv[k], "prior_variance")
            h0 = as_expression(pm[k], "prior_mean") * p0
        else:
            p0 = h0 = sp.Integer(0)
        p, h = _tempered(p0, h0, ps, hs, w)
        out.append(ModeShell(w, p, h))
    return out


def shell_moments(fisher_eigenvalues: Sequence[ExprLike], basis: sp.Matrix, cutoff: ExprLike, trained_mean: sp.Matrix,
                  trained_covariance: sp.Matrix, prior_mean: sp.Matrix, prior_covariance: sp.Matrix
                  ) -> tuple[sp.Matrix, sp.Matrix]:
    r"""Symbolic sharp-shell moments of :math:`\pi_\Lambda` in any basis, prior prescription:

    :math:`\mu_\Lambda = P_>\mu_* + P_<m_0`, :math:`C_\Lambda = P_>C_*P_> + P_<C_0P_<`, with the
    spectral projectors :math:`P_> = \sum_k \Theta(\lambda_k-\Lambda)\,u_ku_k^{\mathsf T}`,
    :math:`P_< = 1 - P_>` (``basis``: orthonormal eigenvector columns :math:`u_k`).  Piecewise in
    the spectrum through ``Heaviside``.
    """
    u = sp.Matrix(basis)
    n = u.shape[0]
    matching("fisher_eigenvalues", len(fisher_eigenvalues), u.shape[1])
    for name, m in (("trained_mean", trained_mean), ("prior_mean", prior_mean)):
        matching(name, sp.Matrix(m).shape[0], n)
    for name, m in (("trained_covariance", trained_covariance), ("prior_covariance", prior_covariance)):
        matching(name, sp.Matrix(m).shape[0], n)
    theta = sp.diag(*[shell_weight(l, cutoff) for l in fisher_eigenvalues])
    p_stiff = u * theta * u.T
    p_sloppy = sp.eye(n) - p_stiff
    mean = p_stiff * sp.Matrix(trained_mean) + p_sloppy * sp.Matrix(prior_mean)
    cov = p_stiff * sp.Matrix(trained_covariance) * p_stiff + p_sloppy * sp.Matrix(prior_covariance) * p_sloppy
    return mean, cov


# --------------------------------------------------------------------------- infinite width: the field theory
@dataclass(frozen=True)
class PredictiveFlow(GaussianState):
    r"""The coarse-grained predictive Gaussian process on points :math:`Z`: :math:`m_\Lambda(Z)`,
    :math:`\Sigma_\Lambda(Z,Z)` (``mean``, ``covariance``, ``flat``), with its kernel modes.

    ``kappa``: eigenvalues :math:`\kappa_k = T\lambda_k` of :math:`K(X,X)` (kept modes, descending);
    ``modes``: :math:`e_k` (columns); ``fisher_eigenvalues``: :math:`T\kappa_k/\sigma^2`;
    ``weights``: :math:`w_k`; ``mode_mean``/``mode_variance``: the law of :math:`f_k = e_k^{\mathsf T}f(X)`
    (variance :math:`\infty` for a flat mode); ``psi``: :math:`\psi_k(Z) = K(Z,X)e_k/\kappa_k`.
    """
    kappa: np.ndarray = field(default_factory=lambda: np.zeros(0))
    modes: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    noise_variance: float = 1.0
    weights: np.ndarray = field(default_factory=lambda: np.zeros(0))
    mode_mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    mode_variance: np.ndarray = field(default_factory=lambda: np.zeros(0))
    psi: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    cutoff: float = 0.0
    observations: float = 1.0

    @property
    def fisher_eigenvalues(self) -> np.ndarray:
        r""":math:`T\kappa_k/\sigma^2`, the readout Fisher eigenvalues (prior-whitened parameters)."""
        return self.observations * self.kappa / self.noise_variance

    def action(self, phi: ArrayLike) -> np.ndarray:
        r"""The induced action :math:`S_\Lambda[\phi] = \tfrac12(\phi-m)^{\mathsf T}\Sigma^{+}(\phi-m)
        + \tfrac12\log\mathrm{pdet}(2\pi\Sigma)` for ``phi`` of shape ``(|Z|,)`` or ``(n, |Z|)``
        (on the proper subspace; a flat direction contributes nothing)."""
        ph = finite_array("phi", phi, ndim=(1, 2))
        matching("phi", ph.shape[-1], self.dim, "last dimension")
        lam, u = np.linalg.eigh(self.covariance)
        keep = lam > 1e-12 * max(float(lam.max(initial=0.0)), 1e-300)
        d = (ph - self.mean) @ u[:, keep]
        return 0.5 * np.sum(d ** 2 / lam[keep], axis=-1) + 0.5 * np.sum(np.log(2 * np.pi * lam[keep]))


def predictive_flow(k_xx: ArrayLike, y: ArrayLike, noise_variance: float, cutoff: float, *,
                    k_zx: ArrayLike | None = None, k_zz: ArrayLike | None = None, prescription: Prescription | str = Prescription.PRIOR,
                    regulator: Regulator | str | None = None,
                    observations: float = 1.0, rtol: float = 1e-10) -> PredictiveFlow:
    r"""BRG flow of the GP posterior from Gram matrices (any kernel: NNGP of any depth/activation).

    k_xx: :math:`K(X,X)` (PSD, ``(T, T)``); y: targets ``(T,)``; noise_variance: :math:`\sigma^2 > 0`;
    cutoff: :math:`\Lambda \ge 0` in units of the whitened readout Fisher :math:`\kappa_k/\sigma^2`;
    k_zx, k_zz: :math:`K(Z,X)`, :math:`K(Z,Z)` of the prediction points (default :math:`Z = X`).
    Mode formulas (compiled from their sympy form): :math:`m_k = w\kappa y_k/(\sigma^2+w\kappa)`,
    :math:`v_k = \kappa\sigma^2/(\sigma^2+w\kappa)` (prior); :math:`m_k = \kappa y_k/(\kappa+\sigma^2)`,
    :math:`v_k = \kappa\sigma^2/(w(\kappa+\sigma^2))` (Jeffreys, flat where :math:`w = 0`, and, for
    :math:`\Lambda > 0`, flat along the Fisher null directions :math:`K(Z,Z) - K(Z,X)K(X,X)^{+}K(X,Z)`,
    which have :math:`\lambda = 0 < \Lambda`).
    observations: the training flow (IR → UV): the likelihood precision is multiplied by
    :math:`T` (``observations`` :math:`\ge 0`, :math:`T` replicas of the data), so the Fisher eigenvalues
    are :math:`T\kappa_k/\sigma^2` and every formula holds with :math:`\sigma^2 \to \sigma^2/T`; at
    :math:`\Lambda = 0` this is the GP posterior with noise :math:`\sigma^2/T`, and on the data
    :math:`v_k \to \sigma^2/T`
    (the pushed-forward :math:`T^{-1}I^{-1}`) as :math:`T \to \infty`.
    Modes with :math:`\kappa_k \le` ``rtol`` :math:`\max\kappa` carry no information and are dropped.
    """
    kxx = psd_matrix("k_xx", k_xx, rtol=1e-8)
    t = kxx.shape[0]
    yy = finite_array("y", y, ndim=1)
    matching("y", yy.shape[0], t)
    s2 = positive("noise_variance", noise_variance)
    cut = nonnegative("cutoff", cutoff)
    prescription = _prescription(prescription)
    regulator = _shell(regulator)
    kzx, kzz = _prediction_grams(kxx, k_zx, k_zz)
    kap, e = _kernel_modes(kxx, rtol)
    yk = e.T @ yy
    t_obs = positive("observations", observations)
    s2 = s2 / t_obs  # T replicas of the data: the likelihood precision T/sigma^2
    w = weights(kap / s2, cut, regulator)
    psi = (kzx @ e) / kap
    if prescription is Prescription.PRIOR:
        mk, vk, mean, cov, flat = _prior_predictive(kap, yk, s2, w, psi, kzz)
    else:
        mk, vk, mean, cov, flat = _jeffreys_predictive(kap, yk, s2, w, psi, kzz, cut, regulator)
    return PredictiveFlow(mean, _sym(cov), flat, kappa=kap, modes=e, noise_variance=s2 * t_obs, weights=w,
                          mode_mean=mk, mode_variance=vk, psi=psi, cutoff=cut, observations=t_obs)


def _prediction_grams(kxx: np.ndarray, k_zx: ArrayLike | None,
                      k_zz: ArrayLike | None) -> tuple[np.ndarray, np.ndarray]:
    """``(K(Z,X), K(Z,Z))`` of the prediction points, validated; :math:`Z = X` when neither is given."""
    if k_zx is None:
        if k_zz is not None:
            raise ShapeMismatch("k_zx", "is required when k_zz is given")
        return kxx, kxx
    kzx = finite_array("k_zx", k_zx, ndim=2)
    matching("k_zx", kzx.shape[1], kxx.shape[0], "number of columns")
    if k_zz is None:
        raise ShapeMismatch("k_zz", "is required when k_zx is given")
    kzz = psd_matrix("k_zz", k_zz, rtol=1e-8)
    matching("k_zz", kzz.shape[0], kzx.shape[0], "size")
    return kzx, kzz


def _kernel_modes(kxx: np.ndarray, rtol: float) -> tuple[np.ndarray, np.ndarray]:
    r"""Eigenvalues :math:`\kappa_k` (descending) and eigenvectors :math:`e_k` of :math:`K(X,X)`, without
    the modes at or below ``rtol`` :math:`\max\kappa`."""
    kap, e = np.linalg.eigh(_sym(kxx))
    keep = kap > rtol * max(float(kap[-1]), 1e-300)
    return kap[keep][::-1], e[:, keep][:, ::-1]


#: The prescription-dependent part of :class:`PredictiveFlow`: mode means, mode variances, and the
#: predictive mean, covariance and flat directions on Z.
_Predictive: TypeAlias = "tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]"


def _prior_predictive(kap: np.ndarray, yk: np.ndarray, s2: float, w: np.ndarray, psi: np.ndarray,
                      kzz: np.ndarray) -> _Predictive:
    """The predictive GP of the prior prescription (proper: no flat directions)."""
    fn = _nngp_mode_numpy(Prescription.PRIOR)
    mk, vk, red = (np.broadcast_to(a, kap.shape) for a in fn(kap, yk, np.sqrt(s2), w))
    mean = psi @ mk
    cov = kzz - (psi * red) @ psi.T
    flat = np.zeros((kzz.shape[0], 0))
    return mk, vk, mean, cov, flat


def _jeffreys_predictive(kap: np.ndarray, yk: np.ndarray, s2: float, w: np.ndarray, psi: np.ndarray,
                         kzz: np.ndarray, cut: float, regulator: Regulator) -> _Predictive:
    r"""The predictive GP of the Jeffreys prescription: flat along the sloppy modes and, for
    :math:`\Lambda > 0`, along the Fisher null directions on Z."""
    fn = _nngp_mode_numpy(Prescription.JEFFREYS)
    live = w > 0
    mk, vk = np.zeros_like(kap), np.full_like(kap, np.inf)
    m_l, v_l, _ = fn(kap[live], yk[live], np.sqrt(s2), w[live])
    mk[live], vk[live] = m_l, v_l
    null = _sym(kzz - (psi * kap) @ psi.T)  # prior law of the Fisher null directions on Z
    cov = (psi[:, live] * vk[live]) @ psi[:, live].T
    if weights(np.zeros(1), cut, regulator)[0] > 0:  # Lambda = 0: null directions kept (= prior)
        cov, null_dirs = cov + null, np.zeros((kzz.shape[0], 0))
    else:  # Lambda > 0: the null directions are sloppy, hence flat
        lam_n, u_n = np.linalg.eigh(null)
        null_dirs = u_n[:, lam_n > 1e-8 * max(float(np.max(np.abs(kzz))), 1e-300)]
    flat = orthonormal_span(np.hstack([psi[:, ~live], null_dirs]))
    proj = np.eye(kzz.shape[0]) - flat @ flat.T
    mean = proj @ (psi[:, live] @ mk[live])
    cov = proj @ cov @ proj
    return mk, vk, mean, cov, flat


def _gram(kernel: KernelSource, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    fn = kernel.nngp if hasattr(kernel, "nngp") else kernel
    if not callable(fn):
        raise InvalidArgument("kernel", "expected an architecture with .nngp or a callable k(X1, X2)")
    return np.asarray(fn(a, b), dtype=float)


def nngp_flow(kernel: KernelSource, x: ArrayLike, y: ArrayLike, noise_variance: float, cutoff: float,
              z: ArrayLike | None = None,
              **options: Any) -> PredictiveFlow:  # Any: keyword options of predictive_flow, of several types
    r"""The information-shell flow of an infinite-width network's predictive GP.

    kernel: an architecture from :func:`symbrg.mlp` (its ``.nngp``) or any callable
    :math:`(X_1, X_2) \mapsto K(X_1, X_2)`; x: training inputs ``(T, d)``; z: prediction inputs
    (default x).  Other options as in :func:`predictive_flow`.
    """
    xx = finite_array("x", x, ndim=2)
    kxx = _gram(kernel, xx, xx)
    if z is None:
        return predictive_flow(kxx, y, noise_variance, cutoff, **options)
    zz = finite_array("z", z, ndim=2)
    matching("z", zz.shape[1], xx.shape[1], "input dimension")
    return predictive_flow(kxx, y, noise_variance, cutoff, k_zx=_gram(kernel, zz, xx),
                           k_zz=_gram(kernel, zz, zz), **options)


@dataclass(frozen=True)
class WilsonianRidge:
    r"""Wilsonian mode elimination of the GP (arXiv:2405.06008) next to the information shell.

    ``mean``: posterior mean of :math:`f_<` on :math:`Z` with the effective noise (``split``:
    ``"exact"`` :math:`\sigma^21 + K_>(X,X)`, ``"trace"`` :math:`(\sigma^2 + c)1`);
    ``ridge``: :math:`\sigma^2 + c`; ``c``: :math:`\sum_{\text{sloppy}}\lambda_k = \mathrm{tr}K_>(X,X)/T`;
    ``shell_mean``: the information-shell :math:`m_\Lambda(Z)` (prior prescription, sharp).
    """
    mean: np.ndarray
    ridge: float
    c: float
    shell_mean: np.ndarray
    split: str


def wilsonian_ridge(k_xx: ArrayLike, y: ArrayLike, noise_variance: float, cutoff: float, *,
                    k_zx: ArrayLike | None = None, k_zz: ArrayLike | None = None, split: str = "trace") -> WilsonianRidge:
    r"""Integrate out the modes :math:`\kappa_k/\sigma^2 < \Lambda` Wilson-style and compare.

    :math:`K = K_< + K_>` with :math:`K_<(x,x') = \sum_{\text{stiff}}\kappa_k\psi_k(x)\psi_k(x')`.
    Exact Wilsonian elimination: :math:`f_<` sees the noise :math:`\sigma^2 1 + K_>(X,X)`, and its
    posterior mean equals the information-shell :math:`m_\Lambda` exactly.  The scalar ridge of
    arXiv:2405.06008 replaces :math:`K_>(X,X)` by its trace average :math:`c\,1`,
    :math:`c = \sum_{\text{sloppy}}\lambda_k` (:math:`\lambda_k = \kappa_k/T`), so each stiff mode
    is shrunk with :math:`\sigma^2 + c` instead of :math:`\sigma^2`.
    """
    choice("split", split, ("exact", "trace"))
    flow = predictive_flow(k_xx, y, noise_variance, cutoff, k_zx=k_zx, k_zz=k_zz)
    kxx = np.asarray(k_xx, dtype=float)
    t = kxx.shape[0]
    stiff = flow.weights >= 1
    e, kap = flow.modes, flow.kappa
    k_low_x = (e[:, stiff] * kap[stiff]) @ e[:, stiff].T          # K_<(X,X)
    k_high_x = kxx - k_low_x                                       # K_>(X,X)
    k_low_zx = (flow.psi[:, stiff] * kap[stiff]) @ e[:, stiff].T   # K_<(Z,X)
    c = float(np.trace(k_high_x)) / t
    s2 = flow.noise_variance
    noise = s2 * np.eye(t) + (k_high_x if split == "exact" else c * np.eye(t))
    mean = k_low_zx @ np.linalg.solve(k_low_x + noise, np.asarray(y, dtype=float))
    return WilsonianRidge(mean, s2 + c, c, flow.mean, split)


class CommutingDiagram(TypedDict):
    """What :func:`commuting_diagram` returns: both paths, their largest discrepancies, and the
    numbers of flat directions of each path."""
    parameter_path: GaussianState
    field_path: PredictiveFlow
    mean_gap: float
    covariance_gap: float
    flat_dims: tuple[int, int]


def commuting_diagram(features_x: ArrayLike, features_z: ArrayLike, y: ArrayLike, noise_variance: float,
                      cutoff: float, *,
                      prior_variance: float = 1.0, prescription: Prescription | str = Prescription.PRIOR,
                      regulator: Regulator | str | None = None,
                      criterion: SplitCriterion | str = SplitCriterion.EIGEN) -> CommutingDiagram:
    r"""Fig. 2 of arXiv:2405.17538 for a finite-width readout :math:`f(x) = h(x)\cdot w/\sqrt N`,
    :math:`w \sim \mathcal N(0, s^2 1)`: coarse-grain in parameter space then map to the field
    theory, versus map first (:math:`K = s^2 h h^{\mathsf T}/N`) then apply the induced flow.

    The parameter-space split uses the Fisher of prior-whitened parameters,
    :math:`s^2\,\Phi^{\mathsf T}\Phi/(N\sigma^2)`, whose nonzero eigenvalues are :math:`\kappa_k/\sigma^2`.
    Returns both paths (``"parameter_path"``, ``"field_path"``) and the largest discrepancies
    ``"mean_gap"``, ``"covariance_gap"`` (0 up to round-off for ``criterion="eigen"``; the diagonal
    criterion breaks the diagram).
    """
    hx = finite_array("features_x", features_x, ndim=2)
    hz = finite_array("features_z", features_z, ndim=2)
    matching("features_z", hz.shape[1], hx.shape[1], "number of features")
    yy = finite_array("y", y, ndim=1)
    matching("y", yy.shape[0], hx.shape[0])
    s2 = positive("noise_variance", noise_variance)
    v0 = positive("prior_variance", prior_variance)
    n = hx.shape[1]
    jx, jz = hx / np.sqrt(n), hz / np.sqrt(n)
    q = np.eye(n) / v0 + jx.T @ jx / s2
    cov = np.linalg.inv(q)
    post = GaussianState(cov @ (jx.T @ yy) / s2, _sym(cov))
    prior = GaussianState(np.zeros(n), v0 * np.eye(n))
    fisher = v0 * jx.T @ jx / s2
    prescription = _prescription(prescription)
    cg = coarse_grain(post, fisher, cutoff, prior=prior if prescription is Prescription.PRIOR else None,
                      prescription=prescription, criterion=criterion, regulator=regulator)
    path_a = cg.state.pushforward(jz)
    path_b = predictive_flow(v0 * jx @ jx.T, yy, s2, cutoff, k_zx=v0 * jz @ jx.T, k_zz=v0 * jz @ jz.T,
                             prescription=prescription, regulator=regulator)
    scale = max(1.0, float(np.max(np.abs(path_b.covariance))))
    return {"parameter_path": path_a, "field_path": path_b,
            "mean_gap": float(np.max(np.abs(path_a.mean - path_b.mean))),
            "covariance_gap": float(np.max(np.abs(path_a.covariance - path_b.covariance))) / scale,
            "flat_dims": (path_a.flat.shape[1], path_b.flat.shape[1])}


# --------------------------------------------------------------------------- induced action
def induced_action_modes(n_modes: int = 1, regulator: RegulatorSpec = "power:4"
                         ) -> tuple[sp.Expr, list[sp.Symbol], dict[str, list[sp.Symbol]]]:
    r"""The induced action of the coarse-grained predictive GP on the training points, mode by mode:

    :math:`S_\Lambda[\phi] = \sum_k \frac{(\phi_k - m_k(\Lambda))^2}{2 v_k(\Lambda)} + \tfrac12\log 2\pi v_k(\Lambda)`,
    :math:`\phi_k = e_k^{\mathsf T}\phi(X)`, with :math:`m_k, v_k` the prior-prescription mode formulas
    at :math:`w_k = K(\Lambda\sigma^2/\kappa_k)`.  Returns ``(S, phi_symbols, {"kappa": [...], "y": [...]})``.
    """
    mean, var = _nngp_mode(Prescription.PRIOR)
    phis = sp.symbols(f"phi_1:{n_modes + 1}", real=True)
    kaps = sp.symbols(f"kappa_1:{n_modes + 1}", positive=True)
    ys = sp.symbols(f"y_1:{n_modes + 1}", real=True)
    s = sp.Integer(0)
    for ph, ka, yk in zip(phis, kaps, ys):
        sub = {KAPPA: ka, YK: yk, W: shell_weight(ka / SIGMA2, CUT, regulator)}
        m, v = mean.subs(sub), var.subs(sub)
        s += (ph - m) ** 2 / (2 * v) + sp.log(2 * sp.pi * v) / 2
    return s, list(phis), {"kappa": list(kaps), "y": list(ys)}


# --------------------------------------------------------------------------- derivations


def information_shell_derivation(regulator: RegulatorSpec = "power:4") -> Derivation:
    r"""Eqs. (53)-(54) for a Gaussian mode, sharp and smooth, with the flow equation in :math:`\Lambda`."""
    d = Derivation("Information-shell coarse graining of a Gaussian distribution",
                   "One Fisher eigenmode with eigenvalue $\\lambda$, trained law "
                   "$\\mathcal N(\\mu_*, 1/p_*)$ and prior $\\mathcal N(m_0, 1/p_0)$; natural parameters "
                   "$p$ (precision) and $h = p\\mu$. A mode is stiff when $\\lambda \\ge \\Lambda$.",
                   name="shell")
    p, h = _shell_natural_steps(d)
    _shell_limit_steps(d, p, h)
    _shell_semigroup_step(d)
    _shell_jeffreys_step(d)
    reg = _shell(regulator)
    if not reg.is_sharp:
        _shell_smooth_steps(d, p, reg)
    return d


def _shell_symbols() -> tuple[sp.Symbol, sp.Symbol, sp.Symbol, sp.Symbol]:
    """:math:`\\mu_*, m_0` (real) and :math:`p_*, p_0` (positive) of the one-mode derivation."""
    mu_s, m0 = sp.symbols("mu_* m_0", real=True)
    ps, p0 = sp.symbols("p_* p_0", positive=True)
    return mu_s, m0, ps, p0


def _shell_natural_steps(d: Derivation) -> tuple[sp.Expr, sp.Expr]:
    """eq:shell-split, eq:shell-natural: the sharp shell and Eq. (54) in natural parameters; returns
    :math:`(p_\\Lambda, h_\\Lambda)` at the weight :data:`W`."""
    mu_s, m0, ps, p0 = _shell_symbols()
    theta = sp.Heaviside(LAM - CUT, 1)
    d.step(sp.Eq(sp.Symbol("w"), theta), "Eq. (53): the sharp information shell, $\\Theta(0) = 1$.",
           "eq:shell-split", cites=("HKMS24",))
    p, h = _tempered(p0, p0 * m0, ps, ps * mu_s, W)
    d.step((sp.Eq(sp.Symbol(r"p_\Lambda"), p), sp.Eq(sp.Symbol(r"h_\Lambda"), h)),
           "Eq. (54) in natural parameters: the stiff marginal of $\\pi_*$ times the prior on sloppy "
           "modes; for $w\\in\\{0,1\\}$ this is exact, for $0<w<1$ it defines the smooth shell "
           "(the likelihood tempered by $w$).", "eq:shell-natural", uses=("eq:shell-split",),
           cites=("HKMS24",))
    return p, h


def _shell_limit_steps(d: Derivation, p: sp.Expr, h: sp.Expr) -> None:
    """eq:shell-uv, eq:shell-ir: :math:`w = 1` is the trained theory, :math:`w = 0` the prior."""
    mu_s, m0, ps, p0 = _shell_symbols()
    for wv, lbl, what, (mt, vt) in ((1, "eq:shell-uv", "$\\Lambda \\to 0$ ($w = 1$): the trained theory",
                                     (mu_s, 1 / ps)),
                                    (0, "eq:shell-ir", "$\\Lambda > \\lambda_{\\max}$ ($w = 0$): the prior theory",
                                     (m0, 1 / p0))):
        mean, var = (h / p).subs(W, wv), (1 / p).subs(W, wv)
        d.step((sp.Eq(sp.Symbol(r"\mu_\Lambda"), sp.simplify(mean)), sp.Eq(sp.Symbol(r"v_\Lambda"), sp.simplify(var))),
               what + ".", lbl, verification=check_identity(mean - mt + var - vt, 0,
                                                            domain={mu_s: (-2, 2), m0: (-2, 2)}),
               uses=("eq:shell-natural",))


def _shell_semigroup_step(d: Derivation) -> None:
    """eq:shell-semigroup: two shells compose to one with the product weight."""
    mu_s, m0, ps, p0 = _shell_symbols()
    w1, w2 = sp.symbols("w_1 w_2", nonnegative=True)
    p1, h1 = _tempered(p0, p0 * m0, ps, ps * mu_s, w1)
    p12, h12 = _tempered(p0, p0 * m0, p1, h1, w2)
    p2, h2 = _tempered(p0, p0 * m0, ps, ps * mu_s, w1 * w2)
    d.step(sp.Eq(sp.Symbol(r"p_{\Lambda_1\Lambda_2}"), sp.expand(p12)),
           "Composition: coarse graining $\\pi_{\\Lambda_1}$ with weight $w_2$ is one step with weight "
           "$w_1w_2$; for the sharp shell $\\Theta(\\lambda-\\Lambda_1)\\Theta(\\lambda-\\Lambda_2) = "
           "\\Theta(\\lambda - \\max(\\Lambda_1,\\Lambda_2))$, so coarse graining composes towards the IR: "
           "$\\pi_{\\Lambda_2}\\circ\\pi_{\\Lambda_1} = \\pi_{\\Lambda_2}$ for $\\Lambda_2 \\ge \\Lambda_1$ "
           "(a semigroup in $\\Lambda$, for any prior: the stiff modes at $\\Lambda_2$ are stiff at "
           "$\\Lambda_1$, where they kept $\\pi_*$, and the sloppy ones take the prior's marginal). "
           "It is idempotent and has no inverse: towards the UV ($\\Lambda_2 < \\Lambda_1$) it returns "
           "$\\pi_{\\Lambda_1}$ when the prior factorizes over the Fisher eigenmodes (as here), and with a "
           "prior correlated across the split at $\\Lambda_2$ neither $\\pi_{\\Lambda_1}$ nor "
           "$\\pi_{\\Lambda_2}$ (the prior's correlations between the modes in $[\\Lambda_2,\\Lambda_1)$ "
           "and those below $\\Lambda_2$ are dropped; tested with the numeric engine). Smooth shells "
           "compose to the weight $w_1w_2$, in general not a shell of the same regulator.",
           "eq:shell-semigroup", verification=check_identity((p12 - p2) ** 2 + (h12 - h2) ** 2, 0,
                                                           domain={mu_s: (-2, 2), m0: (-2, 2), w1: (0, 1), w2: (0, 1)}),
           uses=("eq:shell-natural",))


def _shell_jeffreys_step(d: Derivation) -> None:
    """eq:shell-jeffreys: the Jeffreys prescription (flat, improper sloppy modes)."""
    mu_s, _, ps, _ = _shell_symbols()
    pj, hj = _tempered(0, 0, ps, ps * mu_s, W)
    d.step((sp.Eq(sp.Symbol(r"p^J_\Lambda"), pj), sp.Eq(sp.Symbol(r"\mu^J_\Lambda"), sp.simplify(hj / pj))),
           "Jeffreys prescription: for a location parameter with Gaussian noise $I$ is constant, so "
           "$\\sqrt{\\det I_<}$ is flat and improper ($p_0 = h_0 = 0$); a sloppy mode ($w = 0$) has "
           "$p = 0$: a flat factor, reported as such, never a proper law.", "eq:shell-jeffreys",
           verification=check_identity(hj / pj, mu_s, domain={mu_s: (-2, 2)}), uses=("eq:shell-natural",),
           cites=("HKMS24",))


def _shell_smooth_steps(d: Derivation, p: sp.Expr, reg: Regulator) -> None:
    """eq:shell-smooth, eq:shell-flow: the smooth shell of ``reg`` and its flow equation in :math:`\\Lambda`."""
    _, _, ps, p0 = _shell_symbols()
    wl = shell_weight(LAM, CUT, reg)
    d.step(sp.Eq(sp.Symbol("w"), wl), f"Smooth shell with the {reg.name} regulator: "
           "$w = K(\\Lambda/\\lambda)$, the same cutoff function $K$ as the exact RG.",
           "eq:shell-smooth", uses=("eq:shell-split",))
    pw = p.subs(W, wl)
    flow = drop_deltas(sp.diff(pw, CUT))
    zz = sp.Symbol("z", positive=True)
    expected = (ps - p0) * sp.diff(reg.K(zz), zz).subs(zz, CUT / LAM) / LAM
    d.step(sp.Eq(sp.Derivative(sp.Function(r"p_\Lambda")(CUT), CUT), sp.simplify(flow)),
           "Flow equation: $\\partial_\\Lambda p_\\Lambda = (p_*-p_0)\\,K'(\\Lambda/\\lambda)/\\lambda$ "
           "(and likewise for $h$); information is removed monotonically, "
           "$\\partial_\\Lambda p_\\Lambda \\le 0$ when $K' \\le 0$.", "eq:shell-flow",
           verification=check_identity(*(drop_deltas(e) for e in (flow, expected)),
                                       domain={LAM: (0.2, 3), CUT: (0.2, 3)}),
           uses=("eq:shell-smooth",))


#: Hidden layers of the BRG derivation, whose per-layer kernel recursion is derived and printed:
#: measured (``symbrg derive brg``, relu) 28 s at depth 10, 42 s at 100, 162 s at 1000 on a shared machine.
DEPTH = Limit("brg_depth", 300, "hidden layers of the printed BRG derivation")


def nngp_brg_derivation(activation: ActivationSpec = "relu", depth: int = 2, sigma_w: Number = 1.0,
                        sigma_b: Number = 0.0, regulator: RegulatorSpec = "power:4",
                        kernel: bool = True) -> Derivation:
    r"""The information-shell flow of the NNGP posterior of a depth-``depth`` network.

    Steps: the kernel recursion (from :func:`symbrg.mlp`, when ``kernel``), the Fisher spectrum of
    the readout (= kernel spectrum), the mode-wise trained posterior, the coarse-grained
    :math:`m_\Lambda(x), \Sigma_\Lambda(x,x')`, its flow, the induced action and its
    Polchinski-type flow, the Wilsonian ridge relation, and the commuting diagram.
    """
    from symbrg.core.checks import integer
    L = integer("depth", depth, minimum=1)
    if kernel:
        DEPTH.check("depth", L, cost=f"about {0.14 * L:.3g} s")
    d = Derivation(f"Bayesian RG flow of the NNGP posterior: {activation}, depth {L}",
                   "An infinite-width network trained with a Gaussian likelihood (noise $\\sigma^2$) on "
                   "$T$ points $X$ is the GP posterior of its NNGP kernel $K$. Information-shell coarse "
                   "graining of its readout, in parameters whitened by the readout prior, acts mode by "
                   "mode on the eigenmodes $K(X,X) e_k = \\kappa_k e_k$; $\\kappa_k = T\\lambda_k$ with "
                   "$\\lambda_k$ the eigenvalues of the kernel operator $K(X,X)/T$.", name="brg")
    _brg_kernel_steps(d, activation, L, sigma_w, sigma_b, kernel)
    _brg_fisher_step(d)
    mean_p, var_p = _nngp_mode(Prescription.PRIOR)
    wk = shell_weight(KAPPA / SIGMA2, CUT, regulator)
    _brg_mode_steps(d, mean_p, var_p, wk)
    if not _shell(regulator).is_sharp:
        _brg_flow_step(d, mean_p, var_p, wk)
        _brg_action_steps(d, mean_p, var_p, wk, regulator)
    _brg_wilson_step(d)
    _brg_ridge_steps(d, mean_p, var_p)
    _brg_commute_step(d, mean_p, var_p)
    return d


def _brg_kernel_steps(d: Derivation, activation: ActivationSpec, L: int, sigma_w: Number, sigma_b: Number,
                      kernel: bool) -> None:
    """eq:brg-kernel: the NNGP kernel of the network (with the layer recursion of :func:`symbrg.mlp`)."""
    x, xp = sp.symbols("x x'")
    if kernel:
        from symbrg.kernels.architecture import mlp
        d.extend(mlp(activation, L, sigma_w, sigma_b).derivation("nngp"))
    d.step(sp.Eq(sp.Function("K")(x, xp), sp.Symbol(f"K^{{({L})}}_{{12}}")),
           f"The NNGP kernel of the depth-{L} {activation} network: the output of the layer recursion "
           "(symbrg.mlp(...).nngp), for any pair of inputs.", "eq:brg-kernel",
           uses=(d.steps[-1].label,) if kernel else ())


def _brg_fisher_step(d: Derivation) -> None:
    """eq:brg-fisher: the readout Fisher spectrum is the kernel spectrum (T = 2 points, N = 3 features)."""
    t = sp.Symbol("t")
    phi = sp.Matrix(2, 3, sp.symbols("h_11 h_12 h_13 h_21 h_22 h_23", real=True))
    lhs = (t * sp.eye(3) - phi.T * phi).det()
    rhs = t * (t * sp.eye(2) - phi * phi.T).det()
    d.step(sp.Eq(sp.Symbol(r"\lambda^*_k"), KAPPA / SIGMA2),
           "Readout $f = \\Phi u/\\sqrt N$, $u \\sim \\mathcal N(0, 1)$ (whitened; the readout variance "
           "sits in $K = \\Phi\\Phi^{\\mathsf T}/N$): $I = \\Phi^{\\mathsf T}\\Phi/(N\\sigma^2)$ and "
           "$K(X,X)$ share their nonzero spectrum, $\\det(t - \\Phi^{\\mathsf T}\\Phi) = t^{N-T}\\det(t - "
           "\\Phi\\Phi^{\\mathsf T})$ (checked for $T=2$, $N=3$); eigen-directions $v_k \\propto "
           "\\Phi^{\\mathsf T}e_k$. So Fisher eigenvalues are $T\\lambda_k/\\sigma^2$.", "eq:brg-fisher",
           verification=check_identity(lhs, rhs, domain={t: (-2, 2)}), uses=("eq:brg-kernel",),
           cites=("HKMS24",))


def _brg_mode_steps(d: Derivation, mean_p: sp.Expr, var_p: sp.Expr, wk: sp.Expr) -> None:
    """eq:brg-trained, eq:brg-mode, eq:brg-predictive: the trained mode, the coarse-grained mode at
    weight ``wk`` and the predictive GP at any inputs."""
    m_star, v_star = mean_p.subs(W, 1), var_p.subs(W, 1)
    d.step((sp.Eq(sp.Symbol("m^*_k"), m_star), sp.Eq(sp.Symbol("v^*_k"), v_star)),
           "Trained mode $f_k = e_k^{\\mathsf T}f(X)$: prior $\\mathcal N(0,\\kappa_k)$, likelihood "
           "$\\mathcal N(y_k; f_k, \\sigma^2)$; this is $K(K+\\sigma^2)^{-1}y$ and "
           "$K - K(K+\\sigma^2)^{-1}K$ in the eigenbasis.", "eq:brg-trained",
           verification=check_identity(m_star + v_star, KAPPA * YK / (KAPPA + SIGMA2)
                                       + KAPPA - KAPPA ** 2 / (KAPPA + SIGMA2), domain={YK: (-2, 2)}),
           uses=("eq:brg-fisher",))
    d.step((sp.Eq(sp.Symbol("w_k"), wk), sp.Eq(sp.Function("m_k")(CUT), mean_p),
            sp.Eq(sp.Function("v_k")(CUT), var_p)),
           "Coarse-grained mode (prior prescription; $w_k = \\Theta(\\kappa_k/\\sigma^2 - \\Lambda)$ for "
           "the sharp shell): the ridge of mode $k$ becomes $\\sigma^2/w_k$, infinite for a sloppy mode.",
           "eq:brg-mode", verification=check_identity(mean_p, KAPPA * YK / (KAPPA + SIGMA2 / W),
                                                      domain={YK: (-2, 2), W: (0.05, 1)}),
           uses=("eq:brg-trained",), cites=("HKMS24",))
    x, xp = sp.symbols("x x'")
    psi = sp.Function("psi_k")
    kf = sp.Function("K")
    red = sp.factor(sp.simplify(KAPPA - var_p))
    k_ = sp.Symbol("k")
    d.step((sp.Eq(sp.Function(r"m_\Lambda")(x), sp.Sum(psi(x) * mean_p, (k_, 1, symbol("T")))),
            sp.Eq(sp.Function(r"\Sigma_\Lambda")(x, xp),
                  kf(x, xp) - sp.Sum(psi(x) * psi(xp) * red, (k_, 1, symbol("T"))))),
           "The predictive GP at any inputs, $\\psi_k(x) = K(x,X)e_k/\\kappa_k$ (Nystr\\\"om); the kernel "
           "of any depth and activation enters only through $K(x,X)$ and $(\\kappa_k, e_k)$. "
           "$\\Lambda\\to0$ gives the GP posterior, $\\Lambda > \\kappa_{\\max}/\\sigma^2$ the prior GP.",
           "eq:brg-predictive", verification=check_identity(red, W * KAPPA ** 2 / (SIGMA2 + W * KAPPA),
                                                            domain={W: (0, 1)}),
           uses=("eq:brg-mode",))


def _brg_flow_step(d: Derivation, mean_p: sp.Expr, var_p: sp.Expr, wk: sp.Expr) -> None:
    """eq:brg-flow: the smooth flow equations of the mode in :math:`\\Lambda`."""
    dm, dv = (drop_deltas(sp.diff(e.subs(W, wk), CUT)) for e in (mean_p, var_p))
    chain = drop_deltas(sp.diff(wk, CUT))
    d.step((sp.Eq(sp.Derivative(sp.Function("m_k")(CUT), CUT), sp.simplify(dm)),
            sp.Eq(sp.Derivative(sp.Function("v_k")(CUT), CUT), sp.simplify(dv))),
           "The smooth flow equations in $\\Lambda$ (chain rule through $w_k(\\Lambda)$).",
           "eq:brg-flow", verification=check_identity(
               dv, sp.diff(var_p, W).subs(W, wk) * chain, domain={KAPPA: (0.2, 3), CUT: (0.2, 3)}),
           uses=("eq:brg-mode",))


def _brg_action_steps(d: Derivation, mean_p: sp.Expr, var_p: sp.Expr, wk: sp.Expr,
                      regulator: RegulatorSpec) -> None:
    """eq:brg-action, eq:brg-polchinski: the induced action of one mode and its Polchinski-type flow."""
    m1, v1 = mean_p.subs(W, wk), var_p.subs(W, wk)
    S, phis, syms = induced_action_modes(1, regulator)
    ph = sp.Symbol("phi_k", real=True)
    sub = {syms["kappa"][0]: KAPPA, syms["y"][0]: YK, phis[0]: ph}
    S1 = S.subs(sub)
    dS = sp.diff(S1, ph)
    pol = drop_deltas(-sp.diff(m1, CUT) * dS - sp.diff(v1, CUT) / 2 * (dS ** 2 - sp.diff(S1, ph, 2)))
    mf, vf = sp.Function("m_k")(CUT), sp.Function("v_k")(CUT)
    action = (ph - mf) ** 2 / (2 * vf) + sp.log(2 * sp.pi * vf) / 2
    dom = {KAPPA: (0.2, 3), CUT: (0.2, 3), YK: (-2, 2), ph: (-2, 2)}
    d.step(sp.Eq(sp.Function(r"S_\Lambda")(ph), action),
           "The induced action on the training points, mode $k$ ($\\phi_k = e_k^{\\mathsf T}\\phi(X)$, "
           "$m_k, v_k$ as above with $w_k(\\Lambda)$); the full action is the sum over modes, "
           "$S_\\Lambda[\\phi] = \\tfrac12(\\phi - m_\\Lambda)^{\\mathsf T}\\Sigma_\\Lambda^{-1}"
           "(\\phi - m_\\Lambda) + \\tfrac12\\log\\det 2\\pi\\Sigma_\\Lambda$.",
           "eq:brg-action", verification=check_identity(S1, action.subs({mf: m1, vf: v1}), domain=dom),
           uses=("eq:brg-mode",))
    Sf = sp.Function(r"S_\Lambda")(ph)
    d.step(sp.Eq(sp.Derivative(Sf, CUT), -sp.Derivative(mf, CUT) * sp.Derivative(Sf, ph)
                 - sp.Derivative(vf, CUT) / 2 * (sp.Derivative(Sf, ph) ** 2 - sp.Derivative(Sf, (ph, 2)))),
           "Its flow is a Polchinski equation with drift: $e^{-S_\\Lambda}$ diffuses with covariance "
           "rate $\\partial_\\Lambda v_k \\ge 0$ (UV $\\to$ IR) and drifts with "
           "$\\partial_\\Lambda m_k$.", "eq:brg-polchinski",
           verification=check_identity(drop_deltas(sp.diff(S1, CUT)), pol, domain=dom),
           uses=("eq:brg-action",), cites=("BKS23",))


def _brg_wilson_step(d: Derivation) -> None:
    """eq:brg-wilson: exact Wilsonian elimination of the sloppy modes is the information shell
    (checked for two modes in a rotated basis)."""
    th = sp.Symbol("vartheta", real=True)
    k1, k2 = sp.symbols("kappa_1 kappa_2", positive=True)
    y1, y2 = sp.symbols("y_1 y_2", real=True)
    e1, e2 = sp.Matrix([sp.cos(th), sp.sin(th)]), sp.Matrix([-sp.sin(th), sp.cos(th)])
    yv = sp.Matrix([y1, y2])
    k_lo, k_hi = k1 * e1 * e1.T, k2 * e2 * e2.T
    m_wil = k_lo * (k_lo + k_hi + SIGMA2 * sp.eye(2)).inv() * yv
    m_shell = e1 * k1 * (e1.T * yv)[0] / (k1 + SIGMA2)
    d.step(sp.Eq(sp.Symbol(r"\sigma^2_{\mathrm{eff}}"), SIGMA2 + sp.Function("K_>")(sp.Symbol("X"), sp.Symbol("X"))),
           "Wilsonian elimination of the sloppy modes (arXiv:2405.06008): $f = f_< + f_>$ with "
           "$K_> = K - \\sum_{\\text{stiff}}\\kappa_k\\psi_k\\psi_k$; integrating $f_>$ out adds "
           "$K_>(X,X) = \\sum_{\\text{sloppy}}\\kappa_k e_ke_k^{\\mathsf T}$ to the noise. It has no "
           "component along a stiff $e_k$, so every stiff mode still sees $\\sigma^2$: the exact "
           "Wilsonian posterior mean of $f_<$, $K_<(K_< + K_> + \\sigma^2)^{-1}y$, equals $m_\\Lambda$ "
           "(checked for two modes in a rotated basis), and $f_>$ keeps its prior, "
           "$\\Sigma_\\Lambda = \\Sigma^W_< + K_>$. This is exactly the information shell with the prior "
           "prescription.", "eq:brg-wilson",
           verification=check_identity(sum((m_wil - m_shell).applyfunc(lambda e: e ** 2)), 0,
                                       domain={th: (-3, 3), y1: (-2, 2), y2: (-2, 2)}),
           uses=("eq:brg-predictive",), cites=("HJMR24",))


def _brg_ridge_steps(d: Derivation, mean_p: sp.Expr, var_p: sp.Expr) -> None:
    """eq:brg-ridge, eq:brg-ridge-tempered: the scalar ridge of arXiv:2405.06008 against the shell,
    and as a tempered shell itself."""
    c = sp.Symbol("c", positive=True)
    m_ridge = KAPPA * YK / (KAPPA + SIGMA2 + c)
    diff_expr = mean_p.subs(W, 1) - m_ridge
    d.step(sp.Eq(sp.Symbol(r"\Delta m_k"), sp.factor(diff_expr)),
           "The scalar ridge $\\sigma^2 \\to \\sigma^2 + c$, $c = \\sum_{\\text{sloppy}}\\lambda_k = "
           "\\mathrm{tr}K_>(X,X)/T$, replaces $K_>(X,X)$ by its trace average (exact on average over "
           "data sets for population modes). On a stiff mode it shrinks $y_k$ by "
           "$\\kappa_k/(\\kappa_k+\\sigma^2+c)$ instead of $\\kappa_k/(\\kappa_k+\\sigma^2)$; the gap is this.",
           "eq:brg-ridge", verification=check_identity(
               diff_expr, c * KAPPA * YK / ((KAPPA + SIGMA2) * (KAPPA + SIGMA2 + c)), domain={YK: (-2, 2)}),
           uses=("eq:brg-wilson",), cites=("HJMR24",))
    wr = SIGMA2 / (SIGMA2 + c)
    d.step(sp.Eq(sp.Symbol(r"w^{\mathrm{ridge}}_k"), wr),
           "The scalar ridge is itself an information-shell flow: the mode formulas of the smooth shell "
           "with $w_k = \\sigma^2/(\\sigma^2 + c)$ on stiff modes (and 0 on sloppy ones) give exactly the "
           "ridge-renormalized mean $\\kappa_k y_k/(\\kappa_k + \\sigma^2 + c)$ and variance "
           "$\\kappa_k(\\sigma^2+c)/(\\kappa_k+\\sigma^2+c)$ of $f_<$: the Wilsonian ridge flow is the "
           "sharp shell followed by a uniform un-training of the stiff modes, $T \\to T\\sigma^2/(\\sigma^2+c)$.",
           "eq:brg-ridge-tempered",
           verification=check_identity((mean_p.subs(W, wr) - m_ridge) ** 2
                                       + (var_p.subs(W, wr) - KAPPA * (SIGMA2 + c) / (KAPPA + SIGMA2 + c)) ** 2, 0,
                                       domain={YK: (-2, 2)}),
           uses=("eq:brg-ridge",), cites=("HJMR24",))


def _brg_commute_step(d: Derivation, mean_p: sp.Expr, var_p: sp.Expr) -> None:
    """eq:brg-commute: the commuting diagram (Fig. 2) for the whitened readout coordinate."""
    a_p, a_h = _tempered(1, 0, 1 + KAPPA / SIGMA2, sp.sqrt(KAPPA) * YK / SIGMA2, W)
    pa_mean, pa_var = sp.sqrt(KAPPA) * a_h / a_p, KAPPA / a_p
    d.step((sp.Eq(sp.sqrt(KAPPA) * sp.Function("E")(sp.Symbol("a_k")), sp.simplify(pa_mean)),
            sp.Eq(KAPPA * sp.Function("Var")(sp.Symbol("a_k")), sp.simplify(pa_var))),
           "Commuting diagram (Fig. 2): coarse-grain the whitened readout coordinate $a_k$ "
           "(prior $\\mathcal N(0,1)$, Fisher $\\kappa_k/\\sigma^2$) and then map $f_k = \\sqrt{\\kappa_k}a_k$, "
           "or map first and apply the induced flow: the same $m_k(\\Lambda), v_k(\\Lambda)$ for every "
           "weight $w$ (sharp or smooth).", "eq:brg-commute",
           verification=check_identity((pa_mean - mean_p) ** 2 + (pa_var - var_p) ** 2, 0,
                                       domain={YK: (-2, 2), W: (0, 1)}),
           uses=("eq:brg-mode",), cites=("HKMS24",))
