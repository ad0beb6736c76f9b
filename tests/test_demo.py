"""``symbrg demo``: the tour runs, checks the NNGP against a finite-width ensemble, writes LaTeX to the
folder it names, refuses to overwrite without --force, and its Monte-Carlo check can fail."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("symbrg.gaussian.expectations")

from symbrg.cli import demo, main  # noqa: E402
from symbrg.kernels.architecture import mlp  # noqa: E402


def test_quick_tour_runs_and_writes_latex(tmp_path, capsys):
    out = tmp_path / "tour"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert str(out) in text.splitlines()[0]
    assert "[1/5] Kernel" in text and "[5/5]" in text
    assert "\\sigma_{w}^{2}" in text                      # the LaTeX of the per-layer map
    assert "PASS: every entry within 5 standard errors" in text
    files = sorted(p.name for p in out.glob("*.tex"))
    assert "nngp-relu-depth3.tex" in files
    for name in files:
        body = (out / name).read_text()
        assert body.startswith("\\documentclass") and body.rstrip().endswith("\\end{document}")


def test_existing_documents_need_force(tmp_path, capsys):
    out = tmp_path / "tour"
    (out).mkdir()
    (out / "nngp-relu-depth3.tex").write_text("mine\n")
    assert main(["demo", "--quick", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--out" in err and "--force" in err and "Traceback" not in err
    assert (out / "nngp-relu-depth3.tex").read_text() == "mine\n"
    assert main(["demo", "--quick", "--out", str(out), "--force"]) == 0
    assert (out / "nngp-relu-depth3.tex").read_text().startswith("\\documentclass")


def test_default_folder_is_fresh_and_named(capsys):
    assert main(["demo", "--quick"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "symbrg-demo-" in first


def test_ensemble_check_agrees_and_can_fail():
    """The sample mean of f(x)f(x') matches the NNGP within 5 standard errors, and the same sample
    rejects a kernel with a 20% larger sigma_w^2 (so the check has power)."""
    x = np.random.default_rng(3).standard_normal((3, 5))
    r = demo.ensemble_check(x, members=800, width=64, seed=1)
    assert r["ok"]
    assert np.all(r["se"] > 0) and r["mc"].shape == (3, 3)
    wrong = mlp(demo.ACTIVATION, demo.DEPTH, demo.SIGMA_W * 1.1, demo.SIGMA_B).nngp(x)
    assert np.any(np.abs(r["mc"] - wrong) > demo.STANDARD_ERRORS * r["se"])


def test_per_layer_map_matches_the_kernel_program():
    """The printed map, evaluated layer by layer, reproduces the compiled Gram matrix."""
    import sympy as sp
    eq = demo.per_layer_map()
    free = sorted(eq.rhs.free_symbols, key=str)
    names = {s.name: s for s in free}
    f = sp.lambdify(free, eq.rhs, "numpy")
    x = np.random.default_rng(0).standard_normal((2, 4))
    d = x.shape[1]
    sw2, sb2 = demo.SIGMA_W ** 2, demo.SIGMA_B ** 2
    k = sb2 + sw2 * (x @ x.T) / d
    for _ in range(demo.DEPTH):
        vals = {"K^{(l)}_{11}": k[0, 0], "K^{(l)}_{12}": k[0, 1], "K^{(l)}_{22}": k[1, 1],
                "sigma_w": demo.SIGMA_W, "sigma_b": demo.SIGMA_B}
        new12 = f(*[vals[s.name] for s in free])
        diag = [f(*[{"K^{(l)}_{11}": k[i, i], "K^{(l)}_{12}": k[i, i], "K^{(l)}_{22}": k[i, i],
                     "sigma_w": demo.SIGMA_W, "sigma_b": demo.SIGMA_B}[s.name] for s in free])
                for i in range(2)]
        k = np.array([[diag[0], new12], [new12, diag[1]]])
    assert set(names) == {"K^{(l)}_{11}", "K^{(l)}_{12}", "K^{(l)}_{22}", "sigma_w", "sigma_b"}
    gram = mlp(demo.ACTIVATION, demo.DEPTH, demo.SIGMA_W, demo.SIGMA_B).nngp(x)
    np.testing.assert_allclose(k, gram, rtol=1e-12)


def test_demo_help_has_examples(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--help"])
    assert exc.value.code == 0
    assert "examples:" in capsys.readouterr().out
