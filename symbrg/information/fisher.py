r"""Fisher information metrics in closed form, Jeffreys priors, and the identities they obey.

Job: derive :math:`I_{AB}(\theta) = \mathbb E_{y\sim p(\cdot|\theta)}[\partial_A\log p\,\partial_B\log p]`
symbolically for the families the Bayesian RG needs (arXiv:2405.17538 §3; 2305.10491 §3.1):

* multivariate Gaussians :math:`\mathcal N(\mu(\theta), \Sigma(\theta))` (Gaussian processes with
  hyperparameter-dependent kernels, NNGP kernels of :func:`symbrg.mlp` included):

  .. math:: I_{ab} = \partial_a\mu^\top\Sigma^{-1}\partial_b\mu
            + \tfrac12\operatorname{tr}(\Sigma^{-1}\partial_a\Sigma\,\Sigma^{-1}\partial_b\Sigma);

* Gaussian regression :math:`y = f_\theta(x) + \varepsilon`, :math:`\varepsilon\sim\mathcal N(0,
  \sigma^2)`: the one-dimensional case of the above averaged over inputs,
  :math:`I_{AB} = \mathbb E_x[\partial_A f\,\partial_B f]/\sigma^2 + \partial_A\sigma^2\,
  \partial_B\sigma^2/(2\sigma^4)` (per observation; multiply by T for T observations);
* exponential families :math:`p = h(y)\,e^{\eta\cdot T(y) - A(\eta)}`: :math:`I(\eta) =
  \nabla^2 A`, and :math:`I(\theta) = J^\top\nabla^2 A\,J`, :math:`J = \partial\eta/\partial\theta`;
* finite-width networks (:mod:`symbrg.ensembles.networks`) written out as sympy expressions.

Every result is a :class:`FisherMetric` carrying a :class:`~symbrg.core.derivation.Derivation` whose key
step (:math:`I = -\mathbb E[\nabla^2\log p]`) is verified by :func:`~symbrg.core.derivation.check_identity`.
The identities reparametrization covariance :math:`I' = J^\top I J`, KL curvature
:math:`D(\theta\|\theta+\delta) = \tfrac12\delta^\top I\delta + O(\delta^3)` and
:math:`I = \mathbb E[s s^\top] = -\mathbb E[\nabla^2\log p]` are public checks
(:func:`check_reparametrization`, :func:`check_kl_curvature`, :func:`check_score_identity`).
Numeric Fisher matrices of networks and the stiff/sloppy split live in :mod:`symbrg.information.spectrum`
(re-exported here).
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Protocol, TypeAlias, cast

import mpmath
import numpy as np
import sympy as sp

from symbrg.core import codegen
from symbrg.core.checks import (
    finite_array,
    matching,
    nonnegative,
    positive,
    psd_matrix,
    resolve_symbols,
    scalar,
)
from symbrg.core.derivation import Derivation, Verification, check_identity
from symbrg.core.errors import InvalidArgument, NotPositiveDefinite, ShapeMismatch, Unsupported
from symbrg.core.limits import Limit
from symbrg.core.parsing import as_expression
from symbrg.core.types import ArrayLike, ExprLike, Number, SymbolsLike
from symbrg.information.spectrum import (  # noqa: F401
    ShellSplit,
    fisher_dense,
    fisher_diagonal,
    kernel_operator_spectrum,
    mercer_features,
    readout_fisher_spectrum,
    readout_jacobian,
    shell_split,
)

if TYPE_CHECKING:
    from symbrg.gaussian.activations import Activation
    from symbrg.kernels.architecture import Architecture

__all__ = ["FisherMetric", "JeffreysPrior", "gaussian_family", "gaussian_regression", "gaussian_process",
           "exponential_family", "network_expression", "network_fisher", "gp_fisher", "jeffreys_prior",
           "gaussian_expectation", "check_reparametrization", "check_kl_curvature", "check_score_identity",
           "fisher_dense", "fisher_diagonal", "shell_split", "ShellSplit", "readout_jacobian",
           "kernel_operator_spectrum", "readout_fisher_spectrum", "mercer_features"]

#: Size of a symbolic GP Fisher metric, estimated before it is built as (operations in the Gram
#: matrix + n^2)^2 n!/2 for n points.  Measured (estimate in brackets): RBF kernel 158 (324), 5,184
#: (6,912), 100,262 (101,568) and 3,025,959 (1,314,240) operations at 2-5 points, the last in 31 s;
#: ReLU NNGP (depth 1, d = 2) 26,172 (30,625) at 2 points and 1,000,934 (726,192) at 3 (72 s).
GP_OPS = Limit("gp_fisher_ops", 2_000_000, "estimated operations of a symbolic GP Fisher metric "
                                            "(the numeric symbrg.information.fisher.gp_fisher takes any number of points)")
_SIMPLIFY_OPS = 400  # entries with more operations are only cancelled, not fully simplified

#: Whatever may carry free symbols: an expression, a matrix, or a collection (mapping keys and
#: values included) of such; anything else carries none.
_Symbolic: TypeAlias = "sp.Basic | sp.MatrixBase | Iterable[object]"
#: A sympy or a NumPy matrix: :func:`_gaussian_metric` is one formula for both.
_Mat: TypeAlias = "sp.MatrixBase | np.ndarray"
#: A vector of expressions: a column or row Matrix, or a sequence of entries.
VectorLike: TypeAlias = "sp.MatrixBase | Sequence[Number] | Sequence[Sequence[Number]]"
#: A square matrix of expressions: a Matrix or its rows.
MatrixLike: TypeAlias = "sp.MatrixBase | Sequence[Sequence[Number]]"
#: One input point: a number (scalar input) or a tuple of numbers (vector input).
Point: TypeAlias = "Number | Sequence[Number]"
#: A finite data set of inputs (``None``: average over a distribution instead).
Data: TypeAlias = "Sequence[Point] | None"
#: An input distribution: a ``sympy.stats`` random variable, or one per input symbol.
Distribution: TypeAlias = "sp.Basic | Mapping[sp.Symbol, sp.Basic] | None"
#: A GP kernel: an expression in an input pair, a ready Gram Matrix, a callable of the points, or an
#: architecture from :func:`symbrg.mlp`.
KernelLike: TypeAlias = "sp.Expr | sp.MatrixBase | Architecture | Callable[[list[Point]], MatrixLike]"


# ----------------------------------------------------------------------------------- helpers
def _tidy(e: sp.Expr, simplify: bool = True) -> sp.Expr:
    """Simplify small results; leave large ones as derived (simplification would dominate)."""
    e = as_expression(e, "e")
    if not simplify or sp.count_ops(e) > _SIMPLIFY_OPS:
        return e
    return sp.simplify(e)


def _expression(argument: str, value: Number) -> sp.Expr:
    """A sympy expression (or number) given in Python; text is refused, never evaluated (parse it
    with :mod:`symbrg.core.parsing` first)."""
    if isinstance(value, str):
        raise InvalidArgument(argument, "expected a sympy expression, got text; parse text with "
                                        "symbrg.core.parsing.parse_expression first")
    try:
        return sp.sympify(value, strict=True)
    except sp.SympifyError:
        raise InvalidArgument(argument, f"expected a sympy expression, got {type(value).__name__}") from None


def _eq(name: str, rhs: "sp.Expr | sp.MatrixBase") -> sp.Equality:
    """``name = rhs`` as an unevaluated equation (matrices included)."""
    rhs = sp.ImmutableMatrix(rhs) if isinstance(rhs, sp.MatrixBase) else rhs
    return sp.Eq(sp.Symbol(name), rhs, evaluate=False)


def _params(parameters: SymbolsLike, *exprs: _Symbolic, argument: str = "parameters") -> tuple[sp.Symbol, ...]:
    """The parameters (symbols or names) as the symbols of ``exprs`` that carry those names
    (:func:`~symbrg.core.checks.resolve_symbols`): a user's ``Symbol('a', positive=True)`` means the
    model's ``a`` whatever its assumptions; a name the model does not contain is refused."""
    given = (parameters,) if isinstance(parameters, (sp.Symbol, str)) else tuple(parameters)
    if not given:
        raise InvalidArgument(argument, "expected one or more symbols")
    ps = resolve_symbols(argument, given, _free(*exprs))
    if len(set(ps)) != len(ps):
        raise InvalidArgument(argument, "parameters must be distinct")
    return ps


