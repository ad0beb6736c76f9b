r"""The cos-net at finite width N: its interacting field theory at order 1/N, and its BRG coarse graining.

Job: the BRG side of the finite-width theorem (it imports nothing from the ERG modules
:mod:`symbrg.rg.erg`, :mod:`symbrg.rg.regulators`, :mod:`symbrg.rg.wilsonian`; only
:mod:`symbrg.cosnet.finite_width_certificate` sees both sides).  At width N the field
:math:`f = N^{-1/2}\sum_i a_is(|b_i|)\cos(b_i\cdot x + c_i)` is a sum of N independent plane waves, so its
connected n-point functions scale as :math:`N^{1-n/2}` and its dual action gains a quartic vertex at
order 1/N (:mod:`symbrg.gaussian.edgeworth`).

**Theorem (any N; removed prescription; broad inputs; sharp shell).**  The readout Fisher of neuron i,
:math:`I_i = \frac{T}{2N\sigma_\epsilon^2}s(|b_i|)^2`, decreases with :math:`|b_i|` when s does, so
:math:`I_i\ge\Lambda\iff|b_i|\le k(\Lambda)`; removing the sloppy readouts (:math:`a_i\to0`) keeps exactly
the plane waves with :math:`|b_i|<k`.  Since each neuron is one plane wave (Bohr spectrum
:math:`\{\pm b_i\}`), that *is* the projection of the field onto the momenta :math:`|p|<k`, for every draw of
the weights: :math:`f_\Lambda = P_{k(\Lambda)}f`.  Hence every cumulant of the coarse-grained network is the
projected cumulant of the full one, and its law is the Wilsonian (sharp-cutoff) low-mode marginal.
Assumptions: inputs broad enough that :math:`\mathbb E_x\cos^2(b\cdot x+c) = \tfrac12` (exact on a periodic
box), the per-neuron (diagonal) readout Fisher, readout weights set to zero (not resampled), a sharp shell,
almost surely no :math:`|b_i| = k`.

**The box.**  To write the action in finite terms the field lives on the periodic box
:math:`[0, 2\pi)^d`: frequencies on the lattice :math:`S = \{n\in\mathbb Z^d: 0<|n|^2<R^2\}` with
probabilities :math:`\propto\rho(|n|)` (:class:`BoxCosNet`), real modes
:math:`f = \sum_{n\in S/\pm}\phi_{n,c}\cos n\cdot x + \phi_{n,s}\sin n\cdot x`.  A neuron on the pair
:math:`\pm n` adds :math:`N^{-1/2}a\,s_n(\cos c, \mp\sin c)`; with the phase moments
:math:`\mathbb E_c[u_\alpha u_\beta] = \tfrac12\delta_{\alpha\beta}` and
:math:`\mathbb E_c[u_\alpha u_\beta u_\gamma u_\delta] = \tfrac18[3]\delta\delta` (the issue's three pairings),
the per-mode covariance is :math:`K_n = \sigma_a^2\pi_ns_n^2/2` (:math:`\pi_n` the probability of the pair)
and :math:`\kappa_4 = \frac1N\big(\mathbf 1_{\rm one\ pair}\tfrac{3}{2\pi_n}K_n^2[3]\delta\delta - [3]K\otimes K\big)`.
:math:`\sigma_a^2` is fixed by :math:`K_n = \sigma^2/(|n|^2+m^2)` (:math:`\sigma^2` carries the box volume).
The vertex is non-local: the first term lives on one momentum pair (all four legs :math:`\pm n`, a triple
Kronecker delta), the second couples every pair of modes (the neuron count is fixed, so mode energies
anticorrelate).  Everything here is exact rational arithmetic.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, cached_property
from itertools import product
from typing import Literal

import numpy as np
import sympy as sp
from numpy.typing import NDArray

from symbrg.core.checks import choice, integer
from symbrg.core.errors import InvalidArgument
from symbrg.core.exact import Q, RationalLike, rational, to_sympy
from symbrg.core.types import FloatArray
from symbrg.cosnet.brg_side import readout_fisher
from symbrg.cosnet.theory import NOISE, CosNet, N, P, T, generalized_cosnet, propagator_cosnet
from symbrg.gaussian.edgeworth import Tensor, sum_cumulants
from symbrg.rg import brg

__all__ = ["PHASE_SECOND", "PHASE_FOURTH", "phase_moments", "BoxCosNet", "box_cosnet", "box_fisher",
           "shell_weights", "coarse_grained_cumulants", "Prescription"]

#: How the sloppy neurons leave: ``"removed"`` (readout set to zero, N and sigma_a unchanged: the stiff
#: marginal) or ``"surviving"`` (a narrower network of the surviving neurons: width N times the kept
#: probability, frequencies renormalised on the kept set, sigma_a^2 rescaled to keep the two-point function).
Prescription = Literal["removed", "surviving"]


def _fractions(values: Sequence[Q] | Sequence[int]) -> Tensor:
    return np.array([Q(v) for v in values], dtype=object)


def _delta_pairings(scale: Q) -> Tensor:
    d = np.eye(2, dtype=int).astype(object)
    return (np.einsum("ab,cd->abcd", d, d) + np.einsum("ac,bd->abcd", d, d)
            + np.einsum("ad,bc->abcd", d, d)) * scale


#: :math:`\mathbb E_c[u_\alpha u_\beta]` of the unit vector :math:`u = (\cos c, \mp\sin c)`: :math:`\tfrac12\delta`.
PHASE_SECOND: Tensor = np.eye(2, dtype=int).astype(object) * Q(1, 2)
#: :math:`\mathbb E_c[u_\alpha u_\beta u_\gamma u_\delta] = \tfrac18(\delta_{\alpha\beta}\delta_{\gamma\delta}
#: + \delta_{\alpha\gamma}\delta_{\beta\delta} + \delta_{\alpha\delta}\delta_{\beta\gamma})`: the three pairings of
#: :math:`\mathbb E_c\prod_j\cos(\theta_j + c) = \tfrac18\sum\cos(\theta_i+\theta_j-\theta_k-\theta_l)`.
PHASE_FOURTH: Tensor = _delta_pairings(Q(1, 8))


@cache
def phase_moments(order: int) -> Tensor:
    r""":math:`\mathbb E[u_{\alpha_1}\cdots u_{\alpha_n}]` by integration: :math:`u = (\cos c, -\sigma\sin c)`,
    :math:`c\sim U[-\pi,\pi]`, :math:`\sigma = \pm1` equally likely (the pairs :math:`\pm n`); exact."""
    c = sp.Symbol("c", real=True)
    out = np.empty((2,) * integer("order", order, minimum=1, maximum=8), dtype=object)
    for idx in product(range(2), repeat=order):
        total = sp.Integer(0)
        for sign in (1, -1):
            u = (sp.cos(c), -sign * sp.sin(c))
            total += sp.integrate(sp.Mul(*(u[i] for i in idx)), (c, -sp.pi, sp.pi)) / (2 * sp.pi) / 2
        out[idx] = rational(sp.nsimplify(total), "phase moment")
    return out


def _rational(x: sp.Expr, what: str) -> Q:
    return rational(sp.simplify(x), what)


@dataclass(frozen=True)
class BoxCosNet:
    r"""A cos-net on the periodic box :math:`[0,2\pi)^d` (module docstring): the continuum architecture
    ``net`` (its neuron, readout scale and radial density) with frequencies on the lattice points
    :math:`0 < |n|^2 <` ``radius2``, mass squared ``mass2``, field normalisation ``sigma2``, ``width`` N."""
    net: CosNet
    radius2: Q
    mass2: Q
    sigma2: Q
    width: int

    @cached_property
    def lattice(self) -> NDArray[np.int64]:
        """One representative n of each pair :math:`\\pm n` (first non-zero coordinate positive), ordered by
        :math:`|n|^2` then lexicographically: shape (pairs, d)."""
        d = int(self.net.dim)
        r = int(np.floor(np.sqrt(float(self.radius2))))
        pts = [n for n in product(range(-r, r + 1), repeat=d)
               if 0 < sum(x * x for x in n) < self.radius2 and next(x for x in n if x) > 0]
        return np.array(sorted(pts, key=lambda n: (sum(x * x for x in n), n)), dtype=np.int64).reshape(-1, d)

    @cached_property
    def pair_momenta2(self) -> list[Q]:
        """:math:`|n|^2` of each pair."""
        return [Q(int((n * n).sum())) for n in self.lattice]

    @property
    def modes(self) -> int:
        """The number of real modes, two per pair (cos, sin)."""
        return 2 * len(self.lattice)

    @cached_property
    def momenta2(self) -> list[Q]:
        """:math:`|n|^2` of each real mode (pair order, cos then sin)."""
        return [p2 for p2 in self.pair_momenta2 for _ in range(2)]

    def _at(self, expr: sp.Expr, p2: Q, what: str) -> Q:
        return _rational(expr.subs(P, sp.sqrt(to_sympy(p2))), what)

    @cached_property
    def probabilities(self) -> list[Q]:
        r""":math:`\pi_n = 2\rho(|n|)/\sum_{m\in S}\rho(|m|)`, the probability that a neuron sits on the pair."""
        rho = [self._at(self.net.frequencies.density, p2, "density") for p2 in self.pair_momenta2]
        return [2 * r / (2 * sum(rho)) for r in rho]

    @cached_property
    def scales2(self) -> list[Q]:
        """:math:`s_n^2`, the squared readout scale of each pair."""
        return [self._at(self.net.readout_scale ** 2, p2, "readout_scale") for p2 in self.pair_momenta2]

    @cached_property
    def propagator(self) -> list[Q]:
        r""":math:`G_n = \sigma^2/(|n|^2+m^2)` of each real mode: the infinite-width (free) theory."""
        return [self.sigma2 / (p2 + self.mass2) for p2 in self.momenta2]

    @cached_property
    def sigma_a2(self) -> Q:
        r""":math:`\sigma_a^2` with :math:`\sigma_a^2\pi_ns_n^2/2 = G_n` for every pair (refused when no constant does)."""
        vals = {2 * g / (p * s) for g, p, s in zip(self.propagator[::2], self.probabilities, self.scales2)}
        if len(vals) != 1:
            raise InvalidArgument("net", "its kernel is not sigma^2 G on the lattice (rho s^2 (p^2+m^2) not constant)")
        return vals.pop()

    def moments(self, weights: Sequence[Q] | None = None, *, phase_second: Tensor = PHASE_SECOND,
                phase_fourth: Tensor = PHASE_FOURTH, a4: Q = Q(3)) -> tuple[Tensor, Tensor]:
        r"""The summand's moments :math:`(\mathbb E[ww], \mathbb E[w^{\otimes4}])` over the real modes, with the
        readouts of pair j scaled by :math:`\sqrt{w_j}` (``weights``; default all 1): block-diagonal in the pairs,
        :math:`\pi_jw_j\sigma_a^2s_j^2\,\mathbb E_c[uu]` and :math:`\pi_jw_j^2\,\mathbb E[a^4]s_j^4\,\mathbb E_c[u^{\otimes4}]`
        with :math:`\mathbb E[a^4] =` ``a4`` :math:`\sigma_a^4` (Gaussian readouts: 3)."""
        w = [Q(1)] * len(self.lattice) if weights is None else [Q(x) for x in weights]
        M = self.modes
        second = np.zeros((M, M), dtype=object) + Q(0)
        fourth = np.zeros((M,) * 4, dtype=object) + Q(0)
        for j, (p, s2, wj) in enumerate(zip(self.probabilities, self.scales2, w)):
            b = slice(2 * j, 2 * j + 2)
            second[b, b] = phase_second * (p * wj * self.sigma_a2 * s2)
            fourth[b, b, b, b] = phase_fourth * (p * wj * wj * a4 * self.sigma_a2 ** 2 * s2 * s2)
        return second, fourth

    def cumulants(self, weights: Sequence[Q] | None = None, *, phase_second: Tensor = PHASE_SECOND,
                  phase_fourth: Tensor = PHASE_FOURTH) -> tuple[Tensor, Tensor]:
        r"""``(K, kappa4)`` of the network's real modes (:meth:`moments`, then
        :func:`~symbrg.gaussian.edgeworth.sum_cumulants` at width N)."""
        return sum_cumulants(*self.moments(weights, phase_second=phase_second, phase_fourth=phase_fourth),
                             self.width)

    # ---- sampling (float64) -----------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> tuple[NDArray[np.intp], NDArray[np.int64], FloatArray, FloatArray]:
        """One network: each neuron's pair index (N,), its lattice frequency (N, d) (either sign of the pair),
        readouts (N,) and phases (N,)."""
        j = rng.choice(len(self.lattice), size=self.width, p=np.array(self.probabilities, float))
        sign = rng.choice((-1, 1), size=self.width)
        a = rng.normal(0.0, float(self.sigma_a2) ** 0.5, size=self.width)
        return j, self.lattice[j] * sign[:, None], a, rng.uniform(-np.pi, np.pi, size=self.width)

    def field(self, b: NDArray[np.int64], a: FloatArray, c: FloatArray, grid: int) -> FloatArray:
        r"""The network's output on the periodic grid :math:`x = 2\pi(i_1,\dots,i_d)/\text{grid}`: shape (grid,)*d."""
        d = int(self.net.dim)
        axes = np.meshgrid(*([2 * np.pi * np.arange(grid) / grid] * d), indexing="ij")
        x = np.stack(axes, -1).reshape(-1, d)
        return self.net.neurons(b, c, x).T.dot(a).reshape((grid,) * d) / np.sqrt(self.width) \
            if len(a) else np.zeros((grid,) * d)


