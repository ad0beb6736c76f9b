"""Trust in the kernel engine (issue 12): symbols matched by name, no ignored keys, domains enforced
(sigma_w > 0 provably, real inputs, minimum precision), and work bounded up front."""
import subprocess
import sys
import time

import numpy as np
import pytest
import sympy as sp

from symbrg.cli import main
from symbrg.core import checks, errors, limits
from symbrg.core.codegen import Program
from symbrg.kernels.architecture import Dense, Nonlinearity, mlp, serial

X = np.random.default_rng(12).normal(size=(5, 3))
S = sp.Symbol("s", positive=True)


def _arch():
    return mlp("relu", 2, 1.4, 0.1)


def _value(prog: Program) -> float:
    """The program's first output at s_11=1, s_22=0.8, s_12=0.5, sigma_b=0.1, sigma_w=1.4."""
    return float(prog.compile()(1.0, 0.8, 0.5, 0.1, 1.4)[0] if len(prog.outputs) > 1 else
                 prog.compile()(1.0, 0.8, 0.5, 0.1, 1.4))


# ----------------------------------------------------------------- 1. Program.diff / subs by name
@pytest.mark.parametrize("wrt", [sp.Symbol("sigma_w"), sp.Symbol("sigma_w", positive=True), "sigma_w",
                                 " sigma_w"])
def test_diff_by_a_user_symbol_or_name_equals_the_programs_own(wrt):
    prog = _arch().ntk_program
    own = next(s for s in prog.inputs if s.name == "sigma_w")
    expected = _value(prog.diff(own))
    assert expected != 0
    assert _value(prog.diff(wrt)) == expected


@pytest.mark.parametrize("wrt", ["zzz", sp.Symbol("zzz"), sp.Symbol("K^{(0)}_{12}")])
def test_diff_by_an_unknown_symbol_is_refused_listing_the_inputs(wrt):
    with pytest.raises(errors.UnknownName) as info:
        _arch().nngp_program.diff(wrt)
    assert info.value.argument == "wrt"
    assert "sigma_b, sigma_w" in str(info.value)


def test_subs_by_name_or_user_symbol_and_refuses_unknown_keys_and_text():
    prog = _arch().nngp_program
    full = float(prog.compile()(1.0, 0.8, 0.5, 0.1, 1.4))
    for key in ("sigma_w", sp.Symbol("sigma_w"), sp.Symbol("sigma_w", real=True)):
        sub = prog.subs({key: 1.4, "sigma_b": 0.1})
        assert [s.name for s in sub.inputs] == ["s_11", "s_22", "s_12"]
        assert float(sub.compile()(1.0, 0.8, 0.5)) == pytest.approx(full, rel=1e-15)
    with pytest.raises(errors.UnknownName) as info:
        prog.subs({"zzz": 1.0})
    assert info.value.argument == "values"
    with pytest.raises(errors.InvalidArgument) as info:
        prog.subs({"sigma_w": "__import__('os')"})
    assert info.value.argument == "values"


# ---------------------------------------------------------------------- 2. nngp(params=...) keys
def test_params_match_by_name_and_refuse_unknown_keys():
    arch, other = _arch(), mlp("relu", 2, 2.0, 0.1)
    for key in ("sigma_w", sp.Symbol("sigma_w"), sp.Symbol("sigma_w", positive=True)):
        np.testing.assert_array_equal(arch.nngp(X, params={key: 2.0}), other.nngp(X))
        np.testing.assert_array_equal(arch.ntk(X, params={key: 2.0}), other.ntk(X))
    for bad in ({"zzz": 1.0}, {"sigma_w": 2.0, "sigma": 1.0}):
        with pytest.raises(errors.UnknownName) as info:
            arch.nngp(X, params=bad)
        assert info.value.argument == "params" and "sigma_b, sigma_w" in str(info.value)
    with pytest.raises(errors.InvalidArgument):
        arch.nngp(X, params=[("sigma_w", 2.0)])


