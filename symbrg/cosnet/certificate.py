r"""The falsifiable cos-net certificate: BRG coarse graining of the generalized cos-net = ERG of a free scalar.

Job: the only module that sees both sides.  The BRG side (:mod:`symbrg.cosnet.brg_side`: readout Fisher
from the likelihood, the BRG engine's shells) and the ERG side (:mod:`symbrg.rg.free_scalar`: the free
scalar with the dual action of the *full* network, the ERG engine's regulators and flow equations)
share nothing but the architecture; this module states the map between them,

.. math::  k(\Lambda)^2 = \frac{c}{\Lambda} - m^2,\quad c = \frac{T}{2N\sigma_\epsilon^2},\qquad
           w\big(I(p),\Lambda\big) = K\Big(\frac{p^2+m^2}{k(\Lambda)^2+m^2}\Big),

and compares the two sides as functions of :math:`(p, \Lambda)` (two-point functions, their flows, the
vacuum energies and their flows, the Wetterich sector) and of :math:`\Lambda` (the coincident kernel's
flow, a :math:`d`-dimensional trace with the delta functions of compact cutoffs done exactly).  Every
identity is checked by random evaluation at 30 digits (and by exact cancellation where that decides it);
then each named mutation of the BRG side (:data:`MUTATIONS`) is run through the same checks and must
make the certificate fail; an identity that no mutation falsifies is reported as vacuous
(:attr:`Certificate.vacuous`) and the certificate is not verified.
"""
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import TypeAlias, TypedDict

import mpmath
import numpy as np
import sympy as sp

from symbrg.core.calculus import drop_deltas
from symbrg.core.checks import choice, integer
from symbrg.core.derivation import Derivation, Verification
from symbrg.core.errors import Unsupported
from symbrg.cosnet.brg_side import BRGSide, engine_prior_split, engine_stiff_variances
from symbrg.cosnet.theory import (
    KCUT,
    LAM,
    NOISE,
    REGULATOR_NAMES,
    SIGMA,
    SX,
    D,
    Dim,
    DimLike,
    M,
    N,
    P,
    R,
    T,
    _dim,
    generalized_cosnet,
    propagator_cosnet,
    sphere_area,
)
from symbrg.rg.free_scalar import FreeScalar, radial_trace
from symbrg.rg.regulators import Exponential, Litim, Regulator, Sharp
from symbrg.rg.regulators import regulator as erg_regulator

__all__ = ["MUTATIONS", "Identity", "IdentityRow", "MutationRow", "Certificate", "certify", "k_of_lambda",
           "broad_input_violation"]

PHI = sp.Symbol("phi", real=True)
#: A random parameter point: 40-digit numbers for the symbols, the (integer) dimension for :data:`D`.
Point: TypeAlias = "dict[sp.Symbol, sp.Expr | int]"
#: One side of a compared identity at a point: a sympy number, or an mpmath number (real or complex).
Value: TypeAlias = "sp.Expr | mpmath.mpf | mpmath.mpc"
#: An identity's evaluator: (BRG side, ERG side) at a point.
Evaluator: TypeAlias = "Callable[[Point], tuple[Value, Value]]"
#: :math:`c = T/(2N\sigma_\epsilon^2)`.
FISHER_SCALE = T / (2 * N * NOISE ** 2)

#: The named mutations of the BRG side (name -> description); each must make the certificate fail.
MUTATIONS: dict[str, str] = {
    "swap-regulator": "the BRG shell weight uses a different profile from the ERG regulator "
                      "(sharp -> litim, litim -> exponential, exponential -> litim)",
    "flat-fisher": "the propagator-weighted parameterization (rho ~ 1/(b^2+m^2), no readout scale): "
                   "same field theory, readout Fisher independent of |b|",
    "wrong-variance": "readout prior variance off by the momentum-dependent factor 1 + p^2/R^2",
    "no-shell": "the coarse graining keeps every neuron (w = 1)",
    "mass-dropped-map": "the certificate's map uses k(Lambda)^2 = c/Lambda (the mass dropped)",
    "posterior-resample": "the paper's prescription resamples the sloppy readout weights from the trained "
                          "posterior's marginal instead of the prior",
}
#: Mutations of the prescription on a trained network, which the engine defines for the sharp shell only
#: (a smooth shell of a posterior that correlates the neurons is not defined): not run for smooth ones.
SHARP_ONLY = frozenset({"posterior-resample"})
_SWAP: dict[type[Regulator], Callable[[], Regulator]] = {Sharp: Litim, Litim: Exponential, Exponential: Litim}