def box_cosnet(dim: int, radius2: RationalLike, mass2: RationalLike, *, sigma2: RationalLike = 1,
               width: int = 10, parametrization: Literal["generalized", "propagator"] = "generalized") -> BoxCosNet:
    r"""The generalized cos-net (or its propagator-weighted variant) on the periodic box: frequencies on the
    lattice points :math:`0<|n|^2<R^2` (``radius2``), :math:`m^2` = ``mass2``, kernel :math:`\sigma^2G` per mode."""
    d = integer("dim", dim, minimum=1, maximum=4)
    R2, m2, s2 = rational(radius2, "radius2"), rational(mass2, "mass2"), rational(sigma2, "sigma2")
    for name, v in (("radius2", R2), ("mass2", m2), ("sigma2", s2)):
        if v <= 0:
            raise InvalidArgument(name, f"must be > 0, got {v}")
    if R2 <= 1:
        raise InvalidArgument("radius2", "must exceed 1: the lattice needs a point with 0 < |n|^2 < R^2")
    choice("parametrization", parametrization, ("generalized", "propagator"))
    make = generalized_cosnet if parametrization == "generalized" else propagator_cosnet
    net = make(d, sp.sqrt(to_sympy(R2)), sp.sqrt(to_sympy(m2)))
    box = BoxCosNet(net, R2, m2, s2, integer("width", width, minimum=1))
    if box.modes ** 4 > 2e6:
        raise InvalidArgument("radius2", f"{box.modes} real modes: the dense fourth cumulant would hold "
                                         f"{box.modes ** 4:.2g} exact entries (at most 2e6)")
    return box


