r"""Figures of the shell experiment (:func:`symbrg.ensembles.experiment.run_shell_experiment`), one
function per figure.

Each ``plot_*`` function draws one figure from the experiment's ``results`` (and ``spectra``)
dictionaries onto ``ax`` (a matplotlib Axes; a new pyplot figure when ``ax`` is None) and returns the
:class:`matplotlib.figure.Figure` it drew on.  The quantities drawn are the experiment's: the test
loss :math:`\mathrm{MSE}(\Lambda)` of the coarse-grained ensemble against the information cutoff
:math:`\Lambda` with the critical cutoff :math:`\Lambda_C`, the Fisher spectrum :math:`\{\lambda\}`
with the cutoffs, the output law :math:`f(x_*)` per cutoff (every member as a point, with
:math:`\mu \pm \sigma`), the predictive variance with its sampling interval, and for the cos-net the
two-point function against the coarse-grained propagator :math:`G_{k(\Lambda)}(|x-y|)`.
:func:`plot_results` writes them all as PNG and PDF files.

Conventions that keep the figures honest:

* **Log axes, one floor.**  On a logarithmic axis a band whose lower edge is :math:`\le 0` would be
  cut by matplotlib at an arbitrary point and draw a spurious dip.  Every band and curve of a figure
  is clipped to one floor (half the smallest positive value drawn) and the axis starts at that floor,
  so a band that reaches the bottom edge means "unbounded below", the same everywhere.
* **Few samples are shown as samples.**  The ensemble's outputs are drawn as a strip of points
  (a violin behind them only from :data:`VIOLIN_MIN` members on), never as a histogram.
* **Intervals state their model.**  The predictive variance carries the :math:`\chi^2` interval of a
  variance estimated from :math:`M` Gaussian samples, :math:`[(M-1)s^2/\chi^2_{M-1}(1-\alpha/2),
  (M-1)s^2/\chi^2_{M-1}(\alpha/2)]` at 68% (one standard error), positive by construction.

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

    from symbrg.core.types import ArrayLike
    from symbrg.cosnet.theory import CosNet

__all__ = ["plot_fisher_spectrum", "plot_kernel_flow", "plot_mse", "plot_outputs_at_test_point",
           "plot_predictive_variance", "plot_results", "variance_interval", "FORMATS", "VIOLIN_MIN",
           "plot_four_point_flow"]

Results = Mapping[str, Any]

#: The file formats :func:`plot_results` writes, each figure once per format.
FORMATS = ("png", "pdf")
#: From this many members on, the output strips get a violin (a kernel density) behind the points.
VIOLIN_MIN = 20
#: When the largest spread of the outputs exceeds the smallest by this factor the output axis is symmetric-log.
SYMLOG_RATIO = 20.0
#: Default figure sizes (inches) of the figures, by function name.
_SIZES = {"plot_mse": (6.4, 4.6), "plot_fisher_spectrum": (6.4, 4.2),
          "plot_outputs_at_test_point": (8.0, 4.4), "plot_predictive_variance": (6.4, 4.2),
          "plot_kernel_flow": (8.0, 4.2), "plot_four_point_flow": (7.2, 4.4)}
_LAMBDA_C_COLOR = "#c0392b"


def _matplotlib() -> Any:
    """The matplotlib module; :class:`Unsupported` when it is missing."""
    try:
        import matplotlib
    except ImportError:
        raise Unsupported("matplotlib", "the figures need matplotlib (pip install 'symbrg[plot]')") from None
    return matplotlib


def _pyplot() -> Any:
    """matplotlib.pyplot (on whatever backend is configured: Agg when there is no display)."""
    _matplotlib()
    import matplotlib.pyplot as plt
    return plt


def _axes(ax: Axes | None, name: str) -> Axes:
    """``ax``, or the axes of a new pyplot figure of the default size of the figure ``name``."""
    return _pyplot().subplots(figsize=_SIZES[name])[1] if ax is None else ax


def _figure(ax: Axes) -> Figure:
    """The figure ``ax`` belongs to (the root figure when ``ax`` sits in a subfigure)."""
    from matplotlib.figure import Figure
    fig = ax.figure
    return fig if isinstance(fig, Figure) else fig.figure


def _title(results: Results) -> str:
    return f"{results['preset']} preset, {results['members_kept']} members"


def _floor(*values: Any) -> float:
    """Half the smallest positive finite value among ``values`` (the log-axis floor of a figure)."""
    flat = np.concatenate([np.ravel(np.asarray(v, dtype=float)) for v in values])
    pos = flat[np.isfinite(flat) & (flat > 0)]
    return 0.5 * float(pos.min()) if pos.size else 1e-300


def _clip(values: Any, floor: float) -> np.ndarray:
    """``values`` as floats with everything below ``floor`` (zero and negatives included) at ``floor``;
    NaN stays NaN (a gap, never a dip)."""
    v = np.asarray(values, dtype=float)
    return np.where(np.isnan(v), np.nan, np.maximum(v, floor))


def _interval(ci: Any, n: int) -> np.ndarray:
    """A list of ``[lo, hi]`` pairs as an ``(n, 2)`` float array (None becomes NaN)."""
    a = np.array([[np.nan if v is None else v for v in pair] for pair in ci], dtype=float)
    return a.reshape(n, 2) if a.size else np.full((n, 2), np.nan)


# ------------------------------------------------------------------------------ test loss and Λ_C
def plot_mse(results: Results, *, ax: Axes | None = None) -> Figure:
    r"""Median and mean test MSE against the cutoff :math:`\Lambda` with their bootstrap bands, the
    members' 16-84% band, the trained value with its band, and the critical cutoff
    :math:`\Lambda_C`: a thick labelled line, a star on the curve it is read from, its bootstrap
    interval hatched, and ":math:`\le`" / ":math:`>`" when it sits at an edge of the grid.

    Every band is clipped to one floor (module docstring), so none makes a spurious dip."""
    ax = _axes(ax, "plot_mse")
    lam = np.asarray(results["lambdas"], dtype=float)
    n = lam.size
    conf = f"{results['confidence']:.0%}"
    stat = results["lambda_c_statistic"]
    cis = {key: _interval(results[f"mse_{key}_ci"], n) for key in ("median", "mean")}
    trained = results["mse_trained_median" if stat == "median" else "mse_trained"]
    trained_ci = results.get(f"mse_trained_{stat}_ci")
    floor = _floor(results["mse_q16"], results["mse_q84"], results["mse_median"], results["mse_mean"],
                   cis["median"], cis["mean"], [trained])
    ax.fill_between(lam, _clip(results["mse_q16"], floor), _clip(results["mse_q84"], floor), color="0.6",
                    alpha=0.18, lw=0, label="members, 16-84% quantiles")
    for key, color, marker in (("median", "C0", "o"), ("mean", "C1", "s")):
        ax.fill_between(lam, _clip(cis[key][:, 0], floor), _clip(cis[key][:, 1], floor), color=color,
                        alpha=0.25, lw=0)
        ax.plot(lam, _clip(results[f"mse_{key}"], floor), marker + "-", color=color, ms=3.5,
                label=f"{key} test MSE, {conf} bootstrap band")
    ax.axhline(trained, color="k", ls="--", lw=1, label=f"trained {stat} (no RG)")
    if trained_ci is not None and None not in trained_ci:
        ax.axhspan(max(trained_ci[0], floor), trained_ci[1], color="k", alpha=0.06, lw=0)
    _draw_lambda_c(ax, results, lam, conf, floor)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(bottom=floor)
    ax.set_xlabel(r"Fisher cutoff $\Lambda$")
    ax.set_ylabel("test MSE")
    ax.set_title(f"Information-shell RG: test loss ({_title(results)})", fontsize=10)
    ax.legend(fontsize=7, loc="lower right", framealpha=0.9)   # the loss rises with Λ: lower right is free
    ax.grid(alpha=0.3, which="both", lw=0.5)
    return _figure(ax)


def _draw_lambda_c(ax: Axes, results: Results, lam: np.ndarray, conf: str, floor: float) -> None:
    r""":math:`\Lambda_C`: its interval (hatched), a thick line with a boxed label, a star on the curve."""
    lam_c = results["lambda_c"]
    c_lo, c_hi = results["lambda_c_ci"]
    stat = results["lambda_c_statistic"]
    if c_lo is not None:
        ax.axvspan(c_lo, c_hi if c_hi is not None else lam[-1], facecolor=_LAMBDA_C_COLOR, alpha=0.10,
                   edgecolor=_LAMBDA_C_COLOR, hatch="//", lw=0.8,
                   label=fr"$\Lambda_C$ {conf} bootstrap interval" + ("" if c_hi is not None else " (open)"))
    if lam_c is None:      # not reached on the grid: say so in the legend, mark the grid's end
        ax.axvline(lam[-1], color=_LAMBDA_C_COLOR, ls=":", lw=2.5, zorder=6,
                   label=fr"$\Lambda_C > {lam[-1]:.3g}$: not reached on the grid")
        return
    edge = bool(results.get("lambda_c_at_grid_edge"))
    relation = r"\leq" if edge and math.isclose(lam_c, lam[0]) else "="
    text = fr"$\Lambda_C {relation} {lam_c:.3g}$"
    ax.axvline(lam_c, color=_LAMBDA_C_COLOR, ls="-", lw=3, zorder=6,
               label=text + f" ({stat}, rtol {results['rtol']:g})" + (": grid edge" if edge else ""))
    k = int(np.argmin(np.abs(np.log(lam / lam_c))))
    y = max(float(np.asarray(results[f"mse_{stat}"], dtype=float)[k]), floor)
    ax.plot([lam_c], [y], marker="*", ms=16, color=_LAMBDA_C_COLOR, mec="k", mew=0.8, zorder=7)
    ax.annotate(text + ("\n(grid edge)" if edge else ""), xy=(lam_c, 0.97), xycoords=("data", "axes fraction"),
                xytext=(6, 0), textcoords="offset points", ha="left", va="top", fontsize=9,
                color=_LAMBDA_C_COLOR, fontweight="bold", zorder=8,
                bbox=dict(boxstyle="round,pad=0.25", fc="white", ec=_LAMBDA_C_COLOR, alpha=0.95))


# ------------------------------------------------------------------------------ Fisher spectrum
def plot_fisher_spectrum(results: Results, spectra: Results, *, ax: Axes | None = None) -> Figure:
    r"""The Fisher spectrum: diagonal entries :math:`I_{AA}` and nonzero eigenvalues of :math:`I`, counts
    per member on shared logarithmic bins (values below the first bin are counted in it), with the
    cutoffs :math:`\Lambda` dotted and :math:`\Lambda_C` drawn as in :func:`plot_mse`."""
    ax = _axes(ax, "plot_fisher_spectrum")
    diag = np.asarray(spectra["fisher_diagonal"], dtype=float)
    eig_all = np.asarray(spectra["fisher_eigenvalues"], dtype=float)
    eig = eig_all[eig_all > 1e-12 * max(eig_all.max(initial=0), 1e-300)]
    pos = diag[diag > 0]
    both = np.concatenate([pos, eig])
    if both.size:
        bins = np.geomspace(max(both.min(), 1e-12 * both.max()), both.max() * 1.01, 60).tolist()
        members = max(1, diag.shape[0]) if diag.ndim > 1 else 1
        ax.hist(np.clip(pos, bins[0], None), bins=bins, color="C0", alpha=0.6,
                weights=np.full(pos.size, 1.0 / members),
                label=fr"diagonal entries $I_{{AA}}$ ({np.mean(diag == 0):.0%} are exactly 0)")
        if eig.size:
            members_eig = max(1, eig_all.shape[0]) if eig_all.ndim > 1 else 1
            ax.hist(np.clip(eig, bins[0], None), bins=bins, color="C1", alpha=0.6,
                    weights=np.full(eig.size, 1.0 / members_eig), label="nonzero eigenvalues of $I$")
    for v in np.asarray(results["lambdas"]):
        ax.axvline(v, color="0.55", lw=0.6, ls=":", zorder=0)
    if results.get("lambda_c") is not None:
        ax.axvline(results["lambda_c"], color=_LAMBDA_C_COLOR, lw=2.5, zorder=5,
                   label=fr"$\Lambda_C = {results['lambda_c']:.3g}$")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"Fisher sensitivity $\lambda$ (dotted: the cutoffs $\Lambda$)")
    ax.set_ylabel("count per member")
    ax.set_title(f"Fisher spectrum, {results['config']['fisher_set']} Fisher inputs ({_title(results)})",
                 fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    return _figure(ax)


# ------------------------------------------------------------------------------ outputs at the test point
def _output_picks(n_lambdas: int) -> list[int]:
    """Row 0 (trained) and up to 11 cutoffs spread over the grid (rows 1..n_lambdas)."""
    return [0, *(int(k) for k in np.unique(np.linspace(1, n_lambdas, 11).round().astype(int)))]


def _single_axes(ax: Axes | Sequence[Axes] | np.ndarray | None, name: str) -> Axes:
    """One Axes from ``ax``: an Axes, or the first of a sequence (the others are switched off; the
    panel-grid signature of earlier versions)."""
    if ax is None or not isinstance(ax, (Sequence, np.ndarray)):
        return _axes(ax, name)
    axes = list(np.ravel(np.asarray(ax, dtype=object)))
    if not axes:
        raise Unsupported("ax", "an empty sequence of axes")
    for extra in axes[1:]:
        extra.axis("off")
    return axes[0]


def plot_outputs_at_test_point(results: Results, *,
                               ax: Axes | Sequence[Axes] | np.ndarray | None = None) -> Figure:
    r"""The ensemble's outputs :math:`f(x_*)` at the test point, trained and at up to 11 cutoffs: one
    column per cutoff with every member as a point (jittered), a violin behind the points from
    :data:`VIOLIN_MIN` members on, the sample mean :math:`\mu \pm \sigma` beside it and the target
    (dashed).  When the spreads differ by more than :data:`SYMLOG_RATIO` the output axis is symmetric-log,
    linear within the power of ten above the trained spread.  ``ax``: one Axes (or a sequence, of which the first is used)."""
    ax1 = _single_axes(ax, "plot_outputs_at_test_point")
    lam = np.asarray(results["lambdas"], dtype=float)
    outs = np.asarray(results["outputs_at_test_point"], dtype=float)   # (n_lam + 1, M)
    picks = _output_picks(lam.size)
    y_star = results.get("y_test_point")
    rng = np.random.default_rng(0)
    columns = [outs[k][np.isfinite(outs[k])] for k in picks]
    spreads = [float(np.std(v, ddof=1)) if v.size > 1 else 0.0 for v in columns]
    for pos, vals in enumerate(columns):
        if vals.size >= VIOLIN_MIN and np.ptp(vals) > 0:
            parts: Any = ax1.violinplot([vals], positions=[pos], widths=0.7, showextrema=False)
            for body in parts["bodies"]:
                body.set_facecolor("C0")
                body.set_alpha(0.2)
        jitter = rng.uniform(-0.18, 0.18, vals.size)
        ax1.plot(pos + jitter, vals, "o", ms=3, color="C0", alpha=0.6 if vals.size < 200 else 0.25,
                 mew=0, label="members" if pos == 0 else None)
        if vals.size:
            ax1.errorbar([pos + 0.3], [float(np.mean(vals))], yerr=[spreads[pos]], fmt="D", ms=4, color="C3",
                         capsize=3, lw=1.2, label=r"mean $\mu \pm \sigma$" if pos == 0 else None)
    if y_star is not None:
        ax1.axhline(y_star, color="k", ls="--", lw=1, label="target $y(x_*)$")
    positive = [s for s in spreads if s > 0]
    if positive and max(positive) > SYMLOG_RATIO * min(positive):
        base = spreads[0] if spreads[0] > 0 else min(positive)
        linthresh = 10.0 ** math.ceil(math.log10(base))    # a power of ten: readable ticks
        ax1.set_yscale("symlog", linthresh=linthresh, linscale=2.0)
        ax1.set_ylabel(fr"$f(x_*)$ (symmetric log, linear within $\pm${linthresh:g})")
    else:
        ax1.set_ylabel(r"$f(x_*)$")
    ax1.set_xticks(range(len(picks)))
    ax1.set_xticklabels(["trained"] + [f"{lam[k - 1]:.2g}" for k in picks[1:]], fontsize=8, rotation=45)
    ax1.set_xlim(-0.6, len(picks) - 0.3)
    ax1.set_xlabel(r"Fisher cutoff $\Lambda$")
    ax1.grid(alpha=0.3, axis="y", lw=0.5)
    ax1.legend(fontsize=8, loc="upper left")
    ax1.set_title(f"Ensemble outputs at test point {results['test_point']} ({_title(results)})", fontsize=10)
    return _figure(ax1)


# ------------------------------------------------------------------------------ predictive variance
def variance_interval(variance: Any, members: int, level: float = 0.6827) -> tuple[np.ndarray, np.ndarray]:
    r"""The ``level`` (default 68%) :math:`\chi^2` interval of a variance estimated from ``members``
    Gaussian samples: :math:`[(M-1)s^2/\chi^2_{M-1}(\tfrac{1+\ell}2),\ (M-1)s^2/\chi^2_{M-1}(\tfrac{1-\ell}2)]`.
    Positive wherever :math:`s^2 > 0`; NaN for fewer than 2 members."""
    from scipy.stats import chi2
    v = np.asarray(variance, dtype=float)
    if members < 2:
        return np.full_like(v, np.nan), np.full_like(v, np.nan)
    dof = members - 1
    return dof * v / chi2.ppf(0.5 + level / 2, dof), dof * v / chi2.ppf(0.5 - level / 2, dof)


def plot_predictive_variance(results: Results, *, ax: Axes | None = None) -> Figure:
    r"""The predictive variance (mean over test points) against :math:`\Lambda` with error bars (the 68%
    :math:`\chi^2` interval of a variance from the kept members, :func:`variance_interval`), its spread
    over the test points (16-84%, shaded), the trained value with its interval, and on a twin axis the
    fraction of parameters that are sloppy at each cutoff."""
    ax1 = _axes(ax, "plot_predictive_variance")
    lam = np.asarray(results["lambdas"], dtype=float)
    var = np.asarray(results["predictive_variance"], dtype=float)
    members = int(results["members_kept"])
    lo, hi = variance_interval(var, members)
    t_lo, t_hi = variance_interval(results["predictive_variance_trained"], members)
    per_point = results.get("predictive_variance_test")
    q = None
    if per_point is not None and len(per_point) == lam.size + 1:
        q = np.quantile(np.asarray(per_point, dtype=float)[1:], [0.16, 0.84], axis=1)
    floor = _floor(var, lo, hi, [results["predictive_variance_trained"]], *(() if q is None else (q,)))
    if q is not None:
        ax1.fill_between(lam, _clip(q[0], floor), _clip(q[1], floor), color="C2", alpha=0.15, lw=0,
                         label="spread over test points (16-84%)")
    v = _clip(var, floor)
    yerr = np.abs(np.vstack([v - _clip(lo, floor), _clip(hi, floor) - v]))
    ax1.errorbar(lam, v, yerr=None if np.isnan(yerr).all() else yerr, fmt="o-", ms=3.5, color="C2",
                 capsize=2.5, lw=1.3,
                 label=f"predictive variance (mean over test points), 68% χ² interval, M = {members}")
    ax1.axhline(results["predictive_variance_trained"], color="C2", ls="--", lw=1, label="trained")
    if np.isfinite(t_lo) and np.isfinite(t_hi):
        ax1.axhspan(max(float(t_lo), floor), float(t_hi), color="C2", alpha=0.08, lw=0)
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_ylim(bottom=floor)
    ax1.set_xlabel(r"Fisher cutoff $\Lambda$")
    ax1.set_ylabel("predictive variance", color="C2")
    ax2 = ax1.twinx()
    ax2.plot(lam, results["fraction_resampled"], "s-", ms=3, color="C4", alpha=0.8,
             label="fraction of parameters sloppy")
    ax2.set_ylim(-0.02, 1.02)
    ax2.set_ylabel("fraction sloppy", color="C4")
    lines = ax1.get_legend_handles_labels()
    more = ax2.get_legend_handles_labels()
    ax1.legend(lines[0] + more[0], lines[1] + more[1], fontsize=7, loc="lower right", framealpha=0.9)
    ax1.grid(alpha=0.3, which="both", lw=0.5)
    ax1.set_title(f"Predictive variance under coarse graining ({_title(results)})", fontsize=10)
    return _figure(ax1)


# ------------------------------------------------------------------------------ cos-net kernel flow
def plot_kernel_flow(results: Results, *, ax: Axes | None = None) -> Figure:
    r"""Cos-net runs: the shell-removed ensemble's two-point function :math:`\langle f(x)f(y)\rangle`
    (±2 standard errors) against the exact stiff-sector kernel for the run's Gaussian inputs (solid,
    ``CosNet.brg_kernel``) and the broad-input propagator :math:`G_{k(\Lambda)}(|x-y|)` (dashed), with the
    momentum cutoff :math:`k(\Lambda)`, :math:`I(k) = \Lambda`, on the top axis."""
    if "kernel_empirical" not in results:
        raise Unsupported("results", "no kernel comparison in these results (the cosnet preset has one)")
    ax = _axes(ax, "plot_kernel_flow")
    lam = np.asarray(results["lambdas"], dtype=float)
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


# ------------------------------------------------------------------------------ cos-net four-point flow
def plot_four_point_flow(net: CosNet, X: ArrayLike, widths: Sequence[int] = (4, 8, 16, 32, 64),
                         ks: ArrayLike | None = None, *, ax: Axes | None = None) -> Figure:
    r"""The connected four-point function :math:`\kappa_4(x_1,\dots,x_4)` of a cos-net against the momentum
    cutoff :math:`k` for several widths :math:`N` (:func:`symbrg.cosnet.four_point.connected_four_point`):

    .. math::  \kappa_4 = \frac1N\Big[\mathbb E[a^4]\,\mathbb E_{b,c}\Big[s^4\mathbf 1_{|b|<k}\prod_j\cos(b\cdot x_j+c)\Big]
               - \sum_{\{ij|kl\}}\hat K_{ij}\hat K_{kl}\Big],

    coarse graining = the readout weights of the neurons with :math:`|b|>k` set to 0 (N, :math:`\sigma_a` kept).
    Drawn as :math:`|\kappa_4|` on a logarithmic axis (solid where :math:`\kappa_4>0`, dashed where it is
    negative): :math:`N\kappa_4` would put every width on one curve, since :math:`\kappa_4\propto1/N`
    exactly, whereas the log axis shows both the flow in :math:`k` (the shape, common to all widths) and the
    :math:`1/N` law (equal vertical steps of :math:`\log 2` between successive doublings of N).  A dotted line
    marks the support radius of the frequencies, beyond which nothing is removed (the full network).

    ``X``: one quadruple, shape (4, d); ``widths``: the N (integers >= 1); ``ks``: the cutoffs (> 0; default
    60 points up to 1.1 times the support radius)."""
    from symbrg.cosnet.four_point import connected_four_point
    connected_four_point(net, X, 1)   # checks net (a numeric CosNet) and X (one quadruple) before drawing
    if np.ndim(X) == 3:
        raise Unsupported("X", "one quadruple of shape (4, d) per figure")
    ws = [checks.integer("widths", w, minimum=1) for w in widths]
    if not ws:
        raise Unsupported("widths", "needs at least one width")
    upper = float(net.frequencies.integration_limit)
    kk = (np.linspace(upper / 60, 1.1 * upper, 60) if ks is None
          else checks.finite_array("ks", ks, ndim=1))
    for k in kk:
        checks.positive("ks", k)
    unit = np.array([connected_four_point(net, X, 1, float(k)) for k in kk])   # N = 1; kappa_4 ~ 1/N
    ax = _axes(ax, "plot_four_point_flow")
    values = np.concatenate([unit / w for w in ws])
    floor = _floor(np.abs(values))
    for j, w in enumerate(ws):
        v = unit / w
        ax.plot(kk, np.where(v > 0, np.maximum(v, floor), np.nan), "-", color=f"C{j}", lw=1.4, label=f"N = {w}")
        ax.plot(kk, np.where(v < 0, np.maximum(-v, floor), np.nan), "--", color=f"C{j}", lw=1.0)
    ax.axvline(upper, color="0.4", ls=":", lw=1.0, label="support radius (full network beyond)")
    ax.set_yscale("log")
    ax.set_xlabel(r"momentum cutoff $k$ (neurons with $|b| > k$ removed)")
    ax.set_ylabel(r"$|\kappa_4(x_1, x_2, x_3, x_4)|$")
    ax.legend(fontsize=8, loc="lower right", ncols=2,
              title="solid: $\\kappa_4 > 0$, dashed: $\\kappa_4 < 0$", title_fontsize=8)
    ax.grid(alpha=0.3, lw=0.5, which="both")
    ax.set_title(f"Connected four-point function of the {net.name} (d = {net.dim}) under coarse graining",
                 fontsize=10)
    return _figure(ax)


# ------------------------------------------------------------------------------ all figures, to files
def plot_results(results: Results, spectra: Results, out_dir: str | Path) -> list[Path]:
    """Write the experiment's figures in ``out_dir``, each as PNG and PDF (:data:`FORMATS`), and return
    their paths (PNG then PDF per figure): ``mse_vs_lambda`` (:func:`plot_mse`), ``fisher_spectrum``
    (:func:`plot_fisher_spectrum`), ``outputs_at_test_point`` (:func:`plot_outputs_at_test_point`),
    ``predictive_variance`` (:func:`plot_predictive_variance`) and, for cos-net runs, ``kernel_flow``
    (:func:`plot_kernel_flow`).

    Files are written atomically (:func:`symbrg.core.checks.atomic_write`: a temporary file renamed
    into place, an existing regular file replaced) with the umask's mode (0644 under umask 022).  The
    figures are drawn on :class:`matplotlib.figure.Figure` objects outside pyplot, so nothing is left
    open and no backend is switched.  Nothing is written (an empty list) when matplotlib is missing."""
    try:
        _matplotlib()
    except Unsupported:  # pragma: no cover - matplotlib is optional
        return []
    from matplotlib.figure import Figure
    out_dir = Path(out_dir)
    figures: list[tuple[str, str, Callable[[Axes], Figure]]] = [
        ("mse_vs_lambda", "plot_mse", lambda a: plot_mse(results, ax=a)),
        ("fisher_spectrum", "plot_fisher_spectrum", lambda a: plot_fisher_spectrum(results, spectra, ax=a)),
        ("outputs_at_test_point", "plot_outputs_at_test_point",
         lambda a: plot_outputs_at_test_point(results, ax=a)),
        ("predictive_variance", "plot_predictive_variance", lambda a: plot_predictive_variance(results, ax=a)),
    ]
    if "kernel_empirical" in results:
        figures.append(("kernel_flow", "plot_kernel_flow", lambda a: plot_kernel_flow(results, ax=a)))
    written = []
    for stem, name, draw in figures:
        fig = Figure(figsize=_SIZES[name])
        draw(fig.subplots())
        fig.tight_layout()
        for fmt in FORMATS:
            path = out_dir / f"{stem}.{fmt}"
            with checks.atomic_write(path, force=True, mode="wb") as fh:
                fig.savefig(fh, format=fmt, dpi=130, bbox_inches="tight", metadata=_metadata(fmt))
            written.append(path)
    return written


def _metadata(fmt: str) -> dict[str, Any]:
    """File metadata without a creation date, so that the same results give the same PDF bytes."""
    return {"CreationDate": None} if fmt == "pdf" else {}
