"""``symbrg erg lpa|gaussian|threshold`` and ``symbrg derive wetterich|polchinski|lpa|free-scalar``."""
from __future__ import annotations

import argparse
import json

import sympy as sp

from symbrg.cli import Names, command_group, progress
from symbrg.core.checks import positive
from symbrg.core.errors import InvalidArgument
from symbrg.core.parsing import parse_expression
from symbrg.core.printing import FORMATS, render

ERG_EPILOG = """examples:
  symbrg erg lpa --dim 3 --regulator litim --order 10
  symbrg erg lpa --dim 3 --regulator exponential --order 8 --json
  symbrg erg lpa --dim 3 --regulator litim --order 12 --table
  symbrg erg lpa --dim 3 --regulator litim --order 8 --truncation "lpa'"
  symbrg erg lpa --dim 3 --regulator litim --order 10 --N 3
  symbrg erg compare --order 8 --regulators litim exponential sharp "K:exp(-z**2)"
  symbrg erg gaussian --dim d --order 5
  symbrg erg threshold --regulator exponential --dim 3 --n 1 --w 0.5
regulators: sharp, litim, exponential, power:b, 'K:<cutoff function of z>', 'r:<shape of y>'
"""
DERIVE_EPILOG = """examples:
  symbrg derive wetterich --regulator litim --dim d
  symbrg derive wetterich --regulator exponential --dim 3 --truncation "lpa'" --format latex
  symbrg derive polchinski --regulator exponential --dim 3
  symbrg derive polchinski --part toy --format markdown
  symbrg derive lpa --regulator litim --dim 3 --order 6
  symbrg derive free-scalar --regulator litim --dim 4
"""


def parse_dimension(text: str) -> int | sp.Rational | sp.Symbol:
    """``"3"`` -> 3, ``"2.5"`` or ``"5/2"`` -> 5/2 (exact, > 0), ``"d"`` -> the positive symbol d.

    Read with the safe parser (:mod:`symbrg.core.parsing`); anything but a number, a fraction or one
    symbol name is refused naming ``dim``.
    """
    value = parse_expression(text, "dim", new_symbols=lambda name: sp.Symbol(name, positive=True))
    if not (value.is_Rational or value.is_Symbol):
        raise InvalidArgument("dim", f"expected a number, a fraction or a symbol name, got {text!r}")
    positive("dim", value)
    return int(value) if value.is_Integer else value


def _common(p: argparse.ArgumentParser, *, dim_default: str = "3") -> None:
    p.add_argument("--dim", default=dim_default, help=f"dimension d > 0, a number or a symbol "
                   f"name such as d (default: {dim_default})")
    p.add_argument("--regulator", default="litim", help="sharp, litim (default), exponential, "
                   "power:b, 'K:<expr in z>' or 'r:<expr in y>'")


#: The truncations of the LPA (a closed set) and the parts of ``symbrg derive polchinski``.
TRUNCATIONS = ("lpa", "lpa'")
PARTS = ("all", "toy", "gaussian", "wilson")


def _fp_dict(fp) -> dict:
    return fp.as_dict()


def format_exponent(theta: complex, digits: int = 8) -> str:
    """A critical exponent with ``digits`` significant digits, its imaginary part kept:
    ``0.6557`` or ``3.1803+1.7127i`` / ``3.1803-1.7127i``.  An imaginary part below 1e-12 of the
    modulus (round-off of the eigenvalue solver at the working precision) counts as zero."""
    theta = complex(theta)
    re, im = theta.real, theta.imag
    if abs(im) <= 1e-12 * abs(theta):
        return f"{re:.{digits}g}"
    return f"{re:.{digits}g}{'-' if im < 0 else '+'}{abs(im):.{digits}g}i"


def run_lpa(ns: argparse.Namespace) -> int:
    from symbrg.core.checks import choice, integer
    from symbrg.rg.lpa import convergence_table, fixed_point, lpa_truncation
    from symbrg.rg.regulators import regulator, working_precision
    R = regulator(ns.regulator)
    working_precision("dps", ns.dps, R.has_closed_form)  # before any work
    d = parse_dimension(ns.dim)
    order = integer("order", ns.order, minimum=1)
    choice("truncation", ns.truncation, TRUNCATIONS)
    prime = ns.truncation == "lpa'"
    if ns.table:
        rows = convergence_table(ns.regulator, d, range(2, order + 1), anomalous=prime, dps=ns.dps, N=ns.N)
        fp = rows[-1]
    else:
        tr = lpa_truncation(ns.regulator, d, order, anomalous=prime, N=ns.N)
        fp = fixed_point(tr, dps=ns.dps)
        rows = [fp]
    if ns.json:
        out = _fp_dict(fp)
        if ns.table:
            out["table"] = [{"order": r.order, "nu": r.nu, "omega": r.omega, "eta": r.eta} for r in rows]
        print(json.dumps(out, indent=2))
        return 0
    label = ("LPA'" if prime else "LPA") + (f" O({ns.N})" if ns.N > 1 else "")
    print(f"{label} Wilson-Fisher fixed point, regulator {fp.regulator}, d = {fp.d}, "
          f"order phi^{2 * fp.order} (hat variables rho/v_d, u/v_d)")
    if ns.table:
        print(f"{'order':>5} {'nu':>12} {'omega':>12}" + (f" {'eta':>10}" if prime else ""))
        for r in rows:
            om = f"{r.omega:12.7f}" if r.omega is not None else f"{'-':>12}"
            print(f"{r.order:5d} {r.nu:12.7f} {om}" + (f" {r.eta:10.6f}" if prime else ""))
        return 0
    for k, v in fp.couplings.items():
        print(f"  {k!s:10s} = {v:.12g}")
    if prime:
        print(f"  eta        = {fp.eta:.10g}")
    print(f"  nu         = {fp.nu:.10g}")
    print(f"  omega      = {fp.omega:.10g}" if fp.omega is not None else "  omega      = (none)")
    print("  exponents theta: " + ", ".join(format_exponent(complex(x)) for x in fp.exponents))
    return 0


