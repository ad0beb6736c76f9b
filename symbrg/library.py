r"""The library of named derivations: what ``symbrg export --all DIR`` regenerates.

Job: map a name (the file stem in ``derivations/``) to the engine function that derives it, and
write the whole library deterministically.  An :class:`Entry` is

.. math::  \text{name} \;\mapsto\; \texttt{module:function}(\text{kwargs}) \to \mathcal D,

a call that returns a :class:`~symbrg.derivation.Derivation`.  Most targets are zero-argument
functions of an engine module; the kernel maps (one per activation family) share
:func:`kernel_map` with the activation as keyword.  An entry whose engine module is not installed
(during development) is skipped by :func:`available`; an engine that *is* present but fails raises.

Regeneration is byte-identical on rerun: derivations are deterministic (seeded spot checks, sorted
symbols), documents carry no dates, and :func:`write_library` writes only files whose content
changed (atomically; a changed file is refused without ``force``).
"""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from . import checks
from .derivation import Derivation
from .errors import InvalidArgument, OutputExists, Unsupported, UnknownName

__all__ = ["Entry", "LIBRARY", "EXTENSIONS", "available", "names", "build", "kernel_map",
           "render_entry", "write_library"]

#: File extension per export format.
EXTENSIONS = {"latex": ".tex", "markdown": ".md"}


@dataclass(frozen=True)
class Entry:
    """One library document: ``target`` is ``"module:function"``, called with ``kwargs``."""
    name: str
    target: str
    summary: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    requires: tuple[str, ...] = ()

    @property
    def module(self) -> str:
        return self.target.partition(":")[0]

    def resolve(self) -> Callable[..., Derivation] | None:
        """The target function, or ``None`` when its engine is not (yet) installed."""
        for mod in (self.module,) + self.requires:
            if importlib.util.find_spec(mod) is None:
                return None
        fn = getattr(importlib.import_module(self.module), self.target.partition(":")[2], None)
        return fn if callable(fn) else None


# ---------------------------------------------------------------------------- kernel maps
#: Activation families with a kernel-map document (spec, file stem, readable name).
KERNEL_FAMILIES = (
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


def kernel_map(activation: str, kind: str = "nngp") -> Derivation:
    r"""The one-hidden-layer NNGP or NTK map of an activation: the Gaussian expectation(s) it
    needs and the per-layer kernel program :math:`K^{(0)} \mapsto K^{(1)}` (neural-tangents
    convention, symbolic :math:`\sigma_w, \sigma_b`)."""
    from .kernel import mlp
    return mlp(activation, 1, 1.0, 1.0).derivation(kind)


def _kernel_entries() -> list[Entry]:
    out = []
    for spec, stem, readable in KERNEL_FAMILIES:
        for kind in ("nngp", "ntk"):
            out.append(Entry(f"{kind}-{stem}", "symbrg.library:kernel_map",
                             f"{kind.upper()} per-layer map, {readable} activation",
                             {"activation": spec, "kind": kind},
                             requires=("symbrg.kernel", "symbrg.gaussian")))
    return out


#: Every named derivation, in document order.  Engines not yet present are skipped.
LIBRARY: dict[str, Entry] = {e.name: e for e in _kernel_entries() + [
    Entry("training-flow", "symbrg.posterior:training_flow_derivation",
          "Bayesian training as a flow in the number of observations"),
]}


def names(only_available: bool = True) -> list[str]:
    """Library names in document order (by default only those whose engine is installed)."""
    return [n for n, e in LIBRARY.items() if not only_available or e.resolve() is not None]


def available() -> list[Entry]:
    """The entries whose engine is installed."""
    return [e for e in LIBRARY.values() if e.resolve() is not None]


def build(name: str) -> Derivation:
    """Derive the library document ``name`` (its ``name`` attribute set to the library name)."""
    checks.choice("name", name, LIBRARY)
    entry = LIBRARY[name]
    fn = entry.resolve()
    if fn is None:
        raise Unsupported("name", f"the engine for {name!r} ({entry.module}) is not installed")
    d = fn(**dict(entry.kwargs))
    if not isinstance(d, Derivation):
        raise InvalidArgument("name", f"{entry.target} returned {type(d).__name__}, not a Derivation")
    d.name = name
    return d


def render_entry(name: str, fmt: str = "latex") -> str:
    """The document text of one library entry in ``latex`` or ``markdown``."""
    from .export import render
    checks.choice("format", fmt, EXTENSIONS)
    return render(build(name), fmt)


def write_library(directory: str | Path, fmt: str = "latex", *, force: bool = False,
                  only: list[str] | None = None, argument: str = "DIR") -> list[tuple[Path, str]]:
    """Regenerate the library into ``directory``; returns ``(path, "written"|"unchanged")``.

    Everything is rendered first; then, unless ``force``, any existing file whose content would
    change is refused with :class:`~symbrg.errors.OutputExists` before a single file is written.
    Files are written atomically; identical files are left untouched.
    """
    checks.choice("format", fmt, EXTENSIONS)
    wanted = only if only is not None else names()
    for n in wanted:
        checks.choice("name", n, LIBRARY)
    root = Path(directory)
    if root.exists() and not root.is_dir():
        raise InvalidArgument(argument, f"{root} exists and is not a directory")
    docs = [(root / (n + EXTENSIONS[fmt]), render_entry(n, fmt)) for n in wanted]
    changed = [(p, t) for p, t in docs if not p.exists() or p.read_text() != t]
    clash = [p for p, _ in changed if p.exists()]
    if clash and not force:
        raise OutputExists(argument, f"{len(clash)} file(s) would change, first {clash[0]}; "
                                     "pass --force to overwrite")
    for path, text in changed:
        with checks.atomic_write(path, force=True, argument=argument) as fh:
            fh.write(text)
    written = {p for p, _ in changed}
    return [(p, "written" if p in written else "unchanged") for p, _ in docs]
