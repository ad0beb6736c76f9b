"""``symbrg derive fisher``: print a Fisher metric in closed form (text, LaTeX or Markdown).

Job: parse a model description, call :mod:`symbrg.information.fisher`, render the derivation with
:func:`symbrg.core.printing.render`.
"""
from __future__ import annotations

import argparse

import sympy as sp

from symbrg.core.checks import integer, positive
from symbrg.core.errors import InvalidArgument, UnknownName
from symbrg.core.parsing import parse_expression, parse_list
from symbrg.core.symbols import symbol, symbols

MODELS = ("gaussian-regression", "gp", "normal")
#: Named kernels k(x, x') in the symbols x, x' (``nngp:<activation>[:depth]`` goes to symbrg.mlp).
KERNELS = {
    "rbf": "exp(-(x - xp)**2/(2*ell**2))",
    "scaled-rbf": "s2*exp(-(x - xp)**2/(2*ell**2))",
    "exponential": "exp(-Abs(x - xp)/ell)",
    "linear": "sigma_b**2 + sigma_w**2*x*xp",
    "periodic": "exp(-2*sin(pi*(x - xp)/period)**2/ell**2)",
}
_POSITIVE = ("ell", "s2", "sigma", "sigma_w", "sigma_b", "period", "s", "v")

EPILOG = """examples:
  symbrg derive fisher --model normal --jeffreys
  symbrg derive fisher --model gaussian-regression --f "a*x + b*x**2" --distribution normal:0,1
  symbrg derive fisher --model gaussian-regression --f "a*exp(-k*x)" --params a,k --data 0,1,2
  symbrg derive fisher --model gaussian-regression --f "m*x" --params m,sigma --sigma sigma --data 1,2
  symbrg derive fisher --model gp --kernel rbf --points 0,1 --format latex
  symbrg derive fisher --model gp --kernel "nngp:relu:1" --points 1,2 --noise 1/10

kernels: rbf, scaled-rbf, exponential, linear, periodic, nngp:<activation>[:depth]
(the NNGP of symbrg.mlp in sigma_w, sigma_b), or any expression in x, xp.
Expressions use numbers, names, + - * / ^ ** ( ) and the functions of symbrg.core.parsing
(exp, log, sqrt, sin, cos, tan, sinh, cosh, tanh, asin, acos, atan, erf, erfc, Abs, sign,
Heaviside, Max, Min, gamma); no Python is evaluated (see SECURITY.md).
"""


def _symbol(name: str) -> sp.Symbol:
    """A model symbol: real, and positive for the usual scale names."""
    return sp.Symbol(name, positive=True) if name in _POSITIVE else sp.Symbol(name, real=True)


def _symbols(expr_text: str, what: str) -> sp.Expr:
    """Parse one expression safely (:mod:`symbrg.core.parsing`); its names become :func:`_symbol`s."""
    return parse_expression(expr_text, what, new_symbols=_symbol)


def _list(text: str, what: str) -> list[sp.Expr]:
    """Parse a comma-separated list of expressions safely."""
    return parse_list(text, what, new_symbols=_symbol)


def _by_name(names: str, pool: set, what: str) -> list:
    lookup = {s.name: s for s in pool}
    out = []
    for n in [t.strip() for t in names.split(",") if t.strip()]:
        if n not in lookup:
            raise UnknownName(what, f"{n!r} does not occur; the model has {', '.join(sorted(lookup))}")
        out.append(lookup[n])
    return out


def _distribution(text: str) -> sp.Expr:
    """``normal:m,s`` (s > 0), ``uniform:a,b`` (a < b) or ``exponential:rate`` (rate > 0)."""
    import sympy.stats as st
    kind, _, args = text.partition(":")
    vals = _list(args, "distribution") if args else []
    table = {"normal": (st.Normal, 2), "uniform": (st.Uniform, 2), "exponential": (st.Exponential, 1)}
    if kind not in table:
        raise UnknownName("distribution", f"unknown {kind!r}; choose one of {', '.join(table)}")
    cls, count = table[kind]
    if len(vals) != count:
        raise InvalidArgument("distribution", f"{kind} needs {count} parameter(s), e.g. normal:0,1")
    if kind == "uniform" and (vals[1] - vals[0]).is_positive is False:
        raise InvalidArgument("distribution", f"uniform:a,b needs a < b, got {vals[0]}, {vals[1]}")
    if kind != "uniform":
        positive("distribution", vals[-1])
    return cls("X", *vals)


