r"""Regulators of the exact RG and the threshold functions they induce.

Job: one object per momentum cutoff, usable on both sides of the exact RG.  A regulator is defined
by its **UV cutoff function** :math:`K(z)`, :math:`z = p^2/\Lambda^2` (:math:`K \to 1` for
:math:`z \to 0`, :math:`K \to 0` for :math:`z \to \infty`), which enters the Polchinski flow through
the cut-off covariance

.. math::  C_\Lambda(p) = K(p^2/\Lambda^2)\, G(p^2), \qquad G = 1/G^{-1}(p^2),

and, dually, by the **IR regulator** of the Wetterich flow, chosen so that the regulated propagator
keeps exactly the modes the UV covariance drops, :math:`(G^{-1} + R_k)^{-1} = (1 - K)\,G`:

.. math::  R_k(p^2) = Z\,k^2\, r(p^2/k^2), \qquad r(y) = \frac{y\,K(y)}{1 - K(y)}

(for :math:`G^{-1} = Z p^2`).  Built in (``regulator(name)``):

==================  ==============================  ===================================
name                :math:`K(z)`                    :math:`r(y)`
==================  ==============================  ===================================
``sharp``           :math:`\Theta(1 - z)`           :math:`\infty\cdot\Theta(1 - y)`
``litim``           :math:`(1 - z)\Theta(1 - z)`    :math:`(1 - y)\Theta(1 - y)` (Litim, hep-th/0005245)
``exponential``     :math:`e^{-z}`                  :math:`y/(e^{y} - 1)`
``power:b``         :math:`1/(1 + z^b)`             :math:`y^{1-b}` (sharp as b -> oo)
``K:<expr in z>``   any user cutoff function        derived
``r:<expr in y>``   any user regulator shape        :math:`K = r/(y + r)` derived
==================  ==============================  ===================================

**Threshold functions** (convention of this package; :math:`w` the dimensionless mass,
:math:`\eta` the anomalous dimension, :math:`v_d = [(4\pi)^{d/2}\Gamma(d/2+1)]^{-1}` so that
:math:`\int_{|q|<k} d^dq/(2\pi)^d = v_d k^d`):

.. math::

    \ell^d_n(w;\eta) = \frac d2 \int_0^\infty dy\, y^{d/2-1}\,
        \frac{r(y) - y\,r'(y) - \tfrac\eta2\, r(y)}{\big(y + r(y) + w\big)^{n+1}}
        \;=\; A^d_n(w) - \eta\, B^d_n(w),
    \qquad \partial_w \ell^d_n = -(n+1)\,\ell^d_{n+1},

so that the LPA flow reads :math:`\partial_t U_k = v_d k^d\,\ell^d_0(U_k''/Zk^2;\eta)` and for the
Litim regulator :math:`\ell^d_n = (1 - \eta/(d+2))/(1+w)^{n+1}`.  (Relation to Berges, Tetradis,
Wetterich, Phys. Rep. 363 (2002) 223: :math:`l^d_n = \tfrac{2}{d}(n + \delta_{n0})\,\ell^d_n`.)
For the sharp cutoff (Wegner-Houghton) :math:`\ell^d_0 = -\tfrac d2\ln(1+w)` up to a constant.
The anomalous-dimension threshold function (the :math:`p^2` coefficient of the one-loop two-point
flow, after an integration by parts in :math:`y`; :math:`P = y + r`) is

.. math::

    m^d(w;\eta) = -\int_0^\infty dy\, y^{d/2}\,\frac{P'(y)}{(P + w)^2}\,
        \frac{d}{dy}\,\frac{2(r - y r') - \eta\, r}{(P + w)^2} = M^d_a(w) - \eta\, M^d_b(w),

with :math:`\Theta(0) = 1/2` at coinciding jumps (this reproduces the exact momentum-shell limit);
for Litim :math:`m^d = (1+w)^{-4}`.  Closed forms (any symbolic d) exist for ``litim`` and
``sharp``; all other regulators are evaluated by mpmath quadrature: symbolically through
:class:`ThresholdFunction` (a :class:`~symbrg.core.special.NumericFunction`, differentiable in w), and
in bulk by :meth:`Regulator.threshold_batch`, one fixed tanh-sinh rule per (regulator, d,
precision) that returns all :math:`A_j, B_j, M_a, M_b, M_a', M_b'` at a given w in one pass.
Quadrature sees the a.e. derivative of r (user shapes with kinks are fine; jumps are not).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, TypeAlias

import mpmath
import numpy as np
import sympy as sp
from mpmath.calculus.quadrature import TanhSinh

from symbrg.core.calculus import ae_derivative, drop_deltas
from symbrg.core.checks import integer, resolve_symbols, scalar
from symbrg.core.errors import InvalidArgument, NotPositive, OutOfRange, UnknownName, Unsupported
from symbrg.core.limits import Limit
from symbrg.core.parsing import DEFAULT_FUNCTIONS, as_expression, parse_expression, parse_number
from symbrg.core.special import NumericFunction
from symbrg.core.symbols import symbol
from symbrg.core.types import ArrayLike, ExprLike, MpReal, NDArray, Number

if TYPE_CHECKING:
    from sympy.printing.latex import LatexPrinter

__all__ = ["Z", "Y", "W", "ETA", "D", "Regulator", "Sharp", "Litim", "Exponential", "Power", "CutoffRegulator",
           "ShapeRegulator", "regulator", "REGULATORS", "ThresholdFunction", "loop_volume", "angular_factor",
           "dimension", "drop_deltas", "ae_derivative", "threshold_integrand"]

#: :math:`z = p^2/\Lambda^2`, the argument of the UV cutoff function K.
Z = symbol("z")
#: :math:`y = p^2/k^2`, the argument of the IR regulator shape r.
Y = symbol("y")
#: :math:`w`, the dimensionless mass :math:`U''/(Z k^2)` in the threshold functions.
W = symbol("w")
#: :math:`\eta`, the anomalous dimension.
ETA = symbol("eta")
#: :math:`d`, the Euclidean dimension when it is kept symbolic.
D = symbol("d")

REGULATORS = ("sharp", "litim", "exponential", "power:b", "K:<expr in z>", "r:<expr in y>")

#: The least working precision (decimal digits) of the exact-RG numerics: results are printed to 6-12
#: significant digits and the fixed-point tolerance is 10^(10 - dps), so anything below double
#: precision prints noise (``dps = 0`` gave nu = 0.0156 instead of 0.65).
MIN_DPS = 15
#: Working digits of the exact-RG numerics.  Measured (d = 3, order 8): Litim 1.1 s at 30 digits and
#: 4.7 s at 1000 (about quadratic); the exponential regulator (quadrature) 63 s at 30 and 430 s at 100.
DPS = Limit("erg_dps", 1000, "working digits of the exact-RG numerics (LPA fixed points, threshold functions)")
#: Index n of a threshold function: the closed form integrates (y + r + w)^-(n+1) symbolically
#: (Litim: 1.2 s at n = 100, minutes at 1000), quadrature evaluates n + 1 powers at every node.
THRESHOLD_N = Limit("threshold_n", 200, "index n of a threshold function")

#: A dimensionless mass w: a :data:`MpReal` or a sympy expression (a number, or symbolic).
_Mass: TypeAlias = "int | float | mpmath.mpf | sp.Expr"
#: The columns ``(P, ma, mb, c1a, c2a, c1b, c2b)`` of the fixed quadrature rule, one entry per node.
_Columns: TypeAlias = "tuple[list[mpmath.mpf], ...]"
#: A shape's compiled node map y -> (P, r - y r', r/2, P', (r - y r')', r') (mpmath numbers).
_NodeFunctions: TypeAlias = "Callable[[mpmath.mpf], tuple[mpmath.mpf, ...]]"


def working_precision(argument: str, dps: int, closed_form: bool = True) -> int:
    """Check a working precision in decimal digits: an integer >= :data:`MIN_DPS` within the
    :data:`DPS` limit (the cost estimate grows as dps^2 for closed forms, dps^1.6 with quadrature)."""
    dps = integer(argument, dps, minimum=MIN_DPS)
    seconds = 4.7 * (dps / 1000) ** 2 if closed_form else 63 * (dps / 30) ** 1.6
    DPS.check(argument, dps, cost=_duration(seconds))
    return dps


def _duration(seconds: float) -> str:
    """A rough duration for a cost estimate."""
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"about {seconds / size:.3g} {unit}"
    return f"about {seconds:.2g} s"


def _in_variable(argument: str, value: Number, var: sp.Symbol) -> sp.Expr:
    """A user cutoff function K(z) or shape r(y) given as a sympy expression: its symbol named like
    ``var`` (any assumptions) is ``var``; any other symbol is refused (it would make K constant)."""
    expr = as_expression(value, "value")
    if var.name in {s.name for s in expr.free_symbols}:
        expr = expr.xreplace({resolve_symbols(argument, var.name, expr.free_symbols)[0]: var})
    extra = expr.free_symbols - {var}
    if extra:
        raise InvalidArgument(argument, f"may depend on {var} only, not {sorted(map(str, extra))}")
    return expr


def _ambient_precision() -> None:
    """Refuse an mpmath working precision below :data:`MIN_DPS` digits (set by the caller)."""
    if mpmath.mp.dps < MIN_DPS:
        raise OutOfRange("dps", f"the mpmath working precision is {mpmath.mp.dps} digits; at least {MIN_DPS} "
                                "are needed (use mpmath.workdps)")


def loop_volume(d: ExprLike) -> sp.Expr:
    r""":math:`v_d = [(4\pi)^{d/2}\Gamma(d/2+1)]^{-1}`, so that :math:`\int_{|q|<k}\frac{d^dq}{(2\pi)^d} = v_d k^d`."""
    d = as_expression(d, "d", symbols={"d": D})
    return 1 / ((4 * sp.pi) ** (d / 2) * sp.gamma(d / 2 + 1))


def angular_factor(d: ExprLike) -> sp.Expr:
    r""":math:`\int\frac{d^dq}{(2\pi)^d} f(q^2) = \frac{d\,v_d}{2}\,k^d\int_0^\infty dy\,y^{d/2-1} f(k^2 y)`:
    returns :math:`d\,v_d/2 = [(4\pi)^{d/2}\Gamma(d/2)]^{-1}`."""
    d = as_expression(d, "d", symbols={"d": D})
    return sp.simplify(d * loop_volume(d) / 2)


def dimension(d: ExprLike) -> sp.Expr:
    """A Euclidean dimension: a number > 0 (returned as an exact sympy number) or a sympy expression
    with free symbols (kept; the package's :data:`D` is positive).  Text is read by the safe parser."""
    if isinstance(d, str):                       # text is read by the safe parser, never sympified
        d = as_expression(d, "d")
    if isinstance(d, sp.Basic) and d.free_symbols:
        return d
    try:
        x = sp.nsimplify(d)
    except (sp.SympifyError, TypeError, ValueError):
        raise InvalidArgument("d", f"expected a number or a sympy symbol, got {d!r}") from None
    if not x.is_real or not x.is_finite:
        raise InvalidArgument("d", f"expected a finite real dimension, got {d!r}")
    if x <= 0:
        raise NotPositive("d", f"the dimension must be > 0, got {d}")
    return x


def threshold_integrand(r: sp.Expr, numerator: sp.Expr, n: Number, d: Number, w: Number) -> sp.Expr:
    r"""The threshold integrand :math:`\frac d2\,y^{d/2-1}\,N(y)/(y + r(y) + w)^{n+1}` in :data:`Y`,
    for the numerators :math:`N = r - y r' - \tfrac\eta2 r` (:math:`\ell^d_n`), :math:`r - y r'`
    (:math:`A^d_n`) and :math:`r/2` (:math:`B^d_n`)."""
    return d / 2 * Y ** (d / 2 - 1) * numerator / (Y + r + w) ** (n + 1)


def anomalous_integrand(r: sp.Expr, rho: sp.Expr, d: Number, w: Number) -> sp.Expr:
    r"""The integrand :math:`-y^{d/2} P'\,\partial_y[\rho/(P+w)^2]/(P+w)^2`, :math:`P = y + r`, of the
    anomalous-dimension threshold functions (:math:`\rho = 2(r - y r') - \eta r`, or its parts)."""
    P = Y + r
    return -Y ** (d / 2) * sp.diff(P, Y) / (P + w) ** 2 * sp.diff(rho / (P + w) ** 2, Y)


#: The parts of :meth:`_Shape.integrand` that are anomalous-dimension integrands (the others are
#: :func:`threshold_integrand` s).
_ANOMALOUS_PARTS = ("Ma", "Mb", "m")


@dataclass(frozen=True)
class _Shape:
    r"""A regulator shape :math:`r(y)` in :data:`Y` and its derivatives: :math:`r'`,
    :math:`a = r - y r'`, :math:`P = y + r`, :math:`P' = 1 + r'`; the numerators of the threshold
    parts and (:meth:`integrand`) the one builder of their integrands."""
    r: sp.Expr

    @property
    def dr(self) -> sp.Expr:
        """:math:`r'(y)`."""
        return sp.diff(self.r, Y)

    @property
    def a(self) -> sp.Expr:
        """:math:`a = r - y r'` (the numerator of :math:`A^d_n`)."""
        return self.r - Y * self.dr

    @property
    def P(self) -> sp.Expr:
        """:math:`P = y + r`, the regulated kinetic term."""
        return Y + self.r

    @property
    def dP(self) -> sp.Expr:
        """:math:`P' = 1 + r'`."""
        return 1 + self.dr

    def numerator(self, part: str, eta: Number = ETA) -> sp.Expr:
        r"""The numerator of ``part``: ``A`` :math:`a`, ``B`` :math:`r/2`, ``ell`` :math:`a - \eta r/2`
        (of :math:`\ell^d_n`); ``Ma`` :math:`2a`, ``Mb`` :math:`r`, ``m`` :math:`\rho = 2a - \eta r` (of
        :math:`m^d`; :math:`\rho/k^2` is also :math:`\partial_t R_k`)."""
        table = {"A": lambda: self.a, "B": lambda: self.r / 2, "ell": lambda: self.a - eta * self.r / 2,
                 "Ma": lambda: 2 * self.a, "Mb": lambda: self.r, "m": lambda: 2 * self.a - eta * self.r}
        return table[part]()

    def integrand(self, part: str, n: Number, d: Number, w: Number, eta: Number = ETA) -> sp.Expr:
        r"""The one builder of threshold integrands (quadrature and closed forms): the
        :func:`threshold_integrand` of ``part`` (``A``, ``B``, ``ell``) with index n, or the
        :func:`anomalous_integrand` of ``part`` (``Ma``, ``Mb``, ``m``; n unused)."""
        numerator = self.numerator(part, eta)
        if part in _ANOMALOUS_PARTS:
            return anomalous_integrand(self.r, numerator, d, w)
        return threshold_integrand(self.r, numerator, n, d, w)


_CLOSED_CACHE: dict[tuple[object, ...], sp.Expr] = {}  # (inner shape, n) or ("m", inner) -> closed form
_NODE_CACHE: dict[tuple[str, str, str, int], _Columns] = {}  # (regulator, shape, d, prec) -> rule columns


class ThresholdFunction(NumericFunction):
    r"""Base class of the quadrature threshold functions of one regulator.

    ``cls(n, d, w)`` is :math:`A^d_n(w)` (``part = "A"``) or :math:`B^d_n(w)` (``part = "B"``);
    subclasses are made per regulator by :meth:`Regulator.threshold`.  Differentiation in w follows
    :math:`\partial_w X_n = -(n+1) X_{n+1}`, so symbolic flows stay exact and only the final numbers
    come from quadrature.
    """
    regulator: "Regulator"
    part: str = "A"
    nargs = 3

    def fdiff(self, argindex: int = 3) -> sp.Expr:
        if argindex != 3:
            raise sp.ArgumentIndexError(self, argindex)
        n, d, w = self.args
        return -(n + 1) * type(self)(n + 1, d, w)

    @classmethod
    def mpmath_impl(cls, n: MpReal, d: MpReal, w: MpReal) -> mpmath.mpf:
        A, B, _ = cls.regulator.threshold_batch(mpmath.mpf(d), mpmath.mpf(w), int(n), cls.part == "B")
        return (A if cls.part == "A" else B)[int(n)]

    @classmethod
    def numpy_impl(cls, n: ArrayLike, d: ArrayLike, w: ArrayLike) -> NDArray[np.float64]:
        f = np.frompyfunc(lambda a, b, c: float(cls.mpmath_impl(a, b, c)), 3, 1)
        return np.asarray(f(n, d, w), dtype=float)

    def _latex(self, printer: LatexPrinter, exp: str | None = None) -> str:
        n, d, w = (printer._print(a) for a in self.args)
        body = rf"{self.part}^{{{d}}}_{{{n}}}\!\left({w}\right)"
        return body if exp is None else rf"\left({body}\right)^{{{exp}}}"


class _UVCutoff:
    r"""The Polchinski side of a regulator: the UV cutoff function :math:`K(z)` and the cut-off
    covariance :math:`C_\Lambda = K(p^2/\Lambda^2)\,G` (needs ``cutoff_function``)."""
    cutoff_function: sp.Expr

    def K(self, z: Number = Z) -> sp.Expr:
        r""":math:`K(z)`, the UV cutoff function at :math:`z = p^2/\Lambda^2`."""
        return self.cutoff_function.subs(Z, z)

    def dK(self, z: Number = Z) -> sp.Expr:
        r""":math:`K'(z) = dK/dz` (a ``DiracDelta`` for the sharp and Litim cutoffs)."""
        return sp.diff(self.cutoff_function, Z).subs(Z, z)

    def cutoff(self, p2: ExprLike, scale: ExprLike) -> sp.Expr:
        r""":math:`K(p^2/\Lambda^2)` with ``scale`` = :math:`\Lambda`."""
        return self.K(as_expression(p2, "p2") / as_expression(scale, "scale") ** 2)

    def covariance(self, p2: ExprLike, scale: ExprLike, inverse_propagator: ExprLike) -> sp.Expr:
        r""":math:`C_\Lambda(p) = K(p^2/\Lambda^2)/G^{-1}(p^2)`, the Polchinski (UV-cut) propagator."""
        return self.cutoff(p2, scale) / as_expression(inverse_propagator, "inverse_propagator")

    def scale_derivative_covariance(self, p2: ExprLike, scale: ExprLike, inverse_propagator: ExprLike) -> sp.Expr:
        r""":math:`\Lambda\partial_\Lambda C_\Lambda(p) = -2 z K'(z)\,G(p^2)`, :math:`z = p^2/\Lambda^2`."""
        z = as_expression(p2, "p2") / as_expression(scale, "scale") ** 2
        return -2 * z * self.dK(z) / as_expression(inverse_propagator, "inverse_propagator")


class _IRRegulator:
    r"""The Wetterich side of a regulator: the shape :math:`r(y)` and :math:`R_k = Z_k k^2 r(p^2/k^2)`
    (needs ``shape`` and ``name``)."""
    name: str
    shape: sp.Expr | None

    def r(self, y: Number = Y) -> sp.Expr:
        r""":math:`r(y)`, the dimensionless regulator shape, :math:`R_k = Z k^2 r(p^2/k^2)`."""
        if self.shape is None:
            raise Unsupported("regulator", f"{self.name!r} has no finite IR regulator R_k "
                                           "(r = oo below the cutoff); use its threshold functions")
        return self.shape.subs(Y, y)

    def R(self, p2: ExprLike, k: ExprLike, Zk: ExprLike = 1) -> sp.Expr:
        r""":math:`R_k(p^2) = Z_k\,k^2\,r(p^2/k^2)`."""
        k = as_expression(k, "k")
        return as_expression(Zk, "Zk") * k ** 2 * self.r(as_expression(p2, "p2") / k ** 2)

    def dt_R(self, p2: ExprLike, k: ExprLike, Zk: ExprLike = 1, eta: ExprLike = 0) -> sp.Expr:
        r""":math:`\partial_t R_k = Z_k k^2 [2(r - y r') - \eta\, r]`, :math:`t = \ln k`,
        :math:`\eta = -\partial_t \ln Z_k`."""
        k = as_expression(k, "k")
        expr = _Shape(self.r()).numerator("m", as_expression(eta, "eta"))
        return as_expression(Zk, "Zk") * k ** 2 * expr.subs(Y, as_expression(p2, "p2") / k ** 2)


# ============================================================================ quadrature
#: The panels of the fixed rule: [0,1], [1,4], [4,16] and the tail [16, oo) mapped by y = 16/t, t in (0,1].
_PANELS = ((0, 1, False), (1, 4, False), (4, 16, False), (0, 1, True))


def _rule_nodes(ts: TanhSinh, m: int, prec: int) -> Iterator[tuple[mpmath.mpf, mpmath.mpf]]:
    """(y, weight) of the tanh-sinh rule of degree m on the :data:`_PANELS` (weights include the
    degree's 2^-m and the Jacobian of the tail map)."""
    scale = mpmath.mpf(2) ** (-m)
    for a, b, tail in _PANELS:
        for k in range(1, m + 1):
            for x, wt in ts.get_nodes(mpmath.mpf(a), mpmath.mpf(b), k, prec):
                if x == 0:
                    continue
                y, jac = (16 / x, 16 / x ** 2) if tail else (x, 1)
                yield y, wt * scale * jac


def _node_row(fn: _NodeFunctions, y: mpmath.mpf, wy: mpmath.mpf, half: mpmath.mpf,
              prec: int) -> tuple[mpmath.mpf, ...] | None:
    """One node's entries ``(P, ma, mb, c1a, c2a, c1b, c2b)`` of :meth:`_QuadratureRule._nodes`
    (``None`` where the shape cannot be evaluated)."""
    try:  # cancellations in r - y r' near y = 0 cost ~2 |log2 y| bits
        with mpmath.workprec(prec + 40 + 3 * abs(int(mpmath.mag(y)))):
            P, A, B, dP, dA, dr = fn(y)
    except (ZeroDivisionError, OverflowError):
        return None
    meas = wy * half * y ** (half - 1)
    yd = wy * y ** half * dP
    # M = -∫ y^{d/2} P' [rho'/(P+w)^4 - 2 rho P'/(P+w)^5], rho = 2a or 2b
    return P, meas * A, meas * B, -yd * 2 * dA, 2 * yd * 2 * A * dP, -yd * dr, 2 * yd * 2 * B * dP


def _rule_columns(ts: TanhSinh, fn: _NodeFunctions, half: mpmath.mpf, m: int, prec: int) -> _Columns:
    """The columns of :meth:`_QuadratureRule._nodes` for the rule of degree m."""
    cols: _Columns = tuple([] for _ in range(7))
    for y, wy in _rule_nodes(ts, m, prec):
        row = _node_row(fn, y, wy, half, prec)
        if row is not None:
            for col, v in zip(cols, row):
                col.append(v)
    return cols


def _converged_rule(fn: _NodeFunctions, d: mpmath.mpf, prec: int) -> _Columns:
    r"""Double the degree (from 3, at most 9) until :math:`A^d_1(1)` is stable at ``prec`` bits."""
    ts = TanhSinh(mpmath.mp)
    half = d / 2

    def a1(cols: _Columns) -> mpmath.mpf:
        return mpmath.fdot(cols[1], [1 / (P + 1) ** 2 for P in cols[0]])

    m, cols = 3, _rule_columns(ts, fn, half, 3, prec)
    prev = a1(cols)
    while m < 9:
        m += 1
        cand = _rule_columns(ts, fn, half, m, prec)
        val = a1(cand)
        cols, done = cand, abs(val - prev) <= mpmath.mpf(2) ** (-prec + 12) * (1 + abs(val))
        prev = val
        if done:
            break
    return cols


def _power_sums(cols: _Columns, q: list[mpmath.mpf], jmax: int,
                anomalous: bool) -> tuple[list[mpmath.mpf], list[mpmath.mpf]]:
    """``A_j = sum ma q^(j+1)`` (and ``B_j`` with ``anomalous``), j = 0..jmax."""
    _, ma, mb = cols[:3]
    qp = q
    A, B = [], []
    for _ in range(jmax + 1):
        A.append(mpmath.fdot(ma, qp))
        if anomalous:
            B.append(mpmath.fdot(mb, qp))
        qp = [x * y for x, y in zip(qp, q)]
    return A, B


def _anomalous_sums(cols: _Columns, q: list[mpmath.mpf]) -> list[mpmath.mpf]:
    """``[M_a, M_b, M_a', M_b']`` from the columns and ``q = 1/(P + w)``."""
    c1a, c2a, c1b, c2b = cols[3:]
    q4 = [x ** 4 for x in q]
    q5 = [x * y for x, y in zip(q4, q)]
    q6 = [x * y for x, y in zip(q5, q)]
    return [mpmath.fdot(c1a, q4) + mpmath.fdot(c2a, q5), mpmath.fdot(c1b, q4) + mpmath.fdot(c2b, q5),
            -4 * mpmath.fdot(c1a, q5) - 5 * mpmath.fdot(c2a, q6),
            -4 * mpmath.fdot(c1b, q5) - 5 * mpmath.fdot(c2b, q6)]


class _QuadratureRule(_IRRegulator):
    r"""The fixed quadrature rule of an a.e. smooth shape :math:`r(y)` (needs ``r()``, ``name``,
    ``shape``): one tanh-sinh rule per (regulator, d, precision), all :math:`A_j, B_j, M_a, M_b` and
    their w-derivatives at a given w in one pass."""

    @cached_property
    def _node_functions(self) -> _NodeFunctions:
        """y -> (P, r - y r', r/2, P', r - y r' derivative, r') compiled once (mpmath)."""
        from symbrg.core.codegen import lambdify
        s = _Shape(self.r())
        exprs = [s.P, s.a, s.numerator("B"), s.dP, sp.diff(s.a, Y), s.dr]
        return lambdify([drop_deltas(e) for e in exprs], [Y], "mpmath")

    def _nodes(self, d: MpReal) -> _Columns:
        r"""Fixed tanh-sinh rule on [0,1], [1,4], [4,16], [16,oo) (tail mapped by y = 16/t), the
        degree doubling until :math:`A^d_1(1)` is stable at the working precision.  Returns per-node
        lists ``(P, ma, mb, c1a, c2a, c1b, c2b)``: :math:`P = y + r`, the weights times the
        numerators of A and B, and of the :math:`M_a, M_b` integrands (cached per d and precision)."""
        prec = mpmath.mp.prec
        key = (self.name, sp.sstr(self.shape), str(d), prec)
        if key not in _NODE_CACHE:
            _NODE_CACHE[key] = _converged_rule(self._node_functions, mpmath.mpf(d), prec)
        return _NODE_CACHE[key]

    def threshold_batch(self, d: MpReal, w: MpReal, jmax: int,
                        anomalous: bool = False) -> tuple[list[mpmath.mpf], list[mpmath.mpf], list[mpmath.mpf]]:
        r"""All quadrature threshold numbers at one w from one fixed rule (mpmath, working precision):
        ``A = [A_0..A_jmax]``, and with ``anomalous`` also ``B = [B_0..B_jmax]`` and
        ``M = [M_a, M_b, M_a', M_b']`` (the anomalous-dimension functions and their w-derivatives;
        empty lists otherwise).  The regulator must be a.e. smooth (kinks and jumps are handled in
        the closed forms only)."""
        cols = self._nodes(mpmath.mpf(d))
        w = mpmath.mpf(w)
        q = [1 / (p + w) for p in cols[0]]
        A, B = _power_sums(cols, q, jmax, anomalous)
        return (A, B, _anomalous_sums(cols, q)) if anomalous else (A, B, [])


def _log_grid_minimum(P: _NodeFunctions) -> float:
    """The minimum of the first entry of ``P(y)`` on a logarithmic grid of y in [1e-8, 1e4] (401
    points), refined twice around the smallest value."""
    lo, hi = -8.0, 4.0
    best = math.inf
    for _ in range(3):
        grid = np.linspace(lo, hi, 401)
        vals = [_real_or_inf(P, t) for t in grid]
        i = int(np.argmin(vals))
        best = min(best, vals[i])
        step = grid[1] - grid[0]
        lo, hi = grid[max(i - 1, 0)] - step, grid[min(i + 1, 400)] + step
    return best


def _real_or_inf(P: _NodeFunctions, t: float) -> float:
    """The real part of the first entry of ``P(10^t)`` as a float (inf where it cannot be evaluated)."""
    try:
        return float(mpmath.re(P(mpmath.mpf(10) ** t)[0]))
    except (ZeroDivisionError, OverflowError, ValueError, TypeError):
        return math.inf


class _ThresholdDomain(_QuadratureRule):
    r"""The domain :math:`w > w_*` of the threshold functions (needs ``_node_functions``)."""

    @cached_property
    def pole(self) -> float:
        r"""The edge :math:`w_*` of the domain :math:`w > w_*` of the threshold functions.

        :math:`\ell^d_n(w)` integrates :math:`(P(y) + w)^{-(n+1)}` with :math:`P = y + r(y) = y/(1 - K(y))`,
        so it has a pole (a log branch point for sharp :math:`\ell_0`) at :math:`w_* = -\min_{y>0} P`:
        :math:`-1` for sharp, Litim and exponential; for ``power:b``, :math:`-1` at b = 1,
        :math:`-b\,(b-1)^{1/b - 1}` for b > 1 and 0 for b < 1 (:math:`P \to 0` at y = 0).  Other
        regulators: the minimum of P on a logarithmic grid of y in [1e-8, 1e4], refined twice.
        """
        return -_log_grid_minimum(self._node_functions)

    def check_mass(self, argument: str, w: _Mass) -> _Mass:
        """A numeric w must lie in the domain ``w > pole`` of the threshold functions (symbols pass)."""
        if isinstance(w, sp.Basic) and w.free_symbols:
            return w
        x = scalar(argument, w)
        if not x > self.pole:
            raise OutOfRange(argument, f"the {self.name} threshold functions need w > {self.pole:.6g} "
                                       f"(pole of 1/(y + r(y) + w)^(n+1)), got {x:g}")
        return w


class _QuadratureThresholds(_IRRegulator):
    r"""The threshold functions by quadrature, symbolically: :math:`A^d_n, B^d_n` as
    :class:`ThresholdFunction` s, and adaptive mpmath quadrature of each part (a check)."""

    @cached_property
    def _integrands(self) -> dict[str, Callable[..., mpmath.mpf]]:
        """(y, n, d, w) -> the integrand of A, B, Ma, Mb (:meth:`_Shape.integrand`), compiled (mpmath)."""
        from symbrg.core.codegen import lambdify
        shape = _Shape(self.r())
        n, d, w = sp.symbols("n d w")
        exprs = {k: shape.integrand(k, n, d, w) for k in ("A", "B", "Ma", "Mb")}
        # quadrature sees the a.e. derivative: kinks of r integrate to nothing; jumps of r' or of
        # P' at one point are handled in the closed forms only (compact shapes)
        return {k: lambdify(drop_deltas(e), (Y, n, d, w), "mpmath") for k, e in exprs.items()}

    def _quad(self, part: str, n: int, d: MpReal, w: MpReal) -> mpmath.mpf:
        """One threshold integral (``part`` in A, B, Ma, Mb) by adaptive mpmath quadrature (a check
        on :meth:`threshold_batch`)."""
        f = self._integrands[part]
        return mpmath.quad(lambda y: f(y, n, d, w), [0, 1, 4, 16, mpmath.inf])

    def threshold_part(self, part: str, n: int, d: Number = D, w: Number = W) -> sp.Expr:
        r""":math:`A^d_n(w)` or :math:`B^d_n(w)` (``part``), as a quadrature-backed function."""
        cls = self._threshold_classes[part]
        return cls(sp.Integer(n), as_expression(d, "d"), as_expression(w, "w"))

    @cached_property
    def _threshold_classes(self) -> dict[str, type[ThresholdFunction]]:
        """The :class:`ThresholdFunction` subclasses A_<name>, B_<name> bound to this regulator."""
        tag = "".join(ch if ch.isalnum() else "_" for ch in self.name)
        return {p: type(f"{p}_{tag}", (ThresholdFunction,), {"regulator": self, "part": p})
                for p in ("A", "B")}


class _ClosedForms:
    r"""Closed-form threshold functions of a compact shape (needs ``inner``, the branch of r on
    y < 1), integrated once with the symbolic dimension :data:`D` and cached per shape."""
    inner: sp.Expr | None

    def _closed_threshold(self, n: int, d: sp.Expr) -> sp.Expr:
        """Integrated once with the symbolic dimension :data:`D` (> 0), then evaluated at d."""
        key = (self.inner, n)
        if key not in _CLOSED_CACHE:
            integrand = _Shape(self.inner).integrand("ell", n, D, W)
            val = sp.integrate(sp.expand(sp.numer(sp.together(integrand))) / sp.denom(sp.together(integrand)),
                               (Y, 0, 1), conds="none")
            _CLOSED_CACHE[key] = sp.factor(sp.simplify(val))
        return _CLOSED_CACHE[key].subs(D, d)

    def anomalous_threshold(self, d: ExprLike = D, eta: Number = 0, w: Number = W) -> sp.Expr | None:
        r""":math:`m^d(w;\eta)` in closed form (Litim and compact shapes), else ``None`` (then use
        :meth:`anomalous_threshold_value`).  The sharp cutoff raises :class:`Unsupported`."""
        if self.inner is None:
            return None
        d = dimension(d)
        key = ("m", self.inner)
        if key not in _CLOSED_CACHE:
            _CLOSED_CACHE[key] = self._closed_anomalous()
        return _CLOSED_CACHE[key].subs(D, d).subs({ETA: eta, W: w})

    def _closed_anomalous(self) -> sp.Expr:
        r""":math:`m^d(w;\eta)` for a compact shape, integrated with the symbolic dimension D."""
        shape = _Shape(self.inner)
        P = shape.P
        rho = shape.numerator("m")
        # smooth part on y < 1 (P' may vanish there), plus the jump of rho/(P+w)^2 at y = 1
        # (rho -> 0 above): a delta that meets the jump of P' (from P'(1-) to 1), weight 1/2 each.
        bulk = -sp.integrate(sp.simplify(-shape.integrand("m", 0, D, W)), (Y, 0, 1), conds="none")
        P1 = P.subs(Y, 1)
        jump = -(0 - (rho / (P + W) ** 2).subs(Y, 1))          # value above minus below, negated
        p_avg = (sp.diff(P, Y).subs(Y, 1) + 1) / 2
        val = bulk + jump * p_avg / (P1 + W) ** 2
        return sp.factor(sp.simplify(val))


@dataclass(frozen=True)
class Regulator(_UVCutoff, _ClosedForms, _QuadratureThresholds, _ThresholdDomain):
    r"""A momentum cutoff, as UV cutoff function :math:`K(z)` and as IR regulator :math:`r(y)`.

    The base class of the families :class:`Sharp`, :class:`Litim`, :class:`Exponential`,
    :class:`Power`, :class:`CutoffRegulator` (a user's :math:`K`) and :class:`ShapeRegulator` (a
    user's :math:`r`); family-specific behaviour (closed forms, the pole) lives in the subclass.
    ``cutoff_function`` is :math:`K` in :data:`Z`; ``shape`` is :math:`r` in :data:`Y` (``None`` for
    the sharp cutoff, whose :math:`r` is infinite below :math:`y = 1`); ``inner`` is the branch of
    :math:`r` on :math:`y<1` when :math:`r` vanishes for :math:`y \ge 1` (compact support: closed
    forms with symbolic d).  The pieces: :class:`_UVCutoff` (K, C_Lambda), :class:`_IRRegulator`
    (r, R_k), :class:`_ClosedForms`, :class:`_QuadratureThresholds` (A, B as functions),
    :class:`_QuadratureRule` (the fixed rule) and :class:`_ThresholdDomain` (the pole).
    """
    name: str
    cutoff_function: sp.Expr
    shape: sp.Expr | None
    inner: sp.Expr | None = None
    description: str = field(default="", compare=False)

    #: True only for the sharp (Wegner-Houghton) cutoff: :math:`r = \infty` below the cutoff, no
    #: derivative expansion (no LPA', no finite :math:`R_k`).
    is_sharp = False

    @property
    def has_closed_form(self) -> bool:
        """True when the threshold functions have closed forms (any d): compact shapes and sharp."""
        return self.inner is not None

    def threshold(self, n: int, d: ExprLike = D, eta: Number = 0, w: Number = W) -> sp.Expr:
        r""":math:`\ell^d_n(w;\eta)` (module docstring): a closed form for sharp, Litim and compact
        shapes (any d, symbolic allowed), otherwise :math:`A^d_n(w) - \eta B^d_n(w)` with
        quadrature-backed :class:`ThresholdFunction` s."""
        n = integer("n", n, minimum=0)
        THRESHOLD_N.check("n", n, cost="minutes of symbolic integration" if self.inner is not None
                          else f"{n + 1} powers per quadrature node")
        d = dimension(d)
        scalar("eta", eta)  # finite and real; the value itself is kept (an exact 0 stays exact)
        eta = as_expression(eta, "eta")
        self.check_mass("w", w)
        return self._threshold(n, d, eta, w)

    def _threshold(self, n: int, d: sp.Expr, eta: sp.Expr, w: Number) -> sp.Expr:
        """:meth:`threshold` on checked arguments (overridden by :class:`Sharp`)."""
        if self.inner is not None:
            return self._closed_threshold(n, d).subs({ETA: eta, W: w})
        return self.threshold_part("A", n, d, w) - eta * self.threshold_part("B", n, d, w)

    def anomalous_threshold_value(self, d: float, w: float, eta: float = 0.0) -> mpmath.mpf:
        r""":math:`m^d(w;\eta)` as an mpmath number (closed form when there is one, else quadrature)."""
        _ambient_precision()
        self.check_mass("w", w)
        closed = self.anomalous_threshold(d, ETA, W)
        if closed is not None:
            return mpmath.mpf(sp.N(closed.subs({ETA: eta, W: w}), mpmath.mp.dps))
        _, _, M = self.threshold_batch(mpmath.mpf(d), mpmath.mpf(w), 0, anomalous=True)
        return M[0] - eta * M[1]

    def threshold_value(self, n: int, d: ExprLike, w: MpReal, eta: Number = 0) -> mpmath.mpf:
        r""":math:`\ell^d_n(w;\eta)` as an mpmath number (closed form when available, else quadrature)."""
        _ambient_precision()
        self.check_mass("w", w)
        expr = self.threshold(n, dimension(d), eta, W)
        return mpmath.mpf(sp.N(expr.subs(W, sp.Float(w, mpmath.mp.dps + 5)), mpmath.mp.dps + 5))

    def __str__(self) -> str:
        return self.name


#: Largest exponent of ``power:b`` (b -> oo is the ``sharp`` cutoff).
MAX_POWER = 100
#: The functions a user cutoff may call: the parser's, with theta/Theta for the step function.
_CUTOFF_FUNCTIONS = {**DEFAULT_FUNCTIONS, "theta": DEFAULT_FUNCTIONS["Heaviside"],
                     "Theta": DEFAULT_FUNCTIONS["Heaviside"]}


# ============================================================================ the families
class Sharp(Regulator):
    r"""The sharp cutoff (Wegner-Houghton), :math:`K(z) = \Theta(1 - z)`, :math:`r = \infty\cdot\Theta(1 - y)`:
    closed-form thresholds :math:`\ell^d_0 = -\tfrac d2\ln(1 + w)`, :math:`\ell^d_n = \tfrac{d}{2n}(1+w)^{-n}`
    (:math:`\eta = 0` only: no derivative expansion), pole :math:`w_* = -1`."""
    is_sharp = True

    def __init__(self) -> None:
        super().__init__("sharp", sp.Heaviside(1 - Z), None, None, "sharp cutoff (Wegner-Houghton)")

    @property
    def has_closed_form(self) -> bool:
        return True

    @cached_property
    def pole(self) -> float:
        return -1.0

    def r(self, y: Number = Y) -> sp.Expr:
        raise Unsupported("regulator", "'sharp' has no finite IR regulator R_k "
                                       "(r = oo below the cutoff); use its threshold functions")

    def _threshold(self, n: int, d: sp.Expr, eta: sp.Expr, w: Number) -> sp.Expr:
        if eta != 0:
            raise Unsupported("eta", "the sharp cutoff has no derivative expansion (eta must be 0)")
        ell = -d / 2 * sp.log(1 + W) if n == 0 else d / (2 * n * (1 + W) ** n)
        return ell.subs(W, w)

    def anomalous_threshold(self, d: ExprLike = D, eta: Number = 0, w: Number = W) -> sp.Expr | None:
        raise Unsupported("regulator", "the sharp cutoff gives a non-analytic p-dependence: "
                                       "eta (LPA') is undefined")

    def threshold_batch(self, d: MpReal, w: MpReal, jmax: int,
                        anomalous: bool = False) -> tuple[list[mpmath.mpf], list[mpmath.mpf], list[mpmath.mpf]]:
        raise Unsupported("regulator", "the sharp cutoff has closed-form threshold functions only")

    def _quad(self, part: str, n: int, d: MpReal, w: MpReal) -> mpmath.mpf:
        raise Unsupported("regulator", "the sharp cutoff has closed-form threshold functions only")


class Litim(Regulator):
    r"""Litim's optimized cutoff (hep-th/0005245), :math:`K(z) = (1 - z)\Theta(1 - z)`,
    :math:`r(y) = (1 - y)\Theta(1 - y)`: compact, so :math:`\ell^d_n = (1 - \eta/(d+2))/(1+w)^{n+1}` in
    closed form for any d; pole :math:`w_* = -1`."""

    def __init__(self) -> None:
        super().__init__("litim", (1 - Z) * sp.Heaviside(1 - Z), (1 - Y) * sp.Heaviside(1 - Y), 1 - Y,
                         "Litim optimized cutoff")

    @cached_property
    def pole(self) -> float:
        return -1.0


class Exponential(Regulator):
    r"""The exponential cutoff :math:`K(z) = e^{-z}`, :math:`r(y) = y/(e^y - 1)`; thresholds by
    quadrature; pole :math:`w_* = -1` (:math:`P = y\,e^y/(e^y-1) \to 1` at y = 0)."""

    def __init__(self) -> None:
        super().__init__("exponential", sp.exp(-Z), Y / (sp.exp(Y) - 1), None, "exponential cutoff")

    @cached_property
    def pole(self) -> float:
        return -1.0


class Power(Regulator):
    r"""The power-law cutoff :math:`K(z) = 1/(1 + z^b)`, :math:`r(y) = y^{1-b}`, :math:`0 < b \le`
    :data:`MAX_POWER` (an exact number; b -> oo is :class:`Sharp`).  Pole: :math:`-1` at b = 1,
    :math:`-b\,(b-1)^{1/b-1}` for b > 1, 0 for b < 1."""
    b: sp.Rational

    def __init__(self, b: Number | str) -> None:
        b = _power(b) if isinstance(b, str) else _power_value(b)
        super().__init__(f"power:{b}", 1 / (1 + Z ** b), Y ** (1 - b), None, "power-law cutoff")
        object.__setattr__(self, "b", b)

    @cached_property
    def pole(self) -> float:
        b = float(self.b)
        return -1.0 if b == 1 else (0.0 if b < 1 else -b * (b - 1) ** (1 / b - 1))


class CutoffRegulator(Regulator):
    r"""A user's UV cutoff function :math:`K(z)` (sympy in :data:`Z`, or text in ``z`` read by the safe
    parser), with :math:`r(y) = y K(y)/(1 - K(y))` derived; :math:`K(0) = 1`, :math:`K(\infty) = 0` are
    checked where sympy can decide.  The pole is found numerically (:attr:`Regulator.pole`)."""

    def __init__(self, K: ExprLike, name: str | None = None, *, argument: str = "K") -> None:
        K = _parse_expr(K, Z, argument) if isinstance(K, str) else _in_variable(argument, K, Z)
        shape = sp.simplify(Y * K.subs(Z, Y) / (1 - K.subs(Z, Y)))
        super().__init__(name or "K:" + sp.sstr(K), K, shape, None, "")
        _check_cutoff(self, argument)


class ShapeRegulator(Regulator):
    r"""A user's IR regulator shape :math:`r(y)` (sympy in :data:`Y`, or text in ``y``), with
    :math:`K(z) = r/(y + r)|_{y=z}` derived and checked like :class:`CutoffRegulator`."""

    def __init__(self, r: ExprLike, name: str | None = None, *, argument: str = "r") -> None:
        r = _parse_expr(r, Y, argument) if isinstance(r, str) else _in_variable(argument, r, Y)
        K = sp.simplify((r / (Y + r)).subs(Y, Z))
        super().__init__(name or "r:" + sp.sstr(r), K, r, None, "")
        _check_cutoff(self, argument)


def _parse_expr(text: str, var: sp.Symbol, argument: str) -> sp.Expr:
    """A user cutoff K(z) or shape r(y) in the one variable ``var`` (safe parser, no Python run)."""
    return parse_expression(text, argument, symbols={var.name: var}, functions=_CUTOFF_FUNCTIONS)


def _power(text: str) -> sp.Rational:
    """The exponent b of ``power:b``: an exact number in (0, MAX_POWER]."""
    return _power_value(parse_number(text, "regulator"), text)


def _power_value(b: Number, text: str | None = None) -> sp.Rational:
    """Check an exponent b in (0, MAX_POWER] (exact: floats become their nearest rational)."""
    try:
        b = b if isinstance(b, sp.Basic) else sp.nsimplify(b, rational=True)
    except (sp.SympifyError, TypeError, ValueError):
        raise InvalidArgument("regulator", f"power:b needs a number b, got {b!r}") from None
    if not (b.is_positive and b.is_finite and b <= MAX_POWER):
        raise OutOfRange("regulator", f"power:b needs 0 < b <= {MAX_POWER} (use 'sharp' for b -> oo), "
                                      f"got {text if text is not None else b!r}")
    return b


def _check_cutoff(reg: Regulator, argument: str) -> Regulator:
    """K(0) = 1 and K(oo) = 0 (checked where sympy can decide)."""
    k0 = sp.limit(reg.cutoff_function, Z, 0, "+")
    kinf = sp.limit(reg.cutoff_function, Z, sp.oo)
    if k0.is_number and k0 != 1:
        raise InvalidArgument(argument, f"the cutoff function must have K(0) = 1, got {k0}")
    if kinf.is_number and kinf != 0:
        raise InvalidArgument(argument, f"the cutoff function must have K(oo) = 0, got {kinf}")
    return reg


#: The named families: name (and aliases) -> constructor.
_NAMED: dict[str, Callable[[], Regulator]] = {"sharp": Sharp, "litim": Litim, "optimized": Litim,
                                              "optimised": Litim, "exponential": Exponential}


def regulator(spec: str | Regulator = "litim", *, K: ExprLike | None = None, r: ExprLike | None = None) -> Regulator:
    r"""The one parser of regulators at the API boundary: the :class:`Regulator` named ``spec``
    (module table), or one built from a user function; a :class:`Regulator` passes through.

    ``regulator("litim")`` is :class:`Litim`, ``regulator("power:4")`` is ``Power(4)``,
    ``regulator("K:exp(-z**2)")`` a :class:`CutoffRegulator`, ``regulator("r:(1-y)**2*Heaviside(1-y)")`` a
    :class:`ShapeRegulator`; ``regulator(K=sp.exp(-Z**2))`` or ``regulator(r=...)`` (a sympy expression
    in :data:`Z` resp. :data:`Y`, or text in ``z`` resp. ``y``).  Text is read by
    :mod:`symbrg.core.parsing`, never evaluated as Python.  Unknown names raise
    :class:`~symbrg.core.errors.UnknownName` naming ``regulator`` and listing the choices.
    """
    if isinstance(spec, Regulator):
        return spec
    if (K is not None and r is not None) or ((K is not None or r is not None) and spec != "litim"):
        raise InvalidArgument("K" if K is not None else "r", "give one of a regulator name, K= or r=")
    if K is not None:
        return CutoffRegulator(K)
    if r is not None:
        return ShapeRegulator(r)
    if not isinstance(spec, str):
        raise InvalidArgument("regulator", f"expected a name or a Regulator, got {spec!r}")
    return _from_name(spec)


def _from_name(spec: str) -> Regulator:
    """The regulator named by ``spec`` (module table): a family name or alias, ``power:b``,
    ``K:<expr in z>`` or ``r:<expr in y>``; anything else raises :class:`UnknownName`."""
    name = spec.strip()
    key, _, arg = name.partition(":")
    key = key.strip().lower() if key.strip() not in ("K", "r") else key.strip()
    if key in _NAMED and not arg:
        return _NAMED[key]()
    if key == "power":
        return Power(arg)
    if key == "K" and arg:
        return CutoffRegulator(arg, name, argument="regulator")
    if key == "r" and arg:
        return ShapeRegulator(arg, name, argument="regulator")
    raise UnknownName("regulator", f"unknown regulator {spec!r}; choose one of {', '.join(REGULATORS)}")
