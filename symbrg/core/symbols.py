r"""The one registry of the package's named symbols: name, LaTeX, assumptions, meaning.

Job: decide each physical symbol once.  A sympy symbol is its name *and* its assumptions
(``Symbol("d", positive=True) != Symbol("d", positive=True, integer=True)``), so two modules that
spell the same quantity with different assumptions build expressions that never cancel.  Here

.. math::  \texttt{symbol}(\text{name}) = \mathrm{Symbol}(\text{name}, **\text{assumptions}(\text{name})),

one object per name (sympy caches symbols, and :func:`symbol` hands out the same instance); modules
import their symbols from here (``D = symbol("d")``).  An unknown name is refused with
:class:`~symbrg.core.errors.UnknownName` listing the names.  Conventions: momenta are magnitudes
(:math:`p = |p| > 0`, :math:`p^2` as its own symbol ``p2`` where a flow is written in it); the dimension
:math:`d > 0` is continuous (the ERG takes non-integer d; a network's input dimension is an integer
*value* of it); cutoffs and scales are positive.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import sympy as sp

from symbrg.core.errors import UnknownName

__all__ = ["SYMBOLS", "SymbolInfo", "symbol", "symbols"]


@dataclass(frozen=True)
class SymbolInfo:
    """One registry entry: the symbol's ``name`` (also its sympy name), ``latex``, sympy ``assumptions``
    and its ``meaning`` in words."""
    name: str
    latex: str
    assumptions: tuple[tuple[str, bool], ...]
    meaning: str

    @property
    def symbol(self) -> sp.Symbol:
        return sp.Symbol(self.name, **dict(self.assumptions))


_POS, _NONNEG, _REAL, _NONE = (("positive", True),), (("nonnegative", True),), (("real", True),), ()

_TABLE: tuple[tuple[str, str, tuple, str], ...] = (
    # -- field theory: momenta, masses, scales
    ("d", "d", _POS, "dimension (continuous in the ERG; a network's input dimension is an integer value)"),
    ("p", "p", _POS, "momentum magnitude |p| (for the cos-net: the frequency |b|)"),
    ("p2", "p^{2}", _POS, "squared momentum p^2, the variable of inverse propagators and flows"),
    ("m", "m", _POS, "mass"),
    ("m2", "m^{2}", _POS, "squared mass m^2"),
    ("k", "k", _POS, "momentum scale of coarse graining (ERG scale, cos-net momentum cutoff)"),
    ("Lambda", r"\Lambda", _POS, ("cutoff scale: the BRG information cutoff (a Fisher eigenvalue) and "
                                  "the running scale of Polchinski's flow, which the theorem identifies")),
    ("R", "R", _POS, "UV radius: the radius of the cos-net's frequency ball, Wilson's UV cutoff"),
    ("sigma", r"\sigma", _POS, "field normalization (G = sigma^2/(p^2+m^2)); BRG prior scale"),
    ("phi", r"\phi", _REAL, "field value"),
    ("rho", r"\rho", _NONNEG, "O(N)-invariant rho = phi^2/2"),
    ("eta", r"\eta", _NONE, "anomalous dimension"),
    ("w", "w", _NONE, "threshold-function argument w = U''/(Z k^2), the dimensionless mass"),
    ("y", "y", _POS, "argument y = p^2/k^2 of an IR regulator shape r(y)"),
    ("z", "z", _NONNEG, ("argument z = p^2/k^2 of a UV cutoff function K(z) (spectrally adjusted: "
                         "(p^2+m^2)/(k^2+m^2))")),
    # -- networks and kernels
    ("x", "x", _REAL, "pre-activation (an activation's argument)"),
    ("c", "c", _REAL, "correlation of two pre-activations; the cos-net neuron's phase"),
    ("q", "q", _POS, "variance of a pre-activation (q = p^2 where a density is written in it)"),
    ("q11", "q_{11}", _POS, "kernel entry K_11 (variance of the first pre-activation)"),
    ("q12", "q_{12}", _REAL, "kernel entry K_12 (covariance)"),
    ("q22", "q_{22}", _POS, "kernel entry K_22"),
    ("k11", "k_{11}", _POS, "kernel entry K_11 of a registered closed form"),
    ("k12", "k_{12}", _REAL, "kernel entry K_12 of a registered closed form"),
    ("k22", "k_{22}", _POS, "kernel entry K_22 of a registered closed form"),
    ("q_Delta", r"q_{\Delta}", _NONNEG, "Gram determinant q11 q22 - q12^2 carried as the gap"),
    ("e_12", "e_{12}", _REAL, "the value of E[phi(u) phi(v)], computed once (gap map)"),
    ("h_12", "h_{12}", _NONNEG, "the value of the angular gap H(theta) (gap map)"),
    ("s_11", "s_{11}", _POS, "input second moment x.x / d"),
    ("s_22", "s_{22}", _POS, "input second moment x'.x' / d"),
    ("s_12", "s_{12}", _REAL, "input inner product x.x' / d"),
    ("r_12", "r_{12}", _NONNEG, "input squared distance |x - x'|^2 / d"),
    ("w_12", "w_{12}", _NONNEG, r"input wedge |x \wedge x'|^2 / d^2"),
    ("sigma_w", r"\sigma_{w}", _POS, "weight scale of a dense layer"),
    ("sigma_b", r"\sigma_{b}", _NONNEG, "bias scale of a dense layer (0: no bias)"),
    # -- the cos-net and its data
    ("T", "T", _POS, "number of observations"),
    ("N", "N", _POS, "width (number of neurons)"),
    ("sigma_epsilon", r"\sigma_{\epsilon}", _POS, "observation-noise standard deviation"),
    ("s_x", "s_{x}", _POS, "standard deviation of Gaussian inputs"),
    ("r", "r", _POS, "distance |x - y| between two inputs"),
    ("n", "n", _POS, "number density of the training inputs"),
    # -- BRG posteriors
    ("lambda_k", r"\lambda_{k}", _NONNEG, "Fisher eigenvalue of mode k"),
    ("kappa_k", r"\kappa_{k}", _POS, "prior variance of mode k"),
    ("w_k", "w_{k}", _NONNEG, "information-shell weight of mode k"),
    ("y_k", "y_{k}", _REAL, "observed projection of mode k"),
    ("p_0", "p_{0}", _NONNEG, "precision before a shell step"),
    ("p_*", "p_{*}", _NONNEG, "precision after a shell step"),
    ("h_0", "h_{0}", _REAL, "information vector before a shell step"),
    ("h_*", "h_{*}", _REAL, "information vector after a shell step"),
    # -- the theorem's auxiliaries
    ("u", "u", _REAL, "first pre-activation / phase variable"),
    ("v", "v", _REAL, "second pre-activation / phase variable"),
    ("ell", r"\ell", _POS, "RG time ell = -log(k/R)"),
    ("V", "V", _POS, "volume"),
)

SYMBOLS: Mapping[str, SymbolInfo] = {name: SymbolInfo(name, latex, assumptions, meaning)
                                     for name, latex, assumptions, meaning in _TABLE}
_CACHE: dict[str, sp.Symbol] = {}


def symbol(name: str) -> sp.Symbol:
    """The package's symbol called ``name`` (one object per name; :data:`SYMBOLS` has the table).

    Raises :class:`~symbrg.core.errors.UnknownName` (listing the names) for a name not in the table.
    """
    if name not in _CACHE:
        if not isinstance(name, str) or name not in SYMBOLS:
            raise UnknownName("name", f"unknown symbol {name!r}; choose one of {', '.join(SYMBOLS)}")
        _CACHE[name] = SYMBOLS[name].symbol
    return _CACHE[name]


def symbols(names: str) -> tuple[sp.Symbol, ...]:
    """Several symbols at once, by whitespace-separated names: ``P, M = symbols("p m")``."""
    return tuple(symbol(n) for n in names.split())
