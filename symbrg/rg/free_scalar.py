r"""The ERG side of the cos-net theorem: a free scalar with a given dual action, flowed by the ERG engine.

Job: the Wilsonian action at scale :math:`k` of a free scalar with inverse propagator
:math:`\Gamma^{(2)}(p) = Z(p^2+m^2)` on :math:`|p|<R`, from the exact-RG engine alone (the regulators of
:mod:`symbrg.rg.regulators` and the flow equations of :mod:`symbrg.rg.erg`); it imports nothing from the
BRG engine or the cos-net.  The cutoff acts on the kinetic eigenvalue (a *spectrally adjusted*
regulator, :math:`s^2 = k^2+m^2`):

.. math::  C_k(p) = K\Big(\frac{p^2+m^2}{k^2+m^2}\Big)\,\Gamma^{(2)}(p)^{-1},\qquad
           R_k(p) = Z\,(k^2+m^2)\,r\Big(\frac{p^2+m^2}{k^2+m^2}\Big),

so that :math:`(\Gamma^{(2)}+R_k)^{-1} = (1-K)\,\Gamma^{(2)-1}` with :math:`r(z) = zK/(1-K)`.  For the
Litim shape :math:`r = (1-y)\Theta(1-y)` this *is* the standard :math:`Z(k^2-p^2)\Theta(k^2-p^2)` for
every :math:`m`, and the sharp cutoff is :math:`\Theta(k^2-p^2)` for every :math:`m`; the exponential
shape gives :math:`Z(p^2+m^2)/(e^{z}-1)`, the standard :math:`Zp^2/(e^{p^2/k^2}-1)` only at :math:`m = 0`.

Flow equations (field-independent parts kept): the normalized Wilsonian action
:math:`S_k = \phi^2/(2C_k) + \frac12\ln(2\pi C_k)` solves Polchinski's equation for the full action in
its normalized (heat-equation) form, :math:`\partial_kS = \frac12\partial_kC_k(\partial_\phi^2S -
(\partial_\phi S)^2)`, so :math:`\partial_k\langle\phi\phi\rangle = \partial_kC_k` and the vacuum energy
flows by :math:`\partial_kE_k = \frac12\partial_kC_k/C_k`; the effective average action
:math:`\Gamma_k = \frac12\phi\Gamma^{(2)}\phi + \Omega_k` solves Wetterich's equation with the vacuum term
:math:`\partial_k\Omega_k = \frac12\,\partial_kR_k/(\Gamma^{(2)}+R_k)`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import mpmath
import sympy as sp

from symbrg.core.checks import integer
from symbrg.core.errors import InvalidArgument
from symbrg.core.parsing import as_expression
from symbrg.core.types import ExprLike, Number
from symbrg.rg import erg
from symbrg.rg.regulators import Regulator, angular_factor

__all__ = ["FreeScalar", "radial_trace"]


@dataclass(frozen=True)
class FreeScalar:
    r"""A free scalar: ``inverse_propagator`` :math:`\Gamma^{(2)}(p)` in the symbol ``momentum`` (= |p|),
    mass squared ``mass2``, UV cutoff ``cutoff`` :math:`R` and a :class:`~symbrg.rg.regulators.Regulator`."""
    inverse_propagator: sp.Expr
    momentum: sp.Symbol
    mass2: sp.Expr
    cutoff: sp.Expr
    regulator: Regulator

    def __post_init__(self) -> None:
        if not isinstance(self.regulator, Regulator):
            raise InvalidArgument("regulator", "must be a symbrg.rg.regulators.Regulator (use regulator(name))")
        object.__setattr__(self, "inverse_propagator", as_expression(self.inverse_propagator, "inverse_propagator"))

    # ------------------------------------------------------------------ kinematics
    def kinetic(self) -> sp.Expr:
        """The kinetic eigenvalue :math:`p^2+m^2`."""
        return self.momentum ** 2 + self.mass2

    def scale2(self, k: ExprLike) -> sp.Expr:
        """:math:`s^2 = k^2+m^2`, the cutoff on the kinetic eigenvalue."""
        return as_expression(k, "k") ** 2 + self.mass2

    @property
    def Z(self) -> sp.Expr:
        r"""Field normalization :math:`Z = \Gamma^{(2)}/(p^2+m^2)` (a local action is required)."""
        z = sp.simplify(self.inverse_propagator / self.kinetic())
        if self.momentum in z.free_symbols:
            raise InvalidArgument("inverse_propagator", "must be Z (p^2 + m^2) for a local free scalar")
        return z

    # ------------------------------------------------------------------ Polchinski side
    def covariance(self, k: ExprLike) -> sp.Expr:
        r""":math:`C_k(p) = K((p^2+m^2)/s^2)/\Gamma^{(2)}(p)` (the engine's UV-cut propagator at scale :math:`s`)."""
        return self.regulator.covariance(self.kinetic(), sp.sqrt(self.scale2(k)), self.inverse_propagator)

    def covariance_flow(self, k: sp.Symbol) -> sp.Expr:
        r""":math:`\partial_kC_k = (k/s^2)\,s\partial_sC` from the engine's :math:`s\partial_s C = -2zK'(z)/\Gamma^{(2)}`."""
        s2 = self.scale2(k)
        return k / s2 * self.regulator.scale_derivative_covariance(self.kinetic(), sp.sqrt(s2), self.inverse_propagator)

    def wilsonian_action(self, field: sp.Symbol, k: ExprLike) -> sp.Expr:
        r"""Normalized Wilsonian action of the mode: :math:`\phi^2/(2C_k) + \frac12\ln(2\pi C_k)`."""
        c = self.covariance(k)
        return field ** 2 / (2 * c) + sp.log(2 * sp.pi * c) / 2

    def vacuum_flow(self, k: sp.Symbol) -> sp.Expr:
        r""":math:`\partial_kE_k`: the field-independent part of the Polchinski right side,
        :math:`\frac12\partial_kC(\partial^2_\phi S - (\partial_\phi S)^2)|_{\phi=0}` on :meth:`wilsonian_action`."""
        phi = sp.Dummy("phi")
        S = self.wilsonian_action(phi, k)
        rhs = self.covariance_flow(k) * (sp.diff(S, phi, 2) - sp.diff(S, phi) ** 2) / 2
        return rhs.subs(phi, 0)

    # ------------------------------------------------------------------ Wetterich side
    def ir_regulator(self, k: ExprLike) -> sp.Expr | None:
        r""":math:`R_k(p) = Z s^2 r((p^2+m^2)/s^2)` from the engine's shape; ``None`` for the sharp cutoff."""
        if self.regulator.shape is None:
            return None
        return self.regulator.R(self.kinetic(), sp.sqrt(self.scale2(k)), self.Z)

    def standard_regulator(self, k: ExprLike) -> sp.Expr | None:
        r"""The standard :math:`R_k(p) = Zk^2r(p^2/k^2)` (for comparison; ``None`` for the sharp cutoff)."""
        if self.regulator.shape is None:
            return None
        return self.regulator.R(self.momentum ** 2, k, self.Z)

    def wetterich_propagator(self, k: ExprLike) -> sp.Expr:
        r""":math:`(\Gamma^{(2)}+R_k)^{-1}`; sharp: the :math:`R_k\to\infty` limit :math:`(1-K)/\Gamma^{(2)}`."""
        Rk = self.ir_regulator(k)
        if Rk is None:
            return (1 - self.regulator.K(self.kinetic() / self.scale2(k))) / self.inverse_propagator
        return 1 / (self.inverse_propagator + Rk)

    def wetterich_vacuum_flow(self, k: sp.Symbol) -> sp.Expr:
        r""":math:`\partial_k\Omega_k = \frac12\partial_kR_k/(\Gamma^{(2)}+R_k)`, the field-independent Wetterich
        flow of a free theory (engine's :math:`\partial_tR`, :math:`\partial_k = (k/s^2)\partial_{\ln s}`);
        sharp: its limit :math:`-\frac12\partial_k\ln(1-K)`."""
        s2 = self.scale2(k)
        if self.regulator.shape is None:
            z = self.kinetic() / s2
            dz = -2 * k * z / s2
            return self.regulator.dK(z) * dz / (2 * (1 - self.regulator.K(z)))
        dR = k / s2 * self.regulator.dt_R(self.kinetic(), sp.sqrt(s2), self.Z)
        return dR / (2 * (self.inverse_propagator + self.ir_regulator(k)))

    def polchinski_residual(self, action: ExprLike, field: sp.Symbol, covariance: ExprLike, scale: sp.Symbol) -> sp.Expr:
        r"""Residual of the normalized Polchinski equation for a one-mode ``action`` (field-independent part
        included) with ``covariance`` a function of ``scale``: the engine's full-action residual
        (:func:`symbrg.rg.erg.polchinski_residual`) of :math:`S - \frac12\ln(2\pi C)`."""
        c = as_expression(covariance, "covariance")
        return erg.polchinski_residual(as_expression(action, "action") - sp.log(2 * sp.pi * c) / 2,
                                       [field], [c], scale, part="full")


def _roots(h: sp.Expr, var: sp.Symbol, upper: Number) -> list[sp.Expr]:
    """The real roots of h in (0, upper), as 40-digit sympy floats."""
    out = []
    for r in sp.solve(h, var):
        rv = complex(sp.N(r, 30))
        if abs(rv.imag) < 1e-20 and 0 < rv.real < float(upper):
            out.append(sp.N(r, 40))
    return out


def radial_trace(expr: ExprLike, var: sp.Symbol, dim: int, upper: Number, dps: int = 30) -> mpmath.mpf:
    r""":math:`\int_{|p|<R}\frac{d^dp}{(2\pi)^d}f(|p|) = 2\,a_d\int_0^R p^{d-1}f\,dp` (:math:`a_d` the engine's
    angular factor) for ``expr`` numeric except in ``var``, at ``dps`` digits.  Terms
    :math:`g(p)\,\delta(h(p))` contribute :math:`\sum_{h(p_0)=0}g(p_0)p_0^{d-1}/|h'(p_0)|`; step functions
    become breakpoints of the quadrature."""
    dim = integer("dim", dim, minimum=1)
    f = sp.expand(as_expression(expr, "expr") * var ** (dim - 1))
    total = mpmath.mpf(0)
    breaks = set()
    with mpmath.workdps(dps + 10):
        for delta in sorted(f.atoms(sp.DiracDelta), key=str):
            coeff = f.coeff(delta)
            f = sp.expand(f - coeff * delta)
            h = delta.args[0]
            for r0 in _roots(h, var, upper):
                total += mpmath.mpf(sp.N(coeff.subs(var, r0) / abs(sp.diff(h, var).subs(var, r0)), dps + 10))
        for step in f.atoms(sp.Heaviside):
            breaks.update(_roots(step.args[0], var, upper))
        g: Callable[[mpmath.mpf], mpmath.mpf] = sp.lambdify(var, f.replace(sp.Heaviside, lambda *a: sp.Piecewise((1, a[0] > 0), (0, True))),
                                  "mpmath")
        nodes = [mpmath.mpf(0)] + sorted(mpmath.mpf(b) for b in breaks) + [mpmath.mpf(sp.N(upper, dps + 10))]
        total += mpmath.quad(g, nodes)
        return 2 * mpmath.mpf(sp.N(angular_factor(dim), dps + 10)) * total