def _derive(ns: argparse.Namespace):
    from symbrg.information import fisher
    if ns.model == "normal":
        mu, s = sp.Symbol("mu", real=True), sp.Symbol("s", positive=True)
        return fisher.gaussian_family([mu], [[s]], [mu, s], name="normal")
    if ns.model == "gaussian-regression":
        x = symbol("x")
        f = _symbols(ns.f, "f")
        sigma = _symbols(ns.sigma, "sigma")
        pool = (f.free_symbols | sigma.free_symbols) - {x}
        params = _by_name(ns.params, pool, "params") if ns.params else sorted(f.free_symbols - {x}, key=str)
        if not params:
            raise InvalidArgument("f", "the model has no parameters")
        data = _list(ns.data, "data") if ns.data else None
        dist = _distribution(ns.distribution) if ns.distribution else None
        if data is None and dist is None:
            dist = _distribution("normal:0,1")
        return fisher.gaussian_regression(f, params, x, sigma=sigma, data=data, distribution=dist)
    # gp
    points = _list(ns.points, "points") if ns.points else list(sp.symbols("x_1 x_2", real=True))
    noise = _symbols(ns.noise, "noise")
    if ns.kernel.startswith("nngp:"):
        import symbrg
        _, act, *rest = ns.kernel.split(":")
        depth = rest[0] if rest else "1"
        if len(rest) > 1 or not (depth.isascii() and depth.isdigit()):
            raise InvalidArgument("kernel", f"expected nngp:<activation>[:depth] with an integer depth, "
                                            f"got {ns.kernel!r}")
        sw, sb = symbols("sigma_w sigma_b")
        arch = symbrg.mlp(act, integer("kernel", int(depth), minimum=1), sw, sb)
        pool = {sw, sb}
        params = _by_name(ns.params, pool, "params") if ns.params else [sw, sb]
        # the NNGP closed form is large: its identity check would dominate, so it is left to the tests
        return fisher.gaussian_process(arch, points, params, noise_var=noise, name="nngp-gp", verify=False)
    x, xp = symbol("x"), sp.Symbol("xp", real=True)
    k = _symbols(KERNELS.get(ns.kernel, ns.kernel), "kernel")
    pool = k.free_symbols - {x, xp}
    params = _by_name(ns.params, pool, "params") if ns.params else sorted(pool, key=str)
    if not params:
        raise InvalidArgument("kernel", "the kernel has no hyperparameters")
    return fisher.gaussian_process(k, points, params, noise_var=noise, inputs=(x, xp), name="gp")


def _handler(ns: argparse.Namespace) -> int:
    from symbrg.core.printing import render
    from symbrg.information import fisher
    metric = _derive(ns)
    d = metric.derivation
    if ns.jeffreys:
        prior = fisher.jeffreys_prior(metric)
        status = {True: "improper", False: "proper", None: "undecided"}[prior.improper]
        d.step(sp.Eq(sp.Symbol("\\pi_J"), prior.density, evaluate=False),
               f"Jeffreys prior $\\sqrt{{\\det I}}$ ({status}: {prior.reason}).", "eq:jeffreys",
               cites=("jeffreys1946",))
    print(render(d, ns.format), end="")
    return 0


def register(commands, derive) -> None:
    """Attach ``symbrg derive fisher``."""
    from symbrg.core.printing import FORMATS
    p = derive.add_parser("fisher", help="Fisher information metric in closed form",
                          description="Derive a Fisher information metric in closed form and print its "
                                      "derivation.", epilog=EPILOG,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=MODELS, default="gaussian-regression",
                   help="gaussian-regression: y = f(x) + N(0, sigma^2); gp: a Gaussian process on "
                        "points; normal: N(mu, s) (default: %(default)s)")
    p.add_argument("--f", default="a*x + b", help="regression function of x (default: %(default)s)")
    p.add_argument("--params", default="", help="comma-separated parameters (default: all symbols)")
    p.add_argument("--sigma", default="1", help="noise standard deviation: a number or a symbol, "
                                                "which may be a parameter (default: %(default)s)")
    p.add_argument("--data", default="", help="comma-separated inputs to average over")
    p.add_argument("--distribution", default="", help="input distribution: normal:m,s | uniform:a,b | "
                                                      "exponential:rate (default normal:0,1)")
    p.add_argument("--kernel", default="rbf", help="GP kernel name or expression in x, xp "
                                                   "(default: %(default)s)")
    p.add_argument("--points", default="", help="GP input points (default: symbolic x_1, x_2)")
    p.add_argument("--noise", default="0", help="GP observation-noise variance (default: %(default)s)")
    p.add_argument("--jeffreys", action="store_true", help="append the Jeffreys prior sqrt(det I)")
    p.add_argument("--format", choices=FORMATS, default="text", help="output format (default: %(default)s)")
    p.set_defaults(func=_handler)
