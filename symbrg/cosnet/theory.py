r"""Generalized cos-net field theories: architectures, kernels, dual actions, readout Fisher metrics.

Job: one place for the single-hidden-layer cos networks whose infinite-width dual is a free scalar
field, and for the facts that make their information shells momentum shells.  The architecture is

.. math::  f(x) = \beta + \frac{1}{\sqrt N}\sum_{i=1}^N a_i\, s(|b_i|)\cos(b_i\cdot x + c_i),\qquad
           a_i\sim\mathcal N(0,\sigma_a^2),\ c_i\sim U[-\pi,\pi],\ b_i\sim\rho,\ \beta\sim\mathcal N(0,\sigma_\beta^2),

with frequencies :math:`b_i\in\mathbb R^d` drawn from a radial density :math:`\rho(|b|)` and an optional
frequency-dependent readout scale :math:`s(|b|)`.  Its kernel (any width, since the neurons are
independent) is

.. math::  K(x-y) = \sigma_\beta^2 + \frac{\sigma_a^2}{2}\,\mathbb E_b\big[s(|b|)^2\cos(b\cdot(x-y))\big]
           = \sigma_\beta^2 + \int\!\frac{d^dp}{(2\pi)^d}\,e^{ip\cdot(x-y)}\,S(p),\qquad
           S(p) = (2\pi)^d\,\frac{\sigma_a^2}{2}\,\rho_1(p)\,s(p)^2,

where :math:`\rho_1` is :math:`\rho` normalized as a density on :math:`\mathbb R^d` (Bochner; the phase
average :math:`\mathbb E_c[\cos(u+c)\cos(v+c)] = \tfrac12\cos(u-v)`).  The dual action is
:math:`S[\phi] = \tfrac12\int_{\mathrm{supp}\,\rho}\frac{d^dp}{(2\pi)^d}\,|\tilde\phi(p)|^2/S(p)`.

Conventions (the paper's are not known; these are derived and tested here):

* **Generalized cos-net** (:func:`generalized_cosnet`): :math:`b` uniform in the ball :math:`B_R`,
  :math:`s(p) = (p^2+m^2)^{-1/2}`, :math:`\sigma_a^2 = 2\sigma^2\mathrm{vol}(B_R)/(2\pi)^d`, so that
  :math:`S(p) = \sigma^2/(p^2+m^2)` on :math:`|p|<R` and :math:`K = \sigma^2 G_R`, the free propagator with
  sharp UV cutoff :math:`R`, mass :math:`m` and field normalization :math:`Z = 1/\sigma^2`.
* **Propagator-weighted variant** (:func:`propagator_cosnet`): :math:`\rho\propto 1/(b^2+m^2)` on
  :math:`B_R`, no readout scale, :math:`\sigma_a^2 = 2\sigma^2\mathcal N_R/(2\pi)^d` with
  :math:`\mathcal N_R = \int_{B_R}d^db/(b^2+m^2)`: the *same* field theory.
* **Readout Fisher.** The coarse-grained parameters are the readout weights :math:`a_i` (prior
  :math:`\mathcal N(0,\sigma_a^2)`), observed through :math:`T` data with Gaussian noise :math:`\sigma_\epsilon^2`:
  :math:`I_{a_ia_i} = \frac{T}{N\sigma_\epsilon^2}s(|b_i|)^2\,\mathbb E_x[\cos^2(b_i\cdot x+c_i)]`.  For
  Gaussian inputs :math:`x\sim\mathcal N(0,s_x^2\mathbb 1)`,
  :math:`\mathbb E_x[\cos^2(b\cdot x+c)] = \tfrac12 + \tfrac12\cos(2c)\,e^{-2|b|^2s_x^2}`; the coarse
  graining uses its phase average (equivalently broad inputs), :math:`\tfrac12`, for which the Fisher is a
  function of :math:`|b|` alone.  Off-diagonal entries vanish for broad inputs and distinct frequencies.
* **Information cutoff ↔ momentum cutoff.** For the generalized cos-net
  :math:`I(p) = \frac{T}{2N\sigma_\epsilon^2(p^2+m^2)}` decreases monotonically, so
  :math:`I(p)<\Lambda \iff |p|>k(\Lambda)` with :math:`k(\Lambda)^2 = \frac{T}{2N\sigma_\epsilon^2\Lambda}-m^2`
  (valid for :math:`0<\Lambda\le I(0)`).  In the propagator-weighted variant the Fisher does not depend
  on :math:`|b|` and the correspondence fails (:func:`parametrization_caveat`).
* **Coarse graining.**  The Wilsonian theory at information cutoff :math:`\Lambda` is the field of the
  *stiff sector* of the BRG distribution :math:`\pi_\Lambda` (Eq. (54): its stiff marginal, i.e. the
  sloppy readout weights removed), :math:`a_i\to\sqrt{w_i}\,a_i` with the BRG engine's shell weight
  :math:`w_i = w(I_i,\Lambda)` (:func:`symbrg.rg.brg.shell_weight`): :math:`\Theta(I_i-\Lambda)` for the sharp
  shell, :math:`K_{\rm reg}(\Lambda/I_i)` for a smooth one.  Since
  :math:`\Lambda/I(p) = (p^2+m^2)/(k(\Lambda)^2+m^2)`, the coarse-grained kernel is

  .. math::  \sigma^2\int_{|p|<R}\frac{d^dp}{(2\pi)^d}\,e^{ip\cdot\Delta}\,
             \frac{K_{\rm reg}\big((p^2+m^2)/(k^2+m^2)\big)}{p^2+m^2},

  the UV-regulated free propagator at scale :math:`k(\Lambda)` with the cutoff function acting on the
  kinetic eigenvalue :math:`p^2+m^2`: for the sharp shell this is :math:`\Theta(k-|p|)` for every m, and
  for :math:`m=0` it is the standard :math:`K_{\rm reg}(p^2/k^2)`.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache, cached_property, lru_cache
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, overload

import mpmath
import numpy as np
import sympy as sp

from symbrg.core import codegen
from symbrg.core.checks import choice, finite_array, integer, nonnegative, positive, resolve_symbols
from symbrg.core.errors import InvalidArgument, OutOfRange, ShapeMismatch, Unsupported
from symbrg.core.limits import Limit
from symbrg.core.parsing import as_expression
from symbrg.core.special import NumericFunction
from symbrg.core.symbols import symbol
from symbrg.core.types import ArrayLike, ExprLike, FloatArray, Number
from symbrg.cosnet import _radial
from symbrg.cosnet._radial import _radial_quadrature

if TYPE_CHECKING:
    from sympy.printing.latex import LatexPrinter

    from symbrg.core.derivation import Derivation

__all__ = [
    "P", "R", "M", "SIGMA", "D", "LAM", "KCUT", "T", "N", "NOISE", "SX", "PHASE", "DIST",
    "REGULATOR_NAMES", "uv_cutoff_function", "ball_volume", "sphere_area", "FrequencyDensity",
    "gaussian_frequencies", "ball_frequencies", "propagator_frequencies", "radial_frequencies",
    "CosNet", "generalized_cosnet", "propagator_cosnet", "halverson_cosnet", "DualAction",
    "cos2_gaussian_input", "AngularAverage", "radial_integrand", "free_propagator_expr",
    "free_propagator", "coarse_grained_kernel", "continuum_propagator_expr",
    "momentum_cutoff", "information_cutoff", "momentum_cutoff_expr", "information_shell",
    "parametrization_caveat", "posterior_mass2", "posterior_mass2_expr", "DATA_DENSITY",
    "sample_cosnet", "sample_frequencies", "Dim", "DimLike", "Inputs",
]

#: The dimension of a cos-net theory once parsed (:func:`_dim`): an integer >= 1, or the symbol :data:`D`.
Dim: TypeAlias = "int | sp.Symbol"
#: A dimension as a caller may give it: a :data:`Dim`, or text (an integer, or ``"d"`` for :data:`D`).
DimLike: TypeAlias = "int | sp.Symbol | str"
#: The input distribution of :meth:`CosNet.brg_kernel`: ``"broad"``, or ``("gaussian", s_x)``.
Inputs: TypeAlias = "str | tuple[str, Number]"

# --------------------------------------------------------------------------------------------------
# Symbols (one set, shared with symbrg.cosnet.theorem)
P = symbol("p")              #: momentum magnitude |p| (= frequency |b|)
R = symbol("R")              #: UV cutoff = radius of the frequency ball
M = symbol("m")              #: mass
SIGMA = symbol("sigma")      #: field normalization: G = sigma^2/(p^2+m^2)
D = symbol("d")              #: symbolic dimension
LAM = symbol("Lambda")       #: information (Fisher) cutoff
KCUT = symbol("k")           #: momentum cutoff
T = symbol("T")              #: number of observations
N = symbol("N")              #: width
NOISE = symbol("sigma_epsilon")  #: observation noise standard deviation
SX = symbol("s_x")           #: standard deviation of Gaussian inputs
PHASE = symbol("c")          #: neuron phase
DIST = symbol("r")           #: |x - y|
_X = symbol("z")             # argument of a UV cutoff function K(z), z = p^2/k^2
_T_SYMBOL = T                                # (numeric keyword arguments below are also called T)

# --------------------------------------------------------------------------------------------------
# UV cutoff functions K(z): the regulators of the Polchinski side, from the ERG engine.
REGULATOR_NAMES = ("sharp", "litim", "exponential")
#: Work of a sampled cos-net ensemble, members x width x points x dimension multiply-adds (measured
#: 1.3e7 per second on a shared 2-core machine: the default is about 13 minutes).
SAMPLE_WORK = Limit("cosnet_samples", 1e10, "members x width x points x dimension of a sampled cos-net ensemble")
#: Bytes of a sampled ensemble's output (members x points floats, plus members x width Fisher values).
SAMPLE_BYTES = Limit("cosnet_bytes", 4e9, "bytes of a sampled cos-net ensemble's output")


def uv_cutoff_function(name: str) -> sp.Expr:
    r"""The UV cutoff function :math:`K(z)`, :math:`z = p^2/k^2`, of a named regulator.

    sharp: :math:`\Theta(1-z)`; litim: :math:`(1-z)\Theta(1-z)` (the UV partner of Litim's
    :math:`R_k = (k^2-p^2)\Theta(k^2-p^2)`, since :math:`p^2K/(1-K) = R_k`); exponential: :math:`e^{-z}`
    (partner of :math:`R_k = p^2/(e^{p^2/k^2}-1)`).  The source of truth is :mod:`symbrg.rg.regulators`.
    """
    from symbrg.rg.regulators import regulator as _erg_regulator
    R = _erg_regulator(name)  # an object passes through; a name is parsed once
    choice("regulator", R.name, REGULATOR_NAMES)
    return R.K(_X)


def ball_volume(dim: Dim, radius: Number = R) -> sp.Expr:
    r""":math:`\mathrm{vol}(B_R) = \pi^{d/2}R^d/\Gamma(d/2+1)` (d an integer or a symbol)."""
    return sp.pi ** (sp.S(dim) / 2) * radius ** dim / sp.gamma(sp.S(dim) / 2 + 1)


def sphere_area(dim: Dim) -> sp.Expr:
    r""":math:`S_{d-1} = 2\pi^{d/2}/\Gamma(d/2)`, the area of the unit sphere in :math:`\mathbb R^d`."""
    return 2 * sp.pi ** (sp.S(dim) / 2) / sp.gamma(sp.S(dim) / 2)


#: The dimension of a cos-net theory: its certificate and its d-dimensional frequency integrals grow with d.
DIM = Limit("cosnet_dim", 100, "dimension of a cos-net theory (its certificate and frequency integrals)")


def _dim(dim: DimLike) -> Dim:
    if isinstance(dim, sp.Symbol) or (isinstance(dim, str) and dim.strip() == "d"):
        return D
    if isinstance(dim, str):
        try:
            dim = int(dim)
        except ValueError:
            raise InvalidArgument("dim", f"expected an integer >= 1 or 'd', got {dim!r}") from None
    d = integer("dim", dim, minimum=1)
    DIM.check("dim", d, cost=f"about {max(0.45 * d, 3):.3g} s per certificate, d-dimensional quadratures")
    return d


def _mass(m: Number) -> Number:
    return nonnegative("m", m)


# --------------------------------------------------------------------------------------------------
# Frequency densities
@dataclass(frozen=True)
class FrequencyDensity:
    r"""A radial frequency density :math:`\rho(|b|)` on :math:`\mathbb R^d` (unnormalized).

    ``density``: sympy expression in :data:`P`; ``radius``: support radius (``sp.oo`` for all of
    :math:`\mathbb R^d`); ``gaussian_variance``: per-component variance when the density is Gaussian
    (then sampling is exact and the kernel is in closed form).
    """
    name: str
    density: sp.Expr
    radius: sp.Expr = sp.oo
    gaussian_variance: sp.Expr | None = None

    @property
    def integration_limit(self) -> float:
        """Upper limit of the radial momentum integrals: the radius, or 14 standard deviations of a
        Gaussian density."""
        if self.radius != sp.oo:
            return float(self.radius)
        if self.gaussian_variance is None:
            raise Unsupported("frequencies", "an unbounded frequency density must be Gaussian")
        return 14.0 * math.sqrt(float(self.gaussian_variance))

    def normalization(self, dim: Dim) -> sp.Expr:
        r""":math:`\mathcal N = \int d^db\,\rho(|b|) = S_{d-1}\int_0^{R}p^{d-1}\rho(p)\,dp`."""
        if self.gaussian_variance is not None:
            return (2 * sp.pi * self.gaussian_variance) ** (sp.S(dim) / 2) * \
                (self.density / sp.exp(-P ** 2 / (2 * self.gaussian_variance))).simplify()
        radial = sp.Integral(P ** (dim - 1) * self.density, (P, 0, self.radius))
        if dim == D:  # symbolic dimension: left as an integral (simplification may evaluate it)
            return sphere_area(dim) * radial
        val = radial.doit()
        return sphere_area(dim) * (radial if val.has(sp.Integral) else sp.simplify(val))


def gaussian_frequencies(sigma_w: Number, dim: Dim) -> FrequencyDensity:
    r""":math:`b\sim\mathcal N(0, (\sigma_w^2/d)\mathbb 1_d)` (the neural-tangents / Halverson convention)."""
    var = sp.nsimplify(positive("sigma_w", sigma_w)) ** 2 / sp.S(dim)
    return FrequencyDensity("gaussian", sp.exp(-P ** 2 / (2 * var)), sp.oo, var)


def ball_frequencies(radius: Number) -> FrequencyDensity:
    """:math:`b` uniform in the ball of radius ``radius``."""
    return FrequencyDensity("ball", sp.Integer(1), sp.nsimplify(positive("R", radius)))


def propagator_frequencies(radius: Number, m: Number) -> FrequencyDensity:
    r""":math:`\rho(b)\propto 1/(b^2+m^2)` on the ball of radius ``radius``."""
    m = sp.nsimplify(_mass(m))
    return FrequencyDensity("propagator", 1 / (P ** 2 + m ** 2), sp.nsimplify(positive("R", radius)))


def radial_frequencies(density: sp.Expr, radius: Number, name: str = "radial") -> FrequencyDensity:
    r"""A user radial density :math:`\rho(p)` (sympy expression in :data:`P`, >= 0) on the ball of
    radius ``radius`` (finite: sampling tabulates its radial CDF)."""
    expr = _in_momentum("density", density)
    extra = expr.free_symbols - {P}
    if extra:
        raise InvalidArgument("density", f"must depend on p only, found {sorted(map(str, extra))}")
    return FrequencyDensity(name, expr, sp.nsimplify(positive("radius", radius)))


def _in_momentum(argument: str, value: ExprLike) -> sp.Expr:
    """A user function of the momentum: its symbol named ``p`` (any assumptions) becomes :data:`P`
    (text is refused)."""
    if isinstance(value, str):
        raise InvalidArgument(argument, "expected a sympy expression in p, got text (parse it with "
                                        "symbrg.core.parsing.parse_expression)")
    expr = as_expression(value, "value")
    if P.name in {s.name for s in expr.free_symbols}:
        expr = expr.xreplace({resolve_symbols(argument, P.name, expr.free_symbols)[0]: P})
    return expr


# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DualAction:
    r"""The dual free action :math:`S[\phi] = \frac12\int_{|p|<\Lambda_{UV}}\frac{d^dp}{(2\pi)^d}\,\Gamma^{(2)}(p)|\tilde\phi(p)|^2`.

    ``inverse_propagator`` :math:`\Gamma^{(2)}(p) = 1/S(p)`; ``cutoff`` the UV cutoff (support radius);
    ``Z`` :math:`= \partial\Gamma^{(2)}/\partial p^2|_{p=0}` (field normalization) and
    ``mass2`` :math:`= \Gamma^{(2)}(0)/Z`; ``local``: True when :math:`\Gamma^{(2)}` is
    :math:`Z(p^2+m^2)` exactly.
    """
    inverse_propagator: sp.Expr
    cutoff: sp.Expr
    Z: sp.Expr
    mass2: sp.Expr
    local: bool

    def action_density(self, phi2: sp.Expr = sp.Symbol("|phi(p)|^2")) -> sp.Expr:
        """The integrand :math:`\\frac12\\Gamma^{(2)}(p)|\\tilde\\phi(p)|^2`."""
        return self.inverse_propagator * phi2 / 2


@dataclass(frozen=True)
class CosNet:
    r"""A cos-net :math:`f(x) = \beta + N^{-1/2}\sum_i a_i s(|b_i|)\cos(b_i\cdot x + c_i)` (module docstring).

    dim: input dimension d (int >= 1, or the symbol :data:`D`); frequencies: a
    :class:`FrequencyDensity`; readout_scale: :math:`s(p)` (sympy in :data:`P`, default 1);
    sigma_a: readout-weight standard deviation; sigma_bias: readout-bias standard deviation.
    """
    dim: Dim
    frequencies: FrequencyDensity
    readout_scale: sp.Expr = sp.Integer(1)
    sigma_a: Number = sp.Integer(1)
    sigma_bias: Number = sp.Integer(0)
    name: str = "cosnet"

    def __post_init__(self) -> None:
        object.__setattr__(self, "dim", _dim(self.dim))
        object.__setattr__(self, "readout_scale", _in_momentum("readout_scale", self.readout_scale))
        positive("sigma_a", self.sigma_a)
        nonnegative("sigma_bias", self.sigma_bias)

    # ---- the neuron ----------------------------------------------------------------------------
    @cached_property
    def _readout_scale_numeric(self) -> Callable[[FloatArray], ArrayLike]:
        return codegen.lambdify(self.readout_scale, [P], "numpy")

    def neuron_scales(self, b: np.ndarray, values: dict | None = None) -> np.ndarray:
        r"""The readout scales :math:`s(|b|)` of neurons with frequencies ``b`` (rows, shape (..., d)): shape (...).
        ``values``: numbers for the symbols of a symbolic network (e.g. the mass :math:`m`)."""
        b = np.asarray(b, dtype=float)
        scale = (self._readout_scale_numeric if not values
                 else codegen.lambdify(self.readout_scale.subs(values), [P], "numpy"))
        return np.broadcast_to(np.asarray(scale(np.linalg.norm(b, axis=-1)), float), b.shape[:-1])

    def neuron(self, theta: sp.Expr) -> sp.Expr:
        r"""The neuron symbolically, :math:`s(p)\cos\theta` with :math:`\theta = b\cdot x + c` and :math:`p = |b|`."""
        return self.readout_scale * sp.cos(theta)

    def neurons(self, b: np.ndarray, c: np.ndarray, X: np.ndarray, values: dict | None = None) -> np.ndarray:
        r"""The cos-net neurons :math:`s(|b_i|)\cos(b_i\cdot x + c_i)` (the one place they are written).

        b: frequencies, shape (..., d); c: phases, shape (...); X: inputs in rows, shape (n, d);
        values: numbers for the symbols of a symbolic network.  Returns shape (..., n)."""
        b = np.asarray(b, dtype=float)
        feats = np.cos(np.einsum("...d,nd->...n", b, X) + np.asarray(c, dtype=float)[..., None])
        return self.neuron_scales(b, values)[..., None] * feats

    # ---- function space ------------------------------------------------------------------------
    @cached_property
    def spectral_density_definition(self) -> sp.Expr:
        r""":math:`S(p) = (2\pi)^d\frac{\sigma_a^2}{2}\frac{\rho(p)}{\mathcal N}s(p)^2` as defined (unsimplified;
        :math:`\mathcal N = \int d^db\,\rho` by integration)."""
        d = self.dim
        return (2 * sp.pi) ** d * sp.S(self.sigma_a) ** 2 / 2 * self.frequencies.density \
            / self.frequencies.normalization(d) * self.readout_scale ** 2

    @cached_property
    def spectral_density(self) -> sp.Expr:
        r""":math:`S(p)`, simplified, on the support of :math:`\rho` (:attr:`spectral_density_definition`)."""
        return sp.simplify(self.spectral_density_definition)

    def dual_action(self) -> DualAction:
        r"""Read off :math:`\Gamma^{(2)} = 1/S(p)`, the UV cutoff, :math:`Z` and :math:`m^2` (see :class:`DualAction`)."""
        inv = sp.simplify(1 / self.spectral_density)
        q = symbol("q")  # q = p^2
        g = sp.simplify(inv.subs(P, sp.sqrt(q)))
        Z = sp.simplify(sp.diff(g, q).subs(q, 0))
        m2 = sp.simplify(g.subs(q, 0) / Z)
        local = sp.simplify(g - Z * (q + m2)) == 0
        return DualAction(inv, self.frequencies.radius, Z, m2, bool(local))

    def kernel_expr(self, r: sp.Expr = DIST) -> sp.Expr:
        r""":math:`K(r) = \sigma_\beta^2 + \int\frac{d^dp}{(2\pi)^d}e^{ip\cdot\Delta}S(p)`, :math:`r = |\Delta|`.

        Closed form for Gaussian frequencies, :math:`\sigma_\beta^2 + \frac{\sigma_a^2}{2}e^{-v r^2/2}`
        (:math:`v` the per-component frequency variance: the RBF kernel, from the Gaussian engine's
        uniform-phase cos expectation :math:`\tfrac12e^{-(q_{11}+q_{22}-2q_{12})/2}`); otherwise the radial integral
        :math:`\frac{S_{d-1}}{(2\pi)^d}\int_0^{R}p^{d-1}\Omega_d(pr)S(p)\,dp` with the angular average
        :math:`\Omega_d(x) = \Gamma(d/2)(2/x)^{d/2-1}J_{d/2-1}(x)` (:func:`angular_average`).
        """
        bias = sp.S(self.sigma_bias) ** 2
        fr = self.frequencies
        if fr.gaussian_variance is not None and sp.simplify(self.readout_scale - 1) == 0:
            # b.x, b.y Gaussian: the Gaussian engine's uniform-phase cos expectation at
            # q11 = v|x|^2, q22 = v|y|^2, q12 = v x.y, taken at y = 0, |x| = r
            from symbrg.gaussian.expectations import Q11, Q12, Q22, expectation
            e = expectation("cosnet").expr.subs({Q11: fr.gaussian_variance * r ** 2, Q12: 0, Q22: 0})
            return bias + sp.S(self.sigma_a) ** 2 * e
        d = self.dim
        return bias + sphere_area(d) / (2 * sp.pi) ** d * sp.Integral(
            P ** (d - 1) * angular_average(P * r, d) * self.spectral_density, (P, 0, fr.radius))

    # ---- Fisher geometry -----------------------------------------------------------------------
    @cache  # noqa: B019 - CosNet is frozen and hashable; a few instances live for the whole run
    def fisher_readout(self, inputs: str = "broad", phase_average: bool = True) -> sp.Expr:
        r"""Diagonal readout Fisher :math:`I_{a_ia_i} = \frac{T}{N\sigma_\epsilon^2}s(p)^2\,\mathbb E_x[\cos^2(b\cdot x+c)]`.

        inputs: ``"broad"`` (:math:`\mathbb E_x[\cos^2] = \tfrac12`) or ``"gaussian"``
        (:math:`x\sim\mathcal N(0,s_x^2\mathbb 1)`, :func:`cos2_gaussian_input`); phase_average: average
        over :math:`c\sim U[-\pi,\pi]` (then the result depends on :math:`|b| = p` only).
        """
        choice("inputs", inputs, ("broad", "gaussian"))
        e = sp.Rational(1, 2) if inputs == "broad" else cos2_gaussian_input()
        if phase_average:
            e = sp.simplify(sp.integrate(e, (PHASE, -sp.pi, sp.pi)) / (2 * sp.pi))
        return sp.simplify(T / (N * NOISE ** 2) * self.readout_scale ** 2 * e)

    def derivation(self) -> "Derivation":
        r"""The field theory of this cos-net as a :class:`~symbrg.core.derivation.Derivation`: spectral density
        (defining formula simplified), kernel, dual action (cutoff, :math:`Z`, :math:`m^2`) and the
        phase-averaged readout Fisher with its slope in :math:`|b|` (whether information shells are
        momentum shells)."""
        from symbrg.core.derivation import Derivation, check_identity
        d = self.dim
        dv = Derivation(f"The {self.name} field theory (d = {d})",
                        "$f(x) = \\beta + N^{-1/2}\\sum_i a_i s(|b_i|)\\cos(b_i\\cdot x + c_i)$, "
                        "$c_i\\sim U[-\\pi,\\pi]$, $b_i\\sim\\rho$.", name=f"{self.name}-field-theory")
        S = self.spectral_density
        dv.step(sp.Eq(sp.Function("S")(P), S), "Bochner: $K(\\Delta) = \\int\\frac{d^dp}{(2\\pi)^d}"
                "e^{ip\\cdot\\Delta}S(p)$ with $S = (2\\pi)^d\\frac{\\sigma_a^2}{2}\\rho_1 s^2$.", "eq:field-spectral",
                verification=check_identity(self.spectral_density_definition, S, points=6))
        dv.step(sp.Eq(sp.Function("K")(DIST), self.kernel_expr(DIST)), "the kernel at $|x-y| = r$.",
                "eq:field-kernel", uses=("eq:field-spectral",))
        act = self.dual_action()
        dv.step(sp.Eq(sp.Symbol(r"\Gamma^{(2)}(p)"), act.inverse_propagator),
                f"dual action on $|p| < {sp.latex(act.cutoff)}$: $Z = {sp.latex(act.Z)}$, "
                f"$m^2 = {sp.latex(act.mass2)}$" + (" (local)." if act.local else " (nonlocal)."),
                "eq:field-action", uses=("eq:field-spectral",))
        fisher = self.fisher_readout()
        dv.step((sp.Eq(sp.Function("I")(P), fisher), sp.Eq(sp.Derivative(sp.Function("I")(P), P),
                                                           sp.simplify(sp.diff(fisher, P)))),
                "phase-averaged readout Fisher and its slope: a momentum shell when it is monotone in $p$.",
                "eq:field-fisher")
        return dv

    # ---- numbers -------------------------------------------------------------------------------
    def _input_pair(self, X1: ArrayLike, X2: ArrayLike | None) -> tuple[FloatArray, FloatArray]:
        """The two input sets as (n, dim) float arrays (a 1-D array is n points in one dimension);
        ``X2=None`` is ``X1``."""
        d = int(self.dim)
        A = finite_array("X1", X1, ndim=(1, 2))
        A = A[:, None] if A.ndim == 1 else A
        B = A if X2 is None else finite_array("X2", X2, ndim=(1, 2))
        B = B[:, None] if B.ndim == 1 else B
        for name, arr in (("X1", A), ("X2", B)):
            if arr.shape[1] != d:
                raise InvalidArgument(name, f"inputs must have {d} columns, got {arr.shape[1]}")
        return A, B

    def kernel(self, X1: ArrayLike, X2: ArrayLike | None = None, *, cutoff: float | None = None, regulator: str = "sharp",
               T: float = 1.0, noise: float = 1.0, width: float = 1.0) -> FloatArray:
        r"""The Gram matrix :math:`K(x_i - y_j)` in float64, or with ``cutoff`` :math:`\Lambda` the
        coarse-grained kernel :math:`\sigma_\beta^2 + \int\frac{d^dp}{(2\pi)^d}e^{ip\cdot\Delta}w(I(p),\Lambda)S(p)`
        (stiff sector; BRG shell weight :math:`w`, phase-averaged readout Fisher with ``T`` data, noise
        ``noise`` and width ``width``).  Radial Gauss-Legendre quadrature, vectorized over distances
        (Gaussian densities: exact closed form without a cutoff, else truncated at 14 standard deviations).
        """
        d = int(self.dim)
        A, B = self._input_pair(X1, X2)
        r = np.sqrt(np.maximum(((A[:, None, :] - B[None, :, :]) ** 2).sum(-1), 0.0))
        bias = float(self.sigma_bias) ** 2
        fr = self.frequencies
        if cutoff is None and fr.gaussian_variance is not None and sp.simplify(self.readout_scale - 1) == 0:
            return codegen.lambdify(self.kernel_expr(DIST), [DIST], "numpy")(r) + 0 * r
        upper = fr.integration_limit
        f = codegen.lambdify(radial_integrand(d, self.spectral_density), [P, DIST], "numpy")
        weight = None
        breaks: tuple[float, ...] = ()
        if cutoff is not None:
            from symbrg.rg.brg import weights as shell_weights
            lam = float(positive("cutoff", cutoff))
            fish = codegen.lambdify(self.fisher_readout().subs({_T_SYMBOL: positive("T", T), N: positive("width", width),
                                                                NOISE: positive("noise", noise)}), [P], "numpy")

            def fisher(p):
                return np.broadcast_to(np.asarray(fish(p), float), p.shape)

            def weight(p):
                return shell_weights(fisher(p), lam, regulator)
            breaks = _level_crossings(lambda p: fisher(p) - lam, upper)
        flat, inverse = np.unique(r, return_inverse=True)
        return bias + _radial_quadrature(flat, upper, f, breaks, weight)[inverse].reshape(r.shape)

    def brg_kernel(self, X1: ArrayLike, X2: ArrayLike | None = None, cutoff: float = 0.0, *,
                   inputs: Inputs = "broad", observations: float = 1.0, noise: float = 1.0, width: float = 1.0,
                   prescription: str = "removed", pairs: bool = False) -> FloatArray:
        r"""The :math:`N\to\infty` kernel of the stiff sector at information cutoff :math:`\Lambda` (sharp shell),
        with the *phase-resolved* readout Fisher
        :math:`I(b,c) = \frac{T}{N\sigma_\epsilon^2}s(|b|)^2\,\mathbb E_x[\cos^2(b\cdot x+c)]`.

        inputs: ``"broad"`` (:math:`\mathbb E_x\cos^2 = \frac12`) or ``("gaussian", s_x)``,
        :math:`x\sim\mathcal N(0,s_x^2\mathbb 1)`: :math:`\mathbb E_x\cos^2 = \frac12 + \frac12 g\cos 2c`,
        :math:`g = e^{-2p^2s_x^2}`.  The neuron :math:`(b, c)` is stiff iff :math:`\cos 2c\ge a(p) =
        (2q-1)/g`, :math:`q = \Lambda N\sigma_\epsilon^2/(Ts^2)`; with :math:`\alpha = \arccos(\mathrm{clip}(a))`
        the phase average of :math:`\mathbf 1_{\rm stiff}\cos(b\cdot x+c)\cos(b\cdot y+c)` is
        :math:`\frac1{2\pi}[\alpha\cos b\cdot(x-y) + \sin\alpha\,\cos b\cdot(x+y)]`, so

        .. math::  K_\Lambda(x,y) = \sigma_\beta^2 + \int\frac{d^dp}{(2\pi)^d}S(p)\Big[\frac{\alpha(p)}{\pi}
                   \Omega_d(p|x-y|) + \frac{\sin\alpha(p)}{\pi}\Omega_d(p|x+y|)\Big]

        (not translation invariant for Gaussian inputs; broad inputs: :math:`\alpha = \pi\,\Theta(I(p)-\Lambda)`,
        :math:`\sin\alpha = 0`).  ``prescription="removed"``: sloppy readout weights set to 0 (the
        stiff marginal); ``"prior"``: resampled from the prior, which leaves the field's law unchanged
        (the full kernel).  ``pairs``: ``X1`` and ``X2`` of one shape, the vector :math:`K(x_i, y_i)` instead
        of the matrix.  Radial integral by composite Gauss-Legendre with panel edges at the kinks
        :math:`a = \pm1` (cosine-mapped panels, so the :math:`\sqrt{}` behaviour of :math:`\alpha` there costs no
        accuracy), vectorized over distances in blocks; agrees with adaptive mpmath quadrature to about 1e-12.
        """
        A, B = self._input_pair(X1, X2)
        shell = _StiffShell.parse(cutoff, inputs, observations, noise, width, prescription)  # argument checks
        quad = _StiffQuadrature.setup(self, shell)                                           # quadrature setup
        diff, summ = _pair_offsets(A, B, pairs)                                              # evaluation
        out = quad.radial(np.sqrt((diff ** 2).sum(-1)), lambda a: a)
        if shell.sx is not None and shell.removed:
            out = out + quad.radial(np.sqrt((summ ** 2).sum(-1)), np.sin)
        return float(self.sigma_bias) ** 2 + out

    def connected_four_point(self, X: ArrayLike, width: int, k: float | None = None) -> float | FloatArray:
        r"""The connected four-point function at width :math:`N` = ``width`` and momentum cutoff ``k``,

        .. math::  \kappa_4 = \frac1N\Big[\mathbb E[a^4]\,\mathbb E_{b,c}\Big[s^4\mathbf 1_{|b|<k}\prod_{j=1}^4
                   \cos(b\cdot x_j+c)\Big] - \big(\hat K_{12}\hat K_{34}+\hat K_{13}\hat K_{24}+\hat K_{14}\hat K_{23}\big)\Big],

        :math:`\mathbb E[a^4] = 3\sigma_a^4`, :math:`\hat K` the bias-free kernel of the neurons with
        :math:`|b|<k`.  ``X``: shape (4, d) (a float) or (n, 4, d) (n values).  Delegates to
        :func:`symbrg.cosnet.four_point.connected_four_point` (its docstring has the conventions)."""
        return _radial.connected_four_point(self, X, width, k, _angular_numpy)

    # ---- sampling ------------------------------------------------------------------------------
    def sample(self, X: ArrayLike, members: int, width: int, seed: int = 0,
               **kw: Any) -> FloatArray | tuple[FloatArray, FloatArray | None]:
        """Shorthand for :func:`sample_cosnet` (``self`` as the architecture)."""
        # kw: Any, because the keywords are heterogeneous (cutoff, T, ... floats; regulator str; block int;
        # return_fisher bool), each checked by sample_cosnet.
        return sample_cosnet(self, X, members, width, seed=seed, **kw)


@dataclass(frozen=True)
class _StiffShell:
    r"""The checked arguments of :meth:`CosNet.brg_kernel`: the cutoff :math:`\Lambda`, the Fisher scale
    :math:`T/(N\sigma_\epsilon^2)`, the Gaussian input width :math:`s_x` (``None``: broad inputs) and whether
    the prescription is ``"removed"`` (else ``"prior"``)."""
    lam: Number
    scale: Number
    sx: Number | None
    removed: bool

    @staticmethod
    def parse(cutoff: float, inputs: Inputs, observations: float, noise: float, width: float,
              prescription: str) -> _StiffShell:
        """Check the arguments in the order :meth:`CosNet.brg_kernel` documents them."""
        lam = nonnegative("cutoff", cutoff)
        from symbrg.rg.brg import Prescription
        parsed = Prescription.parse(prescription, "prescription", (Prescription.REMOVED, Prescription.PRIOR))
        if inputs == "broad":
            sx = None
        elif isinstance(inputs, tuple) and len(inputs) == 2 and inputs[0] == "gaussian":
            sx = positive("inputs", inputs[1])
        else:
            raise InvalidArgument("inputs", f"expected 'broad' or ('gaussian', s_x), got {inputs!r}")
        scale = positive("observations", observations) / (positive("width", width) * positive("noise", noise) ** 2)
        return _StiffShell(lam, scale, sx, parsed is Prescription.REMOVED)


@dataclass(frozen=True)
class _StiffQuadrature:
    r"""The radial quadrature of :meth:`CosNet.brg_kernel`: compiled :math:`S(p)` and :math:`s(p)^2`, the
    measure :math:`S_{d-1}/(2\pi)^d`, and panel edges at the kinks :math:`a(p) = \pm1` of the stiff phase
    measure (``"removed"`` prescription only)."""
    shell: _StiffShell
    dim: int
    upper: float
    density: Callable[[FloatArray], ArrayLike]
    scale2: Callable[[FloatArray], ArrayLike]
    measure: float
    breaks: tuple[float, ...] = ()

    @classmethod
    def setup(cls, net: CosNet, shell: _StiffShell) -> _StiffQuadrature:
        """Compile the network's functions and locate the kinks."""
        d = int(net.dim)
        quad = cls(shell, d, net.frequencies.integration_limit,
                   codegen.lambdify(net.spectral_density, [P], "numpy"),
                   codegen.lambdify(net.readout_scale ** 2, [P], "numpy"), float(sphere_area(d) / (2 * sp.pi) ** d))
        if not shell.removed:
            return quad
        kinks = (set(_level_crossings(lambda p: np.subtract(*quad.level(p)), quad.upper, geometric=True))
                 | set(_level_crossings(lambda p: np.add(*quad.level(p)), quad.upper, geometric=True)))
        return replace(quad, breaks=tuple(sorted(kinks)))

    def level(self, p: FloatArray) -> tuple[FloatArray, FloatArray]:
        """(2q - 1, g): the neuron is stiff iff g cos 2c >= 2q - 1."""
        sh = self.shell
        q = sh.lam / (sh.scale * np.broadcast_to(np.asarray(self.scale2(p), float), np.shape(p)))
        return 2 * q - 1, (np.zeros_like(q) if sh.sx is None else np.exp(-2 * p ** 2 * sh.sx ** 2))

    def alpha(self, p: FloatArray) -> FloatArray:
        """Phase measure of the stiff neurons at |b| = p: arccos(clip((2q - 1)/g)) (pi: all stiff)."""
        if not self.shell.removed:
            return np.full(p.shape, math.pi)
        u, g = self.level(p)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            inner = np.arccos(np.clip(u / g, -1.0, 1.0))
        return np.where(u >= g, 0.0, np.where(u <= -g, math.pi, inner))

    def radial(self, r: FloatArray, phase: Callable[[FloatArray], FloatArray]) -> FloatArray:
        r""":math:`\frac{S_{d-1}}{(2\pi)^d}\int_0^{\rm upper}p^{d-1}S(p)\,\frac{{\rm phase}(\alpha(p))}{\pi}
        \Omega_d(pr)\,dp` at the distances ``r`` (any shape)."""
        d = self.dim

        def weight(p: FloatArray) -> FloatArray:
            dens = np.broadcast_to(np.asarray(self.density(p), float), p.shape)
            return p ** (d - 1) * dens * phase(self.alpha(p)) / math.pi
        flat, inverse = np.unique(r, return_inverse=True)
        values = _radial_quadrature(flat, self.upper, lambda p, q: _angular_numpy(p * q, d), self.breaks, weight,
                                    sqrt_ends=True)
        return self.measure * values[inverse].reshape(r.shape)


