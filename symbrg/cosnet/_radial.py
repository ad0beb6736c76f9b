r"""Radial frequency averages of a cos-net by composite Gauss-Legendre quadrature (no dependence on the theory).

Job: the float64 numerics that :mod:`symbrg.cosnet.theory` and :mod:`symbrg.cosnet.four_point` share, kept
in a module below both so that :meth:`symbrg.cosnet.theory.CosNet.connected_four_point` can call them
without an import cycle.  For a radial frequency density :math:`\rho(|b|)` on :math:`\mathbb R^d` (support
radius :math:`U`, or 14 standard deviations of a Gaussian) and a weight :math:`g(|b|)`,

.. math::  \mathbb E_b\big[g(|b|)\,\mathbf 1_{|b|<k}\cos(b\cdot u)\big]
           = \frac{\int_0^{\min(k,U)}p^{d-1}\rho(p)\,g(p)\,\Omega_d(p|u|)\,dp}{\int_0^{U}p^{d-1}\rho(p)\,dp},
           \qquad \Omega_d(x) = \Gamma(\tfrac d2)(\tfrac2x)^{d/2-1}J_{d/2-1}(x),

(the sphere areas cancel; the density is *not* renormalised by the momentum cutoff :math:`k`), evaluated
by :func:`_radial_quadrature` at many distances :math:`|u|` at once.  :func:`connected_four_point` is the
connected four-point function of :mod:`symbrg.cosnet.four_point` (whose docstring states the equation),
built from two such averages, :math:`g = s^2` and :math:`g = s^4`.

Accuracy: the panels of the radial rule are placed by :func:`analytic_breaks` so that 64-point
Gauss-Legendre resolves :math:`p^{d-1}\rho\,g` on each (a pole of :math:`s(p)^2 = 1/(p^2+m^2)` at
:math:`\pm im` makes the panels graded towards :math:`p = 0` for small :math:`m`), and each panel is cut so
that the phase :math:`p|u|` advances by at most :data:`PANEL_PHASE` over it: about 1e-14 relative
(checked against 30-digit mpmath quadrature in ``tests/test_four_point.py``).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import numpy as np
import sympy as sp

from symbrg.core import codegen
from symbrg.core.checks import finite_array, integer, positive
from symbrg.core.errors import InvalidArgument, ShapeMismatch, Unsupported
from symbrg.core.limits import Limit
from symbrg.core.symbols import symbol
from symbrg.core.types import ArrayLike, FloatArray, Number

__all__ = ["RadialNetwork", "FourPointRule", "four_point_rule", "quadruples", "connected_four_point",
           "analytic_breaks", "radial_average", "PANEL_PHASE", "QUADRUPLES", "A4",
           "PAIRINGS", "PAIRS", "PAIRING_COLUMNS", "momentum_cutoff_upper"]

#: Largest phase advance :math:`h\,(r_{\max}+1)` over one 64-point panel of the four-point rule (the kernel
#: quadratures of the theory keep their historical 4).  64-point Gauss-Legendre integrates
#: :math:`e^{i\omega p}` over a panel of phase 16 to far below double precision.
PANEL_PHASE = 16.0
#: :math:`\mathbb E[a^4]/\sigma_a^4` of Gaussian readout weights :math:`a\sim\mathcal N(0,\sigma_a^2)`.
A4 = 3.0
#: Quadruples of one connected four-point evaluation (about 1e-5 s each in float64).
QUADRUPLES = Limit("four_point_quadruples", 1e7, "quadruples (x1, x2, x3, x4) of one connected four-point evaluation")

_P = symbol("p")   # the momentum magnitude |b| (the theory's P)
AngularFunction = Callable[[FloatArray, int], FloatArray]


class _Frequencies(Protocol):
    @property
    def density(self) -> sp.Expr: ...
    @property
    def radius(self) -> sp.Expr: ...
    @property
    def gaussian_variance(self) -> sp.Expr | None: ...


class RadialNetwork(Protocol):
    """What the radial averages read from a network (a :class:`symbrg.cosnet.theory.CosNet`)."""
    @property
    def dim(self) -> int | sp.Symbol: ...
    @property
    def frequencies(self) -> _Frequencies: ...
    @property
    def readout_scale(self) -> sp.Expr: ...
    @property
    def sigma_a(self) -> Number: ...


@lru_cache(maxsize=1)
def _leggauss64() -> tuple[FloatArray, FloatArray]:
    """The 64-point Gauss-Legendre nodes and weights on [-1, 1] (computed once; read-only)."""
    x, w = np.polynomial.legendre.leggauss(64)
    x.flags.writeable = w.flags.writeable = False
    return x, w


def _radial_quadrature(r: np.ndarray, upper: float, f: Callable[[np.ndarray, np.ndarray], np.ndarray],
                       breaks: tuple[float, ...] = (), weight: Callable[[np.ndarray], np.ndarray] | None = None,
                       *, sqrt_ends: bool = False, panel_phase: float = 4.0) -> np.ndarray:
    r""":math:`\int_0^{\rm upper}f(p, r)\,w(p)\,dp` by composite Gauss-Legendre, vectorized over ``r`` in blocks
    (panels scale with :math:`r_{\max}\cdot{\rm upper}` to resolve the oscillation; panel edges at ``breaks``).
    ``sqrt_ends``: ``w`` may behave like :math:`\sqrt{|p-p_0|}` at the panel edges (an ``arccos`` of a level
    crossing); each panel is then mapped by :math:`p = a + h(1-\cos\pi s)/2`, which makes such ends analytic,
    so the rule converges exponentially again.  ``panel_phase``: the largest :math:`h\,(r_{\max}+1)` of a
    panel of width :math:`h` (64 nodes); the default 4 is the kernels' historical rule."""
    shape = np.shape(r)
    r = np.asarray(r, dtype=float).ravel()
    rmax = float(np.max(r, initial=0.0))
    edges = np.unique(np.array([0.0, *[b for b in breaks if 0 < b < upper], upper]))
    x, w = _leggauss64()
    total = np.zeros(r.shape)
    for lo, hi in zip(edges[:-1], edges[1:]):
        panels = max(1, math.ceil((hi - lo) * (rmax + 1.0) / panel_phase))
        a = lo + (hi - lo) * np.arange(panels) / panels
        h = (hi - lo) / panels
        if sqrt_ends:   # s in [0, 1]: p = a + h (1 - cos(pi s)) / 2, dp = h pi sin(pi s) / 2 ds
            s_nodes = (x + 1) / 2
            p = (a[:, None] + h * (1 - np.cos(np.pi * s_nodes[None, :])) / 2).ravel()
            wp = np.tile(w / 2 * h * np.pi * np.sin(np.pi * s_nodes) / 2, panels)
        else:
            p = (a[:, None] + (x[None, :] + 1) * h / 2).ravel()
            wp = np.tile(w * h / 2, panels)
        wp = wp * (1.0 if weight is None else weight(p))
        for i in range(0, r.size, 2048):  # bounded memory: blocks of distances
            rb = r[i:i + 2048, None]
            vals = np.broadcast_to(np.asarray(f(p[None, :], rb), float), (rb.shape[0], p.size))
            total[i:i + 2048] += vals @ wp
    return total.reshape(shape)


