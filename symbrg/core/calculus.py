r"""Calculus with step functions: the almost-everywhere derivative.

Job: one definition of what the package means by the derivative of an expression built from
:math:`\Theta` (Heaviside) steps, used by the activations (:math:`\varphi'` of ReLU), the code generator
(forward-mode derivatives), the identity verifier, the regulators and the BRG flows.

Defining relation: :math:`\partial^{\rm a.e.}_x f = \partial_x f` with every :math:`\delta` term set to 0,
i.e. the derivative off the (measure-zero) support of the deltas.  Kinks such as Litim's
:math:`(1-z)\delta(1-z)` vanish exactly; a true jump (the sharp cutoff) keeps its delta only where a caller
handles it in closed form.
"""
from __future__ import annotations

import sympy as sp

__all__ = ["drop_deltas", "ae_derivative"]


def drop_deltas(expr: sp.Expr) -> sp.Expr:
    """``expr`` off the support of its Dirac deltas (every ``DiracDelta`` term, derivatives included, set to 0):
    what an almost-everywhere identity, a random-point check or a quadrature sees."""
    if not expr.has(sp.DiracDelta):
        return expr
    return expr.replace(lambda e: isinstance(e, sp.DiracDelta), lambda e: sp.S.Zero)


def ae_derivative(expr: sp.Expr, var: sp.Symbol, n: int = 1) -> sp.Expr:
    r"""The almost-everywhere derivative :math:`d^n f/dx^n` (steps differentiate to 0): :func:`drop_deltas`
    of the distributional derivative."""
    return drop_deltas(sp.diff(expr, var, n))
