"""No code execution from input: the safe parser (symbrg.core.parsing) and every place user text enters.

* an injection corpus (attribute access, dunders, lambda, comprehensions, strings and escapes, ...)
  refused with InvalidArgument naming the argument, through the Python API and the command line
  (exit status 2, one line on stderr), with a canary file proving that nothing ran;
* the grammar and its bounds (length, depth, number size, huge powers), each next to an accepted
  input close to the refused one;
* hypothesis: random text from a mathematical alphabet is either read as sympy reads it or refused
  with InvalidArgument, never another exception; ``parse_expression(str(e)) == e`` for random e;
* the domain checks of the parsers that use it (activations, regulators, --dim, derive fisher).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symbrg.cli import main
from symbrg.cli.erg import parse_dimension
from symbrg.core import limits
from symbrg.core.derivation import check_identity
from symbrg.core.errors import InvalidArgument, TooExpensive
from symbrg.core.parsing import MAX_BITS, MAX_DEPTH, as_expression, parse_expression, parse_list, parse_number
from symbrg.gaussian.activations import activation
from symbrg.rg.brg import shell_weight
from symbrg.rg.regulators import angular_factor, loop_volume, regulator

x, y = sp.symbols("x y", real=True)
XY = {"x": x, "y": y}


def _payloads(canary: Path) -> list[str]:
    """Injection strings; the ones that would run code create ``canary``."""
    touch = f"__import__('os').system('touch {canary}')"
    return [
        touch, f"x + {touch}", f"exp({touch})", "().__class__", "().__class__.__bases__[0].__subclasses__()",
        "x.__class__", "__builtins__", "__import__", "_x", "x.subs(x, 1)", "x._sympy_()",
        f"(lambda: {touch})()", "lambda x: x", f"[{touch} for _ in (1,)]", "[c for c in ()]",
        "{1: 2}", "'x'", '"x"', "'\\x5f\\x5f'", "b'x'", "f'{x}'", "getattr(x, 'subs')",
        f"exec(\"{touch}\")", f"eval(\"{touch}\")", "Symbol('x')", "Lambda(x, x)", "x[0]", "x;y",
        "x\ny", "x\r\ny", "`x`", "(y := 1)", "x if y else 1", "x == y", "x and y", "not x", "x @ y",
        "x % y", "x // y", "x & y", "~x", "x, y = 1, 2", "open('/etc/passwd')", "x # comment",
        "\uff58", "\uff45\uff58\uff50(x)", "x\u00b2", "\u0445", "x\u200b", "\x00", "\x1b[2J",
        "9**9**9**9", "10^10^10", "2**(10**100)", "(1/2)**(10**100)", "sqrt(2)**(10**9)", "1e999999999",
        "gamma(10**9)", "(2**9999+1)**(1/2)", "sin(atan(3**700))", "exp(exp(exp(9)))",
        "1/0", "log(0)", "oo", "zoo", "nan", "I", "sqrt(-1)",
        "(" * (MAX_DEPTH + 1) + "x" + ")" * (MAX_DEPTH + 1), "-" * (MAX_DEPTH + 1) + "x", "",
    ]


@pytest.fixture()
def canary(tmp_path: Path) -> Path:
    path = tmp_path / "canary"
    yield path
    assert not path.exists(), "an injection string ran code"


def test_injection_corpus_is_refused_by_the_api(canary: Path) -> None:
    for text in _payloads(canary):
        with pytest.raises(InvalidArgument) as err:
            parse_expression(text, "f", symbols=XY)
        assert err.value.argument == "f" and "\n" not in str(err.value), text
        with pytest.raises(InvalidArgument) as err:
            parse_expression(text, "f", new_symbols=sp.Symbol)   # any name allowed: still refused
        assert err.value.argument == "f", text


def test_injection_corpus_is_refused_by_every_parser(canary: Path) -> None:
    for text in _payloads(canary)[:-1]:          # "erf:" (empty) means the default parameters
        for parse, argument in ((lambda t: activation("erf:" + t), "activation"),
                                (lambda t: activation("rectified:" + t), "activation"),
                                (lambda t: regulator("K:" + t), "regulator"),
                                (lambda t: regulator("power:" + t), "regulator"),
                                (lambda t: regulator(r=t), "r"),
                                (parse_dimension, "dim")):
            with pytest.raises(InvalidArgument) as err:
                parse(text)
            assert err.value.argument == argument, (text, argument)


OPTIONS = [  # (command, option, prefix of the value, argument named in the error)
    (["derive", "fisher"], "--f", "", "f"), (["derive", "fisher"], "--sigma", "", "sigma"),
    (["derive", "fisher"], "--data", "", "data"),
    (["derive", "fisher"], "--distribution", "normal:", "distribution"),
    (["derive", "fisher", "--model", "gp"], "--kernel", "", "kernel"),
    (["derive", "fisher", "--model", "gp"], "--points", "", "points"),
    (["derive", "fisher", "--model", "gp", "--points", "0,1"], "--noise", "", "noise"),
    (["erg", "threshold"], "--regulator", "K:", "regulator"),
    (["erg", "lpa"], "--regulator", "r:", "regulator"),
    (["erg", "threshold"], "--dim", "", "dim"),
    (["derive", "brg"], "--activation", "erf:", "activation"),
]


@pytest.mark.parametrize("command,option,prefix,argument", OPTIONS,
                         ids=[f"{o[0][-1]} {o[1]}" for o in OPTIONS])
def test_injection_corpus_is_refused_by_the_cli(command: list[str], option: str, prefix: str, argument: str,
                                                canary: Path, capsys: pytest.CaptureFixture) -> None:
    for text in _payloads(canary):
        if not text and (option in ("--data", "--points") or prefix == "erf:"):
            continue                      # empty: the default
        assert main([*command, f"{option}={prefix}{text}"]) == 2, text
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"symbrg: error: {argument}: "), (text, err)


def test_python_entry_points_read_strings_safely(canary: Path) -> None:
    """Values that may arrive as text (a web form) go through the parser, never sympify."""
    touch = _payloads(canary)[0]
    assert shell_weight(2, "1") == 1 and shell_weight("1/2", "1") == 0
    assert check_identity("sin(x)**2 + cos(x)**2", "1").symbolic_zero
    assert loop_volume("d") == loop_volume(sp.Symbol("d", positive=True)) and loop_volume("3") == loop_volume(3)
    for call, argument in ((lambda: shell_weight(touch, 1), "fisher_eigenvalue"),
                           (lambda: shell_weight(1, touch), "cutoff"),
                           (lambda: check_identity(touch, 0), "lhs"), (lambda: check_identity(0, touch), "rhs"),
                           (lambda: loop_volume(touch), "d"), (lambda: angular_factor(touch), "d"),
                           (lambda: regulator(K=touch), "K"), (lambda: regulator(r=touch), "r")):
        with pytest.raises(InvalidArgument) as err:
            call()
        assert err.value.argument == argument


# ------------------------------------------------------------------ the grammar
@pytest.mark.parametrize("text,expected", [
    ("a*x + b*x**2", sp.Symbol("a") * x + sp.Symbol("b") * x ** 2),
    ("-x**2", -(x ** 2)), ("-x^2", -(x ** 2)), ("2**3**2", sp.Integer(512)), ("2^-1", sp.Rational(1, 2)),
    ("x/y/2", x / (2 * y)), ("x - y - 1", x - y - 1), ("+-+x", -x), ("(x)", x),
    ("0.1", sp.Rational(1, 10)), ("2.5e-3", sp.Rational(1, 400)), (".5", sp.Rational(1, 2)),
    ("1E3", sp.Integer(1000)), ("1.", sp.Integer(1)), ("007", sp.Integer(7)),
    ("exp(-x**2/2)/sqrt(2*pi)", sp.exp(-x ** 2 / 2) / sp.sqrt(2 * sp.pi)),
    ("Max(x, 0) + abs(y) + Heaviside(x, 1/2)", sp.Max(x, 0) + sp.Abs(y) + sp.Heaviside(x, sp.S.Half)),
    ("log(8, 2) + E", 3 + sp.E), (" x\t* y ", x * y),
])
def test_grammar(text: str, expected: sp.Expr) -> None:
    assert parse_expression(text, "f", symbols=XY, new_symbols=sp.Symbol) == expected


def test_names_resolve_to_the_callers_symbols_or_are_refused_with_the_list() -> None:
    positive = sp.Symbol("s", positive=True)
    assert parse_expression("s*x", "f", symbols={"s": positive, "x": x}) == positive * x
    with pytest.raises(InvalidArgument, match=r"column 3: unknown name 'q'; it may use x, y"):
        parse_expression("x*q", "f", symbols=XY)
    with pytest.raises(InvalidArgument, match="exp is a function"):
        parse_expression("exp", "f", symbols=XY)
    with pytest.raises(InvalidArgument, match="unknown function 'getattr'"):
        parse_expression("getattr(x)", "f", symbols=XY)
    with pytest.raises(InvalidArgument, match="takes 1 argument"):
        parse_expression("exp(x, y)", "f", symbols=XY)


def test_numbers_lists_and_infinity() -> None:
    assert parse_number("sqrt(2)/2", "s") == sp.sqrt(2) / 2
    with pytest.raises(InvalidArgument, match="a number is expected"):
        parse_number("x", "s")
    assert parse_list("0, 1/2, Max(1, 2)", "data") == [0, sp.Rational(1, 2), 2]
    with pytest.raises(InvalidArgument, match="column 3"):
        parse_list("0,", "data")
    with pytest.raises(InvalidArgument, match="one expression"):
        parse_expression("1, 2", "f")
    assert parse_number("-oo", "b", allow_infinity=True) == -sp.oo
    with pytest.raises(InvalidArgument, match="oo is not allowed"):
        parse_number("oo", "b")
    with pytest.raises(InvalidArgument, match="undefined"):
        parse_number("oo - oo", "b", allow_infinity=True)


def test_as_expression_parses_text_and_never_sympifies_it() -> None:
    assert as_expression("x + 1", "v") == sp.Symbol("x") + 1
    assert as_expression(2.5, "v") == sp.Float(2.5) and as_expression(x, "v") is x
    with pytest.raises(InvalidArgument, match="unexpected '_'"):
        as_expression("__import__('os')", "v")
    with pytest.raises(InvalidArgument, match="expected an expression or a number"):
        as_expression(object(), "v")
    with pytest.raises(InvalidArgument, match="expected text"):
        parse_list(3, "v")


# ------------------------------------------------------------------ the bounds (each next to an accepted case)
def test_length_is_bounded_by_a_liftable_limit() -> None:
    text = "+".join(["x"] * 5001)                      # 10,001 characters
    with pytest.raises(TooExpensive, match="--limit expression="):
        parse_expression(text, "f", symbols=XY)
    assert parse_expression(text[2:], "f", symbols=XY) == 5000 * x
    with limits.lifted(expression=20_000):
        assert parse_expression(text, "f", symbols=XY) == 5001 * x


def test_depth_is_bounded() -> None:
    ok = "(" * (MAX_DEPTH - 1) + "x" + ")" * (MAX_DEPTH - 1)
    assert parse_expression(ok, "f", symbols=XY) == x
    with pytest.raises(InvalidArgument, match=f"nested deeper than {MAX_DEPTH}"):
        parse_expression("(" + ok + ")", "f", symbols=XY)
    assert parse_expression("x**" * 50 + "x", "f", symbols=XY).is_Pow


def test_number_size_is_bounded_before_evaluation() -> None:
    assert parse_number("2**1000", "n") == sp.Integer(2) ** 1000
    assert parse_number("2**1000 * 2**90", "n") == sp.Integer(2) ** 1090
    assert parse_number("1.7976931348623157e308", "n") > 10 ** 308          # the float64 range fits
    for big in ("2**1200", "2**1000 * 2**200", "(2**1000)**2", "1e400", "1" * 400,
                "(1/3)**2000", "2**1099 + 2**1099 + 2**1099", "9**9**9**9", "10^10^10",
                "2**(10**100)", "E**2000", "pi**(10**100)", "2**(pi*10**100)"):
        with pytest.raises(InvalidArgument, match=f"more than {MAX_BITS} bits"):
            parse_number(big, "n")
    assert parse_number("(2**250 + 1)**(1/2)", "n") ** 2 == 2 ** 250 + 1
    with pytest.raises(InvalidArgument, match="fractional power"):
        parse_number("(2**300 + 1)**(1/2)", "n")
    assert parse_number("gamma(170)", "n") == sp.factorial(169)
    with pytest.raises(InvalidArgument, match="gamma of a number beyond 170"):
        parse_number("gamma(171)", "n")
    assert parse_number("exp(700)", "n") == sp.exp(700) and parse_number("cosh(-750)", "n") == sp.cosh(750)
    for huge in ("exp(751)", "sinh(-1000)", "exp(exp(7))", "exp(1e300)"):
        with pytest.raises(InvalidArgument, match="beyond 750"):
            parse_number(huge, "n")
    assert parse_expression("x**(10**100)", "f", symbols=XY) == x ** (10 ** 100)   # symbolic: not evaluated
    assert parse_expression("(x + 1)**(10**100)", "f", symbols=XY).is_Pow
    assert parse_expression("(2*x)**1000", "f", symbols=XY) == 2 ** 1000 * x ** 1000
    for hidden in ("(2*x)**(10**100)", "(x/3)**(10**9)", "Abs(2*x)**(10**100)", "sqrt(2*x)**(10**100)"):
        with pytest.raises(InvalidArgument, match=f"more than {MAX_BITS} bits"):   # sympy distributes
            parse_expression(hidden, "f", symbols=XY)
    assert parse_number("sqrt(2**250 + 1)", "n") ** 2 == 2 ** 250 + 1
    for root in ("sqrt(2**300 + 1)", "sqrt((2**300 + 1)*x)"):
        with pytest.raises(InvalidArgument, match="fractional power"):
            parse_expression(root, "f", symbols=XY)


def test_values_must_be_real_and_defined() -> None:
    assert parse_number("asin(1)", "n") == sp.pi / 2
    for bad in ("asin(2)", "log(-1)", "(-8)**(1/3)", "sqrt(-2)", "0**-1", "tan(pi/2)", "x/0"):
        with pytest.raises(InvalidArgument):
            parse_expression(bad, "f", symbols=XY)
    assert parse_number("8**(1/3)", "n") == 2 and parse_number("0**2", "n") == 0


# ------------------------------------------------------------------ hypothesis
_PIECES = ["x", "y", "1", "2", "3", "10", "0", "+", "-", "*", "/", "**", "^", "(", ")", " ", ",",
           "exp(", "sin(", "sqrt(", "log(", "Abs(", "Max(", "pi", "E", "x*", "(x", "2*"]
_ODD = list("._'\"[]{}:;=!@#$%&|\\`~?<>\n\t") + ["\uff58", "\u00e9", "__", "lambda", "import", "1e5"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_PIECES), max_size=14).map("".join))
def test_random_math_text_reads_as_sympy_reads_it_or_is_refused(text: str) -> None:
    try:
        ours = parse_expression(text, "f", symbols=XY)
    except InvalidArgument as exc:
        assert exc.argument == "f" and "\n" not in str(exc)
        return
    assert isinstance(ours, sp.Expr)
    try:
        theirs = sp.sympify(text, locals=XY)                # oracle, on a safe alphabet only (test code)
    except sp.SympifyError:
        assert re.search(r"(?<![0-9])0[0-9]", text), text  # only Python refuses leading zeros ("01")
        return
    assert ours == theirs or sp.simplify(ours - theirs) == 0, (text, ours, theirs)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_PIECES + _ODD), max_size=14).map("".join))
def test_random_text_with_foreign_characters_never_escapes(text: str) -> None:
    try:
        assert isinstance(parse_expression(text, "f", new_symbols=sp.Symbol), sp.Expr)
    except InvalidArgument as exc:
        assert exc.argument == "f" and "\n" not in str(exc)


_ATOMS = st.sampled_from([x, y, sp.Integer(2), sp.Integer(-3), sp.Rational(1, 2), sp.Rational(-7, 3),
                          sp.pi, sp.E])
_FUNCTIONS = [sp.exp, sp.sin, sp.cos, sp.tanh, sp.atan, sp.erf, sp.Abs, sp.sign, sp.Heaviside,
              lambda a: sp.log(1 + a ** 2), lambda a: sp.sqrt(1 + a ** 2)]
_EXPRS = st.recursive(_ATOMS, lambda inner: st.one_of(
    st.builds(lambda a, b: a + b, inner, inner), st.builds(lambda a, b: a * b, inner, inner),
    st.builds(lambda a, b: a - b, inner, inner), st.builds(lambda a, b: a / (1 + b ** 2), inner, inner),
    st.builds(lambda a, n: a ** n, inner, st.integers(0, 4)), st.builds(sp.Max, inner, inner),
    st.builds(lambda f, a: f(a), st.sampled_from(_FUNCTIONS), inner)), max_leaves=12)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_EXPRS)
def test_round_trip_of_printed_expressions(e: sp.Expr) -> None:
    if e.has(sp.zoo, sp.nan, sp.I):
        return                                  # not a finite real expression: refused by design
    text = str(e)
    theirs = sp.sympify(text, locals=XY)        # e itself, unless sympy built e in a non-canonical form
    assert parse_expression(text, "e", symbols=XY) == theirs, text


# ------------------------------------------------------------------ domains of the parsers that use it
def test_activation_parameters_are_numbers_with_checked_domains() -> None:
    assert activation("erf:1,0.8,0.2").params == (1, sp.Rational(4, 5), sp.Rational(1, 5))
    assert activation("monomial:2**3").params[-1] == 1 and activation("rectified:32").params == (32,)
    with pytest.raises(InvalidArgument, match="unknown name 'a'"):
        activation("erf:a,b,c")
    with pytest.raises(InvalidArgument, match="must be an integer"):
        activation("rectified:2.5")
    with pytest.raises(InvalidArgument, match=">= 0"):
        activation("monomial:-1")
    with pytest.raises(TooExpensive, match="activation_degree"):
        activation("rectified:33")
    with pytest.raises(TooExpensive, match="1e\\+300 exceeds"):
        activation("rectified:1e300")
    with pytest.raises(InvalidArgument, match="too large"):
        activation("rectified:1e400")
    with pytest.raises(TooExpensive):
        activation("polynomial:" + ",".join(["1"] * 34))
    with limits.lifted(activation_degree=40):
        assert activation("monomial:33").params[-1] == 1
    assert activation("relu").name == "relu" and activation("tanh").name == "tanh"
    for spec in ("relu:5", "tanh:1", "gelu:x"):
        with pytest.raises(InvalidArgument, match="takes no parameters"):
            activation(spec)
    assert activation("gaussian:0.5").params == (sp.Rational(1, 2),)
    for b in ("0", "-1"):
        with pytest.raises(InvalidArgument, match="needs b > 0"):
            activation(f"gaussian:{b}")


def test_regulator_text() -> None:
    assert regulator("power:2.5").name == "power:5/2" and regulator("power:100").name == "power:100"
    for b in ("1e300", "0", "-1", "101"):
        with pytest.raises(InvalidArgument, match="0 < b <= 100"):
            regulator(f"power:{b}")
    assert regulator("K:(1-z)*theta(1-z)").cutoff_function == (1 - sp.Symbol("z", nonnegative=True)) * \
        sp.Heaviside(1 - sp.Symbol("z", nonnegative=True))
    with pytest.raises(InvalidArgument, match="unknown name 'y'; it may use z"):
        regulator("K:exp(-y)")
    with pytest.raises(InvalidArgument, match="too large"):
        regulator("power:1e400")
    assert regulator(K="exp(-z**2)").name == "K:exp(-z**2)"


def test_dimension_text() -> None:
    assert parse_dimension("3") == 3 and parse_dimension("5/2") == sp.Rational(5, 2)
    assert parse_dimension("2.5") == sp.Rational(5, 2) and parse_dimension("d") == sp.Symbol("d", positive=True)
    for bad, why in (("-3", "> 0"), ("0", "> 0"), ("d + 1", "a symbol name"), ("pi", "a symbol name")):
        with pytest.raises(InvalidArgument, match=why):
            parse_dimension(bad)


@pytest.mark.parametrize("argv,message", [
    (["--distribution", "normal:0,-1"], "distribution: must be > 0"),
    (["--distribution", "uniform:1,0"], "distribution: uniform:a,b needs a < b"),
    (["--distribution", "exponential:0"], "distribution: must be > 0"),
    (["--model", "gp", "--kernel", "nngp:relu:x"], "kernel: expected nngp:<activation>[:depth]"),
    (["--model", "gp", "--kernel", "nngp:relu:0"], "kernel: must be >= 1"),
    (["--data", "0,1,"], "data: cannot read '0,1,': column 5"),
])
def test_derive_fisher_domains(argv: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["derive", "fisher", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"symbrg: error: {message}") and err.count("\n") == 1, err


@pytest.mark.parametrize("argv", [["--distribution", "uniform:0,1"], ["--distribution", "exponential:1/2"],
                                  ["--data", "0, 1/2, 2.5"], ["--f", "a*exp(-k*x)", "--data", "0,1"]])
def test_derive_fisher_accepts_the_valid_neighbours(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    assert main(["derive", "fisher", *argv]) == 0
    assert "I" in capsys.readouterr().out