def k_of_lambda(mass_dropped: bool = False) -> sp.Expr:
    r""":math:`k(\Lambda) = \sqrt{c/\Lambda - m^2}` (the solution of :math:`I(k) = \Lambda`)."""
    return sp.sqrt(FISHER_SCALE / LAM - (0 if mass_dropped else M ** 2))


@dataclass(frozen=True)
class Identity:
    """One compared statement: ``lhs`` (BRG side) = ``rhs`` (ERG side), evaluated by ``evaluate``."""
    name: str
    statement: sp.Eq
    justification: str
    evaluate: Evaluator
    region: str = "all"          # where p is drawn: all, stiff (p < k), sloppy (p > k)
    cites: tuple[str, ...] = ()
    symbolic: Callable[[], bool] | None = None
    tolerance: float = 1e-18     # relative


class IdentityRow(TypedDict):
    """One row of the identity table (:func:`_row`)."""
    name: str
    symbolic_zero: bool
    max_abs_numeric: float | None
    verified: bool
    points: int
    dps: int


class MutationRow(TypedDict):
    """One row of the mutation table: the mutation, and the identities it falsified."""
    name: str
    description: str
    verified: bool
    falsified: list[str]


@dataclass
class Certificate:
    """The certificate: the derivation document, the identity table, the mutation table."""
    derivation: Derivation
    identities: list[IdentityRow]
    mutations: list[MutationRow] = field(default_factory=list)
    mutated: str | None = None

    @property
    def vacuous(self) -> list[str]:
        """Identities no mutation falsified."""
        hit = {n for m in self.mutations for n in m["falsified"]}
        return [r["name"] for r in self.identities if r["name"] not in hit] if self.mutations else []

    def document(self) -> Derivation:
        """The derivation with a closing remark listing the mutations and what each falsified."""
        if self.mutations and not any(s.label == "rem:mutations" for s in self.derivation.steps):
            lines = "; ".join(f"\\texttt{{{m['name']}}} (\\texttt{{\\detokenize{{{m['description']}}}}}): falsifies "
                              + (", ".join(m["falsified"]) or "NOTHING") for m in self.mutations)
            vac = (" Vacuous (falsified by no mutation): " + ", ".join(self.vacuous) + ".") if self.vacuous else ""
            self.derivation.step(sp.Eq(sp.Symbol(r"\#\,\mathrm{mutations\ refused}"),
                                       sum(1 for m in self.mutations if m["falsified"])),
                                 "named mutations of the BRG side, each run through the same checks: " + lines
                                 + "." + vac, "rem:mutations")
        return self.derivation

    def __repr__(self) -> str:
        refused = sum(1 for m in self.mutations if m["falsified"] and not m["verified"])
        what = f"mutated by {self.mutated}" if self.mutated else f"{refused}/{len(self.mutations)} mutations refused"
        return (f"<Certificate {self.derivation.title!r}: {sum(r['verified'] for r in self.identities)}/"
                f"{len(self.identities)} identities verified, {what}, "
                f"{'verified' if self.verified else 'NOT verified'}>")

    def _repr_html_(self) -> str:
        """Jupyter: the identity table and the mutation table."""
        from html import escape
        rows = "".join(f"<tr><td>{escape(r['name'])}</td><td>{'yes' if r['symbolic_zero'] else 'no'}</td>"
                       f"<td>{r['max_abs_numeric']:.1e}</td><td>{r['points']} at {r['dps']} digits</td>"
                       f"<td>{'verified' if r['verified'] else '<b>NOT verified</b>'}</td></tr>"
                       for r in self.identities)
        muts = "".join(f"<tr><td>{escape(m['name'])}</td><td>{escape(m['description'])}</td>"
                       f"<td>{escape(', '.join(m['falsified'])) or '<b>nothing</b>'}</td></tr>"
                       for m in self.mutations)
        head = f"<p><b>{escape(self.derivation.title)}</b>: {'verified' if self.verified else 'NOT verified'}</p>"
        table = ("<table><tr><th>identity</th><th>symbolic zero</th><th>max |error|</th><th>points</th>"
                 f"<th>status</th></tr>{rows}</table>")
        mtable = ("<table><tr><th>mutation</th><th>description</th><th>falsifies</th></tr>"
                  f"{muts}</table>") if muts else ""
        return head + table + mtable

    @property
    def verified(self) -> bool:
        ok = bool(self.identities) and all(r["verified"] for r in self.identities)
        if self.mutated is not None:
            return ok
        return ok and all(m["falsified"] and not m["verified"] for m in self.mutations) and not self.vacuous


# ------------------------------------------------------------------------------------ sampling
_BASE = {T: (50, 100), N: (1, 2), NOISE: (0.5, 1), M: (0.1, 1), R: (15, 20), SIGMA: (0.5, 2), PHI: (-2, 2)}


