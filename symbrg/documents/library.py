r"""The library of named derivations: what ``symbrg export --all DIR`` regenerates.

Job: map a name (the file stem in ``derivations/``) to the engine function that derives it, and
write the whole library deterministically.  An :class:`Entry` is

.. math::  \text{name} \;\mapsto\; \texttt{module:function}(\text{kwargs}) \to \mathcal D,

a call that returns a :class:`~symbrg.core.derivation.Derivation`.  Most targets are zero-argument
functions of an engine module; the kernel maps (one per activation family) share
:func:`kernel_map` with the activation as keyword.  An entry whose engine module is not installed
(during development) is skipped by :func:`available`; an engine that *is* present but fails raises.

Regeneration is byte-identical on rerun: derivations are deterministic (seeded spot checks, sorted
symbols), documents carry no dates, and :func:`write_library` writes only files whose content
changed (atomically; a changed file is refused without ``force``).
"""
from __future__ import annotations

import functools
import importlib
import importlib.util
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from symbrg.core import checks
from symbrg.core.derivation import Derivation
from symbrg.core.errors import InvalidArgument, OutputExists, Unsupported
from symbrg.core.references import to_bibtex
from symbrg.core.symbols import symbol
from symbrg.gaussian.activations import DOCUMENTED

if TYPE_CHECKING:
    import sympy as sp

__all__ = ["Entry", "LIBRARY", "EXTENSIONS", "BIBFILE", "available", "names", "build", "kernel_map",
           "render_entry", "write_library"]

#: File extension per export format.
EXTENSIONS = {"latex": ".tex", "markdown": ".md"}
#: The BibTeX database written next to LaTeX documents (``\bibliography{references}``).
BIBFILE = "references.bib"


@dataclass(frozen=True)
class Entry:
    """One library document: ``target`` is ``"module:function"``, called with ``kwargs``."""
    name: str
    target: str
    summary: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    requires: tuple[str, ...] = ()

    @property
    def module(self) -> str:
        return self.target.partition(":")[0]

    def resolve(self) -> Callable[..., Derivation] | None:
        """The target function, or ``None`` when its engine is not (yet) installed."""
        for mod in (self.module,) + self.requires:
            if importlib.util.find_spec(mod) is None:
                return None
        fn = getattr(importlib.import_module(self.module), self.target.partition(":")[2], None)
        return fn if callable(fn) else None


# ---------------------------------------------------------------------------- kernel maps
#: Activation families with a kernel-map document (spec, file stem, readable name): decided with
#: the activations themselves, in :data:`symbrg.gaussian.activations.DOCUMENTED`.
KERNEL_FAMILIES = DOCUMENTED


def kernel_map(activation: str, kind: str = "nngp", depth: int = 1) -> Derivation:
    r"""The NNGP or NTK map of an activation (``depth`` hidden layers, default one), with checks.

    The engine's derivation (:meth:`symbrg.kernels.architecture.Architecture.derivation`: the Gaussian
    expectation(s) and the per-layer program :math:`K^{(0)} \mapsto K^{(1)}`, symbolic
    :math:`\sigma_w, \sigma_b`) is extended by checks that do not reuse the closed form:
    on the diagonal :math:`q_{11} = q_{12} = q_{22} = q` it must equal the one-dimensional integral
    :math:`\int\varphi(\sqrt q z)^2\,\mathcal Dz`, at :math:`q_{12} = 0` the product
    :math:`\int\varphi(\sqrt{q_{11}}z)\mathcal Dz\int\varphi(\sqrt{q_{22}}z)\mathcal Dz` (both by
    mpmath quadrature at 20 digits), and for the NTK of a continuous activation Price's theorem
    :math:`\partial_{q_{12}}\mathbb E[\varphi\varphi] = \mathbb E[\varphi'\varphi']` (by
    :func:`~symbrg.core.derivation.check_identity`).  Random-phase (cos-net) neurons skip the
    one-dimensional checks, whose integrals would need the phase average.
    """
    from symbrg.kernels.architecture import mlp
    arch = mlp(activation, depth, 1.0, 1.0)
    base = arch.derivation(kind)
    act = next(lay.activation for lay in arch.layers if hasattr(lay, "activation"))
    readable = next((r for spec, _, r in KERNEL_FAMILIES if spec == activation), act.name)
    checks.integer("depth", depth, minimum=1)
    title = f"{kind.upper()} per-layer map of a {readable} network"
    title += f", depth {depth}" if depth > 1 else ""
    d = Derivation(title, base.introduction, name=base.name)
    # the engine's expectation steps (with the covariance conventions), then the independent
    # checks of the first one, then every other step (the kernel program) in the engine's order
    rules = [st for st in base.steps if "-rule-" in st.label] or base.steps[:1]
    covariance = ("q_{11}, q_{22} > 0", "q_{12}^2 \\le q_{11} q_{22}")
    for st in rules:
        d.step(st.statement, st.justification, st.label, verification=st.verification,
               uses=st.uses, cites=st.cites, assumptions=tuple(dict.fromkeys(st.assumptions + covariance)))
    for label, statement, why, verification in _kernel_checks(act, kind, rules[0].label):
        d.step(statement, why, label, verification=verification, uses=(rules[0].label,))
    for st in base.steps:
        if st not in rules:
            d.step(st.statement, st.justification, st.label, verification=st.verification,
                   uses=tuple(dict.fromkeys(st.uses + tuple(r.label for r in rules))), cites=st.cites,
                   assumptions=tuple(dict.fromkeys(st.assumptions + ("\\sigma_w > 0", "\\sigma_b \\ge 0"))))
    d.program = arch.ntk_program if kind == "ntk" else arch.nngp_program
    return d


