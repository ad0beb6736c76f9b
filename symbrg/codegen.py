r"""Programs: chains of symbolic assignments, printed and compiled from one source.

Job: store a recursion as a DAG of per-step assignments and turn it into NumPy code, mpmath code,
LaTeX and text, never writing a formula twice.  A :class:`Program` is

.. math::  a_1 = e_1(\text{inputs}),\quad a_2 = e_2(\text{inputs}, a_1),\quad \dots,\quad
           \text{outputs} = (o_1(\dots), \dots),

so a depth-:math:`L` kernel recursion has :math:`O(L)` nodes instead of a tree that grows about
:math:`3^L`.  Compilation runs common-subexpression elimination (SymEngine's, per assignment, so its cost stays
linear in the length of the chain, and jointly over the outputs) and prints with sympy's NumPy or mpmath printer; any
:class:`symbrg.special.NumericFunction` is printed as a call to its ``numpy_impl``/``mpmath_impl``.
Differentiation in a parameter (:meth:`Program.diff`) is forward mode along the chain, again
:math:`O(L)`.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import mpmath
import numpy as np
import sympy as sp
from sympy.printing.numpy import NumPyPrinter
from sympy.printing.pycode import MpmathPrinter

from .errors import InvalidArgument, UnknownName
from .special import NumericFunction

__all__ = ["Program", "lambdify", "BACKENDS"]

BACKENDS = ("numpy", "mpmath")


class _NumPy(NumPyPrinter):
    """NumPy printer that calls NumericFunction implementations by name."""

    def _print_Function(self, expr):  # noqa: N802 - sympy printer protocol
        if isinstance(expr, NumericFunction):
            return f"{_impl_name(expr)}({', '.join(self._print(a) for a in expr.args)})"
        return super()._print_Function(expr)

    def _print_erf(self, expr):  # noqa: N802 - NumPy has no erf
        return f"_erf({self._print(expr.args[0])})"

    def _print_Max(self, expr):  # noqa: N802 - elementwise, broadcasting
        return _fold("numpy.maximum", [self._print(a) for a in expr.args])

    def _print_Min(self, expr):  # noqa: N802
        return _fold("numpy.minimum", [self._print(a) for a in expr.args])

    def _print_Heaviside(self, expr):  # noqa: N802 - Θ(0) as the expression says (default 1/2)
        h0 = expr.args[1] if len(expr.args) > 1 else sp.Rational(1, 2)
        return f"numpy.heaviside({self._print(expr.args[0])}, {self._print(sp.Float(h0))})"


class _Mpmath(MpmathPrinter):
    def _print_Function(self, expr):  # noqa: N802
        if isinstance(expr, NumericFunction):
            return f"{_impl_name(expr)}({', '.join(self._print(a) for a in expr.args)})"
        return super()._print_Function(expr)

    def _print_Heaviside(self, expr):  # noqa: N802
        h0 = expr.args[1] if len(expr.args) > 1 else sp.Rational(1, 2)
        x = self._print(expr.args[0])
        return f"(mpmath.mpf(1) if {x} > 0 else (mpmath.mpf(0) if {x} < 0 else {self._print(h0)}))"

    def _print_Max(self, expr):  # noqa: N802
        return f"max({', '.join(self._print(a) for a in expr.args)})"

    def _print_Min(self, expr):  # noqa: N802
        return f"min({', '.join(self._print(a) for a in expr.args)})"

    def _print_sign(self, expr):  # noqa: N802
        return f"mpmath.sign({self._print(expr.args[0])})"


def _fold(fn: str, args: list[str]) -> str:
    out = args[0]
    for a in args[1:]:
        out = f"{fn}({out}, {a})"
    return out


def _impl_name(f: NumericFunction) -> str:
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
    """
    inputs: tuple[sp.Symbol, ...]
    assignments: tuple[tuple[sp.Symbol, sp.Expr], ...]
    outputs: tuple[sp.Expr, ...]
    name: str = "program"
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "assignments", tuple((s, sp.sympify(e)) for s, e in self.assignments))
        object.__setattr__(self, "outputs", tuple(sp.sympify(o) for o in self.outputs))
        known = set(self.inputs)
        for s, e in self.assignments:
            stray = e.free_symbols - known
            if stray:
                raise InvalidArgument("assignments", f"{s} uses undefined symbol(s) "
                                                     f"{sorted(map(str, stray))}")
            known.add(s)
        for o in self.outputs:
            stray = o.free_symbols - known
            if stray:
                raise InvalidArgument("outputs", f"output uses undefined symbol(s) {sorted(map(str, stray))}")

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

    def subs(self, values: dict) -> "Program":
        """Substitute values for symbols everywhere (inputs that receive a value are dropped)."""
        vals = {sp.sympify(k): sp.sympify(v) for k, v in values.items()}
        return Program(tuple(i for i in self.inputs if i not in vals),
                       tuple((s, e.xreplace(vals)) for s, e in self.assignments),
                       tuple(o.xreplace(vals) for o in self.outputs), self.name)

    def partition(self, row: Sequence[sp.Symbol], col: Sequence[sp.Symbol],
                  pair: Sequence[sp.Symbol]) -> tuple["Program", "Program", "Program"]:
        """Split a two-point program into per-row, per-column and per-pair stages.

        Inputs not listed in ``row``, ``col`` or ``pair`` are constants (hyperparameters) and are
        inputs of every stage.  The row (column) stage computes every assignment that depends on row
        (column) inputs and constants only, and outputs those the pair stage needs; the pair stage
        takes ``pair`` + constants + the row outputs + the column outputs, in that order.  Evaluating the row stage
        once per point instead of once per pair is what makes scalar (mpmath) Gram matrices cheap.
        """
        row, col, pair = set(row), set(col), set(pair)
        const = [i for i in self.inputs if i not in row | col | pair]
        klass: dict[sp.Symbol, set[str]] = {i: ({"r"} if i in row else {"k"} if i in col else
                                                {"p"} if i in pair else set()) for i in self.inputs}
        stages: dict[str, list] = {"r": [], "k": [], "p": []}
        for s_, e in self._live_assignments():
            deps = set().union(*(klass[f] for f in e.free_symbols)) if e.free_symbols else set()
            klass[s_] = deps
            if deps <= {"r"}:
                stages["r"].append((s_, e))
            if deps <= {"k"}:
                stages["k"].append((s_, e))
            if not deps <= {"r"} and not deps <= {"k"}:
                stages["p"].append((s_, e))
        pair_uses = set().union(*(e.free_symbols for _, e in stages["p"]), *(o.free_symbols for o in self.outputs))
        r_out = tuple(s_ for s_, _ in stages["r"] if s_ in pair_uses and klass[s_] == {"r"})
        k_out = tuple(s_ for s_, _ in stages["k"] if s_ in pair_uses and klass[s_] == {"k"})
        c_out = tuple(s_ for s_, _ in stages["r"] if s_ in pair_uses and not klass[s_])
        r_inputs = tuple(i for i in self.inputs if i in row) + tuple(const)
        k_inputs = tuple(i for i in self.inputs if i in col) + tuple(const)
        p_inputs = tuple(i for i in self.inputs if i in pair) + tuple(const) + r_out + c_out + k_out
        return (Program(r_inputs, tuple(stages["r"]), r_out + c_out, f"{self.name}_row"),
                Program(k_inputs, tuple(stages["k"]), k_out, f"{self.name}_col"),
                Program(p_inputs, tuple(stages["p"]), self.outputs, f"{self.name}_pair"))

    # ---------------------------------------------------------- differentiation
    def diff(self, wrt: sp.Symbol, name: str | None = None) -> "Program":
        r"""Forward-mode derivative of every output with respect to ``wrt``.

        For each assignment :math:`a_i = e_i` a tangent :math:`\dot a_i = \partial_{wrt} e_i +
        \sum_{j<i} (\partial e_i/\partial a_j)\,\dot a_j` is appended, so the result stays
        :math:`O(L)`.  The returned program outputs the derivatives (the values stay available as
        assignments).  Derivatives of step functions are taken almost everywhere (:math:`\delta \to 0`), the
        convention of the NTK for ReLU networks.
        """
        tangents: dict[sp.Symbol, sp.Expr] = {}
        assigns = list(self.assignments)
        extra: list[tuple[sp.Symbol, sp.Expr]] = []
        for s, e in self.assignments:
            d = _ae_diff(e, wrt)
            for a in e.free_symbols & tangents.keys():
                d += _ae_diff(e, a) * tangents[a]
            t = sp.Symbol(f"\\dot{{{s.name}}}" if "\\" not in s.name else f"d({s.name})", real=True)
            tangents[s] = t
            extra.append((t, d))
        outs = []
        for o in self.outputs:
            d = _ae_diff(o, wrt)
            for a in o.free_symbols & tangents.keys():
                d += _ae_diff(o, a) * tangents[a]
            outs.append(d)
        merged = [x for pair in zip(assigns, extra) for x in pair]
        return Program(self.inputs, tuple(merged), tuple(outs), name or f"d_{self.name}")

    # -------------------------------------------------------------- compilation
    def source(self, backend: str = "numpy") -> str:
        """Python source of the compiled function (CSE applied per assignment)."""
        return self._generate(backend)[0]

    def compile(self, backend: str = "numpy", dps: int | None = None) -> Callable[..., Any]:
        """Compile to a Python function of the inputs.

        ``numpy``: arguments broadcast as NumPy arrays; returns one array or a tuple of arrays.
        ``mpmath``: scalar arguments, evaluated at ``dps`` digits (default: mpmath's current
        precision); returns mpf values.  Numeric inputs are converted with ``mpmath.mpf`` so that
        no float64 rounding enters before the first operation.
        """
        key = (backend, dps)
        if key not in self._cache:
            src, namespace = self._generate(backend)
            code = compile(src, f"<symbrg:{self.name}:{backend}>", "exec")
            exec(code, namespace)  # noqa: S102 - generated from our own printer
            fn = namespace["_program"]
            if backend == "mpmath":
                fn = _with_dps(fn, dps)
            fn.__doc__ = f"{self.name} ({backend}); inputs: {', '.join(map(str, self.inputs))}"
            self._cache[key] = fn
        return self._cache[key]

    def _live_assignments(self) -> list[tuple[sp.Symbol, sp.Expr]]:
        """The assignments the outputs depend on (dead code removed), in order."""
        needed = set().union(*(o.free_symbols for o in self.outputs)) if self.outputs else set()
        keep = []
        for s, e in reversed(self.assignments):
            if s in needed:
                keep.append((s, e))
                needed |= e.free_symbols
        return keep[::-1]

    def _generate(self, backend: str) -> tuple[str, dict]:
        if backend not in BACKENDS:
            raise UnknownName("backend", f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        printer = _NumPy({"fully_qualified_modules": True}) if backend == "numpy" else _Mpmath(
            {"fully_qualified_modules": True})
        names: dict[sp.Symbol, sp.Symbol] = {}
        for i, s in enumerate(self.inputs):
            names[s] = sp.Symbol(_ident(i, "x"))
        counter = itertools.count()
        body: list[tuple[str, str, set[str]]] = []   # (target, code, names used)
        impls: dict[str, Callable] = {}

        def emit(*exprs: sp.Expr) -> list[tuple[str, set[str]]]:
            """CSE over ``exprs`` jointly; temporaries go to the body, the reduced forms are returned."""
            repl, reduced = _cse([e.xreplace(names) for e in exprs], counter)
            for sym, sub in repl:
                body.append((str(sym), printer.doprint(sub), {str(a) for a in sub.free_symbols}))
                _collect(sub, impls, backend)
            for r in reduced:
                _collect(r, impls, backend)
            return [(printer.doprint(r), {str(a) for a in r.free_symbols}) for r in reduced]

        for k, (s, e) in enumerate(self._live_assignments()):
            target = sp.Symbol(_ident(k, "a"))
            body.append((str(target),) + emit(e)[0])
            names[s] = target
        outs = emit(*self.outputs) if self.outputs else []
        args = ", ".join(str(names[s]) for s in self.inputs)
        head = [f"def _program({args}):"]
        if backend == "mpmath":
            head += [f"    {names[s]} = mpmath.mpmathify({names[s]})" for s in self.inputs]
        ret = outs[0][0] if len(outs) == 1 else "(" + ", ".join(o[0] for o in outs) + ",)"
        lines = _with_liveness(body, set().union(*(o[1] for o in outs)) if outs else set(),
                               free=backend == "numpy")
        src = "\n".join(head + lines + [f"    return {ret}"]) + "\n"
        from .activations import numpy_erf
        namespace: dict[str, Any] = {"numpy": np, "mpmath": mpmath, "math": __import__("math"),
                                     "_erf": numpy_erf}
        namespace.update(impls)
        # printer-registered module names (e.g. numpy.linalg) resolve through these roots
        for mod in getattr(printer, "module_imports", {}):
            root = mod.split(".")[0]
            namespace.setdefault(root, __import__(root))
        return src, namespace


def _larger_than(exprs: list[sp.Expr], nodes: int) -> bool:
    count = 0
    for e in exprs:
        for _ in sp.preorder_traversal(e):
            count += 1
            if count > nodes:
                return True
    return False


def _cse(exprs: list[sp.Expr], counter: Iterator[int]) -> tuple[list, list]:
    """Common-subexpression elimination: large expressions go to SymEngine's C++ engine (about 3x
    faster than SymPy's), small ones and anything SymEngine cannot hold to SymPy's.
    Temporaries are named ``t<n>`` from ``counter``."""
    try:
        if not _larger_than(exprs, 400):  # small: conversion would cost more than it saves
            raise TypeError("small")
        import symengine as se
        repl, reduced = se.cse([se.sympify(e) for e in exprs])
        back = [(sp.sympify(a), sp.sympify(b)) for a, b in repl]
        red = [sp.sympify(r) for r in reduced]
        kinds = lambda es: sorted(type(f).__name__ for e in es for f in sp.sympify(e).atoms(sp.Function))  # noqa: E731
        if kinds([b for _, b in back] + red) != kinds(exprs) and not back:
            raise TypeError("function atoms changed in the round trip")
        rename = {a: sp.Symbol(f"t{next(counter)}") for a, _ in back}
        repl = [(rename[a], b.xreplace(rename)) for a, b in back]
        return repl, [r.xreplace(rename) for r in red]
    except Exception:  # noqa: BLE001 - SymEngine is an accelerator, never a point of failure
        return sp.cse(exprs, symbols=(sp.Symbol(f"t{next(counter)}") for _ in itertools.count()),
                      order="none")


def _with_liveness(body: list[tuple[str, str, set[str]]], returned: set[str], free: bool) -> list[str]:
    """Print the body; with ``free``, ``del`` each temporary right after its last use so that a
    long chain of array assignments holds only the arrays it still needs (bounded memory)."""
    last: dict[str, int] = {}
    for i, (_, _, uses) in enumerate(body):
        for u in uses:
            last[u] = i
    out = []
    for i, (target, code, _) in enumerate(body):
        out.append(f"    {target} = {code}")
        if free:
            dead = sorted(n for n, j in last.items() if j == i and n not in returned and not n.startswith("x"))
            if target not in last and target not in returned:
                dead.append(target)
            if dead:
                out.append(f"    del {', '.join(dead)}")
    return out


def _ae_diff(expr: sp.Expr, x: sp.Symbol) -> sp.Expr:
    """Almost-everywhere derivative: Dirac deltas from step functions are dropped."""
    d = sp.diff(expr, x)
    return d.replace(sp.DiracDelta, lambda *a: sp.Integer(0)) if d.has(sp.DiracDelta) else d


def _collect(expr: sp.Expr, impls: dict, backend: str) -> None:
    for f in expr.atoms(NumericFunction):
        impls[_impl_name(f)] = type(f).numpy_impl if backend == "numpy" else type(f).mpmath_impl


def _with_dps(fn: Callable, dps: int | None) -> Callable:
    if dps is None:
        return fn

    def at_precision(*args: Any) -> Any:
        with mpmath.workdps(dps):
            return fn(*(mpmath.mpf(a) if isinstance(a, str) else a for a in args))
    return at_precision


def lambdify(exprs: "sp.Expr | Sequence[sp.Expr]", symbols: Iterable[sp.Symbol],
             backend: str = "numpy", dps: int | None = None) -> Callable[..., Any]:
    """Compile plain expression(s) of ``symbols`` (CSE, NumericFunction aware).

    Returns one value for a single expression and a tuple for a sequence.
    """
    single = isinstance(exprs, sp.Basic) or not isinstance(exprs, (list, tuple))
    outs = (sp.sympify(exprs),) if single else tuple(sp.sympify(e) for e in exprs)
    syms = tuple(symbols)
    prog = Program(syms, (), outs, name="lambdify")
    fn = prog.compile(backend, dps=dps)
    if single or len(outs) > 1:
        return fn

    def one_tuple(*args: Any) -> tuple:
        return (fn(*args),)
    return one_tuple

