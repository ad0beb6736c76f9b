r"""``symbrg demo``: a one-minute tour of symbrg that derives, prints, checks and writes LaTeX.

Job: show the package end to end.  The tour

1. derives the depth-3 ReLU NNGP per-layer map :math:`K^{l+1} = \sigma_b^2 + \sigma_w^2
   \mathbb E[\varphi(u)\varphi(v)]`, prints it and its LaTeX;
2. checks the compiled kernel against a Monte-Carlo ensemble of finite-width networks: for every
   pair of inputs the sample mean of :math:`f(x)f(x')` over :math:`M` networks must lie within
   5 standard errors (:math:`\hat s/\sqrt M`, from the sample) of :math:`K^{L}(x, x')`;
3. a Fisher metric, 4. a BRG flow and 5. the cos-net BRG = ERG theorem certificate, each taken
   from the derivations library (:mod:`symbrg.documents.library`) when its engine is installed;

and writes every derivation as a standalone LaTeX document into a folder it names.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from symbrg.core import checks
from symbrg.core.derivation import Derivation
from symbrg.core.errors import OutputExists
from symbrg.core.references import to_bibtex
from symbrg.documents import library

if TYPE_CHECKING:
    import sympy as sp

EPILOG = """examples:
  symbrg demo                      # the tour; LaTeX goes to a fresh temporary folder
  symbrg demo --out tour/          # ... into tour/ (existing files need --force)
  symbrg demo --quick              # a smaller ensemble, for a quick look
"""

#: The demo network: depth-3 ReLU MLP, NTK parameterization (neural-tangents convention).
ACTIVATION, DEPTH, SIGMA_W, SIGMA_B = "relu", 3, 1.4, 0.1

#: Tour parts taken from the library: (heading, library-name prefixes tried in order).
LIBRARY_PARTS = (
    ("Fisher metric", ("fisher",), ()),
    ("BRG flow", ("brg",), ()),
    ("Theorem certificate: cos-net BRG = free-scalar ERG", ("cosnet-theorem", "cosnet"),
     ("eq:propagator", "eq:exponents")),
)
STANDARD_ERRORS = 5.0


def _say(text: str = "") -> None:
    print(text, flush=True)


def ensemble_check(inputs: np.ndarray, members: int, width: int, *, seed: int = 0,
                   block: int = 200) -> dict[str, Any]:
    r"""Monte-Carlo NNGP of the demo network: the mean of :math:`f(x_i) f(x_j)` over ``members``
    finite-width networks (:func:`symbrg.ensembles.ensemble.nngp_comparison`, drawn in blocks of ``block``)
    against the kernel of :func:`symbrg.mlp`.

    Returns ``kernel`` (exact, P x P), ``mc`` (sample mean), ``se`` (standard error of the mean,
    from the sample) and ``ok`` (every entry within :data:`STANDARD_ERRORS` standard errors).
    """
    from symbrg.ensembles.ensemble import Comparison, nngp_comparison
    from symbrg.ensembles.networks import network
    from symbrg.kernels.architecture import mlp
    x = checks.finite_array("inputs", inputs, ndim=2)
    width = checks.integer("width", width, minimum=1)
    net = network((x.shape[1],) + (width,) * DEPTH + (1,), ACTIVATION, sigma_w=SIGMA_W,
                  sigma_b=SIGMA_B, parameterization="ntk")
    sample = nngp_comparison(net, x, members, seed=seed, block=block)
    kernel = mlp(ACTIVATION, DEPTH, SIGMA_W, SIGMA_B).nngp(x)
    c = Comparison(sample.empirical, sample.stderr, kernel, sample.members)
    return {"kernel": kernel, "mc": c.empirical, "se": c.stderr, "ok": c.agrees(STANDARD_ERRORS),
            "members": c.members, "width": width}


def _write(out: Path, name: str, d: Derivation, force: bool) -> Path:
    path = out / f"{name}.tex"
    with checks.atomic_write(path, force=force, argument="--out") as fh:
        fh.write(d.to_latex())
    return path


def _statement_text(d: Derivation, labels: tuple[str, ...] = (), limit: int = 6) -> list[str]:
    """The statements to show: those of ``labels`` (when present), else the result's."""
    import sympy as sp
    known = {st.label for st in d.steps}
    steps = [d[label] for label in labels if label in known] or [d.result]
    lines: list[str] = []
    for st in [x for step in steps for x in step.statements][:limit]:
        lines += (st if isinstance(st, str) else sp.sstr(st)).splitlines()
    return lines


