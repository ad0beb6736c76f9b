"""Static guard: no code path of the package can evaluate user text as Python.

User text reaches sympy only through :mod:`symbrg.core.parsing` (a grammar of numbers, whitelisted
functions and declared symbols).  ``sympify`` parses strings with ``eval``; ``nsimplify`` and
``S`` call it on strings.  This test reads every module and refuses:

* ``eval``/``exec``/``parse_expr`` anywhere but the code generator's loader (which runs code it printed
  itself from sympy trees);
* ``sympify`` without ``strict=True`` (which refuses strings) outside a short list of internal calls
  on values that are never text (symengine results, mpmath numbers, the package's own tables).

Adding ``sp.sympify(value)`` on a public argument makes this test fail (see the mutation test below).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
from sympy import Rational

import symbrg

PACKAGE = Path(symbrg.__file__).parent
#: (file stem, enclosing function): internal conversions of values that are never text.
ALLOWED_SYMPIFY = {("codegen", "_cse"), ("special", "_eval_evalf"), ("expectations", "_atoms"),
                   ("parsing", "as_expression")}
ALLOWED_EXEC = {("codegen", "_load")}


def _calls(tree: ast.AST):
    """(call, name, enclosing function) for every call in a module."""
    def walk(node: ast.AST, func: str):
        for child in ast.iter_child_nodes(node):
            name = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else func
            if isinstance(child, ast.Call):
                f = child.func
                yield child, (f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")), func
            yield from walk(child, name)
    yield from walk(tree, "")


def violations(source: str, stem: str) -> list[str]:
    out = []
    for call, name, func in _calls(ast.parse(source)):
        where = f"{stem}.py:{call.lineno} in {func or '<module>'}"
        if name in ("eval", "exec", "parse_expr") and (stem, func) not in ALLOWED_EXEC:
            out.append(f"{where}: {name}()")
        if name == "sympify" and (stem, func) not in ALLOWED_SYMPIFY and \
                not any(k.arg == "strict" and getattr(k.value, "value", False) is True for k in call.keywords):
            out.append(f"{where}: sympify() without strict=True")
    return out


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_text_evaluation(path: Path) -> None:
    assert violations(path.read_text(), path.stem) == []


def test_guard_catches_a_plain_sympify() -> None:
    """Mutation: the guard must fail on the mistake it exists to catch."""
    bad = "import sympy as sp\ndef potential(U):\n    return sp.sympify(U)\n"
    assert violations(bad, "erg") == ["erg.py:3 in potential: sympify() without strict=True"]
    assert violations("def f(t):\n    return eval(t)\n", "lpa") == ["lpa.py:2 in f: eval()"]
    assert violations("import sympy as sp\ndef f(t):\n    return sp.sympify(t, strict=True)\n", "lpa") == []


def test_dimension_text_is_parsed_not_run(tmp_path: Path) -> None:
    from symbrg.core.errors import InvalidArgument
    from symbrg.rg.erg import dimension
    canary = tmp_path / "ran"
    with pytest.raises(InvalidArgument):
        dimension(f"__import__('os').system('touch {canary}')")
    assert not canary.exists()
    assert dimension("5/2") == Rational(5, 2)


def test_sources_have_no_control_characters():
    """A docstring written through an escaping layer once carried a TAB for ``\\t`` (``N\\to\\infty``), a
    form feed for ``\\f`` and a newline for ``\\r``: no module may contain a control character."""
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if any(ord(ch) < 32 for ch in line):
                bad.append(f"{path.relative_to(PACKAGE)}:{lineno}")
    assert not bad, bad


def test_strings_have_no_escaped_control_characters():
    r"""The same mistake inside the source: a docstring that is not raw turns ``\varphi`` into a
    vertical tab and ``\rho`` into a carriage return; no docstring of the package may hold a control
    character other than a newline or a tab."""
    import ast
    bad = []
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            doc = ast.get_docstring(node, clean=False) if isinstance(node, kinds) else None
            if doc and any(ord(ch) < 32 and ch not in "\n\t" for ch in doc):
                bad.append(f"{path.relative_to(PACKAGE)}:{getattr(node, 'lineno', 1)}")
    assert not bad, bad
