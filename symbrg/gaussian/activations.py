r"""The activation registry: one object per pointwise nonlinearity :math:`\varphi(x)`.

Job: turn a name (``"relu"``, ``"erf:1,2,0"``, ``"rectified:2"``) or a sympy ``Lambda`` into an
:class:`Activation` that carries

* its symbolic form :math:`\varphi(x)` (a sympy expression in the real symbol :data:`X`),
* its *family* and parameters, which the Gaussian-expectation engine
  (:mod:`symbrg.gaussian.expectations`) matches against its table of closed forms,
* a vectorized NumPy evaluation compiled from that same expression (one source of truth),
* for cos-net neurons, whether the phase is drawn uniformly on :math:`[-\pi, \pi]`.

Names and conventions (parameters after a colon, comma separated; defaults in brackets):

=======================  ===============================================================
``relu``                 :math:`\max(x, 0)`
``leaky_relu[:a]``       :math:`\max(x,0) + a\min(x,0)` [a = 0.01]
``abrelu:a,b``           :math:`a\min(x,0) + b\max(x,0)` (neural-tangents' ABRelu)
``abs``                  :math:`|x|`
``rectified:n``          :math:`x^n\,\Theta(x)`, integer n >= 0 (``rectified:0`` is the step)
``step``                 :math:`\Theta(x)` (Heaviside, :math:`\Theta(0) = 0`)
``sign``                 :math:`\mathrm{sign}(x)`
``identity``             :math:`x`;   ``affine:a,b``: :math:`a x + b`
``monomial:n``           :math:`x^n`; ``polynomial:c0,c1,...``: :math:`\sum_k c_k x^k`
``erf[:a,b,c]``          :math:`a\,\mathrm{erf}(b x) + c` [1, 1, 0]
``gelu``                 :math:`x\,\Phi(x) = \tfrac{x}{2}(1 + \mathrm{erf}(x/\sqrt2))` (exact GELU)
``exp[:a,b]``            :math:`a e^{b x}` [1, 1]
``gaussian[:b]``         :math:`e^{-b x^2}` [1/2]
``sin[:a,b,c]``          :math:`a\sin(b x + c)` [1, 1, 0]
``cos[:a,b,c]``          :math:`a\cos(b x + c)` [1, 1, 0]
``cosnet[:a,b]``         :math:`a\cos(b x + c)`, phase :math:`c \sim U[-\pi,\pi]` drawn per neuron
``tanh``, ``softplus``,  no closed form: the engine uses a Hermite/Mehler series or quadrature
``sigmoid``, ``swish``
=======================  ===============================================================

One place decides an activation.  A built-in is one builder below (its expression, its family tag
for the engine's closed forms; the NumPy forward pass is compiled from the expression), listed in
:data:`REGISTRY`, with a kernel-map document if it is in :data:`DOCUMENTED`.  A user's activation is
added by :func:`symbrg.register_activation` (``name``, a sympy ``Lambda``, optional checked closed
forms ``nngp``/``ntk`` of :math:`(k_{11}, k_{22}, k_{12})`) and is then resolved by name like a
built-in everywhere (kernels, the CLI, finite-width networks).  Third-party packages register through
the entry-point group ``symbrg.activations`` (an :class:`Activation`, or a callable that calls
``register_activation``), loaded on the first lookup of an unknown name.
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import sympy as sp

from symbrg.core.calculus import ae_derivative
from symbrg.core.checks import integer
from symbrg.core.errors import InvalidArgument, NotPositive, SymbrgError, UnknownName
from symbrg.core.limits import Limit
from symbrg.core.parsing import parse_list, parse_number
from symbrg.core.special import numpy_erf
from symbrg.core.symbols import symbol

__all__ = ["X", "Activation", "activation", "REGISTRY", "DOCUMENTED", "ENTRY_POINT_GROUP", "register", "names",
           "new_name", "normalize_name", "numpy_erf", "DEGREE"]  # numpy_erf re-exported from core.special

#: Degree of a polynomial-type activation: the Gaussian expectations grow faster than its square
#: (polynomial:1,...,1 of degree 29 takes about 30 s at depth 2).
DEGREE = Limit("activation_degree", 32, "degree of a rectified, monomial or polynomial activation")

#: The real variable in which every activation is written.
X = symbol("x")


def _heaviside(x: Any, h0: Any = 0.0) -> np.ndarray:
    return np.where(np.asarray(x) > 0, 1.0, np.where(np.asarray(x) == 0, h0, 0.0))


_NUMPY = {"Heaviside": _heaviside, "erf": numpy_erf, "Max": np.maximum, "Min": np.minimum,
          "sign": np.sign, "Abs": np.abs}


@dataclass(frozen=True)
class Activation:
    r"""A pointwise nonlinearity :math:`\varphi` with its family tag for closed-form matching.

    ``family`` is one of ``abrelu, rectified, step, sign, affine, polynomial, erf, gelu, exp,
    gaussian, sin, cos_uniform, generic``; ``params`` are sympy numbers (or symbols) whose meaning
    the family fixes (see the module table).  ``random_phase`` marks the cos-net neuron, whose phase
    is integrated over :math:`U[-\pi, \pi]`.

    ``nngp`` and ``ntk`` are optional closed forms supplied with a registered activation: sympy
    ``Lambda``\ s of :math:`(k_{11}, k_{22}, k_{12})` equal to :math:`\mathbb E[\varphi(u)\varphi(v)]`
    and :math:`\mathbb E[\varphi'(u)\varphi'(v)]` for :math:`(u, v) \sim \mathcal N(0, [[k_{11},
    k_{12}], [k_{12}, k_{22}]])` (checked against quadrature by
    :func:`symbrg.gaussian.expectations.register_activation`).
    """
    name: str
    family: str
    params: tuple = ()
    expr: sp.Expr = field(default=sp.Integer(0), compare=False)
    random_phase: bool = False
    nngp: sp.Lambda | None = field(default=None, compare=False)
    ntk: sp.Lambda | None = field(default=None, compare=False)

    @cached_property
    def _numpy(self) -> Callable[[np.ndarray], np.ndarray]:
        return sp.lambdify([X], self.expr, modules=[_NUMPY, "numpy"])

    def __call__(self, x: Any, phase: Any = None) -> np.ndarray:
        """Evaluate on an array.  For ``random_phase`` activations pass the phases ``phase``
        (broadcast against ``x``); other activations ignore ``phase``.  The result has x's shape and
        float dtype (float32 stays float32)."""
        x = _real(x)
        if x.dtype.kind != "f":
            x = x.astype(float)
        if self.random_phase:
            if phase is None:
                raise InvalidArgument("phase", f"activation {self.name!r} needs per-neuron phases")
            a, b = (float(p) for p in self.params)
            return a * np.cos(b * x + phase)
        return _full(self._numpy(x), x)

    @property
    def derivative_expr(self) -> sp.Expr:
        r""":math:`\varphi'(x)`, with :math:`\Theta'(x) = 0` away from the origin (a.e. derivative)."""
        return ae_derivative(self.expr, X)

    def derivative(self, x: Any, phase: Any = None) -> np.ndarray:
        """Evaluate :math:`\\varphi'` on an array (NumPy)."""
        x = _real(x).astype(float, copy=False)
        if self.random_phase:
            a, b = (float(p) for p in self.params)
            return -a * b * np.sin(b * x + phase)
        return _full(self._dnumpy(x), x)

    @cached_property
    def _dnumpy(self) -> Callable[[np.ndarray], np.ndarray]:
        return sp.lambdify([X], self.derivative_expr, modules=[_NUMPY, "numpy"])

    def latex(self) -> str:
        """:math:`\\varphi(x)` in LaTeX (phase written as :math:`c`)."""
        if self.random_phase:
            a, b = self.params
            return sp.latex(a * sp.cos(b * X + sp.Symbol("c"))) + r",\ c\sim U[-\pi,\pi]"
        return sp.latex(self.expr)

    def __str__(self) -> str:
        return self.name


def _real(x: Any) -> np.ndarray:
    """``x`` as an array of real numbers (bool, integer or float); complex, text and object input is
    refused rather than cast (a cast would drop an imaginary part or parse text)."""
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise InvalidArgument("x", f"expected real numbers, got an array of dtype {x.dtype}")
    return x


def _full(out: Any, x: np.ndarray) -> np.ndarray:
    """The activation's output as a float array of x's shape (constants are broadcast)."""
    out = np.asarray(out, dtype=x.dtype if x.dtype.kind == "f" else float)
    return out if out.shape == x.shape else np.broadcast_to(out, x.shape).copy()


def _nums(spec: str, text: str, count: int | None, defaults: tuple) -> tuple[sp.Expr, ...]:
    """The comma-separated numeric parameters of ``name:a,b,...`` (exact; safe parser), or the
    defaults when there are none (missing trailing ones are filled from the defaults)."""
    if not text:
        if count is not None and len(defaults) != count:
            example = ",".join(["1"] * count)
            raise InvalidArgument("activation", f"{spec!r} takes {count} parameter(s), e.g. "
                                                f"'{spec.split(':')[0]}:{example}'")
        return tuple(sp.nsimplify(d) for d in defaults)
    vals = tuple(parse_list(text, "activation"))
    if count is not None and len(vals) != count:
        if len(vals) < count and len(defaults) == count:
            vals = vals + tuple(sp.nsimplify(d) for d in defaults[len(vals):])
        else:
            raise InvalidArgument("activation", f"{spec!r} takes {count} parameter(s)")
    return vals


def _int_param(spec: str, text: str) -> int:
    """The integer order n >= 0 of ``rectified:n`` or ``monomial:n``, within :data:`DEGREE`."""
    if not text:
        raise InvalidArgument("activation", f"{spec!r} needs an integer order, e.g. "
                                            f"'{spec.split(':')[0]}:2'")
    n = integer("activation", parse_number(text, "activation"), minimum=0)
    DEGREE.check("activation", n, cost="symbolic work growing faster than the degree squared")
    return n


# ---------------------------------------------------------------------------------------------
# The registry: built-in builders (name -> parameters -> Activation) and registered activations.
# ---------------------------------------------------------------------------------------------

#: ``builder(spec, parameter_text) -> Activation`` of a built-in name.
Builder = Callable[[str, str], Activation]
#: Built-in names: ``name -> (builder, takes_parameters)`` (aliases included).
_BUILTINS: dict[str, tuple[Builder, bool]] = {}
#: The names listed to users (aliases such as ``linear`` and ``silu`` are accepted but not listed).
_LISTED: list[str] = []
#: Activations added by :func:`register` (through ``symbrg.register_activation`` or a plugin).
_REGISTERED: dict[str, Activation] = {}
#: The entry-point group through which third-party packages register activations.
ENTRY_POINT_GROUP = "symbrg.activations"
_plugins_loaded = False


def _builtin(*names: str, parameters: bool = True) -> Callable[[Builder], Builder]:
    """Register ``fn`` as the builder of ``names`` (the first is listed, the rest are aliases)."""
    def wrap(fn: Builder) -> Builder:
        for n in names:
            _BUILTINS[n] = (fn, parameters)
        _LISTED.append(names[0])
        return fn
    return wrap


def _abrelu(a: sp.Expr, b: sp.Expr, name: str) -> Activation:
    return Activation(name, "abrelu", (a, b), a * sp.Min(X, 0) + b * sp.Max(X, 0))


@_builtin("relu", parameters=False)
def _relu(spec: str, tail: str) -> Activation:
    return _abrelu(sp.Integer(0), sp.Integer(1), "relu")


@_builtin("leaky_relu")
def _leaky_relu(spec: str, tail: str) -> Activation:
    (a,) = _nums(spec, tail, 1, (sp.Rational(1, 100),))
    return _abrelu(a, sp.Integer(1), f"leaky_relu:{a}")


@_builtin("abrelu")
def _abrelu_spec(spec: str, tail: str) -> Activation:
    a, b = _nums(spec, tail, 2, ())
    return _abrelu(a, b, f"abrelu:{a},{b}")


@_builtin("abs", parameters=False)
def _abs(spec: str, tail: str) -> Activation:
    return _abrelu(sp.Integer(-1), sp.Integer(1), "abs")


@_builtin("rectified")
def _rectified(spec: str, tail: str) -> Activation:
    n = _int_param(spec, tail)
    return Activation(f"rectified:{n}", "rectified", (sp.Integer(n),), X**n * sp.Heaviside(X, 0))


@_builtin("step", parameters=False)
def _step(spec: str, tail: str) -> Activation:
    return Activation("step", "rectified", (sp.Integer(0),), sp.Heaviside(X, 0))


@_builtin("sign", parameters=False)
def _sign(spec: str, tail: str) -> Activation:
    return Activation("sign", "sign", (), sp.sign(X))


@_builtin("identity", "linear", parameters=False)
def _identity(spec: str, tail: str) -> Activation:
    return Activation("identity", "affine", (sp.Integer(1), sp.Integer(0)), X)


@_builtin("affine")
def _affine(spec: str, tail: str) -> Activation:
    a, b = _nums(spec, tail, 2, ())
    return Activation(f"affine:{a},{b}", "affine", (a, b), a * X + b)


@_builtin("monomial")
def _monomial(spec: str, tail: str) -> Activation:
    n = _int_param(spec, tail)
    return Activation(f"monomial:{n}", "polynomial", (sp.Integer(0),) * n + (sp.Integer(1),), X**n)


@_builtin("polynomial")
def _polynomial(spec: str, tail: str) -> Activation:
    cs = _nums(spec, tail, None, ())
    DEGREE.check("activation", len(cs) - 1, cost="symbolic work growing faster than the degree squared")
    return Activation(f"polynomial:{','.join(map(str, cs))}", "polynomial", cs,
                      sum((c * X**k for k, c in enumerate(cs)), sp.Integer(0)))


@_builtin("erf")
def _erf(spec: str, tail: str) -> Activation:
    a, b, c = _nums(spec, tail, 3, (1, 1, 0))
    name = "erf" if (a, b, c) == (1, 1, 0) else f"erf:{a},{b},{c}"
    return Activation(name, "erf", (a, b, c), a * sp.erf(b * X) + c)


@_builtin("gelu", parameters=False)
def _gelu(spec: str, tail: str) -> Activation:
    return Activation("gelu", "gelu", (), X * (1 + sp.erf(X / sp.sqrt(2))) / 2)


@_builtin("exp")
def _exp(spec: str, tail: str) -> Activation:
    a, b = _nums(spec, tail, 2, (1, 1))
    return Activation("exp" if (a, b) == (1, 1) else f"exp:{a},{b}", "exp", (a, b), a * sp.exp(b * X))


@_builtin("gaussian")
def _gaussian(spec: str, tail: str) -> Activation:
    (b,) = _nums(spec, tail, 1, (sp.Rational(1, 2),))
    if not b > 0:
        raise NotPositive("activation", f"gaussian:b is exp(-b x^2) and needs b > 0, got {b}")
    return Activation(f"gaussian:{b}", "gaussian", (b,), sp.exp(-b * X**2))


def _sine(head: str) -> Builder:
    def build(spec: str, tail: str) -> Activation:
        a, b, c = _nums(spec, tail, 3, (1, 1, 0))
        # cos(bx + c) = sin(bx + c + pi/2): one family, one closed form.
        phase = c if head == "sin" else c + sp.pi / 2
        expr = a * (sp.sin if head == "sin" else sp.cos)(b * X + c)
        name = head if (a, b, c) == (1, 1, 0) else f"{head}:{a},{b},{c}"
        return Activation(name, "sin", (a, b, phase), expr)
    return build


_builtin("sin")(_sine("sin"))
_builtin("cos")(_sine("cos"))


@_builtin("cosnet", "cos_uniform")
def _cosnet(spec: str, tail: str) -> Activation:
    a, b = _nums(spec, tail, 2, (1, 1))
    name = "cosnet" if (a, b) == (1, 1) else f"cosnet:{a},{b}"
    return Activation(name, "cos_uniform", (a, b), a * sp.cos(b * X), random_phase=True)


def _generic(name: str, expr: sp.Expr) -> Builder:
    return lambda spec, tail: Activation(name, "generic", (), expr)


# no closed form: the engine uses a Hermite/Mehler series or quadrature
_builtin("tanh", parameters=False)(_generic("tanh", sp.tanh(X)))
_builtin("softplus", parameters=False)(_generic("softplus", sp.log(1 + sp.exp(X))))
_builtin("sigmoid", parameters=False)(_generic("sigmoid", 1 / (1 + sp.exp(-X))))
_builtin("swish", parameters=False)(_generic("swish", X / (1 + sp.exp(-X))))
_BUILTINS["silu"] = (_generic("silu", X / (1 + sp.exp(-X))), False)

#: The built-in names :func:`activation` understands (parameters, where allowed, follow a colon).
REGISTRY = tuple(_LISTED)

#: Built-in activations with a kernel-map document in ``derivations/``: (spec, file stem, readable name).
DOCUMENTED = (
    ("relu", "relu", "ReLU"),
    ("abrelu:-0.2,1", "abrelu", "leaky ReLU (ABReLU)"),
    ("abs", "abs", "absolute value"),
    ("rectified:2", "rectified-2", "rectified quadratic"),
    ("step", "step", "Heaviside step"),
    ("sign", "sign", "sign"),
    ("identity", "identity", "identity"),
    ("monomial:3", "monomial-3", "cubic monomial"),
    ("erf", "erf", "erf"),
    ("gelu", "gelu", "GELU"),
    ("exp", "exp", "exponential"),
    ("gaussian", "gaussian", "Gaussian"),
    ("sin", "sin", "sine"),
    ("cos", "cos", "cosine"),
    ("cosnet", "cosnet", "cos-net (uniform phase)"),
)

#: Plain activations recognized in a user's ``Lambda`` (``Lambda(x, Max(x, 0))`` is ReLU).
_RECOGNIZED = ("relu", "abs", "tanh", "gelu", "sigmoid", "softplus", "swish", "erf", "sin", "cos",
               "identity", "sign")

_NAME = re.compile(r"[a-z][a-z0-9_.]*")


def normalize_name(name: Any, argument: str = "name") -> str:
    """A registrable activation name: lower case, ``-`` read as ``_``, letters, digits, ``_`` and
    ``.``, starting with a letter.  The colon is reserved for built-in parameters (``erf:1,2,0``)."""
    if not isinstance(name, str):
        raise InvalidArgument(argument, f"expected a string, got {name!r}")
    key = name.strip().lower().replace("-", "_")
    if ":" in key:
        raise InvalidArgument(argument, f"{name!r}: the 'name:args' syntax is reserved for built-in "
                                        "activations with parameters; register one name per activation")
    if not _NAME.fullmatch(key):
        raise InvalidArgument(argument, f"{name!r} is not a valid activation name (a letter, then letters, "
                                        "digits, '_', '-' or '.')")
    return key


def names() -> tuple[str, ...]:
    """Every name :func:`activation` resolves now: the built-ins, then the registered ones."""
    return REGISTRY + tuple(sorted(_REGISTERED))


def new_name(name: Any, *, replace: bool = False) -> str:
    """``name`` normalized (:func:`normalize_name`) if it may be registered: a built-in name is
    refused, a registered one unless ``replace``."""
    key = normalize_name(name)
    if key in _BUILTINS:
        raise InvalidArgument("name", f"{name!r} is a built-in activation and cannot be replaced")
    if key in _REGISTERED and not replace:
        raise InvalidArgument("name", f"activation {name!r} is already registered; pass replace=True to "
                                      "replace it")
    return key


def register(act: Activation, *, replace: bool = False) -> Activation:
    """Add ``act`` to the registry under ``act.name`` (checked by :func:`new_name`).

    Low level: it does not check closed forms; the engine does, in
    :func:`symbrg.gaussian.expectations.register_activation` and again before a supplied closed
    form is first used (so an :class:`Activation` from a plugin is checked too)."""
    if not isinstance(act, Activation):
        raise InvalidArgument("activation", f"expected an Activation, got {type(act).__name__}")
    if not act.expr.free_symbols <= {X}:
        raise InvalidArgument("activation", f"{act.name!r}: an Activation is written in "
                                            "symbrg.gaussian.activations.X, got free symbols "
                                            f"{sorted(map(str, act.expr.free_symbols))}")
    key = new_name(act.name, replace=replace)
    if key != act.name:
        act = dataclasses.replace(act, name=key)
    _REGISTERED[key] = act
    return act


def _load_plugins() -> None:
    """Load the ``symbrg.activations`` entry points once: each is an :class:`Activation` or a callable
    that registers (and may return) activations.  A broken plugin is reported naming it."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            if isinstance(obj, Activation):
                register(obj)
            elif callable(obj):
                out = obj()
                if isinstance(out, Activation) and _REGISTERED.get(out.name) is not out:
                    register(out)
            else:
                raise TypeError(f"expected an Activation or a callable, got {type(obj).__name__}")
        except Exception as exc:   # anything a third-party package raises becomes one clear error
            raise SymbrgError("activation", f"activation plugin {ep.name!r} ({ep.value}) failed: "
                                            f"{type(exc).__name__}: {exc}") from exc


