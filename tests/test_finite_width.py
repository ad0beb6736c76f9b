"""The finite-width cos-net (issue 15): the box model, the Edgeworth action, Polchinski's first-order flow and
the order-1/N certificate, each check shown able to fail."""
from __future__ import annotations

import json
import math

import mpmath
import numpy as np
import pytest
from helpers import cli

from symbrg.core.errors import InvalidArgument, ShapeMismatch, Unsupported
from symbrg.core.exact import Q, rational
from symbrg.cosnet.finite_width import (
    PHASE_FOURTH,
    PHASE_SECOND,
    box_cosnet,
    coarse_grained_cumulants,
    phase_moments,
)
from symbrg.cosnet.finite_width_certificate import (
    MUTATIONS,
    _closed_form,
    certify_finite_width,
    smooth_shell_gap,
)
from symbrg.gaussian.edgeworth import (
    QuarticAction,
    edgeworth_action,
    first_order_normalisation,
    first_order_two_point,
    inverse,
    sum_cumulants,
)
from symbrg.rg.regulators import regulator
from symbrg.rg.wilsonian import (
    filter_field,
    flow_first_order,
    polchinski_rates,
    rates_solve_polchinski,
    regulated_covariance,
)


# ------------------------------------------------------------------------------------------- exact numbers
def test_rational_refuses_floats_and_irrationals():
    assert rational("5/2") == Q(5, 2) and rational(3) == Q(3)
    for bad in (0.5, "sqrt(2)", "__import__('os')", True):
        with pytest.raises(InvalidArgument, match="value"):
            rational(bad)


# ------------------------------------------------------------------------------------------- the box
def test_box_model_is_sigma2_G_per_mode():
    box = box_cosnet(2, 5, 1, width=7)
    assert box.modes == 12 and box.sigma_a2 == 12          # sigma_a^2 = sigma^2 |S|
    K, _ = box.cumulants()
    assert list(np.diag(K)) == box.propagator == [Q(1, p2 + 1) for p2 in box.momenta2]
    assert sum(box.probabilities) == 1


def test_box_refusals_name_the_argument():
    with pytest.raises(InvalidArgument, match="radius2"):
        box_cosnet(1, 0.5, 1)
    with pytest.raises(InvalidArgument, match="radius2"):
        box_cosnet(1, 1, 1)
    with pytest.raises(InvalidArgument, match="radius2"):
        box_cosnet(3, 30, 1)                                 # far too many modes for a dense exact tensor
    with pytest.raises(InvalidArgument, match="mass2"):
        box_cosnet(1, 9, -1)


def test_phase_moments_by_integration_are_the_three_pairings():
    assert np.all(phase_moments(2) == PHASE_SECOND) and np.all(phase_moments(4) == PHASE_FOURTH)
    assert phase_moments(4)[0, 0, 0, 0] == Q(3, 8) and phase_moments(4)[0, 0, 1, 1] == Q(1, 8)


def test_closed_form_vertices_and_counterterm():
    assert _closed_form(1).verified and _closed_form(2).verified
    box = box_cosnet(1, 10, 1, width=5)                      # n = 1, 2, 3: M = 6
    S = edgeworth_action(*box.cumulants())
    M = box.modes
    assert all(S.quadratic[i, i] == Q(M - 1) / (box.width * box.propagator[i]) for i in range(M))


# ------------------------------------------------------------------------------------------- Edgeworth
def _irwin_hall_action(n: int, phi: float) -> float:
    """-log density of f = sqrt(12/n) sum (U_i - 1/2) at phi (exact Irwin-Hall sum at 80 digits)."""
    with mpmath.workdps(80):
        s = mpmath.mpf(n) / 2 + mpmath.mpf(phi) * mpmath.sqrt(mpmath.mpf(n) / 12)
        dens = sum((-1) ** k * mpmath.binomial(n, k) * (s - k) ** (n - 1) for k in range(int(mpmath.floor(s)) + 1))
        dens = dens / mpmath.factorial(n - 1) * mpmath.sqrt(mpmath.mpf(n) / 12)
        return float(-mpmath.log(dens))


