r"""Special functions with numerically honest NumPy and mpmath implementations.

Job: let a symbolic result name a function whose *evaluation* needs care (cancellation near a
correlation of :math:`\pm 1`, a quadrature, a series), while the expression tree stays one object.
Every such function subclasses :class:`NumericFunction`, a sympy ``Function`` that carries

* ``numpy_impl(*arrays)``: a vectorized float64 implementation (broadcasting its arguments),
* ``mpmath_impl(*mpf)``: an arbitrary-precision implementation (the current ``mpmath.mp.dps``),
* ``_latex`` for printing,
* the printer hooks ``_numpycode`` / ``_mpmathcode``, which print ``Name.numpy_impl(...)`` /
  ``Name.mpmath_impl(...)``, and ``_imp_`` (:class:`Implementations`), the object ``Name`` means in generated
  code.  :func:`sympy.lambdify` (``"numpy"`` or ``"mpmath"``) finds ``_imp_`` by itself, and the code
  generator :mod:`symbrg.core.codegen` recognizes numeric nodes by the same protocol, so NumPy and mpmath
  code generated from one expression, by either, call the same implementations.  Subclasses may also define ``fdiff`` so
that symbolic differentiation (e.g. in a hyperparameter) goes through them.

The bivariate-Gaussian nodes:

* :class:`GramDet` :math:`= q_{11}q_{22} - q_{12}^2`, with error-free (Dekker) products, clipped at 0;
* :class:`ArcCosKernel` :math:`= E[u^m\Theta(u)\,v^n\Theta(v)]` for any integers m, n >= 0, exact
  to full relative accuracy up to :math:`c = \pm 1` (a Taylor series in :math:`\psi = \pi - \theta`
  where the closed form would cancel);
* :class:`MehlerSeries` :math:`= \sum_n a_n(q_{11})b_n(q_{22})\rho^n` (and its slope
  :math:`\partial_{q_{12}}`), the Mehler series of a pair of activations without a closed form,
  evaluated over whole arrays at once and truncated per entry within a certified bound (the
  coefficients per activation come from :mod:`symbrg.gaussian.expectations`).

:class:`ArcCosKernel` can take the Gram determinant :math:`\Delta` as one more argument (a *gap hint*): a
kernel program that carries :math:`\Delta` accurately from the inputs through every layer passes it,
and the node then uses it instead of recomputing :math:`q_{11}q_{22} - q_{12}^2` from rounded
:math:`q`'s (which loses :math:`1 - c` to cancellation as :math:`c \to 1`).  Mathematically the hint
is redundant (:math:`\Delta = q_{11}q_{22} - q_{12}^2`), so its partial derivative is 0.

NumPy implementations work in cache-sized blocks (:func:`_blockwise`), so broadcast row/column
inputs are never expanded and the temporaries of error-free arithmetic stay cheap.  A hot function
also has ``numpy_into(out, workspace, *args)``, which writes into ``out`` and takes its temporaries
from a :class:`symbrg.core.codegen.Workspace`; in-place compiled programs call that.
"""
from __future__ import annotations

import functools
import importlib
import math
import threading
from collections.abc import Callable
from fractions import Fraction
from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias

import mpmath
import numpy as np
import sympy as sp

from symbrg.core.codegen import Program, Workspace, numpy_erf
from symbrg.core.types import ArrayLike, MpNumber, NDArray

if TYPE_CHECKING:
    from sympy.printing.codeprinter import CodePrinter
    from sympy.printing.latex import LatexPrinter
    from sympy.printing.pretty.pretty import PrettyPrinter
    from sympy.printing.pretty.stringpict import prettyForm

__all__ = ["ArcCosKernel", "GramDet", "Implementations", "MEHLER_FALLBACK", "MehlerSeries", "MehlerSide",
           "NumericFunction", "arccos_angular", "numpy_erf"]

#: An order argument of :class:`ArcCosKernel`: an int in generated code, a sympy Integer in the
#: expression tree, an mpf when sympy's ``evalf`` calls :meth:`NumericFunction.mpmath_impl`.
_Order: TypeAlias = "int | sp.Integer | mpmath.mpf"
#: An argument of an mpmath implementation: an mpmath number, or a Python number it converts exactly.
_MpArg: TypeAlias = "MpNumber | int | float"


class Implementations:
    """The numeric implementations of one :class:`NumericFunction` class: what its name means in generated
    code (sympy's ``_imp_`` protocol).  ``numpy_impl`` / ``mpmath_impl`` are the class's; calling the object
    evaluates with mpmath when an argument is an mpmath number, else with NumPy."""

    def __init__(self, cls: type[NumericFunction]) -> None:
        self.cls = cls

    def numpy_impl(self, *args: ArrayLike) -> NDArray[np.float64]:
        """The class's NumPy implementation."""
        return self.cls.numpy_impl(*args)

    def mpmath_impl(self, *args: _MpArg) -> MpNumber:
        """The class's mpmath implementation."""
        return self.cls.mpmath_impl(*args)

    def __call__(self, *args: ArrayLike | MpNumber) -> NDArray[np.float64] | MpNumber:
        if any(isinstance(a, (mpmath.mpf, mpmath.mpc)) for a in args):
            return self.mpmath_impl(*args)
        return self.numpy_impl(*args)

    def __repr__(self) -> str:
        return f"Implementations({self.cls.__name__})"


class NumericFunction(sp.Function):
    """Base class: a sympy function with ``numpy_impl`` and ``mpmath_impl`` class methods (module docstring).

    Every subclass gets its own :class:`Implementations` as ``_imp_``; the printer hooks print a call by
    the class's current name (dynamically built node classes are renamed after creation).
    """
    _imp_: Implementations

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls._imp_ = Implementations(cls)

    # Any (here and in mpmath_impl): every subclass fixes its own arguments, and only ``*args: Any,
    # **kwargs: Any`` lets a type checker accept each override's signature
    @classmethod
    def numpy_impl(cls, *args: Any, **kwargs: Any) -> NDArray[np.float64]:  # pragma: no cover - abstract
        """The NumPy implementation (a subclass fixes the arguments)."""
        raise NotImplementedError(cls.__name__)

    @classmethod
    def mpmath_impl(cls, *args: Any, **kwargs: Any) -> MpNumber:  # pragma: no cover - abstract
        """The mpmath implementation (a subclass fixes the arguments)."""
        raise NotImplementedError(cls.__name__)

    # Any: as for numpy_impl, a subclass fixes the arguments
    @classmethod
    def numpy_into(cls, out: NDArray[np.float64], work: Workspace, *args: Any) -> None:
        """Write ``numpy_impl(*args)`` into ``out``; ``work`` is a :class:`symbrg.core.codegen.Workspace`
        for temporaries (subclasses on hot paths override this to allocate nothing)."""
        out[...] = cls.numpy_impl(*args)

    def elementary(self) -> sp.Expr | None:
        """The node as elementary functions (for code that must run without symbrg: the
        self-contained ``--format python`` module), or None when it has no such form."""
        return None

    def _call(self, printer: CodePrinter, impl: str) -> str:
        return f"{type(self).__name__}.{impl}({', '.join(printer._print(a) for a in self.args)})"

    def _numpycode(self, printer: CodePrinter) -> str:
        """NumPy code: ``Name.numpy_impl(args)`` (``Name`` is ``_imp_`` in the generated code's namespace)."""
        return self._call(printer, "numpy_impl")

    def _mpmathcode(self, printer: CodePrinter) -> str:
        """mpmath code: ``Name.mpmath_impl(args)``."""
        return self._call(printer, "mpmath_impl")

    def _latex(self, printer: LatexPrinter, exp: str | None = None) -> str:
        """``\\operatorname{Name}\\left(args\\right)`` (subclasses print their mathematical notation)."""
        body = (rf"\operatorname{{{type(self).__name__}}}\left("
                + ", ".join(printer._print(a) for a in self.args) + r"\right)")
        return body if exp is None else rf"{body}^{{{exp}}}"

    def _pretty_parts(self) -> tuple[str, tuple[sp.Basic, ...]]:
        """The name and arguments that sympy's pretty printer shows (subclasses: their notation)."""
        return type(self).__name__, self.args

    def _pretty(self, printer: PrettyPrinter) -> prettyForm:
        name, args = self._pretty_parts()
        return printer._helper_print_function(self.func, args, func_name=name)

    def _eval_evalf(self, prec: int) -> sp.Expr | None:
        if not all(a.is_number for a in self.args):
            return None
        with mpmath.workprec(prec):
            value = self.mpmath_impl(*(mpmath.mpmathify(a.evalf(prec_to_dps(prec) + 5)) for a in self.args))
        return sp.Float(value, precision=prec) if not isinstance(value, mpmath.mpc) else sp.sympify(value)