def _lookup(spec: str) -> Activation:
    head, _, tail = spec.partition(":")
    head = head.strip().lower().replace("-", "_")
    if head not in _BUILTINS and head not in _REGISTERED:
        _load_plugins()
    if head in _REGISTERED:
        if tail.strip():
            raise InvalidArgument("activation", f"{head} takes no parameters, got {spec!r}")
        return _REGISTERED[head]
    if head not in _BUILTINS:
        raise UnknownName("activation", f"unknown activation {spec!r}; known: {', '.join(names())}")
    build, parameters = _BUILTINS[head]
    if not parameters and tail.strip():
        raise InvalidArgument("activation", f"{head} takes no parameters, got {spec!r}")
    return build(spec, tail)


def activation(spec: "str | sp.Lambda | sp.Expr | Activation") -> Activation:
    """Resolve a name, a sympy ``Lambda`` (one argument) or an expression in :data:`X`.

    A ``Lambda`` or expression is tagged ``generic`` unless it is literally one of the closed-form
    families (e.g. ``Lambda(x, Max(x, 0))`` is recognized as ReLU).
    """
    if isinstance(spec, Activation):
        return spec
    if isinstance(spec, str):
        return _lookup(spec)
    if isinstance(spec, sp.Lambda):
        if len(spec.variables) != 1:
            raise InvalidArgument("activation", "a Lambda activation takes exactly one argument")
        expr = spec.expr.subs(spec.variables[0], X)
    elif isinstance(spec, sp.Expr):
        free = spec.free_symbols
        if len(free) > 1:
            raise InvalidArgument("activation", f"expression {spec} has more than one free symbol")
        expr = spec.subs(free.pop(), X) if free else spec
    else:
        raise UnknownName("activation", f"cannot interpret {spec!r} as an activation")
    for name in _RECOGNIZED:
        known = _lookup(name)
        if sp.simplify(known.expr - expr) == 0:
            return known
    poly = sp.Poly(expr, X) if expr.is_polynomial(X) else None
    if poly is not None:
        cs = tuple(reversed(poly.all_coeffs()))
        return Activation(f"polynomial:{','.join(map(str, cs))}", "polynomial", cs, expr)
    return Activation(f"lambda:{sp.sstr(expr)}", "generic", (), expr)
