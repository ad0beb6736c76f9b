"""The shell experiment's figures, one function per figure (symbrg.ensembles.plots)."""
import os
import sys

import numpy as np
import pytest

from symbrg.core.errors import Unsupported
from symbrg.ensembles import experiment, plots

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.container import ErrorbarContainer  # noqa: E402

NAMES = ("mse_vs_lambda", "fisher_spectrum", "outputs_at_test_point", "predictive_variance")


@pytest.fixture(autouse=True)
def _close_figures():
    """A failing test leaves no figure open for the next one."""
    plt.close("all")
    yield
    plt.close("all")


def _results(n_lam: int = 6, members: int = 20, kernel: bool = True) -> tuple[dict, dict]:
    rng = np.random.default_rng(0)
    lam = np.geomspace(1e-3, 1.0, n_lam)
    mse = np.linspace(0.1, 1.0, n_lam)
    res = {
        "preset": "test", "members_kept": members, "lambdas": lam.tolist(), "confidence": 0.95,
        "mse_q16": (0.8 * mse).tolist(), "mse_q84": (1.2 * mse).tolist(),
        "mse_median": mse.tolist(), "mse_mean": (1.1 * mse).tolist(),
        "mse_median_ci": np.c_[0.9 * mse, 1.1 * mse].tolist(), "mse_mean_ci": np.c_[mse, 1.2 * mse].tolist(),
        "mse_trained_median": 0.1, "mse_trained": 0.11, "mse_trained_median_ci": [0.09, 0.12],
        "lambda_c_statistic": "median",
        "lambda_c": float(lam[2]), "lambda_c_ci": (float(lam[1]), None), "rtol": 0.1,
        "lambda_c_at_grid_edge": False, "lambda_c_note": "",
        "config": {"fisher_set": 20}, "outputs_at_test_point": rng.normal(size=(n_lam + 1, members)).tolist(),
        "y_test_point": 0.3, "test_point": 4,
        "predictive_variance": np.linspace(0.1, 2.0, n_lam).tolist(), "predictive_variance_trained": 0.05,
        "predictive_variance_test": rng.uniform(0.05, 2.0, size=(n_lam + 1, 7)).tolist(),
        "fraction_resampled": np.linspace(0.0, 1.0, n_lam).tolist(),
    }
    if kernel:
        seps = (0.0, 0.5, 1.0)
        res.update(kernel_separations=list(seps), momentum_cutoff=[None, *np.linspace(3, 1, n_lam - 1)],
                   kernel_empirical=rng.uniform(size=(n_lam, 3)).tolist(),
                   kernel_stderr=np.full((n_lam, 3), 0.01).tolist(),
                   kernel_predicted=rng.uniform(size=(n_lam, 3)).tolist())
    spectra = {"fisher_diagonal": np.abs(rng.normal(size=(members, 30))).tolist(),
               "fisher_eigenvalues": np.abs(rng.normal(size=(members, 10))).tolist()}
    return res, spectra


def _draws():
    res, spectra = _results()
    return [("plot_mse", lambda ax: plots.plot_mse(res, ax=ax)),
            ("plot_fisher_spectrum", lambda ax: plots.plot_fisher_spectrum(res, spectra, ax=ax)),
            ("plot_outputs_at_test_point", lambda ax: plots.plot_outputs_at_test_point(res, ax=ax)),
            ("plot_predictive_variance", lambda ax: plots.plot_predictive_variance(res, ax=ax)),
            ("plot_kernel_flow", lambda ax: plots.plot_kernel_flow(res, ax=ax))]


@pytest.mark.parametrize("name,draw", _draws(), ids=[n for n, _ in _draws()])
def test_every_figure_draws_on_the_given_axes_or_a_new_figure(name, draw):
    fig, ax = plt.subplots()
    assert draw(ax) is fig
    assert ax.lines or ax.collections or ax.patches
    plt.close(fig)
    new = draw(None)                              # ax=None: a new figure of its own
    assert new is not fig and new.axes
    plt.close(new)
    assert plt.get_fignums() == []


def _band_vertices_y(ax) -> np.ndarray:
    ys = [p.vertices[:, 1] for c in ax.collections if isinstance(c, PolyCollection) for p in c.get_paths()]
    return np.concatenate(ys) if ys else np.zeros(0)


def test_mse_lambda_c_is_prominent_and_labelled():
    res, _ = _results()
    fig, ax = plt.subplots()
    plots.plot_mse(res, ax=ax)
    lam_c = res["lambda_c"]
    vline = [ln for ln in ax.lines if "Lambda_C" in (ln.get_label() or "")]
    assert vline and vline[0].get_linewidth() >= 2.5 and np.allclose(vline[0].get_xdata(), lam_c)
    stars = [ln for ln in ax.lines if ln.get_marker() == "*"]
    assert stars and np.isclose(stars[0].get_xdata()[0], lam_c)
    assert any(f"Lambda_C = {lam_c:.3g}" in t.get_text() for t in ax.texts)   # the boxed label on the plot
    assert any("Lambda_C" in t.get_text() for t in ax.get_legend().get_texts())
    plt.close(fig)


@pytest.mark.parametrize("lam_c,expect", [(1e-3, r"\leq"), (None, "not reached")])
def test_mse_lambda_c_at_the_grid_edges(lam_c, expect):
    res, _ = _results()
    res.update(lambda_c=lam_c, lambda_c_at_grid_edge=True, lambda_c_ci=(None, None))
    fig = plots.plot_mse(res)
    legend = " ".join(t.get_text() for t in fig.axes[0].get_legend().get_texts())
    assert expect in legend
    plt.close(fig)


