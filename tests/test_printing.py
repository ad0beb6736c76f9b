"""The printer hierarchy (dispatch on the node's MRO, new node types), the one references table
(BibTeX resolves every citation of the library, the paper once with its four authors, no
``thebibliography``), the theorem node in every format and the cos-net document's theorem."""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import sympy as sp

from symbrg.core import printing
from symbrg.core.derivation import Derivation, Step, Theorem, Verification
from symbrg.core.errors import UnknownName
from symbrg.core.references import ALIASES, REFERENCES, canonical, reference, to_bibtex

ROOT = Path(__file__).resolve().parents[1]
DERIVATIONS = ROOT / "derivations"
a, b = sp.symbols("a b", positive=True)


def small() -> Derivation:
    d = Derivation("Small", "After \\cite{HKMS24}.", name="small")
    d.theorem("$a = a$ for every $a$ \\cite{Polchinski1984}.", ("$a > 0$", "broad inputs"), "thm:small",
              title="Reflexivity", proof=("eq:s1",))
    d.step(sp.Eq(a, a), "Trivial.", "eq:s1", cites=("BKS23",))
    return d


# ------------------------------------------------------------------------------------ dispatch
def test_dispatch_walks_the_mro():
    class MyStep(Step):
        pass
    s = MyStep(sp.Eq(a, b), "why", "eq:x")
    p = printing.TextPrinter()
    p.number = {"eq:x": 1}
    assert p.doprint(Verification()) == printing.TextPrinter().doprint(Verification())
    assert printing.LatexPrinter().doprint(sp.sqrt(a)) == "\\sqrt{a}"          # sympy's printer
    assert printing.TextPrinter().doprint(a ** 2) == sp.pretty(a ** 2, use_unicode=True)   # 2-D unicode
    latex = printing.LatexPrinter()
    latex.number = {"eq:x": 1}
    assert latex.doprint(s) == latex.doprint(Step(sp.Eq(a, b), "why", "eq:x"))   # the parent's method
    with pytest.raises(Exception, match="cannot print a object"):
        printing.TextPrinter().doprint(object())


def test_a_new_node_type_adds_a_printer_method():
    @dataclass(frozen=True)
    class Remark:
        text: str

    class RemarkPrinter(printing.MarkdownPrinter):
        def _print_Remark(self, r: Remark) -> str:  # noqa: N802
            return f"> {r.text}"
    assert RemarkPrinter().doprint(Remark("note")) == "> note"
    assert RemarkPrinter().doprint(small()) == small().to_markdown()   # everything else inherited


def test_model_does_not_import_the_printers():
    src = (ROOT / "symbrg/core/derivation.py").read_text()
    assert "symbrg.core.printing" not in re.sub(r'""".*?"""|#.*', "", src, flags=re.S).replace(
        "(import symbrg.core.printing)", "")
    out = subprocess.run(["python", "/work/shared/tools/import_cycles.py", str(ROOT / "symbrg")],
                         capture_output=True, text=True) if Path("/work/shared/tools/import_cycles.py").exists() \
        else None
    if out is not None:
        assert "symbrg.core.printing" not in out.stdout


def test_render_and_methods_agree():
    d = small()
    assert printing.render(d, "latex") == d.to_latex() == printing.to_latex(d)
    assert printing.render(d, "markdown") == d.to_markdown()
    assert printing.render(d, "text") == d.to_text()
    assert d._repr_latex_().startswith("\\begin{gather*}")


# ---------------------------------------------------------------------------------- references
def test_the_paper_is_one_entry_with_its_four_authors():
    paper = reference("HKMS24")
    assert paper is reference("hkms2024") is REFERENCES["HKMS2024"]
    assert paper.authors == ("Jessica N. Howard", "Marc S. Klinger", "Anindita Maiti", "Alexander G. Stapleton")
    assert paper.arxiv == "2405.17538" and paper.year == 2025 and "SciPost" in paper.journal
    bib = to_bibtex()
    assert bib.count("2405.17538") == 2 and bib.count("@article{HKMS2024,") == 1   # eprint + note
    assert all(canonical(k) == v for k, v in ALIASES.items())
    with pytest.raises(UnknownName, match="cites"):
        canonical("Knuth1984")


def test_unknown_keys_are_refused_when_a_step_is_added():
    d = Derivation("t")
    with pytest.raises(UnknownName):
        d.step(sp.Eq(a, a), cites=("nobody",))
    with pytest.raises(UnknownName):
        d.theorem("see \\cite{nobody}")
    assert d.step(sp.Eq(a, a), cites=("BKS23", "BKS2023")).cites == ("BKS2023",)


