"""The core's one-place facts: the symbol registry, the identity verifier, numeric nodes under lambdify."""
from __future__ import annotations

import importlib
import pkgutil

import mpmath
import numpy as np
import pytest
import sympy as sp

import symbrg
from symbrg.core.codegen import Program, is_numeric
from symbrg.core.errors import InvalidArgument, UnknownName
from symbrg.core.identities import Verification, check_identity, verify
from symbrg.core.special import ArcCosKernel, GramDet, NumericFunction
from symbrg.core.symbols import SYMBOLS, symbol, symbols


# ------------------------------------------------------------------------------------------ symbols
def test_one_symbol_per_name() -> None:
    for name, info in SYMBOLS.items():
        s = symbol(name)
        assert s is symbol(name) and s.name == name
        assert all(getattr(s, f"is_{k}") is v for k, v in info.assumptions), name
        assert info.latex and info.meaning
    assert symbols("p m") == (symbol("p"), symbol("m"))


def test_unknown_symbol_is_refused_listing_the_names() -> None:
    with pytest.raises(UnknownName) as err:
        symbol("dimension")
    assert "'dimension'" in str(err.value) and "Lambda" in str(err.value) and "sigma_w" in str(err.value)
    with pytest.raises(UnknownName):
        symbol(3)  # type: ignore[arg-type]


def test_modules_share_the_registry_objects() -> None:
    from symbrg.cosnet import theory
    from symbrg.gaussian import activations, expectations
    from symbrg.kernels import architecture
    from symbrg.rg import brg, erg, lpa, regulators
    # the dimension of the ERG and of the cos-net; the cutoff of the BRG, the cos-net and Polchinski's flow
    assert regulators.D is theory.D is architecture.DIM is symbol("d")
    assert brg.CUT is theory.LAM is erg.LAMBDA is symbol("Lambda")
    assert erg.K_SCALE is theory.KCUT is symbol("k")
    assert erg.RHO is lpa.RHO is symbol("rho")
    assert activations.X is symbol("x") and expectations.Q12 is symbol("q12")
    assert brg.SIGMA is theory.SIGMA is symbol("sigma")


def _modules() -> list:
    out = []
    for info in pkgutil.walk_packages(symbrg.__path__, "symbrg."):
        if info.name.startswith("symbrg.cli") or info.name.endswith("__main__"):
            continue
        out.append(importlib.import_module(info.name))
    return out


def test_no_public_module_symbol_disagrees_with_the_registry() -> None:
    """A module-level public Symbol whose name is in the registry must be the registry's object
    (same name, same assumptions): otherwise two modules build expressions that never cancel."""
    bad = [f"{m.__name__}.{attr} = {value!r} {value.assumptions0}"
           for m in _modules() for attr, value in vars(m).items()
           if not attr.startswith("_") and isinstance(value, sp.Symbol) and value.name in SYMBOLS
           and value != symbol(value.name)]
    assert bad == []


# ----------------------------------------------------------------------------------------- verifier
x, y = sp.symbols("x y", real=True)


def test_verify_true_identities_symbolically_and_numerically() -> None:
    v = verify(sp.sin(x) ** 2 + sp.cos(x) ** 2, 1, domain={x: (-3, 3)})
    assert v.verified and v.kind == "both" and v.symbolic_zero and v.points == 12 and v.max_abs_error < 1e-25
    assert "simplifies to 0" in v.describe()
    assert verify(sp.Eq(sp.exp(x + y), sp.exp(x) * sp.exp(y))).verified
    # numeric only: still decided, and reported as such
    n = verify(sp.gamma(x + 1), x * sp.gamma(x), simplify=False)
    assert n.verified and n.kind == "numeric" and not n.symbolic_zero


def test_verify_refuses_false_identities() -> None:
    wrong = verify(sp.sin(x) ** 2 + sp.cos(x) ** 2, sp.Float("1.0001"))
    assert not wrong.verified and not wrong.symbolic_zero and wrong.max_abs_error > wrong.tolerance
    assert not verify(sp.sin(x) ** 2 + sp.cos(x) ** 2, sp.Float("1.0001"), simplify=False).verified
    # true only on part of the domain: sqrt(x^2) = x for x > 0
    assert verify(sp.sqrt(x ** 2), x, domain={x: (0.1, 2)}, simplify=False).verified
    half = verify(sp.sqrt(x ** 2), x, domain={x: (-2, 2)})
    assert not half.verified and not half.symbolic_zero and half.max_abs_error > 0.1
    # a residual below the numeric tolerance is still refused: it does not simplify to 0
    tiny = verify(x + sp.Float("1e-40"), x)
    assert tiny.numeric_ok and not tiny.symbolic_zero and not tiny.verified
    # NaN is a failure, not a zero
    assert not verify(sp.log(-1 - x ** 2) * sp.nan, 0, simplify=False).verified


