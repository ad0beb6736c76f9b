r"""The finite-width certificate: BRG coarse graining of the cos-net = Polchinski's ERG at order 1/N.

Job: the only module that sees both sides of the interacting theorem.  The BRG side
(:mod:`symbrg.cosnet.finite_width`: the network's law, its readout Fisher, the BRG engine's shell, the
cumulants of the coarse-grained network) and the ERG side (:mod:`symbrg.rg.wilsonian`: the regulated
covariance :math:`C_k` and Polchinski's first-order flow) share only the input, the full network's law
on the periodic box, whose Edgeworth action (:mod:`symbrg.gaussian.edgeworth`; cumulants by direct
integration over the phase) is the ERG side's action at the UV scale R.  The map
:math:`\Lambda = I(k) = T/(2N\sigma_\epsilon^2(k^2+m^2))` ties the information cutoff to the momentum scale.
For each k the certificate compares, in exact rational arithmetic,

.. math::  K^{\rm BRG}_\Lambda = C_k,\qquad \lambda^{\rm BRG}_\Lambda = \lambda_k,\qquad
           \mu^{\rm BRG}_\Lambda = \mu_R + \tfrac12\lambda{:}(C_R - C_k),\qquad E^{\rm BRG}_\Lambda = E_k,

(the Edgeworth action of the coarse-grained network against the Polchinski flow of the full one), plus the
phase average behind the closed form, the Edgeworth counterterm, Polchinski's equation for the flow law
(symbolic), and the non-perturbative projection theorem pathwise on sampled networks.  Every named
mutation (:data:`MUTATIONS`) must falsify at least one identity, and every identity must be falsified by
at least one mutation (:attr:`~symbrg.cosnet.certificate.Certificate.vacuous`).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache

import numpy as np
import sympy as sp
from numpy.typing import NDArray

from symbrg.core.checks import choice, integer
from symbrg.core.derivation import Derivation, Verification
from symbrg.core.errors import Unsupported
from symbrg.core.exact import Q
from symbrg.cosnet.certificate import Certificate, IdentityRow, MutationRow
from symbrg.cosnet.finite_width import (
    PHASE_FOURTH,
    PHASE_SECOND,
    BoxCosNet,
    box_cosnet,
    coarse_grained_cumulants,
    phase_moments,
    shell_weights,
)
from symbrg.gaussian.edgeworth import (
    QuarticAction,
    Tensor,
    edgeworth_action,
    first_order_normalisation,
    first_order_two_point,
)
from symbrg.rg.regulators import Litim, Regulator
from symbrg.rg.regulators import regulator as erg_regulator
from symbrg.rg.wilsonian import (
    Rates,
    filter_field,
    flow_first_order,
    polchinski_rates,
    rates_solve_polchinski,
    regulated_covariance,
)

__all__ = ["MUTATIONS", "BOXES", "certify_finite_width", "finite_width_theorem", "finite_width_derivation",
           "smooth_shell_gap"]

#: The named mutations (a plausible mistake in the model or the method, on one side).
MUTATIONS: dict[str, str] = {
    "wrong-pairing": "the closed form's phase average keeps one pairing three times, "
                     "E_c[u_a u_b u_c u_d] = (3/8) delta_ab delta_cd (BRG side)",
    "tadpole-sign": "the quadratic coupling flows by the tadpole with the wrong sign (ERG side)",
    "unflowed": "the quadratic coupling and the vacuum term are left at their values at R (ERG side)",
    "surviving-network": "the coarse-grained network is the narrower network of the surviving neurons: "
                         "width N P_k, frequencies renormalised on the kept set (BRG side)",
    "no-shell": "the coarse graining keeps every neuron (BRG side)",
    "flat-fisher": "the BRG side models the network in the propagator-weighted parameterization "
                   "(rho ~ 1/(b^2+m^2), no readout scale): the same free theory, a readout Fisher flat in |b|",
    "swap-regulator": "the ERG side uses the Litim cutoff function instead of the sharp one",
    "edgeworth-counterterm": "the Edgeworth counterterm counts 3 of the 6 Hermite pairings, "
                             "mu = -(1/4) lambda:K (both sides)",
}


@dataclass(frozen=True)
class Box:
    """A certificate configuration: lattice radius squared, mass squared, the k^2 compared (none on a shell)."""
    radius2: Q
    mass2: Q
    k2s: tuple[Q, ...]


#: The boxes of the certificate per dimension (12, 12 and 18 real modes).
BOXES: dict[int, Box] = {1: Box(Q(37), Q(1), (Q(25, 2), Q(5, 2))),
                         2: Box(Q(5), Q(1), (Q(5, 2), Q(3, 2))),
                         3: Box(Q(3), Q(1), (Q(3, 2),))}
_WIDTH, _T, _NOISE = 10, Q(100), Q(1)
Edgeworth = Callable[[Tensor, Tensor], QuarticAction]


def _counterterm_3(K: Tensor, kappa4: Tensor) -> QuarticAction:
    a = edgeworth_action(K, kappa4)
    return replace(a, quadratic=-np.einsum("ijkl,kl->ij", a.quartic, K) / 4)


def _wrong_sign(action: QuarticAction, dC: Tensor) -> tuple[Tensor, Tensor, Q]:
    dlam, dmu, dE = polchinski_rates(action, dC)
    return dlam, -dmu, dE


def _frozen(action: QuarticAction, dC: Tensor) -> tuple[Tensor, Tensor, Q]:
    return 0 * action.quartic, 0 * action.quadratic, Q(0)


@dataclass(frozen=True)
class _Sides:
    """What each side is, under a mutation (None: the correct model and method)."""
    box: BoxCosNet                    # the input: the network
    brg_box: BoxCosNet                # the network as the BRG side models it
    regulator: Regulator              # the ERG side's cutoff function
    rates: Rates                      # the ERG side's flow law
    edgeworth: Edgeworth              # the expansion both sides use
    phase_fourth: Tensor              # the BRG side's closed-form phase average
    prescription: str                 # the BRG side's coarse graining
    keep_all: bool

    @staticmethod
    def make(dim: int, regulator: Regulator, mutation: str | None) -> _Sides:
        b = BOXES[dim]
        box = box_cosnet(dim, b.radius2, b.mass2, width=_WIDTH)
        brg_box = box_cosnet(dim, b.radius2, b.mass2, width=_WIDTH, parametrization="propagator") \
            if mutation == "flat-fisher" else box
        wrong = np.einsum("ab,cd->abcd", *(np.eye(2, dtype=int).astype(object),) * 2) * Q(3, 8)
        return _Sides(box, brg_box, Litim() if mutation == "swap-regulator" else regulator,
                      {"tadpole-sign": _wrong_sign, "unflowed": _frozen}.get(mutation or "", polchinski_rates),
                      _counterterm_3 if mutation == "edgeworth-counterterm" else edgeworth_action,
                      wrong if mutation == "wrong-pairing" else PHASE_FOURTH,
                      "surviving" if mutation == "surviving-network" else "removed", mutation == "no-shell")

    def cutoff(self, k2: Q) -> Q:
        """The certificate's map: :math:`\\Lambda = T/(2N\\sigma_\\epsilon^2(k^2+m^2))`."""
        return _T / (2 * self.box.width * _NOISE ** 2 * (k2 + self.box.mass2))

    @property
    def input_action(self) -> QuarticAction:
        """The full network's Edgeworth action (cumulants with the phase moments integrated directly)."""
        return self.edgeworth(*self.box.cumulants(phase_second=phase_moments(2), phase_fourth=phase_moments(4)))

    def brg(self, k2: Q) -> tuple[NDArray[np.intp], QuarticAction]:
        """The BRG side at :math:`\\Lambda(k)`: the support and the coarse-grained network's Edgeworth action."""
        support, K, kappa4 = coarse_grained_cumulants(self.brg_box, self.cutoff(k2), _T, _NOISE,
                                                      prescription=self.prescription,  # type: ignore[arg-type]
                                                      phase_fourth=self.phase_fourth, keep_all=self.keep_all)
        return support, self.edgeworth(K, kappa4)

    def erg(self, start: QuarticAction, k2: Q) -> QuarticAction:
        """The ERG side at k: the input action flowed from R to k with the regulated covariance."""
        return flow_first_order(start, regulated_covariance(self.box.propagator, self.box.momenta2,
                                                           self.regulator, k2), self.rates)


