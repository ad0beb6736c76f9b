r"""Numeric Fisher information of networks, its stiff/sloppy spectrum, and the infinite-width link.

Job: turn per-sample Jacobians :math:`J_A(x) = \partial f_\theta(x)/\partial\theta^A` of a scalar
network output (a whole ensemble at once) into the Gauss-Newton Fisher of the Gaussian likelihood
:math:`y \sim \mathcal N(f_\theta(x), \sigma^2)`, and split parameter space at a cutoff
:math:`\Lambda`.  The defining equations are

.. math::

   I_{AB} = \frac{c}{\sigma^2}\sum_{x \in \mathcal X} J_A(x)\,J_B(x),\qquad
   c = \begin{cases} 1/n & \text{reduction="mean" (nngeometry \texttt{variant='regression'})}\\
                     1   & \text{reduction="sum" (the Fisher of } T = n \text{ observations)}\end{cases}

and the information-shell split of arXiv:2405.17538, Eq. (53):
:math:`\mathcal M^<_\Lambda = \{\lambda_A < \Lambda\}` (sloppy), :math:`\mathcal M^>_\Lambda =
\{\lambda_A \ge \Lambda\}` (stiff), where :math:`\lambda_A` are either the eigenvalues of :math:`I`
(``criterion="eigen"``, the theory) or its diagonal entries :math:`I_{AA}` (``criterion="diagonal"``,
the paper's numerics).  The diagonal split is **not** reparametrization invariant: rotating
``diag(1, 4)`` by 45 degrees gives diagonal entries ``(5/2, 5/2)`` while the eigenvalues stay
``(1, 4)``.  The eigen split is invariant under rotations of the parameters (which preserve the
isotropic prior); with ``metric=G`` (e.g. the prior precision) it solves :math:`I v = \lambda G v`
and is invariant under every linear reparametrization :math:`\theta = A\theta'`, because
:math:`I' = A^\top I A` and :math:`G' = A^\top G A` transform alike.

Infinite-width link: for a readout on :math:`N` features trained on :math:`T` points, the nonzero
spectrum of the readout Fisher (``reduction="sum"``) is :math:`T/\sigma^2` times the spectrum of the
empirical kernel operator :math:`(\mathcal K g)(x_a) = \frac1T\sum_b K(x_a, x_b)\,g(x_b)`, with
:math:`K(x, x') = \sum_A J_A(x) J_A(x')` the kernel the readout defines (the NNGP kernel at infinite
width).  Proof: :math:`I = \Phi^\top\Phi/\sigma^2` and :math:`\Phi\Phi^\top = K` share their nonzero
eigenvalues.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import TypeAlias, TypeVar

import numpy as np

from symbrg.core.checks import choice, finite_array, matching, nonnegative, positive, psd_matrix
from symbrg.core.errors import NonFinite, NotPositiveDefinite, ShapeMismatch
from symbrg.core.types import ArrayLike

__all__ = ["REDUCTIONS", "CRITERIA", "Choice", "SplitCriterion", "fisher_dense", "fisher_diagonal", "ShellSplit", "shell_split",
           "readout_jacobian", "kernel_operator_spectrum", "readout_fisher_spectrum",
           "mercer_features"]

REDUCTIONS = ("mean", "sum")

#: Per-sample Jacobians: one array ``(n, P)``, ``(members, n, P)`` or ``(members, n, k, P)``, or an
#: iterable of such blocks over inputs (streamed).
Jacobians: TypeAlias = "ArrayLike | Iterable[ArrayLike]"
_C = TypeVar("_C", bound="Choice")


class Choice(str, Enum):
    """A closed set of named options, parsed once at the API boundary by :meth:`parse` (members
    compare equal to their names, so ``SplitCriterion.EIGEN == "eigen"``, and print as them; the
    ``str`` mixin rather than ``enum.StrEnum``, which needs Python 3.11)."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    @classmethod
    def parse(cls: type[_C], value: "str | Choice", argument: str, allowed: Iterable["Choice"] | None = None) -> _C:
        """The member named ``value`` (a member passes through); otherwise
        :class:`~symbrg.core.errors.UnknownName` naming ``argument`` and listing the (``allowed``) choices."""
        options = list(cls) if allowed is None else list(allowed)
        if isinstance(value, cls) and value in options:
            return value
        return cls(choice(argument, value, [str(o) for o in options]))