def _gauss(weight: Callable[[FloatArray], FloatArray], lo: float, hi: float) -> float:
    """64-point Gauss-Legendre of ``weight`` over [lo, hi]."""
    x, w = _leggauss64()
    return float(weight(lo + (x + 1) * (hi - lo) / 2) @ w) * (hi - lo) / 2


def analytic_breaks(weight: Callable[[FloatArray], FloatArray], upper: float, *, tol: float = 1e-15,
                    max_panels: int = 512) -> tuple[float, ...]:
    r"""Panel edges on :math:`(0, {\rm upper})` on which 64-point Gauss-Legendre resolves ``weight``: a panel is
    bisected while its one-panel and two-half-panel rules differ by more than ``tol`` times
    :math:`\int_0^{\rm upper}|w|` (at most ``max_panels`` panels; an integrable end singularity such as
    :math:`p^{-1/2}` then gets geometrically graded panels)."""
    scale = sum(_gauss(lambda p: np.abs(weight(p)), a, b)
                for a, b in zip(np.linspace(0.0, upper, 33)[:-1], np.linspace(0.0, upper, 33)[1:]))
    done: list[tuple[float, float]] = []
    todo = [(0.0, float(upper))]
    while todo:
        lo, hi = todo.pop()
        mid = (lo + hi) / 2
        coarse = _gauss(weight, lo, hi)
        fine = _gauss(weight, lo, mid) + _gauss(weight, mid, hi)
        if abs(coarse - fine) <= tol * scale or len(done) + len(todo) >= max_panels or not mid > lo:
            done.append((lo, hi))
        else:
            todo += [(lo, mid), (mid, hi)]
    return tuple(sorted(lo for lo, _ in done if lo > 0))


