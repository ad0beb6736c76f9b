r"""The Gaussian-expectation engine: the rule engine behind every NNGP/NTK kernel.

Job: for two activations :math:`f, g` return, as one sympy expression in the symbols
:data:`Q11`, :data:`Q12`, :data:`Q22`,

.. math::  \mathbb E\big[f(u)\,g(v)\big], \qquad (u, v) \sim \mathcal N\!\left(0,
           \begin{pmatrix} q_{11} & q_{12}\\ q_{12} & q_{22}\end{pmatrix}\right),

or, with ``derivative=True``, the derivative kernel :math:`\mathbb E[f'(u)\,g'(v)]` of the NTK.
Every result records how it was obtained (:class:`Expectation`):

``exact``
    a closed form.  Activations are split into *atoms* (:math:`x^k`, :math:`x^n\Theta(x)`,
    :math:`\mathrm{sign}`, :math:`\mathrm{erf}(bx)`, :math:`e^{-bx^2}`, :math:`e^{bx}`,
    :math:`\sin(bx+c)`, uniform-phase cosine, GELU); :math:`\mathbb E` is bilinear, and every pair of
    atoms with a known integral has a rule: Cho–Saul arc-cosine kernels :math:`J_{m,n}` (derived
    symbolically for any integers, :class:`symbrg.core.special.ArcCosKernel`), Williams' arcsine kernel,
    Gaussian moment-generating functions, Isserlis/Wick for monomials at any variances, and Stein
    regression :math:`u = (q_{12}/q_{22})\,v + \sqrt{\Delta/q_{22}}\,w` for a polynomial against any
    atom with known one-dimensional moments.
``series``
    the Mehler/Hermite expansion :math:`\sum_{n\le N} a_n(q_{11})\,b_n(q_{22})\,\rho^n`,
    :math:`\rho = q_{12}/\sqrt{q_{11}q_{22}}`, :math:`a_n(q) = \mathbb E[f(\sqrt q z)\,He_n(z)]/\sqrt{n!}`,
    truncated where the Parseval bound :math:`\sqrt{T_f(N,q_{11})\,T_g(N,q_{22})}`,
    :math:`T_f(N, q) = \mathbb E[f(\sqrt q z)^2] - \sum_{n\le N} a_n(q)^2`, is below ``tol`` on the
    stated variance range (valid because :math:`|\rho|\le 1`): ``expr``, written out.  What is
    evaluated (:attr:`Expectation.vectorized`, kernel programs, :meth:`Expectation.compile`) is the
    same series as one node, :class:`~symbrg.core.special.MehlerSeries`, truncated per entry at
    the smallest order whose bound :math:`|\rho|^{N+1}\sqrt{T_f T_g}` is below ``tol`` (at any
    variance), its coefficients interpolated per octave of q from the Gauss–Hermite rule
    (:class:`_HermiteRows`): a tile costs a few times a closed form, and the NTK's
    :math:`E[f'g']` is the slope :math:`\partial_{q_{12}}` of the same series (Price).
``quadrature``
    a 2-D composite Gauss–Legendre rule of stated degree, split at the kinks (NumPy) /
    ``mpmath.quad`` on the same pieces at working precision (mpmath),
    packaged as one :class:`~symbrg.core.special.NumericFunction` node.

Conventions.  ``derivative=True`` uses the almost-everywhere derivative: the jumps of step and sign
contribute nothing (:math:`\Theta' = 0`, so :math:`\mathbb E[\mathrm{sign}'\,\mathrm{sign}'] = 0`),
exactly as neural-tangents does.  The derivative kernel is built from the derivative's own atoms
(ReLU' = :math:`\Theta` gives :math:`J_0`, erf' is a Gaussian, sin' a phase-shifted sine, abs' =
sign); where a derivative is not an atom (GELU, Gaussian) Price's theorem
:math:`\partial_{q_{12}}\mathbb E[f(u)g(v)] = \mathbb E[f'(u)g'(v)]` is applied to the closed form of
the continuous part.  The uniform-phase cosine (``cosnet``) shares one phase between :math:`u` and
:math:`v` (one neuron), so :math:`\mathbb E = \tfrac{a^2}{2}e^{-b^2(q_{11}+q_{22}-2q_{12})/2}`; against
any phase-free activation its expectation is 0.

Numerics.  Where float64 would cancel, the expression goes through nodes of :mod:`symbrg.core.special`:
:class:`~symbrg.core.special.GramDet` (error-free products for :math:`q_{11}q_{22}-q_{12}^2`, clipped at
0) and :class:`~symbrg.core.special.ArcCosKernel` (:math:`\psi = \operatorname{atan2}(\sqrt\Delta,
-q_{12})` and a Taylor series in :math:`\psi` as :math:`c\to-1`).  The compiled NumPy code agrees with
a 50-digit mpmath evaluation of the same expression to 1e-12 relative (tested, including
:math:`|c|` within 1e-12 of 1), and never returns NaN when rounding pushes :math:`|c|` past 1.
"""
from __future__ import annotations

import itertools
import math
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias

import mpmath
import numpy as np
import sympy as sp

from symbrg.core import checks
from symbrg.core.calculus import ae_derivative
from symbrg.core.errors import ConvergenceError, InvalidArgument, Unsupported
from symbrg.core.special import ArcCosKernel, GramDet, MehlerSeries, MehlerSide, NumericFunction, prec_to_dps
from symbrg.core.symbols import symbol, symbols
from symbrg.core.types import ArrayLike, MpReal, Number
from symbrg.gaussian.activations import Activation, X, activation, names, new_name, register

if TYPE_CHECKING:
    from sympy.printing.latex import LatexPrinter

    from symbrg.core.codegen import Workspace
    from symbrg.core.derivation import Derivation

#: What names an activation: a registered name or spec (``"relu"``, ``"erf:1,2,0"``), an
#: :class:`Activation`, or a sympy ``Lambda`` of one variable.
ActivationSpec: TypeAlias = "str | Activation | sp.Lambda"
#: Derivative orders of a kernel: one for both activations (an int or a bool), or a pair ``(k_f, k_g)``.
Orders: TypeAlias = "int | tuple[int, int]"
#: A closed form supplied with a registered activation: a sympy ``Lambda`` of :math:`(k_{11}, k_{22},
#: k_{12})` or a callable of those three symbols returning a sympy expression.
ClosedForm: TypeAlias = "sp.Lambda | Callable[[sp.Symbol, sp.Symbol, sp.Symbol], sp.Expr]"
#: The NumPy integrand h(u, v) of a quadrature node.
_NumpyIntegrand: TypeAlias = "Callable[[np.ndarray, np.ndarray], np.ndarray]"
#: The mpmath integrand h(u, v) of a quadrature node.
_MpmathIntegrand: TypeAlias = "Callable[[mpmath.mpf, mpmath.mpf], mpmath.mpf]"

__all__ = ["Q11", "Q12", "Q22", "QD", "QE", "QH", "Expectation", "expectation",
           "expectation_derivation", "explicit", "METHODS", "moment", "with_gap", "gap_map",
           "register_activation"]

#: Variance of u.
Q11 = symbol("q11")
#: Covariance of u and v.
Q12 = symbol("q12")
#: Variance of v.
Q22 = symbol("q22")

METHODS = ("auto", "exact", "series", "quadrature")
_SYMS = (Q11, Q12, Q22)
#: The gap of the pair: the Gram determinant :math:`\Delta = q_{11}q_{22} - q_{12}^2` (carried by
#: kernel programs as a variable of its own, see :func:`gap_map`).
QD = symbol("q_Delta")
#: The value of :math:`E[\varphi(u)\varphi(v)]` (computed once by the caller), in :func:`gap_map`.
QE = symbol("e_12")
#: The value of the angular gap :math:`H(\theta)` of :func:`gap_map`.
QH = symbol("h_12")


@dataclass(frozen=True)
class Expectation:
    r"""The result of :func:`expectation`: ``expr`` in :data:`Q11`, :data:`Q12`, :data:`Q22`.

    method: ``"exact"``, ``"series"`` or ``"quadrature"``.
    rule: short name of the rule(s) used (``"arccos-J1"``, ``"erf-arcsin"``, ``"mehler"`` ...).
    order, bound: for a series, the truncation order N and the largest Parseval bound on the
    truncation error over ``variance_range`` (a float, ``<= tol`` unless forced);
    ``bound_expr`` is that bound as an expression valid at any variances.
    degree: Gauss–Legendre nodes per panel (8 panels per axis) of the NumPy quadrature.
    vectorized: for a series, the same Mehler series as one node
    (:class:`~symbrg.core.special.MehlerSeries`) evaluated over whole arrays at once and truncated
    per entry at the smallest order whose Parseval bound :math:`|\rho|^{N+1}\sqrt{T_f(N, q_{11})
    T_g(N, q_{22})}` is below ``tol``, certified at every variance (:meth:`error_bound`); kernel
    programs and :meth:`compile` use it.  ``expr`` is the series truncated at the one order
    ``order`` certified on ``variance_range``, written out (for display and symbolic work).
    """
    expr: sp.Expr
    method: str
    rule: str
    order: int | None = None
    bound: float | None = None
    degree: int | None = None
    bound_expr: sp.Expr | None = None
    variance_range: tuple[float, float] | None = None
    f: Activation | None = field(default=None, compare=False)
    g: Activation | None = field(default=None, compare=False)
    derivative: bool = False
    vectorized: sp.Expr | None = field(default=None, compare=False)

    @property
    def program_expr(self) -> sp.Expr:
        """What kernel programs evaluate: :attr:`vectorized` where there is one, else ``expr``."""
        return self.expr if self.vectorized is None else self.vectorized

    def error_bound(self, q11: ArrayLike, q12: ArrayLike, q22: ArrayLike) -> np.ndarray:
        r"""The certified truncation error of :meth:`compile` at each entry: 0 for a closed form, the
        per-entry Parseval bound :math:`|\rho|^{N+1}\sqrt{T_f(N, q_{11})T_g(N, q_{22})} \le
        \mathrm{tol}` for a series (``inf`` at entries evaluated by quadrature instead); a
        quadrature carries no certified bound (:class:`~symbrg.core.errors.Unsupported`)."""
        shape = np.broadcast_shapes(np.shape(q11), np.shape(q12), np.shape(q22))
        if self.method == "exact":
            return np.zeros(shape)
        node = self.vectorized
        if isinstance(node, MehlerSeries):
            return type(node).error_bound(q11, q12, q22)
        if self.method == "series":       # a terminating series (a polynomial): exact
            return np.zeros(shape)
        raise Unsupported("method", "a quadrature carries no certified error bound")

    @property
    def pair(self) -> tuple[Activation, Activation]:
        """The activations ``(f, g)`` (set on every expectation the engine builds)."""
        if self.f is None or self.g is None:
            raise Unsupported("expectation", "this expectation was built without its activations")
        return self.f, self.g

    def compile(self, backend: str = "numpy", dps: int | None = None
                ) -> Callable[..., np.ndarray | mpmath.mpf]:
        """``fn(q11, q12, q22)`` of :attr:`program_expr` through :func:`symbrg.core.codegen.lambdify`."""
        from symbrg.core.codegen import lambdify
        return lambdify(self.program_expr, _SYMS, backend=backend, dps=dps)

    def explicit(self) -> sp.Expr:
        """``expr`` in plain sympy: arc-cosine and Gram-determinant nodes replaced by their closed
        forms (for display and symbolic checks; the nodes are what keeps float64 accurate)."""
        return explicit(self.expr)

    @property
    def display(self) -> sp.Expr:
        r"""The result written for reading (not for evaluation): the explicit closed form, the
        series as :math:`\sum_{n=0}^{N} a_n(q_{11})\,b_n(q_{22})\,\rho^n` (a sympy ``Sum``), or the
        quadrature node."""
        if self.method == "exact":
            return self.explicit()
        if self.method == "series":
            n = sp.Symbol("n", integer=True, nonnegative=True)
            f, g = self.pair
            A = _hermite_coefficient_class(f, int(self.derivative))
            B = _hermite_coefficient_class(g, int(self.derivative))
            rho = Q12 / (sp.sqrt(Q11) * sp.sqrt(Q22))
            return sp.Sum(A(n, Q11) * B(n, Q22) * rho ** n, (n, 0, self.order))
        return self.expr

    def latex(self) -> str:
        """LaTeX of :attr:`display`."""
        return sp.latex(self.display)


def explicit(expr: sp.Expr) -> sp.Expr:
    r"""Replace :class:`ArcCosKernel` and :class:`GramDet` nodes by plain sympy expressions
    (:math:`\Delta = q_{11}q_{22} - q_{12}^2`); series/quadrature nodes are kept."""
    expr = expr.replace(lambda e: isinstance(e, ArcCosKernel),
                        lambda e: ArcCosKernel.explicit(int(e.args[0]), int(e.args[1]), *e.args[2:]))
    return expr.replace(lambda e: isinstance(e, GramDet), lambda e: e.args[0] * e.args[2] - e.args[1] ** 2)


# ---------------------------------------------------------------------------------------------
# Atoms: an activation as a linear combination of functions whose pairwise integrals are known.
# ---------------------------------------------------------------------------------------------

def _atoms(act: Activation) -> list[tuple[sp.Expr, tuple]] | None:
    """``[(coefficient, atom), ...]`` with ``sum(coeff * atom(x)) == act(x)``; None if generic."""
    fam, p = act.family, act.params
    table: dict[str, Callable[[], list[tuple[Number, tuple]]]] = {
        "abrelu": lambda: [(p[0], ("poly", 1)), (p[1] - p[0], ("rect", 1))],   # a x + (b-a) relu
        "rectified": lambda: [(sp.Integer(1), ("rect", int(p[0])))],
        "sign": lambda: [(sp.Integer(1), ("sign",))],
        "affine": lambda: [(p[0], ("poly", 1)), (p[1], ("poly", 0))],
        "polynomial": lambda: [(c, ("poly", k)) for k, c in enumerate(p)],
        "erf": lambda: [(p[0], ("erf", p[1])), (p[2], ("poly", 0))],
        "gelu": lambda: [(sp.Integer(1), ("gelu",))],
        "exp": lambda: [(p[0], ("exp", p[1]))],
        "gaussian": lambda: [(sp.Integer(1), ("gauss", p[0]))],
        "sin": lambda: [(p[0], ("sin", p[1], p[2]))],
        "cos_uniform": lambda: [(p[0], ("cosu", p[1]))],
    }
    if fam not in table:
        return None
    return [(sp.sympify(c), a) for c, a in table[fam]() if sp.sympify(c) != 0]


