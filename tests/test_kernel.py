"""Kernel programs: NNGP/NTK Gram matrices against Monte Carlo, mpmath, quadrature and theory."""
import math

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from symbrg.core import errors
from symbrg.ensembles.networks import network
from symbrg.kernels.architecture import S12, Dense, Nonlinearity, mlp, serial

RNG = np.random.default_rng(1234)
X = RNG.normal(size=(6, 3))


def _mc_check(emp, err, exact):
    """|empirical - exact| <= 5 standard errors (+ a float floor), entrywise."""
    bad = np.abs(emp - exact) > 5 * err + 1e-12
    assert not bad.any(), f"worst z-score {np.max(np.abs(emp - exact) / (err + 1e-300)):.2f}"


@pytest.mark.parametrize("act", ["relu", "erf", "cos", "abs", "gelu", "sin:1,2,0.3", "tanh", "cosnet"])
def test_gram_is_symmetric_psd(act):
    arch = mlp(act, 2, sigma_w=1.3, sigma_b=0.2)
    k = arch.nngp(X)
    assert k.shape == (6, 6)
    exact = all(e.method == "exact" for _, _, e in arch.rules)
    rtol = 1e-13 if exact else 1e-9          # a series is symmetric to within its error bound
    np.testing.assert_allclose(k, k.T, rtol=rtol, atol=1e-15)
    lam = np.linalg.eigvalsh(k)
    assert lam[0] >= -1e-12 * lam[-1]
    t = arch.ntk(X)
    np.testing.assert_allclose(t, t.T, rtol=rtol, atol=1e-15)
    assert np.linalg.eigvalsh(t)[0] >= -1e-12 * np.abs(t).max()


def test_cross_gram_matches_blocks():
    arch = mlp("relu", 3, 1.4, 0.1)
    full = arch.nngp(np.vstack([X, X[:2] + 0.5]))
    cross = arch.nngp(X, X[:2] + 0.5, block=5, threads=2)
    np.testing.assert_allclose(cross, full[:6, 6:], rtol=1e-14)


def _unstaged_gram(arch, kind: str, x: np.ndarray) -> np.ndarray:
    """The reference: the whole (unpartitioned) program, allocating NumPy, on the full broadcast grid."""
    d = x.shape[1]
    s = np.einsum("ij,ij->i", x, x) / d
    s12 = x @ x.T / d
    np.fill_diagonal(s12, s)
    prog = getattr(arch, f"{kind}_program")
    out = prog.compile()(s[:, None], s[None, :], s12, *arch._param_args(prog, None, d))
    return out[-1] if isinstance(out, tuple) else out


@pytest.mark.parametrize("act", ["relu", "erf", "rectified:2", "tanh", "cos:1,1.5,0.4"])
def test_tiled_gram_is_exact_symmetric_and_independent_of_tiles_and_threads(act):
    """Tiles (any size, ragged edges), threads, the upper-triangle mirror and the hoisting of per-point
    parts (tanh: the Mehler series' Hermite coefficients) change nothing but the order of a few
    roundings: all agree with the unstaged program on the full broadcast grid."""
    arch = mlp(act, 3, 1.3, 0.2)
    x = np.random.default_rng(5).normal(size=(37, 3))
    for kind in ("nngp", "ntk"):
        want = _unstaged_gram(arch, kind, x)
        for block, threads in ((1 << 16, None), (7, 2), (100, 1), (1000, 3)):
            k = getattr(arch, kind)(x, block=block, threads=threads)
            assert np.array_equal(k, k.T)
            floor = 1e-15 * np.abs(want).max()        # erf kernels cross zero
            np.testing.assert_allclose(k, want, rtol=1e-14, atol=floor)
            cross = getattr(arch, kind)(x[:20], x[20:], block=block, threads=threads)
            np.testing.assert_allclose(cross, want[:20, 20:], rtol=1e-14, atol=floor)


_EVERY = ["relu", "leaky_relu", "abrelu:-0.5,2", "abs", "rectified:3", "step", "sign", "identity",
          "affine:2,1", "monomial:3", "polynomial:1,0,2", "erf", "gelu", "exp:0.3", "gaussian", "sin", "cos",
          "cosnet", "tanh", "softplus", "sigmoid", "swish"]


