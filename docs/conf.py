"""Sphinx configuration of the symbrg documentation.

Build (warnings are errors):  sphinx-build -W -b html docs docs/_build/html
Needs the ``docs`` extra:      pip install '.[docs]'

The API reference is generated from the docstrings (autodoc + autosummary, one page per module); the
example notebooks (``examples/*.ipynb``, linked into ``docs/examples``) are rendered by myst-nb as they
are stored, outputs cleared, without executing them (``pytest`` executes them).
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))          # the working tree's symbrg, installed or not
os.environ.setdefault("MPLBACKEND", "Agg")

import symbrg  # noqa: E402

project = "symbrg"
author = "symbrg developers"
copyright = "2026, symbrg developers"
release = version = symbrg.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_nb",
]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "**.ipynb_checkpoints", "Thumbs.db", ".DS_Store"]
templates_path = ["_templates"]

# --- API reference --------------------------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "none"             # the signatures carry the annotations; the docstrings say the rest
autodoc_preserve_defaults = True       # show ``DEFAULT`` names instead of expanded reprs

# --- notebooks and Markdown --------------------------------------------------------------------------
nb_execution_mode = "off"              # rendered from the stored (cleared) notebooks; pytest runs them
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

# --- HTML ---------------------------------------------------------------------------------------------
html_theme = "alabaster"
html_title = f"symbrg {release}"
html_static_path: list[str] = []
html_theme_options = {"description": "Symbolic-numeric Bayesian RG for neural-network field theories",
                      "fixed_sidebar": True}

# --- warnings -----------------------------------------------------------------------------------------
# The build runs with -W and suppresses no warning category.  The module pages document members with
# automodule alone (_templates/autosummary/module.rst: no per-member summary tables, whose one-line
# extracts cut sentences inside ``literals``), and two plain-text habits of the docstrings are read
# as their authors meant them (see ``_plain_text_docstring``) instead of as reST markup.
suppress_warnings: list[str] = []
nitpicky = False

_TOKEN = re.compile(r"``.+?``|:[\w:+-]+:`[^`]*`|`[^`]*`_{0,2}", re.DOTALL)
_BULLET = re.compile(r"^(\s*)[*-]\s+")


def _escape_bars(text: str) -> str:
    r"""``|x|`` outside literals and roles (which may span lines) is an absolute value, not a reST
    substitution: escape it."""
    out, pos = [], 0
    for m in _TOKEN.finditer(text):
        out.append(re.sub(r"(?<!\\)\|", r"\\|", text[pos:m.start()]))
        out.append(m.group())
        pos = m.end()
    out.append(re.sub(r"(?<!\\)\|", r"\\|", text[pos:]))
    return "".join(out)


def _inside_role(text: str) -> set[int]:
    """Line numbers (0-based) that start inside a literal or role opened on an earlier line."""
    inside: set[int] = set()
    for m in _TOKEN.finditer(text):
        first, last = text.count("\n", 0, m.start()), text.count("\n", 0, m.end())
        inside.update(range(first + 1, last + 1))
    return inside


def _lazy_continuations(lines: list[str]) -> list[str]:
    """Indent a line that continues a bullet item without the item's indentation (a "lazy"
    continuation, as Markdown reads it) to the item's text."""
    inside = _inside_role("\n".join(lines))
    out: list[str] = []
    item: int | None = None
    for i, line in enumerate(lines):
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        bullet = None if i in inside else _BULLET.match(line)
        if bullet and (i == 0 or not lines[i - 1].strip() or item is not None):
            item = bullet.end()
        elif not stripped:
            item = None
        elif item is not None and indent < item and i not in inside:
            line = " " * item + stripped
        out.append(line)
    return out


def _plain_text_docstring(app, what, name, obj, options, lines: list[str]) -> None:
    """Docstrings are written for ``help()`` as well as for Sphinx.  Two plain-text habits are
    rewritten here, in the text Sphinx parses (the source is not touched):

    * a bare ``|x|`` (absolute value, norm) outside ``literals``, roles and ``.. math::`` blocks is
      escaped, so that docutils does not read a substitution reference;
    * a line that continues a bullet item without the item's indentation (a "lazy" continuation) is
      indented to the item's text, so that the list does not end without a blank line.
    """
    blocks: list[tuple[bool, list[str]]] = []          # (is a math block, its lines)
    math_indent: int | None = None
    for line in lines:
        indent = len(line) - len(line.lstrip())
        if math_indent is not None and line.strip() and indent <= math_indent:
            math_indent = None
        is_math = math_indent is not None or line.strip().startswith(".. math::")
        if line.strip().startswith(".. math::"):
            math_indent = indent
        if blocks and blocks[-1][0] == is_math:
            blocks[-1][1].append(line)
        else:
            blocks.append((is_math, [line]))
    out: list[str] = []
    for is_math, block in blocks:
        out += block if is_math else _escape_bars("\n".join(_lazy_continuations(block))).split("\n")
    lines[:] = out


def setup(app) -> None:
    app.connect("autodoc-process-docstring", _plain_text_docstring)