_JUMPS = {("rect", 0), ("sign",)}


def _dfact2(k: int) -> int:
    """Double factorial with (-1)!! = 1."""
    return math.prod(range(k, 0, -2)) if k > 0 else 1


def _half_moment(p: int, q: sp.Expr) -> sp.Expr:
    r""":math:`E[v^p\Theta(v)] = q^{p/2}\,2^{p/2}\Gamma(\tfrac{p+1}{2})/(2\sqrt\pi)`."""
    half = sp.Rational(p, 2)
    return q ** half * 2 ** half * sp.gamma(sp.Rational(p + 1, 2)) / (2 * sp.sqrt(sp.pi))


def _gauss_moment(k: int, beta: sp.Expr, q: sp.Expr) -> sp.Expr:
    r""":math:`E[v^k e^{-\beta v^2}] = (k-1)!!\,q^{k/2}(1+2\beta q)^{-(k+1)/2}` (k even; 0 if odd)."""
    if k % 2:
        return sp.Integer(0)
    return _dfact2(k - 1) * q ** sp.Rational(k, 2) * (1 + 2 * beta * q) ** (-sp.Rational(k + 1, 2))


def moment(k: int, atom: tuple, q: sp.Expr) -> sp.Expr:
    r"""One-dimensional moment :math:`M_k = E[v^k\,\mathrm{atom}(v)]`, :math:`v\sim N(0, q)`.

    erf by Stein's lemma :math:`E[v h(v)] = q E[h'(v)]`; exp and sin by completing the square
    (:math:`E[v^k e^{bv}] = e^{b^2q/2}E[(v+bq)^k]`, sin as the imaginary part with :math:`b\to ib`).
    """
    kind = atom[0]
    if kind == "poly":
        p = k + atom[1]
        return sp.Integer(0) if p % 2 else _dfact2(p - 1) * q ** sp.Rational(p, 2)
    if kind == "rect":
        return _half_moment(k + atom[1], q)
    if kind == "sign":
        return 2 * _half_moment(k, q) if k % 2 else sp.Integer(0)
    if kind == "erf":
        b = atom[1]
        if k % 2 == 0:
            return sp.Integer(0)
        prev = moment(k - 2, atom, q) if k >= 3 else sp.Integer(0)
        return q * ((k - 1) * prev + 2 * b / sp.sqrt(sp.pi) * _gauss_moment(k - 1, b ** 2, q))
    if kind == "gauss":
        return _gauss_moment(k, atom[1], q)
    if kind in ("exp", "sin"):
        b = atom[1]

        def term(i: int) -> sp.Expr:   # E[v^i] times the shift (b q)^(k-i), i even
            return sp.binomial(k, i) * (b * q) ** (k - i) * _dfact2(i - 1) * q ** sp.Rational(i, 2)
        if kind == "exp":
            return sp.exp(b ** 2 * q / 2) * sum((term(i) for i in range(0, k + 1, 2)), sp.Integer(0))
        phase = atom[2]     # Im(e^{i c} i^(k-i)) = sin(c + (k-i) pi/2)
        return sp.exp(-b ** 2 * q / 2) * sum((term(i) * sp.sin(phase + (k - i) * sp.pi / 2)
                                              for i in range(0, k + 1, 2)), sp.Integer(0))
    if kind == "cosu":
        return sp.Integer(0)
    if kind == "gelu":     # x Phi(x) = x/2 + x erf(x/sqrt2)/2
        return (moment(k + 1, ("poly", 0), q) + moment(k + 1, ("erf", 1 / sp.sqrt(2)), q)) / 2
    raise Unsupported("atom", f"no moment rule for {atom}")  # pragma: no cover - internal


def _wick(j: int, k: int) -> sp.Expr:
    r"""Isserlis/Wick: :math:`E[u^j v^k]=\sum_p \binom jp\binom kp p!\,(j-p-1)!!\,(k-p-1)!!\,
    q_{12}^p q_{11}^{(j-p)/2} q_{22}^{(k-p)/2}` over p with j-p, k-p even."""
    return sum((sp.binomial(j, p) * sp.binomial(k, p) * sp.factorial(p)
                * _dfact2(j - p - 1) * _dfact2(k - p - 1)
                * Q12 ** p * Q11 ** sp.Rational(j - p, 2) * Q22 ** sp.Rational(k - p, 2)
                for p in range(min(j, k) + 1) if (j - p) % 2 == 0 and (k - p) % 2 == 0), sp.Integer(0))


def _regression(j: int, atom: tuple) -> sp.Expr:
    r""":math:`E[u^j\,h(v)]` by :math:`u = (q_{12}/q_{22})v + \sqrt{\Delta/q_{22}}\,w`, w independent:
    :math:`\sum_{i\ \mathrm{even}}\binom ji (q_{12}/q_{22})^{j-i}(\Delta/q_{22})^{i/2}(i-1)!!\,M_{j-i}(h)`."""
    det = GramDet(Q11, Q12, Q22)
    return sum((sp.binomial(j, i) * (Q12 / Q22) ** (j - i) * (det / Q22) ** sp.Rational(i, 2) * _dfact2(i - 1)
                * moment(j - i, atom, Q22) for i in range(0, j + 1, 2)), sp.Integer(0))


def _swap(expr: sp.Expr) -> sp.Expr:
    return expr.xreplace({Q11: Q22, Q22: Q11})


def _pair(a: tuple, b: tuple) -> tuple[sp.Expr, str] | None:
    """E[a(u) b(v)] for two atoms, with the rule's name; None when no closed form is known."""
    ka, kb = a[0], b[0]
    if ka == "poly" and kb == "poly":
        return _wick(a[1], b[1]), "wick"
    if ka == "poly":
        return _regression(a[1], b), "stein-moments"
    if kb == "poly":
        out = _pair(b, a)
        return (_swap(out[0]), out[1]) if out else None
    if (ka == "cosu") != (kb == "cosu"):
        return sp.Integer(0), "phase-average"
    if ka in ("rect", "sign") and kb in ("rect", "sign"):
        return _pair_arccos(a, b)
    return _pair_family(a, b) if ka == kb else None


def _pair_arccos(a: tuple, b: tuple) -> tuple[sp.Expr, str]:
    """E[a(u) b(v)] for rectified monomials and sign: the arc-cosine kernels (sign = 2 Theta - 1)."""
    ka, kb = a[0], b[0]
    if ka == "rect" and kb == "rect":
        m, n = a[1], b[1]
        return ArcCosKernel(m, n, Q11, Q12, Q22), (f"arccos-J{m}" if m == n else f"arccos-J{m},{n}")
    if ka == "sign" and kb == "sign":
        det = GramDet(Q11, Q12, Q22)       # where sqrt(det) or its relative accuracy matters
        return 2 / sp.pi * sp.atan2(Q12, sp.sqrt(det)), "sign-arcsin"
    if ka == "sign":
        return 2 * ArcCosKernel(0, b[1], Q11, Q12, Q22) - moment(0, b, Q22), f"arccos-J0,{b[1]}"
    return 2 * ArcCosKernel(a[1], 0, Q11, Q12, Q22) - moment(0, a, Q11), f"arccos-J{a[1]},0"


def _pair_family(a: tuple, b: tuple) -> tuple[sp.Expr, str] | None:
    """E[a(u) b(v)] for two atoms of one smooth family (erf, Gaussian, exp, sin, uniform-phase cosine,
    GELU), at any scales and phases; None for another family."""
    kind = a[0]
    plain = Q11 * Q22 - Q12 ** 2       # where det is only added to terms >= 1: rounding is harmless
    if kind == "erf":
        b1, b2 = a[1], b[1]
        den = sp.sqrt(1 + 2 * b1 ** 2 * Q11 + 2 * b2 ** 2 * Q22 + 4 * b1 ** 2 * b2 ** 2 * plain)
        return 2 / sp.pi * sp.atan(2 * b1 * b2 * Q12 / den), "erf-arcsin"
    if kind == "gauss":
        b1, b2 = a[1], b[1]
        return 1 / sp.sqrt(1 + 2 * b1 * Q11 + 2 * b2 * Q22 + 4 * b1 * b2 * plain), "gaussian-det"
    if kind == "exp":
        b1, b2 = a[1], b[1]
        return sp.exp((b1 ** 2 * Q11 + b2 ** 2 * Q22) / 2 + b1 * b2 * Q12), "exp-mgf"
    if kind == "sin":
        (b1, c1), (b2, c2) = a[1:], b[1:]
        return (sp.exp(-(b1 ** 2 * Q11 + b2 ** 2 * Q22) / 2)
                * (sp.sin(c1) * sp.sin(c2) * sp.cosh(b1 * b2 * Q12)
                   + sp.cos(c1) * sp.cos(c2) * sp.sinh(b1 * b2 * Q12)),
                "sin-phase")
    if kind == "cosu":
        b1, b2 = a[1], b[1]
        return sp.exp(-(b1 ** 2 * Q11 + b2 ** 2 * Q22 - 2 * b1 * b2 * Q12) / 2) / 2, "cosnet-uniform-phase"
    if kind == "gelu":   # Tsuchida et al. arXiv:2002.08517 (as in neural-tangents); tested vs quadrature
        D = sp.sqrt(1 + Q11 + Q22 + plain)   # = sqrt((1+q11)(1+q22) - q12^2), without cancellation
        return (Q12 / 4 + ((Q12 ** 2 + Q11 * Q22 * D ** 2) / ((1 + Q11) * (1 + Q22) * D)
                           + Q12 * sp.atan(Q12 / D)) / (2 * sp.pi)), "gelu-arctan"
    return None


_RULE_ORDER = ("arccos", "sign", "erf", "gelu", "gaussian", "exp", "sin", "cosnet", "wick", "stein", "phase")


def _merge(atoms: list[tuple[sp.Expr, tuple]]) -> list[tuple[sp.Expr, tuple]]:
    """Sum the coefficients of equal atoms; rewrite alpha + beta*Theta as a constant plus
    (beta/2)*sign when alpha*(alpha + beta) < 0, where the Theta form would cancel near c = 0
    (e.g. abs' = 2 Theta - 1 = sign, whose kernel (2/pi) atan2(q12, sqrt(Delta)) is exact near 0)."""
    out: dict[tuple, sp.Expr] = {}
    for c, a in atoms:
        out[a] = out.get(a, sp.Integer(0)) + c
    alpha, beta = out.get(("poly", 0), sp.Integer(0)), out.get(("rect", 0), sp.Integer(0))
    if beta != 0 and (alpha * (alpha + beta)).is_negative:
        del out[("rect", 0)]
        out[("poly", 0)] = alpha + beta / 2
        out[("sign",)] = out.get(("sign",), sp.Integer(0)) + beta / 2
    return [(c, a) for a, c in out.items() if c != 0]


def _derivative_atoms(atoms: list[tuple[sp.Expr, tuple]]) -> list[tuple[sp.Expr, tuple]] | None:
    """The a.e. derivative as atoms (jumps of step/sign dropped); None if some atom's derivative
    is not an atom (then Price's theorem on the closed form is used instead)."""
    out: list[tuple[sp.Expr, tuple]] = []
    for c, a in atoms:
        kind = a[0]
        if kind in ("poly", "rect"):
            if a[1] > 0:
                out.append((c * a[1], (kind, a[1] - 1)))
        elif kind == "sign":
            continue
        elif kind == "erf":
            out.append((c * 2 * a[1] / sp.sqrt(sp.pi), ("gauss", a[1] ** 2)))
        elif kind in ("exp", "cosu"):     # (cos(bx + c))' = b cos(bx + c + pi/2): still a uniform phase
            out.append((c * a[1], a))
        elif kind == "sin":
            out.append((c * a[1], ("sin", a[1], a[2] + sp.pi / 2)))
        else:
            return None
    return _merge(out)


def _exact(f: Activation, g: Activation, derivative: bool) -> tuple[sp.Expr, str] | None:
    fa, ga = _atoms(f), _atoms(g)
    if fa is None or ga is None:
        return None
    fa, ga = _merge(fa), _merge(ga)
    if derivative:
        fd, gd = _derivative_atoms(fa), _derivative_atoms(ga)
        if fd is not None and gd is not None:
            out = _exact_atoms(fd, gd)
            if out is not None:
                return out
        # Price's theorem on the continuous part (a.e. convention: jumps carry no derivative)
        out = _exact_atoms([(c, a) for c, a in fa if a not in _JUMPS],
                           [(c, a) for c, a in ga if a not in _JUMPS])
        return None if out is None else (sp.diff(out[0], Q12), f"price({out[1]})")
    return _exact_atoms(fa, ga)


def _exact_atoms(fa: list, ga: list) -> tuple[sp.Expr, str] | None:
    total, rules = sp.Integer(0), []
    for ca, a in fa:
        for cb, b in ga:
            out = _pair(a, b)
            if out is None:
                return None
            total += ca * cb * out[0]
            if out[1] not in rules:
                rules.append(out[1])
    rules.sort(key=lambda r: next((i for i, k in enumerate(_RULE_ORDER) if r.startswith(k)), 99))
    return total, "+".join(rules) or "zero"


# ---------------------------------------------------------------------------------------------
# The gap: E[(phi(u) - phi(v))^2] and the Gram determinant of the post-activations, accurate at c -> 1.
# ---------------------------------------------------------------------------------------------

def with_gap(expr: sp.Expr) -> sp.Expr:
    r"""``expr`` (in Q11, Q12, Q22) reading the Gram determinant from the symbol :data:`QD`:
    ``GramDet(Q11, Q12, Q22)`` becomes QD, and the arc-cosine kernels whose value feels an error in
    :math:`\sqrt\Delta` at c = +1 (:meth:`ArcCosKernel.sensitive`, e.g. :math:`J_0`) get QD as
    their gap hint.  Equal to ``expr`` when :math:`QD = q_{11}q_{22} - q_{12}^2`."""
    def ours(e: sp.Basic) -> bool:
        return e.args[-3:] == (Q11, Q12, Q22) or (isinstance(e, GramDet) and e.args == (Q22, Q12, Q11))
    expr = expr.replace(lambda e: isinstance(e, GramDet) and ours(e), lambda e: QD)
    return expr.replace(lambda e: isinstance(e, ArcCosKernel) and len(e.args) == 5 and ours(e)
                        and ArcCosKernel.sensitive(int(e.args[0]), int(e.args[1])),
                        lambda e: ArcCosKernel(*e.args, QD))


