r"""Special functions with numerically honest NumPy and mpmath implementations.

Job: let a symbolic result name a function whose *evaluation* needs care (cancellation near a
correlation of :math:`\pm 1`, a quadrature, a series), while the expression tree stays one object.
Every such function subclasses :class:`NumericFunction`, a sympy ``Function`` that carries

* ``numpy_impl(*arrays)``: a vectorized float64 implementation (broadcasting its arguments),
* ``mpmath_impl(*mpf)``: an arbitrary-precision implementation (the current ``mpmath.mp.dps``),
* ``_latex`` for printing.

:mod:`symbrg.codegen` prints any ``NumericFunction`` as a call to its implementation, so NumPy and
mpmath code generated from one expression stay in step.  Subclasses may also define ``fdiff`` so
that symbolic differentiation (e.g. in a hyperparameter) goes through them.
"""
from __future__ import annotations

from typing import Any

import mpmath
import numpy as np
import sympy as sp

__all__ = ["NumericFunction"]


class NumericFunction(sp.Function):
    """Base class: a sympy function with ``numpy_impl`` and ``mpmath_impl`` class methods."""

    @classmethod
    def numpy_impl(cls, *args: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError(cls.__name__)

    @classmethod
    def mpmath_impl(cls, *args: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError(cls.__name__)

    def _eval_evalf(self, prec: int) -> sp.Expr | None:
        if not all(a.is_number for a in self.args):
            return None
        with mpmath.workprec(prec):
            value = self.mpmath_impl(*(mpmath.mpmathify(a.evalf(prec_to_dps(prec) + 5)) for a in self.args))
        return sp.Float(value, precision=prec) if not isinstance(value, mpmath.mpc) else sp.sympify(value)


def prec_to_dps(prec: int) -> int:
    """Binary precision to decimal digits (as mpmath counts them)."""
    return mpmath.libmp.prec_to_dps(prec)