def _free(*exprs: _Symbolic) -> set[sp.Symbol]:
    """Free symbols of expressions, matrices and mappings (their keys and values)."""
    out: set[sp.Symbol] = set()
    for e in exprs:
        if isinstance(e, Mapping):
            out |= _free(*e.keys(), *e.values())
        elif isinstance(e, (list, tuple, set, frozenset)):
            out |= _free(*e)
        elif isinstance(e, sp.Basic) or isinstance(e, sp.MatrixBase):
            out |= e.free_symbols
    return out


def _keyed(argument: str, values: Mapping, *exprs: _Symbolic) -> dict:
    """A substitution dict whose keys (symbols or names) are matched by name against ``exprs``."""
    return dict(zip(resolve_symbols(argument, list(values), _free(*exprs)), values.values()))


def _domain(ps: Sequence[sp.Symbol]) -> dict[sp.Symbol, tuple[float, float]]:
    """Sampling boxes for numeric identity checks: (0.3, 2) for positive symbols, else (-1.5, 1.5)."""
    return {p: (0.3, 2.0) if p.is_positive or p.is_nonnegative else (-1.5, 1.5) for p in ps}


def _gaussian_metric(dmu: Sequence[_Mat], dcov: Sequence[_Mat], solve: Callable[[_Mat], _Mat],
                     trace: Callable[[_Mat], Number]) -> list[list[Number]]:
    r"""The one formula :math:`\partial_a\mu^\top\Sigma^{-1}\partial_b\mu + \frac12\mathrm{tr}(\Sigma^{-1}
    \partial_a\Sigma\Sigma^{-1}\partial_b\Sigma)`, for sympy Matrices and NumPy arrays alike.

    dmu[a]: (n, 1) columns; dcov[a]: (n, n); solve(M) = :math:`\Sigma^{-1}M`.
    """
    m = [solve(v) for v in dmu]
    A = [solve(s) for s in dcov]
    P = len(dmu)
    out: list[list[Number]] = [[0] * P for _ in range(P)]
    for a in range(P):
        for b in range(a, P):
            out[a][b] = out[b][a] = (dmu[a].T @ m[b])[0, 0] + trace(A[a] @ A[b]) / 2
    return out


def _gaussian_kl(mu0: sp.Matrix, S0: sp.Matrix, mu1: sp.Matrix, S1: sp.Matrix) -> sp.Expr:
    r""":math:`D(\mathcal N_0\|\mathcal N_1) = \frac12[\mathrm{tr}(\Sigma_1^{-1}\Sigma_0) + \Delta\mu^\top
    \Sigma_1^{-1}\Delta\mu - n + \ln(\det\Sigma_1/\det\Sigma_0)]`."""
    S1inv = S1.adjugate() / S1.det(method="berkowitz")
    d = mu1 - mu0
    return ((S1inv * S0).trace() + (d.T * S1inv * d)[0, 0] - S0.shape[0] + sp.log(S1.det(method="berkowitz") / S0.det(method="berkowitz"))) / 2


@cache
def _matchings(idx: tuple[int, ...]) -> tuple[tuple[tuple[int, int], ...], ...]:
    """All perfect matchings of the index list (Isserlis/Wick pairings)."""
    if not idx:
        return ((),)
    first, rest = idx[0], idx[1:]
    out = []
    for k in range(len(rest)):
        for m in _matchings(rest[:k] + rest[k + 1:]):
            out.append(((first, rest[k]),) + m)
    return tuple(out)


def gaussian_expectation(poly: sp.Expr, noise: Sequence[sp.Symbol], cov: sp.Matrix) -> sp.Expr:
    r""":math:`\mathbb E[p(e)]` for a polynomial p in centred Gaussian variables :math:`e\sim\mathcal N(0,\Sigma)`.

    Each monomial is replaced by its Isserlis (Wick) sum over pairings,
    :math:`\mathbb E[e_{i_1}\cdots e_{i_{2k}}] = \sum_{\text{pairings}}\prod\Sigma_{i_a i_b}`; odd moments vanish.
    """
    noise = tuple(noise)
    P = sp.Poly(sp.expand(poly), *noise)
    total = sp.Integer(0)
    for powers, coeff in P.terms():
        idx = tuple(i for i, k in enumerate(powers) for _ in range(k))
        if len(idx) % 2:
            continue
        total += coeff * sp.Add(*[sp.Mul(*[cov[i, j] for i, j in m]) for m in _matchings(idx)])
    return total


# ------------------------------------------------------------------------------ the metric
@dataclass
class FisherMetric:
    r"""A Fisher metric :math:`I_{AB}(\theta)` in closed form, with its derivation.

    matrix: the symmetric sympy Matrix :math:`I_{AB}`; parameters: :math:`\theta^A` in order;
    model: a one-line description; derivation: the verified steps.  ``log_density`` (in the
    observation symbols ``observations``) and ``kl_divergence`` are kept when the family has them;
    ``rebuild(substitution, parameters)`` re-derives the metric of the same family with
    :math:`\theta` replaced by expressions (used by :func:`check_reparametrization`).
    """
    matrix: sp.Matrix
    parameters: tuple[sp.Symbol, ...]
    model: str
    derivation: Derivation
    log_density: sp.Expr | None = None
    observations: tuple[sp.Symbol, ...] = ()
    observation_mean: sp.Matrix | None = None
    observation_cov: sp.Matrix | None = None
    pointwise: sp.Matrix | None = None
    kl_divergence: Callable[[Mapping, Mapping], sp.Expr] | None = field(default=None, repr=False)
    rebuild: Callable[[Mapping, Sequence[sp.Symbol]], "FisherMetric"] | None = field(default=None,
                                                                                     repr=False)

    def __getitem__(self, key: "int | slice | tuple[int | slice, int | slice]") -> sp.Expr:
        return self.matrix[key]

    def __repr__(self) -> str:
        names = ", ".join(map(str, self.parameters))
        return f"<FisherMetric of {self.model} in ({names}): {sp.sstr(self.matrix.tolist())}>"

    def _repr_latex_(self) -> str:
        """Jupyter: :math:`I(\\theta)` as a matrix, with the parameters."""
        names = ", ".join(sp.latex(p) for p in self.parameters)
        return f"$I({names}) = {sp.latex(self.matrix)}$"

    @property
    def shape(self) -> tuple[int, int]:
        return self.matrix.shape

    def determinant(self) -> sp.Expr:
        r""":math:`\det I`, simplified."""
        return _tidy(self.matrix.det())

    def compile(self, backend: str = "numpy") -> Callable[..., "np.ndarray | mpmath.matrix"]:
        r"""Compile :math:`I(\theta)` with :mod:`symbrg.core.codegen`: ``fn(*theta)`` returns ``(..., P, P)``.

        Arguments broadcast (pass arrays of shape ``(members,)`` for an ensemble).  Free symbols
        other than the parameters must be substituted first (:meth:`subs`).
        """
        stray = self.matrix.free_symbols - set(self.parameters)
        if stray:
            raise InvalidArgument("matrix", f"substitute the symbols {sorted(map(str, stray))} first")
        P = len(self.parameters)
        pairs = [(a, b) for a in range(P) for b in range(a, P)]
        fn = codegen.lambdify([self.matrix[a, b] for a, b in pairs], self.parameters, backend)

        def fisher(*theta: "ArrayLike | mpmath.mpf") -> "np.ndarray | mpmath.matrix":
            matching("theta", len(theta), P, "number of arguments (the parameters)")
            if backend == "numpy":  # real, finite values only (a complex cast would drop the imaginary part)
                theta = tuple(finite_array(str(p), t, nonempty=False) for p, t in zip(self.parameters, theta))
            vals = fn(*theta)
            if backend != "numpy":
                return mpmath.matrix([[vals[pairs.index((min(a, b), max(a, b)))] for b in range(P)]
                                      for a in range(P)])
            shape = np.broadcast(*[np.asarray(t) for t in theta]).shape if theta else ()
            out = np.empty(shape + (P, P))
            for (a, b), v in zip(pairs, vals):
                out[..., a, b] = out[..., b, a] = v
            return out
        fisher.__doc__ = f"Fisher metric of {self.model}; arguments {', '.join(map(str, self.parameters))}"
        return fisher

    def subs(self, values: Mapping) -> "FisherMetric":
        """Substitute values for non-parameter symbols (data, fixed hyperparameters)."""
        m = self.matrix.subs(_keyed("values", values, self.matrix))
        return FisherMetric(m, self.parameters, self.model, self.derivation)

    def pullback(self, new_parameters: Sequence[sp.Symbol], old_of_new: Mapping,
                 simplify: bool = True) -> "FisherMetric":
        r"""The metric in new coordinates, :math:`I'(\varphi) = J^\top I(\theta(\varphi)) J`,
        :math:`J^A{}_\alpha = \partial\theta^A/\partial\varphi^\alpha` (covariance of a (0,2) tensor)."""
        old_of_new = _keyed("old_of_new", old_of_new, self.parameters)
        new = _params(new_parameters, list(old_of_new.values()), argument="new_parameters")
        theta = sp.Matrix([as_expression(old_of_new.get(p, p), "old_of_new") for p in self.parameters])
        J = theta.jacobian(sp.Matrix(new))
        moved = self.matrix.xreplace({p: theta[i] for i, p in enumerate(self.parameters)})
        m = (J.T * moved * J).applyfunc(lambda e: _tidy(e, simplify))
        d = Derivation(f"{self.derivation.title} (reparametrized)", name=self.derivation.name + "-pullback")
        d.step(_eq("I'", m), "Pull back along $\\theta(\\varphi)$: $I' = J^\\top I J$.",
               cites=("amari2016",))
        return FisherMetric(m, new, self.model + " (reparametrized)", d)


