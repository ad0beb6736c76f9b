"""Trust (issue 12) in the physics engines: symbols matched by name, domains and precision enforced,
work bounded up front.  Every guard has a refused bad input and an accepted good input next to it."""
from __future__ import annotations

import mpmath
import pytest
import sympy as sp

from symbrg.cli import main
from symbrg.core import limits
from symbrg.core.checks import resolve_symbols
from symbrg.core.errors import InvalidArgument, OutOfRange, TooExpensive, UnknownName
from symbrg.information.fisher import (
    check_kl_curvature,
    gaussian_family,
    gaussian_process,
    gaussian_regression,
    gp_fisher,
    jeffreys_prior,
)
from symbrg.rg import erg, lpa
from symbrg.rg.regulators import regulator

a, b, x = sp.symbols("a b x", real=True)


def _one_line_error(capsys, argv: list[str], argument: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"symbrg: error: {argument}:") and err.count("\n") == 1, err
    return err


# ------------------------------------------------------------------ symbols matched by name
def test_resolve_symbols_by_name_and_refusal():
    pool = {a, b, x}
    assert resolve_symbols("p", [sp.Symbol("a", positive=True), "b"], pool) == (a, b)
    with pytest.raises(UnknownName) as exc:
        resolve_symbols("p", "zzz", pool)
    assert exc.value.argument == "p" and "a, b, x" in str(exc.value)
    with pytest.raises(InvalidArgument):                       # two different symbols named a
        resolve_symbols("p", "a", {a, sp.Symbol("a", positive=True)})
    with pytest.raises(InvalidArgument):
        resolve_symbols("p", [a * b], pool)


def test_regression_user_symbol_with_other_assumptions():
    want = sp.Matrix([[sp.Rational(5, 3), 1], [1, 1]])
    for params in ([sp.Symbol("a", positive=True), b], ["a", "b"], [a, b]):
        assert gaussian_regression(a * x + b, params, x, data=[0, 1, 2]).matrix == want
    assert gaussian_regression(a * x + b, [a, b], "x", data=[0, 1, 2]).matrix == want
    with pytest.raises(UnknownName) as exc:
        gaussian_regression(a * x + b, [a, sp.Symbol("zzz")], x, data=[0, 1, 2])
    assert exc.value.argument == "parameters" and "a, b, x" in str(exc.value)
    with pytest.raises(UnknownName) as exc:
        gaussian_regression(a * x + b, [a, b], sp.Symbol("t"), data=[0, 1, 2])
    assert exc.value.argument == "inputs"
    with pytest.raises(InvalidArgument) as exc:                # text is never sympified
        gaussian_regression("a*x + b", [a, b], x, data=[0, 1, 2])
    assert exc.value.argument == "f"


def test_family_gp_and_dict_keys_by_name():
    s = sp.Symbol("s", positive=True)
    fam = gaussian_family([a], [[s]], [sp.Symbol("a"), sp.Symbol("s", real=True)], verify=False)
    assert fam.matrix == sp.diag(1 / s, 1 / (2 * s ** 2))
    out = check_kl_curvature(fam, {"a": 1, sp.Symbol("s"): 2}, [1, 1])
    assert abs(out["remainders"][-1]) < 1e-2
    with pytest.raises(UnknownName):
        check_kl_curvature(fam, {"a": 1, "q": 2}, [1, 1])
    assert fam.subs({"s": 2}).matrix == sp.diag(sp.Rational(1, 2), sp.Rational(1, 8))
    with pytest.raises(UnknownName) as exc:
        fam.subs({"sigma": 2})
    assert exc.value.argument == "values"
    prior = jeffreys_prior(fam, {"s": (1, 2)})
    assert prior.improper is True                              # flat in the location a
    # a GP: a hyperparameter that drops out on one point is the kernel's, its row is 0
    xp, ell = sp.Symbol("xp", real=True), sp.Symbol("ell", positive=True)
    k = s ** 2 * sp.exp(-(x - xp) ** 2 / (2 * ell ** 2))
    one = gaussian_process(k, [0], ["ell", "s"], noise_var=sp.Rational(1, 10), inputs=("x", "xp"), verify=False)
    assert one.matrix[0, 0] == 0 and one.matrix[1, 1] != 0
    with pytest.raises(UnknownName):
        gaussian_process(k, [0], ["l", "s"], inputs=(x, xp), verify=False)
    num = gp_fisher(k, [0.0, 1.0], {sp.Symbol("ell"): 1.0, "s": 1.0}, noise_var=0.1,
                    inputs=(sp.Symbol("x"), sp.Symbol("xp")))
    assert num.shape == (2, 2) and num[0, 0] > 0