def _pair_offsets(A: FloatArray, B: FloatArray, pairs: bool) -> tuple[FloatArray, FloatArray]:
    """``(x - y, x + y)`` for every pair of rows (``pairs``: row by row, one shape)."""
    if pairs:
        if A.shape != B.shape:
            raise ShapeMismatch("X2", f"pairs=True needs X1 and X2 of one shape, got {A.shape} and {B.shape}")
        return A - B, A + B
    return A[:, None, :] - B[None, :, :], A[:, None, :] + B[None, :, :]


def angular_average(x: sp.Expr, dim: Dim) -> sp.Expr:
    r""":math:`\Omega_d(x) = \langle e^{i x\,\hat n\cdot\hat e}\rangle_{\hat n\in S^{d-1}} = \Gamma(d/2)(2/x)^{d/2-1}J_{d/2-1}(x)`
    (d = 1: :math:`\cos x`; d = 3: :math:`\sin x / x`)."""
    if dim == 1:
        return sp.cos(x)
    if dim == 3:
        return sp.sin(x) / x
    nu = sp.S(dim) / 2 - 1
    return sp.gamma(sp.S(dim) / 2) * (2 / x) ** nu * sp.besselj(nu, x)


def generalized_cosnet(dim: int | sp.Symbol | str, R: Number, m: Number, sigma: Number = 1,
                       sigma_bias: Number = 0) -> CosNet:
    r"""The generalized cos-net whose kernel is :math:`\sigma^2 G_R` (module docstring):
    :math:`b\sim U(B_R)`, :math:`s = (b^2+m^2)^{-1/2}`, :math:`\sigma_a^2 = 2\sigma^2\mathrm{vol}(B_R)/(2\pi)^d`."""
    d = _dim(dim)
    Rv, mv = sp.nsimplify(positive("R", R)), sp.nsimplify(_mass(m))
    sig = sp.nsimplify(positive("sigma", sigma))
    sigma_a = sp.sqrt(2 * sig ** 2 * ball_volume(d, Rv) / (2 * sp.pi) ** d)
    return CosNet(d, ball_frequencies(Rv), 1 / sp.sqrt(P ** 2 + mv ** 2), sigma_a, sigma_bias,
                  name="generalized-cosnet")


