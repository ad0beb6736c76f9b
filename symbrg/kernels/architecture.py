r"""Infinite-width kernels (NNGP and NTK) of deep fully connected networks, as kernel programs.

Job: compose layers, each carrying its own kernel map (as in neural-tangents' ``stax``), into a
:class:`~symbrg.core.codegen.Program` for the NNGP and NTK, and evaluate Gram matrices from it.

Convention (neural-tangents, Lee et al. 2018, Jacot et al. 2018).  With inputs
:math:`x, x' \in \mathbb R^d`,

.. math::

    K^{0}(x,x') &= \sigma_b^2 + \sigma_w^2\, x\cdot x'/d, \\
    K^{l+1}(x,x') &= \sigma_b^2 + \sigma_w^2\, \mathbb E_{(u,v)\sim\mathcal N(0,\Sigma^l)}
        [\varphi(u)\varphi(v)], \qquad
        \Sigma^l = \begin{pmatrix} K^l(x,x) & K^l(x,x') \\ K^l(x,x') & K^l(x',x')\end{pmatrix},

and the NNGP of ``mlp(..., depth=L)`` is the readout pre-activation covariance :math:`K^{L}`.
The NTK in the ``"ntk"`` parameterization (:math:`z = \sigma_w W x/\sqrt n + \sigma_b b`, all
parameters standard normal) obeys

.. math::

    \Theta^{0} = K^{0}, \qquad
    \Theta^{l+1} = K^{l+1} + \sigma_w^2\,\dot K^{l}\,\Theta^{l}, \qquad
    \dot K^{l} = \mathbb E[\varphi'(u)\varphi'(v)],

and in the ``"standard"`` parameterization (:math:`W \sim \mathcal N(0, \sigma_w^2/n)` trained
directly) the Dense step adds :math:`n\,\bar K + 1` (the 1 from the bias, absent when
:math:`\sigma_b = 0`) instead of :math:`K^{l+1}` (``n`` the fan-in,
:math:`\bar K` the layer's input covariance per unit of fan-in), exactly as neural-tangents does.

Each expectation comes from :mod:`symbrg.gaussian.expectations` (closed form, Mehler series or quadrature), and
the program records which rule produced it; a Mehler series is one node per layer
(:class:`~symbrg.core.special.MehlerSeries`, truncated per entry within its certified bound), and the
NTK's :math:`\dot K` is the slope of the same series, summed with it.  Gram matrices are evaluated in
cache-sized tiles, in place (no temporaries), on several threads, and only above the diagonal when
symmetric; :meth:`Architecture.kernels` fills the NNGP and the NTK from one pass (neural-tangents'
``get=("nngp", "ntk")``); ``precision=`` switches to mpmath at any number of digits.

Numerical honesty: the float64 path adds no cancellation of its own (the expectations are written
through the stable special functions of :mod:`symbrg.core.special`, |c| is clipped to 1 so rounding
never gives NaN, the diagonal of a Gram matrix has c = 1 exactly, depth 1000 stays finite).  Near
c = +1, where :math:`1 - c` would be lost to cancellation in every layer (the NTK's step factor and
the step/sign kernels have :math:`d\theta/dc \to \infty`), the programs carry the gap
:math:`\Delta^l = K^l_{11}K^l_{22} - (K^l_{12})^2` as a variable of its own, from the first layer's
:math:`\Delta^0 = \sigma_b^2(\sigma_w^2/d)|x-x'|^2 + (\sigma_w^2/d)^2|x\wedge x'|^2` (computed from x and
x', no cancellation) through an accurate update per layer (:class:`Dense`,
:func:`symbrg.gaussian.expectations.gap_map`): float64 agrees with 50 digits to 1e-12 as c -> 1 (tested, depth
1..20).  What remains is the conditioning near c = -1 (ReLU: :math:`K \sim \psi^3`), where the rounding
of :math:`x\cdot x'` limits the relative accuracy to about :math:`\epsilon/|1 + c|`; there the mpmath path
(``precision=``) is the answer.
"""
from __future__ import annotations

import dataclasses
import fractions
import math
import operator
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, overload

import mpmath
import numpy as np
import sympy as sp

from symbrg.core import checks
from symbrg.core.codegen import Program, Workspace, lambdify
from symbrg.core.derivation import Derivation
from symbrg.core.errors import ConvergenceError, InvalidArgument, NotPositive, SymbrgError
from symbrg.core.limits import Limit
from symbrg.core.parsing import as_expression
from symbrg.core.special import GramDet, MehlerSeries
from symbrg.core.symbols import symbol, symbols
from symbrg.core.types import ArrayLike, NDArray, Number
from symbrg.gaussian.activations import Activation
from symbrg.gaussian.activations import X as _X
from symbrg.gaussian.activations import activation as _activation
from symbrg.kernels.grams import GRAM_BYTES, Points, Progress, _gram_inputs

if TYPE_CHECKING:
    import dask.array
    import zarr

    from symbrg.gaussian.expectations import Expectation

__all__ = ["Dense", "Nonlinearity", "Architecture", "serial", "mlp", "S11", "S12", "S22", "DIM"]

#: Input statistics of a pair of inputs: |x|²/d, |x'|²/d and x·x'/d.
S11, S22 = symbols("s_11 s_22")
S12 = symbol("s_12")
#: The input dimension d (enters the NTK only in the standard parameterization).
DIM = symbol("d")
#: The gap of the inputs: their distance |x - x'|²/d and wedge |x ∧ x'|²/d² = s_11 s_22 - s_12²
#: (program variables; the Gram drivers compute them from x and x' without cancellation).
SR, SW = symbols("r_12 w_12")

PARAMETERIZATIONS = ("ntk", "standard")

# Work bounds (symbrg.core.limits), with the rates measured on the development machine (2 cores) that
# turn a request into a cost estimate: deriving and compiling a ReLU NNGP+NTK program, per hidden
# layer; one float64 Gram entry through one hidden layer on one thread (ReLU NTK; Mehler-series
# activations such as tanh cost about 2-3x, quadrature ones far more); one mpmath entry through one layer at <= 300 digits,
# growing as (digits/300)^1.8 above (measured at 50, 500 and 5000 digits).
DEPTH = Limit("depth", 10_000, "hidden layers of an architecture (deriving and compiling are O(depth))")
PRECISION = Limit("precision", 10_000, "mpmath digits of a Gram matrix")
GRAM_WORK = Limit("gram_work", 1e10, "Gram entries x hidden layers evaluated in float64")
MP_WORK = Limit("mp_work", 2e5, "Gram entries x hidden layers x max(1, digits/300)^1.8 evaluated in "
                               "mpmath (one unit is about 0.7 ms)")
_SECONDS_PER_LAYER = 0.018
_SECONDS_PER_ENTRY_LAYER = 6.6e-8
_SECONDS_PER_MP_UNIT = 7e-4

#: Hyperparameter overrides of a Gram matrix: symbols or their names -> values.
Params: TypeAlias = "Mapping[sp.Symbol | str, Number]"


# --------------------------------------------------------------------------- kernel state
@dataclass(frozen=True)
class _State:
    """Symbolic kernel entries between the layers: the covariance of the current units for the
    pair (x, x') and, when tracked, the NTK entry; ``fan_in`` is the width feeding the next Dense.
    ``post`` is False for pre-activations (the covariance is K) and True after a nonlinearity.
    ``dist`` :math:`= q_{11} + q_{22} - 2q_{12}` and ``gap`` :math:`= q_{11}q_{22} - q_{12}^2`, carried
    as variables of their own so that :math:`1 - c` is never lost to cancellation as c -> 1."""
    q11: sp.Expr
    q22: sp.Expr
    q12: sp.Expr
    t12: sp.Expr | None
    fan_in: sp.Expr
    post: bool
    dist: sp.Expr = sp.Integer(0)
    gap: sp.Expr = sp.Integer(0)


class _Builder:
    """Collects assignments; names new quantities by layer: K^{(l)}_{11}, Θ^{(l)}, ..."""

    def __init__(self) -> None:
        self.assignments: list[tuple[sp.Symbol, sp.Expr]] = []
        self.rules: list[tuple[int, str, Expectation]] = []
        self.layer = 0
        self.params: dict[sp.Symbol, float | None] = {}

    def let(self, name: str, expr: sp.Expr, positive: bool = False) -> sp.Symbol:
        """A new variable ``name := expr`` (an atom is returned as it is, unassigned)."""
        expr = as_expression(expr, "expr")
        if expr.is_Atom:
            return expr
        sym = sp.Symbol(name, positive=True) if positive else sp.Symbol(name, real=True)
        self.assignments.append((sym, expr))
        return sym

    def parameter(self, base: str, value: Number) -> sp.Expr:
        """A hyperparameter symbol; numbers become symbols with a stored value (one per value)."""
        if isinstance(value, sp.Basic) and value.free_symbols:
            for s in value.free_symbols:
                self.params.setdefault(s, None)
            return value
        v = float(value)
        for s, stored in self.params.items():
            if stored == v and s.name.startswith(base):
                return s
        n = sum(1 for s in self.params if s.name.startswith(base))
        sym = sp.Symbol(base if n == 0 else f"{base}{n + 1}", nonnegative=True)
        self.params[sym] = v
        return sym


