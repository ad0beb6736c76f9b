r"""Programs: chains of symbolic assignments, printed and compiled from one source.

Job: store a recursion as a DAG of per-step assignments and turn it into NumPy code, mpmath code,
LaTeX and text, never writing a formula twice.  A :class:`Program` is

.. math::  a_1 = e_1(\text{inputs}),\quad a_2 = e_2(\text{inputs}, a_1),\quad \dots,\quad
           \text{outputs} = (o_1(\dots), \dots),

so a depth-:math:`L` kernel recursion has :math:`O(L)` nodes instead of a tree that grows about
:math:`3^L`.  Compilation runs common-subexpression elimination (SymEngine's, per assignment, so its cost stays
linear in the length of the chain, and jointly over the outputs) and prints with sympy's NumPy or mpmath printer; any
:class:`symbrg.core.special.NumericFunction` prints itself (``_numpycode``/``_mpmathcode``) as a call to its
``numpy_impl``/``mpmath_impl``, found in the generated code's namespace under the class name.  The code
generator recognizes such *numeric nodes* by protocol (:func:`is_numeric`: a sympy function carrying
``numpy_impl``, ``mpmath_impl`` and the ``_imp_`` namespace entry that :func:`sympy.lambdify` uses too), so
it imports no special function, and ``sympy.lambdify`` and :class:`Program` print one and the same call.
Differentiation in a parameter (:meth:`Program.diff`) is forward mode along the chain, again
:math:`O(L)`.  For hot loops over tiles, :meth:`Program.compile_inplace` lowers the same chain to
three-address code: one ufunc call with ``out=`` per node, into the recycled buffers of a
:class:`Workspace`, so a warm evaluation allocates no array of the tile's size.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias, TypeVar, cast

import mpmath
import numpy as np
import sympy as sp
from numpy.typing import ArrayLike, DTypeLike, NDArray
from sympy.printing.numpy import NumPyPrinter
from sympy.printing.pycode import MpmathPrinter

from symbrg.core import checks
from symbrg.core.calculus import ae_derivative
from symbrg.core.errors import InvalidArgument, UnknownName
from symbrg.core.parsing import as_expression

__all__ = ["BACKENDS", "Program", "Workspace", "is_numeric", "lambdify", "numpy_erf"]

BACKENDS = ("numpy", "mpmath")

_H = TypeVar("_H", bound=Hashable)
_R = TypeVar("_R")
#: An mpmath number (as :data:`symbrg.core.types.MpNumber`, spelled out: codegen imports only the
#: core modules it needs, see ``test_codegen_does_not_import_the_special_functions``).
_MpNumber: TypeAlias = "mpmath.mpf | mpmath.mpc"


def numpy_erf(x: ArrayLike) -> NDArray[np.float64]:
    """Vectorized :math:`\\operatorname{erf}(x) = \\tfrac{2}{\\sqrt\\pi}\\int_0^x e^{-t^2}dt` to double
    precision (SciPy's when importable, else ``math.erf``); generated NumPy code calls it as ``_erf``."""
    try:
        from scipy.special import erf
    except ImportError:  # pragma: no cover - scipy is optional
        return np.asarray(np.frompyfunc(math.erf, 1, 1)(np.asarray(x, dtype=float)), dtype=float)
    return erf(x)


def is_numeric(e: sp.Basic) -> bool:
    """Is ``e`` a numeric node (a :class:`~symbrg.core.special.NumericFunction`, recognized by protocol):
    a sympy function whose class carries ``numpy_impl``, ``mpmath_impl`` and ``_imp_``?"""
    cls = type(e)
    return isinstance(e, sp.Function) and all(hasattr(cls, a) for a in ("numpy_impl", "mpmath_impl", "_imp_"))


class _NumPy(NumPyPrinter):
    """NumPy printer for generated programs (numeric nodes print themselves: ``_numpycode``)."""

    def _print_erf(self, expr: sp.Function) -> str:
        return f"_erf({self._print(expr.args[0])})"

    def _print_Max(self, expr: sp.Max) -> str:
        return _fold("numpy.maximum", [self._print(a) for a in expr.args])

    def _print_Min(self, expr: sp.Min) -> str:
        return _fold("numpy.minimum", [self._print(a) for a in expr.args])

    def _print_Heaviside(self, expr: sp.Heaviside) -> str:
        h0 = expr.args[1] if len(expr.args) > 1 else sp.Rational(1, 2)
        return f"numpy.heaviside({self._print(expr.args[0])}, {self._print(sp.Float(h0))})"


class _Mpmath(MpmathPrinter):
    """mpmath printer for generated programs (numeric nodes print themselves: ``_mpmathcode``)."""

    def _print_Heaviside(self, expr: sp.Heaviside) -> str:
        h0 = expr.args[1] if len(expr.args) > 1 else sp.Rational(1, 2)
        x = self._print(expr.args[0])
        return f"(mpmath.mpf(1) if {x} > 0 else (mpmath.mpf(0) if {x} < 0 else {self._print(h0)}))"

    def _print_Max(self, expr: sp.Max) -> str:
        return f"max({', '.join(self._print(a) for a in expr.args)})"

    def _print_Min(self, expr: sp.Min) -> str:
        return f"min({', '.join(self._print(a) for a in expr.args)})"

    def _print_sign(self, expr: sp.sign) -> str:
        return f"mpmath.sign({self._print(expr.args[0])})"


def _fold(fn: str, args: list[str]) -> str:
    out = args[0]
    for a in args[1:]:
        out = f"{fn}({out}, {a})"
    return out


def _impl_name(f: sp.Function) -> str:
    return f"_nf_{type(f).__name__}"


def _ident(i: int, prefix: str) -> str:
    return f"{prefix}{i}"


@dataclass(frozen=True)
class Program:
    """A chain of assignments ``symbol = expression`` with named inputs and outputs.

    inputs: the symbols a compiled program takes as arguments, in order.
    assignments: ``(symbol, expression)`` pairs; an expression may use inputs and earlier symbols.
    outputs: expressions (usually assignment symbols) returned by the compiled program.
    name: used in generated code and printed headings.

    The class is the data model and its entry points; the work is done by module-level pieces:
    :func:`_forward_diff` (calculus), :class:`_Stager` (staging for :meth:`partition`),
    :func:`_live_chain` (liveness), :func:`_generate` / :func:`_generate_inplace` (printing).
    """
    inputs: tuple[sp.Symbol, ...]
    assignments: tuple[tuple[sp.Symbol, sp.Expr], ...]
    outputs: tuple[sp.Expr, ...]
    name: str = "program"
    # Any: a memo shared with callers, keyed by what produced a value: compiled functions, partitions,
    # and derived programs that other modules keep here (e.g. the kernels' input-gap form)
    _cache: dict[tuple[Hashable, ...], Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "assignments", tuple((s, as_expression(e, "e")) for s, e in self.assignments))
        object.__setattr__(self, "outputs", tuple(as_expression(o, "o") for o in self.outputs))
        self._cache[_FREE] = _check_defined(self.inputs, self.assignments, self.outputs)

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return len(self.assignments)

    def count_ops(self) -> int:
        """Operations in the DAG: the sum over assignments (each counted once)."""
        return sum(sp.count_ops(e) for _, e in self.assignments) + sum(sp.count_ops(o) for o in self.outputs)

    def expand(self) -> tuple[sp.Expr, ...]:
        """Substitute the chain into single expressions (exponential in depth: for small programs)."""
        env: dict[sp.Symbol, sp.Expr] = {}
        for s, e in self.assignments:
            env[s] = e.xreplace(env)
        return tuple(o.xreplace(env) for o in self.outputs)

    def to_text(self) -> str:
        """One assignment per line, in sympy's string form."""
        lines = [f"{s} = {sp.sstr(e)}" for s, e in self.assignments]
        lines += [f"return {sp.sstr(o)}" for o in self.outputs]
        return "\n".join(lines)

    def to_latex(self) -> str:
        """An ``aligned`` block, one assignment per line."""
        rows = [f"{sp.latex(s)} &= {sp.latex(e)}" for s, e in self.assignments]
        return "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}"

    def subs(self, values: dict[sp.Symbol | str, sp.Expr | float]) -> Program:
        """Substitute values for inputs everywhere (inputs that receive a value are dropped).

        Keys are inputs given as symbols or names, matched by name (:meth:`input_symbols`); values
        are numbers or sympy expressions (text is refused: it is never parsed here).
        """
        keys = self.input_symbols("values", list(values))
        try:
            vals = {k: sp.sympify(v, strict=True) for k, v in zip(keys, values.values())}
        except sp.SympifyError as exc:
            raise InvalidArgument("values", f"expected numbers or sympy expressions, "
                                            f"got {exc.expr!r}") from None
        return Program(tuple(i for i in self.inputs if i not in vals),
                       tuple((s, e.xreplace(vals)) for s, e in self.assignments),
                       tuple(o.xreplace(vals) for o in self.outputs), self.name)

    def partition(self, row: Sequence[sp.Symbol], col: Sequence[sp.Symbol],
                  pair: Sequence[sp.Symbol]) -> tuple[Program, Program, Program]:
        r"""Split a two-point program into per-row, per-column and per-pair stages.

        Inputs not listed in ``row``, ``col`` or ``pair`` are constants (hyperparameters) and are
        inputs of every stage.  The row (column) stage computes every assignment that depends on row
        (column) inputs and constants only, and outputs those the pair stage needs; the pair stage
        takes ``pair`` + constants + the row outputs + the column outputs, in that order.  Evaluating
        the row stage once per point instead of once per pair is what makes scalar (mpmath) Gram
        matrices cheap.
        Subexpressions of pair assignments are hoisted the same way (loop-invariant code motion):
        a part that depends on row inputs only (e.g. a Hermite coefficient of :math:`K^l(x,x)`, or
        the row factors of a sum or product) becomes a row-stage output, likewise for columns, and
        a part that depends on constants only (e.g. :math:`\sigma_w^2`) is computed once, in the
        row stage.
        """
        key = ("partition", tuple(row), tuple(col), tuple(pair))
        if key not in self._cache:
            self._cache[key] = _Stager(self, set(row), set(col), set(pair)).programs()
        return self._cache[key]

    # ---------------------------------------------------------- differentiation
    def input_symbols(self, argument: str,
                      given: sp.Symbol | str | Iterable[sp.Symbol | str]) -> tuple[sp.Symbol, ...]:
        """The inputs meant by ``given`` (symbols or names), matched by name, not by sympy identity.

        A user's ``Symbol('sigma_w')`` differs from the program's ``Symbol('sigma_w', nonnegative=True)``;
        matching by name makes both mean the input.  A name that is not an input raises
        :class:`~symbrg.core.errors.UnknownName` naming ``argument`` and listing the inputs.
        """
        return checks.resolve_symbols(argument, given, self.inputs, what="the program's symbols")

    def diff(self, wrt: sp.Symbol | str, name: str | None = None) -> Program:
        r"""Forward-mode derivative of every output with respect to the input ``wrt`` (a symbol or
        its name, matched by name: :meth:`input_symbols`).

        For each assignment :math:`a_i = e_i` a tangent :math:`\dot a_i = \partial_{wrt} e_i +
        \sum_{j<i} (\partial e_i/\partial a_j)\,\dot a_j` is appended, so the result stays
        :math:`O(L)`.  The returned program outputs the derivatives (the values stay available as
        assignments).  Derivatives of step functions are taken almost everywhere (:math:`\delta \to 0`), the
        convention of the NTK for ReLU networks.
        """
        (symbol,) = self.input_symbols("wrt", wrt)
        return _forward_diff(self, symbol, name or f"d_{self.name}")

    def _live_assignments(self) -> list[tuple[sp.Symbol, sp.Expr]]:
        """The assignments the outputs depend on (dead code removed), in order: :func:`_live_chain`."""
        return _live_chain(self)

    def _free(self) -> tuple[tuple[frozenset[sp.Basic], ...], tuple[frozenset[sp.Basic], ...]]:
        """The free symbols of each assignment and of each output, computed once (by :func:`_check_defined`)."""
        free = self._cache.get(_FREE)
        if free is None:
            free = self._cache[_FREE] = _check_defined(self.inputs, self.assignments, self.outputs)
        return cast("tuple[tuple[frozenset[sp.Basic], ...], tuple[frozenset[sp.Basic], ...]]", free)

    # -------------------------------------------------------------- compilation
    def source(self, backend: str = "numpy") -> str:
        """Python source of the compiled function (CSE applied per assignment)."""
        return _generate(self, backend)[0]

    # Any: a compiled program returns an array, a number or an mpf, or a tuple of them (by backend and outputs)
    def compile(self, backend: str = "numpy", dps: int | None = None) -> Callable[..., Any]:
        """Compile to a Python function of the inputs.

        ``numpy``: arguments broadcast as NumPy arrays; returns one array or a tuple of arrays.
        ``mpmath``: scalar arguments, evaluated at ``dps`` digits (default: mpmath's current
        precision); returns mpf values.  Numeric inputs are converted with ``mpmath.mpf`` so that
        no float64 rounding enters before the first operation.
        """
        if dps is not None:
            dps = checks.integer("dps", dps, minimum=1)
        key = (backend, dps)
        if key not in self._cache:
            fn = _load(*_generate(self, backend), f"{self.name}:{backend}")
            if backend == "mpmath":
                fn = _with_dps(fn, dps)
            fn.__doc__ = f"{self.name} ({backend}); inputs: {', '.join(map(str, self.inputs))}"
            self._cache[key] = fn
        return self._cache[key]

    # Any: the returned arrays (or scalars, for outputs that depend on no array input), as in compile
    def compile_inplace(self, arrays: Sequence[sp.Symbol]) -> Callable[..., Any]:
        """Compile to NumPy code that writes every array-valued node into a :class:`Workspace`.

        ``arrays``: the inputs that are arrays (the others are scalars, e.g. hyperparameters).  The
        compiled function takes the inputs and then a workspace, ``fn(*inputs, workspace)``; every
        node that depends on an array input is computed by ufuncs with ``out=`` into the workspace's
        buffers (a buffer is reused after its value's last use; :class:`~symbrg.core.special.NumericFunction`
        nodes through their ``numpy_into``), scalar nodes by plain arithmetic.  Warm, it allocates
        nothing of the arrays' size.  The returned arrays are views of the workspace: valid until its
        next use.  This is the evaluation path for Gram tiles (:meth:`symbrg.kernels.architecture.Architecture.nngp`).
        """
        key = ("inplace", tuple(arrays))
        if key not in self._cache:
            fn = _load(*_generate_inplace(self, arrays), f"{self.name}:inplace")
            fn.__doc__ = f"{self.name} (numpy, in place); inputs: {', '.join(map(str, self.inputs))}, _ws"
            self._cache[key] = fn
        return self._cache[key]

    def source_inplace(self, arrays: Sequence[sp.Symbol]) -> str:
        """Python source of :meth:`compile_inplace`."""
        return _generate_inplace(self, arrays)[0]


def _check_defined(inputs: Sequence[sp.Symbol], assignments: Sequence[tuple[sp.Symbol, sp.Expr]],
                   outputs: Sequence[sp.Expr]) -> tuple[tuple[frozenset[sp.Basic], ...], tuple[frozenset[sp.Basic], ...]]:
    """Refuse a chain that uses a symbol before it is an input or assigned (:class:`InvalidArgument`);
    return the free symbols of every assignment and output (the one walk of each expression that
    liveness, staging and differentiation then share: :meth:`Program._free`)."""
    known = set(inputs)
    free_a = []
    for s, e in assignments:
        free = _free_symbols(e)
        stray = free - known
        if stray:
            raise InvalidArgument("assignments", f"{s} uses undefined symbol(s) "
                                                 f"{sorted(map(str, stray))}")
        known.add(s)
        free_a.append(free)
    free_o = []
    for o in outputs:
        free = _free_symbols(o)
        stray = free - known
        if stray:
            raise InvalidArgument("outputs", f"output uses undefined symbol(s) {sorted(map(str, stray))}")
        free_o.append(free)
    return tuple(free_a), tuple(free_o)


# ------------------------------------------------------------------------ expression walks
# Every walk below visits each distinct node of an expression once (a subtree shared by several
# parents, such as the correlation rho in every term of a Mehler series, is not walked again), so
# the code generator's cost is linear in the size of the program's DAG.

#: The key of :meth:`Program._free` in a program's cache.
_FREE = ("free symbols",)
_GENERIC_FREE: dict[type, bool] = {}


def _generic(t: type) -> bool:
    """Do nodes of type ``t`` take sympy's default ``free_symbols``, the union over their args?  (Not
    symbols, nor binders such as ``Lambda`` or ``Integral``.)  The class dictionaries are read, not
    ``t.free_symbols``: a function class's metaclass has a ``free_symbols`` of its own."""
    generic = _GENERIC_FREE.get(t)
    if generic is None:
        owner = next((c for c in t.__mro__ if "free_symbols" in c.__dict__), sp.Basic)
        generic = _GENERIC_FREE[t] = owner is sp.Basic
    return generic


def _free_symbols(e: sp.Basic) -> frozenset[sp.Basic]:
    """``e.free_symbols``, walking each distinct node once."""
    seen: set[int] = set()          # ids of nodes of e, alive while e is
    out: set[sp.Basic] = set()
    stack: list[object] = [e]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, sp.Symbol):
            out.add(node)
        elif isinstance(node, sp.Basic):
            if _generic(type(node)):
                stack.extend(node.args)
            else:
                out.update(node.free_symbols)
    return frozenset(out)