def test_erg_symbols_by_name():
    phi = sp.Symbol("phi")                                     # no assumptions: not erg.PHI
    theory = erg.scalar_theory(3, sp.Symbol("m2") * phi ** 2 / 2 + phi ** 4)
    assert theory.mass2 == erg.M2
    assert erg.scalar_theory(3, inverse_propagator=sp.Symbol("p2") ** 2).inverse_propagator == erg.P2 ** 2
    assert lpa.polynomial_couplings(phi ** 2 / 2 + phi ** 4, 2) == {"lambda_1": 1, "lambda_2": 8}
    with pytest.raises(UnknownName) as exc:
        lpa.polynomial_couplings(sp.Symbol("chi") ** 2, 2)
    assert exc.value.argument == "field"
    lam = sp.Symbol("Lambda")
    C = sp.exp(-1 / lam ** 2)
    rhs = erg.polchinski_rhs(phi ** 4, [phi], [C], lam)
    assert sp.simplify(rhs - erg.polchinski_rhs(erg.PHI ** 4, [erg.PHI], [C.subs(lam, erg.LAMBDA)],
                                                erg.LAMBDA).subs({erg.PHI: phi, erg.LAMBDA: lam})) == 0
    assert rhs != 0
    with pytest.raises(UnknownName) as exc:
        erg.polchinski_rhs(phi ** 4, [sp.Symbol("psi")], [C], lam)
    assert exc.value.argument == "fields"


# ------------------------------------------------------------------ precision and poles
def test_minimum_precision_api_and_cli(capsys):
    tr = lpa.lpa_truncation("litim", 3, 3)
    with pytest.raises(OutOfRange) as exc:
        lpa.fixed_point(tr, dps=0)
    assert exc.value.argument == "dps"
    assert abs(lpa.fixed_point(tr, dps=15).nu - lpa.fixed_point(tr, dps=30).nu) < 1e-10
    with mpmath.workdps(5), pytest.raises(OutOfRange):
        regulator("litim").threshold_value(1, 3, 0.5)
    _one_line_error(capsys, ["erg", "lpa", "--dps", "0"], "dps")
    _one_line_error(capsys, ["erg", "threshold", "--dps", "14", "--w", "0.5"], "dps")
    assert main(["erg", "threshold", "--dps", "15", "--w", "0.5", "--n", "1"]) == 0
    assert capsys.readouterr().out.startswith("0.444444444")       # 1/(1 + w)^2


@pytest.mark.parametrize("name, pole", [("litim", -1.0), ("sharp", -1.0), ("exponential", -1.0),
                                        ("power:2", -2.0), ("power:1/2", 0.0)])
def test_threshold_pole(name, pole):
    R = regulator(name)
    assert R.pole == pytest.approx(pole)
    with mpmath.workdps(15):
        with pytest.raises(OutOfRange) as exc:
            R.threshold_value(1, 3, pole)
        assert exc.value.argument == "w"
        with pytest.raises(OutOfRange):
            R.threshold(1, 3, 0, sp.Float(pole - 1))
        assert mpmath.isfinite(R.threshold_value(1, 3, pole + 0.5))


def test_user_regulator_pole_is_the_minimum_of_y_plus_r():
    y = sp.Symbol("y", positive=True)
    R = regulator(r=(1 - y) ** 2 * sp.Heaviside(1 - y))
    assert R.pole == pytest.approx(-0.75, abs=1e-6)                  # min of y + (1 - y)^2


def test_threshold_cli_pole_and_domain(capsys):
    err = _one_line_error(capsys, ["erg", "threshold", "--w", "-2"], "w")
    assert "w > -1" in err
    _one_line_error(capsys, ["erg", "threshold", "--w", "nan"], "w")
    _one_line_error(capsys, ["erg", "threshold", "--eta", "inf", "--w", "0"], "eta")
    assert main(["erg", "threshold", "--w", "-0.5", "--n", "1"]) == 0   # 1/(1 + w)^2 = 4
    assert capsys.readouterr().out.startswith("4.0")


