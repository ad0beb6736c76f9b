r"""Safe reading of user text as a sympy expression: the mathematical grammar and nothing else.

Job: turn text that comes from a command line, a file or a web form (``"a*exp(-k*x)"``,
``"(1 - z)*Heaviside(1 - z)"``, ``"1/10"``) into a sympy object **without ever running Python**.
``sympy.sympify`` evaluates its input as Python (``__import__('os').system(...)`` runs); this
module has its own tokenizer and recursive-descent parser and builds sympy objects directly.

Grammar (Python's precedence; ``^`` is a synonym of ``**``)::

    expression := term (('+' | '-') term)*
    term       := factor (('*' | '/') factor)*
    factor     := ('+' | '-') factor | power          # -x**2 = -(x**2)
    power      := atom [('**' | '^') factor]          # right associative: 2**3**2 = 2**9
    atom       := NUMBER | NAME | NAME '(' expression (',' expression)* ')' | '(' expression ')'
    NUMBER     := digits ['.' digits] [('e' | 'E') ['+' | '-'] digits]   (exact: 0.1 = 1/10)
    NAME       := an ASCII letter, then ASCII letters, digits or '_'

Names resolve, in order, to the constants ``pi``, ``E`` (and ``oo`` where the caller allows it),
the whitelisted functions (:data:`DEFAULT_FUNCTIONS`, called with parentheses), the caller's
``symbols``, and symbols made by the caller's ``new_symbols``; anything else is refused.  Spaces
and tabs separate tokens; every other character (quotes, dots, brackets, ``;``, ``=``, newlines,
non-ASCII look-alikes ...) is refused.

Bounds, so that no text can make the parser hang or exhaust memory: the length of the text
(limit ``expression``, :mod:`symbrg.core.limits`), the nesting depth (:data:`MAX_DEPTH`), the size of
every exact number built (:data:`MAX_BITS`, checked *before* a power is evaluated, so
``9**9**9**9`` is refused at once), the size of a number under a fractional power
(:data:`ROOT_BITS`: sympy factors it) and the argument of ``gamma`` (a factorial).  Results must
be finite and real (no ``zoo``, ``nan``, ``I``; ``oo`` only with ``allow_infinity``).

Every refusal is a :class:`symbrg.core.errors.InvalidArgument` naming the caller's ``argument`` and
saying, in one line, the column and what is wrong.
"""
from __future__ import annotations

import functools
import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TypeVar

import sympy as sp

from symbrg.core.errors import InvalidArgument
from symbrg.core.limits import Limit

__all__ = ["Function", "DEFAULT_FUNCTIONS", "EXPRESSION", "MAX_DEPTH", "MAX_BITS", "ROOT_BITS",
           "parse_expression", "parse_number", "parse_list", "as_expression"]

#: Length of one text the parser reads (parsing and sympy's simplification of sums grow with it).
EXPRESSION = Limit("expression", 10_000, "characters of one expression or list typed by a user")
#: Deepest nesting of parentheses, unary signs and powers.
MAX_DEPTH = 100
#: Largest exact number the parser builds (numerator or denominator, in bits): the float64 range,
#: 1e308, with room.  sympy's exact arithmetic is superlinear in it (roots factor, functions
#: rewrite atan(n) and compare), so thousands of digits would already cost seconds per node.
MAX_BITS = 1_100
#: Largest number (in bits) under a fractional power: sympy factors it to extract roots.
ROOT_BITS = 256


@dataclass(frozen=True)
class Function:
    """A whitelisted function: the sympy callable, its number of arguments (``most=None``:
    any number), the largest numeric argument it accepts (``gamma`` evaluates factorials), and
    ``exponent`` for a power in disguise (``sqrt`` is ``**(1/2)``: bounded like a power)."""

    build: Callable[..., sp.Expr]
    least: int = 1
    most: int | None = 1
    max_argument: int | None = None
    exponent: sp.Rational | None = None