def propagator_cosnet(dim: DimLike, R: Number, m: Number, sigma: Number = 1) -> CosNet:
    r"""The propagator-weighted variant: :math:`\rho\propto(b^2+m^2)^{-1}` on :math:`B_R`, no readout scale,
    :math:`\sigma_a^2 = 2\sigma^2\mathcal N_R/(2\pi)^d`: kernel :math:`\sigma^2G_R` again, Fisher flat in :math:`|b|`."""
    d = _dim(dim)
    fr = propagator_frequencies(R, m)
    sig = sp.nsimplify(positive("sigma", sigma))
    sigma_a = sp.sqrt(2 * sig ** 2 * fr.normalization(d) / (2 * sp.pi) ** d)
    return CosNet(d, fr, sp.Integer(1), sigma_a, 0, name="propagator-cosnet")


def halverson_cosnet(dim: int, sigma_w0: Number = 1, sigma_w1: Number = 1, sigma_b1: Number = 0) -> CosNet:
    r"""The cos-net of Halverson et al.: :math:`K = \sigma_{b_1}^2 + \frac{\sigma_{W_1}^2}{2}e^{-\sigma_{W_0}^2r^2/(2d)}`."""
    d = _dim(dim)
    return CosNet(d, gaussian_frequencies(sigma_w0, d), sp.Integer(1), sp.nsimplify(sigma_w1),
                  sp.nsimplify(sigma_b1), name="cosnet")