# ------------------------------------------------------------------ bounded work
@pytest.mark.parametrize("argv, argument, limit", [
    (["erg", "lpa", "--dps", "1000000"], "dps", "erg_dps"),
    (["erg", "lpa", "--order", "1000"], "order", "lpa_order"),
    (["erg", "lpa", "--order", "1000000"], "order", "lpa_order"),     # the estimate must not overflow
    (["erg", "threshold", "--n", "100000", "--w", "0"], "n", "threshold_n"),
    (["prove", "cosnet-erg", "--dim", "100000"], "dim", "cosnet_dim"),
    (["derive", "cosnet", "--dim", "100000"], "dim", "cosnet_dim"),
])
def test_work_refused_up_front(capsys, argv, argument, limit):
    err = _one_line_error(capsys, argv, argument)
    assert f"--limit {limit}=" in err and "estimated" in err


def test_limits_can_be_lifted_and_are_tight():
    with pytest.raises(TooExpensive):
        lpa.lpa_truncation("litim", 3, 17)
    assert lpa.lpa_truncation("litim", 3, 16).order == 16
    with pytest.raises(TooExpensive):
        regulator("litim").threshold(201)
    assert regulator("litim").threshold(200, 3, 0, 0) == 1          # 1/(1 + w)^(n+1) at w = 0
    with limits.lifted(threshold_n=300):
        regulator("litim").threshold(201)
    with pytest.raises(TooExpensive):
        lpa.fixed_point(lpa.lpa_truncation("litim", 3, 2), dps=1001)


def test_symbolic_gp_fisher_bounded_and_numeric_path_named():
    import symbrg
    sw, sb = sp.symbols("sigma_w sigma_b", positive=True)
    arch = symbrg.mlp("relu", 1, sw, sb)
    pts = [(1, 0), (sp.Rational(1, 2), 1), (-1, sp.Rational(1, 3)), (2, 1)]
    with pytest.raises(TooExpensive) as exc:                  # about 1.1e7 operations estimated
        gaussian_process(arch, pts, [sw, sb], noise_var=sp.Rational(1, 10), verify=False)
    assert exc.value.argument == "points" and "gp_fisher" in str(exc.value)
    xp, ell = sp.Symbol("xp", real=True), sp.Symbol("ell", positive=True)
    rbf = sp.exp(-(x - xp) ** 2 / (2 * ell ** 2))
    with pytest.raises(TooExpensive):                           # refused before a 10^8-entry Gram is built
        gaussian_process(rbf, list(range(10 ** 4)), [ell], inputs=(x, xp), verify=False)
    with limits.lifted(gp_fisher_ops=10), pytest.raises(TooExpensive):   # the bound is the limit in force
        gaussian_process(rbf, [0, 1], [ell], inputs=(x, xp), verify=False)
    assert gaussian_process(rbf, [0, 1], [ell], inputs=(x, xp), verify=False).shape == (1, 1)


def test_sampling_and_shell_weight_domains():
    import numpy as np

    from symbrg.cosnet import theory as cosnet
    from symbrg.rg import brg
    net = cosnet.generalized_cosnet(2, 3, 1)
    X = np.ones((2, 2))
    with pytest.raises(TooExpensive) as exc:
        cosnet.sample_cosnet(net, X, 10 ** 9, 10 ** 6)
    assert "--limit cosnet_samples=" in str(exc.value)
    with pytest.raises(TooExpensive) as exc:
        cosnet.sample_cosnet(net, X, 10 ** 9, 1)              # 16 GB of output
    assert "--limit cosnet_bytes=" in str(exc.value)
    assert cosnet.sample_cosnet(net, X, 3, 4).shape == (3, 2)
    for bad in (float("nan"), float("inf"), -1.0):
        with pytest.raises(InvalidArgument) as exc:
            brg.shell_weight(1.0, bad)
        assert exc.value.argument == "cutoff"
    with pytest.raises(InvalidArgument):
        brg.shell_weight(float("nan"), 1.0)
    assert brg.shell_weight(2, 1) == 1 and brg.shell_weight(2, 1, "litim") == sp.Rational(1, 2)


