"""``symbrg derive brg``: print the Bayesian-RG flow of an infinite-width network's posterior.

Job: parse the architecture and regulator, call :mod:`symbrg.rg.brg` (and :mod:`symbrg.rg.posterior` for
the training flow), render with :func:`symbrg.core.printing.render`.
"""
from __future__ import annotations

import argparse

EPILOG = """examples:
  symbrg derive brg --activation relu --depth 3
  symbrg derive brg --activation erf --depth 2 --regulator litim --format latex
  symbrg derive brg --activation tanh --depth 1 --regulator sharp --format markdown
  symbrg derive brg --part shell --regulator exponential
  symbrg derive brg --part training

parts: nngp (the information-shell flow of the NNGP posterior: Fisher spectrum = kernel spectrum,
m_Lambda(x), Sigma_Lambda(x,x'), flow equations, induced action and its Polchinski flow, Wilsonian
ridge relation, commuting diagram), shell (Eqs. (53)-(54) for one Gaussian mode), training (the
IR->UV training flow and its tau = 1/T diffusion), all.
regulators: sharp, litim, exponential, power:b, K:<expr in z> (the information-shell weight is
K(Lambda/lambda), the UV cutoff function of the exact RG).
"""

PARTS = ("nngp", "shell", "training", "all")


def _derivation(ns: argparse.Namespace):
    from symbrg.core.checks import choice
    from symbrg.rg.brg import information_shell_derivation, nngp_brg_derivation
    from symbrg.rg.posterior import training_flow_derivation
    from symbrg.rg.regulators import regulator
    choice("part", ns.part, PARTS)
    reg = regulator(ns.regulator)  # parsed once, at the boundary (UnknownName lists the choices)
    if ns.part == "shell":
        return information_shell_derivation(reg)
    if ns.part == "training":
        return training_flow_derivation()
    d = nngp_brg_derivation(ns.activation, ns.depth, ns.sigma_w, ns.sigma_b, reg, kernel=not ns.no_kernel)
    if ns.part == "all":
        d.extend(training_flow_derivation())
        d.extend(information_shell_derivation(reg))
    return d


def _handler(ns: argparse.Namespace) -> int:
    from symbrg.core.printing import render
    d = _derivation(ns)
    print(render(d, ns.format), end="")
    return 0


def register(commands: argparse._SubParsersAction, derive: argparse._SubParsersAction) -> None:
    p = derive.add_parser("brg", help="the Bayesian-RG flow of an infinite-width network's posterior",
                          description="Derive the information-shell (Bayesian RG) flow of the NNGP "
                                      "posterior of a deep network, with every identity verified.",
                          epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--activation", default="relu", help="activation name (symbrg.activation); default relu")
    p.add_argument("--depth", type=int, default=2, help="number of hidden layers; default 2")
    p.add_argument("--sigma-w", default="1", help="weight standard deviation; default 1")
    p.add_argument("--sigma-b", default="0", help="bias standard deviation; default 0")
    p.add_argument("--regulator", default="power:4",
                   help="information-shell regulator (sharp, litim, exponential, power:b, K:<expr>); "
                        "default power:4")
    p.add_argument("--part", default="nngp", choices=PARTS, help="which derivation; default nngp")
    p.add_argument("--no-kernel", action="store_true", help="omit the per-layer kernel recursion")
    from symbrg.core.printing import FORMATS
    p.add_argument("--format", default="text", choices=FORMATS, help="output format; default text")
    p.set_defaults(func=_handler)