_QUAD_DPS, _QUAD_POINTS = 20, 4


def explicit_closed_form(expr: "sp.Expr") -> "sp.Expr":
    """An expectation's closed form for display and checking: arc-cosine and Gram-determinant
    nodes written out (the engine evaluates the nodes by stable rearrangements)."""
    return _without_nodes(expr)


def _without_nodes(expr: "sp.Expr") -> "sp.Expr":
    """Closed forms for display and checking: arc-cosine and Gram-determinant nodes expanded."""
    from symbrg.core.special import GramDet
    return expr.replace(lambda e: isinstance(e, GramDet), lambda e: e.args[0] * e.args[2] - e.args[1] ** 2)


def _node_check(node: Any, closed: Any) -> Any:
    """Spot check of an expression with numeric nodes against its closed form (mpmath, 30 digits)."""
    import random

    import mpmath

    from symbrg.core.codegen import lambdify
    from symbrg.core.derivation import Verification
    from symbrg.gaussian.expectations import Q11, Q12, Q22
    syms = [Q11, Q12, Q22]
    f, g = (lambdify(x, syms, "mpmath", dps=30) for x in (node, closed))
    rng = random.Random(0)
    worst, scale = mpmath.mpf(0), mpmath.mpf(1)
    with mpmath.workdps(30):
        for _ in range(8):
            q11, q22 = rng.uniform(0.2, 3.0), rng.uniform(0.2, 3.0)
            q12 = rng.uniform(-0.95, 0.95) * (q11 * q22) ** 0.5
            a, b = f(q11, q12, q22), g(q11, q12, q22)
            worst, scale = max(worst, abs(a - b)), max(scale, abs(b))
    return Verification("numeric", points=8, dps=30, max_abs_error=float(worst),
                        tolerance=float(mpmath.mpf(10) ** -22 * scale))


@functools.cache
def _quadrature_errors(spec: str) -> tuple[float, float, float]:
    """Worst errors of the closed form against 1-D quadrature on the diagonal and at q12 = 0,
    and the tolerance (cached per activation: the NNGP and NTK documents share them)."""
    import random

    import mpmath

    from symbrg.core.codegen import lambdify
    from symbrg.gaussian.activations import X
    from symbrg.gaussian.activations import activation as make
    from symbrg.gaussian.expectations import Q11, Q12, Q22, expectation
    act = make(spec)
    closed = _without_nodes(expectation(act).explicit())
    q = symbol("q")
    phi = lambdify(act.expr, [X], "mpmath", dps=_QUAD_DPS)
    f_diag = lambdify(closed.xreplace({Q11: q, Q12: q, Q22: q}), [q], "mpmath", dps=_QUAD_DPS)
    f_zero = lambdify(closed.subs(Q12, 0), [Q11, Q22], "mpmath", dps=_QUAD_DPS)
    rng = random.Random(0)
    worst_d = worst_z = mpmath.mpf(0)
    scale = mpmath.mpf(1)
    with mpmath.workdps(_QUAD_DPS):
        def gauss(g: Any, v: Any) -> Any:
            s = mpmath.sqrt(v)
            return mpmath.quad(lambda z: g(s * z) * mpmath.npdf(z), [-mpmath.inf, 0, mpmath.inf])
        for _ in range(_QUAD_POINTS):
            v1, v2 = (mpmath.mpf(rng.uniform(0.2, 3.0)) for _ in range(2))
            ref = gauss(lambda t: phi(t) ** 2, v1)
            worst_d = max(worst_d, abs(f_diag(v1) - ref))
            ref0 = gauss(phi, v1) * gauss(phi, v2)
            worst_z = max(worst_z, abs(f_zero(v1, v2) - ref0))
            scale = max(scale, abs(ref), abs(ref0))
    return float(worst_d), float(worst_z), float(mpmath.mpf(10) ** (-(_QUAD_DPS - 6)) * scale)