class _SymbolFold:
    """The bitwise OR of ``leaf(s)`` over the free symbols ``s`` of an expression, computed once per
    node and remembered (keyed by identity, holding the node so that the id stays its own): asking
    again about a node or a subtree of one already seen costs one lookup."""

    def __init__(self, leaf: Callable[[sp.Basic], int]) -> None:
        self.leaf = leaf
        self.memo: dict[int, tuple[object, int]] = {}

    def __call__(self, e: object) -> int:
        memo = self.memo
        hit = memo.get(id(e))
        if hit is not None:
            return hit[1]
        stack = [e]
        while stack:                                   # post-order, without recursion (deep Horner chains)
            node = stack[-1]
            if id(node) in memo:
                stack.pop()
                continue
            value = 0
            if isinstance(node, sp.Symbol):
                value = self.leaf(node)
            elif isinstance(node, sp.Basic) and not _generic(type(node)):
                for f in node.free_symbols:
                    value |= self.leaf(f)
            elif isinstance(node, sp.Basic):
                pending = [a for a in node.args if id(a) not in memo]
                if pending:
                    stack.extend(pending)
                    continue
                for a in node.args:
                    value |= memo[id(a)][1]
            memo[id(node)] = (node, value)
            stack.pop()
        return memo[id(e)][1]


