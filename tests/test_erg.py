"""Tests of the exact-RG engine: regulators, threshold functions, Polchinski, Wetterich, LPA."""
from __future__ import annotations

import json

import mpmath
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from symbrg.cli import main
from symbrg.core.errors import InvalidArgument, NotPositive, OutOfRange, UnknownName, Unsupported
from symbrg.rg import erg, lpa
from symbrg.rg.regulators import ETA, D, W, Y, Z, regulator

LAM = erg.LAMBDA


# ----------------------------------------------------------------------------- regulators
@pytest.mark.parametrize("name", ["sharp", "litim", "exponential", "power:3", "K:exp(-z**2)"])
def test_cutoff_function_limits(name):
    K = regulator(name).K()
    assert sp.limit(K, Z, 0, "+") == 1
    assert abs(float(K.subs(Z, 1000))) < 1e-6


@pytest.mark.parametrize("name", ["litim", "exponential", "power:3", "K:exp(-z**2)", "r:exp(-y)"])
def test_ir_regulator_is_dual_to_uv_cutoff(name):
    """(y + r)^{-1} = (1 - K)/y: the IR-regulated propagator keeps what the UV covariance drops."""
    R = regulator(name)
    res = (1 / (Y + R.r()) - (1 - R.K(Y)) / Y).replace(sp.Heaviside, lambda *a: sp.Integer(1))
    f = sp.lambdify(Y, res, "mpmath")
    with mpmath.workdps(40):
        ys = [mpmath.mpf(v) for v in ("0.05", "0.3", "0.7", "0.95")]
        assert max(abs(f(v)) for v in ys) < 1e-30


def test_unknown_and_bad_regulators():
    with pytest.raises(UnknownName) as exc:
        regulator("gaussian-ish")
    assert exc.value.argument == "regulator"
    with pytest.raises(InvalidArgument) as exc:
        regulator("K:exp(z)")           # K(oo) != 0
    assert exc.value.argument == "regulator"
    with pytest.raises(InvalidArgument):
        regulator("K:exp(-z*q)")        # foreign symbol
    with pytest.raises(Unsupported):
        regulator("sharp").r()


def _litim_quadrature(n, d, w, eta):
    """The defining integral of ell^d_n for r = (1 - y) on [0, 1], by mpmath quadrature
    (in s = y^{d/2}, which absorbs the measure (d/2) y^{d/2-1} dy = ds)."""
    with mpmath.workdps(30):
        f = lambda s: (1 - eta * (1 - s ** (2 / d)) / 2) / (1 + w) ** (n + 1)  # noqa: E731
        return mpmath.quad(f, [0, 1])


@settings(max_examples=30, deadline=None)
@given(n=st.integers(0, 4), d=st.floats(0.5, 6), w=st.floats(-0.5, 4), eta=st.floats(-0.3, 0.5))
def test_litim_threshold_closed_form_with_symbolic_d(n, d, w, eta):
    closed = regulator("litim").threshold(n, D, ETA, W)          # derived once, d symbolic
    val = sp.N(closed.subs({D: d, ETA: eta, W: w}), 30)
    assert abs(float(val) - float(_litim_quadrature(n, mpmath.mpf(d), mpmath.mpf(w), mpmath.mpf(eta)))) \
        < 1e-12 * max(1.0, abs(float(val)))


def test_litim_threshold_is_the_generic_quadrature():
    """The quadrature path (used by every non-closed regulator) reproduces the Litim closed form."""
    R = regulator("litim")
    for n, d, w in [(0, 3, 0.4), (2, 3, 0.4), (3, 2.5, 1.2)]:
        quad = R._quad("A", n, mpmath.mpf(d), mpmath.mpf(w)) - mpmath.mpf("0.1") * R._quad(
            "B", n, mpmath.mpf(d), mpmath.mpf(w))
        assert abs(quad - R.threshold_value(n, d, w, 0.1)) < 1e-12