def _continuous_at_zero(act: Any) -> bool:
    """Price's theorem with the a.e. derivative needs a continuous activation (not step, sign)."""
    import mpmath

    from symbrg.core.codegen import lambdify
    from symbrg.gaussian.activations import X
    phi = lambdify(act.expr, [X], "mpmath", dps=30)
    with mpmath.workdps(30):
        return bool(abs(phi(mpmath.mpf("-1e-20")) - phi(mpmath.mpf("1e-20"))) < 1e-10)


def _kernel_checks(act: Any, kind: str, rule_label: str) -> list[tuple]:
    """(label, statement, justification, Verification) of the independent kernel checks."""
    import dataclasses

    import sympy as sp

    from symbrg.core.derivation import Verification, check_identity
    from symbrg.gaussian.expectations import Q11, Q12, Q22, expectation
    e = expectation(act)
    closed = _without_nodes(e.explicit())
    out = []
    stem = rule_label.rsplit("-", 1)[0]
    if closed != e.expr:
        out.append((f"{stem}-explicit", sp.Eq(e.expr, closed, evaluate=False),
                    "Written out, the closed form of \\eqref{" + rule_label + "} reads as follows; the "
                    "engine evaluates the left-hand side by a numerically stable rearrangement, "
                    "checked here against this expression.", _node_check(e.expr, closed)))
    if e.method == "exact" and not act.random_phase:
        q = symbol("q")
        diag = closed.xreplace({Q11: q, Q12: q, Q22: q})
        zero = closed.subs(Q12, 0)
        worst_d, worst_z, tol = _quadrature_errors(act.name)
        note = "against 1-D mpmath quadrature, variances in [0.2, 3]"
        lhs_d = sp.Symbol(r"\mathbb{E}[\varphi(u)^2]\big|_{q_{11}=q_{12}=q_{22}=q}")
        out.append((f"{stem}-diagonal", sp.Eq(lhs_d, diag, evaluate=False),
                    "Check on the diagonal: with $u = v$ the expectation is the one-dimensional "
                    "integral $\\int\\varphi(\\sqrt q\\,z)^2\\,\\mathcal Dz$ over a standard normal $z$, "
                    "computed independently of the closed form.",
                    Verification("numeric", points=_QUAD_POINTS, dps=_QUAD_DPS,
                                 max_abs_error=float(worst_d), tolerance=tol, note=note)))
        lhs_z = sp.Symbol(r"\mathbb{E}[\varphi(u)\varphi(v)]\big|_{q_{12}=0}")
        out.append((f"{stem}-independent", sp.Eq(lhs_z, zero, evaluate=False),
                    "Check at zero correlation: $u$ and $v$ are independent, so the expectation "
                    "factorizes into two one-dimensional integrals.",
                    Verification("numeric", points=_QUAD_POINTS, dps=_QUAD_DPS,
                                 max_abs_error=float(worst_z), tolerance=tol, note=note)))
    if kind == "ntk" and e.method == "exact" and _continuous_at_zero(act):
        de = _without_nodes(expectation(act, derivative=True).explicit())
        lhs = sp.Derivative(sp.Symbol(r"\mathbb{E}[\varphi(u)\varphi(v)]"), Q12)
        v = check_identity(sp.diff(closed, Q12), de, domain={Q11: (0.5, 2.0), Q22: (0.5, 2.0),
                                                              Q12: (-0.45, 0.45)}, points=6, dps=30)
        if not v.symbolic_zero and v.points:
            v = dataclasses.replace(v, kind="numeric")
        out.append((f"{stem}-price", sp.Eq(lhs, sp.Symbol(r"\mathbb{E}[\varphi'(u)\varphi'(v)]")),
                    "Price's theorem links the two expectations: differentiating the closed form of "
                    f"\\eqref{{{rule_label}}} in $q_{{12}}$ must give the derivative kernel used by the NTK "
                    "(checked on the closed forms, not assumed).", v))
    return out