# ------------------------------------------------------------------------------ calculus
def _total_derivative(e: sp.Expr, wrt: sp.Symbol, tangents: dict[sp.Symbol, sp.Expr],
                      free: frozenset[sp.Basic]) -> sp.Expr:
    r"""Along the chain: :math:`\partial_{wrt} e + \sum_a (\partial e/\partial a)\,\dot a` over the
    assigned symbols :math:`a` in ``e`` (``free``: its free symbols) whose tangents :math:`\dot a` are known."""
    d = ae_derivative(e, wrt)
    for a in free & tangents.keys():
        d += ae_derivative(e, a) * tangents[a]
    return d


def _tangent_symbol(s: sp.Symbol) -> sp.Symbol:
    r"""The symbol of the tangent of ``s``: :math:`\dot s` (``d(s)`` when the name is already LaTeX)."""
    return sp.Symbol(f"\\dot{{{s.name}}}" if "\\" not in s.name else f"d({s.name})", real=True)


def _forward_diff(program: Program, wrt: sp.Symbol, name: str) -> Program:
    r""":meth:`Program.diff`: each assignment :math:`a_i = e_i` followed by its tangent
    :math:`\dot a_i`, the outputs replaced by their derivatives in ``wrt`` (an input)."""
    tangents: dict[sp.Symbol, sp.Expr] = {}
    extra: list[tuple[sp.Symbol, sp.Expr]] = []
    free_a, free_o = program._free()
    for (s, e), free in zip(program.assignments, free_a):
        d = _total_derivative(e, wrt, tangents, free)
        t = _tangent_symbol(s)
        tangents[s] = t
        extra.append((t, d))
    outs = [_total_derivative(o, wrt, tangents, free) for o, free in zip(program.outputs, free_o)]
    merged = [x for pair in zip(program.assignments, extra) for x in pair]
    return Program(program.inputs, tuple(merged), tuple(outs), name)


