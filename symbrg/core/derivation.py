r"""Derivations as data: ordered, justified, verified steps, with text and LaTeX views.

Job: hold what an engine derived so that it can be read, checked and cited.  A derivation is

.. math::  \mathcal D = (s_1, \dots, s_n),\qquad s_i = (\text{statement}_i, \text{justification}_i,
           \text{label}_i, \text{verification}_i),

where every statement is a sympy relation (or expression) and every verification is one of
``symbolic`` (the difference simplifies to 0), ``numeric`` (mpmath at N random points, worst error
recorded) or ``assumed``.  Printers (:mod:`symbrg.core.printing`) are views of this one object.

The identity checker :func:`check_identity` is the single place where "is lhs == rhs?" is decided:
by simplification to zero *and* by evaluation at random points with mpmath at ``dps`` digits.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import mpmath
import sympy as sp

from symbrg.core.parsing import as_expression

__all__ = ["Verification", "Step", "Derivation", "check_identity"]


@dataclass(frozen=True)
class Verification:
    """How a statement was established.

    kind: ``"symbolic"`` (simplified to zero), ``"numeric"`` (only spot-checked), ``"both"``
    (simplified to zero and spot-checked), or ``"assumed"`` (taken as given, e.g. a definition).
    points / dps / max_abs_error: the random high-precision evaluation, when one was made.
    note: a short free-text addition for documents (e.g. "against Gauss-Hermite quadrature, degree 80").
    """
    kind: str = "assumed"
    symbolic_zero: bool = False
    points: int = 0
    dps: int = 0
    max_abs_error: float | None = None
    tolerance: float | None = None
    note: str = ""

    @property
    def verified(self) -> bool:
        """True when every check that was run passed (``assumed`` counts as not verified)."""
        if self.kind == "assumed":
            return False
        numeric_ok = self.max_abs_error is None or (
            self.tolerance is not None and self.max_abs_error <= self.tolerance)
        if self.kind == "symbolic":
            return self.symbolic_zero
        if self.kind == "numeric":
            return self.points > 0 and numeric_ok
        return self.symbolic_zero and self.points > 0 and numeric_ok

    def describe(self) -> str:
        """One line for documents: what was checked and how well."""
        parts = []
        if self.symbolic_zero:
            parts.append("simplifies to 0")
        if self.points:
            parts.append(f"{self.points} random points at {self.dps} digits, "
                         f"max |error| = {float(self.max_abs_error or 0):.1e}")
        if not parts:
            return "assumed"
        return "verified: " + "; ".join(parts)


@dataclass(frozen=True)
class Step:
    """One justified statement.

    statement: a sympy ``Eq``/relation/expression, or a tuple of them (printed as aligned lines).
    justification: the rule applied, in words (may contain inline LaTeX between ``$``).
    label: an equation label, unique within its derivation (used for ``\\label``/``\\eqref``).
    uses: labels of earlier steps this one relies on; cites: literature keys.
    assumptions: conditions the step needs (``"q_{11} > 0"``, ``"|c| \\le 1"``), LaTeX.
    """
    statement: Any
    justification: str = ""
    label: str = ""
    verification: Verification = field(default_factory=Verification)
    uses: tuple[str, ...] = ()
    cites: tuple[str, ...] = ()
    assumptions: tuple[str, ...] = ()

    @property
    def statements(self) -> tuple:
        return self.statement if isinstance(self.statement, tuple) else (self.statement,)


@dataclass
class Derivation:
    """An ordered list of steps with a title, an introduction and a bibliography.

    ``references`` maps a citation key to its bibliographic text.  Build with :meth:`step`.
    ``name`` is the file stem in the ``derivations/`` library; ``program`` optionally holds the
    :class:`symbrg.core.codegen.Program` of the result (``render(d, "python")`` prints it).
    """
    title: str
    introduction: str = ""
    steps: list[Step] = field(default_factory=list)
    references: dict[str, str] = field(default_factory=dict)
    name: str = ""
    program: Any = None

    def step(self, statement: Any, justification: str = "", label: str = "", *,
             verification: Verification | None = None, uses: Sequence[str] = (),
             cites: Sequence[str] = (), assumptions: Sequence[str] = ()) -> Step:
        """Append a step and return it.  Labels default to ``eq:<name>-<n>``."""
        label = label or f"eq:{self.name or 'd'}-{len(self.steps) + 1}"
        known = {s.label for s in self.steps}
        if label in known:
            raise ValueError(f"duplicate step label {label!r}")
        missing = [u for u in uses if u not in known]
        if missing:
            raise ValueError(f"step {label!r} uses unknown earlier step(s) {missing}")
        s = Step(statement, justification, label, verification or Verification(), tuple(uses),
                 tuple(cites), tuple(assumptions))
        self.steps.append(s)
        return s

    def cite(self, key: str, text: str) -> str:
        """Register a bibliography entry and return its key (for ``cites=``)."""
        self.references[key] = text
        return key

    @property
    def result(self) -> Step:
        """The last step: the derivation's result."""
        if not self.steps:
            raise IndexError("the derivation has no steps")
        return self.steps[-1]

    def extend(self, other: "Derivation") -> None:
        """Append another derivation's steps and references (labels must stay unique)."""
        for s in other.steps:
            self.step(s.statement, s.justification, s.label, verification=s.verification,
                      uses=s.uses, cites=s.cites, assumptions=s.assumptions)
        self.references.update(other.references)

    @property
    def verified(self) -> bool:
        """True when every non-assumed step is verified."""
        return all(s.verification.verified for s in self.steps if s.verification.kind != "assumed")

    def __getitem__(self, label: str) -> Step:
        for s in self.steps:
            if s.label == label:
                return s
        raise KeyError(label)

    def to_text(self) -> str:
        """Plain-text view (sympy's ``sstr`` of each statement)."""
        from symbrg.core.printing import to_text
        return to_text(self)

    def to_latex(self, standalone: bool = True) -> str:
        """LaTeX view; ``standalone`` gives a whole compilable document."""
        from symbrg.core.printing import to_latex
        return to_latex(self, standalone=standalone)

    def to_markdown(self) -> str:
        """Markdown view with MathJax-ready ``$$`` blocks."""
        from symbrg.core.printing import to_markdown
        return to_markdown(self)

    def to_python(self) -> str:
        """NumPy source of the result (via :mod:`symbrg.core.codegen`)."""
        from symbrg.core.printing import to_python
        return to_python(self)

    def _repr_latex_(self) -> str:
        """Jupyter: the numbered equations, for MathJax."""
        from symbrg.core.printing import to_jupyter_latex
        return to_jupyter_latex(self)

    def _repr_markdown_(self) -> str:
        """Jupyter: the whole document (prose, equations, status, references)."""
        return self.to_markdown()