def _kernel_entries() -> list[Entry]:
    out = []
    for spec, stem, readable in KERNEL_FAMILIES:
        for kind in ("nngp", "ntk"):
            out.append(Entry(f"{kind}-{stem}", "symbrg.documents.library:kernel_map",
                             f"{kind.upper()} per-layer map, {readable} activation",
                             {"activation": spec, "kind": kind},
                             requires=("symbrg.kernels.architecture", "symbrg.gaussian.expectations")))
    return out


# ------------------------------------------------------------------------ Fisher metrics
def fisher_normal() -> Derivation:
    r"""Fisher metric of :math:`\mathcal N(\mu, v)` in :math:`(\mu, v)`:
    :math:`\operatorname{diag}(1/v, 1/(2v^2))`."""
    import sympy as sp

    from symbrg.information.fisher import gaussian_family
    mu, v = sp.Symbol("mu", real=True), sp.Symbol("v", positive=True)
    return gaussian_family([mu], [[v]], [mu, v], name="normal").derivation


def fisher_neuron() -> Derivation:
    r"""Fisher metric of one tanh neuron :math:`y = a\tanh(b x) + \varepsilon` on three inputs."""
    import sympy as sp

    from symbrg.information.fisher import gaussian_regression
    a, b, x = sp.symbols("a b x", real=True)
    return gaussian_regression(a * sp.tanh(b * x), [a, b], x, sigma=symbol("sigma"),
                               data=[-1, sp.Rational(1, 2), 2], name="tanh-neuron").derivation


def fisher_bernoulli() -> Derivation:
    r"""Fisher metric of the Bernoulli family in its mean :math:`p`: :math:`1/(p(1-p))`."""
    import sympy as sp

    from symbrg.information.fisher import exponential_family
    eta, p = sp.Symbol("eta", real=True), symbol("p")
    return exponential_family(sp.log(1 + sp.exp(eta)), [eta], parameters=[p],
                              natural_of={eta: sp.log(p / (1 - p))}, name="bernoulli").derivation


#: Every named derivation, in document order.  Engines not yet present are skipped.
LIBRARY: dict[str, Entry] = {e.name: e for e in _kernel_entries() + [
    Entry("fisher-normal", "symbrg.documents.library:fisher_normal",
          "Fisher metric of the normal family N(mu, v)", requires=("symbrg.information.fisher",)),
    Entry("fisher-tanh-neuron", "symbrg.documents.library:fisher_neuron",
          "Fisher metric of a tanh neuron, Gaussian regression on three inputs",
          requires=("symbrg.information.fisher",)),
    Entry("fisher-bernoulli", "symbrg.documents.library:fisher_bernoulli",
          "Fisher metric of the Bernoulli family (exponential-family pullback)",
          requires=("symbrg.information.fisher",)),
    Entry("brg-information-shell", "symbrg.rg.brg:information_shell_derivation",
          "BRG: information-shell coarse graining of a Gaussian posterior"),
    Entry("brg-nngp-relu", "symbrg.rg.brg:nngp_brg_derivation",
          "BRG flow of the NNGP predictive distribution (ReLU, depth 2)"),
    Entry("cosnet-theorem", "symbrg.cosnet.theorem:cosnet_erg_certificate",
          "Theorem: BRG of the generalized cos-net is the exact RG of a free scalar (d = 3)"),
    Entry("cosnet-theorem-any-d", "symbrg.cosnet.theorem:cosnet_erg_certificate",
          "The cos-net theorem in general dimension d (sharp shells)", {"dim": "d"}),
    Entry("cosnet-theorem-smooth", "symbrg.cosnet.theorem:cosnet_erg_certificate",
          "The cos-net theorem with smooth (exponential) shells, d = 3", {"regulator": "exponential"}),
    Entry("cosnet-finite-width", "symbrg.cosnet.finite_width_certificate:finite_width_theorem",
          "Theorem: at width N, BRG of the cos-net is Polchinski's flow at order 1/N (d = 3)"),
    Entry("training-flow", "symbrg.rg.posterior:training_flow_derivation",
          "Bayesian training as a flow in the number of observations"),
    Entry("erg-polchinski-toy", "symbrg.rg.erg:toy_derivation",
          "Polchinski flow of a zero-dimensional toy model"),
    Entry("erg-gaussian-modes", "symbrg.rg.erg:gaussian_modes_derivation",
          "Polchinski flow of Gaussian modes: the covariance as the only running quantity"),
    Entry("erg-polchinski", "symbrg.rg.erg:polchinski_derivation",
          "Polchinski equation for a scalar field with the Litim regulator"),
    Entry("erg-wilson-shell", "symbrg.rg.erg:wilson_shell_derivation",
          "Wilson momentum-shell flow of the free scalar"),
    Entry("erg-free-theory", "symbrg.rg.erg:free_theory_derivation",
          "Exact RG of the free scalar: Polchinski and Wetterich agree"),
    Entry("erg-wetterich-lpa", "symbrg.rg.erg:wetterich_derivation",
          "Wetterich equation in the local potential approximation (Litim regulator)",
          requires=("symbrg.rg.lpa",)),
    Entry("lpa-fixed-point", "symbrg.rg.lpa:lpa_derivation",
          "Wilson-Fisher fixed point of the LPA (d = 3, Litim, phi^12) and its exponents"),
    Entry("lpa-prime-fixed-point", "symbrg.rg.lpa:lpa_derivation",
          "Wilson-Fisher fixed point in LPA' (anomalous dimension), d = 3, Litim",
          {"anomalous": True}),
]}


