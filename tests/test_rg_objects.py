"""Objects, not strings, in the RG layer: regulator families, prescriptions and split criteria.

The reference numbers below were produced by the string-keyed regulator code before the redesign
(``regulator(name)`` returning one class with ``if name == "sharp"`` branches): every object must give
the same K(3/10), K'(3/10), threshold values l^3_n(1/2) (n = 0, 1, 2; 20 digits) and pole.
"""
from __future__ import annotations

import mpmath
import numpy as np
import pytest
import sympy as sp

from symbrg.core.errors import InvalidArgument, OutOfRange, UnknownName, Unsupported
from symbrg.information.spectrum import SplitCriterion, shell_split
from symbrg.rg.brg import Prescription, coarse_grain, shell_weight, weights
from symbrg.rg.regulators import (
    CutoffRegulator,
    Exponential,
    Litim,
    Power,
    Regulator,
    ShapeRegulator,
    Sharp,
    Y,
    Z,
    ae_derivative,
    dimension,
    drop_deltas,
    regulator,
)

# name: (K(0.3), K'(0.3), [l_0, l_1, l_2](d=3, w=1/2), pole, class)
OLD = {
    "sharp": ("1.00000000000000", "0", ["-0.608197662162247", "1.0", "0.333333333333333"], -1.0, Sharp),
    "litim": ("0.700000000000000", "-1.00000000000000",
              ["0.666666666666667", "0.444444444444444", "0.296296296296296"], -1.0, Litim),
    "exponential": ("0.740818220681718", "-0.740818220681718",
                    ["2.15753396758829", "0.810781688038468", "0.342748217907061"], -1.0, Exponential),
    "power:2": ("0.917431192660551", "-0.505007995959936",
                ["5.96075295947766", "1.19215059189553", "0.35764517756866"], -2.0, Power),
    "K:exp(-z**2)": ("0.913931185271228", "-0.548358711162737",
                     ["2.1706097833271", "0.842730615500056", "0.353984792158361"], -1.5669739890286163,
                     CutoffRegulator),
    "r:(1-y)**2*Heaviside(1-y)": ("0.620253164556962", "-1.45809966351546",
                                  ["0.438356913541741", "0.336887168318345", "0.259354524026938"],
                                  -0.750000000001337, ShapeRegulator),
}


@pytest.mark.parametrize("name", sorted(OLD))
def test_objects_reproduce_the_string_path(name: str) -> None:
    K, dK, ells, pole, cls = OLD[name]
    R = regulator(name)
    assert type(R) is cls and isinstance(R, Regulator) and R.name == name
    z = sp.Rational(3, 10)
    assert abs(float(R.K(z)) - float(K)) < 1e-14
    assert abs(float(drop_deltas(R.dK(z))) - float(dK)) < 1e-14
    with mpmath.workdps(20):
        for n, ref in enumerate(ells):
            assert abs(R.threshold_value(n, 3, 0.5) - mpmath.mpf(ref)) < 1e-13 * (1 + abs(float(ref)))
    assert abs(R.pole - pole) < 1e-9
    assert regulator(R) is R                       # an object passes through the parser


def test_family_behaviour_lives_in_the_subclass() -> None:
    assert Sharp().is_sharp and not Litim().is_sharp and not Exponential().is_sharp
    assert Sharp().has_closed_form and Litim().has_closed_form and not Exponential().has_closed_form
    assert regulator("sharp") == Sharp() and regulator("optimized") == Litim()
    assert Power(4) == regulator("power:4") and Power(4).b == 4 and Power("1/2").pole == 0.0
    with pytest.raises(Unsupported):
        Sharp().r()
    with pytest.raises(Unsupported):
        Sharp().threshold(0, 3, eta=sp.Rational(1, 10))
    with pytest.raises(Unsupported):
        Sharp().anomalous_threshold(3)
    with pytest.raises(Unsupported):
        Sharp().threshold_batch(3, 0.5, 2)
    # the Litim closed form (any d) and the sharp logarithm
    assert sp.simplify(Litim().threshold(1, 3, 0, sp.Symbol("w")) - 1 / (1 + sp.Symbol("w")) ** 2) == 0
    assert Sharp().threshold(0, 3) == -sp.Rational(3, 2) * sp.log(1 + sp.Symbol("w"))