def per_layer_map() -> "sp.Equality":
    r"""The demo network's per-layer NNGP map :math:`K^{(l+1)}_{12} = \sigma_b^2 + \sigma_w^2\,
    \mathbb E[\varphi(u)\varphi(v)]`, the expectation written out by the Gaussian-expectation
    engine at :math:`(q_{11}, q_{12}, q_{22}) = (K^{(l)}_{11}, K^{(l)}_{12}, K^{(l)}_{22})`."""
    import sympy as sp

    from symbrg.gaussian.expectations import Q11, Q12, Q22, expectation
    from symbrg.kernels.architecture import mlp
    arch = mlp(ACTIVATION, DEPTH, SIGMA_W, SIGMA_B)
    sym = {s.name: s for s in arch.values}
    k = {ij: sp.Symbol(f"K^{{(l)}}_{{{ij}}}", positive=ij != "12", real=True) for ij in ("11", "12", "22")}
    closed = library.explicit_closed_form(expectation(ACTIVATION).explicit())
    rhs = sym["sigma_b"] ** 2 + sym["sigma_w"] ** 2 * closed.xreplace(
        {Q11: k["11"], Q12: k["12"], Q22: k["22"]})
    return sp.Eq(sp.Symbol("K^{(l+1)}_{12}", real=True), rhs)


def _kernel_part(out: Path, force: bool) -> Path:
    import sympy as sp

    from symbrg.core.printing import display
    from symbrg.kernels.architecture import mlp
    _say(f"[1/5] Kernel: the NNGP of a depth-{DEPTH} ReLU network (sigma_w = {SIGMA_W}, "
         f"sigma_b = {SIGMA_B}; neural-tangents convention)")
    _say("  K^(0)(x,x') = sigma_b^2 + sigma_w^2 x.x'/d,  K^(l+1) = sigma_b^2 + sigma_w^2 "
         "E[phi(u) phi(v)],  (u,v) ~ N(0, K^(l))")
    eq = per_layer_map()
    _say("  per-layer map, derived by the Gaussian-expectation engine (Cho-Saul arc-cosine kernel):")
    for chunk in _wrap(sp.sstr(eq), 96):
        _say("    " + chunk)
    _say("  its LaTeX:")
    for line in display(eq, width=float("inf")).splitlines():
        _say("    " + line)
    prog = mlp(ACTIVATION, DEPTH, SIGMA_W, SIGMA_B).nngp_program
    _say(f"  kernel program: {len(prog)} assignments for depth {DEPTH} (a DAG, linear in depth), "
         "compiled to NumPy with CSE:")
    for line in prog.to_text().splitlines():
        _say("    " + (line if len(line) <= 100 else line[:97] + "..."))
    d = library.kernel_map(ACTIVATION, "nngp", depth=DEPTH)
    d.name = f"nngp-{ACTIVATION}-depth{DEPTH}"
    path = _write(out, d.name, d, force)
    _say(f"  wrote {path}")
    return path


def _mc_part(quick: bool, seed: int) -> bool:
    members, width = (400, 64) if quick else (4000, 128)
    rng = np.random.default_rng(seed + 1)
    x = rng.standard_normal((4, 5))
    _say(f"[2/5] Monte-Carlo check: {members} random networks of width {width} "
         f"(depth {DEPTH}), 4 inputs in d = 5")
    t0 = time.perf_counter()
    r = ensemble_check(x, members, width, seed=seed)
    _say(f"  {'entry':>6} {'NNGP (exact)':>13} {'ensemble':>10} {'std. err.':>10} {'|diff|/se':>9}")
    p = x.shape[0]
    for i in range(p):
        for j in range(i, p):
            k, m, s = r["kernel"][i, j], r["mc"][i, j], r["se"][i, j]
            _say(f"  ({i},{j})  {k:13.6f} {m:10.6f} {s:10.6f} {abs(m - k) / s:9.2f}")
    verdict = "PASS" if r["ok"] else "FAIL"
    _say(f"  {verdict}: every entry within {STANDARD_ERRORS:g} standard errors "
         f"(tolerance from M = {members}; {time.perf_counter() - t0:.1f} s)")
    return r["ok"]