def run_compare(ns: argparse.Namespace) -> int:
    from symbrg.core.checks import choice, integer
    from symbrg.rg.lpa import compare_regulators
    from symbrg.rg.regulators import regulator, working_precision
    working_precision("dps", ns.dps, closed_form=False)
    choice("truncation", ns.truncation, TRUNCATIONS)
    for name in ns.regulators:   # every name checked before any work
        regulator(name)
    d, order = parse_dimension(ns.dim), integer("order", ns.order, minimum=2)
    rows = []
    with progress.bar(ns, total=len(ns.regulators), desc="regulators", unit="regulator") as bar:
        for name in ns.regulators:   # one at a time (as compare_regulators does), for the bar
            rows += compare_regulators([name], d, order, anomalous=ns.truncation == "lpa'", N=ns.N, dps=ns.dps)
            bar.update(1)
    if ns.json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
        return 0
    print(f"{ns.truncation.upper()} Wilson-Fisher fixed point, d = {ns.dim}, N = {ns.N}, order phi^{2 * ns.order}")
    print(f"{'regulator':<16} {'nu':>11} {'omega':>11} {'eta':>9}")
    for r in rows:
        om = f"{r.omega:11.7f}" if r.omega is not None else f"{'-':>11}"
        print(f"{r.regulator:<16} {r.nu:11.7f} {om} {r.eta:9.5f}")
    return 0


def run_gaussian(ns: argparse.Namespace) -> int:
    from symbrg.rg.lpa import gaussian_fixed_point
    g = gaussian_fixed_point(ns.regulator, parse_dimension(ns.dim), ns.order)
    if ns.json:
        print(json.dumps({k: (sp.sstr(v) if not isinstance(v, (list, bool)) else
                              ([sp.sstr(x) for x in v] if isinstance(v, list) else v))
                          for k, v in g.items()}, indent=2))
        return 0
    print(f"Gaussian fixed point u' = 0 (LPA, expansion around zero field, order {ns.order})")
    for j, t in enumerate(g["theta"]):
        print(f"  phi^{2 * (j + 1):<3d} theta = {sp.sstr(t)}")
    print(f"  nu = {g['nu']}, eta = 0")
    return 0


def run_threshold(ns: argparse.Namespace) -> int:
    import mpmath

    from symbrg.core.checks import scalar
    from symbrg.rg.regulators import W, regulator, working_precision
    R = regulator(ns.regulator)
    working_precision("dps", ns.dps, R.has_closed_form)
    if ns.w is not None:
        R.check_mass("w", ns.w)
    d = parse_dimension(ns.dim)
    expr = R.threshold(ns.n, d, sp.nsimplify(scalar("eta", ns.eta)))
    if ns.w is None:
        print(f"ell^{d}_{ns.n}(w; eta={ns.eta}) = {sp.sstr(expr)}")
        return 0
    with mpmath.workdps(ns.dps):
        print(mpmath.nstr(R.threshold_value(ns.n, d, ns.w, ns.eta) if not getattr(d, "free_symbols", None)
                          else sp.N(expr.subs(W, ns.w)), ns.dps))
    return 0


def run_derive(ns: argparse.Namespace) -> int:
    from symbrg.core.checks import choice
    from symbrg.rg import erg, lpa
    if ns.what in ("wetterich", "lpa"):
        choice("truncation", ns.truncation, TRUNCATIONS)
    d = parse_dimension(ns.dim)
    if ns.what == "wetterich":
        dv = erg.wetterich_derivation(ns.regulator, d, truncation=ns.truncation)
    elif ns.what == "polchinski":
        parts = {"all": lambda: erg.polchinski_derivation(ns.regulator, d),
                 "toy": erg.toy_derivation,
                 "gaussian": lambda: erg.gaussian_modes_derivation(
                     None if ns.regulator == "any" else ns.regulator),
                 "wilson": lambda: erg.wilson_shell_derivation(d)}
        choice("part", ns.part, parts)
        dv = parts[ns.part]()
    elif ns.what == "lpa":
        dv = lpa.lpa_derivation(ns.regulator, d, ns.order, anomalous=ns.truncation == "lpa'", N=ns.N)
    else:
        dv = erg.free_theory_derivation(ns.regulator, d)
    print(render(dv, ns.format), end="")
    return 0