def test_every_registered_activation_takes_the_tiled_path():
    """Each name of the registry (parameters where required): the tiled, staged, in-place Gram
    matrix equals the unstaged program on the full grid, NNGP and NTK."""
    from symbrg.gaussian.activations import REGISTRY
    assert {a.split(":")[0] for a in _EVERY} == set(REGISTRY)
    x = np.random.default_rng(8).normal(size=(11, 3))
    for act in _EVERY:
        arch = mlp(act, 2, 1.1, 0.2, tol=1e-4)                   # short series for the generic ones
        for kind in ("nngp", "ntk"):
            want = _unstaged_gram(arch, kind, x)
            np.testing.assert_allclose(getattr(arch, kind)(x, block=20), want, rtol=1e-13,
                                       atol=1e-15 * np.abs(want).max(), err_msg=f"{act} {kind}")


@pytest.mark.parametrize("act,sw,sb", [("relu", 1.4, 0.1), ("erf", 1.2, 0.3), ("cosnet", 1.0, 0.2)])
def test_nngp_against_finite_width_ensemble(act, sw, sb):
    depth, width, members = 2, 256, 3000
    net = network((3,) + (width,) * depth + (1,), act, sigma_w=sw, sigma_b=sb)
    ens = net.init(members, seed=7)
    f = net.forward(ens, X[:4])[..., 0]                        # (M, P)
    prod = f[:, :, None] * f[:, None, :]
    emp, err = prod.mean(0), prod.std(0, ddof=1) / math.sqrt(members)
    _mc_check(emp, err, mlp(act, depth, sw, sb).nngp(X[:4]))


@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_ntk_against_empirical_ntk(parameterization):
    depth, width, members = 2, 384, 40
    x = X[:3]
    sw, sb = 1.3, 0.2
    net = network((3,) + (width,) * depth + (1,), "relu", sigma_w=sw, sigma_b=sb,
                  parameterization=parameterization)
    ens = net.init(members, seed=3)
    jac = net.jacobian(ens, x)[:, :, 0, :]                      # (M, P, n_params)
    ntk = np.einsum("mip,mjp->mij", jac, jac)
    emp, err = ntk.mean(0), ntk.std(0, ddof=1) / math.sqrt(members)
    arch = mlp("relu", depth, sw, sb, parameterization, width=width)
    _mc_check(emp, err, arch.ntk(x))


@pytest.mark.parametrize("act", ["relu", "erf", "rectified:2", "cos:1,1.5,0.4", "gelu", "cosnet"])
def test_float64_matches_mpmath(act):
    arch = mlp(act, 3, 1.2, 0.3)
    x = np.vstack([X[:3], X[0] + 1e-7])                          # a pair with c -> 1
    k64 = arch.nngp(x)
    kmp = arch.nngp(x, precision=50).astype(float)
    np.testing.assert_allclose(k64, kmp, rtol=1e-12)
    # The NTK's step-function factor E[φ'φ'] has dθ/dc -> ∞ at c = 1: for nearly coincident distinct
    # inputs float64 rounding of x·x' limits its relative accuracy (documented); test away from that.
    np.testing.assert_allclose(arch.ntk(x[:3]), arch.ntk(x[:3], precision=30).astype(float), rtol=1e-12)


@settings(max_examples=30, deadline=None)
@given(st.floats(0.3, 3.0), st.floats(0.0, 1.0), st.floats(1e-3, math.pi - 0.05), st.integers(1, 6))
def test_relu_kernel_float64_vs_mpmath_property(sw, sb, angle, depth):
    """Float64 Gram entries agree with 40-digit mpmath to 1e-12 wherever the inputs' own float64
    rounding allows it: near c = -1 the ReLU kernel ~ psi^3 has condition number ~ 3/(1 + c), so
    the input angle stays 0.05 away from pi; nearly coincident inputs (c -> +1) are included."""
    x = np.array([[1.0, 0.0], [math.cos(angle), math.sin(angle)], [1.0, 1e-9]])
    arch = mlp("relu", depth, sw, sb)
    np.testing.assert_allclose(arch.nngp(x), arch.nngp(x, precision=40).astype(float), rtol=1e-12, atol=0)


def test_closed_form_matches_quadrature():
    exact = mlp("gelu", 2, 1.1, 0.2).nngp(X)
    quad = mlp("gelu", 2, 1.1, 0.2, method="quadrature").nngp(X)
    np.testing.assert_allclose(exact, quad, rtol=1e-8)