def test_markdown_and_text_number_the_references_from_the_table():
    md, txt = small().to_markdown(), small().to_text()
    assert "1. J. N. Howard, M. S. Klinger, A. Maiti, A. G. Stapleton" in md
    assert "After [1]." in md and "See [3]." in md
    assert "[2] J. Polchinski" in txt and "[3] D. S. Berman" in txt


# ------------------------------------------------------------------------------------- theorem
def test_theorem_in_every_format():
    d = small()
    tex = d.to_latex()
    assert "\\newtheorem{theorem}" in tex and "\\usepackage{amsthm}" in tex
    assert "\\begin{theorem}[Reflexivity]\\label{thm:small}" in tex and "\\item broad inputs;" in tex
    assert "The result of this appendix is Theorem~\\ref{thm:small}." in tex
    assert "**Theorem.** *(Reflexivity)* Assume (1) $a > 0$; (2) broad inputs. Then" in d.to_markdown()
    assert "Theorem. (Reflexivity)" in d.to_text() and "(2) broad inputs" in d.to_text()
    plain = Derivation("No theorem")
    plain.step(sp.Eq(a, a), label="eq:p")
    assert "amsthm" not in plain.to_latex() and "bibliography" not in plain.to_latex()
    assert isinstance(d.theorems[0], Theorem)


# -------------------------------------------------------------------------- the library (files)
def test_library_has_no_thebibliography_and_the_bib_resolves_every_cite():
    docs = sorted(DERIVATIONS.glob("*.tex"))
    assert docs and (DERIVATIONS / "references.bib").exists()
    bib = (DERIVATIONS / "references.bib").read_text()
    assert bib == to_bibtex()
    keys = set(re.findall(r"^@\w+\{([^,]+),", bib, re.M))
    for tex in docs:
        text = tex.read_text()
        assert "thebibliography" not in text, tex.name
        cited = {k.strip() for g in re.findall(r"\\cite\{([^}]*)\}", text) for k in g.split(",")}
        assert cited <= keys, (tex.name, cited - keys)
        assert ("\\bibliography{references}" in text) == bool(cited), tex.name


def test_cosnet_document_states_the_theorem():
    for name in ("cosnet-theorem", "cosnet-theorem-any-d", "cosnet-theorem-smooth"):
        text = (DERIVATIONS / f"{name}.tex").read_text()
        assert "\\begin{theorem}" in text and "\\end{theorem}" in text
        assert "The result of this appendix is Theorem~\\ref{thm:cosnet-brg-erg}." in text
        for words in ("generalized cos-net", "infinite width", "broad inputs", "removed (stiff-marginal)"):
            assert words in text


@pytest.mark.skipif(shutil.which("pdflatex") is None or shutil.which("bibtex") is None,
                    reason="pdflatex/bibtex are not installed")
def test_bibtex_resolves_the_theorem_document(tmp_path):
    tex = tmp_path / "small.tex"
    tex.write_text(small().to_latex())
    (tmp_path / "references.bib").write_text(to_bibtex())
    run = lambda *cmd: subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)  # noqa: E731
    run("pdflatex", "-interaction=nonstopmode", "small.tex")
    bt = run("bibtex", "small")
    assert bt.returncode == 0 and "Warning" not in bt.stdout, bt.stdout
    run("pdflatex", "-interaction=nonstopmode", "small.tex")
    last = run("pdflatex", "-interaction=nonstopmode", "small.tex")
    log = (tmp_path / "small.log").read_text(errors="replace")
    assert last.returncode == 0 and "undefined" not in log


@pytest.mark.parametrize("tex, text", [
    (r"\sigma_{w}^{2}", "σ_w²"), (r"K^{(0)}_{11}", "K⁽⁰⁾₁₁"), (r"\mathbb{E}[\varphi(u)]", "𝔼[φ(u)]"),
    (r"\frac{T}{2N\Lambda} - m^2", "T/(2NΛ) - m²"), (r"\partial_b\log p", "∂_b log p"), (r"x\sim\mathcal{N}(0,1)", "x∼𝒩(0,1)"),
    (r"w^{\mathrm{ridge}}_k", "w^(ridge)ₖ"), (r"\left(a\,b\right)", "(a b)")])
def test_text_views_read_latex_as_unicode(tex, text):
    assert printing.tex_to_unicode(tex) == text


