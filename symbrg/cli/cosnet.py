"""``symbrg prove cosnet-erg`` and ``symbrg derive cosnet``: the cos-net BRG = ERG theorem.

Job: parse the dimension, regulator and mutation, build the certificate with :mod:`symbrg.cosnet.certificate`,
print it (text, LaTeX, Markdown or JSON with ``identities`` and ``mutations``) and exit 0 only when every
identity is verified and every named mutation refused (1 otherwise; always 1 with ``--mutate``).
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Any

from symbrg.cli import Names, command_group, progress

#: What --sweep covers: these dimensions x every regulator of the theorem (order 1/N: its boxes, sharp shell).
SWEEP_DIMS = ("1", "2", "3", "4")
FINITE_DIMS = ("1", "2", "3")
#: Random 30-digit evaluations per identity of the infinite-width certificate.
DEFAULT_POINTS = 6

EPILOG = """examples:
  symbrg prove cosnet-erg --dim 3 --regulator sharp
  symbrg prove cosnet-erg --dim d --regulator litim --json
  symbrg prove cosnet-erg --dim 2 --regulator exponential --format latex > theorem.tex
  symbrg prove cosnet-erg --dim 3 --regulator litim --mutate swap-regulator   # exits 1
  symbrg prove cosnet-erg --sweep                                  # dims 1..4 x the three regulators
  symbrg prove cosnet-erg --dim 1,2,3 --regulator sharp,litim --scheduler tcp://head:8786
  symbrg prove cosnet-erg --order 1/N --dim 3                     # the interacting theory at width N
  symbrg prove cosnet-erg --order 1/N --mutate tadpole-sign       # exits 1

The certificate proves that the information-shell (Bayesian RG) coarse graining of the generalized
cos-net (frequencies uniform in the ball |b| < R, readout scale (b^2+m^2)^(-1/2)) is the Polchinski
flow of the free scalar with UV cutoff k(Lambda)^2 = T/(2 N sigma_eps^2 Lambda) - m^2.  The two sides
share only the architecture; every identity is evaluated at random points with 30-digit mpmath, and
named mutations of the BRG side (--mutate) must each falsify at least one identity.  Exit status 0
only when every identity is verified and every mutation refused, 1 otherwise, 2 on bad input.
--dim: an integer >= 1, or d for a symbolic dimension.

--order 1/N: the finite-width theorem.  Removing the sloppy readouts is the projection of the field onto
|p| < k(Lambda) for every draw of the weights (any N); at order 1/N the coarse-grained network's Edgeworth
action equals Polchinski's flow of the full network's action (the vertex does not flow, the quadratic
coupling flows by the tadpole), compared exactly on periodic boxes; 8 named mutations must each fail.

A sweep (--sweep, or comma-separated --dim/--regulator values) prints one row per certificate
(--json: a list); with --scheduler (or $DASK_SCHEDULER_ADDRESS) the certificates run as tasks on
that dask.distributed cluster (the [dask] extra), with the same rows as a local sweep.
"""

DERIVE_EPILOG = """examples:
  symbrg derive cosnet --dim 3 --regulator sharp --format latex
  symbrg derive cosnet --dim d --regulator exponential
  symbrg derive cosnet --order 1/N --dim 3 --format latex        # the finite-width vertices and their flow
