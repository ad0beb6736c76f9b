"""Fuzz suite over the command line and the public API (issue 12, "Trust").

Every bad input must end in a :class:`symbrg.core.errors.SymbrgError` (Python) or exit status 2 with exactly
one line on stderr (command line): never a traceback, a hang, code execution or a silently accepted
value.  Three layers:

* ``BAD_CLI``: the cases reported against symbrg, each with the argument its one-line error must name;
* ``test_cli_fuzz``: hypothesis draws a sub-command and puts a value from a pool of hostile values
  (injection strings, huge, negative, non-finite, empty, non-ASCII) into one of its options;
* ``test_api_fuzz``: the same pool against the public Python entry points.

Each command runs in-process under an alarm (``HANG_SECONDS``), and a canary file that every
injection string tries to create must never appear.
"""
from __future__ import annotations

import contextlib
import io
import math
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import symbrg
from symbrg.cli import main
from symbrg.core.errors import SymbrgError

HANG_SECONDS = 20
CANARY = Path("/tmp/symbrg-fuzz-canary")


class Hang(Exception):
    """Raised by the alarm: the command did not finish in HANG_SECONDS."""


def _alarm(signum, frame):  # pragma: no cover - only on a hang
    raise Hang(f"no answer within {HANG_SECONDS} s")


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """Run ``symbrg argv`` in-process: (exit status, stdout, stderr); fails on a hang or traceback."""
    out, err = io.StringIO(), io.StringIO()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(HANG_SECONDS)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = main(argv)
            except SystemExit as exc:          # argparse usage errors
                status = exc.code if isinstance(exc.code, int) else 2
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    return int(status or 0), out.getvalue(), err.getvalue()


def injections(canary: Path = CANARY) -> list[str]:
    """Strings that would execute Python, or reach into it, if evaluated."""
    touch = f"touch {canary}"
    return [
        f"__import__('os').system('{touch}')",
        f"K:__import__('os').system('{touch}')",
        f"exec(\"open('{canary}','w')\")",
        f"eval(\"open('{canary}','w')\")",
        f"open('{canary}', 'w')",
        "().__class__.__bases__[0].__subclasses__()",
        "x.__class__",
        "lambda: 1",
        "[i for i in range(10)]",
        "(lambda x: x)(1)",
        "'\\x5f\\x5fimport\\x5f\\x5f'",
        "getattr(x, 'subs')",
        "Symbol('x')",
        "Lambda(x, x)",
        "x.subs(x, 1)",
        "x[0]",
        "x; import os",
        "x\nimport os",
        "`x`",
        "(y := 1)",
        "f'{x}'",
        "ｅｘｐ(x)",                      # fullwidth letters: NFKC would read exp(x)
        "9**9**9**9",
        "10^10^10",
        "2**(10**100)",
        "x" * 100_000,
        "(" * 5000 + "x" + ")" * 5000,
    ]