def test_text_view_of_latex_named_symbols_and_concise_reprs():
    k = sp.Symbol("K^{(1)}_{12}")
    assert printing.pretty(sp.Eq(k, a ** 2)) == sp.pretty(sp.Eq(sp.Symbol("K⁽¹⁾₁₂"), a ** 2), use_unicode=True)
    d = small()
    assert repr(d).startswith("<Derivation ") and "steps" in repr(d) and len(repr(d)) < 120
    assert str(d) == d.to_text()
    assert repr(Verification()).startswith("<Verification (assumed)")


def test_metrics_and_certificates_display_in_jupyter():
    from symbrg.cosnet.certificate import certify
    from symbrg.information.fisher import gaussian_regression
    x, p, q = sp.symbols("x p q")
    metric = gaussian_regression(p * x + q, [p, q], x, data=[0, 1, 2])
    assert repr(metric).startswith("<FisherMetric of ") and "[[5/3, 1], [1, 1]]" in repr(metric)
    assert metric._repr_latex_().startswith("$I(p, q) = ") and "\\frac{5}{3}" in metric._repr_latex_()
    cert = certify(1, "sharp", points=2)
    assert repr(cert).startswith("<Certificate ") and "mutations refused, verified>" in repr(cert)
    html = cert._repr_html_()
    assert html.count("<tr>") == 1 + len(cert.identities) + 1 + len(cert.mutations) and "NOT" not in html


def _import_source(src: str, tmp_path, name: str):
    import importlib.util
    path = tmp_path / f"{name}.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("act, depth", [("relu", 3), ("erf", 2), ("gelu", 2), ("rectified:2", 2), ("abs", 1)])
def test_python_format_is_a_self_contained_module_equal_to_the_compiled_program(tmp_path, act, depth):
    import numpy as np

    import symbrg
    arch = symbrg.mlp(act, depth=depth, sigma_w=1.3, sigma_b=0.1)
    prog = arch.ntk_program
    src = printing.python_module(prog, name=f"ntk {act}", title="NTK")
    assert "symbrg" not in src.split('"""', 2)[2] and "Self-contained" in src     # imports numpy, math only
    module = _import_source(src, tmp_path, "generated")
    fn = getattr(module, module.__all__[0])
    import inspect
    assert list(inspect.signature(fn).parameters)[:3] == ["s_11", "s_22", "s_12"]
    x = np.random.default_rng(1).normal(size=(6, 4))
    s = x @ x.T / 4
    args = [np.diag(s)[:, None], np.diag(s)[None, :], s] + [{"sigma_w": 1.3, "sigma_b": 0.1}[str(v)[:7]]
                                                          for v in prog.inputs[3:]]
    got, want = fn(*args), prog.compile()(*args)
    off = ~np.eye(6, dtype=bool)
    for g, w in zip(got, want):                 # generic correlations: the same numbers
        assert np.allclose(g[off], w[off], rtol=1e-12, atol=1e-14)
        # c = 1: the textbook closed form loses about half the digits there (documented), symbrg does not
        assert np.allclose(np.diag(g), np.diag(w), rtol=1e-6)


def test_python_format_refuses_kernels_without_elementary_form():
    import symbrg
    from symbrg.core.errors import Unsupported
    with pytest.raises(Unsupported) as info:
        printing.python_module(symbrg.mlp("tanh", depth=1).nngp_program, name="nngp")
    assert info.value.argument == "format" and "Program.compile" in str(info.value)


def test_special_nodes_work_in_sympy_lambdify_and_pretty():
    import mpmath
    import numpy as np

    from symbrg.core.special import ArcCosKernel, GramDet
    q11, q12, q22 = sp.symbols("q11 q12 q22", real=True)
    for node in (ArcCosKernel(1, 1, q11, q12, q22), ArcCosKernel(0, 2, q11, q12, q22), GramDet(q11, q12, q22)):
        vals = (1.3, 0.4, 0.9)
        exact = float(node.elementary().subs(dict(zip((q11, q12, q22), vals))).evalf(30))
        assert np.isclose(sp.lambdify((q11, q12, q22), node, "numpy")(*vals), exact, rtol=1e-13)
        mp = sp.lambdify((q11, q12, q22), node, "mpmath")(*map(mpmath.mpf, vals))
        assert abs(float(mp) - exact) < 1e-14 * max(1, abs(exact))
        assert "ArcCosKernel" not in sp.pretty(node) and "GramDet" not in sp.pretty(node)