# ------------------------------------------------------------------------ Gaussian families
def _as_column(name: str, v: VectorLike) -> sp.Matrix:
    m = sp.Matrix(v)
    if m.shape[1] != 1 and m.shape[0] == 1:
        m = m.T
    if m.shape[1] != 1:
        raise ShapeMismatch(name, f"expected a vector, got shape {m.shape}")
    return m


def _numerically_zero(e: sp.Expr, points: int = 3) -> bool:
    """Zero by simplification, or (for opaque functions) at random points to 30 digits."""
    if e == 0 or (sp.count_ops(e) < _SIMPLIFY_OPS and sp.simplify(e) == 0):
        return True
    free = sorted(e.free_symbols, key=str)
    dom = _domain(tuple(free))
    rng = np.random.default_rng(0)
    for _ in range(points):
        at = {s: sp.Float(rng.uniform(*dom[s]), 40) for s in free}
        if abs(complex(sp.N(e.xreplace(at), 30))) > 1e-25:
            return False
    return True


def _checked_cov(cov: MatrixLike, n: int) -> sp.Matrix:
    S = sp.Matrix(cov)
    if S.shape[0] != S.shape[1]:
        raise ShapeMismatch("covariance", f"must be square, got shape {S.shape}")
    matching("covariance", S.shape[0], n, "size (the length of mean)")
    for i, j in itertools.combinations(range(n), 2):
        if S[i, j] != S[j, i] and not _numerically_zero(S[i, j] - S[j, i]):
            raise NotPositiveDefinite("covariance", "must be symmetric")
    if not S.free_symbols:
        psd_matrix("covariance", np.array(S.evalf(), dtype=float), strict=True)
    elif _numerically_zero(S.det(method="berkowitz")):
        raise NotPositiveDefinite("covariance", "is singular (det = 0); the Fisher metric needs its inverse")
    return S


def gaussian_family(mean: VectorLike, covariance: MatrixLike, parameters: SymbolsLike, *, name: str = "gaussian",
                    verify: bool = True, simplify: bool = True, symbols: Iterable[sp.Symbol] = ()) -> FisherMetric:
    r"""Fisher metric of :math:`y\sim\mathcal N(\mu(\theta), \Sigma(\theta))`, :math:`y\in\mathbb R^n`.

    .. math:: I_{ab} = \partial_a\mu^\top\Sigma^{-1}\partial_b\mu
              + \tfrac12\operatorname{tr}(\Sigma^{-1}\partial_a\Sigma\,\Sigma^{-1}\partial_b\Sigma)

    mean: length-n vector of expressions; covariance: n x n symmetric matrix of expressions (must be
    invertible: a singular Σ raises :class:`~symbrg.core.errors.NotPositiveDefinite`).  With ``verify``
    the derivation checks :math:`I = -\mathbb E[\nabla^2\log p]`, computing the expectation exactly
    (the Hessian is quadratic in y), by simplification and at random high-precision points.
    Parameters (symbols or names) are matched by name against the symbols of mean and covariance
    and ``symbols`` (further symbols of the model, e.g. a kernel hyperparameter that drops out on the
    chosen points: its row is 0); any other name is refused.
    """
    mu = _as_column("mean", mean)
    n = mu.shape[0]
    S = _checked_cov(covariance, n)
    ps = _params(parameters, mu, S, set(symbols))
    detS = S.det(method="berkowitz")  # sympy's default (Bareiss) det takes minutes on 4 x 4 RBF Grams
    Sinv = S.adjugate() / detS if n > 1 else sp.Matrix([[1 / S[0, 0]]])
    raw = _gaussian_metric([mu.diff(p) for p in ps], [S.diff(p) for p in ps], lambda M: Sinv * M,
                           lambda M: M.trace())
    matrix = sp.Matrix(len(ps), len(ps), lambda a, b: _tidy(raw[a][b], simplify))
    ys = sp.symbols(f"y_1:{n + 1}", real=True)
    resid = sp.Matrix(ys) - mu
    logp = -(resid.T * Sinv * resid)[0, 0] / 2 - sp.log(detS) / 2 - n * sp.log(2 * sp.pi) / 2
    d = Derivation(f"Fisher metric of the Gaussian family {name}", name=f"fisher-{name}",
                   introduction="For $y\\sim\\mathcal N(\\mu(\\theta),\\Sigma(\\theta))$ the Fisher metric "
                                "follows from the expected Hessian of the log-likelihood.")
    d.step(_eq("\\log p", logp), "Gaussian log-likelihood.", "eq:" + name + "-logp")
    d.step(_eq("I", matrix),
           "$I_{ab}=\\partial_a\\mu^\\top\\Sigma^{-1}\\partial_b\\mu+\\frac12\\mathrm{tr}(\\Sigma^{-1}\\partial_a"
           "\\Sigma\\Sigma^{-1}\\partial_b\\Sigma)$, equal to $-\\mathbb E[\\partial_a\\partial_b\\log p]$.",
           "eq:" + name + "-fisher", uses=("eq:" + name + "-logp",), cites=("amari2016", "bks2023"),
           verification=_verify_hessian(matrix, logp, ys, mu, S, ps) if verify else None)

    def kl(theta0: Mapping, theta1: Mapping) -> sp.Expr:
        return _gaussian_kl(mu.subs(dict(theta0)), S.subs(dict(theta0)), mu.subs(dict(theta1)),
                            S.subs(dict(theta1)))

    def rebuild(sub: Mapping, new: Sequence[sp.Symbol]) -> FisherMetric:
        return gaussian_family(mu.subs(dict(sub)), S.subs(dict(sub)), new, name=name + "'", verify=False,
                               simplify=False)

    return FisherMetric(matrix, ps, f"N(mu, Sigma) [{name}]", d, logp, ys, mu, S, matrix, kl, rebuild)