def _points(n: int, region: str, seed: int, dims: tuple[int, ...]) -> list[Point]:
    """Random parameter points; :math:`\\Lambda` from a momentum cutoff :math:`k\\in(1, R/2)`, p by region."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        v: Point = {s: sp.Float(rng.uniform(*b), 40) for s, b in _BASE.items()}
        k = sp.Float(rng.uniform(1, float(v[R]) / 2), 40)
        v[LAM] = (FISHER_SCALE / (k ** 2 + M ** 2)).subs(v)
        where = region if region != "all" else ("stiff" if i % 2 == 0 else "sloppy")
        v[P] = sp.Float(rng.uniform(0.1, 0.95) * float(k) if where == "stiff"
                        else rng.uniform(1.05 * float(k), float(v[R])), 40)
        v[D] = dims[i % len(dims)]
        out.append(v)
    return out


def _number(x: Value) -> mpmath.mpf | mpmath.mpc:
    """``x`` as an mpmath number (sympy numbers at 30 digits)."""
    return x if isinstance(x, (mpmath.mpf, mpmath.mpc)) else mpmath.mpmathify(sp.N(x, 30))


def _check(ident: Identity, points: int, seed: int, dims: tuple[int, ...]) -> Verification:
    worst, tol, ok = 0.0, 0.0, True
    for v in _points(points, ident.region, seed, dims):
        try:
            with mpmath.workdps(30):  # the stated precision, whatever the caller's global mpmath.mp.dps
                lhs, rhs = (_number(x) for x in ident.evaluate(v))
                err = abs(complex(lhs - rhs))
                scale = abs(complex(lhs)) + abs(complex(rhs))
        except (TypeError, ValueError, ZeroDivisionError, OverflowError):
            ok, err, scale = False, float("inf"), 1.0
        if err != err:  # nan
            ok, err = False, float("inf")
        t = ident.tolerance * max(scale, 1e-6)
        ok = ok and err <= t
        worst, tol = max(worst, err), max(tol, t)
    symbolic = bool(ident.symbolic()) if (ident.symbolic is not None and ok) else False
    return Verification("both" if symbolic else "numeric", symbolic, points, 30, worst,
                        tol if ok else min(tol, worst / 2) if worst else tol,
                        note="random points at 30 digits" + ("; exact cancellation" if symbolic else ""))


def _cancels(a: sp.Expr, b: sp.Expr) -> bool:
    try:
        return sp.cancel(sp.together(a - b)) == 0
    except (sp.PolynomialError, NotImplementedError):  # pragma: no cover - defensive
        return False


# ------------------------------------------------------------------------------------ the identities
@lru_cache(maxsize=64)
def _sides(d: Dim, reg: Regulator, mutation: str | None) -> tuple[BRGSide, FreeScalar, sp.Expr]:
    net = generalized_cosnet(d, R, M, SIGMA)
    act = net.dual_action()
    erg_side = FreeScalar(act.inverse_propagator, P, act.mass2, act.cutoff, reg)
    profile = None if reg.is_sharp else reg
    brg_side = BRGSide(net, profile)
    if mutation == "swap-regulator":
        brg_side = replace(brg_side, profile=_SWAP[type(reg)]())
    elif mutation == "flat-fisher":
        brg_side = replace(brg_side, net=propagator_cosnet(d, R, M, SIGMA))
    elif mutation == "wrong-variance":
        brg_side = replace(brg_side, prior_factor=1 + P ** 2 / R ** 2)
    elif mutation == "no-shell":
        brg_side = replace(brg_side, keep_all=True)
    elif mutation == "posterior-resample":
        brg_side = replace(brg_side, resample_from_posterior=True)
    return brg_side, erg_side, k_of_lambda(mutation == "mass-dropped-map")


@dataclass(frozen=True)
class _Pair:
    r"""The two sides at one (d, regulator, mutation) and what the identities compare: ``k`` is
    :math:`k(\Lambda)` along the (possibly mutated) map, ``lam_dk`` :math:`\Lambda\,dk/d\Lambda`, ``at`` the
    substitution :math:`k\to k(\Lambda)`; ``V`` the BRG stiff variance, ``w`` the BRG shell weight; ``C`` the
    ERG covariance at :math:`k(\Lambda)`, ``Kz`` the ERG cutoff function of the kinetic eigenvalue there and
    ``G`` the ERG propagator."""
    bs: BRGSide
    es: FreeScalar
    regulator: Regulator
    k: sp.Expr
    lam_dk: sp.Expr
    at: dict[sp.Symbol, sp.Expr]
    V: sp.Expr
    C: sp.Expr
    w: sp.Expr
    Kz: sp.Expr
    G: sp.Expr


def _pair(d: Dim, regulator: Regulator, mutation: str | None) -> _Pair:
    """The two sides (:func:`_sides`) and the quantities built from them, once per certificate."""
    bs, es, kl = _sides(d, regulator, mutation)
    at = {KCUT: kl}
    return _Pair(bs, es, regulator, kl, LAM * sp.diff(kl, LAM), at, bs.variance(), es.covariance(KCUT).subs(at),
                 bs.weight(), es.regulator.K(es.kinetic() / es.scale2(KCUT)).subs(at), 1 / es.inverse_propagator)


def _ev(lhs: sp.Expr, rhs: sp.Expr) -> Evaluator:
    """The compiled evaluator of ``lhs`` (BRG side) and ``rhs`` (ERG side)."""
    return _compiled(sp.sympify(lhs, strict=True), sp.sympify(rhs, strict=True))


def _flow(expr: sp.Expr) -> sp.Expr:
    r""":math:`\Lambda\partial_\Lambda` of ``expr``."""
    return LAM * sp.diff(expr, LAM)


def _generic(expr: sp.Expr) -> sp.Expr:
    """``expr`` at generic points: delta functions vanish at random points."""
    return drop_deltas(expr)


def _cutoff_identities(c: _Pair) -> list[Identity]:
    """The map between the sides: information shells are momentum shells, spectral density = propagator,
    shell weight = cutoff function."""
    bs, es = c.bs, c.es
    return [
        Identity("cutoff-map", sp.Eq(sp.Symbol(r"I(p)/\Lambda"), (KCUT ** 2 + M ** 2) / (P ** 2 + M ** 2)),
                 "the readout Fisher derived from the likelihood, divided by the cutoff, is the inverse ratio "
                 "of kinetic eigenvalues at $k = k(\\Lambda)$: information shells are momentum shells",
                 _ev(bs.fisher / LAM, es.scale2(KCUT).subs(c.at) / es.kinetic()),
                 symbolic=lambda: _cancels(bs.fisher / LAM, es.scale2(KCUT).subs(c.at) / es.kinetic())),
        Identity("spectral", sp.Eq(sp.Function("S")(P), 1 / sp.Function(r"\Gamma^{(2)}")(P)),
                 "the network's spectral density (readout prior as used by the BRG side) is the propagator "
                 "of the free scalar of the full network's dual action",
                 _ev(bs.spectral_density, c.G), symbolic=lambda: _cancels(bs.spectral_density, c.G)),
        Identity("shell", sp.Eq(sp.Symbol(r"w(I(p),\Lambda)"), sp.Symbol(r"K\big((p^{2}+m^{2})/(k(\Lambda)^{2}+m^{2})\big)")),
                 "the BRG engine's shell weight (profile passed in as data) is the ERG cutoff function of the "
                 "kinetic eigenvalue: the one-parameter family of regulators matched term by term",
                 _ev(c.w, c.Kz)),
    ]


def _two_point_identities(c: _Pair) -> list[Identity]:
    """The stiff sector's two-point function, its flow and its vacuum energy's flow (Polchinski side)."""
    return [
        Identity("two-point", sp.Eq(sp.Function(r"V_\Lambda")(P), sp.Function("C_{k(\\Lambda)}")(P)),
                 "stiff-sector two-point function (BRG) = Polchinski covariance (ERG) at $k(\\Lambda)$",
                 _ev(c.V, c.C), cites=("HKMS2024", "Polchinski1984")),
        Identity("two-point-flow", sp.Eq(sp.Symbol(r"\Lambda\partial_\Lambda V_\Lambda(p)"),
                                         sp.Symbol(r"(\Lambda k'(\Lambda))\,\partial_kC_k(p)")),
                 "the flows of the two-point function as functions of $(p,\\Lambda)$: BRG differentiated in "
                 "$\\Lambda$, ERG from the engine's $s\\partial_s C$ (at generic $p$)",
                 _ev(_generic(_flow(c.V)), _generic(c.lam_dk * c.es.covariance_flow(KCUT).subs(c.at)))),
        Identity("vacuum-flow", sp.Eq(sp.Symbol(r"\Lambda\partial_\Lambda\,\tfrac12\ln(2\pi V_\Lambda)"),
                                      sp.Symbol(r"(\Lambda k')\,\partial_kE_k")),
                 "the vacuum energy of the stiff mode's normalized dual action flows as the field-independent "
                 "part of the normalized Polchinski equation, $\\partial_kE_k = \\frac12\\partial_kC_k/C_k$",
                 _ev(_generic(_flow(c.bs.vacuum_energy())), _generic(c.lam_dk * c.es.vacuum_flow(KCUT).subs(c.at))),
                 region="stiff" if c.regulator.has_closed_form else "all"),
    ]


def _flow_equation_identities(c: _Pair) -> list[Identity]:
    """Polchinski's equation for the stiff sector; the removed sector as the Wetterich sector (its vacuum
    flow only for a smooth shell: the sharp :math:`R_k\\to\\infty` limit has none off the shell)."""
    bs, es, sharp = c.bs, c.es, c.regulator.is_sharp
    out = [
        Identity("polchinski", sp.Eq(sp.Symbol(r"\mathcal P[S^{\rm BRG}_\Lambda; C_{k(\Lambda)}]"), 0),
                 "the BRG dual action $\\phi^2/(2V_\\Lambda)+\\frac12\\ln(2\\pi V_\\Lambda)$ (field-independent part "
                 "included) solves the ERG engine's Polchinski equation with the ERG covariance $C_{k(\\Lambda)}$, "
                 "RG time $\\ln\\Lambda$",
                 _ev(_generic(es.polchinski_residual(bs.dual_action(PHI), PHI, c.C, LAM)), sp.S.Zero),
                 region="stiff" if c.regulator.has_closed_form else "all", cites=("Polchinski1984",)),
        Identity("wetterich-propagator", sp.Eq(sp.Symbol(r"S(p)-V_\Lambda(p)"),
                                               sp.Symbol(r"(\Gamma^{(2)}+R_{k(\Lambda)})^{-1}")),
                 "the field of the removed neurons is the Wetterich sector: its two-point function is the "
                 "IR-regulated propagator with the engine's $R_k = Zs^2r(z)$"
                 + (" (sharp: the $R_k\\to\\infty$ limit)" if sharp else ""),
                 _ev(bs.removed_variance(), es.wetterich_propagator(KCUT).subs(c.at)),
                 cites=("Wetterich1993", "Morris1994")),
    ]
    if not sharp:
        out.append(Identity(
            "wetterich-vacuum", sp.Eq(sp.Symbol(r"-\Lambda\partial_\Lambda\tfrac12\ln(2\pi(S-V_\Lambda))"),
                                      sp.Symbol(r"(\Lambda k')\,\partial_k\Omega_k")),
            "the free energy of the removed sector flows as the Wetterich vacuum term "
            "$\\partial_k\\Omega_k = \\frac12\\partial_kR_k/(\\Gamma^{(2)}+R_k)$",
            _ev(_generic(_flow(bs.removed_free_energy())), _generic(c.lam_dk * es.wetterich_vacuum_flow(KCUT).subs(c.at))),
            region="all", cites=("Wetterich1993",)))
    return out


def _prior_split_identity(c: _Pair) -> Identity:
    """The paper's prior-resampling prescription is the Wilsonian split (untrained network)."""
    return Identity("prior-split", sp.Eq(sp.Symbol(r"V^{\rm prior}_\Lambda(p)"),
                                         sp.Symbol(r"C_{k(\Lambda)}(p) + (\Gamma^{(2)}+R_{k(\Lambda)})^{-1}(p)")),
                    "the paper's prescription (sloppy weights resampled from the prior; BRG engine, untrained "
                    "network) is the Wilsonian split: the low-mode theory plus an independent high-mode field, whose "
                    "propagators (Polchinski, Wetterich) add up to the full one",
                    _ev(c.bs.prior_variance(), c.C + c.es.wetterich_propagator(KCUT).subs(c.at)))


