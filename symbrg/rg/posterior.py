r"""Gaussian parameter distributions and exact Bayesian training as a flow in the data (IR → UV).

Job: represent the Gaussian distributions that the Bayesian RG moves between (proper, or with flat
improper directions), and derive Bayesian training of a Gaussian model as a flow in the number of
observations :math:`T` (equivalently the likelihood precision).  Defining equations, for a prior
:math:`\mathcal N(m_0, C_0)` and :math:`T` observations of a Gaussian location model with
per-observation Fisher metric :math:`I` and sufficient statistic (maximum-likelihood point)
:math:`\hat\theta`:

.. math::

    Q_T = C_0^{-1} + T\,I,\qquad h_T = C_0^{-1} m_0 + T\,I\,\hat\theta,\qquad
    \pi_T = \mathcal N\big(\mu_T = Q_T^{-1} h_T,\; C_T = Q_T^{-1}\big).

With the diffusion time :math:`\tau = 1/T`, :math:`C(\tau) = \tau\,(I + \tau C_0^{-1})^{-1}` and
:math:`\pi_\tau` solves the Fokker–Planck equation
:math:`\partial_\tau\pi = \tfrac12\partial_i\partial_j(D^{ij}\pi) - \partial_i(v^i\pi)` with
diffusion tensor :math:`D = \partial_\tau C = (I+\tau C_0^{-1})^{-1} I (I+\tau C_0^{-1})^{-1}`, which
is exactly the inverse Fisher metric :math:`I^{-1}` for a flat (Jeffreys) prior and at late times;
then :math:`\pi_T = \mathcal N(\hat\theta, T^{-1}I^{-1})` (Berman–Klinger–Stapleton, Eq. 35).
Pushed forward by a Jacobian :math:`J = \partial\phi/\partial\theta` the diffusion tensor is
:math:`J I^{-1} J^{\mathsf T}` (BKS Eq. 44).

Conventions: the Fisher metric is per observation (the metric of :math:`T` i.i.d. observations is
:math:`T I`); "flat" directions of a :class:`GaussianState` carry an improper uniform factor and have
no mean (their location is reported as 0, i.e. the mean is projected onto the proper subspace).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeAlias

import numpy as np
import sympy as sp

from symbrg.core.checks import finite_array, matching, nonnegative, psd_matrix
from symbrg.core.derivation import Derivation, check_identity
from symbrg.core.errors import InvalidArgument, NotPositiveDefinite, Unsupported
from symbrg.core.symbols import symbol
from symbrg.core.types import ArrayLike

__all__ = ["GaussianState", "as_gaussian", "training_flow", "training_flow_derivation",
           "orthonormal_span"]

_RTOL = 1e-10


def orthonormal_span(vectors: np.ndarray, rtol: float = 1e-9) -> np.ndarray:
    """An orthonormal basis (columns) of the span of the columns of ``vectors`` (SVD, rank by ``rtol``)."""
    v = np.asarray(vectors, dtype=float)
    if v.ndim != 2 or v.shape[1] == 0:
        return np.zeros((v.shape[0] if v.ndim else 0, 0))
    u, s, _ = np.linalg.svd(v, full_matrices=False)
    keep = s > rtol * max(float(s[0]) if s.size else 0.0, 1e-300)
    return u[:, keep]


@dataclass(frozen=True)
class GaussianState:
    r"""A Gaussian over :math:`\mathbb R^P`, possibly times a flat (improper) factor.

    density :math:`\propto \mathcal N_{\perp}(\theta;\,\mu, C)\cdot 1_{\text{flat}}`: ``covariance``
    :math:`C` acts on the complement of the columns of ``flat`` (an orthonormal :math:`P\times m`
    basis, :math:`m = 0` for a proper distribution), along which the density is uniform.
    ``mean`` is projected onto that complement.
    """
    mean: np.ndarray
    covariance: np.ndarray
    flat: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    def __post_init__(self) -> None:
        p = self.mean.shape[0]
        if self.flat.ndim != 2 or self.flat.shape[0] != p:  # the default: no flat directions
            object.__setattr__(self, "flat", np.zeros((p, 0)))

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    @property
    def proper(self) -> bool:
        """True when there are no flat (improper) directions."""
        return self.flat.shape[1] == 0

    @property
    def precision(self) -> np.ndarray:
        r"""The precision :math:`Q = C^{+}` (pseudo-inverse; zero along flat directions)."""
        return np.linalg.pinv(self.covariance, rcond=1e-12, hermitian=True)

    @property
    def shift(self) -> np.ndarray:
        r"""The natural (shift) parameter :math:`h = Q\mu`."""
        return self.precision @ self.mean

    @classmethod
    def from_moments(cls, mean: ArrayLike, covariance: ArrayLike, *, name: str = "posterior") -> "GaussianState":
        """Validated constructor from a mean vector and a PSD covariance matrix."""
        mu = finite_array(f"{name}.mean", mean, ndim=1)
        cov = psd_matrix(f"{name}.covariance", covariance)
        matching(f"{name}.covariance", cov.shape[0], mu.shape[0], "size")
        return cls(mu, 0.5 * (cov + cov.T), np.zeros((mu.shape[0], 0)))

    @classmethod
    def from_natural(cls, precision: ArrayLike, shift: ArrayLike, *, name: str = "state",
                     rtol: float = 1e-10) -> "GaussianState":
        r"""From :math:`Q` (PSD) and :math:`h`; the null space of :math:`Q` becomes flat.

        The shift must lie in the range of :math:`Q` (else the density is not normalizable in any
        direction and :class:`~symbrg.core.errors.InvalidArgument` names ``shift``).
        """
        q = psd_matrix(f"{name}.precision", precision)
        h = finite_array(f"{name}.shift", shift, ndim=1)
        matching(f"{name}.shift", h.shape[0], q.shape[0], "size")
        lam, u = np.linalg.eigh(0.5 * (q + q.T))
        top = max(float(np.max(np.abs(lam))), 1e-300)
        pos = lam > rtol * top
        up, uf = u[:, pos], u[:, ~pos]
        hf = uf.T @ h
        if uf.shape[1] and np.max(np.abs(hf)) > 1e-8 * max(1.0, float(np.max(np.abs(h)))):
            raise InvalidArgument(f"{name}.shift", "has a component along a flat direction of the precision")
        cov = (up / lam[pos]) @ up.T
        return cls(cov @ h, cov, uf)

    def sample(self, n: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
        """``n`` draws, shape ``(n, P)`` (eigen square root, so singular covariances are fine)."""
        if not self.proper:
            raise Unsupported("state", f"cannot sample an improper distribution ({self.flat.shape[1]} "
                                       "flat direction(s)); use prescription='prior'")
        rng = np.random.default_rng(rng)
        lam, u = np.linalg.eigh(self.covariance)
        root = u * np.sqrt(np.clip(lam, 0.0, None))
        return self.mean + rng.standard_normal((n, self.dim)) @ root.T

    def pushforward(self, jacobian: ArrayLike, offset: ArrayLike | None = None) -> "GaussianState":
        r"""The law of :math:`J\theta + b`: mean :math:`J\mu + b`, covariance :math:`J C J^{\mathsf T}`;
        flat directions map to the span of :math:`J\,\text{flat}`."""
        j = finite_array("jacobian", jacobian, ndim=2)
        matching("jacobian", j.shape[1], self.dim, "number of columns")
        b = np.zeros(j.shape[0]) if offset is None else finite_array("offset", offset, ndim=1)
        matching("offset", b.shape[0], j.shape[0], "size")
        flat = orthonormal_span(j @ self.flat)
        mean, cov = j @ self.mean + b, j @ self.covariance @ j.T
        if flat.shape[1]:
            proj = np.eye(j.shape[0]) - flat @ flat.T
            mean, cov = proj @ mean, proj @ cov @ proj
        return GaussianState(mean, 0.5 * (cov + cov.T), flat)


#: A Gaussian as the engines accept it: a :class:`GaussianState` or a ``(mean, covariance)`` pair
#: (what :func:`as_gaussian` turns into a :class:`GaussianState`).
GaussianLike: TypeAlias = "GaussianState | tuple[ArrayLike, ArrayLike]"


def as_gaussian(value: GaussianLike, name: str = "posterior") -> GaussianState:
    """Accept a :class:`GaussianState` or a ``(mean, covariance)`` pair."""
    if isinstance(value, GaussianState):
        return value
    try:
        mean, cov = value
    except (TypeError, ValueError):
        raise InvalidArgument(name, "expected a GaussianState or a (mean, covariance) pair") from None
    return GaussianState.from_moments(mean, cov, name=name)


def training_flow(fisher: ArrayLike, theta_hat: ArrayLike, observations: float,
                  prior: GaussianLike | None = None) -> GaussianState:
    r"""The exact posterior after :math:`T` observations of a Gaussian location model.

    :math:`Q_T = C_0^{-1} + T I`, :math:`h_T = C_0^{-1}m_0 + T I\hat\theta`.  ``fisher`` is the
    per-observation Fisher metric :math:`I` (PSD), ``theta_hat`` the maximum-likelihood point,
    ``observations`` :math:`T \ge 0` (any real: the likelihood precision relative to one
    observation).  ``prior=None`` is the flat (Jeffreys) prior, giving :math:`\mathcal N(\hat\theta,
    T^{-1}I^{-1})` on the range of :math:`I`, flat elsewhere.
    """
    i = psd_matrix("fisher", fisher)
    th = finite_array("theta_hat", theta_hat, ndim=1)
    matching("theta_hat", th.shape[0], i.shape[0], "size")
    t = nonnegative("observations", observations)
    if prior is None:
        q0, h0 = np.zeros_like(i), np.zeros_like(th)
    else:
        p = as_gaussian(prior, "prior")
        matching("prior", p.dim, i.shape[0], "dimension")
        if not p.proper:
            raise Unsupported("prior", "an improper prior: pass prior=None for the flat prior")
        try:
            q0 = np.linalg.inv(p.covariance)
        except np.linalg.LinAlgError:
            raise NotPositiveDefinite("prior", "covariance must be invertible") from None
        h0 = q0 @ p.mean
    return GaussianState.from_natural(q0 + t * i, h0 + t * (i @ th), name="posterior")


def training_flow_derivation() -> Derivation:
    r"""Training as an IR → UV flow: dynamical Bayes, the :math:`\tau = 1/T` diffusion, late times.

    Every identity is verified with :func:`~symbrg.core.derivation.check_identity`.
    """
    d = Derivation("Bayesian training as a flow in the number of observations",
                   "A Gaussian location model with per-observation Fisher information $I$ and prior "
                   "$\\mathcal N(m_0, q_0^{-1})$; in the Fisher eigenbasis every mode flows "
                   "independently, so the scalar mode carries the whole statement ($\\lambda$ is its "
                   "Fisher eigenvalue). $\\tau = 1/T$ is the diffusion time.", name="train")
    Q, mu = _train_posterior_step(d)
    C, D = _train_diffusion_steps(d, Q)
    _train_fokker_planck_step(d, mu, C, D)
    _train_late_step(d, Q)
    _train_replicator_step(d)
    _train_heat_step(d)
    _train_push_step(d)
    _train_readout_step(d)
    return d


def _train_symbols() -> tuple[sp.Symbol, ...]:
    r""":math:`T, \tau, q_0, \lambda, m_0, \hat\theta` (positive) and :math:`\theta` (real) of the scalar mode."""
    T, tau, q0, lam, m0, th = sp.symbols(r"T tau q_0 lambda m_0 \hat{\theta}", positive=True)
    return T, tau, q0, lam, m0, th, sp.Symbol(r"\theta", real=True)


def _train_posterior_step(d: Derivation) -> tuple[sp.Expr, sp.Expr]:
    """eq:train-posterior: Bayes' rule for T observations; returns the precision Q(T) and mean mu(T)."""
    T, _, q0, lam, m0, th, _ = _train_symbols()
    Q = q0 + T * lam
    mu = (q0 * m0 + T * lam * th) / Q
    QT, muT = sp.Function("Q")(T), sp.Function(r"\mu")(T)
    d.step((sp.Eq(QT, Q), sp.Eq(muT, mu)), "Bayes' rule: the log-likelihood of $T$ observations "
           "is $-\\tfrac{T\\lambda}{2}(\\theta-\\hat\\theta)^2$, so precisions and shifts add.",
           "eq:train-posterior", cites=("BKS23",))
    return Q, mu


