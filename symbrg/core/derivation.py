r"""Derivations as data: ordered, justified, verified steps, with text and LaTeX views.

Job: hold what an engine derived so that it can be read, checked and cited.  A derivation is

.. math::  \mathcal D = (s_1, \dots, s_n),\qquad s_i = (\text{statement}_i, \text{justification}_i,
           \text{label}_i, \text{verification}_i),

where every statement is a sympy relation (or expression) and every verification is one of
``symbolic`` (the difference simplifies to 0), ``numeric`` (mpmath at N random points, worst error
recorded) or ``assumed``.  A derivation may state theorems (:class:`Theorem`: a statement, its
assumptions and the steps that prove it).  Citations are keys of the one references table
(:mod:`symbrg.core.references`); an unknown key is refused when the step is added.

Printers (:mod:`symbrg.core.printing`) are views of this one object.  This module does not import
them: the printing module registers its printer classes with :func:`register_printer`, and
``to_latex()`` and friends look them up by format.

Verifications come from the one identity verifier, :mod:`symbrg.core.identities` (re-exported here:
:class:`Verification`, :func:`check_identity`): simplification to zero *and* evaluation at random
points with mpmath at ``dps`` digits.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from symbrg.core.identities import Verification, check_identity
from symbrg.core.references import canonical, canonical_cites

__all__ = ["Verification", "Step", "Theorem", "Derivation", "check_identity", "register_printer"]


class _Printer(Protocol):
    def doprint(self, node: Any) -> str: ...


#: Printer class per format, filled by :mod:`symbrg.core.printing` when it is imported (always, by
#: ``symbrg.core``'s ``__init__``).
_PRINTERS: dict[str, Any] = {}


def register_printer(fmt: str, printer: type) -> None:
    """Register the printer class of a format (called by :mod:`symbrg.core.printing`)."""
    _PRINTERS[fmt] = printer


def _printer(fmt: str, **settings: Any) -> _Printer:
    if fmt not in _PRINTERS:
        from symbrg.core.errors import Unsupported
        raise Unsupported("format", f"no printer registered for {fmt!r} (import symbrg.core.printing)")
    return _PRINTERS[fmt](**settings)


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


@dataclass(frozen=True)
class Theorem:
    r"""A theorem stated by a derivation: "Assume (i) ..., (ii) ....  Then ``statement``."

    statement: the claim, prose with inline LaTeX between ``$``.
    assumptions: the hypotheses, each LaTeX math or words.
    label: a ``\label`` for ``\ref`` (``thm:...``); title: an optional name printed in brackets.
    proof: labels of the verified steps that prove it (printed as a proof by those identities).
    """
    statement: str
    assumptions: tuple[str, ...] = ()
    label: str = "thm:main"
    title: str = ""
    proof: tuple[str, ...] = ()


@dataclass
class Derivation:
    r"""An ordered list of steps with a title, an introduction and a bibliography.

    Citations are keys of :data:`symbrg.core.references.REFERENCES` (``cites=`` of a step,
    ``\cite{key}`` in the prose); the printers list the cited works from that one table.
    Build with :meth:`step` and :meth:`theorem`.
    ``name`` is the file stem in the ``derivations/`` library; ``program`` optionally holds the
    :class:`symbrg.core.codegen.Program` of the result (``render(d, "python")`` prints it).
    """
    title: str
    introduction: str = ""
    steps: list[Step] = field(default_factory=list)
    name: str = ""
    program: Any = None
    theorems: list[Theorem] = field(default_factory=list)

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
        cites = tuple(dict.fromkeys(canonical(c, "cites") for c in cites))
        justification = canonical_cites(justification, "justification")
        s = Step(statement, justification, label, verification or Verification(), tuple(uses),
                 cites, tuple(assumptions))
        self.steps.append(s)
        return s

    def cite(self, key: str, text: str = "") -> str:
        """The table's key for ``key`` (for ``cites=``); an unknown key is refused.  ``text`` is
        ignored: the references table (:mod:`symbrg.core.references`) holds every work once."""
        return canonical(key, "key")

    def theorem(self, statement: str, assumptions: Sequence[str] = (), label: str = "thm:main", *,
                title: str = "", proof: Sequence[str] = ()) -> Theorem:
        """State a theorem (printed before the steps) and return it; ``proof`` names the labels of
        the steps that prove it (they may be added later; the printers check them)."""
        if any(t.label == label for t in self.theorems):
            raise ValueError(f"duplicate theorem label {label!r}")
        t = Theorem(canonical_cites(statement, "statement"), tuple(assumptions), label, title, tuple(proof))
        self.theorems.append(t)
        return t

    @property
    def result(self) -> Step:
        """The last step: the derivation's result."""
        if not self.steps:
            raise IndexError("the derivation has no steps")
        return self.steps[-1]

    def extend(self, other: "Derivation") -> None:
        """Append another derivation's theorems and steps (labels must stay unique)."""
        for t in other.theorems:
            self.theorem(t.statement, t.assumptions, t.label, title=t.title, proof=t.proof)
        for s in other.steps:
            self.step(s.statement, s.justification, s.label, verification=s.verification,
                      uses=s.uses, cites=s.cites, assumptions=s.assumptions)

    @property
    def verified(self) -> bool:
        """True when every non-assumed step is verified."""
        return all(s.verification.verified for s in self.steps if s.verification.kind != "assumed")

    def __getitem__(self, label: str) -> Step:
        for s in self.steps:
            if s.label == label:
                return s
        raise KeyError(label)

    def __repr__(self) -> str:
        status = "verified" if self.verified else "NOT verified"
        return (f"<Derivation {self.name or self.title!r}: {len(self.steps)} steps, "
                f"{len(self.theorems)} theorem(s), {status}>")

    def __str__(self) -> str:
        return self.to_text()

    def to_text(self) -> str:
        """Plain unicode text view (sympy's pretty form of each statement, LaTeX prose as unicode)."""
        return _printer("text").doprint(self)

    def to_latex(self, standalone: bool = True) -> str:
        """LaTeX view; ``standalone`` gives a whole compilable document."""
        return _printer("latex", standalone=standalone).doprint(self)

    def to_markdown(self) -> str:
        """Markdown view with MathJax-ready ``$$`` blocks."""
        return _printer("markdown").doprint(self)

    def to_python(self) -> str:
        """NumPy source of the result (via :mod:`symbrg.core.codegen`)."""
        return _printer("python").doprint(self)

    def _repr_latex_(self) -> str:
        """Jupyter: the numbered equations, for MathJax."""
        return _printer("jupyter").doprint(self)

    def _repr_markdown_(self) -> str:
        """Jupyter: the whole document (prose, equations, status, references)."""
        return self.to_markdown()
