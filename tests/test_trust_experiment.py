"""Issue 12 for the shell experiment: honest statistics (fresh data per member, median and mean with
bootstrap intervals, Λ_C with its interval and a grid-edge flag), bounded work, safe outputs."""
from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest
from helpers import cli

from symbrg.core.errors import (
    InvalidArgument,
    NotPositive,
    OutOfRange,
    TooExpensive,
    UnknownName,
    Unsupported,
)
from symbrg.core.limits import lifted
from symbrg.ensembles.ensemble import percentile_bootstrap
from symbrg.ensembles.experiment import (
    check_cost,
    estimate_cost,
    member_data,
    preset,
    run_shell_experiment,
    shell_statistics,
    summary,
)
from symbrg.ensembles.networks import network
from symbrg.ensembles.training import train

QUIET = dict(progress=lambda line: None)
TINY = dict(widths=(2, 10, 10, 200, 1), sigma_w=(2 ** 0.5, 10 ** 0.5, 10 ** 0.5, 200 ** 0.5),
            n_train=50, n_test=50, fisher_set=100, epochs=30, bootstrap=500, seed=1)
SHELL = ["experiment", "shell", "--preset", "paper", "--members", "2", "--epochs", "5",
         "--block", "2", "--bootstrap", "200"]


def test_results_json_has_lambda_c_interval_and_edge_flag(tmp_path):
    res = run_shell_experiment(preset("paper", members=6, block=3, **TINY), tmp_path / "run",
                               figures=False, **QUIET)
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved == json.loads(json.dumps(res))
    lo, hi = saved["lambda_c_ci"]
    assert saved["lambda_c"] is not None and lo <= saved["lambda_c"] <= hi
    assert {lo, hi, saved["lambda_c"]} <= set(saved["lambdas"])          # interval on the grid
    assert saved["lambda_c_statistic"] == "median" and isinstance(saved["lambda_c_at_grid_edge"], bool)
    for key in ("median", "mean"):
        ci = np.array(saved[f"mse_{key}_ci"])
        assert ci.shape == (25, 2)
        assert np.all(ci[:, 0] <= np.array(saved[f"mse_{key}"]) + 1e-12)
        assert np.all(np.array(saved[f"mse_{key}"]) <= ci[:, 1] + 1e-12)


def test_a_lambda_c_at_the_grid_edge_is_flagged_and_said(tmp_path):
    base = dict(members=4, block=4, **TINY)
    below = run_shell_experiment(preset("paper", lambdas=(1e3, 1e4), **base), tmp_path / "below", **QUIET)
    assert below["lambda_c"] == 1e3 and below["lambda_c_at_grid_edge"] is True
    assert "smallest cutoff" in below["lambda_c_note"] and "grid edge" in summary(below)
    above = run_shell_experiment(preset("paper", lambdas=(1e-9, 1e-8), **base), **QUIET)
    assert above["lambda_c"] is None and above["lambda_c_at_grid_edge"] is True
    assert "beyond the grid" in summary(above)
    inside = run_shell_experiment(preset("paper", **base), **QUIET)      # the paper's grid brackets it
    assert inside["lambda_c_at_grid_edge"] is False and inside["lambda_c_note"] is None
    assert "grid edge" not in summary(inside)
    pytest.importorskip("matplotlib")
    assert (tmp_path / "below" / "mse_vs_lambda.png").stat().st_size > 1000


def test_the_cli_summary_says_the_grid_edge(tmp_path, capsys):
    status, out, _ = cli(SHELL + ["--fisher-set", "10", "--out", str(tmp_path / "r"), "--no-figures"], capsys)
    res = json.loads((tmp_path / "r" / "results.json").read_text())
    assert status == 0 and "Λ_C = " in out and "bootstrap interval" in out
    assert ("grid edge" in out) == res["lambda_c_at_grid_edge"]


def test_fresh_and_shared_data_differ_and_are_reproducible_and_block_independent():
    mse = {}
    for data in ("fresh", "shared"):
        for block in (1, 4):
            cfg = preset("paper", members=4, block=block, data=data, **TINY)
            mse[data, block] = np.array(run_shell_experiment(cfg, **QUIET)["mse_members"])
        np.testing.assert_allclose(mse[data, 1], mse[data, 4], rtol=1e-10)
    again = run_shell_experiment(preset("paper", members=4, block=4, **TINY), **QUIET)
    np.testing.assert_array_equal(np.array(again["mse_members"]), mse["fresh", 4])
    assert not np.allclose(mse["fresh", 4], mse["shared", 4])
    cfg = preset("paper", members=4, **TINY)
    whole, one = member_data(cfg, 0, 4), member_data(cfg, 2, 1)
    for key, value in one.items():
        np.testing.assert_array_equal(value[0], whole[key][2])           # member 2's own data
    assert not np.allclose(whole["x_train"][0], whole["x_train"][1])
    other = member_data(preset("paper", members=4, **{**TINY, "seed": 2}), 0, 4)
    assert not np.allclose(other["x_train"], whole["x_train"])


