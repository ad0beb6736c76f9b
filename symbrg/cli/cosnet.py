"""``symbrg prove cosnet-erg`` and ``symbrg derive cosnet``: the cos-net BRG = ERG theorem.

Job: parse the dimension and regulator, build the certificate with :mod:`symbrg.cosnet.theorem`, print it
(text, LaTeX, Markdown or JSON) and exit 0 only when every identity is verified (1 otherwise).
"""
from __future__ import annotations

import argparse
import json

from symbrg.cli import command_group

EPILOG = """examples:
  symbrg prove cosnet-erg --dim 3 --regulator sharp
  symbrg prove cosnet-erg --dim d --regulator litim --json
  symbrg prove cosnet-erg --dim 2 --regulator exponential --format latex > theorem.tex

The certificate proves that the information-shell (Bayesian RG) coarse graining of the generalized
cos-net (frequencies uniform in the ball |b| < R, readout scale (b^2+m^2)^(-1/2)) is the Polchinski
flow of the free scalar with UV cutoff k(Lambda)^2 = T/(2 N sigma_eps^2 Lambda) - m^2; every identity
is simplified to zero and evaluated at random points with 30-digit mpmath.  Exit status 0 only when
every identity is verified, 1 when one is not, 2 on bad input.
--dim: an integer >= 1, or d for a symbolic dimension.
"""

DERIVE_EPILOG = """examples:
  symbrg derive cosnet --dim 3 --regulator sharp --format latex
  symbrg derive cosnet --dim d --regulator exponential
"""


def _certificate(ns: argparse.Namespace):
    from symbrg.core.checks import choice
    from symbrg.cosnet.theory import REGULATOR_NAMES
    from symbrg.cosnet.theorem import cosnet_erg_certificate
    choice("regulator", ns.regulator, REGULATOR_NAMES)
    return cosnet_erg_certificate(ns.dim, ns.regulator, points=ns.points)


def _prove(ns: argparse.Namespace) -> int:
    from symbrg.core.printing import render
    from symbrg.cosnet.theorem import identity_table
    cert = _certificate(ns)
    rows = identity_table(cert)
    ok = bool(cert.verified and rows and all(r["verified"] for r in rows))
    if ns.json:
        print(json.dumps({"theorem": "cosnet-erg", "dim": str(ns.dim), "regulator": ns.regulator,
                          "verified": ok, "identities": rows}, indent=2))
    elif ns.format != "text":
        print(render(cert, ns.format), end="")
    else:
        print(cert.title)
        width = max(len(r["name"]) for r in rows)
        for r in rows:
            err = r["max_abs_numeric"]
            print(f"  {'ok ' if r['verified'] else 'FAIL'} {r['name']:<{width}}  symbolic 0: "
                  f"{'yes' if r['symbolic_zero'] else 'no '}  max |numeric| = "
                  f"{(f'{err:.1e}' if err is not None else '-')} ({r['points']} pts, {r['dps']} digits)")
        print(f"{'VERIFIED' if ok else 'NOT VERIFIED'}: {sum(r['verified'] for r in rows)}/{len(rows)} identities")
    return 0 if ok else 1


def _derive(ns: argparse.Namespace) -> int:
    from symbrg.core.printing import render
    print(render(_certificate(ns), ns.format), end="")
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dim", default="3", help="dimension: an integer >= 1 or 'd' (symbolic); default 3")
    p.add_argument("--regulator", default="sharp", help="sharp, litim or exponential; default sharp")
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
    p.set_defaults(func=_prove)
    d = derive.add_parser("cosnet", help="the cos-net BRG = ERG theorem as a derivation",
                          description="Print the proof certificate of the cos-net theorem as a document.",
                          epilog=DERIVE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(d)
    d.add_argument("--format", default="text", choices=FORMATS, help="output format; default text")
    d.set_defaults(func=_derive)