def test_verify_hooks_and_arguments() -> None:
    f = sp.Function("f")
    k = sp.Symbol("k", positive=True)
    # undefined functions of a scale: made generic in the numeric form
    v = verify(sp.diff(f(k) ** 2, k), 2 * f(k) * sp.diff(f(k), k))
    assert v.verified and v.points == 12
    assert not verify(sp.diff(f(k) ** 2, k), f(k) * sp.diff(f(k), k)).verified
    # a caller's exact symbolic test; deltas vanish at random points
    assert verify(sp.DiracDelta(x - 1) + x, x, zero_test=lambda r: True, note="n").note == "n"
    with pytest.raises(InvalidArgument):
        verify(x, x, points=-1)
    with pytest.raises(InvalidArgument):
        verify(x, x, dps=5)


def test_check_identity_is_the_verifier_everywhere() -> None:
    from symbrg.core import derivation
    assert derivation.check_identity is check_identity is symbrg.check_identity
    assert derivation.Verification is Verification
    assert check_identity(sp.sin(2 * x), 2 * sp.sin(x) * sp.cos(x)) == verify(sp.sin(2 * x), 2 * sp.sin(x) * sp.cos(x))


# ----------------------------------------------------------------------------- numeric nodes, lambdify
def _nodes() -> list[sp.Function]:
    from symbrg.cosnet.theory import AngularAverage
    from symbrg.gaussian import expectations as E
    from symbrg.gaussian.activations import activation
    from symbrg.rg.regulators import W, regulator
    q11, q12, q22 = symbol("q11"), symbol("q12"), symbol("q22")
    found = [GramDet(q11, q12, q22), ArcCosKernel(1, 1, q11, q12, q22), ArcCosKernel(0, 0, q11, q12, q22, symbol("q_Delta")),
             AngularAverage(3, symbol("r"))]
    series = E.expectation("tanh", method="series")
    for expr in (regulator("exponential").threshold(1, 3, 0, W), E.gap_map(activation("relu")).angular,
                 E.expectation("tanh", method="quadrature").expr, series.bound_expr):
        found.append(next(f for f in sp.sympify(expr).atoms(sp.Function) if is_numeric(f)))
    found.append(next(f for f in series.expr.atoms(sp.Function) if is_numeric(f) and f.args[0] == 3))
    return found


VALUES = {"q11": 1.3, "q12": 0.4, "q22": 0.8, "q_Delta": 1.3 * 0.8 - 0.16, "r": 0.7, "w": 0.5, "e_12": 0.5,
          "h_12": 0.2, "q": 1.1}


def test_every_numeric_node_works_under_sympy_lambdify() -> None:
    nodes = _nodes()
    assert {type(n).__name__.rstrip("0123456789") for n in nodes} >= {
        "GramDet", "ArcCosKernel", "AngularAverage", "A_exponential", "AngularGap", "GaussianQuadrature",
        "HermiteTail", "HermiteCoefficient"}
    for node in nodes:
        assert isinstance(node, NumericFunction) and is_numeric(node)
        args = sorted(node.free_symbols, key=str)
        vals = [VALUES.get(s.name, 0.6) for s in args]
        prog = Program(tuple(args), (), (node,))
        want = float(prog.compile()(*vals))
        got = float(sp.lambdify(args, node, "numpy")(*vals))
        assert np.isfinite(want) and got == want, type(node).__name__
        with mpmath.workdps(30):
            mp = sp.lambdify(args, node, "mpmath")(*map(mpmath.mpf, vals))
        ref = prog.compile("mpmath", dps=30)(*map(mpmath.mpf, vals))
        assert abs(mp - ref) <= 1e-25 * max(1, abs(ref)), type(node).__name__
        assert abs(float(mp) - want) <= 1e-9 * max(1, abs(want)), type(node).__name__
        assert sp.latex(node) and sp.latex(node ** 2) and sp.sstr(node) and sp.pretty(node)


def test_codegen_does_not_import_the_special_functions() -> None:
    """codegen knows numeric nodes by protocol: no import of symbrg.core.special, at any level."""
    import ast
    import inspect

    from symbrg.core import codegen
    tree = ast.parse(inspect.getsource(codegen))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any(m and m.startswith("symbrg.") and m != "symbrg.core" and not m.startswith(
        ("symbrg.core.checks", "symbrg.core.errors", "symbrg.core.parsing", "symbrg.core.calculus")) for m in imported), imported
