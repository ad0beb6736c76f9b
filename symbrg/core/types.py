r"""Type aliases of the public API: what a number, an expression and an array argument may be.

Job: one place for the argument types the engines accept, so that signatures say what they take
instead of ``Any``.  A :data:`Number` is :math:`x \in \mathbb R` given as a Python number or a sympy
expression (exact rationals and symbols stay exact); an :data:`ExprLike` may also be text, which is
parsed once by :func:`symbrg.core.parsing.parse_expression`; arrays are NumPy's ``ArrayLike``; an
:data:`MpNumber` is an arbitrary-precision value :math:`x \in \mathbb R` (or :math:`\mathbb C`) of mpmath.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import TypeAlias

import mpmath
import numpy as np
import sympy as sp
from numpy.typing import ArrayLike, DTypeLike, NDArray

__all__ = ["ArrayLike", "DTypeLike", "ExprLike", "FloatArray", "MpNumber", "MpReal", "NDArray", "Number",
           "SymbolsLike"]

#: A real number or a sympy expression standing for one (exact, or symbolic).
Number: TypeAlias = "int | float | sp.Expr"
#: A :data:`Number` or text for :func:`symbrg.core.parsing.parse_expression`.
ExprLike: TypeAlias = "int | float | str | sp.Expr"
#: An mpmath number: what ``mpmath_impl`` implementations and mpmath-compiled programs take and return
#: (``mpmath.mpf``; ``mpmath.mpc`` only where a formula leaves the real line).
MpNumber: TypeAlias = "mpmath.mpf | mpmath.mpc"
#: A real number of the mpmath numerics: a Python number or an ``mpf`` at the working precision.
MpReal: TypeAlias = "int | float | mpmath.mpf"
#: A float64 array (kernels, Gram matrices, quadrature nodes and weights).
FloatArray: TypeAlias = "NDArray[np.float64]"
#: Symbols given as themselves or by name: one, or several in order.
SymbolsLike: TypeAlias = "sp.Symbol | str | Iterable[sp.Symbol | str]"
