"""The package's layers point one way (ARCHITECTURE.md).

core ← gaussian ← kernels ← information ← rg ← cosnet, with ensembles and documents on top and cli above
all.  Every import statement counts, at module level or inside a function: a module may import from its
own layer or a lower one, never a higher one; and the import graph has no cycles.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import symbrg

PACKAGE = Path(symbrg.__file__).parent
LAYERS = ["core", "gaussian", "kernels", "information", "rg", "cosnet", "ensembles", "documents", "cli"]
RANK = {name: i for i, name in enumerate(LAYERS)}
RANK["documents"] = RANK["ensembles"]          # side by side on top of the engines
RANK["interop"] = RANK["ensembles"]            # bridges to other frameworks, beside the ensembles


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK else None


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported name) for every import from symbrg in ``path`` (``symbrg.core.codegen.Program``)."""
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "symbrg"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "symbrg":
                out += [(node.lineno, f"{target}.{a.name}") for a in node.names]
    return out


def violations(path: Path) -> list[str]:
    mine = _layer(_module_name(path))
    if mine is None:
        return []
    return [f"{path.relative_to(PACKAGE.parent)}:{line}: {mine} imports {target}"
            for line, target in imports(path)
            if (theirs := _layer(target)) is not None and RANK[theirs] > RANK[mine]]


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path) -> None:
    assert violations(path) == []


def test_every_module_is_in_a_layer() -> None:
    loose = [p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    assert loose == [], f"modules outside the layers: {loose}"


def test_the_check_can_fail(tmp_path: Path) -> None:
    """Mutation: an upward import inside a function is caught."""
    fake = PACKAGE / "core" / "_upward_probe.py"
    fake.write_text("def f():\n    from symbrg.rg.brg import coarse_grain\n    return coarse_grain\n")
    try:
        assert violations(fake) == ["symbrg/core/_upward_probe.py:2: core imports symbrg.rg.brg.coarse_grain"]
    finally:
        fake.unlink()


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = set()
        for _, target in imports(path):
            while target and target not in modules:       # `from symbrg.core.codegen import Program`
                target = target.rpartition(".")[0] if target.count(".") > 1 else ""
            if target and target != name:
                graph[name].add(target)
    return graph


def test_no_import_cycles() -> None:
    assert _cycles(import_graph()) == []


def test_cycle_check_can_fail() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
