"""Exceptions raised by symbrg: every one names the argument at fault.

Job: give bad input one clear, catchable shape.  Every exception carries ``argument`` (the name of
the offending parameter, as the user spelled it) and renders as ``"<argument>: <what is wrong>"``.
The command line prints exactly that line to stderr and exits with status 2.

Hierarchy::

    SymbrgError                      base of everything symbrg raises on purpose
    ├── InvalidArgument (ValueError) a value outside its domain
    │   ├── NotPositive              a variance, width, cutoff ... that must be > 0 (or >= 0)
    │   ├── OutOfRange               a cutoff, correlation, precision ... outside its interval
    │   ├── NonFinite                NaN or inf in an array or scalar
    │   ├── ShapeMismatch            arrays whose shapes do not fit together
    │   ├── UnknownName (KeyError)   an unknown activation, regulator, preset, ...
    │   ├── NotPositiveDefinite      a covariance or metric that is not (semi-)definite
    │   ├── Unsupported              a request the engine cannot honour (e.g. no closed form)
    │   └── TooExpensive             work beyond a named bound (symbrg.core.limits), refused up front
    ├── ConvergenceError             a series or solver that missed its tolerance
    └── OutputExists (FileExistsError) refusing to overwrite a file without ``force``
"""
from __future__ import annotations

__all__ = [
    "SymbrgError", "InvalidArgument", "NotPositive", "OutOfRange", "NonFinite", "ShapeMismatch",
    "UnknownName", "NotPositiveDefinite", "Unsupported", "TooExpensive", "ConvergenceError", "OutputExists",
]


class SymbrgError(Exception):
    """Base class; ``argument`` names the offending parameter (may be ``None``)."""

    def __init__(self, argument: str | None, message: str):
        self.argument = argument
        self.message = message
        super().__init__(f"{argument}: {message}" if argument else message)

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return f"{self.argument}: {self.message}" if self.argument else self.message


class InvalidArgument(SymbrgError, ValueError):
    """A value outside the domain of the function it was passed to."""


class NotPositive(InvalidArgument):
    """A quantity that must be positive (or non-negative) is not."""


class OutOfRange(InvalidArgument):
    """A value outside its allowed interval."""


class NonFinite(InvalidArgument):
    """NaN or infinity where finite numbers are required."""


class ShapeMismatch(InvalidArgument):
    """Array shapes that do not fit together."""


class UnknownName(InvalidArgument, KeyError):
    """A name (activation, regulator, preset, model ...) that is not registered."""


class NotPositiveDefinite(InvalidArgument):
    """A covariance, kernel or metric that is not positive (semi-)definite or is singular."""


class Unsupported(InvalidArgument):
    """A well-formed request that this engine cannot honour."""


class TooExpensive(InvalidArgument):
    """A request whose estimated cost exceeds a named :class:`symbrg.core.limits.Limit`."""


class ConvergenceError(SymbrgError, ArithmeticError):
    """A series, quadrature or root finder that did not reach its tolerance."""


class OutputExists(SymbrgError, FileExistsError):
    """An output file exists and ``force`` was not given."""