def test_cosnet_momentum_symbol_by_name():
    from symbrg.cosnet import theory as cosnet
    p = sp.Symbol("p")                                          # not cosnet.P (positive)
    fr = cosnet.radial_frequencies(p ** 2, 2)
    assert fr.density == cosnet.P ** 2
    with pytest.raises(InvalidArgument) as exc:
        cosnet.radial_frequencies(p * sp.Symbol("q"), 2)
    assert exc.value.argument == "density"
    net = cosnet.CosNet(2, cosnet.ball_frequencies(3), 1 / sp.sqrt(p ** 2 + 1))
    assert net.readout_scale.free_symbols == {cosnet.P}


def test_brg_derivation_depth_bounded(capsys):
    err = _one_line_error(capsys, ["derive", "brg", "--depth", "5000"], "depth")
    assert "--limit brg_depth=" in err
    from symbrg.rg.brg import nngp_brg_derivation
    with limits.lifted(brg_depth=1), pytest.raises(TooExpensive):
        nngp_brg_derivation("relu", 2)
    assert nngp_brg_derivation("relu", 2, kernel=False).steps


def test_mode_flow_cutoff_by_name():
    from symbrg.rg.brg import coarse_grain_modes
    lam = sp.Symbol("Lambda", positive=True)
    mode = coarse_grain_modes([2], lam, [1], [1], prescription="jeffreys", regulator="exponential")[0]
    want = mode.flow(lam)
    assert want[0] != 0
    assert mode.flow(sp.Symbol("Lambda")) == want and mode.flow("Lambda") == want
    with pytest.raises(UnknownName) as exc:
        mode.flow("L")
    assert exc.value.argument == "cutoff" and "Lambda" in str(exc.value)


def test_user_regulator_variable_by_name_and_one_definition():
    z = sp.Symbol("z")                                          # not regulators.Z (nonnegative)
    R = regulator(K=sp.exp(-z ** 2))
    assert R.cutoff_function.free_symbols == {sp.Symbol("z", nonnegative=True)}
    assert R.pole == pytest.approx(-1.567, abs=1e-3)
    with pytest.raises(InvalidArgument) as exc:
        regulator(K=sp.exp(-sp.Symbol("a") * z))
    assert exc.value.argument == "K"
    with pytest.raises(InvalidArgument):
        regulator("sharp", K=sp.exp(-z))
    with pytest.raises(InvalidArgument):
        regulator(K=sp.exp(-z), r=sp.Symbol("y"))


def test_fixed_point_guess_tol_and_eta_domains():
    tr = lpa.lpa_truncation("litim", 3, 2)
    for bad in ([float("nan"), 1.0], [float("inf"), 1.0], [0.1 + 1j, 1.0]):
        with pytest.raises(InvalidArgument) as exc:
            lpa.fixed_point(tr, bad)
        assert exc.value.argument == "guess"
    with pytest.raises(InvalidArgument) as exc:
        lpa.fixed_point(tr, tol=-1.0)
    assert exc.value.argument == "tol"
    good = lpa.fixed_point(tr)
    assert lpa.fixed_point(tr, list(good.couplings.values()), tol=1e-20).nu == pytest.approx(good.nu)
    with pytest.raises(InvalidArgument) as exc:
        erg.wetterich_lpa(erg.PHI ** 4, "litim", 3, eta=float("nan"))
    assert exc.value.argument == "eta"
    assert erg.wetterich_lpa(erg.PHI ** 4, "litim", 3, eta=0.1) != 0


def test_fisher_numeric_inputs_real_and_finite():
    import numpy as np
    m = gaussian_regression(a * x + b, [a, b], x, data=[0, 1, 2])
    F = m.compile()
    assert np.allclose(F(1.0, 2.0), [[5 / 3, 1], [1, 1]])
    with pytest.raises(InvalidArgument) as exc:
        F(1.0 + 1j, 2.0)
    assert exc.value.argument == "a"
    with pytest.raises(InvalidArgument):
        F(1.0)
    with pytest.raises(InvalidArgument) as exc:
        gaussian_regression(a * x + b, [a, b], x, data=[0, 1j])
    assert exc.value.argument == "data"
    xp, ell = sp.Symbol("xp", real=True), sp.Symbol("ell", positive=True)
    with pytest.raises(InvalidArgument) as exc:
        gp_fisher(sp.exp(-(x - xp) ** 2 / ell ** 2), [0.0, 1.0], {"ell": float("nan")}, inputs=(x, xp))
    assert exc.value.argument == "at"