def _degree(atoms: list[tuple[sp.Expr, tuple]]) -> int | None:
    """n when every atom is positively homogeneous of degree n (x^k, x^k Theta(x), sign), else None."""
    degrees = {a[1] if a[0] in ("poly", "rect") else 0 if a[0] == "sign" else None for _, a in atoms}
    return degrees.pop() if len(degrees) == 1 and None not in degrees else None


_GAP_CANCELLATION = 32.0   # G(0) - G(theta) is formed as a difference where it loses at most 5 bits
_GAP_TERMS = 48            # the Taylor series of H: theta^48/48! at theta = 1.5 is 1e-53


class GapMap(NamedTuple):
    """The accurate gap update of :func:`gap_map`: three expressions."""
    angular: sp.Expr     # H(theta), in QD, Q12, QE, Q11, Q22
    distance: sp.Expr    # E[(phi(u) - phi(v))^2], in Q11, Q22, QH
    gap: sp.Expr         # E[phi(u)^2] E[phi(v)^2] - E[phi(u) phi(v)]^2, in Q11, Q22, QH


@cache
def gap_map(act: Activation) -> GapMap | None:
    r"""The accurate gap update of a positively homogeneous activation of degree n (ReLU, leaky
    ReLU, abs, :math:`x^n\Theta(x)`, step, sign, monomials), in :math:`a = \sqrt{q_{11}}`,
    :math:`b = \sqrt{q_{22}}`, the gap :math:`\Delta` (:data:`QD`) and :math:`E_{12} =
    E[\varphi(u)\varphi(v)]` (:data:`QE`):

    .. math::  E_{12} = (ab)^n G(\theta), \quad E_{11} = a^{2n}G(0), \quad
               H(\theta) = G(0) - G(\theta), \quad \theta = \operatorname{atan2}(\sqrt\Delta, q_{12}),

               D_\varphi = E[(\varphi(u)-\varphi(v))^2] = G(0)\,(a^n - b^n)^2 + 2(ab)^n H(\theta),
               \qquad
               \Delta_\varphi = E_{11}E_{22} - E_{12}^2 = (ab)^{2n}\,H(\theta)\,\big(2G(0) - H(\theta)\big),

    :math:`G(\theta) = E[\varphi(z_1)\varphi(z_2)]` at unit variances and correlation
    :math:`\cos\theta`.  The node :math:`H` (:data:`QH`) is :math:`G(0) - E_{12}/(ab)^n` where that
    difference loses at most 5 bits, and the Taylor series of :math:`G(0) - G(\theta)` in
    :math:`\theta` below (c near 1).  Then nothing cancels as :math:`c \to 1`: :math:`\Delta_\varphi`
    keeps full relative accuracy, and :math:`D_\varphi` an error below
    :math:`\epsilon\sqrt{E_{11}D_\varphi}` (from the rounding of :math:`a^n - b^n`), which moves
    :math:`\theta` of the next layer by less than :math:`\epsilon` absolutely.  None for
    activations that are not homogeneous or have no closed form (erf, GELU, sin, tanh, ...: their
    kernels are smooth at c = 1 and need no gap of their own; a homogeneous layer after them
    inherits the plain gap :math:`E_{11}E_{22} - E_{12}^2`).
    """
    atoms = _atoms(act)
    n = None if atoms is None or act.random_phase else _degree(_merge(atoms))
    exact = _exact(act, act, False) if n is not None else None
    H = _angular_gap_class(act, exact[0]) if exact is not None else None
    if H is None:
        return None
    scale = (Q11 * Q22) ** sp.Rational(n, 2)
    G0 = H.g0
    distance = 2 * scale * QH if n == 0 else G0 * (Q11 ** sp.Rational(n, 2) - Q22 ** sp.Rational(n, 2)) ** 2 \
        + 2 * scale * QH
    return GapMap(H(QD, Q12, QE / scale), distance, scale ** 2 * QH * (2 * G0 - QH))


def _angular_gap_class(act: Activation, expr: sp.Expr) -> type[NumericFunction] | None:
    r"""The node :math:`H` of :func:`gap_map` for ``act``, whose :math:`E[\varphi(u)\varphi(v)]` is
    ``expr``; None when :math:`G(\theta)` is not a polynomial in :math:`\sin\theta, \cos\theta,
    \theta` (no series)."""
    from symbrg.core.special import _ANG_SYMBOLS, arccos_angular
    S, C, T = sp.Symbol("S", positive=True), sp.Symbol("C", real=True), sp.Symbol("theta", nonnegative=True)
    Sa, Ca, Pa = _ANG_SYMBOLS
    g = expr.replace(lambda e: isinstance(e, ArcCosKernel), lambda e: ArcCosKernel.normalization(
        int(e.args[0]), int(e.args[1])) * arccos_angular(int(e.args[0]), int(e.args[1])).xreplace(
        {Sa: S, Ca: -C, Pa: sp.pi - T}))
    g = g.replace(lambda e: isinstance(e, GramDet), lambda e: S ** 2).xreplace({Q11: 1, Q22: 1, Q12: C})
    g = g.replace(lambda e: (isinstance(e, sp.atan2) and e.args == (C, S)) or   # sign: pi/2 - theta
                  (isinstance(e, sp.atan) and e.args == (C / S,)), lambda e: sp.pi / 2 - T)
    try:
        poly = sp.Poly(sp.expand(g), S, C, T)
    except sp.PolynomialError:
        return None
    if not all(c.is_number for c in poly.coeffs()):
        return None
    g0 = sp.nsimplify(g.xreplace({S: 0, C: 1, T: 0}))
    closed = (g0 - g.xreplace({S: sp.sin(T), C: sp.cos(T)}), T)
    key = ("AngularGap", act.name, act.family, act.params)
    return _node_class("AngularGap", key, lambda: _build_angular_gap(act, poly, g0, closed))


def _build_angular_gap(act: Activation, poly: sp.Poly, g0: sp.Expr,
                       closed: tuple[sp.Expr, sp.Symbol]) -> type:
    N = _GAP_TERMS
    with mpmath.workdps(40):               # Taylor coefficients of G(0) - G(theta), to 40 digits
        series = _gap_taylor(poly, g0)
        low = next(k for k in range(1, N) if abs(series[k]) > 1e-30)    # H ~ theta^low at 0
        T = closed[1]
        H = sp.lambdify(T, closed[0], modules="mpmath")
        switch = _gap_switch(H, g0)
        tail = [abs(c) * mpmath.mpf(switch) ** k for k, c in enumerate(series)]
        keep = max(k for k in range(N) if tail[k] >= 1e-18 * abs(H(switch))) + 1
        coeffs = np.array([float(c) for c in series[low:keep]][::-1])

    class AngularGap(_AngularGap):
        __doc__ = (rf"H = G(0) - G(theta) of {act.name}, G(theta) = E[phi(z1) phi(z2)] at unit variances and "
                   "correlation cos(theta), from (Delta, q12, g): theta = atan2(sqrt(Delta), q12) and "
                   "g = G(theta) "
                   "(the caller's value).  NumPy: G(0) - g, and the Taylor series in theta below "
                   f"theta = {switch:.3g}, where that difference would lose more than 5 bits; mpmath: the "
                   "closed form in theta with guard digits for that cancellation.")
        nargs = 3

    AngularGap.g0, AngularGap.switch = g0, switch
    AngularGap._gap_G0, AngularGap._gap_tan2 = float(g0), math.tan(switch) ** 2
    # a margin for the rounding of G(0) - g near the switch
    AngularGap._gap_h_switch = 1.01 * float(H(switch))
    AngularGap._gap_low, AngularGap._gap_coeffs, AngularGap._gap_H = low, coeffs, H
    AngularGap._gap_g0_mp = lru_cache(maxsize=8)(lambda prec: mpmath.mpf(sp.N(g0, prec_to_dps(prec) + 10)))
    AngularGap._gap_label = _tex_name(act.name)
    return AngularGap