def _edgeworth_1d(n: int, phi: float, counterterm: Q = Q(1)) -> float:
    second = np.array([[Q(1)]], dtype=object)
    fourth = np.array([[[[Q(9, 5)]]]], dtype=object)        # E[w^4] for w uniform with variance 1
    a = edgeworth_action(*sum_cumulants(second, fourth, n))
    lam, mu, E = float(a.quartic[0, 0, 0, 0]), float(a.quadratic[0, 0] * counterterm), float(a.vacuum)
    return phi ** 2 / 2 + math.log(2 * math.pi) / 2 + lam * phi ** 4 / 24 + mu * phi ** 2 / 2 + E


def test_edgeworth_action_against_the_exact_irwin_hall_law():
    """The error of the order-1/N action is O(1/N^2): quadrupling N divides it by about 16.  A counterterm off
    by a factor 1/2 leaves an O(1/N) error, which only shrinks by about 4: the check can fail."""
    phis = (0.0, 0.7, 1.3)
    for factor, lo, hi in ((Q(1), 10, 25), (Q(1, 2), 3, 5)):
        e20 = max(abs(_edgeworth_1d(20, p, factor) - _irwin_hall_action(20, p)) for p in phis)
        e80 = max(abs(_edgeworth_1d(80, p, factor) - _irwin_hall_action(80, p)) for p in phis)
        assert lo < e20 / e80 < hi, (factor, e20, e80)


def test_edgeworth_counterterm_keeps_the_two_point_function():
    rng = np.random.default_rng(3)
    A = np.array([[Q(int(x)) for x in row] for row in rng.integers(-3, 4, (3, 3))], dtype=object)
    K = A @ A.T + np.eye(3, dtype=int).astype(object) * Q(2)   # a non-diagonal positive-definite covariance
    w = np.array([Q(int(x), 7) for x in rng.integers(-5, 6, 81)], dtype=object).reshape((3,) * 4)
    kappa = w + w.transpose(1, 0, 2, 3) + w.transpose(2, 3, 0, 1) + w.transpose(3, 2, 1, 0)
    kappa = sum(kappa.transpose(p) for p in ((0, 1, 2, 3), (0, 2, 1, 3), (0, 3, 2, 1))) / 3
    kappa = (kappa + kappa.transpose(1, 0, 2, 3)) / 2
    a = edgeworth_action(K, kappa)
    assert np.all(inverse(K) @ K == np.eye(3, dtype=int))
    assert np.all(first_order_two_point(a) == K) and first_order_normalisation(a) == 0
    wrong = QuarticAction(K, a.quartic, a.quadratic / 2, a.vacuum)
    assert not np.all(first_order_two_point(wrong) == K)
    with pytest.raises(ShapeMismatch, match="kappa4"):
        edgeworth_action(K, kappa[:2])


# ------------------------------------------------------------------------------------------- Polchinski
def test_flow_law_solves_polchinski_and_mutated_laws_do_not():
    assert rates_solve_polchinski().verified

    def wrong_sign(a, dC):
        l, m, e = polchinski_rates(a, dC)
        return l, -m, e
    assert not rates_solve_polchinski(wrong_sign).verified


def test_flow_is_path_independent_and_composes():
    box = box_cosnet(1, 17, 1, width=4)                      # n = 1..4
    start = edgeworth_action(*box.cumulants())
    sharp = regulator("sharp")
    C = [regulated_covariance(box.propagator, box.momenta2, sharp, Q(k2, 2)) for k2 in (25, 11, 3)]
    direct = flow_first_order(start, C[2])
    steps = flow_first_order(flow_first_order(flow_first_order(start, C[0]), C[1]), C[2])
    for x, y in ((direct.quartic, steps.quartic), (direct.quadratic, steps.quadratic)):
        assert np.all(x == y)
    assert direct.vacuum == steps.vacuum
    with pytest.raises(InvalidArgument, match="k2"):
        regulated_covariance(box.propagator, box.momenta2, sharp, Q(4))   # a mode on the sharp edge


def test_filter_field_projects_plane_waves():
    x = 2 * np.pi * np.arange(16) / 16
    field = np.cos(x) + 0.5 * np.sin(3 * x + 0.2) + 0.25 * np.cos(6 * x)
    low = filter_field(field, regulator("sharp"), 10.0)
    assert np.allclose(low, np.cos(x) + 0.5 * np.sin(3 * x + 0.2), atol=1e-14)
    assert not np.allclose(filter_field(field, regulator("litim"), 10.0), low)