def _expect_over_gaussian(expr: sp.Expr, ys: Sequence[sp.Symbol], mu: sp.Matrix, S: sp.Matrix) -> sp.Expr:
    es = sp.symbols(f"e_1:{len(ys) + 1}", real=True)
    shifted = sp.expand(expr.xreplace({y: mu[i] + es[i] for i, y in enumerate(ys)}))
    return gaussian_expectation(shifted, es, S)


def _verify_hessian(matrix: sp.Matrix, logp: sp.Expr, ys: Sequence[sp.Symbol], mu: sp.Matrix,
                    S: sp.Matrix, ps: Sequence[sp.Symbol]) -> Verification:
    """Check ``matrix == -E[Hessian of log p]`` (exact Gaussian expectation)."""
    return _moment_check(matrix, lambda a, b: -sp.diff(logp, ps[a], ps[b]), ys, mu, S, ps)


def _moment_check(matrix: sp.Matrix, integrand: Callable[[int, int], sp.Expr], ys: Sequence[sp.Symbol],
                  mu: sp.Matrix, S: sp.Matrix, ps: Sequence[sp.Symbol], points: int = 6,
                  dps: int = 30) -> Verification:
    r"""Compare ``matrix[a, b]`` with :math:`\mathbb E_{y\sim\mathcal N(\mu,\Sigma)}[\text{integrand}(a, b)]`.

    The expectation of the (polynomial in y) integrand is exact (Isserlis).  A scalar observation
    with small expressions is checked symbolically and at random points; otherwise every symbol
    is first set to a random point (Floats of ``dps + 10`` digits, so expansion stays cheap) and the exact expectation
    is compared with the matrix there, at ``dps`` digits.
    """
    P = len(ps)
    pairs = [(a, b) for a in range(P) for b in range(a, P)]
    if len(ys) == 1:
        exp_ = {(a, b): _expect_over_gaussian(integrand(a, b), ys, mu, S) for a, b in pairs}
        if max(sp.count_ops(e) for e in exp_.values()) < _SIMPLIFY_OPS:
            dom = _domain(tuple(matrix.free_symbols | set().union(*(e.free_symbols for e in exp_.values()))))
            checks = [check_identity(matrix[a, b], exp_[(a, b)], domain=dom, points=points, dps=dps)
                      for a, b in pairs]
            worst = max(checks, key=lambda v: (v.max_abs_error or 0) / (v.tolerance or 1))
            return Verification(kind=worst.kind, symbolic_zero=all(c.symbolic_zero for c in checks),
                                points=worst.points, dps=dps, max_abs_error=worst.max_abs_error,
                                tolerance=worst.tolerance)
    import random
    rng = random.Random(0)
    integrands = {(a, b): integrand(a, b) for a, b in pairs}
    free = sorted((matrix.free_symbols | mu.free_symbols | S.free_symbols
                   | set().union(*(e.free_symbols for e in integrands.values()))) - set(ys), key=str)
    dom = _domain(tuple(free))
    max_error, scale = 0.0, 1.0
    for _ in range(points):
        at = {sym: sp.Float(sp.Rational(round(rng.uniform(*dom[sym]) * 1000), 1000), dps + 10) for sym in free}
        m_at, S_at = mu.xreplace(at), S.xreplace(at)
        for a, b in pairs:
            value = _expect_over_gaussian(integrands[(a, b)].xreplace(at), ys, m_at, S_at)
            target = matrix[a, b].xreplace(at)
            err = abs(sp.N(value - target, dps))
            max_error = max(max_error, float(err))
            scale = max(scale, abs(float(sp.N(target, 15))))
    return Verification(kind="numeric", points=points, dps=dps, max_abs_error=max_error,
                        tolerance=float(10.0 ** (-(dps - 8)) * scale))


def _exact(v: "ExprLike | np.floating") -> sp.Expr:
    """Data values as exact numbers: decimal floats become the rationals they print as."""
    if isinstance(v, (float, np.floating, sp.Float)):
        return sp.nsimplify(float(v), rational=True)
    return as_expression(v, "v")


def _input_average(expr: sp.Expr, inputs: tuple[sp.Symbol, ...], data: Data, distribution: Distribution) -> sp.Expr:
    if data is not None:
        rows = [r if isinstance(r, (tuple, list)) else (r,) for r in data]
        if not rows:
            raise ShapeMismatch("data", "must contain at least one input")
        for r in rows:
            matching("data", len(r), len(inputs), "input dimension")
            for v in r:
                if not isinstance(v, sp.Basic) or not v.free_symbols:
                    scalar("data", v)
        return sp.Add(*[expr.xreplace(dict(zip(inputs, map(sp.sympify, r)))) for r in rows]) / len(rows)
    import sympy.stats as st
    dist = distribution if isinstance(distribution, Mapping) else {inputs[0]: distribution}
    if set(dist) != set(inputs):
        raise ShapeMismatch("distribution", f"give one random variable per input {inputs}")
    total = sp.Integer(0)
    for term in sp.Add.make_args(sp.expand(expr)):
        coeff, dep = term.as_independent(*inputs, as_Add=False)
        if term == 0:
            continue
        if dep != 1 and not _closes(dep, inputs):
            raise Unsupported("distribution", "closed-form input averages need integrands polynomial in "
                                              "the inputs, times exp of a quadratic; pass data instead")
        for xi in inputs:  # independent inputs: integrate one at a time
            if not dep.has(xi):
                continue
            space = st.pspace(dist[xi]).domain.set
            dens = st.density(dist[xi])(xi)
            dep = sp.integrate(dep * dens, (xi, space.start, space.end), conds="none")
        total += coeff * dep
    val = _tidy(total)
    if val.has(sp.Integral) or val.has(sp.nan):
        raise Unsupported("distribution", "the input average does not close in closed form; pass data")
    return val


def _closes(term: sp.Expr, inputs: tuple) -> bool:
    """Whether ∫ term · density closes: a product of integer powers of inputs and exponentials of
    polynomials of degree <= 2 in them (Gaussian, exponential, uniform inputs)."""
    for factor in sp.Mul.make_args(term):
        base, _ = factor.as_base_exp()
        if factor.is_Pow and base in inputs and factor.exp.is_Integer and factor.exp > 0:
            continue
        if factor in inputs:
            continue
        if isinstance(factor, sp.exp) or (factor.is_Pow and isinstance(factor.base, sp.exp)):
            arg = factor.args[0] if isinstance(factor, sp.exp) else factor.base.args[0] * factor.exp
            if arg.is_polynomial(*inputs) and sp.Poly(arg, *inputs).total_degree() <= 2:
                continue
        return False
    return True