@pytest.mark.parametrize("params,arg", [({"sigma_w": -1.0}, "params[sigma_w]"),
                                        ({"sigma_w": 0.0}, "params[sigma_w]"),
                                        ({"sigma_b": -0.1}, "params[sigma_b]"),
                                        ({"sigma_w": float("nan")}, "params[sigma_w]"),
                                        ({"sigma_w": 1 + 1j}, "params[sigma_w]")])
def test_params_values_keep_their_domain(params, arg):
    with pytest.raises(errors.InvalidArgument) as info:
        _arch().nngp(X, params=params)
    assert info.value.argument == arg
    assert np.isfinite(_arch().nngp(X, params={"sigma_b": 0.0})).all()     # the edge itself is fine


def test_params_give_user_symbols_their_values_within_the_domain():
    arch = mlp("relu", 2, 2 * S, 0.1)
    np.testing.assert_allclose(arch.nngp(X, params={"s": 0.7}), _arch().nngp(X), rtol=1e-15)
    with pytest.raises(errors.InvalidArgument) as info:
        arch.nngp(X)                                                      # no value for s
    assert info.value.argument == "params" and "s" in str(info.value)
    with pytest.raises(errors.NotPositive) as info:
        mlp("relu", 2, sp.Symbol("t", real=True), 0.1).nngp(X, params={"t": -0.7})
    assert info.value.argument == "params" and "sigma_w" in str(info.value)


# ------------------------------------------------------------------ 3. sigma_w, sigma_b domains
@pytest.mark.parametrize("sw,sb,arg", [(-S, 0.1, "sigma_w"), (-2 * S, 0.1, "sigma_w"), (0.0, 0.1, "sigma_w"),
                                       (sp.Integer(-1), 0.1, "sigma_w"), (sp.I * S, 0.1, "sigma_w"),
                                       (1.0, -S, "sigma_b"), (1.0, -0.5, "sigma_b"),
                                       (float("nan"), 0.1, "sigma_w"),
                                       (True, 0.1, "sigma_w"), (1.0, float("inf"), "sigma_b")])
def test_mlp_refuses_sigmas_outside_their_domain(sw, sb, arg):
    with pytest.raises(errors.InvalidArgument) as info:
        mlp("relu", 2, sw, sb)
    assert info.value.argument == arg


@pytest.mark.parametrize("sw,sb", [(S, 0.1), (sp.Symbol("t"), 0.1), (sp.Symbol("t", nonnegative=True), 0),
                                   (1.0, S), (1.0, sp.Symbol("u", nonpositive=True)),
                                   (sp.sqrt(2), sp.Integer(0))])
def test_mlp_accepts_sigmas_that_may_be_in_their_domain(sw, sb):
    assert mlp("relu", 2, sw, sb).nngp_program is not None


def test_sympy_zero_bias_is_no_bias_in_the_standard_ntk():
    """Dense stores the checked float: sigma_b = Integer(0) no longer adds the bias' 1 to the NTK."""
    x = X[:3]
    np.testing.assert_array_equal(mlp("relu", 2, 1.3, sp.Integer(0), "standard").ntk(x),
                                  mlp("relu", 2, 1.3, 0.0, "standard").ntk(x))


def test_cli_refuses_negative_or_nan_sigma(tmp_path, capsys):
    np.save(tmp_path / "X.npy", X)
    for opt, value in (("--sigma-w", "-1"), ("--sigma-w", "0"), ("--sigma-w", "nan"), ("--sigma-b", "-0.1")):
        argv = ["kernel", opt, value, "--x", str(tmp_path / "X.npy"), "--out", str(tmp_path / "K.npy")]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and opt[2:].replace("-", "_") in err
    assert not (tmp_path / "K.npy").exists()


# --------------------------------------------------------------------------- 4. real arrays only
@pytest.mark.parametrize("bad,what", [(X + 1e-3j, "complex"), (X.astype(complex), "complex"),
                                      (X.astype(str), "text"),
                                      (np.array([[1.0, sp.Symbol("y")]]), "objects")])
