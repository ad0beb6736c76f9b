r"""Derivations as data: ordered, justified, verified steps, with text and LaTeX views.

Job: hold what an engine derived so that it can be read, checked and cited.  A derivation is

.. math::  \mathcal D = (s_1, \dots, s_n),\qquad s_i = (\text{statement}_i, \text{justification}_i,
           \text{label}_i, \text{verification}_i),

where every statement is a sympy relation (or expression) and every verification is one of
``symbolic`` (the difference simplifies to 0), ``numeric`` (mpmath at N random points, worst error
recorded) or ``assumed``.  Printers (:mod:`symbrg.core.printing`) are views of this one object.

Verifications come from the one identity verifier, :mod:`symbrg.core.identities` (re-exported here:
:class:`Verification`, :func:`check_identity`): simplification to zero *and* evaluation at random
points with mpmath at ``dps`` digits.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from symbrg.core.identities import Verification, check_identity

__all__ = ["Verification", "Step", "Derivation", "check_identity"]


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