"""


def _certificate(ns: argparse.Namespace):
    from symbrg.core.checks import choice
    from symbrg.cosnet.certificate import certify
    from symbrg.cosnet.theorem import DIM
    from symbrg.cosnet.theory import REGULATOR_NAMES, D, _dim
    from symbrg.rg.regulators import regulator
    reg = regulator(ns.regulator)  # parsed once, at the boundary
    choice("regulator", reg.name, REGULATOR_NAMES)
    mutate = getattr(ns, "mutate", None)
    if getattr(ns, "order", "0") == "1/N":
        from symbrg.cosnet.finite_width_certificate import certify_finite_width
        return certify_finite_width(_finite_dim(ns.dim, getattr(ns, "points", None)), reg, mutate=mutate)
    d = _dim(ns.dim)
    if d != D:
        DIM.check("dim", d, cost="about 2 s")
    points = ns.points if ns.points is not None else DEFAULT_POINTS
    return certify(d, reg, points=points, mutate=mutate)


def _finite_dim(dim: str, points: int | None) -> int:
    """The dimension of an order-1/N certificate (1, 2 or 3: its periodic boxes); ``--points`` is refused there."""
    from symbrg.core.errors import InvalidArgument
    if points is not None:
        raise InvalidArgument("points", "the order-1/N certificate is exact (rational arithmetic): it has no "
                                        "random points")
    if dim not in ("1", "2", "3"):
        raise InvalidArgument("dim", f"at order 1/N the certificate has boxes in d = 1, 2, 3, got {dim!r}")
    return int(dim)


def _values(text: str, option: str) -> list[str]:
    """The comma-separated values of ``--dim`` or ``--regulator`` (each non-empty)."""
    from symbrg.core.errors import InvalidArgument
    values = [v.strip() for v in text.split(",")]
    if not all(values):
        raise InvalidArgument(option, f"expected one value or comma-separated values, got {text!r}")
    return values


def _sweep_row(dim: str, regulator: str, points: int | None, mutate: str | None,
               bounds: dict[str, float], order: str = "0") -> dict[str, Any]:
    """One row of a sweep: the certificate of (``dim``, ``regulator``) summarized (a task on a
    cluster: it carries the work bounds in force where the sweep was started)."""
    from symbrg.core import limits
    with limits.lifted(**bounds):
        cert = _certificate(argparse.Namespace(dim=dim, regulator=regulator, points=points, mutate=mutate,
                                               order=order))
    rows = cert.identities
    return {"dim": dim, "regulator": regulator, "verified": bool(cert.verified),
            "identities_verified": sum(bool(r["verified"]) for r in rows), "identities": len(rows),
            "mutations_refused": sum(bool(m["falsified"]) for m in cert.mutations),
            "mutations": len(cert.mutations), "vacuous": list(cert.vacuous),
            "failed": [r["name"] for r in rows if not r["verified"]]}


def _sweep(ns: argparse.Namespace, dims: list[str], regulators: list[str]) -> int:
    """Certificates for every (dim, regulator), here or as tasks on a dask.distributed cluster;
    one row each, in the order dims x regulators."""
    from symbrg.core import limits
    from symbrg.core.errors import InvalidArgument, SymbrgError
    if ns.format != "text":
        raise InvalidArgument("format", "a sweep prints one row per certificate (or --json): --format goes "
                                        "with a single --dim and --regulator")
    pairs = [(d, r) for d in dims for r in regulators]
    for d, r in pairs:                               # every value checked before any work
        _checked(d, r, ns.order, ns.points)
    bounds = {k: v for k, v in limits.current().items() if v > 0}
    client = None
    try:
        if ns.scheduler is not None or os.environ.get("DASK_SCHEDULER_ADDRESS", "").strip():
            from symbrg.kernels.chunked import client_from
            client = client_from(ns.scheduler)
        if client is not None:
            futures = [client.submit(_sweep_row, d, r, ns.points, ns.mutate, bounds, ns.order, pure=False) for d, r in pairs]
            rows = client.gather(futures)
        else:
            rows = []
            with progress.bar(ns, total=len(pairs), desc="certificates", unit="cert") as bar:
                for d, r in pairs:
                    rows.append(_sweep_row(d, r, ns.points, ns.mutate, bounds, ns.order))
                    bar.update(1)
    except SymbrgError as exc:
        if exc.argument in ("address", "client"):
            exc.argument = "scheduler"
        raise
    finally:
        if client is not None:
            client.close()
    ok = all(row["verified"] for row in rows)
    if ns.json:
        print(json.dumps({"theorem": "cosnet-erg", "order": ns.order, "mutate": ns.mutate, "verified": ok,
                          "sweep": rows}, indent=2))
    else:
        for row in rows:
            print(f"dim {row['dim']:<3} {row['regulator']:<12} {'VERIFIED    ' if row['verified'] else 'NOT VERIFIED'} "
                  f"{row['identities_verified']}/{row['identities']} identities"
                  + (f", {row['mutations_refused']}/{row['mutations']} mutations refused" if row["mutations"] else "")
                  + (f"; failed: {', '.join(row['failed'])}" if row["failed"] else ""))
        print(f"{sum(row['verified'] for row in rows)}/{len(rows)} certificates verified"
              + (f" [mutation {ns.mutate}]" if ns.mutate else ""))
    return 0 if ok else 1


def _checked(dim: str, regulator: str, order: str = "0", points: int | None = None) -> None:
    """The checks :func:`_certificate` makes before its work (dimension, its limit, the regulator)."""
    from symbrg.core.checks import choice
    from symbrg.core.errors import Unsupported
    from symbrg.cosnet.theorem import DIM
    from symbrg.cosnet.theory import REGULATOR_NAMES, D, _dim
    from symbrg.rg.regulators import regulator as parse_regulator
    reg = parse_regulator(regulator)
    choice("regulator", reg.name, REGULATOR_NAMES)
    if order == "1/N":
        _finite_dim(dim, points)
        if not reg.is_sharp:
            raise Unsupported("regulator", "at order 1/N the BRG = ERG correspondence holds for the sharp shell only")
        return
    d = _dim(dim)
    if d != D:
        DIM.check("dim", d, cost="about 2 s")


def _prove(ns: argparse.Namespace) -> int:
    from symbrg.core.printing import render
    from symbrg.cosnet.theory import REGULATOR_NAMES
    finite = ns.order == "1/N"
    dims = _values(ns.dim, "dim") if ns.dim is not None else list(
        (FINITE_DIMS if finite else SWEEP_DIMS) if ns.sweep else ("3",))
    regulators = (_values(ns.regulator, "regulator") if ns.regulator is not None
                  else list(REGULATOR_NAMES if ns.sweep and not finite else ("sharp",)))
    if ns.sweep or len(dims) * len(regulators) > 1:
        return _sweep(ns, dims, regulators)
    if ns.scheduler is not None:
        from symbrg.core.errors import InvalidArgument
        raise InvalidArgument("scheduler", "--scheduler runs a sweep (--sweep, or several --dim/--regulator "
                                           "values) on a cluster; one certificate runs here")
    ns.dim, ns.regulator = dims[0], regulators[0]
    cert = _certificate(ns)
    rows = cert.identities
    ok = cert.verified
    if ns.json:
        print(json.dumps({"theorem": "cosnet-erg", "order": ns.order, "dim": str(ns.dim), "regulator": ns.regulator,
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
                  f"{(f'{err:.1e}' if err is not None else '-')} ({r['points']} pts, "
                  + (f"{r['dps']} digits)" if r["dps"] else "exact)"))
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
    p.add_argument("--points", type=int, default=None,
                   help=f"random 30-digit evaluations per identity; default {DEFAULT_POINTS} (none at order 1/N)")
    p.add_argument("--order", default="0", choices=("0", "1/N"),
                   help="0: infinite width (the free field); 1/N: the interacting theory at width N, exact on "
                        "periodic boxes in d = 1, 2, 3, sharp shell; default 0")


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
    p.set_defaults(dim=None, regulator=None)        # None: 3 and sharp, or every value with --sweep
    p.add_argument("--sweep", action="store_true", help="certificates for dims 1..4 x the three regulators "
                   "(or the comma-separated --dim/--regulator values given), one row each")
    p.add_argument("--scheduler", metavar="ADDRESS", help="run a sweep's certificates on the dask.distributed "
                   "cluster at ADDRESS (e.g. tcp://head:8786; default $DASK_SCHEDULER_ADDRESS, else here)")
    p.add_argument("--json", action="store_true", help="print JSON: verified, identities[name, symbolic_zero, "
                                                       "max_abs_numeric, ...]")
    p.add_argument("--format", default="text", choices=FORMATS, help="document format when not --json; default text")
    from symbrg.cosnet.certificate import MUTATIONS
    from symbrg.cosnet.finite_width_certificate import MUTATIONS as FINITE
    p.add_argument("--mutate", default=None, choices=tuple(dict.fromkeys([*MUTATIONS, *FINITE])), metavar="NAME",
                   help="run one named mutation instead (infinite width: " + ", ".join(MUTATIONS)
                        + "; order 1/N: " + ", ".join(FINITE) + "); exit status 1: it must not verify")
    p.set_defaults(func=_prove)
    d = derive.add_parser("cosnet", help="the cos-net BRG = ERG theorem as a derivation",
                          description="Print the proof certificate of the cos-net theorem as a document.",
                          epilog=DERIVE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(d)
    d.add_argument("--format", default="text", choices=FORMATS, help="output format; default text")
    d.set_defaults(func=_derive)
