"""The ecosystem issue: --version, closed option sets in --help, the 1-D --x note, progress bars
(tqdm, only on a terminal, off with --quiet), symbrg.load_run, --resume that extends a finished run,
complex LPA exponents in the text output."""
from __future__ import annotations

import argparse
import json
import re

import numpy as np
import pytest
from helpers import cli

import symbrg
from symbrg.cli import build_parser
from symbrg.core.errors import InvalidArgument, SymbrgError
from symbrg.ensembles import experiment
from symbrg.ensembles.experiment import load_run, preset, run_shell_experiment

QUIET = dict(progress=lambda line: None, figures=False)
TINY = dict(widths=(2, 10, 10, 200, 1), sigma_w=(2 ** 0.5, 10 ** 0.5, 10 ** 0.5, 200 ** 0.5),
            n_train=50, n_test=50, fisher_set=100, epochs=30, bootstrap=200, seed=1)
GRID = (1e-2, 1.0, 100.0)
WIDE = (1e-3, 1e-2, 0.1, 1.0, 100.0, 1e4)
SHELL = ["experiment", "shell", "--preset", "paper", "--members", "2", "--epochs", "5", "--block", "2",
         "--bootstrap", "200", "--no-figures"]


@pytest.fixture()
def terminal(monkeypatch):
    """Pretend that stderr is a terminal (the test's stderr is not)."""
    monkeypatch.setattr("symbrg.cli.progress.stderr_is_terminal", lambda: True)


# ------------------------------------------------------------------------------------ --version
def test_version(capsys, monkeypatch):
    status, out, err = cli(["--version"], capsys)
    assert status == 0 and err == ""
    assert re.fullmatch(r"symbrg \d+\.\d+\.\d+\S*\n", out), out
    assert isinstance(symbrg.__version__, str) and "__version__" in symbrg.__all__
    import importlib.metadata as md

    from symbrg.cli import version

    def missing(name):
        raise md.PackageNotFoundError(name)
    monkeypatch.setattr(md, "version", missing)
    assert version() == symbrg.__version__          # a source tree that is not installed