def test_relu_depth_one_closed_form():
    """Depth 1 expands to the arc-cosine kernel of Cho & Saul (sympy, exactly)."""
    arch = mlp("relu", 1, sp.Symbol("w", positive=True), 0)
    out = arch.expand()
    x = np.array([[1.0, 2.0], [0.5, -1.0]])
    w = 1.7
    q11, q22, q12 = (w**2 * v for v in (x[0] @ x[0] / 2, x[1] @ x[1] / 2, x[0] @ x[1] / 2))
    th = math.acos(q12 / math.sqrt(q11 * q22))
    ref = w**2 * math.sqrt(q11 * q22) / (2 * math.pi) * (math.sin(th) + (math.pi - th) * math.cos(th))
    got = arch.nngp(x, params={"w": w})[0, 1]
    assert got == pytest.approx(ref, rel=1e-13)
    known = {k: v for k, v in arch.values.items() if v is not None}
    val = out.subs(known).subs({sp.Symbol("w", positive=True): w}).subs(
        {sp.Symbol("s_11", positive=True): x[0] @ x[0] / 2, sp.Symbol("s_22", positive=True): x[1] @ x[1] / 2,
         S12: x[0] @ x[1] / 2})
    assert float(val.evalf(30)) == pytest.approx(ref, rel=1e-13)


def test_program_grows_linearly_and_differentiates():
    sizes = [len(mlp("relu", L, 1.3, 0.1).ntk_program) for L in (5, 10, 20)]
    assert sizes[2] - sizes[1] == 2 * (sizes[1] - sizes[0])
    arch = mlp("erf", 3, 1.3, 0.1)
    sw = next(s for s in arch.values if s.name == "sigma_w")
    d = arch.nngp_program.diff(sw).compile()
    s11, s22, s12 = 1.2, 0.7, 0.3
    f = arch.nngp_program.compile()
    names = [s.name for s in arch.nngp_program.inputs[3:]]

    def at(sw_value):
        args = {"sigma_w": sw_value, "sigma_b": 0.1}
        return [args[n] for n in names]
    h = 1e-6
    fd = (f(s11, s22, s12, *at(1.3 + h)) - f(s11, s22, s12, *at(1.3 - h))) / (2 * h)
    assert d(s11, s22, s12, *at(1.3)) == pytest.approx(fd, rel=1e-7)


def test_deep_network_stays_finite():
    x = np.array([[1.0, 0.0], [1.0, 1e-9], [0.0, 1.0]])
    k = mlp("relu", 1000, math.sqrt(2), 0.05).nngp(x)
    assert np.all(np.isfinite(k))
    assert k[0, 1] <= math.sqrt(k[0, 0] * k[1, 1]) * (1 + 1e-12)


def test_fixed_point_and_chi1():
    arch = mlp("relu", 1, 1.2, 0.3)
    qstar = 0.3**2 / (1 - 1.2**2 / 2)
    assert arch.fixed_point() == pytest.approx(qstar, rel=1e-12)
    assert arch.chi1() == pytest.approx(1.2**2 / 2, rel=1e-12)
    maps = arch.maps()
    c = sp.Symbol("c", real=True)
    slope = sp.diff(maps["correlation"], c)
    q = sp.Symbol("q", positive=True)
    vals = {s: v for s, v in arch.values.items()}
    at1 = sp.limit(slope.subs(vals).subs(q, qstar), c, 1, "-")
    assert float(at1) == pytest.approx(arch.chi1(), rel=1e-9)
    with pytest.raises(errors.ConvergenceError):
        mlp("relu", 1, 1.6, 0.1).fixed_point()


def test_serial_composes_layers():
    arch = serial(Dense(1.5, 0.1), Nonlinearity("erf"), Dense(1.1, 0.0), Nonlinearity("relu"), Dense(1.0, 0.2))
    k = arch.nngp(X)
    assert np.all(np.isfinite(k))
    assert "sigma_w2" in {s.name for s in arch.values}


def test_derivation_and_latex():
    d = mlp("relu", 3, 1.4, 0.1).derivation("nngp")
    tex = d.to_latex(standalone=False)
    assert "K^{(3)}_{12}" in tex
    assert any("closed form" in s.justification for s in d.steps)


@pytest.mark.parametrize("call,arg", [
    (lambda: mlp("relu", 2, 0.0, 0.1), "sigma_w"),
    (lambda: mlp("relu", 2, -1.0, 0.1), "sigma_w"),
    (lambda: mlp("relu", 2, 1.0, -0.1), "sigma_b"),
    (lambda: mlp("relu", -1, 1.0, 0.1), "depth"),
    (lambda: mlp("relu", 2.5, 1.0, 0.1), "depth"),
    (lambda: mlp("nosuch", 2, 1.0, 0.1), "activation"),
    (lambda: mlp("abrelu", 2, 1.0, 0.1), "activation"),           # parameters required
    (lambda: mlp("affine", 2, 1.0, 0.1), "activation"),
    (lambda: mlp("relu", 2, 1.0, 0.1, "weird"), "parameterization"),
    (lambda: mlp("relu", 2).nngp(np.array([[np.nan, 1.0]])), "x1"),
    (lambda: mlp("relu", 2).nngp(X, X[:, :2]), "x2"),
    (lambda: mlp("relu", 2).nngp(X, precision=10), "precision"),
])
def test_bad_input_names_argument(call, arg):
    with pytest.raises(errors.SymbrgError) as info:
        call()
    assert info.value.argument == arg


