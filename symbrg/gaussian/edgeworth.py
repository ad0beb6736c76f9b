r"""The Edgeworth action: a weakly non-Gaussian law on :math:`\mathbb R^M` at first order in its fourth cumulant.

Job: turn the cumulants of a centred, symmetric law (covariance :math:`K`, fourth cumulant
:math:`\kappa_4 = O(\epsilon)`, odd cumulants zero) into its action :math:`S = -\log p`, and back, in
exact rational arithmetic (:mod:`symbrg.core.exact`) on dense tensors.  The Edgeworth expansion
(Demirtas, Halverson, Maiti, Schwartz, Stoner 2023) is

.. math::  p(\phi) = \mathcal N_K(\phi)\Big[1 + \tfrac1{4!}\kappa_4^{ijkl}H_{ijkl}(\phi)\Big] + O(\epsilon^2),\quad
           H_{ijkl} = h_ih_jh_kh_l - [6]\,h_ih_jK^{-1}_{kl} + [3]\,K^{-1}_{ij}K^{-1}_{kl},\quad h = K^{-1}\phi,

so that :math:`S = \tfrac12\phi K^{-1}\phi + \tfrac12\log\det 2\pi K + S_{\rm int} + O(\epsilon^2)` with

.. math::  S_{\rm int} = \tfrac1{4!}\lambda_{ijkl}\phi_i\phi_j\phi_k\phi_l + \tfrac12\mu_{ij}\phi_i\phi_j + E,\qquad
           \lambda = -\kappa_4\ \text{amputated}\ (K^{-1}\ \text{on every leg}),\quad
           \mu_{ij} = -\tfrac12\lambda_{ijkl}K_{kl},\quad E = \tfrac18\lambda_{ijkl}K_{ij}K_{kl}.

:math:`\mu` is the counterterm that keeps the two-point function exactly :math:`K` (the tadpole
:math:`-\tfrac12K\lambda{:}K\,K` cancels :math:`-K\mu K`) and :math:`E` keeps the law normalised
(:math:`\langle S_{\rm int}\rangle_K = 0`); :func:`first_order_two_point` and
:func:`first_order_normalisation` compute both by Wick contraction, independently of the expansion.
Summands: a sum :math:`f = N^{-1/2}\sum_{i\le N} w_i` of N independent copies of a centred summand
:math:`w` has :math:`K = \mathbb E[ww]` and :math:`\kappa_4 = \frac1N(\mathbb E[w^{\otimes4}] - [3]\,K\otimes K)`
(:func:`sum_cumulants`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
from numpy.typing import NDArray

from symbrg.core.checks import integer
from symbrg.core.errors import InvalidArgument, ShapeMismatch
from symbrg.core.exact import Q, is_rational

__all__ = ["Tensor", "QuarticAction", "pairings", "sum_cumulants", "amputate", "inverse", "edgeworth_action",
           "first_order_two_point", "first_order_normalisation"]

#: A dense tensor of exact rationals (:data:`symbrg.core.exact.Q` entries, dtype object).
Tensor: TypeAlias = NDArray[np.object_]


def _square(name: str, K: Tensor) -> int:
    if K.ndim != 2 or K.shape[0] != K.shape[1]:
        raise ShapeMismatch(name, f"must be a square matrix, got shape {K.shape}")
    return int(K.shape[0])


def _quartic(name: str, T: Tensor, M: int) -> None:
    if T.shape != (M,) * 4:
        raise ShapeMismatch(name, f"must have shape {(M,) * 4}, got {T.shape}")


def pairings(A: Tensor, B: Tensor) -> Tensor:
    r"""The three pairings :math:`A_{ij}B_{kl} + A_{ik}B_{jl} + A_{il}B_{jk}` (:math:`[3]\,A\otimes B`)."""
    return (np.einsum("ij,kl->ijkl", A, B) + np.einsum("ik,jl->ijkl", A, B) + np.einsum("il,jk->ijkl", A, B))


def sum_cumulants(second: Tensor, fourth: Tensor, width: int | Q) -> tuple[Tensor, Tensor]:
    r"""``(K, kappa4)`` of :math:`f = N^{-1/2}\sum_{i\le N}w_i` from the summand's moments
    :math:`\mathbb E[ww]` (``second``) and :math:`\mathbb E[w^{\otimes4}]` (``fourth``):
    :math:`K = \mathbb E[ww]`, :math:`\kappa_4 = \frac1N(\mathbb E[w^{\otimes4}] - [3]K\otimes K)`.
    ``width`` may be a positive exact rational (an effective width)."""
    if not is_rational(width) or isinstance(width, int):
        width = integer("width", width, minimum=1)
    elif width <= 0:
        raise InvalidArgument("width", f"must be > 0, got {width}")
    _quartic("fourth", fourth, _square("second", second))
    return second, (fourth - pairings(second, second)) * (1 / Q(width))


def inverse(K: Tensor) -> Tensor:
    """The exact inverse of a symmetric positive-definite matrix (Gauss-Jordan on rationals)."""
    M = _square("K", K)
    if np.all(K == np.diag(np.diag(K))):
        if any(K[i, i] <= 0 for i in range(M)):
            raise InvalidArgument("K", "must be positive definite")
        return np.diag([1 / Q(K[i, i]) for i in range(M)]).astype(object) + Q(0)
    A = np.concatenate([K.astype(object), np.eye(M, dtype=int).astype(object)], axis=1) + Q(0)
    for c in range(M):
        pivot = next((r for r in range(c, M) if A[r, c] != 0), None)
        if pivot is None:
            raise InvalidArgument("K", "is singular")
        A[[c, pivot]] = A[[pivot, c]]
        A[c] = A[c] / A[c, c]
        for r in range(M):
            if r != c and A[r, c] != 0:
                A[r] = A[r] - A[r, c] * A[c]
    return A[:, M:]


def amputate(kappa4: Tensor, K: Tensor) -> Tensor:
    r""":math:`\kappa_4` with :math:`K^{-1}` on every leg: :math:`K^{-1}_{ia}K^{-1}_{jb}K^{-1}_{kc}K^{-1}_{ld}\kappa_4^{abcd}`."""
    Ki = inverse(K)
    _quartic("kappa4", kappa4, Ki.shape[0])
    d = np.diag(Ki)
    if np.all(Ki == np.diag(d)):  # diagonal K (a mode basis): one scaling per leg
        return kappa4 * d[:, None, None, None] * d[None, :, None, None] * d[None, None, :, None] * d
    return np.einsum("ia,jb,kc,ld,abcd->ijkl", Ki, Ki, Ki, Ki, kappa4, optimize=True)


@dataclass(frozen=True)
class QuarticAction:
    r"""An action :math:`\tfrac12\phi C^{-1}\phi + S_{\rm int}`, :math:`S_{\rm int} = \tfrac1{4!}\lambda\phi^4 +
    \tfrac12\mu\phi^2 + E`, at first order in :math:`\lambda` (module docstring): ``covariance`` C (M, M),
    ``quartic`` :math:`\lambda` (M, M, M, M), ``quadratic`` :math:`\mu` (M, M), ``vacuum`` E."""
    covariance: Tensor
    quartic: Tensor
    quadratic: Tensor
    vacuum: Q

    def interaction(self, phi: Tensor) -> Q:
        r""":math:`S_{\rm int}(\phi)` at the field ``phi`` (shape (M,))."""
        four = np.einsum("ijkl,i,j,k,l->", self.quartic, phi, phi, phi, phi, optimize=True)
        two = np.einsum("ij,i,j->", self.quadratic, phi, phi)
        return four / 24 + two / 2 + self.vacuum

    def restrict(self, modes: NDArray[np.intp]) -> QuarticAction:
        """The action on the sub-basis ``modes`` (indices): every tensor restricted on every leg."""
        ix = np.ix_(modes, modes)
        return QuarticAction(self.covariance[ix], self.quartic[np.ix_(modes, modes, modes, modes)],
                             self.quadratic[ix], self.vacuum)


def edgeworth_action(K: Tensor, kappa4: Tensor) -> QuarticAction:
    r"""The Edgeworth action of the law with covariance ``K`` and fourth cumulant ``kappa4`` (module
    docstring): :math:`\lambda = -\kappa_4` amputated, :math:`\mu = -\tfrac12\lambda{:}K`,
    :math:`E = \tfrac18 K{:}\lambda{:}K`."""
    lam = -amputate(kappa4, K)
    mu = -np.einsum("ijkl,kl->ij", lam, K) / 2
    vac = np.einsum("ij,ijkl,kl->", K, lam, K, optimize=True) / 8
    return QuarticAction(K, lam, mu, vac)


def first_order_two_point(action: QuarticAction) -> Tensor:
    r"""The two-point function of ``action`` at first order, by Wick contraction:
    :math:`\langle\phi\phi\rangle = C - C\mu C - \tfrac12 C(\lambda{:}C)C` (tree counterterm and tadpole)."""
    C = action.covariance
    tadpole = np.einsum("ijkl,kl->ij", action.quartic, C) / 2
    return C - C @ (action.quadratic + tadpole) @ C


def first_order_normalisation(action: QuarticAction) -> Q:
    r""":math:`\langle S_{\rm int}\rangle_C = \tfrac18 C{:}\lambda{:}C + \tfrac12\mu{:}C + E`, which vanishes when
    :math:`\int d\mu_C\,e^{-S_{\rm int}} = 1` at first order."""
    C = action.covariance
    return (np.einsum("ij,ijkl,kl->", C, action.quartic, C, optimize=True) / 8
            + np.einsum("ij,ij->", action.quadratic, C) / 2 + action.vacuum)
