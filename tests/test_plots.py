"""The shell experiment's figures, one function per figure (symbrg.ensembles.plots)."""
import numpy as np
import pytest

from symbrg.core.errors import Unsupported
from symbrg.ensembles import experiment, plots

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _results(n_lam: int = 6, members: int = 20, kernel: bool = True) -> tuple[dict, dict]:
    rng = np.random.default_rng(0)
    lam = np.geomspace(1e-3, 1.0, n_lam)
    mse = np.linspace(0.1, 1.0, n_lam)
    res = {
        "preset": "test", "members_kept": members, "lambdas": lam.tolist(), "confidence": 0.95,
        "mse_q16": (0.8 * mse).tolist(), "mse_q84": (1.2 * mse).tolist(),
        "mse_median": mse.tolist(), "mse_mean": (1.1 * mse).tolist(),
        "mse_median_ci": np.c_[0.9 * mse, 1.1 * mse].tolist(), "mse_mean_ci": np.c_[mse, 1.2 * mse].tolist(),
        "mse_trained_median": 0.1, "mse_trained": 0.11, "lambda_c_statistic": "median",
        "lambda_c": float(lam[2]), "lambda_c_ci": (float(lam[1]), None), "rtol": 0.1,
        "lambda_c_at_grid_edge": True, "lambda_c_note": "widen the grid",
        "config": {"fisher_set": 20}, "outputs_at_test_point": rng.normal(size=(n_lam + 1, members)).tolist(),
        "y_test_point": 0.3, "test_point": [0.0, 1.0],
        "predictive_variance": np.linspace(0.1, 2.0, n_lam).tolist(), "predictive_variance_trained": 0.05,
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


@pytest.mark.parametrize("draw", [plots.plot_mse, plots.plot_predictive_variance, plots.plot_kernel_flow])
def test_each_figure_draws_on_the_given_axes(draw):
    res, _ = _results()
    fig, ax = plt.subplots()
    assert draw(res, ax=ax) is fig
    assert ax.lines or ax.collections
    plt.close(fig)


def test_fisher_spectrum_on_given_axes_and_new_figure():
    res, spectra = _results()
    fig, ax = plt.subplots()
    assert plots.plot_fisher_spectrum(res, spectra, ax=ax) is fig
    assert len(ax.patches) > 0                  # histogram bars
    plt.close(fig)
    new = plots.plot_fisher_spectrum(res, spectra)
    assert new is not fig and len(new.axes) == 1
    plt.close(new)


def test_outputs_at_test_point_panels():
    res, _ = _results()
    fig = plots.plot_outputs_at_test_point(res)     # trained + every cutoff of a short grid
    visible = [a for a in fig.axes if a.axison]
    assert len(visible) == 1 + len(res["lambdas"])
    assert visible[0].get_title().startswith("trained")
    plt.close(fig)
    fig, axes = plt.subplots(1, 2)
    with pytest.raises(Unsupported, match="ax"):
        plots.plot_outputs_at_test_point(res, ax=axes)
    plt.close(fig)


def test_kernel_flow_needs_the_kernel_comparison():
    res, _ = _results(kernel=False)
    with pytest.raises(Unsupported, match="results"):
        plots.plot_kernel_flow(res)


@pytest.mark.parametrize("kernel", [False, True])
def test_plot_results_writes_the_pngs(tmp_path, kernel):
    res, spectra = _results(kernel=kernel)
    written = plots.plot_results(res, spectra, tmp_path)
    names = {"mse_vs_lambda.png", "fisher_spectrum.png", "outputs_at_test_point.png",
             "predictive_variance.png"} | ({"kernel_flow.png"} if kernel else set())
    assert {p.name for p in written} == names
    assert all((tmp_path / n).stat().st_size > 1000 for n in names)
    assert plt.get_fignums() == []              # every figure closed
    assert experiment.plot_results is plots.plot_results