def _embed(support: NDArray[np.intp], T: Tensor, M: int) -> Tensor:
    out = np.zeros((M,) * T.ndim, dtype=object) + Q(0)
    out[np.ix_(*([support] * T.ndim))] = T
    return out


def _gap(a: Tensor | Q, b: Tensor | Q) -> float:
    diff = np.abs(np.asarray(a, dtype=object) - np.asarray(b, dtype=object))
    return float(max(np.ravel(np.asarray(diff, dtype=object)), default=Q(0)))


def _exact(gaps: list[float], note: str) -> Verification:
    return Verification("exact", points=len(gaps), dps=0, max_abs_error=max(gaps), tolerance=0.0, note=note)


def _comparisons(s: _Sides) -> dict[str, Verification]:
    """The exact identities: phase average, Edgeworth counterterm, and per k the two-point function, the
    vertex, the quadratic coupling (the tadpole flow) and the vacuum term."""
    start, M = s.input_action, s.box.modes
    gaps: dict[str, list[float]] = {"two-point": [], "quartic": [], "quadratic": [], "vacuum": []}
    for k2 in BOXES[int(s.box.net.dim)].k2s:
        support, b = s.brg(k2)
        e = s.erg(start, k2)
        keep = np.flatnonzero(np.diag(e.covariance) != 0)
        gaps["two-point"].append(_gap(_embed(support, b.covariance, M), e.covariance))
        for name, bt, et in (("quartic", b.quartic, e.quartic), ("quadratic", b.quadratic, e.quadratic)):
            full = _embed(support, bt, M)
            gaps[name].append(_gap(full[np.ix_(*([keep] * bt.ndim))], et[np.ix_(*([keep] * et.ndim))]))
        gaps["vacuum"].append(_gap(b.vacuum, e.vacuum))
    k2s = ", ".join(str(k) for k in BOXES[int(s.box.net.dim)].k2s)
    out = {"phase-average": _exact([_gap(PHASE_SECOND, phase_moments(2)), _gap(s.phase_fourth, phase_moments(4))],
                                   "closed-form phase moments against their integrals over c"),
           "edgeworth-two-point": _exact([_gap(first_order_two_point(start), start.covariance),
                                          _gap(first_order_normalisation(start), Q(0))],
                                         "the full network's action: Wick two-point function and normalisation")}
    out.update({k: _exact(v, f"$k^2 = {k2s}$, {M} real modes") for k, v in gaps.items()})
    return out