def radial_average(r: ArrayLike, upper: float, weight: Callable[[FloatArray], FloatArray], dim: int,
                   angular: AngularFunction, breaks: tuple[float, ...] = ()) -> FloatArray:
    r""":math:`\int_0^{\rm upper}w(p)\,\Omega_d(pr)\,dp` at every distance of ``r`` (any shape), by
    :func:`_radial_quadrature` (panel phase :data:`PANEL_PHASE`) over the distinct distances, in groups of
    like magnitude (:math:`2^j-1\le r<2^{j+1}-1`) so that short distances get few panels."""
    r = np.asarray(r, dtype=float)
    flat, inverse = np.unique(r, return_inverse=True)
    out = np.empty(flat.shape)
    cuts = np.searchsorted(flat, 2.0 ** np.arange(1, 64) - 1.0)
    start = 0
    for stop in (*cuts, flat.size):
        if stop > start:
            out[start:stop] = _radial_quadrature(flat[start:stop], upper, lambda p, q: angular(p * q, dim),
                                                 breaks, weight, panel_phase=PANEL_PHASE)
        start = max(start, int(stop))
    return out[inverse.reshape(r.shape)]


# --------------------------------------------------------------------------------------------------
# The connected four-point function
@dataclass(frozen=True)
class FourPointRule:
    r"""The numbers of one network behind :func:`connected_four_point`: dimension, :math:`\sigma_a`, the radial
    weights :math:`w_j(p) = p^{d-1}\rho(p)s(p)^{2j}/\int_0^U p^{d-1}\rho` (j = 1, 2) so that
    :math:`\mathbb E_b[s^{2j}\mathbf 1_{|b|<k}\cos(b\cdot u)] = \int_0^{\min(k,U)}w_j\,\Omega_d(p|u|)\,dp`, the
    support limit :math:`U` and the panel edges."""
    dim: int
    sigma_a: float
    upper: float
    w2: Callable[[FloatArray], FloatArray]
    w4: Callable[[FloatArray], FloatArray]
    breaks: tuple[float, ...]


def _numeric(argument: str, value: Number, allowed: frozenset[sp.Symbol] = frozenset()) -> sp.Expr:
    """``value`` as a sympy expression with no free symbols but ``allowed`` (text is refused, not parsed)."""
    try:
        expr = sp.sympify(value, strict=True)
    except sp.SympifyError:
        raise InvalidArgument(argument, f"expected numbers or sympy expressions, got {value!r}") from None
    extra = expr.free_symbols - allowed
    if extra:
        raise InvalidArgument(argument, f"needs a numeric network; it has the symbols {sorted(map(str, extra))} "
                                        "(substitute numbers first)")
    return expr


def four_point_rule(net: RadialNetwork) -> FourPointRule:
    """The checked, compiled :class:`FourPointRule` of ``net`` (cached per network)."""
    if not isinstance(net.dim, (int, np.integer)):
        raise InvalidArgument("net", f"needs a numeric dimension, got {net.dim}")
    fr = net.frequencies
    density = _numeric("net", fr.density, frozenset({_P}))
    scale = _numeric("net", net.readout_scale, frozenset({_P}))
    sigma_a = float(_numeric("net", net.sigma_a))
    radius = _numeric("net", fr.radius)
    if radius == sp.oo:
        if fr.gaussian_variance is None:
            raise Unsupported("net", "an unbounded frequency density must be Gaussian (or supported on a ball)")
        upper = 14.0 * math.sqrt(float(_numeric("net", fr.gaussian_variance)))
    else:
        upper = float(radius)
    return _rule(int(net.dim), density, scale, sigma_a, upper)


@lru_cache(maxsize=32)
def _rule(dim: int, density: sp.Expr, scale: sp.Expr, sigma_a: float, upper: float) -> FourPointRule:
    dens = codegen.lambdify(density, [_P], "numpy")
    s2 = codegen.lambdify(scale ** 2, [_P], "numpy")

    def base(p: FloatArray) -> FloatArray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.broadcast_to(np.asarray(dens(p), float) * p ** (dim - 1), np.shape(p))

    def square(p: FloatArray) -> FloatArray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.broadcast_to(np.asarray(s2(p), float), np.shape(p))

    for name, w in (("density", base), ("s^2", lambda p: base(p) * square(p)),
                    ("s^4", lambda p: base(p) * square(p) ** 2)):
        # E_b[s^4] must be finite: w(p) ~ p^alpha with alpha > -1 at p -> 0
        lo = np.array([1e-9, 1e-8]) * upper
        v = np.abs(w(lo))
        if not np.all(np.isfinite(w(np.linspace(0.0, upper, 257)[1:]))):
            raise InvalidArgument("net", f"p^(d-1) rho(p) {name} is not finite on (0, {upper:g}]")
        if np.all(v > 0) and math.log10(v[1] / v[0]) <= -0.999:
            raise InvalidArgument("net", f"E_b[{name}] diverges at b -> 0 (p^(d-1) rho(p) {name} is not integrable; "
                                         "the four-point function needs E_b[s^4] < oo: use m > 0)")
    breaks = tuple(sorted(set(analytic_breaks(base, upper)) | set(analytic_breaks(lambda p: base(p) * square(p), upper))
                          | set(analytic_breaks(lambda p: base(p) * square(p) ** 2, upper))))
    norm = float(_radial_quadrature(np.zeros(1), upper, lambda p, q: np.ones(np.broadcast(p, q).shape), breaks,
                                    base)[0])
    if not (math.isfinite(norm) and norm > 0):
        raise InvalidArgument("net", f"the frequency density does not normalise (integral {norm:g})")

    def w2(p: FloatArray) -> FloatArray:
        return base(p) * square(p) / norm

    def w4(p: FloatArray) -> FloatArray:
        return base(p) * square(p) ** 2 / norm
    return FourPointRule(dim, sigma_a, upper, w2, w4, breaks)


