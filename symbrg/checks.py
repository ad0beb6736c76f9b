"""Argument validation shared by every engine.

Job: turn bad input into a :mod:`symbrg.errors` exception that names the argument, in one place,
so that no module writes its own ``if x <= 0: raise`` twice.  Each checker returns the cleaned
value (a float, an int, a float64 array) so that call sites read ``q = positive("q11", q11)``.

Symbolic values (sympy expressions with free symbols) pass the scalar checkers untouched: the
constraint is then an assumption of the derivation, not a runtime check.
"""
from __future__ import annotations

import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import sympy as sp

from .errors import (InvalidArgument, NonFinite, NotPositive, NotPositiveDefinite, OutOfRange,
                     OutputExists, ShapeMismatch, UnknownName)

__all__ = ["scalar", "positive", "nonnegative", "in_range", "integer", "finite_array", "matching",
           "choice", "psd_matrix", "atomic_write"]


def _is_symbolic(value: Any) -> bool:
    return isinstance(value, sp.Basic) and bool(value.free_symbols)


def scalar(name: str, value: Any) -> Any:
    """A finite real number (returned as float), or a symbolic expression (returned as is)."""
    if _is_symbolic(value):
        return value
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InvalidArgument(name, f"expected a real number, got {value!r}") from None
    if not math.isfinite(x):
        raise NonFinite(name, f"must be finite, got {x}")
    return x


def positive(name: str, value: Any) -> Any:
    """A number > 0 (symbolic values pass)."""
    x = scalar(name, value)
    if not _is_symbolic(x) and x <= 0:
        raise NotPositive(name, f"must be > 0, got {x}")
    return x


def nonnegative(name: str, value: Any) -> Any:
    """A number >= 0 (symbolic values pass)."""
    x = scalar(name, value)
    if not _is_symbolic(x) and x < 0:
        raise NotPositive(name, f"must be >= 0, got {x}")
    return x


def in_range(name: str, value: Any, low: float = -math.inf, high: float = math.inf, *,
             closed: tuple[bool, bool] = (True, True)) -> Any:
    """A number in the interval [low, high] (open ends as ``closed`` says)."""
    x = scalar(name, value)
    if _is_symbolic(x):
        return x
    ok_low = x >= low if closed[0] else x > low
    ok_high = x <= high if closed[1] else x < high
    if not (ok_low and ok_high):
        lb, rb = ("[" if closed[0] else "("), ("]" if closed[1] else ")")
        raise OutOfRange(name, f"must lie in {lb}{low}, {high}{rb}, got {x}")
    return x


def integer(name: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    """An integer (bools and non-integral floats are refused) within optional bounds."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, sp.Integer)):
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        else:
            raise InvalidArgument(name, f"must be an integer, got {value!r}")
    n = int(value)
    if minimum is not None and n < minimum:
        raise OutOfRange(name, f"must be >= {minimum}, got {n}")
    if maximum is not None and n > maximum:
        raise OutOfRange(name, f"must be <= {maximum}, got {n}")
    return n


def finite_array(name: str, value: Any, ndim: int | Iterable[int] | None = None, *,
                 dtype: Any = np.float64, nonempty: bool = True) -> np.ndarray:
    """A finite array of the given dimensionality (float64 by default)."""
    try:
        arr = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError):
        raise InvalidArgument(name, "expected a numeric array") from None
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in allowed:
            raise ShapeMismatch(name, f"expected {' or '.join(map(str, allowed))} dimensions, "
                                      f"got shape {arr.shape}")
    if nonempty and arr.size == 0:
        raise ShapeMismatch(name, f"must not be empty, got shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.inexact) and not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise NonFinite(name, f"contains {bad} non-finite value(s)")
    return arr


def matching(name: str, actual: int, expected: int, what: str = "length") -> None:
    """Raise :class:`ShapeMismatch` unless ``actual == expected``."""
    if actual != expected:
        raise ShapeMismatch(name, f"{what} {actual} does not match the expected {expected}")


def choice(name: str, value: str, options: Iterable[str]) -> str:
    """One of a fixed set of names."""
    opts = list(options)
    if value not in opts:
        raise UnknownName(name, f"unknown value {value!r}; choose one of {', '.join(map(str, opts))}")
    return value


def psd_matrix(name: str, value: Any, *, strict: bool = False, rtol: float = 1e-10) -> np.ndarray:
    """A finite, symmetric, positive semi-definite (or definite, ``strict``) square matrix.

    Symmetry and definiteness are judged relative to the largest absolute eigenvalue:
    eigenvalues >= -rtol * max|λ| count as zero (or, with ``strict``, must exceed rtol * max|λ|).
    """
    m = finite_array(name, value, ndim=2)
    if m.shape[0] != m.shape[1]:
        raise ShapeMismatch(name, f"must be square, got shape {m.shape}")
    scale = float(np.max(np.abs(m))) if m.size else 0.0
    if not np.allclose(m, m.T, rtol=0, atol=rtol * max(scale, 1e-300)):
        raise NotPositiveDefinite(name, "must be symmetric")
    lam = np.linalg.eigvalsh(0.5 * (m + m.T))
    top = max(float(np.max(np.abs(lam))), 1e-300)
    if strict and lam[0] <= rtol * top:
        raise NotPositiveDefinite(name, f"must be positive definite (smallest eigenvalue {lam[0]:.3g})")
    if lam[0] < -rtol * top:
        raise NotPositiveDefinite(name, f"must be positive semi-definite (smallest eigenvalue "
                                        f"{lam[0]:.3g})")
    return m


@contextmanager
def atomic_write(path: str | os.PathLike, *, force: bool = False, mode: str = "w",
                 argument: str = "out") -> Iterator[Any]:
    """Write ``path`` atomically: to a temporary file in the same folder, renamed on success.

    An existing file is refused with :class:`OutputExists` unless ``force``.  On any error the
    temporary file is removed, so no half-written output is ever left behind.
    """
    target = Path(path)
    if target.exists() and not force:
        raise OutputExists(argument, f"{target} exists; pass force (--force) to overwrite")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