def _train_diffusion_steps(d: Derivation, Q: sp.Expr) -> tuple[sp.Expr, sp.Expr]:
    r"""eq:train-C, eq:train-D: the variance :math:`C(\tau)` and the diffusion coefficient :math:`D(\tau)`."""
    T, tau, q0, lam, *_ = _train_symbols()
    C = tau / (lam + tau * q0)
    d.step(sp.Eq(sp.Function("C")(tau), C), "The posterior variance $1/Q$ at $T = 1/\\tau$.",
           "eq:train-C", verification=check_identity(C, (1 / Q).subs(T, 1 / tau)), uses=("eq:train-posterior",))
    D = lam / (lam + tau * q0) ** 2
    d.step(sp.Eq(sp.Function("D")(tau), D), "Diffusion coefficient $D = \\partial_\\tau C$; "
           "for a flat (Jeffreys) prior $q_0 = 0$ it is exactly the inverse Fisher information $1/\\lambda$.",
           "eq:train-D", verification=check_identity(sp.diff(C, tau), D), uses=("eq:train-C",))
    return C, D


def _train_fokker_planck_step(d: Derivation, mu: sp.Expr, C: sp.Expr, D: sp.Expr) -> None:
    """eq:train-fp: the posterior solves a Fokker--Planck equation in the diffusion time."""
    T, tau, *_, theta = _train_symbols()
    mu_tau = mu.subs(T, 1 / tau)
    v = sp.simplify(sp.diff(mu_tau, tau))
    logp = -(theta - mu_tau) ** 2 / (2 * C) - sp.log(2 * sp.pi * C) / 2
    g1, g2 = sp.diff(logp, theta), sp.diff(logp, theta, 2)
    fp_lhs = sp.diff(logp, tau)
    fp_rhs = sp.Rational(1, 2) * D * (g2 + g1 ** 2) - v * g1
    pi_ = sp.Function(r"\pi")(theta, tau)
    d.step(sp.Eq(sp.Derivative(pi_, tau), D / 2 * sp.Derivative(pi_, theta, 2)
                 - sp.Symbol("v") * sp.Derivative(pi_, theta)),
           "The posterior $\\mathcal N(\\mu(\\tau), C(\\tau))$ solves this Fokker--Planck equation "
           "with drift $v = \\partial_\\tau\\mu$; checked on $\\log\\pi$: "
           "$\\partial_\\tau\\log\\pi = \\tfrac D2[(\\log\\pi)'' + (\\log\\pi)'^2] - v(\\log\\pi)'$.",
           "eq:train-fp", verification=check_identity(fp_lhs, fp_rhs, domain={theta: (-2, 2)}),
           uses=("eq:train-D",), cites=("BK24",))