def _verify_average(matrix: sp.Matrix, per_x: sp.Matrix, xs: tuple, data: Data, distribution: Distribution,
                    ps: Sequence[sp.Symbol]) -> Verification | None:
    """The input average re-done independently: a plain sum over data, or mpmath quadrature
    against the input density (one-dimensional inputs)."""
    if data is not None:
        other = per_x.applyfunc(lambda e: _input_average(e, xs, data, None))
    else:
        import sympy.stats as st
        if len(xs) != 1 or isinstance(distribution, Mapping):
            return None
        x = xs[0]
        dens = st.density(distribution)(x)
        dom = st.pspace(distribution).domain.set
        if not isinstance(dom, sp.Interval):
            return None
        other = per_x.applyfunc(lambda e: sp.Integral(e * dens, (x, dom.start, dom.end)))
    box = _domain(tuple((matrix.free_symbols | other.free_symbols) - set(xs)))
    checks = [check_identity(matrix[a, b], other[a, b], domain=box, points=4, simplify=False)
              for a in range(len(ps)) for b in range(a, len(ps))]
    return max(checks, key=lambda v: (v.max_abs_error or 0) / (v.tolerance or 1))


def _regression_metric(f: sp.Expr, v: sp.Expr, ps: Sequence[sp.Symbol], xs: tuple[sp.Symbol, ...], data: Data,
                       distribution: Distribution, simplify: bool) -> tuple[list[list[Number]], sp.Matrix]:
    """The pointwise metric of :func:`gaussian_regression` (a nested list) and its input average."""
    per_x = _gaussian_metric([sp.Matrix([[sp.diff(f, p)]]) for p in ps], [sp.Matrix([[sp.diff(v, p)]]) for p in ps],
                             lambda M: M / v, lambda M: M.trace())
    matrix = sp.Matrix(len(ps), len(ps), lambda a, b: _tidy(_input_average(per_x[a][b], xs, data, distribution),
                                                                 simplify))
    return per_x, matrix


def gaussian_regression(f: Number, parameters: SymbolsLike, inputs: SymbolsLike, *, sigma: Number = 1,
                        data: Data = None, distribution: Distribution = None, name: str = "regression",
                        verify: bool = True, simplify: bool = True) -> FisherMetric:
    r"""Fisher metric, per observation, of :math:`y = f_\theta(x) + \varepsilon`, :math:`\varepsilon\sim\mathcal N(0,\sigma^2)`.

    .. math:: I_{AB} = \frac{1}{\sigma^2}\mathbb E_x[\partial_A f\,\partial_B f]
              + \frac{\partial_A\sigma^2\,\partial_B\sigma^2}{2\sigma^4}

    (the second term only when σ depends on the parameters, e.g. ``sigma=s`` with ``s`` among
    ``parameters``, or ``sigma=sp.sqrt(v)`` for a variance parameter v).  The average
    :math:`\mathbb E_x` is over ``data`` (a list of inputs; tuples for vector inputs) or over
    ``distribution`` (a ``sympy.stats`` random variable, or a dict input -> random variable),
    in closed form when each term is polynomial in x times exp of a quadratic in x (convergence
    conditions, e.g. :math:`4b + 1 > 0` for :math:`e^{-bx^2}` under a standard normal, are assumed);
    anything else raises :class:`~symbrg.core.errors.Unsupported` (pass ``data`` instead).
    T observations carry T times this metric.  σ must be positive (symbolic σ is assumed so).
    """
    f = _expression("f", f)
    sigma = _expression("sigma", sigma)
    positive("sigma", sigma)
    ps = _params(parameters, f, sigma)
    xs = resolve_symbols("inputs", inputs, f.free_symbols - set(ps),
                         what="the inputs must be symbols of f other than the parameters; they")
    if (data is None) == (distribution is None):
        raise InvalidArgument("data", "give exactly one of data (a finite input set) or distribution")
    v = sigma ** 2
    per_x, matrix = _regression_metric(f, v, ps, xs, data, distribution, simplify)
    y = sp.Symbol("y", real=True)
    logp = -(y - f) ** 2 / (2 * v) - sp.log(2 * sp.pi * v) / 2
    d = Derivation(f"Fisher metric of the Gaussian regression model {name}", name=f"fisher-{name}",
                   introduction="For $y=f_\\theta(x)+\\varepsilon$, $\\varepsilon\\sim\\mathcal N(0,\\sigma^2)$, "
                                "the Fisher metric per observation is the Gauss-Newton matrix averaged over "
                                "inputs (plus the noise block when $\\sigma$ is a parameter).")
    d.step(_eq("\\log p(y|x)", logp), "Gaussian likelihood of one observation.", f"eq:{name}-logp")
    per_x_m = sp.Matrix(len(ps), len(ps), lambda a, b: per_x[a][b])
    d.step(_eq("I(x)", per_x_m), "At fixed input, $I_{AB}(x)=-\\mathbb E_y[\\partial_A\\partial_B\\log p]$.",
           f"eq:{name}-pointwise", uses=(f"eq:{name}-logp",), cites=("bks2023",),
           verification=_verify_hessian(per_x_m, logp, (y,), sp.Matrix([f]), sp.Matrix([[v]]), ps)
           if verify else None)
    d.step(_eq("I", matrix), "Average over the inputs "
           + ("(the finite data set)." if data is not None else "(the input distribution)."),
           f"eq:{name}-fisher", uses=(f"eq:{name}-pointwise",), cites=("hkms2024",),
           verification=_verify_average(matrix, per_x_m, xs, data, distribution, ps) if verify else None)

    def kl(theta0: Mapping, theta1: Mapping) -> sp.Expr:
        k = _gaussian_kl(sp.Matrix([f.subs(dict(theta0))]), sp.Matrix([[v.subs(dict(theta0))]]),
                         sp.Matrix([f.subs(dict(theta1))]), sp.Matrix([[v.subs(dict(theta1))]]))
        return _input_average(k, xs, data, distribution)

    def rebuild(sub: Mapping, new: Sequence[sp.Symbol]) -> FisherMetric:
        return gaussian_regression(f.subs(dict(sub)), new, xs, sigma=as_expression(sigma, "sigma").subs(dict(sub)), data=data,
                                   distribution=distribution, name=name + "'", verify=False, simplify=False)

    return FisherMetric(matrix, ps, f"y = f(x) + N(0, sigma^2) [{name}]", d, logp, (y,),
                        sp.Matrix([f]), sp.Matrix([[v]]), per_x_m, kl, rebuild)


def _gram(kernel: KernelLike, points: list[Point], inputs: Sequence[sp.Symbol | str] | None
          ) -> tuple[sp.Matrix, set[sp.Symbol]]:
    """A kernel as a symbolic Gram matrix: a Matrix, a callable of the points, an Architecture, or
    an expression in the input pair ``inputs = (x, x')``; with the kernel's own symbols (its
    hyperparameters, also those that drop out of the Gram matrix on these points)."""
    if isinstance(kernel, sp.MatrixBase):
        K = sp.Matrix(kernel)
        return K, K.free_symbols
    if hasattr(kernel, "nngp_program"):  # a symbrg.kernels.architecture.Architecture
        from symbrg.core.special import NumericFunction
        from symbrg.kernels.architecture import S11, S12, S22
        k = cast("Architecture", kernel).expand("nngp").replace(  # closed forms where the special function has one
            lambda e: isinstance(e, NumericFunction) and hasattr(type(e), "explicit"),
            lambda e: type(e).explicit(*e.args))
        if any(type(f).fdiff is sp.Function.fdiff for f in k.atoms(NumericFunction)):
            raise Unsupported("kernel", "this NNGP is not differentiable in closed form; use gp_fisher")
        pts = [sp.Matrix(p if isinstance(p, (tuple, list)) else [p]) for p in points]
        dim = pts[0].shape[0]
        dot = lambda a, b: (a.T * b)[0, 0] / dim  # noqa: E731
        from symbrg.core.special import GramDet
        # on the diagonal the Gram determinant vanishes identically: write it out so that it cancels
        # before differentiation (else 0 * inf in the hyperparameter derivatives)
        k_diag = k.replace(lambda e: isinstance(e, GramDet), lambda e: e.args[0] * e.args[2] - e.args[1] ** 2)

        def entry(i: int, j: int) -> sp.Expr:
            return (k_diag if i == j else k).xreplace({S11: dot(pts[i], pts[i]), S22: dot(pts[j], pts[j]),
                                                       S12: dot(pts[i], pts[j])})
        return (sp.Matrix(len(pts), len(pts), lambda i, j: entry(min(i, j), max(i, j))),
                k.free_symbols - {S11, S12, S22})
    if callable(kernel) and not isinstance(kernel, sp.Basic):
        K = sp.Matrix(kernel(points))
        return K, K.free_symbols
    if inputs is None or len(inputs) != 2:
        raise InvalidArgument("inputs", "a kernel expression needs inputs=(x, x_prime)")
    k = _expression("kernel", kernel)
    inputs = resolve_symbols("inputs", inputs, k.free_symbols)
    return (sp.Matrix(len(points), len(points), lambda i, j: k.xreplace({inputs[0]: as_expression(points[i], "points"),
                                                                        inputs[1]: as_expression(points[j], "points")})),
            k.free_symbols - set(inputs))