def test_user_cutoff_function_and_shape() -> None:
    R = CutoffRegulator(sp.exp(-Z ** 2))
    assert R == regulator(K=sp.exp(-Z ** 2)) and R.name == "K:exp(-z**2)"
    assert sp.simplify(R.r() - Y / (sp.exp(Y ** 2) - 1)) == 0
    S = ShapeRegulator("(1-y)**2*Heaviside(1-y)")
    assert S.shape == (1 - Y) ** 2 * sp.Heaviside(1 - Y)
    with pytest.raises(InvalidArgument) as err:      # K(0) must be 1
        CutoffRegulator(2 * sp.exp(-Z))
    assert err.value.argument == "K"
    with pytest.raises(InvalidArgument):             # text goes through the safe parser only
        regulator("K:__import__('os').system('true')")


def test_parsing_refuses_unknown_names_listing_the_choices() -> None:
    for bad in ("sharpest", "litim:2", "gauss", ""):
        with pytest.raises(UnknownName) as err:
            regulator(bad)
        assert err.value.argument == "regulator"
        assert "sharp" in str(err.value) and "litim" in str(err.value) and "power:b" in str(err.value)
    for bad in ("power:0", "power:-1", "power:1e400", "power:101"):
        with pytest.raises((OutOfRange, InvalidArgument)):
            regulator(bad)
    with pytest.raises(InvalidArgument):
        regulator(3)


def test_almost_everywhere_derivative_and_dimension() -> None:
    z = Z
    assert ae_derivative((1 - z) * sp.Heaviside(1 - z), z) == -sp.Heaviside(1 - z)
    assert ae_derivative(sp.Heaviside(1 - z), z) == 0
    assert dimension(3) == 3 and dimension("5/2") == sp.Rational(5, 2) and dimension(sp.Symbol("d")).is_Symbol
    with pytest.raises(InvalidArgument):
        dimension(0)


def test_shell_weight_accepts_objects_and_names() -> None:
    lam, cut = sp.Symbol("l", positive=True), sp.Rational(1, 2)
    assert shell_weight(lam, cut, Sharp()) == shell_weight(lam, cut, "sharp") == shell_weight(lam, cut)
    assert shell_weight(lam, cut, Litim()) == shell_weight(lam, cut, "litim")
    x = np.array([0.1, 0.5, 2.0, 9.0])
    np.testing.assert_array_equal(weights(x, 1.0, Exponential()), weights(x, 1.0, "exponential"))
    np.testing.assert_array_equal(weights(x, 1.0, Sharp()), weights(x, 1.0))


def test_prescriptions_and_criteria_are_parsed_once() -> None:
    assert Prescription.parse("prior", "prescription") is Prescription.PRIOR
    assert Prescription.PRIOR == "prior" and f"{Prescription.JEFFREYS}" == "jeffreys"
    assert {str(p) for p in Prescription} == {"prior", "jeffreys", "removed"}
    assert SplitCriterion.parse(SplitCriterion.DIAGONAL, "criterion") is SplitCriterion.DIAGONAL
    with pytest.raises(UnknownName) as err:
        SplitCriterion.parse("trace", "criterion")
    assert err.value.argument == "criterion" and "eigen, diagonal" in str(err.value)
    fisher = np.diag([1.0, 4.0])
    assert shell_split(fisher, 2.0, "diagonal").criterion is SplitCriterion.DIAGONAL
    assert shell_split(fisher, 2.0).criterion is SplitCriterion.EIGEN
    post = (np.zeros(2), np.eye(2) * 0.1)
    prior = (np.zeros(2), np.eye(2))
    a = coarse_grain(post, fisher, 2.0, prior=prior, prescription="prior", criterion="eigen")
    b = coarse_grain(post, fisher, 2.0, prior=prior, prescription=Prescription.PRIOR,
                     criterion=SplitCriterion.EIGEN, regulator=Sharp())
    assert a.prescription is Prescription.PRIOR and a.criterion is SplitCriterion.EIGEN
    np.testing.assert_array_equal(a.covariance, b.covariance)
    with pytest.raises(UnknownName) as err:          # the Gaussian engine has prior and Jeffreys only
        coarse_grain(post, fisher, 2.0, prescription="removed")
    assert err.value.argument == "prescription" and "prior, jeffreys" in str(err.value)