def _coincident_evaluator(c: _Pair) -> Evaluator:
    r"""(BRG, ERG) flow of the coincident kernel at a point: a central difference in :math:`\Lambda` of the
    BRG side's :math:`d`-dimensional trace against the ERG engine's radial trace of :math:`\partial_kC_k`."""
    measure = sphere_area(D) / (2 * sp.pi) ** D

    def coincident(v: Point) -> tuple[Value, Value]:
        dim = int(v[D])
        nums = {s: x for s, x in v.items() if s not in (P, LAM, PHI, D)}
        Vn = c.V.subs(nums).subs(D, dim)
        meas = mpmath.mpf(sp.N(measure.subs(D, dim), 40))
        upper = nums[R]

        def kernel(lam: mpmath.mpf) -> mpmath.mpf:
            return meas * _quad(Vn.subs(LAM, sp.Float(lam, 45)) * P ** (dim - 1), upper)
        with mpmath.workdps(40):
            lam0, h = mpmath.mpf(v[LAM]), mpmath.mpf("1e-10")
            lhs = lam0 * (kernel(lam0 + h) - kernel(lam0 - h)) / (2 * h)
        kv = c.k.subs(nums).subs(LAM, v[LAM])
        rhs = c.lam_dk.subs(nums).subs(LAM, v[LAM]) * radial_trace(
            c.es.covariance_flow(KCUT).subs(nums).subs(KCUT, kv), P, dim, upper)
        return lhs, rhs
    return coincident