def _projection(s: _Sides, members: int = 8, seed: int = 0) -> Verification:
    r"""The non-perturbative theorem pathwise: for sampled networks, the BRG-coarse-grained network's output on
    the grid equals the full output filtered by the ERG cutoff function (FFT), at every k; float64."""
    rng = np.random.default_rng(seed)
    r = int(np.floor(np.sqrt(float(s.box.radius2))))
    grid, worst = 2 * r + 2, 0.0
    for k2 in BOXES[int(s.box.net.dim)].k2s:
        kept = np.array(shell_weights(s.brg_box, s.cutoff(k2), _T, _NOISE, keep_all=s.keep_all)) == 1
        for _ in range(members):
            pairs, b, a, c = s.box.sample(rng)
            full = s.box.field(b, a, c, grid)
            coarse = s.box.field(b[kept[pairs]], a[kept[pairs]], c[kept[pairs]], grid)
            worst = max(worst, float(np.abs(coarse - filter_field(full, s.regulator, float(k2))).max()
                                     / max(np.abs(full).max(), 1e-300)))
    return Verification("numeric", points=members * len(BOXES[int(s.box.net.dim)].k2s), dps=16,
                        max_abs_error=worst, tolerance=1e-12,
                        note=f"{members} sampled networks per k, width {s.box.width}, ${grid}^d$ grid, relative to "
                             "$\\max|f|$")