@cache
def cos2_gaussian_input() -> sp.Expr:
    r""":math:`\mathbb E_{x\sim\mathcal N(0,s_x^2\mathbb 1_d)}[\cos^2(b\cdot x+c)] = \tfrac12+\tfrac12\cos(2c)e^{-2p^2s_x^2}`.

    Derived: :math:`b\cdot x\sim\mathcal N(0,p^2s_x^2)` with :math:`p = |b|`, and
    :math:`\cos^2\theta = \frac12(1+\cos 2\theta)` integrated against that Gaussian (sympy).
    """
    u = sp.Symbol("u", real=True)  # b.x = p s_x u with u ~ N(0, 1)
    normal = sp.exp(-u ** 2 / 2) / sp.sqrt(2 * sp.pi)
    # cos(2z + 2c) = cos 2z cos 2c - sin 2z sin 2c; the odd sine moment vanishes
    e = sp.cos(2 * PHASE) * sp.integrate(sp.cos(2 * P * SX * u) * normal, (u, -sp.oo, sp.oo)) \
        - sp.sin(2 * PHASE) * sp.integrate(sp.sin(2 * P * SX * u) * normal, (u, -sp.oo, sp.oo))
    return sp.simplify(sp.Rational(1, 2) + e / 2)


# --------------------------------------------------------------------------------------------------
# The free propagator with a UV cutoff, and the coarse-grained (regulated) propagator
def free_propagator_expr(dim: DimLike, r: sp.Expr = DIST, *, cutoff: sp.Expr = R, m: sp.Expr = M,
                         sigma: sp.Expr = SIGMA) -> sp.Expr:
    r""":math:`\sigma^2G_R(r) = \sigma^2\int_{|p|<R}\frac{d^dp}{(2\pi)^d}\frac{e^{ip\cdot\Delta}}{p^2+m^2}` in closed form where one exists.

    * ``r = 0``: every d; for integer d by sympy (d=1: :math:`\arctan(R/m)/(\pi m)`, ...), for symbolic
      d as :math:`\frac{S_{d-1}R^d}{(2\pi)^d d\,m^2}\,{}_2F_1(1,\tfrac d2;\tfrac d2+1;-R^2/m^2)`.
    * ``r > 0``, d = 1 and 3: exponential integrals.  With
      :math:`F_\pm = \int_0^R\frac{e^{ipr}}{p\mp im}dp`, :math:`F_+ = e^{-mr}[\mathrm{Ei}((m+iR)r)-\mathrm{Ei}(mr)]`,
      :math:`F_- = e^{mr}[E_1(mr)-E_1((m-iR)r)]` (paths in :math:`\mathrm{Re}>0`, off the branch cuts):
      :math:`G_R^{d=1} = \frac1\pi\mathrm{Re}\frac{F_+-F_-}{2im}`, :math:`G_R^{d=3} = \frac{1}{2\pi^2r}\mathrm{Im}\frac{F_++F_-}{2}`.
    * otherwise (d = 2, 4, ... at ``r > 0``: incomplete Lommel-type integrals with no closed form at
      finite R): the radial integral with the Bessel angular average, evaluated by quadrature;
      :func:`continuum_propagator_expr` gives the :math:`R\to\infty` limit in closed form.
    """
    d = _dim(dim)
    if r == 0:
        if d == D:
            return sigma ** 2 * sphere_area(D) / (2 * sp.pi) ** D * cutoff ** D / (D * m ** 2) * \
                sp.hyper([1, D / 2], [D / 2 + 1], -cutoff ** 2 / m ** 2)
        return sp.simplify(sigma ** 2 * sphere_area(d) / (2 * sp.pi) ** d *
                           sp.integrate(P ** (d - 1) / (P ** 2 + m ** 2), (P, 0, cutoff)))
    if d in (1, 3):
        fp = sp.exp(-m * r) * (sp.Ei((m + sp.I * cutoff) * r) - sp.Ei(m * r))
        fm = sp.exp(m * r) * (sp.expint(1, m * r) - sp.expint(1, (m - sp.I * cutoff) * r))
        if d == 1:
            return sigma ** 2 / sp.pi * sp.re((fp - fm) / (2 * sp.I * m))
        return sigma ** 2 / (2 * sp.pi ** 2 * r) * sp.im((fp + fm) / 2)
    return sigma ** 2 * sphere_area(d) / (2 * sp.pi) ** d * sp.Integral(
        P ** (d - 1) * angular_average(P * r, d) / (P ** 2 + m ** 2), (P, 0, cutoff))