def _coincident_identity(c: _Pair) -> Identity:
    """The coincident kernel's flow in :math:`d` dimensions (BRG) = the trace of the ERG covariance flow."""
    return Identity("coincident-flow", sp.Eq(sp.Symbol(r"\Lambda\partial_\Lambda\langle\phi(x)^2\rangle_\Lambda"),
                                             sp.Symbol(r"(\Lambda k')\int\frac{d^dp}{(2\pi)^d}\partial_kC_k(p)")),
                    "in $d$ dimensions the coincident kernel of the coarse-grained network (BRG, differentiated "
                    "in $\\Lambda$) flows by the trace of the ERG flow of the covariance (delta functions of "
                    "compact cutoffs integrated exactly; central difference in $\\Lambda$, relative tolerance "
                    "1e-15)", _coincident_evaluator(c), tolerance=1e-15)


def _straddling(v: Point, k: sp.Expr) -> tuple[dict[sp.Symbol, float], float, list[float]]:
    """Float values of the point's parameters, :math:`k(\\Lambda)` there, and six momenta straddling the shell."""
    nums = {s: float(x) for s, x in v.items() if s not in (P, PHI, D)}
    kv = float(k.subs(v))
    return nums, kv, [0.3 * kv, 0.7 * kv, 0.99 * kv, 1.01 * kv, 1.5 * kv, 0.9 * nums[R]]


