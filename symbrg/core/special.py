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
  where the closed form would cancel).

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

import math
import threading
from collections.abc import Callable
from fractions import Fraction
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

__all__ = ["ArcCosKernel", "GramDet", "Implementations", "NumericFunction", "arccos_angular", "numpy_erf"]

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