# --------------------------------------------------------------------------------- layers
@dataclass(frozen=True)
class Dense:
    r"""A fully connected layer :math:`z = \sigma_w W h/\sqrt{n} + \sigma_b b` ("ntk") or
    :math:`z = W h + b`, :math:`W\sim\mathcal N(0,\sigma_w^2/n)`, :math:`b\sim\mathcal N(0,\sigma_b^2)`
    ("standard").  Kernel map: :math:`K \mapsto \sigma_b^2 + \sigma_w^2 K`; the pair's distance and
    gap (:class:`_State`) map without cancellation as
    :math:`D \mapsto \sigma_w^2 D`, :math:`\Delta \mapsto \sigma_b^2\sigma_w^2 D + \sigma_w^4\Delta`.

    ``width`` is the layer's number of output units; it only matters for the NTK in the standard
    parameterization (the next layer's fan-in), as in neural-tangents' ``Dense(out_dim)``.
    """
    sigma_w: Number = 1.0
    sigma_b: Number = 0.0
    parameterization: str = "ntk"
    width: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma_w", checks.positive("sigma_w", self.sigma_w))
        object.__setattr__(self, "sigma_b", checks.nonnegative("sigma_b", self.sigma_b))
        checks.choice("parameterization", self.parameterization, PARAMETERIZATIONS)
        checks.integer("width", self.width, minimum=1)

    def kernel_map(self, k: _State, b: _Builder) -> _State:
        """The state after this layer: K, the gap and (when tracked) Θ, as new variables of layer l."""
        sw = b.parameter("sigma_w", self.sigma_w)
        sb = b.parameter("sigma_b", self.sigma_b)
        l = b.layer
        q11 = b.let(f"K^{{({l})}}_{{11}}", sb**2 + sw**2 * k.q11, positive=True)
        q22 = b.let(f"K^{{({l})}}_{{22}}", sb**2 + sw**2 * k.q22, positive=True)
        q12 = b.let(f"K^{{({l})}}_{{12}}", sb**2 + sw**2 * k.q12)
        dist = b.let(f"D^{{({l})}}", sw**2 * k.dist)
        gap = b.let(f"\\Delta^{{({l})}}", sb**2 * sw**2 * k.dist + sw**4 * k.gap)
        t12 = None
        if k.t12 is not None:
            if self.parameterization == "ntk":
                t12 = b.let(f"\\Theta^{{({l})}}", q12 + sw**2 * k.t12)
            else:
                bias = 0 if (not isinstance(self.sigma_b, sp.Basic) and float(self.sigma_b) == 0) else 1
                t12 = b.let(f"\\Theta^{{({l})}}", k.fan_in * k.q12 + bias + sw**2 * k.t12)
        b.layer += 1
        return _State(q11, q22, q12, t12, sp.Integer(self.width), post=False, dist=dist, gap=gap)


@dataclass(frozen=True)
class Nonlinearity:
    r"""A pointwise nonlinearity :math:`h = \varphi(z)`.  Kernel map
    :math:`K \mapsto \mathbb E[\varphi(u)\varphi(v)]`, :math:`\Theta \mapsto
    \mathbb E[\varphi'(u)\varphi'(v)]\,\Theta`, with the expectations from :mod:`symbrg.gaussian.expectations`.

    The expectations read the Gram determinant from the carried gap :math:`\Delta`
    (:func:`symbrg.gaussian.expectations.with_gap`), and the gap is carried on with
    :func:`symbrg.gaussian.expectations.gap_map` (accurate as c -> 1) for positively homogeneous activations
    (ReLU, leaky ReLU, abs, step, sign, :math:`x^n\Theta(x)`, monomials).  Other activations (erf,
    GELU, sin, exp, Gaussian: smooth at c = 1, so their own kernels need no gap; tanh and the other
    Mehler-series or quadrature ones) carry the plain :math:`E_{11}E_{22} - E_{12}^2`."""
    activation: Any = "relu"    # a name, an Activation or a sympy Lambda; an Activation once built
    tol: float = 1e-10
    method: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "activation", _activation(self.activation))
        checks.positive("tol", self.tol)
        checks.choice("method", self.method, ("auto", "exact", "series", "quadrature"))

    def kernel_map(self, k: _State, b: _Builder) -> _State:
        r"""The state after this layer: the Gaussian expectations of K (and Θ), and the carried gap.

        Where :math:`E[\varphi'\varphi']` is the slope of the Mehler series of :math:`E[\varphi\varphi]`
        (:class:`~symbrg.core.special.MehlerSeries`), it is assigned first: evaluating it leaves
        :math:`E[\varphi\varphi]` for the next node, so the NTK program sums one series per layer."""
        from symbrg.gaussian.expectations import Q11, Q12, Q22, QD, QE, QH, expectation, gap_map, with_gap
        phi: Activation = self.activation
        l = b.layer
        sub = {Q11: k.q11, Q22: k.q22, Q12: k.q12, QD: k.gap}
        e = expectation(phi, tol=self.tol, method=self.method)
        b.rules.append((l, "nngp", e))
        de = None if k.t12 is None else expectation(phi, derivative=True, tol=self.tol, method=self.method)
        if de is not None:
            b.rules.append((l, "ntk", de))
        slope = type(de.program_expr) if de is not None else None
        joint = slope is not None and issubclass(slope, MehlerSeries) and slope.mehler_base is type(e.program_expr)
        d12 = None
        if joint and de is not None:
            d12 = b.let(f"\\dot{{E}}^{{({l})}}_{{12}}", with_gap(de.program_expr).xreplace(sub))
        m12 = b.let(f"E^{{({l})}}_{{12}}", with_gap(e.program_expr).xreplace(sub))
        # the diagonal through the same functions at the same floats as the pair (gap 0): c = 1 bit for bit
        diag = with_gap(e.program_expr).xreplace({Q12: Q11, Q22: Q11, QD: 0})
        m11 = b.let(f"E^{{({l})}}_{{11}}", diag.xreplace({Q11: k.q11}), positive=True)
        m22 = b.let(f"E^{{({l})}}_{{22}}", diag.xreplace({Q11: k.q22}), positive=True)
        update = gap_map(phi) if e.method == "exact" else None
        if update is not None:
            h = b.let(f"H^{{({l})}}", update.angular.xreplace({**sub, QE: m12}))
            dist = b.let(f"D^{{({l})}}_{{\\varphi}}", update.distance.xreplace({**sub, QH: h}))
            gap = b.let(f"\\Delta^{{({l})}}_{{\\varphi}}", update.gap.xreplace({**sub, QH: h}))
        else:
            dist = b.let(f"D^{{({l})}}_{{\\varphi}}", sp.Max(m11 + m22 - 2 * m12, 0))
            gap = b.let(f"\\Delta^{{({l})}}_{{\\varphi}}", GramDet(m11, m12, m22))
        t12 = None
        if de is not None and k.t12 is not None:
            if d12 is None:
                d12 = b.let(f"\\dot{{E}}^{{({l})}}_{{12}}", with_gap(de.program_expr).xreplace(sub))
            t12 = b.let(f"\\Theta^{{({l})}}_{{\\varphi}}", d12 * k.t12)
        return _State(m11, m22, m12, t12, k.fan_in, post=True, dist=dist, gap=gap)


class Layer(Protocol):
    """Anything with a kernel map, such as :class:`Dense` and :class:`Nonlinearity`."""

    def kernel_map(self, k: _State, b: _Builder) -> _State:
        """The kernel state after the layer, its new variables recorded in ``b``."""