def prec_to_dps(prec: int) -> int:
    """Binary precision to decimal digits (as mpmath counts them)."""
    return mpmath.libmp.prec_to_dps(prec)


# ---------------------------------------------------------------------------------------------
# Bivariate-Gaussian building blocks, written to keep full relative accuracy as c -> +-1.
# ---------------------------------------------------------------------------------------------

_SPLIT = 134217729.0  # 2**27 + 1, Dekker's splitting constant for float64


def _two_product(a: NDArray[np.float64], b: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Error-free product: ``a*b = p + e`` exactly (Dekker/Veltkamp, no FMA needed)."""
    p = a * b
    ca, cb = _SPLIT * a, _SPLIT * b
    ah, bh = ca - (ca - a), cb - (cb - b)
    al, bl = a - ah, b - bh
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, e


def _floats(*args: ArrayLike) -> list[NDArray[np.float64]]:
    return [np.asarray(a, dtype=float) for a in np.broadcast_arrays(*args)]


_CHUNK = 16384  # elements per block: 128 kB temporaries, few NumPy calls per entry


def _blockwise(kernel: Callable[..., NDArray[np.float64]], *arrays: ArrayLike) -> NDArray[np.float64]:
    """Apply ``kernel`` (flat float64 arrays -> flat array) over the broadcast of ``arrays`` in
    cache-sized blocks (``numpy.nditer``, buffered): the many temporaries of an error-free
    transformation cost no page faults, and a row/column-broadcast input is never materialized."""
    it = np.nditer([*arrays, None], flags=["external_loop", "buffered", "zerosize_ok", "refs_ok"],  # type: ignore[call-overload]  # numpy's stubs take no None operand (the allocated output)
                   op_flags=[["readonly"]] * len(arrays) + [["writeonly", "allocate"]],
                   op_dtypes=["float64"] * (len(arrays) + 1), casting="same_kind", buffersize=_CHUNK)
    with it:
        for ops in it:
            ops[-1][...] = kernel(*ops[:-1])
        out = it.operands[-1]
    return out


def _gram_det(q11: NDArray[np.float64], q12: NDArray[np.float64], q22: NDArray[np.float64]) -> NDArray[np.float64]:
    p1, e1 = _two_product(q11, q22)
    p2 = q12 * q12                                    # two-square: the two-product with a = b
    c = _SPLIT * q12
    h = c - (c - q12)
    lo = q12 - h
    e2 = ((h * h - p2) + 2.0 * h * lo) + lo * lo
    return np.maximum((p1 - p2) + (e1 - e2), 0.0)


def _gram_det_fast(q11: NDArray[np.float64], q12: NDArray[np.float64], q22: NDArray[np.float64],
                   prod: NDArray[np.float64], positive_end: bool = True) -> NDArray[np.float64]:
    """Full relative accuracy at the cost of the plain difference where it has it: for |c| < 1/sqrt2
    (det > prod/2) ``prod - q12^2`` loses nothing; the other entries use the error-free products
    (only those with c < 0 when ``positive_end`` is False: a caller insensitive to det near c = +1)."""
    det = prod - q12 * q12
    fix = det < 0.5 * prod
    if not positive_end:
        fix &= q12 < 0
    count = np.count_nonzero(fix)
    if count > fix.size // 2:
        return _gram_det(q11, q12, q22)
    if count:
        det[fix] = _gram_det(q11[fix], q12[fix], q22[fix])
    return np.maximum(det, 0.0)


class GramDet(NumericFunction):
    r"""The Gram determinant :math:`\Delta = q_{11} q_{22} - q_{12}^2 \ge 0` of a 2x2 covariance.

    NumPy: both products are formed error-free (Dekker's two-product), so :math:`\Delta` keeps full
    relative accuracy even when :math:`|c| = |q_{12}|/\sqrt{q_{11}q_{22}}` is within an ulp of 1;
    rounding that would make :math:`\Delta < 0` is clipped to 0 (never a NaN downstream).
    mpmath: the products are exact at doubled working precision.
    """
    nargs = 3

    @classmethod
    def eval(cls, q11: sp.Expr, q12: sp.Expr, q22: sp.Expr) -> GramDet | None:
        if sp.default_sort_key(q22) < sp.default_sort_key(q11):   # symmetric: one canonical order
            return cls(q22, q12, q11)
        return None

    @classmethod
    def numpy_impl(cls, q11: ArrayLike, q12: ArrayLike, q22: ArrayLike) -> NDArray[np.float64]:
        return _blockwise(lambda a, b, c: _gram_det_fast(a, b, c, a * c), q11, q12, q22)

    @classmethod
    def mpmath_impl(cls, q11: _MpArg, q12: _MpArg, q22: _MpArg) -> MpNumber:
        d = mpmath.fsub(mpmath.fmul(q11, q22, exact=True), mpmath.fmul(q12, q12, exact=True),
                        prec=mpmath.mp.prec + 20)          # exact products, one rounding
        return d if d > 0 else mpmath.mpf(0)

    def elementary(self) -> sp.Expr:
        """:math:`\\max(q_{11}q_{22} - q_{12}^2, 0)` (rounded products: near c = 1 less accurate than
        the error-free NumPy implementation)."""
        q11, q12, q22 = self.args
        return sp.Max(q11 * q22 - q12**2, 0)

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        q11, q12, q22 = self.args
        return (q22, -2 * q12, q11)[argindex - 1]

    def _pretty_parts(self) -> tuple[str, tuple[sp.Basic, ...]]:
        return "Δ", self.args

    def _latex(self, printer: LatexPrinter, exp: str | None = None) -> str:
        q11, q22 = (printer._print(a) for a in (self.args[0], self.args[2]))
        base = rf"\left({q11} {q22} - {printer._print(self.args[1] ** 2)}\right)"
        return base if exp is None else rf"{base}^{{{exp}}}"


def _sin_over_t_power(m: int, terms: int) -> list[Fraction]:
    """Taylor coefficients of :math:`(\\sin t / t)^m` in powers of :math:`t^2` (exact rationals)."""
    from math import factorial
    base = [Fraction((-1) ** k, factorial(2 * k + 1)) for k in range(terms)]
    out = [Fraction(1)] + [Fraction(0)] * (terms - 1)
    for _ in range(m):
        out = [sum((out[i] * base[k - i] for i in range(k + 1)), Fraction(0)) for k in range(terms)]
    return out


class ArcCosKernel(NumericFunction):
    r"""Cho–Saul arc-cosine kernel :math:`E[u^m\Theta(u)\,v^n\Theta(v)]`, :math:`(u, v)\sim
    N(0, [[q_{11}, q_{12}], [q_{12}, q_{22}]])`, for integers :math:`m, n \ge 0`.

    Derivation (polar coordinates; :math:`\psi = \pi - \theta`, :math:`\cos\theta = c`):

    .. math::  E = \frac{q_{11}^{m/2} q_{22}^{n/2}\, 2^{(m+n)/2}\,\Gamma(\tfrac{m+n}{2}+1)}{2\pi}
               \int_0^{\psi} \sin^m t\,\sin^n(\psi - t)\,dt ,

    the angular integral being done symbolically by the reduction formulas for
    :math:`\int\sin^a\cos^b` (:func:`arccos_angular`); for m = n it is :math:`J_n(\theta)/2`-scaled
    as in Cho & Saul (2009), e.g. :math:`J_1 = \sin\theta + (\pi-\theta)\cos\theta`.

    Numerics (NumPy): the closed form is evaluated in :math:`c` and :math:`\theta = \arccos c`
    (:meth:`numpy_into`); the entries where that would lose accuracy are redone with
    :math:`\psi = \operatorname{atan2}(\sqrt\Delta, -q_{12})` and the error-free Gram
    determinant :class:`GramDet`.  As :math:`c\to-1` the closed form cancels (the result is
    :math:`\propto\psi^{m+n+1}`), so for :math:`\psi` below a switch point (where the closed
    form's monomials would cancel by more than a factor 16; at most 3/2) NumPy sums the exact Taylor series
    :math:`\int_0^\psi\sin^m t\sin^n(\psi-t)dt = \sum_{k,l}\alpha^{(m)}_k\alpha^{(n)}_l
    B(m+2k, n+2l)\,\psi^{m+n+2k+2l+1}` (Beta integrals); mpmath evaluates the closed form with
    enough guard digits to absorb the cancellation.
    """
    nargs = (5, 6)           # (m, n, q11, q12, q22[, Delta]): the optional gap hint, see the module doc
    PSI_SERIES = 1.5      # below this psi, NumPy sums the Taylor series (measured: <1e-14 to m=n=8)
    SERIES_TERMS = 24     # psi**48/48! < 1e-52 at psi <= 1.5: far below double precision

    @classmethod
    def orders(cls, m: _Order, n: _Order) -> tuple[int, int]:
        """The orders (m, n) as Python ints."""
        return int(m), int(n)

    @staticmethod
    def sensitive(m: int, n: int) -> bool:
        r"""Does an error in :math:`S = \sin\psi` reach the kernel at first order at c = +1, through
        S and through :math:`\psi = \operatorname{atan2}(S, C)`?  (:math:`J_0`: yes; :math:`J_1` and
        up: no.)  Only such kernels need the gap hint."""
        return _arccos_sensitive(int(m), int(n))

    @staticmethod
    def normalization(m: int, n: int) -> sp.Expr:
        r""":math:`2^{(m+n)/2}\,\Gamma(\tfrac{m+n}{2}+1)/(2\pi)`, the factor in front of the angular integral."""
        return 2 ** sp.Rational(m + n, 2) * sp.gamma(sp.Rational(m + n, 2) + 1) / (2 * sp.pi)

    @classmethod
    def explicit(cls, m: int, n: int, q11: sp.Expr, q12: sp.Expr, q22: sp.Expr,
                 det: sp.Expr | None = None) -> sp.Expr:
        r"""The closed form in :math:`q_{11}, q_{12}, q_{22}` (with :math:`\sqrt\Delta` and
        :math:`\psi=\operatorname{atan2}(\sqrt\Delta,-q_{12})`; ``det``: the gap hint, default
        :class:`GramDet`); exact, but it cancels near c = -1."""
        S, C, P = _ANG_SYMBOLS
        root = sp.sqrt(GramDet(q11, q12, q22) if det is None else det)
        R = sp.sqrt(q11) * sp.sqrt(q22)
        ang = arccos_angular(m, n).subs({S: root / R, C: -q12 / R, P: sp.atan2(root, -q12)})
        return sp.expand(cls.normalization(m, n) * q11 ** sp.Rational(m, 2) * q22 ** sp.Rational(n, 2) * ang)

    @classmethod
    def _numpy_parts(cls, m: int, n: int) -> _ArcCosParts:
        key = (m, n)
        if key in _ARCCOS_CACHE:
            return _ARCCOS_CACHE[key]
        with _ARCCOS_LOCK:                      # Gram tiles run on threads: build each entry once
            if key in _ARCCOS_CACHE:
                return _ARCCOS_CACHE[key]
            S, C, P = _ANG_SYMBOLS
            c, theta = sp.symbols("c theta", real=True)
            ang = arccos_angular(m, n)
            parts = sp.collect(sp.expand(ang), [S, P], evaluate=False)
            horner = sp.Add(*[k * sp.horner(v, C) if v.has(C) else k * v for k, v in parts.items()])
            closed = Program((S, C, P), (), (horner,), f"arccos_angular_{m}_{n}")
            # the fast path's variables: c = -C and theta = pi - psi, the normalization folded in
            fast = Program((S, c, theta), (), (cls.normalization(m, n) * sp.factor_terms(
                horner.xreplace({C: -c, P: sp.pi - theta})),), f"arccos_kernel_{m}_{n}")
            coeffs = _series_coefficients(m, n, cls.SERIES_TERMS)
            switch = _series_switch(ang, cls.PSI_SERIES)
            # keep the series terms that matter in double precision up to the switch point
            size = [abs(c) * switch ** (2 * k) for k, c in enumerate(coeffs)]
            keep = max(k for k in range(len(size)) if size[k] >= 1e-18 * size[0]) + 1
            _ARCCOS_CACHE[key] = _ArcCosParts(closed.compile(), fast.compile_inplace(fast.inputs),
                                              np.array(coeffs[:keep][::-1]), switch, cls.sensitive(m, n),
                                              fast.outputs[0].has(S), float(cls.normalization(m, n)))
        return _ARCCOS_CACHE[key]

    @classmethod
    def numpy_impl(cls, m: _Order, n: _Order, q11: ArrayLike, q12: ArrayLike, q22: ArrayLike,
                   *det: ArrayLike) -> NDArray[np.float64]:
        work = Workspace()

        def block(*qs: np.ndarray) -> np.ndarray:
            out = np.empty(np.broadcast_shapes(*(q.shape for q in qs)))
            work.shape = out.shape
            cls.numpy_into(out, work, m, n, *qs)
            return out
        qs = [np.asarray(a, dtype=float) for a in (q11, q12, q22, *det)]
        if math.prod(np.broadcast_shapes(*(q.shape for q in qs))) > 4 * _CHUNK:
            return _blockwise(block, *qs)       # bounded temporaries: cache-sized blocks
        return block(*qs)

    @classmethod
    def numpy_into(cls, out: NDArray[np.float64], work: Workspace, m: _Order, n: _Order, q11: ArrayLike,
                   q12: ArrayLike, q22: ArrayLike, det: ArrayLike | None = None) -> None:
        r"""Evaluate into ``out`` with temporaries from the workspace ``work`` (allocation-free when
        warm, except the rare entries repaired below).

        First the closed form in :math:`c = q_{12}/\sqrt{q_{11}q_{22}}` (square roots taken on the
        un-broadcast variances: a row/column input costs one root per point, not per entry);
        then the entries where that loses accuracy are redone by :func:`_arccos_careful`:
        :math:`\psi = \pi - \theta` below the series switch (the closed form cancels as c -> -1)
        or below 0.1 (:math:`\psi` inherits the rounding of c as :math:`\epsilon/\psi^2`), and,
        for kernels whose value feels an error in :math:`\sin\psi` at c = +1 (e.g. :math:`J_0`),
        :math:`\psi > \pi - 0.02`, where :math:`d\theta/dc` would amplify the rounding of c.
        Elsewhere the two agree to a few ulp.  ``det``: the gap hint (:math:`\Delta` carried
        accurately by the caller), used for :math:`\sqrt\Delta` in the redone entries.
        """
        m, n = cls.orders(m, n)
        parts = cls._numpy_parts(m, n)
        s1, s2 = np.sqrt(q11), np.sqrt(q22)
        R, c, theta, S = (work(k) for k in ("R", "c", "theta", "S"))
        np.multiply(s1, s2, out=R)           # one outer product and a division: cheaper than two
        np.divide(q12, R, out=c)             # broadcast products by 1/s1 and 1/s2 (measured)
        np.clip(c, -1.0, 1.0, out=c)
        np.arccos(c, out=theta)
        if parts.needs_sin:
            np.subtract(1.0, c, out=S)
            np.add(1.0, c, out=out)
            np.multiply(S, out, out=S)                         # (1-c)(1+c): exact differences near +-1
            np.sqrt(S, out=S)
        ang = parts.fast_into(S, c, theta, work.child("closed"))
        careful = work("careful", bool)
        np.greater(theta, math.pi - max(parts.switch, _FAST_PSI_MIN), out=careful)
        if parts.sensitive:
            careful |= np.less(theta, 0.02, out=work("near +1", bool))
        count = np.count_nonzero(careful)
        if count:
            qs = np.broadcast_arrays(q11, q12, q22, out, *(() if det is None else (det,)))
            qs = qs[:3] + qs[4:]
            if 2 * count > careful.size:
                ang = parts.norm * _arccos_careful(m, n, parts, *qs)
            else:
                ang[careful] = parts.norm * _arccos_careful(m, n, parts, *(q[careful] for q in qs))
        if m == n == 0:
            np.copyto(out, ang)
        elif m == n:
            np.multiply(ang, R if m == 1 else R ** m, out=out)
        else:
            np.multiply(ang, s1 ** m, out=out)
            out *= s2 ** n

    @classmethod
    def mpmath_impl(cls, m: _Order, n: _Order, q11: _MpArg, q12: _MpArg, q22: _MpArg,
                    *hint: _MpArg) -> MpNumber:
        m, n = int(m), int(n)
        mpf = mpmath.mpf
        q11, q12, q22 = mpf(q11), mpf(q12), mpf(q22)
        prec = mpmath.mp.prec
        det = max(mpf(hint[0]), mpf(0)) if hint else GramDet.mpmath_impl(q11, q12, q22)
        if det == 0 and q12 <= 0:
            return mpmath.mpf(0)                                  # c = -1: u = -v, never both positive
        fdet = float(det)
        if fdet > 0:
            psi_f = math.atan2(math.sqrt(fdet), -float(q12))
        else:
            psi_f = float(mpmath.atan2(mpmath.sqrt(det), -q12))
        switch = cls._numpy_parts(m, n).switch
        # the closed form cancels like psi^(m+n+1) below the switch point: add that many digits
        guard = 16 if psi_f >= switch else int(3.33 * (m + n + 1) * math.log10(math.pi / psi_f)) + 24
        key = ("mp", m, n, prec)
        if key not in _ARCCOS_MP:
            S, C, P = _ANG_SYMBOLS
            with mpmath.workprec(prec + 16):
                half = mpmath.mpf(m + n) / 2
                norm = mpmath.mpf(2) ** half * mpmath.gamma(half + 1) / (2 * mpmath.pi)
            _ARCCOS_MP[key] = (sp.lambdify((S, C, P), arccos_angular(m, n), modules="mpmath"), norm)
        closed, norm = _ARCCOS_MP[key]
        with mpmath.workprec(prec + guard):
            root = mpmath.sqrt(det)
            R = mpmath.sqrt(q11 * q22)
            psi = mpmath.atan2(root, -q12)
            inv = 1 / R                  # S, C beyond [-1, 1] by an ulp are harmless in a polynomial
            ang = closed(root * inv, -q12 * inv, psi)
            scale = R ** m if m == n else mpmath.sqrt(q11) ** m * mpmath.sqrt(q22) ** n
            out = norm * scale * ang
        return +out

    def elementary(self) -> sp.Expr:
        """The closed form (:meth:`explicit`) with the gap :math:`\\max(\\Delta, 0)` in elementary functions."""
        m, n, q11, q12, q22, *det = self.args
        gap = sp.Max(det[0] if det else q11 * q22 - q12**2, 0)      # rounding may leave it below 0
        return type(self).explicit(int(m), int(n), q11, q12, q22, det=gap)

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        m, n, q11, q12, q22, *hint = self.args
        mi, ni = int(m), int(n)
        if argindex <= 2:
            raise sp.ArgumentIndexError(self, argindex)
        if argindex == 6:
            return sp.Integer(0)         # the gap hint is a function of q11, q12, q22, not a variable
        if mi >= 1 and ni >= 1:
            d12 = mi * ni * ArcCosKernel(mi - 1, ni - 1, q11, q12, q22,   # Price's theorem
                                         *(hint if self.sensitive(mi - 1, ni - 1) else ()))
        else:
            a, b, c = sp.Dummy("q11", positive=True), sp.Dummy("q12", real=True), sp.Dummy("q22", positive=True)
            d12 = sp.diff(self.explicit(mi, ni, a, b, c), b).xreplace({a: q11, b: q12, c: q22})
        if argindex == 4:
            return d12
        if argindex == 3:   # homogeneity: E(l q11, sqrt(l) q12, q22) = l^{m/2} E
            return (mi * self - q12 * d12) / (2 * q11)
        return (ni * self - q12 * d12) / (2 * q22)

    def _pretty_parts(self) -> tuple[str, tuple[sp.Basic, ...]]:
        m, n, *rest = self.args
        low = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")
        return f"𝒥{str(m).translate(low)},{str(n).translate(low)}", tuple(rest)

    def _latex(self, printer: LatexPrinter, exp: str | None = None) -> str:
        m, n, q11, q12, q22, *hint = self.args
        gap = "".join(rf";\ {printer._print(h)}" for h in hint)
        body = (rf"\mathcal{{J}}_{{{printer._print(m)},{printer._print(n)}}}\!\left("
                rf"{printer._print(q11)}, {printer._print(q12)}, {printer._print(q22)}{gap}\right)")
        return body if exp is None else rf"{body}^{{{exp}}}"


def _series_coefficients(m: int, n: int, terms: int) -> list[float]:
    r"""Coefficients :math:`c_j` of :math:`\int_0^\psi\sin^m t\sin^n(\psi-t)dt = \psi^{m+n+1}\sum_j c_j\psi^{2j}`,
    :math:`c_j = \sum_{k+l=j}\alpha^{(m)}_k\alpha^{(n)}_l B(m+2k, n+2l)` (:func:`_sin_over_t_power`), to float."""
    from math import factorial
    a, b = _sin_over_t_power(m, terms), _sin_over_t_power(n, terms)
    coeffs = [0.0] * terms
    for k in range(terms):
        for j in range(terms - k):
            beta = sp.Rational(factorial(m + 2 * k) * factorial(n + 2 * j),
                               factorial(m + n + 2 * k + 2 * j + 1))
            coeffs[k + j] += float(a[k] * b[j] * beta.p / beta.q)  # exact product, one rounding
    return coeffs


def _series_switch(ang: sp.Expr, psi_max: float) -> float:
    """The switch point of :class:`ArcCosKernel`'s NumPy path: below it (on a grid up to ``psi_max``) the
    monomials of the closed form ``ang`` (:func:`arccos_angular`) cancel by more than a factor 16."""
    S, C, P = _ANG_SYMBOLS
    terms = [sp.lambdify((S, C, P), t, modules="numpy") for t in sp.Add.make_args(sp.expand(ang))]
    grid = np.linspace(1e-3, psi_max, 600)
    parts = np.array([np.broadcast_to(t(np.sin(grid), np.cos(grid), grid), grid.shape)
                      for t in terms])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.abs(parts).sum(axis=0) / np.abs(parts.sum(axis=0))
    bad = np.nonzero(ratio > 16)[0]
    return (float(grid[bad[-1] + 1]) if bad[-1] + 1 < grid.size else psi_max) if bad.size \
        else float(grid[0])                          # no cancellation (e.g. J_0 = psi)


class _ArcCosParts(NamedTuple):
    """What :class:`ArcCosKernel`'s NumPy path needs for one (m, n), all from :func:`arccos_angular`."""
    closed: Callable[..., NDArray[np.float64]]     # the angular integral A(S, C, psi), NumPy
    fast_into: Callable[..., NDArray[np.float64]]  # norm * A(S, -c, pi - theta), in place: fn(S, c, theta, workspace)
    coeffs: NDArray[np.float64]   # its Taylor coefficients in psi^2, highest first (times psi^(m+n+1))
    switch: float        # below this psi the closed form cancels: the series is used
    sensitive: bool      # does an error in S reach A at first order at c = +1?
    needs_sin: bool      # does A depend on S = sin(psi) at all (J_0 does not)?
    norm: float          # the normalization in front of A


#: per (m, n): the NumPy path's parts (:meth:`ArcCosKernel._numpy_parts`)
_ARCCOS_CACHE: dict[tuple[int, int], _ArcCosParts] = {}
#: per ("mp", m, n, binary precision): the mpmath angular integral and the normalization
_ARCCOS_MP: dict[tuple[str, int, int, int], tuple[Callable[..., MpNumber], MpNumber]] = {}
#: per ("sensitive", m, n): :meth:`ArcCosKernel.sensitive`
_ARCCOS_SENSITIVE: dict[tuple[str, int, int], bool] = {}
_ARCCOS_LOCK = threading.Lock()
# Below this psi the fast path's psi = pi - arccos(c) inherits c's rounding, ~eps/psi^2 relative:
# 2e-14 at 0.1, so entries with smaller psi go to the error-free path.
_FAST_PSI_MIN = 0.1
_ANG_SYMBOLS = sp.symbols("S C psi", real=True)


def _arccos_sensitive(m: int, n: int) -> bool:
    """See :meth:`ArcCosKernel.sensitive` (cached: symbolic work)."""
    key = ("sensitive", m, n)
    if key not in _ARCCOS_SENSITIVE:
        S, C, P = _ANG_SYMBOLS
        ang = arccos_angular(m, n)
        # near c = +1 (psi = pi, S = 0, C = -1): the first-order response to an error in S = sqrt(det)/R
        sens = (sp.diff(ang, S) + sp.diff(ang, P) * C / (S ** 2 + C ** 2)).subs({S: 0, C: -1, P: sp.pi})
        _ARCCOS_SENSITIVE[key] = bool(sp.simplify(sens) != 0)
    return _ARCCOS_SENSITIVE[key]


def _arccos_careful(m: int, n: int, parts: _ArcCosParts, q11: NDArray[np.float64], q12: NDArray[np.float64],
                    q22: NDArray[np.float64], det: NDArray[np.float64] | None = None) -> NDArray[np.float64]:
    r"""The angular integral of :class:`ArcCosKernel` to full relative accuracy in the float64 inputs:
    :math:`\psi = \operatorname{atan2}(\sqrt\Delta, -q_{12})` with the error-free Gram determinant
    (or the gap hint ``det``), and the Taylor series in :math:`\psi` below the switch point."""
    closed, coeffs, switch, sensitive = parts.closed, parts.coeffs, parts.switch, parts.sensitive
    prod = q11 * q22
    # sqrt(det) must be accurate as c -> -1 (and as c -> +1 when the closed form is sensitive
    # there): a plain difference would leave an error ~sqrt(eps)
    root = np.sqrt(np.maximum(det, 0.0) if det is not None
                   else _gram_det_fast(q11, q12, q22, prod, sensitive))
    psi = np.arctan2(root, -q12)
    R = np.sqrt(prod)
    with np.errstate(invalid="ignore", divide="ignore"):
        near = psi < switch                  # c close to -1: Taylor series in psi
        count = np.count_nonzero(near)
        if count == psi.size:
            return psi ** (m + n + 1) * np.polyval(coeffs, psi * psi)
        ang = np.array(np.broadcast_to(closed(np.minimum(root / R, 1.0), np.clip(-q12 / R, -1.0, 1.0), psi),
                                       psi.shape))
        if count:
            p = psi[near]
            ang[near] = p ** (m + n + 1) * np.polyval(coeffs, p * p)
    return ang


def arccos_angular(m: int, n: int) -> sp.Expr:
    r""":math:`\int_0^\psi \sin^m t\,\sin^n(\psi - t)\,dt` as a polynomial in
    :math:`S = \sin\psi`, :math:`C = \cos\psi` and :math:`\psi` (symbols :data:`_ANG_SYMBOLS`).

    Expand :math:`\sin^n(\psi-t) = \sum_j\binom{n}{j} S^{n-j}(-C)^j \cos^{n-j}t\,\sin^j t` and reduce
    :math:`D(a,b)=\int_0^\psi\sin^a t\cos^b t\,dt` by the textbook recursions
    :math:`D(a,b) = \frac{S^{a+1}C^{b-1}}{a+b} + \frac{b-1}{a+b}D(a,b-2)`,
    :math:`D(a,b) = -\frac{S^{a-1}C^{b+1}}{a+b} + \frac{a-1}{a+b}D(a-2,b)`.
    """
    S, C, P = _ANG_SYMBOLS
    memo: dict[tuple[int, int], sp.Expr] = {}

    def D(a: int, b: int) -> sp.Expr:
        if (a, b) in memo:
            return memo[a, b]
        if b >= 2:
            out = S ** (a + 1) * C ** (b - 1) / (a + b) + sp.Rational(b - 1, a + b) * D(a, b - 2)
        elif a >= 2:
            out = -S ** (a - 1) * C ** (b + 1) / (a + b) + sp.Rational(a - 1, a + b) * D(a - 2, b)
        else:
            out = {(0, 0): P, (1, 0): 1 - C, (0, 1): S, (1, 1): S ** 2 / 2}[a, b]
        memo[a, b] = out
        return out

    # the a >= 2 rule's boundary term at t = 0 vanishes because sin(0)^(a-1) = 0 for a >= 2
    total = sp.expand(sum((sp.binomial(n, j) * S ** (n - j) * (-C) ** j * D(m + j, n - j)
                           for j in range(n + 1)), sp.Integer(0)))
    # reduce with S^2 = 1 - C^2: the result is S P(C) + psi Q(C) + R(C), fewer and smaller terms
    total = sp.expand(total.replace(lambda e: e.is_Pow and e.base == S and e.exp >= 2,
                                    lambda e: S ** (e.exp % 2) * (1 - C ** 2) ** (e.exp // 2)))
    return sp.collect(total, [S, P], evaluate=True)


# ---------------------------------------------------------------------------------------------
# The Mehler series of a pair of activations, evaluated over whole arrays at once.
# ---------------------------------------------------------------------------------------------

class MehlerSide(NamedTuple):
    r"""What :class:`MehlerSeries` needs of one side of a pair (the variances :math:`q_{11}` of the
    rows, or :math:`q_{22}` of the columns), for ``n`` variances :math:`q_i`, at the group orders
    :math:`N_0 < N_1 < \dots < N_{G-1}` of the series (:attr:`MehlerSeries.mehler_groups`).

    ``coeffs`` (L + 1, n): the normalized Hermite coefficients :math:`a_k(q_i)`, coefficient-major,
    :math:`L \ge N_{\mathrm{cap}}` (every order an entry may use).
    ``value_thresholds`` (G, n): :math:`U_i(N_g)^2 = (\mathrm{tol}/T_i(N_g))^{1/(N_g+1)}` with
    :math:`T_i(N) = E[f(\sqrt{q_i}z)^2] - \sum_{k\le N}a_k(q_i)^2` (plus its rounding floor), taken at
    :math:`\min(g, \mathrm{cap}_i)`: an entry with :math:`\rho^2 \le U_i^2 V_j^2` has
    :math:`|\rho|^{N+1}\sqrt{T_i(N)T'_j(N)} \le \mathrm{tol}`.
    ``slope_thresholds`` (G, n) or None: the same for the slope :math:`\partial_{q_{12}}` of the
    series, :math:`U'_i(N)^2 = (\mathrm{tol}\,q_i/T^{(1)}_i(N))^{1/N}` with
    :math:`T^{(1)}_i(N) = q_i E[f'(\sqrt{q_i}z)^2] - \sum_{k\le N} k\,a_k(q_i)^2`.
    ``thresholds`` (G, n): what decides the orders, the smaller of the two where the slope shares
    the value's orders (then :math:`W_iW_j \le \min(U_iU_j, U'_iU'_j)` certifies both).
    ``caps`` (n,): the group index beyond which the tails sit at their rounding floor (higher orders
    would only help the other side).
    ``inv_sqrt`` (n,): :math:`1/\sqrt{q_i}` (0 where :math:`q_i = 0`, so that :math:`\rho = 0` there).
    ``totals`` (n, 2): :math:`E[f(\sqrt{q_i}z)^2]` and :math:`E[f'(\sqrt{q_i}z)^2]`, the value and the
    slope of a pair (f, f) at :math:`q_{11} = q_{12} = q_{22}` exactly (the whole series at
    :math:`\rho = 1`, by Parseval).
    """
    coeffs: NDArray[np.float64]
    thresholds: NDArray[np.float64]
    caps: NDArray[np.intp]
    inv_sqrt: NDArray[np.float64]
    value_thresholds: NDArray[np.float64]
    slope_thresholds: NDArray[np.float64] | None
    totals: NDArray[np.float64]


#: the group index of an entry whose series is not certified at any order (evaluated by the fallback)
MEHLER_FALLBACK = -1
_MEHLER_FIRST = 3              # groups tested for every entry at once before the pending ones are narrowed
_MEHLER_SCALAR = 6             # gathered entries up to which the high orders are summed in Python floats
_MEHLER_BLOCK = 1 << 20        # numpy_impl evaluates larger arrays in blocks of rows (bounded temporaries)


class MehlerSeries(NumericFunction):
    r"""The Mehler series of a pair of activations, one node over whole arrays:

    .. math::  \mathbb E[f(u)\,g(v)] = \sum_{n\ge 0} a_n(q_{11})\,b_n(q_{22})\,\rho^n, \qquad
               \rho = \frac{q_{12}}{\sqrt{q_{11}q_{22}}},

    :math:`a_n(q) = E[f(\sqrt q z)\,He_n(z)]/\sqrt{n!}` (and :math:`b_n` of g), truncated **per entry**
    at the smallest of the group orders :math:`N_0 < N_1 < \dots` whose Parseval bound

    .. math::  \Big|\sum_{n>N} a_n b_n\rho^n\Big| \le |\rho|^{N+1}\sqrt{T_f(N, q_{11})\,T_g(N, q_{22})}
               \le \mathrm{tol}

    holds: certified at every entry and every variance, not only on a stated range.  Entries no
    order up to about 400 certifies (large variances with :math:`|\rho|` near 1) take the whole
    series where it is known, :math:`E[f(u)^2]` (and :math:`E[f'(u)^2]`) for a pair (f, f) at
    :math:`q_{11} = q_{12} = q_{22}` (the diagonal of a Gram matrix), else :meth:`mehler_fallback`
    (2-D quadrature).

    A *slope* class (:attr:`mehler_slope`) evaluates Price's derivative of its base series,

    .. math::  \partial_{q_{12}}\mathbb E[f(u)g(v)] = \mathbb E[f'(u)g'(v)]
               = \frac{1}{\sqrt{q_{11}q_{22}}}\sum_{n\ge 1} n\,a_n b_n\,\rho^{n-1},

    from the same coefficients and at the same per-entry orders (chosen so that both bounds hold,
    the slope's being :math:`|\rho|^N\sqrt{T^{(1)}_f T^{(1)}_g/(q_{11}q_{22})}`): the NTK's
    :math:`E[\varphi'\varphi']` then costs two passes per term on top of :math:`E[\varphi\varphi]`
    instead of a second series.  Evaluating the slope computes the value too and leaves it for the
    base node's next call with the same arguments (per thread, checked by content): a kernel
    program that asks for both pays for one.

    NumPy (:meth:`numpy_into`): the coefficients are vectors per row and per column
    (:meth:`mehler_side`: O(n L) per variance, cached), so the low orders :math:`n \le N_0` are one
    Horner loop over the whole array, :math:`b \leftarrow b\,x + a_n\otimes b_n` (:math:`x = \rho`,
    or :math:`\rho^2` when f and g have a parity, which halves the terms; the slope runs the
    derivative recurrence :math:`d \leftarrow d\,x + b` beside it); the entries that need more
    (:math:`\rho^2 > W_i(N_0)^2 W_j(N_0)^2`) are gathered, sorted by their order and summed from the
    top by the same recurrences on shrinking prefixes, then join the array loop.  Every entry's value
    depends only on its own :math:`(q_{11}, q_{12}, q_{22})`: an array evaluates exactly as its
    entries one by one (tiles, threads and the per-point diagonal agree bit for bit).  mpmath
    (:meth:`mpmath_impl`, in the subclass): the same orders, the coefficients at working precision.

    Subclasses (built per pair, derivative orders and tolerance) set the ``mehler_*`` attributes
    and implement :meth:`mehler_side`, :meth:`mehler_fallback` and :meth:`mehler_tolerance`.
    """
    nargs = 3
    #: the orders N_0 < N_1 < ... an entry may be truncated at (N_0 for most, the last is the cap)
    mehler_groups: tuple[int, ...] = ()
    #: p when every nonzero term has n = p (mod 2) (f and g of one parity), None otherwise
    mehler_parity: int | None = None
    #: True when f and g have opposite parities: the expectation is identically 0
    mehler_zero: bool = False
    #: True for the slope d/dq12 of a base series (the base is :attr:`mehler_base`)
    mehler_slope: bool = False
    #: the base (value) class of a slope class
    mehler_base: type[MehlerSeries] | None = None
    #: the slope class sharing a base class's orders (None: no slope shares them)
    mehler_slope_class: type[MehlerSeries] | None = None
    #: True when f and g are one function (then the series at q11 = q12 = q22 is the side's total)
    mehler_same: bool = False

    @classmethod
    def mehler_side(cls, which: int, q: NDArray[np.float64], length: int = 0) -> MehlerSide:  # pragma: no cover
        """The :class:`MehlerSide` of the variances ``q`` (1-D) for f (``which`` 0) or g (1), with
        coefficients to order ``length`` at least (subclass)."""
        raise NotImplementedError(cls.__name__)

    @classmethod
    def mehler_fallback(cls, q11: NDArray[np.float64], q12: NDArray[np.float64],
                        q22: NDArray[np.float64]) -> NDArray[np.float64]:  # pragma: no cover
        """The expectation at entries no order certifies (1-D arrays; subclass)."""
        raise NotImplementedError(cls.__name__)

    @classmethod
    def mehler_tolerance(cls) -> float:  # pragma: no cover - abstract
        """The truncation tolerance of the series (subclass)."""
        raise NotImplementedError(cls.__name__)

    @classmethod
    def mehler_terms(cls) -> tuple[int, int, tuple[int, ...]]:
        """``(p, step, K)``: the terms are :math:`n = p + \\mathrm{step}\\,k`, and group g ends at term
        :math:`k = K_g` (:math:`N_g = p + \\mathrm{step}\\,K_g`)."""
        p, step = (0, 1) if cls.mehler_parity is None else (cls.mehler_parity, 2)
        return p, step, tuple((n - p) // step for n in cls.mehler_groups)

    @classmethod
    def numpy_impl(cls, q11: ArrayLike, q12: ArrayLike, q22: ArrayLike) -> NDArray[np.float64]:
        q11, q12, q22 = (np.asarray(a, dtype=float) for a in (q11, q12, q22))
        shape: tuple[int, ...] = tuple(np.broadcast_shapes(q11.shape, q12.shape, q22.shape))
        out = np.empty(shape)
        work = Workspace()
        if len(shape) and math.prod(shape) > _MEHLER_BLOCK:   # bounded temporaries: blocks of rows
            nd, first = len(shape), shape[0]
            qs = [a.reshape((1,) * (nd - a.ndim) + a.shape) for a in (q11, q12, q22)]
            rows = max(1, _MEHLER_BLOCK // max(1, math.prod(shape[1:])))
            for s in range(0, first, rows):
                part = [a[s:s + rows] if len(a) > 1 else a for a in qs]
                block = out[s:s + rows]
                work.shape = block.shape
                cls.numpy_into(block, work, *part)
            return out
        work.shape = shape
        cls.numpy_into(out, work, q11, q12, q22)
        return out

    @classmethod
    def numpy_into(cls, out: NDArray[np.float64], work: Workspace, q11: ArrayLike, q12: ArrayLike,
                   q22: ArrayLike) -> None:
        """Evaluate into ``out`` (see the class docstring); temporaries of the array's shape come from
        ``work``, the gathered high-order entries are allocated (a fraction of the array)."""
        if cls.mehler_slope_class is not None and _stash_take(cls, out, q11, q12, q22):
            return                                  # the slope, just evaluated, left this value
        a11, a12, a22 = (np.asarray(a, dtype=float) for a in (q11, q12, q22))
        shape = np.broadcast_shapes(a11.shape, a12.shape, a22.shape)
        if shape != out.shape or not out.flags.c_contiguous:
            tmp = np.empty(shape)
            child = work.child("mehler broadcast")
            child.shape = shape
            cls.numpy_into(tmp, child, q11, q12, q22)
            out[...] = tmp
            return
        if cls.mehler_zero:
            out.fill(0.0)
            return
        base = cls.mehler_base
        if not cls.mehler_slope or base is None:
            _mehler_into(cls, out, None, work, a11, a12, a22)
            return
        value = _stash_value(shape)
        _mehler_into(base, value, out, work, a11, a12, a22)
        _stash_put(base, q11, q12, q22)

    @classmethod
    def entry_orders(cls, q11: ArrayLike, q12: ArrayLike, q22: ArrayLike) -> NDArray[np.intp]:
        """The order :math:`N` each entry is truncated at (:data:`MEHLER_FALLBACK`, -1, where none
        certifies it), as :meth:`numpy_into` chooses it."""
        shape, x, ri, ci, A, B = _mehler_entries(cls, q11, q12, q22)
        groups = _mehler_groups_of(A, B, ri, ci, x, 0)
        out = np.where(groups >= 0, np.asarray(cls.mehler_groups)[np.maximum(groups, 0)], MEHLER_FALLBACK)
        return out.reshape(shape)

    @classmethod
    def error_bound(cls, q11: ArrayLike, q12: ArrayLike, q22: ArrayLike) -> NDArray[np.float64]:
        r"""The certified truncation bound of each entry at its order N: :math:`|\rho|^{N+1}
        \sqrt{T_f(N,q_{11})T_g(N,q_{22})}` (a slope: :math:`|\rho|^N\sqrt{T^{(1)}_fT^{(1)}_g/(q_{11}q_{22})}`),
        at most ``tol``; 0 where the whole series is taken (the diagonal of a pair (f, f)), ``inf`` where
        the fallback (quadrature) evaluates the entry."""
        shape, x, ri, ci, A, B = _mehler_entries(cls, q11, q12, q22)
        g = _mehler_groups_of(A, B, ri, ci, x, 0)
        gg = np.maximum(g, 0)
        N = np.asarray(cls.mehler_groups)[gg]
        slope = cls.mehler_slope and A.slope_thresholds is not None and B.slope_thresholds is not None
        ta, tb = (A.slope_thresholds, B.slope_thresholds) if slope else (A.value_thresholds, B.value_thresholds)
        power = N / 2 if slope else (N + 1) / 2
        # thresholds are U^2 = (tol/T)^{1/(N+1)} per side: the bound is tol (rho^2 / (U_i^2 U_j^2))^{(N+1)/2}
        uv = ta[gg, ri] * tb[gg, ci]              # type: ignore[index]  # both set when slope
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            bound = np.where(np.isinf(uv), 0.0, cls.mehler_tolerance() * (x / uv) ** power)
        bound[g < 0] = np.inf
        if cls.mehler_same:                            # q11 = q12 = q22: the whole series (Parseval)
            a11, a12, a22 = (np.broadcast_to(np.asarray(a, dtype=float), shape).ravel() for a in (q11, q12, q22))
            bound[(g < 0) & (a11 == a12) & (a12 == a22)] = 0.0
        return bound.reshape(shape)


class _Stash(threading.local):
    """Per thread: the value a slope evaluation computed on the way, until its base node takes it."""
    owner: type[MehlerSeries] | None = None
    args: tuple[object, ...] = ()
    copies: tuple[NDArray[np.float64], ...] = ()
    value: NDArray[np.float64] = np.empty(0)


_STASH = _Stash()


def _stash_value(shape: tuple[int, ...]) -> NDArray[np.float64]:
    """This thread's buffer for the value a slope evaluation computes on the way."""
    st = _STASH
    st.owner = None
    if st.value.shape != shape:
        st.value = np.empty(shape)
    return st.value


def _stash_put(base: type[MehlerSeries], *args: ArrayLike) -> None:
    """Leave the value (in this thread's buffer) for ``base`` at these arguments (kept by identity and
    by content, so that a later call with other values, even in the same buffers, never takes it)."""
    st = _STASH
    copies = []
    for i, a in enumerate(args):
        arr = np.asarray(a, dtype=float)
        old = st.copies[i] if len(st.copies) > i else None
        if old is not None and old.shape == arr.shape:
            np.copyto(old, arr)
            copies.append(old)
        else:
            copies.append(arr.copy())
    st.owner, st.args, st.copies = base, tuple(args), tuple(copies)


def _stash_take(cls: type[MehlerSeries], out: NDArray[np.float64], *args: ArrayLike) -> bool:
    """Copy the stashed value into ``out`` if it is ``cls``'s at exactly these arguments."""
    st = _STASH
    if st.owner is not cls or len(st.args) != len(args) or any(a is not b for a, b in zip(args, st.args)):
        return False
    st.owner = None
    if st.value.shape != out.shape or not all(np.array_equal(np.asarray(a, dtype=float), c)
                                              for a, c in zip(args, st.copies)):
        return False
    np.copyto(out, st.value)
    return True


def _mehler_entries(cls: type[MehlerSeries], q11: ArrayLike, q12: ArrayLike, q22: ArrayLike
                    ) -> tuple[tuple[int, ...], NDArray[np.float64], NDArray[np.intp], NDArray[np.intp],
                               MehlerSide, MehlerSide]:
    """(shape, rho^2 flat, row index, column index, sides) of every entry of the broadcast arrays."""
    a11, a12, a22 = (np.asarray(a, dtype=float) for a in (q11, q12, q22))
    shape = np.broadcast_shapes(a11.shape, a12.shape, a22.shape)
    A, B = _mehler_sides(cls, a11, a22)
    rho2 = _mehler_rho(cls, np.empty(shape), np.empty(shape), a11, a12, a22, A, B)[1].ravel()
    flat = np.arange(rho2.size)
    return shape, rho2, _entry_index(flat, shape, a11.shape), _entry_index(flat, shape, a22.shape), A, B


def _entry_index(flat: NDArray[np.intp], shape: tuple[int, ...], own: tuple[int, ...]) -> NDArray[np.intp]:
    """For flat indices into an array of ``shape``, the flat index into an array of shape ``own``
    broadcast to it (the row or column a Gram entry reads its variance from)."""
    own = (1,) * (len(shape) - len(own)) + tuple(own)
    if all(s == 1 for s in own):
        return np.zeros(flat.shape, dtype=np.intp)
    if len(shape) == 2 and own == (shape[0], 1):
        return flat // shape[1]
    if len(shape) == 2 and own == (1, shape[1]):
        return flat % shape[1]
    idx = np.unravel_index(flat, shape)
    out, stride = np.zeros(flat.shape, dtype=np.intp), 1
    for d in reversed(range(len(shape))):
        if own[d] > 1:
            out += idx[d] * stride
            stride *= own[d]
    return out


def _entry_rows(flat: NDArray[np.intp], shape: tuple[int, ...], s1: tuple[int, ...],
                s2: tuple[int, ...]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """:func:`_entry_index` for both sides (one division for the row x column tile of a Gram matrix)."""
    if len(shape) == 2 and tuple(s1) == (shape[0], 1) and tuple(s2) == (1, shape[1]):
        rows, cols = np.divmod(flat, shape[1])
        return rows, cols
    return _entry_index(flat, shape, s1), _entry_index(flat, shape, s2)


def _mehler_sides(cls: type[MehlerSeries], q11: NDArray[np.float64],
                  q22: NDArray[np.float64]) -> tuple[MehlerSide, MehlerSide]:
    """Both sides, with coefficients to every order an entry of the pair may use."""
    A = cls.mehler_side(0, q11.ravel())
    B = cls.mehler_side(1, q22.ravel())
    need = cls.mehler_groups[max(int(A.caps.max(initial=0)), int(B.caps.max(initial=0)))]
    if A.coeffs.shape[0] <= need:
        A = cls.mehler_side(0, q11.ravel(), need)
    if B.coeffs.shape[0] <= need:
        B = cls.mehler_side(1, q22.ravel(), need)
    return A, B


def _mehler_rho(cls: type[MehlerSeries], rho: NDArray[np.float64], rho2: NDArray[np.float64],
                q11: NDArray[np.float64], q12: NDArray[np.float64], q22: NDArray[np.float64], A: MehlerSide,
                B: MehlerSide) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    r""":math:`\rho = (q_{12}/\sqrt{q_{11}})/\sqrt{q_{22}}` and :math:`\min(\rho^2, 1)` into ``rho``
    and ``rho2``; :math:`\rho` itself clipped to [-1, 1] only where it is the Horner variable (no
    parity: where rounding puts :math:`|\rho|` an ulp past 1, :math:`\rho` multiplies a sum once)."""
    np.multiply(q12, A.inv_sqrt.reshape(q11.shape), out=rho)
    np.multiply(rho, B.inv_sqrt.reshape(q22.shape), out=rho)
    if cls.mehler_parity is None:
        np.minimum(rho, 1.0, out=rho)
        np.maximum(rho, -1.0, out=rho)
    np.multiply(rho, rho, out=rho2)
    np.minimum(rho2, 1.0, out=rho2)
    return rho, rho2


def _mehler_groups_of(A: MehlerSide, B: MehlerSide, ri: NDArray[np.intp], ci: NDArray[np.intp],
                      x: NDArray[np.float64], start: int) -> NDArray[np.intp]:
    """The group index of each entry (:math:`\\rho^2` = ``x``, variances ``ri``/``ci`` of the sides):
    the first g >= ``start`` with ``x <= W_i(N_g)^2 W_j(N_g)^2``, up to the entry's cap, else
    :data:`MEHLER_FALLBACK`.  The first groups are tested for every entry at once, the rest for the
    few entries still unsettled (two dense blocks instead of a loop over the groups)."""
    groups = np.full(x.shape, MEHLER_FALLBACK, dtype=np.intp)
    caps = np.maximum(np.take(A.caps, ri), np.take(B.caps, ci))
    idx = np.arange(x.size)
    G = A.thresholds.shape[0]
    for lo, hi in ((start, min(G, start + _MEHLER_FIRST)), (start + _MEHLER_FIRST, G)):
        if lo >= hi or not idx.size:
            break
        u = np.take(A.thresholds[lo:hi], ri, axis=1)
        u *= np.take(B.thresholds[lo:hi], ci, axis=1)
        ok = np.less_equal(x[None, :], u, out=np.empty(u.shape, dtype=bool))
        ok &= np.arange(lo, hi)[:, None] <= caps[None, :]          # beyond its cap no order helps an entry
        first = np.zeros(ok.shape[1], dtype=np.intp)
        for r in range(1, hi - lo):                                  # true from each entry's first group on
            np.logical_or(ok[r], ok[r - 1], out=ok[r])
        for r in range(hi - lo - 1):
            first += ~ok[r]                                          # the groups before the first true
        settled = ok[-1]
        groups[idx[settled]] = lo + first[settled]
        left = np.flatnonzero(~settled & (caps >= hi))               # the others failed at their caps
        idx, x, ri, ci, caps = idx[left], x[left], ri[left], ci[left], caps[left]
    return groups


def _mehler_block(A: MehlerSide, B: MehlerSide, p: int, step: int, k0: int, k1: int, ri: NDArray[np.intp],
                  ci: NDArray[np.intp], x: NDArray[np.float64], acc: NDArray[np.float64],
                  dacc: NDArray[np.float64] | None) -> None:
    """Terms :math:`k_1 \\ge k \\ge k_0` of the series for the gathered entries (their coefficients
    gathered at once): Horner, :math:`b \\leftarrow b\\,x + c_k`, and for the slope the derivative
    recurrence :math:`d \\leftarrow d\\,x + b` before it."""
    lo, hi = p + step * k0, p + step * k1
    block = np.take(A.coeffs[lo:hi + 1:step], ri, axis=1)              # (terms, m), n ascending
    block *= np.take(B.coeffs[lo:hi + 1:step], ci, axis=1)
    if acc.size <= _MEHLER_SCALAR:            # a few entries: Python floats, the same IEEE operations
        for e, (c, xe) in enumerate(zip(block.T.tolist(), x.tolist())):
            b, d = float(acc[e]), float(dacc[e]) if dacc is not None else 0.0
            for ck in reversed(c):
                d = d * xe + b
                b = b * xe + ck
            acc[e] = b
            if dacc is not None:
                dacc[e] = d
        return
    for j in range(block.shape[0] - 1, -1, -1):
        if dacc is not None:
            dacc *= x
            dacc += acc
        acc *= x
        acc += block[j]


def _mehler_into(cls: type[MehlerSeries], out: NDArray[np.float64], slope: NDArray[np.float64] | None,
                 work: Workspace, q11: NDArray[np.float64], q12: NDArray[np.float64],
                 q22: NDArray[np.float64]) -> None:
    """The (base) series ``cls`` into the C-contiguous ``out`` of the broadcast shape, and its slope
    into ``slope`` when given: a tile by the compiled loops of :mod:`symbrg.core.mehler_jit` where
    numba is installed, else by :func:`_mehler_numpy` (the same bits); then the entries no order certifies,
    by the whole series (Parseval's totals on the diagonal of a pair (f, f)) or the fallback."""
    shape = out.shape
    A, B = _mehler_sides(cls, q11, q22)
    tile = len(shape) == 2 and q11.shape == (shape[0], 1) and q22.shape == (1, shape[1])
    run = _mehler_compiled if tile and _mehler_jit() is not None else _mehler_numpy
    fallback = run(cls, out, slope, work, q11, q12, q22, A, B)
    if not fallback.size:
        return
    fb_rows = _entry_rows(fallback, shape, q11.shape, q22.shape)[0]
    b11, b12, b22 = (np.broadcast_to(a, shape).ravel()[fallback] for a in (q11, q12, q22))
    diagonal = (b11 == b12) & (b12 == b22) if cls.mehler_same else np.zeros(b11.shape, dtype=bool)
    whole = fallback[diagonal]                           # the whole series: Parseval's totals
    out.ravel()[whole] = A.totals[fb_rows[diagonal], 0]
    if slope is not None:
        slope.ravel()[whole] = A.totals[fb_rows[diagonal], 1]
    rest, b11, b12, b22 = fallback[~diagonal], b11[~diagonal], b12[~diagonal], b22[~diagonal]
    if rest.size:
        out.ravel()[rest] = cls.mehler_fallback(b11, b12, b22)
        if slope is not None and cls.mehler_slope_class is not None:
            slope.ravel()[rest] = cls.mehler_slope_class.mehler_fallback(b11, b12, b22)


@functools.cache
def _mehler_jit() -> ModuleType | None:
    """:mod:`symbrg.core.mehler_jit` (compiled on first use), or None where numba is not installed."""
    try:
        return importlib.import_module("symbrg.core.mehler_jit")
    except ImportError:
        return None


def _mehler_compiled(cls: type[MehlerSeries], out: NDArray[np.float64], slope: NDArray[np.float64] | None,
                     work: Workspace, q11: NDArray[np.float64], q12: NDArray[np.float64],
                     q22: NDArray[np.float64], A: MehlerSide, B: MehlerSide) -> NDArray[np.intp]:
    """:func:`_mehler_numpy` on a tile (row variances ``q11`` (h, 1) x column variances ``q22``
    (1, w)) by the compiled loops, row by row; returns the flat indices of the entries no order
    certifies.  Other broadcasts (the per-point diagonal: a few entries per point) stay with NumPy."""
    jit = _mehler_jit()
    assert jit is not None
    p, step, K = cls.mehler_terms()
    sides = [np.ascontiguousarray(a) for a in (A.coeffs, B.coeffs, A.thresholds, B.thresholds)]
    sides += [np.ascontiguousarray(a, dtype=np.int64) for a in (A.caps, B.caps)]
    sides += [np.ascontiguousarray(a, dtype=np.float64) for a in (A.inv_sqrt, B.inv_sqrt)]
    fallback = np.empty(out.size, dtype=np.intp)
    count = jit.mehler_rows(out, out if slope is None else slope, np.ascontiguousarray(np.broadcast_to(q12, out.shape)),
                            *sides, np.asarray(K, dtype=np.int64), p, step, cls.mehler_parity is None,
                            slope is not None, fallback)
    return fallback[:count]


def _mehler_numpy(cls: type[MehlerSeries], out: NDArray[np.float64], slope: NDArray[np.float64] | None,
                  work: Workspace, q11: NDArray[np.float64], q12: NDArray[np.float64],
                  q22: NDArray[np.float64], A: MehlerSide, B: MehlerSide) -> NDArray[np.intp]:
    r"""The NumPy evaluation: Horner in :math:`x` (:math:`\rho` or :math:`\rho^2`) with the
    derivative recurrence beside it, the entries beyond the low order first (sorted, on shrinking
    prefixes, their coefficients gathered a group at a time), then every entry's low orders over the
    whole array; returns the flat indices of the entries no order certifies (left to the caller)."""
    shape = out.shape
    p, step, K = cls.mehler_terms()
    s1, s2 = q11.shape, q22.shape
    rho, rho2 = _mehler_rho(cls, work("mehler rho"), work("mehler rho2"), q11, q12, q22, A, B)
    x = rho if step == 1 else rho2
    thr = np.multiply(A.thresholds[0].reshape(s1), B.thresholds[0].reshape(s2), out=work("mehler thr"))
    high = np.flatnonzero(np.greater(rho2, thr, out=work("mehler high", bool)))
    fallback, where = high[:0], high[:0]
    acc = dacc = xs = np.empty(0)
    if high.size:                               # the entries beyond the low order N_0
        ri, ci = _entry_rows(high, shape, s1, s2)
        xh = np.take(rho2.ravel(), high)
        groups = _mehler_groups_of(A, B, ri, ci, xh, 1)
        fallback = high[groups < 0]
        top = len(K) - 1
        key = (top - groups).astype(np.uint8)                 # the fallback (-1) sorts last
        keep = np.argsort(key, kind="stable")[:np.count_nonzero(groups > 0)]   # highest first (radix)
        counts = np.cumsum(np.bincount(key[keep], minlength=len(K)))   # prefix length of g >= top - i
        where, ri, ci = np.take(high, keep), np.take(ri, keep), np.take(ci, keep)
        xs = np.take(xh if step == 2 else x.ravel(), keep if step == 2 else where)
        acc = np.zeros(where.size)
        dacc = np.zeros(where.size) if slope is not None else acc
        for g in range(top, 0, -1):
            m = int(counts[top - g])                         # the prefix of entries of group >= g
            if m:
                _mehler_block(A, B, p, step, K[g - 1] + 1, K[g], ri[:m], ci[:m], xs[:m], acc[:m],
                              dacc[:m] if slope is not None else None)
    n = p + step * K[0]                                       # the low orders, over the whole array
    if slope is not None:                                     # d <- d x + b at k = K_0 (0 where no high part)
        slope.fill(0.0)
        if where.size:
            dacc *= xs
            dacc += acc
            slope.ravel()[where] = dacc
    np.multiply(A.coeffs[n].reshape(s1), B.coeffs[n].reshape(s2), out=out)
    if where.size:                                            # b <- b x + c at k = K_0, reordered
        acc *= xs
        flat = out.ravel()
        flat[where] += acc
    prod = work("mehler a b")
    for k in range(K[0] - 1, -1, -1):
        n = p + step * k
        if slope is not None:
            slope *= x
            slope += out
        out *= x
        np.multiply(A.coeffs[n].reshape(s1), B.coeffs[n].reshape(s2), out=prod)
        out += prod
    if slope is not None:                                     # dE/drho from S(x) and S'(x), times 1/sqrt(q11 q22)
        if step == 2 and p == 1:                              # E = rho S(rho^2): S + 2 rho^2 S'
            slope *= x
            slope += slope
            slope += out
        elif step == 2:                                       # E = S(rho^2): 2 rho S'
            slope *= rho
            slope += slope
        slope *= A.inv_sqrt.reshape(s1)
        slope *= B.inv_sqrt.reshape(s2)
    if step == 2 and p == 1:
        out *= rho
    return fallback