# ------------------------------------------------------------------------------------------- the BRG side
def test_coarse_graining_removes_exactly_the_high_pairs():
    box = box_cosnet(1, 17, 1, width=6)
    lam = Q(100) / (2 * 6 * (Q(9, 2) + 1))                   # k^2 = 9/2: keeps n = 1, 2
    support, K, kappa = coarse_grained_cumulants(box, lam, Q(100), Q(1))
    assert list(support) == [0, 1, 2, 3]
    Kf, kf = box.cumulants()
    assert np.all(K == Kf[:4, :4]) and np.all(kappa == kf[:4, :4, :4, :4])   # the projected cumulants
    _, Ks, ks = coarse_grained_cumulants(box, lam, Q(100), Q(1), prescription="surviving")
    assert np.all(Ks == K) and not np.all(ks == kappa)        # a narrower network: the same K, another kappa4
    with pytest.raises(InvalidArgument, match="cutoff"):
        coarse_grained_cumulants(box, Q(10 ** 6), Q(100), Q(1))


# ------------------------------------------------------------------------------------------- the certificate
@pytest.mark.parametrize("dim", [1, 3])
def test_certificate_verifies_with_every_mutation_refused(dim):
    cert = certify_finite_width(dim)
    assert cert.verified, cert.identities
    assert {m["name"] for m in cert.mutations} == set(MUTATIONS)
    assert all(m["falsified"] and not m["verified"] for m in cert.mutations)
    assert cert.vacuous == []
    names = [r["name"] for r in cert.identities]
    assert "polchinski-equation" in names and "quadratic" in names and "projection" in names


def test_certificate_mutation_alone_is_not_verified():
    cert = certify_finite_width(1, mutate="tadpole-sign")
    assert not cert.verified and cert.mutations == []
    assert {r["name"] for r in cert.identities if not r["verified"]} == {"quadratic", "vacuum", "polchinski-equation"}


def test_smooth_shells_fail_at_order_one_over_n():
    assert smooth_shell_gap() > 0.5
    with pytest.raises(Unsupported, match="regulator"):
        certify_finite_width(1, "litim")


def test_cli_prove_and_derive_order_one_over_n(capsys):
    code, out, _ = cli(["prove", "cosnet-erg", "--order", "1/N", "--dim", "1", "--json"], capsys)
    data = json.loads(out)
    assert code == 0 and data["verified"] and data["order"] == "1/N" and len(data["mutations"]) == len(MUTATIONS)
    code, out, _ = cli(["prove", "cosnet-erg", "--order", "1/N", "--dim", "1", "--mutate", "unflowed"], capsys)
    assert code == 1 and "NOT VERIFIED" in out
    for args, word in ((["--dim", "4"], "dim"), (["--regulator", "litim"], "regulator"), (["--points", "3"], "points")):
        code, _, err = cli(["prove", "cosnet-erg", "--order", "1/N", *args], capsys)
        assert code == 2 and err.count("\n") == 1 and word in err
    code, out, _ = cli(["derive", "cosnet", "--order", "1/N", "--dim", "1", "--format", "markdown"], capsys)
    assert code == 0 and "Polchinski" in out and "tadpole" in out


def test_the_two_sides_do_not_import_each_other():
    import ast
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1] / "symbrg"

    def imports(rel: str) -> set[str]:
        out = set()
        for node in ast.walk(ast.parse((root / rel).read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                out |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
            elif isinstance(node, ast.Import):
                out |= {a.name for a in node.names}
        return out
    brg_side, erg_side = imports("cosnet/finite_width.py"), imports("rg/wilsonian.py")
    for forbidden in ("symbrg.rg.erg", "symbrg.rg.regulators", "symbrg.rg.wilsonian", "symbrg.rg.free_scalar",
                      "symbrg.cosnet.finite_width_certificate"):
        assert not any(n == forbidden or n.startswith(forbidden + ".") for n in brg_side), forbidden
    assert not any(n.startswith(("symbrg.rg.brg", "symbrg.cosnet", "symbrg.information")) for n in erg_side)


def test_exact_verifications_need_a_zero_difference():
    from symbrg.core.identities import Verification
    assert Verification("exact", points=2, max_abs_error=0.0).verified
    assert not Verification("exact", points=2, max_abs_error=1e-300).verified
    assert not Verification("exact", points=0, max_abs_error=0.0).verified
