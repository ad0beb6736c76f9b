r"""The one identity verifier: is ``lhs == rhs``?  Decided by simplification *and* by evaluation.

Job: every claim of equality in symbrg (a derivation step, a flow equation, a theorem's identity) is
decided here, by :func:`verify` (public name also :func:`check_identity`).  For the residual

.. math::  r = \mathrm{lhs} - \mathrm{rhs},

(1) a symbolic test: :math:`r` simplifies to 0 (``sympy.simplify`` after ``doit``, or a caller's
exact test such as a rational ``cancel``); (2) a numeric test: :math:`|r(x_i)| \le \tau` at ``points``
points :math:`x_i` drawn uniformly from ``domain`` (default: every free symbol in [0.1, 2]; the draws are
seeded, so reports are reproducible), evaluated with mpmath at ``dps`` digits, where the tolerance
:math:`\tau = 10^{-(\mathrm{dps}-8)}\max(1, \max_i \sum_j |t_j(x_i)|)` scales with the terms
:math:`t_j` of :math:`r`, so cancellation at working precision is not mistaken for a failure.

At random (generic) points a Dirac delta vanishes, so deltas are dropped from the numeric form; an
undefined function :math:`f(s)` (a flow's unknown coupling) is replaced there by a generic smooth
function :math:`(1 + a s)/(1 + b s^2)` with fixed rational :math:`a, b`, different for each function.
The result is a :class:`Verification`, a report: what was tested, at how many points and digits, the
worst error against the tolerance, and whether the identity is verified.
"""
from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import mpmath
import sympy as sp

from symbrg.core.calculus import drop_deltas
from symbrg.core.errors import InvalidArgument
from symbrg.core.parsing import as_expression

__all__ = ["Verification", "check_identity", "generic_functions", "residual", "simplifies_to_zero", "verify"]

Domain = Mapping[sp.Symbol, "tuple[float, float]"]


@dataclass(frozen=True)
class Verification:
    """How a statement was established.

    kind: ``"symbolic"`` (simplified to zero), ``"numeric"`` (only spot-checked), ``"exact"`` (compared in
    exact rational arithmetic at ``points`` configurations: verified when the difference is 0), ``"both"``
    (simplified to zero and spot-checked), or ``"assumed"`` (taken as given, e.g. a definition).
    points / dps / max_abs_error / tolerance: the random high-precision evaluation, when one was made.
    note: a short free-text addition for documents (e.g. "against Gauss-Hermite quadrature, degree 80").
    """
    kind: str = "assumed"
    symbolic_zero: bool = False
    points: int = 0
    dps: int = 0
    max_abs_error: float | None = None
    tolerance: float | None = None
    note: str = ""

    @property
    def numeric_ok(self) -> bool:
        """The numeric test passed (or none was made)."""
        return self.max_abs_error is None or (self.tolerance is not None and self.max_abs_error <= self.tolerance)

    @property
    def verified(self) -> bool:
        """True when every check that was run passed (``assumed`` counts as not verified)."""
        if self.kind == "assumed":
            return False
        if self.kind == "symbolic":
            return self.symbolic_zero
        if self.kind == "numeric":
            return self.points > 0 and self.numeric_ok
        if self.kind == "exact":
            return self.points > 0 and self.max_abs_error == 0
        return self.symbolic_zero and self.points > 0 and self.numeric_ok

    def __repr__(self) -> str:
        return f"<Verification ({self.kind}) {self.describe()}>"

    def describe(self) -> str:
        """One line for documents: what was checked and how well."""
        parts = []
        if self.symbolic_zero:
            parts.append("simplifies to 0")
        if self.points and self.kind == "exact":
            parts.append(f"exact at {self.points} configurations, |difference| = {float(self.max_abs_error or 0):.1e}")
        elif self.points:
            parts.append(f"{self.points} random points at {self.dps} digits, "
                         f"max |error| = {float(self.max_abs_error or 0):.1e}")
        if not parts:
            return "assumed"
        return "verified: " + "; ".join(parts)


def residual(lhs: object, rhs: object = None) -> sp.Expr:
    """:math:`r = \\mathrm{lhs} - \\mathrm{rhs}` (``lhs.lhs - lhs.rhs`` for an ``Eq``; ``rhs`` None: 0)."""
    if isinstance(lhs, sp.Equality):
        lhs, rhs = lhs.args
    return as_expression(lhs, "lhs") - as_expression(rhs if rhs is not None else 0, "rhs")


