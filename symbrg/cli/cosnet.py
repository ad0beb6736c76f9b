"""``symbrg prove cosnet-erg`` and ``symbrg derive cosnet``: the cos-net BRG = ERG theorem.

Job: parse the dimension, regulator and mutation, build the certificate with :mod:`symbrg.cosnet.certificate`,
print it (text, LaTeX, Markdown or JSON with ``identities`` and ``mutations``) and exit 0 only when every
identity is verified and every named mutation refused (1 otherwise; always 1 with ``--mutate``).
"""
from __future__ import annotations

import argparse
import json

from symbrg.cli import Names, command_group

EPILOG = """examples:
  symbrg prove cosnet-erg --dim 3 --regulator sharp
  symbrg prove cosnet-erg --dim d --regulator litim --json
  symbrg prove cosnet-erg --dim 2 --regulator exponential --format latex > theorem.tex
  symbrg prove cosnet-erg --dim 3 --regulator litim --mutate swap-regulator   # exits 1

The certificate proves that the information-shell (Bayesian RG) coarse graining of the generalized
cos-net (frequencies uniform in the ball |b| < R, readout scale (b^2+m^2)^(-1/2)) is the Polchinski
flow of the free scalar with UV cutoff k(Lambda)^2 = T/(2 N sigma_eps^2 Lambda) - m^2.  The two sides
share only the architecture; every identity is evaluated at random points with 30-digit mpmath, and
named mutations of the BRG side (--mutate) must each falsify at least one identity.  Exit status 0
only when every identity is verified and every mutation refused, 1 otherwise, 2 on bad input.
--dim: an integer >= 1, or d for a symbolic dimension.
"""

DERIVE_EPILOG = """examples:
  symbrg derive cosnet --dim 3 --regulator sharp --format latex
  symbrg derive cosnet --dim d --regulator exponential
"""


def _certificate(ns: argparse.Namespace):
    from symbrg.core.checks import choice
    from symbrg.cosnet.certificate import certify
    from symbrg.cosnet.theorem import DIM
    from symbrg.cosnet.theory import REGULATOR_NAMES, D, _dim
    from symbrg.rg.regulators import regulator
    reg = regulator(ns.regulator)  # parsed once, at the boundary
    choice("regulator", reg.name, REGULATOR_NAMES)
    d = _dim(ns.dim)
    if d != D:
        DIM.check("dim", d, cost="about 2 s")
    return certify(d, reg, points=ns.points, mutate=getattr(ns, "mutate", None))


def _prove(ns: argparse.Namespace) -> int:
    from symbrg.core.printing import render
    cert = _certificate(ns)
    rows = cert.identities
    ok = cert.verified
    if ns.json:
        print(json.dumps({"theorem": "cosnet-erg", "dim": str(ns.dim), "regulator": ns.regulator,
                          "mutate": ns.mutate, "verified": ok, "identities": rows,
                          "mutations": cert.mutations, "vacuous": cert.vacuous}, indent=2))
    elif ns.format != "text":
        print(render(cert.document(), ns.format), end="")
    else:
        print(cert.derivation.title)
        width = max(len(r["name"]) for r in rows)
        for r in rows:
            err = r["max_abs_numeric"]
            print(f"  {'ok ' if r['verified'] else 'FAIL'} {r['name']:<{width}}  symbolic 0: "
                  f"{'yes' if r['symbolic_zero'] else 'no '}  max |numeric| = "
                  f"{(f'{err:.1e}' if err is not None else '-')} ({r['points']} pts, {r['dps']} digits)")
        for m in cert.mutations:
            print(f"  mutation {m['name']}: {'REFUSED' if m['falsified'] else 'NOT REFUSED'} "
                  f"(falsifies {', '.join(m['falsified']) or 'nothing'})")
        if cert.vacuous:
            print(f"  vacuous identities (no mutation falsifies them): {', '.join(cert.vacuous)}")
        print(f"{'VERIFIED' if ok else 'NOT VERIFIED'}: {sum(r['verified'] for r in rows)}/{len(rows)} identities"
              + (f" [mutation {ns.mutate}]" if ns.mutate else ""))
    return 0 if ok else 1


def _derive(ns: argparse.Namespace) -> int:
    from symbrg.core.printing import render
    print(render(_certificate(ns).document(), ns.format), end="")
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dim", default="3", help="dimension: an integer >= 1 or 'd' (symbolic); default 3")
    from symbrg.cosnet.theory import REGULATOR_NAMES
    p.add_argument("--regulator", default="sharp", choices=Names(REGULATOR_NAMES),
                   help="sharp, litim or exponential; default sharp")
    p.add_argument("--points", type=int, default=6, help="random 30-digit evaluations per identity; default 6")


def register(commands: argparse._SubParsersAction, derive: argparse._SubParsersAction) -> None:
    from symbrg.core.printing import FORMATS
    which = command_group(commands, "prove", help="machine-checked theorems (cosnet-erg)",
                          description="Build and check a proof certificate.", dest="theorem",
                          metavar="THEOREM", epilog="examples:\n  symbrg prove cosnet-erg --dim 3 --regulator sharp\n")
    p = which.add_parser("cosnet-erg", help="BRG coarse graining of the generalized cos-net = ERG of a free scalar",
                         description="Prove that information-shell coarse graining of the generalized cos-net "
                                     "is the momentum-shell (Polchinski / Wetterich) flow of a free scalar.",
                         epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    p.add_argument("--json", action="store_true", help="print JSON: verified, identities[name, symbolic_zero, "
                                                       "max_abs_numeric, ...]")
    p.add_argument("--format", default="text", choices=FORMATS, help="document format when not --json; default text")
    from symbrg.cosnet.certificate import MUTATIONS
    p.add_argument("--mutate", default=None, choices=tuple(MUTATIONS), metavar="NAME",
                   help="run one named mutation of the BRG side instead (" + ", ".join(MUTATIONS)
                        + "); exit status 1: it must not verify")
    p.set_defaults(func=_prove)
    d = derive.add_parser("cosnet", help="the cos-net BRG = ERG theorem as a derivation",
                          description="Print the proof certificate of the cos-net theorem as a document.",
                          epilog=DERIVE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(d)
    d.add_argument("--format", default="text", choices=FORMATS, help="output format; default text")
    d.set_defaults(func=_derive)