# ------------------------------------------------------------------------- architecture
@dataclass(frozen=True)
class Architecture:
    """A composed network: its kernel programs, Gram matrices and derivations.

    Build with :func:`serial` or :func:`mlp`.  Hyperparameters given as numbers become symbols
    (``sigma_w``, ``sigma_b``, ...) whose values are stored in :attr:`values`, so the programs stay
    symbolic (and differentiable) while Gram matrices use the numbers.
    """
    layers: tuple
    name: str = "network"
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        bad = [lay for lay in self.layers if not callable(getattr(lay, "kernel_map", None))]
        if bad:
            raise InvalidArgument("layers", f"expected layers such as Dense(...) and Nonlinearity(...), "
                                            f"got {bad[0]!r}")
        if not isinstance(self.name, str):
            raise InvalidArgument("name", f"expected a string, got {self.name!r}")
        DEPTH.check("layers", self.depth, cost=f"about {_duration(self.depth * _SECONDS_PER_LAYER)} to "
                                               "derive and compile")

    @property
    def depth(self) -> int:
        """Hidden layers: ``mlp``'s ``depth``; half the number of layers of any stack."""
        return len(self.layers) // 2

    # ------------------------------------------------------------------ programs
    def _build(self, ntk: bool) -> tuple[Program, _Builder]:
        """The NNGP (``ntk`` False) or NNGP+NTK program and its builder, built once."""
        key = ("program", ntk)
        if key not in self._cache:
            self._cache[key] = _kernel_program(self.layers, self.name, ntk)
        return self._cache[key]

    @property
    def nngp_program(self) -> Program:
        """The NNGP as a chain of per-layer assignments; output :math:`K^L_{12}`."""
        return self._build(False)[0]

    @property
    def ntk_program(self) -> Program:
        """NNGP and NTK together; outputs :math:`(K^L_{12}, \\Theta^L)`."""
        return self._build(True)[0]

    @property
    def values(self) -> dict[sp.Symbol, float | None]:
        """Hyperparameter symbols and their numeric values (``None`` for user symbols)."""
        return dict(self._build(True)[1].params)

    @property
    def rules(self) -> list[tuple[int, str, Expectation]]:
        """(layer, "nngp"|"ntk", :class:`symbrg.gaussian.expectations.Expectation`) for every expectation used."""
        return list(self._build(True)[1].rules)

    def expand(self, kind: str = "nngp") -> sp.Expr:
        """The whole recursion substituted into one expression of s_11, s_22, s_12 (small depth)."""
        checks.choice("kind", kind, ("nngp", "ntk"))
        prog = self.nngp_program if kind == "nngp" else self.ntk_program
        out = prog.expand()
        return out[0] if kind == "nngp" else out[1]

    # ------------------------------------------------------------------ evaluation
    def _param_args(self, prog: Program, params: Params | None, d: int) -> list[Any]:
        """The arguments of ``prog`` after s_11, s_22, s_12: the stored hyperparameter values,
        overridden by ``params`` (keys: symbols or names, matched by name; an unknown key is
        refused), then the input dimension ``d`` where the program takes it.  The values must make
        every sigma_w > 0 and every sigma_b >= 0."""
        vals = _hyperparameter_values(self.values, params)
        _check_symbolic_sigmas(self.layers, vals)
        return [d if sym == DIM else vals[sym] for sym in prog.inputs[3:]]

    def check_gram(self, argument: str, n1: int, n2: int, *, symmetric: bool,
                   precision: int | None = None) -> int:
        """Refuse, before any work, a Gram matrix of ``n1`` x ``n2`` entries (``symmetric``: only
        the upper triangle is computed) whose work exceeds :data:`GRAM_WORK` (float64) or
        :data:`PRECISION` and :data:`MP_WORK` (mpmath at ``precision`` digits, at least 15).
        ``argument`` names the inputs in errors.  Returns the result's size in bytes (8 per
        float64 entry; about 0.42 per digit plus 120 per mpmath entry, twice while converting)."""
        return _check_gram_work(max(1, self.depth), argument, n1, n2, symmetric, precision)

    @overload
    def nngp(self, x1: ArrayLike, x2: ArrayLike | None = None, *, precision: int | None = None,
             params: dict | None = None, block: int = 1 << 16, threads: int | None = None,
             out: np.ndarray | None = None, progress: Progress | None = None, chunks: None = None) -> np.ndarray: ...

    @overload
    def nngp(self, x1: ArrayLike, x2: ArrayLike | None = None, *, precision: int | None = None,
             params: dict | None = None, block: int = 1 << 16, threads: int | None = None,
             out: None = None, progress: None = None, chunks: int) -> dask.array.Array: ...

    @overload
    def nngp(self, x1: ArrayLike, x2: ArrayLike | None = None, *, precision: None = None,
             params: dict | None = None, block: int = 1 << 16, threads: None = None,
             out: str | os.PathLike[str], progress: Progress | None = None,
             chunks: int | None = None) -> zarr.Array: ...

    def nngp(self, x1: ArrayLike, x2: ArrayLike | None = None, *, precision: int | None = None,
             params: dict | None = None, block: int = 1 << 16, threads: int | None = None,
             out: np.ndarray | str | os.PathLike[str] | None = None, progress: Progress | None = None,
             chunks: int | None = None) -> Any:
        """NNGP Gram matrix :math:`K^L(x_i, x'_j)`, shape (N1, N2), float64 (or mpf objects with
        ``precision`` digits).  ``x2=None`` means ``x2 = x1`` (then only the upper triangle is
        computed, and the result is exactly symmetric).  Entries are computed in tiles of about
        ``block`` entries, in place and on ``threads`` threads (default: the usable cores), so memory
        beyond the output stays bounded (:func:`_gram_tiled`).  ``out``: a float64 array of shape
        (N1, N2) to fill and return instead of a new one, e.g. a ``numpy.memmap``, so that a Gram
        matrix larger than memory streams to disk tile by tile.  ``progress(done, total)``, if given,
        is called (from one thread at a time) after every finished tile (mpmath: every row), e.g. to
        drive a progress bar.

        Beyond memory (the ``[dask]`` extra, :mod:`symbrg.kernels.chunked`): ``chunks=C`` returns
        the lazy ``dask.array.Array`` of ``C`` x ``C`` blocks (:func:`~symbrg.kernels.chunked.gram_dask`;
        nothing is computed until it is); ``out=`` a path or fsspec URL ending in ``.zarr`` writes
        the matrix chunk by chunk to a zarr array (chunk side ``chunks``, default 4096) and returns
        it (:func:`~symbrg.kernels.chunked.gram_to_zarr`; an existing array is refused: use
        ``gram_to_zarr`` to resume or overwrite it, or to run on a cluster)."""
        return _dispatch(self, "nngp", x1, x2, precision, params, block, threads, out, progress, chunks)

    @overload
    def ntk(self, x1: ArrayLike, x2: ArrayLike | None = None, *, precision: int | None = None,
            params: dict | None = None, block: int = 1 << 16, threads: int | None = None,
            out: np.ndarray | None = None, progress: Progress | None = None, chunks: None = None) -> np.ndarray: ...

    @overload
    def ntk(self, x1: ArrayLike, x2: ArrayLike | None = None, *, precision: int | None = None,
            params: dict | None = None, block: int = 1 << 16, threads: int | None = None,
            out: None = None, progress: None = None, chunks: int) -> dask.array.Array: ...

    @overload
    def ntk(self, x1: ArrayLike, x2: ArrayLike | None = None, *, precision: None = None,
            params: dict | None = None, block: int = 1 << 16, threads: None = None,
            out: str | os.PathLike[str], progress: Progress | None = None,
            chunks: int | None = None) -> zarr.Array: ...

    def ntk(self, x1: ArrayLike, x2: ArrayLike | None = None, *, precision: int | None = None,
            params: dict | None = None, block: int = 1 << 16, threads: int | None = None,
            out: np.ndarray | str | os.PathLike[str] | None = None, progress: Progress | None = None,
            chunks: int | None = None) -> Any:
        """NTK Gram matrix :math:`\\Theta^L(x_i, x'_j)`, as :meth:`nngp` (``chunks=``, ``out=*.zarr`` too)."""
        return _dispatch(self, "ntk", x1, x2, precision, params, block, threads, out, progress, chunks)

    @overload
    def kernels(self, x1: ArrayLike, x2: ArrayLike | None = None, *, get: str,
                precision: int | None = None, params: dict | None = None, block: int = 1 << 16,
                threads: int | None = None, progress: Progress | None = None) -> np.ndarray: ...

    @overload
    def kernels(self, x1: ArrayLike, x2: ArrayLike | None = None, *,
                get: tuple[str, ...] | list[str] = ("nngp", "ntk"), precision: int | None = None,
                params: dict | None = None, block: int = 1 << 16, threads: int | None = None,
                progress: Progress | None = None) -> tuple[np.ndarray, ...]: ...

    def kernels(self, x1: ArrayLike, x2: ArrayLike | None = None, *,
                get: str | tuple[str, ...] | list[str] = ("nngp", "ntk"), precision: int | None = None,
                params: dict | None = None, block: int = 1 << 16, threads: int | None = None,
                progress: Progress | None = None) -> np.ndarray | tuple[np.ndarray, ...]:
        """The NNGP and NTK Gram matrices :math:`(K^L(x_i, x'_j), \\Theta^L(x_i, x'_j))` from one pass,
        as neural-tangents' ``kernel_fn(x1, x2, get=("nngp", "ntk"))``.

        ``get``: ``"nngp"``, ``"ntk"`` or a tuple of them; a tuple returns the matrices in its order,
        a string the one matrix.  With the NTK among them, one evaluation of the NNGP+NTK program
        fills both: each layer's correlations are formed once, and for a Mehler-series activation
        :math:`E[\\varphi'\\varphi']` is the slope of the series of :math:`E[\\varphi\\varphi]`
        (:class:`~symbrg.core.special.MehlerSeries`), so one series per layer is summed for both.
        The results equal :meth:`nngp` and :meth:`ntk` called separately, bit for bit.  Other
        arguments as :meth:`nngp` (in memory: float64 tiles, or mpmath with ``precision``;
        ``progress`` counts the tiles of the one pass)."""
        kinds = (get,) if isinstance(get, str) else tuple(get)
        if not kinds or len(set(kinds)) != len(kinds) or any(k not in ("nngp", "ntk") for k in kinds):
            raise InvalidArgument("get", f"expected 'nngp', 'ntk' or a tuple of them without repeats, got {get!r}")
        prog = self.ntk_program if "ntk" in kinds else self.nngp_program
        out = _GramJob(self, prog, tuple(1 if k == "ntk" else 0 for k in kinds), precision, params, block,
                       threads, progress)(x1, x2, None)
        return out[0] if isinstance(get, str) else out

    # ------------------------------------------------------------------ analysis
    def derivation(self, kind: str = "nngp") -> Derivation:
        """The per-layer maps as a :class:`~symbrg.core.derivation.Derivation` (``"nngp"`` or ``"ntk"``)."""
        checks.choice("kind", kind, ("nngp", "ntk"))
        prog = self.ntk_program if kind == "ntk" else self.nngp_program
        return _kernel_derivation(self.name, kind, prog, self.rules, _phi_latex(self.layers))

    def maps(self) -> dict[str, sp.Expr]:
        r"""Symbolic mean-field maps of a uniform network (Poole et al. 2016; Schoenholz et al. 2017):

        ``"variance"``: :math:`q \mapsto \sigma_b^2 + \sigma_w^2 \mathbb E[\varphi(\sqrt q z)^2]`;
        ``"correlation"``: :math:`c \mapsto (\sigma_b^2 + \sigma_w^2\,\mathbb E[\varphi(u)\varphi(v)]
        |_{q_{11}=q_{22}=q,\,q_{12}=cq})/q`;
        ``"chi1"``: :math:`\chi_1 = \sigma_w^2\,\mathbb E[\varphi'(\sqrt q z)^2]` (the slope of the
        correlation map at :math:`c=1`; :math:`\chi_1 = 1` is the order-to-chaos line).
        Expressions are in the symbols ``q``, ``c`` and the hyperparameter symbols.
        """
        return _mean_field_maps(*_uniform_layers(self.layers))

    def fixed_point(self, q0: float = 1.0, dps: int = 30) -> float:
        r"""The fixed point :math:`q^*` of the variance map :math:`q \mapsto V(q)`.

        The map is iterated in float64 (cheap for every rule, series included) until it settles,
        then the root of :math:`V(q) - q` is polished with mpmath's secant method at ``dps`` digits.
        Raises :class:`~symbrg.core.errors.ConvergenceError` when the map has no finite attracting fixed
        point (e.g. :math:`\sigma_w^2 \ge 2` for ReLU without bias).
        """
        q0 = checks.positive("q0", q0)
        dps = _digits("dps", dps)
        q = symbol("q")
        vmap = self._numeric_map("variance")
        settled = _settled_iterate(lambdify(vmap, [q]), float(q0))
        return _polished_root(lambdify(vmap - q, [q], "mpmath", dps=dps), settled, dps)

    def chi1(self, dps: int = 30) -> float:
        r""":math:`\chi_1 = \sigma_w^2\,\mathbb E[\varphi'(\sqrt{q^*} z)^2]` at the fixed point."""
        dps = _digits("dps", dps)
        q = symbol("q")
        expr = self._numeric_map("chi1")
        return float(lambdify(expr, [q], "mpmath", dps=dps)(self.fixed_point(dps=dps)))

    def _numeric_map(self, name: str) -> sp.Expr:
        """The mean-field map ``name`` with the stored hyperparameter values substituted."""
        return self.maps()[name].xreplace({s: v for s, v in self.values.items() if v is not None})


