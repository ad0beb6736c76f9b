"""symbrg.register_activation: a user's activation is one object, registered in one place, and works
everywhere a built-in name does (mlp, Gram matrices at float64 and 50 digits, the CLI, finite-width
networks); supplied closed forms are checked against quadrature; plugins register through the
``symbrg.activations`` entry-point group."""
from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

import symbrg
from symbrg.core.errors import InvalidArgument, SymbrgError, UnknownName
from symbrg.gaussian import activations as A
from symbrg.gaussian.expectations import expectation

x = sp.Symbol("x", real=True)
B = 2     # erf(B x): its kernels are known in closed form (Williams 1997) and built in as erf:1,2,0


def erf_nngp(k11, k22, k12):
    return 2 / sp.pi * sp.asin(2 * B**2 * k12 / sp.sqrt((1 + 2 * B**2 * k11) * (1 + 2 * B**2 * k22)))


def erf_ntk(k11, k22, k12):
    return 4 * B**2 / sp.pi / sp.sqrt(1 + 2 * B**2 * (k11 + k22) + 4 * B**4 * (k11 * k22 - k12**2))


@pytest.fixture(autouse=True)
def registry(monkeypatch):
    """A fresh registry per test (names registered here do not leak into other tests)."""
    monkeypatch.setattr(A, "_REGISTERED", {})
    monkeypatch.setattr(A, "_plugins_loaded", True)    # no installed plugins unless a test fakes them
    yield


def register_erf2(**kw):
    k1, k2, k3 = sp.symbols("a b c")
    return symbrg.register_activation("erf2", sp.Lambda(sp.Symbol("t"), sp.erf(B * sp.Symbol("t"))),
                                      nngp=sp.Lambda((k1, k2, k3), erf_nngp(k1, k2, k3)), ntk=erf_ntk, **kw)


# a few covariances (q11, q12, q22), including |c| near 1 and unequal variances
POINTS = [(1.0, 0.3, 2.0), (0.5, 0.4999999, 0.5), (2.0, -1.9999, 2.0), (0.3, 0.0, 3.0), (1.7, -0.9, 0.8),
          (0.3, -0.2, 0.9), (0.9, 0.8999, 0.9)]


@pytest.mark.parametrize("derivative", [False, True])
def test_registered_closed_form_is_exact(derivative):
    act = register_erf2()
    assert symbrg.register_activation is symbrg.gaussian.register_activation
    assert act.family == "generic" and act.name == "erf2"
    e = expectation("erf2", derivative=derivative)
    assert (e.method, e.rule) == ("exact", "registered")
    builtin = expectation("erf:1,2,0", derivative=derivative).compile()
    series = expectation(act, derivative=derivative, method="series", variance_range=(0.25, 1.0)).compile()
    quad = expectation(act, derivative=derivative, method="quadrature", degree=40).compile()
    mp50 = e.compile(backend="mpmath", dps=50)
    fn = e.compile()
    for p in POINTS:
        v = float(fn(*p))
        assert v == pytest.approx(float(builtin(*p)), rel=1e-12, abs=1e-14)
        if max(p[0], p[2]) <= 1.0:    # where the series is certified (erf(2x)' = Gaussian: slow at large q)
            assert v == pytest.approx(float(series(*p)), rel=1e-10, abs=1e-10)
        assert v == pytest.approx(float(quad(*p)), rel=1e-10, abs=1e-10)
        assert v == pytest.approx(float(mp50(*p)), rel=1e-13, abs=1e-15)


def test_lambda_without_closed_form_matches_quadrature():
    t = sp.Symbol("t")
    act = symbrg.register_activation("myatan", sp.Lambda(t, sp.atan(t)))
    assert act.nngp is None and act.ntk is None and act.family == "generic"
    for derivative in (False, True):     # measured: NNGP by a Mehler series (order 309), NTK by quadrature
        e = expectation("myatan", derivative=derivative)
        assert e.method in ("series", "quadrature")
        ref = expectation(act, derivative=derivative, method="quadrature", degree=60).compile(
            backend="mpmath", dps=20)
        fn = e.compile()
        for p in POINTS[:5]:
            assert float(fn(*p)) == pytest.approx(float(ref(*p)), rel=1e-8, abs=1e-8)


def test_recognized_family_keeps_the_engine_closed_form():
    act = symbrg.register_activation("myrelu", sp.Lambda(x, sp.Max(x, 0)))
    assert act.family == "abrelu"
    assert expectation("myrelu").rule.startswith("arccos")


def test_wrong_closed_forms_are_refused():
    t = sp.Symbol("t")
    with pytest.raises(SymbrgError) as err:
        symbrg.register_activation("erf2", sp.Lambda(t, sp.erf(B * t)), nngp=lambda a, b, c: 1.01 * erf_nngp(a, b, c))
    assert err.value.argument == "nngp"
    with pytest.raises(SymbrgError) as err:   # the NNGP of erf(x), the NTK of erf(2x)/2: wrong near |c| = 1
        symbrg.register_activation("erf2", sp.Lambda(t, sp.erf(B * t)), nngp=erf_nngp,
                                   ntk=lambda a, b, c: erf_ntk(a, b, c) * (1 + (c**2 / (a * b)) ** 8 / 10))
    assert err.value.argument == "ntk"
    assert "erf2" not in A.names()
    with pytest.raises(InvalidArgument, match="nngp"):
        symbrg.register_activation("erf2", sp.Lambda(t, sp.erf(B * t)), nngp=lambda a, b, c: a + sp.Symbol("z"))
    with pytest.raises(InvalidArgument, match="nngp"):
        symbrg.register_activation("erf2", sp.Lambda(t, sp.erf(B * t)), nngp="2/pi*asin(k12)")
    with pytest.raises(InvalidArgument, match="phi"):
        symbrg.register_activation("erf2", "erf(2*x)")