def continuum_propagator_expr(dim: DimLike, r: sp.Expr = DIST, *, m: sp.Expr = M, sigma: sp.Expr = SIGMA) -> sp.Expr:
    r"""The :math:`R\to\infty` limit, :math:`\sigma^2G_\infty(r) = \sigma^2(2\pi)^{-d/2}(m/r)^{d/2-1}K_{d/2-1}(mr)`
    (d = 1: :math:`e^{-mr}/2m`; d = 2: :math:`K_0(mr)/2\pi`; d = 3: :math:`e^{-mr}/4\pi r`); the finite-R
    propagator approaches it with an oscillating tail of order :math:`1/(R\,r^{(d-1)/2})`."""
    d = _dim(dim)
    nu = sp.S(d) / 2 - 1
    expr = sigma ** 2 * (2 * sp.pi) ** (-sp.S(d) / 2) * (m / r) ** nu * sp.besselk(nu, m * r)
    return sp.simplify(expr.rewrite(sp.exp)) if d != D and nu.is_integer is False else expr


def _angular_numpy(x: float | np.ndarray, dim: int) -> np.ndarray:
    """:math:`\\Omega_d(x)` in float64 (scipy's Bessel J when importable, else angle quadrature)."""
    x = np.asarray(x, dtype=float)
    if dim == 1:
        return np.cos(x)
    if dim == 3:
        return np.sinc(x / np.pi)
    nu = dim / 2 - 1
    try:
        from scipy.special import jv
        with np.errstate(invalid="ignore", divide="ignore"):
            out = math.gamma(dim / 2) * (2 / x) ** nu * jv(nu, x)
        return np.where(x == 0, 1.0, out)
    except ImportError:  # pragma: no cover - scipy is optional
        n = int(np.max(np.abs(x), initial=0.0)) + 64
        th, w = np.polynomial.legendre.leggauss(n)
        th = (th + 1) * np.pi / 2
        w = w * np.pi / 2 * np.sin(th) ** (dim - 2)
        w = w / w.sum()
        return np.tensordot(np.cos(np.multiply.outer(x, np.cos(th))), w, axes=([-1], [0]))