def _gap_taylor(poly: sp.Poly, g0: sp.Expr) -> list[mpmath.mpf]:
    r"""Taylor coefficients of :math:`G(0) - G(\theta)` in :math:`\theta` (:data:`_GAP_TERMS` of them) at the
    working precision, for :math:`G` the polynomial ``poly`` in :math:`\sin\theta, \cos\theta, \theta`."""
    N = _GAP_TERMS
    fact = [mpmath.factorial(k) for k in range(N)]
    sin = [mpmath.mpf(0) if k % 2 == 0 else (-1) ** (k // 2) / fact[k] for k in range(N)]
    cos = [(-1) ** (k // 2) / fact[k] if k % 2 == 0 else mpmath.mpf(0) for k in range(N)]

    def times(p: list[mpmath.mpf], q: list[mpmath.mpf]) -> list[mpmath.mpf]:
        return [mpmath.fsum(p[i] * q[k - i] for i in range(k + 1)) for k in range(N)]
    series = [mpmath.mpf(0)] * N
    for (i, j, k), coeff in zip(poly.monoms(), poly.coeffs()):
        term = [mpmath.mpf(1)] + [mpmath.mpf(0)] * (N - 1)
        for _ in range(i):
            term = times(term, sin)
        for _ in range(j):
            term = times(term, cos)
        c = mpmath.mpf(sp.N(coeff, 45))
        for d in range(N - k):
            series[d + k] -= c * term[d]
    series[0] += mpmath.mpf(sp.N(g0, 45))
    return series


def _gap_switch(H: Callable[[float], mpmath.mpf], g0: sp.Expr) -> float:
    """The angle above which :math:`G(0) - G(\\theta)` cancels by less than :data:`_GAP_CANCELLATION`."""
    grid = [k / 64 for k in range(1, 97)]                            # up to 1.5 < pi/2
    ok = [abs(g0) <= _GAP_CANCELLATION * abs(H(t)) for t in grid]
    return next((t for i, t in enumerate(grid) if all(ok[i:])), grid[-1])


class _AngularGap(NumericFunction):
    """The node :math:`H` of :func:`gap_map`, one subclass per activation (:func:`_build_angular_gap`
    sets ``g0``, ``switch`` and the ``_gap_*`` attributes: :math:`G(0)`, :math:`\\tan^2` of the switch
    angle, :math:`H` there, the order and coefficients of the Taylor branch, the closed form, :math:`G(0)`
    at a precision, and the LaTeX label)."""
    g0: sp.Expr
    switch: float
    _gap_G0: float
    _gap_tan2: float
    _gap_h_switch: float
    _gap_low: int
    _gap_coeffs: np.ndarray
    _gap_H: Callable[[mpmath.mpf], mpmath.mpf]
    _gap_g0_mp: Callable[[int], mpmath.mpf]
    _gap_label: str

    @classmethod
    def numpy_impl(cls, det: ArrayLike, q12: ArrayLike, g: ArrayLike) -> np.ndarray:
        from symbrg.core.codegen import Workspace
        det, q12, g = (np.asarray(a, dtype=float) for a in (det, q12, g))
        out = np.empty(np.broadcast_shapes(det.shape, q12.shape, g.shape))
        cls.numpy_into(out, Workspace(out.shape), det, q12, g)
        return out

    @classmethod
    def numpy_into(cls, out: np.ndarray, work: Workspace, det: ArrayLike, q12: ArrayLike, g: ArrayLike) -> None:
        np.subtract(cls._gap_G0, g, out=out)
        near = np.less(out, cls._gap_h_switch, out=work("near", bool))    # candidates: H small ...
        if np.count_nonzero(near):
            d, q = (np.broadcast_to(a, out.shape)[near] for a in (det, q12))
            d = np.maximum(d, 0.0)
            keep = (q > 0) & (d < cls._gap_tan2 * q * q)                   # ... and theta < switch
            t = np.arctan2(np.sqrt(d[keep]), q[keep])
            h = out[near]
            h[keep] = t ** cls._gap_low * np.polyval(cls._gap_coeffs, t)
            out[near] = h

    @classmethod
    def mpmath_impl(cls, det: MpReal, q12: MpReal, g: MpReal) -> mpmath.mpf:
        det, q12 = max(mpmath.mpf(det), 0), mpmath.mpf(q12)
        if not (q12 > 0 and det < cls._gap_tan2 * q12 * q12):
            return cls._gap_g0_mp(mpmath.mp.prec) - mpmath.mpf(g)   # loses at most 5 bits (the guard digits)
        theta = mpmath.atan2(mpmath.sqrt(det), q12)
        if theta == 0:
            return mpmath.mpf(0)
        guard = 20 + int(cls._gap_low * max(0.0, -math.log2(float(theta))))   # H cancels like theta^low
        with mpmath.workprec(mpmath.mp.prec + guard):
            value = cls._gap_H(theta)
        return +value

    def elementary(self) -> sp.Expr:
        """:math:`H = G(0) - g` without the Taylor branch (which keeps its accuracy near c = 1)."""
        return self.g0 - self.args[2]

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        """H = G(0) - g: (Delta, q12) only say where to sum the series."""
        return sp.Integer(-1) if argindex == 3 else sp.Integer(0)

    def _latex(self, printer: LatexPrinter, exp: str | None = None) -> str:
        args = ", ".join(printer._print(a) for a in self.args)
        body = rf"H_{{\mathrm{{{self._gap_label}}}}}\!\left({args}\right)"
        return body if exp is None else rf"{body}^{{{exp}}}"


# ---------------------------------------------------------------------------------------------
# Numerical nodes: Hermite coefficients, their Parseval tails, and 2-D quadrature.
# ---------------------------------------------------------------------------------------------

@cache
def _gauss_hermite(degree: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilists' Gauss–Hermite nodes and weights normalized to the N(0, 1) density.

    Golub–Welsch (eigen-decomposition of the Jacobi matrix, off-diagonal sqrt(n)): stable for
    the high degrees the Hermite coefficients need, where ``numpy.polynomial.hermite_e.hermegauss``
    overflows."""
    off = np.sqrt(np.arange(1.0, degree))
    try:
        from scipy.linalg import eigvalsh_tridiagonal
        z = eigvalsh_tridiagonal(np.zeros(degree), off)
    except ImportError:  # pragma: no cover - scipy is optional
        z = np.linalg.eigvalsh(np.diag(off, 1) + np.diag(off, -1))
    # weights 1/(D h_{D-1}(z)^2) from the orthonormal recurrence (eigenvector components would only be
    # accurate to ~1e-16 absolutely, which ruins the tiny tail weights that multiply large h_n(z))
    h_prev, h = np.zeros_like(z), np.ones_like(z)
    with np.errstate(over="ignore", invalid="ignore"):
        for n in range(degree - 1):
            h_prev, h = h, (z * h - math.sqrt(n) * h_prev) / math.sqrt(n + 1)
        w = 1.0 / (degree * h * h)
    w = np.where(np.isfinite(w), w, 0.0)
    return z, w / w.sum()


@cache
def _hermite_table(n_max: int, degree: int) -> np.ndarray:
    r"""Normalized :math:`h_n(z) = He_n(z)/\sqrt{n!}` at the GH nodes, times the weights: (n_max+1, degree).

    The recurrence runs on :math:`h_n\sqrt{w}` (bounded by 1), so nothing overflows at the outer
    nodes where :math:`h_n` itself would exceed the float64 range.  Entries below 1e-150 (the
    weights of the outer nodes) are set to 0: they change no sum that matters, and their products
    would be subnormal numbers, which make a product with the table forty times slower."""
    z, w = _gauss_hermite(degree)
    r = np.sqrt(w)
    h = np.zeros((n_max + 1, degree))
    h[0] = r
    if n_max:
        h[1] = z * r
    for n in range(1, n_max):
        h[n + 1] = (z * h[n] - math.sqrt(n) * h[n - 1]) / math.sqrt(n + 1)
    out = h * r
    out[np.abs(out) < 1e-150] = 0.0
    return out


@lru_cache(maxsize=16)
def _mp_rule(dps: int, width: str) -> tuple[list, list]:
    r"""Half of a composite Gauss–Legendre rule for :math:`\int g(z)\varphi(z)dz` at ``dps`` digits:
    nodes :math:`z > 0` (the rule is their mirror image too), panels of the given width on
    :math:`0 \le z \le 2\sqrt{\ln 10\,(dps+8)}` (beyond it :math:`|h_n|\sqrt\varphi\lesssim 1`
    leaves :math:`\sqrt\varphi < 10^{-dps-8}`), :math:`3\,dps/4 + 12` nodes per panel; the weights
    include the normal density."""
    with mpmath.workdps(dps + 10):
        w = mpmath.mpf(width)
        L = 2 * mpmath.sqrt(mpmath.log(10) * (dps + 8))
        panels = int(mpmath.ceil(L / w))
        deg = 3 * dps // 4 + 12
        x, wx = np.polynomial.legendre.leggauss(deg)          # float nodes, refined below by Newton
        nodes = []
        for x0 in x:
            t = mpmath.mpf(x0)
            for _ in range(6):        # Newton on P_deg, P' = deg (t P_deg - P_{deg-1}) / (t^2 - 1)
                p0, p1 = mpmath.mpf(1), t
                for k in range(1, deg):
                    p0, p1 = p1, ((2 * k + 1) * t * p1 - k * p0) / (k + 1)
                dp = deg * (t * p1 - p0) / (t * t - 1)
                t -= p1 / dp
            nodes.append((t, 2 / ((1 - t * t) * dp * dp)))
        zs, ws = [], []
        for k in range(panels):
            a = k * w
            for t, wt in nodes:
                z = a + (t + 1) * w / 2
                zs.append(z)
                ws.append(wt * w / 2 * mpmath.npdf(z))
    return zs, ws


_MP_COEFFICIENT_DPS = 30   # a series truncated at tol >= 1e-15 gains nothing from more digits in a_n


def _mp_coefficients(comp: "_Compiled", q: mpmath.mpf, n: int) -> tuple[list[mpmath.mpf], mpmath.mpf]:
    r"""(:math:`a_0..a_N(q)`, :math:`E[f(\sqrt q z)^2]`) at working precision, N >= n, cached per (q, dps).

    One composite Gauss–Legendre rule (:func:`_mp_rule`, panel width :math:`1/\max(1,\sqrt q)`, so
    an activation analytic within about 1/2 of the real axis is resolved) serves every order via
    the orthonormal recurrence :math:`h_{k+1} = (z h_k - \sqrt k h_{k-1})/\sqrt{k+1}`, run on
    :math:`h_k\sqrt{w}` (bounded by 1) in fixed-point integer arithmetic with 40 guard bits (ten
    times faster than mpf arithmetic; every quantity is bounded, so absolute precision is what
    counts).  The coefficients carry min(dps, 30) digits: the series itself is only good to its
    tolerance.  Cost: a fraction of a second per distinct variance, then cached."""
    dps = min(mpmath.mp.dps, _MP_COEFFICIENT_DPS)
    key = (q, dps)
    have = comp.mp_cache.get(key)
    if have is not None and len(have[0]) > n:
        return have
    top = 32 * (n // 32 + 1)
    width = str(mpmath.mpf(1) / max(1, mpmath.sqrt(q)))
    zs, ws = _mp_rule(dps, mpmath.nstr(mpmath.mpf(width), 6))
    with mpmath.workdps(dps + 10):
        bits = mpmath.mp.prec + 40

        def fixed(x: mpmath.mpf) -> int:
            return int(mpmath.ldexp(x, bits))

        root = mpmath.sqrt(q)
        fp = [comp.mpmath(root * z) for z in zs]          # f at +z and at -z: h_n(-z) = (-1)^n h_n(z)
        fm = [comp.mpmath(-root * z) for z in zs]
        total = mpmath.fsum((a * a + b * b) * w for a, b, w in zip(fp, fm, ws))
        sw = [mpmath.sqrt(w) for w in ws]
        even = [fixed((a + b) * r) for a, b, r in zip(fp, fm, sw)]
        odd = [fixed((a - b) * r) for a, b, r in zip(fp, fm, sw)]
        Z = [fixed(z) for z in zs]
        psi_prev, psi = [0] * len(zs), [fixed(r) for r in sw]
        coeffs = []
        for k in range(top + 1):
            F = odd if k % 2 else even
            coeffs.append(mpmath.ldexp(mpmath.mpf(sum(f * p for f, p in zip(F, psi))), -2 * bits))
            sk, ik = fixed(mpmath.sqrt(k)), fixed(1 / mpmath.sqrt(k + 1))
            psi_prev, psi = psi, [((((z * p) >> bits) - ((sk * pp) >> bits)) * ik) >> bits
                                  for z, p, pp in zip(Z, psi, psi_prev)]
    out = ([+c for c in coeffs], +total)
    if len(comp.mp_cache) >= 64:
        comp.mp_cache.pop(next(iter(comp.mp_cache)))
    comp.mp_cache[key] = out
    return out


@cache
def _compiled(act: Activation, derivative: int) -> "_Compiled":
    return _Compiled(act, int(derivative))


class _Compiled:
    """NumPy and mpmath callables of one activation (or its a.e. derivative)."""

    def __init__(self, act: Activation, derivative: int):
        from symbrg.core.codegen import lambdify
        self.act, self.derivative = act, int(derivative)
        expr = act.expr
        for _ in range(int(derivative)):      # a.e. derivatives: Dirac deltas of jumps dropped
            expr = ae_derivative(expr, X)
        self.expr = expr
        self.numpy = lambdify(expr, [X], backend="numpy")
        self.mpmath = lambdify(expr, [X], backend="mpmath")
        self.cache: dict = {}
        self.mp_cache: dict = {}

    def np_eval(self, x: np.ndarray) -> np.ndarray:
        return np.broadcast_to(np.asarray(self.numpy(x), dtype=float), np.shape(x))


_NODE_REGISTRY: dict = {}
_CLASSES: dict[str, type] = {}


def _node_class(prefix: str, key: tuple, build: Callable[[], type]) -> type:
    """One NumericFunction subclass per key, named ``<prefix><index>`` (codegen prints it by name)."""
    if key not in _NODE_REGISTRY:
        _NODE_REGISTRY[key] = len([k for k in _NODE_REGISTRY if k[0] == key[0]])
    name = f"{prefix}{_NODE_REGISTRY[key]}"
    if name not in _CLASSES:
        cls = build()
        cls.__name__ = cls.__qualname__ = name
        _CLASSES[name] = cls
    return _CLASSES[name]


_N_MAX = 400              # largest Mehler order the engine will use
_HERMITE_DEGREE = 960     # GH nodes for a_n(q), n <= _N_MAX: products f*h_n stay well resolved


def _unique_eval(q: ArrayLike, rows: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Evaluate a per-variance function once per distinct value (Gram matrices repeat variances)."""
    q = np.asarray(q, dtype=float)
    uq, inv = np.unique(q.ravel(), return_inverse=True)
    return rows(uq)[inv].reshape(q.shape)


def _coefficient_rows(comp: _Compiled, uq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(a_n(q) for n = 0.._N_MAX, E[f(sqrt(q) z)^2]) at each q in uq; the last few results are cached
    (a series of N terms asks for the same variances N times)."""
    key = uq.tobytes()
    if key in comp.cache:
        return comp.cache[key]
    z, w = _gauss_hermite(_HERMITE_DEGREE)
    fz = _at_nodes(comp, np.sqrt(uq)[:, None] * z[None, :], w)
    out = (fz @ _hermite_table(_N_MAX + 4, _HERMITE_DEGREE).T, (fz ** 2) @ w)   # +4: room for d/dq
    if len(comp.cache) >= 8:
        comp.cache.pop(next(iter(comp.cache)))
    comp.cache[key] = out
    return out


def _at_nodes(comp: _Compiled, x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The activation at quadrature nodes ``x`` (one row per variance); where its weight underflows to
    0 an overflowed value (e.g. exp(-x)/(1 + exp(-x))^2 far out) is 0, not a NaN in the sums, and
    values below 1e-150 are 0 (their products with the rule would be subnormal, and slow)."""
    with np.errstate(over="ignore", invalid="ignore"):
        fz = np.array(comp.np_eval(x), dtype=float)
    bad = ~np.isfinite(fz) & (weights == 0)[None, :]
    fz[bad] = 0.0
    fz[np.abs(fz) < 1e-150] = 0.0
    return fz


def _hermite_coefficient_class(act: Activation, derivative: int) -> type[NumericFunction]:
    derivative = int(derivative)
    return _node_class("HermiteCoefficient", ("HermiteCoefficient", act.name, act.family, derivative),
                       lambda: _build_coefficient(act, derivative))


def _build_coefficient(act: Activation, derivative: int) -> type:
    comp = _compiled(act, derivative)
    label = r"\varphi" + "'" * derivative + rf"_{{\mathrm{{{_tex_name(act.name)}}}}}"

    class Coefficient(NumericFunction):
        __doc__ = (rf"Hermite coefficient :math:`a_n(q) = E[f(\sqrt q z) He_n(z)]/\sqrt{{n!}}` of "
                   f"{act.name}{chr(39) * derivative}; NumPy: {_HERMITE_DEGREE}-point Gauss–Hermite, "
                   "mpmath: composite Gauss–Legendre at working precision (see _mp_coefficients).")
        nargs = 2
        compiled = comp

        def fdiff(self, argindex: int = 1) -> sp.Expr:
            r""":math:`\partial_q a_n(q) = E[f'(\sqrt q z)\,z\,h_n(z)]/(2\sqrt q)
            = (\sqrt{n+1}\,b_{n+1} + \sqrt n\,b_{n-1})/(2\sqrt q)`, b the coefficients of f'."""
            if argindex != 2:
                raise sp.ArgumentIndexError(self, argindex)
            n, q = self.args
            B = _hermite_coefficient_class(act, derivative + 1)
            down = sp.sqrt(n) * B(n - 1, q) if int(n) > 0 else sp.Integer(0)
            return (sp.sqrt(n + 1) * B(n + 1, q) + down) / (2 * sp.sqrt(q))

        @classmethod
        def numpy_impl(cls, n: Number, q: ArrayLike) -> np.ndarray:
            n = int(n)
            return _unique_eval(q, lambda uq: _coefficient_rows(comp, uq)[0][:, n])

        @classmethod
        def mpmath_impl(cls, n: Number, q: MpReal) -> mpmath.mpf:
            return _mp_coefficients(comp, mpmath.mpf(q), int(n))[0][int(n)]

        def _latex(self, printer: LatexPrinter, exp: str | None = None) -> str:
            n, q = (printer._print(a) for a in self.args)
            body = rf"a^{{{label}}}_{{{n}}}\!\left({q}\right)"
            return body if exp is None else rf"\left({body}\right)^{{{exp}}}"

    return Coefficient


def _hermite_tail_class(act: Activation, derivative: int) -> type:
    return _node_class("HermiteTail", ("HermiteTail", act.name, act.family, int(derivative)),
                       lambda: _build_tail(act, int(derivative)))


def _build_tail(act: Activation, derivative: int) -> type:
    comp = _compiled(act, derivative)

    class Tail(NumericFunction):
        __doc__ = (rf"Parseval tail :math:`T(N, q) = E[f(\sqrt q z)^2] - \sum_{{n\le N}} a_n(q)^2 \ge 0` "
                   f"of {act.name}.")
        nargs = 2

        @classmethod
        def numpy_impl(cls, n: Number, q: ArrayLike) -> np.ndarray:
            return _unique_eval(q, lambda uq: _tails(comp, uq)[:, int(n)])

        @classmethod
        def mpmath_impl(cls, n: Number, q: MpReal) -> mpmath.mpf:
            a, total = _mp_coefficients(comp, mpmath.mpf(q), int(n))
            return max(total - mpmath.fsum(a[k] ** 2 for k in range(int(n) + 1)), mpmath.mpf(0))

        def _latex(self, printer: LatexPrinter, exp: str | None = None) -> str:
            body = rf"T_{{{printer._print(self.args[0])}}}\!\left({printer._print(self.args[1])}\right)"
            return body if exp is None else rf"{body}^{{{exp}}}"

    return Tail


def _tails(comp: _Compiled, uq: np.ndarray) -> np.ndarray:
    r"""Parseval tails :math:`T(N, q)` for N = 0.._N_MAX: shape (len(uq), _N_MAX + 1).

    Discrete Parseval on one GH rule keeps the difference non-negative; the rounding floor
    :math:`10^{-15} E[f^2]` is added so that a tail is never reported below what float64 resolves."""
    a, total = _coefficient_rows(comp, uq)
    a = a[:, :_N_MAX + 1]
    return np.maximum(total[:, None] - np.cumsum(a ** 2, axis=1), 0.0) + 1e-15 * total[:, None]



# ---------------------------------------------------------------------------------------------
# The vectorized Mehler series (symbrg.core.special.MehlerSeries): one node class per pair.
# ---------------------------------------------------------------------------------------------

_PANEL_NODES = 24          # Chebyshev-Lobatto nodes per octave of q (measured: 1e-15 for tanh, softplus)
_PANEL_OCTAVES = (-30, 13)  # octaves [2^k, 2^(k+1)) interpolated; other variances by the GH rule directly
_PANEL_TEST = (-0.77, 0.13, 0.61)   # where each panel's interpolant is checked against the GH rule
_PANEL_TOL = 1e-13         # ... relative to sqrt(E[f^2]) on the panel, else twice the nodes (up to 96)
_ROWS = _N_MAX + 2         # coefficients a_0..a_401 (a parity's last term may be 401)
#: the group orders of MehlerSeries as term indices k (n = p + step k): 13 low terms for every entry
#: (measured optimum for tanh's NNGP and NTK at depth 3: 12-16), then about 25% more terms per group
#: (an entry pays at most that for rounding its order up)
_GROUP_TERMS = (12, 15, 19, 24, 30, 38, 48, 60, 75, 94, 118, 148, 185, 231, 289, 361, 401)
_SIDE_CACHE = 96           # sides (per row/column vector of variances) kept per node class ...
_SIDE_BYTES = 256 << 20    # ... within this many bytes (the pools' own sides included)
_MATMUL_ROWS = 32          # interpolation products in fixed blocks: each row's bits independent of the batch


class _HermiteRows:
    r"""The Hermite coefficients :math:`a_n(q)`, :math:`n \le 401`, :math:`E[f(\sqrt q z)^2]` and
    :math:`q\,E[f'(\sqrt q z)^2]` of one activation (or derivative) at any variances, as rows.

    Per octave :math:`[2^k, 2^{k+1})` of q the values at :data:`_PANEL_NODES` Chebyshev–Lobatto nodes
    come from the :data:`_HERMITE_DEGREE`-point Gauss–Hermite rule (once per octave, cached), and a
    variance's row is their barycentric interpolant, checked at build against the rule at three
    points (:data:`_PANEL_TOL`; twice the nodes where needed): O(nodes x orders) per variance
    instead of O(GH nodes x orders).  Variances outside the octaves :data:`_PANEL_OCTAVES` use the rule
    directly, one at a time; q = 0 gives :math:`a_n = f(0)\delta_{n0}`.  Each row is computed by
    the same operations whatever else is in the batch, so a variance's row is the same bits in
    every tile and on the diagonal."""

    def __init__(self, comp: _Compiled) -> None:
        self.comp = comp
        self.panels: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray] | None] = {}
        self.lock = threading.Lock()

    def direct(self, q: np.ndarray, degree: int = _HERMITE_DEGREE) -> np.ndarray:
        """(len(q), _ROWS + 2) by the ``degree``-point Gauss–Hermite rule itself: coefficients,
        E[f^2], q E[f'^2]."""
        z, w = _gauss_hermite(degree)
        root = np.sqrt(q)[:, None] * z[None, :]
        fz = _at_nodes(self.comp, root, w)
        slope = _at_nodes(_compiled(self.comp.act, self.comp.derivative + 1), root, w)
        return np.column_stack([fz @ _hermite_table(_ROWS - 1, degree).T, (fz * fz) @ w, q * ((slope * slope) @ w)])

    def degree(self, k: int) -> int:
        """The Gauss–Hermite degree for octave k: :data:`_HERMITE_DEGREE`, raised by half (up to
        3240) while the values at the octave's test points still move by more than 1e-14 of their
        scale (an activation with poles near the real axis, e.g. tanh at large variance)."""
        test = np.ldexp(1.5 + 0.5 * np.array(_PANEL_TEST), k)
        degree, values = _HERMITE_DEGREE, self.direct(test)
        while degree < 3 * _HERMITE_DEGREE:
            finer = self.direct(test, 3 * degree // 2)
            scale = np.sqrt(np.maximum(np.max(finer[:, _ROWS:], axis=0), 1e-300))
            err = np.abs(finer - values)
            if np.max(err[:, :_ROWS + 1]) <= 1e-14 * scale[0] and np.max(err[:, -1]) <= 1e-14 * scale[1] ** 2:
                break
            degree, values = 3 * degree // 2, finer
        return degree

    def panel(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(nodes s in [-1, 1], barycentric weights, values transposed (_ROWS + 2, M)) of octave k, or
        None where the interpolant fails its check (the rule directly there)."""
        if k in self.panels:
            return self.panels[k]
        with self.lock:
            if k not in self.panels:
                self.panels[k] = self._build_panel(k)
        return self.panels[k]

    def _build_panel(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        degree = self.degree(k)
        want = self.direct(np.ldexp(1.5 + 0.5 * np.array(_PANEL_TEST), k), degree)
        M = _PANEL_NODES
        while M <= 4 * _PANEL_NODES:
            s = np.cos(np.pi * np.arange(M) / (M - 1))
            w = (-1.0) ** np.arange(M)
            w[0] *= 0.5
            w[-1] *= 0.5
            values = self.direct(np.ldexp(1.5 + 0.5 * s, k), degree)
            got = _barycentric(np.array(_PANEL_TEST), s, w) @ values
            scale = np.sqrt(np.maximum(np.max(want[:, _ROWS:], axis=0), 1e-300))
            err = np.abs(got - want)
            if np.all(np.isfinite(got)) and np.max(err[:, :_ROWS + 1]) <= _PANEL_TOL * scale[0] \
                    and np.max(err[:, -1]) <= _PANEL_TOL * scale[1] ** 2:
                return s, w, np.ascontiguousarray(values.T)
            M *= 2
        return None

    def rows(self, q: np.ndarray) -> np.ndarray:
        """(_ROWS + 2, len(q)), a column per variance: :math:`a_0(q) .. a_{401}(q)`,
        :math:`E[f(\\sqrt q z)^2]` and :math:`q\\,E[f'(\\sqrt q z)^2]`; NaN for negative or non-finite
        variances."""
        q = np.asarray(q, dtype=float).ravel()
        out = np.full((_ROWS + 2, q.size), np.nan)
        mant, expo = np.frexp(q)
        octave = expo - 1                                        # q in [2^octave, 2^(octave+1))
        good = np.isfinite(q) & (q > 0)
        inside = good & (octave >= _PANEL_OCTAVES[0]) & (octave < _PANEL_OCTAVES[1])
        for k in np.unique(octave[inside]).tolist():
            idx = np.flatnonzero(inside & (octave == k))
            panel = self.panel(int(k))
            if panel is None:
                inside[idx] = False
                continue
            s, w, values = panel
            out[:, idx] = _fixed_matmul(_barycentric(4.0 * mant[idx] - 3.0, s, w), values)
        for i in np.flatnonzero(good & ~inside).tolist():          # far variances: the rule itself
            out[:, i] = self.direct(q[i:i + 1], 27 * _HERMITE_DEGREE // 8 if q[i] > 1 else _HERMITE_DEGREE)[0]
        zero = np.flatnonzero(q == 0)
        if zero.size:
            f0 = float(self.comp.np_eval(np.zeros(1))[0])
            out[:, zero] = 0.0
            out[0, zero], out[_ROWS, zero] = f0, f0 * f0
        return out

    def slope_at_zero(self) -> float:
        """:math:`E[f'(\\sqrt q z)^2]` at q = 0: :math:`f'(0)^2`."""
        return float(_compiled(self.comp.act, self.comp.derivative + 1).np_eval(np.zeros(1))[0]) ** 2


def _barycentric(s: np.ndarray, nodes: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Normalized barycentric interpolation weights (len(s), M) for the points ``s`` (one-hot at a node)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        d = s[:, None] - nodes[None, :]
        W = weights[None, :] / d
        hit = d == 0
        rows = hit.any(axis=1)
        W[rows] = hit[rows]
        W /= W.sum(axis=1, keepdims=True)
    return W


@cache
def _matmul_is_batch_invariant() -> bool:
    """Does BLAS give each column of a product the same bits whatever block it sits in (fixed shapes)?"""
    rng = np.random.default_rng(7)
    W, V = rng.normal(size=(2 * _MATMUL_ROWS, _PANEL_NODES)), rng.normal(size=(_ROWS + 2, _PANEL_NODES))
    return bool(np.array_equal(_blocks(W[:_MATMUL_ROWS], V)[:, 5:], _blocks(W[5:5 + _MATMUL_ROWS], V)[:, :-5]))


def _blocks(W: np.ndarray, V: np.ndarray) -> np.ndarray:
    """``V @ W.T`` by BLAS on zero-padded blocks of :data:`_MATMUL_ROWS` rows of W (same shapes every call)."""
    n = W.shape[0]
    pad = np.zeros((-(-n // _MATMUL_ROWS) * _MATMUL_ROWS, W.shape[1]))
    pad[:n] = W
    out = np.empty((V.shape[0], pad.shape[0]))
    for i in range(0, pad.shape[0], _MATMUL_ROWS):
        np.matmul(V, pad[i:i + _MATMUL_ROWS].T, out=out[:, i:i + _MATMUL_ROWS])
    return out[:, :n]


def _fixed_matmul(W: np.ndarray, V: np.ndarray) -> np.ndarray:
    """``V @ W.T`` (a column per row of W) with each column's bits independent of the other rows of W:
    BLAS on blocks of fixed shape where that is batch invariant, else products summed in a fixed order."""
    if not _matmul_is_batch_invariant():              # pragma: no cover - depends on the BLAS
        out = np.zeros((V.shape[0], W.shape[0]))
        for m in range(W.shape[1]):
            out += V[:, m, None] * W[None, :, m]
        return out
    return _blocks(W, V)


@cache
def _hermite_rows(comp: _Compiled) -> _HermiteRows:
    return _HermiteRows(comp)


def _parity(comp: _Compiled) -> int | None:
    """0 if the (derivative of the) activation is even, 1 if odd, None if neither or not provable
    (then no term of the series is skipped)."""
    e = comp.expr
    m = e.xreplace({X: -X})
    if sp.expand(m - e) == 0:
        return 0
    if sp.expand(m + e) == 0:
        return 1
    return None


def _joint(f: Activation, g: Activation) -> bool:
    """Does the slope of the (f, g) series give E[f'g'] (no jumps: then integration by parts holds)?"""
    return not (f.random_phase or g.random_phase or _has_jumps(f) or _has_jumps(g))


def _mehler_class(f: Activation, g: Activation, orders: tuple[int, int], tol: float) -> type[MehlerSeries]:
    """The :class:`~symbrg.core.special.MehlerSeries` node of :math:`E[f^{(k_f)}(u)\\,g^{(k_g)}(v)]`
    truncated per entry at ``tol``: for ``orders`` (1, 1) the slope of the (0, 0) series where that
    is :math:`E[f'g']` (:func:`_joint`), sharing its orders."""
    if orders == (1, 1) and _joint(f, g):
        slope = _mehler_class(f, g, (0, 0), tol).mehler_slope_class
        if slope is not None:
            return slope
    key = ("MehlerSeries", f.name, f.family, g.name, g.family, orders, tol)
    return _node_class("MehlerSeries", key, lambda: _build_mehler(f, g, orders, tol))


def _build_mehler(f: Activation, g: Activation, orders: tuple[int, int], tol: float) -> type:
    kf, kg = orders
    cf, cg = _compiled(f, kf), _compiled(g, kg)
    pf, pg = _parity(cf), _parity(cg)
    p = pf if pf is not None else pg
    step = 1 if p is None else 2
    top = _ROWS - 1 if p is None else _ROWS - 1 - (_ROWS - 1 - p) % 2
    groups = tuple(sorted({min((p or 0) + step * k, top) for k in _GROUP_TERMS}))
    same = cf is cg
    joint = orders == (0, 0) and _joint(f, g)
    rows = (_hermite_rows(cf), _hermite_rows(cg))
    sides: dict[tuple[int, bytes], MehlerSide] = {}
    pools: list[tuple[int, np.ndarray, np.ndarray, MehlerSide]] = []
    lock = threading.Lock()

    def side(which: int, q: np.ndarray, length: int) -> MehlerSide:
        q = np.ascontiguousarray(q, dtype=float)
        w = 0 if same else which
        key = (w, q.tobytes())
        with lock:
            found = sides.pop(key, None)
            if found is not None:
                sides[key] = found                            # most recently used last
            pooled = list(pools)
        if found is not None and found.coeffs.shape[0] > length:
            return found
        made = next((s for s in (_pooled_side(p, q, length) for p in pooled if p[0] == w) if s is not None),
                    None) or _mehler_side(rows[w], q, groups, tol, length, joint)
        with lock:
            sides[key] = made
            while len(sides) > _SIDE_CACHE or (len(sides) > 1 and _side_bytes(sides.values()) > _SIDE_BYTES):
                sides.pop(next(iter(sides)))
            if _POOL_MIN <= q.size <= _POOL_MAX and made is not found:
                order = np.argsort(q, kind="stable")
                pools.insert(0, (w, q[order], order, made))
                del pools[_POOLS:]
        return made

    def label(k1: int, k2: int) -> str:
        fn, gn = (rf"\varphi{chr(39) * k}_{{\mathrm{{{_tex_name(a.name)}}}}}" for a, k in zip((f, g), (k1, k2)))
        return rf"\mathbb{{E}}\left[{fn}(u)\,{gn}(v)\right]_{{\mathrm{{Mehler}}}}"

    class Mehler(MehlerSeries):
        __doc__ = (f"E[{f.name}{chr(39) * kf}(u) {g.name}{chr(39) * kg}(v)] by its Mehler series, truncated per "
                   f"entry at the smallest certified order (Parseval bound <= {tol:g}); see MehlerSeries.")
        nargs = 3
        mehler_groups = groups
        mehler_parity = p
        mehler_zero = pf is not None and pg is not None and pf != pg
        mehler_same = same
        #: the derivative orders (k_f, k_g) of the expectation this class evaluates
        mehler_orders = (kf, kg)

        @classmethod
        def mehler_tolerance(cls) -> float:
            return tol

        @classmethod
        def mehler_side(cls, which: int, q: np.ndarray, length: int = 0) -> MehlerSide:
            return side(which, q, length)

        @classmethod
        def mehler_fallback(cls, q11: np.ndarray, q12: np.ndarray, q22: np.ndarray) -> np.ndarray:
            return _quadrature_class(f, g, cls.mehler_orders, _FALLBACK_DEGREE).numpy_impl(q11, q12, q22)

        @classmethod
        def mpmath_impl(cls, q11: MpReal, q12: MpReal, q22: MpReal) -> mpmath.mpf:
            quad = _quadrature_class(f, g, cls.mehler_orders, _FALLBACK_DEGREE)
            return _mehler_mp(cls, cf, cg, quad, q11, q12, q22, cls.mehler_slope)

        def fdiff(self, argindex: int = 1) -> sp.Expr:
            r"""Price's theorem: :math:`\partial_{q_{12}}E[f g] = E[f' g']`,
            :math:`\partial_{q_{11}}E[f g] = \tfrac12 E[f'' g]` (likewise in q22; refused where the
            activations have kinks, whose second derivatives are distributions)."""
            return _mehler_fdiff(f, g, self.mehler_orders, tol, self.args, argindex)

        def _latex(self, printer: LatexPrinter, exp: str | None = None) -> str:
            args = ", ".join(printer._print(a) for a in self.args)
            body = rf"{label(*self.mehler_orders)}\!\left({args}\right)"
            return body if exp is None else rf"\left({body}\right)^{{{exp}}}"

    if joint:
        class Slope(Mehler):
            __doc__ = (f"E[{f.name}'(u) {g.name}'(v)] = d/dq12 of the Mehler series of E[{f.name}(u) {g.name}(v)], "
                       "from the same coefficients at the same per-entry orders; see MehlerSeries.")
            mehler_slope = True
            mehler_base = Mehler
            mehler_orders = (kf + 1, kg + 1)

        Mehler.mehler_slope_class = Slope
        _node_class("MehlerSlope", ("MehlerSlope", f.name, f.family, g.name, g.family, tol), lambda: Slope)
    return Mehler


def _mehler_fdiff(f: Activation, g: Activation, orders: tuple[int, int], tol: float,
                  args: tuple[sp.Basic, ...], argindex: int) -> sp.Expr:
    r"""Price's theorem on the series node of :math:`E[f^{(k_f)}g^{(k_g)}]`: the q12 derivative raises
    both orders, the q11 (q22) derivative is half the series with two more derivatives on f (g)."""
    kf, kg = orders
    if argindex == 2:
        return _mehler_class(f, g, (kf + 1, kg + 1), tol)(*args)
    if argindex not in (1, 3):
        raise sp.ArgumentIndexError(f"E[{f.name} {g.name}]", argindex)
    if _integrand(f, g, orders)[2]:
        raise Unsupported("argindex", f"E[{f.name} {g.name}] by its Mehler series is differentiable "
                                      "in q12 only: its activations have kinks")
    step = (kf + 2, kg) if argindex == 1 else (kf, kg + 2)
    return _mehler_class(f, g, step, tol)(*args) / 2


def _mehler_mp(cls: type[MehlerSeries], cf: _Compiled, cg: _Compiled, fallback: type[NumericFunction],
               q11: MpReal, q12: MpReal, q22: MpReal, slope: bool) -> mpmath.mpf:
    r"""The series node ``cls`` (coefficients of ``cf``, ``cg``) in mpmath: the order the float64 path
    chooses for the entry, the coefficients at working precision (:func:`_mp_coefficients`); the
    slope is :math:`\sum_n n\,a_nb_n\rho^{n-1}/\sqrt{q_{11}q_{22}}`; ``fallback`` (a quadrature
    node) where no order certifies the entry."""
    q11, q12, q22 = (mpmath.mpf(a) for a in (q11, q12, q22))
    if cls.mehler_zero:
        return mpmath.mpf(0)
    N = int(cls.entry_orders(float(q11), float(q12), float(q22)))
    if N < 0 and cf is cg and q11 == q12 == q22:            # the whole series: Parseval's total
        comp = _compiled(cf.act, cf.derivative + 1) if slope else cf
        return _mp_coefficients(comp, q11, 0)[1]
    if N < 0 or (slope and not (q11 > 0 and q22 > 0)):
        return fallback.mpmath_impl(q11, q12, q22)
    a = _mp_coefficients(cf, q11, N)[0]
    b = a if cf is cg and q22 == q11 else _mp_coefficients(cg, q22, N)[0]
    rho = q12 / mpmath.sqrt(q11 * q22) if q11 > 0 and q22 > 0 else mpmath.mpf(0)
    rho = min(max(rho, mpmath.mpf(-1)), mpmath.mpf(1))
    start, by = (0, 1) if cls.mehler_parity is None else (cls.mehler_parity, 2)
    if not slope:
        return mpmath.fsum(a[n] * b[n] * rho ** n for n in range(start, N + 1, by))
    return mpmath.fsum(n * a[n] * b[n] * rho ** (n - 1) for n in range(max(start, 1), N + 1, by)) \
        / mpmath.sqrt(q11 * q22)


_FALLBACK_DEGREE = 32      # Gauss-Legendre nodes per panel where no order <= 401 certifies an entry (1e-12)
#: sides of this many variances (a Gram matrix's per-point chain: every point at once) are kept as
#: pools, from which the sides of its tiles' rows and columns are gathered instead of recomputed
_POOL_MIN, _POOL_MAX, _POOLS = 512, 1 << 16, 4


def _side_bytes(sides: Iterable[MehlerSide]) -> int:
    """The bytes the arrays of ``sides`` hold."""
    return sum(a.nbytes for s in sides for a in s if isinstance(a, np.ndarray))


def _pooled_side(pool: tuple[int, np.ndarray, np.ndarray, MehlerSide], q: np.ndarray,
                 length: int) -> MehlerSide | None:
    """The side of the variances ``q`` gathered from a pooled side that holds every one of them
    (the same per-variance values, hence the same bits), or None."""
    _, sorted_q, order, side = pool
    if side.coeffs.shape[0] <= length or not sorted_q.size:
        return None
    pos = np.minimum(np.searchsorted(sorted_q, q), sorted_q.size - 1)
    if not np.array_equal(sorted_q[pos], q):
        return None
    idx = order[pos]
    slope = None if side.slope_thresholds is None else np.ascontiguousarray(side.slope_thresholds[:, idx])
    return MehlerSide(np.ascontiguousarray(side.coeffs[:, idx]), np.ascontiguousarray(side.thresholds[:, idx]),
                      side.caps[idx], side.inv_sqrt[idx], np.ascontiguousarray(side.value_thresholds[:, idx]),
                      slope, side.totals[idx])


def _mehler_side(rows: _HermiteRows, q: np.ndarray, groups: tuple[int, ...], tol: float,
                 length: int, slope: bool) -> MehlerSide:
    r"""The :class:`~symbrg.core.special.MehlerSide` of the variances ``q``: coefficients to the
    largest order any entry may use (at least ``length``), the thresholds
    :math:`U(N_g)^2 = (\mathrm{tol}/T(N_g))^{1/(N_g+1)}` (and, with ``slope``, the slope's
    :math:`U'(N_g)^2 = (\mathrm{tol}\,q/T^{(1)}(N_g))^{1/N_g}`, the orders deciding by the smaller) and
    the caps (the first group at which every tail is at its rounding floor, :math:`10^{-15}` of its total)."""
    values = rows.rows(q)                                             # (orders + 2, n)
    a = values[:_ROWS]
    N = np.asarray(groups, dtype=float)
    square = a * a
    kinds = [(values[_ROWS], _partial_sums(square, groups), 1.0 / (N + 1.0), np.full((1, q.size), tol))]
    if slope:
        square *= np.arange(_ROWS, dtype=float)[:, None]
        kinds.append((values[_ROWS + 1], _partial_sums(square, groups), 1.0 / N, tol * q[None, :]))
    at, caps = [], np.zeros(q.size, dtype=np.intp)
    with np.errstate(invalid="ignore"):
        for tot, partial, _, _ in kinds:                               # tails at the group orders, (G, n)
            floor = 1e-15 * tot
            tails = np.maximum(tot[None, :] - partial, 0.0) + floor[None, :]
            low = tails <= 2 * floor[None, :]
            caps = np.maximum(caps, np.where(low.any(axis=0), np.argmax(low, axis=0), len(groups) - 1))
            at.append(tails)
    held = np.minimum(np.arange(len(groups))[:, None], caps[None, :])    # the tails are flat beyond the cap
    thresholds = []
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for tails, (_, _, exponent, scale) in zip(at, kinds):
            T = np.take_along_axis(tails, held, axis=0)
            thresholds.append(np.power(scale / T, exponent[:, None]))   # U^2, (G, n)
        inv_sqrt = np.where(q > 0, 1.0 / np.sqrt(np.where(q > 0, q, 1.0)), 0.0)
    inv_sqrt[~np.isfinite(q) | (q < 0)] = np.nan
    decide = thresholds[0] if not slope else np.minimum(thresholds[0], thresholds[1])
    top = max(length, groups[int(caps.max(initial=0))])
    with np.errstate(divide="ignore", invalid="ignore"):
        totals = np.column_stack([values[_ROWS], np.where(q > 0, values[_ROWS + 1] / np.where(q > 0, q, 1.0),
                                                          rows.slope_at_zero())])
    return MehlerSide(a[:top + 1], decide, caps.astype(np.intp), inv_sqrt,
                      thresholds[0], thresholds[1] if slope else None, totals)


def _partial_sums(terms: np.ndarray, at: tuple[int, ...]) -> np.ndarray:
    """The running sums of the rows of ``terms`` at the rows ``at``, (len(at), n), added row by row in
    order (so each column's sums are the same bits whatever the other columns)."""
    acc = np.zeros(terms.shape[1])
    out = np.empty((len(at), terms.shape[1]))
    want = dict(zip(at, range(len(at))))
    for i in range(max(at) + 1):
        acc += terms[i]
        if i in want:
            out[want[i]] = acc
    return out


def _tex_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9:,.]", "", name)[:24] or "f"


def _polynomial_degree(act: Activation, derivative: bool) -> int | None:
    if act.family not in ("polynomial", "affine"):
        return None
    deg = sp.Poly(act.expr, X).degree() if act.expr != 0 else 0
    return max(deg - 1, 0) if derivative else deg


def _series(f: Activation, g: Activation, derivative: bool, tol: float, variance_range: tuple[float, float],
            forced: bool) -> Expectation | None:
    A, B = _hermite_coefficient_class(f, derivative), _hermite_coefficient_class(g, derivative)
    rho = Q12 / (sp.sqrt(Q11) * sp.sqrt(Q22))
    degrees = [_polynomial_degree(a, derivative) for a in (f, g)]
    if any(d is not None for d in degrees):   # a polynomial's Mehler series ends: exact at its degree
        order = min(d for d in degrees if d is not None)
        expr = sp.Add(*[A(n, Q11) * B(n, Q22) * rho ** n for n in range(order + 1)])
        return Expectation(expr, "series", "mehler", order=order, bound=0.0, bound_expr=sp.Integer(0),
                           variance_range=(float(variance_range[0]), float(variance_range[1])), f=f, g=g, derivative=derivative)
    grid = np.geomspace(variance_range[0], variance_range[1], 9)
    cf, cg = _compiled(f, derivative), _compiled(g, derivative)
    tf = _tails(cf, grid).max(axis=0)
    tg = tf if (g == f) else _tails(cg, grid).max(axis=0)
    bound = np.sqrt(tf * tg)
    ok = np.nonzero(bound <= tol)[0]
    if ok.size == 0:
        if not forced:
            return None
        raise ConvergenceError("tol", f"the Mehler series of E[{f.name} {g.name}] needs more than {_N_MAX} "
                                      f"terms for tol={tol:g} on variances {variance_range} (its bound at "
                                      f"N={_N_MAX} is {bound[-1]:.3g}); use method='quadrature'")
    order = int(ok[0])
    # two-level Horner in rho (blocks of 16, then in rho^16): shallow trees, and rho^16 kept as a
    # power of rho (sympy would otherwise write q12^16/(q11^8 q22^8), which underflows for small q)
    blocks = []
    for start in range(0, order + 1, 16):
        stop = min(start + 15, order)
        inner = A(stop, Q11) * B(stop, Q22)
        for n in range(stop - 1, start - 1, -1):
            inner = sp.Add(A(n, Q11) * B(n, Q22), sp.Mul(rho, inner, evaluate=False), evaluate=False)
        blocks.append(inner)
    rho16 = sp.Pow(rho, 16, evaluate=False)
    expr = blocks[-1]
    for inner in reversed(blocks[:-1]):
        expr = sp.Add(inner, sp.Mul(rho16, expr, evaluate=False), evaluate=False)
    TA, TB = _hermite_tail_class(f, derivative), _hermite_tail_class(g, derivative)
    bound_expr = sp.sqrt(TA(order, Q11) * TB(order, Q22))
    node = _mehler_class(f, g, (int(derivative), int(derivative)), tol)(Q11, Q12, Q22)
    return Expectation(expr, "series", "mehler", order=order, bound=float(bound[order]),
                       bound_expr=bound_expr, variance_range=(float(variance_range[0]), float(variance_range[1])), f=f, g=g,
                       derivative=derivative, vectorized=node)


def _orders(derivative: Orders) -> tuple[int, int]:
    """Derivative orders (k_f, k_g) from an int (the same for both) or a pair."""
    if isinstance(derivative, tuple):
        return int(derivative[0]), int(derivative[1])
    return int(derivative), int(derivative)


def _integrand(f: Activation, g: Activation, derivative: Orders
               ) -> tuple[_NumpyIntegrand, _MpmathIntegrand, bool]:
    """(numpy h(u, v), mpmath h(u, v), has_kinks) with E = E[h(u, v)], h = f^(kf)(u) g^(kg)(v)."""
    kf, kg = _orders(derivative)
    if f.random_phase or g.random_phase:
        if not (f.random_phase and g.random_phase):
            return (lambda u, v: np.zeros(np.broadcast(u, v).shape)), (lambda u, v: mpmath.mpf(0)), False
        (a1, b1), (a2, b2) = ((float(x) for x in f.params), (float(x) for x in g.params))
        # E_c[cos(b1 u + c) cos(b2 v + c)] = cos(b1 u - b2 v)/2; each derivative multiplies by b and
        # shifts the phase by pi/2
        s, shift = a1 * a2 * b1 ** kf * b2 ** kg / 2, (kf - kg) * math.pi / 2
        return ((lambda u, v: s * np.cos(b1 * u - b2 * v + shift)),
                (lambda u, v: s * mpmath.cos(b1 * u - b2 * v + shift)), False)
    cf, cg = _compiled(f, kf), _compiled(g, kg)
    kinks = any(e.has(sp.Heaviside, sp.Max, sp.Min, sp.Abs, sp.sign, sp.Piecewise)
                for e in (f.expr, g.expr))
    return ((lambda u, v: cf.np_eval(u) * cg.np_eval(v)), (lambda u, v: cf.mpmath(u) * cg.mpmath(v)), kinks)


_GAUSS_CUT = 10.0     # |z| <= 10: the standard normal mass beyond is 1.5e-23
_PANELS = 4           # Gauss-Legendre panels on each side of a split point


@cache
def _gauss_legendre(degree: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(degree)


def _quadrature_class(f: Activation, g: Activation, derivative: Orders, degree: int) -> type[NumericFunction]:
    r"""A node for :math:`E[h(u,v)]`, :math:`u = \sqrt{q_{11}}z_1`, :math:`v = \alpha z_1 + \beta z_2`,
    :math:`\alpha = q_{12}/\sqrt{q_{11}}`, :math:`\beta = \sqrt{\Delta/q_{11}}`.

    NumPy: a composite Gauss–Legendre product rule on :math:`[-10, 10]^2` (the normal mass outside
    is 1.5e-23), split where the kinks of the activations sit (outer at :math:`z_1 = 0`, inner at
    :math:`z_2 = -\alpha z_1/\beta`, i.e. u = 0 and v = 0), each side cut into 4 panels of
    ``degree`` nodes.  It keeps spectral accuracy for kinks (ReLU, step) and for activations with
    poles near the real axis (tanh at large variance), where a global Gauss–Hermite rule
    converges slowly (neural-tangents calls its GH rule "not recommended" for ReLU).
    mpmath: nested ``mpmath.quad`` (Gauss–Legendre) on the same pieces at working precision,
    truncated where the Gaussian mass is below the working epsilon.
    """
    orders = _orders(derivative)
    key = ("Quadrature", f.name, f.family, g.name, g.family, orders, degree)
    return _node_class("GaussianQuadrature", key, lambda: _build_quadrature(f, g, orders, degree))


def _build_quadrature(f: Activation, g: Activation, derivative: tuple[int, int], degree: int) -> type:
    h_np, h_mp, kinks = _integrand(f, g, derivative)
    x, wx = _gauss_legendre(degree)
    # composite rule: _PANELS panels of `degree` Gauss-Legendre nodes on each of [-L, a] and [a, L]
    t = (np.arange(_PANELS)[:, None] + (x[None, :] + 1) / 2).ravel() / _PANELS       # in (0, 1)
    wt = np.tile(wx / (2 * _PANELS), _PANELS)
    z1, w1 = _split_rule(np.zeros(1), t, wt)
    fn, gn = (rf"\varphi{chr(39) * k}_{{\mathrm{{{_tex_name(a.name)}}}}}"
              for a, k in zip((f, g), derivative))

    class Quadrature(_GaussianQuadrature):
        __doc__ = (f"E[{f.name}{chr(39) * derivative[0]}(u) {g.name}{chr(39) * derivative[1]}(v)] by "
                   f"quadrature of degree {degree}: NumPy composite Gauss–Legendre split at the kinks, "
                   "mpmath nested mpmath.quad split at the kinks.")
        nargs = 3

    Quadrature._quad_pair, Quadrature._quad_orders, Quadrature._quad_degree = (f, g), derivative, degree
    Quadrature._quad_h_np, Quadrature._quad_h_mp, Quadrature._quad_kinks = h_np, h_mp, kinks
    Quadrature._quad_rule, Quadrature._quad_outer = (t, wt), (z1, w1)
    Quadrature._quad_label = rf"\mathbb{{E}}\left[{fn}(u)\,{gn}(v)\right]"
    return Quadrature


def _split_rule(a: np.ndarray, t: np.ndarray, wt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and Gaussian-weighted weights on [-L, a] U [a, L], a of any shape (last axis: nodes), from
    the composite rule ``(t, wt)`` on (0, 1)."""
    L = _GAUSS_CUT
    z = np.concatenate([-L + (a + L) * t, a + (L - a) * t], axis=-1)
    w = np.concatenate([(a + L) * wt, (L - a) * wt], axis=-1)
    return z, w * np.exp(-z * z / 2) / math.sqrt(2 * math.pi)


class _GaussianQuadrature(NumericFunction):
    """The quadrature node of :func:`_quadrature_class`, one subclass per (f, g, orders, degree);
    :func:`_build_quadrature` sets the ``_quad_*`` attributes: the activations, derivative orders and
    degree, the integrands and whether they have kinks, the composite rule on (0, 1), the outer nodes
    and weights, and the LaTeX label."""
    _quad_pair: tuple[Activation, Activation]
    _quad_orders: tuple[int, int]
    _quad_degree: int
    _quad_h_np: _NumpyIntegrand
    _quad_h_mp: _MpmathIntegrand
    _quad_kinks: bool
    _quad_rule: tuple[np.ndarray, np.ndarray]
    _quad_outer: tuple[np.ndarray, np.ndarray]
    _quad_label: str

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        r"""Price's theorem: :math:`\partial_{q_{12}}E[f g] = E[f' g']`,
        :math:`\partial_{q_{11}}E[f g] = \tfrac12 E[f'' g]` (and likewise in q22).  The
        variance rule needs second derivatives, which for activations with kinks are
        distributions: refused there rather than silently dropped."""
        (f, g), (kf, kg), degree = self._quad_pair, self._quad_orders, self._quad_degree
        if argindex == 2:
            return _quadrature_class(f, g, (kf + 1, kg + 1), degree)(*self.args)
        if self._quad_kinks:
            raise Unsupported("argindex", f"E[{f.name} {g.name}] by quadrature is differentiable in "
                                          "q12 only: its activations have kinks")
        step = (kf + 2, kg) if argindex == 1 else (kf, kg + 2)
        return _quadrature_class(f, g, step, degree)(*self.args) / 2

    @classmethod
    def _inner_nodes(cls, alpha: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """z2 nodes/weights per (entry, z1), split where v = alpha z1 + beta z2 crosses 0."""
        z1 = cls._quad_outer[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            k = np.where(beta[:, None] > 0, -alpha[:, None] * z1[None, :] / beta[:, None], np.inf)
        k = np.clip(np.nan_to_num(k, nan=0.0), -_GAUSS_CUT, _GAUSS_CUT)[..., None]
        return _split_rule(k, *cls._quad_rule)

    @classmethod
    def numpy_impl(cls, q11: ArrayLike, q12: ArrayLike, q22: ArrayLike) -> np.ndarray:
        q11, q12, q22 = (np.asarray(a, dtype=float) for a in np.broadcast_arrays(q11, q12, q22))
        shape = q11.shape
        q11, q12, q22 = q11.ravel(), q12.ravel(), q22.ravel()
        det = GramDet.numpy_impl(q11, q12, q22)
        r1 = np.sqrt(q11)
        alpha, beta = q12 / r1, np.sqrt(det / q11)
        out = np.empty(q11.shape)
        z1, w1 = cls._quad_outer
        block = max(1, 2 ** 21 // (z1.size * z1.size))        # bounded memory (~16 MB) per block
        for s in range(0, q11.size, block):
            sl = slice(s, s + block)
            z2, w2 = cls._inner_nodes(alpha[sl], beta[sl])
            u = r1[sl, None, None] * z1[None, :, None]
            v = alpha[sl, None, None] * z1[None, :, None] + beta[sl, None, None] * z2
            inner = np.sum(cls._quad_h_np(u, v) * w2, axis=-1)
            out[sl] = inner @ w1
        return out.reshape(shape)

    @classmethod
    def mpmath_impl(cls, q11: MpReal, q12: MpReal, q22: MpReal) -> mpmath.mpf:
        q11, q12, q22 = (mpmath.mpf(a) for a in (q11, q12, q22))
        det = GramDet.mpmath_impl(q11, q12, q22)
        r1 = mpmath.sqrt(q11)
        alpha, beta = q12 / r1, mpmath.sqrt(det / q11)
        L = mpmath.sqrt(2 * mpmath.log(10) * (mpmath.mp.dps + 8))
        h_mp, kinks = cls._quad_h_mp, cls._quad_kinks

        def inner(z1: mpmath.mpf) -> mpmath.mpf:
            u = r1 * z1
            if beta == 0:
                return h_mp(u, alpha * z1)
            k = -alpha * z1 / beta
            pts = [-L, k, L] if (kinks and -L < k < L) else [-L, L]
            return mpmath.quad(lambda z2: h_mp(u, alpha * z1 + beta * z2) * mpmath.npdf(z2), pts,
                               method="gauss-legendre")

        return mpmath.quad(lambda z1: inner(z1) * mpmath.npdf(z1), [-L, 0, L], method="gauss-legendre")

    def _latex(self, printer: LatexPrinter, exp: str | None = None) -> str:
        args = ", ".join(printer._print(a) for a in self.args)
        body = rf"{self._quad_label}_{{\mathrm{{quad}}{self._quad_degree}}}\!\left({args}\right)"
        return body if exp is None else rf"\left({body}\right)^{{{exp}}}"


# ---------------------------------------------------------------------------------------------
# The public entry point.
# ---------------------------------------------------------------------------------------------

def expectation(f: ActivationSpec, g: ActivationSpec | None = None, *, derivative: bool = False, tol: float = 1e-10, method: str = "auto",
                variance_range: tuple[float, float] = (1e-2, 4.0), degree: int = 20) -> Expectation:
    r""":math:`E[f(u)g(v)]` (or :math:`E[f'(u)g'(v)]` with ``derivative``) for
    :math:`(u,v)\sim N(0,[[q_{11},q_{12}],[q_{12},q_{22}]])`, as an expression in Q11, Q12, Q22.

    f, g: an :class:`~symbrg.gaussian.activations.Activation` or anything :func:`~symbrg.gaussian.activations.activation`
    accepts (name, sympy Lambda, expression); g defaults to f.  Mixed pairs have closed forms within
    a family (erf with erf of other scales, rectified m with rectified n, sin with sin of other
    phases, ...) and for a polynomial (affine) against any closed-form family.
    method: ``"auto"`` (closed form, else Mehler series, else quadrature) or one of
    ``"exact"``, ``"series"``, ``"quadrature"`` to force it (``"exact"`` raises
    :class:`~symbrg.core.errors.Unsupported` when there is no closed form).
    tol: target truncation error of the series (its Parseval bound, on ``variance_range``).
    variance_range: (smallest, largest) variance on which the series order is certified.
    degree: Gauss–Legendre nodes per panel of the NumPy quadrature node (8 panels per axis).
    Convention: derivatives are almost-everywhere derivatives (step and sign have none).
    """
    tol = checks.positive("tol", tol)
    checks.choice("method", method, METHODS)
    degree = checks.integer("degree", degree, minimum=2, maximum=400)
    lo = checks.positive("variance_range", variance_range[0])
    hi = checks.positive("variance_range", variance_range[1])
    if hi < lo:
        raise InvalidArgument("variance_range", f"needs (smallest, largest), got {variance_range}")
    fa = activation(f)
    ga = fa if g is None else activation(g)
    return _expectation(fa, ga, bool(derivative), float(tol), method, (float(lo), float(hi)), degree)


@lru_cache(maxsize=256)
def _expectation(f: Activation, g: Activation, derivative: bool, tol: float, method: str,
                 variance_range: tuple[float, float], degree: int) -> Expectation:
    if method in ("auto", "exact"):
        out = _exact(f, g, derivative) or _registered(f, g, derivative)
        if out is not None:
            return Expectation(out[0], "exact", out[1], f=f, g=g, derivative=derivative)
        if method == "exact":
            raise Unsupported("method", f"no closed form known for E[{f.name}{chr(39) * derivative}(u) "
                                        f"{g.name}{chr(39) * derivative}(v)]; use method='auto', 'series' "
                                        "or 'quadrature'")
    if method in ("auto", "series") and not (f.random_phase or g.random_phase):
        series = _series(f, g, derivative, tol, variance_range, forced=(method == "series"))
        if series is not None:
            return series
    if method == "series":
        raise Unsupported("method", "the uniform-phase cosine has no Mehler series in this engine (the phase "
                                    "couples u and v); use 'exact' or 'quadrature'")
    Q = _quadrature_class(f, g, derivative, degree)
    return Expectation(Q(Q11, Q12, Q22), "quadrature", f"quadrature-{degree}", degree=degree, f=f, g=g,
                       derivative=derivative)


_CITES = {"arccos": "ChoSaul2009", "erf": "Williams1997", "gelu": "Tsuchida2020", "mehler": "Mehler1866",
          "price": "Price1958"}   # keys of symbrg.core.references


def expectation_derivation(f: ActivationSpec, g: ActivationSpec | None = None, *, derivative: bool = False,
                           **kwargs: Any) -> Derivation:  # Any: the options of expectation(), of several types
    r"""A :class:`symbrg.core.derivation.Derivation` of :math:`E[f(u)g(v)]` (or of the derivative kernel):
    the definition, the rule and its closed form (or the series/quadrature it rests on), verified
    numerically against the split Gauss–Legendre quadrature and, for the derivative kernel of a
    closed form, against Price's theorem :math:`\partial_{q_{12}}E[fg] = E[f'g']`."""
    from symbrg.core.derivation import Derivation
    e = expectation(f, g, derivative=derivative, **kwargs)
    fa, ga = e.pair
    prime = "'" if derivative else ""
    tag = f"{_tex_name(fa.name)}-{_tex_name(ga.name)}{'-prime' if derivative else ''}".replace(":", "")
    d = Derivation(f"Gaussian expectation E[{fa.name}{prime}(u) {ga.name}{prime}(v)]",
                   r"For $(u, v)\sim\mathcal N(0, \Sigma)$ with $\Sigma = \begin{pmatrix}q_{11}&q_{12}\\"
                   r"q_{12}&q_{22}\end{pmatrix}$ and $\Delta = q_{11}q_{22} - q_{12}^2$.",
                   name=f"gaussian-{tag}")
    u, v = symbols("u v")
    fe = (fa.derivative_expr if derivative else fa.expr).subs(X, u)
    ge = (ga.derivative_expr if derivative else ga.expr).subs(X, v)
    density = sp.exp(-(Q22 * u ** 2 - 2 * Q12 * u * v + Q11 * v ** 2) / (2 * GramDet(Q11, Q12, Q22))) \
        / (2 * sp.pi * sp.sqrt(GramDet(Q11, Q12, Q22)))
    E = sp.Symbol(r"\mathbb{E}")
    d.step(sp.Eq(E, sp.Integral(fe * ge * density, (u, -sp.oo, sp.oo), (v, -sp.oo, sp.oo)), evaluate=False),
           "definition" + (" (a.e. derivatives: jumps of step and sign carry none)" if derivative else ""),
           f"eq:{d.name}-def", assumptions=(r"q_{11} > 0", r"q_{22} > 0", r"q_{12}^2 \le q_{11} q_{22}"))
    cites = tuple(_CITES[k] for k in _CITES if k in e.rule or (k == "price" and derivative))
    if e.method == "exact":
        _exact_result_step(d, e, E, cites)
        if derivative and not any(_has_jumps(a) for a in (fa, ga)):
            _price_step(d, e, E)    # with jumps Price's theorem adds delta terms the a.e. kernel omits
    elif e.method == "series":
        d.step(sp.Eq(E, e.display, evaluate=False),
               f"Mehler series truncated at order {e.order}; Parseval bound {e.bound:.2e} on variances "
               f"{e.variance_range}", f"eq:{d.name}-result", uses=(f"eq:{d.name}-def",), cites=cites)
    else:
        d.step(sp.Eq(E, e.expr, evaluate=False),
               f"2-D composite Gauss-Legendre quadrature, {e.degree} nodes per panel", f"eq:{d.name}-result",
               uses=(f"eq:{d.name}-def",))
    return d


def _exact_result_step(d: Derivation, e: Expectation, E: sp.Symbol, cites: tuple[str, ...]) -> None:
    """The closed form, verified against the split Gauss-Legendre quadrature at three covariances."""
    from symbrg.core.derivation import Verification
    fa, ga = e.pair
    q = expectation(fa, ga, derivative=e.derivative, method="quadrature", degree=24)
    pts = [(1.3, -0.4 * math.sqrt(1.3 * 0.7), 0.7), (0.5, 0.45, 2.0), (2.0, -1.9, 1.9)]
    ex, qu = e.compile(), q.compile()
    errs = [abs(float(ex(*p)) - float(qu(*p))) for p in pts]
    scale = max(1.0, *(abs(float(ex(*p))) for p in pts))
    ver = Verification(kind="numeric", points=len(pts), dps=16, max_abs_error=max(errs),
                       tolerance=1e-9 * scale, note="against 2-D composite Gauss-Legendre quadrature")
    d.step(sp.Eq(E, e.explicit(), evaluate=False), f"closed form by the rule(s) {e.rule}",
           f"eq:{d.name}-result", verification=ver, uses=(f"eq:{d.name}-def",), cites=cites)


def _price_step(d: Derivation, e: Expectation, E: sp.Symbol) -> None:
    r"""Price's theorem :math:`\partial_{q_{12}}E[fg] = E[f'g']` against the closed derivative kernel ``e``
    (when :math:`E[fg]` itself has a closed form)."""
    from symbrg.core.derivation import check_identity
    fa, ga = e.pair
    base = expectation(fa, ga)
    if base.method == "exact":
        ver = check_identity(sp.diff(base.explicit(), Q12), e.explicit(),
                             domain={Q11: (1.0, 2.0), Q22: (1.0, 2.0), Q12: (-0.9, 0.9)}, points=6,
                             dps=30, simplify=False)
        d.step(sp.Eq(E, sp.Derivative(sp.Symbol(r"\mathbb{E}[f g]"), Q12), evaluate=False),
               "Price's theorem", f"eq:{d.name}-price", verification=ver,
               cites=(_CITES["price"],))


# ---------------------------------------------------------------------------------------------
# Closed forms supplied with a registered activation (checked against quadrature before use).
# ---------------------------------------------------------------------------------------------

#: The variables of a supplied closed form, in the order (k11, k22, k12).
_K11, _K22, _K12 = symbols("k11 k22 k12")
#: Covariances (k11, k22, c) at which a supplied closed form is checked (plus _CHECK_RANDOM seeded ones):
#: equal and unequal variances, c = 0, and |c| near 1 on both sides.
_CHECK_POINTS = ((1.0, 1.0, 0.0), (0.5, 2.0, 0.6), (2.5, 0.7, 0.999999), (1.3, 1.3, -0.999999),
                 (0.3, 3.0, -0.5))
_CHECK_RANDOM = 3
_CHECK_TOL = 1e-8     # relative to sqrt(E[phi(u)^2] E[phi(v)^2]), the Cauchy-Schwarz bound of |E|
_CHECK_DEGREE = 40    # Gauss-Legendre nodes per panel of the reference quadrature


def _has_jumps(act: Activation) -> bool:
    r"""Whether :math:`\varphi` jumps (step, sign), so that Price's theorem gains delta terms."""
    atoms = _atoms(act)
    if atoms is None:
        return act.expr.has(sp.Heaviside, sp.sign, sp.Piecewise)
    return any(atom in _JUMPS for _, atom in _merge(atoms))


def _closed_form(fn: ClosedForm | None, argument: str) -> sp.Lambda | None:
    """``fn`` (a sympy ``Lambda`` of three variables or a callable returning a sympy expression) as
    ``Lambda((k11, k22, k12), expr)``; None stays None.  Text is refused (it is never parsed here)."""
    if fn is None:
        return None
    if isinstance(fn, sp.Lambda):
        if len(fn.variables) != 3:
            raise InvalidArgument(argument, f"a closed form is a Lambda of (k11, k22, k12), got "
                                            f"{len(fn.variables)} variable(s)")
        expr = fn.expr.xreplace(dict(zip(fn.variables, (_K11, _K22, _K12))))
    elif callable(fn) and not isinstance(fn, (str, sp.Basic)):
        try:
            expr = fn(_K11, _K22, _K12)
        except Exception as exc:
            raise InvalidArgument(argument, f"calling the closed form on sympy symbols (k11, k22, k12) "
                                            f"failed: {type(exc).__name__}: {exc}") from exc
        if isinstance(expr, (int, float)) and not isinstance(expr, bool):
            expr = sp.Float(expr) if isinstance(expr, float) else sp.Integer(expr)
    else:
        raise InvalidArgument(argument, f"expected a sympy Lambda of (k11, k22, k12) or a callable, "
                                        f"got {type(fn).__name__}")
    if not isinstance(expr, sp.Expr):
        raise InvalidArgument(argument, f"the closed form must be a sympy expression, got {type(expr).__name__}")
    extra = expr.free_symbols - {_K11, _K22, _K12}
    if extra:
        raise InvalidArgument(argument, f"the closed form has free symbols {sorted(map(str, extra))} besides "
                                        "(k11, k22, k12)")
    return sp.Lambda((_K11, _K22, _K12), expr)


def _check_closed_form(act: Activation, derivative: bool) -> None:
    r"""Refuse (naming ``nngp`` / ``ntk``) a supplied closed form of :math:`E[\varphi\varphi]` (or
    :math:`E[\varphi'\varphi']`) that differs from the engine's split Gauss–Legendre quadrature by more
    than ``_CHECK_TOL`` relative to :math:`\sqrt{E[\varphi(u)^2]E[\varphi(v)^2]}` at the covariances
    :data:`_CHECK_POINTS` and a few seeded random ones."""
    argument = "ntk" if derivative else "nngp"
    lam = act.ntk if derivative else act.nngp
    if lam is None:
        raise InvalidArgument("ntk" if derivative else "nngp", f"{act.name!r} carries no closed form to check")
    rng = np.random.default_rng(20240527)
    pts = list(_CHECK_POINTS) + [(float(a), float(b), float(c)) for a, b, c in
                                 zip(rng.uniform(0.2, 3.0, _CHECK_RANDOM), rng.uniform(0.2, 3.0, _CHECK_RANDOM),
                                     rng.uniform(-1.0, 1.0, _CHECK_RANDOM))]
    k11, k22, c = (np.array(v) for v in zip(*pts))
    k12 = c * np.sqrt(k11 * k22)
    Q = _quadrature_class(act, act, derivative, _CHECK_DEGREE)
    ref = Q.numpy_impl(k11, k12, k22)
    scale = np.sqrt(np.abs(Q.numpy_impl(k11, k11, k11) * Q.numpy_impl(k22, k22, k22)))
    fn = sp.lambdify((_K11, _K22, _K12), lam.expr, modules="mpmath")
    with mpmath.workdps(30):
        for a, b, q, r, s in zip(k11, k22, k12, ref, scale):
            try:
                val = complex(fn(mpmath.mpf(a), mpmath.mpf(b), mpmath.mpf(q)))
            except Exception as exc:
                raise InvalidArgument(argument, f"the closed form cannot be evaluated at k11={a:.6g}, "
                                                f"k22={b:.6g}, k12={q:.6g}: {type(exc).__name__}: {exc}") from exc
            if not (math.isfinite(val.real) and abs(val.imag) <= _CHECK_TOL * max(s, 1e-300)
                    and abs(val.real - r) <= _CHECK_TOL * max(s, 1e-300)):
                what = "E[phi'(u) phi'(v)]" if derivative else "E[phi(u) phi(v)]"
                raise InvalidArgument(argument, f"the closed form of {what} for {act.name!r} is wrong: at "
                                                f"k11={a:.6g}, k22={b:.6g}, k12={q:.9g} it gives {val.real:.12g}, "
                                                f"quadrature gives {r:.12g} (tolerance {_CHECK_TOL:g} x {s:.3g})")


@cache
def _checked(act: Activation, derivative: bool) -> sp.Expr:
    """The supplied closed form of ``act`` in Q11, Q12, Q22, checked once (also for activations that
    reach the registry from a plugin without :func:`register_activation`)."""
    _check_closed_form(act, derivative)
    lam = act.ntk if derivative else act.nngp
    if lam is None:
        raise InvalidArgument("ntk" if derivative else "nngp", f"{act.name!r} carries no closed form to check")
    return lam(Q11, Q22, Q12)


def _registered(f: Activation, g: Activation, derivative: bool) -> tuple[sp.Expr, str] | None:
    """The closed form supplied with a registered activation, for the pair (f, f) only."""
    if f is not g and not (f == g and f.nngp == g.nngp and f.ntk == g.ntk):
        return None
    if (f.ntk if derivative else f.nngp) is None:
        return None
    return _checked(f, derivative), "registered"


def register_activation(name: str, phi: sp.Lambda, *, nngp: ClosedForm | None = None, ntk: ClosedForm | None = None,
                        replace: bool = False) -> Activation:
    r"""Register the activation :math:`\varphi` = ``phi`` under ``name``, usable everywhere a
    built-in name is (``mlp(name, ...)``, Gram matrices, ``symbrg derive nngp --activation name``,
    :func:`symbrg.network`).

    phi: a sympy ``Lambda`` of one variable (a closed-form family such as ``Max(x, 0)`` is recognized
    and gets the engine's closed forms).
    nngp, ntk: optional closed forms of

    .. math::  \mathbb E[\varphi(u)\varphi(v)], \quad \mathbb E[\varphi'(u)\varphi'(v)], \qquad
               (u, v) \sim \mathcal N\!\left(0, \begin{pmatrix} k_{11} & k_{12}\\ k_{12} & k_{22}
               \end{pmatrix}\right),

    as a sympy ``Lambda`` of :math:`(k_{11}, k_{22}, k_{12})` or a Python callable of those three
    sympy symbols returning a sympy expression (as neural-tangents' ``Elementwise(fn, nngp_fn,
    d_nngp_fn)``; :math:`\varphi'` is the almost-everywhere derivative).  Each is checked against
    the engine's quadrature at a few covariances (unequal variances, :math:`|c|` near 1) to
    :math:`10^{-8}` relative and refused (:class:`~symbrg.core.errors.InvalidArgument` naming
    ``nngp`` / ``ntk``) when wrong.  Without one the engine's Mehler series / quadrature is used; for
    a recognized family the engine's own closed form is preferred (it carries the c -> 1 gap).
    name: letters, digits, ``_``, ``-``, ``.`` (no colon: ``name:args`` is reserved for built-ins);
    a built-in name is refused, a registered one unless ``replace``.  Objects built before a
    replacement (architectures, networks) keep the activation they were built with.
    """
    key = new_name(name, replace=replace)
    if not isinstance(phi, sp.Lambda) or len(phi.variables) != 1:
        raise InvalidArgument("phi", f"expected a sympy Lambda of one variable, got {phi!r}")
    extra = phi.expr.free_symbols - set(phi.variables)
    if extra:
        raise InvalidArgument("phi", f"the activation has free symbols {sorted(map(str, extra))} besides its "
                                     "variable")
    import dataclasses
    act = dataclasses.replace(activation(phi), name=key, nngp=_closed_form(nngp, "nngp"),
                              ntk=_closed_form(ntk, "ntk"))
    if act.random_phase:     # pragma: no cover - a Lambda never has a random phase
        raise InvalidArgument("phi", "random-phase activations are built in (cosnet)")
    probe = act(np.linspace(-3.0, 3.0, 13))
    if not np.all(np.isfinite(probe)):
        raise InvalidArgument("phi", f"{act.name!r} is not finite on [-3, 3]")
    _forget(key)      # the engine's caches are keyed by name: a replaced or refused phi must not linger
    try:
        for derivative in (False, True):
            if (act.ntk if derivative else act.nngp) is not None:
                _check_closed_form(act, derivative)
    except InvalidArgument:
        _forget(key)
        raise
    return register(act, replace=replace)


def _forget(name: str) -> None:
    """Drop what the engine cached for the activation ``name`` (when one is registered under it).  Node
    keys are retired, not deleted, so that node class names stay unique."""
    stale = [k for k in _NODE_REGISTRY if name in k[1:]]
    if not stale and name not in names():
        return
    for cached in (_expectation, _compiled, gap_map, _checked, _hermite_rows):
        cached.cache_clear()
    for key in stale:     # a retired key is unique, so the count per prefix (the next index) never drops
        _NODE_REGISTRY[(key[0], ("retired", next(_RETIRED)) + key[1:])] = _NODE_REGISTRY.pop(key)


_RETIRED = itertools.count()