def test_names_are_validated_and_not_silently_replaced():
    t = sp.Symbol("t")
    for bad in ("erf:2", "", "2x", "a b", None):
        with pytest.raises(InvalidArgument) as err:
            symbrg.register_activation(bad, sp.Lambda(t, sp.tanh(t)))
        assert err.value.argument == "name"
    with pytest.raises(InvalidArgument, match="built-in"):
        symbrg.register_activation("relu", sp.Lambda(t, sp.Max(t, 0)), replace=True)
    register_erf2()
    with pytest.raises(InvalidArgument, match="replace=True"):
        register_erf2()
    X = np.random.default_rng(1).normal(size=(4, 2))
    before = symbrg.mlp("erf2", 2, 1.2, 0.1).nngp(X)
    symbrg.register_activation("ERF2", sp.Lambda(t, sp.tanh(t)), replace=True)   # names are case-insensitive
    after = symbrg.mlp("erf2", 2, 1.2, 0.1).nngp(X)
    np.testing.assert_allclose(after, symbrg.mlp("tanh", 2, 1.2, 0.1).nngp(X), rtol=1e-10)
    assert np.max(np.abs(after - before)) > 1e-3
    with pytest.raises(InvalidArgument, match="no parameters"):
        A.activation("erf2:3")
    with pytest.raises(UnknownName, match="erf2"):   # the error lists the registered names too
        A.activation("nosuch")


def test_registered_name_through_mlp_float64_and_50_digits():
    register_erf2()
    X = np.random.default_rng(0).normal(size=(6, 3))
    X[1] = X[0] * (1 + 1e-9)                     # a near-parallel pair
    mine, ref = symbrg.mlp("erf2", 3, 1.3, 0.2), symbrg.mlp("erf:1,2,0", 3, 1.3, 0.2)
    for kind in ("nngp", "ntk"):
        k = getattr(mine, kind)(X)
        np.testing.assert_allclose(k, getattr(ref, kind)(X), rtol=1e-12)
        k50 = np.array(getattr(mine, kind)(X, precision=50), dtype=float)
        np.testing.assert_allclose(k, k50, rtol=1e-12)


def test_cli_derive_nngp_with_a_registered_activation(capsys):
    from symbrg.cli import main
    register_erf2()
    assert main(["derive", "nngp", "--activation", "erf2", "--depth", "2"]) == 0
    out = capsys.readouterr().out
    assert "registered" in out and "asin" in out


def test_finite_width_network_uses_the_registered_function():
    register_erf2()
    mine, ref = symbrg.network((3, 40, 40, 1), "erf2"), symbrg.network((3, 40, 40, 1), "erf:1,2,0")
    ens = mine.init(4, seed=3)
    X = np.random.default_rng(2).normal(size=(5, 3))
    np.testing.assert_array_equal(mine.forward(ens, X), ref.forward(ens, X))


class FakeEntryPoint:
    def __init__(self, name, obj):
        self.name, self.value, self._obj = name, f"fakepkg.activations:{name}", obj

    def load(self):
        if isinstance(self._obj, Exception):
            raise self._obj
        return self._obj


def fake_plugins(monkeypatch, *eps):
    def entry_points(*, group):
        assert group == "symbrg.activations"
        return list(eps)
    monkeypatch.setattr(A.importlib.metadata, "entry_points", entry_points)
    monkeypatch.setattr(A, "_plugins_loaded", False)


def test_entry_point_plugins_register_lazily(monkeypatch):
    calls = []

    def plugin():
        calls.append(1)
        register_erf2()
    obj = A.Activation("cube_root_ish", "generic", (), A.X / sp.sqrt(1 + A.X**2))
    fake_plugins(monkeypatch, FakeEntryPoint("erf2", plugin), FakeEntryPoint("cube", obj))
    assert A.activation("relu").name == "relu" and not calls      # built-ins never load plugins
    assert symbrg.mlp("erf2", 1).nngp(np.eye(2)).shape == (2, 2)   # the first unknown name loads them
    assert calls == [1]
    assert A.activation("cube_root_ish").name == "cube_root_ish"
    assert expectation("erf2").rule == "registered"
    with pytest.raises(UnknownName):
        A.activation("still_unknown")
    assert calls == [1]                                            # loaded once


def test_broken_plugin_is_reported_by_name(monkeypatch):
    fake_plugins(monkeypatch, FakeEntryPoint("broken", ImportError("no module named fakepkg")))
    with pytest.raises(SymbrgError, match="'broken'.*ImportError"):
        A.activation("whatever")
    fake_plugins(monkeypatch, FakeEntryPoint("wrong", lambda: symbrg.register_activation(
        "erf2", sp.Lambda(x, sp.erf(B * x)), nngp=lambda a, b, c: 0 * a)))
    with pytest.raises(SymbrgError, match="'wrong'.*nngp"):
        A.activation("erf2")
    fake_plugins(monkeypatch, FakeEntryPoint("notcallable", 42))
    with pytest.raises(SymbrgError, match="'notcallable'"):
        A.activation("whatever")


def test_plugin_activation_objects_have_their_closed_forms_checked_before_use(monkeypatch):
    k = sp.symbols("a b c")
    wrong = A.Activation("erf3", "generic", (), sp.erf(B * x), nngp=sp.Lambda(k, 0 * k[0]))
    fake_plugins(monkeypatch, FakeEntryPoint("erf3", wrong))
    with pytest.raises(InvalidArgument) as err:
        expectation("erf3")
    assert err.value.argument == "nngp"
