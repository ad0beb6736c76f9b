r"""The connected four-point function of a cos-net at finite width, in position space, with a Monte-Carlo check.

Job: the leading non-Gaussianity of the cos-net field theory at width :math:`N`, with and without a
momentum-shell coarse graining, as a float64 function fast enough for many configurations
(:func:`connected_four_point`), a 30-digit mpmath reference (:func:`connected_four_point_mpmath`) and an
independent Monte-Carlo estimate from sampled networks with a standard error (:func:`sample_four_point`).

The network is :math:`f(x) = \beta + N^{-1/2}\sum_{i=1}^N a_i\,s(|b_i|)\cos(b_i\cdot x + c_i)` with
:math:`a_i\sim\mathcal N(0,\sigma_a^2)`, :math:`c_i\sim U[-\pi,\pi]`, :math:`b_i\sim\rho` radial and
:math:`\beta\sim\mathcal N(0,\sigma_\beta^2)` (:class:`symbrg.cosnet.theory.CosNet`).  The neurons are
i.i.d. and the bias is Gaussian and independent, so the fourth cumulant of :math:`f` is :math:`1/N` times
that of one neuron's term :math:`a\,s\cos(b\cdot x+c)`:

.. math::  \kappa_4(x_1,\dots,x_4) = \frac1N\Big[\mathbb E[a^4]\;\mathbb E_{b,c}\Big[s(|b|)^4\prod_{j=1}^4\cos(b\cdot x_j+c)\Big]
           - \big(\hat K_{12}\hat K_{34} + \hat K_{13}\hat K_{24} + \hat K_{14}\hat K_{23}\big)\Big],

:math:`\mathbb E[a^4] = 3\sigma_a^4`, :math:`\hat K_{ij} = \frac{\sigma_a^2}{2}\mathbb E_b[s^2\cos(b\cdot(x_i-x_j))]`
the kernel without the bias.  (Derivation: :math:`\mathbb E[f_1f_2f_3f_4] = N^{-1}\mathbb E[a^4]\mathbb E[\phi_1\phi_2\phi_3\phi_4]
+ (1-N^{-1})\sum\hat K\hat K` from the index coincidences :math:`i=j=k=l` and the three pairings; the mean is 0.)
The phase average is

.. math::  \mathbb E_c\Big[\prod_{j=1}^4\cos(\theta_j + c)\Big] = \frac18\sum_{\{ij|kl\}}\cos(\theta_i+\theta_j-\theta_k-\theta_l)

(of the 16 sign patterns of :math:`\prod\cos = 2^{-4}\sum_\epsilon e^{i\sum\epsilon_j(\theta_j+c)}` the six
with :math:`\sum\epsilon_j = 0` survive), so with :math:`u_P = x_i+x_j-x_k-x_l`

.. math::  \kappa_4 = \frac{\sigma_a^4}{N}\Big[\frac38\sum_P F_4(|u_P|) - \frac14\sum_P G(|x_i-x_j|)\,G(|x_k-x_l|)\Big],\quad
           F_{2j}(r) = \mathbb E_b\big[s(|b|)^{2j}\cos(b\cdot u)\big]_{|u|=r}
                     = \frac{\int_0^U p^{d-1}\rho(p)s(p)^{2j}\,\Omega_d(pr)\,dp}{\int_0^U p^{d-1}\rho(p)\,dp},

:math:`G = F_2`, :math:`\Omega_d(x) = \Gamma(\tfrac d2)(\tfrac2x)^{d/2-1}J_{d/2-1}(x)` (the angular average of
:math:`\cos(x\,\hat n\cdot\hat e)`), :math:`U` the support radius of :math:`\rho`.

Conventions:

* **Coarse graining at momentum scale k** removes the neurons with :math:`|b| > k`: their readout weights
  are set to 0, with :math:`N`, :math:`\sigma_a` and the :math:`N^{-1/2}` normalisation unchanged.  Every
  :math:`b`-average (in :math:`F_4` and in :math:`\hat K`) then carries :math:`\mathbf 1_{|b|<k}`, i.e. the radial
  integrals stop at :math:`\min(k, U)` while the density keeps its normalisation over the whole support.
  ``k=None`` or :math:`k\ge U`: the full network; :math:`k\to0`: :math:`\kappa_4\to0` like :math:`k^d`.
  (This is a *momentum* cutoff; :meth:`CosNet.kernel` with ``cutoff`` takes the *information* cutoff
  :math:`\Lambda`, equivalent for the generalized cos-net via :func:`symbrg.cosnet.theory.momentum_cutoff`.)
* **Densities**: any radial density on a ball (:func:`~symbrg.cosnet.theory.generalized_cosnet`,
  :func:`~symbrg.cosnet.theory.propagator_cosnet`, :func:`~symbrg.cosnet.theory.radial_frequencies`) and
  Gaussian densities (integrated to 14 standard deviations, a truncation below 1e-40); the network must be
  numeric and :math:`\mathbb E_b[s^4] < \infty` (the generalized cos-net with :math:`m = 0` needs
  :math:`d\ge5`).
* **Accuracy** of the float64 path: composite 64-point Gauss-Legendre in :math:`p` with panels placed by the
  weight's analytic structure and the oscillation (:mod:`symbrg.cosnet._radial`); it agrees with the
  30-digit mpmath reference to about 1e-14 relative (measured; the tests ask 1e-10).
* **Monte Carlo**: :func:`sample_four_point` estimates
  :math:`\kappa_4 = \mathbb E[f_1f_2f_3f_4] - \sum_P\mathbb E[f_if_j]\mathbb E[f_kf_l]` (valid since
  :math:`\mathbb E f = 0` exactly, bias included), each product of means by its unbiased U-statistic.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import mpmath
import numpy as np
import sympy as sp

from symbrg.core import codegen
from symbrg.core.checks import choice, finite_array, integer, positive
from symbrg.core.errors import ConvergenceError, InvalidArgument
from symbrg.core.types import ArrayLike, FloatArray
from symbrg.cosnet import _radial
from symbrg.cosnet._radial import PAIRING_COLUMNS, PAIRINGS, PAIRS
from symbrg.cosnet.theory import (
    SAMPLE_WORK,
    AngularAverage,
    CosNet,
    P,
    _angular_numpy,
    sample_frequencies,
)

__all__ = ["connected_four_point", "connected_four_point_mpmath", "sample_four_point", "phase_average_cos4"]


def _network(net: CosNet) -> CosNet:
    if not isinstance(net, CosNet):
        raise InvalidArgument("net", f"expected a CosNet (symbrg.cosnet.theory), got {type(net).__name__}")
    return net


def connected_four_point(net: CosNet, X: ArrayLike, width: int, k: float | None = None) -> float | FloatArray:
    r"""The connected four-point function :math:`\kappa_4(x_1,x_2,x_3,x_4)` of ``net`` at width ``width`` (float64).

    .. math::  \kappa_4 = \frac{\sigma_a^4}{N}\Big[\frac38\sum_{\{ij|kl\}}F_4(|x_i+x_j-x_k-x_l|)
               - \frac14\sum_{\{ij|kl\}}G(|x_i-x_j|)\,G(|x_k-x_l|)\Big]

    with :math:`F_{2j}(r) = \mathbb E_b[s^{2j}\mathbf 1_{|b|<k}\cos(b\cdot u)]_{|u|=r}` (module docstring: it is
    :math:`N^{-1}[\mathbb E a^4\,\mathbb E_{b,c}(s^4\prod\cos) - \sum\hat K\hat K]`).

    ``X``: one quadruple, shape (4, d), gives a float; shape (n, 4, d) gives n values (for d = 1 also (4,)
    and (n, 4)).  ``width``: N >= 1.  ``k``: momentum cutoff > 0, the neurons with :math:`|b|>k` removed
    (``None``: the full network).  Vectorized: one Gauss-Legendre radial rule over all distinct distances
    at once, in bounded blocks (about 3e4 quadruples per second for d = 3); relative accuracy about 1e-14.
    """
    return _radial.connected_four_point(_network(net), X, width, k, _angular_numpy)


def _mp_radial(f: Callable[[mpmath.mpf], mpmath.mpf], r: mpmath.mpf, upper: mpmath.mpf) -> mpmath.mpf:
    r""":math:`\int_0^{\rm upper}f(p)\,dp` by adaptive mpmath quadrature (Gauss-Legendre of rising degree) at
    the working precision, split into periods of :math:`\cos(pr)` and graded towards :math:`p = 0` (where the
    poles of :math:`s^2 = 1/(p^2+m^2)` lie nearest); refuses a result whose error estimate exceeds
    :math:`10^{5-{\rm dps}}`."""
    n = max(1, int(mpmath.ceil(upper * r / (2 * mpmath.pi))))
    pts = {upper * j / n for j in range(n + 1)} | {upper / 2 ** j for j in range(1, 8)}
    value, err = mpmath.quad(f, sorted(pts), error=True, method="gauss-legendre")
    if err > mpmath.mpf(10) ** (5 - mpmath.mp.dps) * max(1, abs(value)):
        raise ConvergenceError("X", f"mpmath quadrature error {mpmath.nstr(err, 3)} at r = {mpmath.nstr(r, 8)}")
    return value


def connected_four_point_mpmath(net: CosNet, X: ArrayLike, width: int, k: float | None = None, *,
                                dps: int = 30) -> mpmath.mpf | list[mpmath.mpf]:
    r""":func:`connected_four_point` at ``dps`` digits: the same equation with every radial integral
    :math:`\int_0^{\min(k,U)}p^{d-1}\rho\,s^{2j}\Omega_d(pr)\,dp` (and the normalisation
    :math:`\int_0^Up^{d-1}\rho`) by adaptive mpmath quadrature (Gauss-Legendre of rising degree at the
    working precision, split into periods of the oscillation: a rule independent of the float64 path's
    fixed 64-point panels), the angular average by mpmath's Bessel J
    (:class:`~symbrg.cosnet.theory.AngularAverage`), the points' sums and differences in mpmath.  The
    held-out reference of the float64 path: a few quadruples per second at 30 digits.  Returns an ``mpf``
    for one quadruple, else a list."""
    net = _network(net)
    rule = _radial.four_point_rule(net)   # checks the network (numeric, E[s^4] finite)
    d = rule.dim
    A, one = _radial.quadruples(X, d)
    N = integer("width", width, minimum=1)
    upper_f = _radial.momentum_cutoff_upper(rule.upper, k)
    digits = integer("dps", dps, minimum=15, maximum=1000)
    with mpmath.workdps(digits):
        dens = codegen.lambdify(net.frequencies.density, [P], "mpmath")
        s2 = codegen.lambdify(net.readout_scale ** 2, [P], "mpmath")
        U, upper = mpmath.mpf(rule.upper), mpmath.mpf(upper_f)
        sa2 = mpmath.mpf(str(sp.N(sp.sympify(net.sigma_a, strict=True) ** 2, digits + 10)))   # exact in sympy
        norm = _mp_radial(lambda p: p ** (d - 1) * dens(p), mpmath.mpf(0), U)
        cache: dict[tuple[int, str], mpmath.mpf] = {}

        def F(j: int, u: list[mpmath.mpf]) -> mpmath.mpf:
            r = mpmath.sqrt(mpmath.fsum(c ** 2 for c in u))
            key = (j, mpmath.nstr(r, digits))
            if key not in cache:
                cache[key] = _mp_radial(lambda p: p ** (d - 1) * dens(p) * s2(p) ** j
                                        * AngularAverage.mpmath_impl(d, p * r), r, upper) / norm
            return cache[key]
        out = []
        for quadruple in A:
            x = [[mpmath.mpf(float(c)) for c in point] for point in quadruple]   # exact binary values
            four = mpmath.fsum(F(2, [x[i][c] + x[j][c] - x[k_][c] - x[l][c] for c in range(d)])
                               for i, j, k_, l in PAIRINGS)
            G = [F(1, [x[i][c] - x[j][c] for c in range(d)]) for i, j in PAIRS]
            two = mpmath.fsum(G[a] * G[b] for a, b in PAIRING_COLUMNS)
            out.append(sa2 ** 2 / N * (mpmath.mpf(_radial.A4) / 8 * four - two / 4))
    return out[0] if one else out


def phase_average_cos4(theta: ArrayLike) -> FloatArray:
    r"""The phase average :math:`\mathbb E_{c\sim U[-\pi,\pi]}[\prod_{j=1}^4\cos(\theta_j+c)]
    = \frac18\sum_{\{ij|kl\}}\cos(\theta_i+\theta_j-\theta_k-\theta_l)`, for angles ``theta`` of shape
    (..., 4); shape (...)."""
    t = finite_array("theta", theta)
    if t.ndim < 1 or t.shape[-1] != 4:
        raise InvalidArgument("theta", f"expected shape (..., 4), got {t.shape}")
    return sum(np.cos(t[..., i] + t[..., j] - t[..., k] - t[..., l]) for i, j, k, l in PAIRINGS) / 8


# --------------------------------------------------------------------------------------------------
# Monte Carlo
def _output_blocks(net: CosNet, X: FloatArray, width: int, members: int, k: float | None, seed: int,
                   block: int) -> Iterator[tuple[int, FloatArray]]:
    """``(start, f)`` for consecutive blocks of members: the outputs f(X), shape (members in block, n), of
    networks drawn exactly as :func:`~symbrg.cosnet.theory.sample_cosnet` draws them (same generator, same
    order: frequencies, phases, readout weights, bias), then the readout weights of the neurons with
    :math:`|b|\\ge k` set to 0."""
    rng = np.random.default_rng(seed)
    sa, sb = float(net.sigma_a), float(net.sigma_bias)
    n, d = X.shape
    per = max(1, block // max(1, width * max(n, d)))
    for start in range(0, members, per):  # blocks of members (memory), vectorized inside
        mb = min(per, members - start)
        b = sample_frequencies(net, (mb, width), rng)
        ph = rng.uniform(-np.pi, np.pi, size=(mb, width))
        a = rng.normal(0.0, sa, size=(mb, width))
        bias = rng.normal(0.0, sb, size=(mb, 1)) if sb > 0 else 0.0
        w = a if k is None else np.where(np.linalg.norm(b, axis=-1) < k, a, 0.0)
        yield start, np.einsum("mw,mwn->mn", w, net.neurons(b, ph, X)) / math.sqrt(width) + bias


def _kappa(S: FloatArray, C: FloatArray, M: FloatArray) -> FloatArray:
    r""":math:`\hat\kappa_4 = \overline{f_1f_2f_3f_4} - \sum_P\frac{S_{ij}S_{kl} - C_P}{M(M-1)}` from the sums
    ``S`` (..., q, 7) of :math:`(f_1f_2f_3f_4, f_if_j)`, ``C`` (..., q, 3) of :math:`f_if_jf_kf_l` per pairing
    (the cross sums that make each product of means unbiased) and the member counts ``M`` (...)."""
    m = M[..., None]
    pairs = sum(S[..., 1 + a] * S[..., 1 + b] - C[..., p] for p, (a, b) in enumerate(PAIRING_COLUMNS))
    return S[..., 0] / m - pairs / (m * (m - 1))


def sample_four_point(net: CosNet, X: ArrayLike, width: int, members: int, k: float | None = None, *,
                      seed: int = 0, block: int = 2 ** 20, groups: int = 100, error: str = "bootstrap",
                      resamples: int = 1000) -> tuple[float, float] | tuple[FloatArray, FloatArray]:
    r"""Monte-Carlo estimate of :math:`\kappa_4` and its standard error from ``members`` sampled networks.

    The networks are drawn as :func:`~symbrg.cosnet.theory.sample_cosnet` draws them (seeded
    ``numpy.random.default_rng(seed)``, blocks of members bounding memory to about ``block`` floats; for
    ``k=None`` the outputs are exactly ``sample_cosnet``'s), coarse-grained by setting the readout weights of
    the neurons with :math:`|b|\ge k` to 0.  The estimate is

    .. math::  \hat\kappa_4 = \frac1M\sum_m f_1f_2f_3f_4 - \sum_{\{ij|kl\}}\frac{1}{M(M-1)}\sum_{m\ne m'}(f_if_j)_m(f_kf_l)_{m'},

    unbiased for :math:`\kappa_4 = \mathbb E[f_1f_2f_3f_4] - \sum\mathbb E[f_if_j]\mathbb E[f_kf_l]` (:math:`\mathbb E f = 0`).
    ``error="bootstrap"``: its standard error from ``resamples`` bootstrap resamples of ``groups``
    contiguous groups of members (seeded by ``seed``, a stream separate from the networks');
    ``"delta"``: the delta method, :math:`\mathrm{SE}^2 = g^\top\hat\Sigma g/M` with :math:`g` the gradient of
    :math:`\kappa_4` in the means of :math:`(f_1f_2f_3f_4, f_if_j)` and :math:`\hat\Sigma` their sample covariance.

    Both standard errors are asymptotic.  At small width the product :math:`f_1f_2f_3f_4` is heavy-tailed
    (its variance involves :math:`\mathbb E[a^8] = 105\sigma_a^8`), so the error is itself noisy and
    typically too small when ``members`` is small: measured for the generalized cos-net (d = 2, R = 4, m = 1,
    N = 4), the mean squared z-score of the truth over 40 ensembles is 2.5 at 3000 members and 0.7 at 40000;
    use :math:`\gtrsim 10^4` members at N = 4.

    ``X``: shape (4, d) (floats returned) or (n, 4, d) (arrays of n).  Work is bounded up front by the
    cos-net sampler's limit ``cosnet_samples`` (members x width x 4n x d).
    """
    net = _network(net)
    d = _radial.four_point_rule(net).dim    # checks the network (numeric, E[s^4] finite)
    A, one = _radial.quadruples(X, d)
    width = integer("width", width, minimum=1)
    members = integer("members", members, minimum=2)
    kv = None if k is None else float(positive("k", k))
    seed = integer("seed", seed, minimum=0)
    block = integer("block", block, minimum=1)
    groups = min(integer("groups", groups, minimum=2), members)
    resamples = integer("resamples", resamples, minimum=2)
    choice("error", error, ("bootstrap", "delta"))
    q = A.shape[0]
    pts = A.reshape(4 * q, d)
    work = members * width * 4 * q * d
    SAMPLE_WORK.check("members", work, cost=f"about {work / 1.3e7 / 60:.3g} min at 1.3e7 per second")
    S = np.zeros((groups, q, 7))        # per group: sums of (f1 f2 f3 f4, f_i f_j for the six pairs)
    C = np.zeros((groups, q, 3))        # per group: sums of f_i f_j f_k f_l for the three pairings
    count = np.zeros(groups)
    second = np.zeros((q, 7, 7))        # all members: sums of the products of the seven statistics
    for start, f in _output_blocks(net, pts, width, members, kv, seed, block):
        F = f.reshape(f.shape[0], q, 4)
        Z = np.concatenate([F.prod(-1)[..., None], np.stack([F[..., i] * F[..., j] for i, j in PAIRS], -1)], -1)
        cross = np.stack([Z[..., 1 + a] * Z[..., 1 + b] for a, b in PAIRING_COLUMNS], -1)
        gid = (start + np.arange(f.shape[0])) * groups // members
        np.add.at(S, gid, Z)
        np.add.at(C, gid, cross)
        count += np.bincount(gid, minlength=groups)
        second += np.einsum("mqa,mqb->qab", Z, Z)
    total = np.array(float(members))
    est = _kappa(S.sum(0), C.sum(0), total)
    if error == "delta":
        mean = S.sum(0) / members                                        # (q, 7)
        cov = (second / members - mean[:, :, None] * mean[:, None, :]) * members / (members - 1)
        g = np.zeros((q, 7))
        g[:, 0] = 1.0
        for a, b in PAIRING_COLUMNS:
            g[:, 1 + a] -= mean[:, 1 + b]
            g[:, 1 + b] -= mean[:, 1 + a]
        se = np.sqrt(np.maximum(np.einsum("qa,qab,qb->q", g, cov, g), 0.0) / members)
    else:
        boot = np.random.default_rng([seed, 4]).multinomial(groups, np.full(groups, 1.0 / groups), size=resamples)
        Sb = np.tensordot(boot, S, axes=(1, 0))                           # (resamples, q, 7)
        Cb = np.tensordot(boot, C, axes=(1, 0))
        se = _kappa(Sb, Cb, boot @ count).std(0, ddof=1)
    return (float(est[0]), float(se[0])) if one else (est, se)