#: (argv, argument named in the one-line error); every case must exit 2.
BAD_CLI = [
    (["derive", "fisher", "--f", f"__import__('os').system('touch {CANARY}')"], "f"),
    (["derive", "fisher", "--f", "a*x + b", "--data", "__import__('os')"], "data"),
    (["derive", "fisher", "--model", "gp", "--kernel", "().__class__"], "kernel"),
    (["derive", "fisher", "--model", "gp", "--noise", "lambda: 0"], "noise"),
    (["derive", "fisher", "--f", "a*x + b", "--params", "zzz"], "params"),
    (["erg", "lpa", "--regulator", f"K:__import__('os').system('touch {CANARY}')"], "regulator"),
    (["erg", "lpa", "--regulator", "power:1e400"], "regulator"),
    (["erg", "lpa", "--regulator", "power:-1"], "regulator"),
    (["erg", "lpa", "--regulator", "nosuch"], "regulator"),
    (["erg", "lpa", "--dps", "0"], "dps"),
    (["erg", "lpa", "--dps", "-5"], "dps"),
    (["erg", "lpa", "--dps", "1000000"], "dps"),
    (["erg", "lpa", "--dim", "__import__('os')"], "dim"),
    (["erg", "lpa", "--dim", "-3"], "dim"),
    (["erg", "lpa", "--order", "0"], "order"),
    (["erg", "lpa", "--order", "100000"], "order"),
    (["erg", "threshold", "--dps", "0", "--w", "0.5"], "dps"),
    (["erg", "threshold", "--regulator", "litim", "--w", "-2"], "w"),
    (["erg", "threshold", "--regulator", "litim", "--w", "-1"], "w"),
    (["erg", "threshold", "--n", "100000"], "n"),
    (["erg", "threshold", "--n", "-1"], "n"),
    (["prove", "cosnet-erg", "--dim", "100000"], "dim"),
    (["prove", "cosnet-erg", "--dim", "0"], "dim"),
    (["prove", "cosnet-erg", "--points", "0"], "points"),
    (["derive", "nngp", "--depth", "100000"], "depth"),
    (["derive", "nngp", "--depth", "-1"], "depth"),
    (["derive", "nngp", "--sigma-w", "-1"], "sigma_w"),
    (["derive", "nngp", "--sigma-w", "nan"], "sigma_w"),
    (["derive", "nngp", "--sigma-b", "-1"], "sigma_b"),
    (["derive", "nngp", "--activation", "nosuch"], "activation"),
    (["derive", "nngp", "--activation", "erf:__import__('os'),1,1"], "activation"),
    (["derive", "nngp", "--activation", "monomial:-1"], "activation"),
    (["derive", "nngp", "--activation", "monomial:100000"], "activation"),
    (["derive", "nngp", "--parameterization", "nosuch"], "parameterization"),
    (["derive", "nngp", "--width", "0"], "width"),
    (["experiment", "shell", "--members", "100000000", "--out", "{tmp}/run"], "members"),
    (["experiment", "shell", "--members", "0", "--out", "{tmp}/run"], "members"),
    (["experiment", "shell", "--fisher-set", "1000000", "--out", "{tmp}/run"], "fisher"),
    (["experiment", "shell", "--out", ""], "out"),
    (["experiment", "shell", "--out", "/proc/x"], "out"),
    (["experiment", "shell", "--out", "{tmp}/a-file"], "out"),
    (["experiment", "shell", "--preset", "nosuch", "--out", "{tmp}/run"], "preset"),
    (["kernel", "--x", "{tmp}/x.npy", "--out", "{tmp}/k.npy", "--depth", "100000000"], "depth"),
    (["kernel", "--x", "{tmp}/x.npy", "--out", "{tmp}/k.npy", "--precision", "1000000"], "precision"),
    (["kernel", "--x", "{tmp}/x.npy", "--out", "{tmp}/k.npy", "--precision", "0"], "precision"),
    (["kernel", "--x", "{tmp}/complex.npy", "--out", "{tmp}/k.npy"], "x"),
    (["kernel", "--x", "{tmp}/nan.npy", "--out", "{tmp}/k.npy"], "x"),
    (["kernel", "--x", "{tmp}/missing.npy", "--out", "{tmp}/k.npy"], "x"),
    (["kernel", "--x", "{tmp}/x.npy", "--out", "{tmp}/a-file"], "out"),
    (["kernel", "--x", "{tmp}/x.npy", "--out", "{tmp}/fifo", "--force"], "out"),
    (["kernel", "--x", "{tmp}/x.npy", "--out", "{tmp}/a-dir", "--force"], "out"),
    (["kernel", "--x", "{tmp}/x.npy", "--out", "{tmp}/k.npy", "--sigma-w", "-1.4"], "sigma_w"),
    (["--limit", "depth=abc", "derive", "nngp"], "limit"),
    (["--limit", "depth=-1", "derive", "nngp"], "limit"),
    (["--limit", "dpeth=5", "derive", "nngp"], "limit"),
    (["--limit", "depth=5", "derive", "nngp", "--depth", "6"], "depth"),
    (["export", "--all", "/proc/x"], "all"),
]


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(4, 3)))
    np.save(tmp_path / "complex.npy", np.ones((4, 3)) + 1j)
    bad = np.ones((4, 3))
    bad[1, 1] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    (tmp_path / "a-file").write_text("not a folder, not yours\n")
    (tmp_path / "a-dir").mkdir()
    os.mkfifo(tmp_path / "fifo")
    return tmp_path


def _one_line_error(status: int, err: str) -> str:
    assert status == 2, f"exit status {status}, stderr {err!r}"
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("argv,argument", BAD_CLI, ids=[" ".join(a)[:60] for a, _ in BAD_CLI])
def test_reported_bad_input(argv: list[str], argument: str, workdir: Path) -> None:
    CANARY.unlink(missing_ok=True)
    status, _, err = run_cli([a.replace("{tmp}", str(workdir)) for a in argv])
    line = _one_line_error(status, err)
    assert argument in line, line
    assert not CANARY.exists(), "an argument executed Python"
    assert sorted(p.name for p in workdir.iterdir()) == ["a-dir", "a-file", "complex.npy", "fifo", "nan.npy",
                                                          "x.npy"], "a refused command left a file"