# ------------------------------------------------------------------------------ closed choices
def _subparsers(parser: argparse.ArgumentParser, path=()):
    """(command path, parser) of every (sub-)command."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _subparsers(sub, path + (name,))


CLOSED = {  # options whose values form a closed set: --help must list them
    ("kernel",): ["--parameterization"], ("derive", "nngp"): ["--parameterization", "--format"],
    ("derive", "ntk"): ["--parameterization", "--format"],
    ("erg", "lpa"): ["--truncation"], ("erg", "compare"): ["--truncation"],
    ("derive", "wetterich"): ["--truncation", "--format"], ("derive", "lpa"): ["--truncation", "--format"],
    ("derive", "polchinski"): ["--part", "--format"], ("derive", "brg"): ["--part", "--format"],
    ("derive", "fisher"): ["--model", "--format"],
    ("prove", "cosnet-erg"): ["--regulator", "--format", "--mutate"], ("derive", "cosnet"): ["--regulator"],
    ("experiment", "shell"): ["--preset", "--criterion", "--mode", "--data", "--statistic"],
    ("export",): ["--format"],
}


def test_closed_option_sets_are_listed_in_help():
    commands = dict(_subparsers(build_parser()))
    for path, options in CLOSED.items():
        parser = commands[path]
        helptext = parser.format_help()
        for option in options:
            action = next(a for a in parser._actions if option in a.option_strings)
            assert action.choices, (path, option)
            if option != "--mutate":                    # --mutate shows NAME and lists them in its help
                assert "{" + ",".join(map(str, action.choices)) + "}" in helptext, (path, option)


def test_cli_tables_are_the_engines():
    from symbrg.cli import ensemble, erg
    from symbrg.cosnet.theory import REGULATOR_NAMES
    from symbrg.kernels.architecture import PARAMETERIZATIONS
    assert ensemble.PRESET_NAMES == tuple(experiment.PRESETS)
    assert ensemble.CRITERION_NAMES == tuple(str(c) for c in experiment.CRITERIA)
    assert ensemble.MODE_NAMES == experiment.MODES
    assert erg.TRUNCATIONS == ("lpa", "lpa'") and PARAMETERIZATIONS == ("ntk", "standard")
    assert REGULATOR_NAMES == ("sharp", "litim", "exponential")


@pytest.mark.parametrize("argv, argument", [
    (["erg", "lpa", "--truncation", "lpb"], "truncation"),
    (["derive", "lpa", "--truncation", "x"], "truncation"),
    (["derive", "polchinski", "--part", "x"], "part"),
    (["prove", "cosnet-erg", "--regulator", "power:2"], "regulator"),
    (["derive", "nngp", "--parameterization", "x"], "parameterization"),
    (["export", "nngp-relu", "--format", "pdf"], "format"),
    (["experiment", "shell", "--mode", "x", "--out", "{tmp}/r"], "--mode"),
    (["experiment", "shell", "--preset", "x", "--out", "{tmp}/r"], "--preset"),
])
def test_a_name_outside_a_closed_set_is_one_line(tmp_path, capsys, argv, argument):
    status, out, err = cli([a.replace("{tmp}", str(tmp_path)) for a in argv], capsys)
    assert status == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"symbrg: error: {argument}: unknown ") and "choose one of" in err
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------------------- the 1-D note
def test_one_dimensional_x_is_n_points_and_said_so(tmp_path, capsys):
    x = np.linspace(-1.0, 2.0, 7)
    np.save(tmp_path / "x1.npy", x)
    np.save(tmp_path / "x2.npy", x[:, None])
    base = ["kernel", "--activation", "relu", "--depth", "2", "--sigma-w", "1.4", "--sigma-b", "0.1"]
    status, _, err = cli(base + ["--x", str(tmp_path / "x1.npy"), "--out", str(tmp_path / "k1.npy")], capsys)
    assert status == 0 and err.count("\n") == 1
    assert "note" in err and "--x" in err and "7 points in one dimension" in err
    status, _, err = cli(base + ["--x", str(tmp_path / "x2.npy"), "--out", str(tmp_path / "k2.npy")], capsys)
    assert status == 0 and err == ""                        # (N, d): nothing to say
    k1, k2 = np.load(tmp_path / "k1.npy"), np.load(tmp_path / "k2.npy")
    assert k1.shape == (7, 7) and np.array_equal(k1, k2)
    status, _, err = cli(base + ["--x", str(tmp_path / "x2.npy"), "--x2", str(tmp_path / "x1.npy"),
                                 "--out", str(tmp_path / "k3.npy")], capsys)
    assert status == 0 and "--x2" in err and err.count("\n") == 1


# ------------------------------------------------------------------------------ progress bars
def test_gram_progress_callback_counts_every_tile():
    arch = symbrg.mlp("relu", 2, 1.4, 0.1)
    x = np.random.default_rng(0).normal(size=(90, 3))
    calls = []
    k = arch.nngp(x, block=400, threads=2, progress=lambda done, total: calls.append((done, total)))
    assert np.array_equal(k, arch.nngp(x, block=400))
    total = calls[0][1]
    assert [c[0] for c in calls] == list(range(1, total + 1)) and total == 5 * 6 // 2   # 5x5 tiles, upper
    rows = []
    arch.ntk(x[:3], precision=20, progress=lambda done, total: rows.append((done, total)))
    assert rows == [(1, 3), (2, 3), (3, 3)]
    with pytest.raises(InvalidArgument, match="progress"):
        arch.nngp(x, progress=3)


def _kernel_args(tmp_path):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(40, 3)))
    return ["kernel", "--x", str(tmp_path / "x.npy"), "--out", str(tmp_path / "k.npy"), "--force"]


def test_no_bar_when_stderr_is_not_a_terminal(tmp_path, capsys):
    status, out, err = cli(_kernel_args(tmp_path), capsys)
    assert status == 0 and err == "" and "wrote" in out


def test_kernel_bar_on_a_terminal_and_quiet_turns_it_off(tmp_path, capsys, terminal):
    status, _, err = cli(_kernel_args(tmp_path), capsys)
    assert status == 0 and "kernel" in err and "tile" in err
    status, _, err = cli(["--quiet"] + _kernel_args(tmp_path), capsys)
    assert status == 0 and err == ""
    status, _, err = cli(_kernel_args(tmp_path) + ["--precision", "20"], capsys)
    assert status == 0 and "row" in err


def test_experiment_bar_and_quiet(tmp_path, capsys, terminal):
    status, out, err = cli(SHELL + ["--out", str(tmp_path / "a")], capsys)
    assert status == 0 and "member/s" in err and "[shell]" in err and "/2 members" in out
    status, out, err = cli(["-q"] + SHELL + ["--out", str(tmp_path / "b")], capsys)
    assert status == 0 and err == "" and "/2 members" in out


def test_export_all_ticks_once_per_document(tmp_path, capsys, terminal, monkeypatch):
    from symbrg.documents import library
    monkeypatch.setattr(library, "names", lambda only_available=True: ["nngp-relu", "ntk-relu"])
    original = library.render_entry
    status, out, err = cli(["export", "--all", str(tmp_path / "docs")], capsys)
    # a bar over the 2 documents (which later ticks tqdm draws depends on timing: its refresh is rate-limited)
    assert status == 0 and "export" in err and "0/2" in err
    assert library.render_entry is original                  # the hook is removed again
    assert sorted(p.name for p in (tmp_path / "docs").iterdir()) == ["nngp-relu.tex", "ntk-relu.tex",
                                                                   "references.bib"]
    status, _, err = cli(["export", "--check", str(tmp_path / "docs")], capsys)
    assert status == 0 and "check" in err


# ----------------------------------------------------------------------------------- load_run
@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    res = run_shell_experiment(preset("paper", members=5, block=3, lambdas=GRID, **TINY), out, **QUIET)
    return out, res


def test_load_run_reads_a_finished_run(finished):
    out, res = finished
    run = symbrg.load_run(str(out))
    assert run.results == json.loads(json.dumps(res)) and run["lambda_c"] == res["lambda_c"]
    assert np.array_equal(run.lambdas, GRID) and np.array_equal(run.mse_mean, res["mse_mean"])
    assert np.array_equal(run.mse_median, res["mse_median"]) and run.lambda_c == res["lambda_c"]
    assert run.config == preset("paper", members=5, block=3, lambdas=GRID, **TINY)
    assert run.members == 5 and run.complete and "5 members" in repr(run)
    a = run.arrays
    assert a["test_mse"].shape == (4, 5) and a["predictions"].shape == (4, 5, 50)
    assert a["theta"].shape == (5, 200) and a["finite"].all()
    assert np.allclose(np.median(a["test_mse"][1:], axis=1), res["mse_median"])   # bootstrap of 5: exact median
    ens = run.ensemble()
    assert ens.members == 5 and np.array_equal(ens.flat("readout"), a["theta"])
    net = run.network()
    pred = np.stack([net.forward(ens, experiment.make_data(run.config)["x_test"])[..., 0]])[0]
    assert np.allclose(pred, a["predictions"][0])             # the saved ensemble is the trained one


def test_load_run_refuses_missing_or_corrupt_runs(finished, tmp_path):
    out, _ = finished
    afile = tmp_path / "afile"
    afile.write_text("x")
    (tmp_path / "empty").mkdir()
    for path, words in [(tmp_path / "nope", "does not exist"), (afile, "not a folder"),
                        (tmp_path / "empty", "config.json"), ("", "folder of a run"), (3, "folder of a run")]:
        with pytest.raises(InvalidArgument, match="path") as exc:
            load_run(path)
        assert exc.value.argument == "path" and words in str(exc.value), str(exc.value)
    import shutil
    for damage, words in [(lambda d: (d / "results.json").write_text('{"lambdas": ['), "results.json"),
                          (lambda d: (d / "results.json").unlink(), "results.json"),
                          (lambda d: (d / "config.json").write_text("[1]"), "config.json"),
                          (lambda d: (d / "blocks" / "block_0001.npz").write_bytes(b"PK\x03\x04junk"),
                           "block_0001.npz"),
                          (lambda d: (d / "blocks" / "block_0001.npz").unlink(), "hold 3")]:
        copy = tmp_path / f"copy{len(list(tmp_path.iterdir()))}"
        shutil.copytree(out, copy)
        damage(copy)
        with pytest.raises(InvalidArgument) as exc:
            load_run(copy)
        assert exc.value.argument == "path" and words in str(exc.value), str(exc.value)


# ------------------------------------------------------------------------ --resume that extends
def _counting(monkeypatch):
    calls = []
    original = experiment._run_block

    def run_block(cfg, net, data, start, count, **kw):
        calls.append((start, count, kw.get("state") is not None, None if kw.get("cutoffs") is None
                      else len(kw["cutoffs"])))
        return original(cfg, net, data, start, count, **kw)
    monkeypatch.setattr(experiment, "_run_block", run_block)
    return calls


def test_resume_extends_members_and_cutoffs_with_only_the_new_work(finished, tmp_path, monkeypatch):
    import shutil
    out = tmp_path / "run"
    shutil.copytree(finished[0], out)
    bigger = preset("paper", members=8, block=3, lambdas=WIDE, **TINY)
    calls = _counting(monkeypatch)
    extended = run_shell_experiment(bigger, out, resume=True, **QUIET)
    # blocks 0 and 1 (3 + 2 members) renormalized at the 3 new cutoffs without training; block 1
    # topped up with member 5; block 2 (members 6, 7) trained
    assert calls == [(0, 3, True, 3), (3, 2, True, 3), (5, 1, False, None), (6, 2, False, None)]
    monkeypatch.undo()
    fresh = run_shell_experiment(bigger, tmp_path / "fresh", **QUIET)
    assert extended == fresh                                  # the results of a fresh run
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(fresh))
    assert json.loads((out / "config.json").read_text()) == bigger.to_json()
    for i in range(3):
        a, b = (np.load(d / "blocks" / f"block_{i:04d}.npz") for d in (out, tmp_path / "fresh"))
        assert sorted(a.files) == sorted(b.files)
        assert all(np.array_equal(a[k], b[k]) for k in a.files), i
    again = _counting(monkeypatch)
    assert run_shell_experiment(bigger, out, resume=True, **QUIET) == fresh and again == []   # nothing new
    assert load_run(out).members == 8


def test_resume_with_new_statistics_recomputes_no_block(finished, tmp_path, monkeypatch):
    import shutil
    out = tmp_path / "run"
    shutil.copytree(finished[0], out)
    calls = _counting(monkeypatch)
    res = run_shell_experiment(preset("paper", members=5, block=3, lambdas=GRID, **{**TINY, "bootstrap": 300},
                                      rtol=0.5, statistic="mean"), out, resume=True, **QUIET)
    assert calls == [] and res["rtol"] == 0.5 and res["lambda_c_statistic"] == "mean"


@pytest.mark.parametrize("change, words", [
    (dict(seed=2), "seed"), (dict(widths=(2, 10, 10, 100, 1), sigma_w=(1.0, 1.0, 1.0, 10.0)), "widths"),
    (dict(data="shared"), "data"), (dict(epochs=31), "epochs"), (dict(block=2), "block"),
    (dict(members=4), "cannot drop members"), (dict(lambdas=(1e-2, 100.0)), "may only add cutoffs"),
])
def test_resume_refuses_incompatible_changes(finished, tmp_path, change, words):
    import shutil
    out = tmp_path / "run"
    shutil.copytree(finished[0], out)
    before = {p.name: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    kw = {**dict(members=5, block=3, lambdas=GRID), **TINY, **change}
    with pytest.raises(InvalidArgument) as exc:
        run_shell_experiment(preset("paper", **kw), out, resume=True, **QUIET)
    assert exc.value.argument == "resume" and words in str(exc.value) and "\n" not in str(exc.value)
    assert {p.name: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before


def test_cutoffs_are_not_added_to_an_afresh_run(tmp_path):
    kw = dict(members=2, block=2, lambdas=GRID, cumulative=False, **{**TINY, "epochs": 5})
    run_shell_experiment(preset("paper", **kw), tmp_path / "run", **QUIET)
    with pytest.raises(InvalidArgument, match="--afresh"):
        run_shell_experiment(preset("paper", **{**kw, "lambdas": WIDE}), tmp_path / "run", resume=True, **QUIET)
    res = run_shell_experiment(preset("paper", **{**kw, "members": 3}), tmp_path / "run", resume=True, **QUIET)
    assert res["members"] == 3 and res == run_shell_experiment(preset("paper", **{**kw, "members": 3}),
                                                               tmp_path / "fresh", **QUIET)


def test_cutoffs_of_blocks_without_parameters_are_not_extended(finished, tmp_path):
    import shutil
    out = tmp_path / "run"
    shutil.copytree(finished[0], out)
    path = out / "blocks" / "block_0000.npz"
    with np.load(path) as z:
        legacy = {k: z[k] for k in z.files if k not in ("theta", "lambdas")}
    np.savez(path, **legacy)                                 # as written by symbrg 0.2
    with pytest.raises(InvalidArgument, match="older symbrg"):
        run_shell_experiment(preset("paper", members=5, block=3, lambdas=WIDE, **TINY), out, resume=True,
                             **QUIET)
    res = run_shell_experiment(preset("paper", members=7, block=3, lambdas=GRID, **TINY), out, resume=True,
                               **QUIET)                       # more members still work
    assert res["members"] == 7 and load_run(out).members == 7 and "theta" not in load_run(out).arrays
    with pytest.raises(SymbrgError, match="no trained parameters"):
        load_run(out).ensemble()


def test_cli_resume_with_more_members(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli(SHELL + ["--out", str(out)], capsys)[0] == 0
    status, stdout, err = cli(SHELL[:5] + ["4"] + SHELL[6:] + ["--out", str(out), "--resume"], capsys)
    assert status == 0 and "/4 members" in stdout and "extending" in err and "loaded" in err
    status, _, err = cli(SHELL + ["--seed", "3", "--out", str(out), "--resume"], capsys)
    assert status == 2 and err.count("\n") == 1 and err.startswith("symbrg: error: --resume:") and "seed" in err


# ------------------------------------------------------------------------ complex LPA exponents
def test_format_exponent_keeps_the_imaginary_part():
    from symbrg.cli.erg import format_exponent
    assert format_exponent(-3.6335078 + 3.0641825j) == "-3.6335078+3.0641825i"
    assert format_exponent(complex(-3.6335078, -3.0641825)) == "-3.6335078-3.0641825i"
    assert format_exponent(1.5371046 + 1e-30j) == "1.5371046"
    assert format_exponent(0.5) == "0.5"


def test_erg_lpa_text_prints_complex_exponents(capsys):
    status, out, _ = cli(["erg", "lpa", "--dim", "3", "--regulator", "litim", "--order", "4"], capsys)
    assert status == 0
    line = next(x for x in out.splitlines() if "exponents theta" in x)
    values = [v.strip() for v in line.split(":", 1)[1].split(",")]
    pairs = [v for v in values if v.endswith("i")]
    assert len(values) == 4 and len(pairs) == 2                  # one complex-conjugate pair at order 4
    parsed = [complex(v.replace("i", "j")) for v in pairs]
    assert parsed[0] == parsed[1].conjugate() and abs(parsed[0].imag) > 1