def box_fisher(box: BoxCosNet, observations: Q, noise: Q) -> list[Q]:
    r"""The readout Fisher of a neuron on each pair, :func:`~symbrg.cosnet.brg_side.readout_fisher` (derived
    from the likelihood; the box average of :math:`\cos^2(n\cdot x + c)` is exactly :math:`\tfrac12`) at
    :math:`|b| = |n|`, T = ``observations`` data, noise ``noise``, width N."""
    I = readout_fisher(box.net).subs({T: to_sympy(observations), N: box.width, NOISE: to_sympy(noise)})
    return [box._at(I, p2, "fisher") for p2 in box.pair_momenta2]


def shell_weights(box: BoxCosNet, cutoff: Q, observations: Q, noise: Q, *, profile: brg.Regulator | None = None,
                  keep_all: bool = False) -> list[Q]:
    r"""The BRG engine's weight :math:`w_j = ` :func:`symbrg.rg.brg.shell_weight` of each pair's readout Fisher
    (:func:`box_fisher`) at information cutoff :math:`\Lambda` = ``cutoff`` (``profile`` None: the sharp shell;
    ``keep_all``: no shell, w = 1)."""
    if keep_all:
        return [Q(1)] * len(box.lattice)
    return [_rational(brg.shell_weight(to_sympy(f), to_sympy(cutoff), profile), "weight")
            for f in box_fisher(box, observations, noise)]


