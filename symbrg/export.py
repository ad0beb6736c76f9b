"""Printers for :class:`symbrg.derivation.Derivation`: text, LaTeX and Markdown views of one object.

Job: render a derivation; never compute anything.  (Minimal version; the full exporters with
line breaking and standalone documents are grown in the derivations issue.)
"""
from __future__ import annotations

import sympy as sp

from .derivation import Derivation

__all__ = ["to_text", "to_latex", "to_markdown"]


def to_text(d: Derivation) -> str:
    lines = [d.title, "=" * len(d.title)]
    for i, s in enumerate(d.steps, 1):
        for st in s.statements:
            lines.append(f"({i}) {sp.sstr(st)}")
        if s.justification:
            lines.append(f"    -- {s.justification} [{s.verification.describe()}]")
    return "\n".join(lines) + "\n"


def to_latex(d: Derivation, standalone: bool = True) -> str:
    body = [f"\\section*{{{d.title}}}"]
    for s in d.steps:
        body.append(s.justification)
        for st in s.statements:
            body.append("\\begin{equation}\n" + sp.latex(st) + "\n\\end{equation}")
    text = "\n".join(body)
    if standalone:
        text = "\\documentclass{article}\n\\usepackage{amsmath}\n\\begin{document}\n" + text + "\n\\end{document}\n"
    return text


def to_markdown(d: Derivation) -> str:
    out = [f"# {d.title}"]
    for s in d.steps:
        out.append(s.justification)
        for st in s.statements:
            out.append("$$\n" + sp.latex(st) + "\n$$")
    return "\n\n".join(out) + "\n"


FORMATS = ("text", "latex", "markdown")


def render(d: Derivation, fmt: str = "text") -> str:
    """Render a derivation in one of :data:`FORMATS` (the ``--format`` of ``symbrg derive``)."""
    from .checks import choice
    choice("format", fmt, FORMATS)
    return {"text": to_text, "latex": lambda x: to_latex(x, standalone=True), "markdown": to_markdown}[fmt](d)