# ------------------------------------------------------------------ the kernel-program builder
def _kernel_program(layers: tuple, name: str, ntk: bool) -> tuple[Program, _Builder]:
    """The NNGP (or NNGP+NTK) program of ``layers``, with the builder holding its parameters and rules."""
    b = _Builder()
    # the input gap, written in s_11, s_22, s_12 (exact); the Gram drivers take r_12 and w_12
    # as inputs instead (_with_input_gap), computed from x and x' without cancellation
    b.assignments += [(SR, S11 + S22 - 2 * S12), (SW, GramDet(S11, S12, S22))]
    k = _State(S11, S22, S12, sp.Integer(0) if ntk else None, DIM, post=True, dist=SR, gap=SW)
    for layer in layers:
        k = layer.kernel_map(k, b)
    if k.post:
        raise InvalidArgument("layers", "the network must end in a Dense readout layer")
    outs = (k.q12, k.t12) if ntk else (k.q12,)
    inputs = (S11, S22, S12) + tuple(sorted(b.params, key=str))
    if ntk and any(getattr(lay, "parameterization", "ntk") == "standard" for lay in layers):
        inputs += (DIM,)
    prog = Program(inputs, tuple(b.assignments), outs, name=f"{name}_{'ntk' if ntk else 'nngp'}")
    # only what the outputs use (e.g. no gap chain where no layer reads the gap)
    return Program(inputs, tuple(prog._live_assignments()), outs, name=prog.name), b


# ------------------------------------------------------------------ hyperparameter values
def _hyperparameter_values(stored: dict[sp.Symbol, float | None],
                           params: Params | None) -> dict[sp.Symbol, Any]:
    """The stored values overridden by ``params``, checked (sigma_w > 0, sigma_b >= 0, none missing)."""
    if params is not None and not isinstance(params, Mapping):
        raise InvalidArgument("params", f"expected a dict of hyperparameter values, got {params!r}")
    keys = checks.resolve_symbols("params", list(params or {}), stored,
                                  what="the network's hyperparameters")
    given = {k: checks.scalar(f"params[{k.name}]", v) for k, v in zip(keys, (params or {}).values())}
    for sym, v in given.items():
        if stored[sym] is not None:                       # a number of a layer, made a symbol
            check = checks.positive if sym.name.startswith("sigma_w") else checks.nonnegative
            check(f"params[{sym.name}]", v)
    vals = {**stored, **given}
    missing = sorted(s.name for s, v in vals.items() if v is None)
    if missing:
        raise InvalidArgument("params", f"no value for the hyperparameter(s) {', '.join(missing)}")
    return vals


def _check_symbolic_sigmas(layers: tuple, vals: Mapping[sp.Symbol, Any]) -> None:
    """Refuse values that make a Dense layer's symbolic sigma_w <= 0 or sigma_b < 0."""
    for layer in layers:                                  # user symbols: the layer's value
        for attr, low in (("sigma_w", "> 0"), ("sigma_b", ">= 0")):
            expr = getattr(layer, attr, None) if isinstance(layer, Dense) else None
            value = expr.xreplace(vals) if isinstance(expr, sp.Basic) else None
            if value is not None and not (value > 0 if attr == "sigma_w" else value >= 0):
                raise NotPositive("params", f"{attr} = {expr} must be {low}, got {value}")


def _numeric_layers(layers: tuple, stored: Mapping[sp.Symbol, float | None],
                    vals: Mapping[sp.Symbol, Any]) -> tuple:
    """The layers with every Dense's sigma_w, sigma_b replaced by its number under ``vals``
    (the hyperparameter symbols' values, overrides included; ``stored``: the network's own)."""
    def number(layer: Dense, attr: str) -> float:
        v = getattr(layer, attr)
        if isinstance(v, sp.Basic):
            return float(v.xreplace(vals))
        sym = next(s for s, value in stored.items() if value == float(v) and s.name.startswith(attr))
        return float(vals[sym])
    return tuple(dataclasses.replace(lay, sigma_w=number(lay, "sigma_w"), sigma_b=number(lay, "sigma_b"))
                 if isinstance(lay, Dense) else lay for lay in layers)


# ------------------------------------------------------------------ work bounds
def _check_gram_work(layers: int, argument: str, n1: int, n2: int, symmetric: bool,
                     precision: int | None) -> int:
    """:meth:`Architecture.check_gram` for a network of ``layers`` hidden layers (at least 1)."""
    if precision is None:
        entries = n1 * (n1 + 1) // 2 if symmetric else n1 * n2
        threads = _cores()
        seconds = entries * layers * _SECONDS_PER_ENTRY_LAYER / threads
        GRAM_WORK.check(argument, entries * layers,
                        cost=f"about {_duration(seconds)} for ReLU on {threads} thread(s)")
        return 8 * n1 * n2
    precision = _digits("precision", precision)
    units = n1 * n2 * layers * _mp_scale(precision)
    MP_WORK.check(argument, units, cost=f"about {_duration(units * _SECONDS_PER_MP_UNIT)}")
    return int(n1 * n2 * (240 + 0.84 * precision))