def names(only_available: bool = True) -> list[str]:
    """Library names in document order (by default only those whose engine is installed)."""
    return [n for n, e in LIBRARY.items() if not only_available or e.resolve() is not None]


def available() -> list[Entry]:
    """The entries whose engine is installed."""
    return [e for e in LIBRARY.values() if e.resolve() is not None]


def build(name: str) -> Derivation:
    """Derive the library document ``name`` (its ``name`` attribute set to the library name)."""
    checks.choice("name", name, LIBRARY)
    entry = LIBRARY[name]
    fn = entry.resolve()
    if fn is None:
        raise Unsupported("name", f"the engine for {name!r} ({entry.module}) is not installed")
    d = fn(**dict(entry.kwargs))
    if not isinstance(d, Derivation):
        raise InvalidArgument("name", f"{entry.target} returned {type(d).__name__}, not a Derivation")
    d.name = name
    return d


def render_entry(name: str, fmt: str = "latex") -> str:
    """The document text of one library entry in ``latex`` or ``markdown``."""
    from symbrg.core.printing import render
    checks.choice("format", fmt, EXTENSIONS)
    return render(build(name), fmt)


def write_library(directory: str | Path, fmt: str = "latex", *, force: bool = False,
                  only: list[str] | None = None, argument: str = "DIR") -> list[tuple[Path, str]]:
    """Regenerate the library into ``directory``; returns ``(path, "written"|"unchanged")``.
    LaTeX documents come with :data:`BIBFILE`, the references table as BibTeX.

    Everything is rendered first; then, unless ``force``, any existing file whose content would
    change is refused with :class:`~symbrg.core.errors.OutputExists` before a single file is written.
    Files are written atomically; identical files are left untouched.
    """
    checks.choice("format", fmt, EXTENSIONS)
    wanted = only if only is not None else names()
    for n in wanted:
        checks.choice("name", n, LIBRARY)
    root = Path(directory)
    if root.exists() and not root.is_dir():
        raise InvalidArgument(argument, f"{root} exists and is not a directory")
    try:                      # before the ~30 s of rendering: a folder we cannot write is refused now
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidArgument(argument, f"cannot create the folder {root}: {exc.strerror}") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise InvalidArgument(argument, f"cannot write in the folder {root}")
    docs = [(root / (n + EXTENSIONS[fmt]), render_entry(n, fmt)) for n in wanted]
    if fmt == "latex":        # the documents' \cite keys, resolved by BibTeX
        docs.append((root / BIBFILE, to_bibtex()))
    changed = [(p, t) for p, t in docs if not p.exists() or p.read_text() != t]
    clash = [p for p, _ in changed if p.exists()]
    if clash and not force:
        raise OutputExists(argument, f"{len(clash)} file(s) would change, first {clash[0]}; "
                                     "pass --force to overwrite")
    for path, text in changed:
        with checks.atomic_write(path, force=True, argument=argument) as fh:
            fh.write(text)
    written = {p for p, _ in changed}
    return [(p, "written" if p in written else "unchanged") for p, _ in docs]