def register(commands, derive) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    sub = command_group(commands, "erg", help="exact RG: LPA fixed points, Gaussian exponents, threshold functions",
                        description="Functional (Wetterich) and Polchinski exact RG of a scalar field.",
                        epilog=ERG_EPILOG, dest="erg_command")

    p = sub.add_parser("lpa", help="Wilson-Fisher fixed point and exponents nu, omega in the LPA (LPA')",
                       description="Polynomial truncation of the dimensionless Z2 potential around its "
                       "minimum to order phi^(2N); Newton solve; critical exponents.",
                       epilog=ERG_EPILOG, formatter_class=fmt)
    _common(p)
    p.add_argument("--order", type=int, default=8, help="truncation order n: phi^(2n) (default 8)")
    p.add_argument("--truncation", default="lpa", choices=Names(TRUNCATIONS),
                   help="lpa (default) or lpa' (with eta)")
    p.add_argument("--table", action="store_true", help="convergence table for orders 2..n")
    p.add_argument("--N", type=int, default=1, help="O(N) model: number of field components (default 1)")
    p.add_argument("--dps", type=int, default=30, help="working digits, at least 15 (default 30)")
    p.add_argument("--json", action="store_true", help="print JSON (keys nu, omega, order, regulator, ...)")
    p.set_defaults(func=run_lpa)

    c = sub.add_parser("compare", help="nu, omega (eta) of the Wilson-Fisher point for several regulators",
                       epilog=ERG_EPILOG, formatter_class=fmt)
    c.add_argument("--dim", default="3", help="dimension (default 3)")
    c.add_argument("--regulators", nargs="+", default=["litim", "exponential", "sharp"],
                   help="regulators (default: litim exponential sharp): sharp, litim, exponential, "
                        "power:b, 'K:<expr in z>' or 'r:<expr in y>'")
    c.add_argument("--order", type=int, default=8, help="truncation order n: phi^(2n) (default 8)")
    c.add_argument("--truncation", default="lpa", choices=Names(TRUNCATIONS),
                   help="lpa (default) or lpa'")
    c.add_argument("--N", type=int, default=1, help="O(N) components (default 1)")
    c.add_argument("--dps", type=int, default=20, help="working digits, at least 15 (default 20)")
    c.add_argument("--json", action="store_true", help="print JSON (a list of fixed points)")
    c.set_defaults(func=run_compare)

    g = sub.add_parser("gaussian", help="exponents of the Gaussian fixed point (symbolic d allowed)",
                       epilog=ERG_EPILOG, formatter_class=fmt)
    _common(g, dim_default="d")
    g.add_argument("--order", type=int, default=5, help="number of couplings (default 5)")
    g.add_argument("--json", action="store_true", help="print JSON")
    g.set_defaults(func=run_gaussian)

    t = sub.add_parser("threshold", help="threshold function ell^d_n(w; eta) of a regulator",
                       epilog=ERG_EPILOG, formatter_class=fmt)
    _common(t)
    t.add_argument("--n", type=int, default=0, help="index n >= 0 (default 0)")
    t.add_argument("--w", type=float, default=None, help="evaluate at this w, above the pole of the "
                   "regulator (w > -1 for sharp, litim, exponential); default: print the formula")
    t.add_argument("--eta", type=float, default=0.0, help="anomalous dimension (default 0)")
    t.add_argument("--dps", type=int, default=15, help="working and printed digits, at least 15 (default 15)")
    t.set_defaults(func=run_threshold)

    helps = {"wetterich": "the Wetterich flow in the LPA / LPA' for a regulator",
             "polchinski": "the Polchinski flow: forms, Gaussian mode check, 0-d toy, Wilson shell",
             "lpa": "the LPA fixed-point derivation (beta functions, fixed point, exponents)",
             "free-scalar": "the free scalar under the exact RG; Polchinski vs Wetterich vacuum flows"}
    for what, text in helps.items():
        q = derive.add_parser(what, help=text, description=text[0].upper() + text[1:] + ".",
                              epilog=DERIVE_EPILOG, formatter_class=fmt)
        _common(q, dim_default="d" if what != "lpa" else "3")
        q.add_argument("--format", default="text", choices=FORMATS, help="output format (default text)")
        if what in ("wetterich", "lpa"):
            q.add_argument("--truncation", default="lpa", choices=Names(TRUNCATIONS),
                           help="lpa (default) or lpa'")
        if what == "polchinski":
            q.add_argument("--part", default="all", choices=Names(PARTS),
                           help="all (default), toy, gaussian, wilson")
        if what == "lpa":
            q.add_argument("--order", type=int, default=6, help="truncation order n: phi^(2n) (default 6)")
            q.add_argument("--N", type=int, default=1, help="O(N) components (default 1)")
        q.set_defaults(func=run_derive, what=what)