_STATEMENTS = {
    "phase-average": (r"\mathbb E_c[u_\alpha u_\beta u_\gamma u_\delta]",
                      r"\tfrac18(\delta_{\alpha\beta}\delta_{\gamma\delta}+\delta_{\alpha\gamma}\delta_{\beta\delta}"
                      r"+\delta_{\alpha\delta}\delta_{\beta\gamma})",
                      "the closed form's phase average (the three pairings) against its integral over $c$ and the sign of $n$"),
    "edgeworth-two-point": (r"\langle\phi\phi\rangle_{S_R}", "K",
                            "the counterterm $\\mu = -\\tfrac12\\lambda{:}K$ cancels the tadpole: the full network's action "
                            "has two-point function $K$ at order $1/N$ (Wick contraction), and it is normalised"),
    "two-point": (r"K^{\mathrm{BRG}}_{\Lambda}", "C_k",
                  "the coarse-grained network's covariance is the regulated covariance $K(p^2/k^2)G$"),
    "quartic": (r"\lambda^{\mathrm{BRG}}_{\Lambda}", r"\lambda_k = \lambda_R",
                "the coarse-grained network's vertex (its amputated fourth cumulant) is the full vertex: it does not "
                "flow at order $1/N$"),
    "quadratic": (r"\mu^{\mathrm{BRG}}_{\Lambda}", r"\mu_R + \tfrac12\lambda{:}(C_R - C_k)",
                  "the Edgeworth counterterm of the coarse-grained network is Polchinski's quadratic coupling, flowed "
                  "from R to k by the tadpole of the vertex"),
    "vacuum": (r"E^{\mathrm{BRG}}_{\Lambda}", r"E_R + \tfrac12\mu_R{:}(C_R-C_k) + \tfrac18(C_R-C_k){:}\lambda{:}(C_R-C_k)",
               "the vacuum terms agree (both actions normalised)"),
    "polchinski-equation": (r"k\partial_kS_{\mathrm{int}}", r"\tfrac12\sum_i k\partial_kC_i[(\partial_iS_{\mathrm{int}})^2 - "
                            r"\partial_i^2S_{\mathrm{int}}] + O(N^{-2})",
                            "the ERG side's flow law solves the engine's Polchinski equation at order $1/N$ "
                            "(generic two-mode theory, symbolic)"),
    "projection": (r"f_{\Lambda}", r"P_{k(\Lambda)}f",
                   "the theorem pathwise: removing the sloppy readouts of sampled networks gives the field filtered "
                   "by the cutoff function, for every draw"),
}


def _verifications(dim: int, regulator: Regulator, mutation: str | None) -> dict[str, Verification]:
    s = _Sides.make(dim, regulator, mutation)
    out = _comparisons(s)
    out["polchinski-equation"] = rates_solve_polchinski(s.rates)
    out["projection"] = _projection(s)
    return {name: out[name] for name in _STATEMENTS}


def _row(name: str, v: Verification) -> IdentityRow:
    return {"name": name, "symbolic_zero": v.symbolic_zero, "max_abs_numeric": v.max_abs_error,
            "verified": v.verified, "points": v.points, "dps": v.dps}


def certify_finite_width(dim: int = 3, regulator: Regulator | str = "sharp", *, mutate: str | None = None,
                         mutations: bool = True) -> Certificate:
    r"""The order-1/N certificate in dimension ``dim`` (1, 2 or 3: the boxes of :data:`BOXES`) for the sharp
    shell.  ``mutate``: run one named mutation (:data:`MUTATIONS`) instead; ``mutations``: run all of them and
    record which identities each falsifies.  A smooth regulator is refused: at order 1/N a smooth shell scales
    each leg of the fourth cumulant by :math:`\sqrt w` where Polchinski's flow scales it by w
    (:func:`smooth_shell_gap` measures the difference)."""
    d = integer("dim", dim, minimum=1, maximum=3)
    reg = erg_regulator(regulator)
    if not reg.is_sharp:
        raise Unsupported("regulator", "at order 1/N the BRG = ERG correspondence holds for the sharp shell only "
                                       "(a smooth shell scales each leg of kappa4 by sqrt(w), Polchinski's flow by w)")
    if mutate is not None:
        choice("mutate", mutate, MUTATIONS)
    results = _verifications(d, reg, mutate)
    cert = Certificate(finite_width_derivation(d, results, mutate), [_row(n, v) for n, v in results.items()],
                       mutated=mutate)
    if mutate is None and mutations:
        rows: list[MutationRow] = []
        for name, desc in MUTATIONS.items():
            falsified = [n for n, v in _verifications(d, reg, name).items() if not v.verified]
            rows.append({"name": name, "description": desc, "verified": not falsified, "falsified": falsified})
        cert.mutations.extend(rows)
    return cert


def finite_width_theorem(dim: int = 3) -> Derivation:
    """The order-1/N certificate with every mutation as a document (the derivation library's entry)."""
    return certify_finite_width(dim).document()