def test_sharp_threshold_is_the_limit_of_steep_cutoffs():
    """K = 1/(1+z^b) tends to the sharp cutoff; the error of ell_1 shrinks like 1/b."""
    exact = float(regulator("sharp").threshold(1, 3).subs(W, 0.4))
    assert exact == pytest.approx(3 / (2 * 1.4))
    errs = [abs(float(regulator(f"power:{b}")._quad("A", 1, mpmath.mpf(3), mpmath.mpf("0.4"))) - exact)
            for b in (20, 80)]
    assert errs[1] < errs[0] / 3 and errs[1] < 2e-3


def test_quadrature_threshold_derivative_recursion():
    """d/dw ell_n = -(n+1) ell_{n+1}, symbolically (fdiff) and numerically (quadrature)."""
    R = regulator("exponential")
    l1 = R.threshold(1, 3)
    assert sp.diff(l1, W) == -2 * R.threshold(2, 3)
    f = lambda w: R._quad("A", 1, mpmath.mpf(3), w)  # noqa: E731
    assert abs(mpmath.diff(f, mpmath.mpf("0.3")) + 2 * R._quad("A", 2, mpmath.mpf(3), mpmath.mpf("0.3"))) < 1e-10
    # codegen compiles the quadrature-backed function
    from symbrg.core.codegen import lambdify
    g = lambdify(l1, [W], "mpmath")
    assert abs(g(mpmath.mpf("0.3")) - R.threshold_value(1, 3, 0.3)) < 1e-12


def test_anomalous_threshold_integration_by_parts():
    """m^d in the integrated-by-parts form equals the direct p^2 derivative of the loop,
    -∫ y^{d/2-1} f [G' + (2y/d) G''] (exponential regulator, smooth)."""
    R = regulator("exponential")
    d, w = 3, sp.Rational(3, 10)
    r = R.r()
    P = Y + r
    f = 2 * (r - Y * sp.diff(r, Y)) / (P + w) ** 2
    G = 1 / (P + w)
    direct = -sp.Rational(d, 2) * Y ** sp.Rational(d - 2, 2) * f * (sp.diff(G, Y) + 2 * Y / d * sp.diff(G, Y, 2))
    h = sp.lambdify(Y, direct, "mpmath")
    val = mpmath.quad(h, [0, 1, 4, 16, mpmath.inf])
    # normalisation: eta = v_d u'''^2 m  <=>  -(2/d) * (d/2) ∫ ... : both sides per unit v_d u'''^2
    assert abs(val - R.anomalous_threshold_value(3, 0.3)) < 1e-12


@pytest.mark.parametrize("name", ["exponential", "power:3"])
def test_batched_quadrature_matches_adaptive_quadrature(name):
    """The fixed-rule batch (used in the fixed-point solver) against mpmath's adaptive quad."""
    R = regulator(name)
    with mpmath.workdps(25):
        A, B, M = R.threshold_batch(3, mpmath.mpf("0.45"), 3, anomalous=True)
        for j in range(4):
            assert abs(A[j] - R._quad("A", j, mpmath.mpf(3), mpmath.mpf("0.45"))) < 1e-20
            assert abs(B[j] - R._quad("B", j, mpmath.mpf(3), mpmath.mpf("0.45"))) < 1e-20
        assert abs(M[0] - R._quad("Ma", 0, mpmath.mpf(3), mpmath.mpf("0.45"))) < 1e-20
        dM = mpmath.diff(lambda w: R._quad("Mb", 0, mpmath.mpf(3), w), mpmath.mpf("0.45"))
        assert abs(M[3] - dM) < 1e-15


def test_litim_anomalous_threshold():
    assert sp.simplify(regulator("litim").anomalous_threshold(D, ETA, W) - (1 + W) ** -4) == 0
    with pytest.raises(Unsupported):
        regulator("sharp").anomalous_threshold(3)


# ----------------------------------------------------------------------------- Polchinski
def test_zero_dimensional_toy_exact():
    g0, Dv = sp.symbols("g0 D", positive=True)
    g = erg.toy_solution(g0, Dv)
    assert sp.simplify(g - g0 / (1 + g0 * Dv)) == 0
    assert sp.simplify(sp.diff(g, Dv) + g ** 2) == 0
    dv = erg.toy_derivation()
    assert dv.verified and all(s.verification.symbolic_zero for s in dv.steps)
    # the wrong sign of the flow is detected
    wrong = g0 / (1 - g0 * Dv)
    assert sp.simplify(sp.diff(wrong, Dv) + wrong ** 2) != 0