# ------------------------------------------------------------------------------- staging
# What a node depends on, as bits: row, column, pair inputs; _ANY: it has a free symbol at all (a
# node without one is a number, never hoisted; with only constant symbols it is constant-only).
_ROW, _COL, _PAIR, _ANY = 1, 2, 4, 8
_KINDS = _ROW | _COL | _PAIR
_STAGE_BITS = {"c": 0, "r": _ROW, "k": _COL}


class _Stager:
    """The stages of :meth:`Program.partition`, built once.

    Every input and assignment gets a class, the kinds of input it depends on (bits ``_ROW``,
    ``_COL``, ``_PAIR``; none: constants only).  An assignment's class is the union of the classes
    of its free symbols (computed once per assignment, :meth:`Program._free`), so classes propagate
    along the assignment graph.  Live assignments go to the row stage (class within row), the
    column stage (within column; constants go to both) or the pair stage; then the row-, column-
    and constant-only parts of the pair stage are hoisted (loop-invariant code motion) into new
    ``hoisted_<stage><n>`` assignments of the row or column stage.  The class of a subexpression
    is folded up from its symbols once per node (:class:`_SymbolFold`), and each node is hoisted
    once: the cost is linear in the size of the program.
    """

    def __init__(self, program: Program, row: set[sp.Symbol], col: set[sp.Symbol],
                 pair: set[sp.Symbol]) -> None:
        self.program = program
        self.row, self.col, self.pair = row, col, pair
        self.inputs = set(program.inputs)
        self.klass: dict[sp.Basic, int] = {i: (_ROW if i in row else _COL if i in col else
                                               _PAIR if i in pair else 0) | _ANY for i in program.inputs}
        self.deps = _SymbolFold(self.klass.__getitem__)
        self.stages: dict[str, list[tuple[sp.Symbol, sp.Expr]]] = {"r": [], "k": [], "p": []}
        self.hoisted: dict[sp.Expr, sp.Symbol] = {}
        self.done: dict[int, tuple[sp.Basic, sp.Basic]] = {}

    def classify(self) -> None:
        """Give each live assignment its class and its stage(s)."""
        klass, free = self.klass, self.program._free()[0]
        for i in _live_indices(self.program):
            s_, e = self.program.assignments[i]
            deps = 0
            for f in free[i]:
                deps |= klass[f]
            klass[s_] = deps | _ANY
            if not deps & (_COL | _PAIR):
                self.stages["r"].append((s_, e))
            if not deps & (_ROW | _PAIR):
                self.stages["k"].append((s_, e))
            if deps & (_COL | _PAIR) and deps & (_ROW | _PAIR):
                self.stages["p"].append((s_, e))

    def where(self, a: sp.Basic) -> str | None:
        """Where ``a`` can be computed ahead of the pair stage: ``"r"``, ``"k"``, ``"c"`` (constants),
        or None (it needs the pair inputs, or is a number)."""
        deps = self.deps(a)
        kinds = deps & _KINDS
        return None if not deps else "c" if not kinds else "r" if kinds == _ROW else "k" if kinds == _COL else None

    def new(self, a: sp.Expr, stage: str) -> sp.Expr:
        """The symbol standing for ``a``, computed in ``stage`` (a row/column input: itself, passed on)."""
        if a.is_Atom and (stage == "c" or a not in self.inputs):
            return a
        if a not in self.hoisted:
            sym = self.hoisted[a] = sp.Symbol(f"hoisted_{stage}{len(self.hoisted)}", real=True)
            self.klass[sym] = _STAGE_BITS[stage] | _ANY
            self.stages["k" if stage == "k" else "r"].append((sym, a))
        return self.hoisted[a]

    def hoist(self, e: sp.Basic) -> sp.Basic:
        """``e`` with its row-only, column-only and constant-only parts replaced by new symbols (once
        per node: a node met again, e.g. a shared subtree, gets the same result)."""
        hit = self.done.get(id(e))
        if hit is None:
            hit = self.done[id(e)] = (e, self._hoist(e))
        return hit[1]

    def _hoist(self, e: sp.Basic) -> sp.Basic:
        stage = self.where(e)
        if isinstance(e, sp.Expr) and stage:
            return self.new(e, stage)
        if e.is_Atom:
            return e
        if e.is_Add or e.is_Mul:                      # group the invariant terms or factors
            groups: dict[str, list[sp.Expr]] = {}
            rest = []
            for a in e.args:
                stage = self.where(a)
                if stage:
                    groups.setdefault(stage, []).append(a)
                else:
                    rest.append(self.hoist(a))
            return e.func(*rest, *(self.new(e.func(*g), k) for k, g in groups.items()))
        return e.func(*(self.hoist(a) for a in e.args))

    def programs(self) -> tuple[Program, Program, Program]:
        """The row, column and pair programs (module docstring of :meth:`Program.partition`)."""
        p, stages, klass = self.program, self.stages, self.klass
        staged = self.row | self.col | self.pair
        const = [i for i in p.inputs if i not in staged]
        self.classify()
        stages["p"] = [(s_, self.hoist(e)) for s_, e in stages["p"]]
        outputs = tuple(self.hoist(o) for o in p.outputs)
        pair_uses = set().union(*(_free_symbols(e) for _, e in stages["p"]), *(_free_symbols(o) for o in outputs))
        r_out = tuple(s_ for s_, _ in stages["r"] if s_ in pair_uses and klass[s_] & _KINDS == _ROW)
        k_out = tuple(s_ for s_, _ in stages["k"] if s_ in pair_uses and klass[s_] & _KINDS == _COL)
        c_out = tuple(s_ for s_, _ in stages["r"] if s_ in pair_uses and not klass[s_] & _KINDS)
        r_inputs = tuple(i for i in p.inputs if i in self.row) + tuple(const)
        k_inputs = tuple(i for i in p.inputs if i in self.col) + tuple(const)
        p_inputs = tuple(i for i in p.inputs if i in self.pair) + tuple(const) + r_out + c_out + k_out
        return (Program(r_inputs, tuple(stages["r"]), r_out + c_out, f"{p.name}_row"),
                Program(k_inputs, tuple(stages["k"]), k_out, f"{p.name}_col"),
                Program(p_inputs, tuple(stages["p"]), outputs, f"{p.name}_pair"))