def _engine_evaluator(c: _Pair) -> Evaluator:
    """(``top + gap``, ``top``): the numeric engine's stiff variances against the ERG covariances."""
    def engine(v: Point) -> tuple[Value, Value]:
        nums, _, momenta = _straddling(v, c.k)
        got = engine_stiff_variances(c.bs, momenta, nums[LAM], {s: x for s, x in nums.items() if s != LAM})
        Cn = c.C.subs({s: x for s, x in v.items() if s is not P})
        want = [float(Cn.subs(P, q)) for q in momenta]
        top = max(want)
        return sp.Float(top + sum(abs(g - x) for g, x in zip(got, want)), 30), sp.Float(top, 30)
    return engine


def _split_evaluator(c: _Pair) -> Evaluator:
    """(``top + gap``, ``top``): the numeric engine's prior prescription on a trained network against the
    trained low modes and the Wetterich propagator of the high ones."""
    high = c.es.wetterich_propagator(KCUT).subs(c.at)

    def split(v: Point) -> tuple[Value, Value]:
        nums, kv, momenta = _straddling(v, c.k)
        mean, cov, mean_star, cov_star = engine_prior_split(
            c.bs, momenta, nums[LAM], {s: x for s, x in nums.items() if s != LAM}, int(v[D]))
        low = np.array([q < kv for q in momenta])          # the ERG side's low modes, p < k
        hn = high.subs({s: x for s, x in v.items() if s is not P})
        want_cov = np.diag([0.0 if lo else float(hn.subs(P, q)) for q, lo in zip(momenta, low)])
        want_cov[np.ix_(low, low)] = cov_star[np.ix_(low, low)]
        want_mean = np.where(low, mean_star, 0.0)
        top = float(np.max(np.abs(want_cov)))
        gap = float(np.abs(cov - want_cov).sum() + np.abs(mean - want_mean).sum())
        return sp.Float(top + gap, 30), sp.Float(top, 30)
    return split


def _engine_identities(c: _Pair) -> list[Identity]:
    """The numeric BRG engine (sharp shell only): removed prescription, and the prior one on a trained net."""
    return [
        Identity("engine", sp.Eq(sp.Symbol(r"\mathrm{diag}\,C^{\rm coarse\_grain}_\Lambda"),
                                 sp.Symbol(r"C_{k(\Lambda)}(p_j)")),
                 "the numeric engine (symbrg.rg.brg.coarse_grain, diagonal Fisher, point-mass prior: "
                 "the removed prescription) on six neurons straddling the shell gives the ERG "
                 "covariances (float64, relative tolerance 1e-12)", _engine_evaluator(c), tolerance=1e-12),
        Identity("prior-split-trained", sp.Eq(sp.Symbol(r"\pi^{\rm prior}_\Lambda[\pi_*]"),
                                              sp.Symbol(r"\pi_*|_{p<k}\otimes\mathcal N(0,(\Gamma^{(2)}+R_k)^{-1})")),
                 "the paper's prescription on a trained network (the numeric engine, six neurons "
                 "straddling the shell, a posterior that correlates them) is the Wilsonian split: the "
                 "trained low modes $p<k(\\Lambda)$ unchanged, and an independent high-mode field (zero "
                 "cross-covariance, zero mean) with the Wetterich propagator; with the untrained network "
                 "this is \\eqref{eq:prior-split} (float64, relative tolerance 1e-12)", _split_evaluator(c),
                 tolerance=1e-12),
    ]