def generic_functions(expr: sp.Expr) -> sp.Expr:
    r"""``expr`` with each undefined function :math:`f_i` (sorted by name) replaced by the generic
    smooth function :math:`f_i(s) = (1 + \tfrac{3+i}{7}s)/(1 + \tfrac{2i+1}{5}s^2)`, then ``doit``
    (derivatives of the unknowns become numbers); unchanged when there are none."""
    funcs = sorted(expr.atoms(sp.core.function.AppliedUndef), key=str)
    if not funcs:
        return expr
    t = sp.Symbol("t")
    subs = {f.func: sp.Lambda(t, (1 + sp.Rational(3 + i, 7) * t) / (1 + sp.Rational(2 * i + 1, 5) * t ** 2))
            for i, f in enumerate(funcs)}
    return expr.subs(subs).doit()


def _numeric_form(r: sp.Expr) -> sp.Expr:
    return generic_functions(drop_deltas(r))   # a random point is off a delta's support almost surely


def simplifies_to_zero(r: sp.Expr) -> bool:
    """The default symbolic test: ``sympy.simplify(r.doit()) == 0`` (False when simplification fails)."""
    try:
        return sp.simplify(r.doit()) == 0
    except Exception:  # noqa: BLE001 - simplification is a heuristic; the numeric check still stands
        return False


def verify(lhs: object, rhs: object = None, *, domain: Domain | None = None, points: int = 12, dps: int = 30,
           tolerance: float | None = None, simplify: bool = True, seed: int = 0, extra: Iterable[sp.Basic] = (),
           zero_test: Callable[[sp.Expr], bool] | None = None, numeric: sp.Expr | None = None,
           note: str = "") -> Verification:
    r"""Decide ``lhs == rhs`` (module docstring): the residual :math:`r` simplified to 0 and evaluated
    at ``points`` random points of ``domain`` with ``dps`` digits.

    simplify: run the symbolic test (False: numeric only, ``kind="numeric"``); ``zero_test``: the
    symbolic test itself (default: ``sympy.simplify(r.doit()) == 0``); ``numeric``: the expression to
    evaluate instead of :math:`r` (e.g. one with fewer nested functions); ``extra``: symbols to draw
    even if absent from :math:`r`; ``tolerance``: absolute, overriding the scaled default.
    Returns a :class:`Verification` (``.verified``, ``.describe()``).
    """
    if not isinstance(points, int) or points < 0:
        raise InvalidArgument("points", f"must be a non-negative integer, got {points!r}")
    if not isinstance(dps, int) or dps < 10:
        raise InvalidArgument("dps", f"must be an integer >= 10 (the tolerance is 10**-(dps - 8)), got {dps!r}")
    r = residual(lhs, rhs)
    zero = False
    if simplify:
        zero = bool((zero_test or simplifies_to_zero)(r))
    rn = _numeric_form(as_expression(numeric, "numeric") if numeric is not None else r)
    free = sorted(rn.free_symbols | set(extra), key=str)
    dom = dict(domain or {})
    rng = random.Random(seed)
    worst = scale_worst = mpmath.mpf(0)
    n = 0
    if points:
        with mpmath.workdps(dps):
            f = sp.lambdify(free, rn, modules="mpmath")
            terms = sp.Add.make_args(sp.expand(rn)) if len(sp.Add.make_args(rn)) < 2 else sp.Add.make_args(rn)
            g = sp.lambdify(free, sum((sp.Abs(t) for t in terms), sp.Integer(0)), modules="mpmath")
            for _ in range(points):
                args = [mpmath.mpf(rng.uniform(*dom.get(s, (0.1, 2.0)))) for s in free]
                err = abs(mpmath.mpmathify(f(*args)))
                worst = max(worst, err) if mpmath.isfinite(err) else mpmath.inf   # NaN fails too
                try:
                    scale_worst = max(scale_worst, abs(mpmath.mpmathify(g(*args))))
                except Exception:  # noqa: BLE001 - the magnitude is a scale only: 1 when it fails
                    scale_worst = max(scale_worst, mpmath.mpf(1))
                n += 1
    tol = tolerance if tolerance is not None else float(10.0 ** (-(dps - 8)) * max(1.0, float(scale_worst)))
    kind = "both" if (simplify and n) else ("symbolic" if simplify else "numeric")
    return Verification(kind=kind, symbolic_zero=bool(zero), points=n, dps=dps,
                        max_abs_error=float(worst) if n else None, tolerance=tol, note=note)


def check_identity(lhs: object, rhs: object = None, *, domain: Domain | None = None, points: int = 12,
                   dps: int = 30, tolerance: float | None = None, simplify: bool = True, seed: int = 0,
                   extra: Iterable[sp.Basic] = ()) -> Verification:
    """The public name of :func:`verify` (same arguments, without its hooks)."""
    return verify(lhs, rhs, domain=domain, points=points, dps=dps, tolerance=tolerance, simplify=simplify,
                  seed=seed, extra=extra)