# ------------------------------------------------------------------------------ liveness
def _live_indices(program: Program) -> list[int]:
    """The indices of the assignments the outputs depend on (dead code removed), in order: one
    backward pass over the assignments' free symbols (:meth:`Program._free`)."""
    free_a, free_o = program._free()
    needed: set[sp.Basic] = set().union(*free_o)
    keep = []
    for i in range(len(program.assignments) - 1, -1, -1):
        if program.assignments[i][0] in needed:
            keep.append(i)
            needed |= free_a[i]
    return keep[::-1]


def _live_chain(program: Program) -> list[tuple[sp.Symbol, sp.Expr]]:
    """The assignments the outputs depend on (dead code removed), in order."""
    return [program.assignments[i] for i in _live_indices(program)]


# ------------------------------------------------------------------------------ printing
def _statements(program: Program) -> tuple[list[sp.Symbol], list[tuple[sp.Symbol, sp.Expr]], list[sp.Expr]]:
    """The live chain in code names, after CSE: inputs ``x<i>``, statements ``(t<n> | a<k>, expr)``
    in order (CSE per assignment, jointly over the outputs), and the reduced outputs."""
    names: dict[sp.Symbol, sp.Symbol] = {s: sp.Symbol(_ident(i, "x")) for i, s in enumerate(program.inputs)}
    counter = _Temps()
    body: list[tuple[sp.Symbol, sp.Expr]] = []
    for k, (s, e) in enumerate(_live_chain(program)):
        repl, (reduced,) = _cse([e.xreplace(names)], counter)
        target = sp.Symbol(_ident(k, "a"))
        body += list(repl) + [(target, reduced)]
        names[s] = target
    outs: list[sp.Expr] = []
    if program.outputs:
        repl, outs = _cse([o.xreplace(names) for o in program.outputs], counter)
        body += list(repl)
    return [names[s] for s in program.inputs], body, list(outs)