class SplitCriterion(Choice):
    r"""What the information-shell split compares with :math:`\Lambda`: the eigenvalues of :math:`I`
    (``EIGEN``, basis independent) or its diagonal entries :math:`I_{AA}` (``DIAGONAL``, the paper's numerics)."""
    EIGEN = "eigen"
    DIAGONAL = "diagonal"


CRITERIA = tuple(SplitCriterion)


# ------------------------------------------------------------------------------------- Jacobians
def _blocks(J: Jacobians) -> tuple[Iterable[np.ndarray], bool]:
    """Either one array (returned as a single block) or an iterable of input blocks."""
    if isinstance(J, np.ndarray) or not hasattr(J, "__iter__") or isinstance(J, (list, tuple)):
        return [_as_jacobian(J)], True
    return (_as_jacobian(b) for b in J), False


def _as_jacobian(J: ArrayLike) -> np.ndarray:
    """A float64 (n, P) or (members, n, P) array; finiteness is checked on the (small) result."""
    try:
        arr = np.asarray(J, dtype=np.float64)
    except (TypeError, ValueError):
        raise ShapeMismatch("J", "expected a numeric array of shape (n, P) or (members, n, P)") from None
    if arr.ndim not in (2, 3, 4) or arr.size == 0:
        raise ShapeMismatch("J", f"expected shape (n, P), (members, n, P) or (members, n, k, P), "
                                 f"got {arr.shape}")
    return arr


def _reduce(acc: np.ndarray | None, n: int, noise_var: float, reduction: str, kind: str) -> np.ndarray:
    if acc is None:
        raise ShapeMismatch("J", "no input blocks were given")
    acc *= 1.0 / (noise_var * (n if reduction == "mean" else 1))
    # any NaN/inf in J reaches a diagonal entry, and |I_AB| <= sqrt(I_AA I_BB): check O(P) entries
    diag = acc if kind == "diagonal" else np.diagonal(acc, axis1=-2, axis2=-1)
    if not np.all(np.isfinite(diag)):
        raise NonFinite("J", "contains non-finite value(s) (or values whose squares overflow)")
    return acc


def _accumulate(J: Jacobians, kind: str, noise_var: float, reduction: str) -> np.ndarray:
    noise_var = positive("noise_var", noise_var)
    choice("reduction", reduction, REDUCTIONS)
    blocks, _ = _blocks(J)
    acc: np.ndarray | None = None
    n, shape = 0, None
    for blk in blocks:
        inputs = blk.shape[-2]
        if blk.ndim == 4:  # (members, n, k, P): k outputs per input, isotropic noise
            inputs = blk.shape[1]
            blk = blk.reshape(blk.shape[0], -1, blk.shape[-1])
        lead, P = blk.shape[:-2], blk.shape[-1]
        if shape is not None and (lead, P) != shape:
            raise ShapeMismatch("J", f"block of shape {blk.shape} does not continue blocks with "
                                     f"leading shape {shape[0]} and P = {shape[1]}")
        shape = (lead, P)
        if kind == "dense":
            part = np.matmul(np.swapaxes(blk, -1, -2), blk)  # batched BLAS gemm, (..., P, P)
        else:
            part = np.einsum("...np,...np->...p", blk, blk)  # sums products, no temporary copy of J
        acc = part if acc is None else np.add(acc, part, out=acc)
        n += inputs
    return _reduce(acc, n, noise_var, reduction, kind)