#: The functions user text may call, by the name it uses.
DEFAULT_FUNCTIONS: Mapping[str, Function] = MappingProxyType({
    **{name: Function(getattr(sp, name)) for name in (
        "sin", "cos", "tan", "tanh", "asin", "acos", "atan", "erf", "erfc", "Abs", "sign")},
    # exp(a) has about 1.44*|a| bits: keep it within MAX_BITS (float64 overflows at a = 709.8)
    **{name: Function(getattr(sp, name), max_argument=750) for name in ("exp", "sinh", "cosh")},
    "sqrt": Function(sp.sqrt, exponent=sp.Rational(1, 2)),
    "log": Function(sp.log, 1, 2),
    "abs": Function(sp.Abs),
    "Heaviside": Function(sp.Heaviside, 1, 2),
    "Max": Function(sp.Max, 1, None),
    "Min": Function(sp.Min, 1, None),
    "gamma": Function(sp.gamma, max_argument=170),             # 170! = 7e306
})

_CONSTANTS = {"pi": sp.pi, "E": sp.E}
#: Names sympy reads as non-real or infinite values: never symbols (``oo`` only if allowed).
_RESERVED = ("oo", "zoo", "nan", "I")
_TOKEN = re.compile(r"(?P<space>[ \t]+)|(?P<number>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
                    r"|(?P<name>[A-Za-z][A-Za-z0-9_]*)|(?P<op>\*\*|[-+*/^(),])", re.ASCII)
_NUMBER = re.compile(r"([0-9]*)\.?([0-9]*)(?:[eE]([+-]?[0-9]+))?", re.ASCII)
#: Why a character is not part of the grammar, where a hint helps.
_HINTS = {".": "attribute access is not part of the grammar", "'": "strings are not allowed",
          '"': "strings are not allowed", "[": "subscripts are not allowed",
          "_": "names start with a letter", ";": "one expression only", "\n": "one line only",
          "=": "assignments and comparisons are not allowed", "\\": "escapes are not allowed"}
_BITS_PER_DIGIT = 3.33
_T = TypeVar("_T")
#: Products of up to this many factors are multiplied pair by pair, exactly as sympy reads them.
_FOLD = 32


@dataclass(frozen=True)
class _Token:
    kind: str      # "number", "name", "op" or "end"
    text: str
    column: int    # 1-based


def _tokens(text: str, fail: Callable[[int, str], InvalidArgument]) -> list[_Token]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            ch = text[pos]
            if not ch.isascii():
                raise fail(pos + 1, f"non-ASCII character {ch!a} (only ASCII letters, "
                                    "digits and + - * / ^ ( ) , are allowed)")
            raise fail(pos + 1, f"unexpected {ch!r}" + (f" ({_HINTS[ch]})" if ch in _HINTS else ""))
        kind = m.lastgroup   # every alternative of _TOKEN is a named group
        if kind is not None and kind != "space":
            out.append(_Token(kind, m.group(), pos + 1))
        pos = m.end()
    out.append(_Token("end", "", len(text) + 1))
    return out


def _bits(q: sp.Rational) -> int:
    """Bits of the larger of |numerator| and denominator."""
    return max(int(q.p).bit_length(), int(q.q).bit_length())


def _coefficient(e: sp.Expr) -> sp.Rational | None:
    """The rational number in front of ``e`` (``e`` itself if rational), in O(1)."""
    if e.is_Rational:
        return e
    return e.args[0] if e.is_Mul and e.args[0].is_Rational else None


def _log2(q: sp.Rational) -> float:
    """log2 of the larger of |numerator| and denominator: the bits that one power of q adds."""
    return max(math.log2(abs(int(q.p)) or 1), math.log2(int(q.q)))