def _identities(d: Dim, regulator: Regulator, mutation: str | None) -> list[Identity]:
    """Every compared identity, in the order of the derivation document (the engine's last, sharp shell only)."""
    c = _pair(d, regulator, mutation)
    out = [*_cutoff_identities(c), *_two_point_identities(c), *_flow_equation_identities(c),
           _prior_split_identity(c), _coincident_identity(c)]
    if regulator.is_sharp:
        out += _engine_identities(c)
    return out


_ARGS = (T, N, NOISE, M, R, SIGMA, PHI, LAM, P)


def _mp(expr: sp.Expr) -> Callable[..., Value]:
    """An mpmath function of :data:`_ARGS`; steps as ``Piecewise`` (``Heaviside(0)`` is never sampled)."""
    pw = expr.replace(sp.Heaviside, lambda *a: sp.Piecewise((1, a[0] > 0), (0, True)))
    if pw.has(sp.zoo, sp.nan, sp.oo, -sp.oo):  # e.g. 1/(1 - Theta) of a mutated side: evaluate by substitution
        return lambda *args: sp.N(expr.subs(dict(zip(_ARGS, args))), 30)
    return sp.lambdify(_ARGS, pw, "mpmath")


@lru_cache(maxsize=512)
def _compiled(lhs: sp.Expr, rhs: sp.Expr) -> Evaluator:
    f, g = _mp(lhs), _mp(rhs)

    def evaluate(v: Point) -> tuple[Value, Value]:
        with mpmath.workdps(30):
            args = [mpmath.mpf(v[s]) for s in _ARGS]
            return f(*args), g(*args)
    return evaluate


def _quad(expr: sp.Expr, upper: sp.Expr) -> mpmath.mpf:
    """:math:`\\int_0^R` of an expression in :data:`P` with steps as breakpoints (BRG side's quadrature)."""
    breaks = set()
    for step in expr.atoms(sp.Heaviside):
        h = sp.lambdify(P, step.args[0], "mpmath")
        for r0 in sp.solve(step.args[0], P):
            rv = complex(sp.N(r0, 30))
            if abs(rv.imag) < 1e-12 and 0 < rv.real < float(upper):
                breaks.add(mpmath.findroot(h, mpmath.mpf(rv.real)))  # polished at the working precision
    g = sp.lambdify(P, expr.replace(sp.Heaviside, lambda *a: sp.Piecewise((1, a[0] > 0), (0, True))), "mpmath")
    return mpmath.quad(g, [mpmath.mpf(0)] + sorted(breaks) + [mpmath.mpf(sp.N(upper, 40))])


# ------------------------------------------------------------------------------------ driver
def certify(dim: DimLike = 3, regulator: Regulator | str = "sharp", *, points: int = 4, mutate: str | None = None,
            mutations: bool = True, seed: int = 0) -> Certificate:
    r"""Build and check the certificate for dimension ``dim`` (an integer >= 1, or ``"d"``: traces are then
    checked at d = 1..4) and a ``regulator`` (:class:`~symbrg.rg.regulators.Sharp`, ``Litim`` or
    ``Exponential``, or its name).  ``mutate``: run one named
    mutation (:data:`MUTATIONS`) instead (its certificate must not verify); ``mutations``: run all of them
    and record which identities each falsifies."""
    d = _dim(dim)
    regulator = erg_regulator(regulator)
    choice("regulator", regulator.name, REGULATOR_NAMES)
    points = integer("points", points, minimum=1, maximum=200)
    if mutate is not None:
        choice("mutate", mutate, MUTATIONS)
        if mutate in SHARP_ONLY and not regulator.is_sharp:
            raise Unsupported("mutate", f"{mutate!r} mutates the prescription on a trained network, which the "
                                        "engine defines for the sharp shell only")
    dims = (1, 2, 3, 4) if d == D else (int(d),)

    def run(mutation: str | None) -> list[tuple[Identity, Verification]]:
        ids = _identities(d, regulator, mutation)
        return [(i, _check(i, points if i.name != "coincident-flow" else max(2, min(points, len(dims) * 2)),
                           seed, dims)) for i in ids]
    results = run(mutate)
    cert = Certificate(_document(d, regulator, mutate, results), [_row(i.name, v) for i, v in results],
                       mutated=mutate)
    if mutate is None and mutations:
        cert.mutations.extend(_mutation_rows(run, regulator))
    return cert