def fisher_dense(J: Jacobians, noise_var: float = 1.0, reduction: str = "mean") -> np.ndarray:
    r"""Dense Gauss-Newton Fisher :math:`I = \frac{c}{\sigma^2}\sum_x J(x)^\top J(x)` for an ensemble.

    J: per-sample Jacobians of the scalar output, shape ``(n, P)`` or ``(members, n, P)``; or
    ``(members, n, k, P)`` for k outputs with isotropic noise (summed over k, averaged over the n
    inputs: ``Network.jacobian`` of :mod:`symbrg.ensembles.networks` fits as is); or an iterable of such
    blocks over inputs (streamed; the inputs need not fit in memory at once).
    noise_var: :math:`\sigma^2 > 0`.  reduction: ``"mean"`` (:math:`c = 1/n`, the nngeometry
    ``'regression'`` convention used by arXiv:2405.17538) or ``"sum"`` (:math:`c = 1`: the Fisher of
    :math:`T = n` observations).  Returns ``(P, P)`` or ``(members, P, P)``, one batched GEMM.
    For a k-dimensional output with isotropic noise, pass ``(members, n*k, P)`` with ``"sum"``.
    """
    return _accumulate(J, "dense", noise_var, reduction)


def fisher_diagonal(J: Jacobians, noise_var: float = 1.0, reduction: str = "mean") -> np.ndarray:
    r"""Diagonal :math:`I_{AA} = \frac{c}{\sigma^2}\sum_x J_A(x)^2` (conventions of :func:`fisher_dense`).

    Returns ``(P,)`` or ``(members, P)``.  Extra memory is :math:`O(\text{members}\cdot P)`: the
    squares are summed by ``einsum`` without a temporary copy of ``J``, and an iterable of input
    blocks streams Jacobians that do not fit in memory at once (P = 1e5 is routine).
    """
    return _accumulate(J, "diagonal", noise_var, reduction)


# --------------------------------------------------------------------------------- shell split
@dataclass(frozen=True)
class ShellSplit:
    r"""The information-shell split :math:`\lambda < \Lambda` (sloppy) / :math:`\lambda \ge \Lambda` (stiff).

    criterion: a :class:`SplitCriterion`.  cutoff: :math:`\Lambda`.
    sensitivities: ``(..., P)``, the eigenvalues (ascending) or the diagonal entries :math:`I_{AA}`.
    eigenvectors: ``(..., P, P)``, columns :math:`v_k` with :math:`I v_k = \lambda_k G v_k` and
    :math:`V^\top G V = 1` (``None`` for the diagonal criterion).  metric: :math:`G` or ``None`` (1).
    """
    criterion: SplitCriterion
    cutoff: float
    sensitivities: np.ndarray
    eigenvectors: np.ndarray | None = None
    metric: np.ndarray | None = field(default=None, repr=False)

    @property
    def sloppy(self) -> np.ndarray:
        """Boolean mask ``(..., P)``: eigen-directions (eigen) or parameters (diagonal) with λ < Λ."""
        return self.sensitivities < self.cutoff

    @property
    def stiff(self) -> np.ndarray:
        """Boolean mask ``(..., P)`` of λ ≥ Λ."""
        return ~self.sloppy

    @property
    def n_sloppy(self) -> np.ndarray | int:
        """Number of sloppy directions, per member."""
        return self.sloppy.sum(axis=-1)

    @property
    def sloppy_projector(self) -> np.ndarray:
        r"""``(..., P, P)``: :math:`\Pi_< = V_< V_<^\top G` (eigen) or :math:`\mathrm{diag}(\text{sloppy})`.

        :math:`\Pi_<` is idempotent; :math:`\Pi_< \theta` is the sloppy component of a displacement.
        """
        mask = self.sloppy.astype(float)
        if self.eigenvectors is None:
            return mask[..., :, None] * np.eye(mask.shape[-1])
        V = self.eigenvectors
        proj = np.matmul(V * mask[..., None, :], np.swapaxes(V, -1, -2))
        return proj if self.metric is None else np.matmul(proj, self.metric)

    @property
    def stiff_projector(self) -> np.ndarray:
        r"""``(..., P, P)``: :math:`\Pi_> = 1 - \Pi_<`."""
        return np.eye(self.sensitivities.shape[-1]) - self.sloppy_projector

    def at(self, cutoff: float) -> "ShellSplit":
        """The same decomposition split at another cutoff (no re-diagonalization)."""
        return ShellSplit(self.criterion, nonnegative("cutoff", cutoff), self.sensitivities,
                          self.eigenvectors, self.metric)


def _is_matrix_batch(F: np.ndarray) -> bool:
    return F.ndim >= 2 and F.shape[-1] == F.shape[-2] and np.allclose(F, np.swapaxes(F, -1, -2))