@pytest.mark.parametrize("act,a,b", [("identity", 1, 0), ("affine:2,1", 2, 1)])
def test_affine_network_kernels_in_closed_form(act, a, b):
    """phi(x) = a x + b: K^{l+1} = sb^2 + sw^2 (a^2 K^l + b^2) needs no diagonal at all (the staged
    program's per-point stages are empty) in float64 and in mpmath."""
    sw, sb, depth = 1.3, 0.4, 3
    k = sb**2 + sw**2 * (X @ X.T) / X.shape[1]
    for _ in range(depth):
        k = sb**2 + sw**2 * (a**2 * k + b**2)
    arch = mlp(act, depth, sw, sb)
    np.testing.assert_allclose(arch.nngp(X), k, rtol=1e-14)
    np.testing.assert_allclose(arch.nngp(X[:3], precision=30).astype(float), k[:3, :3], rtol=1e-14)


def test_sigma_b_zero_is_valid():
    assert np.all(np.isfinite(mlp("relu", 2, 1.0, 0.0).nngp(X)))


def test_cli_kernel_writes_gram_and_refuses_overwrite(tmp_path, capsys):
    from symbrg.cli import main
    xfile, out = tmp_path / "X.npy", tmp_path / "K.npy"
    np.save(xfile, X)
    args = ["kernel", "--activation", "relu", "--depth", "3", "--sigma-w", "1.4", "--sigma-b", "0.1",
            "--x", str(xfile), "--out", str(out)]
    assert main(args) == 0
    np.testing.assert_allclose(np.load(out), mlp("relu", 3, 1.4, 0.1).nngp(X), rtol=1e-15)
    assert main(args) == 2                                   # exists, no --force
    assert "out" in capsys.readouterr().err
    assert main(args + ["--force", "--ntk"]) == 0
    np.testing.assert_allclose(np.load(out), mlp("relu", 3, 1.4, 0.1).ntk(X), rtol=1e-15)
    assert main(args[:-2] + ["--out", str(tmp_path / "P.npy"), "--precision", "30"]) == 0
    assert np.load(tmp_path / "P.npy").dtype.kind == "U"
    assert main(["kernel", "--sigma-w", "-1", "--x", str(xfile), "--out", str(tmp_path / "B.npy")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sigma_w" in err
    assert not (tmp_path / "B.npy").exists()
    np.save(tmp_path / "bad.npy", np.array([[1.0, np.nan, 0.0]]))      # fails while streaming
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["kernel", "--x", str(tmp_path / "bad.npy"), "--out", str(tmp_path / "C.npy")]) == 2
    assert "x:" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == before          # no half-written file


def test_out_fills_a_memmap_and_is_validated(tmp_path):
    arch = mlp("relu", 3, 1.4, 0.1)
    mm = np.lib.format.open_memmap(tmp_path / "K.npy", mode="w+", dtype=np.float64, shape=(6, 6))
    assert arch.nngp(X, out=mm, block=4) is mm
    mm.flush()
    np.testing.assert_array_equal(np.load(tmp_path / "K.npy"), arch.nngp(X, block=4))
    readonly = np.empty((6, 6))
    readonly.flags.writeable = False
    for bad, err in ((np.empty((6, 5)), errors.ShapeMismatch),
                     (np.empty((6, 6), np.float32), errors.InvalidArgument),
                     (readonly, errors.InvalidArgument), ([[0.0] * 6] * 6, errors.InvalidArgument)):
        with pytest.raises(err) as info:
            arch.ntk(X, out=bad)
        assert info.value.argument == "out"
    with pytest.raises(errors.InvalidArgument) as info:
        arch.nngp(X, precision=20, out=np.empty((6, 6)))
    assert info.value.argument == "out"


@pytest.mark.parametrize("fmt,needle", [("text", "K⁽³⁾₁₂"), ("latex", "\\begin{"),
                                        ("markdown", "$$"), ("python", "__all__ = ['nngp_relu_mlp_depth3']")])
def test_cli_derive_nngp_formats(capsys, fmt, needle):
    from symbrg.cli import main
    assert main(["derive", "nngp", "--activation", "relu", "--depth", "3", "--format", fmt]) == 0
    assert needle in capsys.readouterr().out