HOSTILE = injections() + [
    "", " ", "-1", "0", "-0", "1e400", "-1e400", "nan", "inf", "-inf", "1e-400", "100000000",
    "3.5.1", "1/0", "0/0", "zoo", "oo", "I", "1+2j", "√2", "\x00", "%s%s%n", "../../etc/passwd", "x" * 300,
]

#: Sub-commands and the options whose values take arbitrary text.
COMMANDS = {
    ("derive", "nngp"): ["--activation", "--depth", "--sigma-w", "--sigma-b", "--parameterization", "--width"],
    ("derive", "ntk"): ["--activation", "--depth", "--sigma-w", "--sigma-b"],
    ("derive", "fisher"): ["--f", "--params", "--sigma", "--data", "--distribution", "--kernel", "--points",
                           "--noise"],
    ("derive", "brg"): ["--activation", "--depth", "--sigma-w", "--regulator"],
    ("derive", "wetterich"): ["--dim", "--regulator", "--truncation"],
    ("erg", "lpa"): ["--dim", "--regulator", "--order", "--truncation", "--N", "--dps"],
    ("erg", "threshold"): ["--dim", "--regulator", "--n", "--w", "--eta", "--dps"],
    ("erg", "gaussian"): ["--dim", "--regulator", "--order"],
    ("prove", "cosnet-erg"): ["--dim", "--regulator", "--points"],
}


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(command=st.sampled_from(sorted(COMMANDS)), data=st.data())
def test_cli_fuzz(command: tuple[str, str], data: st.DataObject) -> None:
    option = data.draw(st.sampled_from(COMMANDS[command]), label="option")
    value = data.draw(st.sampled_from(HOSTILE) | st.text(max_size=30), label="value")
    CANARY.unlink(missing_ok=True)
    status, out, err = run_cli([*command, option, value])
    assert not CANARY.exists(), "an argument executed Python"
    assert "Traceback" not in err
    if status == 0:      # accepted: then the answer must be a number, not nan
        assert "nan" not in out.lower().replace("nan=", ""), out[:500]
    else:
        _one_line_error(status, err)


def _api_calls(value: object) -> list:
    """Public entry points with ``value`` in one argument."""
    X = np.random.default_rng(1).normal(size=(3, 2))
    return [
        lambda: symbrg.mlp(value, 2, 1.0, 0.1),
        lambda: symbrg.mlp("relu", value, 1.0, 0.1),
        lambda: symbrg.mlp("relu", 2, value, 0.1),
        lambda: symbrg.mlp("relu", 2, 1.0, value),
        lambda: symbrg.mlp("relu", 2, 1.0, 0.1).nngp(value),
        lambda: symbrg.mlp("relu", 2, 1.0, 0.1).ntk(X, precision=value),
        lambda: symbrg.regulator(value),
        lambda: symbrg.activation(value),
        lambda: symbrg.generalized_cosnet(value, 4, 1),
        lambda: symbrg.generalized_cosnet(3, value, 1),
    ]


API_VALUES = [v for v in HOSTILE if len(v) < 1000] + [
    -1, 0, 10**9, -1.5, math.nan, math.inf, 1e308, 1 + 2j, None, [], {}, object(),
    np.ones((2, 2, 2)), np.array([[1 + 1j, 2]]), np.array([["a", "b"]]), np.empty((0, 2)),
]


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(value=st.sampled_from(API_VALUES), which=st.integers(0, 9))
def test_api_fuzz(value: object, which: int) -> None:
    CANARY.unlink(missing_ok=True)
    call = _api_calls(value)[which]
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(HANG_SECONDS)
    try:
        result = call()
    except SymbrgError as exc:
        assert str(exc).split(":")[0].strip(), "the error names no argument"
        return
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        assert not CANARY.exists(), "an argument executed Python"
    if isinstance(result, np.ndarray) and result.dtype.kind == "f":
        assert np.all(np.isfinite(result))


def test_fuzz_counts() -> None:
    """The README states how many cases the fuzz suite tries; keep it in step."""
    total = len(BAD_CLI) + 150 + 150
    assert f"the {len(BAD_CLI)} reported" in (Path(__file__).parents[1] / "README.md").read_text()
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert f"{total} cases" in readme, f"README should say the fuzz suite tries {total} cases"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