def _document(d: Dim, regulator: Regulator, mutate: str | None,
              results: list[tuple[Identity, Verification]]) -> Derivation:
    """The derivation: the two sides and the map, one step per checked identity, the broad-input remark."""
    dn = "d" if d == D else str(d)
    dv = Derivation(f"BRG coarse graining of the generalized cos-net is the exact RG of a free scalar "
                    f"(d = {dn}, {regulator} shell)" + (f" [mutation: {mutate}]" if mutate else ""),
                    "Two sides that share only the architecture: the BRG side (readout Fisher from the "
                    "likelihood, the BRG engine's shells, profile passed in as data) and the ERG side (the free "
                    "scalar of the full network's dual action, the ERG engine's regulators and flow equations). "
                    "Map: $k(\\Lambda)^2 = T/(2N\\sigma_\\epsilon^2\\Lambda) - m^2$; the cutoff acts on the kinetic "
                    "eigenvalue, $K((p^2+m^2)/(k^2+m^2))$: for $m\\ne0$ a spectrally adjusted regulator, "
                    "$R_k = Z(k^2+m^2)r(z)$, which is the standard sharp and Litim regulator for every $m$ and the "
                    "standard exponential one only at $m = 0$. Every identity is evaluated at random points "
                    "at 30 digits; every named mutation must falsify at least one.", name="cosnet-erg")
    for ident, ver in results:
        dv.step(ident.statement, ident.justification.rstrip(".") + ".", f"eq:{ident.name}", verification=ver,
                cites=ident.cites)
    _broad_input_remark(dv)
    return dv


def _broad_input_remark(dv: Derivation) -> None:
    """The assumption of broad inputs, with its measured violation for Gaussian inputs."""
    dv.step(sp.Eq(sp.Symbol(r"\sup_c|\mathbb E_x\cos^2(b\cdot x+c)-\tfrac12|/\tfrac12"),
                  sp.exp(-2 * P ** 2 * SX ** 2)),
            "assumption: broad inputs. For $x\\sim\\mathcal N(0,s_x^2)$ the Fisher of the neuron $(b, c)$ depends "
            "on its phase, with relative deviation up to $e^{-2|b|^2s_x^2}$; the exact stiff kernel "
            "(CosNet.brg_kernel, d = 1, R = 4, m = 1, T = 10, N = 1, $\\Lambda = 1/2$, three inputs) departs from "
            "the broad-input one by " + ", ".join(f"{v:.1e} at $s_x = {s:g}$" for s, v in broad_input_violation())
            + " (about $2\\times10^{-4}/s_x$ for large $s_x$: the low frequencies always feel the phase).",
            "rem:broad-inputs")


def _mutation_rows(run: Callable[[str | None], list[tuple[Identity, Verification]]],
                   regulator: Regulator) -> list[MutationRow]:
    """Run every named mutation (those defined for the shell) and record which identities each falsifies."""
    rows: list[MutationRow] = []
    for name, desc in MUTATIONS.items():
        if name in SHARP_ONLY and not regulator.is_sharp:
            continue
        mres = run(name)
        falsified = [i.name for i, v in mres if not v.verified]
        rows.append({"name": name, "description": desc, "verified": not falsified, "falsified": falsified})
    return rows


@lru_cache(maxsize=1)
def broad_input_violation(widths: tuple[float, ...] = (0.5, 1.0, 2.0, 8.0, 40.0)) -> tuple[tuple[float, float], ...]:
    r"""``((s_x, max |K^{gauss}_\Lambda - K^{broad}_\Lambda|), ...)`` for the reference net of the remark."""
    net = generalized_cosnet(1, 4, 1, 1)
    X = np.array([[0.0], [0.6], [-1.1]])
    broad = net.brg_kernel(X, None, 0.5, observations=10)
    return tuple((s, float(np.abs(net.brg_kernel(X, None, 0.5, inputs=("gaussian", s), observations=10)
                                  - broad).max())) for s in widths)


def _row(name: str, v: Verification) -> IdentityRow:
    return {"name": name, "symbolic_zero": v.symbolic_zero, "max_abs_numeric": v.max_abs_error,
            "verified": v.verified, "points": v.points, "dps": v.dps}
