"""``symbrg limits``: list every work bound, its value in force and how to lift it."""
from __future__ import annotations

import argparse
import importlib

from symbrg.core import limits

#: The modules that declare limits (importing them registers their Limit objects).
ENGINES = ("symbrg.kernels.architecture", "symbrg.gaussian.activations", "symbrg.core.parsing", "symbrg.information.fisher", "symbrg.rg.brg",
           "symbrg.rg.erg", "symbrg.rg.lpa", "symbrg.cosnet.theory", "symbrg.cosnet.theorem", "symbrg.ensembles.experiment")


def run(ns: argparse.Namespace) -> int:
    for name in ENGINES:
        importlib.import_module(name)
    rows = sorted(limits.registry().values(), key=lambda lim: lim.name)
    width = max(len(lim.name) for lim in rows)
    for lim in rows:
        value = lim.value
        note = "" if value == lim.default else f" (default {limits.format_number(lim.default)})"
        print(f"{lim.name:{width}s}  {limits.format_number(value):>14s}{note}  {lim.what}")
    print(f"\nlift one with: symbrg --limit NAME=N ..., ${limits.ENV}=NAME=N,..., or "
          "symbrg.core.limits.lifted(NAME=N) in Python")
    return 0


def register(commands, derive) -> None:
    p = commands.add_parser("limits", help="list the work bounds and how to lift them",
                            description="List every named bound on work that scales with a parameter "
                                        "(depth, digits, Gram size, ...): a request above its bound is "
                                        "refused before it starts.")
    p.set_defaults(func=run)