def test_interaction_residual_one_mode_any_covariance():
    C = sp.Function("C")(LAM)
    g0, C0 = sp.symbols("g0 C0", positive=True)
    g, c = erg.gaussian_mode_flow(g0, C, C0)
    I = g * erg.PHI ** 2 / 2 + c
    assert sp.simplify(erg.polchinski_residual(I, [erg.PHI], [C], LAM, part="interaction")) == 0
    assert sp.simplify(erg.heat_equation_residual(I, [erg.PHI], [C], LAM)) == 0
    # full action S = phi^2/(2C) + I obeys the full-action form
    S = erg.PHI ** 2 / (2 * C) + I
    assert sp.simplify(erg.polchinski_residual(S, [erg.PHI], [C], LAM, part="full")) == 0
    bad = 2 * g * erg.PHI ** 2 / 2 + c
    assert sp.simplify(erg.polchinski_residual(bad, [erg.PHI], [C], LAM, part="interaction")) != 0


@pytest.mark.parametrize("name", [None, "sharp", "litim", "exponential"])
def test_gaussian_modes_identity(name):
    dv = erg.gaussian_modes_derivation(name, modes=2)
    last = dv.steps[-1].verification
    assert last.symbolic_zero and last.points > 0 and last.verified


@pytest.mark.parametrize("name", ["sharp", "litim", "exponential"])
def test_gaussian_mode_residual_api(name):
    p2, m2 = sp.symbols("p2 m2", positive=True)
    C = regulator(name).covariance(p2, LAM, p2 + m2)
    assert erg.gaussian_mode_residual(C, LAM, variance=C) == 0
    assert erg.gaussian_mode_residual(C, LAM, precision=1 / C) == 0
    # a mode whose variance does not follow the cutoff leaves a nonzero residual
    V = 2 * C
    res = erg.gaussian_mode_residual(C, LAM, variance=V).replace(sp.DiracDelta, lambda *a: sp.Integer(0))
    if name == "exponential":
        assert sp.simplify(res) != 0
    with pytest.raises(InvalidArgument):
        erg.gaussian_mode_residual(C, LAM)


def test_polchinski_derivation_verified():
    dv = erg.polchinski_derivation("exponential", 3)
    assert dv.verified
    assert dv["eq:pol-full"].verification.symbolic_zero
    assert dv["eq:pol-heat"].verification.symbolic_zero


def test_wilson_shell():
    dv = erg.wilson_shell_derivation()
    assert dv.verified
    R, k = sp.symbols("R k", positive=True)
    sh = erg.wilson_shell(erg.M2, R, k, 3)
    assert sh["zeta2"] == (R / k) ** 5 and sp.simplify(sh["m2"] - erg.M2 * R ** 2 / k ** 2) == 0


# ----------------------------------------------------------------------------- Wetterich
def test_litim_lpa_flow_matches_reference():
    """d_t U = v_d k^{d+2}/(k^2 + U'') for Litim, Z = 1 (mathematics.md §5.5)."""
    U = sp.Function("U")(erg.PHI)
    k = erg.K_SCALE
    rhs = erg.wetterich_lpa(U, "litim", D)
    ref = k ** (D + 2) / ((4 * sp.pi) ** (D / 2) * sp.gamma(D / 2 + 1) * (k ** 2 + sp.diff(U, erg.PHI, 2)))
    assert sp.simplify(rhs - ref) == 0


@pytest.mark.parametrize("name", ["litim", "exponential"])
def test_wetterich_derivations(name):
    assert erg.wetterich_derivation(name, 3).verified
    assert erg.wetterich_derivation(name, 3, truncation="lpa'").verified