def _cores() -> int:
    """The number of cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _digits(argument: str, digits: int) -> int:
    """An mpmath precision: an integer of at least 15 digits (below that float64 is as good) and
    at most :data:`PRECISION`."""
    digits = checks.integer(argument, digits, minimum=15)
    PRECISION.check(argument, digits, cost=f"about {_duration(_SECONDS_PER_MP_UNIT * _mp_scale(digits))} "
                                           "per Gram entry and layer")
    return digits


def _mp_scale(digits: int) -> float:
    """Cost of one mpmath entry-layer at ``digits``, relative to <= 300 digits (measured)."""
    return max(1.0, min(digits, 1e15) / 300) ** 1.8          # capped: any huge request is refused anyway


def _duration(seconds: float) -> str:
    """``"40 s"``, ``"12 min"``, ``"3.5 h"``, ``"2.1e+03 days"``: a rough time for a cost estimate."""
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.2g} s"


# ------------------------------------------------------------------ Gram matrices
class _Counter:
    """Counts finished units of work and reports them to a :data:`Progress` callback, one thread
    at a time (the tiles run on several threads)."""

    def __init__(self, progress: Progress | None, total: int):
        self.progress, self.total, self.done = progress, total, 0
        self.lock = threading.Lock()

    def tick(self, n: int = 1) -> None:
        if self.progress is None:
            return
        with self.lock:
            self.done += n
            self.progress(self.done, self.total)


@dataclass(frozen=True)
class _GramJob:
    """One Gram-matrix request (outputs ``which`` of ``prog``, all from one evaluation of it): checks
    it, then picks the driver; the result has one matrix per output."""
    arch: Architecture
    prog: Program
    which: tuple[int, ...]
    precision: int | None
    params: Params | None
    block: int
    threads: int | None
    progress: Progress | None = None

    def __call__(self, x1: ArrayLike, x2: ArrayLike | None,
                 out: tuple[np.ndarray, ...] | None) -> tuple[np.ndarray, ...]:
        """The Gram matrices of ``x1`` against ``x2`` (``None``: ``x1``, symmetric), into ``out`` if given."""
        a1, a2, same = _gram_inputs(x1, x2)
        args = self.arch._param_args(self.prog, self.params, a1.shape[1])
        self._check_work(a1.shape[0], a2.shape[0], same, out)
        layers = _numeric_layers(self.arch.layers, self.arch.values, dict(zip(self.prog.inputs[3:], args)))
        zero1 = _zero_variance(layers, a1)
        zero2 = zero1 if same else _zero_variance(layers, a2)
        if zero1.any() or zero2.any():
            return self._degenerate(a1, None if same else a2, zero1, zero2, layers, out)
        if self.precision is not None:
            if out is not None:
                raise InvalidArgument("out", "out= takes float64 Gram matrices; precision= returns "
                                             "mpmath values")
            return _gram_mpmath(self.prog, self.which, a1, a2, args, self.precision, self.progress)
        checks.integer("block", self.block, minimum=1)
        outs = tuple(_float_output(None if out is None else o, (a1.shape[0], a2.shape[0]))
                     for o in (out or (None,) * len(self.which)))
        return _gram_tiled(self.prog, self.which, a1, a2 if not same else None, args, self.block,
                           self.threads, outs, self.progress)

    def _check_work(self, n1: int, n2: int, same: bool, out: tuple[np.ndarray, ...] | None) -> None:
        """Refuse a bad thread count or progress callback, too much work, or (without ``out``) too
        large a result."""
        if self.progress is not None and not callable(self.progress):
            raise InvalidArgument("progress", f"must be a callable progress(done, total) or None, got "
                                              f"{type(self.progress).__name__}")
        if self.threads is not None:
            checks.integer("threads", self.threads, minimum=1)
        size = self.arch.check_gram("x1", n1, n2, symmetric=same and self.precision is None,
                                    precision=self.precision) * len(self.which)
        if out is None:
            GRAM_BYTES.check("x1", size, cost=f"{size / 1e9:.3g} GB in memory; pass out= a numpy.memmap "
                                              "to stream to disk")

    def _degenerate(self, x1: Points, x2: Points | None, zero1: NDArray[np.bool_], zero2: NDArray[np.bool_],
                    layers: tuple, out: tuple[np.ndarray, ...] | None) -> tuple[np.ndarray, ...]:
        r"""A Gram matrix with zero-variance inputs (:math:`K^0(x,x) = 0`: x = 0 and no bias before
        the first nonlinearity): the other rows and columns by the ordinary path (into memory, then
        copied into ``out``), the zero ones by :func:`_zero_point_kernel`, exactly, where the
        ordinary closed forms and series would divide 0 by 0."""
        same = x2 is None
        if x2 is None:
            x2 = x1
        d = x1.shape[1]
        res = out if out is not None else tuple(
            np.empty((len(x1), len(x2)), dtype=float if self.precision is None else object) for _ in self.which)
        keep1, keep2 = ~zero1, ~zero2
        if keep1.any() and keep2.any():
            for r, part in zip(res, self(x1[keep1], None if same else x2[keep2], None)):
                r[np.ix_(keep1, keep2)] = part
        s1, s2 = (np.einsum("ij,ij->i", x, x) / d for x in (x1, x2))
        for r, which in zip(res, self.which):
            r[zero1, :] = _zero_point_kernel(layers, which, s2, d, self.precision)[None, :]
            r[:, zero2] = _zero_point_kernel(layers, which, s1, d, self.precision)[:, None]
        return res


def _zarr_target(out: object) -> str | os.PathLike[str] | None:
    """``out`` when it names a zarr array (a path or fsspec URL ending in ``.zarr``), else None;
    any other string or path is refused naming ``out``."""
    if not isinstance(out, (str, os.PathLike)):
        return None
    text = os.fspath(out)
    if isinstance(text, str) and text.rstrip("/").lower().endswith(".zarr"):
        return out
    raise InvalidArgument("out", f"a path must end in .zarr (a chunked zarr array), got {text!r}; "
                                 "for a .npy file pass a numpy.memmap (or use `symbrg kernel --out K.npy`)")


def _dispatch(arch: Architecture, kind: str, x1: ArrayLike, x2: ArrayLike | None, precision: int | None,
              params: dict | None, block: int, threads: int | None, out: Any, progress: Progress | None,
              chunks: int | None) -> Any:
    """:meth:`Architecture.nngp`/:meth:`Architecture.ntk`: the in-memory drivers, or with
    ``chunks=`` / ``out=*.zarr`` the chunked ones (:mod:`symbrg.kernels.chunked`, imported here:
    it sees the architecture only through :class:`~symbrg.kernels.grams.GramNetwork`)."""
    target = _zarr_target(out)
    if target is None and chunks is None:
        prog = arch.ntk_program if kind == "ntk" else arch.nngp_program
        return _GramJob(arch, prog, (1 if kind == "ntk" else 0,), precision, params, block, threads,
                        progress)(x1, x2, None if out is None else (out,))[0]
    try:
        return _chunked(arch, kind, x1, x2, precision, params, threads, out, target, progress, chunks)
    except SymbrgError as exc:                       # the chunked drivers' "chunk" is this API's "chunks"
        if exc.argument == "chunk":
            exc.argument = "chunks"
        raise


def _chunked(arch: Architecture, kind: str, x1: ArrayLike, x2: ArrayLike | None, precision: int | None,
             params: dict | None, threads: int | None, out: Any, target: str | os.PathLike[str] | None,
             progress: Progress | None, chunks: int | None) -> Any:
    """The chunked half of :func:`_dispatch`."""
    from symbrg.kernels import chunked
    if threads is not None:
        raise InvalidArgument("threads", "threads= is for the in-memory drivers; with chunks= or out=*.zarr "
                                         "each chunk runs on one thread (dask) or on all cores (zarr)")
    if target is None and chunks is not None:
        if out is not None:
            raise InvalidArgument("out", "chunks= returns a lazy dask array; out= takes a path ending in .zarr "
                                         "(or leave it out)")
        if progress is not None:
            raise InvalidArgument("progress", "chunks= returns a lazy dask array, computed later: use a dask "
                                              "progress bar (dask.diagnostics.ProgressBar) when computing it")
        return chunked.gram_dask(arch, x1, x2, kind=kind, chunk=chunks, params=params, precision=precision)
    if precision is not None:
        raise InvalidArgument("precision", "a zarr array holds float64; precision= (mpmath) goes with chunks= "
                                           "(a lazy object array) or in memory")
    return chunked.gram_to_zarr(arch, x1, target, x2=x2, kind=kind,
                                chunk=chunked.DEFAULT_CHUNK if chunks is None else chunks,
                                params=params, progress=progress)


def _float_output(out: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """``out`` checked to be a writable float64 array of ``shape``, or a new one."""
    if out is None:
        out = np.empty(shape)
    elif not isinstance(out, np.ndarray) or out.dtype != np.float64 or not out.flags.writeable:
        raise InvalidArgument("out", "must be a writable float64 NumPy array (or numpy.memmap)")
    checks.matching("out", out.shape, shape, "shape")
    return out


def _gram_tiled(prog: Program, which: tuple[int, ...], x1: Points, x2: Points | None, args: list[Any],
                block: int, threads: int | None, out: tuple[np.ndarray, ...],
                progress: Progress | None = None) -> tuple[np.ndarray, ...]:
    r"""Float64 Gram matrices (outputs ``which`` of ``prog``, from one evaluation per tile), written
    into ``out`` in tiles of about ``block`` entries, staged (:meth:`Program.partition`):

    * the per-point chain (the diagonal :math:`K^l(x,x)`) runs once per point;
    * the pair chain runs per tile, compiled in place (:meth:`Program.compile_inplace`) into one
      :class:`~symbrg.core.codegen.Workspace` per thread, so a warm tile allocates nothing and its
      temporaries stay in cache; tiles are shared out to ``threads`` threads (default: the cores
      this process may use);
    * with ``x2 = None`` only tiles on and above the diagonal are computed and mirrored: the result
      is exactly symmetric, with :math:`x\cdot x/d` on the diagonal taken from the per-point chain.
      The pair chain at :math:`s_{12} = s_{11}` then evaluates the same functions at the same
      floats as the per-point chain, so c = 1 holds bit for bit on the diagonal at every layer,
      which the NTK's step factor needs (:math:`d\theta/dc \to \infty` at c = 1; for the same
      reason the diagonal is not simplified symbolically, e.g. to :math:`J_1(q,q,q) = q/2`).

    ``progress(done, total)`` is called after every tile (one thread at a time).
    """
    same = x2 is None
    if x2 is None:
        x2 = x1
    d = x1.shape[1]
    prog, gaps = _with_input_gap(prog)
    row, col, pair = prog.partition([S11], [S22], [S12, SR, SW])
    s1 = np.einsum("ij,ij->i", x1, x1) / d
    s2 = s1 if same else np.einsum("ij,ij->i", x2, x2) / d
    with np.errstate(over="ignore", invalid="ignore"):      # non-finite results raise below
        rvals = _tuple(row.compile()(s1, *args))
        cvals = _tuple(col.compile()(s2, *args))
    arrays = [S12] + ([SR, SW] if gaps else []) + [o for o, v in zip(row.outputs + col.outputs, rvals + cvals)
                                                  if np.ndim(v)]
    _prefetch_series(pair, row.outputs, rvals, col.outputs, cvals)
    tr, tc, tiles = _tile_grid(x1.shape[0], x2.shape[0], block, same)
    tiler = _Tiles(pair.compile_inplace(arrays), which, x1, x2, s1, s2, args, rvals, cvals, gaps, same,
                   tr, tc, out, _Counter(progress, len(tiles)))
    _share_out(tiler.work, tiles, threads)
    if tiler.overflow:
        raise InvalidArgument("x1", "the kernel overflowed float64 for these inputs; use precision=")
    return out


_PREFETCH_MAX = 1 << 16     # points up to which the series' per-point rows are computed before the tiles


def _prefetch_series(pair: Program, rows: tuple[sp.Expr, ...], rvals: tuple[Any, ...], cols: tuple[sp.Expr, ...],
                     cvals: tuple[Any, ...]) -> None:
    """Compute, once for all the points, the per-variance Hermite rows of every Mehler-series node of
    the pair chain whose variances are per-point values (the tiles then gather theirs from these
    instead of computing them per tile row and column; the same bits either way)."""
    values = {s: v for s, v in [*zip(rows, rvals), *zip(cols, cvals)] if 0 < np.size(v) <= _PREFETCH_MAX and np.ndim(v)}
    seen = set()
    for _, expr in pair.assignments:
        for node in expr.atoms(MehlerSeries):
            for which, arg in ((0, node.args[0]), (1, node.args[2])):
                if arg in values and (type(node), which, arg) not in seen:
                    seen.add((type(node), which, arg))
                    type(node).mehler_side(which, np.ravel(np.asarray(values[arg], dtype=float)))


def _tile_grid(n1: int, n2: int, block: int, same: bool) -> tuple[int, int, list[tuple[int, int]]]:
    """Tile height and width (about ``block`` entries) and the tiles' corners (``same``: on and above
    the diagonal only)."""
    side = max(1, math.isqrt(block))
    tr = min(n1, side)
    tc = tr if same else min(n2, max(side, block // tr))
    return tr, tc, [(i, j) for i in range(0, n1, tr) for j in range(i if same else 0, n2, tc)]


def _share_out(work: Callable[[Iterable[tuple[int, int]]], None], tiles: list[tuple[int, int]],
               threads: int | None) -> None:
    """Run ``work`` on the tiles with ``threads`` threads (default: the usable cores), each taking the
    next tile when it is done with one (tiles of a series activation differ in cost, so a fixed deal
    would leave a thread idle at the end)."""
    workers = max(1, min(threads or _cores(), len(tiles)))
    if workers > 1:
        shared = _TileQueue(tiles)
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(work, [shared] * workers))
    else:
        work(tiles)


class _TileQueue:
    """The tiles, handed out one at a time to whichever thread asks (an iterator safe across threads)."""

    def __init__(self, tiles: list[tuple[int, int]]) -> None:
        self._tiles = iter(tiles)
        self._lock = threading.Lock()

    def __iter__(self) -> _TileQueue:
        return self

    def __next__(self) -> tuple[int, int]:
        with self._lock:
            return next(self._tiles)


@dataclass
class _Tiles:
    """The pair chain of a staged Gram program, evaluated tile by tile into ``out``."""
    fpair: Callable[..., Any]
    which: tuple[int, ...]
    x1: Points
    x2: Points
    s1: NDArray[np.float64]
    s2: NDArray[np.float64]
    args: list[Any]
    rvals: tuple[Any, ...]
    cvals: tuple[Any, ...]
    gaps: bool
    same: bool
    tr: int
    tc: int
    out: tuple[np.ndarray, ...]
    counter: _Counter = field(default_factory=lambda: _Counter(None, 0))
    overflow: list[tuple[int, int]] = field(default_factory=list)

    def work(self, mine: Iterable[tuple[int, int]]) -> None:
        """One thread's share of the tiles, in a workspace of its own."""
        ws = Workspace()
        with np.errstate(over="ignore", invalid="ignore"):  # per thread; non-finite tiles raise below
            for i, j in mine:
                self.tile(ws, i, j)
                self.counter.tick()

    def tile(self, ws: Workspace, i: int, j: int) -> None:
        """The tile with corner (i, j), written (and mirrored when symmetric); overflow is recorded."""
        x1, x2, s1, d = self.x1, self.x2, self.s1, self.x1.shape[1]
        i1, j1 = min(i + self.tr, x1.shape[0]), min(j + self.tc, x2.shape[0])
        ws.shape = (i1 - i, j1 - j)
        s12 = np.matmul(x1[i:i1], x2[j:j1].T, out=ws("s12"))
        s12 /= d
        if self.same and i == j:
            np.fill_diagonal(s12, s1[i:i1])
        r12, w12 = _input_gap(x1[i:i1], x2[j:j1], s1[i:i1], self.s2[j:j1], s12, self.same and i == j, ws) \
            if self.gaps else (0.0, 0.0)
        res = self.fpair(s12, r12, w12, *self.args, *(v[i:i1, None] if np.ndim(v) else v for v in self.rvals),
                         *(v[None, j:j1] if np.ndim(v) else v for v in self.cvals), ws)
        for which, out in zip(self.which, self.out):
            r = res[which] if isinstance(res, tuple) else res
            if not np.isfinite(r, out=ws("finite", bool)).all():
                self.overflow.append((i, j))
            out[i:i1, j:j1] = r
            if self.same and i != j:
                out[j:j1, i:i1] = r.T
            elif self.same:                             # mirror the upper triangle of the tile
                np.copyto(out[i:i1, i:i1], r.T, where=np.tri(i1 - i, k=-1, dtype=bool))