class AngularAverage(NumericFunction):
    r""":math:`\Omega_d(x) = \langle e^{ix\hat n\cdot\hat e}\rangle_{S^{d-1}} = \Gamma(\tfrac d2)(\tfrac2x)^{d/2-1}J_{d/2-1}(x)`
    as one symbolic node with a float64 (scipy's Bessel J, or angle quadrature) and an mpmath
    implementation; :func:`angular_average` gives the elementary closed forms for d = 1, 3."""
    nargs = 2

    @classmethod
    def numpy_impl(cls, d: int | float, x: float | FloatArray) -> FloatArray:
        return _angular_numpy(x, int(d))

    @classmethod
    def mpmath_impl(cls, d: int | mpmath.mpf, x: float | mpmath.mpf) -> mpmath.mpf:
        x = mpmath.mpf(x)
        if x == 0:
            return mpmath.mpf(1)
        nu = mpmath.mpf(d) / 2 - 1
        return mpmath.gamma(mpmath.mpf(d) / 2) * (2 / x) ** nu * mpmath.besselj(nu, x)

    def _latex(self, printer: LatexPrinter, exp: str | None = None) -> str:
        d, x = (printer._print(a) for a in self.args)
        body = rf"\Omega_{{{d}}}\left({x}\right)"
        return body if exp is None else rf"{body}^{{{exp}}}"


def radial_integrand(dim: int, spectral: sp.Expr | None = None, regulator: str | None = None) -> sp.Expr:
    r"""The one expression behind every numerical kernel: with :math:`\int\frac{d^dp}{(2\pi)^d}e^{ip\cdot\Delta}f(|p|)
    = \int_0^\infty dp\,\frac{S_{d-1}}{(2\pi)^d}p^{d-1}\Omega_d(pr)f(p)`, the integrand in :data:`P` and
    :data:`DIST` for :math:`f = ` ``spectral`` (default :math:`\sigma^2/(p^2+m^2)`) times the UV cutoff
    function :math:`K((p^2+m^2)/(k^2+m^2))` of ``regulator`` (symbol :data:`KCUT` for k)."""
    f = SIGMA ** 2 / (P ** 2 + M ** 2) if spectral is None else spectral
    if regulator is not None:
        f = f * uv_cutoff_function(regulator).subs(_X, (P ** 2 + M ** 2) / (KCUT ** 2 + M ** 2))
    return sphere_area(dim) / (2 * sp.pi) ** dim * P ** (dim - 1) * AngularAverage(dim, P * DIST) * f


@lru_cache(maxsize=64)
def _compiled_integrand(dim: int, regulator: str | None, backend: str) -> Callable[..., FloatArray | mpmath.mpf]:
    return codegen.lambdify(radial_integrand(dim, None, regulator), [P, DIST, M, KCUT, SIGMA], backend)


def _level_crossings(g: Callable[[np.ndarray], np.ndarray], upper: float, grid: int = 4097,
                     geometric: bool = False) -> tuple[float, ...]:
    """Zeros of g on (0, upper) (where an information shell cuts the radial integrand), located on a grid
    (``geometric``: also a geometric grid down to 1e-9 upper, for crossings crowding at p = 0)
    and refined by vectorized bisection, so that quadrature panels break exactly at the shell."""
    p = np.linspace(0.0, upper, grid)[1:]
    if geometric:
        p = np.unique(np.concatenate([p, np.geomspace(1e-9 * upper, upper, grid)]))
    v = g(p)
    exact = p[v == 0]  # a zero on the grid itself (e.g. a shell at a round momentum) is a crossing too
    idx = np.nonzero(np.sign(v[:-1]) * np.sign(v[1:]) < 0)[0]
    lo, hi = p[idx], p[idx + 1]
    for _ in range(60):
        mid = (lo + hi) / 2
        left = np.sign(g(mid)) == np.sign(g(lo))
        lo, hi = np.where(left, mid, lo), np.where(left, hi, mid)
    return tuple(sorted(float(x) for x in (*((lo + hi) / 2), *exact)))


