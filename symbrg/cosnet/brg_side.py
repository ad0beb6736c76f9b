r"""The BRG side of the cos-net theorem: the readout Fisher from the likelihood, coarse-grained by the
generic BRG engine, as functions of the information cutoff :math:`\Lambda`.

Job: everything the Bayesian RG says about the generalized cos-net, computed without the exact-RG
engine (this module imports nothing from :mod:`symbrg.rg.erg`, :mod:`symbrg.rg.lpa`,
:mod:`symbrg.rg.regulators` or :mod:`symbrg.rg.free_scalar`; only :mod:`symbrg.cosnet.certificate` sees
both sides).  The smooth shell profile is *data*: any object with a method ``K(z)`` handed to the BRG
engine's :func:`symbrg.rg.brg.shell_weight` (weight :math:`K(\Lambda/\lambda)`), so a wrong profile is
a wrong input, not a shared definition.

Defining equations (one datum :math:`y = f(x) + \epsilon`, :math:`\epsilon\sim\mathcal N(0,\sigma_\epsilon^2)`,
:math:`f \ni N^{-1/2}a\,s(p)\cos(b\cdot x + c)`, :math:`T` data):

.. math::  I(p) = -T\,\mathbb E_{x,y}\big[\partial_a^2\ln p(y\mid a)\big]
           = \frac{T}{N\sigma_\epsilon^2}s(p)^2\,\mathbb E_x[\cos^2(b\cdot x+c)],\qquad
           V_\Lambda(p) = w\big(I(p),\Lambda\big)\,S(p),

the stiff-sector ("removed" prescription: :math:`a\to\sqrt w\,a`) variance of the field mode
:math:`p` (the paper's prior-resampling prescription gives :math:`S(p)`: the same stiff field plus an
independent field of the resampled neurons, :meth:`BRGSide.prior_variance`), with :math:`S(p) = (2\pi)^d\frac{\sigma_a^2}{2}\rho_1(p)s(p)^2` the network's spectral density.
Its normalized dual action per mode is :math:`S^{\rm BRG}_\Lambda = \phi^2/(2V_\Lambda) + \tfrac12\ln(2\pi V_\Lambda)`
(field-independent part included) and its removed sector carries :math:`S - V_\Lambda`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TypeAlias

import numpy as np
import sympy as sp

from symbrg.core.checks import choice, integer, positive
from symbrg.core.errors import InvalidArgument
from symbrg.core.types import FloatArray, Number
from symbrg.cosnet.theory import LAM, NOISE, PHASE, CosNet, N, P, T, cos2_gaussian_input
from symbrg.rg import brg

__all__ = ["MUTABLE", "readout_fisher", "BRGSide", "engine_stiff_variances", "engine_prior_split"]

#: What a mutation may change on this side (the certificate names the mutations).
MUTABLE = ("profile", "prior_factor", "keep_all", "resample_from_posterior")

_A, _Y, _THETA = sp.symbols("a y theta", real=True)

#: A smooth shell profile, as the BRG engine's :func:`~symbrg.rg.brg.shell_weight` takes it (an object with
#: ``K(z)``): named through the engine, so that this side imports nothing from the ERG modules.
ShellProfile: TypeAlias = "brg.Regulator"
#: Numbers for the symbols of the network (e.g. ``{M: 0.5, T: 80.0, ...}``).
Values: TypeAlias = "dict[sp.Symbol, float]"


def readout_fisher(net: CosNet, inputs: str = "broad") -> sp.Expr:
    r"""The readout Fisher of the neuron with frequency :math:`|b| = p`, derived from its likelihood.

    :math:`\ln p(y\mid a) = -(y - N^{-1/2}a\,s(p)\cos\theta)^2/(2\sigma_\epsilon^2) + \mathrm{const}`,
    :math:`\theta = b\cdot x + c`; :math:`-\partial_a^2` of it is :math:`s^2\cos^2\theta/(N\sigma_\epsilon^2)`
    (independent of :math:`y`), averaged over the inputs (``"broad"``: :math:`\mathbb E\cos^2 = \frac12`;
    ``"gaussian"``: :func:`~symbrg.cosnet.theory.cos2_gaussian_input`, then over the phase) and times
    :math:`T`.  Never taken from :meth:`CosNet.fisher_readout` (which the certificate checks against it).
    """
    choice("inputs", inputs, ("broad", "gaussian"))
    loglik = -(_Y - _A * net.neuron(_THETA) / sp.sqrt(N)) ** 2 / (2 * NOISE ** 2)
    per_datum = sp.simplify(-sp.diff(loglik, _A, 2))
    cos2 = sp.cos(_THETA) ** 2
    coeff = sp.simplify(per_datum / cos2)
    if coeff.has(_THETA) or coeff.has(_Y):
        raise InvalidArgument("net", "readout Fisher is not proportional to cos^2(b.x+c)")  # pragma: no cover
    avg = sp.Rational(1, 2) if inputs == "broad" else sp.simplify(
        sp.integrate(cos2_gaussian_input(), (PHASE, -sp.pi, sp.pi)) / (2 * sp.pi))
    return sp.simplify(T * coeff * avg)


@dataclass(frozen=True)
class BRGSide:
    r"""The BRG-coarse-grained cos-net as functions of :math:`(p, \Lambda)`.

    net: the architecture; profile: the smooth shell profile (an object with ``K(z)``; ``None`` for the
    engine's sharp shell :math:`\Theta(\lambda-\Lambda)`); prior_factor: a factor on the readout prior
    variance (1 for the network as defined); keep_all: skip the shell (every neuron kept);
    resample_from_posterior: the paper's prescription resamples sloppy weights from the trained
    posterior's marginal instead of the prior (a mistake the certificate must catch).
    """
    net: CosNet
    profile: ShellProfile | None = None
    prior_factor: sp.Expr = sp.Integer(1)
    keep_all: bool = False
    resample_from_posterior: bool = False

    @cached_property
    def fisher(self) -> sp.Expr:
        """:func:`readout_fisher` of the network, broad inputs."""
        return readout_fisher(self.net)

    @property
    def spectral_density(self) -> sp.Expr:
        r""":math:`S(p)` with the readout prior variance as used (times ``prior_factor``)."""
        return self.net.spectral_density * self.prior_factor

    def weight(self, cutoff: Number = LAM) -> sp.Expr:
        r"""The BRG engine's shell weight :math:`w(I(p),\Lambda)` (1 when ``keep_all``)."""
        if self.keep_all:
            return sp.Integer(1)
        return brg.shell_weight(self.fisher, cutoff, self.profile)

    def variance(self, cutoff: Number = LAM) -> sp.Expr:
        r""":math:`V_\Lambda(p) = w\,S(p)`: the stiff-sector two-point function of the mode :math:`p`."""
        return self.weight(cutoff) * self.spectral_density

    def prior_variance(self, cutoff: Number = LAM) -> sp.Expr:
        r"""The mode's variance under the paper's prescription (sloppy weights resampled from the prior), from
        the BRG engine's :func:`~symbrg.rg.brg.coarse_grain_modes` with the untrained network
        (:math:`\pi_* =` prior): the stiff field plus an independent field of the resampled neurons."""
        if self.keep_all:
            return self.spectral_density
        mode = brg.coarse_grain_modes([self.fisher], cutoff, [0], [self.spectral_density], [0],
                                      [self.spectral_density], prescription="prior", regulator=self.profile)[0]
        return 1 / mode.precision

    def removed_variance(self, cutoff: Number = LAM) -> sp.Expr:
        r""":math:`S(p) - V_\Lambda(p)`: the two-point function of the field of the removed neurons."""
        return (1 - self.weight(cutoff)) * self.spectral_density

    def dual_action(self, phi: sp.Symbol, cutoff: Number = LAM) -> sp.Expr:
        r""":math:`\phi^2/(2V_\Lambda) + \frac12\ln(2\pi V_\Lambda)`: minus the log-density of the stiff mode."""
        v = self.variance(cutoff)
        return phi ** 2 / (2 * v) + sp.log(2 * sp.pi * v) / 2

    def vacuum_energy(self, cutoff: Number = LAM) -> sp.Expr:
        r""":math:`\frac12\ln(2\pi V_\Lambda(p))`, the field-independent part of :meth:`dual_action`."""
        return sp.log(2 * sp.pi * self.variance(cutoff)) / 2

    def removed_free_energy(self, cutoff: Number = LAM) -> sp.Expr:
        r""":math:`-\frac12\ln(2\pi(S - V_\Lambda))`: the free energy of the removed sector of the mode."""
        return -sp.log(2 * sp.pi * self.removed_variance(cutoff)) / 2


def engine_stiff_variances(side: BRGSide, momenta: Sequence[float] | FloatArray, cutoff: float,
                           values: Values) -> FloatArray:
    r"""The same stiff variances from the numeric engine :func:`symbrg.rg.brg.coarse_grain`: neurons with
    the given momenta, untrained (:math:`\pi_* =` the readout prior, scaled to the spectral density),
    diagonal readout Fisher, sharp shell; the removed prescription is the engine's prior prescription
    with a point-mass prior at :math:`a = 0`.  ``values`` gives numbers for the symbols."""
    p = np.asarray(momenta, float)
    positive("cutoff", cutoff)
    fis = sp.lambdify(P, side.fisher.subs(values), "numpy")
    dens = sp.lambdify(P, side.spectral_density.subs(values), "numpy")
    lam = np.broadcast_to(np.asarray(fis(p), float), p.shape)
    var = np.broadcast_to(np.asarray(dens(p), float), p.shape)
    if side.keep_all:
        return var.copy()
    n = len(p)
    zero = np.zeros(n)
    cg = brg.coarse_grain((zero, np.diag(var)), np.diag(lam), cutoff, prior=(zero, np.zeros((n, n))),
                          criterion="diagonal")
    return np.diag(cg.covariance).copy()


def engine_prior_split(side: BRGSide, momenta: Sequence[float], cutoff: float, values: Values, dim: int
                       ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    r"""The paper's prescription applied by the numeric engine to a *trained* network: neurons with
    frequencies :math:`b_j = p_j e_0` and phases :math:`c_j = 0.7j` (:meth:`CosNet.neurons`), readout prior
    :math:`\mathcal N(0, \mathrm{diag}\,S(p_j))`, trained on eight inputs :math:`x_t\in[-2, 2]e_0` with targets
    :math:`\sin x_t` and noise :math:`\sigma_\epsilon` (a conjugate posterior :math:`\pi_*` that correlates the
    neurons), coarse-grained by :func:`symbrg.rg.brg.coarse_grain` (diagonal readout Fisher, sharp shell,
    sloppy weights resampled from the prior), inputs of dimension ``dim``.  Returns ``(mean, covariance)``
    of :math:`\pi_\Lambda` and of :math:`\pi_*`."""
    p = np.asarray(momenta, float)
    positive("cutoff", cutoff)
    fis = sp.lambdify(P, side.fisher.subs(values), "numpy")
    dens = sp.lambdify(P, side.spectral_density.subs(values), "numpy")
    lam = np.broadcast_to(np.asarray(fis(p), float), p.shape)
    var = np.broadcast_to(np.asarray(dens(p), float), p.shape)
    d = integer("dim", dim, minimum=1)
    b = np.zeros((p.size, d))
    b[:, 0] = p
    x = np.zeros((8, d))
    x[:, 0] = np.linspace(-2.0, 2.0, 8)
    phi = side.net.neurons(b, 0.7 * np.arange(p.size), x, values).T          # (data, neurons)
    noise2 = float(values[NOISE]) ** 2
    precision = np.diag(1 / var) + phi.T @ phi / noise2
    cov = np.linalg.inv(precision)
    mean = cov @ phi.T @ np.sin(x[:, 0]) / noise2
    trained = (mean, 0.5 * (cov + cov.T))
    if side.keep_all:
        return mean, trained[1], mean, trained[1]
    prior = trained if side.resample_from_posterior else (np.zeros(p.size), np.diag(var))
    cg = brg.coarse_grain(trained, np.diag(lam), cutoff, prior=prior, prescription="prior", criterion="diagonal")
    return cg.mean, cg.covariance, mean, trained[1]