def _train_late_step(d: Derivation, Q: sp.Expr) -> None:
    """eq:train-late: late times forget the prior."""
    T, _, _, lam, *_ = _train_symbols()
    d.step(sp.Eq(sp.Limit(T * (1 / Q), T, sp.oo), sp.limit(T / Q, T, sp.oo)),
           "Late times: $\\pi_T \\simeq \\mathcal N(\\mu_T, T^{-1} I^{-1})$, the prior forgotten "
           "at rate $1/T$.", "eq:train-late",
           verification=check_identity(sp.limit(T / Q, T, sp.oo), 1 / lam), uses=("eq:train-posterior",),
           cites=("BKS23",))


def _train_replicator_step(d: Derivation) -> None:
    """eq:train-replicator: dynamical Bayes as a replicator equation (flat prior)."""
    T, _, _, lam, _, th, theta = _train_symbols()
    # Replicator form (BKS Eq. 33) for the flat prior, theta_hat = theta_*:
    logpT = -T * lam * (theta - th) ** 2 / 2 + sp.log(T * lam / (2 * sp.pi)) / 2
    kl = lam * (theta - th) ** 2 / 2
    d.step(sp.Eq(sp.Derivative(sp.log(sp.Function(r"\pi")(theta, T)), T),
                 -(sp.Function("D_{KL}")(th, theta) - sp.Symbol(r"\langle D_{KL}\rangle_T"))),
           "Dynamical Bayes as a replicator equation: with $D_{KL}(\\theta_*\\|\\theta) = "
           "\\tfrac\\lambda2(\\theta-\\theta_*)^2$ and $\\langle D_{KL}\\rangle_T = 1/(2T)$.",
           "eq:train-replicator", verification=check_identity(sp.diff(logpT, T), -(kl - 1 / (2 * T)),
                                                              domain={theta: (-2, 2)}),
           cites=("BKS23",))