class _Parser:
    """One pass over the tokens of one text; each grammar rule is one method."""

    def __init__(self, text: str, argument: str, symbols: Mapping[str, sp.Expr],
                 new_symbols: Callable[[str], sp.Expr] | None, functions: Mapping[str, Function],
                 allow_infinity: bool):
        self.text, self.argument = text, argument
        self.symbols, self.new_symbols, self.functions = symbols, new_symbols, functions
        self.constants = {**_CONSTANTS, **({"oo": sp.oo} if allow_infinity else {})}
        EXPRESSION.check(argument, len(text), cost="parsing time grows with the length")
        self.tokens = _tokens(text, self.fail)
        self.at = 0
        self.depth = 0

    def fail(self, column: int, what: str) -> InvalidArgument:
        shown = self.text if len(self.text) <= 60 else self.text[:57] + "..."
        return InvalidArgument(self.argument, f"cannot read {shown!r}: column {column}: {what}")

    @property
    def next(self) -> _Token:
        return self.tokens[self.at]

    def take(self, *ops: str) -> _Token | None:
        tok = self.next
        if tok.kind == "op" and tok.text in ops:
            self.at += 1
            return tok
        return None

    def expect(self, op: str) -> None:
        if self.take(op) is None:
            raise self.unexpected(f"expected {op!r}")

    def unexpected(self, what: str) -> InvalidArgument:
        tok = self.next
        found = "the end" if tok.kind == "end" else repr(tok.text)
        return self.fail(tok.column, f"{what}, found {found}")

    # ---------------------------------------------------------------- grammar
    def sequence(self) -> list[sp.Expr]:
        items = [self.expression()]
        while self.take(","):
            items.append(self.expression())
        if self.next.kind != "end":
            raise self.unexpected("expected an operator")
        return items

    def expression(self) -> sp.Expr:
        """A sum, built by one ``Add`` (adding term by term is quadratic in sympy)."""
        terms, column = [self.term()], self.next.column
        while (tok := self.take("+", "-")) is not None:
            right = self.term()
            terms.append(right if tok.text == "+" else -right)
        if len(terms) == 1:
            return terms[0]
        # a sum of fractions: denominators multiply, numerators add
        coefficients = [c for c in map(_coefficient, terms) if c is not None]
        if coefficients:
            self.within(sum(math.log2(int(c.q)) for c in coefficients)
                        + max(math.log2(abs(int(c.p)) or 1) for c in coefficients)
                        + math.log2(len(coefficients)), column)
        return self.check(sp.Add(*terms), column)

    def term(self) -> sp.Expr:
        """A product; ``a/b`` is ``a*b**-1`` as in sympy.  Up to :data:`_FOLD` factors it is built
        pair by pair as Python would (sympy distributes a number over a sum only in a product of
        two: ``2*(x + y)/z`` is ``(2*x + 2*y)/z``); longer products by one ``Mul`` (pair by pair
        is quadratic), which may keep such a number outside the sum: the same value."""
        factors, column = [self.factor()], self.next.column
        while (tok := self.take("*", "/")) is not None:
            right = self.factor()
            factors.append(right if tok.text == "*" else self.check(right ** -1, tok.column))
        if len(factors) == 1:
            return factors[0]
        self.within(sum(_log2(c) for c in map(_coefficient, factors) if c is not None), column)
        if len(factors) <= _FOLD:
            return self.check(functools.reduce(operator.mul, factors), column)
        return self.check(sp.Mul(*factors), column)

    def within(self, bits: float, column: int) -> None:
        """Refuse, before sympy computes it, a number estimated at more than :data:`MAX_BITS`."""
        if bits > MAX_BITS:
            raise self.fail(column, f"the number is too large (more than {MAX_BITS} bits)")

    def factor(self) -> sp.Expr:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(self.next.column, f"nested deeper than {MAX_DEPTH} levels")
        if (tok := self.take("+", "-")) is not None:
            value = self.factor()
            value = value if tok.text == "+" else self.check(-value, tok.column)
        else:
            value = self.atom()
            if (tok := self.take("**", "^")) is not None:
                value = self.power(value, self.factor(), tok.column)
        self.depth -= 1
        return value

    def atom(self) -> sp.Expr:
        tok = self.next
        if tok.kind == "number":
            self.at += 1
            return self.number(tok)
        if tok.kind == "name":
            self.at += 1
            if self.take("("):
                return self.call(tok)
            return self.name(tok)
        if self.take("("):
            value = self.expression()
            self.expect(")")
            return value
        raise self.unexpected("expected a number, a name or '('")

    # ---------------------------------------------------------------- leaves and nodes
    def number(self, tok: _Token) -> sp.Rational:
        m = _NUMBER.fullmatch(tok.text)
        assert m is not None, "the tokenizer only yields numbers that match _NUMBER"
        whole, frac, exp = m.groups()
        digits = len(whole) + len(frac)
        if digits * _BITS_PER_DIGIT > MAX_BITS or len(exp or "") > 8 or \
                (digits + abs(int(exp or 0) - len(frac))) * _BITS_PER_DIGIT > MAX_BITS:
            raise self.fail(tok.column, f"the number {tok.text[:20]!r} is too large (more than "
                                        f"{MAX_BITS} bits)")
        return sp.Integer(int(whole + frac or "0")) * sp.Integer(10) ** (int(exp or 0) - len(frac))

    def name(self, tok: _Token) -> sp.Expr:
        n = tok.text
        if n in self.constants:
            return self.constants[n]
        if n in self.functions:
            raise self.fail(tok.column, f"{n} is a function: call it as {n}(...)")
        if n in self.symbols:
            return self.symbols[n]
        if n in _RESERVED:
            raise self.fail(tok.column, f"{n} is not allowed here (the values are finite real numbers)")
        if self.new_symbols is not None:
            return self.new_symbols(n)
        names = sorted(self.symbols) + sorted(self.constants)
        hint = f"it may use {', '.join(names)}" if self.symbols else "a number is expected"
        raise self.fail(tok.column, f"unknown name {n!r}; {hint}")

    def call(self, tok: _Token) -> sp.Expr:
        fn = self.functions.get(tok.text)
        if fn is None:
            raise self.fail(tok.column, f"unknown function {tok.text!r}; the functions are "
                                        f"{', '.join(sorted(self.functions))}")
        self.depth += 1
        args = [self.expression()]
        while self.take(","):
            args.append(self.expression())
        self.expect(")")
        self.depth -= 1
        if not fn.least <= len(args) <= (fn.most if fn.most is not None else len(args)):
            count = f"at least {fn.least}" if fn.most is None else \
                fn.least if fn.most == fn.least else f"{fn.least} or {fn.most}"
            raise self.fail(tok.column, f"{tok.text} takes {count} argument(s), got {len(args)}")
        if fn.max_argument is not None and any(a.is_number and self.magnitude(a, tok.column) > fn.max_argument
                                               for a in args):
            raise self.fail(tok.column, f"{tok.text} of a number beyond {fn.max_argument} is not evaluated")
        if fn.exponent is not None:
            return self.power(args[0], fn.exponent, tok.column)
        return self.check(self.evaluate(lambda: fn.build(*args), tok.column), tok.column, real=True)

    def power(self, base: sp.Expr, exponent: sp.Expr, column: int) -> sp.Expr:
        """``base**exponent``, refused before sympy evaluates a number too large to hold."""
        if exponent.is_number and base not in (0, 1, -1):
            # sympy raises every number in the base, also inside products: (2*x)**n = 2**n*x**n
            atoms = [_log2(q) for q in base.atoms(sp.Rational)] + [0.0]
            if not exponent.is_Integer and max(atoms) > ROOT_BITS:    # also (c*x)**(1/2) = sqrt(c)*...
                raise self.fail(column, f"a fractional power of a number above {ROOT_BITS} bits is "
                                        "not evaluated")
            if base.is_number and not base.is_Rational:   # e.g. E, sqrt(2), exp(5): its own size
                atoms.append(max(1.0, abs(self.magnitude(sp.log(abs(base), 2), column))))
            self.within(self.magnitude(exponent, column) * max(atoms + [1.0 if base.is_number else 0.0]),
                        column)
        return self.check(self.evaluate(lambda: base ** exponent, column), column, real=True)

    def magnitude(self, value: sp.Expr, column: int) -> float:
        """|value| of a number as a float, at fixed low precision (every number the parser builds
        is at most 2**MAX_BITS in size, so this is fast); inf when it does not fit a float."""
        if value.is_Rational:
            return abs(float(value))
        return self.evaluate(lambda: abs(float(value.evalf(15, maxn=60))), column)

    def evaluate(self, build: Callable[[], _T], column: int) -> _T:
        """Run a sympy construction, turning sympy's own failures on extreme input into a refusal."""
        try:
            return build()
        except (ArithmeticError, ValueError, TypeError, AttributeError, RecursionError) as exc:
            raise self.fail(column, f"cannot evaluate this ({type(exc).__name__})") from None

    def check(self, value: sp.Expr, column: int, real: bool = False) -> sp.Expr:
        """Refuse a new node that is undefined, too large a number or (``real``: a power or a
        function value, the only nodes that can leave the reals) not real.  Checking each node
        as it is built catches ``zoo``/``nan`` where they first appear, in O(1) per node."""
        if value is sp.zoo or value is sp.nan:
            raise self.fail(column, "undefined value (division by zero?)")
        coefficient = value if value.is_Rational else value.args[0] if value.is_Add or value.is_Mul else None
        if coefficient is not None and coefficient.is_Rational:
            self.within(_bits(coefficient), column)
        if real and value.is_number and value.is_extended_real is False:
            raise self.fail(column, "the value is not a real number")
        return value