def _generate(program: Program, backend: str) -> tuple[str, dict[str, object]]:
    """Source and namespace of :meth:`Program.compile` for ``backend``."""
    if backend not in BACKENDS:
        raise UnknownName("backend", f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    printer: _NumPy | _Mpmath = _NumPy({"fully_qualified_modules": True}) if backend == "numpy" else _Mpmath(
        {"fully_qualified_modules": True})
    args, statements, outs = _statements(program)
    impls: dict[str, Callable[..., object]] = {}
    for e in [e for _, e in statements] + outs:
        _collect(e, impls, backend)
    body = [(str(t), printer.doprint(e), {str(a) for a in _free_symbols(e)}) for t, e in statements]
    head = [f"def _program({', '.join(map(str, args))}):"]
    if backend == "mpmath":
        head += [f"    {a} = mpmath.mpmathify({a})" for a in args]
    printed = [printer.doprint(o) for o in outs]
    ret = _return_code(printed)
    lines = _with_liveness(body, {str(a) for o in outs for a in _free_symbols(o)}, free=backend == "numpy")
    src = "\n".join(head + lines + [f"    return {ret}"]) + "\n"
    return src, _namespace(printer, impls)


def _generate_inplace(program: Program, arrays: Sequence[sp.Symbol]) -> tuple[str, dict[str, object]]:
    """Source and namespace of :meth:`Program.compile_inplace` (``arrays``: the array inputs)."""
    unknown = set(arrays) - set(program.inputs)
    if unknown:
        raise InvalidArgument("arrays", f"not inputs of {program.name}: {sorted(map(str, unknown))}")
    args, statements, outs = _statements(program)
    printer = _NumPy({"fully_qualified_modules": True})
    position = {s: i for i, s in enumerate(program.inputs)}        # an index map: no tuple.index scans
    lower = _Lowering(printer, {args[position[a]] for a in arrays})
    dies = _last_uses([_free_symbols(e) for _, e in statements], {a for o in outs for a in _free_symbols(o)})
    for i, (t, e) in enumerate(statements):
        lower.statement(t, e)
        for a in sorted(dies.get(i, ()), key=str):       # a fixed order: reproducible source
            if a in lower.slot_of:
                lower.release(lower.slot_of.pop(a))
    rets = [lower.result(o) for o in outs]
    shapes = ", ".join(f"numpy.shape({a})" for a in args if a in lower.arrays)
    head = [f"def _program({', '.join(map(str, args + ['_ws']))}):",
            f"    _ws.shape = numpy.broadcast_shapes({shapes})",
            "    _scratch = _ws.child('scratch')"]
    head += [f"    {b} = _ws({b[2:]})" for b in sorted(lower.buffers, key=lambda b: int(b[2:]))]
    ret = _return_code(rets)
    src = "\n".join(head + lower.lines + [f"    return {ret}"]) + "\n"
    return src, _namespace(printer, lower.impls)


def _return_code(items: list[str]) -> str:
    """What a generated program returns: one value, a tuple ``(a, b,)``, or ``()`` (no outputs)."""
    return items[0] if len(items) == 1 else "(" + ", ".join(items) + ",)" if items else "()"


# Any: a generated program returns what its backend computes (arrays, numbers, mpf, or tuples of them)
def _load(src: str, namespace: dict[str, object], label: str) -> Callable[..., Any]:
    """Execute generated source in its namespace and return its ``_program``."""
    exec(compile(src, f"<symbrg:{label}>", "exec"), namespace)  # noqa: S102 - generated by our own printers
    return cast("Callable[..., Any]", namespace["_program"])


def _namespace(printer: NumPyPrinter | MpmathPrinter,
               impls: dict[str, Callable[..., object]]) -> dict[str, object]:
    """Globals of generated code: numpy, mpmath, math, erf, the numeric nodes' implementations
    (modules, functions and classes: hence ``object`` values)."""
    namespace: dict[str, object] = {"numpy": np, "mpmath": mpmath, "math": math, "_erf": numpy_erf}
    namespace.update(impls)
    # printer-registered module names (e.g. numpy.linalg) resolve through these roots
    for mod in getattr(printer, "module_imports", {}):
        root = mod.split(".")[0]
        namespace.setdefault(root, __import__(root))
    return namespace


class Workspace:
    """Reusable buffers of one ``shape`` for in-place evaluation (:meth:`Program.compile_inplace`).

    Why: a NumPy temporary of tile size (10^4-10^5 entries) is fresh memory on every call, because
    the C allocator returns freed blocks of that size to the operating system; its page faults cost
    several times the arithmetic.  Buffers kept here are allocated once (per key, grown when a
    larger shape asks for them) and handed out as views of the current ``shape``.  Not thread-safe:
    one workspace per thread.
    """

    def __init__(self, shape: tuple[int, ...] = ()) -> None:
        # np.ndarray: buffers of any dtype (float values, bool masks)
        self._buffers: dict[tuple[Hashable, DTypeLike], np.ndarray] = {}
        self._views: dict[tuple[Hashable, DTypeLike], np.ndarray] = {}
        self._children: dict[Hashable, Workspace] = {}
        self._shape: tuple[int, ...] = ()
        self.shape = shape

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of the views handed out (setting it invalidates the views, not the buffers)."""
        return self._shape

    @shape.setter
    def shape(self, shape: tuple[int, ...]) -> None:
        shape = tuple(shape)
        if shape != self._shape:
            self._shape = shape
            self._views.clear()

    def __call__(self, key: Hashable, dtype: DTypeLike = float) -> np.ndarray:
        """The buffer named ``key``, shape :attr:`shape` (contents undefined)."""
        slot = (key, dtype)
        view = self._views.get(slot)
        if view is None:
            size = math.prod(self._shape)
            buf = self._buffers.get(slot)
            if buf is None or buf.size < size:
                buf = self._buffers[slot] = np.empty(max(size, 1), dtype)
            view = self._views[slot] = buf[:size].reshape(self._shape)
        return view

    def child(self, key: Hashable) -> Workspace:
        """A nested workspace of the same shape, for a callee's own temporaries."""
        ws = self._children.get(key)
        if ws is None:
            ws = self._children[key] = Workspace()
        ws.shape = self._shape
        return ws


_UFUNCS = {sp.sin: "sin", sp.cos: "cos", sp.tan: "tan", sp.exp: "exp", sp.log: "log", sp.sinh: "sinh",
           sp.cosh: "cosh", sp.tanh: "tanh", sp.asin: "arcsin", sp.acos: "arccos", sp.atan: "arctan",
           sp.Abs: "absolute", sp.sign: "sign", sp.atan2: "arctan2", sp.Max: "maximum", sp.Min: "minimum"}


class _Lowering:
    """Three-address code for array-valued expressions: each Add, Mul, Pow and function node becomes
    one ufunc call with ``out=`` a workspace buffer; scalar subexpressions are printed as usual."""

    def __init__(self, printer: _NumPy, arrays: set[sp.Symbol]) -> None:
        self.printer, self.arrays = printer, set(arrays)
        self.lines: list[str] = []
        self.buffers: set[str] = set()
        self.free: list[str] = []
        self.slot_of: dict[sp.Symbol, str] = {}
        self.impls: dict[str, Callable[..., object]] = {}
        # once per node: a symbol is an array input or the target of an earlier array statement
        # (fixed before any statement that uses it is lowered), so a node's answer never changes
        self._array = _SymbolFold(lambda s: s in self.arrays)

    def is_array(self, e: sp.Basic) -> bool:
        """Does ``e`` depend on an array (asked once per node, :class:`_SymbolFold`)?"""
        return bool(self._array(e))

    def slot(self) -> str:
        if self.free:
            return self.free.pop()
        name = f"_b{len(self.buffers)}"
        self.buffers.add(name)
        return name

    def release(self, name: str) -> None:
        self.free.append(name)

    def emit(self, line: str) -> None:
        self.lines.append("    " + line)

    def statement(self, target: sp.Symbol, e: sp.Expr) -> None:
        _collect(e, self.impls, "numpy")
        if not self.is_array(e):
            self.emit(f"{target} = {self.printer.doprint(e)}")
            return
        buf, temps = self.slot(), list[str]()
        self.into(e, buf, temps)
        for t in temps:
            self.release(t)
        self.emit(f"{target} = {buf}")
        self.arrays.add(target)
        self.slot_of[target] = buf

    def result(self, e: sp.Expr) -> str:
        """Code for an output expression (a symbol's name, a scalar, or a fresh buffer)."""
        if e.is_Symbol or not self.is_array(e):
            _collect(e, self.impls, "numpy")
            return self.printer.doprint(e)
        buf, temps = self.slot(), list[str]()
        self.into(e, buf, temps)
        return buf

    def operand(self, e: sp.Expr, target: str | None, temps: list[str]) -> str:
        """Code naming the value of ``e``: a symbol, a printed scalar, or a buffer it was computed into
        (``target`` if given, else a temporary)."""
        if e.is_Symbol or not self.is_array(e):
            return self.printer.doprint(e)
        if target is None:
            target = self.slot()
            temps.append(target)
        self.into(e, target, temps)
        return target

    def into(self, e: sp.Expr, out: str, temps: list[str]) -> None:
        """Emit code that writes the array expression ``e`` into buffer ``out``."""
        p = self.printer.doprint
        if e.is_Add or e.is_Mul:
            self.fold_into(e, out, temps)
        elif e.is_Pow and not self.is_array(e.exp):
            self.power_into(e, out, temps)
        elif is_numeric(e):
            call = ", ".join(self.operand(a, None, temps) for a in e.args)
            self.impls[_impl_name(e) + "_into"] = type(e).numpy_into
            self.emit(f"{_impl_name(e)}_into({out}, _scratch, {call})")
        elif e.func in _UFUNCS and len(e.args) >= 1:
            self.ufunc_into(e, out, temps)
        elif isinstance(e, sp.Function):               # other functions: printed call, lowered arguments
            lowered = {a: sp.Symbol(self.operand(a, None, temps)) for a in e.args
                       if isinstance(a, sp.Expr) and self.is_array(a) and not a.is_Symbol}
            self.emit(f"{out}[...] = {p(e.xreplace(lowered))}")
        else:                                          # anything else (Piecewise, ...): printed whole
            self.emit(f"{out}[...] = {p(e)}")

    def fold_into(self, e: sp.Expr, out: str, temps: list[str]) -> None:
        """A sum (product) as a chain of ``add``/``subtract`` (``multiply``/``divide``) calls into ``out``;
        its scalar terms (factors) are printed as one operand."""
        p = self.printer.doprint
        ufunc, inverse = ("add", "subtract") if e.is_Add else ("multiply", "divide")
        inv = [(_inverse(a, e.is_Add), a) for a in e.args if self.is_array(a)]
        rest = [a for a in e.args if not self.is_array(a)]
        plain = [a for i, a in inv if i is None]
        inverted = [i for i, _ in inv if i is not None]     # -b in a sum, b**-1 in a product
        if plain:
            acc = self.operand(plain[0], out, temps)
        elif rest:                                         # e.g. pi - theta, 1/x
            acc, rest = p(e.func(*rest)), []
        else:
            acc, inverted = self.operand(inv[0][1], out, temps), inverted[1:]
        for op, args in ((ufunc, plain[1:]), (inverse, inverted)):
            for a in args:
                self.emit(f"numpy.{op}({acc}, {self.operand(a, None, temps)}, out={out})")
                acc = out
        if rest:
            self.emit(f"numpy.{ufunc}({acc}, {p(e.func(*rest))}, out={out})")
            acc = out
        if acc != out:
            self.emit(f"numpy.copyto({out}, {acc})")

    def power_into(self, e: sp.Pow, out: str, temps: list[str]) -> None:
        """An array to a scalar power into ``out`` (squares, reciprocals and square roots by their ufuncs)."""
        base = self.operand(e.base, out, temps)
        k = e.exp
        if k == 2:
            self.emit(f"numpy.multiply({base}, {base}, out={out})")
        elif k == -1:
            self.emit(f"numpy.divide(1.0, {base}, out={out})")
        elif abs(k) == sp.Rational(1, 2):
            self.emit(f"numpy.sqrt({base}, out={out})")
            if k < 0:
                self.emit(f"numpy.divide(1.0, {out}, out={out})")
        else:
            self.emit(f"numpy.power({base}, {self.printer.doprint(k)}, out={out})")

    def ufunc_into(self, e: sp.Function, out: str, temps: list[str]) -> None:
        """A function with a NumPy ufunc (:data:`_UFUNCS`) into ``out``; n-ary Max and Min are folded."""
        args = [self.operand(a, None if k else out, temps) for k, a in enumerate(e.args)]
        acc = args[0]
        if len(args) == 1:
            self.emit(f"numpy.{_UFUNCS[e.func]}({acc}, out={out})")
        for a in args[1:]:                         # binary, or folded n-ary (Max, Min)
            self.emit(f"numpy.{_UFUNCS[e.func]}({acc}, {a}, out={out})")
            acc = out


def _inverse(a: sp.Expr, additive: bool) -> sp.Expr | None:
    """``b`` when ``a`` is ``-b`` (additive) or ``b**-1`` (multiplicative), else None."""
    if additive:
        return -a if a.as_coeff_Mul()[0].is_negative else None
    return 1 / a if a.is_Pow and a.exp.is_negative and a.exp.is_number else None


def _larger_than(exprs: list[sp.Expr], nodes: int) -> bool:
    count = 0
    for e in exprs:
        for _ in sp.preorder_traversal(e):
            count += 1
            if count > nodes:
                return True
    return False


class _Temps:
    """The numbers of a program's CSE temporaries ``t0, t1, ...``: an iterator, and ``n``, the next one."""

    def __init__(self) -> None:
        self.n = 0

    def __iter__(self) -> _Temps:
        return self

    def __next__(self) -> int:
        self.n += 1
        return self.n - 1


def _atomic_call(e: sp.Basic) -> bool:
    """Is ``e`` an atom, or a function of (fewer than 400: :func:`_cse`'s SymPy side) atoms, e.g. a
    Hermite coefficient ``a_n(x0)``?  SymPy's CSE returns such an expression unchanged (nothing
    repeats; a function has no sign to extract)."""
    return bool(e.is_Atom) or (isinstance(e, sp.Function) and len(e.args) < 400 and all(a.is_Atom for a in e.args))


def _kinds(es: Iterable[object]) -> list[str]:
    """The sorted class names of the function atoms in ``es`` (a round trip must keep them)."""
    return sorted(type(f).__name__ for e in es if isinstance(e, sp.Basic) for f in e.atoms(sp.Function))


def _cse(exprs: list[sp.Expr], temps: _Temps) -> tuple[list[tuple[sp.Symbol, sp.Expr]], list[sp.Expr]]:
    """Common-subexpression elimination: large expressions go to SymEngine's C++ engine (about 3x
    faster than SymPy's), small ones and anything SymEngine cannot hold to SymPy's; an atom or a
    function of atoms is returned as it is (SymPy's CSE would return it unchanged).
    Temporaries are named ``t<n>`` from ``temps``: SymEngine's are renamed in SymEngine, before
    the one conversion back to SymPy, and numbered only once that has succeeded."""
    if len(exprs) == 1 and _atomic_call(exprs[0]):
        return [], list(exprs)
    try:
        if not _larger_than(exprs, 400):  # small: conversion would cost more than it saves
            raise TypeError("small")
        import symengine as se
        repl, reduced = se.cse([se.sympify(e) for e in exprs])
        if not repl:
            red = [sp.sympify(r) for r in reduced]
            if _kinds(red) != _kinds(exprs):
                raise TypeError("function atoms changed in the round trip")
            return [], red
        rename = {a: se.Symbol(f"t{temps.n + i}") for i, (a, _) in enumerate(repl)}
        back = [(sp.sympify(rename[a]), sp.sympify(b.xreplace(rename))) for a, b in repl]
        red = [sp.sympify(r.xreplace(rename)) for r in reduced]
        temps.n += len(repl)
        return back, red
    except Exception:  # noqa: BLE001 - SymEngine is an accelerator, never a point of failure
        return sp.cse(exprs, symbols=(sp.Symbol(f"t{n}") for n in temps), order="none")


def _last_uses(uses: Sequence[Iterable[_H]], keep: set[_H]) -> dict[int, list[_H]]:
    """For each statement index, the names (symbols or strings) it uses for the last time (``keep``: never dead)."""
    last = {u: i for i, us in enumerate(uses) for u in us}
    dies: dict[int, list[_H]] = {}
    for u, i in last.items():
        if u not in keep:
            dies.setdefault(i, []).append(u)
    return dies


def _with_liveness(body: list[tuple[str, str, set[str]]], returned: set[str], free: bool) -> list[str]:
    """Print the body; with ``free``, ``del`` each temporary right after its last use so that a
    long chain of array assignments holds only the arrays it still needs (bounded memory)."""
    dies = _last_uses([uses for _, _, uses in body], returned)
    used = {u for _, _, uses in body for u in uses}
    out = []
    for i, (target, code, _) in enumerate(body):
        out.append(f"    {target} = {code}")
        if free:
            dead = sorted(n for n in dies.get(i, ()) if not n.startswith("x"))
            if target not in used and target not in returned:
                dead.append(target)
            if dead:
                out.append(f"    del {', '.join(dead)}")
    return out


def _collect(expr: sp.Expr, impls: dict[str, Callable[..., object]], backend: str) -> None:
    """The namespace entries of the numeric nodes in ``expr``: class name -> ``_imp_`` (the printed
    calls are ``Name.numpy_impl(...)`` / ``Name.mpmath_impl(...)``, for either backend)."""
    for f in expr.atoms(sp.Function):
        if is_numeric(f):
            impls[type(f).__name__] = type(f)._imp_


def _with_dps(fn: Callable[..., _R], dps: int | None) -> Callable[..., _R]:
    """``fn`` evaluated at ``dps`` digits (text arguments read by ``mpmath.mpf``); ``fn`` itself if None."""
    if dps is None:
        return fn

    def at_precision(*args: _MpNumber | float | str) -> _R:
        with mpmath.workdps(dps):
            return fn(*(mpmath.mpf(a) if isinstance(a, str) else a for a in args))
    return at_precision


# Any: the compiled function returns arrays, numbers or mpf values (by backend), as Program.compile
def lambdify(exprs: sp.Expr | Sequence[sp.Expr], symbols: Iterable[sp.Symbol],
             backend: str = "numpy", dps: int | None = None) -> Callable[..., Any]:
    """Compile plain expression(s) of ``symbols`` (CSE, NumericFunction aware).

    Returns one value for a single expression and a tuple for a sequence.
    """
    single = isinstance(exprs, sp.Basic) or not isinstance(exprs, (list, tuple))
    outs = (as_expression(exprs, "exprs"),) if single else tuple(as_expression(e, "e") for e in exprs)
    syms = tuple(symbols)
    prog = Program(syms, (), outs, name="lambdify")
    fn = prog.compile(backend, dps=dps)
    if single or len(outs) > 1:
        return fn

    def one_tuple(*args: ArrayLike | _MpNumber | str) -> tuple[object]:
        return (fn(*args),)
    return one_tuple

