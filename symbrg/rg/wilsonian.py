r"""Polchinski's flow of a weakly interacting scalar in a finite mode basis, at first order in the coupling.

Job: the ERG engine's Wilsonian action at first order in a quartic coupling (order :math:`1/N` for a
network of width N): its flow equations from :func:`symbrg.rg.erg.polchinski_rhs`, their solution from
the UV scale R down to k, and the regulated covariance :math:`C_k` of a lattice of momenta.  With
:math:`S_k = \tfrac12\phi C_k^{-1}\phi + S_{\rm int}` and
:math:`S_{\rm int} = \tfrac1{4!}\lambda\phi^4 + \tfrac12\mu\phi^2 + E` (:class:`~symbrg.gaussian.edgeworth.QuarticAction`),
Polchinski's equation :math:`\partial_kS_{\rm int} = \tfrac12\sum_{ab}\partial_kC_{ab}(\partial_aS_{\rm int}\partial_bS_{\rm int}
- \partial_a\partial_bS_{\rm int})` loses its first term at first order (it is :math:`O(\lambda^2)`), leaving

.. math::  \partial_k\lambda = 0,\qquad \partial_k\mu_{ij} = -\tfrac12\lambda_{ijab}\,\partial_kC_{ab}\ \text{(the tadpole)},
           \qquad \partial_kE = -\tfrac12\mu_{ab}\,\partial_kC_{ab},

whose solution from R to k, with :math:`D = C_R - C_k` (the covariance of the integrated-out modes), is

.. math::  \lambda_k = \lambda_R,\qquad \mu_k = \mu_R + \tfrac12\lambda{:}D,\qquad
           E_k = E_R + \tfrac12\mu_R{:}D + \tfrac18 D{:}\lambda{:}D .

The vertex does not flow at this order; the quadratic term flows by the tadpole of the vertex, summed over
the modes between k and R.  :func:`rates_solve_polchinski` checks the rates against the engine's
Polchinski equation symbolically, on a generic theory of two modes.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import cache
from itertools import product

import numpy as np
import sympy as sp

from symbrg.core.errors import InvalidArgument
from symbrg.core.exact import Q, rational, to_sympy
from symbrg.core.identities import Verification
from symbrg.core.types import FloatArray
from symbrg.gaussian.edgeworth import QuarticAction, Tensor
from symbrg.rg.erg import polchinski_rhs
from symbrg.rg.regulators import Regulator

__all__ = ["Rates", "polchinski_rates", "flow_first_order", "regulated_covariance", "filter_field",
           "rates_solve_polchinski"]

#: ``rates(action, dC) -> (dlambda, dmu, dE)``: the change of the couplings per change ``dC`` of the covariance.
Rates = Callable[[QuarticAction, Tensor], tuple[Tensor, Tensor, Q]]


def polchinski_rates(action: QuarticAction, dC: Tensor) -> tuple[Tensor, Tensor, Q]:
    r"""The first-order Polchinski rates per change :math:`dC` of the covariance (module docstring):
    :math:`d\lambda = 0`, :math:`d\mu = -\tfrac12\lambda{:}dC`, :math:`dE = -\tfrac12\mu{:}dC`."""
    return (0 * action.quartic, -np.einsum("ijab,ab->ij", action.quartic, dC) / 2,
            -np.einsum("ab,ab->", action.quadratic, dC) / 2)


def flow_first_order(action: QuarticAction, covariance: Tensor, rates: Rates = polchinski_rates) -> QuarticAction:
    r"""The Wilsonian action at the covariance ``covariance`` (:math:`C_k`), flowed from ``action`` (at
    :math:`C_R`) by ``rates``.  The rates are linear in the couplings and in :math:`dC`, so along the straight
    path :math:`C(t) = C_R + t(C_k - C_R)` the quartic and quadratic rates are constant and the vacuum rate is
    linear in t: one step with the midpoint :math:`\mu` integrates the flow exactly."""
    if covariance.shape != action.covariance.shape:
        raise InvalidArgument("covariance", f"must have shape {action.covariance.shape}, got {covariance.shape}")
    dC = covariance - action.covariance
    dlam, dmu, _ = rates(action, dC)
    mid = replace(action, quartic=action.quartic + dlam / 2, quadratic=action.quadratic + dmu / 2)
    dE = rates(mid, dC)[2]
    return QuarticAction(covariance, action.quartic + dlam, action.quadratic + dmu, action.vacuum + dE)


def regulated_covariance(propagator: Sequence[Q], momenta2: Sequence[Q], regulator: Regulator, k2: Q) -> Tensor:
    r"""The diagonal Polchinski covariance :math:`C_k = K(p^2/k^2)\,G(p)` of real modes with propagators
    ``propagator`` :math:`G` and squared momenta ``momenta2``, at :math:`k^2` = ``k2``, with the cutoff
    function K of ``regulator``, exactly (the regulator must be rational at rational arguments; a mode on the
    sharp edge :math:`p = k` is refused, where :math:`\Theta(0)` would decide)."""
    out = []
    for g, p2 in zip(propagator, momenta2):
        if regulator.is_sharp and p2 == k2:
            raise InvalidArgument("k2", f"a mode lies on the sharp cutoff (p^2 = k^2 = {k2})")
        out.append(rational(g, "propagator") * rational(regulator.K(to_sympy(rational(p2, "momenta2"))
                                                                    / to_sympy(rational(k2, "k2"))), "regulator"))
    return np.diag(out).astype(object) + Q(0)


def filter_field(values: FloatArray, regulator: Regulator, k2: float) -> FloatArray:
    r"""The Wilsonian low-mode part of a field on the periodic box :math:`[0,2\pi)^d`: its values on a uniform
    grid (shape (G,)*d), each Fourier coefficient at the integer momentum n multiplied by the cutoff function
    :math:`K(|n|^2/k^2)` of ``regulator`` (the sharp one: the projection onto :math:`|n|<k`)."""
    v = np.asarray(values, dtype=float)
    n = np.fft.fftfreq(v.shape[0], 1.0 / v.shape[0])
    n2 = sum(np.meshgrid(*([n ** 2] * v.ndim), indexing="ij"))
    K = _cutoff_numpy(regulator)(np.asarray(n2, dtype=float) / float(k2))
    return np.fft.ifftn(np.fft.fftn(v) * K).real


@cache
def _cutoff_numpy(regulator: Regulator) -> Callable[[FloatArray], FloatArray]:
    z = sp.Symbol("z", nonnegative=True)
    expr = regulator.K(z).replace(sp.Heaviside, lambda *a: sp.Piecewise((1, a[0] > 0), (0, True)))
    f = sp.lambdify(z, expr, "numpy")
    return lambda x: np.broadcast_to(np.asarray(f(x), dtype=float), np.shape(x))


@cache
def rates_solve_polchinski(rates: Rates = polchinski_rates) -> Verification:
    r"""Do ``rates`` solve the engine's Polchinski equation at first order?  On a generic theory of two modes
    (symbolic coupling tensor, symbolic covariances :math:`C_i(k)`, symbolic couplings at :math:`C_R`),
    :math:`S_{\rm int}` flowed by :func:`flow_first_order` must satisfy
    :math:`k\partial_kS_{\rm int} = ` :func:`~symbrg.rg.erg.polchinski_rhs` at order :math:`\epsilon^1`
    (the coupling scaled by :math:`\epsilon`); the residual's coefficient is simplified to zero."""
    k, eps = sp.Symbol("k", positive=True), sp.Symbol("epsilon")
    phi = sp.symbols("phi1 phi2", real=True)
    C = [sp.Function(f"C{i + 1}")(k) for i in range(2)]
    CR = [sp.Symbol(f"C{i + 1}R", positive=True) for i in range(2)]
    lam = np.empty((2,) * 4, dtype=object)
    for idx in product(range(2), repeat=4):
        lam[idx] = sp.Symbol(f"lambda{''.join(str(i + 1) for i in sorted(idx))}")
    mu = np.array([[sp.Symbol("mu11"), sp.Symbol("mu12")], [sp.Symbol("mu12"), sp.Symbol("mu22")]], dtype=object)
    start = QuarticAction(np.diag(CR).astype(object), lam, mu, sp.Symbol("E"))
    flowed = flow_first_order(start, np.diag(C).astype(object), rates)
    p = np.array(phi, dtype=object)
    S = eps * sp.expand(flowed.interaction(p))
    residual = k * sp.diff(S, k) - polchinski_rhs(S, list(phi), C, k)
    first = sp.expand(sp.expand(residual).coeff(eps, 1))
    zero = sp.simplify(first) == 0
    return Verification("symbolic", symbolic_zero=zero,
                        note="generic two-mode theory, coefficient of $\\epsilon^1$ of the Polchinski residual")
