"""Work bounds: every parameter that scales the work is checked against a named limit up front.

Job: refuse, before any work starts, a request whose cost (time, memory, disk) grows past what a
user would expect to wait for, with one line that names the parameter, the estimated cost, its
limit and how to lift it.  A limit is declared once, next to the code whose cost it bounds::

    DEPTH = Limit("depth", 10_000, "hidden layers of an architecture (derivation and compile are O(depth))")
    ...
    DEPTH.check("depth", depth, cost="about 3 ms per layer")

and lifted by the user for one call or one process::

    with symbrg.limits.lifted(depth=10**6):  ...          # Python
    symbrg --limit depth=1000000 kernel ...               # command line
    SYMBRG_LIMITS="depth=1000000,dps=20000" symbrg ...   # environment

Defining relation: a request with ``value <= limit`` runs; ``value > limit`` raises
:class:`symbrg.core.errors.TooExpensive` (exit status 2 on the command line) and does no work.
"""
from __future__ import annotations

import contextvars
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType

from symbrg.core.errors import InvalidArgument, TooExpensive

__all__ = ["Limit", "lifted", "current", "registry", "parse_overrides", "format_number", "ENV"]

#: Environment variable holding ``name=value`` overrides, comma separated.
ENV = "SYMBRG_LIMITS"

_REGISTRY: dict[str, "Limit"] = {}
_OVERRIDES: contextvars.ContextVar[Mapping[str, float]] = contextvars.ContextVar(
    "symbrg_limits", default=MappingProxyType({}))


def parse_overrides(text: str, argument: str = "limit") -> dict[str, float]:
    """``"depth=1e6, dps=20000"`` -> ``{"depth": 1e6, "dps": 20000.0}`` (names checked lazily)."""
    out: dict[str, float] = {}
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        name, sep, value = item.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not sep or not name.strip() or not number == number or number <= 0:
            raise InvalidArgument(argument, f"expected NAME=POSITIVE_NUMBER, got {item!r}")
        out[name.strip()] = number
    return out


def _environment() -> dict[str, float]:
    return parse_overrides(os.environ.get(ENV, ""), ENV)


@dataclass(frozen=True)
class Limit:
    """A named bound on one parameter that scales the work.

    ``name`` is the key users lift (``--limit name=N``); ``default`` the bound; ``what`` says what
    is counted, for the refusal message and the listing in ``symbrg --limit help``.
    """

    name: str
    default: float
    what: str

    def __post_init__(self) -> None:
        _REGISTRY[self.name] = self

    @property
    def value(self) -> float:
        """The bound in force: a :func:`lifted` override, else ``$SYMBRG_LIMITS``, else the default."""
        over = _OVERRIDES.get()
        if self.name in over:
            return over[self.name]
        return _environment().get(self.name, self.default)

    def check(self, argument: str, value: float, *, cost: str = "") -> None:
        """Raise :class:`TooExpensive` naming ``argument`` when ``value`` exceeds the bound.

        ``cost`` is a short estimate of what the request would take (``"8 GB"``, ``"about 2 h"``).
        """
        bound = self.value
        if value > bound:
            est = f" (estimated {cost})" if cost else ""
            raise TooExpensive(argument, f"{format_number(value)} exceeds the limit {format_number(bound)} on {self.what}{est}; "
                                         f"lift it with --limit {self.name}=N "
                                         f"(Python: symbrg.limits.lifted({self.name}=N))")


def format_number(x: float) -> str:
    """A bound or a requested value for a message: 10,000, 8e+09, about 10^400."""
    if isinstance(x, int) and x.bit_length() > 1000:  # beyond float: float(x) would overflow
        return f"about 10^{int(x.bit_length() * 0.30103)}"
    return f"{int(x):,}" if float(x).is_integer() and abs(x) < 1e15 else f"{x:.3g}"


def registry() -> dict[str, Limit]:
    """Every declared limit by name (the modules that declare them must have been imported)."""
    return dict(_REGISTRY)


def current() -> dict[str, float]:
    """The bound in force for every declared limit."""
    return {name: lim.value for name, lim in _REGISTRY.items()}


@contextmanager
def lifted(**bounds: float) -> Iterator[None]:
    """Run a block with some limits replaced (``with lifted(depth=10**6): ...``)."""
    for name, value in bounds.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
            raise InvalidArgument(name, f"a limit must be a positive number, got {value!r}")
    token = _OVERRIDES.set({**_OVERRIDES.get(), **{k: float(v) for k, v in bounds.items()}})
    try:
        yield
    finally:
        _OVERRIDES.reset(token)
