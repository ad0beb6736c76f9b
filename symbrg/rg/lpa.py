r"""Fixed points and critical exponents of the local potential approximation (LPA, LPA').

Job: project the dimensionless Wetterich flow of a Z2 potential onto a polynomial truncation,
solve for fixed points and linearize.  Flow (t = ln k, :math:`\hat\rho = \tilde\rho/v_d`,
:math:`\hat u = u/v_d`, which removes :math:`v_d` and leaves the exponents unchanged):

.. math::

    \partial_t \hat u' = (\eta - 2)\hat u' + (d - 2 + \eta)\hat\rho\,\hat u''
        + \ell^{d\,\prime}_0(w;\eta)\,(3\hat u'' + 2\hat\rho\,\hat u'''), \qquad
        w = \hat u' + 2\hat\rho\,\hat u'',

with the threshold function :math:`\ell^d_0` of :mod:`symbrg.rg.regulators`.  Truncation of order n
(:math:`\phi^{2n}`):

* ``expansion="minimum"`` (default): :math:`\hat u'(\hat\rho) = \sum_{i=2}^{n}\lambda_i
  (\hat\rho - \kappa)^{i-1}/(i-1)!`, couplings :math:`(\kappa, \lambda_2, \dots, \lambda_n)`;
  with :math:`G_j = \partial^j_{\hat\rho}\partial_t\hat u'|_\kappa` the beta functions are
  :math:`\beta_\kappa = -G_0/\lambda_2`, :math:`\beta_{\lambda_{j+1}} = G_j + \lambda_{j+2}\beta_\kappa`;
* ``expansion="zero"``: :math:`\hat u' = \sum_{i=1}^{n}\lambda_i\hat\rho^{i-1}/(i-1)!`,
  :math:`\beta_{\lambda_{j+1}} = G_j` (the Gaussian fixed point sits at the origin).

Critical exponents: :math:`\theta_i = -\mathrm{eig}_i(\partial\beta/\partial g)`,
:math:`\nu = 1/\theta_1` (the largest), :math:`\omega` = the smallest positive eigenvalue of
:math:`\partial\beta/\partial g`.  LPA' (minimum expansion): :math:`\eta` from the :math:`p^2`
coefficient of the two-point flow at the minimum,
:math:`\eta = 2\kappa(3\lambda_2 + 2\kappa\lambda_3)^2\, m^d(2\kappa\lambda_2;\eta)` (hat variables).
O(N) (``N > 1``, LPA): N - 1 Goldstone modes add :math:`(N-1)\,\ell^{d\,\prime}_0(\hat u')\,\hat u''`.
Beta functions are derived once, symbolically, with the threshold derivatives
:math:`T_j = \partial^j_w A^d_0(w_0)`, :math:`S_j = \partial^j_w B^d_0(w_0)` as symbols; their
values come from closed forms (Litim, sharp) or mpmath quadrature.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TypeAlias, cast

import mpmath
import sympy as sp
from sympy.polys.rings import PolyElement, PolyRing, ring

from symbrg.core.checks import choice, integer, positive, resolve_symbols, scalar
from symbrg.core.derivation import Derivation, Verification, check_identity
from symbrg.core.errors import ConvergenceError, InvalidArgument, OutOfRange, Unsupported
from symbrg.core.limits import Limit
from symbrg.core.parsing import as_expression
from symbrg.core.symbols import symbol
from symbrg.core.types import ExprLike, MpReal
from symbrg.rg.erg import anomalous_dimension, dimensionless_flow
from symbrg.rg.regulators import (
    ETA,
    D,
    Regulator,
    W,
    _duration,
    dimension,
    loop_volume,
    regulator,
    working_precision,
)

__all__ = ["LPATruncation", "FixedPoint", "lpa_truncation", "fixed_point", "convergence_table",
           "gaussian_fixed_point", "polynomial_couplings", "potential_flow", "compare_regulators", "dimensionless_flow", "anomalous_dimension",
           "lpa_derivation", "KNOWN_LITIM_LPA_3D"]

#: Converged LPA exponents in d = 3 with the Litim regulator (Litim, Nucl. Phys. B 631 (2002) 128).
KNOWN_LITIM_LPA_3D = {"nu": 0.649561, "omega": 0.655746}

RHO = symbol("rho")

#: Truncation order n (phi^(2n)).  Measured (Litim, d = 3, 30 digits): 1.1 s at n = 8, 8 s at 12,
#: 125 s at 16 (the symbolic beta functions and the Newton Jacobian grow about as 2^n).
ORDER = Limit("lpa_order", 16, "truncation order n (phi^(2n)) of the LPA")

#: Threshold numbers at one w: ``T_1..``, ``S_1..`` (LPA') and ``[M_a, M_b, M_a', M_b']``.
_Thresholds: TypeAlias = "tuple[list[mpmath.mpf], list[mpmath.mpf], list[mpmath.mpf]]"


# ============================================================================ truncation
@dataclass
class LPATruncation:
    r"""The polynomial truncation of order n of the hat-variable LPA (LPA') flow.

    ``couplings``: sympy symbols (``kappa, lambda_2..lambda_n`` or ``lambda_1..lambda_n``);
    ``G``: the projections :math:`G_j` (sympy, polynomial in couplings, :math:`T_j`, :math:`S_j`,
    :math:`\eta`); ``betas``: the beta functions.  Build with :func:`lpa_truncation`.
    """
    regulator: Regulator
    d: sp.Expr
    order: int
    expansion: str
    anomalous: bool
    couplings: tuple
    T: tuple
    S: tuple
    G: tuple
    w0: sp.Expr
    _poly: _SparsePolys | None = field(repr=False, default=None)
    N: int = 1

    @cached_property
    def _goldstone(self) -> list[mpmath.mpf]:
        """Goldstone thresholds F^(j)(0), j = 1..n (minimum expansion, N > 1), at this precision."""
        return _threshold_values(self.regulator, self.d, self.order, mpmath.mpf(0), False)[0]

    @property
    def betas(self) -> tuple:
        r"""The beta functions :math:`\partial_t g_i` (sympy)."""
        G = self.G
        if self.expansion == "zero":
            return tuple(G)
        lams = self.couplings[1:]
        bk = -G[0] / lams[0]
        out = [bk]
        for j in range(1, self.order):
            nxt = lams[j] if j < len(lams) else 0
            out.append(G[j] + nxt * bk)
        return tuple(out)

    @property
    def eta_expr(self) -> sp.Expr:
        r""":math:`\eta` in hat variables in terms of couplings and :math:`M_a, M_b` (LPA') or 0."""
        if not self.anomalous:
            return sp.Integer(0)
        kap, l2 = self.couplings[0], self.couplings[1]
        l3 = self.couplings[2] if self.order >= 3 else 0
        s = 2 * kap * (3 * l2 + 2 * kap * l3) ** 2
        Ma, Mb = sp.symbols("M_a M_b")
        return s * Ma / (1 + s * Mb)

    # ------------------------------------------------------------------ numerics
    def evaluate(self, values: Sequence[MpReal]) -> tuple[mpmath.matrix, mpmath.matrix, mpmath.mpf]:
        r"""(G, total Jacobian dG/dc, eta) at coupling values, as mpmath objects.

        The polynomials :math:`G_j` and :math:`\partial G_j/\partial c_k + (\sum_m
        \partial G_j/\partial T_m\,T_{m+1} + \dots)\,\partial w_0/\partial c_k` are derived in a
        sparse polynomial ring and evaluated term by term at the working precision; the
        :math:`\eta`-dependence (LPA') is added by the chain rule through :math:`M_a, M_b`."""
        c = [mpmath.mpf(v) for v in values]
        n = len(c)
        w0 = self._w0_value(c)
        T, S, M = self._thresholds(w0)
        eta, deta = _eta_gradient(c, M) if self.anomalous else (mpmath.mpf(0), [mpmath.mpf(0)] * n)
        point = c + list(T) + list(S) + ([eta] if self.anomalous else [])
        if self.N > 1 and self.expansion == "minimum":
            point += list(self._goldstone)
        vals = cast(_SparsePolys, self._poly).evaluate(point)  # None only if built by hand
        G = mpmath.matrix(vals[:n])
        J = mpmath.matrix(n, n)
        for i in range(n):
            e_i = vals[n + n * n + i] if self.anomalous else 0
            for j in range(n):
                J[i, j] = vals[n + i * n + j] + e_i * deta[j]
        return G, J, eta

    def _thresholds(self, w0: mpmath.mpf) -> _Thresholds:
        """Numbers T_1.., S_1.., (Ma, Mb, Ma', Mb') at w0 (closed form or quadrature)."""
        return _threshold_values(self.regulator, self.d, len(self.T), w0, self.anomalous)

    def _w0_value(self, c: Sequence[mpmath.mpf]) -> mpmath.mpf:
        """The expansion point w0 of the thresholds: 2 kappa lambda_2 (minimum) or lambda_1 (zero)."""
        return 2 * c[0] * c[1] if self.expansion == "minimum" else c[0]

    def stability_matrix(self, values: Sequence[MpReal]) -> mpmath.matrix:
        r""":math:`\partial\beta_i/\partial g_j` at a fixed point (where :math:`G = 0`)."""
        G, J, _ = self.evaluate(values)
        n = len(values)
        if self.expansion == "zero":
            return J
        lam2 = mpmath.mpf(values[1])
        M = mpmath.matrix(n, n)
        dbk = [-J[0, k] / lam2 + G[0] / lam2 ** 2 * (1 if k == 1 else 0) for k in range(n)]
        for k in range(n):
            M[0, k] = dbk[k]
        for j in range(1, n):
            nxt = mpmath.mpf(values[j + 1]) if j + 1 < n else 0
            for k in range(n):
                M[j, k] = J[j, k] + nxt * dbk[k]
        return M


def _eta_gradient(c: list[mpmath.mpf], M: list[mpmath.mpf]) -> tuple[mpmath.mpf, list[mpmath.mpf]]:
    r"""LPA' :math:`\eta = sM_a/(1 + sM_b)`, :math:`s = 2\kappa(3\lambda_2 + 2\kappa\lambda_3)^2`, and its
    gradient in the couplings c (through s and through :math:`w_0 = 2\kappa\lambda_2` in M)."""
    n = len(c)
    kap, l2 = c[0], c[1]
    l3 = c[2] if n >= 3 else mpmath.mpf(0)
    s = 2 * kap * (3 * l2 + 2 * kap * l3) ** 2
    ds = [2 * (3 * l2 + 2 * kap * l3) ** 2 + 8 * kap * l3 * (3 * l2 + 2 * kap * l3),
          12 * kap * (3 * l2 + 2 * kap * l3)] + \
         ([8 * kap ** 2 * (3 * l2 + 2 * kap * l3)] if n >= 3 else []) + [mpmath.mpf(0)] * max(0, n - 3)
    dw = [2 * l2, 2 * kap] + [mpmath.mpf(0)] * (n - 2)
    den = 1 + s * M[1]
    eta = s * M[0] / den
    deta = [((M[0] * ds[k] + s * M[2] * dw[k]) * den - s * M[0] * (M[1] * ds[k] + s * M[3] * dw[k]))
            / den ** 2 for k in range(n)]
    return eta, deta


def _threshold_values(R: Regulator, d: sp.Expr, jmax: int, w0: MpReal, anomalous: bool) -> _Thresholds:
    """T_j = d^j A_0/dw^j (j = 1..jmax), S_j likewise for B_0, and [Ma, Mb, Ma', Mb'] at w0."""
    T: list = []
    S: list = []
    M = [mpmath.mpf(0)] * 4
    closed = R.has_closed_form
    if closed:
        fn = _closed_threshold_fn(R, d, jmax, anomalous)
        vals = fn(w0)
        T = list(vals[:jmax])
        S = list(vals[jmax:2 * jmax]) if anomalous else []
        if anomalous:
            M = list(vals[2 * jmax:])
        return T, S, M
    dd = mpmath.mpf(sp.N(d, mpmath.mp.dps + 5))
    A, B, M = R.threshold_batch(dd, w0, jmax, anomalous)
    T = [(-1) ** j * math.factorial(j) * A[j] for j in range(1, jmax + 1)]
    S = [(-1) ** j * math.factorial(j) * B[j] for j in range(1, jmax + 1)] if anomalous else []
    return T, S, (list(M) if anomalous else [mpmath.mpf(0)] * 4)


_CLOSED_CACHE: dict[tuple[Regulator, sp.Expr, int, bool], Callable[..., list[mpmath.mpf]]] = {}


def _closed_threshold_fn(R: Regulator, d: sp.Expr, jmax: int,
                        anomalous: bool) -> Callable[[MpReal], list[mpmath.mpf]]:
    """w -> the closed-form numbers of :func:`_threshold_values` ([T.., S.., M..]), compiled once."""
    key = (R, d, jmax, anomalous)
    if key not in _CLOSED_CACHE:
        from symbrg.core.codegen import lambdify
        ell = R.threshold(0, d, ETA if anomalous else 0, W)
        A = ell.subs(ETA, 0)
        exprs = [sp.diff(A, W, j) for j in range(1, jmax + 1)]
        if anomalous:
            B = -sp.diff(ell, ETA)
            exprs += [sp.diff(B, W, j) for j in range(1, jmax + 1)]
            m = R.anomalous_threshold(d, ETA, W)
            if m is None:
                raise Unsupported("regulator", f"{R.name}: no closed-form anomalous threshold function")
            Ma, Mb = m.subs(ETA, 0), -sp.diff(m, ETA)
            exprs += [Ma, Mb, sp.diff(Ma, W), sp.diff(Mb, W)]
        f = lambdify(exprs, [W], "mpmath")
        _CLOSED_CACHE[key] = lambda w, f=f: list(f(w))
    return _CLOSED_CACHE[key]


@dataclass
class _LPARing:
    """The polynomial ring of the LPA projections: generators ``x`` (the field offset), the couplings,
    the threshold derivatives T (and S, eta for LPA'), the Goldstone thresholds TG and a symbolic d."""
    order: int
    anomalous: bool
    gens: list[str]
    cnames: list[str]
    tnames: list[str]
    snames: list[str]
    gnames: list[str]
    dsym: list[str]
    ring: PolyRing
    x: PolyElement
    cs: list[PolyElement]
    Ts: list[PolyElement]
    Ss: list[PolyElement]
    eta: PolyElement
    TGs: list[PolyElement]
    dd: PolyElement

    @property
    def nvars(self) -> int:
        """Generators after x (the variables of :class:`_SparsePolys`), without a symbolic d."""
        return len(self.cnames) + len(self.tnames) + len(self.snames) + (1 if self.anomalous else 0) \
            + len(self.gnames)

    def trunc(self, p: PolyElement) -> PolyElement:
        """``p`` without the terms of degree >= order in x."""
        return self.ring({m: c for m, c in p.terms() if m[0] < self.order})


def _lpa_ring(order: int, expansion: str, d: sp.Expr, anomalous: bool, N: int) -> _LPARing:
    """The ring of :func:`_series_G` and its generators, split by role."""
    n = order
    cnames = (["kappa"] + [f"lambda_{i}" for i in range(2, n + 1)]) if expansion == "minimum" \
        else [f"lambda_{i}" for i in range(1, n + 1)]
    tnames = [f"T_{j}" for j in range(1, n + 2)]
    snames = [f"S_{j}" for j in range(1, n + 2)] if anomalous else []
    extra = ["eta"] if anomalous else []
    gnames = [f"TG_{j}" for j in range(1, n + 1)] if (N > 1 and expansion == "minimum") else []
    dsym = [str(d)] if d.free_symbols else []
    gens = ["x"] + cnames + tnames + snames + extra + gnames + dsym
    Rg, *G = ring(",".join(gens), sp.QQ)  # noqa: N806
    i_t = 1 + len(cnames)
    i_s = i_t + len(tnames)
    i_e = i_s + len(snames)
    i_g = i_e + len(extra)
    return _LPARing(order, anomalous, gens, cnames, tnames, snames, gnames, dsym, Rg, G[0], G[1:i_t],
                    G[i_t:i_s], G[i_s:i_e], G[i_e] if anomalous else Rg(0), G[i_g:i_g + len(gnames)],
                    G[-1] if dsym else Rg(sp.Rational(d)))


def _taylor(rg: _LPARing, coefs: Sequence[PolyElement], delta: PolyElement) -> PolyElement:
    r""":math:`\sum_m c_m\,\delta^m/m!`, m = 0..order-1, truncated in x."""
    out = rg.ring(0)
    power = rg.ring(1)
    for m in range(0, rg.order):
        out += coefs[m] * power * sp.Rational(1, math.factorial(m))
        power = rg.trunc(power * delta)
    return out


def _flow_polynomial(rg: _LPARing, expansion: str, N: int) -> tuple[PolyElement, PolyElement]:
    r"""The flow of :math:`\hat u'` at :math:`\hat\rho = \kappa + x` (or x), truncated in x, and
    :math:`w_0` (module docstring)."""
    n, x, cs, Ts, Ss, eta = rg.order, rg.x, rg.cs, rg.Ts, rg.Ss, rg.eta
    if expansion == "minimum":
        kap, lams = cs[0], cs[1:]
        up = sum((lams[i - 2] * x ** (i - 1) * sp.Rational(1, math.factorial(i - 1))
                  for i in range(2, n + 1)), rg.ring(0))
        rho = kap + x
    else:
        up = sum((cs[i - 1] * x ** (i - 1) * sp.Rational(1, math.factorial(i - 1))
                  for i in range(1, n + 1)), rg.ring(0))
        rho = x
    upp, uppp = up.diff(x), up.diff(x).diff(x)
    w = up + 2 * rho * upp
    w0 = rg.ring({m: c for m, c in w.terms() if m[0] == 0})
    wp = 3 * upp + 2 * rho * uppp
    ell = [Ts[m] - (eta * Ss[m] if rg.anomalous else 0) for m in range(n)]
    Fp = _taylor(rg, ell, w - w0)
    Gx = rg.trunc((eta - 2) * up + (rg.dd - 2 + eta) * rho * upp + rg.trunc(Fp * wp))
    if N > 1:  # N - 1 Goldstone modes of mass u' (at the minimum: massless, constant thresholds)
        wG0 = rg.ring({m: c for m, c in up.terms() if m[0] == 0})
        FpG = _taylor(rg, rg.TGs if rg.gnames else ell, up - wG0)
        Gx = rg.trunc(Gx + (N - 1) * rg.trunc(FpG * upp))
    return Gx, w0


def _series_G(order: int, expansion: str, d: sp.Expr, anomalous: bool,
              N: int = 1) -> tuple[tuple[sp.Symbol, ...], tuple[sp.Symbol, ...], tuple[sp.Symbol, ...],
                                   tuple[sp.Expr, ...], sp.Expr, _SparsePolys]:
    """Ring computation of G_j (polynomial in x, couplings, T, S, eta, Goldstone TG[, d])."""
    rg = _lpa_ring(order, expansion, d, anomalous, N)
    Gx, w0 = _flow_polynomial(rg, expansion, N)
    coeffs = []
    for j in range(order):
        cj = rg.ring({(0,) + m[1:]: c for m, c in Gx.terms() if m[0] == j}) * math.factorial(j)
        coeffs.append(cj)
    # total Jacobian in the ring: explicit + threshold chain through w0 (+ eta part kept apart)
    Ts, Ss = rg.Ts, rg.Ss
    chain_T = [sum((g.diff(Ts[m]) * Ts[m + 1] for m in range(len(Ts) - 1)), rg.ring(0)) +
               sum((g.diff(Ss[m]) * Ss[m + 1] for m in range(len(Ss) - 1)), rg.ring(0)) for g in coeffs]
    jac = [g.diff(ck) + ch * w0.diff(ck) for g, ch in zip(coeffs, chain_T) for ck in rg.cs]
    extra_polys = [g.diff(rg.eta) for g in coeffs] if anomalous else []
    evaluator = _SparsePolys(coeffs + jac + extra_polys, rg.nvars)
    symbols = [sp.Symbol("kappa", positive=True) if s_ == "kappa" else sp.Symbol(s_) for s_ in rg.cnames]
    sym_map = dict(zip(rg.gens, [sp.Symbol("x")] + symbols + [sp.Symbol(t) for t in rg.tnames]
                       + [sp.Symbol(s_) for s_ in rg.snames] + ([ETA] if anomalous else [])
                       + [sp.Symbol(g_) for g_ in rg.gnames] + ([d] if rg.dsym else [])))
    exprs = tuple(c.as_expr(*[sym_map[g] for g in rg.gens]) for c in coeffs)
    w0e = w0.as_expr(*[sym_map[g] for g in rg.gens])
    return tuple(symbols), tuple(sp.Symbol(t) for t in rg.tnames), tuple(sp.Symbol(s_) for s_ in rg.snames), \
        exprs, w0e, evaluator


class _SparsePolys:
    """Many sparse polynomials with rational coefficients, evaluated together in mpmath.

    Variables are the ring generators after x (which no projection contains); a symbolic d stays
    a generator and is not supported numerically."""

    def __init__(self, polys: Sequence[PolyElement], nvars: int):
        self.nvars = nvars
        self.terms = [[(m[1:1 + nvars], c) for m, c in p.terms()] for p in polys]
        self.maxdeg = [0] * nvars
        for ts in self.terms:
            for m, _ in ts:
                for i, e in enumerate(m):
                    if e > self.maxdeg[i]:
                        self.maxdeg[i] = e
        self._coeff_cache: dict = {}

    def _coeffs(self) -> list[list[tuple[tuple[tuple[int, int], ...], mpmath.mpf]]]:
        """The terms as (((variable, exponent), ...), coefficient) at the working precision (cached)."""
        key = mpmath.mp.prec
        if key not in self._coeff_cache:
            self._coeff_cache[key] = [[(tuple((i, e) for i, e in enumerate(m) if e),
                                        mpmath.mpf(int(c.numerator)) / int(c.denominator)) for m, c in ts]
                                      for ts in self.terms]
        return self._coeff_cache[key]

    def evaluate(self, point: Sequence[mpmath.mpf]) -> list[mpmath.mpf]:
        """The values of all polynomials at ``point`` (one value per variable)."""
        pw = []
        for v, md in zip(point, self.maxdeg):
            row = [mpmath.mpf(1)]
            for _ in range(md):
                row.append(row[-1] * v)
            pw.append(row)
        out = []
        for ts in self._coeffs():
            acc = mpmath.mpf(0)
            for m, c in ts:
                for i, e in m:
                    c = c * pw[i][e]
                acc += c
            out.append(acc)
        return out


def lpa_truncation(reg: "str | Regulator" = "litim", d: ExprLike = 3, order: int = 6, *,
                   expansion: str = "minimum", anomalous: bool = False, N: int = 1) -> LPATruncation:
    r"""Derive the polynomial truncation of order ``order`` (:math:`\phi^{2n}`) of the LPA
    (``anomalous=True``: LPA') flow for a regulator in d dimensions (module docstring).

    ``N > 1``: the O(N) model, :math:`\rho = \phi_a\phi_a/2`, adding N - 1 Goldstone modes of
    mass :math:`\hat u'` to the flow, :math:`+(N-1)\,\ell^{d\,\prime}_0(\hat u')\,\hat u''`."""
    R = regulator(reg)
    d = dimension(d)
    order = integer("order", order, minimum=1)
    ORDER.check("order", order, cost=_duration(125 * 2.0 ** min(order - 16, 900)) + " with Litim, more with "
                                     "quadrature regulators")
    N = integer("N", N, minimum=1)
    if anomalous and N > 1:
        raise Unsupported("N", "LPA' is implemented for N = 1 (eta from the radial mode) only")
    choice("expansion", expansion, ("minimum", "zero"))
    if expansion == "minimum" and order < 2:
        raise OutOfRange("order", "the expansion around the minimum needs order >= 2 "
                                  "(use expansion='zero' for order 1)")
    if anomalous:
        if expansion != "minimum":
            raise Unsupported("expansion", "LPA' defines eta at the minimum: use expansion='minimum'")
        if R.is_sharp:
            raise Unsupported("regulator", "the sharp cutoff gives no eta (non-analytic in p)")
    cs, T, S, G, w0, poly = _series_G(order, expansion, d, anomalous, N)
    return LPATruncation(R, d, order, expansion, anomalous, cs, T, S, G, w0, poly, N)


# ============================================================================ fixed points
@dataclass
class FixedPoint:
    r"""A fixed point of a truncation: coupling values, :math:`\eta`, the critical exponents
    :math:`\theta_i` (descending real parts), :math:`\nu = 1/\theta_1` and :math:`\omega`."""
    regulator: str
    d: sp.Expr
    order: int
    expansion: str
    anomalous: bool
    couplings: dict
    eta: float
    exponents: list
    nu: float
    omega: float | None
    residual: float
    iterations: int
    N: int = 1

    def as_dict(self) -> dict:
        """JSON-ready summary (floats and strings only)."""
        return {"regulator": self.regulator, "d": float(self.d), "order": self.order,
                "expansion": self.expansion, "truncation": "lpa'" if self.anomalous else "lpa",
                "N": self.N, "nu": self.nu, "omega": self.omega, "eta": self.eta,
                "couplings": {str(k): v for k, v in self.couplings.items()},
                "exponents": [[float(mpmath.re(t)), float(mpmath.im(t))] for t in self.exponents],
                "residual": self.residual, "iterations": self.iterations}


def _initial_guess(tr: LPATruncation) -> list:
    """Order-2 start: for each trial w0 = 2 kappa lambda_2, kappa solves G_0 = 0 exactly
    (G_0 is linear in kappa at fixed w0), lambda_2 = w0/(2 kappa); scan w0 for a sign change of
    G_1 and refine (needs d > 2)."""
    if tr.d <= 2:
        raise Unsupported("d", "the Wilson-Fisher start needs 2 < d (give guess=...)")
    dd = mpmath.mpf(sp.N(tr.d, 30))
    TG1 = tr._goldstone[0] if tr.N > 1 else 0

    def g1(w: mpmath.mpf) -> tuple[mpmath.mpf, mpmath.mpf, mpmath.mpf]:
        T, _, _ = _threshold_values(tr.regulator, tr.d, 1, w, False)
        kap = -(3 * T[0] + (tr.N - 1) * TG1) / (dd - 2)
        lam = w / (2 * kap)
        G, _, _ = tr.evaluate([kap, lam])
        return kap, lam, G[1] / lam
    grid = [mpmath.mpf("0.02") * mpmath.mpf("1.4") ** i for i in range(25)]   # 0.02 .. 65
    prev = None
    for w in grid:
        kap, lam, val = g1(w)
        if prev is not None and mpmath.sign(val) != mpmath.sign(prev[2]):
            root = mpmath.findroot(lambda ww: g1(ww)[2], (prev[3], w), solver="anderson")
            kap, lam, _ = g1(root)
            return [kap, lam] + [mpmath.mpf(0)] * (tr.order - 2)
        prev = (kap, lam, val, w)
    raise ConvergenceError("guess", "no Wilson-Fisher fixed point found at order 2")


def _newton(tr: LPATruncation, c0: Sequence[MpReal], tol: mpmath.mpf,
            maxiter: int = 60) -> tuple[list[mpmath.mpf], mpmath.mpf, int]:
    """Damped Newton on G = 0 from c0: (couplings, |G|, steps)."""
    c = mpmath.matrix([mpmath.mpf(v) for v in c0])
    G, J, _ = tr.evaluate(list(c))
    norm = mpmath.norm(G)
    for it in range(1, maxiter + 1):
        try:
            step = mpmath.lu_solve(J, -G)
        except ZeroDivisionError:
            raise ConvergenceError("guess", "singular Jacobian in Newton's method") from None
        lam = mpmath.mpf(1)
        while True:
            trial = c + lam * step
            ok = tr.expansion == "zero" or (trial[0] > 0 and trial[1] > 0)
            if ok:
                try:
                    Gt, Jt, _ = tr.evaluate(list(trial))
                    if mpmath.norm(Gt) < norm * (1 - lam / 4) or norm < tol:
                        break
                except (ZeroDivisionError, ValueError):
                    pass
            lam /= 2
            if lam < mpmath.mpf(2) ** -30:
                raise ConvergenceError("guess", f"Newton's method stalled at |G| = {float(norm):.3g}")
        c, G, J, norm = trial, Gt, Jt, mpmath.norm(Gt)
        if norm < tol and mpmath.norm(lam * step) < tol ** 0.5 * (1 + mpmath.norm(c)):
            return list(c), norm, it
    raise ConvergenceError("maxiter", f"no convergence after {maxiter} Newton steps (|G| = {float(norm):.3g})")


def fixed_point(tr: LPATruncation, guess: Sequence[MpReal] | None = None, *, dps: int = 30,
                tol: float | None = None) -> FixedPoint:
    r"""Solve :math:`G_j = 0` by damped Newton (exact symbolic Jacobian, thresholds by closed form
    or quadrature) from ``guess`` (default: the order-2 Wilson-Fisher point continued with zeros),
    then linearize.  Raises :class:`~symbrg.core.errors.ConvergenceError` when Newton fails.
    ``dps``: working digits, at least :data:`symbrg.rg.regulators.MIN_DPS` (15), within the ``erg_dps`` limit."""
    dps = working_precision("dps", dps, tr.regulator.has_closed_form)
    if tol is not None:
        positive("tol", tol)
    for v in guess or ():
        scalar("guess", v)  # finite and real (NaN, inf and complex values are refused)
    with mpmath.workdps(dps):
        tol_ = mpmath.mpf(tol) if tol is not None else mpmath.mpf(10) ** (-(dps - 10))
        if guess is None:
            guess = _continued_guess(tr, dps)
        if len(guess) != tr.order:
            raise InvalidArgument("guess", f"{len(guess)} values for {tr.order} couplings")
        c, res, its = _newton(tr, guess, tol_)
        M = tr.stability_matrix(c)
        ev = mpmath.eig(M, left=False, right=False)
        theta = sorted((-e for e in ev), key=lambda z: -mpmath.re(z))
        _, _, eta = tr.evaluate(c)
        pos = [mpmath.re(t) for t in theta if mpmath.re(t) > 0]
        nu = float(1 / pos[0]) if pos else float("nan")
        irr = [-mpmath.re(t) for t in theta if mpmath.re(t) < 0]
        omega = float(min(irr)) if irr else None
        return FixedPoint(tr.regulator.name, tr.d, tr.order, tr.expansion, tr.anomalous,
                          {s: float(v) for s, v in zip(tr.couplings, c)}, float(eta), theta, nu, omega,
                          float(res), its, tr.N)


def _continued_guess(tr: LPATruncation, dps: int) -> list:
    """Continuation in the order: solve order 2, 3, ... n, each from the previous solution.
    (Near d = 2 the low orders of the expansion around the minimum have no Wilson-Fisher point,
    e.g. Litim at order 2 needs d > 5/2; then pass ``guess=``.)"""
    if tr.expansion == "zero":
        raise Unsupported("guess", "give guess= for the expansion around zero (Gaussian: zeros)")
    tol = mpmath.mpf(10) ** (-(dps - 10))
    base = lpa_truncation(tr.regulator, tr.d, 2, anomalous=False, N=tr.N)
    try:
        c, _, _ = _newton(base, _initial_guess(base), tol)
    except ConvergenceError:
        raise ConvergenceError("guess", f"the order-2 truncation has no Wilson-Fisher fixed point in "
                                        f"d = {tr.d}; pass guess= to start at order {tr.order}") from None
    for n in range(3, tr.order + 1):
        sub = lpa_truncation(tr.regulator, tr.d, n, anomalous=False, N=tr.N)
        c, _, _ = _newton(sub, list(c) + [mpmath.mpf(0)], tol)
    if tr.anomalous:
        c, _, _ = _newton(tr, c, tol)
    return list(c)


def convergence_table(reg: "str | Regulator" = "litim", d: ExprLike = 3, orders: Sequence[int] = range(2, 11),
                      *, anomalous: bool = False, dps: int = 30, N: int = 1) -> list[FixedPoint]:
    r"""Fixed points and exponents for each order, continued from order to order."""
    R = regulator(reg)
    orders = [integer("order", o, minimum=2) for o in orders]
    if not orders:
        raise InvalidArgument("orders", "give at least one order")
    working_precision("dps", dps, R.has_closed_form)
    out = []
    c = None
    for n in range(2, max(orders) + 1):
        tr = lpa_truncation(R, d, n, anomalous=anomalous, N=N)
        guess: list[MpReal] | None = None if c is None else [*c.values(), 0.0]
        fp = fixed_point(tr, guess, dps=dps)
        c = fp.couplings
        if n in orders:
            out.append(fp)
    return out


def compare_regulators(regs: Sequence[Regulator | str] = ("litim", "exponential", "sharp"), d: ExprLike = 3, order: int = 8,
                       *, anomalous: bool = False, N: int = 1, dps: int = 20) -> list[FixedPoint]:
    r"""The Wilson-Fisher fixed point at one order for several regulators (each continued in the
    order from 2), to compare the regulator dependence of :math:`\nu`, :math:`\omega` (and
    :math:`\eta`).  Regulators that do not support the request (sharp with LPA') are skipped."""
    out = []
    for name in regs:
        R = regulator(name)
        if anomalous and R.is_sharp:
            continue
        out.append(convergence_table(R, d, [order], anomalous=anomalous, dps=dps, N=N)[0])
    return out


def gaussian_fixed_point(reg: "str | Regulator" = "litim", d: ExprLike = D, order: int = 6, N: int = 1) -> dict:
    r"""The Gaussian fixed point :math:`\hat u' = 0` in the expansion around zero field: the
    stability matrix is triangular, with exponents :math:`\theta_j = 2 - (d-2)j = d - (j+1)(d-2)`
    (:math:`\phi^{2(j+1)}`, j = 0..n-1), so :math:`\nu = 1/2` and :math:`\eta = 0`; d may be symbolic.
    Returns ``{"theta": [...], "nu": ..., "omega": ..., "eta": 0, "triangular": bool}``."""
    R = regulator(reg)
    tr = lpa_truncation(R, d, order, expansion="zero", N=N)
    cs = tr.couplings
    at0 = {c: 0 for c in cs}
    G0 = [g.subs(at0) for g in tr.G]
    if any(sp.simplify(g) != 0 for g in G0):
        raise ConvergenceError("fixed_point", "u' = 0 is not a fixed point")
    # total Jacobian: the T-chain terms vanish at the origin? keep them (w0 = lambda_1)
    J = sp.Matrix([[sp.diff(g, c) + sum((sp.diff(g, tr.T[m]) * tr.T[m + 1]
                                         for m in range(len(tr.T) - 1)), sp.Integer(0))
                    * sp.diff(tr.w0, c) for c in cs] for g in tr.G]).subs(at0)
    tri = all(sp.simplify(J[i, j]) == 0 for i in range(order) for j in range(i))
    eig = [sp.simplify(J[i, i]) for i in range(order)] if tri else list(J.eigenvals())
    theta = [sp.expand(-e) for e in eig]
    nu = sp.simplify(1 / theta[0])
    dd = tr.d
    irr = [-t for t in theta if (-t).is_positive]
    omega = min(irr, key=lambda v: float(v)) if irr and not dd.free_symbols else \
        (sp.expand(-theta[2]) if len(theta) > 2 else None)
    return {"theta": theta, "nu": nu, "omega": omega, "eta": sp.Integer(0), "triangular": tri}


# ============================================================================ user potentials
def _in_field(potential: ExprLike, field: sp.Symbol | str | None) -> tuple[sp.Expr, sp.Symbol]:
    r"""The potential as an expression in the real field ``phi`` (or ``field``): its symbols are
    matched by name, so a user's ``Symbol('phi')`` or ``Symbol('rho')`` (any assumptions) is the
    field resp. :math:`\rho = \phi^2/2`; a potential with neither is refused naming ``field``."""
    if isinstance(potential, str):
        raise InvalidArgument("potential", "expected a sympy expression, got text (parse it with "
                                           "symbrg.core.parsing.parse_expression)")
    U = as_expression(potential, "potential")
    phi = sp.Symbol(field if isinstance(field, str) else (field.name if field is not None else "phi"), real=True)
    names = {s.name for s in U.free_symbols}
    if RHO.name in names and phi.name not in names:
        return U.xreplace({resolve_symbols("potential", RHO.name, U.free_symbols)[0]: phi ** 2 / 2}), phi
    if U.free_symbols:
        U = U.xreplace({resolve_symbols("field", phi.name, U.free_symbols,
                                        what=f"the potential's symbols (field {phi.name} or rho)")[0]: phi})
    return U, phi


def polynomial_couplings(potential: ExprLike, order: int, *, field: sp.Symbol | None = None) -> dict:
    r"""Couplings of the expansion around zero, :math:`\lambda_i = \partial^i_\rho U|_0`,
    :math:`\rho = \phi^2/2`, of a Z2-even polynomial potential of degree :math:`\le 2\,` ``order``.
    A non-polynomial potential raises :class:`~symbrg.core.errors.Unsupported` naming ``potential``."""
    order = integer("order", order, minimum=1)
    U, phi = _in_field(potential, field)
    if not U.is_polynomial(phi):
        raise Unsupported("potential", f"a polynomial truncation needs a polynomial potential, got {U}")
    P = sp.Poly(U, phi)
    if any(m[0] % 2 for m in P.monoms()):
        raise InvalidArgument("potential", "the Z2 truncation needs an even potential U(-phi) = U(phi)")
    if P.degree() > 2 * order:
        raise OutOfRange("order", f"the potential has degree {P.degree()} > 2*order = {2 * order}")
    Ur = sp.expand(U.subs(phi, sp.sqrt(2 * RHO)))
    return {f"lambda_{i}": sp.diff(Ur, RHO, i).subs(RHO, 0) for i in range(1, order + 1)}


def potential_flow(potential: ExprLike, reg: "str | Regulator" = "litim", d: ExprLike = 3, order: int | None = None,
                   *, N: int = 1, dps: int = 30) -> dict:
    r"""Beta functions of the zero-field couplings :math:`\lambda_i = \partial^i_{\tilde\rho} u|_0`
    of a dimensionless Z2 polynomial potential :math:`u(\tilde\phi)` in the LPA truncation of order
    ``order`` (default: its degree/2).  Evaluated in hat variables
    (:math:`\hat\lambda_i = v_d^{\,i-1}\lambda_i`) and converted back; a non-polynomial potential
    raises :class:`~symbrg.core.errors.Unsupported` naming ``potential``.
    Returns ``{"lambda_i": (value, beta)}``."""
    U, phi = _in_field(potential, None)
    if order is None:
        if not U.is_polynomial(phi):
            raise Unsupported("potential", f"a polynomial truncation needs a polynomial potential, got {U}")
        order = max(1, sp.Poly(U, phi).degree() // 2)
    lam = polynomial_couplings(U, order, field=phi)
    tr = lpa_truncation(reg, d, order, expansion="zero", N=N)
    dps = working_precision("dps", dps)
    with mpmath.workdps(dps):
        vd = mpmath.mpf(sp.N(loop_volume(tr.d), dps + 5))
        vals = []
        for i in range(1, order + 1):
            v = lam[f"lambda_{i}"]
            if getattr(v, "free_symbols", None):
                raise InvalidArgument("potential", "the couplings must be numbers for a numeric flow")
            vals.append(mpmath.mpf(sp.N(v, dps + 5)) * vd ** (i - 1))
        G, _, _ = tr.evaluate(vals)
        return {f"lambda_{i}": (float(vals[i - 1] / vd ** (i - 1)), float(G[i - 1] / vd ** (i - 1)))
                for i in range(1, order + 1)}


# ============================================================================ derivation
def lpa_derivation(reg: "str | Regulator" = "litim", d: ExprLike = 3, order: int = 6, *,
                   anomalous: bool = False, dps: int = 30, N: int = 1) -> Derivation:
    r"""Derivation of the LPA (LPA') fixed point at order n: dimensionless flow, flow of
    :math:`\hat u'`, ansatz, projected beta functions (checked against direct differentiation of
    the flow for a closed-form regulator), the fixed point (residual) and the exponents."""
    R = regulator(reg)
    tr = lpa_truncation(R, d, order, anomalous=anomalous, N=N)
    fp = fixed_point(tr, dps=dps)
    label = ("LPA'" if anomalous else "LPA") + (f" O({N})" if N > 1 else "")
    dv = Derivation(f"{label} fixed point truncated at $\\phi^{{{2 * order}}}$, {R.name} regulator, "
                    f"$d = {sp.latex(tr.d)}$",
                    "Hat variables $\\hat\\rho = \\tilde\\rho/v_d$, $\\hat u = u/v_d$; "
                    "expansion around the minimum $\\kappa$.", name="lpa")
    flow, ver = dimensionless_flow(R, tr.d, ETA if anomalous else 0)
    dv.step(sp.Eq(sp.Derivative(sp.Function("u")(RHO), sp.Symbol("t")), flow),
            "dimensionless LPA flow", "eq:lpa-flow", verification=ver, cites=("BTW2002",))
    x = sp.Symbol("x")
    kap = tr.couplings[0]
    up = sum((tr.couplings[i - 1] * x ** (i - 1) / sp.factorial(i - 1) for i in range(2, order + 1)),
             sp.Integer(0))
    dv.step(sp.Eq(sp.Function("\\hat u'")(kap + x), up), "polynomial ansatz around the minimum",
            "eq:lpa-ansatz", uses=("eq:lpa-flow",))
    jcheck, ver_b = _projection_check(R, tr, anomalous)
    betas = tr.betas
    dv.step(tuple(sp.Eq(sp.Symbol(f"beta_{c}"), b) for c, b in zip(tr.couplings, betas)),
            f"beta functions; $T_j = \\partial^j_w A^d_0(w_0)$, $w_0 = 2\\kappa\\lambda_2$ "
            f"(projection $G_{jcheck}$ checked against direct differentiation with the Litim "
            f"threshold function)", "eq:lpa-beta", uses=("eq:lpa-ansatz",), verification=ver_b)
    vals = tuple(sp.Eq(c, sp.Float(v, 12)) for c, v in fp.couplings.items())
    dv.step(vals + ((sp.Eq(ETA, sp.Float(fp.eta, 12)),) if anomalous else ()),
            f"fixed point by Newton's method ({fp.iterations} steps)", "eq:lpa-fp", uses=("eq:lpa-beta",),
            verification=Verification("numeric", False, 1, dps, fp.residual, 10.0 ** (-(dps - 10))))
    nu, omega = sp.Symbol("nu"), sp.Symbol("omega")
    lams, err = _eigenvalue_check(tr, fp, dps)
    dv.step((sp.Eq(nu, sp.Float(fp.nu, 10)), sp.Eq(omega, sp.Float(fp.omega or float("nan"), 10))),
            "$\\nu = 1/\\theta_1$, $\\omega$ = smallest positive eigenvalue of $\\partial\\beta/\\partial g$ "
            "(checked: $\\det(\\partial\\beta/\\partial g - \\lambda) = 0$ at $\\lambda = -1/\\nu, \\omega$)",
            "eq:lpa-exponents", uses=("eq:lpa-fp",), cites=("Litim2002",),
            verification=Verification("numeric", False, len(lams), dps, float(err), 1e-12))
    return dv


def _projection_check(R: Regulator, tr: LPATruncation, anomalous: bool) -> tuple[int, Verification]:
    """Check the projection :math:`G_j` (j = min(order - 1, 3)) against direct differentiation of the
    flow for the ansatz, with the closed-form Litim threshold function: (j, verification)."""
    order = tr.order
    x = sp.Symbol("x")
    Rc = regulator("litim")
    tr_c = tr if R.inner is not None and not anomalous else lpa_truncation(Rc, tr.d, order)
    ellp = sp.diff(Rc.threshold(0, tr.d, 0, W), W)
    upx = sum((tr_c.couplings[i - 1] * x ** (i - 1) / sp.factorial(i - 1) for i in range(2, order + 1)),
              sp.Integer(0))
    rho = tr_c.couplings[0] + x
    w = upx + 2 * rho * sp.diff(upx, x)
    G = -2 * upx + (tr.d - 2) * rho * sp.diff(upx, x) + ellp.subs(W, w) * (3 * sp.diff(upx, x)
                                                                         + 2 * rho * sp.diff(upx, x, 2))
    w0v = tr_c.w0
    Tsub = {tr_c.T[m]: sp.diff(Rc.threshold(0, tr_c.d, 0, W), W, m + 1).subs(W, w0v)
            for m in range(len(tr_c.T))}
    jcheck = min(order - 1, 3)
    direct = sp.diff(G, x, jcheck).subs(x, 0)
    dom = {c: (0.05, 0.5) for c in tr_c.couplings}
    return jcheck, check_identity(direct, tr_c.G[jcheck].subs(Tsub), domain=dom, points=6, simplify=False)


def _eigenvalue_check(tr: LPATruncation, fp: FixedPoint, dps: int) -> tuple[list[mpmath.mpf], mpmath.mpf]:
    r"""Independent check of the exponents: :math:`\det(M - \lambda)/|M|^n` at :math:`\lambda = -1/\nu`
    and :math:`\omega`, M the stability matrix at the fixed point: (the lambdas, the largest value)."""
    order = tr.order
    with mpmath.workdps(dps):
        M = tr.stability_matrix(list(fp.couplings.values()))
        scale = max(1, mpmath.mnorm(M, 1)) ** order
        lams = [-1 / mpmath.mpf(fp.nu)] + ([mpmath.mpf(fp.omega)] if fp.omega is not None else [])
        err = max(abs(mpmath.det(M - lam * mpmath.eye(order))) / scale for lam in lams)
    return lams, err