def _gp_ops(size: int, n: int) -> float:
    """Estimated operations of the symbolic GP metric on n points with a Gram matrix of ``size``
    operations (plus n^2): size^2 n!/2 (:data:`GP_OPS`), capped so that it stays a float."""
    return float(min(size * size * math.factorial(min(n, 150)) // 2, 10 ** 300))


def gaussian_process(kernel: KernelLike, points: Sequence[Point], parameters: SymbolsLike, *,
                     mean: VectorLike | None = None, noise_var: ExprLike = 0,
                     inputs: Sequence[sp.Symbol | str] | None = None, name: str = "gp",
                     verify: bool = True) -> FisherMetric:
    r"""Fisher metric of the GP :math:`f(X)\sim\mathcal N(m_\theta(X), K_\theta(X, X) + \sigma_n^2 1)` on ``points``.

    kernel: a sympy expression in ``inputs = (x, x')`` and the hyperparameters; a callable
    ``points -> sympy Matrix``; a ready Gram Matrix; or an Architecture from :func:`symbrg.mlp`
    (its NNGP, closed form in its hyperparameter symbols, e.g. ``sigma_w``, ``sigma_b``).
    The metric is :func:`gaussian_family`'s with :math:`\Sigma = K + \sigma_n^2 1`.  Its size grows
    as (operations in the Gram matrix)^2 n!/2 (:data:`GP_OPS`, refused above the ``gp_fisher_ops``
    limit; :func:`gp_fisher` evaluates the same metric numerically at any number of points).
    """
    noise_var = as_expression(noise_var, "noise_var")
    nonnegative("noise_var", noise_var)
    n = len(points)
    GP_OPS.check("points", _gp_ops(n * n, n), cost=f"{n} points")  # a lower bound, before the Gram exists
    K, own = _gram(kernel, list(points), inputs)
    size = sum(sp.count_ops(e) for e in K) + n * n
    GP_OPS.check("points", _gp_ops(size, n), cost=f"{n} points, a Gram matrix of {size:,} operations")
    K = K + noise_var * sp.eye(n)
    mu = sp.zeros(len(points), 1) if mean is None else _as_column("mean", mean)
    matching("mean", mu.shape[0], K.shape[0], "length (the number of points)")
    return gaussian_family(mu, K, parameters, name=name, verify=verify, symbols=own | noise_var.free_symbols)


# --------------------------------------------------------------------- exponential families
def exponential_family(log_partition: Number, natural: SymbolsLike, *, parameters: SymbolsLike | None = None,
                       natural_of: Mapping | None = None, name: str = "expfam",
                       simplify: bool = True) -> FisherMetric:
    r"""Fisher metric of :math:`p(y|\eta) = h(y)\exp(\eta\cdot T(y) - A(\eta))`: :math:`I(\eta) = \nabla^2 A(\eta)`.

    log_partition: :math:`A` in the natural parameters ``natural``.  With ``parameters`` θ and
    ``natural_of`` (η -> expression in θ) the metric is pulled back, :math:`I(\theta) =
    J^\top\nabla^2A\,J`, :math:`J = \partial\eta/\partial\theta`; the derivation verifies this against
    :math:`-\mathbb E[\partial^2_\theta\log p]` with :math:`\mathbb E[T] = \nabla A` (log p is linear in T).
    The KL divergence is the Bregman divergence of A.
    """
    A = _expression("log_partition", log_partition)
    etas = _params(natural, A, argument="natural")
    H = sp.hessian(A, etas)
    if parameters is not None and natural_of is None:
        raise InvalidArgument("natural_of", "give natural_of (eta -> expression in the parameters)")
    natural_of = _keyed("natural_of", natural_of or {}, etas)
    ps = etas if parameters is None else _params(parameters, list(natural_of.values()))
    eta_of = {e: _expression("natural_of", natural_of.get(e, e)) for e in etas}
    J = sp.Matrix([eta_of[e] for e in etas]).jacobian(sp.Matrix(ps))
    matrix = (J.T * H.xreplace(eta_of) * J).applyfunc(lambda e: _tidy(e, simplify))
    Ts = sp.symbols(f"T_1:{len(etas) + 1}", real=True)
    logp = sum(eta_of[e] * t for e, t in zip(etas, Ts)) - A.xreplace(eta_of)
    grad = [sp.diff(A, e).xreplace(eta_of) for e in etas]
    neg = sp.Matrix(len(ps), len(ps), lambda a, b: -sp.diff(logp, ps[a], ps[b]).xreplace(dict(zip(Ts, grad))))
    dom = _domain(tuple(ps))
    ver = [check_identity(matrix[a, b], neg[a, b], domain=dom, points=6) for a in range(len(ps))
           for b in range(a, len(ps))]
    d = Derivation(f"Fisher metric of the exponential family {name}", name=f"fisher-{name}",
                   introduction="For an exponential family the Fisher metric is the Hessian of the log-partition "
                                "function in natural coordinates.")
    d.step(_eq("A", A), "Log-partition function.", f"eq:{name}-A")
    d.step(_eq("I", matrix), "$I=J^\\top\\nabla^2A\\,J=-\\mathbb E[\\partial^2\\log p]$ using "
           "$\\mathbb E[T]=\\nabla A$.", f"eq:{name}-fisher", uses=(f"eq:{name}-A",), cites=("amari2016",),
           verification=max(ver, key=lambda v: (v.max_abs_error or 0) / (v.tolerance or 1))
           if all(v.verified for v in ver) else next(v for v in ver if not v.verified))

    def kl(theta0: Mapping, theta1: Mapping) -> sp.Expr:
        e0 = {e: eta_of[e].subs(dict(theta0)) for e in etas}
        e1 = {e: eta_of[e].subs(dict(theta1)) for e in etas}
        return A.xreplace(e1) - A.xreplace(e0) - sum((e1[e] - e0[e]) * sp.diff(A, e).xreplace(e0) for e in etas)

    def rebuild(sub: Mapping, new: Sequence[sp.Symbol]) -> FisherMetric:
        return exponential_family(A, etas, parameters=new,
                                  natural_of={e: eta_of[e].subs(dict(sub)) for e in etas}, name=name + "'",
                                  simplify=False)

    return FisherMetric(matrix, ps, f"exponential family [{name}]", d, logp, Ts, None, None, None, kl, rebuild)


# ----------------------------------------------------------------------- finite-width networks
class FiniteNetwork(Protocol):
    """What the closed forms read of a finite-width network, e.g. a
    :class:`symbrg.ensembles.networks.Network` (a layer above this one, so named only structurally)."""
    widths: tuple[int, ...]
    activations: tuple[Activation, ...]
    bias: bool

    @property
    def depth(self) -> int: ...

    def weight_scale(self, l: int) -> float: ...

    def bias_scale(self, l: int) -> float: ...


def network_expression(net: FiniteNetwork, which: str = "all") -> tuple[sp.Expr, tuple[sp.Symbol, ...], tuple[sp.Symbol, ...]]:
    r"""A :class:`symbrg.ensembles.networks.Network` with scalar output written out as a sympy expression.

    Returns ``(f, theta, x)``: :math:`f_\theta(x)` with the trainable parameters ``theta`` in the
    flattening order of ``Ensemble.flat(which)`` (``W^{(0)}`` row-major, ``b^{(0)}``, ...) and inputs
    ``x``.  With ``which="readout"`` the hidden weights stay symbols outside ``theta`` (substitute
    them before compiling).  For small widths: the expression has one term per path.
    """
    if net.widths[-1] != 1:
        raise Unsupported("net", "symbolic networks need a scalar output (d_out = 1)")
    if any(a.random_phase for a in net.activations):
        raise Unsupported("net", "random-phase activations need their phases; use Network.jacobian")
    from symbrg.gaussian.activations import X
    xs = sp.symbols(f"x_1:{net.widths[0] + 1}", real=True)
    h = list(xs)
    theta: list[sp.Symbol] = []
    for l in range(net.depth + 1):
        n_in, n_out = net.widths[l], net.widths[l + 1]
        W = [[sp.Symbol(f"W{l}_{i}{j}", real=True) for j in range(n_in)] for i in range(n_out)]
        b = [sp.Symbol(f"b{l}_{i}", real=True) for i in range(n_out)] if net.bias else None
        if which == "all" or l == net.depth:
            theta += [w for row in W for w in row] + (b or [])
        sw, sb = sp.nsimplify(net.weight_scale(l)), sp.nsimplify(net.bias_scale(l))
        z = [sw * sum(W[i][j] * h[j] for j in range(n_in)) + (sb * b[i] if b else 0) for i in range(n_out)]
        h = z if l == net.depth else [net.activations[l].expr.xreplace({X: zi}) for zi in z]
    return h[0], tuple(theta), xs


def network_fisher(net: FiniteNetwork, data: ArrayLike, *, sigma: Number = 1, which: str = "all",
                   hidden: Mapping | None = None) -> FisherMetric:
    r"""Closed-form Fisher metric of a small finite-width network on a finite data set.

    :func:`gaussian_regression` applied to :func:`network_expression`: :math:`I_{AB} =
    \frac{1}{n\sigma^2}\sum_x \partial_A f(x)\,\partial_B f(x)` with the Jacobian differentiated
    symbolically (ReLU kinks a.e.), compiled to NumPy by :meth:`FisherMetric.compile`.
    ``hidden`` substitutes values for symbols outside ``theta`` (the frozen layers for ``"readout"``).
    """
    f, theta, xs = network_expression(net, which)
    if hidden:
        f = f.xreplace({k: _expression("hidden", v) for k, v in _keyed("hidden", hidden, f).items()})
    X = finite_array("data", data, ndim=2)
    matching("data", X.shape[1], len(xs), "input dimension")
    rows = [tuple(sp.Float(v) for v in r) for r in X]
    live = [t for t in theta if f.has(t)]  # a parameter multiplied by a zero scale carries no information
    g = gaussian_regression(f, live, xs, sigma=sigma, data=rows, name="network", verify=False, simplify=False)
    if len(live) == len(theta):
        return g
    at = {t: i for i, t in enumerate(live)}
    full = sp.Matrix(len(theta), len(theta), lambda a, b: g.matrix[at[theta[a]], at[theta[b]]]
                     if theta[a] in at and theta[b] in at else 0)
    return FisherMetric(full, theta, g.model, g.derivation)


# ------------------------------------------------------------------------ numeric GP metrics
def gp_fisher(kernel: "Architecture | Number", X: ArrayLike, at: Mapping, *, noise_var: float = 0.0,
              inputs: Sequence[sp.Symbol | str] | None = None) -> np.ndarray:
    r"""Numeric Fisher metric of hyperparameters of a GP on data X (T points, any T):
    :math:`I_{ab} = \tfrac12\operatorname{tr}(K^{-1}\partial_aK\,K^{-1}\partial_bK)`, :math:`K = K_\theta(X,X) + \sigma_n^2 1`.

    kernel: an Architecture from :func:`symbrg.mlp` (derivatives by :meth:`Program.diff`, exact),
    or a sympy expression in ``inputs = (x, x')`` (scalar inputs; derivatives symbolic, compiled
    with :mod:`symbrg.core.codegen`).  at: hyperparameter symbol (or name) -> value; the metric is over
    these, in this order.  Same formula as :func:`gaussian_family` (one implementation), evaluated
    with a Cholesky solve; a singular K raises :class:`~symbrg.core.errors.NotPositiveDefinite`.
    """
    noise_var = nonnegative("noise_var", noise_var)
    if hasattr(kernel, "nngp_program"):
        hyp, grams = _architecture_grams(cast("Architecture", kernel), X, at)
    else:
        hyp, grams = _expression_grams(kernel, X, at, inputs)
    K = grams[0] + noise_var * np.eye(grams[0].shape[0])
    try:
        L = np.linalg.cholesky(K)
    except np.linalg.LinAlgError:
        raise NotPositiveDefinite("kernel", "the Gram matrix (plus noise_var) is singular or not "
                                  "positive definite; add noise_var > 0") from None

    def solve(M: np.ndarray) -> np.ndarray:
        return np.linalg.solve(L.T, np.linalg.solve(L, M))
    zero = np.zeros((K.shape[0], 1))
    I = np.array(_gaussian_metric([zero] * len(hyp), list(grams[1:]), solve, np.trace), dtype=float)
    if not np.all(np.isfinite(I)):
        raise NotPositiveDefinite("kernel", "the Gram matrix is too ill-conditioned for its inverse")
    return I


def _architecture_grams(kernel: Architecture, X: ArrayLike, at: Mapping
                        ) -> tuple[list[sp.Symbol], list[np.ndarray]]:
    """(hyperparameters, [K, dK/dh...]) of an architecture's NNGP on X: its kernel program and the
    program's exact derivatives, compiled."""
    from symbrg.kernels.architecture import DIM
    prog = kernel.nngp_program
    hyp = list(resolve_symbols("at", list(at), [s for s in prog.inputs[3:] if s != DIM],
                               what="the kernel's hyperparameters"))
    Xa = finite_array("X", X, ndim=(1, 2))
    Xa = Xa[:, None] if Xa.ndim == 1 else Xa
    dim = Xa.shape[1]
    s = np.einsum("ij,ij->i", Xa, Xa) / dim
    grid = (s[:, None], s[None, :], Xa @ Xa.T / dim)
    vals = {**{k: v for k, v in kernel.values.items()}, **{h: scalar("at", v) for h, v in zip(hyp, at.values())}}
    args = [vals[sym] if sym != DIM else dim for sym in prog.inputs[3:]]
    if any(a is None for a in args):
        raise InvalidArgument("at", "every hyperparameter of the kernel needs a value")
    evaluate = [prog] + [prog.diff(h) for h in hyp]
    grams = [np.broadcast_to(np.asarray(p.compile("numpy")(*grid, *args), dtype=float), grid[2].shape)
             for p in evaluate]
    return hyp, grams


def _expression_grams(kernel: Number, X: ArrayLike, at: Mapping, inputs: Sequence[sp.Symbol | str] | None
                      ) -> tuple[list[sp.Symbol], list[np.ndarray]]:
    """(hyperparameters, [K, dK/dh...]) of a kernel expression in ``inputs = (x, x')`` on scalar
    inputs X: symbolic derivatives, compiled."""
    if inputs is None or len(inputs) != 2:
        raise InvalidArgument("inputs", "a kernel expression needs inputs=(x, x_prime)")
    k = _expression("kernel", kernel)
    inputs = resolve_symbols("inputs", inputs, k.free_symbols)
    hyp = list(resolve_symbols("at", list(at), k.free_symbols - set(inputs),
                               what="the kernel's hyperparameters"))
    Xa = finite_array("X", X, ndim=1)
    fn = codegen.lambdify([k] + [sp.diff(k, h) for h in hyp], tuple(inputs) + tuple(hyp))
    grams = [np.broadcast_to(np.asarray(g, dtype=float), (Xa.size, Xa.size))
             for g in fn(Xa[:, None], Xa[None, :], *[scalar("at", v) for v in at.values()])]
    return hyp, grams


# --------------------------------------------------------------------------- Jeffreys priors
@dataclass(frozen=True)
class JeffreysPrior:
    r"""The Jeffreys prior :math:`\pi_J(\theta)\propto\sqrt{\det I(\theta)}` on a parameter domain.

    density: :math:`\sqrt{\det I}` (unnormalized).  improper: True when
    :math:`\int\sqrt{\det I}\,d\theta` diverges (``reason`` says why: a location parameter on
    :math:`\mathbb R`, a scale parameter, ...), False when it converges (``normalization`` is the
    integral), None when sympy could not decide.
    """
    density: sp.Expr
    parameters: tuple[sp.Symbol, ...]
    domain: dict
    improper: bool | None
    reason: str
    normalization: sp.Expr | None = None

    def normalized(self) -> sp.Expr:
        """The normalized density (only for a proper prior)."""
        if self.improper is not False:
            raise Unsupported("prior", f"the Jeffreys prior is not normalizable: {self.reason}")
        return sp.simplify(self.density / self.normalization)


def jeffreys_prior(metric: FisherMetric, domain: Mapping | None = None) -> JeffreysPrior:
    r"""Jeffreys prior :math:`\sqrt{\det I}` of a metric, with its (im)properness decided.

    domain: parameter -> (low, high); defaults to :math:`(0, \infty)` for positive symbols and
    :math:`(-\infty, \infty)` otherwise.  A parameter on an infinite interval on which the density
    does not depend is a location parameter: the prior is flat there, hence improper.
    """
    ps = metric.parameters
    dom = {p: (sp.Integer(0), sp.oo) if p.is_positive else (-sp.oo, sp.oo) for p in ps}
    dom.update({p: tuple(map(_exact, v)) for p, v in _keyed("domain", domain or {}, ps).items()})
    det = metric.determinant()
    if det == 0:
        return JeffreysPrior(sp.Integer(0), ps, dom, True, "det I = 0: the metric is degenerate")
    density = sp.simplify(sp.powdenest(sp.sqrt(sp.factor(det)), force=True))
    flat = [p for p in ps if not density.has(p) and (dom[p][0].is_infinite or dom[p][1].is_infinite)]
    if flat:
        return JeffreysPrior(density, ps, dom, True, "flat in the location parameter(s) "
                             + ", ".join(map(str, flat)) + " over an infinite range")
    try:
        total = sp.integrate(density, *[(p, *dom[p]) for p in ps])
    except Exception:  # pragma: no cover - integration heuristics
        total = None
    if total is None or total.has(sp.Integral):
        return JeffreysPrior(density, ps, dom, None, "could not decide whether the integral converges")
    if total.has(sp.oo, sp.zoo, sp.nan) or total.is_infinite:
        scale = [p for p in ps if sp.simplify(density.subs(p, 2 * p) * 2 / density) == 1]
        why = ("scale parameter(s) " + ", ".join(map(str, scale)) + " (density ∝ 1/θ): "
               if scale else "") + "the integral of sqrt(det I) diverges"
        return JeffreysPrior(density, ps, dom, True, why)
    return JeffreysPrior(density, ps, dom, False, "the integral of sqrt(det I) converges", total)


# ---------------------------------------------------------------------------- identity checks
def check_reparametrization(metric: FisherMetric, new_parameters: Sequence[sp.Symbol],
                            old_of_new: Mapping, points: int = 8) -> Verification:
    r"""Check :math:`I'(\varphi) = J^\top I(\theta(\varphi)) J` against the metric re-derived directly in φ.

    The model is rebuilt with :math:`\theta = \theta(\varphi)` substituted (``metric.rebuild``) and
    its metric compared entrywise with the pullback, numerically at ``points`` random points
    (30 digits) over the sampling box of the new parameters.
    """
    if metric.rebuild is None:
        raise Unsupported("metric", "this metric cannot be re-derived in new coordinates")
    old_of_new = _keyed("old_of_new", old_of_new, metric.parameters)
    new = _params(new_parameters, list(old_of_new.values()), argument="new_parameters")
    direct = metric.rebuild(old_of_new, new).matrix
    pulled = metric.pullback(new, old_of_new, simplify=False).matrix
    dom = _domain(tuple(direct.free_symbols | pulled.free_symbols))
    checks = [check_identity(direct[a, b], pulled[a, b], domain=dom, points=points, simplify=False)
              for a in range(len(new)) for b in range(a, len(new))]
    return max(checks, key=lambda v: (v.max_abs_error or 0) / (v.tolerance or 1))


def check_kl_curvature(metric: FisherMetric, at: Mapping, direction: Sequence[ExprLike],
                       eps: Sequence[float] = (1e-2, 5e-3, 2.5e-3), dps: int = 40) -> dict:
    r"""Compare :math:`D(\theta\|\theta+\epsilon\delta)` with :math:`\frac{\epsilon^2}2\delta^\top I\delta`.

    Evaluates the family's KL divergence with mpmath at ``dps`` digits for each ε and returns
    ``{"quadratic": δᵀIδ/2, "ratios": [D/ε²], "remainders": [D/ε² - δᵀIδ/2]}``; the remainders
    are :math:`O(\epsilon)` (they halve with ε) if and only if I is the KL curvature.
    """
    if metric.kl_divergence is None:
        raise Unsupported("metric", "this family has no KL divergence")
    ps = metric.parameters
    delta = [_exact(v) for v in direction]
    matching("direction", len(delta), len(ps))
    at = _keyed("at", at, ps)
    missing = [str(p) for p in ps if p not in at]
    if missing:
        raise InvalidArgument("at", f"give a value for every parameter; missing {', '.join(missing)}")
    base = {p: _exact(at[p]) for p in ps}
    dv = sp.Matrix(delta)
    quad = sp.N((dv.T * metric.matrix.subs(base) * dv)[0, 0] / 2, dps)
    ratios = []
    for e in eps:
        e = _exact(e)
        moved = {p: base[p] + e * dv[i] for i, p in enumerate(ps)}
        ratios.append(sp.N(metric.kl_divergence(base, moved) / e ** 2, dps))
    return {"quadratic": quad, "ratios": ratios, "remainders": [r - quad for r in ratios]}


def check_score_identity(metric: FisherMetric) -> Verification:
    r"""Check :math:`\mathbb E[s\,s^\top] = I` (:math:`s = \nabla_\theta\log p`) exactly for a Gaussian family.

    The score outer product is a quartic polynomial in y, whose Gaussian expectation is computed by
    Isserlis' theorem (:func:`gaussian_expectation`); the comparison is by random high-precision
    evaluation (and simplification for small expressions).  For a regression model this is the
    pointwise identity (fixed x); the input average is linear.
    """
    if metric.observation_mean is None:
        raise Unsupported("metric", "the score identity is checked for Gaussian families")
    ps, ys = metric.parameters, metric.observations
    score = [sp.diff(metric.log_density, p) for p in ps]
    return _moment_check(metric.pointwise, lambda a, b: score[a] * score[b], ys, metric.observation_mean,
                         metric.observation_cov, ps)
