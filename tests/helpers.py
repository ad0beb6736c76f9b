"""Helpers shared by the test modules (not collected: the name does not start with ``test_``)."""
from __future__ import annotations

from symbrg.cli import main


def cli(args: list[str], capsys) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of ``symbrg ARGS`` (argparse exits included)."""
    try:
        status = main(args)
    except SystemExit as exc:
        status = exc.code
    out = capsys.readouterr()
    return status, out.out, out.err