@pytest.mark.parametrize("kw", [dict(readout_only=True, batch_size=1),               # dual sweeps
                                dict(readout_only=True, batch_size=2, optimizer="adam"),
                                dict(readout_only=False, batch_size=3)])
def test_training_on_per_member_data_equals_training_each_member_alone(kw):
    net = network((2, 6, 1), "relu", sigma_w=1.0, bias=True)
    ens = net.init(3, 0)
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((3, 5, 2)), rng.standard_normal((3, 5))
    both = train(net, ens, x, y, lr=0.05, epochs=4, **kw)
    for m in range(3):
        alone = train(net, ens.select(slice(m, m + 1)), x[m], y[m], lr=0.05, epochs=4, **kw)
        np.testing.assert_allclose(both.ensemble.flat()[m], alone.ensemble.flat()[0], rtol=1e-10)
        np.testing.assert_allclose(both.loss[:, m], alone.loss[:, 0], rtol=1e-10)
    with pytest.raises(InvalidArgument, match="^x:"):
        train(net, ens, x[:2], y[:2], lr=0.05, epochs=1, **kw)


def test_bootstrap_intervals_cover_the_truth_on_known_curves():
    rng = np.random.default_rng(0)
    hits = {"median": 0, "mean": 0}
    trials = 100
    for t in range(trials):
        mse = rng.lognormal(0.0, 0.5, size=(2, 40))          # median 1, mean exp(1/8)
        stats = shell_statistics(mse, [1.0], 0.05, resamples=1000, seed=t)
        lo, hi = stats["mse_median_ci"][0]
        hits["median"] += lo <= 1.0 <= hi
        lo, hi = stats["mse_mean_ci"][0]
        hits["mean"] += lo <= np.exp(0.125) <= hi
    assert all(0.85 <= h / trials <= 1.0 for h in hits.values()), hits
    # curves that triple at Λ = 1 (index 3), plus one bad member whose loss moves early
    lam = [0.01, 0.1, 0.5, 1.0, 10.0]
    scale = rng.lognormal(0.0, 0.3, size=30)
    curves = scale[None, :] * np.array([1, 1, 1, 1, 3, 3])[:, None]
    curves[:, 0] = [900, 1200, 1200, 1200, 1200, 1200]
    stats = shell_statistics(curves, lam, 0.05, seed=1)
    assert stats["lambda_c_median"] == 1.0 and stats["lambda_c"] == 1.0
    assert stats["lambda_c_mean"] == 0.01                    # the bad member drags the mean
    lo, hi = stats["lambda_c_ci"]
    assert lo <= 1.0 <= hi and stats["lambda_c_at_grid_edge"] is False
    assert shell_statistics(curves, lam, 0.05, statistic="mean", seed=1)["lambda_c_at_grid_edge"] is True
    est, lo, hi = percentile_bootstrap(lambda s: s.mean(axis=1), np.arange(10.0), resamples=500, seed=3)
    assert lo < est == 4.5 < hi


@pytest.mark.parametrize("extra, option, words", [
    (["--members", "100000000"], "--members", "--limit experiment_memory"),
    (["--fisher-set", "1000000"], "--fisher-set", "--limit experiment_memory"),
    (["--members", "0"], "--members", ">= 1"),
    (["--epochs", "0"], "--epochs", ">= 1"),
    (["--rtol", "-1"], "--rtol", "> 0"),
    (["--bootstrap", "5"], "--bootstrap", ">= 100"),
    (["--seed", "-1"], "--seed", ">= 0"),
    (["--data", "nope"], "--data", "invalid choice"),
    (["--criterion", "nope"], "--criterion", "unknown value"),
])
def test_bad_options_are_refused_in_one_line(tmp_path, capsys, extra, option, words):
    status, out, err = cli(SHELL + extra + ["--out", str(tmp_path / "r")], capsys)
    assert status == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert option in err and words in err
    assert not (tmp_path / "r").exists()                                  # refused before any work