def _radial_mpmath(r: float | mpmath.mpf, upper: mpmath.mpf, f: Callable[[mpmath.mpf, mpmath.mpf], mpmath.mpf],
                   breaks: tuple[float, ...] = ()) -> mpmath.mpf:
    """The same radial integral by mpmath quadrature at the working precision (split into
    half-periods of the oscillation and at ``breaks``)."""
    r = mpmath.mpf(r)
    pts = [mpmath.mpf(0), *[mpmath.mpf(b) for b in breaks if 0 < b < upper], mpmath.mpf(upper)]
    if r > 0:
        n = int(mpmath.ceil(upper * r / mpmath.pi))
        pts = sorted(set(pts) | {mpmath.mpf(upper) * j / max(n, 1) for j in range(1, max(n, 1))})
    return mpmath.quad(lambda p: f(p, r), pts)


def _check_dim_R_m(dim: int, R_: Number, m: Number) -> tuple[int, float, float]:
    d = integer("dim", dim, minimum=1)
    return d, float(positive("R", R_)), float(_mass(m))


@overload
def free_propagator(r: ArrayLike, dim: int, R: float, m: float, sigma: float = 1.0, *,
                    precision: None = None) -> FloatArray: ...
@overload
def free_propagator(r: ArrayLike, dim: int, R: float, m: float, sigma: float = 1.0, *,
                    precision: int) -> list[mpmath.mpf]: ...
def free_propagator(r: ArrayLike, dim: int, R: float, m: float, sigma: float = 1.0, *,
                    precision: int | None = None) -> FloatArray | list[mpmath.mpf]:
    r""":math:`\sigma^2G_R(r)` numerically, vectorized over ``r`` (float64 by Gauss-Legendre), or with
    ``precision=digits`` by mpmath quadrature (a list of mpf); both compiled from
    :func:`radial_integrand`.  :math:`m = 0` needs :math:`d\ge3`."""
    return coarse_grained_kernel(r, dim, R, m, None, sigma=sigma, precision=precision)


@overload
def coarse_grained_kernel(r: ArrayLike, dim: int, R: float, m: float, k: float | None, regulator: str = "sharp",
                          sigma: float = 1.0, *, precision: None = None) -> FloatArray: ...
@overload
def coarse_grained_kernel(r: ArrayLike, dim: int, R: float, m: float, k: float | None, regulator: str = "sharp",
                          sigma: float = 1.0, *, precision: int) -> list[mpmath.mpf]: ...
def coarse_grained_kernel(r: ArrayLike, dim: int, R: float, m: float, k: float | None,
                          regulator: str = "sharp", sigma: float = 1.0, *,
                          precision: int | None = None) -> FloatArray | list[mpmath.mpf]:
    r"""The coarse-grained kernel :math:`\sigma^2\int_{|p|<R}\frac{d^dp}{(2\pi)^d}e^{ip\cdot\Delta}\frac{K_{\rm reg}(z)}{p^2+m^2}`,
    :math:`z = (p^2+m^2)/(k^2+m^2)` (module docstring; :math:`z = p^2/k^2` for :math:`m = 0`).

    ``k`` is the momentum cutoff (``None``: no coarse graining, :math:`\sigma^2G_R`); convert an
    information cutoff with :func:`momentum_cutoff`.  float64 (vectorized over ``r``) or, with
    ``precision``, mpmath; both compiled by :mod:`symbrg.core.codegen` from :func:`radial_integrand`.
    """
    d, Rv, mv = _check_dim_R_m(dim, R, m)
    if mv == 0 and d <= 2:
        raise InvalidArgument("m", f"the massless propagator is infrared divergent in d = {d}; use m > 0")
    sv = float(positive("sigma", sigma))
    r = finite_array("r", r, ndim=(0, 1, 2), nonempty=False)
    if np.any(r < 0):
        raise InvalidArgument("r", "distances must be >= 0")
    reg = None
    kv, upper = 0.0, Rv
    breaks: tuple[float, ...] = ()
    if k is not None:
        from symbrg.rg.regulators import regulator as _erg_regulator
        shell = _erg_regulator(regulator)
        reg = choice("regulator", shell.name, REGULATOR_NAMES)
        kv = float(nonnegative("k", k))
        if kv == 0:
            return np.zeros(r.shape) if precision is None else [mpmath.mpf(0)] * r.size
        upper = min(Rv, kv) if shell.has_closed_form else Rv
        breaks = (kv,)
    if precision is None:
        fn = _compiled_integrand(d, reg, "numpy")
        return _radial_quadrature(r, upper, lambda p, x: fn(p, x, mv, kv, sv), breaks)
    with mpmath.workdps(integer("precision", precision, minimum=15)):
        fm = _compiled_integrand(d, reg, "mpmath")
        mm, km, sm = mpmath.mpf(m), mpmath.mpf(kv), mpmath.mpf(sigma)
        return [_radial_mpmath(x, mpmath.mpf(upper), lambda p, y: fm(p, y, mm, km, sm), breaks)
                for x in np.ravel(r)]


# --------------------------------------------------------------------------------------------------
# Information cutoff <-> momentum cutoff (generalized cos-net)
def _observation(T_: Number, N_: Number, noise: Number) -> tuple[float, float, float]:
    return float(positive("T", T_)), float(positive("width", N_)), float(positive("noise", noise))


@cache
def momentum_cutoff_expr() -> sp.Expr:
    r""":math:`k(\Lambda)^2`, solved symbolically from :math:`I(k) = \Lambda` with the generalized cos-net's
    phase-averaged readout Fisher: :math:`k^2 = \frac{T}{2N\sigma_\epsilon^2\Lambda}-m^2`."""
    fisher = generalized_cosnet(1, R, M).fisher_readout()
    q = symbol("q")
    sol = sp.solve(sp.Eq(fisher.subs(P, sp.sqrt(q)), LAM), q)
    return sp.simplify(sol[0])


@cache
def _cutoff_maps() -> tuple[Callable[..., FloatArray], Callable[..., FloatArray]]:
    r"""Compiled :math:`I(p; m, T, N, \sigma_\epsilon)` and :math:`k^2(\Lambda; m, T, N, \sigma_\epsilon)`."""
    args = [M, _T_SYMBOL, N, NOISE]
    return (codegen.lambdify(generalized_cosnet(1, R, M).fisher_readout(), [P, *args], "numpy"),
            codegen.lambdify(momentum_cutoff_expr(), [LAM, *args], "numpy"))


def information_cutoff(k: Number, m: Number, T: Number = 1.0, width: Number = 1.0, noise: Number = 1.0) -> float:
    r""":math:`\Lambda(k) = I(k) = \frac{T}{2N\sigma_\epsilon^2(k^2+m^2)}`, the Fisher value of the neuron at
    momentum k (:meth:`CosNet.fisher_readout`, compiled)."""
    kv, mv = float(nonnegative("k", k)), float(_mass(m))
    if kv ** 2 + mv ** 2 == 0:
        raise InvalidArgument("k", "k = 0 with m = 0 maps to an infinite information cutoff")
    return float(_cutoff_maps()[0](kv, mv, *_observation(T, width, noise)))


def momentum_cutoff(lam: Number, m: Number, T: Number = 1.0, width: Number = 1.0, noise: Number = 1.0) -> float:
    r""":math:`k(\Lambda) = \sqrt{T/(2N\sigma_\epsilon^2\Lambda)-m^2}` (:func:`momentum_cutoff_expr`, compiled);
    ``lam`` must lie in :math:`(0, I(0)]`, :math:`I(0)` the stiffest neuron's Fisher."""
    lv = float(positive("lam", lam))
    mv = float(_mass(m))
    obs = _observation(T, width, noise)
    k2 = float(_cutoff_maps()[1](lv, mv, *obs))
    if -1e-12 * mv ** 2 <= k2 < 0:  # Lambda = I(0) up to rounding
        k2 = 0.0
    if k2 < 0:
        top = float(_cutoff_maps()[0](0.0, mv, *obs))
        raise OutOfRange("lam", f"must lie in (0, {top:.6g}] (= I(0), the stiffest neuron's Fisher), got {lv:.6g}")
    return math.sqrt(k2)


def information_shell(regulator: str = "sharp") -> sp.Expr:
    r"""The information-shell weight :math:`w(\lambda,\Lambda)` of the BRG engine (symbol ``lambda``).

    sharp: :math:`\Theta(\lambda-\Lambda)` (:math:`\Theta(0)=1`); smooth: :math:`K_{\rm reg}(\Lambda/\lambda)`
    (:func:`symbrg.rg.brg.shell_weight`).
    """
    from symbrg.rg.brg import shell_weight
    uv_cutoff_function(regulator)  # a Regulator or a name, parsed once; one of REGULATOR_NAMES
    return shell_weight(sp.Symbol("lambda", positive=True), LAM, regulator)


