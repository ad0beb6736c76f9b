r"""Figures of the shell experiment (:func:`symbrg.ensembles.experiment.run_shell_experiment`), one
function per figure.

Each ``plot_*`` function draws one figure from the experiment's ``results`` (and ``spectra``)
dictionaries onto ``ax`` (a new figure when ``ax`` is None) and returns the
:class:`matplotlib.figure.Figure`.  The quantities drawn are the experiment's: the test loss
:math:`\mathrm{MSE}(\Lambda)` of the coarse-grained ensemble against the information cutoff
:math:`\Lambda`, the Fisher spectrum :math:`\{\lambda\}` with the cutoffs, the output law
:math:`f(x_*)` per cutoff with its Gaussian fit :math:`\mathcal N(\mu, \sigma^2)`, the predictive
variance, and for the cos-net the two-point function against the coarse-grained propagator
:math:`G_{k(\Lambda)}(|x-y|)`.  :func:`plot_results` writes them all as PNG files.

matplotlib is optional (the ``plot`` extra): :func:`plot_results` writes nothing without it, the
``plot_*`` functions raise :class:`~symbrg.core.errors.Unsupported`.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from symbrg.core import checks
from symbrg.core.errors import Unsupported

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_fisher_spectrum", "plot_kernel_flow", "plot_mse", "plot_outputs_at_test_point",
           "plot_predictive_variance", "plot_results"]

Results = Mapping[str, Any]


def _pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend; :class:`Unsupported` when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        raise Unsupported("matplotlib", "the figures need matplotlib (pip install 'symbrg[plot]')") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> Axes:
    return _pyplot().subplots(figsize=figsize)[1] if ax is None else ax


def _figure(ax: Axes) -> Figure:
    """The figure ``ax`` belongs to (the root figure when ``ax`` sits in a subfigure)."""
    from matplotlib.figure import Figure
    fig = ax.figure
    return fig if isinstance(fig, Figure) else fig.figure


def _title(results: Results) -> str:
    return f"{results['preset']} preset, {results['members_kept']} members"


def plot_mse(results: Results, *, ax: Axes | None = None) -> Figure:
    r"""Median and mean test MSE against the cutoff :math:`\Lambda` with their bootstrap bands, the
    members' 16-84% band, the trained loss, and :math:`\Lambda_C` with its interval (and the
    grid-edge note)."""
    ax = _axes(ax, (6.4, 4.6))
    lam = np.asarray(results["lambdas"])
    ax.fill_between(lam, results["mse_q16"], results["mse_q84"], color="0.6", alpha=0.18,
                    label="members, 16-84% quantiles")
    conf = f"{results['confidence']:.0%}"
    for key, color, marker in (("median", "C0", "o"), ("mean", "C1", "s")):
        ci = np.asarray(results[f"mse_{key}_ci"])
        ax.fill_between(lam, ci[:, 0], ci[:, 1], color=color, alpha=0.3)
        ax.plot(lam, results[f"mse_{key}"], marker + "-", color=color, ms=3.5,
                label=f"{key} test MSE, {conf} bootstrap band")
    trained = results["mse_trained_median" if results["lambda_c_statistic"] == "median" else "mse_trained"]
    ax.axhline(trained, color="k", ls="--", lw=1, label=f"trained {results['lambda_c_statistic']} (no RG)")
    lam_c, (c_lo, c_hi) = results["lambda_c"], results["lambda_c_ci"]
    if c_lo is not None:
        ax.axvspan(c_lo, c_hi if c_hi is not None else lam[-1], color="C3", alpha=0.12,
                   label=fr"$\Lambda_C$ {conf} interval")
    if lam_c is not None:
        ax.axvline(lam_c, color="C3", ls="-", lw=2.5,
                   label=fr"$\Lambda_C$ = {lam_c:.3g} ({results['lambda_c_statistic']}, rtol {results['rtol']:g})")
    if results["lambda_c_at_grid_edge"]:
        ax.text(0.5, 0.02, "Λ_C at the grid edge: " + results["lambda_c_note"], transform=ax.transAxes,
                ha="center", va="bottom", fontsize=7, color="C3", wrap=True,
                bbox=dict(boxstyle="round", fc="white", ec="C3", alpha=0.9))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"Fisher cutoff $\Lambda$")
    ax.set_ylabel("test MSE")
    ax.set_title(f"Information-shell RG: test loss ({_title(results)})", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3, which="both", lw=0.5)
    return _figure(ax)


def plot_fisher_spectrum(results: Results, spectra: Results, *, ax: Axes | None = None) -> Figure:
    r"""The Fisher spectrum: diagonal entries :math:`I_{AA}` and nonzero eigenvalues of :math:`I`, counts
    per member on shared logarithmic bins, with the cutoffs :math:`\Lambda` dotted."""
    ax = _axes(ax, (6.4, 4.2))
    diag = np.asarray(spectra["fisher_diagonal"], dtype=float)
    eig = np.asarray(spectra["fisher_eigenvalues"], dtype=float)
    eig = eig[eig > 1e-12 * max(eig.max(initial=0), 1e-300)]
    pos = diag[diag > 0]
    both = np.concatenate([pos, eig])
    if both.size:
        bins = np.geomspace(max(both.min(), 1e-12 * both.max()), both.max() * 1.01, 60).tolist()
        ax.hist(np.clip(pos, bins[0], None), bins=bins, color="C0", alpha=0.6,
                weights=np.full(pos.size, diag.shape[0] and 1.0 / diag.shape[0]),
                label=fr"diagonal entries $I_{{AA}}$ ({np.mean(diag == 0):.0%} are exactly 0)")
        if eig.size:
            members_eig = max(1, np.asarray(spectra["fisher_eigenvalues"]).shape[0])
            ax.hist(np.clip(eig, bins[0], None), bins=bins, color="C1", alpha=0.6,
                    weights=np.full(eig.size, 1.0 / members_eig), label="nonzero eigenvalues of $I$")
    for v in np.asarray(results["lambdas"]):
        ax.axvline(v, color="0.55", lw=0.6, ls=":", zorder=0)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"Fisher sensitivity $\lambda$ (dotted: the cutoffs $\Lambda$)")
    ax.set_ylabel("count per member")
    ax.set_title(f"Fisher spectrum, {results['config']['fisher_set']} Fisher inputs ({_title(results)})",
                 fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    return _figure(ax)


def _output_picks(n_lambdas: int) -> list[int]:
    """Row 0 (trained) and up to 11 cutoffs spread over the grid (rows 1..n_lambdas)."""
    return [0, *(int(k) for k in np.unique(np.linspace(1, n_lambdas, 11).round().astype(int)))]


def plot_outputs_at_test_point(results: Results, *, ax: Sequence[Axes] | np.ndarray | None = None) -> Figure:
    r"""Histograms of the ensemble's outputs :math:`f(x_*)` at the test point, trained and at up to 11
    cutoffs, each with its Gaussian fit :math:`\mathcal N(\mu, \sigma^2)` and the target (dashed).
    ``ax``: at least 12 axes (one per panel; the rest are switched off), or None for a 4-column grid."""
    lam = np.asarray(results["lambdas"])
    outs = np.asarray(results["outputs_at_test_point"], dtype=float)   # (n_lam + 1, M)
    picks = _output_picks(lam.size)
    if ax is None:
        cols = 4
        rows = math.ceil(len(picks) / cols)
        fig, grid_axes = _pyplot().subplots(rows, cols, figsize=(3.0 * cols, 2.3 * rows), squeeze=False)
        axes = list(grid_axes.ravel())
    else:
        axes = list(np.ravel(np.asarray(ax, dtype=object)))
        if len(axes) < len(picks):
            raise Unsupported("ax", f"{len(picks)} panels need {len(picks)} axes, got {len(axes)}")
        fig = axes[0].figure
    y_star = results.get("y_test_point")
    for a, k in zip(axes, picks):
        vals = outs[k][np.isfinite(outs[k])]
        mu, sd = float(np.mean(vals)), float(np.std(vals, ddof=1)) if vals.size > 1 else 0.0
        lo, hi = np.quantile(vals, [0.005, 0.995])
        if y_star is not None:
            lo, hi = min(lo, y_star), max(hi, y_star)
        span = max(hi - lo, 1e-9)
        lo, hi = lo - 0.1 * span, hi + 0.1 * span
        grid = np.linspace(lo, hi, 300)
        a.hist(np.clip(vals, lo, hi), bins=25, range=(lo, hi), density=True, color="C0", alpha=0.55)
        if sd > 0:
            a.plot(grid, np.exp(-0.5 * ((grid - mu) / sd) ** 2) / (sd * math.sqrt(2 * math.pi)),
                   color="C3", lw=1.3)
        if y_star is not None:
            a.axvline(y_star, color="k", ls="--", lw=1)
        label = "trained" if k == 0 else fr"$\Lambda$ = {lam[k - 1]:g}"
        a.set_title(f"{label}: μ={mu:.3g}, σ={sd:.3g}", fontsize=8)
        a.tick_params(labelsize=7)
        a.set_yticks([])
    for a in axes[len(picks):]:
        a.axis("off")
    fig.suptitle(f"Ensemble outputs at test point {results['test_point']} with Gaussian fits "
                 f"(dashed: target; {_title(results)})", fontsize=10)
    return fig


def plot_predictive_variance(results: Results, *, ax: Axes | None = None) -> Figure:
    r"""The predictive variance (mean over test points) against :math:`\Lambda`, and on a twin axis
    the fraction of parameters that are sloppy at each cutoff."""
    ax1 = _axes(ax, (6.4, 4.2))
    lam = np.asarray(results["lambdas"])
    ax1.plot(lam, results["predictive_variance"], "o-", ms=3.5, color="C2",
             label="predictive variance (mean over test points)")
    ax1.axhline(results["predictive_variance_trained"], color="C2", ls="--", lw=1, label="trained")
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel(r"Fisher cutoff $\Lambda$")
    ax1.set_ylabel("predictive variance", color="C2")
    ax2 = ax1.twinx()
    ax2.plot(lam, results["fraction_resampled"], "s-", ms=3, color="C4", alpha=0.8,
             label="fraction of parameters sloppy")
    ax2.set_ylim(-0.02, 1.02)
    ax2.set_ylabel("fraction sloppy", color="C4")
    lines = ax1.get_legend_handles_labels()
    more = ax2.get_legend_handles_labels()
    ax1.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="upper left")
    ax1.grid(alpha=0.3, which="both", lw=0.5)
    ax1.set_title(f"Predictive variance under coarse graining ({_title(results)})", fontsize=10)
    return _figure(ax1)


def plot_kernel_flow(results: Results, *, ax: Axes | None = None) -> Figure:
    r"""Cos-net runs: the shell-removed ensemble's two-point function :math:`\langle f(x)f(y)\rangle`
    (±2 standard errors) against the exact stiff-sector kernel for the run's Gaussian inputs (solid,
    ``CosNet.brg_kernel``) and the broad-input propagator :math:`G_{k(\Lambda)}(|x-y|)` (dashed), with the
    momentum cutoff :math:`k(\Lambda)`, :math:`I(k) = \Lambda`, on the top axis."""
    if "kernel_empirical" not in results:
        raise Unsupported("results", "no kernel comparison in these results (the cosnet preset has one)")
    ax = _axes(ax, (8.0, 4.2))
    lam = np.asarray(results["lambdas"])
    k = np.array([np.nan if v is None else v for v in results["momentum_cutoff"]], dtype=float)
    emp, se = np.asarray(results["kernel_empirical"]), np.asarray(results["kernel_stderr"])
    pred = np.asarray(results["kernel_predicted"])
    broad = np.asarray(results.get("kernel_predicted_broad_inputs", np.full_like(pred, np.nan)))
    for j, r in enumerate(results["kernel_separations"]):
        ax.plot(lam, pred[:, j], "-", color=f"C{j}", lw=1.3)
        ax.plot(lam, broad[:, j], "--", color=f"C{j}", lw=0.8, alpha=0.7)
        ax.errorbar(lam, emp[:, j], yerr=2 * se[:, j], fmt="o", ms=3, color=f"C{j}", capsize=2,
                    label=f"|x - y| = {r:g}")
    ax.set_xscale("log")
    ax.set_xlabel(r"Fisher cutoff $\Lambda$")
    ax.set_ylabel(r"$\langle f(x) f(y)\rangle$ after removing the sloppy shell")
    top = ax.secondary_xaxis("top", functions=(lambda v: v, lambda v: v))
    labels: dict[str, int] = {}
    for i in range(len(lam)):
        if np.isfinite(k[i]):
            labels.setdefault(f"{k[i]:.2g}", i)
    ticks = sorted(labels.values())[::2]
    top.set_xticks(lam[ticks])
    top.set_xticklabels([f"{k[i]:.2g}" for i in ticks], fontsize=7)
    top.set_xlabel(r"momentum cutoff $k(\Lambda)$ ($I(k) = \Lambda$)", fontsize=8)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), title_fontsize=8,
              title="points: ensemble ±2 s.e.\nsolid: exact, Gaussian\ninputs (brg_kernel)\n"
                    r"dashed: broad inputs, $G_{k(\Lambda)}$")
    ax.grid(alpha=0.3, lw=0.5)
    ax.set_title(f"Information shells are momentum shells ({_title(results)})", fontsize=10)
    return _figure(ax)


def plot_results(results: Results, spectra: Results, out_dir: str | Path) -> list[Path]:
    """Write the experiment's figures as PNG files in ``out_dir`` and return their paths:
    ``mse_vs_lambda.png`` (:func:`plot_mse`), ``fisher_spectrum.png`` (:func:`plot_fisher_spectrum`),
    ``outputs_at_test_point.png`` (:func:`plot_outputs_at_test_point`), ``predictive_variance.png``
    (:func:`plot_predictive_variance`) and, for cos-net runs, ``kernel_flow.png``
    (:func:`plot_kernel_flow`).  Nothing is written (an empty list) when matplotlib is missing."""
    try:
        plt = _pyplot()
    except Unsupported:  # pragma: no cover - matplotlib is optional
        return []
    out_dir = Path(out_dir)
    figures: list[tuple[str, Callable[[], Figure]]] = [
        ("mse_vs_lambda.png", lambda: plot_mse(results)),
        ("fisher_spectrum.png", lambda: plot_fisher_spectrum(results, spectra)),
        ("outputs_at_test_point.png", lambda: plot_outputs_at_test_point(results)),
        ("predictive_variance.png", lambda: plot_predictive_variance(results)),
    ]
    if "kernel_empirical" in results:
        figures.append(("kernel_flow.png", lambda: plot_kernel_flow(results)))
    written = []
    for name, draw in figures:
        fig = draw()
        path = out_dir / name
        fig.tight_layout()
        with checks.atomic_write(path, force=True, mode="wb") as fh:
            fig.savefig(fh, format="png", dpi=130)
        plt.close(fig)
        written.append(path)
    return written