def _gram_mpmath(prog: Program, which: tuple[int, ...], x1: Points, x2: Points, args: list[Any],
                 digits: int, progress: Progress | None = None) -> tuple[np.ndarray, ...]:
    """Scalar mpmath evaluation, staged (:meth:`Program.partition`): the per-point chain (the
    diagonal K^l(x,x)) once per point, only the pair chain once per entry.  The input statistics
    are exact integers (the float64 inputs on a common binary scale) until the one rounding of
    each to the working precision: the input gap r_12, w_12 has no cancellation either."""
    prog, gaps = _with_input_gap(prog)
    row, col, pair = prog.partition([S11], [S22], [S12, SR, SW])
    work = digits + 5
    frow, fcol, fpair = (p.compile("mpmath", dps=work) for p in (row, col, pair))
    (i1, i2), scale = _integer_rows(x1, x2)
    dot = lambda a, b: sum(map(operator.mul, a, b))  # noqa: E731 - exact (Python integers)
    n1, n2 = [dot(r, r) for r in i1], [dot(r, r) for r in i2]
    with mpmath.workdps(work):
        d = x1.shape[1]

        def stat(v: int, power: int) -> mpmath.mpf:       # v 2^(power scale) / d^(power/2), one rounding
            return mpmath.ldexp(mpmath.mpf(v), power * scale) / mpmath.mpf(d) ** (power // 2)
        margs = [mpmath.mpf(a) if not isinstance(a, int) else a for a in args]
        rows = [_tuple(frow(stat(v, 2), *margs)) for v in n1]
        cols = [_tuple(fcol(stat(v, 2), *margs)) for v in n2]

        def entry(i: int, j: int) -> tuple[mpmath.mpf, ...]:
            p = dot(i1[i], i2[j])
            gap = (stat(n1[i] + n2[j] - 2 * p, 2), stat(n1[i] * n2[j] - p * p, 4)) if gaps else (0, 0)
            r = _tuple(fpair(stat(p, 2), *gap, *margs, *rows[i], *cols[j]))
            return tuple(r[w] for w in which)
        counter = _Counter(progress, len(i1))
        outs = [np.empty((len(i1), len(i2)), dtype=object) for _ in which]
        for i in range(len(i1)):                          # row by row: one progress tick per row
            values = [entry(i, j) for j in range(len(i2))]
            for k, out in enumerate(outs):
                out[i] = [v[k] for v in values]
            counter.tick()
    with mpmath.workdps(digits):
        return tuple(np.frompyfunc(lambda v: +v, 1, 1)(out) for out in outs)


def _tuple(v: Any) -> tuple[Any, ...]:
    """A program's result as a tuple of its outputs (one output comes bare)."""
    return v if isinstance(v, tuple) else (v,)


def _with_input_gap(prog: Program) -> tuple[Program, bool]:
    """``prog`` with the input gap r_12, w_12 as inputs after s_12 instead of assignments from the
    rounded s's (the Gram drivers' form), and whether it reads them at all."""
    key = ("input gap",)
    if key not in prog._cache:
        inputs = prog.inputs[:3] + (SR, SW) + prog.inputs[3:]
        kept = tuple((s, e) for s, e in prog.assignments if s not in (SR, SW))
        used = any(s in (SR, SW) for s, _ in prog.assignments)
        prog._cache[key] = (Program(inputs, kept, prog.outputs, prog.name), used)
    return prog._cache[key]


def _input_gap(x: Points, y: Points, sx: NDArray[np.float64], sy: NDArray[np.float64],
               s12: NDArray[np.float64], diagonal: bool,
               ws: Workspace) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    r"""The input gap of a tile: :math:`r_{12} = |x-x'|^2/d` and :math:`w_{12} = |x\wedge x'|^2/d^2
    = s_{11}s_{22} - s_{12}^2`, into workspace buffers.

    The plain formulas (from the rounded s's) are accurate to :math:`\epsilon/(1-c^2)`, better than
    1e-14 where :math:`|c| < 0.99`; the other entries are recomputed from x and x'
    (:func:`_pair_gap`), as is the diagonal (exactly 0)."""
    d = x.shape[1]
    r, w, flag, prod, square = ws("r12"), ws("w12"), ws("near parallel", bool), ws("s11 s22"), ws("s12^2")
    np.multiply(sx[:, None], sy[None, :], out=prod)
    np.multiply(s12, s12, out=square)
    np.subtract(prod, square, out=w)
    prod *= 0.02
    np.less(w, prod, out=flag)                              # 1 - c^2 < 0.02
    np.add(sx[:, None], sy[None, :], out=r)
    r -= s12
    r -= s12
    if diagonal:
        np.fill_diagonal(flag, False)
        np.fill_diagonal(r, 0.0)
        np.fill_diagonal(w, 0.0)
    rows, cols = np.nonzero(flag)
    if rows.size:
        r[rows, cols], w[rows, cols] = _pair_gap(x[rows], y[cols])
        r[rows, cols] /= d
        w[rows, cols] /= d * d
    return r, w


def _pair_gap(x: Points, y: Points) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    r"""(:math:`|x-y|^2`, :math:`|x\wedge y|^2`) for the rows of x and y (shape (k, d)), to a few ulp.

    :math:`x - y` by error-free sums (Knuth's two-sum); :math:`|x\wedge y|^2 = |x|^2|\rho|^2 -
    (x\cdot\rho)^2` with the residual :math:`\rho = y - \mu x`, :math:`\mu \approx x\cdot y/|x|^2`
    (any :math:`\mu` leaves the wedge unchanged), formed with error-free products, so that
    :math:`\rho` is accurate although :math:`|\rho| \ll |y|`; a second projection makes
    :math:`x\cdot\rho` negligible."""
    from symbrg.core.special import _two_product
    s = x - y                                              # two-sum: x - y = s + t exactly
    v = s - x
    t = (x - (s - v)) - (y + v)
    dist = np.maximum(np.einsum("ij,ij->i", s, s + 2 * t), 0.0)
    if x.shape[1] == 1:     # no wedge in one dimension: exactly 0, not a rounding residue (which a
        return dist, np.zeros(len(x))          # step network would amplify to ~residue^(1/2^depth))
    nx = np.einsum("ij,ij->i", x, x)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = y
        for _ in range(2):
            mu = np.where(nx > 0, np.einsum("ij,ij->i", x, rho) / nx, 0.0)[:, None]
            p, e = _two_product(mu * np.ones_like(x), x)
            rho = (rho - p) - e
    xr = np.einsum("ij,ij->i", x, rho)
    wedge = np.maximum(nx * np.einsum("ij,ij->i", rho, rho) - xr * xr, 0.0)
    return dist, wedge


def _integer_rows(*xs: Points) -> tuple[list[list[list[int]]], int]:
    """The float64 arrays as Python integers on one binary scale: ``x = M 2^scale`` exactly."""
    finite = [v for x in xs for v in x.ravel().tolist() if v != 0.0]
    scale = min((math.frexp(v)[1] - 53 for v in finite), default=0)
    as_int = lambda v: int(fractions.Fraction(v) / fractions.Fraction(2) ** scale)  # noqa: E731
    return [[[as_int(v) for v in r] for r in x.tolist()] for x in xs], scale


# ------------------------------------------------------------------ zero-variance inputs
def _zero_variance(layers: tuple, x: Points) -> NDArray[np.bool_]:
    """The rows of ``x`` whose first-layer variance is 0: x = 0 and no bias before the first
    nonlinearity (a random-phase activation averages its phase and has no such degeneracy)."""
    none = np.zeros(len(x), dtype=bool)
    if any(isinstance(lay, Nonlinearity) and lay.activation.random_phase for lay in layers):
        return none
    for lay in layers:
        if not isinstance(lay, Dense):
            break
        if lay.sigma_b != 0:
            return none
    return np.asarray(~x.any(axis=1))


def _zero_point_kernel(layers: tuple, which: int, s: np.ndarray, d: int, digits: int | None) -> np.ndarray:
    r"""The kernel (output ``which`` of the NNGP or NTK program) between a zero-variance input and
    inputs with :math:`|x'|^2/d = s` (an array; 0 for another zero-variance input), exactly.

    The layers are walked on the pair covariance :math:`[[a, c], [c, b]]` while the zero point's
    variance :math:`a` is 0: a Dense maps each entry to :math:`\sigma_b^2 + \sigma_w^2(\cdot)`; a
    nonlinearity sees :math:`u = 0` exactly, so :math:`E[\varphi(u)\varphi(v)] = \varphi(0)\,
    E[\varphi(v)]` and :math:`E[\varphi(u)^2] = \varphi(0)^2`.  While :math:`a = 0` the NTK entry is
    0 as well (:math:`\Theta = K + \sigma_w^2\dot K\,\Theta` with :math:`K = \Theta = 0`), so once
    the next layer would see :math:`a > 0` the remaining layers are the ordinary programs of that
    tail, started at :math:`(a, b, c)` with :math:`\Theta = 0` (and its fan-in).  If that never
    happens (e.g. ReLU, no bias) the kernel is exactly 0.  ``digits``: mpmath values at that
    precision instead of float64.
    """
    mp = digits is not None
    work = (digits or 15) + 5

    def num(v: Number) -> Any:
        return _scalar(v, mp, work)

    with mpmath.workdps(work):
        b = np.frompyfunc(num, 1, 1)(s) if mp else s.astype(float)
        a, c, fan_in = num(0), b * 0, d
        for i, lay in enumerate(layers):
            dense = isinstance(lay, Dense)
            if (num(lay.sigma_b) ** 2 + num(lay.sigma_w) ** 2 * a if dense else a) > 0:
                return _rounded(_tail_kernel(layers[i:], fan_in, which, (a, b, c), mp, work), digits)
            if dense:
                sw2, sb2 = num(lay.sigma_w) ** 2, num(lay.sigma_b) ** 2
                a, b, c, fan_in = sb2 + sw2 * a, sb2 + sw2 * b, sb2 + sw2 * c, lay.width
                continue
            phi0 = num(lay.activation.expr.subs(_X, 0))
            a, b, c = phi0 ** 2, *_zero_point_moments(lay, phi0, b, fan_in, mp, work)
        return _rounded(c, digits)


def _zero_point_moments(lay: Nonlinearity, phi0: Any, b: np.ndarray, fan_in: int, mp: bool,
                        work: int) -> tuple[np.ndarray, np.ndarray]:
    r"""After a nonlinearity, at the zero point: :math:`E[\varphi(v)^2]` of the other input (variance
    ``b``) and the cross term :math:`\varphi(0)E[\varphi(v)]`."""
    pos = np.array([v > 0 for v in b.flat], dtype=bool).reshape(b.shape)
    square, mean = np.full(b.shape, phi0 ** 2, dtype=b.dtype), np.full(b.shape, phi0, dtype=b.dtype)
    if pos.any():
        square[pos] = _tail_kernel((lay, Dense(1.0, 0.0)), fan_in, 0, (b[pos], b[pos], b[pos]), mp, work)
        if phi0 != 0:
            mean[pos] = [_gaussian_mean(lay.activation, v, mp) for v in b[pos]]
    return square, phi0 * mean


def _scalar(v: Number, mp: bool, work: int) -> Any:
    """``v`` as a float64, or (``mp``) as an mpmath number at ``work`` digits."""
    if not mp:
        return float(v)
    return mpmath.mpmathify(sp.N(v, work)) if isinstance(v, sp.Basic) else mpmath.mpf(v)


def _tail_kernel(tail: tuple, fan_in: int, out: int, xs: tuple[Any, ...], mp: bool, work: int) -> np.ndarray:
    """Output ``out`` of the program of the layers ``tail`` at the input statistics ``xs`` (s_11,
    s_22, s_12), with fan-in ``fan_in``: float64, or mpmath at ``work`` digits."""
    arch = Architecture(tail)
    prog = arch.ntk_program if out else arch.nngp_program
    args = arch._param_args(prog, None, fan_in)
    if not mp:
        value = _tuple(prog.compile()(*xs, *args))[out]
        return np.broadcast_to(np.asarray(value, float), np.shape(xs[1]))
    fn = prog.compile("mpmath", dps=work)
    return np.frompyfunc(lambda *v: _tuple(fn(*v, *args))[out], len(xs), 1)(*xs)


def _gaussian_mean(act: Activation, q: Any, mp: bool) -> Any:
    r""":math:`E[\varphi(\sqrt q\,z)]`, :math:`z \sim N(0, 1)`, by mpmath quadrature at the working
    precision, or by 200-node Gauss–Hermite quadrature in float64."""
    if mp:
        f = sp.lambdify(_X, act.expr, "mpmath")
        return mpmath.quad(lambda z: f(mpmath.sqrt(q) * z) * mpmath.exp(-z * z / 2),
                           [-mpmath.inf, 0, mpmath.inf]) / mpmath.sqrt(2 * mpmath.pi)
    z, w = np.polynomial.hermite_e.hermegauss(200)
    return float(w @ act(math.sqrt(q) * z)) / math.sqrt(2 * math.pi)


def _rounded(v: np.ndarray, digits: int | None) -> np.ndarray:
    """``v`` as float64, or as mpmath values rounded to ``digits``."""
    if digits is None:
        return np.asarray(v, dtype=float)
    with mpmath.workdps(digits):
        return np.frompyfunc(lambda x: +x, 1, 1)(v)


# ------------------------------------------------------------------ derivation documents
def _kernel_derivation(name: str, kind: str, prog: Program, rules: list[tuple[int, str, Expectation]],
                       phi: str) -> Derivation:
    """The document of network ``name``'s ``kind`` kernel: each expectation rule once, then ``prog``."""
    d = Derivation(f"{'NTK' if kind == 'ntk' else 'NNGP'} of {name}", name=f"{kind}-{name}",
                   introduction=_INTRO[kind])
    seen = set()
    for _layer, which, e in rules:
        if kind == "nngp" and which == "ntk":
            continue
        if (which, e.rule) in seen:
            continue
        seen.add((which, e.rule))
        _expectation_step(d, kind, which, e, phi, len(seen))
    _program_step(d, kind, prog)
    return d


def _expectation_step(d: Derivation, kind: str, which: str, e: Expectation, phi: str, number: int) -> None:
    """The step stating the Gaussian expectation ``e`` (of φ, or of φ' for ``which == "ntk"``)."""
    lhs = sp.Symbol(r"\mathbb{E}[\varphi'(u)\varphi'(v)]" if which == "ntk" else
                    r"\mathbb{E}[\varphi(u)\varphi(v)]")
    d.step(sp.Eq(lhs, e.display, evaluate=False), f"Gaussian expectation for $\\varphi(x) = {phi}$, "
           f"$(u,v)\\sim\\mathcal{{N}}(0,[[q_{{11}},q_{{12}}],[q_{{12}},q_{{22}}]])$: {_how(e)} "
           f"(rule \\texttt{{{e.rule}}}).", label=f"eq:{kind}-rule-{which}-{number}",
           cites=("lee2018", "cho2009") if e.method == "exact" else ("lee2018",))


def _how(e: Expectation) -> str:
    """How the expectation was computed, in words: closed form, series (order, bound) or quadrature."""
    if e.method == "exact":
        return "closed form"
    if e.method == "series":
        if e.bound is None:
            return "Hermite/Mehler series"
        return f"Hermite/Mehler series to order {e.order} (error bound {e.bound:.1e})"
    if e.method == "quadrature":
        return f"composite Gauss-Legendre quadrature, {e.degree} nodes per panel"
    return e.method


def _program_step(d: Derivation, kind: str, prog: Program) -> None:
    """The step listing the kernel program's assignments (and, if it carries one, the gap)."""
    rows = tuple(sp.Eq(s, e) for s, e in prog.assignments)
    gap = any(s in (SR, SW) for s, _ in prog.assignments)
    d.step(rows, "Layer-by-layer kernel program (each line one assignment of the DAG; "
           "$s_{11}=|x|^2/d$, $s_{22}=|x'|^2/d$, $s_{12}=x\\cdot x'/d$" + (
               "; $r_{12}=|x-x'|^2/d$ and $w_{12}=|x\\wedge x'|^2/d^2$, which the Gram matrices compute "
               "from $x, x'$ without cancellation; $\\Delta$ the gap $K_{11}K_{22}-K_{12}^2$, carried "
               "through the layers so that $1-c$ is not lost as $c\\to 1$" if gap else "") + ").",
           label=f"eq:{kind}-program", cites=("jacot2018",) if kind == "ntk" else ("lee2018",))


def _phi_latex(layers: tuple) -> str:
    """The LaTeX of the first activation of ``layers`` (``x`` when there is none)."""
    acts = [lay.activation for lay in layers if isinstance(lay, Nonlinearity)]
    return acts[0].latex() if acts else "x"


# ------------------------------------------------------------------ mean-field analysis
def _uniform_layers(layers: tuple) -> tuple[Dense, Nonlinearity]:
    """The one Dense and the one activation of a uniform stack, or an error."""
    dense = [l for l in layers if isinstance(l, Dense)]
    acts = [l for l in layers if isinstance(l, Nonlinearity)]
    if not acts or len({(l.sigma_w, l.sigma_b) for l in dense}) != 1 or len({a.activation for a in acts}) != 1:
        raise InvalidArgument("layers", "the deep-network analysis needs identical Dense+activation layers")
    return dense[0], acts[0]


def _mean_field_maps(dense: Dense, act: Nonlinearity) -> dict[str, sp.Expr]:
    """:meth:`Architecture.maps` of the uniform layers ``dense`` and ``act``."""
    from symbrg.gaussian.expectations import Q11, Q12, Q22, expectation
    b = _Builder()
    sw, sb = b.parameter("sigma_w", dense.sigma_w), b.parameter("sigma_b", dense.sigma_b)
    q, c = symbols("q c")
    e = expectation(act.activation, tol=act.tol).expr
    de = expectation(act.activation, derivative=True, tol=act.tol).expr
    diag = {Q11: q, Q22: q, Q12: q}
    return {"variance": sb**2 + sw**2 * e.xreplace(diag),
            "correlation": (sb**2 + sw**2 * e.xreplace({Q11: q, Q22: q, Q12: c * q})) / q,
            "chi1": sw**2 * de.xreplace(diag)}


def _settled_iterate(f: Callable[[float], Any], x: float) -> float:
    """Iterate the float64 map ``f`` from ``x`` until it settles; an error if it diverges or never does."""
    for _ in range(100000):
        with np.errstate(all="ignore"):  # divergence is detected below, not warned about
            nx = float(f(x))
        if not math.isfinite(nx) or nx > 1e280:
            raise ConvergenceError("sigma_w", "the variance map diverges: no finite fixed point")
        if abs(nx - x) <= 1e-15 * max(1.0, abs(nx)):
            return nx
        x = nx
    raise ConvergenceError("sigma_w", "the variance map did not settle after 100000 iterations")


def _polished_root(g: Callable[[Any], Any], x: float, dps: int) -> float:
    """The root of ``g`` near ``x`` by mpmath's secant method at ``dps`` digits (else ``x`` itself)."""
    with mpmath.workdps(dps):
        try:
            return float(mpmath.findroot(g, (mpmath.mpf(x), mpmath.mpf(x) * (1 + 1e-9) + 1e-30)))
        except (ValueError, ZeroDivisionError):  # the float64 iterate is as good as it gets
            return x


# ------------------------------------------------------------------ composition
def serial(*layers: Layer, name: str = "network") -> Architecture:
    """Compose layers in order (input first).  The last layer must be a :class:`Dense` readout."""
    if not layers:
        raise InvalidArgument("layers", "at least one layer is needed")
    return Architecture(tuple(layers), name=name)


def mlp(activation: str | Activation | sp.Lambda, depth: int, sigma_w: Number = 1.0, sigma_b: Number = 0.0,
        parameterization: str = "ntk", *, width: int = 1, tol: float = 1e-10,
        method: str = "auto") -> Architecture:
    r"""``depth`` hidden layers of Dense(σ_w, σ_b) + activation, followed by a Dense readout.

    ``depth = 0`` is a linear model (the readout alone).  See the module docstring for the NNGP and
    NTK conventions; ``width`` only enters the standard-parameterization NTK.  ``method`` forces
    the Gaussian-expectation rule (``"exact"``, ``"series"``, ``"quadrature"``; default: the best
    available) and ``tol`` is the series tolerance.
    """
    depth = checks.integer("depth", depth, minimum=0)
    DEPTH.check("depth", depth, cost=f"about {_duration(depth * _SECONDS_PER_LAYER)} to derive and compile")
    checks.positive("sigma_w", sigma_w)
    checks.nonnegative("sigma_b", sigma_b)
    checks.choice("parameterization", parameterization, PARAMETERIZATIONS)
    act = Nonlinearity(activation, tol=tol, method=method)
    dense = Dense(sigma_w, sigma_b, parameterization, width)
    layers: list[Layer] = []
    for _ in range(depth):
        layers += [dense, act]
    layers.append(dense)
    return serial(*layers, name=f"{act.activation.name}-mlp-depth{depth}")


_INTRO = {
    "nngp": ("The neural-network Gaussian process (NNGP) kernel of an infinitely wide fully connected "
             "network is computed layer by layer: each Dense layer maps $K\\mapsto\\sigma_b^2+\\sigma_w^2K$ "
             "and each nonlinearity maps the covariance to a bivariate Gaussian expectation."),
    "ntk": ("The neural tangent kernel (NTK) in the NTK parameterization obeys "
            "$\\Theta^{l+1}=K^{l+1}+\\sigma_w^2\\,\\mathbb{E}[\\varphi'(u)\\varphi'(v)]\\,\\Theta^{l}$, "
            "computed alongside the NNGP."),
}