def _residual(lhs: Any, rhs: Any) -> sp.Expr:
    if isinstance(lhs, sp.Equality):
        lhs, rhs = lhs.lhs, lhs.rhs
    return as_expression(lhs, "lhs") - as_expression(rhs if rhs is not None else 0, "rhs")


def check_identity(lhs: Any, rhs: Any = None, *, domain: Mapping[sp.Symbol, tuple[float, float]]
                   | None = None, points: int = 12, dps: int = 30, tolerance: float | None = None,
                   simplify: bool = True, seed: int = 0, extra: Iterable[sp.Basic] = ()) -> Verification:
    r"""Decide ``lhs == rhs`` by simplification to zero and by random evaluation at ``dps`` digits.

    The residual :math:`r = \mathrm{lhs} - \mathrm{rhs}` (or ``lhs.lhs - lhs.rhs`` for an ``Eq``) is
    (1) simplified (``sympy.simplify``, after ``doit``) and compared with 0, and (2) evaluated with
    mpmath at ``points`` points drawn uniformly from ``domain`` (default: every free symbol in
    [0.1, 2]) with ``dps`` digits.  The tolerance defaults to ``10**(-(dps - 8))`` times the
    magnitude of the terms, so cancellation at working precision is not mistaken for a failure.
    """
    r = _residual(lhs, rhs)
    zero = False
    if simplify:
        try:
            zero = sp.simplify(r.doit()) == 0
        except Exception:  # simplification is a heuristic; the numeric check still stands
            zero = False
    free = sorted(r.free_symbols | set(extra), key=str)
    dom = dict(domain or {})
    rng = random.Random(seed)
    worst = mpmath.mpf(0)
    scale_worst = mpmath.mpf(0)
    n = 0
    if points:
        with mpmath.workdps(dps):
            f = sp.lambdify(free, r, modules="mpmath")
            terms = sp.Add.make_args(sp.expand(r)) if len(sp.Add.make_args(r)) < 2 else sp.Add.make_args(r)
            g = sp.lambdify(free, sum((sp.Abs(t) for t in terms), sp.Integer(0)), modules="mpmath")
            for _ in range(points):
                args = [mpmath.mpf(rng.uniform(*dom.get(s, (0.1, 2.0)))) for s in free]
                val = abs(mpmath.mpmathify(f(*args)))
                worst = max(worst, val)
                try:
                    scale_worst = max(scale_worst, abs(mpmath.mpmathify(g(*args))))
                except Exception:
                    scale_worst = max(scale_worst, mpmath.mpf(1))
                n += 1
    tol = tolerance if tolerance is not None else float(10.0 ** (-(dps - 8)) * max(1.0, float(scale_worst)))
    kind = "both" if (simplify and n) else ("symbolic" if simplify else "numeric")
    return Verification(kind=kind, symbolic_zero=bool(zero), points=n, dps=dps,
                        max_abs_error=float(worst) if n else None, tolerance=tol)