def test_free_theory_dimensionless_mass_exponent_two():
    """LPA, any regulator: u = m^2 phi^2/2 gives beta(m^2) = -2 m^2 exactly (no loop term)."""
    for name in ("litim", "exponential", "sharp"):
        out = lpa.potential_flow(sp.Rational(3, 10) * erg.PHI ** 2 / 2, name, 3)
        assert out["lambda_1"][1] == pytest.approx(-0.6, abs=1e-14)
    with pytest.raises(Unsupported):
        lpa.potential_flow(sp.cosh(erg.PHI), "litim", 3)


def test_free_theory():
    dv = erg.free_theory_derivation("litim", D)
    assert dv.verified
    rhs = erg.wetterich_lpa(erg.M2 * erg.PHI ** 2 / 2, "exponential", 3)
    assert erg.PHI not in rhs.free_symbols           # only the vacuum term flows
    assert dv["eq:free-vacuum"].verification.symbolic_zero


# ----------------------------------------------------------------------------- LPA fixed points
def test_gaussian_fixed_point_symbolic_d():
    g = lpa.gaussian_fixed_point("litim", D, 5)
    assert g["triangular"] and g["nu"] == sp.Rational(1, 2) and g["eta"] == 0
    for j, t in enumerate(g["theta"]):
        assert sp.expand(t - (2 - (D - 2) * j)) == 0
    g3 = lpa.gaussian_fixed_point("exponential", 3, 4)
    assert g3["theta"] == [2, 1, 0, -1] and g3["omega"] == 1


def test_order_two_litim_fixed_point_exact():
    """Order 2: kappa = 4/3, lambda = 3/16, theta = (2, -1/3) in closed form."""
    fp = lpa.fixed_point(lpa.lpa_truncation("litim", 3, 2))
    kap, lam = fp.couplings.values()
    assert kap == pytest.approx(4 / 3, abs=1e-15) and lam == pytest.approx(3 / 16, abs=1e-15)
    assert fp.nu == pytest.approx(0.5, abs=1e-14) and fp.omega == pytest.approx(1 / 3, abs=1e-14)


def test_convergence_of_nu_and_omega_litim():
    rows = lpa.convergence_table("litim", 3, range(4, 13))
    ref = lpa.KNOWN_LITIM_LPA_3D
    err_nu = [abs(r.nu - ref["nu"]) for r in rows]
    err_om = [abs(r.omega - ref["omega"]) for r in rows]
    assert err_nu[-1] < 2e-5 and err_om[-1] < 5e-4
    # the error envelope shrinks: the last three orders beat the first three
    assert max(err_nu[-3:]) < min(err_nu[:3]) / 5
    assert max(err_om[-3:]) < min(err_om[:3]) / 5
    assert all(r.residual < 1e-18 for r in rows)


def test_regulator_comparison():
    """LPA in d = 3: nu(Litim) < nu(exponential) < nu(sharp); Wegner-Houghton nu = 0.6895."""
    nus = {name: lpa.convergence_table(name, 3, [order], dps=20)[0].nu
           for name, order in (("litim", 8), ("exponential", 6), ("sharp", 8))}
    assert nus["litim"] < nus["exponential"] < nus["sharp"]
    assert nus["sharp"] == pytest.approx(0.6895, abs=2e-4)


def test_o_n_models():
    """Litim LPA, d = 3: nu(N=2) = 0.7082, nu(N=3) = 0.7611 (Litim 2002); N -> oo: nu -> 1/(d-2)."""
    nu = {N: lpa.convergence_table("litim", 3, [10], N=N)[0].nu for N in (2, 3, 1000)}
    assert nu[2] == pytest.approx(0.7082, abs=3e-4) and nu[3] == pytest.approx(0.7611, abs=3e-4)
    assert abs(nu[1000] - 1) < 5e-3
    g = lpa.gaussian_fixed_point("litim", D, 3, N=4)
    assert g["theta"][:2] == [2, 4 - D]


def test_lpa_prime():
    rows = lpa.convergence_table("litim", 3, [6, 8], anomalous=True)
    assert 0 < rows[-1].eta < 0.2
    assert abs(rows[-1].nu - rows[0].nu) < 1e-3
    with pytest.raises(Unsupported):
        lpa.lpa_truncation("sharp", 3, 4, anomalous=True)