def coarse_grained_cumulants(box: BoxCosNet, cutoff: Q, observations: Q, noise: Q, *,
                             prescription: Prescription = "removed", profile: brg.Regulator | None = None,
                             phase_fourth: Tensor = PHASE_FOURTH,
                             keep_all: bool = False) -> tuple[NDArray[np.intp], Tensor, Tensor]:
    r"""The BRG-coarse-grained network at information cutoff :math:`\Lambda` = ``cutoff``: each pair's readouts
    scaled by :math:`\sqrt{w}` (:func:`shell_weights`), then the cumulants at width N.  Returns
    ``(support, K, kappa4)``: the real modes with :math:`w>0`, and the cumulants on them.
    ``prescription="surviving"``: the narrower network of the survivors (see :data:`Prescription`);
    ``keep_all``: no shell (w = 1).  ``phase_fourth``: the phase moment the closed form uses."""
    choice("prescription", prescription, ("removed", "surviving"))
    w = shell_weights(box, cutoff, observations, noise, profile=profile, keep_all=keep_all)
    support = np.array([2 * j + a for j, wj in enumerate(w) if wj > 0 for a in range(2)], dtype=np.intp)
    if not support.size:
        raise InvalidArgument("cutoff", "removes every neuron")
    second, fourth = box.moments(w, phase_fourth=phase_fourth)
    width: Q | int = box.width
    if prescription == "surviving":       # N' = N P, pi' = pi / P, sigma_a'^2 = sigma_a^2 P: E[w^4] -> P E[w^4]
        kept = sum((p for p, wj in zip(box.probabilities, w) if wj > 0), Q(0))
        fourth, width = fourth * kept, box.width * kept
    K, kappa4 = sum_cumulants(second, fourth, width)
    return support, K[np.ix_(support, support)], kappa4[np.ix_(support, support, support, support)]
