r"""Type aliases of the public API: what a number, an expression and an array argument may be.

Job: one place for the argument types the engines accept, so that signatures say what they take
instead of ``Any``.  A :data:`Number` is :math:`x \in \mathbb R` given as a Python number or a sympy
expression (exact rationals and symbols stay exact); an :data:`ExprLike` may also be text, which is
parsed once by :func:`symbrg.core.parsing.parse_expression`; arrays are NumPy's ``ArrayLike``.
"""
from __future__ import annotations

from typing import TypeAlias

import sympy as sp
from numpy.typing import ArrayLike, DTypeLike, NDArray

__all__ = ["ArrayLike", "DTypeLike", "ExprLike", "NDArray", "Number"]

#: A real number or a sympy expression standing for one (exact, or symbolic).
Number: TypeAlias = "int | float | sp.Expr"
#: A :data:`Number` or text for :func:`symbrg.core.parsing.parse_expression`.
ExprLike: TypeAlias = "int | float | str | sp.Expr"