def _library_part(index: int, heading: str, prefixes: tuple[str, ...], labels: tuple[str, ...],
                  out: Path, force: bool) -> Path | None:
    _say(f"[{index}/5] {heading}")
    names = library.names()
    pick = next((n for pre in prefixes for n in names if n.startswith(pre)), None)
    if pick is None:
        _say("  (its engine is not installed in this build: skipped)")
        return None
    d = library.build(pick)
    _say(f"  {d.title}")
    for line in _statement_text(d, labels):
        for chunk in _wrap(line):
            _say("    " + chunk)
    checked = [s for s in d.steps if s.verification.kind != "assumed"]
    good = sum(s.verification.verified for s in checked)
    _say(f"  {len(d.steps)} steps; {good} of {len(checked)} checked steps verified "
         f"(symbolic simplification and {max((s.verification.dps for s in checked), default=0)}"
         f"-digit spot checks): {'VERIFIED' if d.verified and checked else 'NOT fully verified'}")
    path = _write(out, pick, d, force)
    _say(f"  wrote {path}")
    return path


def _wrap(line: str, width: int = 100) -> list[str]:
    import textwrap
    return textwrap.wrap(line, width, break_on_hyphens=False) or [""]


def _planned(out: Path) -> list[Path]:
    names = [f"nngp-{ACTIVATION}-depth{DEPTH}"]
    available = library.names()
    for _, prefixes, _ in LIBRARY_PARTS:
        pick = next((n for pre in prefixes for n in available if n.startswith(pre)), None)
        if pick:
            names.append(pick)
    return [out / f"{n}.tex" for n in names] + [out / library.BIBFILE]


def run(ns: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    out = Path(ns.out) if ns.out else Path(tempfile.mkdtemp(prefix="symbrg-demo-"))
    if out.exists() and not out.is_dir():
        raise OutputExists("--out", f"{out} exists and is not a directory")
    clash = [p for p in _planned(out) if p.exists()]
    if clash and not ns.force:
        raise OutputExists("--out", f"{clash[0]} exists; pass --force to overwrite")
    out.mkdir(parents=True, exist_ok=True)
    _say(f"symbrg demo: a tour of the package; LaTeX documents go to {out}\n")
    _kernel_part(out, ns.force)
    _say()
    ok = _mc_part(ns.quick, ns.seed)
    written = 1
    for k, (heading, prefixes, labels) in enumerate(LIBRARY_PARTS, 3):
        _say()
        written += _library_part(k, heading, prefixes, labels, out, ns.force) is not None
    with checks.atomic_write(out / library.BIBFILE, force=ns.force, argument="--out") as fh:
        fh.write(to_bibtex())                            # resolves the documents' \cite keys
    _say(f"\n{written} LaTeX document(s) and {library.BIBFILE} in {out} (pdflatex, bibtex, pdflatex); "
         f"tour took {time.perf_counter() - t0:.1f} s")
    return 0 if ok else 1


def register(commands, derive) -> None:
    p = commands.add_parser(
        "demo", help="a one-minute tour: kernel, ensemble check, Fisher metric, BRG flow, theorem",
        description="Derive the depth-3 ReLU NNGP map, print it and its LaTeX, check it against a "
                    "Monte-Carlo ensemble of finite-width networks, then show a Fisher metric, a BRG "
                    "flow and the cos-net theorem certificate; every derivation is written as a "
                    "LaTeX document into a folder the demo names.  Exit status 1 if a check fails.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", metavar="DIR", help="folder for the LaTeX documents (default: a fresh "
                   "temporary folder, printed)")
    p.add_argument("--force", action="store_true", help="overwrite existing documents in --out")
    p.add_argument("--quick", action="store_true", help="a smaller Monte-Carlo ensemble (400 networks)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the ensemble (default 0)")
    p.set_defaults(func=run)