def parametrization_caveat(dim: DimLike = 1) -> dict[str, sp.Expr]:
    r"""The caveat, explicitly: same field theory, different Fisher geometry.

    Returns the spectral densities :math:`S(p)` of :func:`generalized_cosnet` and
    :func:`propagator_cosnet` (equal: :math:`\sigma^2/(p^2+m^2)`) and their readout Fishers:
    :math:`T/(2N\sigma_\epsilon^2(p^2+m^2))` (monotone in :math:`p`) against :math:`T/(2N\sigma_\epsilon^2)`
    (independent of :math:`p`: the information shell selects no momentum shell).
    """
    g, v = generalized_cosnet(dim, R, M, SIGMA), propagator_cosnet(dim, R, M, SIGMA)
    return {"spectral_generalized": g.spectral_density, "spectral_propagator": v.spectral_density,
            "fisher_generalized": g.fisher_readout(), "fisher_propagator": v.fisher_readout(),
            "dfisher_dp_generalized": sp.simplify(sp.diff(g.fisher_readout(), P)),
            "dfisher_dp_propagator": sp.simplify(sp.diff(v.fisher_readout(), P))}


DATA_DENSITY = symbol("n")  #: number density of the training inputs


def posterior_mass2_expr() -> sp.Expr:
    r""":math:`m_*^2 = m^2 + \sigma^2 n/\sigma_\epsilon^2`, solved from the continuum GP posterior
    :math:`G_*^{-1}(p) = G^{-1}(p) + n/\sigma_\epsilon^2` with :math:`G = \sigma^2/(p^2+m^2)`: the :math:`p^2`
    coefficient is unchanged and the constant term is the new mass (training = a mass-type shift)."""
    q = symbol("q")
    ginv = sp.expand((q + M ** 2) / SIGMA ** 2 + DATA_DENSITY / NOISE ** 2)
    return sp.simplify(ginv.coeff(q, 0) / ginv.coeff(q, 1))


def posterior_mass2(m: Number, sigma: Number, data_density: Number, noise: Number) -> float:
    r"""Training as a mass shift, numerically: :math:`m_*^2 = m^2 + \sigma^2 n/\sigma_\epsilon^2` for data
    of uniform number density :math:`n` and noise :math:`\sigma_\epsilon` (:func:`posterior_mass2_expr`)."""
    fn = codegen.lambdify(posterior_mass2_expr(), [M, SIGMA, DATA_DENSITY, NOISE], "numpy")
    return float(fn(float(_mass(m)), float(positive("sigma", sigma)),
                    float(nonnegative("data_density", data_density)), float(positive("noise", noise))))


# --------------------------------------------------------------------------------------------------
# Finite-width sampling
def _radial_inverse_cdf(net: CosNet, grid: int = 16385) -> Callable[[np.ndarray], np.ndarray]:
    fr = net.frequencies
    if fr.radius == sp.oo:
        raise Unsupported("frequencies", "sampling a non-Gaussian density needs a finite radius")
    d = int(net.dim)
    dens = codegen.lambdify(fr.density, [P], "numpy")
    Rv = float(fr.radius)
    p = np.linspace(0.0, Rv, grid)
    pdf = np.broadcast_to(np.asarray(dens(np.maximum(p, 1e-300)), float), p.shape) * p ** (d - 1)
    if np.any(~np.isfinite(pdf)) or np.any(pdf < 0):
        raise InvalidArgument("density", "must be finite and >= 0 on the ball")
    cdf = np.concatenate([[0.0], np.cumsum((pdf[1:] + pdf[:-1]) / 2)])
    cdf /= cdf[-1]
    return lambda u: np.interp(u, cdf, p)


def sample_frequencies(net: CosNet, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Draw frequencies :math:`b\\sim\\rho` with shape ``shape + (d,)`` (exact for Gaussian and ball)."""
    d = int(net.dim)
    fr = net.frequencies
    if fr.gaussian_variance is not None:
        return rng.normal(0.0, math.sqrt(float(fr.gaussian_variance)), size=shape + (d,))
    direction = rng.normal(size=shape + (d,))
    direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
    u = rng.random(size=shape)
    if fr.name == "ball":
        radius = float(fr.radius) * u ** (1.0 / d)
    else:
        radius = _radial_inverse_cdf(net)(u)
    return direction * radius[..., None]


@overload
def sample_cosnet(net: CosNet, X: ArrayLike, members: int, width: int, *, seed: int = 0,
                  cutoff: float | None = None, regulator: str = "sharp", T: float = 1.0,
                  noise: float = 1.0, fisher_width: float | None = None,
                  block: int = 2 ** 20, return_fisher: Literal[False] = False) -> FloatArray: ...
@overload
def sample_cosnet(net: CosNet, X: ArrayLike, members: int, width: int, *, seed: int = 0,
                  cutoff: float | None = None, regulator: str = "sharp", T: float = 1.0,
                  noise: float = 1.0, fisher_width: float | None = None,
                  block: int = 2 ** 20, return_fisher: bool) -> FloatArray | tuple[FloatArray, FloatArray | None]: ...
def sample_cosnet(net: CosNet, X: ArrayLike, members: int, width: int, *, seed: int = 0,
                  cutoff: float | None = None, regulator: str = "sharp", T: float = 1.0,
                  noise: float = 1.0, fisher_width: float | None = None,
                  block: int = 2 ** 20, return_fisher: bool = False) -> FloatArray | tuple[FloatArray, FloatArray | None]:
    r"""Outputs :math:`f(X)` of ``members`` independent cos-nets of width ``width``, shape (members, n).

    Vectorized over members and neurons (blocks of members bound memory to about ``block`` floats);
    seeded (``numpy.random.default_rng(seed)``).  With ``cutoff`` :math:`\Lambda`, each net is
    coarse-grained by the information shell: the phase-averaged readout Fisher
    :math:`\lambda_i = \frac{T}{2N\sigma_\epsilon^2}s(|b_i|)^2` (N = ``fisher_width``, default ``width``) is
    computed per neuron and :math:`a_i\to\sqrt{w(\lambda_i,\Lambda)}\,a_i` with the BRG engine's shell
    weights (:func:`symbrg.rg.brg.weights`; sharp or a smooth regulator).
    ``return_fisher`` (with a cutoff) also returns the per-neuron Fisher values, shape (members, width)
    (:meth:`CosNet.fisher_readout`, compiled).
    """
    members = integer("members", members, minimum=1)
    width = integer("width", width, minimum=1)
    d = int(net.dim)
    X = finite_array("X", X, ndim=(1, 2))
    X = X[:, None] if X.ndim == 1 else X
    if X.shape[1] != d:
        raise InvalidArgument("X", f"inputs must have {d} columns, got {X.shape[1]}")
    uv_cutoff_function(regulator)  # a Regulator or a name, parsed once; one of REGULATOR_NAMES
    rng = np.random.default_rng(integer("seed", seed, minimum=0))
    sa, sb = float(net.sigma_a), float(net.sigma_bias)
    lam = None
    if cutoff is not None:
        lam = float(positive("cutoff", cutoff))
        nF = positive("fisher_width", fisher_width if fisher_width is not None else width)
        fisher_of_p = codegen.lambdify(net.fisher_readout().subs(
            {_T_SYMBOL: positive("T", T), N: nF, NOISE: positive("noise", noise)}), [P], "numpy")
        from symbrg.rg.brg import weights as shell_weights
    n = X.shape[0]
    work = members * width * n * d
    SAMPLE_WORK.check("members", work, cost=f"about {work / 1.3e7 / 60:.3g} min at 1.3e7 per second")
    nbytes = 8 * members * (n + (width if return_fisher and lam is not None else 0))
    SAMPLE_BYTES.check("members", nbytes, cost=f"{nbytes / 1e9:.3g} GB of output")
    per = max(1, integer("block", block, minimum=1) // max(1, width * max(n, d)))
    out = np.empty((members, n))
    fish = np.empty((members, width)) if (return_fisher and lam is not None) else None
    for start in range(0, members, per):  # blocks of members (memory), vectorized inside
        mb = min(per, members - start)
        b = sample_frequencies(net, (mb, width), rng)
        ph = rng.uniform(-np.pi, np.pi, size=(mb, width))
        a = rng.normal(0.0, sa, size=(mb, width))
        bias = rng.normal(0.0, sb, size=(mb, 1)) if sb > 0 else 0.0
        w = a
        if lam is not None:
            fb = np.broadcast_to(np.asarray(fisher_of_p(np.linalg.norm(b, axis=-1)), float), (mb, width))
            w = w * np.sqrt(shell_weights(fb.ravel(), lam, regulator).reshape(fb.shape))
            if fish is not None:
                fish[start:start + mb] = fb
        out[start:start + mb] = np.einsum("mw,mwn->mn", w, net.neurons(b, ph, X)) / math.sqrt(width) + bias
    return (out, fish) if return_fisher else out
