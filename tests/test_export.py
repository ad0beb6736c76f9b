"""Derivation objects, their views (text, LaTeX, Markdown, Jupyter, NumPy), the derivations/ library
(determinism, out-of-date check, pdflatex compile check) and ``symbrg export`` on bad input."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

from symbrg.cli import main
from symbrg.core import printing as export
from symbrg.core.derivation import Derivation, Verification, check_identity
from symbrg.core.references import to_bibtex
from symbrg.documents import library

ROOT = Path(__file__).resolve().parents[1]
DERIVATIONS = ROOT / "derivations"
#: Overfull boxes up to this width (pt) are rounding noise; anything wider fails the compile check.
OVERFULL_PT = 1.0

a, b, c = sp.symbols("a b c", positive=True)
x = sp.Symbol("x", real=True)


def sample() -> Derivation:
    """A derivation exercising every feature: uses, cites, assumptions, statuses, long equations."""
    d = Derivation("A sample derivation", "An introduction with 100% of the $\\alpha_1$ and "
                   "a reference \\cite{Polchinski1984}.", name="sample")
    d.step(sp.Eq(sp.Symbol("f"), a * x + b), "Definition.", "eq:def",
           assumptions=["a > 0", "b \\ge 0"])
    d.step(sp.Eq(sp.Derivative(sp.Function("f")(x), x), a), "Differentiate \\eqref{eq:def}.",
           "eq:diff", uses=["eq:def"], verification=check_identity(sp.diff(a * x + b, x), a))
    long = sp.expand((a + b + c + x + 1) ** 6)
    d.step(sp.Eq(sp.Symbol("P"), long), "A long polynomial must be broken across lines.",
           "eq:long", verification=check_identity(long, sp.expand(long), points=3),
           cites=["Polchinski1984", "HKMS24"])
    nested = sp.exp(-a) * sp.erf(sp.expand((a + b + c) ** 5) / (1 + a * b)) * sp.sqrt(long)
    d.step((sp.Eq(sp.Symbol("Q"), nested), sp.Le(b, a + b)), "Two statements, one with nested "
           "long functions.", "eq:nested", uses=["eq:long"], assumptions=["a > 0"])
    d.step(sp.Eq(sp.Symbol("R"), a**2 + sp.sin(b) * c), "The result.", "eq:result",
           verification=check_identity(a**2 + sp.sin(b) * c, a * a + c * sp.sin(b)))
    return d


# ------------------------------------------------------------------------- derivation objects
def test_labels_uses_and_lookup():
    d = Derivation("t", name="n")
    s1 = d.step(sp.Eq(a, b))
    assert s1.label == "eq:n-1"
    with pytest.raises(ValueError, match="duplicate"):
        d.step(sp.Eq(a, c), label="eq:n-1")
    with pytest.raises(ValueError, match="unknown earlier"):
        d.step(sp.Eq(a, c), uses=["eq:later"])
    d.step(sp.Eq(b, c), label="eq:two", uses=["eq:n-1"])
    assert d["eq:two"].uses == ("eq:n-1",)
    assert d.result.label == "eq:two"
    with pytest.raises(KeyError):
        d["eq:missing"]


def test_verification_status_can_fail():
    good = check_identity(sp.sin(x) ** 2 + sp.cos(x) ** 2, 1, domain={x: (-3, 3)})
    assert good.verified and good.symbolic_zero and good.points == 12
    bad = check_identity(sp.sin(x) ** 2, 1, domain={x: (-3, 3)})
    assert not bad.verified and bad.max_abs_error > 1e-3
    assert not Verification().verified
    d = Derivation("t")
    d.step(sp.Eq(a, a), verification=good)
    assert d.verified
    d.step(sp.Eq(a, b), verification=bad)
    assert not d.verified
    assert "NOT verified" in export.status_text(bad)
    assert export.status_text(good).startswith("Verified")


@pytest.mark.parametrize("error, shown", [(float("inf"), "\\infty"), (float("nan"), "\\mathrm{NaN}")])
def test_failed_check_with_non_finite_error_prints(error, shown):
    """An evaluation that overflowed (error inf) or was undefined (NaN) is reported, not raised."""
    bad = Verification(kind="numeric", points=3, dps=30, max_abs_error=error, tolerance=1e-20)
    assert not bad.verified
    assert export.status_text(bad).startswith("NOT verified") and shown in export.status_text(bad)
    assert shown.lstrip("\\").replace("mathrm{", "").rstrip("}").replace("infty", "inf") \
        in export.status_text(bad, "text")
    d = Derivation("t")
    d.step(sp.Eq(a, b), verification=bad)
    assert shown in d.to_latex()


def test_extend_keeps_references():
    d1, d2 = Derivation("one"), Derivation("two")
    key = d2.cite("hkms2024")                    # an older spelling: the table's key is returned
    d2.step(sp.Eq(a, b), label="eq:x", cites=[key])
    d1.extend(d2)
    assert d1["eq:x"].cites == ("HKMS2024",)


def test_unknown_citation_keys_are_refused():
    from symbrg.core.errors import UnknownName
    d = Derivation("t")
    with pytest.raises(UnknownName, match="cites.*HKMS2024"):
        d.step(sp.Eq(a, b), cites=["knuth"])
    with pytest.raises(UnknownName, match="justification"):
        d.step(sp.Eq(a, b), "as in \\cite{nobody}")
    assert not d.steps


# ------------------------------------------------------------------------------- exporters
def test_text_view():
    t = sample().to_text()
    assert t.startswith("A sample derivation\n===")
    assert "(1) f = a⋅x + b" in t and "Uses (1)." in t                   # sympy's unicode pretty form
    assert "α₁" in t and "b ≥ 0" in t and "$" not in t and "\\" not in t   # LaTeX prose read as unicode
    assert "(3) P = a**6 + 6*a**5*b" in t and max(map(len, t.splitlines()[:-3])) <= 80   # too wide: linear
    assert "[1] J. Polchinski, Renormalization" in t and "[2] J. N. Howard" in t
    assert "See [1] and [2]." in t
    assert "Verified: the difference simplifies to zero" in t


def test_latex_view_structure():
    d = sample()
    tex = d.to_latex()
    assert tex.startswith("\\documentclass") and tex.rstrip().endswith("\\end{document}")
    for s in d.steps:
        assert f"\\label{{{s.label}}}" in tex
    assert "This step uses \\eqref{eq:def}." in tex
    assert "thebibliography" not in tex and "See \\cite{Polchinski1984} and \\cite{HKMS2024}." in tex
    assert tex.endswith("\\bibliographystyle{unsrt}\n\\bibliography{references}\n\\end{document}\n")
    assert "100\\% of the $\\alpha_1$" in tex        # prose escaped, math untouched
    assert "\\item $a > 0$ (used in \\eqref{eq:def} and \\eqref{eq:nested})." in tex
    assert "\\today" not in tex and "\\date" not in tex
    body = d.to_latex(standalone=False)
    assert "\\documentclass" not in body and body in tex


def test_unicode_from_engines_becomes_latex():
    d = Derivation("Scale σ", "density ∝ 1/θ with λ ≤ 2 and $σ^2$", name="uni")
    d.step(sp.Eq(sp.Symbol("σ") ** 2, sp.Symbol("λ")), "Uses δᵀIδ/2.", assumptions=["λ ≥ 0"])
    tex = d.to_latex()
    assert all(ord(ch) < 128 for ch in tex), [ch for ch in tex if ord(ch) >= 128]
    assert "$\\propto$" in tex and "\\sigma ^{2} = \\lambda" in tex


def test_long_equations_are_broken_to_the_line_width():
    d = sample()
    rows = export.equation_rows(d["eq:long"])
    assert len(rows) > 5
    for left, right in rows:
        assert export.latex_width(left + right) <= export.LINE_WIDTH + 2
    nested = export.equation_rows(d["eq:nested"])
    assert len(nested) > 3 and nested[-1][1].startswith("b \\le") is False
    # the broken rows still spell the same expression once joined
    joined = " ".join(r for _, r in rows).replace("\\quad", "")
    assert joined.count("+") == sp.latex(d["eq:long"].statement.rhs).count("+")


def test_latex_width_estimates():
    w = export.latex_width
    assert w("a + b") < w("a + b + c")
    assert w("\\frac{a}{b + c + d}") == pytest.approx(w("b + c + d") + 0.6)
    assert w("x^{2}") < w("x2")
    assert w("\\left(a\\right)") == pytest.approx(w("(a)"))


def test_markdown_and_jupyter_views():
    d = sample()
    md = d.to_markdown()
    assert md.startswith("# A sample derivation")
    assert "\\tag{3}" in md and "$$" in md and "Uses (1)." in md
    assert "1. J. Polchinski" in md and "reference [1]." in md
    assert d._repr_markdown_() == md
    jl = d._repr_latex_()
    assert jl.startswith("\\begin{gather*}") and jl.count("\\tag{") == len(d.steps)


def test_python_view_runs_and_matches_sympy():
    d = sample()
    src = export.render(d, "python")
    assert "symbrg.core.codegen" in src
    ns: dict = {}
    exec(compile(src, "<generated>", "exec"), ns)  # noqa: S102 - our own generated code
    fn = ns["sample"]
    rng = np.random.default_rng(1)
    av, bv, cv = rng.uniform(0.5, 2, (3, 7))
    expect = sp.lambdify((a, b, c), d.result.statement.rhs, "numpy")(av, bv, cv)
    np.testing.assert_allclose(fn(av, bv, cv), expect, rtol=1e-13)


def test_render_formats_and_bad_format():
    d = sample()
    for fmt in export.FORMATS:
        assert export.render(d, fmt)
    from symbrg.core.errors import UnknownName
    with pytest.raises(UnknownName, match="format"):
        export.render(d, "pdf")


def test_python_view_needs_an_equation():
    from symbrg.core.errors import Unsupported
    d = Derivation("t")
    d.step(sp.Le(a, b))
    with pytest.raises(Unsupported):
        export.to_python(d)
    f = sp.Function("f")
    d.step(sp.Eq(sp.Symbol("g"), sp.Derivative(f(a), a)))
    with pytest.raises(Unsupported, match="no NumPy form"):
        export.to_python(d)


# ---------------------------------------------------------------- determinism and freshness
def test_rendering_is_deterministic():
    assert sample().to_latex() == sample().to_latex()
    assert sample().to_markdown() == sample().to_markdown()


def test_committed_library_is_up_to_date(tmp_path):
    """Regenerate every available document into a temp dir: the committed files must match."""
    report = library.write_library(tmp_path, "latex")
    assert report, "the library is empty"
    stale = [p.name for p, _ in report
             if not (DERIVATIONS / p.name).exists() or (DERIVATIONS / p.name).read_text() != p.read_text()]
    assert not stale, (f"derivations/ is out of date for {stale}; regenerate with "
                       "`symbrg export --all derivations --force`")
    extra = sorted(p.name for p in DERIVATIONS.glob("*.tex")) != sorted(p.name for p, _ in report
                                                                        if p.suffix == ".tex")
    assert not extra, "derivations/ holds files that are not in the library (or misses some)"


def test_committed_documents_refer_only_to_their_own_labels():
    """Every \\ref / \\eqref of a committed document names a \\label of that document: the static half
    of the compile check, which runs without pdflatex (an assumption citing an identity that only
    the sharp-shell certificate has once broke the smooth-regulator document)."""
    dangling = {}
    for tex in sorted(DERIVATIONS.glob("*.tex")):
        text = tex.read_text()
        labels = set(re.findall(r"\\label\{([^}]*)\}", text))
        missing = sorted(set(re.findall(r"\\(?:eq)?ref\{([^}]*)\}", text)) - labels)
        if missing:
            dangling[tex.name] = missing
    assert not dangling, dangling


def test_committed_documents_have_no_doubled_backslash_before_a_command():
    """``\\\\mathrm`` (an escaped backslash written twice into a raw string) is a line break followed
    by text in LaTeX: no error, a wrong equation.  No committed document may contain one."""
    found = {tex.name: m.group(0) for tex in sorted(DERIVATIONS.glob("*.tex"))
             for m in [re.search(r".{0,20}\\\\[A-Za-z]+", tex.read_text())] if m}
    assert not found, found


def test_library_entries_resolve_and_name_documents():
    from symbrg.core.errors import UnknownName
    with pytest.raises(UnknownName):
        library.build("no-such-derivation")
    for name in ("training-flow", "fisher-normal"):
        if name in library.names():
            d = library.build(name)
            assert d.name == name and d.steps
            assert library.render_entry(name) == library.render_entry(name)   # deterministic


@pytest.fixture
def small_library(monkeypatch):
    """Two fast entries, so that the CLI tests do not regenerate the whole library many times."""
    keep = [n for n in ("fisher-normal", "training-flow") if n in library.names()]
    monkeypatch.setattr(library, "LIBRARY", {n: library.LIBRARY[n] for n in keep})
    return keep


# ---------------------------------------------------------------------------- compile check
def _compile(tex: Path, workdir: Path) -> list[str]:
    """pdflatex twice (BibTeX and a third pass when the document cites); return the problems
    (errors, overfull boxes wider than OVERFULL_PT, unresolved citations or references)."""
    def pdflatex() -> subprocess.CompletedProcess:
        return subprocess.run(["pdflatex", "-draftmode", "-interaction=nonstopmode", "-halt-on-error",
                               f"-output-directory={workdir}", str(tex)], capture_output=True, text=True,
                              timeout=120)
    run = pdflatex()
    problems: list[str] = []
    if "\\bibliography{references}" in tex.read_text() and not run.returncode:
        bib = DERIVATIONS / "references.bib"
        (workdir / "references.bib").write_text(bib.read_text() if bib.exists() else to_bibtex())
        bt = subprocess.run(["bibtex", tex.stem], cwd=workdir, capture_output=True, text=True, timeout=60)
        problems += [line for line in bt.stdout.splitlines() if "Warning" in line or "error" in line]
        pdflatex()
    if not run.returncode:        # one more pass resolves \ref and \eqref (and, after BibTeX, \cite)
        run = pdflatex()
    log = (workdir / (tex.stem + ".log")).read_text(errors="replace")
    problems += [line for line in log.splitlines() if line.startswith("!")
                 or re.search(r"Citation `[^']*' .*undefined|undefined references", line)]
    if run.returncode and not problems:
        problems.append(f"pdflatex exit status {run.returncode}")
    for m in re.finditer(r"Overfull \\hbox \(([\d.]+)pt too wide\)[^\n]*", log):
        if float(m.group(1)) > OVERFULL_PT:
            problems.append(m.group(0))
    return problems


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("pdflatex") is None or shutil.which("bibtex") is None,
                    reason="pdflatex/bibtex are not installed "
                    "(Debian: texlive-latex-base texlive-latex-recommended)")
def test_documents_compile_without_overfull_boxes(tmp_path):
    docs = sorted(DERIVATIONS.glob("*.tex"))
    src = tmp_path / "sample.tex"
    src.write_text(sample().to_latex())
    failures = {}
    for tex in [src] + docs:
        problems = _compile(tex, tmp_path)
        if problems:
            failures[tex.name] = problems[:3]
    assert not failures, failures


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_compile_check_catches_overfull_boxes(tmp_path):
    """The check has power: a raw (unbreakable) display far wider than the page is reported."""
    d = Derivation("Too wide", "A raw LaTeX statement is printed as given.", name="wide")
    d.step(" ".join(f"x_{{{k}}}" for k in range(120)), "Unbreakable.", "eq:wide")
    src = tmp_path / "wide.tex"
    src.write_text(d.to_latex())
    assert any("Overfull" in p for p in _compile(src, tmp_path))


# --------------------------------------------------------------------------------------- CLI
def test_cli_export_all_and_force(tmp_path, capsys, small_library):
    out = tmp_path / "lib"
    assert main(["export", "--all", str(out)]) == 0
    files = sorted(out.glob("*.tex"))
    assert [f.stem for f in files] == sorted(library.names())
    assert main(["export", "--all", str(out)]) == 0          # unchanged files: no --force needed
    assert "0 written" in capsys.readouterr().out
    files[0].write_text("edited\n")
    capsys.readouterr()
    assert main(["export", "--all", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--all" in err and "--force" in err
    assert files[0].read_text() == "edited\n"               # nothing overwritten
    assert main(["export", "--check", str(out)]) == 1
    assert main(["export", "--all", str(out), "--force"]) == 0
    assert main(["export", "--check", str(out)]) == 0


def test_cli_export_single_and_bad_input(tmp_path, capsys, small_library):
    name = library.names()[0]
    assert main(["export", name, "--format", "markdown"]) == 0
    assert capsys.readouterr().out.startswith("# ")
    target = tmp_path / "one.tex"
    assert main(["export", name, "--out", str(target)]) == 0
    capsys.readouterr()
    assert main(["export", name, "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("symbrg: error: --out:") and err.count("\n") == 1
    for argv, word in [(["export", "no-such-derivation"], "NAME"),
                       (["export", name, "--format", "pdf"], "format"),
                       (["export", "--all", str(tmp_path / "x"), "--format", "python"], "format"),
                       (["export"], "NAME")]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and word in err and "Traceback" not in err


def test_cli_export_help_has_examples(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["export", "--help"])
    assert exc.value.code == 0
    assert "examples:" in capsys.readouterr().out
