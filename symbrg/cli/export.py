"""``symbrg export``: write the derivations library (or one derivation) as documents.

Job: the command-line face of :mod:`symbrg.documents.library`.  ``--all DIR`` regenerates every document
(LaTeX: with ``references.bib``, the references table that resolves every ``\\cite``);
``NAME`` prints or writes one; ``--list`` names them; ``--check DIR`` reports stale files.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from symbrg.cli import Names, progress
from symbrg.core import checks
from symbrg.core.errors import InvalidArgument, UnknownName
from symbrg.core.printing import FORMATS, render
from symbrg.core.references import to_bibtex
from symbrg.documents import library

EPILOG = """examples:
  symbrg export --list
  symbrg export --all derivations                 # regenerate the library (unchanged files kept)
  symbrg export --all derivations --force         # overwrite files whose content changed
  symbrg export --all md/ --format markdown
  symbrg export --check derivations               # exit 1 when a committed file is out of date
  symbrg export nngp-relu                         # print one document (LaTeX) to stdout
  symbrg export ntk-erf --format markdown --out ntk-erf.md
"""


def run(ns: argparse.Namespace) -> int:
    modes = [m for m in ("all", "check", "name") if getattr(ns, m)] + (["list"] if ns.list else [])
    if len(modes) != 1:
        raise InvalidArgument("NAME", "give exactly one of NAME, --all DIR, --check DIR or --list")
    if ns.list:
        for entry in library.LIBRARY.values():
            mark = "" if entry.resolve() is not None else "  (engine not installed)"
            print(f"{entry.name:24s} {entry.summary}{mark}")
        return 0
    if ns.all or ns.check:
        fmt = ns.format or "latex"
        checks.choice("format", fmt, library.EXTENSIONS)
        if ns.out:
            raise InvalidArgument("--out", "use --out with a single NAME, not with --all/--check")
        if ns.check:
            with progress.bar(ns, total=len(library.names()), desc="check", unit="doc") as bar:
                return _check(ns.check, fmt, bar)
        with progress.bar(ns, total=len(library.names()), desc="export", unit="doc") as bar, \
                _ticking(bar):
            report = library.write_library(ns.all, fmt, force=ns.force, argument="--all")
        written = sum(1 for _, s in report if s == "written")
        print(f"{len(report)} document(s) in {ns.all}: {written} written, "
              f"{len(report) - written} unchanged")
        missing = [n for n in library.LIBRARY if n not in library.names()]
        if missing:
            print(f"skipped {len(missing)} whose engine is not installed: {', '.join(missing)}")
        return 0
    fmt = ns.format or "latex"
    checks.choice("format", fmt, FORMATS)
    if ns.name not in library.LIBRARY:
        raise UnknownName("NAME", f"unknown derivation {ns.name!r}; `symbrg export --list` names them")
    text = render(library.build(ns.name), fmt)
    if ns.out is not None:  # an empty --out is refused by atomic_write, not taken as the current folder
        from pathlib import Path
        target: str | Path = ns.out
        if ns.out.strip() and Path(ns.out).is_dir():  # a folder: the document keeps its library name
            target = Path(ns.out) / (ns.name + {"latex": ".tex", "markdown": ".md", "text": ".txt",
                                                "python": ".py"}[fmt])
        with checks.atomic_write(target, force=ns.force, argument="--out") as fh:
            fh.write(text)
        print(f"wrote {ns.name} ({fmt}) to {target}")
    else:
        sys.stdout.write(text)
    return 0


@contextmanager
def _ticking(bar: Any) -> Iterator[None]:
    """Tick ``bar`` once per document that :func:`symbrg.documents.library.write_library` renders.

    The library has no progress hook of its own, so while a bar is shown its module-level
    ``render_entry`` (which ``write_library`` calls once per document) is wrapped, and restored
    afterwards.  With the bar disabled (not a terminal, ``--quiet``) nothing is wrapped."""
    if bar.disable:
        yield
        return
    original = library.render_entry

    def render_entry(name: str, fmt: str = "latex") -> str:
        try:
            return original(name, fmt)
        finally:
            bar.update(1)
    library.render_entry = render_entry
    try:
        yield
    finally:
        library.render_entry = original


def _check(directory: str, fmt: str, bar: Any) -> int:
    from pathlib import Path
    root = Path(directory)
    if not root.is_dir():
        raise InvalidArgument("--check", f"{root} is not a directory")
    stale = []
    for name in library.names():
        path = root / (name + library.EXTENSIONS[fmt])
        if not path.exists() or path.read_text() != library.render_entry(name, fmt):
            stale.append(str(path))
        bar.update(1)
    bib = root / library.BIBFILE
    if fmt == "latex" and (not bib.exists() or bib.read_text() != to_bibtex()):
        stale.append(str(bib))
    for p in stale:
        print(f"out of date: {p}")
    print(f"{len(library.names()) - len(stale)} up to date, {len(stale)} out of date")
    return 1 if stale else 0


def register(commands, derive) -> None:
    p = commands.add_parser(
        "export", help="write the derivations library (LaTeX/Markdown documents)",
        description="Write derivations as documents: every library entry with --all DIR, or one "
                    "NAME to stdout or --out FILE.  Existing files are only overwritten with --force "
                    "(with --all, files whose content is unchanged are left alone).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", nargs="?", metavar="NAME", help="one library entry (see --list)")
    p.add_argument("--all", metavar="DIR", help="regenerate every document into DIR")
    p.add_argument("--check", metavar="DIR", help="compare DIR with a fresh regeneration; exit 1 if stale")
    p.add_argument("--list", action="store_true", help="list the library entries")
    p.add_argument("--format", choices=Names(FORMATS),
                   help="latex (default) or markdown; for a single NAME also text or python")
    p.add_argument("--out", metavar="FILE", help="with NAME: write to FILE instead of stdout")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.set_defaults(func=run)