def _train_metric() -> tuple[sp.Symbol, sp.Symbol, sp.Symbol, sp.Matrix]:
    """A general 2 x 2 Fisher metric ``(I_11, I_22, I_12, I)``."""
    i11, i22 = sp.symbols("I_11 I_22", positive=True)
    i12 = sp.Symbol("I_12", real=True)
    return i11, i22, i12, sp.Matrix([[i11, i12], [i12, i22]])


def _train_heat_step(d: Derivation) -> None:
    """eq:train-heat: flat prior, several parameters: the heat equation of the inverse Fisher metric."""
    tau = _train_symbols()[1]
    i11, i22, i12, Imat = _train_metric()
    x1, x2 = sp.symbols("theta_1 theta_2", real=True)
    Iinv = Imat.inv()
    xv = sp.Matrix([x1, x2])
    logq = -(xv.T * Imat * xv)[0] / (2 * tau) - sp.log((2 * sp.pi * tau) ** 2 / Imat.det()) / 2
    grad = [sp.diff(logq, s) for s in (x1, x2)]
    rhs = sum(Iinv[a, b] * (sp.diff(logq, (x1, x2)[a], (x1, x2)[b]) + grad[a] * grad[b])
              for a in range(2) for b in range(2)) / 2
    dom = {i11: (1, 2), i22: (1, 2), i12: (-0.5, 0.5), x1: (-1, 1), x2: (-1, 1), tau: (0.2, 2)}
    d.step(sp.Eq(sp.Derivative(sp.Function(r"\pi")(x1, x2, tau), tau),
                 sp.Rational(1, 2) * sp.Symbol("I^{ij}") * sp.Symbol(r"\partial_i\partial_j\pi")),
           "Flat prior, several parameters: $\\mathcal N(\\hat\\theta, \\tau I^{-1})$ solves the heat "
           "equation whose diffusion tensor is the inverse Fisher metric (checked for a general "
           "$2\\times 2$ metric).", "eq:train-heat",
           verification=check_identity(sp.diff(logq, tau), rhs, domain=dom), uses=("eq:train-D",),
           cites=("BK24",))


