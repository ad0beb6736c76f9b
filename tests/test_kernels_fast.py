"""Series activations evaluated as one vectorized node (symbrg.core.special.MehlerSeries), and the NNGP
and NTK from one pass (Architecture.kernels).

What is held fixed: every entry's value is within its certified Parseval bound of the exact
expectation (2-D quadrature and 30-digit mpmath as references), at any variance, with |c| up to 1;
an array evaluates bit for bit as its entries one by one (tiles, threads and the per-point diagonal
agree); the NTK's E[phi' phi'] is the slope d/dq12 of the series of E[phi phi]; kernels() equals
nngp() and ntk() called separately, bit for bit; and a kernel program stays compact (one node per
layer and expectation), so deriving and compiling it costs about what a closed form's does.
"""
from __future__ import annotations

import mpmath
import numpy as np
import pytest
import sympy as sp

from symbrg.core import errors
from symbrg.core.special import MEHLER_FALLBACK, MehlerSeries
from symbrg.gaussian.expectations import Q11, Q12, Q22, expectation
from symbrg.kernels.architecture import Dense, Nonlinearity, mlp, serial

RNG = np.random.default_rng(2024)
X = RNG.normal(size=(23, 4))


def _entries(n: int, qmax: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random variances in [0.01, qmax] and correlations in [-1, 1], with c = +-1, near +-1 and 0 included."""
    rng = np.random.default_rng(seed)
    q11, q22 = rng.uniform(0.01, qmax, n), rng.uniform(0.01, qmax, n)
    c = rng.uniform(-1, 1, n)
    c[:6] = [1.0, -1.0, 1 - 1e-12, -1 + 1e-9, 0.0, 0.999]
    q22[0] = q11[0]                     # q11 = q12 = q22: a Gram matrix's diagonal
    return q11, c * np.sqrt(q11 * q22), q22


@pytest.mark.parametrize("name", ["tanh", "softplus", "swish"])
@pytest.mark.parametrize("derivative", [False, True])
def test_every_entry_is_within_its_certified_bound(name, derivative):
    e = expectation(name, derivative=derivative)
    node = e.vectorized
    assert e.method == "series" and isinstance(node, MehlerSeries) and e.program_expr is node
    assert type(node).mehler_slope == derivative            # E[phi' phi']: the slope of E[phi phi]'s series
    q11, q12, q22 = _entries(400, 9.0, 1)
    value = e.compile()(q11, q12, q22)
    ref = expectation(name, derivative=derivative, method="quadrature", degree=30).compile()(q11, q12, q22)
    bound = e.error_bound(q11, q12, q22)
    certified = np.isfinite(bound)
    assert certified.mean() > 0.95 and np.all(bound[certified] <= 1e-10)
    assert np.all(np.abs(value - ref)[certified] <= bound[certified] + 1e-12)
    assert np.all(np.abs(value - ref) <= 1e-9)                # the rest: by quadrature, or the whole series


@pytest.mark.parametrize("derivative", [False, True])
def test_mpmath_path_takes_the_same_orders(derivative):
    e = expectation("tanh", derivative=derivative)
    fn, mp = e.compile(), e.compile("mpmath", dps=30)
    q11, q12, q22 = _entries(12, 6.0, 2)
    want = fn(q11, q12, q22)
    got = np.array([float(mp(*map(mpmath.mpf, t))) for t in zip(q11, q12, q22)])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-13)


def test_an_array_evaluates_exactly_as_its_entries():
    """Per-entry orders depend only on the entry: a whole array, its entries one at a time, a
    row x column broadcast and blocks of rows give the same bits."""
    e = expectation("tanh")
    fn = e.compile()
    q11, q12, q22 = _entries(300, 8.0, 3)
    whole = fn(q11, q12, q22)
    single = np.array([fn(q11[i:i + 1], q12[i:i + 1], q22[i:i + 1])[0] for i in range(q11.size)])
    np.testing.assert_array_equal(whole, single)
    q = np.geomspace(0.05, 6.0, 40)
    k = np.outer(np.sqrt(q), np.sqrt(q)) * np.cos(np.linspace(0, 3, 40))[None, :]
    grid = type(e.vectorized).numpy_impl(q[:, None], k, q[None, :])
    full = fn(np.broadcast_to(q[:, None], k.shape).copy(), k, np.broadcast_to(q[None, :], k.shape).copy())
    np.testing.assert_array_equal(grid, full)


def _series_everywhere(cls: type[MehlerSeries]) -> list[np.ndarray]:
    """A tile (rows x columns, c up to +-1 and large variances: every group and the fallback), the
    per-point diagonal and a scalar-variance broadcast, evaluated through ``cls``."""
    q = np.geomspace(0.01, 40.0, 70)
    c = np.cos(np.linspace(0, np.pi, 50))
    c[::7] = [1.0, -1.0, 1 - 1e-12, 0.0, 0.9999, -0.99, 1e-3, 0.5][: len(c[::7])]
    k = np.outer(np.sqrt(q), np.sqrt(q[:50])) * c[None, :]
    return [cls.numpy_impl(q[:, None], k, q[None, :50]), cls.numpy_impl(q, q, q),
            cls.numpy_impl(2.0, k[:5, :5] / np.sqrt(q[:5, None] * q[None, :5]) * 2.0, 2.0)]


@pytest.mark.parametrize("name", ["tanh", "softplus", "swish"])
@pytest.mark.parametrize("derivative", [False, True])
def test_compiled_loops_give_the_numpy_bits(name, derivative, monkeypatch):
    """symbrg.core.mehler_jit (numba) against the NumPy evaluation: the same IEEE operations in the
    same order, so the same bits, on tiles, the diagonal and broadcasts, value and slope."""
    import symbrg.core.special as special
    if special._mehler_jit() is None:
        pytest.skip("numba is not installed")
    cls = type(expectation(name, derivative=derivative).vectorized)
    compiled = _series_everywhere(cls)
    monkeypatch.setattr(special, "_mehler_jit", lambda: None)
    for got, want in zip(compiled, _series_everywhere(cls)):
        np.testing.assert_array_equal(got, want)


def test_a_gram_matrix_is_the_same_without_numba(monkeypatch):
    """A whole tanh NNGP and NTK (tiles on threads, the per-point chain, c = 1 on the diagonal) by
    the compiled loops and by NumPy alone: the same bits."""
    import symbrg.core.special as special
    if special._mehler_jit() is None:
        pytest.skip("numba is not installed")
    x = np.random.default_rng(5).normal(size=(300, 4))
    arch = mlp("tanh", depth=3)
    compiled = arch.kernels(x, block=4096, threads=2)
    monkeypatch.setattr(special, "_mehler_jit", lambda: None)
    for got, want in zip(compiled, arch.kernels(x, block=4096, threads=2)):
        np.testing.assert_array_equal(got, want)


def test_blocks_of_a_large_array_change_nothing(monkeypatch):
    import symbrg.core.special as special
    e = expectation("tanh", derivative=True)
    cls = type(e.vectorized)
    q = np.geomspace(0.05, 5.0, 64)
    k = np.outer(np.sqrt(q), np.sqrt(q)) * np.cos(np.linspace(0, 3, 64))[None, :]
    whole = cls.numpy_impl(q[:, None], k, q[None, :])
    monkeypatch.setattr(special, "_MEHLER_BLOCK", 500)
    np.testing.assert_array_equal(cls.numpy_impl(q[:, None], k, q[None, :]), whole)


def test_the_slope_is_prices_derivative_of_the_value():
    e, d = expectation("tanh"), expectation("tanh", derivative=True)
    assert type(d.vectorized).mehler_base is type(e.vectorized)
    fn, dn = e.compile(), d.compile()
    q11, q22, h = np.array([0.4, 1.3, 3.0]), np.array([0.9, 1.1, 2.5]), 1e-5
    q12 = np.array([0.1, -0.6, 2.2])
    fd = (fn(q11, q12 + h, q22) - fn(q11, q12 - h, q22)) / (2 * h)
    np.testing.assert_allclose(dn(q11, q12, q22), fd, rtol=1e-7)
    assert sp.diff(e.vectorized, Q12) == d.vectorized            # the node differentiates by Price too


def test_the_diagonal_is_the_whole_series_where_no_order_certifies_it():
    """q11 = q12 = q22 at a variance no order <= 401 certifies (tanh' at q = 9): Parseval's total,
    E[phi(u)^2] and E[phi'(u)^2], equal to 30-digit quadrature."""
    for derivative in (False, True):
        e = expectation("tanh", derivative=derivative)
        q = np.array([9.0, 12.0])
        assert np.all(type(e.vectorized).entry_orders(q, q, q) == MEHLER_FALLBACK)
        mp = e.compile("mpmath", dps=30)
        want = [float(mp(*[mpmath.mpf(v)] * 3)) for v in q]
        np.testing.assert_allclose(e.compile()(q, q, q), want, rtol=1e-14)


def test_parity_halves_the_terms_and_opposite_parities_give_zero():
    x = sp.Symbol("x", real=True)
    assert type(expectation("tanh").vectorized).mehler_parity == 1
    assert type(expectation("tanh", derivative=True).vectorized).mehler_parity == 1   # the slope of that series
    assert type(expectation(sp.Lambda(x, 1 / sp.cosh(x))).vectorized).mehler_parity == 0
    assert type(expectation("softplus").vectorized).mehler_parity is None
    odd_even = expectation("tanh", sp.Lambda(x, 1 / sp.cosh(x)))
    assert type(odd_even.vectorized).mehler_zero
    assert not np.any(odd_even.compile()(*_entries(20, 3.0, 4)))


def test_a_mixed_pair_against_quadrature():
    e = expectation("softplus", "tanh")
    q11, q12, q22 = _entries(200, 4.0, 5)
    ref = expectation("softplus", "tanh", method="quadrature", degree=30).compile()(q11, q12, q22)
    assert np.max(np.abs(e.compile()(q11, q12, q22) - ref)) <= 1e-10


def test_zero_variance_reads_phi_of_zero():
    """u = 0 when q11 = 0: E[f(u) g(v)] = f(0) E[g(v)] (rho = 0, only the n = 0 term)."""
    e = expectation("softplus")
    got = e.compile()(np.array([0.0]), np.array([0.0]), np.array([1.7]))
    ref = expectation("softplus", method="quadrature", degree=30).compile()(1e-14, 0.0, 1.7)
    np.testing.assert_allclose(got, ref, rtol=1e-9)


def test_programs_stay_compact():
    """One node per layer and expectation, whatever the series order (about 400 terms at large
    variance): depth 10 has few numeric nodes."""
    arch = mlp("tanh", 10, 1.4, 0.1)
    nodes = [f for _, e in arch.ntk_program.assignments for f in e.atoms(sp.Function)
             if isinstance(f, MehlerSeries)]
    assert len(nodes) <= 4 * 10              # E'12, E12, E11 and E22 per layer
    assert arch.ntk_program.count_ops() < 40 * 10


# ------------------------------------------------------------------ kernels(get=...)
@pytest.mark.parametrize("act", ["tanh", "relu", "erf", "softplus", "gelu"])
def test_kernels_equal_nngp_and_ntk_bit_for_bit(act):
    arch = mlp(act, 3, 1.3, 0.2)
    y = X[:7] + 0.3
    nngp, ntk = arch.kernels(X)
    np.testing.assert_array_equal(nngp, arch.nngp(X))
    np.testing.assert_array_equal(ntk, arch.ntk(X))
    ntk2, nngp2 = arch.kernels(X, y, get=("ntk", "nngp"), block=50, threads=2)
    np.testing.assert_array_equal(nngp2, arch.nngp(X, y))
    np.testing.assert_array_equal(ntk2, arch.ntk(X, y))
    np.testing.assert_array_equal(arch.kernels(X, get="ntk"), arch.ntk(X))
    np.testing.assert_array_equal(arch.kernels(X, get=("nngp",))[0], arch.nngp(X))


def test_kernels_with_mpmath_and_zero_inputs():
    arch = mlp("tanh", 2, 1.3, 0.0)
    xz = np.vstack([np.zeros(4), X[:3]])              # a zero-variance input takes the exact path
    nngp, ntk = arch.kernels(xz)
    np.testing.assert_array_equal(nngp, arch.nngp(xz))
    np.testing.assert_array_equal(ntk, arch.ntk(xz))
    mp_nngp, mp_ntk = arch.kernels(X[:3], precision=30)
    np.testing.assert_allclose(mp_nngp.astype(float), arch.nngp(X[:3]), rtol=1e-9)
    np.testing.assert_allclose(mp_ntk.astype(float), arch.ntk(X[:3]), rtol=1e-9)
    assert mp_ntk[0, 1] == arch.ntk(X[:3], precision=30)[0, 1]


def test_kernels_progress_counts_one_pass():
    ticks = []
    mlp("tanh", 2).kernels(X, block=100, progress=lambda done, total: ticks.append((done, total)))
    assert ticks and ticks[-1][0] == ticks[-1][1] == len(ticks)


@pytest.mark.parametrize("get", ["kernel", (), ("nngp", "nngp"), ("ntk", "foo")])
def test_kernels_refuse_a_bad_get(get):
    with pytest.raises(errors.InvalidArgument) as info:
        mlp("relu", 1).kernels(X, get=get)
    assert info.value.argument == "get"


def test_a_mixed_stack_shares_the_series_only_where_it_is_the_same_activation():
    """tanh then ReLU then softplus: each layer's rule, one pass, the same bits as separately."""
    arch = serial(Dense(1.2, 0.1), Nonlinearity("tanh"), Dense(1.1, 0.2), Nonlinearity("relu"),
                  Dense(1.3, 0.1), Nonlinearity("softplus"), Dense(1.0, 0.1))
    nngp, ntk = arch.kernels(X)
    np.testing.assert_array_equal(nngp, arch.nngp(X))
    np.testing.assert_array_equal(ntk, arch.ntk(X))
    assert np.all(np.isfinite(ntk)) and np.linalg.eigvalsh(ntk)[0] > -1e-12 * np.abs(ntk).max()


def test_the_stash_is_never_taken_for_other_arguments():
    """Evaluating the slope leaves the value for the base node at the same arguments only."""
    e, d = expectation("tanh"), expectation("tanh", derivative=True)
    base, slope = type(e.vectorized), type(d.vectorized)
    q11, q12, q22 = _entries(50, 3.0, 6)
    want = base.numpy_impl(q11, q12, q22)
    slope.numpy_impl(q11, q12, q22)
    other = q12 * 0.5
    np.testing.assert_array_equal(base.numpy_impl(q11, other, q22), e.compile()(q11, other, q22))
    buf = q12.copy()
    slope.numpy_impl(q11, buf, q22)
    buf *= 0.5                                         # the same array object, other values
    np.testing.assert_array_equal(base.numpy_impl(q11, buf, q22), e.compile()(q11, other, q22))
    slope.numpy_impl(q11, q12, q22)
    np.testing.assert_array_equal(base.numpy_impl(q11, q12, q22), want)


def test_the_series_expression_is_still_written_out():
    """``expr`` is the series at the one order certified on the variance range (display, symbolic
    work); the kernel programs use the vectorized node."""
    e = expectation("tanh", tol=1e-8)
    assert e.vectorized is not None and not isinstance(e.expr, MehlerSeries)
    assert e.expr.free_symbols == {Q11, Q12, Q22} and r"\sum_{n=0}" in e.latex()


def test_error_bound_of_every_method():
    q11, q12, q22 = np.array([0.5, 1.2]), np.array([0.1, -0.3]), np.array([0.8, 2.0])
    assert not expectation("relu").error_bound(q11, q12, q22).any()            # a closed form: exact
    assert not expectation("monomial:3", "softplus").error_bound(q11, q12, q22).any()   # a terminating series
    with pytest.raises(errors.Unsupported) as info:
        expectation("tanh", method="quadrature").error_bound(q11, q12, q22)
    assert info.value.argument == "method"
