r"""Exact rational arithmetic on dense tensors: GMP rationals (gmpy2's ``mpq``) in NumPy object arrays.

Job: one exact number type for the finite-mode theories whose identities are checked without rounding
(:mod:`symbrg.gaussian.edgeworth`, :mod:`symbrg.rg.wilsonian`, :mod:`symbrg.cosnet.finite_width`).
``mpq`` is GMP's rational :math:`p/q` in lowest terms; on dense tensors it is about 12 times faster than
:class:`fractions.Fraction` (measured: :math:`24^4` products), the difference between seconds and minutes.
"""
from __future__ import annotations

from fractions import Fraction
from typing import TypeAlias

import sympy as sp
from gmpy2 import mpq

from symbrg.core.errors import InvalidArgument

__all__ = ["Q", "RationalLike", "rational", "to_sympy", "is_rational"]

#: The exact rational type.
Q: TypeAlias = mpq
#: What :func:`rational` accepts.
RationalLike: TypeAlias = "int | Fraction | mpq | sp.Rational | str"


def rational(x: RationalLike, argument: str = "value") -> mpq:
    """``x`` as an exact rational (an int, a Fraction, an mpq, a sympy Rational or a string like ``"5/2"``);
    anything else (a float, an irrational) is refused naming ``argument``."""
    if isinstance(x, bool) or isinstance(x, float):
        raise InvalidArgument(argument, f"must be an exact rational (an int, a fraction or 'p/q'), got {x!r}")
    if isinstance(x, (int, Fraction, mpq)):
        return mpq(x)
    if isinstance(x, str):  # parsed by fractions (digits, '/', a decimal point), never by sympy
        try:
            return mpq(Fraction(x.strip()))
        except (ValueError, ZeroDivisionError) as e:
            raise InvalidArgument(argument, f"must be a rational like '5/2', got {x!r}") from e
    r = sp.nsimplify(x) if isinstance(x, sp.Basic) else None
    if not isinstance(r, sp.Rational):
        raise InvalidArgument(argument, f"must be an exact rational, got {x}")
    return mpq(int(r.p), int(r.q))


def to_sympy(q: mpq | Fraction | int) -> sp.Rational:
    """The sympy Rational of an exact rational."""
    return sp.Rational(int(q.numerator), int(q.denominator))


def is_rational(x: object) -> bool:
    """Is ``x`` an exact rational of this module (or an int)?"""
    return isinstance(x, (int, Fraction, mpq)) and not isinstance(x, bool)