def shell_split(fisher: ArrayLike, cutoff: float, criterion: "SplitCriterion | str" = SplitCriterion.EIGEN, *,
                metric: ArrayLike | None = None,
                layout: str = "auto") -> ShellSplit:
    r"""Split parameter space at the cutoff :math:`\Lambda` (Eq. (53) of arXiv:2405.17538).

    fisher: ``(P, P)`` or ``(members, P, P)`` Fisher matrices; for ``criterion="diagonal"`` also
    ``(P,)`` or ``(members, P)`` diagonals (the output of :func:`fisher_diagonal`).  ``layout``
    (``"auto"``, ``"matrix"``, ``"diagonal"``) resolves the one ambiguous case, a ``(P, P)`` batch
    of diagonals; ``auto`` reads a square array that is symmetric in its last two axes as matrices.
    cutoff: :math:`\Lambda \ge 0`; :math:`\lambda < \Lambda` is sloppy, :math:`\lambda \ge \Lambda`
    stiff (so :math:`\Lambda = 0` leaves everything stiff).
    criterion: ``"eigen"`` (eigenvalues; invariant under rotations, and under every linear
    reparametrization when ``metric`` is given) or ``"diagonal"`` (the entries :math:`I_{AA}`; not
    reparametrization invariant).
    metric: optional positive-definite :math:`G` (``(P, P)``, e.g. the prior precision) for the
    generalized problem :math:`I v = \lambda G v` (eigen only).
    Eigenvalues within round-off of zero (:math:`|\lambda| \le 10\,P\,\epsilon\,\max|\lambda|`, times
    :math:`\kappa(G)` with a metric) are set to 0; a clearly negative eigenvalue raises
    :class:`~symbrg.core.errors.NotPositiveDefinite`.
    """
    cutoff = nonnegative("cutoff", cutoff)
    criterion = SplitCriterion.parse(criterion, "criterion")
    choice("layout", layout, ("auto", "matrix", "diagonal"))
    F = finite_array("fisher", fisher, ndim=(1, 2, 3))
    as_matrix = F.ndim >= 2 and (layout == "matrix" or (layout == "auto" and (criterion is SplitCriterion.EIGEN or
                                                                               _is_matrix_batch(F))))
    if criterion is SplitCriterion.DIAGONAL:
        if layout == "matrix" and not (F.ndim >= 2 and F.shape[-1] == F.shape[-2]):
            raise ShapeMismatch("fisher", f"expected square matrices, got shape {F.shape}")
        diag = np.diagonal(F, axis1=-2, axis2=-1).copy() if as_matrix else F
        if metric is not None:
            raise ShapeMismatch("metric", "a metric applies only to criterion='eigen'")
        if np.any(diag < 0):
            raise NotPositiveDefinite("fisher", "diagonal entries of a Fisher matrix must be >= 0")
        return ShellSplit(SplitCriterion.DIAGONAL, cutoff, diag)
    if F.ndim < 2 or F.shape[-1] != F.shape[-2]:
        raise ShapeMismatch("fisher", f"criterion='eigen' needs square matrices, got shape {F.shape}")
    F = 0.5 * (F + np.swapaxes(F, -1, -2))
    G = None
    if metric is None:
        lam, V = np.linalg.eigh(F)
    else:
        G = psd_matrix("metric", metric, strict=True)
        matching("metric", G.shape[0], F.shape[-1], "size")
        L = np.linalg.cholesky(G)
        Linv = np.linalg.inv(L)  # G = L L^T;  I v = λ G v  <=>  (L^-1 I L^-T) u = λ u,  v = L^-T u
        lam, U = np.linalg.eigh(Linv @ F @ Linv.T)
        V = np.matmul(Linv.T, U)
    top = np.max(np.abs(lam), axis=-1, keepdims=True)
    tol = 10 * F.shape[-1] * np.finfo(float).eps * top * (1.0 if G is None else np.linalg.cond(G))
    tol = np.maximum(tol, np.finfo(float).tiny)  # subnormal eigenvalues are round-off, whatever their sign
    if np.any(lam < -tol):
        raise NotPositiveDefinite("fisher", f"has a negative eigenvalue ({float(lam.min()):.3g})")
    lam = np.where(np.abs(lam) <= tol, 0.0, lam)
    return ShellSplit(SplitCriterion.EIGEN, cutoff, lam, V, G)