def parse_list(text: str, argument: str, *, symbols: Mapping[str, sp.Expr] | None = None,
               new_symbols: Callable[[str], sp.Expr] | None = None,
               functions: Mapping[str, Function] = DEFAULT_FUNCTIONS,
               allow_infinity: bool = False) -> list[sp.Expr]:
    """A comma-separated list of expressions (``"0, 1/2, pi"``); see :func:`parse_expression`."""
    if not isinstance(text, str):
        raise InvalidArgument(argument, f"expected text, got {type(text).__name__}")
    return _Parser(text, argument, symbols or {}, new_symbols, functions, allow_infinity).sequence()


def parse_expression(text: str, argument: str, *, symbols: Mapping[str, sp.Expr] | None = None,
                     new_symbols: Callable[[str], sp.Expr] | None = None,
                     functions: Mapping[str, Function] = DEFAULT_FUNCTIONS,
                     allow_infinity: bool = False) -> sp.Expr:
    """One expression of the module's grammar, built as a sympy object (no Python is run).

    ``symbols`` maps the names the text may use to their sympy objects; a name not found there is
    passed to ``new_symbols`` (e.g. ``lambda n: sp.Symbol(n, real=True)``) or, without it, refused
    with :class:`~symbrg.core.errors.InvalidArgument` naming ``argument``.  ``functions`` is the table
    of callable names (default :data:`DEFAULT_FUNCTIONS`).
    """
    items = parse_list(text, argument, symbols=symbols, new_symbols=new_symbols, functions=functions,
                       allow_infinity=allow_infinity)
    if len(items) != 1:
        raise InvalidArgument(argument, f"expected one expression, got a list of {len(items)} in {text!r}")
    return items[0]


def parse_number(text: str, argument: str, *, allow_infinity: bool = False) -> sp.Expr:
    """An exact real number written with numbers, constants and functions (``"1/10"``,
    ``"2.5e-3"``, ``"sqrt(2)/2"``); names other than ``pi``, ``E`` (``oo``) are refused."""
    return parse_expression(text, argument, allow_infinity=allow_infinity)


def as_expression(value: "str | sp.Basic | int | float", argument: str, *,
                  symbols: Mapping[str, sp.Expr] | None = None,
                  new_symbols: Callable[[str], sp.Expr] | None = sp.Symbol) -> sp.Basic:
    """A sympy object from a string (through :func:`parse_expression`) or from a Python, NumPy or
    sympy number or sympy object (``sympify(strict=True)``, which never parses text).  Use it
    wherever a public function accepts "an expression" that may arrive as a string, in place of
    ``sympify``: as there, names not in ``symbols`` become plain symbols (``new_symbols``)."""
    if isinstance(value, str):
        return parse_expression(value, argument, symbols=symbols, new_symbols=new_symbols)
    try:
        return sp.sympify(value, strict=True)
    except sp.SympifyError:
        raise InvalidArgument(argument, f"expected an expression or a number, got "
                                        f"{type(value).__name__}") from None