@cache
def smooth_shell_gap(dim: int = 1, k2: Q = Q(5, 2)) -> float:
    r"""How far a smooth (Litim) shell is from Polchinski's flow at order 1/N: the largest difference between
    the coarse-grained network's vertex (readouts scaled by :math:`\sqrt w`) and the flowed vertex
    :math:`\lambda_k = \lambda_R` (which has the same two-point function :math:`C_k = wG`), relative to the
    largest entry of :math:`\lambda_R` (a value of order 1: the correspondence fails)."""
    s = _Sides.make(dim, erg_regulator("sharp"), None)
    support, K, kappa4 = coarse_grained_cumulants(s.box, s.cutoff(k2), _T, _NOISE, profile=Litim())
    flowed = s.input_action.quartic[np.ix_(*([support] * 4))]
    return _gap(edgeworth_action(K, kappa4).quartic, flowed) / float(max(np.abs(flowed).ravel()))


@cache
def _closed_form(dim: int) -> Verification:
    """The closed form of the quadratic coupling against the BRG side's exact one, at every k of the box."""
    s = _Sides.make(dim, erg_regulator("sharp"), None)
    gaps = []
    for k2 in BOXES[dim].k2s:
        support, action = s.brg(k2)
        Mk = len(support)
        pi = [s.box.probabilities[j // 2] for j in support]
        closed = [(3 / p - Q(Mk + 2, 2)) / (s.box.width * action.covariance[i, i]) for i, p in enumerate(pi)]
        gaps.append(_gap(np.diag(action.quadratic), np.array(closed, dtype=object)))
        gaps.append(_gap(action.quadratic - np.diag(np.diag(action.quadratic)), Q(0)))
    return _exact(gaps, "diagonal and off-diagonal entries")


_PROOF = ("eq:phase-average", "eq:edgeworth-two-point", "eq:two-point", "eq:quartic", "eq:quadratic", "eq:vacuum",
          "eq:polchinski-equation", "eq:projection")


def finite_width_derivation(dim: int, results: dict[str, Verification], mutate: str | None = None) -> Derivation:
    """The derivation document of the order-1/N certificate (:func:`certify_finite_width`): the theorem, the
    Edgeworth action, the tadpole flow, one step per compared identity, the closed forms and the smooth-shell
    remark."""
    b = BOXES[dim]
    dv = Derivation(f"Finite-width cos-net: BRG coarse graining is Polchinski's ERG at order 1/N (d = {dim}, sharp "
                    "shell)" + (f" [mutation: {mutate}]" if mutate else ""),
                    "The interacting field theory of the generalized cos-net at width $N$ on the periodic box "
                    "$[0,2\\pi)^d$ (frequencies on the lattice $0<|n|^2<R^2$), its dual action by the Edgeworth "
                    "expansion \\cite{DHMSS2023}, and two sides that share only the network: the BRG side "
                    "coarse-grains by the readout Fisher (sloppy readouts removed) and expands the coarse network's "
                    "law; the ERG side flows the full network's action by Polchinski's equation "
                    "\\cite{Polchinski1984} from $R$ to $k$. Map: $\\Lambda = T/(2N\\sigma_\\epsilon^2(k^2+m^2))$. "
                    f"Box: $R^2 = {b.radius2}$, $m^2 = {b.mass2}$, $\\sigma^2 = 1$, $N = {_WIDTH}$, $T = {_T}$, "
                    f"$\\sigma_\\epsilon = {_NOISE}$, $k^2 \\in \\{{{', '.join(str(k) for k in b.k2s)}\\}}$; "
                    "every comparison is exact (rational arithmetic).", name=f"cosnet-finite-width-d{dim}")
    _theory_steps(dv, dim)
    for name, ver in results.items():
        lhs, rhs, why = _STATEMENTS[name]
        dv.step(sp.Eq(sp.Symbol(lhs), sp.Symbol(rhs)), why + ".", f"eq:{name}", verification=ver)
    dv.step(sp.Eq(sp.Symbol(r"\max|\lambda^{\mathrm{BRG,\,Litim}}_\Lambda - \lambda_k|/\max|\lambda_R|"),
                  sp.Float(smooth_shell_gap(), 3)),
            "remark: with a smooth shell the correspondence fails at order $1/N$. The BRG weight scales each "
            "neuron's readout by $\\sqrt w$, so the fourth cumulant's legs carry $\\sqrt w$ while Polchinski's "
            "Wilsonian field has $C_k = wG$ and an unflowed vertex, whose fourth cumulant's legs carry $w$: the "
            "two agree only for $w\\in\\{0,1\\}$. Measured (d = 1, Litim, $k^2 = 5/2$) as the relative difference "
            "of the vertices.", "rem:smooth-shell")
    dv.theorem(
        "For every width $N$, removing the readout weights whose Fisher information is below $\\Lambda$ "
        "leaves exactly the plane waves with $|b_i| < k(\\Lambda)$, $k(\\Lambda)^2 = T/(2N\\sigma_\\epsilon^2"
        "\\Lambda) - m^2$: the coarse-grained network is the projection $P_{k}f$ of the network, draw by draw. At "
        "order $1/N$ its Edgeworth action is the Wilsonian action of Polchinski's flow from $R$ to $k$: the vertex "
        "does not flow and the quadratic coupling flows by the tadpole of the vertex.",
        ("the generalized cos-net $f = N^{-1/2}\\sum_i a_i s(|b_i|)\\cos(b_i\\cdot x+c_i)$, "
         "$s(p) = (p^2+m^2)^{-1/2}$, Gaussian readouts, uniform phases",
         "broad inputs ($\\mathbb E_x\\cos^2(b\\cdot x+c) = \\tfrac12$; exact on the periodic box)",
         "the per-neuron (diagonal) readout Fisher, and the removed prescription (sloppy readouts set to zero, "
         "$N$ and $\\sigma_a$ unchanged)",
         "a sharp shell; the action statement at order $1/N$, on the periodic box"),
        "thm:finite-width", title="BRG = ERG for the interacting cos-net at order 1/N",
        proof=tuple(p for p in _PROOF if p in {st.label for st in dv.steps}))
    return dv


def _theory_steps(dv: Derivation, dim: int) -> None:
    """The cumulants, the Edgeworth action and the tadpole flow as assumed (defining) steps, with closed forms."""
    dv.step(sp.Eq(sp.Symbol(r"\kappa_4"), sp.Symbol(r"\tfrac1N\big(\mathbf 1_{\mathrm{one\ pair}}\tfrac{3}{2\pi_n}"
                                                     r"K_n^2[3]\delta\delta - [3]K\otimes K\big)")),
            "the connected four-point function of the real modes: one neuron carries all four legs on one pair "
            "($E[a^4] = 3\\sigma_a^4$, the phase average's three pairings), minus the disconnected pairings; the "
            "first term is supported on a single momentum pair (a triple Kronecker delta), the second couples every "
            "pair of modes: the vertex is non-local", "eq:kappa4")
    dv.step(sp.Eq(sp.Symbol(r"S_{\mathrm{int}}"), sp.Symbol(r"\tfrac1{4!}\lambda\phi^4 + \tfrac12\mu\phi^2 + E,\quad "
                                                       r"\lambda = -\kappa_4K^{-4},\ \mu = -\tfrac12\lambda{:}K,"
                                                       r"\ E = \tfrac18K{:}\lambda{:}K")),
            "the Edgeworth expansion at first order in $\\kappa_4$ \\cite{DHMSS2023}", "eq:edgeworth",
            cites=("DHMSS2023",))
    dv.step(sp.Eq(sp.Symbol(r"\partial_k\mu"), sp.Symbol(r"-\tfrac12\lambda{:}\partial_kC_k,\quad "
                                                          r"\partial_k\lambda = 0")),
            "Polchinski's equation at order $1/N$: $(\\partial S_{\\mathrm{int}})^2$ is of order $1/N^2$ "
            "\\cite{Polchinski1984}", "eq:tadpole-flow", cites=("Polchinski1984",))
    dv.step(sp.Eq(sp.Symbol(r"\mu_k(n)"), sp.Symbol(r"\frac{1}{NK_n}\Big(\frac{3}{\pi_n} - \frac{M_k+2}{2}\Big)")),
            "closed form: $M_k$ real modes below $k$, $\\pi_n$ the probability of the pair $\\pm n$ "
            "($2/|S|$ for the generalized cos-net); the full network is $M_k = M$; checked against the coarse-grained "
            "network's action at every k of the certificate", "eq:mu-closed", verification=_closed_form(dim))