def test_mse_bands_are_clipped_to_one_floor_without_a_dip():
    res, _ = _results()
    n = len(res["lambdas"])
    q16 = np.array(res["mse_q16"])
    q16[3] = 0.0                                 # a lower quantile at 0 and a negative CI edge:
    ci = np.array(res["mse_mean_ci"])           # on a log axis these used to plunge off the plot
    ci[4, 0] = -0.5
    res.update(mse_q16=q16.tolist(), mse_mean_ci=ci.tolist())
    fig, ax = plt.subplots()
    plots.plot_mse(res, ax=ax)
    floor = ax.get_ylim()[0]
    assert floor > 0
    ys = _band_vertices_y(ax)
    assert ys.size and np.nanmin(ys) >= floor * (1 - 1e-12)  # every band vertex at or above the axis floor
    assert floor == pytest.approx(0.5 * min(v for v in [*q16, *ci.ravel(), *res["mse_median"]] if v > 0))
    assert n == len(ax.lines[0].get_xdata())
    plt.close(fig)


@pytest.mark.parametrize("members", [10, 40])
def test_outputs_are_a_strip_not_a_histogram(members):
    res, _ = _results(members=members)
    fig, ax = plt.subplots()
    plots.plot_outputs_at_test_point(res, ax=ax)
    assert not ax.patches                       # no histogram bars
    picks = plots._output_picks(len(res["lambdas"]))
    strips = [ln for ln in ax.lines if ln.get_marker() == "o" and ln.get_linestyle() == "None"]
    assert len(strips) == len(picks) and all(len(s.get_xdata()) == members for s in strips)
    violins = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert bool(violins) == (members >= plots.VIOLIN_MIN)
    assert ax.get_xticklabels()[0].get_text() == "trained"
    assert any(isinstance(c, ErrorbarContainer) for c in ax.containers)     # mu +- sigma
    plt.close(fig)


def test_outputs_accept_a_sequence_of_axes_and_go_symlog_for_wide_spreads():
    res, _ = _results()
    outs = np.array(res["outputs_at_test_point"])
    outs[-1] *= 1e4
    res["outputs_at_test_point"] = outs.tolist()
    fig, axes = plt.subplots(1, 2)
    assert plots.plot_outputs_at_test_point(res, ax=axes) is fig
    assert axes[0].get_yscale() == "symlog" and not axes[1].axison
    plt.close(fig)
    with pytest.raises(Unsupported, match="ax"):
        plots.plot_outputs_at_test_point(res, ax=[])


def test_predictive_variance_has_positive_chi2_error_bars():
    res, _ = _results(members=12)
    fig, ax = plt.subplots()
    plots.plot_predictive_variance(res, ax=ax)
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert bars and bars[0].has_yerr
    segs = np.concatenate([s for s in bars[0].lines[2][0].get_segments()])
    assert np.all(segs[:, 1] > 0)
    plt.close(fig)
    v = np.array([1.0, 4.0])
    lo, hi = plots.variance_interval(v, 10_001)  # large M: about v (1 -+ sqrt(2/M))
    np.testing.assert_allclose(lo, v * (1 - np.sqrt(2 / 10_000)), rtol=2e-3)
    np.testing.assert_allclose(hi, v * (1 + np.sqrt(2 / 10_000)), rtol=2e-3)
    lo, hi = plots.variance_interval(v, 3)
    assert np.all((0 < lo) & (lo < v) & (v < hi))
    assert np.isnan(plots.variance_interval(v, 1)[0]).all()


def test_kernel_flow_needs_the_kernel_comparison():
    res, _ = _results(kernel=False)
    with pytest.raises(Unsupported, match="results"):
        plots.plot_kernel_flow(res)


@pytest.mark.parametrize("kernel", [False, True])
def test_plot_results_writes_png_and_pdf_with_the_umask_mode(tmp_path, kernel):
    res, spectra = _results(kernel=kernel)
    old = os.umask(0o022)
    try:
        written = plots.plot_results(res, spectra, tmp_path)
    finally:
        os.umask(old)
    stems = set(NAMES) | ({"kernel_flow"} if kernel else set())
    assert {p.name for p in written} == {f"{s}.{fmt}" for s in stems for fmt in plots.FORMATS}
    for p in written:
        assert p.stat().st_size > 1000
        assert p.stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "mse_vs_lambda.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "mse_vs_lambda.pdf").read_bytes()[:5] == b"%PDF-"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # no temporaries left
    assert plt.get_fignums() == []              # no pyplot figure opened
    assert experiment.plot_results is plots.plot_results


def test_plot_results_honours_a_stricter_umask_and_replaces_files(tmp_path):
    res, spectra = _results(kernel=False)
    plots.plot_results(res, spectra, tmp_path)
    old = os.umask(0o077)
    try:
        written = plots.plot_results(res, spectra, tmp_path)     # existing files are replaced
    finally:
        os.umask(old)
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in written)


def test_without_matplotlib(monkeypatch, tmp_path):
    res, spectra = _results()
    monkeypatch.setitem(sys.modules, "matplotlib", None)          # import matplotlib -> ImportError
    assert plots.plot_results(res, spectra, tmp_path) == []
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(Unsupported, match="matplotlib"):
        plots.plot_mse(res)