def _train_push_step(d: Derivation) -> None:
    """eq:train-push: the pushforward to a network output diffuses with :math:`J I^{-1} J^{\\mathsf T}`."""
    tau = _train_symbols()[1]
    i11, i22, i12, Imat = _train_metric()
    a1, a2, f = sp.symbols("a_1 a_2 f", real=True)
    Iinv = Imat.inv()
    a = sp.Matrix([a1, a2])
    Df = sp.simplify((a.T * Iinv * a)[0])
    logf = -f ** 2 / (2 * tau * Df) - sp.log(2 * sp.pi * tau * Df) / 2
    dom_f = {i11: (1, 2), i22: (1, 2), i12: (-0.5, 0.5), a1: (0.2, 1), a2: (0.2, 1), f: (-1, 1), tau: (0.2, 2)}
    d.step(sp.Eq(sp.Symbol("D_f"), Df),
           "Pushforward to function space: an output $f = J\\theta$ (a readout, or the linearised "
           "network with $J = \\partial\\phi/\\partial\\theta$) diffuses with $D_f = J I^{-1} J^{\\mathsf T}$, "
           "the pushed-forward inverse Fisher metric.", "eq:train-push",
           verification=check_identity(sp.diff(logf, tau),
                                       Df / 2 * (sp.diff(logf, f, 2) + sp.diff(logf, f) ** 2), domain=dom_f),
           uses=("eq:train-heat",), cites=("BKS23",))


def _train_readout_step(d: Derivation) -> None:
    """eq:train-readout: a readout's pushed-forward inverse Fisher is :math:`\\sigma^2 1` on the data."""
    phi = sp.Matrix(2, 3, sp.symbols("h_11 h_12 h_13 h_21 h_22 h_23", real=True))
    s2 = symbol("sigma") ** 2
    gram = phi * phi.T
    gram_inv = gram.inv()
    # I^+ = sigma^2 Phi^T G^-2 Phi (G = Phi Phi^T, full row rank).  By associativity both the Penrose
    # condition I I^+ I = I and Phi I^+ Phi^T = sigma^2 1 reduce to G G^-1 G^-1 G = 1, checked here.
    d_data = s2 * (gram * gram_inv) * (gram_inv * gram)
    resid = sum((d_data - s2 * sp.eye(2)).applyfunc(lambda e: sp.cancel(e) ** 2))
    d.step(sp.Eq(sp.Symbol(r"D_f(X, X)"), s2 * sp.Symbol(r"\mathbb{1}_T")),
           "A readout on $N > T$ features, $f(X) = \\Phi\\theta$: the pushed-forward inverse Fisher "
           "$\\Phi I^{+}\\Phi^{\\mathsf T}$ (pseudo-inverse, $I = \\Phi^{\\mathsf T}\\Phi/\\sigma^2$) is "
           "$\\sigma^2 1$ on the training inputs, whatever the features: with "
           "$I^+ = \\sigma^2\\Phi^{\\mathsf T}G^{-2}\\Phi$, $G = \\Phi\\Phi^{\\mathsf T}$, both the Penrose "
           "condition $II^+I = I$ and this identity reduce to $GG^{-1}G^{-1}G = 1$ (checked for $T = 2$, "
           "$N = 3$). The "
           "function-space posterior of the infinite-width network diffuses as $\\mathcal N(y, \\tau\\sigma^2 1)$ "
           "on the data for a flat prior.", "eq:train-readout",
           verification=check_identity(resid, 0, points=6), uses=("eq:train-push",))
