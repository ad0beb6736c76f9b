"""Progress bars of the command line (tqdm, on stderr).

Job: show a bar for long work (Gram tiles, experiment members, exported documents, regulator sweeps)
only when stderr is a terminal and ``--quiet`` was not given; otherwise every bar is a silent no-op,
so pipes, log files and tests see nothing.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any


def stderr_is_terminal() -> bool:
    """Whether stderr is an interactive terminal (False when it is closed or not a real stream)."""
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def enabled(ns: argparse.Namespace) -> bool:
    """Bars are shown when stderr is a terminal and the global ``--quiet`` is off."""
    return not getattr(ns, "quiet", False) and stderr_is_terminal()


def quiet(ns: argparse.Namespace) -> bool:
    """The global ``--quiet``: no progress bars and no progress lines on stderr."""
    return bool(getattr(ns, "quiet", False))


def bar(ns: argparse.Namespace, *, total: int | None, desc: str, unit: str) -> Any:
    """A tqdm bar on stderr (disabled, i.e. a no-op, unless :func:`enabled`); use it as a context
    manager and call ``update(n)``."""
    tqdm = importlib.import_module("tqdm").tqdm       # untyped: imported as Any
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True,
                disable=not enabled(ns))


def tracker(progress_bar: Any) -> Any:
    """A ``progress(done, total)`` callback (:data:`symbrg.kernels.architecture.Progress`) that
    moves ``progress_bar`` to ``done`` of ``total``."""
    def progress(done: int, total: int) -> None:
        if progress_bar.total != total:
            progress_bar.total = total
        progress_bar.update(done - progress_bar.n)
    return progress