# ------------------------------------------------------------------------ infinite-width link
def readout_jacobian(features: ArrayLike, sigma_w: float = 1.0, sigma_b: float = 0.0) -> np.ndarray:
    r"""Jacobian of the readout :math:`f(x) = \sigma_w N^{-1/2}\sum_i v_i h_i(x) + \sigma_b v_0`.

    NTK parameterization with :math:`v \sim \mathcal N(0, 1)` (the neural-tangents convention of
    :mod:`symbrg.kernels.architecture`): :math:`J(x) = (\sigma_w h(x)/\sqrt N,\ \sigma_b)`, the bias column present
    only when ``sigma_b > 0``.  Then :math:`\sum_A J_A(x)J_A(x') = \sigma_b^2 + \sigma_w^2
    \frac1N\sum_i h_i(x)h_i(x')`, the readout layer's empirical NNGP kernel.
    features: ``(T, N)`` or ``(members, T, N)`` values :math:`h_i(x_a)` of the last hidden layer.
    """
    h = finite_array("features", features, ndim=(2, 3))
    sigma_w = positive("sigma_w", sigma_w)
    sigma_b = nonnegative("sigma_b", sigma_b)
    J = h * (sigma_w / np.sqrt(h.shape[-1]))
    if sigma_b > 0:
        J = np.concatenate([J, np.full(h.shape[:-1] + (1,), sigma_b)], axis=-1)
    return J


def kernel_operator_spectrum(gram: ArrayLike) -> np.ndarray:
    r"""Eigenvalues (descending) of the empirical kernel operator on the data.

    :math:`(\mathcal K g)(x_a) = \frac1T\sum_{b=1}^T K(x_a, x_b)\,g(x_b)`, i.e. the eigenvalues of
    :math:`K/T` for the ``(T, T)`` Gram matrix ``gram`` (or a batch ``(members, T, T)``); these
    converge to the eigenvalues of the integral operator of the input distribution as T grows.
    """
    K = finite_array("gram", gram, ndim=(2, 3))
    if K.shape[-1] != K.shape[-2]:
        raise ShapeMismatch("gram", f"must be square, got shape {K.shape}")
    lam = np.linalg.eigvalsh(0.5 * (K + np.swapaxes(K, -1, -2))) / K.shape[-1]
    return lam[..., ::-1]


def readout_fisher_spectrum(gram: ArrayLike, noise_var: float = 1.0, reduction: str = "sum") -> np.ndarray:
    r"""Nonzero Fisher spectrum of a readout whose kernel on the T data points is ``gram``.

    :math:`\lambda^*_k = \frac{T}{\sigma^2}\lambda_k` for ``reduction="sum"`` and
    :math:`\lambda_k/\sigma^2` for ``"mean"``, with :math:`\lambda_k` from
    :func:`kernel_operator_spectrum` (descending).  Equals the nonzero eigenvalues of
    ``fisher_dense(J, noise_var, reduction)`` whenever ``J @ J.T == gram``.
    """
    noise_var = positive("noise_var", noise_var)
    choice("reduction", reduction, REDUCTIONS)
    lam = kernel_operator_spectrum(gram)
    T = lam.shape[-1]
    return lam * ((T if reduction == "sum" else 1.0) / noise_var)


def mercer_features(gram: ArrayLike, rtol: float = 1e-12) -> np.ndarray:
    r"""Features :math:`\Phi` with :math:`\Phi\Phi^\top = K` (the infinite-width readout's features on the data).

    :math:`\Phi = U\sqrt{\Lambda}` from :math:`K = U\Lambda U^\top`, keeping eigenvalues above
    ``rtol`` times the largest: a readout on these :math:`N = \mathrm{rank}\,K` features has exactly
    the function-space prior :math:`\mathcal{GP}(0, K)` on the data.
    """
    K = psd_matrix("gram", gram)
    lam, U = np.linalg.eigh(K)
    keep = lam > rtol * max(float(lam[-1]), 1e-300)
    return U[:, keep] * np.sqrt(lam[keep])