def test_bad_output_folders_are_refused_in_one_line(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("keep me\n")
    bad = [("", "empty"), (str(afile), "not a folder"), (str(afile / "sub"), "cannot create")]
    if os.path.isdir("/proc/self"):
        bad.append(("/proc/x", "cannot create"))
    for out, words in bad:
        status, _, err = cli(SHELL + ["--out", out], capsys)
        assert status == 2 and err.count("\n") == 1 and "--out" in err and words in err, err
    assert afile.read_text() == "keep me\n"


def test_corrupt_runs_are_refused_on_resume_naming_the_file(tmp_path, capsys):
    out = tmp_path / "run"
    args = SHELL + ["--members", "4", "--out", str(out), "--no-figures"]
    cfg = preset("paper", members=4, block=2, epochs=5, bootstrap=200)
    run_shell_experiment(cfg, out, figures=False, stop_after=1, **QUIET)
    block = out / "blocks" / "block_0000.npz"
    block.write_bytes(block.read_bytes()[:200])                           # truncated
    status, _, err = cli(args + ["--resume"], capsys)
    assert status == 2 and err.count("\n") == 1 and "block_0000.npz" in err and "--force" in err
    (out / "config.json").write_text('{"members": 4,')                     # corrupt
    status, _, err = cli(args + ["--resume"], capsys)
    assert status == 2 and err.count("\n") == 1 and "config.json" in err and "--resume" in err
    assert cli(args + ["--resume", "--force"], capsys)[0] == 0            # the way out works
    assert json.loads((out / "results.json").read_text())["complete"] is True


def test_outputs_are_readable_by_others(tmp_path):
    old = os.umask(0o022)
    try:
        run_shell_experiment(preset("paper", members=2, block=1, **TINY), tmp_path / "run", **QUIET)
    finally:
        os.umask(old)
    files = [p for p in (tmp_path / "run").rglob("*") if p.is_file()]
    assert {"config.json", "results.json", "block_0000.npz"} <= {p.name for p in files}
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in files), \
        {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files}


def test_config_domains_are_checked():
    bad = [(dict(lr=-1e-3), NotPositive, "lr"), (dict(epochs=0), OutOfRange, "epochs"),
           (dict(lambdas=()), InvalidArgument, "lambdas"), (dict(data="both"), UnknownName, "data"),
           (dict(statistic="mode"), UnknownName, "statistic"), (dict(bootstrap=10), OutOfRange, "bootstrap"),
           (dict(confidence=1.0), OutOfRange, "confidence"), (dict(batch_size=0), OutOfRange, "batch_size"),
           (dict(batch_size=201), OutOfRange, "batch_size"), (dict(seed=-1), OutOfRange, "seed"),
           (dict(optimizer="lbfgs"), UnknownName, "optimizer"), (dict(readout_only="yes"), InvalidArgument,
                                                                  "readout_only"),
           (dict(widths=(2, 10, 10, 2000, 2)), Unsupported, "widths"),
           (dict(kernel_separations=(0.5,)), Unsupported, "kernel_separations"),
           (dict(nonsense=1), InvalidArgument, "nonsense")]
    for override, error, name in bad:
        with pytest.raises(error, match=f"^{name}:"):
            preset("paper", **override)
    good = preset("paper", lr=1e-3, epochs=1, data="shared", statistic="mean", bootstrap=100,
                  confidence=0.9, batch_size=200, seed=0, optimizer="adam")
    assert good.data == "shared"


def test_work_is_estimated_and_bounded_before_it_starts():
    paper = preset("paper")
    cost = check_cost(paper)                                              # normal use runs
    assert cost.memory < 1e9 and cost.disk < 1e8
    big = preset("paper", fisher_set=10 ** 6)
    assert estimate_cost(big).memory >= 25 * 10 ** 6 * 2000 * 8           # the Fisher Jacobian alone
    with pytest.raises(TooExpensive, match="^fisher_set: .*Fisher Jacobian.*experiment_memory"):
        check_cost(big)
    check_cost(preset("paper", fisher_set=1000))
    with lifted(experiment_memory=1e13, experiment_time=1e6):
        check_cost(big)
    with pytest.raises(TooExpensive, match="^members: "):
        check_cost(preset("paper", members=10 ** 8))
    slow = preset("paper", optimizer="adam", epochs=10 ** 6)              # no closed-form epochs
    with pytest.raises(TooExpensive, match="^epochs: .*experiment_time"):
        check_cost(slow)
    with lifted(experiment_time=1e9):
        check_cost(slow)


def test_results_do_not_depend_on_the_blas_thread_count(tmp_path):
    """Training amplifies rounding: a reduction split over two BLAS threads changed the paper preset's
    results in the tenth digit (and made a dask cluster, whose workers start with one thread, disagree
    with a local run).  Blocks run with BLAS on one thread, so the thread count of the caller is moot."""
    from symbrg.ensembles import experiment as ex
    held = ex._blas_threads()
    if not held:
        pytest.skip("no OpenBLAS whose thread count can be set")
    runs = []
    try:
        for threads in (2, 1):
            ex._set_blas_threads(tuple(threads for _ in held))
            run_shell_experiment(preset("paper", members=4, block=2, epochs=40, bootstrap=200),
                                 tmp_path / f"t{threads}", figures=False, **QUIET)
            runs.append((tmp_path / f"t{threads}" / "results.json").read_text())
    finally:
        ex._set_blas_threads(held)
    assert runs[0] == runs[1]
