"""The ``symbrg`` command line.

Job: parse arguments and dispatch to the engines; print results; turn every
:class:`symbrg.core.errors.SymbrgError` into one line on stderr and exit status 2 (no traceback).

Each topic lives in its own module ``symbrg.cli.<topic>`` exposing
``register(commands, derive)``: ``commands`` is the top-level sub-parser set (``symbrg kernel``,
``symbrg erg``, ...), ``derive`` the sub-parser set of ``symbrg derive`` (``symbrg derive nngp``,
...).  A handler is attached with ``parser.set_defaults(func=handler)``; it receives the parsed
namespace and returns an exit status (``None`` means 0).

SIGTERM, SIGINT and SIGHUP end a run at once with one line on stderr (``symbrg: interrupted
(SIGTERM)``) and exit status 128 + the signal number (143, 130, 129); the temporary files being
written are removed, so the old outputs stay as they were.
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType
from typing import NoReturn

from symbrg.core import checks
from symbrg.core.errors import SymbrgError, UnknownName
from symbrg.core.limits import ENV, lifted, parse_overrides, registry

TOPICS = ("demo", "kernel", "fisher", "brg", "erg", "cosnet", "ensemble", "export", "limits")

EPILOG = """examples:
  symbrg --version
  symbrg demo
  symbrg derive nngp --activation relu --depth 3 --format latex
  symbrg kernel --activation erf --depth 2 --sigma-w 1.5 --sigma-b 0.1 --x X.npy --out K.npy
"""


class _Parser(argparse.ArgumentParser):
    """argparse with exit status 2 and a one-line message for usage errors."""

    def error(self, message: str) -> NoReturn:  # pragma: no cover - exercised through the CLI tests
        self.exit(2, f"{self.prog}: error: {message}\n")


def version() -> str:
    """The installed version (package metadata), or ``symbrg.__version__`` when symbrg runs from a
    source tree that is not installed."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed
    try:
        return installed("symbrg")
    except PackageNotFoundError:
        from symbrg import __version__
        return __version__


class Names(tuple):
    """``choices=`` for a closed set of names: ``--help`` lists them (``{a,b}``), while the check of
    a value is left to the handler and the engine, which refuse an unknown name in the house style
    (``symbrg: error: <argument>: unknown value 'v'; choose one of a, b``, exit status 2 from
    :func:`main`) instead of argparse's usage error."""

    def __contains__(self, value: object) -> bool:
        return True


def command_group(commands, name: str, *, help: str, description: str, epilog: str,
                  dest: str, metavar: str = "WHAT"):
    """Add a command with sub-commands (``symbrg derive``, ``symbrg erg`` ...) and return its
    sub-parser set; called bare, the command prints its help and exits with status 2."""
    parser = commands.add_parser(name, help=help, description=description, epilog=epilog,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest=dest, metavar=metavar, parser_class=_Parser)
    parser.set_defaults(func=lambda ns: (parser.print_help(), 2)[1])
    return sub


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="symbrg", description="Symbolic-numeric Bayesian RG for neural-network "
                     "field theories.", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"symbrg {version()}",
                        help="print the version (symbrg X.Y.Z) and exit")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bars or progress lines on stderr (bars are shown only when "
                             "stderr is a terminal)")
    parser.add_argument("--limit", action="append", default=[], metavar="NAME=N",
                        help="lift a work bound for this run, e.g. --limit depth=1000000 (repeatable; "
                             "also $SYMBRG_LIMITS); an over-limit request is refused before it starts")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    derive = command_group(
        commands, "derive", help="print a derivation (per-layer kernel maps, Fisher metrics, flows)",
        description="Print a derivation produced by one of the engines.", dest="what",
        epilog="examples:\n  symbrg derive nngp --activation relu --depth 3\n"
               "  symbrg derive ntk --activation erf --depth 2 --format latex\n")
    for topic in TOPICS:
        importlib.import_module(f"{__name__}.{topic}").register(commands, derive)
    return parser


#: The signals that end a run cleanly (exit status 128 + the signal number).
INTERRUPTS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name))


def _interrupted(signum: int, frame: FrameType | None) -> None:
    """Signal handler: remove the temporary files being written, print one line, exit 128 + signum.

    ``os._exit`` rather than an exception: an exception would wait for the worker threads of a
    Gram matrix (:func:`symbrg.kernels.architecture._gram_tiled`) to finish every tile before the run ends.
    """
    checks.remove_temporaries()
    os.write(2, f"symbrg: interrupted ({signal.Signals(signum).name})\n".encode())
    os._exit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv`` (default: ``sys.argv[1:]``) and return the exit status."""
    try:  # only the main thread may set handlers; elsewhere the caller's handling stays
        previous = {sig: signal.signal(sig, _interrupted) for sig in INTERRUPTS}
    except ValueError:
        previous = {}
    try:
        return _run(argv)
    finally:
        for sig, handler in previous.items():
            if handler is not None:  # None: a handler not set from Python, which cannot be restored
                signal.signal(sig, handler)


def _known_limits(argument: str, names: list[str]) -> None:
    """Refuse a limit name that no engine declares (a typo would otherwise lift nothing, silently)."""
    from symbrg.cli.limits import ENGINES
    for module in ENGINES:
        importlib.import_module(module)
    known = registry()
    for name in names:
        if name not in known:
            raise UnknownName(argument, f"no limit is called {name!r}; `symbrg limits` lists them: "
                                        f"{', '.join(sorted(known))}")


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    if not getattr(ns, "func", None):
        parser.print_help()
        return 2
    try:
        overrides = {k: v for text in ns.limit for k, v in parse_overrides(text).items()}
        if overrides or os.environ.get(ENV):
            _known_limits("--limit" if overrides else ENV, [*overrides, *parse_overrides(os.environ.get(ENV, ""), ENV)])
        with lifted(**overrides):
            status = ns.func(ns)
    except SymbrgError as exc:
        print(f"symbrg: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # pragma: no cover
        return 0
    return int(status or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