@pytest.mark.parametrize("name, prime", [("litim", True), ("exponential", False), ("exponential", True)])
def test_exact_jacobian_against_finite_differences(name, prime):
    """The symbolic Jacobian (ring derivatives + threshold chain rule + eta chain rule) that drives
    Newton and the exponents agrees with central differences of G at 30 digits."""
    tr = lpa.lpa_truncation(name, 3, 4, anomalous=prime)
    c = [mpmath.mpf(v) for v in ("1.7", "0.12", "0.03", "0.006")]
    with mpmath.workdps(30):
        _, J, _ = tr.evaluate(c)
        h = mpmath.mpf(10) ** -10
        for k in range(4):
            up = list(c)
            dn = list(c)
            up[k] += h
            dn[k] -= h
            col = (tr.evaluate(up)[0] - tr.evaluate(dn)[0]) / (2 * h)
            for i in range(4):
                assert abs(col[i] - J[i, k]) < 1e-12 * (1 + abs(J[i, k]))


def test_lpa_derivation():
    dv = lpa.lpa_derivation("litim", 3, 5)
    assert dv.verified
    assert dv["eq:lpa-beta"].verification.points > 0


def test_bad_input():
    with pytest.raises(NotPositive) as exc:
        lpa.lpa_truncation("litim", 0, 4)
    assert exc.value.argument == "d"
    with pytest.raises(NotPositive):
        erg.dimension(-2)
    with pytest.raises(OutOfRange) as exc:
        lpa.lpa_truncation("litim", 3, 0)
    assert exc.value.argument == "order"
    with pytest.raises(OutOfRange):
        lpa.lpa_truncation("litim", 3, 1)          # minimum expansion needs order >= 2
    with pytest.raises(UnknownName):
        lpa.lpa_truncation("nope", 3, 4)
    with pytest.raises(Unsupported) as exc:
        lpa.polynomial_couplings(sp.cos(erg.PHI), 4)
    assert exc.value.argument == "potential"
    with pytest.raises(InvalidArgument):
        lpa.polynomial_couplings(erg.PHI ** 3, 4)
    assert lpa.polynomial_couplings(erg.M2 * erg.PHI ** 2 / 2 + erg.PHI ** 4, 2) == \
        {"lambda_1": erg.M2, "lambda_2": 8}          # phi^4 = 4 rho^2


# ----------------------------------------------------------------------------- CLI
def test_cli_lpa_json(capsys):
    assert main(["erg", "lpa", "--dim", "3", "--regulator", "litim", "--order", "6", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"nu", "omega", "order", "regulator"} <= set(out)
    assert out["order"] == 6 and out["regulator"] == "litim"
    assert out["nu"] == pytest.approx(0.6498, abs=1e-3)


def test_cli_table_and_derive(capsys):
    assert main(["erg", "lpa", "--order", "5", "--table"]) == 0
    assert "0.6446908" in capsys.readouterr().out
    assert main(["derive", "wetterich", "--regulator", "litim", "--dim", "d"]) == 0
    assert "Wetterich" in capsys.readouterr().out
    assert main(["derive", "polchinski", "--part", "toy", "--format", "latex"]) == 0
    assert "\\begin{equation}" in capsys.readouterr().out
    assert main(["erg", "gaussian", "--dim", "d", "--order", "3"]) == 0
    assert "4 - d" in capsys.readouterr().out


def test_cli_compare_json(capsys):
    assert main(["erg", "compare", "--order", "4", "--regulators", "litim", "power:4", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["regulator"] for r in rows] == ["litim", "power:4"]
    assert rows[0]["nu"] == pytest.approx(0.6505738, abs=1e-6)


@pytest.mark.parametrize("argv, name", [
    (["erg", "lpa", "--dim", "0"], "dim"),
    (["erg", "lpa", "--regulator", "foo"], "regulator"),
    (["erg", "lpa", "--order", "0"], "order"),
    (["derive", "wetterich", "--truncation", "lpa'", "--regulator", "sharp"], "regulator"),
])
def test_cli_bad_input(capsys, argv, name):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("symbrg: error: " + name + ":") and err.count("\n") == 1