def quadruples(X: ArrayLike, dim: int, argument: str = "X") -> tuple[FloatArray, bool]:
    """``X`` as an (n, 4, d) float array, and whether it was one quadruple of shape (4, d) (for d = 1 also
    (4,) and (n, 4))."""
    A = finite_array(argument, X, ndim=(1, 2, 3))
    if dim == 1 and A.ndim < 3 and A.shape[-1] != 1:
        A = A[..., None]
    single = A.ndim == 2
    A = A[None] if single else A
    if A.ndim != 3 or A.shape[1:] != (4, dim):
        raise ShapeMismatch(argument, f"expected shape (4, {dim}) or (n, 4, {dim}), got {np.shape(X)}")
    return A, single


#: The three pairings {ij|kl} of four points, and the six pairs (i, j) in the order of their columns.
PAIRINGS = ((0, 1, 2, 3), (0, 2, 1, 3), (0, 3, 1, 2))
PAIRS = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))
#: For each pairing, the columns of its two pairs in :data:`PAIRS`.
PAIRING_COLUMNS = ((0, 5), (1, 4), (2, 3))


def momentum_cutoff_upper(rule_upper: float, k: float | None) -> float:
    """The upper limit :math:`\\min(k, U)` of the radial integrals (``k=None``: :math:`U`)."""
    return rule_upper if k is None else min(float(positive("k", k)), rule_upper)


def connected_four_point(net: RadialNetwork, X: ArrayLike, width: int, k: float | None,
                         angular: AngularFunction, *, a4: float = A4) -> float | FloatArray:
    r"""The connected four-point function of :mod:`symbrg.cosnet.four_point` in float64,

    .. math::  \kappa_4 = \frac{\sigma_a^4}{N}\Big[\frac38\sum_{\{ij|kl\}}F_4(|x_i+x_j-x_k-x_l|)
               - \frac14\sum_{\{ij|kl\}}G(|x_i-x_j|)\,G(|x_k-x_l|)\Big],

    :math:`F_4(r) = \mathbb E_b[s^4\mathbf 1_{|b|<k}\cos(b\cdot u)]`, :math:`G(r) = \mathbb E_b[s^2\mathbf 1_{|b|<k}\cos(b\cdot u)]`
    at :math:`|u| = r` (so :math:`\hat K = \sigma_a^2G/2`).  ``angular``: :math:`\Omega_d` in float64; ``a4``:
    :math:`\mathbb E[a^4]/\sigma_a^4` (3 for Gaussian readout weights; another value is a deliberately wrong
    prediction for the tests)."""
    rule = four_point_rule(net)
    d = rule.dim
    A, one = quadruples(X, d)
    N = integer("width", width, minimum=1)
    upper = momentum_cutoff_upper(rule.upper, k)
    n = A.shape[0]
    QUADRUPLES.check("X", n, cost=f"about {n / 1e5:.3g} s at 1e5 quadruples per second")
    out = np.empty(n)
    for s in range(0, n, 2 ** 16):  # bounded memory: blocks of quadruples
        B = A[s:s + 2 ** 16]
        u = np.stack([B[:, i] + B[:, j] - B[:, k_] - B[:, l] for i, j, k_, l in PAIRINGS], axis=1)
        v = np.stack([B[:, i] - B[:, j] for i, j in PAIRS], axis=1)
        F4 = radial_average(np.sqrt((u ** 2).sum(-1)), upper, rule.w4, d, angular, rule.breaks)
        G = radial_average(np.sqrt((v ** 2).sum(-1)), upper, rule.w2, d, angular, rule.breaks)
        pairs = sum(G[:, a] * G[:, b] for a, b in PAIRING_COLUMNS)
        out[s:s + 2 ** 16] = rule.sigma_a ** 4 / N * (a4 / 8.0 * F4.sum(1) - pairs / 4.0)
    return float(out[0]) if one else out