def test_gram_refuses_complex_text_and_object_inputs(bad, what):
    for x1, x2, arg in ((bad, None, "x1"), (X[:, :bad.shape[1]], bad, "x2")):
        with pytest.raises(errors.InvalidArgument) as info:
            _arch().nngp(x1, x2)
        assert info.value.argument == arg and what in str(info.value)


def test_finite_array_takes_real_numbers_of_any_real_kind_and_complex_only_when_asked():
    np.testing.assert_array_equal(checks.finite_array("x", [[1, 2]]), [[1.0, 2.0]])
    np.testing.assert_array_equal(checks.finite_array("x", [True, False]), [1.0, 0.0])
    np.testing.assert_array_equal(checks.finite_array("x", sp.Matrix([[1, sp.Rational(1, 2)]])), [[1.0, 0.5]])
    np.testing.assert_array_equal(checks.finite_array("x", [1 + 2j], dtype=complex), [1 + 2j])
    for bad in ([1 + 2j], ["1.5"], [sp.I], [b"1"]):
        with pytest.raises(errors.InvalidArgument):
            checks.finite_array("x", bad)


def test_cli_refuses_a_complex_input_file(tmp_path, capsys):
    np.save(tmp_path / "X.npy", X + 1j)
    assert main(["kernel", "--x", str(tmp_path / "X.npy"), "--out", str(tmp_path / "K.npy")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "x: " in err and "complex" in err
    assert not (tmp_path / "K.npy").exists()


# -------------------------------------------------------------------- 6. bounded work, up front
def test_depth_is_bounded_before_any_work():
    t = time.perf_counter()
    with pytest.raises(errors.TooExpensive) as info:
        mlp("relu", 10**8)
    assert time.perf_counter() - t < 1.0
    assert info.value.argument == "depth" and "--limit depth=N" in str(info.value)
    with limits.lifted(depth=3):
        assert mlp("relu", 3).depth == 3
        with pytest.raises(errors.TooExpensive) as info:
            serial(*[Dense(), Nonlinearity()] * 4, Dense())
        assert info.value.argument == "layers"


def test_precision_is_bounded_above_and_below():
    arch = _arch()
    for digits in (10**5, 10**9):
        with pytest.raises(errors.TooExpensive) as info:
            arch.nngp(X[:2], precision=digits)
        assert info.value.argument == "precision"
    with pytest.raises(errors.OutOfRange) as info:
        arch.nngp(X[:2], precision=14)
    assert info.value.argument == "precision"
    assert arch.nngp(X[:2], precision=15).shape == (2, 2)
    with limits.lifted(precision=20):
        with pytest.raises(errors.TooExpensive):
            arch.nngp(X[:2], precision=21)
        assert arch.nngp(X[:2], precision=20).shape == (2, 2)
    for bad in (5, 10**6):
        with pytest.raises(errors.InvalidArgument) as info:
            arch.fixed_point(dps=bad)
        assert info.value.argument == "dps"


def test_gram_work_and_memory_are_bounded_before_allocation():
    arch = _arch()
    with limits.lifted(gram_work=5 * 6 // 2 * 2):                   # 5 points: 15 entries x 2 layers
        assert arch.nngp(X).shape == (5, 5)
        with pytest.raises(errors.TooExpensive) as info:
            arch.nngp(X, X)                                           # 25 entries x 2 layers
        assert info.value.argument == "x1" and "gram_work" in str(info.value)
    with limits.lifted(mp_work=2 * 2 * 2):
        assert arch.nngp(X[:2], precision=30).shape == (2, 2)
        with pytest.raises(errors.TooExpensive):
            arch.nngp(X[:3], precision=30)
    with limits.lifted(gram_bytes=8 * 25):
        assert arch.nngp(X).shape == (5, 5)
        with pytest.raises(errors.TooExpensive) as info:
            arch.nngp(X, np.vstack([X, X]))
        assert "gram_bytes" in str(info.value)
        out = np.empty((5, 10))                                        # the caller's memory: no bound
        assert arch.nngp(X, np.vstack([X, X]), out=out) is out
    with pytest.raises(errors.TooExpensive):                           # 10^5 rows, default limits
        arch.nngp(np.zeros((10**5, 1)))


@pytest.mark.parametrize("threads", [0, -1, 1.5])
def test_threads_must_be_a_positive_integer(threads):
    with pytest.raises(errors.InvalidArgument) as info:
        _arch().nngp(X, threads=threads)
    assert info.value.argument == "threads"


def test_cli_checks_output_size_and_free_disk_before_creating_the_file(tmp_path, capsys, monkeypatch):
    import shutil

    from symbrg.cli import kernel as cli_kernel
    np.save(tmp_path / "X.npy", X)
    args = ["kernel", "--x", str(tmp_path / "X.npy"), "--out", str(tmp_path / "sub" / "K.npy")]
    assert main(["--limit", "gram_bytes=300"] + args) == 2           # 25 * 8 + 128 = 328 bytes
    assert "out: " in capsys.readouterr().err
    real = shutil.disk_usage
    monkeypatch.setattr(cli_kernel.shutil, "disk_usage", lambda p: real(p)._replace(free=300))
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("symbrg: error: out: ") and "free" in err
    assert not (tmp_path / "sub").exists()
    monkeypatch.setattr(cli_kernel.shutil, "disk_usage", lambda p: real(p)._replace(free=328))
    assert main(args) == 0
    assert np.load(tmp_path / "sub" / "K.npy").shape == (5, 5)


def test_cli_checks_memory_of_a_high_precision_result(tmp_path, capsys, monkeypatch):
    from symbrg.cli import kernel as cli_kernel
    np.save(tmp_path / "X.npy", X[:2])
    args = ["kernel", "--x", str(tmp_path / "X.npy"), "--out", str(tmp_path / "K.npy"), "--precision", "20"]
    monkeypatch.setattr(cli_kernel, "_available_memory", lambda: 1000)
    assert main(args) == 2
    assert "x: " in capsys.readouterr().err and not (tmp_path / "K.npy").exists()
    monkeypatch.setattr(cli_kernel, "_available_memory", lambda: 10**9)
    assert main(args) == 0


@pytest.mark.parametrize("argv,arg", [(["kernel", "--depth", "100000000"], "depth"),
                                      (["kernel", "--precision", "1000000"], "precision"),
                                      (["derive", "nngp", "--depth", "100000"], "depth")])
def test_cli_refuses_runaway_requests_within_seconds_with_one_line(tmp_path, argv, arg):
    np.save(tmp_path / "X.npy", X)
    if argv[0] == "kernel":
        argv = argv + ["--x", str(tmp_path / "X.npy"), "--out", str(tmp_path / "K.npy")]
    t = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "symbrg", *argv], capture_output=True, text=True, timeout=60)
    assert time.perf_counter() - t < 20
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.count("\n") == 1 and run.stderr.startswith(f"symbrg: error: {arg}: ")


# ------------------------------------------------------------------- 7. other silent acceptances
@pytest.mark.parametrize("call,arg", [
    (lambda: mlp("relu", 2, width=0), "width"),
    (lambda: mlp("relu", 2, width=-3), "width"),
    (lambda: mlp("relu", 2, parameterization="NTK"), "parameterization"),
    (lambda: serial("relu", Dense()), "layers"),
    (lambda: serial(Dense(), name=3), "name"),
    (lambda: _arch().expand("foo"), "kind"),
    (lambda: _arch().fixed_point(q0=-1.0), "q0"),
    (lambda: Nonlinearity("relu", tol=float("nan")), "tol"),
])
def test_other_bad_arguments_are_refused(call, arg):
    with pytest.raises(errors.InvalidArgument) as info:
        call()
    assert info.value.argument == arg


# ------------------------------------------------------------- 5. zero-variance (degenerate) inputs
XZ = np.vstack([np.zeros(3), X[:2], np.zeros(3)])       # rows 0 and 3: x = 0, so K^0(x, x) = 0 without bias


@pytest.mark.parametrize("act", ["relu", "erf", "cos", "gelu", "tanh", "softplus"])
@pytest.mark.parametrize("kind", ["nngp", "ntk"])
def test_zero_inputs_without_bias_give_the_limit_kernel(act, kind):
    """x = 0 with sigma_b = 0 is a point mass u = 0: finite, symmetric, equal to the limit x -> 0 and
    to the 50-digit path; exactly 0 when phi(0) = 0 (relu, erf, gelu, tanh)."""
    arch = mlp(act, 2, 1.3, 0.0)
    gram = getattr(arch, kind)
    k = gram(XZ)
    assert np.isfinite(k).all()
    np.testing.assert_array_equal(k, k.T)
    np.testing.assert_array_equal(k[0], k[3])
    eps = 1e-7 * np.array([0.6, -0.8, 0.0])              # the limit along a direction
    near = gram(np.vstack([eps, X[:2], eps]))
    np.testing.assert_allclose(k, near, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(k, gram(XZ, precision=50).astype(float), rtol=1e-9, atol=1e-300)
    np.testing.assert_array_equal(k[1:3, 1:3], gram(X[:2]))           # other entries untouched
    cross = gram(XZ, X[:2])
    np.testing.assert_allclose(cross, k[:, 1:3], rtol=1e-12, atol=1e-300)
    if act in ("relu", "erf", "gelu", "tanh"):
        assert not k[0].any() and not k[:, 3].any()
    else:
        assert (k[0] != 0).all()


def test_a_bias_after_the_first_layer_revives_a_zero_input():
    arch = serial(Dense(1.2, 0.0), Nonlinearity("relu"), Dense(1.1, 0.3), Nonlinearity("relu"),
                  Dense(1.0, 0.1))
    eps = 1e-9 * np.array([1.0, 0.0, 0.0])
    for kind in ("nngp", "ntk"):
        k = getattr(arch, kind)(XZ)
        assert (k[0] > 0).all()
        np.testing.assert_allclose(k, getattr(arch, kind)(np.vstack([eps, X[:2], eps])), rtol=1e-7)
        np.testing.assert_allclose(k, getattr(arch, kind)(XZ, precision=40).astype(float), rtol=1e-12)


def test_zero_inputs_fill_a_memmap_and_a_first_layer_bias_needs_no_special_path(tmp_path):
    arch = mlp("relu", 3, 1.4, 0.0)
    mm = np.lib.format.open_memmap(tmp_path / "K.npy", mode="w+", dtype=np.float64, shape=(4, 4))
    assert arch.ntk(XZ, out=mm) is mm
    np.testing.assert_array_equal(mm, arch.ntk(XZ))
    biased = mlp("relu", 3, 1.4, 0.1)                      # K^0(0, 0) = sigma_b^2 > 0: ordinary path
    assert (biased.nngp(XZ)[0] > 0).all()
    assert not mlp("relu", 2, 1.3, 0.0).nngp(np.zeros((3, 2))).any()   # the case: all zero


def test_activations_refuse_complex_and_text_arrays():
    from symbrg.gaussian.activations import activation
    phi = activation("tanh")
    np.testing.assert_array_equal(phi(np.array([1, 2])), np.tanh([1.0, 2.0]))     # integers are real
    for bad in (np.array([1 + 1j]), np.array(["1"])):
        for f in (phi, phi.derivative):
            with pytest.raises(errors.InvalidArgument) as info:
                f(bad)
            assert info.value.argument == "x"


def test_compiled_programs_refuse_a_precision_below_one_digit():
    prog = _arch().nngp_program
    for bad in (0, -5, 2.5):
        with pytest.raises(errors.InvalidArgument) as info:
            prog.compile("mpmath", dps=bad)
        assert info.value.argument == "dps"
    assert prog.compile("mpmath", dps=1) is not None
